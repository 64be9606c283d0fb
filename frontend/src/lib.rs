//! # anybit-frontend: from weight formats and model files to kernels and packed weights
//!
//! The frontend turns *what a user has* — a quantized weight matrix in some format, and later
//! whole model files — into *what the compiler needs*: tile-IR kernels built with the IR
//! builder, and the weights re-packed into the buffers those kernels read.
//!
//! - [`lowbit`]: the low-bit weight matmul `y = x · dequant(W)` for any weight type of 1–8
//!   bits (integers and floats), per-group f16/bf16/f32 scales, optional integer zero points
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
//! The facade's `anybit::import` turns every such layer of a model file into a compiled kernel
//! and re-packed weights. Importers still to come (GPTQ/AWQ/compressed-tensors safetensors)
//! will map each quantized layer to a [`lowbit::WeightFormat`] the same way.

#![warn(missing_docs)]

pub mod gguf;
pub mod lowbit;
pub mod onnx;
