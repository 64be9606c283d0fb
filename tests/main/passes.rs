//! Translation validation: for every kernel case (every example, the low-bit matmul of every
//! weight type) and every pass, the interpreter gives bit-identical outputs before and after
//! the pass; golden snapshots of the IR after each pass of the -O2 pipeline for every example.

use anybit::ir::interp::{Arg, RunOptions, run_kernel};
use anybit::ir::verify::VerifyOptions;
use anybit::passes::manager::registry;
use anybit::passes::{OptLevel, PassManager};
use anybit_bench::cases::{Sizes, all_cases};

fn outputs(args: &[Arg]) -> Vec<Vec<u8>> {
    args.iter().filter_map(Arg::buffer).map(|b| b.bytes().to_vec()).collect()
}

#[test]
fn every_pass_preserves_every_case() {
    let cases = all_cases(Sizes::Small, 99).unwrap();
    for pass in registry() {
        for case in &cases {
            let mut module = case.module.clone();
            PassManager::new(vec![anybit::passes::manager::pass(pass.name()).unwrap()])
                .verify_each(Some(VerifyOptions::strict()))
                .run(&mut module)
                .unwrap_or_else(|e| panic!("{} on {}: {e}", pass.name(), case.name));
            for run in &case.runs {
                let (mut before, mut after) = (run.args.clone(), run.args.clone());
                run_kernel(&case.module.kernels[0], &mut before, &RunOptions::default()).unwrap();
                run_kernel(&module.kernels[0], &mut after, &RunOptions::default())
                    .unwrap_or_else(|e| panic!("{} on {} ({}): {e}", pass.name(), case.name, run.label));
                assert!(outputs(&before) == outputs(&after), "{} changes {} ({})", pass.name(), case.name, run.label);
            }
        }
    }
}

/// Clears every layout of a module that only distributes work: named layouts, value types, and
/// the types written in instructions. In a kernel with a `view`, the views' and global loads'
/// layouts stay: they say which bits of memory become which elements (the low-bit matmul's
/// re-packed weights, its x in the tensor cores' k order), which is part of what it computes.
fn strip_layouts(module: &mut anybit::ir::program::Module) {
    use anybit::ir::program::{Op, Type};
    module.layouts.clear();
    for kernel in &mut module.kernels {
        let meaningful = |op: &Op| matches!(op, Op::View { .. } | Op::LoadGlobal { .. });
        let mut has_view = false;
        kernel.walk(|_, inst| has_view |= matches!(inst.op, Op::View { .. }));
        let mut kept = std::collections::HashSet::new();
        if has_view {
            kernel.walk(|_, inst| {
                if meaningful(&inst.op) {
                    kept.extend(inst.results.iter().copied());
                }
            });
        }
        let ids: Vec<_> = kernel.values.iter().map(|(id, _)| id).filter(|id| !kept.contains(id)).collect();
        for id in ids {
            match &mut kernel.values[id].ty {
                Type::Register(t) => t.layout = None,
                Type::Shared(t) => t.layout = None,
                _ => {}
            }
        }
        let ids: Vec<_> = kernel.insts.iter().map(|(id, _)| id).collect();
        for id in ids {
            if has_view && meaningful(&kernel.insts[id].op) {
                continue;
            }
            match &mut kernel.insts[id].op {
                Op::Fill { ty, .. }
                | Op::Iota { ty, .. }
                | Op::View { ty, .. }
                | Op::Broadcast { ty, .. }
                | Op::LoadGlobal { ty, .. }
                | Op::LoadShared { ty, .. } => ty.layout = None,
                Op::AllocShared { ty } => ty.layout = None,
                Op::Reduce { layout, .. } => *layout = None,
                _ => {}
            }
        }
    }
}

/// With every layout removed, the default pipeline infers them all, the result verifies
/// strictly, and every case computes exactly what the hand-annotated kernel computes.
#[test]
fn inferred_layouts_compute_the_same_as_written_ones() {
    for case in all_cases(Sizes::Small, 5).unwrap() {
        let mut module = case.module.clone();
        strip_layouts(&mut module);
        assert!(anybit::ir::verify::verify_module(&module, &VerifyOptions::strict()).is_err(), "{}", case.name);
        // A kernel whose views kept their layouts has values whose types now disagree with
        // what their operands give, until inference has run: infer first, then the pipeline.
        PassManager::from_names(&["infer-layouts"])
            .unwrap()
            .verify_each(None)
            .run(&mut module)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        PassManager::for_level(OptLevel::O2)
            .verify_each(Some(VerifyOptions::default()))
            .run(&mut module)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        anybit::ir::verify::verify_module(&module, &VerifyOptions::strict()).unwrap();
        for run in &case.runs {
            let (mut before, mut after) = (run.args.clone(), run.args.clone());
            run_kernel(&case.module.kernels[0], &mut before, &RunOptions::default()).unwrap();
            run_kernel(&module.kernels[0], &mut after, &RunOptions::default()).unwrap();
            assert!(outputs(&before) == outputs(&after), "inferred layouts change {} ({})", case.name, run.label);
        }
    }
}

#[test]
fn ir_after_each_pass_of_the_full_pipeline() {
    for case in all_cases(Sizes::Small, 1).unwrap().iter().take(4) {
        let mut module = case.module.clone();
        let mut snapshots = Vec::new();
        PassManager::for_level(OptLevel::O2)
            .verify_each(Some(VerifyOptions::strict()))
            .after_each(Box::new(|pass, module| {
                snapshots.push(format!("// after {pass}\n{}", anybit::ir::text::print_module(module)))
            }))
            .run(&mut module)
            .unwrap();
        insta::assert_snapshot!(format!("passes_{}", case.name), snapshots.join("\n"));
    }
}
