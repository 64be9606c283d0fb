//! JIT compilation through the compile cache, with the real compiler: a weight format to PTX,
//! then memory and disk hits, a corrupt entry recompiled, keys that change with what the
//! output depends on.

use std::path::PathBuf;

use anybit::backends::Target;
use anybit::frontend::lowbit::{WeightFormat, build_module};
use anybit::ir::DType;
use anybit::jit::{JitOptions, cache_key, compile, compile_lowbit};
use anybit::passes::OptLevel;
use anybit::runtime::cache::{CacheConfig, CompileCache, Source};

/// A fresh directory (not created), inside the target directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("anybit-jit-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn u4() -> WeightFormat {
    WeightFormat {
        weight: "u4".parse().unwrap(),
        lut: None,
        group_size: 128,
        scale: DType::F16,
        zero_point: true,
        offset: false,
        activation: DType::F16,
    }
}

#[test]
fn a_format_compiles_once_then_hits_memory_then_disk() {
    let dir = temp_dir("hits");
    let options = JitOptions { target: Target::Sm80, opt_level: OptLevel::O2, ..JitOptions::default() };
    let cache = CompileCache::new(CacheConfig::in_dir(&dir));
    let first = compile_lowbit(&u4(), &options, &cache).unwrap();
    assert_eq!(first.source, Source::Compiled);
    assert!(first.warning.is_none(), "{:?}", first.warning);
    let kernel = &first.module.manifest.kernels[0];
    assert_eq!(kernel.name, u4().kernel_name());
    assert_eq!(kernel.constraints.len(), 1);
    assert_eq!(kernel.constraints[0].text(), "k % 128 == 0");
    let ptx = &first.module.ptx[0];
    assert!(ptx.contains(".target sm_80") && ptx.contains(&format!(".entry {}", kernel.name)), "{}", &ptx[..300]);

    let second = compile_lowbit(&u4(), &options, &cache).unwrap();
    assert_eq!(second.source, Source::Memory);
    let fresh = CompileCache::new(CacheConfig::in_dir(&dir));
    let third = compile_lowbit(&u4(), &options, &fresh).unwrap();
    assert_eq!(third.source, Source::Disk);
    assert_eq!(*third.module, *first.module);

    // A corrupt entry is recompiled, and the same PTX comes out.
    let path = fresh.entry_path(&first.key).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let again = compile_lowbit(&u4(), &options, &CompileCache::new(CacheConfig::in_dir(&dir))).unwrap();
    assert_eq!(again.source, Source::Compiled);
    assert!(again.warning.unwrap().contains("corrupt cache entry"));
    assert_eq!(*again.module, *first.module);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_change_with_the_ir_the_target_and_the_passes() {
    let module = build_module(&u4()).unwrap();
    let base = JitOptions::default();
    let key = cache_key(&module, &base);
    assert_eq!(key, cache_key(&build_module(&u4()).unwrap(), &base), "deterministic");
    assert_ne!(key, cache_key(&module, &JitOptions { target: Target::Sm80, ..base }));
    assert_ne!(key, cache_key(&module, &JitOptions { opt_level: OptLevel::O0, ..base }));
    let other_llvm = match base.llvm {
        anybit::backends::LlvmOptimization::Fast => anybit::backends::LlvmOptimization::Full,
        anybit::backends::LlvmOptimization::Full => anybit::backends::LlvmOptimization::Fast,
    };
    assert_ne!(key, cache_key(&module, &JitOptions { llvm: other_llvm, ..base }));
    let other = WeightFormat { group_size: 64, ..u4() };
    assert_ne!(key, cache_key(&build_module(&other).unwrap(), &base));
    assert!(anybit::jit::compiler_id().starts_with("anybit "));
}

#[test]
fn any_module_compiles_through_the_cache() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/vector_add.abk")).unwrap();
    let module = anybit::ir::text::parse_module(&text).unwrap();
    let cache = CompileCache::new(CacheConfig::memory_only());
    let compiled = compile(&module, &JitOptions::default(), &cache).unwrap();
    assert_eq!(compiled.source, Source::Compiled);
    assert_eq!(compiled.module.ptx.len(), compiled.module.manifest.kernels.len());
    assert!(compiled.timings.backend > std::time::Duration::ZERO);
    assert_eq!(compile(&module, &JitOptions::default(), &cache).unwrap().source, Source::Memory);
}
