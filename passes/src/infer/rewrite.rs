//! Writing the chosen layouts back: into the `ty` fields of the instructions that carry one,
//! `reduce`'s layout, and every value's type.

use anybit_ir::program::{InstId, Kernel, Op, Type, ValueData, ValueId};
use anybit_layouts::{RegisterLayout, SharedLayout};

use super::analysis::{Analysis, value_name};
use super::solve::Assigned;

/// Fills every missing layout of `kernel` with the classes' layouts and `shared` (the layouts
/// of the shared tiles allocated without one, by instruction).
pub(super) fn apply(
    kernel: &mut Kernel,
    analysis: &Analysis,
    assigned: &[Option<Assigned>],
    shared: &[(InstId, SharedLayout)],
) -> Result<(), String> {
    let layout_of =
        |v: ValueId| -> Result<RegisterLayout, String> {
            analysis.class(v).and_then(|c| assigned.get(c).cloned().flatten()).map(|a| a.layout).ok_or_else(|| {
                format!("kernel `{}`: no layout was inferred for {}", kernel.name, value_name(kernel, v))
            })
        };
    let mut register = Vec::new();
    for (v, data) in kernel.values.iter() {
        if let Type::Register(t) = &data.ty
            && t.layout.is_none()
        {
            register.push((v, layout_of(v)?));
        }
    }
    let mut written = Vec::new();
    for (id, inst) in kernel.insts.iter() {
        let needs = match &inst.op {
            Op::Fill { ty, .. }
            | Op::Iota { ty, .. }
            | Op::View { ty, .. }
            | Op::Broadcast { ty, .. }
            | Op::LoadGlobal { ty, .. }
            | Op::LoadShared { ty, .. } => ty.layout.is_none(),
            Op::Reduce { layout, .. } => layout.is_none(),
            _ => false,
        };
        if needs && let Some(&result) = inst.results.first() {
            written.push((id, layout_of(result)?));
        }
    }
    for (v, layout) in register {
        if let Some(ValueData { ty: Type::Register(t), .. }) = kernel.values.get_mut(v) {
            t.layout = Some(layout);
        }
    }
    for (id, layout) in written {
        let Some(inst) = kernel.insts.get_mut(id) else { continue };
        match &mut inst.op {
            Op::Fill { ty, .. }
            | Op::Iota { ty, .. }
            | Op::View { ty, .. }
            | Op::Broadcast { ty, .. }
            | Op::LoadGlobal { ty, .. }
            | Op::LoadShared { ty, .. } => ty.layout = Some(layout),
            Op::Reduce { layout: slot, .. } => *slot = Some(layout),
            _ => {}
        }
    }
    for (id, layout) in shared {
        let Some(inst) = kernel.insts.get_mut(*id) else { continue };
        if let Op::AllocShared { ty } = &mut inst.op {
            ty.layout = Some(layout.clone());
        }
        let results = inst.results.clone();
        for r in results {
            if let Some(ValueData { ty: Type::Shared(t), .. }) = kernel.values.get_mut(r) {
                t.layout = Some(layout.clone());
            }
        }
    }
    Ok(())
}
