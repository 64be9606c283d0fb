//! `.npy` files: numpy reads what anybit writes and anybit reads what numpy writes; the reader
//! never panics.

use std::process::Command;

use anybit::npy::{NpyArray, NpyType};
use proptest::prelude::*;

fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("ANYBIT_PYTHON") {
        return p.into();
    }
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(path.exists(), "{} is missing: run scripts/setup.sh", path.display());
    path
}

#[test]
fn numpy_agrees() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("anybit-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = NpyArray::new(
        NpyType::I16,
        vec![2, 3],
        [1i16, -2, 3, -4, 5, -6].iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
    .unwrap();
    std::fs::write(dir.join("ours.npy"), ours.write()).unwrap();
    let script = format!(
        "import numpy as np, ml_dtypes\n\
         a = np.load('{d}/ours.npy'); assert a.dtype == np.int16 and a.shape == (2, 3), (a.dtype, a.shape)\n\
         assert a.tolist() == [[1, -2, 3], [-4, 5, -6]], a\n\
         np.save('{d}/theirs.npy', np.arange(12, dtype='>f4').reshape(3, 4))\n\
         np.save('{d}/bf16.npy', np.array([1.0, -2.5], dtype=ml_dtypes.bfloat16))\n\
         np.save('{d}/scalar.npy', np.float16(1.5))\n",
        d = dir.display()
    );
    let status = Command::new(python()).arg("-c").arg(&script).status().unwrap();
    assert!(status.success());
    let theirs = NpyArray::read(&std::fs::read(dir.join("theirs.npy")).unwrap()).unwrap();
    assert_eq!((theirs.dtype, theirs.shape.clone()), (NpyType::F32, vec![3, 4]));
    let values: Vec<f32> = theirs.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values, (0..12).map(|i| i as f32).collect::<Vec<_>>());
    let bf16 = NpyArray::read(&std::fs::read(dir.join("bf16.npy")).unwrap()).unwrap();
    assert_eq!((bf16.dtype, bf16.data.clone()), (NpyType::Raw16, vec![0x80, 0x3f, 0x20, 0xc0]));
    let scalar = NpyArray::read(&std::fs::read(dir.join("scalar.npy")).unwrap()).unwrap();
    assert_eq!((scalar.dtype, scalar.shape.clone(), scalar.data.clone()), (NpyType::F16, vec![], vec![0x00, 0x3e]));
}

proptest! {
    #[test]
    fn reading_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = NpyArray::read(&bytes);
    }

    #[test]
    fn reading_mutated_files_never_panics(position in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let array = NpyArray::new(NpyType::F16, vec![3, 5], vec![7; 30]).unwrap();
        let mut bytes = array.write();
        let p = position % bytes.len();
        bytes[p] = byte;
        bytes.truncate(bytes.len() - cut % bytes.len());
        let _ = NpyArray::read(&bytes);
    }

    #[test]
    fn write_then_read_is_identity(dims in prop::collection::vec(0usize..5, 0..4), pick in 0usize..6) {
        let dtype = [NpyType::U8, NpyType::I16, NpyType::F16, NpyType::F32, NpyType::Raw16, NpyType::F64][pick];
        let len: usize = dims.iter().product();
        let data: Vec<u8> = (0..len * dtype.size()).map(|i| i as u8).collect();
        let array = NpyArray::new(dtype, dims, data).unwrap();
        prop_assert_eq!(NpyArray::read(&array.write()), Ok(array));
    }
}

/// The GPU runner's host-side logic (scalar ABI, output decoding, manifest expressions,
/// comparisons) checked without a GPU.
#[test]
fn gpu_runner_self_test() {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gpu_check.py");
    let output = Command::new(python()).arg(script).arg("--self-test").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("self-test passed"));
    // The benchmark script needs a GPU to run; here it must at least compile.
    let bench = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gpu_bench.py");
    let status = Command::new(python()).args(["-m", "py_compile"]).arg(bench).status().unwrap();
    assert!(status.success());
}
