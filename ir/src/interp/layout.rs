//! Register layouts as tables: which element each (thread, slot) holds, and which threads
//! access each element.

use std::collections::HashMap;

use anybit_layouts::RegisterLayout;

/// No thread (an element nobody wrote or read).
pub(crate) const NONE: u32 = u32::MAX;
/// A `copy_async` is in flight to the element.
pub(crate) const PENDING: u32 = u32::MAX - 1;
/// Written by every thread: a completed `copy_async`.
pub(crate) const EVERY: u32 = u32::MAX - 2;
/// Read by several threads (which ones no longer matters).
pub(crate) const SEVERAL: u32 = u32::MAX - 3;

/// Sets of threads, interned: an *accessor id* below the block's thread count is one thread,
/// from there on it is a set of two or more threads (the holders of a replicated element).
#[derive(Debug)]
pub(crate) struct ThreadGroups {
    threads: u32,
    sets: Vec<Vec<u32>>,
    index: HashMap<Vec<u32>, u32>,
}

impl ThreadGroups {
    pub fn new(threads: u32) -> ThreadGroups {
        ThreadGroups { threads, sets: Vec::new(), index: HashMap::new() }
    }

    /// The accessor id of a sorted, deduplicated, non-empty set of threads.
    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let [single] = set[..] {
            return single;
        }
        if let Some(&id) = self.index.get(&set) {
            return id;
        }
        let id = self.threads.saturating_add(self.sets.len() as u32);
        self.sets.push(set.clone());
        self.index.insert(set, id);
        id
    }

    /// Whether `id` stands for exactly one thread.
    #[inline]
    pub fn is_single(&self, id: u32) -> bool {
        id < self.threads
    }

    fn set(&self, id: u32) -> Option<&[u32]> {
        id.checked_sub(self.threads).and_then(|g| self.sets.get(g as usize)).map(Vec::as_slice)
    }

    /// Whether every thread of `part` is in `whole` (both accessor ids).
    pub fn subset(&self, part: u32, whole: u32) -> bool {
        if part == whole {
            return true;
        }
        match (self.is_single(part), self.set(whole)) {
            (true, Some(set)) => set.binary_search(&part).is_ok(),
            (false, Some(set)) => self.set(part).is_some_and(|p| p.iter().all(|t| set.binary_search(t).is_ok())),
            _ => false,
        }
    }

    /// "thread 12", "threads 3 and 35", "every thread", …
    pub fn describe(&self, id: u32) -> String {
        match id {
            EVERY => "every thread".to_owned(),
            SEVERAL => "several threads".to_owned(),
            NONE | PENDING => "no thread".to_owned(),
            _ if self.is_single(id) => format!("thread {id}"),
            _ => match self.set(id) {
                Some(set) => {
                    let names: Vec<String> = set.iter().map(u32::to_string).collect();
                    match names.split_last() {
                        Some((last, rest)) if !rest.is_empty() => format!("threads {} and {last}", rest.join(", ")),
                        _ => format!("threads {}", names.join(", ")),
                    }
                }
                None => format!("accessor {id}"),
            },
        }
    }
}

/// A register layout of a tile, tabulated.
#[derive(Debug)]
pub(crate) struct LayoutTable {
    /// Slots per thread.
    pub slots: usize,
    /// `map[t · slots + i]`: the row-major index of the element thread `t` holds in slot `i`.
    pub map: Vec<u32>,
    /// Per element, the accessor id of the threads that hold it.
    pub accessor: Vec<u32>,
    /// Whether some element has several holders.
    pub replicated: bool,
}

impl LayoutTable {
    /// Tabulates `layout` for a tile of `shape` in a block of `threads` threads (the layout's
    /// shape and thread count are checked by the caller).
    pub fn build(layout: &RegisterLayout, shape: &[usize], groups: &mut ThreadGroups) -> Result<LayoutTable, String> {
        let n: usize = shape.iter().product();
        let mut strides = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        let slots = layout.num_slots();
        let replicated = layout.is_replicated();
        let mut map = Vec::with_capacity(layout.num_threads() * slots);
        let mut first = vec![NONE; n];
        let mut holders: Vec<Vec<u32>> = if replicated { vec![Vec::new(); n] } else { Vec::new() };
        for (thread, _, coords) in layout.table() {
            let mut e = 0usize;
            for ((&c, &s), &size) in coords.iter().zip(&strides).zip(shape) {
                if c >= size {
                    return Err(format!("layout {layout} maps outside the tile's shape {shape:?}"));
                }
                e += c * s;
            }
            let t = thread as u32;
            map.push(e as u32);
            if let Some(f) = first.get_mut(e)
                && *f == NONE
            {
                *f = t;
            }
            if let Some(h) = holders.get_mut(e)
                && h.last() != Some(&t)
            {
                h.push(t);
            }
        }
        if let Some(e) = first.iter().position(|&t| t == NONE) {
            return Err(format!("layout {layout} gives element {e} of the tile to no thread"));
        }
        let accessor = if replicated { holders.into_iter().map(|h| groups.intern(h)).collect() } else { first };
        Ok(LayoutTable { slots, map, accessor, replicated })
    }
}
