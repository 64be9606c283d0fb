//! # anybit-frontend: quantized model files in, kernels and re-packed weights out
//!
//! The importers here read a quantized model (GGUF; Hugging Face safetensors with a GPTQ, AWQ
//! or compressed-tensors `quantization_config`; ONNX graphs with `MatMulNBits`), map every
//! quantized linear layer to anybit's canonical weight format (a weight type of any bit width or
//! a lookup table, group size, scale type, zero points, act-order permutation), build one kernel
//! per distinct format and shape with the IR builder, and re-pack the weights offline into the
//! layout that kernel reads fastest, with a manifest tying layers to kernels and weight offsets.
//!
//! The crate is empty until the tile IR's builder exists.
