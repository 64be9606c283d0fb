//! Tests of the kernel language: the example kernels, round trips of randomly built programs,
//! exact diagnostics, and a parser that never panics whatever it is given.

use std::collections::BTreeSet;

use anybit_ir::DType;
use anybit_ir::builder::KernelBuilder;
use anybit_ir::diag::{Diagnostics, SourceFile};
use anybit_ir::program::{
    Axis, BinaryOp, CompareOp, GridExpr, GridOp, Kernel, LayoutDef, Literal, Module, NamedLayout, Op, Operand,
    ReduceOp, RegisterTensorType, SharedTensorType, Type, UnaryOp, ValueId,
};
use anybit_ir::text::{parse_module, print_kernel, print_module};
use anybit_layouts::{RegisterLayout, SharedLayout, Swizzle, ThreadAxis};
use proptest::prelude::*;

use super::common::{Rng, dtype};

/// The example kernels: name and source.
const EXAMPLES: &[(&str, &str)] = &[
    ("vector_add", include_str!("../text/vector_add.abk")),
    ("row_sum", include_str!("../text/row_sum.abk")),
    ("matmul_f16", include_str!("../text/matmul_f16.abk")),
    ("lowbit_fragment", include_str!("../text/lowbit_fragment.abk")),
];

fn render(name: &str, source: &str, diagnostics: &Diagnostics) -> String {
    SourceFile::new(name, source).render_all(&diagnostics.0)
}

fn parse_ok(name: &str, source: &str) -> Module {
    parse_module(source).unwrap_or_else(|d| panic!("{name} does not parse:\n{}", render(name, source, &d)))
}

/// Every diagnostic of a source that must not parse, rendered.
fn errors(source: &str) -> String {
    match parse_module(source) {
        Ok(m) => panic!("parsed, but should not have:\n{}", print_module(&m)),
        Err(d) => render("t.abk", source, &d),
    }
}

/// `parse(print(m)) == m` and `print(parse(print(m))) == print(m)`; returns the text.
fn assert_round_trip(module: &Module) -> String {
    let text = print_module(module);
    let parsed = parse_module(&text)
        .unwrap_or_else(|d| panic!("printed module does not parse:\n{}\n\n{text}", render("printed", &text, &d)));
    assert!(parsed == *module, "parse(print(m)) != m for:\n{text}");
    assert_eq!(print_module(&parsed), text);
    text
}

// ---------------------------------------------------------------------------------------
// The examples
// ---------------------------------------------------------------------------------------

#[test]
fn examples_parse_and_round_trip() {
    for &(name, source) in EXAMPLES {
        let module = parse_ok(name, source);
        let printed = assert_round_trip(&module);
        insta::assert_snapshot!(name, printed);
    }
}

#[test]
fn examples_have_the_expected_structure() {
    let m = parse_ok("matmul_f16", EXAMPLES[2].1);
    assert_eq!(m.layouts.len(), 5);
    assert!(matches!(m.layouts[3].layout, LayoutDef::Shared(_)));
    let k = &m.kernels[0];
    assert_eq!((k.name.as_str(), k.params.len(), k.warps), ("matmul_f16", 7, 4));
    assert_eq!(k.grid[1], GridExpr::cdiv(GridExpr::Param(4), GridExpr::Const(64)));
    // The loop carries the accumulator; its body holds the copies, loads and the dot.
    let loop_inst = k.body.insts.iter().map(|&i| k.inst(i)).find(|i| matches!(i.op, Op::For { .. })).unwrap();
    let Op::For { unroll, carried, body, .. } = &loop_inst.op else { unreachable!() };
    assert_eq!(*unroll, Some(2));
    assert_eq!(carried.len(), 1);
    let acc = k.value_type(carried[0]).as_register().unwrap();
    assert_eq!(acc.shape, vec![64, 64]);
    assert_eq!(acc.layout.as_ref(), m.register_layout("acc"));
    let mnemonics: Vec<&str> = body.insts.iter().map(|&i| k.inst(i).op.mnemonic()).collect();
    assert_eq!(
        mnemonics,
        ["copy_async", "copy_async", "commit_group", "wait_group", "sync", "load_shared", "load_shared", "dot", "sync"]
    );
    // Spans point into the source.
    let source = EXAMPLES[2].1;
    let span = loop_inst.span.unwrap();
    assert!(source[span.start as usize..span.end as usize].starts_with("for %k0 = 0 to %k step 32"));
    let text = |span: Option<anybit_ir::diag::Span>| {
        let span = span.unwrap();
        &source[span.start as usize..span.end as usize]
    };
    let v = k.values.iter().find(|(_, v)| v.name == "c1").unwrap().1;
    assert_eq!(text(v.span), "%c1");
    assert_eq!(text(k.params[6].span), "relu: u1");
    assert_eq!(text(m.layouts[4].span), "layout @sb = row_major(32, 64).swizzle(3, 4, 3)");
    assert!(text(k.span).starts_with("kernel matmul_f16(") && text(k.span).ends_with("free_shared %sb\n}"));
    let dot = k.insts.iter().find(|(_, i)| matches!(i.op, Op::Dot { .. })).unwrap().1;
    assert_eq!(text(dot.span), "dot %ta, %tb, %c0");

    // The low-bit fragment: view of bytes as nibbles, typed from the text.
    let m = parse_ok("lowbit_fragment", EXAMPLES[3].1);
    let k = &m.kernels[0];
    let w4 = k.values.iter().find(|(_, v)| v.name == "w4").unwrap().1;
    let ty = w4.ty.as_register().unwrap();
    assert_eq!((ty.dtype, ty.shape.clone()), (dtype("u4"), vec![16, 32]));
    let wq = k.values.iter().find(|(_, v)| v.name == "wq").unwrap().1;
    assert_eq!(wq.ty.dtype(), DType::F16);
}

#[test]
fn display_and_print_kernel_agree_with_print_module() {
    let m = parse_ok("vector_add", EXAMPLES[0].1);
    assert_eq!(m.to_string(), print_module(&m));
    let kernel = print_kernel(&m.kernels[0], &m.layouts);
    assert!(print_module(&m).ends_with(&kernel));
    // Without the named layouts the layout is written inline.
    let inline = print_kernel(&m.kernels[0], &[]);
    assert!(inline.contains("f32[512] layout local(4).spatial(128)"), "{inline}");
    assert_eq!(print_module(&Module::default()), "");
}

#[test]
fn comments_whitespace_and_optional_parts() {
    let source = "
        // a comment
        layout @l = spatial(4, 8) // spaces inside layouts are fine
        kernel k ( n : i32 , p : ptr u4 ) grid ( n , 2 ) warps ( 1 ) {
            %a = const 0x10 : i32   %b = add %a, -3 // two statements on one line
            %r = for %i = 0 to %n iter (%x = %b) { %y = add %x, %i yield %y }
            if %r { sync }
            %f = fill -inf : f32[4, 8] layout spatial(4,8)
            %g = fill nan : f32[] layout replicated(2)
        }";
    let m = parse_ok("inline", source);
    let text = assert_round_trip(&m);
    assert!(text.contains("%a = const 16 : i32\n"), "{text}");
    assert!(text.contains("for %i = 0 to %n step 1 iter (%x = %b) {"), "{text}");
    assert!(text.contains("    if %r {\n        sync\n    }\n"), "{text}");
    assert!(text.contains("fill -inf : f32[4, 8] layout @l"), "{text}");
    assert!(text.contains("fill nan : f32[] layout replicated(2)"), "{text}");
    // Names are unique per kernel, even in sibling blocks.
    let dup = "kernel k(c: u1) grid(1) warps(1) {\n    if %c {\n        %t = const 1 : i32\n    }\n    if %c {\n        %t = const 2 : i32\n    }\n}\n";
    assert!(errors(dup).contains("`%t` is already defined"));
}

// ---------------------------------------------------------------------------------------
// Diagnostics
// ---------------------------------------------------------------------------------------

const HEADER: &str = "kernel k(p: ptr f16, n: i32) grid(1) warps(1) {\n";

#[test]
fn diagnostic_expected_separator() {
    let source = format!("{HEADER}    %g = global_view %p [%n] strides [1]\n    %x = load_global %g [%n }}\n}}\n");
    assert_eq!(
        errors(&source),
        "error: expected `,` or `]` after an offset, found `}`\n --> t.abk:3:29\n  |\n3 |     %x = load_global %g [%n }\n  |                             ^"
    );
}

#[test]
fn diagnostic_type_error_at_the_instruction() {
    let source = format!(
        "{HEADER}    %a = fill 0.0 : f16[16, 32]\n    %b = fill 0.0 : f16[16, 8]\n    %c = fill 0.0 : f32[16, 8]\n    %d = dot %a, %b, %c\n}}\n"
    );
    assert_eq!(
        errors(&source),
        "error: `dot` operand shapes do not agree: a [16, 32], b [16, 8], c [16, 8] (expected [M, K], [K, N], [M, N])\n --> t.abk:5:10\n  |\n5 |     %d = dot %a, %b, %c\n  |          ^^^^^^^^^^^^^^"
    );
}

#[test]
fn diagnostic_undefined_and_duplicate_names() {
    let source = format!("{HEADER}    %a = add %n, %m\n    %n = const 1 : i32\n}}\n");
    assert_eq!(
        errors(&source),
        "error: undefined value `%m`\n --> t.abk:2:18\n  |\n2 |     %a = add %n, %m\n  |                  ^^\n\n\
         error: `%n` is already defined\n --> t.abk:3:5\n  |\n3 |     %n = const 1 : i32\n  |     ^^\n  = note: first defined at line 1, column 22"
    );
}

#[test]
fn diagnostic_inside_a_layout_expression() {
    let source = "layout @a = spatial(8,4,]\nlayout @b = row_major(4, 4).swizle(1, 1, 1)\n";
    assert_eq!(
        errors(source),
        "error: expected a number in the register layout, found ']'\n --> t.abk:1:25\n  |\n1 | layout @a = spatial(8,4,]\n  |                         ^\n\n\
         error: expected 'swizzle' in the shared layout, found 'swizle'\n --> t.abk:2:29\n  |\n2 | layout @b = row_major(4, 4).swizle(1, 1, 1)\n  |                             ^^^^^^"
    );
}

#[test]
fn diagnostic_unclosed_block() {
    let source =
        format!("{HEADER}    %r = if %n {{\n        sync\n\nkernel j() grid(1) warps(1) {{\n    %x = foo\n}}\n");
    assert_eq!(
        errors(&source),
        "error: expected `}` to close the block opened at line 2, column 16, found `kernel`\n --> t.abk:5:1\n  |\n5 | kernel j() grid(1) warps(1) {\n  | ^^^^^^\n\n\
         error: unknown instruction `foo`\n --> t.abk:6:10\n  |\n6 |     %x = foo\n  |          ^^^"
    );
}

#[test]
fn three_independent_errors_are_all_reported() {
    let source = "\
layout @ok = spatial(32)

kernel first(x: ptr f32, n: i32) grid(cdiv(n, 32)) warps(1) {
    %g = global_view %x [%n] strides [1]
    %v = load_global %g [0] : f32[32] layout @ok
    %w = mul %v, %missing
    %u = add %w, 1.0
    store_global %u, %g [0]
    %bad = add %n, 1.5
}

kernel second(n: i32) grid(n, n, n, n) warps(1) {
    %a = add %n, 1
}
";
    let diagnostics = parse_module(source).unwrap_err();
    let rendered: Vec<String> = diagnostics.0.iter().map(|d| SourceFile::new("t.abk", source).render(d)).collect();
    assert_eq!(rendered.len(), 3, "{}", rendered.join("\n\n"));
    assert_eq!(rendered[0].lines().next(), Some("error: undefined value `%missing`"));
    assert!(rendered[0].contains("t.abk:6:18"), "{}", rendered[0]);
    // `%u` and the store depend on `%w`, which has the error: not reported again.
    assert_eq!(rendered[1].lines().next(), Some("error: `add` right operand: float literal 1.5 cannot be a i32"));
    assert!(rendered[1].contains("t.abk:9:12"), "{}", rendered[1]);
    assert_eq!(rendered[2].lines().next(), Some("error: a grid has 1 to 3 axes, found 4"));
    assert!(rendered[2].contains("t.abk:12:27"), "{}", rendered[2]);
}

#[test]
fn syntax_errors_recover_at_the_next_line() {
    let source = format!(
        "{HEADER}    %a = add %n,\n    %b = mul %n 2\n    %c = add %n, 1\n    %d = sub %c, %a\n    %e = mul %c, 2 : i32\n    %f = sub %c, 3\n}}\n"
    );
    let text = errors(&source);
    let messages: Vec<&str> = text.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        messages,
        [
            "error: expected an operand of `add` (`%name` or a literal), found `%b`",
            "error: `mul` takes 2 operands, found 1",
            "error: expected a statement, found `2`",
            "error: expected a statement, found `:`",
        ]
    );
}

#[test]
fn semantic_errors_have_precise_messages() {
    let cases: &[(&str, &str)] = &[
        ("%x = foo %n", "unknown instruction `foo`"),
        ("%x = add %n, 1, 2", "`add` takes 2 operands, found 3"),
        ("%x = neg", "expected an operand of `neg` (`%name` or a literal), found `}`"),
        ("add %n, 1", "`add` defines 1 value; name the results (`%x = add …`)"),
        ("%x, %y = add %n, 1", "`add` defines 1 value, but 2 result names are given"),
        ("%x = sync", "`sync` defines no values, but 1 result name is given"),
        ("%x = const 1 : i33", "invalid data type `i33`"),
        ("%x = const 300 : u8", "literal 300 is outside the range of u8 (0 to 255)"),
        (
            "%x = fill 0.0 : f16[4] layout @nope",
            "unknown layout `@nope` (layouts must be defined before they are used)",
        ),
        ("%x = fill 0.0 : f16[4] layout @s", "`@s` is a shared layout; a register tensor needs a register layout"),
        ("%x = alloc_shared : f16[4] layout @r", "`@r` is a register layout; a shared tensor needs a shared layout"),
        ("%x = fill 0.0 : f16[4] layout row_major(4)", "unknown register layout primitive `row_major`"),
        ("%x = block_index w", "expected an axis `x`, `y` or `z` after `block_index`, found `w`"),
        ("%c = const 1 : u2\n    %x = lookup %c [1.0, 2.0] : f16", "`lookup` table has 2 entries, but u2 codes have 4"),
        ("%x = lookup %n [1, 2] : f16", "`lookup` codes must be an unsigned integer type of at most 8 bits, found i32"),
        (
            "%c = const 1 : u1\n    %x = lookup %c [1.5, 2] : i8",
            "`lookup` table entry 0: float literal 1.5 cannot be a i8",
        ),
        ("%c = const 1 : u1\n    %x = lookup %c [1, 2 : f16", "expected `,` or `]`"),
        ("%c = const 1 : u1\n    %x = lookup %c [%n, 2] : f16", "expected a table entry (a literal), found `%n`"),
        ("%x = dot 1, %n, %n", "`dot` operands must be values, found the literal 1"),
        (
            "%x = global_view %p [%n]",
            "expected `strides` after the shape of `global_view` (strides are always written)",
        ),
        ("yield %n", "`yield` is only allowed at the end of a `for` or `if` block"),
        ("%x = iota -1 : i32[4]", "the dimension of `iota` must be an integer from 0 to"),
        ("%x = add %n, 12abc", "invalid number `12abc` (a number cannot be followed by letters)"),
        (
            "%x = add %n, 99999999999999999999",
            "invalid number `99999999999999999999` (the integer does not fit in 64 bits)",
        ),
        ("%x = add %n, $", "expected an operand of `add` (`%name` or a literal), found `$`"),
        (
            "%r = for %i = 0 to %n {\n        %y = add %i, 1\n    }",
            "`for` carries 0 values (one per `iter` binding), but 1 result name is given",
        ),
        (
            "%r = for %i = 0 to %n iter (%a = %n) {\n        sync\n    }",
            "the `for` body must end with `yield` of 1 value",
        ),
        (
            "%r = for %i = 0 to %n iter (%a = %n) {\n        %f = const 1.0 : f32\n        yield %f\n    }",
            "the `for` body yields a scalar f32 at position 0, expected a scalar i32",
        ),
        ("%r = for %i = 0 to %n iter (%a = 1) {\n        yield %a\n    }", "`for` initial value 0 is a literal"),
        (
            "%r = if %n {\n        yield %n\n    }",
            "`if` yields 1 value, so it needs an `else` block that yields the same",
        ),
        (
            "%r = if %n {\n        yield %n\n    } else {\n        yield %n, %n\n    }",
            "the `else` block yields 2 values, expected 1",
        ),
        ("if %n {\n        yield %n\n        sync\n    }", "`yield` must be the last statement of its block"),
        (
            "%r = if %n {\n        %t = const 1 : i32\n        yield %t\n    } else {\n        yield %n\n    }\n    %u = add %t, 1",
            "`%t` is not visible here",
        ),
    ];
    for &(statement, expected) in cases {
        let source = format!("layout @s = row_major(4)\nlayout @r = spatial(4)\n{HEADER}    {statement}\n}}\n");
        let text = errors(&source);
        assert!(text.contains(expected), "for `{statement}`:\nexpected `{expected}` in\n{text}");
    }
}

#[test]
fn module_level_errors() {
    let cases: &[(&str, &str)] = &[
        ("layout @a = spatial(4)\nlayout @a = local(4)\n", "layout `@a` is already defined"),
        ("layout @a = wibble(4)\n", "unknown layout primitive `wibble`"),
        ("layout a = spatial(4)\n", "expected a layout name `@name` after `layout`, found `a`"),
        ("kernel k() grid(1) warps(1) {\n}\nkernel k() grid(1) warps(1) {\n}\n", "kernel `k` is already defined"),
        ("kernel k(x: f32) grid(x) warps(1) {\n}\n", "grid expressions use integer scalar parameters; `x` is a f32"),
        ("kernel k(n: i32) grid(pow(n, 2)) warps(1) {\n}\n", "unknown grid function `pow`"),
        ("kernel k(n: i32) grid(1) warps(-1) {\n}\n", "the number of warps must be an integer from 0 to 4294967295"),
        ("kernel k(n: i32, n: i32) grid(1) warps(1) {\n}\n", "`%n` is already defined"),
        ("kernel k(p: ptr) grid(1) warps(1) {\n}\n", "expected an element type after `ptr`, found `)`"),
        ("fn k() {}\n", "expected `layout` or `kernel`, found `fn`"),
        (
            "kernel k() grid(1) warps(1) {\n",
            "expected `}` to close the block opened at line 1, column 29, found end of file",
        ),
    ];
    for &(source, expected) in cases {
        let text = errors(source);
        assert!(text.contains(expected), "for `{source}`:\nexpected `{expected}` in\n{text}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 200;
    let mut source = String::from("kernel k(n: i32) grid(1) warps(1) {\n");
    for _ in 0..depth {
        source.push_str("for %i = 0 to 1 {\n");
    }
    source.push_str(&"}\n".repeat(depth + 1));
    assert!(errors(&source).contains("blocks are nested more than 64 deep"));
    let grid = format!("kernel k(n: i32) grid({}n{}) warps(1) {{\n}}\n", "add(1, ".repeat(500), ")".repeat(500));
    assert!(errors(&grid).contains("grid expression is nested too deeply"));
    // 60 levels are fine, and round-trip.
    let mut source = String::from("kernel k(n: i32) grid(1) warps(1) {\n");
    for level in 0..60 {
        source.push_str(&format!("for %i{level} = 0 to 1 {{\n"));
    }
    source.push_str(&"}\n".repeat(61));
    assert_round_trip(&parse_ok("nested", &source));
}

// ---------------------------------------------------------------------------------------
// Randomly built programs
// ---------------------------------------------------------------------------------------

/// Builds random but valid modules with the kernel builder.
struct Gen {
    rng: Rng,
    /// Register layouts to draw from (the module's named ones among them).
    layouts: Vec<RegisterLayout>,
    /// Shared layouts to draw from.
    shared: Vec<SharedLayout>,
}

const SIZES: &[usize] = &[1, 2, 4];

impl Gen {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.below(100) < percent
    }

    /// A register layout of `rank` dims: a product of primitives, or a general form with
    /// modes in random order.
    fn register_layout(&mut self, rank: usize) -> RegisterLayout {
        if self.chance(25) && rank > 0 {
            let dims: Vec<Vec<usize>> =
                (0..rank).map(|_| (0..1 + self.rng.below(2)).map(|_| *self.pick(&[2, 3, 4])).collect()).collect();
            let modes: usize = dims.iter().map(Vec::len).sum();
            let mut order: Vec<usize> = (0..modes).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, self.rng.below(i as u64 + 1) as usize);
            }
            let split = self.rng.below(modes as u64 + 1) as usize;
            let mut threads: Vec<ThreadAxis> = order[..split].iter().map(|&m| ThreadAxis::Mode(m)).collect();
            if self.chance(30) {
                threads.insert(self.rng.below(threads.len() as u64 + 1) as usize, ThreadAxis::Replicated(2));
            }
            return RegisterLayout::from_parts(dims, threads, order[split..].to_vec()).unwrap();
        }
        let mut layout = RegisterLayout::unit();
        for _ in 0..1 + self.rng.below(3) {
            let shape: Vec<usize> = (0..rank).map(|_| *self.pick(SIZES)).collect();
            let factor = match self.rng.below(5) {
                0 => RegisterLayout::local(&shape),
                1 => RegisterLayout::column_local(&shape),
                2 => RegisterLayout::spatial(&shape),
                3 => RegisterLayout::column_spatial(&shape),
                _ => RegisterLayout::replicated(2),
            };
            layout = layout.compose(&factor.unwrap()).unwrap();
        }
        if layout.rank() != rank {
            layout = RegisterLayout::local(&vec![1; rank]).unwrap().compose(&layout).unwrap();
        }
        layout
    }

    /// A layout from the pool (or a new one) of the given rank, or none.
    fn maybe_layout(&mut self, rank: usize) -> Option<RegisterLayout> {
        if self.chance(15) {
            return None;
        }
        let candidates: Vec<RegisterLayout> = self.layouts.iter().filter(|l| l.rank() == rank).cloned().collect();
        if !candidates.is_empty() && self.chance(60) {
            return Some(self.pick(&candidates).clone());
        }
        Some(self.register_layout(rank))
    }

    fn tensor_type(&mut self, dtype: DType) -> RegisterTensorType {
        let rank = 1 + self.rng.below(2) as usize;
        match self.maybe_layout(rank) {
            Some(l) => RegisterTensorType::new(dtype, l.shape(), Some(l)),
            None => RegisterTensorType::new(dtype, (0..rank).map(|_| *self.pick(&[1, 2, 4, 8])).collect(), None),
        }
    }

    fn shared_layout(&mut self, shape: &[usize]) -> Option<SharedLayout> {
        let fitting: Vec<SharedLayout> = self.shared.iter().filter(|l| l.shape() == shape).cloned().collect();
        match self.rng.below(5) {
            0 => None,
            1 if !fitting.is_empty() => Some(self.pick(&fitting).clone()),
            1 | 2 => Some(SharedLayout::row_major(shape).unwrap()),
            3 => Some(SharedLayout::column_major(shape).unwrap()),
            _ => {
                let strides: Vec<usize> = shape.iter().map(|&s| s * 3 + 1).collect();
                let layout = SharedLayout::strided(shape, &strides).unwrap();
                Some(if self.chance(50) { layout.with_swizzle(Swizzle::new(1, 2, 2).unwrap()) } else { layout })
            }
        }
    }

    fn float_literal(&mut self) -> Literal {
        let special = [0.0, -0.0, 1.0, -2.5, 0.1, 1e-7, 3.0e20, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
        if self.chance(50) {
            Literal::Float(*self.pick(&special))
        } else {
            Literal::Float(self.rng.unit() * 200.0 - 100.0)
        }
    }

    /// A literal that fits `dtype`.
    fn literal(&mut self, dtype: DType) -> Literal {
        if dtype.is_float() {
            return if self.chance(20) { Literal::Int(self.rng.below(5) as i64 - 2) } else { self.float_literal() };
        }
        let top = if dtype.bits() >= 8 { 100 } else { 1 };
        let low = if dtype.is_signed() { -2 } else { 0 };
        Literal::Int(low + self.rng.below((top - low + 1) as u64) as i64)
    }

    fn scalar_dtype(&mut self) -> DType {
        let names = ["i32", "i32", "i8", "u8", "u16", "f32", "f16", "bf16", "f8e4m3", "f6e3m2_finite"];
        let name = *self.pick(&names);
        dtype(name)
    }

    fn tensor_dtype(&mut self) -> DType {
        let names = ["f32", "f16", "bf16", "i32", "u8", "u4", "i8", "f8e5m2", "f4e2m1"];
        let name = *self.pick(&names);
        dtype(name)
    }

    fn grid(&mut self, int_params: &[usize], depth: usize) -> GridExpr {
        match self.rng.below(if depth < 2 { 4 } else { 2 }) {
            0 => GridExpr::Const(self.rng.below(1000)),
            1 => GridExpr::Param(*self.pick(int_params)),
            _ => {
                let ops =
                    [GridOp::Add, GridOp::Sub, GridOp::Mul, GridOp::Div, GridOp::CeilDiv, GridOp::Min, GridOp::Max];
                let op = *self.pick(&ops);
                GridExpr::binary(op, self.grid(int_params, depth + 1), self.grid(int_params, depth + 1))
            }
        }
    }

    fn module(&mut self) -> Module {
        let mut layouts = Vec::new();
        for i in 0..self.rng.below(4) {
            let rank = 1 + self.rng.below(2) as usize;
            let layout = self.register_layout(rank);
            self.layouts.push(layout.clone());
            layouts.push(NamedLayout { name: format!("r{i}"), layout: LayoutDef::Register(layout), span: None });
        }
        for i in 0..self.rng.below(3) {
            let shape: Vec<usize> = (0..1 + self.rng.below(2)).map(|_| *self.pick(&[2, 4, 8])).collect();
            if let Some(layout) = self.shared_layout(&shape) {
                self.shared.push(layout.clone());
                layouts.push(NamedLayout { name: format!("s{i}"), layout: LayoutDef::Shared(layout), span: None });
            }
        }
        let kernels = (0..1 + self.rng.below(2)).map(|i| self.kernel(&format!("kernel_{i}"))).collect();
        Module { layouts, kernels }
    }

    fn kernel(&mut self, name: &str) -> Kernel {
        let mut k = KernelBuilder::new(name, 1 + self.rng.below(4) as u32);
        let i32 = dtype("i32");
        let mut pool = vec![k.scalar_param("n", i32).unwrap(), k.scalar_param("m", i32).unwrap()];
        let mut int_params = vec![0, 1];
        for i in 0..1 + self.rng.below(4) {
            let d = self.tensor_dtype();
            pool.push(k.pointer_param(&format!("p{i}"), d).unwrap());
            if self.chance(30) {
                int_params.push(k.kernel().params.len());
                pool.push(k.scalar_param(&format!("s{i}"), dtype("u16")).unwrap());
            }
        }
        if self.chance(50) {
            pool.push(k.scalar_param("alpha", DType::F32).unwrap());
        }
        let axes = 1 + self.rng.below(3) as usize;
        let grid = (0..axes).map(|_| self.grid(&int_params, 0)).collect();
        k.set_grid(grid);
        let count = 5 + self.rng.below(25) as usize;
        self.statements(&mut k, &mut pool, 0, count);
        k.finish()
    }

    fn statements(&mut self, k: &mut KernelBuilder, pool: &mut Vec<ValueId>, depth: usize, count: usize) {
        for _ in 0..count {
            self.statement(k, pool, depth);
        }
    }

    fn values_where(&self, k: &KernelBuilder, pool: &[ValueId], f: impl Fn(&Type) -> bool) -> Vec<ValueId> {
        pool.iter().copied().filter(|&v| k.type_of(v).is_ok_and(&f)).collect()
    }

    fn pick_value(&mut self, k: &KernelBuilder, pool: &[ValueId], f: impl Fn(&Type) -> bool) -> Option<ValueId> {
        let found = self.values_where(k, pool, f);
        if found.is_empty() { None } else { Some(*self.pick(&found)) }
    }

    /// An operand of scalar type `dtype`: a value of that type or a literal.
    fn scalar_operand(&mut self, k: &KernelBuilder, pool: &[ValueId], dtype: DType) -> Operand {
        match self.pick_value(k, pool, |t| *t == Type::Scalar(dtype)) {
            Some(v) if self.chance(60) => Operand::Value(v),
            _ => Operand::Literal(self.literal(dtype)),
        }
    }

    fn index_operand(&mut self, k: &KernelBuilder, pool: &[ValueId]) -> Operand {
        match self.pick_value(k, pool, |t| matches!(t, Type::Scalar(d) if d.is_integer())) {
            Some(v) if self.chance(50) => Operand::Value(v),
            _ => Operand::Literal(Literal::Int(self.rng.below(64) as i64)),
        }
    }

    fn add(&mut self, pool: &mut Vec<ValueId>, result: Result<ValueId, anybit_ir::builder::BuildError>) {
        match result {
            Ok(v) => pool.push(v),
            Err(e) => panic!("the generator made an invalid instruction: {e}"),
        }
    }

    fn statement(&mut self, k: &mut KernelBuilder, pool: &mut Vec<ValueId>, depth: usize) {
        match self.rng.below(26) {
            0 => {
                let d = self.scalar_dtype();
                let value = self.literal(d);
                let v = k.constant(value, d);
                self.add(pool, v);
            }
            1 => {
                let axis = *self.pick(&[Axis::X, Axis::Y, Axis::Z]);
                let v = k.block_index(axis);
                self.add(pool, v);
            }
            2 | 3 => {
                // Scalar arithmetic.
                let Some(x) = self.pick_value(k, pool, Type::is_scalar) else { return };
                let d = k.type_of(x).unwrap().dtype();
                let ops: Vec<BinaryOp> = if d.is_integer() {
                    BinaryOp::ALL.to_vec()
                } else {
                    BinaryOp::ALL
                        .iter()
                        .copied()
                        .filter(|op| {
                            !matches!(
                                op,
                                BinaryOp::Rem
                                    | BinaryOp::CeilDiv
                                    | BinaryOp::And
                                    | BinaryOp::Or
                                    | BinaryOp::Xor
                                    | BinaryOp::Shl
                                    | BinaryOp::Shr
                            )
                        })
                        .collect()
                };
                let op = *self.pick(&ops);
                let y = self.scalar_operand(k, pool, d);
                let v = if self.chance(50) { k.binary(op, x, y) } else { k.binary(op, y, x) };
                self.add(pool, v);
            }
            4 => {
                let Some(x) = self.pick_value(k, pool, |t| matches!(t, Type::Scalar(_) | Type::Register(_))) else {
                    return;
                };
                let d = k.type_of(x).unwrap().dtype();
                let ops: Vec<UnaryOp> = if d.is_integer() {
                    vec![UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Not]
                } else {
                    UnaryOp::ALL.iter().copied().filter(|&op| op != UnaryOp::Not).collect()
                };
                let op = *self.pick(&ops);
                let v = k.unary(op, x);
                self.add(pool, v);
            }
            5 => {
                let Some(x) = self.pick_value(k, pool, |t| matches!(t, Type::Scalar(_) | Type::Register(_))) else {
                    return;
                };
                let d = k.type_of(x).unwrap().dtype();
                let y = self.scalar_operand(k, pool, d);
                let op = *self.pick(CompareOp::ALL);
                let v = k.compare(op, x, y);
                self.add(pool, v);
            }
            6 => {
                let u1 = dtype("u1");
                let Some(c) =
                    self.pick_value(k, pool, |t| t.dtype() == u1 && matches!(t, Type::Scalar(_) | Type::Register(_)))
                else {
                    return;
                };
                let ty = k.type_of(c).unwrap().clone();
                let d = self.scalar_dtype();
                let (a, b) = match &ty {
                    Type::Register(t) if self.chance(50) => {
                        let t = t.with_dtype(d);
                        let fill = self.literal(d);
                        let a = k.fill(fill, t).unwrap();
                        (Operand::Value(a), self.scalar_operand(k, pool, d))
                    }
                    _ => (self.scalar_operand(k, pool, d), self.scalar_operand(k, pool, d)),
                };
                if a.value().is_none() && b.value().is_none() {
                    return;
                }
                let v = k.select(c, a, b);
                self.add(pool, v);
            }
            7 => {
                let Some(x) = self.pick_value(k, pool, |t| matches!(t, Type::Scalar(_) | Type::Register(_))) else {
                    return;
                };
                let to = if self.chance(50) { self.scalar_dtype() } else { self.tensor_dtype() };
                // Codes of u1…u8 may instead decode through a table of literals.
                let codes =
                    k.type_of(x).ok().map(|t| t.dtype()).filter(|d| matches!(d, DType::Uint(_)) && d.bits() <= 8);
                if let Some(codes) = codes
                    && self.chance(50)
                {
                    let table = (0..codes.num_codes()).map(|_| self.literal(to)).collect();
                    let v = k.lookup(x, table, to);
                    self.add(pool, v);
                    return;
                }
                let v = k.cast(x, to);
                self.add(pool, v);
            }
            8 | 9 => {
                let d = self.tensor_dtype();
                let ty = self.tensor_type(d);
                let value = self.scalar_operand(k, pool, d);
                let v = k.fill(value, ty);
                self.add(pool, v);
            }
            10 => {
                let d = *self.pick(&[dtype("i32"), dtype("u8"), dtype("i16")]);
                let ty = self.tensor_type(d);
                let dim = self.rng.below(ty.shape.len() as u64) as usize;
                let v = k.iota(dim, ty);
                self.add(pool, v);
            }
            11 => {
                // Tensor arithmetic with another tensor of its type, a scalar or a literal.
                let Some(x) = self.pick_value(k, pool, |t| matches!(t, Type::Register(_))) else { return };
                let ty = k.type_of(x).unwrap().clone();
                let d = ty.dtype();
                let y = match self.pick_value(k, pool, |t| *t == ty) {
                    Some(y) if self.chance(50) => Operand::Value(y),
                    _ => self.scalar_operand(k, pool, d),
                };
                let op = if d.is_integer() {
                    *self.pick(&[BinaryOp::Add, BinaryOp::Xor, BinaryOp::Max])
                } else {
                    *self.pick(&[BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Min])
                };
                let v = k.binary(op, x, y);
                self.add(pool, v);
            }
            12 => {
                // Broadcast: each dim grows by 1, 2 or 3; the layout repeats the operand's.
                let Some(x) = self.pick_value(k, pool, |t| matches!(t, Type::Register(_))) else { return };
                let src = k.type_of(x).unwrap().as_register().unwrap().clone();
                let factors: Vec<usize> = src.shape.iter().map(|_| *self.pick(&[1, 2, 3])).collect();
                let shape: Vec<usize> = src.shape.iter().zip(&factors).map(|(a, b)| a * b).collect();
                let layout = match &src.layout {
                    Some(l) if self.chance(70) => Some(RegisterLayout::local(&factors).unwrap().compose(l).unwrap()),
                    _ => None,
                };
                let v = k.broadcast(x, RegisterTensorType::new(src.dtype, shape, layout));
                self.add(pool, v);
            }
            13 => {
                let Some(x) = self.pick_value(k, pool, |t| t.as_register().is_some_and(|r| !r.shape.is_empty())) else {
                    return;
                };
                let rank = k.type_of(x).unwrap().as_register().unwrap().shape.len();
                let mut dims: Vec<usize> = (0..rank).filter(|_| self.chance(50)).collect();
                if dims.is_empty() {
                    dims.push(self.rng.below(rank as u64) as usize);
                }
                let op = *self.pick(ReduceOp::ALL);
                let keep = self.chance(50);
                let v = k.reduce(op, x, &dims, keep);
                self.add(pool, v);
            }
            14 => {
                // Bytes viewed as nibbles: the same threads, twice the slots.
                let outer = self.register_layout(2);
                let c = *self.pick(&[1, 2, 4]);
                let (l8, l4) = if self.chance(80) {
                    (
                        Some(outer.compose(&RegisterLayout::local(&[1, c]).unwrap()).unwrap()),
                        Some(outer.compose(&RegisterLayout::local(&[1, 2 * c]).unwrap()).unwrap()),
                    )
                } else {
                    (None, None)
                };
                let shape8 = l8.as_ref().map_or(vec![4, c], |l| l.shape());
                let mut shape4 = shape8.clone();
                shape4[1] *= 2;
                let fill = self.literal(dtype("u8"));
                let bytes = k.fill(fill, RegisterTensorType::new(dtype("u8"), shape8, l8)).unwrap();
                let v = k.view(bytes, RegisterTensorType::new(dtype("u4"), shape4, l4));
                self.add(pool, v);
            }
            15 => {
                let (m, kk, n) = (*self.pick(SIZES), *self.pick(SIZES), *self.pick(SIZES));
                let (input, acc) = *self.pick(&[("f16", "f32"), ("bf16", "f32"), ("i8", "i32"), ("u4", "i32")]);
                let mut tile = |g: &mut Gen, d: &str, shape: [usize; 2]| {
                    let layout = if g.chance(50) { None } else { Some(RegisterLayout::local(&shape).unwrap()) };
                    let value = g.literal(dtype(d));
                    k.fill(value, RegisterTensorType::new(dtype(d), shape.to_vec(), layout)).unwrap()
                };
                let a = tile(self, input, [m, kk]);
                let b = tile(self, input, [kk, n]);
                let c = tile(self, acc, [m, n]);
                let v = k.dot(a, b, c);
                self.add(pool, v);
            }
            16 => {
                let Some(p) = self.pick_value(k, pool, |t| matches!(t, Type::Pointer(_))) else { return };
                let rank = 1 + self.rng.below(2) as usize;
                let shape: Vec<Operand> = (0..rank).map(|_| self.index_operand(k, pool)).collect();
                let v = if self.chance(50) {
                    let strides: Vec<Operand> = (0..rank).map(|_| self.index_operand(k, pool)).collect();
                    k.global_view(p, &shape, Some(&strides))
                } else {
                    k.global_view(p, &shape, None)
                };
                self.add(pool, v);
            }
            17 => {
                let Some(g) = self.pick_value(k, pool, |t| matches!(t, Type::Global(_))) else { return };
                let view = k.type_of(g).unwrap().as_global().unwrap().clone();
                let ty = match self.maybe_layout(view.rank) {
                    Some(l) => RegisterTensorType::new(view.dtype, l.shape(), Some(l)),
                    None => RegisterTensorType::new(view.dtype, vec![2; view.rank], None),
                };
                let offsets: Vec<Operand> = (0..view.rank).map(|_| self.index_operand(k, pool)).collect();
                let v = k.load_global(g, &offsets, ty);
                self.add(pool, v);
            }
            18 => {
                let Some(g) = self.pick_value(k, pool, |t| matches!(t, Type::Global(_))) else { return };
                let view = k.type_of(g).unwrap().as_global().unwrap().clone();
                let Some(x) = self.pick_value(k, pool, |t| {
                    t.as_register().is_some_and(|r| r.dtype == view.dtype && r.shape.len() == view.rank)
                }) else {
                    return;
                };
                let offsets: Vec<Operand> = (0..view.rank).map(|_| self.index_operand(k, pool)).collect();
                k.store_global(x, g, &offsets).unwrap();
            }
            19 => {
                // A shared tile, often of a global view's element type so that copies fit.
                let view = self.pick_value(k, pool, |t| matches!(t, Type::Global(_)));
                let (d, rank) = match view.map(|g| k.type_of(g).unwrap().as_global().unwrap().clone()) {
                    Some(v) if self.chance(70) => (v.dtype, v.rank),
                    _ => (self.tensor_dtype(), 1 + self.rng.below(2) as usize),
                };
                let shape: Vec<usize> = (0..rank).map(|_| *self.pick(&[2, 4, 8])).collect();
                let layout = self.shared_layout(&shape);
                let v = k.alloc_shared(SharedTensorType::new(d, shape, layout));
                self.add(pool, v);
            }
            20 => {
                // Load a sub-tile, maybe store it back elsewhere.
                let Some(s) = self.pick_value(k, pool, |t| matches!(t, Type::Shared(_))) else { return };
                let tile = k.type_of(s).unwrap().as_shared().unwrap().clone();
                let part: Vec<usize> = tile.shape.iter().map(|&w| if self.chance(50) { w } else { w / 2 }).collect();
                let offsets: Vec<Operand> = tile
                    .shape
                    .iter()
                    .zip(&part)
                    .map(|(&w, &p)| Operand::Literal(Literal::Int(if self.chance(50) { 0 } else { (w - p) as i64 })))
                    .collect();
                let layout = if self.chance(50) { Some(RegisterLayout::spatial(&part).unwrap()) } else { None };
                let x = k.load_shared(s, &offsets, RegisterTensorType::new(tile.dtype, part, layout)).unwrap();
                pool.push(x);
                if self.chance(50) {
                    k.store_shared(x, s, &offsets).unwrap();
                }
            }
            21 => {
                let Some(s) = self.pick_value(k, pool, |t| matches!(t, Type::Shared(_))) else { return };
                let tile = k.type_of(s).unwrap().as_shared().unwrap().clone();
                let Some(g) = self.pick_value(k, pool, |t| {
                    t.as_global().is_some_and(|g| g.dtype == tile.dtype && g.rank == tile.shape.len())
                }) else {
                    return;
                };
                let src: Vec<Operand> = tile.shape.iter().map(|_| self.index_operand(k, pool)).collect();
                let dst = vec![Operand::Literal(Literal::Int(0)); tile.shape.len()];
                k.copy_async(g, &src, s, &dst, &tile.shape).unwrap();
                if self.chance(70) {
                    k.commit_group().unwrap();
                    k.wait_group(self.rng.below(3) as u32).unwrap();
                }
            }
            22 => match self.rng.below(4) {
                0 => k.sync().unwrap(),
                1 => k.commit_group().unwrap(),
                2 => k.wait_group(0).unwrap(),
                _ => {
                    if let Some(s) = self.pick_value(k, pool, |t| matches!(t, Type::Shared(_))) {
                        k.free_shared(s).unwrap();
                        pool.retain(|&v| v != s);
                    }
                }
            },
            23 | 24 if depth < 3 => self.for_loop(k, pool, depth),
            25 if depth < 3 => self.if_else(k, pool, depth),
            _ => {}
        }
    }

    /// Values of the body pool with the same type as each of `types`.
    fn yields_for(&mut self, k: &KernelBuilder, pool: &[ValueId], types: &[Type]) -> Vec<Operand> {
        types
            .iter()
            .map(|ty| {
                let candidates = self.values_where(k, pool, |t| t == ty);
                Operand::Value(*self.pick(&candidates))
            })
            .collect()
    }

    fn for_loop(&mut self, k: &mut KernelBuilder, pool: &mut Vec<ValueId>, depth: usize) {
        let bound_type = dtype(if self.chance(80) { "i32" } else { "u16" });
        let bound = |g: &mut Gen, k: &KernelBuilder| match g.pick_value(k, pool, |t| *t == Type::Scalar(bound_type)) {
            Some(v) if g.chance(50) => Operand::Value(v),
            _ => Operand::Literal(Literal::Int(g.rng.below(8) as i64)),
        };
        let (start, end) = (bound(self, k), bound(self, k));
        // A literal step must be positive (a value step is checked when the loop runs).
        let step = match bound(self, k) {
            Operand::Literal(Literal::Int(s)) => Operand::Literal(Literal::Int(s.max(1))),
            other => other,
        };
        let carried_count = self.rng.below(3) as usize;
        let carriable = self.values_where(k, pool, |t| matches!(t, Type::Scalar(_) | Type::Register(_)));
        if carriable.is_empty() && carried_count > 0 {
            return;
        }
        let inits: Vec<Operand> = (0..carried_count).map(|_| Operand::Value(*self.pick(&carriable))).collect();
        let unroll = if self.chance(30) { Some(1 + self.rng.below(4) as u32) } else { None };
        let count = 1 + self.rng.below(6) as usize;
        let outer = pool.clone();
        let results = k
            .for_range(start, end, step, unroll, &inits, |k, index, carried| {
                let mut inner = outer.clone();
                inner.push(index);
                inner.extend_from_slice(carried);
                self.statements(k, &mut inner, depth + 1, count);
                let types: Vec<Type> = carried.iter().map(|&c| k.type_of(c).unwrap().clone()).collect();
                Ok(self.yields_for(k, &inner, &types))
            })
            .unwrap();
        pool.extend(results);
    }

    fn if_else(&mut self, k: &mut KernelBuilder, pool: &mut Vec<ValueId>, depth: usize) {
        let Some(cond) = self.pick_value(k, pool, |t| matches!(t, Type::Scalar(d) if d.is_integer())) else { return };
        let typed = self.values_where(k, pool, |t| matches!(t, Type::Scalar(_) | Type::Register(_)));
        let result_count = if typed.is_empty() { 0 } else { self.rng.below(3) as usize };
        let types: Vec<Type> = (0..result_count).map(|_| k.type_of(*self.pick(&typed)).unwrap().clone()).collect();
        let (then_count, else_count) = (self.rng.below(5) as usize, self.rng.below(4) as usize);
        let outer = pool.clone();
        let (outer_then, outer_else) = (outer.clone(), outer);
        let gen_cell = std::cell::RefCell::new(&mut *self);
        let results = k
            .if_else(
                cond,
                |k| {
                    let mut g = gen_cell.borrow_mut();
                    let mut inner = outer_then;
                    g.statements(k, &mut inner, depth + 1, then_count);
                    Ok(g.yields_for(k, &inner, &types))
                },
                |k| {
                    let mut g = gen_cell.borrow_mut();
                    let mut inner = outer_else;
                    g.statements(k, &mut inner, depth + 1, else_count);
                    Ok(g.yields_for(k, &inner, &types))
                },
            )
            .unwrap();
        pool.extend(results);
    }
}

fn generate(seed: u64) -> Module {
    let mut g = Gen { rng: Rng::new(seed), layouts: Vec::new(), shared: Vec::new() };
    g.module()
}

/// Which instructions and features a module contains (to check that the generator covers the
/// language).
fn features(module: &Module, into: &mut BTreeSet<String>) {
    for def in &module.layouts {
        into.insert(format!(
            "named {}",
            if matches!(def.layout, LayoutDef::Register(_)) { "register" } else { "shared" }
        ));
    }
    for k in &module.kernels {
        k.walk(|_, inst| {
            into.insert(inst.op.mnemonic().to_string());
            match &inst.op {
                Op::For { carried, .. } if !carried.is_empty() => {
                    into.insert("for with carried values".into());
                }
                Op::If { .. } if !inst.results.is_empty() => {
                    into.insert("if with results".into());
                }
                _ => {}
            }
        });
    }
    let text = print_module(module);
    for marker in [" layout @", " layout layout(", " layout local(", " layout column_", ".swizzle(", "nan", "inf"] {
        if text.contains(marker) {
            into.insert(marker.to_string());
        }
    }
}

#[test]
fn the_generator_covers_the_language() {
    let mut seen = BTreeSet::new();
    for seed in 0..300 {
        features(&generate(seed), &mut seen);
    }
    let mnemonics = [
        "const",
        "block_index",
        "add",
        "neg",
        "lt",
        "select",
        "cast",
        "lookup",
        "fill",
        "iota",
        "view",
        "broadcast",
        "reduce",
        "dot",
        "global_view",
        "load_global",
        "store_global",
        "alloc_shared",
        "free_shared",
        "load_shared",
        "store_shared",
        "copy_async",
        "commit_group",
        "wait_group",
        "sync",
        "for",
        "if",
    ];
    let others = [
        "named register",
        "named shared",
        "for with carried values",
        "if with results",
        " layout @",
        " layout layout(",
        " layout column_",
        ".swizzle(",
        "nan",
        "inf",
    ];
    for feature in mnemonics.iter().chain(&others) {
        assert!(seen.contains(*feature), "the generator never makes `{feature}`; it made {seen:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn generated_programs_round_trip(seed in any::<u64>()) {
        let module = generate(seed);
        let text = print_module(&module);
        let parsed = parse_module(&text);
        prop_assert!(parsed.is_ok(), "does not parse:\n{}\n\n{text}", render("printed", &text, &parsed.clone().unwrap_err()));
        let parsed = parsed.unwrap();
        prop_assert!(parsed == module, "parse(print(m)) != m for:\n{text}");
        prop_assert_eq!(print_module(&parsed), text);
    }
}

// ---------------------------------------------------------------------------------------
// Robustness: the parser never panics, and what it accepts round-trips
// ---------------------------------------------------------------------------------------

/// Pieces of text that mutations insert.
const SNIPPETS: &[&str] = &[
    "%",
    "@",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "=",
    ".",
    "-",
    "0",
    "1",
    "-1",
    "0x",
    "0xff",
    "1e",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "%x",
    "%acc",
    "%n",
    "@a",
    "@acc",
    "layout",
    "kernel",
    "for",
    "if",
    "else",
    "yield",
    "iter",
    "step",
    "to",
    "unroll",
    "add",
    "dot",
    "view",
    "\n",
    " ",
    "//",
    "f16",
    "u4",
    "i32",
    "ptr",
    "local(2)",
    "spatial(",
    "row_major(4,4)",
    ".swizzle(1,1,1)",
    "é",
    "\t",
    "99999999999999999999999",
    "global_view",
    "keep",
    "dims",
    "sync",
    "layout(dims=[[2]], threads=[0], slots=[])",
    "replicated(0)",
    "}\n",
    "{\n",
    "\n}",
];

fn mutate(source: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut chars: Vec<char> = source.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() as u64 + 1) as usize;
        match rng.below(5) {
            0 => {
                let end = (at + 1 + rng.below(8) as usize).min(chars.len());
                chars.drain(at..end);
            }
            1 | 2 => {
                let snippet = SNIPPETS[rng.below(SNIPPETS.len() as u64) as usize];
                chars.splice(at..at, snippet.chars());
            }
            3 => {
                if at < chars.len() {
                    let snippet = SNIPPETS[rng.below(SNIPPETS.len() as u64) as usize];
                    chars.splice(at..at + 1, snippet.chars());
                }
            }
            _ => {
                // Duplicate or drop a whole line.
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len() as u64) as usize;
                    if rng.below(2) == 0 {
                        lines.insert(i, lines[i]);
                    } else {
                        lines.remove(i);
                    }
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

/// Parses anything; whatever parses must round-trip, and every diagnostic has a span inside
/// the text and renders.
fn check_any(source: &str) -> Result<(), TestCaseError> {
    match parse_module(source) {
        Ok(module) => {
            let text = print_module(&module);
            let again = parse_module(&text);
            prop_assert!(again.as_ref() == Ok(&module), "accepted text does not round-trip:\n{source}\n---\n{text}");
        }
        Err(diagnostics) => {
            prop_assert!(!diagnostics.0.is_empty());
            for d in &diagnostics.0 {
                let span = d.span;
                prop_assert!(span.is_some_and(|s| s.start <= s.end && s.end as usize <= source.len()), "{d}");
                prop_assert!(!d.message.is_empty());
            }
            let _ = SourceFile::new("fuzz", source).render_all(&diagnostics.0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_any(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_examples_do_not_panic(example in 0..EXAMPLES.len(), seed in any::<u64>()) {
        check_any(&mutate(EXAMPLES[example].1, seed))?;
    }

    #[test]
    fn token_soup_does_not_panic(pieces in proptest::collection::vec(0..SNIPPETS.len(), 0..80)) {
        let mut source = String::from("kernel k(n: i32, p: ptr f16) grid(n) warps(1) {\n");
        for (i, &p) in pieces.iter().enumerate() {
            source.push_str(SNIPPETS[p]);
            source.push(if i % 7 == 6 { '\n' } else { ' ' });
        }
        check_any(&source)?;
    }

    #[test]
    fn mutated_generated_programs_do_not_panic(seed in any::<u64>()) {
        let text = print_module(&generate(seed));
        check_any(&mutate(&text, seed ^ 0x5eed))?;
    }
}

#[test]
fn pointer_parameters_declare_buffer_shapes() {
    let source = "\
kernel shaped(x: ptr f16[m, cdiv(k, 2)], m: i32, k: i32) grid(m) warps(1) {
    %g = global_view %x [%m, %k] strides [%k, 1]
}
";
    let module = parse_module(source).unwrap();
    let kernel = &module.kernels[0];
    assert_eq!(kernel.params[0].buffer_len(&[None, Some(3), Some(7)]), Some(Ok(12)));
    assert_eq!(kernel.params[1].buffer_len(&[None, Some(3), Some(7)]), None);
    assert_eq!(print_module(&module), source);
    let bad = "kernel bad(x: ptr f16[q], n: f32) grid(1) warps(1) {\n}\n";
    let errors = parse_module(bad).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.0[0].message.contains("`q` is not a parameter of this kernel"), "{errors}");
}
