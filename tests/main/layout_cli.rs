//! `anybit layout`.

use anybit::layouts::RegisterLayout;

use super::run::{failure, success};

#[test]
fn summaries() {
    insta::assert_snapshot!("layout_mma_c", success(&["layout", "local(2,1).spatial(8,4).local(1,2)"]));
    insta::assert_snapshot!("layout_replicated", success(&["layout", "replicated(2).column_spatial(4,8).local(2,1)"]));
    insta::assert_snapshot!(
        "layout_general",
        success(&["layout", "layout(dims=[[2,2],[4]], threads=[1,r2,0], slots=[2])"])
    );
}

#[test]
fn table_lists_every_thread_and_slot() {
    let expr = "local(2,1).spatial(8,4).local(1,2)";
    let layout: RegisterLayout = expr.parse().unwrap();
    let out = success(&["layout", expr, "--table"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), layout.num_threads() * layout.num_slots());
    for line in lines {
        let numbers: Vec<usize> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        let (thread, slot, coords) = (numbers[0], numbers[1], &numbers[2..]);
        assert_eq!(layout.map(thread, slot).unwrap(), coords, "{line}");
    }
    insta::assert_snapshot!("table_ldmatrix_trans", success(&["layout", "column_spatial(4,8).local(2,1)", "--table"]));
}

#[test]
fn bad_expressions_fail_with_a_position() {
    insta::assert_snapshot!("missing_number", failure(&["layout", "spatial(8,4,]"]));
    insta::assert_snapshot!("rank_mismatch", failure(&["layout", "local(2,3).spatial(4)"]));
    insta::assert_snapshot!("unknown_primitive", failure(&["layout", "spacial(8,4)"]));
    insta::assert_snapshot!("zero_size", failure(&["layout", "local(0)"]));
}
