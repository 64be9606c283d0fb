//! Argument checking against a real kernel's manifest (the low-bit matmul, u4 with zero
//! points): every rule, with buffers described by fake device addresses.

use anybit_frontend::lowbit::{WeightFormat, build_kernel};
use anybit_ir::DType;
use anybit_ir::manifest::{ExprError, KernelManifest};
use anybit_runtime::launch::{ArgError, ArgSpec, ParamWord, check_launch};

fn dtype(name: &str) -> DType {
    name.parse().unwrap()
}

fn manifest() -> KernelManifest {
    let format = WeightFormat {
        weight: dtype("u4"),
        lut: None,
        group_size: 64,
        scale: DType::F16,
        zero_point: true,
        offset: false,
        activation: DType::F16,
    };
    KernelManifest::new(&build_kernel(&format).unwrap(), "k.ptx".into(), 8192)
}

fn buffer(dtype: DType, len: usize, address: u64, writable: bool) -> ArgSpec {
    ArgSpec::Buffer { dtype, len, address, writable }
}

/// Valid arguments for m × n × k without a split of K, buffers 1 TiB apart.
fn args(m: usize, n: usize, k: usize) -> Vec<ArgSpec> {
    split_args(m, n, k, 1, 0)
}

/// Valid arguments for m × n × k with K split in `splits`, a workspace of `workspace` f32.
fn split_args(m: usize, n: usize, k: usize, splits: usize, workspace: usize) -> Vec<ArgSpec> {
    let groups = k / 64;
    vec![
        buffer(DType::F16, m * k, 1 << 40, false),
        // The weights in 64 × 64 tiles of 4-bit codes (2048 bytes each).
        buffer(dtype("u8"), k.div_ceil(64) * n.div_ceil(64) * 2048, 2 << 40, false),
        buffer(DType::F16, groups * n, 3 << 40, false),
        buffer(dtype("u4"), groups * n, 4 << 40, false),
        buffer(DType::F16, m * n, 5 << 40, true),
        buffer(DType::F32, workspace, 6 << 40, true),
        ArgSpec::Int(m as i64),
        ArgSpec::Int(n as i64),
        ArgSpec::Int(k as i64),
        ArgSpec::Int(splits as i64),
    ]
}

fn error(manifest: &KernelManifest, args: &[ArgSpec]) -> ArgError {
    check_launch(manifest, args).expect_err("the arguments should be refused")
}

#[test]
fn the_manifest_knows_which_pointers_are_written() {
    let m = manifest();
    let written: Vec<&str> = m.params.iter().filter(|p| p.written).map(|p| p.name.as_str()).collect();
    assert_eq!(written, ["y", "p"]);
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<KernelManifest>(&json).unwrap(), m);
}

#[test]
fn valid_arguments_give_the_abi_words_and_the_grid() {
    let checked = check_launch(&manifest(), &args(33, 72, 128)).unwrap();
    assert_eq!(checked.grid, [1, 5, 1]);
    // A split of K: the grid's third axis, and a workspace of 64-row slabs.
    let split = check_launch(&manifest(), &split_args(33, 72, 128, 2, 2 * 64 * 72)).unwrap();
    assert_eq!(split.grid, [1, 5, 2]);
    let small = error(&manifest(), &split_args(33, 72, 128, 2, 2 * 64 * 72 - 1));
    assert!(small.to_string().contains("parameter `p`: the buffer has 9215 elements"), "{small}");
    assert_eq!(checked.block, 128);
    assert_eq!(checked.dynamic_shared_memory, 0);
    assert_eq!(checked.params[0], ParamWord::Pointer(1 << 40));
    let scalars = [33, 72, 128, 1].map(ParamWord::Scalar);
    assert_eq!(&checked.params[6..], &scalars);
    assert!(!checked.is_empty());
    // A bigger buffer than the shape needs is fine; an empty problem launches nothing.
    let mut bigger = args(1, 72, 128);
    bigger[0] = buffer(DType::F16, 4096, 1 << 40, false);
    assert!(check_launch(&manifest(), &bigger).is_ok());
    assert!(check_launch(&manifest(), &args(0, 72, 128)).unwrap().is_empty());
}

#[test]
fn counts_kinds_and_types_are_checked() {
    let m = manifest();
    let e = error(&m, &args(1, 72, 128)[..7]);
    assert_eq!(e.to_string(), "7 arguments given, the kernel has 10 parameters (x, w, s, z, y, p, m, n, k, splits)");

    let mut a = args(1, 72, 128);
    a[6] = buffer(dtype("i32"), 1, 6 << 20, false);
    assert_eq!(error(&m, &a).to_string(), "parameter `m`: expected a scalar i32, got a buffer of 1 i32");

    let mut a = args(1, 72, 128);
    a[0] = ArgSpec::Int(0);
    assert_eq!(error(&m, &a).to_string(), "parameter `x`: expected a buffer of f16, got the integer 0");

    let mut a = args(1, 72, 128);
    a[0] = buffer(DType::BF16, 128, 1 << 40, false);
    assert_eq!(error(&m, &a).to_string(), "parameter `x`: expected a buffer of f16, got a buffer of bf16");

    let mut a = args(1, 72, 128);
    a[7] = ArgSpec::Int(1 << 31);
    assert!(matches!(error(&m, &a), ArgError::Range { ref param, max: 2147483647, .. } if param == "n"));

    let mut a = args(1, 72, 128);
    a[8] = ArgSpec::Float(128.0);
    assert!(matches!(error(&m, &a), ArgError::Kind { ref param, .. } if param == "k"));

    let mut broken = m.clone();
    broken.params[3].dtype = "q7".into();
    assert_eq!(
        error(&broken, &args(1, 72, 128)).to_string(),
        "parameter `z`: the manifest's type `q7` is not a known type"
    );
}

#[test]
fn buffers_are_checked_for_writability_alignment_size_and_overlap() {
    let m = manifest();
    let mut a = args(1, 72, 128);
    a[4] = buffer(DType::F16, 72, 5 << 40, false);
    assert!(matches!(error(&m, &a), ArgError::NotWritable { ref param } if param == "y"));

    let mut a = args(1, 72, 128);
    a[2] = buffer(DType::F16, 144, (3 << 40) + 1, false);
    // The kernel declares `s: ptr f16[…] align 16`: more than f16's own 2 bytes.
    assert_eq!(m.params[2].align, Some(16));
    assert_eq!(error(&m, &a).to_string(), "parameter `s`: address 0x30000000001 is not aligned to 16 bytes");
    let mut a = args(1, 72, 128);
    a[2] = buffer(DType::F16, 144, (3 << 40) + 2, false);
    assert_eq!(error(&m, &a).to_string(), "parameter `s`: address 0x30000000002 is not aligned to 16 bytes");
    // Without a declared alignment, an element's own: 2 bytes for f16, none for sub-byte and
    // byte types.
    let mut plain = m.clone();
    for p in &mut plain.params {
        p.align = None;
    }
    let mut a = args(1, 72, 128);
    a[2] = buffer(DType::F16, 144, (3 << 40) + 1, false);
    assert_eq!(error(&plain, &a).to_string(), "parameter `s`: address 0x30000000001 is not aligned to 2 bytes");
    a[2] = buffer(DType::F16, 144, (3 << 40) + 2, false);
    a[3] = buffer(dtype("u4"), 144, (4 << 40) + 1, false);
    assert!(check_launch(&plain, &a).is_ok());

    let mut a = args(2, 72, 128);
    a[0] = buffer(DType::F16, 255, 1 << 40, false);
    assert_eq!(
        error(&m, &a).to_string(),
        "parameter `x`: the buffer has 255 elements, its shape [m, k] = [2, 128] needs 256"
    );
    let mut a = args(1, 72, 128);
    a[1] = buffer(dtype("u8"), 2 * 2 * 2048 - 1, 2 << 40, false);
    assert!(
        error(&m, &a).to_string().contains("its shape [cdiv(k, 64), mul(cdiv(n, 64), 2048)] = [2, 4096] needs 8192"),
        "{}",
        error(&m, &a)
    );

    // y (72 f16 = 144 bytes) starting inside x (128 f16 = 256 bytes), 16-byte aligned.
    let mut a = args(1, 72, 128);
    a[4] = buffer(DType::F16, 72, (1 << 40) + 240, true);
    assert_eq!(
        error(&m, &a).to_string(),
        "parameters `x` and `y` overlap in device memory; the kernel requires distinct buffers"
    );
    // Adjacent is not overlapping.
    a[4] = buffer(DType::F16, 72, (1 << 40) + 256, true);
    assert!(check_launch(&m, &a).is_ok());
}

#[test]
fn shapes_constraints_and_the_grid_are_checked() {
    let mut m = manifest();
    let mut a = args(1, 72, 128);
    a[6] = ArgSpec::Int(-1);
    let e = error(&m, &a);
    assert!(matches!(e, ArgError::Expr { error: ExprError::OutOfRange(-1), .. }), "{e}");
    assert_eq!(e.to_string(), "parameter `x`, shape dimension 0: `m` evaluates to -1, which is out of range");

    m.require_multiple("k", 128).unwrap();
    assert!(check_launch(&m, &args(1, 72, 256)).is_ok());
    assert_eq!(
        error(&m, &args(1, 72, 192)).to_string(),
        "the arguments break the kernel's constraint `k % 128 == 0` (m = 1, n = 72, k = 192, splits = 1)"
    );
    assert!(m.require_multiple("nothing", 2).is_none());

    // 2^21 rows: 262144 blocks of 8 rows along y, more than 65535.
    let e = error(&m, &args(1 << 21, 8, 128));
    assert_eq!(e.to_string(), "grid axis 1 (`cdiv(m, 8)`) is 262144 blocks, more than the limit of 65535");

    let mut odd = manifest();
    odd.threads_per_block = 100;
    assert!(matches!(error(&odd, &args(1, 72, 128)), ArgError::Config(_)));
}
