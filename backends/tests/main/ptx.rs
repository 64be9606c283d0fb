//! The PTX of small kernels (golden snapshots), and what the assembled low-bit matmul contains
//! (SASS inspection with cuobjdump).

use anybit_backends::Target;
use anybit_ir::text::parse_module;

use super::common::{compile, examples, ptxas, sass};

const SCALE: &str = "\
layout @row = spatial(32)

kernel scale(x: ptr f32[n], n: i32, factor: f32) grid(cdiv(n, 32)) warps(1) {
    %g = global_view %x [%n] strides [1]
    %b = block_index x
    %o = mul %b, 32
    %v = load_global %g [%o] : f32[32] layout @row
    %w = mul %v, %factor
    store_global %w, %g [%o]
}
";

const UNPACK: &str = "\
layout @bytes = spatial(32).local(1)
layout @nibbles = spatial(32).local(2)

kernel unpack(p: ptr u8[n], q: ptr f16[mul(n, 2)], n: i32) grid(cdiv(n, 32)) warps(1) {
    %gp = global_view %p [%n] strides [1]
    %n2 = mul %n, 2
    %gq = global_view %q [%n2] strides [1]
    %b = block_index x
    %o = mul %b, 32
    %o2 = mul %o, 2
    %bytes = load_global %gp [%o] : u8[32] layout @bytes
    %nibbles = view %bytes : u4[64] layout @nibbles
    %halves = cast %nibbles : f16
    store_global %halves, %gq [%o2]
}
";

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
    for target in [Target::Sm80, Target::Sm90] {
        let compiled = compile(&module, target);
        let cubin = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "anybit-lowbit-{}-{}.cubin",
            target.name(),
            std::process::id()
        ));
        ptxas(&compiled.kernels[0].ptx, target, Some(&cubin));
        let sass = sass(&cubin);
        assert!(sass.contains("EXIT"), "{target}: no SASS?\n{sass}");
        for bad in ["LDL", "STL"] {
            assert!(!sass.contains(bad), "{target}: the low-bit matmul uses local memory ({bad})");
        }
        // Tensor cores, ldmatrix, and 128-bit global (or asynchronous) loads.
        assert!(sass.contains("HMMA.16816.F32"), "{target}: no tensor-core MMA");
        assert!(sass.contains("LDSM"), "{target}: no ldmatrix");
        assert!(
            sass.contains("LDG.E.128") || sass.contains("LDGSTS.E.BYPASS.128"),
            "{target}: no 128-bit global loads"
        );
    }
}
