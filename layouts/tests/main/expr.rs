//! The expression syntax: round trips, printed forms, errors, and no panics on any input.

use anybit_layouts::{GlobalLayout, LayoutError, ParseErrorKind, RegisterLayout, SharedLayout, ThreadAxis};
use proptest::prelude::*;

use crate::common::{arb_any_layout, arb_product, layout, table};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn printing_then_parsing_gives_the_layout_back(f in arb_any_layout()) {
        let printed = f.to_string();
        let parsed: RegisterLayout = printed.parse().unwrap();
        prop_assert_eq!(&parsed, &f);
        prop_assert!(parsed.raw_eq(&f.canonicalize()));
        // Printed strings are fixed points.
        prop_assert_eq!(parsed.to_string(), printed);
        // The general form round-trips too.
        let general = f.to_general_string();
        prop_assert_eq!(general.parse::<RegisterLayout>().unwrap(), f);
    }

    #[test]
    fn products_of_primitives_parse_to_their_value((text, value) in arb_product()) {
        let parsed: RegisterLayout = text.parse().unwrap();
        prop_assert_eq!(&parsed, &value);
        prop_assert_eq!(table(&parsed), table(&value));
        let printed = parsed.to_string();
        prop_assert_eq!(printed.parse::<RegisterLayout>().unwrap().to_string(), printed);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_strings(s in "\\PC{0,40}") {
        let _ = s.parse::<RegisterLayout>();
        let _ = s.parse::<SharedLayout>();
        let _ = s.parse::<GlobalLayout>();
    }

    #[test]
    fn the_parser_never_panics_on_token_soup(
        s in "[a-z_ 0-9\\(\\)\\[\\],.=:r-]{0,60}"
    ) {
        let _ = s.parse::<RegisterLayout>();
        let _ = s.parse::<SharedLayout>();
        let _ = s.parse::<GlobalLayout>();
    }

    #[test]
    fn the_parser_never_panics_on_mutated_expressions(
        f in arb_any_layout(),
        general in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(vec!['(', ')', '[', ']', ',', '.', '=', 'r', '0', '9', '-', ' ', 'x'])), 1..4),
    ) {
        let mut text: Vec<char> = if general { f.to_general_string() } else { f.to_string() }.chars().collect();
        for (at, op, c) in edits {
            let pos = at.index(text.len() + 1);
            match op {
                0 => text.insert(pos, c),
                1 if pos < text.len() => { text.remove(pos); }
                _ if pos < text.len() => text[pos] = c,
                _ => text.push(c),
            }
        }
        let text: String = text.into_iter().collect();
        if let Err(e) = text.parse::<RegisterLayout>() {
            prop_assert!(e.offset() <= text.len());
            let _ = e.render(&text);
        }
        let _ = text.parse::<SharedLayout>();
    }

    #[test]
    fn shared_layouts_round_trip(
        modes in proptest::collection::vec(proptest::collection::vec((1usize..6, 0usize..50), 0..3), 0..3),
        swizzle in proptest::option::of((0u32..4, 0u32..5, 0u32..4)),
    ) {
        let modes = modes
            .into_iter()
            .map(|d| d.into_iter().map(|(size, stride)| anybit_layouts::StridedMode { size, stride }).collect())
            .collect();
        let mut l = SharedLayout::from_modes(modes).unwrap();
        if let Some((b, m, s)) = swizzle {
            l = l.with_swizzle(anybit_layouts::Swizzle::new(b, m, b + s).unwrap());
        }
        let printed = l.to_string();
        let parsed: SharedLayout = printed.parse().unwrap();
        prop_assert_eq!(&parsed, &l);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn global_layouts_round_trip(
        dims in proptest::collection::vec((1usize..6, -40i64..40), 0..4),
        offset in -100i64..100,
    ) {
        let shape: Vec<usize> = dims.iter().map(|d| d.0).collect();
        let strides: Vec<i64> = dims.iter().map(|d| d.1).collect();
        let l = GlobalLayout::new(&shape, &strides, offset).unwrap();
        let printed = l.to_string();
        let parsed: GlobalLayout = printed.parse().unwrap();
        prop_assert_eq!(&parsed, &l);
        prop_assert_eq!(parsed.to_string(), printed);
    }
}

#[test]
fn canonical_strings_print_back_identically() {
    for text in [
        "local(2,1).spatial(8,4).local(1,2)",
        "spatial(8,4).local(1,2)",
        "column_local(2,2).spatial(8,4).local(1,2)",
        "local(2,1).column_spatial(4,8).local(2,1)",
        "column_spatial(4,8).local(2,1)",
        "replicated(4).spatial(8,4)",
        "spatial(8,1).replicated(4).spatial(1,8)",
        "local()",
        "replicated(2)",
        "local(1,1)",
        "local(1,1).replicated(4)",
        "local(4,1).spatial(8,4).local(1,2)",
        "layout(dims=[[2,2]], threads=[1,0], slots=[])",
        "layout(dims=[[4],[2,2]], threads=[2,r2,0,1], slots=[])",
    ] {
        assert_eq!(layout(text).to_string(), text);
    }
}

#[test]
fn whitespace_is_allowed_between_tokens() {
    assert_eq!(layout(" local( 2 , 1 ) .\tspatial(8,4)\n. local(1,2) "), layout("local(2,1).spatial(8,4).local(1,2)"));
    assert_eq!(
        layout("layout( dims = [ [2,8] , [4,2] ] , threads = [ 1 , 2 ] , slots = [0,3] )"),
        layout("layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])")
    );
}

#[test]
fn the_general_form_is_read_as_documented() {
    let f = layout("layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])");
    // Modes: 0 = dim 0 outer (2, local), 1 = dim 0 inner (8, spatial),
    // 2 = dim 1 outer (4, spatial), 3 = dim 1 inner (2, local).
    assert_eq!(f, layout("local(2,1).spatial(8,4).local(1,2)"));
    assert_eq!(f.to_string(), "local(2,1).spatial(8,4).local(1,2)");
    let r = layout("layout(dims=[[4]], threads=[r2,0], slots=[])");
    assert_eq!(r.num_threads(), 8);
    assert_eq!(r.holders(&[3]).unwrap(), vec![(3, 0), (7, 0)]);
    // A general form can be a factor.
    assert_eq!(layout("local(2).layout(dims=[[2]], threads=[0], slots=[])"), layout("local(2).spatial(2)"));
    assert_eq!(layout("layout(dims=[], threads=[], slots=[])"), RegisterLayout::unit());
}

#[test]
fn layouts_that_are_no_product_print_in_general_form() {
    // Dim 0 has two spatial modes in the wrong thread order.
    use ThreadAxis::Mode;
    let f = RegisterLayout::from_parts(vec![vec![2, 4]], vec![Mode(1), Mode(0)], vec![]).unwrap();
    assert_eq!(f.to_string(), "layout(dims=[[2,4]], threads=[1,0], slots=[])");
    // Reducing dim 1 of a product leaves a replicated axis inside.
    let reduced = layout("spatial(8,4).local(1,2)").reduce(&[1], true).unwrap();
    assert_eq!(reduced.to_string(), "spatial(8,1).replicated(4)");
}

fn error(text: &str) -> anybit_layouts::ParseError {
    text.parse::<RegisterLayout>().unwrap_err()
}

#[test]
fn syntax_errors_carry_positions() {
    let e = error("spatial(8,4]");
    assert_eq!(e.offset(), 11);
    assert_eq!(e.to_string(), "expected ',' or ')' but found ']' at column 12");
    let e = error("local(2,1).spatial(8,4).local(1,2");
    assert_eq!(e.to_string(), "expected ',' or ')' but found end of input at column 34");
    let e = error("spatial(8,4) local(1,2)");
    assert_eq!(e.offset(), 13);
    assert!(e.to_string().starts_with("expected '.' or end of input but found 'local'"));
    let e = error("spatial(8,#)");
    assert_eq!(e.offset(), 10);
    let e = error("");
    assert_eq!(e.to_string(), "expected a layout primitive but found end of input at column 1");
    let e = error("layout(dims=[[2]], threads=[x], slots=[])");
    assert_eq!(e.offset(), 28);
    assert!(e.to_string().contains("a replicated axis such as r4"));
    assert_eq!(
        e.render("layout(dims=[[2]], threads=[x], slots=[])"),
        format!("error: {e}\n  layout(dims=[[2]], threads=[x], slots=[])\n  {}^", " ".repeat(28))
    );
}

#[test]
fn unknown_names_list_the_known_ones() {
    let e = error("local(2).spatail(2)");
    assert_eq!(e.offset(), 9);
    match e.kind() {
        ParseErrorKind::UnknownName { name, known } => {
            assert_eq!(name, "spatail");
            assert!(known.contains(&"spatial") && known.contains(&"column_local"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("known: local, column_local, spatial"));
}

#[test]
fn overflowing_numbers_are_errors() {
    let e = error("local(99999999999999999999999)");
    assert_eq!(e.offset(), 6);
    assert!(matches!(e.kind(), ParseErrorKind::NumberOverflow { .. }));
    let e = error("layout(dims=[], threads=[r99999999999999999999999], slots=[])");
    assert!(matches!(e.kind(), ParseErrorKind::NumberOverflow { .. }));
    // Numbers that fit but whose product does not.
    let e = error("local(4294967296,4294967296)");
    assert!(matches!(e.kind(), ParseErrorKind::Layout(LayoutError::Overflow { .. })));
    let e = error("local(4294967296).local(4294967296)");
    assert_eq!(e.offset(), 18);
    assert!(matches!(e.kind(), ParseErrorKind::Layout(LayoutError::Overflow { .. })));
}

#[test]
fn semantic_errors_point_at_the_offending_factor() {
    let e = error("local(2,3).spatial(4)");
    assert_eq!(e.offset(), 11);
    assert_eq!(e.kind(), &ParseErrorKind::Layout(LayoutError::RankMismatch { left: 2, right: 1 }));
    assert_eq!(e.to_string(), "rank mismatch: 2 vs 1 at column 12");
    let e = error("spatial(8,4).local(0,2)");
    assert_eq!(e.offset(), 13);
    assert!(matches!(e.kind(), ParseErrorKind::Layout(LayoutError::ZeroSize { .. })));
    let e = error("local(2).replicated(0)");
    assert_eq!(e.offset(), 9);
    let e = error("spatial(2).layout(dims=[[2]], threads=[0], slots=[0])");
    assert_eq!(e.offset(), 11);
    assert!(matches!(e.kind(), ParseErrorKind::Layout(LayoutError::InvalidParts { .. })));
    use std::error::Error;
    assert!(e.source().is_some());
}

#[test]
fn shared_and_global_syntax() {
    let s: SharedLayout = "row_major(64,32).swizzle(3,4,3)".parse().unwrap();
    assert_eq!(s.shape(), vec![64, 32]);
    assert_eq!(s.swizzle().map(|w| (w.bits(), w.base(), w.shift())), Some((3, 4, 3)));
    assert_eq!(s.to_string(), "row_major(64,32).swizzle(3,4,3)");
    assert_eq!("strided([64,32],[32,1])".parse::<SharedLayout>().unwrap().to_string(), "row_major(64,32)");
    assert_eq!("strided([64, 32], [1, 64])".parse::<SharedLayout>().unwrap().to_string(), "column_major(64,32)");
    assert_eq!("modes([[8:1,8:64],[64:8]])".parse::<SharedLayout>().unwrap().offset(&[9, 2]).unwrap(), 64 + 1 + 16);
    let e = "row_major(64,32).swizzle(3,4,2)".parse::<SharedLayout>().unwrap_err();
    assert_eq!(e.offset(), 17);
    assert!(matches!(e.kind(), ParseErrorKind::Layout(LayoutError::InvalidSwizzle { .. })));
    let e = "rowmajor(4)".parse::<SharedLayout>().unwrap_err();
    assert!(e.to_string().contains("known: row_major, column_major, strided, modes"));

    let g: GlobalLayout = "strided([64,32],[32,-1]).offset(-5)".parse().unwrap();
    assert_eq!(g.offset(&[1, 2]).unwrap(), 32 - 2 - 5);
    assert_eq!(g.to_string(), "strided([64,32],[32,-1]).offset(-5)");
    assert_eq!("row_major(4,8)".parse::<GlobalLayout>().unwrap().strides(), &[8, 1]);
    assert_eq!(
        "strided([4,8],[1,4]).offset(3)".parse::<GlobalLayout>().unwrap().to_string(),
        "column_major(4,8).offset(3)"
    );
    let e = "strided([4],[99999999999999999999])".parse::<GlobalLayout>().unwrap_err();
    assert!(matches!(e.kind(), ParseErrorKind::NumberOverflow { .. }));
    let e = "strided([4,2],[1])".parse::<GlobalLayout>().unwrap_err();
    assert_eq!(e.offset(), 0);
    assert!(matches!(e.kind(), ParseErrorKind::Layout(LayoutError::RankMismatch { .. })));
}

#[test]
fn printed_forms_snapshot() {
    let printed: Vec<String> = [
        "spatial(8,4).local(1,2)",
        "column_spatial(4,8).local(2,1)",
        "local(2,1).column_spatial(4,8).local(2,1)",
        "spatial(2,2).column_local(2,2)",
        "spatial(4).spatial(2)",
        "replicated(2).spatial(2,2).replicated(2)",
    ]
    .iter()
    .map(|t| {
        let l = layout(t);
        format!("{t} => {l} | {}", l.to_general_string())
    })
    .collect();
    insta::assert_snapshot!(printed.join("\n"));
}
