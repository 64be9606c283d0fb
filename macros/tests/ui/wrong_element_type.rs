// A buffer of the wrong element type is a Rust type error.
use anybit_runtime::typed::{Executor, F16, F32};

anybit_macros::kernel!(
    r#"
layout @row = spatial(32)

kernel double(x: ptr f32[n], y: ptr f32[n], n: i32) grid(cdiv(n, 32)) warps(1) {
    %gx = global_view %x [%n] strides [1]
    %gy = global_view %y [%n] strides [1]
    %b = block_index x
    %o = mul %b, 32
    %v = load_global %gx [%o] : f32[32] layout @row
    %w = add %v, %v
    store_global %w, %gy [%o]
}
"#,
    runtime = ::anybit_runtime
);

fn main() {
    let exec = Executor::interpreter();
    let x = exec.zeros::<F16>(4).unwrap();
    let mut y = exec.zeros::<F32>(4).unwrap();
    Double.launch(&exec, &x, &mut y, 4).unwrap();
}
