//! The machine vocabulary of dequantization sequences, its exact semantics, and a bit-level
//! dependency analysis.
//!
//! A [`Program`] is a straight-line SSA list of 32-bit register operations ([`MOp`]) over the
//! packed input words. Integer operations are the GPU's (`lop3` with any truth table, `prmt`,
//! shifts, funnel shifts); half-pair operations treat a register as two 16-bit lanes of `f16`
//! or `bf16` (lane 0 in bits 0–15) and round each lane once, to nearest even, as the hardware's
//! `.rn` instructions do; `f32` operations and the packing conversions round the same way.
//! [`Program::eval`] computes exactly that, with every rounding done by `anybit_ir`'s exact
//! codecs, so that a test can run a program over every input code and compare it with the
//! codecs' exact decode.

use anybit_ir::dtype::{DType, FloatFormat};
use anybit_ir::interp::numeric;

/// A register: the index of the operation that defines it.
pub type Reg = usize;

/// The 16-bit float type of a half-pair lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Half {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl Half {
    /// The type.
    pub fn dtype(self) -> DType {
        match self {
            Half::F16 => DType::F16,
            Half::Bf16 => DType::BF16,
        }
    }

    /// The half type of `dtype`, if it is one.
    pub fn of(dtype: DType) -> Option<Half> {
        if dtype == DType::F16 {
            Some(Half::F16)
        } else if dtype == DType::BF16 {
            Some(Half::Bf16)
        } else {
            None
        }
    }

    /// Its name in PTX instruction suffixes (`f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Half::F16 => "f16",
            Half::Bf16 => "bf16",
        }
    }

    /// Mantissa bits.
    pub fn mantissa_bits(self) -> u32 {
        match self {
            Half::F16 => 10,
            Half::Bf16 => 7,
        }
    }

    /// The code of a value that must be exactly representable.
    pub(crate) fn code(self, value: f64) -> u16 {
        round_half(self, value)
    }

    fn format(self) -> FloatFormat {
        match self {
            Half::F16 => FloatFormat::F16,
            Half::Bf16 => FloatFormat::BF16,
        }
    }
}

/// An 8-bit float format that sm_89+ converts natively in pairs (`cvt.rn.f16x2.e4m3x2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fp8 {
    /// `f8e4m3` (one NaN, no infinities).
    E4M3,
    /// `f8e5m2` (IEEE).
    E5M2,
}

impl Fp8 {
    /// The type.
    pub fn dtype(self) -> DType {
        match self {
            Fp8::E4M3 => "f8e4m3".parse().unwrap_or(DType::F16),
            Fp8::E5M2 => "f8e5m2".parse().unwrap_or(DType::F16),
        }
    }

    /// Its PTX name.
    pub fn name(self) -> &'static str {
        match self {
            Fp8::E4M3 => "e4m3",
            Fp8::E5M2 => "e5m2",
        }
    }
}

/// One machine operation. Operands are registers defined earlier in the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MOp {
    /// Input word `i` of the packed stream (bits `32·i … 32·i + 31`).
    Word(usize),
    /// A constant (an immediate or a hoisted register).
    Const(u32),
    /// Logical shift right.
    Shr(Reg, u32),
    /// Shift left.
    Shl(Reg, u32),
    /// Funnel shift right: the low 32 bits of `(hi:lo) >> k` (`shf.r.clamp.b32`).
    Shf {
        /// Low word.
        lo: Reg,
        /// High word.
        hi: Reg,
        /// Shift, 0–31.
        k: u32,
    },
    /// `lop3.b32`: bit `i` of the result is `lut[(a_i << 2) | (b_i << 1) | c_i]`.
    Lop3(Reg, Reg, Reg, u8),
    /// `prmt.b32` (default mode): result byte `i` is byte `s` of the 8-byte value `b:a`, where
    /// `s` is the low 3 bits of selector nibble `i`; if the nibble's bit 3 is set, the chosen
    /// byte's top bit is replicated over the byte.
    Prmt(Reg, Reg, u16),
    /// Lane-wise `a + b`.
    Add2(Half, Reg, Reg),
    /// Lane-wise `a − b`.
    Sub2(Half, Reg, Reg),
    /// Lane-wise `a · b`.
    Mul2(Half, Reg, Reg),
    /// Lane-wise `a · b + c`, one rounding.
    Fma2(Half, Reg, Reg, Reg),
    /// `f32` subtraction.
    SubF32(Reg, Reg),
    /// `cvt.rn.{f16,bf16}x2.f32 d, hi, lo`: two `f32`s rounded into a half pair.
    PackF32(Half, Reg, Reg),
    /// `cvt.rn.f16x2.{e4m3,e5m2}x2 d, a`: the two 8-bit floats in the low 16 bits of `a` (sm_89+).
    CvtFp8(Fp8, Reg),
    /// `cvt.f32.f16` of the low (false) or high (true) lane: exact.
    WidenF16(Reg, bool),
    /// The low (false) or high (true) 16 bits of a register moved into the low half, the
    /// high half zero (free on the GPU: a register half).
    Half16(Reg, bool),
}

impl MOp {
    /// The registers it reads.
    pub fn operands(&self) -> Vec<Reg> {
        let (regs, n) = self.regs();
        regs[..n].to_vec()
    }

    /// The registers it reads, without allocating: (registers, how many).
    fn regs(&self) -> ([Reg; 3], usize) {
        match *self {
            MOp::Word(_) | MOp::Const(_) => ([0; 3], 0),
            MOp::Shr(a, _) | MOp::Shl(a, _) | MOp::CvtFp8(_, a) | MOp::Half16(a, _) | MOp::WidenF16(a, _) => {
                ([a, 0, 0], 1)
            }
            MOp::Shf { lo, hi, .. } => ([lo, hi, 0], 2),
            MOp::Lop3(a, b, c, _) | MOp::Fma2(_, a, b, c) => ([a, b, c], 3),
            MOp::Prmt(a, b, _)
            | MOp::Add2(_, a, b)
            | MOp::Sub2(_, a, b)
            | MOp::Mul2(_, a, b)
            | MOp::SubF32(a, b)
            | MOp::PackF32(_, a, b) => ([a, b, 0], 2),
        }
    }

    /// What it costs under the cost model: one issue slot per instruction; inputs, constants
    /// and register halves are free.
    pub fn cost(&self) -> u32 {
        match self {
            MOp::Word(_) | MOp::Const(_) | MOp::Half16(..) => 0,
            _ => 1,
        }
    }
}

/// A dequantization program: converts `words` packed 32-bit words (holding
/// `elements = 32·words / bits` codes of the weight type) into half pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The weight type.
    pub weight: DType,
    /// The result type.
    pub half: Half,
    /// Input words.
    pub words: usize,
    /// Operations, in order; operands refer to earlier entries.
    pub ops: Vec<MOp>,
    /// Outputs: a register holding a half pair, and the elements in its lanes (low, high).
    pub outputs: Vec<(Reg, usize, usize)>,
}

/// The exact value of a `prmt.b32`.
pub fn prmt(a: u32, b: u32, selector: u16) -> u32 {
    let bytes = (u64::from(b) << 32) | u64::from(a);
    let mut out = 0u32;
    for i in 0..4 {
        let nibble = (selector >> (4 * i)) & 0xF;
        let byte = ((bytes >> (8 * (nibble & 7))) & 0xFF) as u32;
        let byte = if nibble & 8 != 0 { if byte & 0x80 != 0 { 0xFF } else { 0 } } else { byte };
        out |= byte << (8 * i);
    }
    out
}

/// The exact value of a `lop3.b32`.
pub fn lop3(a: u32, b: u32, c: u32, lut: u8) -> u32 {
    // The OR of the table's minterms, 32 bits at a time.
    (0..8u8).filter(|i| (lut >> i) & 1 == 1).fold(0, |out, i| {
        let pick = |v: u32, bit: u8| if i & bit != 0 { v } else { !v };
        out | (pick(a, 4) & pick(b, 2) & pick(c, 1))
    })
}

/// The truth table of a function of the three lop3 inputs.
pub fn lut(f: impl Fn(bool, bool, bool) -> bool) -> u8 {
    let mut table = 0u8;
    for index in 0..8u8 {
        if f(index & 4 != 0, index & 2 != 0, index & 1 != 0) {
            table |= 1 << index;
        }
    }
    table
}

/// `x` rounded to the half type, to nearest even (through `anybit_ir`'s exact encoder).
// The interpreter's fast codecs (checked against the exact ones in `anybit_ir`'s tests): the
// search evaluates programs thousands of times per weight type, on the compile path.
fn round_half(half: Half, x: f64) -> u16 {
    numeric::encode_float(half.format(), x) as u16
}

fn lane_value(half: Half, code: u16) -> f64 {
    numeric::decode_float(half.format(), u32::from(code)).unwrap_or(f64::NAN)
}

/// `a + b` rounded to odd in f64 (exact when representable): after this, rounding to any
/// format with at least two fewer significand bits is correct rounding.
fn sum_round_odd(a: f64, b: f64) -> f64 {
    let s = a + b;
    if !s.is_finite() {
        return s;
    }
    // TwoSum: the exact error of the addition.
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    if err == 0.0 || s.to_bits() & 1 == 1 {
        return s;
    }
    let toward = if (err > 0.0) == (s > 0.0) { s.to_bits() + 1 } else { s.to_bits() - 1 };
    f64::from_bits(toward)
}

fn lanes2(half: Half, x: u32, y: u32, f: impl Fn(f64, f64) -> f64) -> u32 {
    let lane = |shift: u32| {
        let a = lane_value(half, (x >> shift) as u16);
        let b = lane_value(half, (y >> shift) as u16);
        u32::from(round_half(half, f(a, b)))
    };
    lane(0) | (lane(16) << 16)
}

fn lanes3(half: Half, x: u32, y: u32, z: u32, f: impl Fn(f64, f64, f64) -> f64) -> u32 {
    let lane = |shift: u32| {
        let a = lane_value(half, (x >> shift) as u16);
        let b = lane_value(half, (y >> shift) as u16);
        let c = lane_value(half, (z >> shift) as u16);
        u32::from(round_half(half, f(a, b, c)))
    };
    lane(0) | (lane(16) << 16)
}

fn f32_value(bits: u32) -> f64 {
    f64::from(f32::from_bits(bits))
}

fn f32_round(x: f64) -> u32 {
    numeric::encode_float(FloatFormat::F32, x)
}

impl MOp {
    /// The operation's result given the values of the registers so far (indexed by register)
    /// and the input words.
    pub fn eval(&self, values: &[u32], words: &[u32]) -> u32 {
        let (regs, _) = self.regs();
        let arg = |i: usize| values.get(regs[i]).copied().unwrap_or(0);
        match *self {
            MOp::Word(i) => words.get(i).copied().unwrap_or(0),
            MOp::Const(c) => c,
            MOp::Shr(_, k) => arg(0).checked_shr(k).unwrap_or(0),
            MOp::Shl(_, k) => arg(0).checked_shl(k).unwrap_or(0),
            MOp::Shf { k, .. } => (((u64::from(arg(1)) << 32) | u64::from(arg(0))) >> k.min(32)) as u32,
            MOp::Lop3(.., table) => lop3(arg(0), arg(1), arg(2), table),
            MOp::Prmt(.., selector) => prmt(arg(0), arg(1), selector),
            // Sums and differences of two halves are exact in f64 (their exponents differ by
            // less than 53 − 2·11 bits for f16; for bf16 the sum is rounded to odd first).
            MOp::Add2(h, ..) => lanes2(h, arg(0), arg(1), sum_round_odd),
            MOp::Sub2(h, ..) => lanes2(h, arg(0), arg(1), |a, b| sum_round_odd(a, -b)),
            // Products of two halves are exact in f64.
            MOp::Mul2(h, ..) => lanes2(h, arg(0), arg(1), |a, b| a * b),
            MOp::Fma2(h, ..) => lanes3(h, arg(0), arg(1), arg(2), |a, b, c| sum_round_odd(a * b, c)),
            MOp::SubF32(..) => f32_round(sum_round_odd(f32_value(arg(0)), -f32_value(arg(1)))),
            MOp::PackF32(h, ..) => {
                let lo = round_half(h, f32_value(arg(1)));
                let hi = round_half(h, f32_value(arg(0)));
                u32::from(lo) | (u32::from(hi) << 16)
            }
            MOp::CvtFp8(kind, _) => {
                let format = kind.dtype().float_format().unwrap_or(FloatFormat::F16);
                let x = arg(0);
                let lo = numeric::decode_float(format, x & 0xFF).unwrap_or(f64::NAN);
                let hi = numeric::decode_float(format, (x >> 8) & 0xFF).unwrap_or(f64::NAN);
                u32::from(round_half(Half::F16, lo)) | (u32::from(round_half(Half::F16, hi)) << 16)
            }
            MOp::WidenF16(_, high) => {
                let lane = if high { arg(0) >> 16 } else { arg(0) } as u16;
                f32_round(lane_value(Half::F16, lane))
            }
            MOp::Half16(_, high) => {
                if high {
                    arg(0) >> 16
                } else {
                    arg(0) & 0xFFFF
                }
            }
        }
    }
}

/// Which elements each bit of a register may depend on (a bit set over ≤ 64 elements).
type BitDeps = [u64; 32];

impl Program {
    /// Elements per word group.
    pub fn elements(&self) -> usize {
        self.words * 32 / self.weight.bits() as usize
    }

    /// Total cost under the cost model ([`MOp::cost`]) of the operations the outputs use.
    pub fn cost(&self) -> u32 {
        let live = self.live();
        let constant = |r: &Reg| matches!(self.ops.get(*r), Some(MOp::Const(_)));
        self.ops
            .iter()
            .zip(&live)
            .filter(|(_, l)| **l)
            .map(|(op, _)| {
                // SASS takes one immediate operand; ptxas moves every further constant into a
                // register, per use inside a loop (measured: an `IMAD.MOV` per `lop3` with a mask
                // and a magic, per `fma` with two constant pairs).
                let constants = op.operands().iter().filter(|r| constant(r)).count() as u32;
                op.cost() + constants.saturating_sub(1)
            })
            .sum()
    }

    /// Which operations the outputs reach.
    pub fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.ops.len()];
        let mut stack: Vec<Reg> = self.outputs.iter().map(|o| o.0).collect();
        while let Some(r) = stack.pop() {
            if r < live.len() && !live[r] {
                live[r] = true;
                stack.extend(self.ops[r].operands());
            }
        }
        live
    }

    /// Runs the program on input words; the value of every register.
    pub fn eval(&self, words: &[u32]) -> Vec<u32> {
        let mut values: Vec<u32> = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            let v = op.eval(&values, words);
            values.push(v);
        }
        values
    }

    /// For every output lane, the set of elements its bits may depend on (a conservative
    /// bit-level analysis: bitwise operations keep bit positions, shifts and byte permutes
    /// move them, arithmetic spreads over the lane or the register).
    pub fn lane_dependencies(&self) -> Vec<(u64, u64)> {
        let n = self.weight.bits() as usize;
        let mut deps: Vec<BitDeps> = Vec::with_capacity(self.ops.len());
        let get = |deps: &Vec<BitDeps>, r: Reg| deps.get(r).copied().unwrap_or([u64::MAX; 32]);
        for op in &self.ops {
            let mut d = [0u64; 32];
            match *op {
                MOp::Word(w) => {
                    for (bit, slot) in d.iter_mut().enumerate() {
                        let element = (32 * w + bit) / n;
                        *slot = if element < 64 { 1 << element } else { u64::MAX };
                    }
                }
                MOp::Const(_) => {}
                MOp::Shr(a, k) => {
                    let a = get(&deps, a);
                    for bit in 0..32 {
                        if bit + (k as usize) < 32 {
                            d[bit] = a[bit + k as usize];
                        }
                    }
                }
                MOp::Shl(a, k) => {
                    let a = get(&deps, a);
                    for bit in (k as usize)..32 {
                        d[bit] = a[bit - k as usize];
                    }
                }
                MOp::Shf { lo, hi, k } => {
                    let (lo, hi) = (get(&deps, lo), get(&deps, hi));
                    for (bit, slot) in d.iter_mut().enumerate() {
                        let source = bit + k as usize;
                        *slot = if source < 32 {
                            lo[source]
                        } else if source < 64 {
                            hi[source - 32]
                        } else {
                            0
                        };
                    }
                }
                MOp::Lop3(ra, rb, rc, table) => {
                    // A constant input fixes its bit; only the inputs the truth table still
                    // depends on, at that bit, contribute.
                    let constant = |r: Reg| match self.ops.get(r) {
                        Some(MOp::Const(v)) => Some(*v),
                        _ => None,
                    };
                    let (ka, kb, kc) = (constant(ra), constant(rb), constant(rc));
                    let (a, b, c) = (get(&deps, ra), get(&deps, rb), get(&deps, rc));
                    for bit in 0..32 {
                        let choices = |k: Option<u32>| match k {
                            Some(v) => vec![(v >> bit) & 1],
                            None => vec![0, 1],
                        };
                        let f = |x: u32, y: u32, z: u32| (table >> ((x << 2) | (y << 1) | z)) & 1;
                        let (xs, ys, zs) = (choices(ka), choices(kb), choices(kc));
                        let mut uses = [false; 3];
                        for &x in &xs {
                            for &y in &ys {
                                for &z in &zs {
                                    uses[0] |= f(x, y, z) != f(x ^ 1, y, z) && ka.is_none();
                                    uses[1] |= f(x, y, z) != f(x, y ^ 1, z) && kb.is_none();
                                    uses[2] |= f(x, y, z) != f(x, y, z ^ 1) && kc.is_none();
                                }
                            }
                        }
                        d[bit] =
                            [a[bit], b[bit], c[bit]].iter().zip(uses).filter(|(_, u)| *u).fold(0, |x, (y, _)| x | y);
                    }
                }
                MOp::Prmt(a, b, selector) => {
                    let (a, b) = (get(&deps, a), get(&deps, b));
                    for byte in 0..4 {
                        let nibble = usize::from((selector >> (4 * byte)) & 0xF);
                        let source = nibble & 7;
                        let bits = |i: usize| if source < 4 { a[8 * source + i] } else { b[8 * (source - 4) + i] };
                        for i in 0..8 {
                            d[8 * byte + i] = if nibble & 8 != 0 { bits(7) } else { bits(i) };
                        }
                    }
                }
                MOp::Add2(_, a, b) | MOp::Sub2(_, a, b) | MOp::Mul2(_, a, b) => {
                    spread_lanes(&mut d, &[get(&deps, a), get(&deps, b)]);
                }
                MOp::Fma2(_, a, b, c) => {
                    spread_lanes(&mut d, &[get(&deps, a), get(&deps, b), get(&deps, c)]);
                }
                MOp::SubF32(a, b) => {
                    let all = get(&deps, a).iter().chain(get(&deps, b).iter()).fold(0, |x, y| x | y);
                    d = [all; 32];
                }
                MOp::PackF32(_, hi, lo) => {
                    let lo_all = get(&deps, lo).iter().fold(0, |x, y| x | y);
                    let hi_all = get(&deps, hi).iter().fold(0, |x, y| x | y);
                    for (bit, slot) in d.iter_mut().enumerate() {
                        *slot = if bit < 16 { lo_all } else { hi_all };
                    }
                }
                MOp::CvtFp8(_, a) => {
                    let a = get(&deps, a);
                    let lo = a[..8].iter().fold(0, |x, y| x | y);
                    let hi = a[8..16].iter().fold(0, |x, y| x | y);
                    for (bit, slot) in d.iter_mut().enumerate() {
                        *slot = if bit < 16 { lo } else { hi };
                    }
                }
                MOp::WidenF16(a, high) => {
                    let a = get(&deps, a);
                    let offset = if high { 16 } else { 0 };
                    d = [a[offset..offset + 16].iter().fold(0, |x, y| x | y); 32];
                }
                MOp::Half16(a, high) => {
                    let a = get(&deps, a);
                    let offset = if high { 16 } else { 0 };
                    d[..16].copy_from_slice(&a[offset..offset + 16]);
                }
            }
            deps.push(d);
        }
        self.outputs
            .iter()
            .map(|&(r, _, _)| {
                let d = get(&deps, r);
                (d[..16].iter().fold(0, |x, y| x | y), d[16..].iter().fold(0, |x, y| x | y))
            })
            .collect()
    }
}

fn spread_lanes(d: &mut BitDeps, inputs: &[BitDeps]) {
    for lane in 0..2 {
        let all = inputs.iter().flat_map(|x| x[16 * lane..16 * lane + 16].iter()).fold(0, |x, y| x | y);
        for slot in &mut d[16 * lane..16 * lane + 16] {
            *slot = all;
        }
    }
}

/// The exact value of a half code (NaN for NaN codes).
pub fn half_value(half: Half, code: u16) -> f64 {
    lane_value(half, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prmt_matches_the_isa_examples() {
        // Identity, byte reversal, and sign replication.
        assert_eq!(prmt(0x4433_2211, 0x8877_6655, 0x3210), 0x4433_2211);
        assert_eq!(prmt(0x4433_2211, 0x8877_6655, 0x7654), 0x8877_6655);
        assert_eq!(prmt(0x4433_2211, 0, 0x0123), 0x1122_3344);
        assert_eq!(prmt(0x0000_807F, 0, 0x4449), 0x0000_00FF);
        assert_eq!(prmt(0x0000_807F, 0, 0x4448), 0x0000_0000);
    }

    #[test]
    fn lop3_tables() {
        let and_or = lut(|a, b, c| (a && b) || c);
        assert_eq!(and_or, 0xEA);
        assert_eq!(lop3(0x1234_5678, 0x000F_000F, 0x6400_6400, and_or), 0x6404_6408);
        assert_eq!(lut(|a, _, _| a), 0xF0);
        assert_eq!(lut(|_, b, _| b), 0xCC);
        assert_eq!(lut(|_, _, c| c), 0xAA);
    }

    #[test]
    fn half_arithmetic_rounds_once() {
        // 1024 + 3 in f16 minus 1024: exact.
        let x = u32::from(Half::F16.code(1027.0)) | (u32::from(Half::F16.code(1024.0)) << 16);
        let k = u32::from(Half::F16.code(1024.0)) * 0x1_0001;
        let r = MOp::Sub2(Half::F16, 0, 1).eval(&[x, k], &[]);
        assert_eq!(half_value(Half::F16, r as u16), 3.0);
        assert_eq!(half_value(Half::F16, (r >> 16) as u16), 0.0);
        // bf16: 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even is 1.
        let one = u32::from(Half::Bf16.code(1.0));
        let tiny = u32::from(Half::Bf16.code(2f64.powi(-8)));
        let r = MOp::Add2(Half::Bf16, 0, 1).eval(&[one, tiny], &[]);
        assert_eq!(half_value(Half::Bf16, r as u16), 1.0);
        // A sum that needs more than 53 bits: 1 + 2^-8 + 2^-100 rounds up, not to even.
        let r = MOp::Fma2(Half::Bf16, 0, 1, 2).eval(
            &[u32::from(Half::Bf16.code(2f64.powi(-8))), one, u32::from(Half::Bf16.code(1.0 + 2f64.powi(-100)))],
            &[],
        );
        // 1 + 2^-100 is not a bf16: its code is 1.0, so the sum is the tie 1 + 2^-8 → 1.
        assert_eq!(half_value(Half::Bf16, r as u16), 1.0);
        assert_eq!(sum_round_odd(1.0, 2f64.powi(-100)), f64::from_bits(1f64.to_bits() + 1));
    }

    #[test]
    fn dependencies_follow_bits() {
        let u4: DType = "u4".parse().unwrap();
        let program = Program {
            weight: u4,
            half: Half::F16,
            words: 1,
            ops: vec![MOp::Word(0), MOp::Const(0x000F_000F), MOp::Const(0x6400_6400), MOp::Lop3(0, 1, 2, 0xEA)],
            outputs: vec![(3, 0, 4)],
        };
        // The constant mask keeps element 0 in lane 0 and element 4 in lane 1.
        assert_eq!(program.lane_dependencies(), vec![(0x01, 0x10)]);
        // Without a constant mask every bit keeps its dependencies.
        let mut wide = program.clone();
        wide.ops[1] = MOp::Shr(0, 0);
        assert_eq!(wide.lane_dependencies(), vec![(0x0F, 0xF0)]);
    }
}
