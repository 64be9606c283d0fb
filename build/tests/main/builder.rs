//! The builder on folders of kernel files: what it writes, what the generated Rust says, and
//! how a broken kernel file fails the build.

use std::path::{Path, PathBuf};

use anybit_build::{BuildError, Builder, Target};
use anybit_ir::manifest::Manifest;

/// A fresh folder under the target directory (tests keep their files there).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("anybit-build").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("kernels")).unwrap();
    dir
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn a_folder_compiles_for_every_target() {
    let dir = scratch("folder");
    for name in ["vector_add.abk", "rms_norm.abk"] {
        std::fs::copy(examples().join(name), dir.join("kernels").join(name)).unwrap();
    }
    std::fs::write(dir.join("kernels/notes.txt"), "not a kernel").unwrap();
    let generated = Builder::new("kernels")
        .targets([Target::Sm80, Target::Sm90])
        .manifest_dir(&dir)
        .out_dir(dir.join("out"))
        .cargo_messages(false)
        .compile()
        .unwrap();
    assert_eq!(generated.kernel_files, [dir.join("kernels/rms_norm.abk"), dir.join("kernels/vector_add.abk")]);
    assert_eq!(generated.ptx_files.len(), 4);
    for target in ["sm_80", "sm_90"] {
        let out = dir.join("out/anybit/vector_add").join(target);
        let manifest = Manifest::from_json(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!((manifest.target.as_str(), manifest.kernels[0].name.as_str()), (target, "vector_add"));
        let ptx = std::fs::read_to_string(out.join(&manifest.kernels[0].ptx_file)).unwrap();
        assert!(ptx.contains(&format!(".target {target}")) && ptx.contains(".entry vector_add"), "{ptx}");
    }
    let rust = std::fs::read_to_string(&generated.rust_file).unwrap();
    assert!(rust.contains("pub mod r#vector_add {\n    ::anybit::kernel!(\n        file = \"kernels/vector_add.abk\",\n        runtime = ::anybit::runtime,"), "{rust}");
    assert!(rust.contains("(\"sm_90\", ::core::include_str!("), "{rust}");
    assert!(!rust.contains("notes"), "{rust}");
    brackets_balance(&rust);
}

/// Brackets balance in the generated file (a cheap well-formedness check; the example crate
/// compiles a generated file for real).
fn brackets_balance(text: &str) {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{text}");
    }
    assert_eq!(depth, 0, "{text}");
}

#[test]
fn a_broken_kernel_fails_with_file_line_and_column() {
    let dir = scratch("broken");
    let source = "kernel k(n: i32) grid(1) warps(1) {\n    %b = block_indx x\n}\n";
    std::fs::write(dir.join("kernels/k.abk"), source).unwrap();
    let error = Builder::new("kernels")
        .target(Target::Sm80)
        .manifest_dir(&dir)
        .out_dir(dir.join("out"))
        .cargo_messages(false)
        .compile()
        .unwrap_err();
    assert!(matches!(error, BuildError::Kernel(_)));
    let message = error.to_string();
    assert!(message.starts_with("unknown instruction `block_indx`\n --> kernels/k.abk:2:10\n"), "{message}");
    assert!(message.ends_with("1 error in kernels/k.abk"), "{message}");
}

#[test]
fn configuration_mistakes_are_named() {
    let dir = scratch("config");
    let no_targets = Builder::new("kernels").manifest_dir(&dir).out_dir(&dir).compile().unwrap_err();
    assert!(no_targets.to_string().starts_with("no targets"), "{no_targets}");
    let missing = Builder::new("nowhere").target(Target::Sm80).manifest_dir(&dir).out_dir(&dir).compile().unwrap_err();
    assert!(matches!(missing, BuildError::Io { .. }) && missing.to_string().contains("nowhere"), "{missing}");
    std::fs::write(dir.join("kernels/self.abk"), "").unwrap();
    let keyword = Builder::new("kernels")
        .target(Target::Sm80)
        .manifest_dir(&dir)
        .out_dir(&dir)
        .cargo_messages(false)
        .compile()
        .unwrap_err();
    assert!(keyword.to_string().contains("`self` cannot name a Rust module"), "{keyword}");
}
