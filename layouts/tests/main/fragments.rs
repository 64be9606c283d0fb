//! The PTX fragment layouts, checked element by element against the fragment tables of
//! the PTX ISA, written here independently as formulas.

use anybit_layouts::{LdmatrixCount, MmaInstruction, MmaOperand, RegisterLayout, all_fragments, ldmatrix_fragment};

fn group_id(lane: usize) -> usize {
    lane >> 2
}

fn thread_id_in_group(lane: usize) -> usize {
    lane % 4
}

/// Checks that `layout` has 32 lanes and `elements` slots, and that element `i` of `lane`
/// is `expected(lane, i)`.
fn check(
    layout: &RegisterLayout,
    shape: [usize; 2],
    elements: usize,
    expected: impl Fn(usize, usize) -> (usize, usize),
) {
    assert_eq!(layout.shape(), shape.to_vec());
    assert_eq!(layout.num_threads(), 32);
    assert_eq!(layout.num_slots(), elements);
    for lane in 0..32 {
        for i in 0..elements {
            let (row, col) = expected(lane, i);
            assert_eq!(layout.map(lane, i).unwrap(), vec![row, col], "{layout}: lane {lane}, element {i}");
        }
    }
}

/// m16n8k16 .f16/.bf16 A, a0..a7.
fn m16n8k16_a(lane: usize, i: usize) -> (usize, usize) {
    let row = if [0, 1, 4, 5].contains(&i) { group_id(lane) } else { group_id(lane) + 8 };
    let col = thread_id_in_group(lane) * 2 + (i & 1) + if i >= 4 { 8 } else { 0 };
    (row, col)
}

/// m16n8k16 B, b0..b3: (k, n).
fn m16n8k16_b(lane: usize, i: usize) -> (usize, usize) {
    let row = thread_id_in_group(lane) * 2 + (i & 1) + if i >= 2 { 8 } else { 0 };
    (row, group_id(lane))
}

/// m16n8k16 and m16n8k32 C/D, c0..c3.
fn m16n8_c(lane: usize, i: usize) -> (usize, usize) {
    let row = if i < 2 { group_id(lane) } else { group_id(lane) + 8 };
    (row, thread_id_in_group(lane) * 2 + (i & 1))
}

/// m16n8k32 .s8/.u8 A, a0..a15.
fn m16n8k32_a(lane: usize, i: usize) -> (usize, usize) {
    let row = if (0..4).contains(&i) || (8..12).contains(&i) { group_id(lane) } else { group_id(lane) + 8 };
    let col = thread_id_in_group(lane) * 4 + (i & 3) + if i >= 8 { 16 } else { 0 };
    (row, col)
}

/// m16n8k32 B, b0..b7: (k, n).
fn m16n8k32_b(lane: usize, i: usize) -> (usize, usize) {
    let row = thread_id_in_group(lane) * 4 + (i & 3) + if i >= 4 { 16 } else { 0 };
    (row, group_id(lane))
}

#[test]
fn mma_m16n8k16_fragments_match_the_isa() {
    for instruction in [MmaInstruction::M16N8K16F16, MmaInstruction::M16N8K16Bf16] {
        assert_eq!(instruction.mnk(), (16, 8, 16));
        check(&instruction.fragment(MmaOperand::A), [16, 16], 8, m16n8k16_a);
        check(&instruction.fragment(MmaOperand::B), [16, 8], 4, m16n8k16_b);
        check(&instruction.fragment(MmaOperand::Accumulator), [16, 8], 4, m16n8_c);
    }
}

#[test]
fn mma_m16n8k32_fragments_match_the_isa() {
    for instruction in [MmaInstruction::M16N8K32S8, MmaInstruction::M16N8K32U8] {
        assert_eq!(instruction.mnk(), (16, 8, 32));
        check(&instruction.fragment(MmaOperand::A), [16, 32], 16, m16n8k32_a);
        check(&instruction.fragment(MmaOperand::B), [32, 8], 8, m16n8k32_b);
        check(&instruction.fragment(MmaOperand::Accumulator), [16, 8], 4, m16n8_c);
    }
}

#[test]
fn ldmatrix_fragments_match_the_isa() {
    for count in LdmatrixCount::ALL {
        let n = count.num_matrices();
        for transposed in [false, true] {
            let layout = ldmatrix_fragment(count, transposed);
            // Register j holds matrix j (rows [8j, 8j+8)); element e of the register.
            check(&layout, [8 * n, 8], 2 * n, |lane, i| {
                let (j, e) = (i / 2, i % 2);
                let (row, col) =
                    if transposed { (2 * (lane % 4) + e, lane / 4) } else { (lane / 4, 2 * (lane % 4) + e) };
                (8 * j + row, col)
            });
        }
    }
}

#[test]
fn fragments_print_as_the_expected_products() {
    let printed = |i: MmaInstruction, op| i.fragment(op).to_string();
    let f16 = MmaInstruction::M16N8K16F16;
    let s8 = MmaInstruction::M16N8K32S8;
    assert_eq!(printed(f16, MmaOperand::A), "column_local(2,2).spatial(8,4).local(1,2)");
    assert_eq!(printed(f16, MmaOperand::B), "local(2,1).column_spatial(4,8).local(2,1)");
    assert_eq!(printed(f16, MmaOperand::Accumulator), "local(2,1).spatial(8,4).local(1,2)");
    assert_eq!(printed(s8, MmaOperand::A), "column_local(2,2).spatial(8,4).local(1,4)");
    assert_eq!(printed(s8, MmaOperand::B), "local(2,1).column_spatial(4,8).local(4,1)");
    assert_eq!(printed(s8, MmaOperand::Accumulator), "local(2,1).spatial(8,4).local(1,2)");
    assert_eq!(ldmatrix_fragment(LdmatrixCount::X1, false).to_string(), "spatial(8,4).local(1,2)");
    assert_eq!(ldmatrix_fragment(LdmatrixCount::X1, true).to_string(), "column_spatial(4,8).local(2,1)");
    assert_eq!(ldmatrix_fragment(LdmatrixCount::X4, false).to_string(), "local(4,1).spatial(8,4).local(1,2)");
    assert_eq!(ldmatrix_fragment(LdmatrixCount::X2, true).to_string(), "local(2,1).column_spatial(4,8).local(2,1)");
}

#[test]
fn ldmatrix_x4_is_four_single_matrices() {
    for transposed in [false, true] {
        let x4 = ldmatrix_fragment(LdmatrixCount::X4, transposed);
        let x1 = ldmatrix_fragment(LdmatrixCount::X1, transposed);
        assert_eq!(x4.divide_right(&x1).unwrap(), RegisterLayout::local(&[4, 1]).unwrap());
    }
}

#[test]
fn all_fragments_are_named_and_distinct_by_name() {
    let all = all_fragments();
    assert_eq!(all.len(), 4 * 3 + 3 * 2);
    let names: std::collections::BTreeSet<_> = all.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), all.len());
    assert!(names.contains("mma.m16n8k16.f16.A"));
    assert!(names.contains("ldmatrix.m8n8.x4.trans.b16"));
    for fragment in &all {
        assert_eq!(fragment.layout.num_threads(), 32, "{}", fragment.name);
        assert!(!fragment.layout.is_replicated(), "{}", fragment.name);
        // The printed form parses back to the same layout.
        assert_eq!(fragment.layout.to_string().parse::<RegisterLayout>().unwrap(), fragment.layout);
    }
}
