//! The expansion: one `static` embedded module and one typed handle per kernel.

use anybit_ir::manifest::{KernelManifest, ParamKind};
use anybit_ir::program::{Kernel, ParamType};
use anybit_ir::{DType, SpecialValues};
use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

use crate::input::{KernelInput, SourceInput};
use crate::source::Loaded;

pub fn handles(input: &KernelInput, loaded: &Loaded) -> syn::Result<TokenStream> {
    let runtime = &input.runtime;
    let typed = quote!(#runtime::typed);
    let span = match &input.source {
        SourceInput::Inline(literal) | SourceInput::File(literal) => literal.span(),
    };
    let names: Vec<String> = loaded.module.kernels.iter().map(|k| k.name.to_uppercase()).collect();
    let module_static = format_ident!("__ANYBIT_MODULE_{}", names.join("__"), span = span);
    let name = &loaded.name;
    let source = match (&input.source, &loaded.file) {
        (_, Some(path)) => {
            let path = path.display().to_string();
            // Embeds the text and makes cargo rebuild when the file changes.
            quote!(::core::include_str!(#path))
        }
        (SourceInput::Inline(literal), None) | (SourceInput::File(literal), None) => quote!(#literal),
    };
    let targets = input.targets.iter().map(|t| {
        let (target, manifest, ptx) = (&t.target, &t.manifest, &t.ptx);
        quote!(#typed::EmbeddedTarget { target: #target, manifest: #manifest, ptx: &[#(#ptx),*] })
    });
    let mut out = quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #module_static: #typed::EmbeddedModule =
            #typed::EmbeddedModule::new(#name, #source, &[#(#targets),*]);
    };
    let mut structs: Vec<String> = Vec::new();
    for kernel in &loaded.module.kernels {
        let struct_name = camel_case(&kernel.name);
        if structs.contains(&struct_name) {
            let message = format!("two kernels of this module both become the Rust handle `{struct_name}`");
            return Err(syn::Error::new(span, message));
        }
        structs.push(struct_name.clone());
        out.extend(handle(kernel, &struct_name, &module_static, &typed, span)?);
    }
    Ok(out)
}

fn handle(
    kernel: &Kernel,
    struct_name: &str,
    module_static: &Ident,
    typed: &TokenStream,
    span: Span,
) -> syn::Result<TokenStream> {
    let manifest = KernelManifest::new(kernel, String::new(), 0);
    let handle = rust_ident(struct_name, span, "kernel")?;
    let mut params = Vec::new();
    let mut args = Vec::new();
    let mut signature = Vec::new();
    for (param, entry) in kernel.params.iter().zip(&manifest.params) {
        let name = if param.name == "exec" { "exec_" } else { param.name.as_str() };
        let ident = rust_ident(name, span, "parameter")?;
        match param.ty {
            ParamType::Pointer(dtype) => {
                let marker = marker(dtype, typed);
                let shape: Vec<String> = entry.shape.iter().map(|e| manifest.expr_text(e)).collect();
                let shape = if shape.is_empty() { String::new() } else { format!("[{}]", shape.join(", ")) };
                signature.push(format!("{}: ptr {dtype}{shape}", param.name));
                if entry.kind == ParamKind::Pointer && entry.written {
                    params.push(quote!(#ident: &mut #typed::TypedBuffer<#marker>));
                    args.push(quote!(#ident.arg_mut()));
                } else {
                    params.push(quote!(#ident: &#typed::TypedBuffer<#marker>));
                    args.push(quote!(#ident.arg()));
                }
            }
            ParamType::Scalar(dtype) => {
                signature.push(format!("{}: {dtype}", param.name));
                let (rust, float) = scalar_type(dtype);
                let rust = format_ident!("{}", rust);
                params.push(quote!(#ident: #rust));
                args.push(if float {
                    quote!(#typed::KernelArg::float(#ident))
                } else {
                    quote!(#typed::KernelArg::int(#ident))
                });
            }
        }
    }
    let kernel_name = &kernel.name;
    let header = format!("`{}({})`", kernel.name, signature.join(", "));
    let struct_doc =
        format!("The anybit kernel {header}, checked at compile time; run it with [`{struct_name}::launch`].");
    let launch_doc = format!(
        "Runs {header} on `exec`: enqueued on its stream on a GPU (arguments checked against the kernel's \
         manifest: sizes, ranges, constraints), run to completion on the interpreter."
    );
    Ok(quote! {
        #[doc = #struct_doc]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct #handle;

        impl #handle {
            /// The kernel's name in its module (its PTX entry point).
            pub const NAME: &'static str = #kernel_name;

            /// The embedded module the kernel belongs to.
            pub fn module() -> &'static #typed::EmbeddedModule {
                &#module_static
            }

            #[doc = #launch_doc]
            #[allow(clippy::too_many_arguments)]
            pub fn launch(&self, exec: &#typed::Executor, #(#params),*) -> ::core::result::Result<(), #typed::ExecError> {
                exec.launch(&#module_static, #kernel_name, &mut [#(#args),*])
            }
        }
    })
}

/// The element marker of `dtype` (`anybit_runtime::typed`'s `Uint<3>`, `Float<4, 3, { NAN }>`).
fn marker(dtype: DType, typed: &TokenStream) -> TokenStream {
    let bits = |n: u32| Literal::u8_unsuffixed(n as u8);
    match dtype {
        DType::Uint(_) => {
            let n = bits(dtype.bits());
            quote!(#typed::Uint<#n>)
        }
        DType::Int(_) => {
            let n = bits(dtype.bits());
            quote!(#typed::Int<#n>)
        }
        DType::Float(f) => {
            let (e, m) = (bits(f.exponent_bits()), bits(f.mantissa_bits()));
            let special = match f.special() {
                SpecialValues::FiniteOnly => quote!(FINITE),
                SpecialValues::NanOnly => quote!(NAN),
                SpecialValues::Ieee => quote!(IEEE),
            };
            quote!(#typed::Float<#e, #m, { #typed::#special }>)
        }
    }
}

/// The Rust type a scalar parameter takes, and whether it is a float: the smallest integer
/// type holding every value (`u8` for `u4`, `i8` for `i5`), `f32` for floats.
fn scalar_type(dtype: DType) -> (&'static str, bool) {
    let bits = dtype.bits();
    match dtype {
        DType::Float(_) => ("f32", true),
        DType::Uint(_) if bits <= 8 => ("u8", false),
        DType::Uint(_) if bits <= 16 => ("u16", false),
        DType::Uint(_) => ("u32", false),
        DType::Int(_) if bits <= 8 => ("i8", false),
        DType::Int(_) if bits <= 16 => ("i16", false),
        DType::Int(_) => ("i32", false),
    }
}

/// `lowbit_matmul_u4` → `LowbitMatmulU4`.
fn camel_case(name: &str) -> String {
    let camel: String = name
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    if camel.starts_with(|c: char| c.is_ascii_alphabetic()) { camel } else { format!("Kernel{camel}") }
}

/// `name` as a Rust identifier (raw when it is a keyword), or an error naming it.
fn rust_ident(name: &str, span: Span, what: &str) -> syn::Result<Ident> {
    if let Ok(ident) = syn::parse_str::<Ident>(name) {
        return Ok(Ident::new(&ident.to_string(), span));
    }
    let plain = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain && !matches!(name, "_" | "self" | "Self" | "super" | "crate") {
        return Ok(Ident::new_raw(name, span));
    }
    Err(syn::Error::new(span, format!("the {what} name `{name}` cannot be a Rust identifier")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_rust_names() {
        assert_eq!(camel_case("lowbit_matmul_u4_g128"), "LowbitMatmulU4G128");
        assert_eq!(camel_case("_x__y"), "XY");
        assert_eq!(camel_case("9lives"), "Kernel9lives");
        let span = Span::call_site();
        assert_eq!(rust_ident("type", span, "parameter").unwrap().to_string(), "r#type");
        assert!(rust_ident("self", span, "parameter").is_err());
        assert_eq!(scalar_type("u4".parse().unwrap()), ("u8", false));
        assert_eq!(scalar_type("i32".parse().unwrap()), ("i32", false));
        assert_eq!(scalar_type(DType::F16), ("f32", true));
    }

    #[test]
    fn markers_name_the_runtime_s_types() {
        let typed = quote!(rt::typed);
        let text = |name: &str| marker(name.parse().unwrap(), &typed).to_string();
        assert_eq!(text("u3"), quote!(rt::typed::Uint<3>).to_string());
        assert_eq!(text("f8e4m3"), quote!(rt::typed::Float<4, 3, { rt::typed::NAN }>).to_string());
    }
}
