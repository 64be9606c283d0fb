//! The macro's input: the source (inline literal or file path) and options.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Path, Token, bracketed, parenthesized};

/// Where the kernel source comes from.
pub enum SourceInput {
    /// An inline string literal.
    Inline(LitStr),
    /// A path relative to the crate's `CARGO_MANIFEST_DIR` (or absolute).
    File(LitStr),
}

/// One ahead-of-time compiled form: `("sm_80", MANIFEST_JSON, [PTX, …])`.
pub struct TargetInput {
    pub target: LitStr,
    pub manifest: Expr,
    pub ptx: Vec<Expr>,
}

/// Everything between the macro's delimiters.
pub struct KernelInput {
    pub source: SourceInput,
    /// The path of the runtime crate in the expansion.
    pub runtime: Path,
    pub targets: Vec<TargetInput>,
}

impl Parse for TargetInput {
    fn parse(input: ParseStream) -> syn::Result<TargetInput> {
        let content;
        parenthesized!(content in input);
        let target: LitStr = content.parse()?;
        content.parse::<Token![,]>()?;
        let manifest: Expr = content.parse()?;
        content.parse::<Token![,]>()?;
        let list;
        bracketed!(list in content);
        let ptx = Punctuated::<Expr, Token![,]>::parse_terminated(&list)?.into_iter().collect();
        let _ = content.parse::<Option<Token![,]>>()?;
        if !content.is_empty() {
            return Err(content.error("expected `(\"sm_XX\", MANIFEST, [PTX, …])`"));
        }
        Ok(TargetInput { target, manifest, ptx })
    }
}

impl Parse for KernelInput {
    fn parse(input: ParseStream) -> syn::Result<KernelInput> {
        let mut source = None;
        let mut runtime = None;
        let mut targets = None;
        if input.peek(LitStr) {
            source = Some(SourceInput::Inline(input.parse()?));
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let duplicate = || syn::Error::new(key.span(), format!("`{key}` is given twice"));
            match key.to_string().as_str() {
                "source" | "file" if source.is_some() => {
                    return Err(syn::Error::new(
                        key.span(),
                        "the kernel source is given twice (inline or `file`, once)",
                    ));
                }
                "source" => source = Some(SourceInput::Inline(input.parse()?)),
                "file" => source = Some(SourceInput::File(input.parse()?)),
                "runtime" if runtime.is_some() => return Err(duplicate()),
                "runtime" => runtime = Some(input.parse()?),
                "targets" if targets.is_some() => return Err(duplicate()),
                "targets" => {
                    let list;
                    bracketed!(list in input);
                    targets =
                        Some(Punctuated::<TargetInput, Token![,]>::parse_terminated(&list)?.into_iter().collect());
                }
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown option `{key}`: expected `source`, `file`, `runtime` or `targets`"),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let source = source.ok_or_else(|| {
            input.error("expected the kernel source: a string literal, or `file = \"path/to/kernel.abk\"`")
        })?;
        let runtime = match runtime {
            Some(path) => path,
            None => syn::parse_quote!(::anybit::runtime),
        };
        Ok(KernelInput { source, runtime, targets: targets.unwrap_or_default() })
    }
}
