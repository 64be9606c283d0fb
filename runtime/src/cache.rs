//! The compile cache: compiled modules (manifest + one PTX text per kernel) by key, in memory
//! and on disk.
//!
//! The runtime does not compile (it has no LLVM): [`CompileCache::get_or_compile`] takes the
//! compiler as a closure, which the caller — the `anybit` crate's JIT — provides, with a
//! [`CacheKey`] it built from everything the output depends on: the canonical IR text, the
//! target, the pass options and the compiler's version.
//!
//! # Memory
//!
//! Entries are shared (`Arc`) and bounded in total size, least recently used evicted first.
//! Threads asking for the same key at once compile it once: the others wait for the first.
//!
//! # Disk
//!
//! One file per key, `<key>.entry`, in the cache directory: `$ANYBIT_CACHE_DIR` when set (an
//! empty value turns the disk cache off), else `$XDG_CACHE_HOME/anybit`, else
//! `~/.cache/anybit` (`%LOCALAPPDATA%\anybit` on Windows). A file is a short text header —
//! format version, key, SHA-256 and length of the body — followed by the body, the module as
//! JSON. Every read checks all of it: a file that is truncated, altered or not the key's is
//! *corrupt*, never trusted — the module is recompiled and the file replaced.
//!
//! - **Atomic writes.** An entry is written to a temporary file in the same directory and
//!   renamed over the final name, so a concurrent reader (another thread or process) sees the
//!   old file, the new file or none, never half of one. Processes compiling the same key at
//!   once both write the same bytes; the last rename wins.
//! - **Least-recently-used eviction.** A hit sets the file's modification time to now (its
//!   "last used" time). After each write, when the entries' total size exceeds the bound
//!   (`$ANYBIT_CACHE_MAX_MB`, default 512 MiB; a value that is not a number is ignored), the
//!   least recently used are deleted until it fits; temporary files left by crashed writers are deleted after an hour.
//! - Disk problems (a read-only directory, a full disk) never fail a compile: the module is
//!   still returned, with the problem as a [`Lookup::warning`].

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use anybit_ir::manifest::Manifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first line of every entry file.
const MAGIC: &str = "anybit-cache-entry 1";

/// A cache key: the SHA-256 of labelled parts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `parts`, each a (label, bytes) pair — e.g. `("ir", text)`, `("target",
    /// "sm_90")`. Labels and lengths are hashed too, so no two different lists collide by
    /// concatenation.
    pub fn new(parts: &[(&str, &[u8])]) -> CacheKey {
        let mut hasher = Sha256::new();
        for (label, bytes) in parts {
            hasher.update((label.len() as u64).to_le_bytes());
            hasher.update(label.as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        CacheKey(hasher.finalize().into())
    }

    /// The key as 64 hex digits (the entry's file name).
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compiled module: its manifest and one PTX text per kernel, in manifest order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedModule {
    /// How to launch the kernels.
    pub manifest: Manifest,
    /// `ptx[i]` is the PTX of `manifest.kernels[i]`.
    pub ptx: Vec<String>,
}

impl CachedModule {
    /// The approximate memory it takes, in bytes.
    pub fn size_bytes(&self) -> u64 {
        let ptx: usize = self.ptx.iter().map(String::len).sum();
        (ptx + 4096 * self.manifest.kernels.len().max(1)) as u64
    }

    /// The entry file's bytes for `key`.
    fn encode(&self, key: &CacheKey) -> Result<Vec<u8>, String> {
        let body = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let digest = hex(&Sha256::digest(&body));
        let mut bytes = format!("{MAGIC}\nkey {key}\nsha256 {digest}\nlength {}\n\n", body.len()).into_bytes();
        bytes.extend(body);
        Ok(bytes)
    }

    /// The module in an entry file, checked completely; the error says what is wrong.
    fn decode(bytes: &[u8], key: &CacheKey) -> Result<CachedModule, String> {
        let split = bytes.windows(2).position(|w| w == b"\n\n").ok_or("no header")?;
        let header = std::str::from_utf8(&bytes[..split]).map_err(|_| "the header is not text")?;
        let body = &bytes[split + 2..];
        let mut lines = header.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not an entry of this format version".into());
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or(format!("no `{name}` line"))
        };
        if field("key")? != key.hex() {
            return Err("the entry is another key's".into());
        }
        let digest = field("sha256")?;
        let length: usize = field("length")?.parse().map_err(|_| "a malformed length")?;
        if body.len() != length {
            return Err(format!("the body has {} bytes, the header says {length}", body.len()));
        }
        if hex(&Sha256::digest(body)) != digest {
            return Err("the body's SHA-256 does not match".into());
        }
        let module: CachedModule =
            serde_json::from_slice(body).map_err(|e| format!("the body is not a module: {e}"))?;
        if module.ptx.len() != module.manifest.kernels.len() {
            return Err("the PTX texts do not match the manifest's kernels".into());
        }
        Ok(module)
    }
}

/// Where a module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The in-memory cache.
    Memory,
    /// An entry file (checked).
    Disk,
    /// Compiled now (a miss, or a corrupt entry replaced).
    Compiled,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Compiled => "compiled",
        })
    }
}

/// The result of a lookup.
#[derive(Clone, Debug)]
pub struct Lookup {
    /// The module.
    pub module: Arc<CachedModule>,
    /// Where it came from.
    pub source: Source,
    /// A disk problem met on the way (the module is good regardless): an unreadable or
    /// corrupt entry, a failed write.
    pub warning: Option<String>,
}

/// Sizes and places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// The directory of entry files; `None`: memory only.
    pub dir: Option<PathBuf>,
    /// The bound on the entry files' total size, in bytes.
    pub max_disk_bytes: u64,
    /// The bound on the in-memory entries' total size, in bytes.
    pub max_memory_bytes: u64,
}

impl CacheConfig {
    /// Default disk bound: 512 MiB.
    pub const DEFAULT_MAX_DISK_BYTES: u64 = 512 << 20;
    /// Default memory bound: 64 MiB.
    pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 << 20;

    /// The configuration the environment asks for (see the module doc).
    pub fn from_env() -> CacheConfig {
        let dir = match std::env::var_os("ANYBIT_CACHE_DIR") {
            Some(dir) if dir.is_empty() => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => CacheConfig::default_dir(),
        };
        let max_disk_bytes = std::env::var("ANYBIT_CACHE_MAX_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(CacheConfig::DEFAULT_MAX_DISK_BYTES, |mb| mb.saturating_mul(1 << 20));
        CacheConfig { dir, max_disk_bytes, max_memory_bytes: CacheConfig::DEFAULT_MAX_MEMORY_BYTES }
    }

    /// The per-user default directory: `$XDG_CACHE_HOME/anybit`, `~/.cache/anybit`, or
    /// `%LOCALAPPDATA%\anybit`; `None` when none of these is known.
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
        if let Some(xdg) = absolute("XDG_CACHE_HOME") {
            return Some(xdg.join("anybit"));
        }
        if let Some(home) = absolute("HOME") {
            return Some(home.join(".cache").join("anybit"));
        }
        absolute("LOCALAPPDATA").map(|d| d.join("anybit"))
    }

    /// Memory only, with the default bound.
    pub fn memory_only() -> CacheConfig {
        CacheConfig { dir: None, max_disk_bytes: 0, max_memory_bytes: CacheConfig::DEFAULT_MAX_MEMORY_BYTES }
    }

    /// `dir` on disk, with the default bounds.
    pub fn in_dir(dir: impl Into<PathBuf>) -> CacheConfig {
        CacheConfig {
            dir: Some(dir.into()),
            max_disk_bytes: CacheConfig::DEFAULT_MAX_DISK_BYTES,
            max_memory_bytes: CacheConfig::DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

/// What a cache has done (for tests, benchmarks and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub memory_hits: u64,
    /// Lookups answered from disk.
    pub disk_hits: u64,
    /// Modules compiled.
    pub compiles: u64,
    /// Corrupt entry files met (and replaced).
    pub corrupt: u64,
    /// Entry files written.
    pub writes: u64,
    /// Entry files deleted to respect the bound.
    pub evicted: u64,
}

#[derive(Debug, Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    compiles: AtomicU64,
    corrupt: AtomicU64,
    writes: AtomicU64,
    evicted: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Default)]
struct Memory {
    entries: HashMap<CacheKey, (Arc<CachedModule>, u64)>,
    bytes: u64,
    clock: u64,
}

impl Memory {
    fn get(&mut self, key: &CacheKey) -> Option<Arc<CachedModule>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(module, used)| {
            *used = clock;
            module.clone()
        })
    }

    fn insert(&mut self, key: CacheKey, module: Arc<CachedModule>, max_bytes: u64) {
        self.clock += 1;
        self.bytes += module.size_bytes();
        if let Some((old, _)) = self.entries.insert(key, (module, self.clock)) {
            self.bytes -= old.size_bytes();
        }
        // Least recently used first; the entry just inserted stays even when alone too big.
        while self.bytes > max_bytes && self.entries.len() > 1 {
            let Some(oldest) = self.entries.iter().filter(|(k, _)| **k != key).min_by_key(|(_, (_, used))| *used)
            else {
                break;
            };
            let oldest = *oldest.0;
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.size_bytes();
            }
        }
    }
}

/// The compile cache (see the module doc).
#[derive(Debug)]
pub struct CompileCache {
    config: CacheConfig,
    memory: Mutex<Memory>,
    /// One lock per key being looked up, so that threads compile a key once.
    in_flight: Mutex<HashMap<CacheKey, Arc<Mutex<()>>>>,
    counters: Counters,
}

/// Distinguishes the temporary files of one process's writes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CompileCache {
    /// A cache with this configuration.
    pub fn new(config: CacheConfig) -> CompileCache {
        CompileCache {
            config,
            memory: Mutex::new(Memory::default()),
            in_flight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    /// The process-wide cache, configured from the environment on first use.
    pub fn global() -> &'static CompileCache {
        static GLOBAL: OnceLock<CompileCache> = OnceLock::new();
        GLOBAL.get_or_init(|| CompileCache::new(CacheConfig::from_env()))
    }

    /// Its configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// What it has done so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            memory_hits: get(&c.memory_hits),
            disk_hits: get(&c.disk_hits),
            compiles: get(&c.compiles),
            corrupt: get(&c.corrupt),
            writes: get(&c.writes),
            evicted: get(&c.evicted),
        }
    }

    /// Empties the in-memory cache (the disk is left alone).
    pub fn clear_memory(&self) {
        *self.memory.lock().unwrap_or_else(PoisonError::into_inner) = Memory::default();
    }

    /// The entry file of `key` (when there is a directory).
    pub fn entry_path(&self, key: &CacheKey) -> Option<PathBuf> {
        self.config.dir.as_ref().map(|d| d.join(format!("{key}.entry")))
    }

    fn memory_get(&self, key: &CacheKey) -> Option<Arc<CachedModule>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner).get(key)
    }

    /// The module of `key`: from memory, else from disk, else compiled by `compile` (then kept
    /// in memory and written to disk). Concurrent calls for one key compile it once per
    /// process. Only `compile`'s error fails the call.
    pub fn get_or_compile<E>(
        &self,
        key: &CacheKey,
        compile: impl FnOnce() -> Result<CachedModule, E>,
    ) -> Result<Lookup, E> {
        if let Some(module) = self.memory_get(key) {
            bump(&self.counters.memory_hits);
            return Ok(Lookup { module, source: Source::Memory, warning: None });
        }
        let slot = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).entry(*key).or_default().clone();
        let result = {
            let _guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            self.lookup_locked(key, compile)
        };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's and ours: nobody else waits on this slot.
        if Arc::strong_count(&slot) == 2 {
            in_flight.remove(key);
        }
        result
    }

    fn lookup_locked<E>(&self, key: &CacheKey, compile: impl FnOnce() -> Result<CachedModule, E>) -> Result<Lookup, E> {
        // Another thread may have finished it while this one waited.
        if let Some(module) = self.memory_get(key) {
            bump(&self.counters.memory_hits);
            return Ok(Lookup { module, source: Source::Memory, warning: None });
        }
        let mut warning = None;
        if let Some(path) = self.entry_path(key) {
            match self.read_entry(&path, key) {
                Ok(Some(module)) => {
                    bump(&self.counters.disk_hits);
                    let module = Arc::new(module);
                    self.remember(*key, module.clone());
                    return Ok(Lookup { module, source: Source::Disk, warning: None });
                }
                Ok(None) => {}
                Err(problem) => warning = Some(problem),
            }
        }
        let module = Arc::new(compile()?);
        bump(&self.counters.compiles);
        self.remember(*key, module.clone());
        if let Some(path) = self.entry_path(key)
            && let Err(problem) = self.write_entry(&path, key, &module)
        {
            warning = Some(match warning {
                Some(w) => format!("{w}; {problem}"),
                None => problem,
            });
        }
        Ok(Lookup { module, source: Source::Compiled, warning })
    }

    fn remember(&self, key: CacheKey, module: Arc<CachedModule>) {
        let max = self.config.max_memory_bytes;
        self.memory.lock().unwrap_or_else(PoisonError::into_inner).insert(key, module, max);
    }

    /// The checked entry at `path`: `Ok(None)` when there is none, `Err` when it cannot be
    /// read or is corrupt (then it will be replaced).
    fn read_entry(&self, path: &Path, key: &CacheKey) -> Result<Option<CachedModule>, String> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read cache entry {}: {e}", path.display())),
        };
        match CachedModule::decode(&bytes, key) {
            Ok(module) => {
                // Record the use for the eviction order; failing to is harmless.
                if let Ok(file) = fs::File::open(path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Ok(Some(module))
            }
            Err(why) => {
                bump(&self.counters.corrupt);
                Err(format!("corrupt cache entry {} ({why}): recompiled", path.display()))
            }
        }
    }

    /// Writes the entry atomically, then evicts to the bound.
    fn write_entry(&self, path: &Path, key: &CacheKey, module: &CachedModule) -> Result<(), String> {
        let dir = path.parent().ok_or("the cache entry has no directory")?;
        let fail =
            |what: &str, e: &dyn fmt::Display| format!("cannot write cache entry {}: {what}: {e}", path.display());
        fs::create_dir_all(dir).map_err(|e| fail("creating the directory", &e))?;
        let bytes = module.encode(key).map_err(|e| fail("encoding", &e))?;
        let temp =
            dir.join(format!(".{key}.{}.{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
        let written = fs::File::create(&temp).and_then(|mut file| file.write_all(&bytes));
        if let Err(e) = written.and_then(|()| fs::rename(&temp, path)) {
            let _ = fs::remove_file(&temp);
            return Err(fail("writing", &e));
        }
        bump(&self.counters.writes);
        self.evict(dir, path);
        Ok(())
    }

    /// Deletes the least recently used entries until the total fits the bound (never `keep`),
    /// and temporary files older than an hour.
    fn evict(&self, dir: &Path, keep: &Path) {
        let Ok(listing) = fs::read_dir(dir) else { return };
        let now = SystemTime::now();
        let mut entries = Vec::new();
        for item in listing.flatten() {
            let path = item.path();
            let Ok(meta) = item.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                if now.duration_since(modified).unwrap_or_default() > Duration::from_secs(3600) {
                    let _ = fs::remove_file(&path);
                }
            } else if name.ends_with(".entry") {
                entries.push((modified, meta.len(), path));
            }
        }
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.config.max_disk_bytes {
            return;
        }
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.config.max_disk_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            // Another process may have deleted it already: it is gone either way.
            if fs::remove_file(&path).is_ok() {
                bump(&self.counters.evicted);
            }
            total = total.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anybit_ir::target::Target;

    fn module(tag: &str) -> CachedModule {
        CachedModule { manifest: Manifest::new(Target::Sm90), ptx: vec![] }.with_tag(tag)
    }

    impl CachedModule {
        fn with_tag(mut self, tag: &str) -> CachedModule {
            self.manifest.target = tag.to_owned();
            self
        }
    }

    #[test]
    fn keys_separate_their_parts() {
        let a = CacheKey::new(&[("a", b"bc")]);
        let b = CacheKey::new(&[("ab", b"c")]);
        assert_ne!(a, b);
        assert_eq!(a, CacheKey::new(&[("a", b"bc")]));
        assert_eq!(a.hex().len(), 64);
    }

    #[test]
    fn entries_round_trip_and_reject_every_corruption() {
        let key = CacheKey::new(&[("k", b"1")]);
        let m = module("x");
        let bytes = m.encode(&key).unwrap();
        assert_eq!(CachedModule::decode(&bytes, &key).unwrap(), m);
        let other = CacheKey::new(&[("k", b"2")]);
        assert!(CachedModule::decode(&bytes, &other).unwrap_err().contains("another key"));
        assert!(CachedModule::decode(&bytes[..bytes.len() - 1], &key).is_err());
        for i in (0..bytes.len()).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x20;
            assert!(CachedModule::decode(&flipped, &key).is_err(), "a flip at byte {i} went unnoticed");
        }
        assert!(CachedModule::decode(b"", &key).is_err());
    }

    #[test]
    fn memory_evicts_the_least_recently_used() {
        let mut memory = Memory::default();
        let keys: Vec<CacheKey> = (0..3u8).map(|i| CacheKey::new(&[("k", &[i])])).collect();
        let size = module("a").size_bytes();
        for (i, key) in keys.iter().enumerate() {
            memory.insert(*key, Arc::new(module(&i.to_string())), 2 * size);
            if i == 1 {
                assert!(memory.get(&keys[0]).is_some());
            }
        }
        assert!(memory.get(&keys[0]).is_some(), "used recently: kept");
        assert!(memory.get(&keys[1]).is_none(), "least recently used: evicted");
        assert!(memory.get(&keys[2]).is_some());
        assert_eq!(memory.bytes, 2 * size);
    }
}
