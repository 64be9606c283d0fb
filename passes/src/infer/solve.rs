//! The solver: gives every class a layout, rule by rule in priority order, each tentative
//! choice propagated through `view` and `reduce` and checked against every class it reaches
//! before it is kept.

use std::collections::{HashMap, VecDeque};

use anybit_ir::program::{InstId, Kernel, RegisterTensorType};
use anybit_layouts::{MmaOperand, RegisterLayout};

use super::analysis::{Analysis, ClassId, inst_name, value_name};
use super::rules;

/// Why a class has its layout.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// The author wrote it in this instruction.
    Written(InstId),
    /// A rule chose it at this instruction.
    Rule(&'static str, InstId),
    /// The default rule chose it.
    Default,
    /// It follows from another class's layout through this `view` or `reduce`.
    Derived(InstId, Box<Source>),
}

impl Source {
    fn describe(&self, kernel: &Kernel) -> String {
        match self {
            Source::Written(inst) => format!("the layout written in {}", inst_name(kernel, *inst)),
            Source::Rule(rule, inst) => format!("the {rule} rule at {}", inst_name(kernel, *inst)),
            Source::Default => "the default rule".to_string(),
            Source::Derived(via, from) => {
                format!("{}, carried through {}", from.describe(kernel), inst_name(kernel, *via))
            }
        }
    }
}

/// A class's layout and why.
#[derive(Clone, Debug)]
pub(super) struct Assigned {
    pub layout: RegisterLayout,
    pub source: Source,
}

/// Why a tentative layout cannot be kept.
#[derive(Clone, Debug)]
enum Conflict {
    /// A class would need two different layouts: the one it has, and the one wanted.
    Clash { class: ClassId, layouts: Box<(Assigned, Assigned)> },
    /// A `view` has no memory-order reinterpretation of the layout.
    NoReinterpretation { view: InstId, layout: RegisterLayout, source: Source },
    /// A global load in the class would be slow in this layout.
    Unreasonable,
    /// The layout does not fit the class (shape, threads) or cannot be reduced.
    Invalid(String),
}

/// A candidate of the load rule: its replication, (`broadcast` exchanges, derived register
/// bits), and the assignment it forces.
type Choice = (usize, (usize, u64), HashMap<ClassId, Assigned>);

/// How a tentative layout is checked.
#[derive(Clone, Copy, Debug)]
struct Mode {
    /// Layouts the author wrote: a `view` between two classes whose layouts were both written
    /// is the author's business (it need not be a memory-order reinterpretation).
    written: bool,
    /// Reject layouts in which a global load of a class would not be reasonable...
    check_loads: bool,
    /// ...except the loads of this class (the load rule's own candidates are vector-friendly
    /// by construction).
    exempt: Option<ClassId>,
}

/// The state of inference for one kernel.
pub(super) struct Solver<'a> {
    kernel: &'a Kernel,
    analysis: &'a Analysis,
    threads: usize,
    /// The layout of each class, once chosen.
    pub assigned: Vec<Option<Assigned>>,
    /// Per class: the views, reduces (as operand, as result) touching it.
    views_of: Vec<Vec<usize>>,
    reduces_from: Vec<Vec<usize>>,
    reduces_to: Vec<Vec<usize>>,
}

impl<'a> Solver<'a> {
    pub(super) fn new(kernel: &'a Kernel, analysis: &'a Analysis) -> Solver<'a> {
        let n = analysis.classes.len();
        let (mut views_of, mut reduces_from, mut reduces_to) = (vec![vec![]; n], vec![vec![]; n], vec![vec![]; n]);
        for (i, e) in analysis.views.iter().enumerate() {
            views_of[e.src].push(i);
            if e.dst != e.src {
                views_of[e.dst].push(i);
            }
        }
        for (i, e) in analysis.reduces.iter().enumerate() {
            reduces_from[e.src].push(i);
            reduces_to[e.dst].push(i);
        }
        Solver {
            kernel,
            analysis,
            threads: kernel.num_threads(),
            assigned: vec![None; n],
            views_of,
            reduces_from,
            reduces_to,
        }
    }

    fn class_name(&self, class: ClassId) -> String {
        self.analysis.classes[class]
            .members
            .first()
            .map_or_else(|| format!("class {class}"), |&v| value_name(self.kernel, v))
    }

    fn layout_of<'s>(&'s self, class: ClassId, tentative: &'s HashMap<ClassId, Assigned>) -> Option<&'s Assigned> {
        self.assigned[class].as_ref().or_else(|| tentative.get(&class))
    }

    /// The classes that `layout` for `class` forces, propagated through `view`s (memory-order
    /// reinterpretation) and `reduce`s (operand reduced), checked against every class reached.
    fn propagate(
        &self,
        class: ClassId,
        layout: RegisterLayout,
        source: Source,
        mode: Mode,
    ) -> Result<HashMap<ClassId, Assigned>, Conflict> {
        let classes = &self.analysis.classes;
        let mut tentative: HashMap<ClassId, Assigned> = HashMap::new();
        let mut queue = VecDeque::from([(class, Assigned { layout, source })]);
        while let Some((c, want)) = queue.pop_front() {
            let info = &classes[c];
            if let Some(have) = self.layout_of(c, &tentative) {
                if have.layout == want.layout {
                    continue;
                }
                return Err(Conflict::Clash { class: c, layouts: Box::new((have.clone(), want)) });
            }
            let is_written = matches!(want.source, Source::Written(_));
            if !is_written && (want.layout.shape() != info.shape || want.layout.num_threads() != self.threads) {
                return Err(Conflict::Invalid(format!(
                    "{} would get layout {}, which has shape {:?} and {} threads, not {:?} and {}",
                    self.class_name(c),
                    want.layout,
                    want.layout.shape(),
                    want.layout.num_threads(),
                    info.shape,
                    self.threads
                )));
            }
            if mode.check_loads
                && mode.exempt != Some(c)
                && info.loads.iter().any(|l| l.global && !rules::reasonable_global_load(&want.layout, l.bits))
            {
                return Err(Conflict::Unreasonable);
            }
            let layout = want.layout.clone();
            let source = want.source.clone();
            tentative.insert(c, want);
            for &e in &self.views_of[c] {
                let edge = &self.analysis.views[e];
                let mut targets = Vec::with_capacity(2);
                if edge.src == c {
                    targets.push((edge.dst, edge.src_bits, edge.dst_bits, &edge.dst_shape));
                }
                if edge.dst == c {
                    targets.push((edge.src, edge.dst_bits, edge.src_bits, &edge.src_shape));
                }
                for (other, from_bits, to_bits, to_shape) in targets {
                    if mode.written && info.pinned && classes[other].pinned {
                        continue;
                    }
                    match rules::reinterpret(&layout, from_bits, to_bits, to_shape) {
                        Some(derived) => queue.push_back((
                            other,
                            Assigned { layout: derived, source: Source::Derived(edge.inst, Box::new(source.clone())) },
                        )),
                        None => {
                            return Err(Conflict::NoReinterpretation {
                                view: edge.inst,
                                layout: layout.clone(),
                                source: source.clone(),
                            });
                        }
                    }
                }
            }
            for &e in &self.reduces_from[c] {
                let edge = &self.analysis.reduces[e];
                let reduced = layout.reduce(&edge.dims, edge.keep_dims).map_err(|err| {
                    Conflict::Invalid(format!("{} cannot reduce {layout}: {err}", inst_name(self.kernel, edge.inst)))
                })?;
                queue.push_back((
                    edge.dst,
                    Assigned { layout: reduced, source: Source::Derived(edge.inst, Box::new(source.clone())) },
                ));
            }
            for &e in &self.reduces_to[c] {
                let edge = &self.analysis.reduces[e];
                if let Some(operand) = self.layout_of(edge.src, &tentative)
                    && operand.layout.reduce(&edge.dims, edge.keep_dims).ok().as_ref() != Some(&layout)
                {
                    let reduced = operand.layout.reduce(&edge.dims, edge.keep_dims).unwrap_or_else(|_| layout.clone());
                    let have = Assigned {
                        layout: reduced,
                        source: Source::Derived(edge.inst, Box::new(operand.source.clone())),
                    };
                    let want = Assigned { layout: layout.clone(), source: source.clone() };
                    return Err(Conflict::Clash { class: c, layouts: Box::new((have, want)) });
                }
            }
        }
        Ok(tentative)
    }

    fn commit(&mut self, tentative: HashMap<ClassId, Assigned>) {
        for (class, assigned) in tentative {
            self.assigned[class] = Some(assigned);
        }
    }

    /// Tries a layout for a class; keeps it (and what it forces) when nothing conflicts.
    fn try_assign(&mut self, class: ClassId, layout: RegisterLayout, source: Source, check_loads: bool) -> bool {
        match self.propagate(class, layout, source, Mode { written: false, check_loads, exempt: None }) {
            Ok(tentative) => {
                self.commit(tentative);
                true
            }
            Err(_) => false,
        }
    }

    fn conflict_message(&self, conflict: Conflict) -> String {
        let kernel = &self.kernel.name;
        match conflict {
            Conflict::Clash { class, layouts } => {
                let (have, want) = *layouts;
                format!(
                    "kernel `{kernel}`: conflicting layouts for {}: {} gives {}, but {} gives {}",
                    self.class_name(class),
                    have.source.describe(self.kernel),
                    have.layout,
                    want.source.describe(self.kernel),
                    want.layout
                )
            }
            Conflict::NoReinterpretation { view, layout, source } => format!(
                "kernel `{kernel}`: no layout on the other side of {} reads {layout} ({}) in memory order; write \
                 the layouts of both sides of the view",
                inst_name(self.kernel, view),
                source.describe(self.kernel)
            ),
            Conflict::Unreasonable => format!("kernel `{kernel}`: a load cannot use the layout required"),
            Conflict::Invalid(message) => format!("kernel `{kernel}`: {message}"),
        }
    }

    /// Rule 1: the layouts the author wrote, and what they force through `view` and `reduce`.
    /// Two written layouts that meet in one class are an error naming both instructions.
    fn written(&mut self) -> Result<(), String> {
        let pins = &self.analysis.pins;
        for (i, pin) in pins.iter().enumerate() {
            if let Some(first) = pins[..i].iter().find(|p| p.class == pin.class && p.layout != pin.layout) {
                let path = self.analysis.link_path(first.value, pin.value);
                let through = if path.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": they are connected through {}",
                        path.iter().map(|&i| inst_name(self.kernel, i)).collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(format!(
                    "kernel `{}`: conflicting layouts: {} writes {}, and {} writes {}, but {} and {} must share one \
                     layout{through}",
                    self.kernel.name,
                    inst_name(self.kernel, first.inst),
                    first.layout,
                    inst_name(self.kernel, pin.inst),
                    pin.layout,
                    value_name(self.kernel, first.value),
                    value_name(self.kernel, pin.value),
                ));
            }
        }
        for pin in pins {
            let mode = Mode { written: true, check_loads: false, exempt: None };
            let tentative = self
                .propagate(pin.class, pin.layout.clone(), Source::Written(pin.inst), mode)
                .map_err(|c| self.conflict_message(c))?;
            self.commit(tentative);
        }
        Ok(())
    }

    /// Rule 2: `dot`s take the MMA arrangement — c first (with its result), then a and b
    /// fitted to c's warp split.
    fn dots(&mut self) {
        for &site in &self.analysis.dots {
            let (Some(ca), Some(cb), Some(cc)) =
                (self.analysis.class(site.a), self.analysis.class(site.b), self.analysis.class(site.c))
            else {
                continue;
            };
            let Some(ta) = self.kernel.values.get(site.a).and_then(|d| d.ty.as_register()) else { continue };
            let Some(instruction) = rules::mma_instruction(ta.dtype) else { continue };
            let (Some(&m), Some(&k)) = (ta.shape.first(), ta.shape.get(1)) else { continue };
            let Some(&n) = self.analysis.classes[cc].shape.get(1) else { continue };
            // The straight arrangement, when the shapes tile by the instruction's (M = 8 with N a
            // multiple of 16 tiles only swapped).
            let plan = rules::mma_layouts(m, n, k, self.threads, instruction);
            if self.assigned[cc].is_none() {
                // Operands already laid out (by views, say) choose the arrangement that takes
                // them as they are, swapped or not; else the straight one.
                let held = |class: ClassId, shape: Vec<usize>| {
                    let layout = self.assigned[class].as_ref()?.layout.clone();
                    Some(RegisterTensorType::new(ta.dtype, shape, Some(layout)))
                };
                let c_dtype = self.kernel.values.get(site.c).and_then(|d| d.ty.as_register()).map(|t| t.dtype);
                let fitted = match (held(ca, vec![m, k]), held(cb, vec![k, n]), c_dtype) {
                    (Some(a), Some(b), Some(c_dtype)) => {
                        rules::conversion_free_accumulator((&a, &b), c_dtype, self.threads, instruction)
                    }
                    _ => None,
                };
                if let Some(c) = fitted.or_else(|| plan.map(|p| p.c)) {
                    self.try_assign(cc, c, Source::Rule("dot", site.inst), true);
                }
            }
            // a and b fit the accumulator c actually has (transposed for a swapped one).
            let Some(c_layout) = self.assigned[cc].as_ref().map(|a| a.layout.clone()) else { continue };
            let fragment = instruction.fragment(MmaOperand::Accumulator);
            let transposed = |l: &RegisterLayout| l.transpose().ok();
            let operands = match c_layout.divide_right(&fragment) {
                Ok(quotient) => rules::mma_operands(&quotient, k, instruction),
                Err(_) => transposed(&c_layout)
                    .and_then(|ct| ct.divide_right(&fragment).ok())
                    .and_then(|quotient| rules::mma_operands(&quotient, k, instruction))
                    .and_then(|(at, bt)| Some((transposed(&bt)?, transposed(&at)?))),
            };
            let Some((a, b)) = operands else { continue };
            for (class, target) in [(ca, &a), (cb, &b)] {
                if self.assigned[class].is_none() {
                    self.try_assign(class, target.clone(), Source::Rule("dot", site.inst), true);
                }
            }
        }
    }

    /// Rule 4: a `broadcast` operand whose result's layout is known holds what the result's
    /// slots need (whatever its load then reads at a time: an operand is smaller than its
    /// result, and the alternative is an exchange through scratch with barriers). One class
    /// per call; true when one was assigned.
    fn broadcasts(&mut self) -> bool {
        for edge in &self.analysis.broadcasts {
            if self.assigned[edge.src].is_some() {
                continue;
            }
            let Some(result) = self.assigned[edge.dst].as_ref() else { continue };
            let Some(layout) = rules::broadcast_source(&result.layout, &edge.src_shape) else { continue };
            if self.try_assign(edge.src, layout, Source::Rule("broadcast", edge.inst), false) {
                return true;
            }
        }
        false
    }

    /// What laying out `tentative` costs: the `broadcast`s whose operand already has a layout
    /// that does not hold what the result needs (each an exchange through shared scratch with
    /// barriers), and the register bits per thread of the values derived from it — operands
    /// of `broadcast`s it lays out (rule 4 will fit them to the results) and results of
    /// `reduce`s. Also the longest run, in bits, of its classes' widest element types.
    fn cost(&self, tentative: &HashMap<ClassId, Assigned>) -> (usize, u64, u64) {
        let analysis = self.analysis;
        let (mut exchanges, mut bits) = (0usize, 0u64);
        for edge in &analysis.broadcasts {
            let Some(result) = tentative.get(&edge.dst) else { continue };
            let needed = rules::broadcast_source(&result.layout, &edge.src_shape);
            match (self.layout_of(edge.src, tentative), needed) {
                (Some(held), Some(needed)) => exchanges += usize::from(!rules::covers(&held.layout, &needed)),
                (Some(_), None) => exchanges += 1,
                (None, Some(needed)) => {
                    bits += needed.num_slots() as u64 * u64::from(analysis.classes[edge.src].carrier_bits)
                }
                (None, None) => {}
            }
        }
        for edge in &analysis.reduces {
            if tentative.contains_key(&edge.src)
                && let Some(result) = tentative.get(&edge.dst)
            {
                bits += result.layout.num_slots() as u64 * u64::from(analysis.classes[edge.dst].carrier_bits);
            }
        }
        let widest_run = tentative
            .iter()
            .map(|(&c, a)| rules::contiguous_run(&a.layout) as u64 * u64::from(analysis.classes[c].max_bits))
            .max()
            .unwrap_or(0);
        (exchanges, bits, widest_run)
    }

    /// Rule 5: a class defined by a load gets a vector-friendly layout. Classes whose values
    /// feed a `broadcast` whose result has no layout yet come last (their layout should follow
    /// the result's). The candidates ([`rules::vector_candidates`]) are tried in order; the
    /// first that propagates is kept unless a later one with as much replication forces fewer
    /// `broadcast` exchanges, or as many and at most half the register bits for the derived
    /// values while its classes still hold runs of at least 16 bytes of their widest type
    /// ([`Solver::cost`]: a thread whose run of packed weights spans fewer columns needs fewer
    /// of the scales broadcast along the rows, and still converts 8 f16 at a time). One class
    /// per call; true when a class was tried.
    fn loads(&mut self, tried: &mut [bool]) -> bool {
        let analysis = self.analysis;
        let classes = &analysis.classes;
        let open = |c: ClassId| self.assigned[c].is_none() && !tried[c] && !classes[c].loads.is_empty();
        let feeds_pending_broadcast =
            |c: ClassId| analysis.broadcasts.iter().any(|e| e.src == c && self.assigned[e.dst].is_none());
        let mut candidates: Vec<ClassId> = (0..classes.len()).filter(|&c| open(c)).collect();
        candidates.sort_by_key(|&c| (feeds_pending_broadcast(c), classes[c].order));
        let Some(&class) = candidates.first() else { return false };
        tried[class] = true;
        let Some(load) = classes[class].loads.first().copied() else { return true };
        // The choice so far: replication, (exchanges, derived bits), tentative assignment.
        let mut best: Option<Choice> = None;
        for layout in rules::vector_candidates(&classes[class].shape, load.bits, self.threads) {
            let replication = rules::replication(&layout);
            if best.as_ref().is_some_and(|(r, _, _)| *r != replication) {
                continue;
            }
            let mode = Mode { written: false, check_loads: true, exempt: Some(class) };
            let Ok(tentative) = self.propagate(class, layout, Source::Rule("load", load.inst), mode) else { continue };
            let (exchanges, bits, widest_run) = self.cost(&tentative);
            let better = match &best {
                None => true,
                Some((_, (best_exchanges, best_bits), _)) => {
                    exchanges < *best_exchanges
                        || (exchanges == *best_exchanges
                            && 2 * bits <= *best_bits
                            && bits < *best_bits
                            && widest_run >= rules::VECTOR_BITS)
                }
            };
            if better {
                best = Some((replication, (exchanges, bits), tentative));
            }
        }
        if let Some((_, _, tentative)) = best {
            self.commit(tentative);
        }
        true
    }

    /// Rule 6: the first class without a layout takes the first layout that fits of: the
    /// vector-friendly layouts of its loads, a preimage of a known `reduce` result, and the
    /// row-major spreads of its widest element type. Errors when none fits.
    fn default(&mut self) -> Result<bool, String> {
        let classes = &self.analysis.classes;
        let Some(class) = (0..classes.len()).filter(|&c| self.assigned[c].is_none()).min_by_key(|&c| classes[c].order)
        else {
            return Ok(false);
        };
        let info = &classes[class];
        let mut candidates = Vec::new();
        for load in &info.loads {
            candidates.extend(rules::vector_candidates(&info.shape, load.bits, self.threads));
        }
        for edge in self.analysis.reduces.iter().filter(|e| e.src == class) {
            if let Some(result) = self.assigned[edge.dst].as_ref()
                && let Some(layout) =
                    rules::reduce_preimage(&result.layout, &edge.src_shape, &edge.dims, edge.keep_dims)
            {
                candidates.push(layout);
            }
        }
        candidates.extend(rules::vector_candidates(&info.shape, info.max_bits.max(1), self.threads));
        let mut last = None;
        for layout in candidates {
            match self.propagate(
                class,
                layout,
                Source::Default,
                Mode { written: false, check_loads: false, exempt: None },
            ) {
                Ok(tentative) => {
                    self.commit(tentative);
                    return Ok(true);
                }
                Err(conflict) => last = Some(conflict),
            }
        }
        let why = last.map(|c| format!(": {}", self.conflict_message(c))).unwrap_or_default();
        Err(format!(
            "kernel `{}`: no layout of {:?} over {} threads fits {}{why}",
            self.kernel.name,
            info.shape,
            self.threads,
            self.class_name(class)
        ))
    }

    /// Runs every rule in priority order until every class has a layout.
    pub(super) fn solve(&mut self) -> Result<(), String> {
        self.written()?;
        self.dots();
        let mut tried = vec![false; self.analysis.classes.len()];
        loop {
            if self.broadcasts() || self.loads(&mut tried) || self.default()? {
                continue;
            }
            return Ok(());
        }
    }
}
