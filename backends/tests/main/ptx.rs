//! The PTX of small kernels (golden snapshots), and what the assembled low-bit matmul contains
//! with every backend (SASS inspection with cuobjdump).

use anybit_backends::Target;
use anybit_ir::text::parse_module;

use super::common::{backends, compile, compile_with, examples, ptxas, sass};

// Small kernels, shared with the MLIR backend's golden tests.
const SCALE: &str = include_str!("../kernels/scale.abk");
const UNPACK: &str = include_str!("../kernels/unpack.abk");

#[test]
fn small_kernels_have_stable_ptx() {
    for (name, source) in [("scale", SCALE), ("unpack", UNPACK)] {
        let module = parse_module(source).unwrap();
        let compiled = compile(&module, Target::Sm90);
        ptxas(&compiled.kernels[0].ptx, Target::Sm90, None);
        insta::assert_snapshot!(format!("ptx_{name}_sm90"), compiled.kernels[0].ptx);
    }
}

#[test]
fn lowbit_matmul_sass_uses_tensor_cores_and_no_local_memory() {
    let (_, module) = examples().into_iter().find(|(n, _)| n == "lowbit_matmul_u4_g128").unwrap();
    let cases = backends().into_iter().flat_map(|b| [Target::Sm80, Target::Sm90].map(move |t| (b, t)));
    for (backend, target) in cases {
        let compiled = compile_with(backend, &module, target);
        let cubin = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "anybit-lowbit-{}-{}-{}.cubin",
            backend.name(),
            target.name(),
            std::process::id()
        ));
        ptxas(&compiled.kernels[0].ptx, target, Some(&cubin));
        let sass = sass(&cubin);
        assert!(sass.contains("EXIT"), "{target}: no SASS?\n{sass}");
        for bad in ["LDL", "STL"] {
            assert!(!sass.contains(bad), "{target}: the low-bit matmul uses local memory ({bad})");
        }
        // Tensor cores fed straight from 128-bit global loads: the weights are packed in B
        // fragments and x is relabeled to its A fragments, so no shared memory at all.
        assert!(sass.contains("HMMA.16816.F32"), "{target}: no tensor-core MMA");
        for shared in ["LDS", "STS", "BAR.SYNC"] {
            assert!(!sass.contains(shared), "{target}: the low-bit matmul goes through shared memory ({shared})");
        }
        assert!(
            sass.contains("LDG.E.128") || sass.contains("LDGSTS.E.BYPASS.128"),
            "{target}: no 128-bit global loads"
        );
    }
}
