//! Shared memory: tiles of codes, and the bookkeeping that enforces the shared-memory rules.
//!
//! Each element of a tile's storage (one per element offset of its [`SharedLayout`], so
//! elements that a layout places at one offset share it) remembers who wrote it last and in
//! which *epoch* (the number of `sync`s so far), and who read it in the current epoch. An access
//! conflicts with an earlier one of the same epoch unless both come from one single thread (or,
//! for a read after a write, every reading thread also wrote the element: the holders of a
//! replicated element store the same value). A `copy_async` marks its elements *pending* until a
//! `wait_group` completes its group; then they count as written by every thread in that epoch,
//! so any access before the next `sync` conflicts.
//!
//! [`SharedLayout`]: anybit_layouts::SharedLayout

use std::collections::VecDeque;

use crate::dtype::DType;

use super::layout::{EVERY, NONE, PENDING, SEVERAL, ThreadGroups};

/// The state of one storage element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cell {
    pub code: u32,
    /// Accessor id of the last writer, [`NONE`], [`PENDING`] or [`EVERY`].
    pub writer: u32,
    /// The epoch of the last write (for a pending copy: its group's sequence number).
    pub write_epoch: u32,
    /// The instruction (arena index) of the last write.
    pub write_inst: u32,
    /// Accessor id of the readers in `read_epoch`, or [`SEVERAL`].
    pub reader: u32,
    pub read_epoch: u32,
    pub read_inst: u32,
}

impl Cell {
    const EMPTY: Cell =
        Cell { code: 0, writer: NONE, write_epoch: 0, write_inst: 0, reader: NONE, read_epoch: 0, read_inst: 0 };
}

/// A shared tile.
#[derive(Debug)]
pub(crate) struct SharedTile {
    /// The value's name, for messages.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Per element (row-major over `shape`), its cell.
    pub offsets: std::rc::Rc<Vec<u32>>,
    pub cells: Vec<Cell>,
    pub bytes: usize,
    pub freed: bool,
    /// Cells with a copy in flight.
    pub in_flight: usize,
}

/// A broken shared-memory rule, found at one cell (the caller adds where).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Violation {
    Uninitialized,
    /// Read, written or copied to while a copy to it is in flight (issued at `inst`).
    Pending {
        inst: u32,
    },
    /// A completed copy's element (completed at `inst`) accessed before a `sync`.
    AfterCopy {
        inst: u32,
    },
    /// Written by `writer` at `inst` in this epoch.
    AfterWrite {
        writer: u32,
        inst: u32,
    },
    /// Read by `reader` at `inst` in this epoch.
    AfterRead {
        reader: u32,
        inst: u32,
    },
}

/// How an access is checked.
#[derive(Clone, Copy)]
pub(crate) struct Access<'a> {
    pub groups: &'a ThreadGroups,
    pub check_races: bool,
    pub epoch: u32,
    pub inst: u32,
}

impl Access<'_> {
    /// Reads a cell for the threads `who`.
    #[inline]
    pub fn read(&self, cell: &mut Cell, who: u32) -> Result<u32, Violation> {
        match cell.writer {
            NONE => return Err(Violation::Uninitialized),
            PENDING => return Err(Violation::Pending { inst: cell.write_inst }),
            _ => {}
        }
        if self.check_races && cell.write_epoch == self.epoch {
            if cell.writer == EVERY {
                return Err(Violation::AfterCopy { inst: cell.write_inst });
            }
            if !self.groups.subset(who, cell.writer) {
                return Err(Violation::AfterWrite { writer: cell.writer, inst: cell.write_inst });
            }
        }
        if cell.read_epoch == self.epoch {
            if cell.reader != who {
                cell.reader = SEVERAL;
            }
        } else {
            cell.reader = who;
            cell.read_epoch = self.epoch;
        }
        cell.read_inst = self.inst;
        Ok(cell.code)
    }

    fn check_overwrite(&self, cell: &Cell, who: Option<u32>) -> Result<(), Violation> {
        if cell.writer == PENDING {
            return Err(Violation::Pending { inst: cell.write_inst });
        }
        if !self.check_races {
            return Ok(());
        }
        let alone = |other: u32| who.is_some_and(|w| w == other && self.groups.is_single(w));
        if cell.writer != NONE && cell.write_epoch == self.epoch {
            if cell.writer == EVERY {
                return Err(Violation::AfterCopy { inst: cell.write_inst });
            }
            if !alone(cell.writer) {
                return Err(Violation::AfterWrite { writer: cell.writer, inst: cell.write_inst });
            }
        }
        if cell.reader != NONE && cell.read_epoch == self.epoch && !alone(cell.reader) {
            return Err(Violation::AfterRead { reader: cell.reader, inst: cell.read_inst });
        }
        Ok(())
    }

    /// Writes a cell for the threads `who`.
    #[inline]
    pub fn write(&self, cell: &mut Cell, who: u32, code: u32) -> Result<(), Violation> {
        self.check_overwrite(cell, Some(who))?;
        cell.code = code;
        cell.writer = who;
        cell.write_epoch = self.epoch;
        cell.write_inst = self.inst;
        Ok(())
    }

    /// Starts an asynchronous copy of `code` into a cell, in the group with sequence number
    /// `group`.
    pub fn issue(&self, cell: &mut Cell, code: u32, group: u32) -> Result<(), Violation> {
        self.check_overwrite(cell, None)?;
        cell.code = code;
        cell.writer = PENDING;
        cell.write_epoch = group;
        cell.write_inst = self.inst;
        Ok(())
    }
}

/// The shared memory of one block.
#[derive(Debug, Default)]
pub(crate) struct SharedMemory {
    pub tiles: Vec<SharedTile>,
    /// Number of `sync`s so far, plus one.
    pub epoch: u32,
    /// Copies issued since the last `commit_group`: (tile, cell).
    pub open: Vec<(u32, u32)>,
    /// Committed groups still in flight, oldest first.
    pub committed: VecDeque<Vec<(u32, u32)>>,
    /// Sequence number of the open group.
    pub group: u32,
    /// Bytes of tiles not freed.
    pub live_bytes: usize,
}

impl SharedMemory {
    pub fn new() -> SharedMemory {
        SharedMemory { epoch: 1, ..SharedMemory::default() }
    }

    /// Closes the open group.
    pub fn commit(&mut self) {
        let group = std::mem::take(&mut self.open);
        self.committed.push_back(group);
        self.group = self.group.wrapping_add(1);
    }

    /// Completes committed groups until at most `pending` remain in flight; their elements
    /// count as written by every thread now (instruction `inst`).
    pub fn wait(&mut self, pending: u32, inst: u32) {
        while self.committed.len() > pending as usize {
            let Some(group) = self.committed.pop_front() else { break };
            for (tile, cell) in group {
                if let Some(t) = self.tiles.get_mut(tile as usize) {
                    if let Some(c) = t.cells.get_mut(cell as usize)
                        && c.writer == PENDING
                    {
                        c.writer = EVERY;
                        c.write_epoch = self.epoch;
                        c.write_inst = inst;
                    }
                    t.in_flight = t.in_flight.saturating_sub(1);
                }
            }
        }
    }

    /// A tile that exists and is not freed.
    pub fn tile_mut(&mut self, tile: usize) -> Option<&mut SharedTile> {
        self.tiles.get_mut(tile).filter(|t| !t.freed)
    }

    /// A new tile with every cell never written.
    pub fn alloc(&mut self, tile: SharedTileSpec) -> usize {
        self.live_bytes += tile.bytes;
        self.tiles.push(SharedTile {
            name: tile.name,
            dtype: tile.dtype,
            shape: tile.shape,
            offsets: tile.offsets,
            cells: vec![Cell::EMPTY; tile.cells],
            bytes: tile.bytes,
            freed: false,
            in_flight: 0,
        });
        self.tiles.len() - 1
    }
}

/// What a new tile needs.
pub(crate) struct SharedTileSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub offsets: std::rc::Rc<Vec<u32>>,
    pub cells: usize,
    pub bytes: usize,
}
