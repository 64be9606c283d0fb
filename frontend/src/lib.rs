//! # anybit-frontend: from weight formats and model files to kernels and packed weights
//!
//! The frontend turns *what a user has* — a quantized weight matrix in some format, and later
//! whole model files — into *what the compiler needs*: tile-IR kernels built with the IR
//! builder, and the weights re-packed into the buffers those kernels read.
//!
//! - [`lowbit`]: the low-bit weight matmul `y = x · dequant(W)` for any weight type of 1–8
//!   bits (integers and floats) or lookup-table type ([`lut`]: IQ4_NL, NF4), per-group f16/bf16/f32 scales, optional integer zero points
//!   and float offsets, with f16 or bf16 activations: the kernel generator, the canonical host form of quantized
//!   weights and its packing, and the exact f64 reference with its error bound.
//!
//! - [`gguf`]: reading GGUF model files (v2/v3): header, metadata and tensor infos checked
//!   against the file, tensor data read on demand and decoded bit for bit like ggml's
//!   reference dequantizers (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K … Q6_K,
//!   IQ4_NL); the scale-quantized types' layers imported exactly as
//!   [`lowbit::QuantizedWeights`] (K-quant two-level scales folded into f32 scales and offsets).
//!
//! - [`onnx`]: reading ONNX models (protobuf, decoded with `prost` from hand-written message
//!   structs; initializer data in the message or in external files) and importing their
//!   `com.microsoft::MatMulNBits` layers (2, 4 or 8 bits, packed zero points or the default
//!   ones, f32/f16/bf16 scales, an optional bias) as [`lowbit::QuantizedWeights`].
//!
//! - [`hf`]: reading Hugging Face checkpoints (`config.json` + safetensors files, headers
//!   parsed and validated by the `safetensors` crate, tensors read on demand) quantized with
//!   GPTQ (2/3/4/8 bits, v1 and v2 zero points, act-order through an input order), AWQ (GEMM)
//!   or compressed-tensors `pack-quantized` (int2–int8, group and channel strategies), each
//!   layer imported exactly as [`lowbit::QuantizedWeights`].
//!
//! The facade's `anybit::import` turns every such layer of a model file into a compiled kernel
//! and re-packed weights.

#![warn(missing_docs)]

pub mod gguf;
pub mod hf;
pub mod lowbit;
pub mod lut;
pub mod mapped;
pub mod onnx;

/// Code `index` of a little-endian stream of `bits`-bit codes (least significant bit first)
/// in `bytes`.
pub(crate) fn stream_code(bytes: &[u8], index: usize, bits: u32) -> u32 {
    packed_code(bytes, 1, 0, index, bits)
}

/// Code `index` of a stream of `bits`-bit codes over little-endian 32-bit words (least
/// significant bit first) whose word `w` lies at word `w·stride + column` of `bytes`: a column
/// of a row-major int32 matrix with `stride` columns (`stride` 1, `column` 0: the bytes
/// themselves).
pub(crate) fn packed_code(bytes: &[u8], stride: usize, column: usize, index: usize, bits: u32) -> u32 {
    let mut code = 0u32;
    for b in 0..bits as usize {
        let at = index * bits as usize + b;
        let byte = (at / 32 * stride + column) * 4 + at % 32 / 8;
        code |= u32::from((bytes[byte] >> (at % 8)) & 1) << b;
    }
    code
}
