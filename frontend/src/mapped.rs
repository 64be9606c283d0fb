//! Model files read through a memory map: tensor data is borrowed from the mapped file,
//! never copied whole into memory.
//!
//! [`MappedFile::open`] maps the file read-only; [`MappedFile::bytes`] hands out checked
//! slices of it (an out-of-range request is an error naming the file, never a panic). Where a
//! file cannot be mapped (an empty file, a file system without `mmap`), or when the
//! environment variable `ANYBIT_NO_MMAP` is set, the same calls fall back to positioned reads
//! of just the requested bytes — so either way a large model is never read whole.
//!
//! # Safety of the map
//!
//! Mapping is the one `unsafe` operation here: the operating system shows the file's current
//! contents, so another process truncating or rewriting the file while it is mapped could
//! change bytes under a borrowed slice or fault on access. Every loader that maps model files
//! has the same contract; we open the file read-only, never write through the map, and
//! document that model files must not be modified while anybit reads them (set
//! `ANYBIT_NO_MMAP=1` to read them with positioned reads instead).

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How a [`MappedFile`] reads its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Memory-map the file when possible (the default).
    Map,
    /// Positioned reads of the requested bytes only.
    Read,
}

impl Access {
    /// [`Access::Map`], unless the environment variable `ANYBIT_NO_MMAP` is set.
    pub fn from_env() -> Access {
        if std::env::var_os("ANYBIT_NO_MMAP").is_some() { Access::Read } else { Access::Map }
    }
}

/// A model file opened for reading, mapped when possible.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: Option<memmap2::Mmap>,
    len: u64,
}

/// Why bytes could not be read: the I/O error, or a range past the end of the file.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// Opening, mapping or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The requested bytes lie past the end of the file.
    #[error("{path}: bytes {offset}..{end} requested, but the file has {len}")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The first byte requested.
        offset: u64,
        /// One past the last byte requested.
        end: u128,
        /// The file's length.
        len: u64,
    },
}

impl MappedFile {
    /// Opens `path` with [`Access::from_env`].
    pub fn open(path: &Path) -> Result<MappedFile, MapError> {
        MappedFile::open_with(path, Access::from_env())
    }

    /// Opens `path`, mapping it if `access` says so and the file can be mapped.
    pub fn open_with(path: &Path, access: Access) -> Result<MappedFile, MapError> {
        let io = |source| MapError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let map = match access {
            // An empty file has nothing to map (and mapping zero bytes is an error on Linux).
            Access::Map if len > 0 => map_read_only(&file).ok(),
            _ => None,
        };
        Ok(MappedFile { path: path.to_path_buf(), file, map, len })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the bytes come from a memory map (else from positioned reads).
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// `len` bytes from `offset`: borrowed from the map, or read into a new buffer.
    pub fn bytes(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>, MapError> {
        let end = u128::from(offset) + u128::from(len);
        if end > u128::from(self.len) {
            return Err(MapError::OutOfRange { path: self.path.clone(), offset, end, len: self.len });
        }
        // Both fit in usize: they are at most the file's length, which the map (or the
        // allocation below) had to hold.
        let (start, stop) = (offset as usize, end as usize);
        if let Some(map) = &self.map {
            return map.get(start..stop).map(Cow::Borrowed).ok_or(MapError::OutOfRange {
                path: self.path.clone(),
                offset,
                end,
                len: self.len,
            });
        }
        let mut buf = vec![0u8; stop - start];
        self.file.read_exact_at(&mut buf, offset).map_err(|source| MapError::Io { path: self.path.clone(), source })?;
        Ok(Cow::Owned(buf))
    }
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and we never write through it; its contents may change only
    // if another process modifies the file while it is mapped, which the module documents as
    // unsupported (the contract of every memory-mapped model loader).
    unsafe { memmap2::Mmap::map(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("anybit-mapped-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn mapped_and_read_bytes_agree_and_ranges_are_checked() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let path = temp_file("agree", &data);
        let mapped = MappedFile::open_with(&path, Access::Map).unwrap();
        let read = MappedFile::open_with(&path, Access::Read).unwrap();
        assert!(mapped.is_mapped() && !read.is_mapped());
        for (offset, len) in [(0, 0), (0, 10_000), (17, 300), (9_999, 1), (10_000, 0)] {
            let (a, b) = (mapped.bytes(offset, len).unwrap(), read.bytes(offset, len).unwrap());
            assert_eq!(a, b);
            assert_eq!(&a[..], &data[offset as usize..(offset + len) as usize]);
            assert!(matches!(a, Cow::Borrowed(_)) && matches!(b, Cow::Owned(_)));
        }
        for file in [&mapped, &read] {
            for (offset, len) in [(9_999, 2), (10_001, 0), (u64::MAX, u64::MAX)] {
                let error = file.bytes(offset, len).unwrap_err();
                assert!(matches!(error, MapError::OutOfRange { .. }), "{error}");
                assert!(error.to_string().contains("but the file has 10000"), "{error}");
            }
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn empty_and_missing_files() {
        let path = temp_file("empty", &[]);
        let empty = MappedFile::open_with(&path, Access::Map).unwrap();
        assert!(empty.is_empty() && !empty.is_mapped());
        assert_eq!(empty.bytes(0, 0).unwrap().len(), 0);
        assert!(empty.bytes(0, 1).is_err());
        std::fs::remove_file(&path).unwrap();
        let error = MappedFile::open(&path).unwrap_err();
        assert!(matches!(error, MapError::Io { .. }) && error.to_string().contains("anybit-mapped"), "{error}");
    }
}
