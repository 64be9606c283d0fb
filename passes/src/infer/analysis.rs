//! The layout constraints of a kernel, read off its instructions: *classes* of register values
//! that must share one layout (operands and results of elementwise instructions, `select`,
//! `cast`, compares, a `dot`'s c and result, a loop's initial, carried, yielded and result
//! values, an `if`'s yields and results), the relations between classes (`view`, `reduce`,
//! `broadcast`), the `dot`s, the loads, the layouts the author wrote, and the shared tiles
//! without a layout.

use anybit_ir::program::{InstId, Kernel, Op, Operand, Type, ValueDef, ValueId};
use anybit_layouts::RegisterLayout;

/// The index of a class.
pub(super) type ClassId = usize;

/// Register values that must share one layout.
#[derive(Clone, Debug)]
pub(super) struct Class {
    /// The tile shape of every member.
    pub shape: Vec<usize>,
    /// The members, in program order of their definitions.
    pub members: Vec<ValueId>,
    /// Program position of the first definition (classes are visited in this order).
    pub order: usize,
    /// The widest element type of a member, in bits.
    pub max_bits: u32,
    /// The widest register carrier of a member, in bits (the LLVM backend keeps f16 and bf16
    /// in 16 bits, every other type in 32).
    pub carrier_bits: u32,
    /// The loads defining members.
    pub loads: Vec<Load>,
    /// Whether the author wrote the layout of a member.
    pub pinned: bool,
}

/// A load defining a member of a class.
#[derive(Clone, Copy, Debug)]
pub(super) struct Load {
    /// The instruction.
    pub inst: InstId,
    /// `load_global` (else `load_shared`).
    pub global: bool,
    /// Bits of the loaded elements.
    pub bits: u32,
}

/// `%dst = view %src`.
#[derive(Clone, Debug)]
pub(super) struct ViewEdge {
    pub inst: InstId,
    pub src: ClassId,
    pub dst: ClassId,
    pub src_bits: u32,
    pub dst_bits: u32,
    pub src_shape: Vec<usize>,
    pub dst_shape: Vec<usize>,
}

/// `%dst = reduce … %src dims […] [keep]`.
#[derive(Clone, Debug)]
pub(super) struct ReduceEdge {
    pub inst: InstId,
    pub src: ClassId,
    pub dst: ClassId,
    pub dims: Vec<usize>,
    pub keep_dims: bool,
    pub src_shape: Vec<usize>,
}

/// `%dst = broadcast %src`.
#[derive(Clone, Debug)]
pub(super) struct BroadcastEdge {
    pub inst: InstId,
    pub src: ClassId,
    pub dst: ClassId,
    pub src_shape: Vec<usize>,
}

/// `dot %a, %b, %c`.
#[derive(Clone, Copy, Debug)]
pub(super) struct DotSite {
    pub inst: InstId,
    pub a: ValueId,
    pub b: ValueId,
    pub c: ValueId,
}

/// A layout the author wrote in an instruction.
#[derive(Clone, Debug)]
pub(super) struct Pin {
    pub inst: InstId,
    pub value: ValueId,
    pub class: ClassId,
    pub layout: RegisterLayout,
}

/// Two values that share a layout because of an instruction (for error messages).
#[derive(Clone, Copy, Debug)]
pub(super) struct Link {
    pub a: ValueId,
    pub b: ValueId,
    pub inst: InstId,
}

/// A shared tile allocated without a layout.
#[derive(Clone, Debug)]
pub(super) struct SharedTile {
    pub inst: InstId,
    pub shape: Vec<usize>,
    pub bits: u32,
}

/// Everything inference needs to know about a kernel.
#[derive(Clone, Debug, Default)]
pub(super) struct Analysis {
    /// The class of each register value, by value index.
    pub class_of: Vec<Option<ClassId>>,
    pub classes: Vec<Class>,
    pub views: Vec<ViewEdge>,
    pub reduces: Vec<ReduceEdge>,
    pub broadcasts: Vec<BroadcastEdge>,
    pub dots: Vec<DotSite>,
    pub pins: Vec<Pin>,
    pub links: Vec<Link>,
    pub shared: Vec<SharedTile>,
}

/// Union-find over value indices.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller index stays the root: classes keep a stable representative.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

/// `%name`, or a placeholder for a foreign handle.
pub(super) fn value_name(kernel: &Kernel, v: ValueId) -> String {
    kernel.values.get(v).map_or_else(|| format!("value #{}", v.index()), |data| format!("%{}", data.name))
}

/// `` `add` (defining %c) ``, or `` `store_global` (instruction #7) `` when it defines nothing.
pub(super) fn inst_name(kernel: &Kernel, id: InstId) -> String {
    let Some(inst) = kernel.insts.get(id) else { return format!("instruction #{}", id.index()) };
    let names: Vec<String> = inst.results.iter().map(|&r| value_name(kernel, r)).collect();
    if names.is_empty() {
        format!("`{}` (instruction #{})", inst.op.mnemonic(), id.index())
    } else {
        format!("`{}` (defining {})", inst.op.mnemonic(), names.join(", "))
    }
}

/// Bits of the register that holds one element of `dtype` in the LLVM backend.
fn carrier_bits(dtype: anybit_ir::DType) -> u32 {
    if dtype == anybit_ir::DType::F16 || dtype == anybit_ir::DType::BF16 { 16 } else { 32 }
}

fn register_shape(kernel: &Kernel, v: ValueId) -> Option<(&[usize], u32)> {
    match kernel.values.get(v).map(|d| &d.ty) {
        Some(Type::Register(t)) => Some((&t.shape, t.dtype.bits())),
        _ => None,
    }
}

impl Analysis {
    /// Reads the constraints of `kernel`. Fails when values that must share a layout have
    /// different shapes (a kernel that does not verify).
    pub(super) fn of(kernel: &Kernel) -> Result<Analysis, String> {
        let n = kernel.values.len();
        let is_register = |v: ValueId| register_shape(kernel, v).is_some();
        // Program positions.
        let mut inst_position = vec![usize::MAX; kernel.insts.len()];
        let mut order = Vec::new();
        kernel.walk(|id, _| {
            if let Some(p) = inst_position.get_mut(id.index()) {
                *p = order.len();
            }
            order.push(id);
        });
        let value_position = |v: ValueId| -> usize {
            match kernel.values.get(v).map(|d| d.def) {
                Some(ValueDef::Result(i, _) | ValueDef::LoopIndex(i) | ValueDef::LoopCarried(i, _)) => {
                    inst_position.get(i.index()).copied().unwrap_or(usize::MAX)
                }
                _ => 0,
            }
        };

        // Same-layout links.
        let mut links: Vec<Link> = Vec::new();
        let mut link_group = |group: &[Option<ValueId>], inst: InstId| {
            let members: Vec<ValueId> = group.iter().flatten().copied().filter(|&v| is_register(v)).collect();
            for pair in members.windows(2) {
                links.push(Link { a: pair[0], b: pair[1], inst });
            }
        };
        for &id in &order {
            let Some(inst) = kernel.insts.get(id) else { continue };
            let result = inst.results.first().copied();
            match &inst.op {
                Op::Unary { x, .. } | Op::Cast { x, .. } => link_group(&[x.value(), result], id),
                Op::Lookup { x, .. } => link_group(&[Some(*x), result], id),
                Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => {
                    link_group(&[lhs.value(), rhs.value(), result], id)
                }
                Op::Select { cond, on_true, on_false } => {
                    link_group(&[cond.value(), on_true.value(), on_false.value(), result], id)
                }
                Op::Fma { a, b, c } => link_group(&[a.value(), b.value(), c.value(), result], id),
                Op::Dot { c, .. } => link_group(&[Some(*c), result], id),
                Op::For { carried, inits, body, .. } => {
                    for (i, &carried) in carried.iter().enumerate() {
                        let init = inits.get(i).and_then(|o| o.value());
                        let next = body.yields.get(i).and_then(|o| o.value());
                        link_group(&[init, Some(carried), next, inst.results.get(i).copied()], id);
                    }
                }
                Op::If { then_body, else_body, .. } => {
                    for (i, &r) in inst.results.iter().enumerate() {
                        let yielded = |b: &anybit_ir::program::Block| b.yields.get(i).and_then(|o: &Operand| o.value());
                        link_group(&[yielded(then_body), yielded(else_body), Some(r)], id);
                    }
                }
                _ => {}
            }
        }
        let mut uf = UnionFind { parent: (0..n).collect() };
        for link in &links {
            if link.a.index() < n && link.b.index() < n {
                uf.union(link.a.index(), link.b.index());
            }
        }

        // Classes, in program order of their first definition.
        let mut members: Vec<(usize, ValueId)> =
            kernel.values.iter().filter(|(v, _)| is_register(*v)).map(|(v, _)| (value_position(v), v)).collect();
        members.sort_by_key(|&(p, v)| (p, v.index()));
        let mut class_of: Vec<Option<ClassId>> = vec![None; n];
        let mut root_class: Vec<Option<ClassId>> = vec![None; n];
        let mut classes: Vec<Class> = Vec::new();
        for &(position, v) in &members {
            let Some((shape, bits)) = register_shape(kernel, v) else { continue };
            let root = uf.find(v.index());
            let class = match root_class[root] {
                Some(c) => c,
                None => {
                    classes.push(Class {
                        shape: shape.to_vec(),
                        members: Vec::new(),
                        order: position,
                        max_bits: 0,
                        carrier_bits: 0,
                        loads: Vec::new(),
                        pinned: false,
                    });
                    root_class[root] = Some(classes.len() - 1);
                    classes.len() - 1
                }
            };
            let entry = &mut classes[class];
            if entry.shape != shape {
                return Err(format!(
                    "kernel `{}`: {} and {} must share one layout but have different shapes {:?} and {:?}",
                    kernel.name,
                    value_name(kernel, entry.members.first().copied().unwrap_or(v)),
                    value_name(kernel, v),
                    entry.shape,
                    shape
                ));
            }
            entry.members.push(v);
            entry.max_bits = entry.max_bits.max(bits);
            if let Some(Type::Register(t)) = kernel.values.get(v).map(|d| &d.ty) {
                entry.carrier_bits = entry.carrier_bits.max(carrier_bits(t.dtype));
            }
            class_of[v.index()] = Some(class);
        }

        let mut analysis = Analysis { class_of, classes, links, ..Analysis::default() };
        for &id in &order {
            let Some(inst) = kernel.insts.get(id) else { continue };
            let result = inst.results.first().copied();
            let result_class = result.and_then(|r| analysis.class(r));
            // Layouts written in the instruction.
            let written = match &inst.op {
                Op::Fill { ty, .. }
                | Op::Iota { ty, .. }
                | Op::View { ty, .. }
                | Op::Broadcast { ty, .. }
                | Op::LoadGlobal { ty, .. }
                | Op::LoadShared { ty, .. } => ty.layout.clone(),
                Op::Reduce { layout, .. } => layout.clone(),
                _ => None,
            };
            if let (Some(layout), Some(value), Some(class)) = (written, result, result_class) {
                analysis.pins.push(Pin { inst: id, value, class, layout });
                analysis.classes[class].pinned = true;
            }
            match &inst.op {
                Op::LoadGlobal { ty, .. } | Op::LoadShared { ty, .. } => {
                    if let Some(class) = result_class {
                        let global = matches!(inst.op, Op::LoadGlobal { .. });
                        analysis.classes[class].loads.push(Load { inst: id, global, bits: ty.dtype.bits() });
                    }
                }
                Op::View { x, ty } => {
                    if let (Some(src), Some(dst), Some((shape, bits))) =
                        (analysis.class(*x), result_class, register_shape(kernel, *x))
                    {
                        analysis.views.push(ViewEdge {
                            inst: id,
                            src,
                            dst,
                            src_bits: bits,
                            dst_bits: ty.dtype.bits(),
                            src_shape: shape.to_vec(),
                            dst_shape: ty.shape.clone(),
                        });
                    }
                }
                Op::Reduce { x, dims, keep_dims, .. } => {
                    if let (Some(src), Some(dst), Some((shape, _))) =
                        (analysis.class(*x), result_class, register_shape(kernel, *x))
                    {
                        analysis.reduces.push(ReduceEdge {
                            inst: id,
                            src,
                            dst,
                            dims: dims.clone(),
                            keep_dims: *keep_dims,
                            src_shape: shape.to_vec(),
                        });
                    }
                }
                Op::Broadcast { x, .. } => {
                    if let (Some(src), Some(dst), Some((shape, _))) =
                        (analysis.class(*x), result_class, register_shape(kernel, *x))
                    {
                        analysis.broadcasts.push(BroadcastEdge { inst: id, src, dst, src_shape: shape.to_vec() });
                    }
                }
                Op::Dot { a, b, c } => analysis.dots.push(DotSite { inst: id, a: *a, b: *b, c: *c }),
                Op::AllocShared { ty } if ty.layout.is_none() => {
                    analysis.shared.push(SharedTile { inst: id, shape: ty.shape.clone(), bits: ty.dtype.bits() })
                }
                _ => {}
            }
        }
        Ok(analysis)
    }

    /// The class of a register value.
    pub(super) fn class(&self, v: ValueId) -> Option<ClassId> {
        self.class_of.get(v.index()).copied().flatten()
    }

    /// The instructions linking `from` to `to` through same-layout links, in path order
    /// (empty when they are not linked).
    pub(super) fn link_path(&self, from: ValueId, to: ValueId) -> Vec<InstId> {
        use std::collections::{HashMap, VecDeque};
        let mut previous: HashMap<ValueId, (ValueId, InstId)> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = std::collections::HashSet::from([from]);
        while let Some(v) = queue.pop_front() {
            if v == to {
                break;
            }
            for link in &self.links {
                let next = if link.a == v {
                    link.b
                } else if link.b == v {
                    link.a
                } else {
                    continue;
                };
                if seen.insert(next) {
                    previous.insert(next, (v, link.inst));
                    queue.push_back(next);
                }
            }
        }
        let mut path = Vec::new();
        let mut at = to;
        while let Some(&(prev, inst)) = previous.get(&at) {
            if path.last() != Some(&inst) {
                path.push(inst);
            }
            at = prev;
        }
        path.reverse();
        path.dedup();
        path
    }
}
