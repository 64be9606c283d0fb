//! Register layouts in the unified mode form: how a tile is spread over the threads of a
//! block and the register slots of each thread.
//!
//! See the crate documentation for the model. In short, a [`RegisterLayout`] is a list of
//! modes per logical dim (outer to inner), an ordered list of thread axes ([`ThreadAxis`]:
//! a spatial mode or a replicated axis) and an ordered list of slot modes. Modes are
//! numbered `0..` in flattened order: dim 0's modes outer to inner, then dim 1's, and so on.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use crate::error::{LayoutError, Result, checked_product, overflow};

/// One axis of the thread index of a register layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadAxis {
    /// The spatial mode with this number (modes are numbered in flattened order).
    Mode(usize),
    /// A replicated axis of this size: threads that differ only in this digit hold the
    /// same elements. It belongs to no dim.
    Replicated(usize),
}

/// Whether a mode's digit indexes threads or slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModeKind {
    /// The digit is part of the thread index.
    Spatial,
    /// The digit is part of the slot (per-thread register) index.
    Local,
}

/// A map from (thread, slot) to the coordinates of an element of a tile.
///
/// Built from the primitives [`local`](Self::local), [`column_local`](Self::column_local),
/// [`spatial`](Self::spatial), [`column_spatial`](Self::column_spatial),
/// [`replicated`](Self::replicated) and [`unit`](Self::unit) with
/// [`compose`](Self::compose), or directly from its parts with
/// [`from_parts`](Self::from_parts). `==` and `Hash` compare canonical forms; use
/// [`raw_eq`](Self::raw_eq) to compare the stored forms.
#[derive(Debug, Clone)]
pub struct RegisterLayout {
    /// Mode sizes per dim, outer to inner. Mode numbers follow the flattened order.
    dims: Vec<Vec<usize>>,
    /// Thread axes, most significant first.
    threads: Vec<ThreadAxis>,
    /// Slot modes (by number), most significant first.
    slots: Vec<usize>,
    num_threads: usize,
    num_slots: usize,
}

// ---------------------------------------------------------------------------------------
// The working form: modes with arbitrary ids, used by every transformation.
// ---------------------------------------------------------------------------------------

/// A layout whose modes carry arbitrary ids (`sizes[id]`); ids not listed in any dim are
/// dead. Converted back to a [`RegisterLayout`] by renumbering in flattened order.
#[derive(Debug, Clone)]
struct Graph {
    sizes: Vec<usize>,
    dims: Vec<Vec<usize>>,
    threads: Vec<ThreadAxis>,
    slots: Vec<usize>,
}

/// Which ordered list a suffix split works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Dim(usize),
    Threads,
    Slots,
}

impl Graph {
    fn from_layout(layout: &RegisterLayout) -> Graph {
        let mut sizes = Vec::new();
        let mut dims = Vec::with_capacity(layout.dims.len());
        for dim in &layout.dims {
            let mut ids = Vec::with_capacity(dim.len());
            for &size in dim {
                ids.push(sizes.len());
                sizes.push(size);
            }
            dims.push(ids);
        }
        Graph { sizes, dims, threads: layout.threads.clone(), slots: layout.slots.clone() }
    }

    /// Appends the modes of `layout` (with fresh ids) to the dims `dim_offset..`, and returns
    /// the translated thread and slot lists (not yet appended).
    fn add_layout(&mut self, layout: &RegisterLayout, dim_offset: usize) -> (Vec<ThreadAxis>, Vec<usize>) {
        let base = self.sizes.len();
        for (d, dim) in layout.dims.iter().enumerate() {
            for &size in dim {
                let id = self.sizes.len();
                self.sizes.push(size);
                self.dims[dim_offset + d].push(id);
            }
        }
        let threads = layout
            .threads
            .iter()
            .map(|axis| match *axis {
                ThreadAxis::Mode(m) => ThreadAxis::Mode(base + m),
                rep => rep,
            })
            .collect();
        let slots = layout.slots.iter().map(|&m| base + m).collect();
        (threads, slots)
    }

    /// Renumbers the live modes in flattened order. The caller guarantees that every live
    /// mode is in exactly one of `threads` / `slots` and the size invariants hold.
    fn into_layout(self) -> RegisterLayout {
        let mut new_id = vec![usize::MAX; self.sizes.len()];
        let mut next = 0;
        let mut dims = Vec::with_capacity(self.dims.len());
        for dim in &self.dims {
            let mut sizes = Vec::with_capacity(dim.len());
            for &id in dim {
                new_id[id] = next;
                next += 1;
                sizes.push(self.sizes[id]);
            }
            dims.push(sizes);
        }
        let threads: Vec<ThreadAxis> = self
            .threads
            .iter()
            .map(|axis| match *axis {
                ThreadAxis::Mode(id) => ThreadAxis::Mode(new_id[id]),
                rep => rep,
            })
            .collect();
        let slots: Vec<usize> = self.slots.iter().map(|&id| new_id[id]).collect();
        let num_threads = threads
            .iter()
            .map(|axis| match *axis {
                ThreadAxis::Mode(id) => sizes_of(&dims, id),
                ThreadAxis::Replicated(n) => n,
            })
            .product();
        let num_slots = slots.iter().map(|&id| sizes_of(&dims, id)).product();
        RegisterLayout { dims, threads, slots, num_threads, num_slots }
    }

    fn is_thread(&self, id: usize) -> bool {
        self.threads.contains(&ThreadAxis::Mode(id))
    }

    /// Removes a mode from its dim list and its order list.
    fn remove_mode(&mut self, id: usize) {
        for dim in &mut self.dims {
            dim.retain(|&m| m != id);
        }
        self.threads.retain(|&a| a != ThreadAxis::Mode(id));
        self.slots.retain(|&m| m != id);
    }

    /// Splits mode `id` into an outer part of size `size / inner` (keeping the id) and an
    /// inner part of size `inner` (a new id placed right after it in its dim list and its
    /// order list). `inner` must divide the size.
    fn split_mode(&mut self, id: usize, inner: usize) -> usize {
        let new = self.sizes.len();
        self.sizes.push(inner);
        self.sizes[id] /= inner;
        for dim in &mut self.dims {
            if let Some(p) = dim.iter().position(|&m| m == id) {
                dim.insert(p + 1, new);
            }
        }
        if let Some(p) = self.threads.iter().position(|&a| a == ThreadAxis::Mode(id)) {
            self.threads.insert(p + 1, ThreadAxis::Mode(new));
        }
        if let Some(p) = self.slots.iter().position(|&m| m == id) {
            self.slots.insert(p + 1, new);
        }
        new
    }

    fn axis_size(&self, axis: ThreadAxis) -> usize {
        match axis {
            ThreadAxis::Mode(id) => self.sizes[id],
            ThreadAxis::Replicated(n) => n,
        }
    }

    fn list_len(&self, list: List) -> usize {
        match list {
            List::Dim(d) => self.dims[d].len(),
            List::Threads => self.threads.len(),
            List::Slots => self.slots.len(),
        }
    }

    fn list_size(&self, list: List, pos: usize) -> usize {
        match list {
            List::Dim(d) => self.sizes[self.dims[d][pos]],
            List::Threads => self.axis_size(self.threads[pos]),
            List::Slots => self.sizes[self.slots[pos]],
        }
    }

    /// Splits entries of `list` so that its innermost entries have product exactly
    /// `target`; returns the number of entries in that inner suffix, or a description of
    /// the entry that cannot be split.
    fn split_suffix(&mut self, list: List, target: usize) -> std::result::Result<usize, String> {
        let mut product = 1usize;
        let mut count = 0usize;
        let len = self.list_len(list);
        while product != target {
            if count == len {
                return Err(format!("its entries multiply to {product}, less than {target}"));
            }
            let pos = len - 1 - count;
            let size = self.list_size(list, pos);
            let Some(next) = product.checked_mul(size) else {
                return Err(format!("overflow while accumulating to {target}"));
            };
            if next <= target && target.is_multiple_of(next) {
                product = next;
                count += 1;
                continue;
            }
            // The boundary falls inside this entry: split it if possible.
            if !target.is_multiple_of(product) || !size.is_multiple_of(target / product) {
                return Err(format!(
                    "an entry of size {size} would have to be split to leave an inner part \
                     of {} below an inner product of {product}",
                    if target.is_multiple_of(product) {
                        (target / product).to_string()
                    } else {
                        format!("{target}/{product}")
                    }
                ));
            }
            let inner = target / product;
            match list {
                List::Dim(d) => {
                    let id = self.dims[d][pos];
                    self.split_mode(id, inner);
                }
                List::Slots => {
                    let id = self.slots[pos];
                    self.split_mode(id, inner);
                }
                List::Threads => match self.threads[pos] {
                    ThreadAxis::Mode(id) => {
                        self.split_mode(id, inner);
                    }
                    ThreadAxis::Replicated(n) => {
                        self.threads[pos] = ThreadAxis::Replicated(n / inner);
                        self.threads.insert(pos + 1, ThreadAxis::Replicated(inner));
                    }
                },
            }
            product = target;
            count += 1;
        }
        Ok(count)
    }

    /// Drops size-1 modes and axes and merges adjacent modes/axes until nothing changes.
    fn canonicalize(&mut self) {
        let dead: Vec<usize> = self.dims.iter().flatten().copied().filter(|&id| self.sizes[id] == 1).collect();
        for id in dead {
            self.remove_mode(id);
        }
        self.threads.retain(|&a| a != ThreadAxis::Replicated(1));
        loop {
            let mut changed = false;
            // Adjacent replicated axes.
            let mut k = 0;
            while k + 1 < self.threads.len() {
                if let (ThreadAxis::Replicated(a), ThreadAxis::Replicated(b)) = (self.threads[k], self.threads[k + 1]) {
                    // The product is bounded by the layout's thread count, which fits.
                    self.threads[k] = ThreadAxis::Replicated(a * b);
                    self.threads.remove(k + 1);
                    changed = true;
                } else {
                    k += 1;
                }
            }
            // Adjacent modes of one dim that are adjacent in their order list too.
            let mut merge = None;
            'search: for dim in &self.dims {
                for pair in dim.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    let in_threads =
                        self.threads.windows(2).any(|w| w[0] == ThreadAxis::Mode(a) && w[1] == ThreadAxis::Mode(b));
                    let in_slots = self.slots.windows(2).any(|w| w[0] == a && w[1] == b);
                    if in_threads || in_slots {
                        merge = Some((a, b));
                        break 'search;
                    }
                }
            }
            if let Some((a, b)) = merge {
                self.sizes[a] *= self.sizes[b];
                self.remove_mode(b);
                changed = true;
            }
            if !changed {
                break;
            }
        }
    }
}

/// Size of mode `id` (flattened numbering) in a dims list.
fn sizes_of(dims: &[Vec<usize>], id: usize) -> usize {
    dims.iter().flatten().nth(id).copied().unwrap_or(1)
}

/// Mixed-radix digits of `value` over `radices` (most significant first).
fn digits_of(mut value: usize, radices: &[usize]) -> Vec<usize> {
    let mut digits = vec![0; radices.len()];
    for (k, &r) in radices.iter().enumerate().rev() {
        digits[k] = value % r;
        value /= r;
    }
    digits
}

fn check_shape(shape: &[usize]) -> Result<()> {
    for (d, &s) in shape.iter().enumerate() {
        if s == 0 {
            return Err(LayoutError::ZeroSize { what: format!("dim {d} of the shape") });
        }
    }
    checked_product(shape, "the number of elements")?;
    Ok(())
}

impl RegisterLayout {
    // -----------------------------------------------------------------------------------
    // Construction
    // -----------------------------------------------------------------------------------

    /// Builds a layout from its parts, as in the general expression form
    /// `layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])`.
    ///
    /// `dims[d]` lists the sizes of dim `d`'s modes, outer to inner; modes are numbered
    /// `0..` in flattened order (dim 0's modes, then dim 1's, ...). `threads` lists the
    /// thread axes, most significant first; `slots` lists the slot modes, most significant
    /// first. Every mode must appear exactly once in `threads` or `slots`; sizes must be at
    /// least 1 (size-1 modes and axes are allowed here and removed by canonicalization), and
    /// the product of all mode and axis sizes must fit in `usize`. The result is kept in the
    /// raw form given (see [`canonicalize`](Self::canonicalize)).
    pub fn from_parts(dims: Vec<Vec<usize>>, threads: Vec<ThreadAxis>, slots: Vec<usize>) -> Result<RegisterLayout> {
        let sizes: Vec<usize> = dims.iter().flatten().copied().collect();
        for (d, dim) in dims.iter().enumerate() {
            for (j, &s) in dim.iter().enumerate() {
                if s == 0 {
                    return Err(LayoutError::ZeroSize { what: format!("mode {j} of dim {d}") });
                }
            }
        }
        let mut seen = vec![false; sizes.len()];
        let mut mark = |m: usize, place: &str| -> Result<()> {
            if m >= sizes.len() {
                return Err(LayoutError::InvalidParts {
                    reason: format!("{place} names mode {m}, but there are only {} modes", sizes.len()),
                });
            }
            if seen[m] {
                return Err(LayoutError::InvalidParts {
                    reason: format!("mode {m} appears more than once in threads and slots"),
                });
            }
            seen[m] = true;
            Ok(())
        };
        // The product of every mode and axis size (= threads * slots) must fit; then every
        // partial product computed later fits too.
        let mut total = checked_product(&sizes, "the number of elements")?;
        for axis in &threads {
            match *axis {
                ThreadAxis::Mode(m) => mark(m, "threads")?,
                ThreadAxis::Replicated(0) => {
                    return Err(LayoutError::ZeroSize { what: "a replicated axis".to_string() });
                }
                ThreadAxis::Replicated(n) => {
                    total = total.checked_mul(n).ok_or_else(|| overflow("the number of threads"))?;
                }
            }
        }
        for &m in &slots {
            mark(m, "slots")?;
        }
        if let Some(m) = seen.iter().position(|&s| !s) {
            return Err(LayoutError::InvalidParts { reason: format!("mode {m} appears in neither threads nor slots") });
        }
        let num_threads = threads
            .iter()
            .map(|axis| match *axis {
                ThreadAxis::Mode(m) => sizes[m],
                ThreadAxis::Replicated(n) => n,
            })
            .product();
        let num_slots = slots.iter().map(|&m| sizes[m]).product();
        Ok(RegisterLayout { dims, threads, slots, num_threads, num_slots })
    }

    fn primitive(shape: &[usize], spatial: bool, column: bool) -> Result<RegisterLayout> {
        check_shape(shape)?;
        let dims = shape.iter().map(|&s| vec![s]).collect();
        let mut order: Vec<usize> = (0..shape.len()).collect();
        if column {
            order.reverse();
        }
        let layout = if spatial {
            RegisterLayout::from_parts(dims, order.into_iter().map(ThreadAxis::Mode).collect(), vec![])?
        } else {
            RegisterLayout::from_parts(dims, vec![], order)?
        };
        Ok(layout.canonicalize())
    }

    /// The unit layout: rank 0, one thread, one slot. `f.compose(&unit) == f` and
    /// `unit.compose(&f) == f` for every `f`. Written `local()`.
    pub fn unit() -> RegisterLayout {
        RegisterLayout { dims: vec![], threads: vec![], slots: vec![], num_threads: 1, num_slots: 1 }
    }

    /// One thread holding the whole tile of the given shape; slots in row-major order
    /// (dim 0 most significant). Written `local(s0, s1, ...)`. Errors on a size 0 or when
    /// the element count overflows.
    pub fn local(shape: &[usize]) -> Result<RegisterLayout> {
        Self::primitive(shape, false, false)
    }

    /// Like [`local`](Self::local) but with slots in column-major order (the last dim most
    /// significant). Written `column_local(...)`.
    pub fn column_local(shape: &[usize]) -> Result<RegisterLayout> {
        Self::primitive(shape, false, true)
    }

    /// One element per thread, threads in row-major order (for rank 2,
    /// `t = i0 * s1 + i1`). Written `spatial(s0, s1, ...)`.
    pub fn spatial(shape: &[usize]) -> Result<RegisterLayout> {
        Self::primitive(shape, true, false)
    }

    /// Like [`spatial`](Self::spatial) but with threads in column-major order (for rank 2,
    /// `t = i1 * s0 + i0`). Written `column_spatial(...)`.
    pub fn column_spatial(shape: &[usize]) -> Result<RegisterLayout> {
        Self::primitive(shape, true, true)
    }

    /// Rank 0 (shape `()`), `n` threads that all hold the single element in one slot.
    /// Written `replicated(n)`. Errors when `n == 0`.
    pub fn replicated(n: usize) -> Result<RegisterLayout> {
        if n == 0 {
            return Err(LayoutError::ZeroSize { what: "the replication factor".to_string() });
        }
        Ok(RegisterLayout::from_parts(vec![], vec![ThreadAxis::Replicated(n)], vec![])?.canonicalize())
    }

    // -----------------------------------------------------------------------------------
    // Accessors
    // -----------------------------------------------------------------------------------

    /// Number of logical dims.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The tile shape: per dim, the product of its mode sizes.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|d| d.iter().product()).collect()
    }

    /// Number of elements of the tile (product of the shape).
    pub fn num_elements(&self) -> usize {
        self.dims.iter().flatten().product()
    }

    /// Number of threads: the product of the thread axis sizes.
    pub fn num_threads(&self) -> usize {
        self.num_threads
    }

    /// Number of slots per thread: the product of the slot mode sizes.
    pub fn num_slots(&self) -> usize {
        self.num_slots
    }

    /// Mode sizes per dim, outer to inner (modes are numbered in this flattened order).
    pub fn dims(&self) -> &[Vec<usize>] {
        &self.dims
    }

    /// Thread axes, most significant first.
    pub fn threads(&self) -> &[ThreadAxis] {
        &self.threads
    }

    /// Slot modes (by number), most significant first.
    pub fn slots(&self) -> &[usize] {
        &self.slots
    }

    /// Number of modes.
    pub fn num_modes(&self) -> usize {
        self.dims.iter().map(Vec::len).sum()
    }

    /// Size of mode `mode`, or `None` if there is no such mode.
    pub fn mode_size(&self, mode: usize) -> Option<usize> {
        self.dims.iter().flatten().nth(mode).copied()
    }

    /// The dim that mode `mode` belongs to, or `None` if there is no such mode.
    pub fn mode_dim(&self, mode: usize) -> Option<usize> {
        let mut first = 0;
        for (d, dim) in self.dims.iter().enumerate() {
            if mode < first + dim.len() {
                return Some(d);
            }
            first += dim.len();
        }
        None
    }

    /// Whether mode `mode` is spatial or local, or `None` if there is no such mode.
    pub fn mode_kind(&self, mode: usize) -> Option<ModeKind> {
        if self.threads.contains(&ThreadAxis::Mode(mode)) {
            Some(ModeKind::Spatial)
        } else if self.slots.contains(&mode) {
            Some(ModeKind::Local)
        } else {
            None
        }
    }

    /// Whether some element is held by more than one thread (a replicated axis of size > 1).
    pub fn is_replicated(&self) -> bool {
        self.threads.iter().any(|a| matches!(a, ThreadAxis::Replicated(n) if *n > 1))
    }

    // -----------------------------------------------------------------------------------
    // Canonical form
    // -----------------------------------------------------------------------------------

    /// The canonical form: size-1 modes and size-1 replicated axes dropped, two modes of a
    /// dim that are adjacent in the dim's list (outer `a` right before inner `b`) and also
    /// adjacent in the same order in `threads` or `slots` merged into one mode of size
    /// `a * b`, adjacent replicated axes merged, repeated to a fixpoint. Idempotent, and
    /// it maps every (thread, slot) to the same element.
    pub fn canonicalize(&self) -> RegisterLayout {
        let mut graph = Graph::from_layout(self);
        graph.canonicalize();
        graph.into_layout()
    }

    /// Whether the stored form is already canonical.
    pub fn is_canonical(&self) -> bool {
        self.raw_eq(&self.canonicalize())
    }

    /// Equality of the stored forms (no canonicalization): same dims, threads and slots.
    pub fn raw_eq(&self, other: &RegisterLayout) -> bool {
        self.dims == other.dims && self.threads == other.threads && self.slots == other.slots
    }

    // -----------------------------------------------------------------------------------
    // The map and its inverse
    // -----------------------------------------------------------------------------------

    /// The coordinates of the element held by thread `thread` in slot `slot`. Errors if
    /// `thread >= num_threads()` or `slot >= num_slots()`.
    pub fn map(&self, thread: usize, slot: usize) -> Result<Vec<usize>> {
        if thread >= self.num_threads {
            return Err(LayoutError::ThreadOutOfRange { thread, num_threads: self.num_threads });
        }
        if slot >= self.num_slots {
            return Err(LayoutError::SlotOutOfRange { slot, num_slots: self.num_slots });
        }
        Ok(self.map_in_range(thread, slot))
    }

    fn map_in_range(&self, thread: usize, slot: usize) -> Vec<usize> {
        let sizes: Vec<usize> = self.dims.iter().flatten().copied().collect();
        let mut digit = vec![0usize; sizes.len()];
        let mut rest = thread;
        for axis in self.threads.iter().rev() {
            match *axis {
                ThreadAxis::Mode(m) => {
                    digit[m] = rest % sizes[m];
                    rest /= sizes[m];
                }
                ThreadAxis::Replicated(n) => rest /= n,
            }
        }
        let mut rest = slot;
        for &m in self.slots.iter().rev() {
            digit[m] = rest % sizes[m];
            rest /= sizes[m];
        }
        let mut coords = Vec::with_capacity(self.dims.len());
        let mut m = 0;
        for dim in &self.dims {
            let mut c = 0;
            for &size in dim {
                c = c * size + digit[m];
                m += 1;
            }
            coords.push(c);
        }
        coords
    }

    /// Every `(thread, slot, coordinates)` of the layout, threads outer and slots inner,
    /// both ascending: the full table of [`map`](Self::map).
    pub fn table(&self) -> impl Iterator<Item = (usize, usize, Vec<usize>)> + '_ {
        (0..self.num_threads).flat_map(move |t| (0..self.num_slots).map(move |i| (t, i, self.map_in_range(t, i))))
    }

    /// The inverse of [`map`](Self::map): every `(thread, slot)` holding the element at
    /// `coords`, sorted by thread. There are several exactly when the layout has
    /// replicated axes (their product is the count). Errors if the rank or a coordinate is
    /// out of range.
    pub fn holders(&self, coords: &[usize]) -> Result<Vec<(usize, usize)>> {
        if coords.len() != self.rank() {
            return Err(LayoutError::RankMismatch { left: self.rank(), right: coords.len() });
        }
        let shape = self.shape();
        let mut digit = Vec::with_capacity(self.num_modes());
        for (d, (&c, dim)) in coords.iter().zip(&self.dims).enumerate() {
            if c >= shape[d] {
                return Err(LayoutError::CoordinateOutOfRange { dim: d, coord: c, size: shape[d] });
            }
            digit.extend(digits_of(c, dim));
        }
        let sizes: Vec<usize> = self.dims.iter().flatten().copied().collect();
        let slot = self.slots.iter().fold(0usize, |acc, &m| acc * sizes[m] + digit[m]);
        let mut threads = vec![0usize];
        for axis in &self.threads {
            match *axis {
                ThreadAxis::Mode(m) => {
                    for t in &mut threads {
                        *t = *t * sizes[m] + digit[m];
                    }
                }
                ThreadAxis::Replicated(n) => {
                    threads = threads.iter().flat_map(|&t| (0..n).map(move |r| t * n + r)).collect();
                }
            }
        }
        Ok(threads.into_iter().map(|t| (t, slot)).collect())
    }

    // -----------------------------------------------------------------------------------
    // Compose and divide
    // -----------------------------------------------------------------------------------

    /// Lifts a rank-0 layout to `rank` with size-1 dims (no modes).
    fn lifted(&self, rank: usize) -> RegisterLayout {
        let mut lifted = self.clone();
        if lifted.dims.is_empty() {
            lifted.dims = vec![vec![]; rank];
        }
        lifted
    }

    /// The ranks both operands take in a binary op: equal ranks, or a rank-0 operand lifted.
    fn common_rank(&self, other: &RegisterLayout) -> Result<usize> {
        match (self.rank(), other.rank()) {
            (a, b) if a == b => Ok(a),
            (0, b) => Ok(b),
            (a, 0) => Ok(a),
            (a, b) => Err(LayoutError::RankMismatch { left: a, right: b }),
        }
    }

    fn total(&self) -> usize {
        // Fits: checked when the layout was built.
        self.num_threads * self.num_slots
    }

    /// The Kronecker product `self ∘ inner` (`self` outer, `inner` inner).
    ///
    /// Ranks must be equal, except that a rank-0 operand is first lifted to the other's
    /// rank with size-1 dims. The result has shape `shape_f[d] * shape_g[d]`, threads
    /// `T_f * T_g` and slots `m_f * m_g`, and maps
    /// `h(t, i) = f(t / T_g, i / m_g) * shape_g + g(t % T_g, i % m_g)` (per dim). In mode
    /// form: per dim f's modes then g's, threads f's axes then g's, slots f's then g's.
    /// Associative, not commutative; [`unit`](Self::unit) is a two-sided identity. The
    /// result is canonical.
    pub fn compose(&self, inner: &RegisterLayout) -> Result<RegisterLayout> {
        let rank = self.common_rank(inner)?;
        self.total().checked_mul(inner.total()).ok_or_else(|| overflow("the size of the composed layout"))?;
        let mut graph = Graph { sizes: vec![], dims: vec![vec![]; rank], threads: vec![], slots: vec![] };
        let (t_f, s_f) = graph.add_layout(&self.lifted(rank), 0);
        let (t_g, s_g) = graph.add_layout(&inner.lifted(rank), 0);
        graph.threads = t_f.into_iter().chain(t_g).collect();
        graph.slots = s_f.into_iter().chain(s_g).collect();
        graph.canonicalize();
        Ok(graph.into_layout())
    }

    /// Splits `self` (canonical) into an outer and an inner layout with the given inner
    /// shape, thread count and slot count, such that `outer ∘ inner == self`.
    fn split_inner(
        &self,
        inner_shape: &[usize],
        inner_threads: usize,
        inner_slots: usize,
    ) -> Result<(RegisterLayout, RegisterLayout)> {
        let mut graph = Graph::from_layout(&self.canonicalize());
        let no_quotient = |reason: String| LayoutError::NoQuotient { reason };
        for (d, &target) in inner_shape.iter().enumerate() {
            graph
                .split_suffix(List::Dim(d), target)
                .map_err(|e| no_quotient(format!("dim {d} cannot be cut at an inner size of {target}: {e}")))?;
        }
        let thread_count = graph
            .split_suffix(List::Threads, inner_threads)
            .map_err(|e| no_quotient(format!("the threads cannot be cut at an inner count of {inner_threads}: {e}")))?;
        let slot_count = graph
            .split_suffix(List::Slots, inner_slots)
            .map_err(|e| no_quotient(format!("the slots cannot be cut at an inner count of {inner_slots}: {e}")))?;
        // Inner parts (after all splits, dim suffix lengths may have grown: recompute).
        let mut dim_inner = Vec::with_capacity(inner_shape.len());
        for (d, &target) in inner_shape.iter().enumerate() {
            let list = &graph.dims[d];
            let mut product = 1;
            let mut count = 0;
            while product != target {
                product *= graph.sizes[list[list.len() - 1 - count]];
                count += 1;
            }
            dim_inner.push(count);
        }
        let thread_split = graph.threads.len() - thread_count;
        let slot_split = graph.slots.len() - slot_count;
        let mut inner_modes: HashSet<usize> = HashSet::new();
        for (d, &count) in dim_inner.iter().enumerate() {
            let list = &graph.dims[d];
            inner_modes.extend(&list[list.len() - count..]);
        }
        for (pos, axis) in graph.threads.iter().enumerate() {
            if let ThreadAxis::Mode(id) = *axis {
                let in_inner_order = pos >= thread_split;
                if in_inner_order != inner_modes.contains(&id) {
                    return Err(no_quotient(mismatch_reason(&graph, id, true, in_inner_order)));
                }
            }
        }
        for (pos, &id) in graph.slots.iter().enumerate() {
            let in_inner_order = pos >= slot_split;
            if in_inner_order != inner_modes.contains(&id) {
                return Err(no_quotient(mismatch_reason(&graph, id, false, in_inner_order)));
            }
        }
        let mut outer = graph.clone();
        let mut inner = graph;
        for (d, &count) in dim_inner.iter().enumerate() {
            let split = outer.dims[d].len() - count;
            outer.dims[d].truncate(split);
            inner.dims[d].drain(..split);
        }
        outer.threads.truncate(thread_split);
        inner.threads.drain(..thread_split);
        outer.slots.truncate(slot_split);
        inner.slots.drain(..slot_split);
        outer.canonicalize();
        inner.canonicalize();
        Ok((outer.into_layout(), inner.into_layout()))
    }
}

fn mismatch_reason(graph: &Graph, id: usize, spatial: bool, inner_in_order: bool) -> String {
    let dim = graph.dims.iter().position(|l| l.contains(&id)).unwrap_or(0);
    let kind = if spatial { "spatial" } else { "local" };
    let list = if spatial { "threads" } else { "slots" };
    if inner_in_order {
        format!(
            "a {kind} mode of size {} of dim {dim} is in the inner part of the {list} \
                 but in the outer part of its dim",
            graph.sizes[id]
        )
    } else {
        format!(
            "a {kind} mode of size {} of dim {dim} is in the inner part of its dim \
                 but in the outer part of the {list}",
            graph.sizes[id]
        )
    }
}

impl RegisterLayout {
    fn check_divisible(&self, divisor: &RegisterLayout, rank: usize) -> Result<()> {
        let f = self.lifted(rank);
        let g = divisor.lifted(rank);
        for (d, (a, b)) in f.shape().into_iter().zip(g.shape()).enumerate() {
            if a % b != 0 {
                return Err(LayoutError::NotDivisible {
                    what: format!("the shape of dim {d}"),
                    dividend: a,
                    divisor: b,
                });
            }
        }
        if !f.num_threads.is_multiple_of(g.num_threads) {
            return Err(LayoutError::NotDivisible {
                what: "the number of threads".to_string(),
                dividend: f.num_threads,
                divisor: g.num_threads,
            });
        }
        if !f.num_slots.is_multiple_of(g.num_slots) {
            return Err(LayoutError::NotDivisible {
                what: "the number of slots".to_string(),
                dividend: f.num_slots,
                divisor: g.num_slots,
            });
        }
        Ok(())
    }

    /// Rank of a division's operands: the divisor may be rank 0 (it is lifted); otherwise
    /// ranks must be equal.
    fn division_rank(&self, divisor: &RegisterLayout) -> Result<usize> {
        if divisor.rank() == 0 || divisor.rank() == self.rank() {
            Ok(self.rank())
        } else {
            Err(LayoutError::RankMismatch { left: self.rank(), right: divisor.rank() })
        }
    }

    /// Right division: the layout `r` with `r ∘ divisor == self` (`divisor` inner).
    ///
    /// A rank-0 divisor is lifted to `self`'s rank. Errors with
    /// [`LayoutError::NotDivisible`] when a shape, thread or slot count of the divisor does
    /// not divide `self`'s, and with [`LayoutError::NoQuotient`] when `self` cannot be cut
    /// there or its inner part is not `divisor`. The result is canonical;
    /// `a.compose(&b)?.divide_right(&b)? == a`.
    pub fn divide_right(&self, divisor: &RegisterLayout) -> Result<RegisterLayout> {
        let rank = self.division_rank(divisor)?;
        self.check_divisible(divisor, rank)?;
        let g = divisor.lifted(rank).canonicalize();
        let (outer, inner) = self.split_inner(&g.shape(), g.num_threads, g.num_slots)?;
        if inner != g {
            return Err(LayoutError::NoQuotient {
                reason: format!("the inner part of the dividend is {inner}, not the divisor {g}"),
            });
        }
        Ok(outer)
    }

    /// Left division: the layout `r` with `divisor ∘ r == self` (`divisor` outer).
    ///
    /// Same rules and errors as [`divide_right`](Self::divide_right), mirrored:
    /// `a.compose(&b)?.divide_left(&a)? == b`.
    pub fn divide_left(&self, divisor: &RegisterLayout) -> Result<RegisterLayout> {
        let rank = self.division_rank(divisor)?;
        self.check_divisible(divisor, rank)?;
        let g = divisor.lifted(rank).canonicalize();
        let inner_shape: Vec<usize> = self.shape().iter().zip(g.shape()).map(|(a, b)| a / b).collect();
        let (outer, inner) =
            self.split_inner(&inner_shape, self.num_threads / g.num_threads, self.num_slots / g.num_slots)?;
        if outer != g {
            return Err(LayoutError::NoQuotient {
                reason: format!("the outer part of the dividend is {outer}, not the divisor {g}"),
            });
        }
        Ok(inner)
    }

    // -----------------------------------------------------------------------------------
    // Shape operations
    // -----------------------------------------------------------------------------------

    /// Reduces along `dims`: in each of them, spatial modes become replicated axes (at the
    /// same position in the thread list, so the thread numbering is unchanged) and local
    /// modes disappear (the slot numbering keeps the other slot modes in order). Each
    /// reduced dim gets size 1 if `keep_dims`, and is removed otherwise. Errors if a dim is
    /// out of range or given twice. The result is canonical.
    pub fn reduce(&self, dims: &[usize], keep_dims: bool) -> Result<RegisterLayout> {
        let mut seen = vec![false; self.rank()];
        for &d in dims {
            if d >= self.rank() {
                return Err(LayoutError::DimOutOfRange { dim: d, rank: self.rank() });
            }
            if seen[d] {
                return Err(LayoutError::DuplicateDim { dim: d });
            }
            seen[d] = true;
        }
        let mut graph = Graph::from_layout(self);
        for &d in dims {
            for id in std::mem::take(&mut graph.dims[d]) {
                if graph.is_thread(id) {
                    let size = graph.sizes[id];
                    for axis in &mut graph.threads {
                        if *axis == ThreadAxis::Mode(id) {
                            *axis = ThreadAxis::Replicated(size);
                        }
                    }
                } else {
                    graph.slots.retain(|&m| m != id);
                }
            }
        }
        if !keep_dims {
            graph.dims = graph.dims.into_iter().enumerate().filter(|(d, _)| !seen[*d]).map(|(_, l)| l).collect();
        }
        graph.canonicalize();
        Ok(graph.into_layout())
    }

    /// Permutes the dims: new dim `k` is old dim `perm[k]`; modes move with their dims and
    /// the thread and slot orders are unchanged. Errors if `perm` is not a permutation of
    /// `0..rank`. The result is canonical.
    pub fn permute(&self, perm: &[usize]) -> Result<RegisterLayout> {
        let mut seen = vec![false; self.rank()];
        let valid =
            perm.len() == self.rank() && perm.iter().all(|&p| p < seen.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(LayoutError::NotAPermutation { perm: perm.to_vec(), rank: self.rank() });
        }
        let mut graph = Graph::from_layout(self);
        let old = std::mem::take(&mut graph.dims);
        graph.dims = perm.iter().map(|&p| old[p].clone()).collect();
        graph.canonicalize();
        Ok(graph.into_layout())
    }

    /// A 2-D layout with its dims exchanged (`permute(&[1, 0])`): the same threads and slots,
    /// each element at the transposed coordinates. Errors unless the layout is 2-D.
    pub fn transpose(&self) -> Result<RegisterLayout> {
        self.permute(&[1, 0])
    }

    /// Reshapes the tile, keeping the row-major order of the logical index: element `x`
    /// of the old tile in row-major order is element `x` of the new tile. All dims' modes
    /// are flattened in row-major order (dim 0's outermost first) and cut into consecutive
    /// runs of products `new_shape[k]`, splitting modes where a run ends inside one. Errors
    /// on a size 0, when the element counts differ, or when a needed split does not divide
    /// a mode's size. The result is canonical.
    pub fn reshape(&self, new_shape: &[usize]) -> Result<RegisterLayout> {
        check_shape(new_shape)?;
        let from = self.num_elements();
        let to = new_shape.iter().product();
        if from != to {
            return Err(LayoutError::ElementCountMismatch { from, to });
        }
        let mut graph = Graph::from_layout(&self.canonicalize());
        let flat: Vec<usize> = graph.dims.iter().flatten().copied().collect();
        graph.dims = vec![flat];
        // Suffix products: new dim k starts where the inner product is prod(new_shape[k..]).
        let mut suffix = 1usize;
        let mut targets = Vec::with_capacity(new_shape.len());
        for &s in new_shape.iter().rev() {
            suffix *= s;
            targets.push(suffix);
        }
        for &target in &targets {
            graph.split_suffix(List::Dim(0), target).map_err(|e| LayoutError::ReshapeImpossible {
                reason: format!("the flattened modes cannot be cut at an inner size of {target}: {e}"),
            })?;
        }
        let flat = std::mem::take(&mut graph.dims[0]);
        let mut dims = vec![Vec::new(); new_shape.len()];
        let mut end = flat.len();
        for (k, &size) in new_shape.iter().enumerate().rev() {
            // The splits above put a boundary here; modes have size >= 2, so the walk is exact.
            let mut start = end;
            let mut product = 1;
            while product < size && start > 0 {
                start -= 1;
                product *= graph.sizes[flat[start]];
            }
            dims[k] = flat[start..end].to_vec();
            end = start;
        }
        graph.dims = dims;
        graph.canonicalize();
        Ok(graph.into_layout())
    }

    /// Concatenates dims: the result has shape `shape_f ++ shape_g`, threads f's then g's,
    /// slots f's then g's, so `h(t, i) = (f(t / T_g, i / m_g), g(t % T_g, i % m_g))`.
    /// Errors only on overflow. The result is canonical.
    pub fn concat(&self, other: &RegisterLayout) -> Result<RegisterLayout> {
        self.total().checked_mul(other.total()).ok_or_else(|| overflow("the size of the concatenated layout"))?;
        let rank = self.rank() + other.rank();
        let mut graph = Graph { sizes: vec![], dims: vec![vec![]; rank], threads: vec![], slots: vec![] };
        let (t_f, s_f) = graph.add_layout(self, 0);
        let (t_g, s_g) = graph.add_layout(other, self.rank());
        graph.threads = t_f.into_iter().chain(t_g).collect();
        graph.slots = s_f.into_iter().chain(s_g).collect();
        graph.canonicalize();
        Ok(graph.into_layout())
    }

    /// The sub-tile `[start, start + len)` of dim `dim`, other dims whole, with
    /// coordinates relative to `start`.
    ///
    /// Valid when the dim's modes cut into an outer part of product `shape[dim] / len` and
    /// an inner part of product `len` (splitting a mode if needed), `start` is a multiple of
    /// `len`, and the outer part has only local modes: then every thread keeps the subset of
    /// its slots whose outer digits spell `start / len`, and the remaining slots keep their
    /// relative order. Otherwise a typed error says why. The result is canonical.
    pub fn slice(&self, dim: usize, start: usize, len: usize) -> Result<RegisterLayout> {
        if dim >= self.rank() {
            return Err(LayoutError::DimOutOfRange { dim, rank: self.rank() });
        }
        if len == 0 {
            return Err(LayoutError::ZeroSize { what: "the slice length".to_string() });
        }
        let size = self.shape()[dim];
        let invalid = |reason: String| LayoutError::InvalidSlice { reason };
        if !size.is_multiple_of(len) {
            return Err(invalid(format!("the length {len} does not divide the size {size} of dim {dim}")));
        }
        if !start.is_multiple_of(len) {
            return Err(invalid(format!("the start {start} is not a multiple of the length {len}")));
        }
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(invalid(format!("[{start}, {start}+{len}) is not inside dim {dim} of size {size}")));
        }
        let mut graph = Graph::from_layout(&self.canonicalize());
        let count = graph
            .split_suffix(List::Dim(dim), len)
            .map_err(|e| invalid(format!("dim {dim} cannot be cut at an inner size of {len}: {e}")))?;
        let split = graph.dims[dim].len() - count;
        let outer: Vec<usize> = graph.dims[dim][..split].to_vec();
        if let Some(&id) = outer.iter().find(|&&id| graph.is_thread(id)) {
            return Err(invalid(format!(
                "the part of dim {dim} above the slice contains a spatial mode of size {}; \
                 the slice would not be held by every thread",
                graph.sizes[id]
            )));
        }
        // The outer digits are fixed; drop those modes.
        for id in outer {
            graph.remove_mode(id);
        }
        graph.canonicalize();
        Ok(graph.into_layout())
    }
}

impl PartialEq for RegisterLayout {
    fn eq(&self, other: &Self) -> bool {
        self.canonicalize().raw_eq(&other.canonicalize())
    }
}

impl Eq for RegisterLayout {}

impl Hash for RegisterLayout {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let canonical = self.canonicalize();
        canonical.dims.hash(state);
        canonical.threads.hash(state);
        canonical.slots.hash(state);
    }
}
