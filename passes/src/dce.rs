//! `dce`: dead code elimination.
//!
//! An instruction is live if it has a side effect (memory, synchronization, control flow) or
//! defines a value a live instruction (or a live block's `yield`) uses. Everything else is
//! removed and the kernel is rebuilt with renumbered handles.

use std::collections::HashSet;

use anybit_ir::program::{InstId, Kernel, Module, Operand, ValueDef};

use crate::rebuild::retain_insts;

/// Removes instructions whose results nothing uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadCodeElimination;

/// The live instructions of a kernel.
pub fn live_instructions(kernel: &Kernel) -> HashSet<InstId> {
    let mut live: HashSet<InstId> = HashSet::new();
    let mut work: Vec<InstId> =
        kernel.insts.iter().filter(|(_, inst)| inst.op.has_side_effects()).map(|(id, _)| id).collect();
    while let Some(id) = work.pop() {
        if !live.insert(id) {
            continue;
        }
        let Some(inst) = kernel.insts.get(id) else { continue };
        let nested_yields = inst.op.blocks().into_iter().flat_map(|b| b.yields.iter().copied());
        for operand in inst.op.operands().into_iter().chain(nested_yields) {
            let Operand::Value(v) = operand else { continue };
            if let Some(data) = kernel.values.get(v) {
                match data.def {
                    ValueDef::Result(def, _) | ValueDef::LoopIndex(def) | ValueDef::LoopCarried(def, _) => {
                        work.push(def)
                    }
                    ValueDef::Param(_) => {}
                }
            }
        }
    }
    live
}

impl crate::manager::Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn description(&self) -> &'static str {
        "removes instructions whose results nothing uses"
    }

    fn run(&self, module: &mut Module) -> Result<(), String> {
        for kernel in &mut module.kernels {
            let live = live_instructions(kernel);
            if live.len() < kernel.insts.len() {
                *kernel = retain_insts(kernel, &|id| live.contains(&id))?;
            }
        }
        Ok(())
    }
}
