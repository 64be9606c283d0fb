//! The kernels in the documentation are real: every ```abk block of the tutorial parses and
//! verifies, and the tutorial's low-bit matmul computes the right thing. The Rust guide's
//! blocks that doc tests cannot run are, verbatim, parts of the example crate that the tests
//! build and run.

use anybit::ir::DType;
use anybit::ir::interp::{Arg, Buffer, RunOptions, run_kernel};
use anybit::ir::program::Module;
use anybit::ir::text::parse_module;
use anybit::ir::verify::{VerifyOptions, verify_module};

fn abk_blocks(doc: &str) -> Vec<String> {
    let path = format!("{}/docs/{doc}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```abk") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn tutorial_modules() -> Vec<Module> {
    abk_blocks("tutorial.md")
        .iter()
        .map(|source| {
            let module = parse_module(source).unwrap_or_else(|e| panic!("{e}\n{source}"));
            verify_module(&module, &VerifyOptions::strict()).unwrap_or_else(|e| panic!("{e}\n{source}"));
            module
        })
        .collect()
}

#[test]
fn tutorial_kernels_parse_and_verify() {
    assert_eq!(tutorial_modules().len(), 3);
}

#[test]
fn tutorial_lowbit_kernel_matches_the_reference() {
    use anybit_frontend::lowbit::{QuantizedWeights, WeightFormat, reference};
    let modules = tutorial_modules();
    let kernel = &modules[2].kernels[0];
    let format = WeightFormat {
        weight: "u4".parse().unwrap(),
        lut: None,
        group_size: 128,
        scale: DType::F16,
        zero_point: false,
        offset: false,
        activation: DType::F16,
    };
    let mut rng = anybit::ir::random::SplitMix64::new(11);
    let (m, k, n) = (5usize, 256usize, 80usize);
    let codes: Vec<u32> = (0..k * n).map(|_| (rng.next_u64() % 16) as u32).collect();
    let scales: Vec<u32> = (0..2 * n).map(|_| DType::F16.encode(rng.uniform(0.01, 0.1))).collect();
    let weights = QuantizedWeights::new(format, k, n, codes, scales.clone(), vec![]).unwrap();
    let x: Vec<u32> = (0..m * k).map(|_| DType::F16.encode(rng.uniform(-1.0, 1.0))).collect();
    let packed = weights.pack_rows().unwrap();
    let mut args = vec![
        Arg::Buffer(Buffer::from_codes(DType::F16, &x).unwrap()),
        Arg::Buffer(Buffer::from_bytes("u8".parse().unwrap(), packed.len(), packed).unwrap()),
        Arg::Buffer(Buffer::from_codes(DType::F16, &scales).unwrap()),
        Arg::Buffer(Buffer::zeros(DType::F16, m * n).unwrap()),
        Arg::Int(m as i64),
        Arg::Int(n as i64),
        Arg::Int(k as i64),
    ];
    run_kernel(kernel, &mut args, &RunOptions::default()).unwrap();
    let y = args[3].buffer().unwrap().to_f64().unwrap();
    for (i, (&got, &(exact, bound))) in y.iter().zip(&reference(&weights, &x, m).unwrap()).enumerate() {
        assert!((got - exact).abs() <= bound, "element {i}: {got} vs {exact}");
    }
}

#[test]
fn the_example_crate_compiles_the_tutorial_kernel() {
    let file = format!("{}/examples/aot/kernels/lowbit_u4_g128.abk", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(std::fs::read_to_string(file).unwrap(), abk_blocks("tutorial.md")[2]);
}

#[test]
fn the_rust_guide_quotes_the_example_crate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/docs/rust.md")).unwrap();
    let mut quoted = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(file) = line.strip_prefix("<!-- file: ").and_then(|l| l.strip_suffix(" -->")) else { continue };
        assert_eq!(lines.next(), Some("```rust,ignore"), "a quoted block follows its file marker");
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let source = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        assert!(
            source.contains(&(block.join("\n") + "\n")),
            "docs/rust.md quotes {file}, which does not contain:\n{}",
            block.join("\n")
        );
        quoted += 1;
    }
    assert_eq!(quoted, 4);
}
