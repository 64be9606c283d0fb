//! Shared-memory checks (invariants 11, 12, 16, 17): what `free_shared` frees, uses after a
//! free, the peak of live allocations, and allocations in loops.
//!
//! The walk carries a [`SharedState`]: the tiles that may be live at the current point and
//! those that may have been freed. An `if` walks each branch from the state before it and
//! merges the two ([`SharedState::merge`]); leaving a block moves the tiles it allocated and
//! did not free to the bytes that stay allocated to the end of the kernel.

use std::collections::BTreeMap;

use super::Checker;
use super::walk::Walk;
use crate::program::{InstData, InstId, Op, Type, ValueDef, ValueId};

/// A tile that may be live.
#[derive(Clone, Copy, Debug)]
struct LiveTile {
    /// Its size in bytes.
    bytes: usize,
    /// The `alloc_shared` that made it.
    alloc: InstId,
    /// The depth of the block it was allocated in (1 for the kernel body).
    depth: usize,
    /// How many loop bodies enclose the allocation.
    loop_depth: usize,
}

/// A tile that may have been freed.
#[derive(Clone, Copy, Debug)]
struct Freed {
    /// The `free_shared` (one of them).
    by: InstId,
    /// Whether it is freed on every path to here (else only on some).
    certain: bool,
    /// The depth of the block the tile was allocated in.
    depth: usize,
}

/// Shared allocations at one point of the walk, by the index of the tile's value.
#[derive(Clone, Debug, Default)]
pub(super) struct SharedState {
    live: BTreeMap<usize, LiveTile>,
    freed: BTreeMap<usize, Freed>,
    /// Bytes of tiles allocated in blocks already left and never freed: allocated until the
    /// end of the kernel.
    leaked: usize,
}

impl SharedState {
    /// Bytes that may be allocated at once.
    fn total(&self) -> usize {
        self.live.values().fold(self.leaked, |n, t| n.saturating_add(t.bytes))
    }

    /// The state after an `if`, from the states after its two branches: a tile is live if it
    /// may be live after either, freed if it may be freed after either (certainly if after
    /// both); the larger leftover of the two stays allocated.
    pub(super) fn merge(a: SharedState, b: SharedState) -> SharedState {
        let mut live = a.live;
        for (v, tile) in b.live {
            live.entry(v).or_insert(tile);
        }
        let mut freed = BTreeMap::new();
        for (&v, f) in a.freed.iter().chain(b.freed.iter()) {
            let certain = a.freed.get(&v).is_some_and(|x| x.certain) && b.freed.get(&v).is_some_and(|x| x.certain);
            freed.entry(v).or_insert(Freed { certain, ..*f });
        }
        SharedState { live, freed, leaked: a.leaked.max(b.leaked) }
    }
}

impl<'k> Checker<'k> {
    /// The shared-memory effect of one instruction.
    pub(super) fn shared_effects(&mut self, w: &mut Walk<'k>, id: InstId, inst: &InstData) {
        match &inst.op {
            Op::AllocShared { ty } => {
                let Some(&tile) = inst.results.first() else { return };
                if !self.kernel.values.contains(tile) {
                    return;
                }
                let live = LiveTile {
                    bytes: ty.size_in_bytes(),
                    alloc: id,
                    depth: w.frames.len(),
                    loop_depth: w.loop_depth(),
                };
                w.shared.freed.remove(&tile.index());
                w.shared.live.insert(tile.index(), live);
                let total = w.shared.total();
                let limit = self.options.shared_memory_limit;
                if total > limit {
                    let mut notes: Vec<String> = w
                        .shared
                        .live
                        .iter()
                        .take(8)
                        .map(|(&v, t)| {
                            format!(
                                "{} ({} bytes, allocated by {})",
                                self.value_ref(ValueId::from_index(v)),
                                t.bytes,
                                self.inst_short(t.alloc)
                            )
                        })
                        .collect();
                    if w.shared.live.len() > 8 {
                        notes.push(format!("and {} more tiles", w.shared.live.len() - 8));
                    }
                    if w.shared.leaked > 0 {
                        notes.push(format!(
                            "and {} bytes of tiles allocated in blocks that ended without freeing them",
                            w.shared.leaked
                        ));
                    }
                    self.error(
                        inst.span,
                        format!(
                            "{}: {total} bytes of shared memory may be allocated at once here, over the limit of \
                             {limit} bytes",
                            self.inst_ref(id)
                        ),
                        notes,
                    );
                }
            }
            Op::FreeShared { tensor } => self.shared_free(w, id, *tensor),
            Op::LoadShared { src, .. } => self.shared_use(w, id, *src),
            Op::StoreShared { dst, .. } | Op::CopyAsync { dst, .. } => self.shared_use(w, id, *dst),
            _ => {}
        }
    }

    fn shared_free(&mut self, w: &mut Walk<'k>, id: InstId, tensor: ValueId) {
        let k = self.kernel;
        let Some(data) = k.values.get(tensor) else { return };
        let allocated = matches!(
            data.def,
            ValueDef::Result(a, 0) if matches!(k.insts.get(a), Some(InstData { op: Op::AllocShared { .. }, .. }))
        );
        if !allocated {
            // Values of other types are reported by the typing rules.
            if matches!(data.ty, Type::Shared(_)) {
                self.error(
                    self.inst_span(id),
                    format!(
                        "{}: frees %{}, which is {}, not the result of an `alloc_shared`: only allocated tiles \
                         can be freed",
                        self.inst_ref(id),
                        data.name,
                        self.def_desc(data.def)
                    ),
                    vec![],
                );
            }
            return;
        }
        let index = tensor.index();
        let previous = w.shared.freed.get(&index).copied();
        if let Some(f) = previous {
            let how = if f.certain { "was already freed" } else { "may already have been freed" };
            self.error(
                self.inst_span(id),
                format!("{}: frees %{}, which {how} by {}", self.inst_ref(id), data.name, self.inst_short(f.by)),
                vec!["a tile is freed at most once".to_string()],
            );
        }
        let Some(tile) = w.shared.live.remove(&index) else { return };
        if w.loop_depth() > tile.loop_depth
            && let Some(l) = w.innermost_loop()
        {
            self.error(
                self.inst_span(id),
                format!(
                    "{}: frees %{} inside the body of {}, but %{} is allocated outside that loop: the next \
                     iteration would free it again",
                    self.inst_ref(id),
                    data.name,
                    self.inst_short(l),
                    data.name
                ),
                vec![],
            );
        }
        w.shared.freed.insert(index, Freed { by: id, certain: true, depth: tile.depth });
    }

    fn shared_use(&mut self, w: &Walk<'k>, id: InstId, tensor: ValueId) {
        if let Some(f) = w.shared.freed.get(&tensor.index()).copied() {
            let how = if f.certain { "was freed" } else { "may have been freed" };
            self.error(
                self.inst_span(id),
                format!(
                    "{}: uses {} after it {how} by {}",
                    self.inst_ref(id),
                    self.value_ref(tensor),
                    self.inst_short(f.by)
                ),
                vec![],
            );
        }
    }

    /// Leaving the block at `depth`: tiles it allocated and did not free (on every path) stay
    /// allocated to the end of the kernel — an error inside a loop body, whose next iteration
    /// allocates them again (`in_loop` is the innermost loop around or of the block).
    pub(super) fn shared_leave_block(&mut self, w: &mut Walk<'k>, depth: usize, in_loop: Option<InstId>) {
        let leftover: Vec<(usize, LiveTile)> =
            w.shared.live.iter().filter(|(_, t)| t.depth >= depth).map(|(&v, &t)| (v, t)).collect();
        for (v, tile) in leftover {
            w.shared.live.remove(&v);
            w.shared.leaked = w.shared.leaked.saturating_add(tile.bytes);
            if let Some(l) = in_loop {
                let maybe = if w.shared.freed.contains_key(&v) { " on every path" } else { "" };
                self.error(
                    self.inst_span(tile.alloc),
                    format!(
                        "{}: %{} is allocated inside the body of {} and not freed{maybe} before the end of its \
                         block: every iteration would allocate it again",
                        self.inst_ref(tile.alloc),
                        self.kernel.values.get(ValueId::from_index(v)).map_or("?", |d| d.name.as_str()),
                        self.inst_short(l)
                    ),
                    vec![],
                );
            }
        }
        w.shared.freed.retain(|_, f| f.depth < depth);
    }
}
