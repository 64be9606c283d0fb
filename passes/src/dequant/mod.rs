//! Dequantization sequences: the cheapest machine code that turns packed low-bit weights into
//! `f16`/`bf16` pairs, found by search and proven over every input code.
//!
//! A kernel's `cast(view(bytes → w))` to `f16` or `bf16` is where a low-bit matmul spends its
//! integer pipe. The classic hand-written sequences (one `lop3` with a magic exponent and one
//! `sub`/`fma` per pair of 4-bit weights; byte permutes for 8-bit ones) exist for a handful of
//! formats; this module finds such a sequence for **every** weight type: integers of 1–8 bits
//! and floats of at most 8 bits whose values the half type holds exactly.
//!
//! - [`machine`] is the vocabulary — `lop3` with any truth table, `prmt`, shifts and funnel
//!   shifts, half-pair `add/sub/mul/fma`, `f32` subtraction with pair packing, and (sm_89+)
//!   native 8-bit float pair conversion — with exact semantics ([`Program::eval`]) and a
//!   bit-level dependency analysis.
//! - [`search`] generates candidates per output pair from documented rules, shares them in an
//!   `egg` e-graph with a few machine rewrites (bounded runner), and extracts the cheapest
//!   program under the cost model (one unit per instruction, and one per constant operand
//!   beyond the first: SASS takes one immediate, ptxas moves the others into registers at
//!   every use) with a sharing-aware greedy choice, over two pairings of elements into
//!   registers.
//! - [`prove`] is the proof every candidate and every selected program must pass: each output
//!   lane depends only on its own element (dependency analysis), and for every element, every
//!   one of its 2^N codes (with the other elements set to all-zeros and to all-ones bits)
//!   gives exactly the value of `anybit_ir`'s exact decode — NaN codes a NaN (any NaN: casts
//!   to native floats canonicalize lazily, see the backend), zeros with their sign.
//!
//! [`select`] runs the search once per (weight type, half type, target features) and caches
//! the result; the LLVM backend emits the selected program for casts of viewed packed bytes.

pub mod machine;
pub mod search;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use anybit_ir::dtype::DType;

pub use machine::{Fp8, Half, MOp, Program, Reg};
pub use search::Features;

/// Why no sequence exists for a conversion.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    /// The conversion is outside the searched family.
    #[error("no dequantization sequence for {from} → {to}: {reason}")]
    Unsupported {
        /// The weight type.
        from: DType,
        /// The target type.
        to: DType,
        /// Why.
        reason: String,
    },
}

/// The element codes of a word group with element `e` set to `code` over a `fill` pattern.
fn words_with(program: &Program, fill: u32, e: usize, code: u32) -> Vec<u32> {
    let n = program.weight.bits() as usize;
    let mut words = vec![fill; program.words];
    for bit in 0..n {
        let at = e * n + bit;
        let (w, b) = (at / 32, at % 32);
        if let Some(word) = words.get_mut(w) {
            *word = (*word & !(1 << b)) | (((code >> bit) & 1) << b);
        }
    }
    words
}

/// Checks a program: every output lane depends only on its element, and every code of every
/// output element converts exactly (see the module doc). Does not require every element to
/// be an output ([`complete`] checks that).
pub fn prove(program: &Program) -> Result<(), String> {
    let bits = program.weight.bits();
    if !(1..=8).contains(&bits) {
        return Err(format!("{}: only types of 1–8 bits are searched", program.weight));
    }
    let elements = program.elements();
    for (index, &(out, lo, hi)) in program.outputs.iter().enumerate() {
        if out >= program.ops.len() || lo >= elements || hi >= elements {
            return Err(format!("output {index} refers outside the program"));
        }
    }
    for (index, (&(_, lo, hi), &(dep_lo, dep_hi))) in
        program.outputs.iter().zip(&program.lane_dependencies()).enumerate()
    {
        if dep_lo & !(1u64 << lo) != 0 || dep_hi & !(1u64 << hi) != 0 {
            return Err(format!(
                "output {index}: lanes may depend on elements {dep_lo:#x}/{dep_hi:#x}, not only on {lo} and {hi}"
            ));
        }
    }
    let half = program.half;
    // The exact value of every code, once; and the lanes that hold each element.
    let exact = (0..(1u32 << bits))
        .map(|code| program.weight.decode_f64(code).map_err(|e| e.to_string()))
        .collect::<Result<Vec<f64>, String>>()?;
    let mut lanes_of: Vec<Vec<(usize, usize, u32)>> = vec![Vec::new(); elements];
    for (index, &(out, lo, hi)) in program.outputs.iter().enumerate() {
        lanes_of[lo].push((index, out, 0));
        lanes_of[hi].push((index, out, 1));
    }
    for fill in [0u32, u32::MAX] {
        for (element, lanes) in lanes_of.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            for (code, &want) in exact.iter().enumerate() {
                // One run checks every lane that holds this element.
                let values = program.eval(&words_with(program, fill, element, code as u32));
                for &(index, out, lane) in lanes {
                    let got_code = (values[out] >> (16 * lane)) as u16;
                    let got = machine::half_value(half, got_code);
                    let same = if want.is_nan() {
                        got.is_nan()
                    } else {
                        got == want && got.is_sign_negative() == want.is_sign_negative()
                    };
                    if !same {
                        return Err(format!(
                            "output {index} lane {lane} (element {element}), code {code:#x}: got {got} ({got_code:#06x}), \
                             want {want}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Checks that every element of the word group is converted exactly once.
pub fn complete(program: &Program) -> Result<(), String> {
    let mut seen = vec![0u32; program.elements()];
    for &(_, lo, hi) in &program.outputs {
        for e in [lo, hi] {
            match seen.get_mut(e) {
                Some(count) => *count += 1,
                None => return Err(format!("element {e} is outside the word group")),
            }
        }
    }
    match seen.iter().position(|&c| c != 1) {
        Some(e) => Err(format!("element {e} is converted {} times", seen[e])),
        None => Ok(()),
    }
}

type Key = (DType, Half, Features);
type Selections = Mutex<HashMap<Key, Result<Arc<Program>, DequantError>>>;

fn cache() -> &'static Selections {
    static CACHE: OnceLock<Selections> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The selected program converting packed `from` codes to `to` (`f16` or `bf16`) on a target
/// with `features`: searched once per process, proven, complete.
pub fn select(from: DType, to: DType, features: Features) -> Result<Arc<Program>, DequantError> {
    let unsupported = |reason: String| DequantError::Unsupported { from, to, reason };
    let Some(half) = Half::of(to) else { return Err(unsupported("the target must be f16 or bf16".into())) };
    // Only fp8 → f16 can use the target's features: other searches are shared across targets.
    let features =
        if from.bits() == 8 && from.is_float() && half == Half::F16 { features } else { Features::default() };
    let key = (from, half, features);
    if let Ok(cache) = cache().lock()
        && let Some(found) = cache.get(&key)
    {
        return found.clone();
    }
    let result = if !(1..=8).contains(&from.bits()) {
        Err(unsupported("only weight types of 1–8 bits are searched".into()))
    } else {
        search::search(from, half, features).and_then(|p| complete(&p).map(|()| p)).map(Arc::new).map_err(unsupported)
    };
    if let Ok(mut cache) = cache().lock() {
        cache.insert(key, result.clone());
    }
    result
}

impl std::fmt::Display for Program {
    /// One operation per line (`r3 = lop3 r0, r1, r2, 0xea`), then the outputs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.live();
        for (r, op) in self.ops.iter().enumerate() {
            if !live[r] {
                continue;
            }
            let text = match *op {
                MOp::Word(w) => format!("word {w}"),
                MOp::Const(c) => format!("{c:#010x}"),
                MOp::Shr(a, k) => format!("shr r{a}, {k}"),
                MOp::Shl(a, k) => format!("shl r{a}, {k}"),
                MOp::Shf { lo, hi, k } => format!("shf.r r{lo}, r{hi}, {k}"),
                MOp::Lop3(a, b, c, t) => format!("lop3 r{a}, r{b}, r{c}, {t:#04x}"),
                MOp::Prmt(a, b, s) => format!("prmt r{a}, r{b}, {s:#06x}"),
                MOp::Add2(h, a, b) => format!("add.{}x2 r{a}, r{b}", h.name()),
                MOp::Sub2(h, a, b) => format!("sub.{}x2 r{a}, r{b}", h.name()),
                MOp::Mul2(h, a, b) => format!("mul.{}x2 r{a}, r{b}", h.name()),
                MOp::Fma2(h, a, b, c) => format!("fma.{}x2 r{a}, r{b}, r{c}", h.name()),
                MOp::SubF32(a, b) => format!("sub.f32 r{a}, r{b}"),
                MOp::PackF32(h, hi, lo) => format!("cvt.{}x2.f32 r{hi}, r{lo}", h.name()),
                MOp::CvtFp8(k, a) => format!("cvt.f16x2.{}x2 r{a}", k.name()),
                MOp::Half16(a, high) => format!("r{a}.{}", if high { "hi" } else { "lo" }),
                MOp::WidenF16(a, high) => format!("cvt.f32.f16 r{a}.{}", if high { "hi" } else { "lo" }),
            };
            writeln!(f, "r{r} = {text}")?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|(r, lo, hi)| format!("r{r}=({lo},{hi})")).collect();
        write!(f, "out {}  // cost {}", outs.join(" "), self.cost())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn weight_types() -> Vec<DType> {
        let mut types: Vec<DType> = (1..=8).map(|n| DType::uint(n).unwrap()).collect();
        types.extend((2..=8).map(|n| DType::int(n).unwrap()));
        for name in ["f3e1m1", "f4e2m1", "f5e2m2", "f6e2m3", "f6e3m2", "f7e3m3", "f8e4m3", "f8e5m2"] {
            types.push(name.parse().unwrap());
        }
        types
    }

    #[test]
    fn every_weight_type_has_a_proven_complete_sequence() {
        for features in [Features::default(), Features { fp8_convert: true }] {
            for w in weight_types() {
                for to in [DType::F16, DType::BF16] {
                    let p = select(w, to, features).unwrap_or_else(|e| panic!("{e}"));
                    prove(&p).unwrap();
                    complete(&p).unwrap();
                    // No scalar fallback: at least two elements per output register.
                    assert_eq!(p.outputs.len() * 2, p.elements(), "{w} → {to}");
                }
            }
        }
    }

    #[test]
    fn classic_four_bit_cost() {
        // The classic u4 → f16 sequence (per word: one shift, four lop3, two sub, two fma = 9,
        // plus a register move for the second constant of each lop3 and fma = 15) pairs
        // elements e and e + 4, which its consumers re-pair with two permutes per register
        // (+ 8): the adjacent-pair program — 13 instructions and 4 moves — beats it. An fma
        // with two constant pairs (a move each) loses to a sub with one.
        let p = select("u4".parse().unwrap(), DType::F16, Features::default()).unwrap();
        assert!(p.cost() <= 17, "{p}");
        assert!(p.outputs.iter().all(|&(_, lo, hi)| hi == lo + 1), "{p}");
        let constant = |r: &usize| matches!(p.ops[*r], MOp::Const(_));
        let two_constants = p.ops.iter().zip(p.live()).filter(|(op, live)| {
            *live && matches!(op, MOp::Fma2(..)) && op.operands().iter().filter(|r| constant(r)).count() > 1
        });
        assert_eq!(two_constants.count(), 0, "{p}");
    }

    #[test]
    fn four_bit_integers_to_bf16_pair_adjacent_elements() {
        // bf16's 7-bit mantissa cannot take nibble 2k + 1 where it lies (bits 4–7 of its byte):
        // `prmt(w, w >> 4)` brings it to the bottom of lane 1, for one shift per word and three
        // instructions a pair (13, and a move per lop3's second constant: 17), where the stride
        // program (e, e + 4) costs 11 (15 with its moves) plus two re-pairing permutes per
        // register (23).
        for w in ["u4", "i4"] {
            let p = select(w.parse().unwrap(), DType::BF16, Features::default()).unwrap();
            assert!(p.outputs.iter().all(|&(_, lo, hi)| lo % 2 == 0 && hi == lo + 1), "{w}: {p}");
            assert!(search::effective_cost(&p) <= 17, "{w}: {p}");
            let permutes = p.ops.iter().zip(p.live()).filter(|(op, live)| *live && matches!(op, MOp::Prmt(..))).count();
            assert_eq!(permutes, 4, "{w}: {p}");
        }
    }

    #[test]
    fn a_wrong_program_fails_its_proof() {
        let u4: DType = "u4".parse().unwrap();
        let mut p = (*select(u4, DType::F16, Features::default()).unwrap()).clone();
        // Swap the elements of the first output: the proof must notice.
        let (r, lo, hi) = p.outputs[0];
        p.outputs[0] = (r, hi, lo);
        assert!(prove(&p).is_err());
    }
}

#[cfg(test)]
mod table {
    use super::*;

    /// Instructions per element of every selected program: a reviewed table (the cost model's
    /// view; `BENCHMARKS.md` has the SASS count).
    #[test]
    fn cost_table() {
        let mut lines = vec!["weight    f16   bf16  f16(sm_89+)".to_string()];
        let mut types: Vec<DType> = (1..=8).map(|n| DType::uint(n).unwrap()).collect();
        types.extend((2..=8).map(|n| DType::int(n).unwrap()));
        for name in ["f3e1m1", "f4e2m1", "f5e2m2", "f6e2m3", "f6e3m2", "f7e3m3", "f8e4m3", "f8e5m2"] {
            types.push(name.parse().unwrap());
        }
        for w in types {
            let per = |to: DType, features: Features| {
                let p = select(w, to, features).unwrap();
                format!("{:.3}", f64::from(p.cost()) / p.elements() as f64)
            };
            lines.push(format!(
                "{:<8} {:>6} {:>6} {:>6}",
                w.to_string(),
                per(DType::F16, Features::default()),
                per(DType::BF16, Features::default()),
                per(DType::F16, Features { fp8_convert: true })
            ));
        }
        insta::assert_snapshot!(lines.join("\n"));
    }

    /// Every selected program's pairing, cost and effective cost (its cost plus the consumers'
    /// re-pairing, see `search::effective_cost`), per weight type × half type × target.
    #[test]
    fn pairing_table() {
        let mut lines = vec!["weight   f16          bf16         f16(sm_89+)   (pairing cost/effective)".to_string()];
        for w in super::tests::weight_types() {
            let cell = |to: DType, features: Features| {
                let p = select(w, to, features).unwrap();
                let pairing =
                    if p.outputs.iter().all(|&(_, lo, hi)| hi == lo + 1 && lo % 2 == 0) { "adj" } else { "str" };
                format!("{pairing} {:>3}/{:<3}", p.cost(), search::effective_cost(&p)).trim_end().to_string()
            };
            let line = format!(
                "{:<8} {:<12} {:<12} {}",
                w.to_string(),
                cell(DType::F16, Features::default()),
                cell(DType::BF16, Features::default()),
                cell(DType::F16, Features { fp8_convert: true })
            );
            lines.push(line);
        }
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn selected_u4_program() {
        let p = select("u4".parse().unwrap(), DType::F16, Features::default()).unwrap();
        insta::assert_snapshot!(p.to_string());
    }
}
