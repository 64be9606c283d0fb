// A kernel-language mistake inside an inline kernel: the message gives the line and column
// in this file.
anybit_macros::kernel!(
    r#"
kernel broken(x: ptr f32[n], n: i32) grid(cdiv(n, 32)) warps(1) {
    %gx = global_view %x [%n] strides [1]
    %b = block_indx x
}
"#,
    runtime = ::anybit_runtime
);

fn main() {}
