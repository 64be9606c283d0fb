// A kernel that parses but does not verify, and a kernel file that does not exist.
anybit_macros::kernel!(
    r#"
layout @row = spatial(32)

kernel mismatch(x: ptr f32[n], n: i32) grid(cdiv(n, 32)) warps(1) {
    %gx = global_view %x [%n] strides [1]
    %v = load_global %gx [0] : f32[64] layout @row
}
"#,
    runtime = ::anybit_runtime
);

anybit_macros::kernel!(file = "kernels/missing.abk", runtime = ::anybit_runtime);

fn main() {}
