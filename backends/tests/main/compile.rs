//! Every example and the low-bit matmul of every weight type (and lookup-table format) compile
//! for every target with every backend, and ptxas assembles every PTX file without spilling;
//! the registers per thread are recorded (one table per backend).

use std::fmt::Write;

use anybit_backends::Target;
use anybit_frontend::lowbit::{WeightFormat, build_module};
use anybit_ir::DType;

use super::common::{backends, compile, compile_with, examples, ptxas, snapshot_name};

#[test]
fn examples_compile_for_every_target_without_spills() {
    for backend in backends() {
        examples_compile_with(backend);
    }
}

fn examples_compile_with(backend: &dyn anybit_backends::Backend) {
    let mut table = String::new();
    for (name, module) in examples() {
        for target in Target::ALL {
            let compiled = compile_with(backend, &module, target);
            assert_eq!(compiled.kernels.len(), module.kernels.len());
            for kernel in &compiled.kernels {
                let report = ptxas(&kernel.ptx, target, None);
                assert_eq!((report.spill_stores, report.spill_loads), (0, 0), "{name} spills on {target}: {report:?}");
                writeln!(
                    table,
                    "{:<44} {target:<8} {:>3} registers, {:>6} bytes shared",
                    kernel.name, report.registers, kernel.shared_memory_bytes
                )
                .unwrap();
            }
        }
    }
    insta::assert_snapshot!(snapshot_name("example_resources", backend), table);
}

#[test]
fn every_weight_type_compiles_and_assembles() {
    for backend in backends() {
        every_weight_type_with(backend);
    }
}

fn every_weight_type_with(backend: &dyn anybit_backends::Backend) {
    let weights = [
        "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "f3e1m1", "f4e2m1",
        "f5e2m2", "f6e3m2", "f6e2m3", "f7e3m3", "f8e4m3", "f8e5m2",
    ];
    let mut table = String::new();
    for (i, weight) in weights.iter().enumerate() {
        let dtype: DType = weight.parse().unwrap();
        let format = WeightFormat {
            weight: dtype,
            lut: None,
            group_size: if i % 2 == 0 { 32 } else { 128 },
            scale: if i % 3 == 0 { DType::BF16 } else { DType::F16 },
            zero_point: dtype.is_integer() && i % 2 == 1,
            offset: false,
            activation: if i % 4 == 1 { DType::BF16 } else { DType::F16 },
        };
        let module = build_module(&format).unwrap();
        for target in [Target::Sm80, Target::Sm90] {
            // Every kernel of the layer module: the 8-, 16- and 64-row matmuls, the reduction.
            for kernel in &compile_with(backend, &module, target).kernels {
                let report = ptxas(&kernel.ptx, target, None);
                let name = &kernel.name;
                assert_eq!((report.spill_stores, report.spill_loads), (0, 0), "{name} spills on {target}: {report:?}");
                writeln!(table, "{name:<48} {target:<6} {:>3} registers", report.registers).unwrap();
            }
        }
    }
    // The lookup-table formats (`lookup` of u4 codes): IQ4_NL in the activation type, NF4 in f32.
    for format in lut_formats() {
        let module = build_module(&format).unwrap();
        for target in [Target::Sm80, Target::Sm90] {
            for kernel in &compile_with(backend, &module, target).kernels {
                let report = ptxas(&kernel.ptx, target, None);
                let name = &kernel.name;
                assert_eq!((report.spill_stores, report.spill_loads), (0, 0), "{name} spills on {target}: {report:?}");
                writeln!(table, "{name:<48} {target:<6} {:>3} registers", report.registers).unwrap();
            }
        }
    }
    insta::assert_snapshot!(snapshot_name("lowbit_resources", backend), table);
}

/// IQ4_NL (f16 scales per 32, f16 or bf16 activations) and NF4 (bf16 scales per 64).
fn lut_formats() -> Vec<WeightFormat> {
    use anybit_frontend::lowbit::Lut;
    let with = WeightFormat::with_lut;
    vec![
        with(Lut::IQ4_NL, 32, DType::F16, DType::F16),
        with(Lut::IQ4_NL, 32, DType::F16, DType::BF16),
        with(Lut::NF4, 64, DType::BF16, DType::BF16),
    ]
}

#[test]
fn manifests_describe_the_launch() {
    let (_, module) = examples().into_iter().find(|(n, _)| n == "lowbit_matmul_u4_g128").unwrap();
    let compiled = compile(&module, Target::Sm90);
    let json = compiled.manifest.to_json();
    let manifest: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kernel = &manifest["kernels"][0];
    assert_eq!(kernel["threads_per_block"], 128);
    assert_eq!(kernel["grid_text"][0], "cdiv(n, 128)");
    assert_eq!(kernel["params"][1]["dtype"], "u8");
    assert_eq!(kernel["params"][3]["dtype"], "u4");
    assert_eq!(kernel["params"][3]["bits"], 4);
    assert_eq!(manifest["target"], "sm_90");
}

#[test]
fn unsupported_targets_and_unverified_modules_are_errors() {
    assert_eq!(
        "sm_75".parse::<Target>().unwrap_err().to_string(),
        "unsupported target `sm_75`: anybit compiles for sm_80, sm_86, sm_89, sm_90, sm_90a and sm_100a"
    );
    let module =
        anybit_ir::text::parse_module("kernel k() grid(1) warps(1) {\n    %t = fill 0.0 : f32[32]\n}\n").unwrap();
    let error = anybit_backends::Backend::compile(
        &anybit_backends::llvm::LlvmBackend,
        &module,
        Target::Sm90,
        &anybit_backends::CompileOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("does not verify") && error.contains("layout"), "{error}");
}
