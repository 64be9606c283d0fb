//! From a kernel to the e-graph and back: which instructions the e-graph takes over, where
//! the extracted expressions are placed, and the rebuilt kernel.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use anybit_ir::program::{Block, InstData, InstId, Kernel, Literal, Op, Operand, Type, ValueData, ValueDef, ValueId};
use egg::{Id, Language};

use super::lang::{IndexEGraph, IndexNode, IndexOp, IntTy, Range};

/// The e-graph of a kernel's index arithmetic, and how it maps to the kernel.
#[derive(Debug)]
pub(crate) struct Graph {
    /// The e-graph.
    pub egraph: IndexEGraph,
    /// The class of every scalar integer value the e-graph knows (instruction results it took
    /// over, and the leaves they use).
    pub class_of: HashMap<ValueId, Id>,
    /// The instructions the e-graph took over (their values are recomputed from it).
    pub index_insts: HashSet<InstId>,
    /// The integer types of the nodes.
    pub types: BTreeSet<IntTy>,
}

fn scalar_int(kernel: &Kernel, v: ValueId) -> Option<IntTy> {
    match kernel.values.get(v).map(|d| &d.ty) {
        Some(Type::Scalar(d)) => IntTy::from_dtype(*d),
        _ => None,
    }
}

impl Graph {
    /// The e-graph of `kernel`'s uniform scalar integer instructions, in program order.
    /// `params` are the parameters' intervals, `blocks` the block indices'.
    pub fn build(kernel: &Kernel, params: &[Option<Range>], blocks: [Range; 3]) -> Result<Graph, String> {
        let mut analysis = super::lang::IndexAnalysis { block_ranges: blocks.map(Some), ..Default::default() };
        for (p, param) in kernel.params.iter().enumerate() {
            if let Some(Some(r)) = params.get(p) {
                analysis.leaf_ranges.insert(param.value.index() as u32, *r);
            }
        }
        let mut graph = Graph {
            egraph: IndexEGraph::new(analysis),
            class_of: HashMap::new(),
            index_insts: HashSet::new(),
            types: BTreeSet::new(),
        };
        let mut order = Vec::with_capacity(kernel.insts.len());
        kernel.walk(|id, _| order.push(id));
        for id in order {
            let Some(inst) = kernel.insts.get(id) else { continue };
            graph.visit(kernel, id, inst);
        }
        graph.egraph.rebuild();
        Ok(graph)
    }

    fn add(&mut self, node: IndexNode) -> Id {
        self.types.insert(node.ty());
        self.egraph.add(node)
    }

    /// The class of an operand of type `ty` (a leaf for a value the e-graph does not know).
    fn operand(&mut self, kernel: &Kernel, operand: Operand, ty: IntTy) -> Option<Id> {
        match operand {
            Operand::Literal(Literal::Int(v)) => ty.contains(v).then(|| self.add(IndexNode::Const(ty, v))),
            Operand::Literal(Literal::Float(_)) => None,
            Operand::Value(v) => {
                if let Some(&c) = self.class_of.get(&v) {
                    return (self.egraph[c].data.ty == ty).then_some(c);
                }
                if scalar_int(kernel, v) != Some(ty) {
                    return None;
                }
                let c = self.add(IndexNode::Leaf(ty, v.index() as u32));
                self.class_of.insert(v, c);
                Some(c)
            }
        }
    }

    fn visit(&mut self, kernel: &Kernel, id: InstId, inst: &InstData) {
        let result = inst.results.first().copied();
        let result_ty = result.and_then(|r| scalar_int(kernel, r));
        match (&inst.op, result, result_ty) {
            (Op::Const { value: Literal::Int(v), dtype }, Some(r), Some(ty))
                if IntTy::from_dtype(*dtype) == Some(ty) && ty.contains(*v) && inst.results.len() == 1 =>
            {
                let c = self.add(IndexNode::Const(ty, *v));
                self.class_of.insert(r, c);
                self.index_insts.insert(id);
            }
            (Op::BlockIndex { axis }, Some(r), Some(ty))
                if ty.bits() == 32 && ty.signed() && inst.results.len() == 1 =>
            {
                let c = self.add(IndexNode::BlockIndex(axis.index() as u8));
                self.class_of.insert(r, c);
                self.index_insts.insert(id);
            }
            (Op::Binary { op, lhs, rhs }, Some(r), Some(ty)) if inst.results.len() == 1 => {
                let Some(op) = IndexOp::from_binary(*op) else { return };
                let (Some(a), Some(b)) = (self.operand(kernel, *lhs, ty), self.operand(kernel, *rhs, ty)) else {
                    return;
                };
                // A division whose divisor may be 0 stays where it is, as it is: the pass never
                // moves, adds or removes a possible division by zero. Its result is a leaf.
                if op.divides() && self.egraph[b].data.range.contains(0) {
                    return;
                }
                let c = self.add(IndexNode::Bin(op, ty, [a, b]));
                self.class_of.insert(r, c);
                self.index_insts.insert(id);
            }
            (Op::For { start, end, index, .. }, _, _) => {
                // The index runs over start, start + step, … while below end: its values lie in
                // [lo(start), hi(end) − 1] (any nonempty interval is true of a loop that never
                // runs: its index never exists).
                let Some(ty) = scalar_int(kernel, *index) else { return };
                let (Some(s), Some(e)) = (self.operand(kernel, *start, ty), self.operand(kernel, *end, ty)) else {
                    return;
                };
                let (s, e) = (self.egraph[s].data.range, self.egraph[e].data.range);
                let hi = (e.hi - 1).max(s.lo).min(ty.max());
                self.egraph.analysis.leaf_ranges.insert(index.index() as u32, Range::new(s.lo, hi));
            }
            _ => {}
        }
    }
}

/// The cost of an extracted expression: instructions first, then their weights. Comparing
/// instruction counts first means an extraction never trades one instruction for two.
pub(crate) type Cost = (u32, u32);

fn add_cost(a: Cost, b: Cost) -> Cost {
    (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
}

/// The cost of computing `node` as one instruction, its operands aside; `None` when it
/// cannot be one (a leaf, a division by the constant 0).
pub(crate) fn node_cost(egraph: &IndexEGraph, node: &IndexNode) -> Option<Cost> {
    Some(match node {
        IndexNode::Const(..) => (0, 0),
        IndexNode::Leaf(..) => return None,
        IndexNode::BlockIndex(_) => (1, 1),
        IndexNode::Bin(op, _, [_, b]) => match op {
            IndexOp::Div | IndexOp::Rem | IndexOp::CeilDiv => match egraph[*b].data.constant() {
                Some(0) => return None,
                Some(c) if c > 0 && (c as u64).is_power_of_two() => (1, super::WEIGHT_DIV_POW2),
                Some(_) => (1, super::WEIGHT_DIV_CONST),
                None => (1, super::WEIGHT_DIV),
            },
            IndexOp::Mul => (1, super::WEIGHT_MUL),
            IndexOp::Min | IndexOp::Max => (1, super::WEIGHT_MIN_MAX),
            _ => (1, super::WEIGHT_SIMPLE),
        },
    })
}

/// Operands that are not in nested blocks, rewritten by `f`.
fn map_operands(op: &mut Op, f: &mut dyn FnMut(Operand) -> Operand) {
    let all = |v: &mut Vec<Operand>, f: &mut dyn FnMut(Operand) -> Operand| v.iter_mut().for_each(|o| *o = f(*o));
    match op {
        Op::Const { .. } | Op::BlockIndex { .. } | Op::Iota { .. } | Op::AllocShared { .. } => {}
        Op::CommitGroup | Op::WaitGroup { .. } | Op::Sync => {}
        Op::View { .. } | Op::Broadcast { .. } | Op::Reduce { .. } | Op::Dot { .. } | Op::FreeShared { .. } => {}
        Op::Lookup { .. } => {}
        Op::Unary { x, .. } | Op::Cast { x, .. } => *x = f(*x),
        Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => {
            *lhs = f(*lhs);
            *rhs = f(*rhs);
        }
        Op::Fma { a, b, c } => {
            *a = f(*a);
            *b = f(*b);
            *c = f(*c);
        }
        Op::Select { cond, on_true, on_false } => {
            *cond = f(*cond);
            *on_true = f(*on_true);
            *on_false = f(*on_false);
        }
        Op::Fill { value, .. } => *value = f(*value),
        Op::GlobalView { shape, strides, .. } => {
            all(shape, f);
            all(strides, f);
        }
        Op::LoadGlobal { offsets, .. }
        | Op::StoreGlobal { offsets, .. }
        | Op::LoadShared { offsets, .. }
        | Op::StoreShared { offsets, .. } => all(offsets, f),
        Op::CopyAsync { src_offsets, dst_offsets, .. } => {
            all(src_offsets, f);
            all(dst_offsets, f);
        }
        Op::For { start, end, step, inits, .. } => {
            *start = f(*start);
            *end = f(*end);
            *step = f(*step);
            all(inits, f);
        }
        Op::If { cond, .. } => *cond = f(*cond),
    }
}

/// One block being rebuilt: its new instruction list, and the classes made available in it
/// (forgotten when it ends).
#[derive(Debug, Default)]
struct Level {
    insts: Vec<InstId>,
    undo: Vec<Id>,
}

/// Rebuilds a kernel from its e-graph.
///
/// The walk goes through the kernel in program order. An instruction the e-graph took over
/// is dropped; where its value is needed by something else (an instruction outside the
/// e-graph, a `yield`), its class is *materialized* right there: the cheapest expression of
/// the class is extracted (classes already computed in scope, constants and leaves in scope
/// cost nothing) and its instructions are emitted. Each new instruction goes into the
/// outermost enclosing block where all of its operands are defined, just before the nested
/// block being walked — so loop-invariant expressions leave loops, and a class computed once
/// is reused everywhere it is in scope. Every node of the e-graph is total (no possible
/// division by zero), so computing one earlier or where it was not computed before cannot
/// fail.
pub(crate) struct Rewriter<'a> {
    old: &'a Kernel,
    graph: &'a Graph,
    kernel: Kernel,
    roots: HashSet<ValueId>,
    levels: Vec<Level>,
    avail: HashMap<Id, (ValueId, usize)>,
    value_level: HashMap<ValueId, usize>,
    subst: HashMap<ValueId, ValueId>,
    listed: HashSet<InstId>,
    used_names: HashSet<String>,
    class_names: HashMap<Id, Vec<String>>,
    /// Instructions emitted.
    pub emitted: usize,
}

impl<'a> Rewriter<'a> {
    pub fn new(old: &'a Kernel, graph: &'a Graph) -> Rewriter<'a> {
        let index_values: HashSet<ValueId> = graph
            .index_insts
            .iter()
            .filter_map(|&i| old.insts.get(i).and_then(|inst| inst.results.first().copied()))
            .collect();
        // Roots: index values used outside the e-graph.
        let mut roots = HashSet::new();
        let mut note = |o: Operand| {
            if let Operand::Value(v) = o
                && index_values.contains(&v)
            {
                roots.insert(v);
            }
        };
        old.body.yields.iter().for_each(|&o| note(o));
        old.walk(|id, inst| {
            if !graph.index_insts.contains(&id) {
                inst.op.operands().into_iter().for_each(&mut note);
            }
            for block in inst.op.blocks() {
                block.yields.iter().for_each(|&o| note(o));
            }
        });
        let used_names =
            old.values.iter().filter(|(v, _)| !index_values.contains(v)).map(|(_, d)| d.name.clone()).collect();
        let mut class_names: HashMap<Id, Vec<String>> = HashMap::new();
        old.walk(|id, inst| {
            if graph.index_insts.contains(&id)
                && let Some(&r) = inst.results.first()
                && let (Some(&c), Some(data)) = (graph.class_of.get(&r), old.values.get(r))
            {
                class_names.entry(graph.egraph.find(c)).or_default().push(data.name.clone());
            }
        });
        Rewriter {
            old,
            graph,
            kernel: old.clone(),
            roots,
            levels: Vec::new(),
            avail: HashMap::new(),
            value_level: HashMap::new(),
            subst: HashMap::new(),
            listed: HashSet::new(),
            used_names,
            class_names,
            emitted: 0,
        }
    }

    /// The rebuilt kernel.
    pub fn run(mut self) -> Result<(Kernel, usize), String> {
        let params: Vec<ValueId> = self.old.params.iter().map(|p| p.value).collect();
        let body = self.block(&self.old.body, &params)?;
        self.kernel.body = body;
        let listed = std::mem::take(&mut self.listed);
        let kernel = crate::rebuild::retain_insts(&self.kernel, &|id| listed.contains(&id))?;
        Ok((kernel, self.emitted))
    }

    fn find(&self, c: Id) -> Id {
        self.graph.egraph.find(c)
    }

    fn make_available(&mut self, c: Id, v: ValueId, level: usize) {
        let c = self.find(c);
        self.value_level.insert(v, level);
        if let std::collections::hash_map::Entry::Vacant(e) = self.avail.entry(c) {
            e.insert((v, level));
            if let Some(l) = self.levels.get_mut(level) {
                l.undo.push(c);
            }
        }
    }

    fn define(&mut self, v: ValueId, level: usize) {
        self.value_level.insert(v, level);
        if let Some(&c) = self.graph.class_of.get(&v) {
            self.make_available(c, v, level);
        }
    }

    fn substitute(&self, o: Operand) -> Operand {
        match o {
            Operand::Value(v) => Operand::Value(self.subst.get(&v).copied().unwrap_or(v)),
            literal => literal,
        }
    }

    fn block(&mut self, block: &Block, entry: &[ValueId]) -> Result<Block, String> {
        self.levels.push(Level::default());
        let level = self.levels.len() - 1;
        for &v in entry {
            self.define(v, level);
        }
        for &id in &block.insts {
            let old = self.old;
            let inst = old.insts.get(id).ok_or_else(|| format!("instruction {id:?} does not exist"))?;
            if self.graph.index_insts.contains(&id) {
                if let Some(&r) = inst.results.first()
                    && self.roots.contains(&r)
                {
                    let c = *self.graph.class_of.get(&r).ok_or("an index value has no class")?;
                    let v = self.materialize(c, r)?;
                    self.subst.insert(r, v);
                }
                continue;
            }
            let mut op = inst.op.clone();
            map_operands(&mut op, &mut |o| self.substitute(o));
            match &mut op {
                Op::For { index, carried, body, .. } => {
                    let mut entry = vec![*index];
                    entry.extend(carried.iter().copied());
                    let old_body = std::mem::take(body);
                    *body = self.block(&old_body, &entry)?;
                }
                Op::If { then_body, else_body, .. } => {
                    let old_then = std::mem::take(then_body);
                    *then_body = self.block(&old_then, &[])?;
                    let old_else = std::mem::take(else_body);
                    *else_body = self.block(&old_else, &[])?;
                }
                _ => {}
            }
            self.kernel.insts.get_mut(id).ok_or("instruction vanished")?.op = op;
            self.levels[level].insts.push(id);
            self.listed.insert(id);
            for &r in &inst.results {
                self.define(r, level);
            }
        }
        let yields = block.yields.iter().map(|&o| self.substitute(o)).collect();
        let done = self.levels.pop().unwrap_or_default();
        for c in done.undo {
            self.avail.remove(&c);
        }
        Ok(Block { insts: done.insts, yields })
    }

    /// A value for class `c`, needed where `old` was defined.
    fn materialize(&mut self, c: Id, old: ValueId) -> Result<ValueId, String> {
        let c = self.find(c);
        if let Some(&(v, _)) = self.avail.get(&c) {
            return Ok(v);
        }
        let name = self.old.values.get(old).map(|d| d.name.clone());
        let span = self.old.values.get(old).and_then(|d| d.span);
        let data = self.graph.egraph[c].data;
        if let Some(value) = data.constant() {
            let dtype = data.ty.dtype().ok_or("bad integer type")?;
            let v = self.push(0, Op::Const { value: Literal::Int(value), dtype }, data.ty, c, name.as_deref(), span)?;
            self.make_available(c, v, 0);
            return Ok(v);
        }
        let best = self.extract(c);
        match self.emit(c, &best, name.as_deref(), span)? {
            Operand::Value(v) => Ok(v),
            Operand::Literal(_) => Err("a non-constant class extracted as a literal".into()),
        }
    }

    fn free(&self, c: Id) -> bool {
        self.avail.contains_key(&c) || self.graph.egraph[c].data.constant().is_some()
    }

    /// The cheapest node of each class needed for `root`, given what is available (Knuth's
    /// generalization of Dijkstra's algorithm to the e-graph's hypergraph: a class's cost is
    /// final when it is the smallest pending one).
    fn extract(&self, root: Id) -> HashMap<Id, IndexNode> {
        let egraph = &self.graph.egraph;
        // Classes reachable from the root through classes that are not free.
        let mut reachable = vec![root];
        let mut seen: HashSet<Id> = HashSet::from([root]);
        let mut i = 0;
        while i < reachable.len() {
            let c = reachable[i];
            i += 1;
            for node in &egraph[c].nodes {
                for &child in node.children() {
                    let child = egraph.find(child);
                    if !self.free(child) && seen.insert(child) {
                        reachable.push(child);
                    }
                }
            }
        }
        struct Candidate {
            class: Id,
            node: IndexNode,
            base: Cost,
            pending: usize,
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut parents: HashMap<Id, Vec<usize>> = HashMap::new();
        let mut heap: BinaryHeap<Reverse<(Cost, usize)>> = BinaryHeap::new();
        for &c in &reachable {
            for node in &egraph[c].nodes {
                let Some(base) = node_cost(egraph, node) else { continue };
                let node = node.clone().map_children(|ch| egraph.find(ch));
                let mut waiting: Vec<Id> = node.children().iter().copied().filter(|&ch| !self.free(ch)).collect();
                waiting.sort();
                waiting.dedup();
                let index = candidates.len();
                for &ch in &waiting {
                    parents.entry(ch).or_default().push(index);
                }
                if waiting.is_empty() {
                    heap.push(Reverse((base, index)));
                }
                candidates.push(Candidate { class: c, node, base, pending: waiting.len() });
            }
        }
        let mut done: HashMap<Id, Cost> = HashMap::new();
        let mut best: HashMap<Id, IndexNode> = HashMap::new();
        while let Some(Reverse((cost, index))) = heap.pop() {
            let class = candidates[index].class;
            if done.contains_key(&class) {
                continue;
            }
            done.insert(class, cost);
            best.insert(class, candidates[index].node.clone());
            if class == root {
                break;
            }
            for &parent in parents.get(&class).map(Vec::as_slice).unwrap_or(&[]) {
                let candidate = &mut candidates[parent];
                candidate.pending -= 1;
                if candidate.pending == 0 && !done.contains_key(&candidate.class) {
                    let total = candidate
                        .node
                        .children()
                        .iter()
                        .fold(candidate.base, |acc, ch| add_cost(acc, done.get(ch).copied().unwrap_or((0, 0))));
                    heap.push(Reverse((total, parent)));
                }
            }
        }
        best
    }

    /// The operand for a class that is available or constant.
    fn ready(&self, c: Id) -> Option<Operand> {
        let c = self.find(c);
        if let Some(&(v, _)) = self.avail.get(&c) {
            return Some(Operand::Value(v));
        }
        self.graph.egraph[c].data.constant().map(|value| Operand::Literal(Literal::Int(value)))
    }

    /// Emits the instructions of class `root` as `best` chooses them (operands first; an
    /// explicit stack, as chains can be long); a literal for a constant.
    fn emit(
        &mut self,
        root: Id,
        best: &HashMap<Id, IndexNode>,
        name: Option<&str>,
        span: Option<anybit_ir::diag::Span>,
    ) -> Result<Operand, String> {
        let root = self.find(root);
        let mut stack = vec![(root, false)];
        while let Some((c, expanded)) = stack.pop() {
            let c = self.find(c);
            if self.ready(c).is_some() {
                continue;
            }
            let node = best.get(&c).ok_or("no instruction computes a needed value in scope")?;
            if !expanded {
                stack.push((c, true));
                stack.extend(node.children().iter().map(|&ch| (ch, false)));
                continue;
            }
            let (op, level) = match node {
                IndexNode::BlockIndex(axis) => {
                    let axis = *anybit_ir::program::Axis::ALL.get(usize::from(*axis)).ok_or("bad axis")?;
                    (Op::BlockIndex { axis }, 0)
                }
                IndexNode::Bin(op, _, [a, b]) => {
                    let lhs = self.ready(*a).ok_or("an operand was not emitted")?;
                    let rhs = self.ready(*b).ok_or("an operand was not emitted")?;
                    if lhs.value().is_none() && rhs.value().is_none() {
                        return Err("an operation of two constants was not folded".into());
                    }
                    let level = [lhs, rhs]
                        .iter()
                        .filter_map(|o| o.value())
                        .map(|v| self.value_level.get(&v).copied().unwrap_or(0))
                        .max()
                        .unwrap_or(0);
                    (Op::Binary { op: op.binary(), lhs, rhs }, level)
                }
                IndexNode::Const(..) | IndexNode::Leaf(..) => return Err("a leaf is not in scope".into()),
            };
            let (hint, at) = if c == root { (name, span) } else { (None, None) };
            let ty = self.graph.egraph[c].data.ty;
            let v = self.push(level, op, ty, c, hint, at)?;
            self.make_available(c, v, level);
        }
        self.ready(root).ok_or_else(|| "the value was not emitted".to_owned())
    }

    /// A fresh value name for class `c`: the hint, else a name the class had, else a numbered
    /// variant.
    fn name_for(&mut self, c: Id, hint: Option<&str>) -> String {
        let mut candidates: Vec<String> = hint.map(str::to_owned).into_iter().collect();
        candidates.extend(self.class_names.get(&c).into_iter().flatten().cloned());
        if let Some(free) = candidates.iter().find(|n| !self.used_names.contains(*n)) {
            let free = free.clone();
            self.used_names.insert(free.clone());
            return free;
        }
        let base = candidates.first().cloned().unwrap_or_else(|| "idx".to_owned());
        let mut i = 1usize;
        loop {
            let name = format!("{base}_{i}");
            if !self.used_names.contains(&name) {
                self.used_names.insert(name.clone());
                return name;
            }
            i += 1;
        }
    }

    fn push(
        &mut self,
        level: usize,
        op: Op,
        ty: IntTy,
        c: Id,
        hint: Option<&str>,
        span: Option<anybit_ir::diag::Span>,
    ) -> Result<ValueId, String> {
        let dtype = ty.dtype().ok_or("bad integer type")?;
        let name = self.name_for(c, hint);
        let inst = self.kernel.insts.append(InstData { op, results: Vec::new(), via: None, span });
        let v = self.kernel.values.append(ValueData {
            name,
            ty: Type::Scalar(dtype),
            def: ValueDef::Result(inst, 0),
            span,
        });
        self.kernel.insts.get_mut(inst).ok_or("instruction vanished")?.results = vec![v];
        self.levels.get_mut(level).ok_or("no such block")?.insts.push(inst);
        self.listed.insert(inst);
        self.value_level.insert(v, level);
        self.emitted += 1;
        Ok(v)
    }
}
