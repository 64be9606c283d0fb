//! The tuner's search and its table, with measurements supplied by the test (the GPU's are
//! exercised by `anybit tune` in the import test and by `bench/gpu-jit.sh`).

use anybit::frontend::lowbit::{LaunchPlan, WeightFormat};
use anybit::ir::DType;
use anybit::tune::{TABLE_VERSION, TuneError, TuneReport, TuningTable, candidates, tune_with};

/// u4, groups of 128, bf16: its 16- and 64-row kernels take 128 columns per block, like the
/// 8-row one.
fn u4() -> WeightFormat {
    super::linear::format("u4", 128, false, DType::BF16)
}

/// u8 with zero points: its 16- and 64-row kernels take 64 columns per block.
fn u8() -> WeightFormat {
    super::linear::format("u8", 128, true, DType::BF16)
}

fn tune_u4<E>(ms: &[usize], measure: impl FnMut(usize, LaunchPlan) -> Result<f64, E>) -> Result<TuneReport, E> {
    tune_with(&u4(), ms, 4096, 4096, 132, true, measure)
}

#[test]
fn candidates_cover_both_kernels_and_bounded_splits() {
    // Decode: the 8-row kernel only; K = 4096 (64 steps), 64 column tiles on 132 SMs: splits
    // up to 32 (at least two steps each, at most 16 blocks per SM).
    let plans = candidates(&u4(), 1, 4096, 4096, 132, true);
    assert!(plans.iter().all(|p| p.block_m == 8));
    assert_eq!(plans.iter().map(|p| p.splits).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32]);
    // Without the 16- and 64-row kernels, only the 8-row one.
    assert!(candidates(&u4(), 100, 4096, 4096, 132, false).iter().all(|p| p.block_m == 8));
    // Many rows: every kernel; a big grid allows no split.
    let plans = candidates(&u4(), 4096, 14336, 4096, 132, true);
    let one = |block_m| LaunchPlan { block_m, splits: 1 };
    assert_eq!(plans, [one(8), one(16), one(64)]);
    // Short K: one split only; every candidate is a valid plan.
    assert_eq!(candidates(&u4(), 16, 64, 64, 132, true), [one(8), one(16), one(64)]);
    // Blocks are counted with the format's columns per block: u4's 16-row kernel takes 128
    // columns (7 × 32 blocks at M = 100 on 4096 columns: splits up to 8), u8's 64 (7 × 64:
    // up to 4).
    let splits = |f: &WeightFormat, rows| -> Vec<usize> {
        candidates(f, 100, 4096, 4096, 132, true).iter().filter(|p| p.block_m == rows).map(|p| p.splits).collect()
    };
    assert_eq!(splits(&u4(), 16), [1, 2, 4, 8]);
    assert_eq!(splits(&u8(), 16), [1, 2, 4]);
    for (m, n, k) in [(1, 64, 128), (9, 200, 8192), (300, 57344, 8192), (5, 1, 1)] {
        let plans = candidates(&u4(), m, n, k, 108, true);
        assert!(!plans.is_empty());
        assert!(plans.iter().all(|p| p.validate().is_ok()), "{plans:?}");
    }
}

#[test]
fn the_fastest_plan_wins_per_m() {
    // A model of the GPU: splitting helps up to 4 at one row; the 64-row kernel wins at 100.
    let time = |m: usize, plan: LaunchPlan| -> Result<f64, String> {
        let split = (plan.splits as f64 - 4.0).abs() + 10.0;
        let rows = if m > 64 { if plan.block_m == 64 { 1.0 } else { 3.0 } } else { 1.0 };
        Ok(split * rows + plan.block_m as f64 / 100.0)
    };
    let report = tune_u4(&[100, 1, 1, 0], time).unwrap();
    let winners: Vec<(usize, String)> = report.winners.iter().map(|w| (w.m, w.plan.tag())).collect();
    assert_eq!(winners, [(1, "m8k4".to_string()), (100, "m64k4".to_string())]);
    assert_eq!(
        report.measurements.len(),
        candidates(&u4(), 1, 4096, 4096, 132, true).len() + candidates(&u4(), 100, 4096, 4096, 132, true).len()
    );
    assert!(report.seconds >= 0.0);
    // The first error stops the tuning.
    let failing = tune_u4(&[1], |_, plan| if plan.splits == 2 { Err("boom") } else { Ok(1.0) });
    assert_eq!(failing.unwrap_err(), "boom");
}

#[test]
fn tables_record_save_load_and_refuse_bad_files() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("anybit-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("nested/tuning.json");
    // A missing file is an empty table.
    let mut table = TuningTable::load(&path).unwrap();
    assert!(table.shapes.is_empty() && table.version == TABLE_VERSION);
    let report = tune_u4(&[1, 16], |m, p| Ok::<_, ()>((p.splits as f64) * if m == 1 { -1.0 } else { 1.0 })).unwrap();
    table.record("GPU A", "kernel_u4", 4096, 4096, &report);
    table.record("GPU B", "kernel_u4", 4096, 4096, &report);
    // Re-recording replaces the same M.
    let again = tune_u4(&[1], |_, p| Ok::<_, ()>(p.splits as f64)).unwrap();
    table.record("GPU A", "kernel_u4", 4096, 4096, &again);
    table.save(&path).unwrap();
    let loaded = TuningTable::load(&path).unwrap();
    assert_eq!(loaded, table);
    let plans = loaded.plans("GPU A", "kernel_u4", 4096, 4096);
    assert_eq!(plans, [(1, LaunchPlan { block_m: 8, splits: 1 }), (16, LaunchPlan { block_m: 8, splits: 1 })]);
    assert_eq!(loaded.plans("GPU B", "kernel_u4", 4096, 4096)[0], (1, LaunchPlan { block_m: 8, splits: 32 }));
    assert!(loaded.plans("GPU C", "kernel_u4", 4096, 4096).is_empty());
    assert!(loaded.plans("GPU A", "kernel_u4", 4096, 8192).is_empty());
    // Bad files: errors naming the file.
    for (text, what) in [
        ("{", "EOF"),
        ("{\"version\": 9, \"shapes\": []}", "version 9"),
        (
            "{\"version\": 1, \"shapes\": [{\"device\": \"d\", \"kernel\": \"k\", \"k\": 64, \"n\": 64, \"plans\": [{\"m\": 1, \"plan\": \"m48k1\", \"micros\": 1.0}]}]}",
            "`m48k1` is not a launch plan",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let error = TuningTable::load(&path).unwrap_err();
        assert!(matches!(error, TuneError::Malformed { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("tuning.json") && message.contains(what), "{message}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
