//! The compile cache: hits from memory and disk, threads and processes compiling one key,
//! corrupt entries, least-recently-used eviction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anybit_ir::manifest::Manifest;
use anybit_ir::target::Target;
use anybit_runtime::cache::{CacheConfig, CacheKey, CachedModule, CompileCache, Source};

/// A fresh directory for `name`: inside the target directory (cargo gives integration tests
/// one), or the system's temporary folder where that is not writable (a test binary copied to
/// another machine).
fn scratch(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = if std::fs::create_dir_all(root).is_ok() { root.to_path_buf() } else { std::env::temp_dir() };
    root.join(format!("{name}-{}", std::process::id()))
}

/// A fresh, empty directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = scratch(&format!("anybit-cache-test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn key(i: u64) -> CacheKey {
    CacheKey::new(&[("test", &i.to_le_bytes())])
}

/// A deterministic module of about `ptx_bytes` bytes for key `i`: one kernel `k`.
fn module(i: u64, ptx_bytes: usize) -> CachedModule {
    let mut manifest = Manifest::new(Target::Sm90);
    manifest.target = format!("module {i}");
    let kernel = r#"{"name":"k","ptx_file":"k.ptx","params":[],"grid":[{"const":1}],"grid_text":["1"],
        "threads_per_block":32,"shared_memory_bytes":0,"needs_shared_memory_opt_in":false}"#;
    manifest.kernels.push(serde_json::from_str(kernel).unwrap());
    let line = format!("// module {i}: {}\n", "x".repeat(60));
    CachedModule { manifest, ptx: vec![line.repeat(ptx_bytes / line.len() + 1)] }
}

fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn never() -> Result<CachedModule, String> {
    Err("this lookup must not compile".into())
}

#[test]
fn hits_come_from_memory_then_disk() {
    let dir = temp_dir("hits");
    let cache = CompileCache::new(CacheConfig::in_dir(&dir));
    let first = cache.get_or_compile(&key(1), || Ok::<_, String>(module(1, 1000))).unwrap();
    assert_eq!((first.source, first.warning.as_deref()), (Source::Compiled, None));
    let second = cache.get_or_compile(&key(1), never).unwrap();
    assert_eq!(second.source, Source::Memory);
    assert!(Arc::ptr_eq(&first.module, &second.module));
    // A new process (here: a new cache) reads the file.
    let fresh = CompileCache::new(CacheConfig::in_dir(&dir));
    let third = fresh.get_or_compile(&key(1), never).unwrap();
    assert_eq!(third.source, Source::Disk);
    assert_eq!(*third.module, module(1, 1000));
    assert_eq!(entry_files(&dir), [cache.entry_path(&key(1)).unwrap()], "no temporary file is left");
    // Compile errors are the caller's and are not cached.
    let failed = cache.get_or_compile(&key(2), || Err::<CachedModule, _>("no".to_string()));
    assert_eq!(failed.unwrap_err(), "no");
    assert_eq!(cache.get_or_compile(&key(2), || Ok::<_, String>(module(2, 10))).unwrap().source, Source::Compiled);
    let memory = CompileCache::new(CacheConfig::memory_only());
    assert_eq!(memory.get_or_compile(&key(1), || Ok::<_, String>(module(1, 10))).unwrap().source, Source::Compiled);
    assert!(memory.entry_path(&key(1)).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn threads_asking_for_one_key_compile_it_once() {
    let dir = temp_dir("threads");
    let cache = Arc::new(CompileCache::new(CacheConfig::in_dir(&dir)));
    let compiles = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (cache, compiles, barrier) = (cache.clone(), compiles.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let lookup = cache
                    .get_or_compile(&key(7), || {
                        compiles.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        Ok::<_, String>(module(7, 50_000))
                    })
                    .unwrap();
                assert_eq!(*lookup.module, module(7, 50_000));
                lookup.source
            })
        })
        .collect();
    let sources: Vec<Source> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(compiles.load(Ordering::SeqCst), 1);
    assert_eq!(sources.iter().filter(|s| **s == Source::Compiled).count(), 1);
    assert_eq!(sources.iter().filter(|s| **s == Source::Memory).count(), 7);
    assert_eq!(cache.stats().compiles, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The environment variable that makes [`child_process_compiles_and_reads`] do its work: the
/// cache directory.
const CHILD_DIR: &str = "ANYBIT_CACHE_TEST_CHILD_DIR";

/// Run by [`processes_share_the_directory_safely`] in child processes (does nothing
/// otherwise): compiles or reads 6 keys, memory cleared each time, so every lookup goes to the
/// disk while the other children write the same entries.
#[test]
fn child_process_compiles_and_reads() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let cache = CompileCache::new(CacheConfig::in_dir(PathBuf::from(dir)));
    for round in 0..3 {
        for i in 0..6u64 {
            cache.clear_memory();
            let lookup = cache
                .get_or_compile(&key(100 + i), || {
                    std::thread::sleep(Duration::from_millis(5 * (i + round)));
                    Ok::<_, String>(module(100 + i, 400_000))
                })
                .unwrap();
            assert_eq!(*lookup.module, module(100 + i, 400_000), "key {i}: wrong content");
            assert!(lookup.warning.is_none(), "key {i}: {:?}", lookup.warning);
        }
    }
}

#[test]
fn processes_share_the_directory_safely() {
    let dir = temp_dir("processes");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "main::cache::child_process_compiles_and_reads", "--test-threads=1"])
                .env(CHILD_DIR, &dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a child failed:\n{text}");
        assert!(text.contains("1 passed"), "the child did not run the test:\n{text}");
    }
    let files = entry_files(&dir);
    assert_eq!(files.len(), 6, "one entry per key, no temporary files: {files:?}");
    let fresh = CompileCache::new(CacheConfig::in_dir(&dir));
    for i in 0..6 {
        let lookup = fresh.get_or_compile(&key(100 + i), never).unwrap();
        assert_eq!((lookup.source, *lookup.module == module(100 + i, 400_000)), (Source::Disk, true));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_entries_are_recompiled_and_replaced() {
    let dir = temp_dir("corrupt");
    let cache = CompileCache::new(CacheConfig::in_dir(&dir));
    cache.get_or_compile(&key(3), || Ok::<_, String>(module(3, 5000))).unwrap();
    let path = cache.entry_path(&key(3)).unwrap();
    let good = std::fs::read(&path).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("a flipped bit in the body", {
            let mut b = good.clone();
            let at = b.len() - 100;
            b[at] ^= 1;
            b
        }),
        ("empty", Vec::new()),
        ("another key's entry", {
            let other = CompileCache::new(CacheConfig::in_dir(temp_dir("corrupt-other")));
            other.get_or_compile(&key(4), || Ok::<_, String>(module(3, 5000))).unwrap();
            std::fs::read(other.entry_path(&key(4)).unwrap()).unwrap()
        }),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let fresh = CompileCache::new(CacheConfig::in_dir(&dir));
        let lookup = fresh.get_or_compile(&key(3), || Ok::<_, String>(module(3, 5000))).unwrap();
        assert_eq!(lookup.source, Source::Compiled, "{what}: the corrupt entry was trusted");
        assert!(
            lookup.warning.as_deref().is_some_and(|w| w.contains("corrupt cache entry")),
            "{what}: {:?}",
            lookup.warning
        );
        assert_eq!(fresh.stats().corrupt, 1);
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what}: the entry was not rewritten");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = std::fs::remove_dir_all(temp_dir("corrupt-other"));
}

#[test]
fn the_least_recently_used_entries_are_evicted() {
    let dir = temp_dir("evict");
    let entry_size = {
        let probe = CompileCache::new(CacheConfig::in_dir(temp_dir("evict-probe")));
        probe.get_or_compile(&key(0), || Ok::<_, String>(module(0, 20_000))).unwrap();
        let size = std::fs::metadata(probe.entry_path(&key(0)).unwrap()).unwrap().len();
        let _ = std::fs::remove_dir_all(temp_dir("evict-probe"));
        size
    };
    // Room for three entries.
    let config = CacheConfig { max_disk_bytes: 3 * entry_size + entry_size / 2, ..CacheConfig::in_dir(&dir) };
    let pause = || std::thread::sleep(Duration::from_millis(30));
    let cache = CompileCache::new(config.clone());
    for i in 0..3 {
        cache.get_or_compile(&key(i), || Ok::<_, String>(module(i, 20_000))).unwrap();
        pause();
    }
    // Use entry 0 again (from disk: a fresh cache), making entry 1 the least recently used.
    assert_eq!(CompileCache::new(config.clone()).get_or_compile(&key(0), never).unwrap().source, Source::Disk);
    pause();
    cache.get_or_compile(&key(3), || Ok::<_, String>(module(3, 20_000))).unwrap();
    let exists = |i: u64| cache.entry_path(&key(i)).unwrap().exists();
    assert_eq!((0..4).map(exists).collect::<Vec<_>>(), [true, false, true, true]);
    assert_eq!(cache.stats().evicted, 1);
    pause();
    cache.get_or_compile(&key(4), || Ok::<_, String>(module(4, 20_000))).unwrap();
    assert_eq!((0..5).map(exists).collect::<Vec<_>>(), [true, false, false, true, true]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_directory_is_a_warning_not_a_failure() {
    let dir = temp_dir("unwritable");
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let cache = CompileCache::new(CacheConfig::in_dir(blocker.join("cache")));
    let lookup = cache.get_or_compile(&key(9), || Ok::<_, String>(module(9, 100))).unwrap();
    assert_eq!(lookup.source, Source::Compiled);
    assert!(lookup.warning.is_some_and(|w| w.contains("cannot write cache entry")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_environment_picks_the_directory_and_bound() {
    // Only reads the variables this process was started with; checks the documented default.
    let config = CacheConfig::from_env();
    match std::env::var_os("ANYBIT_CACHE_DIR") {
        Some(dir) if dir.is_empty() => assert_eq!(config.dir, None),
        Some(dir) => assert_eq!(config.dir, Some(PathBuf::from(dir))),
        None => assert_eq!(config.dir, CacheConfig::default_dir()),
    }
    if std::env::var_os("ANYBIT_CACHE_MAX_MB").is_none() {
        assert_eq!(config.max_disk_bytes, CacheConfig::DEFAULT_MAX_DISK_BYTES);
    }
}
