//! Mistakes `kernel!` turns into compile errors, with their expected messages
//! (`tests/ui/*.stderr`; `TRYBUILD=overwrite` regenerates them after a deliberate change).

#[test]
fn compile_errors_point_at_the_mistake() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
