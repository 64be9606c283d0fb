//! Casts of viewed packed weights to `f16`/`bf16` through the selected dequantization
//! programs (`anybit_passes::dequant`).
//!
//! `cast(view(bytes → w)) : f16` is the dequantization of a low-bit matmul. When every
//! thread's bits split into whole word groups of the weight type (`lcm(N, 32)` bits), each
//! group's words are assembled from the byte slots and the selected program runs on them:
//! its integer operations become plain LLVM integer IR (`and`/`or`/`xor`/shifts, which ptxas
//! fuses into `LOP3`; `llvm.nvvm.prmt` for byte permutes; `llvm.fshr` for funnel shifts), its
//! half-pair operations `<2 x half>`/`<2 x bfloat>` vector arithmetic (`HADD2`/`HFMA2`), and
//! 8-bit float pair conversions inline `cvt.rn.f16x2.{e4m3,e5m2}x2` (sm_90+). Each output
//! register is split into its two lanes, which become the two slots it holds. On the host
//! platform (tests), permutes are emulated and half-pair arithmetic runs lane by lane through
//! the exact scalar paths, so the host-JIT tests execute the very same program.

use super::arith;
use super::emit::{LResult, LowerError, Platform, internal};
use super::emitter::{Emit, FloatOp};
use anybit_ir::dtype::DType;
use anybit_ir::program::BinaryOp;
use anybit_passes::dequant::{self, Features, Half, MOp, Program};

/// What the target offers the search.
pub(crate) fn features(platform: &Platform) -> Features {
    match platform {
        // sm_89 has the instruction too, but only from PTX ISA 8.1; our sm_89 PTX is 7.8.
        Platform::Nvptx(target) => Features { fp8_convert: target.compute_capability() >= 90 },
        Platform::Host => Features::default(),
    }
}

/// The selected program for `from → to`, when one applies to a thread holding `bits` bits.
pub(crate) fn program_for<E: Emit>(em: &E, from: DType, to: DType, bits: usize) -> Option<std::sync::Arc<Program>> {
    Half::of(to)?;
    if !(1..=8).contains(&from.bits()) {
        return None;
    }
    let program = dequant::select(from, to, features(&em.platform())).ok()?;
    bits.is_multiple_of(program.words * 32).then_some(program)
}

/// Runs `program` over the thread's packed bits (`codes` of `code_bits` each, LSB first);
/// returns one value of the half type per element, in stream order.
pub(crate) fn run<E: Emit>(em: &E, program: &Program, code_bits: u32, codes: &[E::V]) -> LResult<Vec<E::V>> {
    let words = pack_words(em, code_bits, codes)?;
    let group_elements = program.elements();
    let groups = words.len() / program.words;
    let mut out: Vec<Option<E::V>> = vec![None; groups * group_elements];
    // What every word group runs the same way: the live operations and the resident constants.
    let live = program.live();
    let resident = resident_constants(program, &live);
    for g in 0..groups {
        let inputs = &words[g * program.words..(g + 1) * program.words];
        let regs = emit_ops(em, program, &live, &resident, inputs)?;
        for &(r, lo, hi) in &program.outputs {
            let Some(&reg) = regs.get(r) else { return internal("output register out of range") };
            let (l, h) = split(em, program.half, reg)?;
            out[g * group_elements + lo] = Some(l);
            out[g * group_elements + hi] = Some(h);
        }
    }
    out.into_iter().map(|v| v.ok_or_else(|| LowerError::Llvm("dequantization left a slot empty".into()))).collect()
}

/// 32-bit words of the thread's bit stream.
fn pack_words<E: Emit>(em: &E, code_bits: u32, codes: &[E::V]) -> LResult<Vec<E::V>> {
    let total = codes.len() * code_bits as usize;
    let mut words = Vec::with_capacity(total / 32);
    for w in 0..total / 32 {
        let mut acc: Option<E::V> = None;
        let (lo, hi) = (32 * w, 32 * w + 32);
        for (k, &code) in codes.iter().enumerate() {
            let start = k * code_bits as usize;
            let end = start + code_bits as usize;
            if end <= lo || start >= hi {
                continue;
            }
            let mask = if code_bits >= 32 { code } else { em.and(code, em.c32((1i64 << code_bits) - 1)?)? };
            let piece = if start >= lo {
                em.shl(mask, em.c32((start - lo) as i64)?)?
            } else {
                em.lshr(mask, em.c32((lo - start) as i64)?)?
            };
            acc = Some(match acc {
                Some(a) => em.or(a, piece)?,
                None => piece,
            });
        }
        words.push(match acc {
            Some(a) => a,
            None => em.c32(0)?,
        });
    }
    Ok(words)
}

fn half_type<E: Emit>(em: &E, h: Half) -> E::T {
    match h {
        Half::F16 => em.f16(),
        Half::Bf16 => em.bf16(),
    }
}

/// The two lanes of a register as half values.
fn split<E: Emit>(em: &E, h: Half, reg: E::V) -> LResult<(E::V, E::V)> {
    if let Platform::Nvptx(_) = em.platform() {
        // As lanes of a vector, so that pairing them again (below) folds back to the register.
        let v = em.bitcast(reg, vector_type(em, h))?;
        let lo = em.extract_element(v, 0)?;
        let hi = em.extract_element(v, 1)?;
        return Ok((lo, hi));
    }
    let ty = half_type(em, h);
    let lo = em.from_bits(em.trunc(reg, em.i16())?, ty)?;
    let hi = em.from_bits(em.trunc(em.lshr(reg, em.c32(16)?)?, em.i16())?, ty)?;
    Ok((lo, hi))
}

/// A register from two half values.
fn join<E: Emit>(em: &E, lo: E::V, hi: E::V) -> LResult<E::V> {
    let bits = |v: E::V| -> LResult<E::V> { em.zext(em.fbits(v)?, em.i32()) };
    em.or(bits(lo)?, em.shl(bits(hi)?, em.c32(16)?)?)
}

fn emit_ops<E: Emit>(
    em: &E,
    program: &Program,
    live: &[bool],
    resident: &[bool],
    words: &[E::V],
) -> LResult<Vec<E::V>> {
    let mut regs: Vec<E::V> = Vec::with_capacity(program.ops.len());
    for (index, op) in program.ops.iter().enumerate() {
        if !live[index] {
            regs.push(em.c32(0)?);
            continue;
        }
        let r = |i: usize| -> LResult<E::V> {
            regs.get(i).copied().ok_or_else(|| LowerError::Llvm("register used before definition".into()))
        };
        let v = match *op {
            MOp::Word(w) => match words.get(w) {
                Some(&v) => v,
                None => return internal("word out of range"),
            },
            MOp::Const(c) if resident[index] => resident_constant(em, i64::from(c as i32))?,
            MOp::Const(c) => em.c32(i64::from(c as i32))?,
            MOp::Shr(a, k) => em.lshr(r(a)?, em.c32(i64::from(k))?)?,
            MOp::Shl(a, k) => em.shl(r(a)?, em.c32(i64::from(k))?)?,
            MOp::Shf { lo, hi, k } => {
                em.intrinsic_value("llvm.fshr.i32", em.i32(), &[r(hi)?, r(lo)?, em.c32(i64::from(k))?])?
            }
            MOp::Lop3(a, b, c, table) if [a, b, c].iter().any(|&x| resident.get(x) == Some(&true)) => {
                lop3_instruction(em, r(a)?, r(b)?, r(c)?, table)?
            }
            MOp::Lop3(a, b, c, table) => lop3(em, r(a)?, r(b)?, r(c)?, table)?,
            MOp::Prmt(a, b, selector) => prmt(em, r(a)?, r(b)?, selector)?,
            MOp::Add2(h, a, b) => pair_binary(em, h, BinaryOp::Add, r(a)?, r(b)?)?,
            MOp::Sub2(h, a, b) => pair_binary(em, h, BinaryOp::Sub, r(a)?, r(b)?)?,
            MOp::Mul2(h, a, b) => pair_binary(em, h, BinaryOp::Mul, r(a)?, r(b)?)?,
            MOp::Fma2(h, a, b, c) => pair_fma(em, h, r(a)?, r(b)?, r(c)?)?,
            MOp::SubF32(a, b) => {
                let (x, y) = (em.from_bits(r(a)?, em.f32())?, em.from_bits(r(b)?, em.f32())?);
                em.fbits(em.fsub(x, y)?)?
            }
            MOp::PackF32(h, hi, lo) if em.platform().is_nvptx() => {
                // One `cvt.rn.{f16,bf16}x2.f32` (sm_80+; every target is): the values are exact
                // in the half type, so rounding does not matter. Written out because LLVM
                // splits two scalar truncations into two conversions and a permute when the
                // pair goes straight into an mma operand rather than half-pair arithmetic.
                let asm = format!("cvt.rn.{}x2.f32 $0, $1, $2;", h.name());
                let (hi, lo) = (em.from_bits(r(hi)?, em.f32())?, em.from_bits(r(lo)?, em.f32())?);
                match em.inline_asm(&asm, "=r,f,f", Some(em.i32()), &[hi, lo], false)? {
                    Some(v) => v,
                    None => return internal("asm without value"),
                }
            }
            MOp::PackF32(h, hi, lo) => {
                let dtype = h.dtype();
                let narrow = |v: E::V| arith::from_domain(em, dtype, em.from_bits(v, em.f32()).ok()?).ok();
                let (Some(l), Some(u)) = (narrow(r(lo)?), narrow(r(hi)?)) else {
                    return internal("f32 pair packing failed");
                };
                join(em, l, u)?
            }
            MOp::CvtFp8(kind, a) => {
                let Platform::Nvptx(_) = em.platform() else { return internal("fp8 pair conversion on the host") };
                let half = em.trunc(r(a)?, em.i16())?;
                let asm = format!("cvt.rn.f16x2.{}x2 $0, $1;", kind.name());
                match em.inline_asm(&asm, "=r,h", Some(em.i32()), &[half], false)? {
                    Some(v) => v,
                    None => return internal("asm without value"),
                }
            }
            MOp::WidenF16(a, high) => {
                let (lo, hi) = split(em, Half::F16, r(a)?)?;
                let lane = if high { hi } else { lo };
                em.fbits(em.fext(lane, em.f32())?)?
            }
            MOp::Half16(a, high) => {
                if high {
                    em.lshr(r(a)?, em.c32(16)?)?
                } else {
                    em.and(r(a)?, em.c32(0xFFFF)?)?
                }
            }
        };
        regs.push(v);
    }
    Ok(regs)
}

/// Which constants of `program` to keep in a register for the whole kernel: every constant an
/// instruction takes beyond its first. SASS instructions take one immediate; ptxas moves the
/// others into a register at every use (an `IMAD.MOV` per use inside the K loop, about 30 of
/// the u4 → bf16 loop's 358 instructions) unless the value is not a constant it can see.
fn resident_constants(program: &Program, live: &[bool]) -> Vec<bool> {
    let mut resident = vec![false; program.ops.len()];
    for (op, _) in program.ops.iter().zip(live).filter(|(_, l)| **l) {
        let constants = op.operands().into_iter().filter(|&r| matches!(program.ops.get(r), Some(MOp::Const(_))));
        for r in constants.skip(1) {
            resident[r] = true;
        }
    }
    resident
}

/// A register holding `value` that neither LLVM nor ptxas folds back into an immediate (so it
/// is computed once and stays in a register): `value | (tid.x >> 10)`, with `tid.x` read
/// through inline assembly. A block has at most 1024 threads, so the `or` adds nothing. On the
/// host (tests), the plain constant.
fn resident_constant<E: Emit>(em: &E, value: i64) -> LResult<E::V> {
    if let Platform::Nvptx(_) = em.platform()
        && let Some(tid) = em.inline_asm("mov.u32 $0, %tid.x;", "=r", Some(em.i32()), &[], false)?
    {
        let zero = em.lshr(tid, em.c32(10)?)?;
        return em.or(zero, em.c32(value)?);
    }
    em.c32(value)
}

/// `lop3` with a resident constant among its inputs: the PTX instruction itself on the GPU (as
/// a sum of minterms over a register LLVM cannot see into, it would not fold back into one
/// `LOP3`); the minterms on the host.
fn lop3_instruction<E: Emit>(em: &E, a: E::V, b: E::V, c: E::V, table: u8) -> LResult<E::V> {
    if let Platform::Nvptx(_) = em.platform() {
        let asm = format!("lop3.b32 $0, $1, $2, $3, {table};");
        if let Some(v) = em.inline_asm(&asm, "=r,r,r,r", Some(em.i32()), &[a, b, c], false)? {
            return Ok(v);
        }
    }
    lop3(em, a, b, c, table)
}

/// `lop3` as the sum of the truth table's minterms over the three inputs (LLVM folds the
/// constant inputs; ptxas fuses what is left into one `LOP3`).
fn lop3<E: Emit>(em: &E, a: E::V, b: E::V, c: E::V, table: u8) -> LResult<E::V> {
    let mut acc: Option<E::V> = None;
    for index in 0..8u8 {
        if (table >> index) & 1 == 0 {
            continue;
        }
        let pick = |v: E::V, bit: u8| if index & bit != 0 { Ok(v) } else { em.not(v) };
        let term = em.and(em.and(pick(a, 4)?, pick(b, 2)?)?, pick(c, 1)?)?;
        acc = Some(match acc {
            Some(x) => em.or(x, term)?,
            None => term,
        });
    }
    Ok(match acc {
        Some(a) => a,
        None => em.c32(0)?,
    })
}

/// `prmt.b32`: the NVVM intrinsic on the GPU, byte selection by shifts on the host.
fn prmt<E: Emit>(em: &E, a: E::V, b: E::V, selector: u16) -> LResult<E::V> {
    if let Platform::Nvptx(_) = em.platform() {
        let ty = em.i32();
        let sel = em.c32(i64::from(selector))?;
        return em.intrinsic_value("llvm.nvvm.prmt", ty, &[a, b, sel]);
    }
    let mut acc = em.c32(0)?;
    for i in 0..4u16 {
        let nibble = (selector >> (4 * i)) & 0xF;
        let source = nibble & 7;
        let reg = if source < 4 { a } else { b };
        let byte = em.and(em.lshr(reg, em.c32(i64::from(8 * (source % 4)))?)?, em.c32(0xFF)?)?;
        let byte = if nibble & 8 != 0 {
            // Replicate the byte's top bit: 0 or 0xFF.
            let top = em.lshr(byte, em.c32(7)?)?;
            em.mul(top, em.c32(0xFF)?)?
        } else {
            byte
        };
        acc = em.or(acc, em.shl(byte, em.c32(i64::from(8 * i))?)?)?;
    }
    Ok(acc)
}

fn vector_type<E: Emit>(em: &E, h: Half) -> E::T {
    em.vector_type(half_type(em, h), 2)
}

/// `a op b` on half pairs (add, sub or mul), one vector instruction.
fn vector_binary<E: Emit>(em: &E, op: BinaryOp, x: E::V, y: E::V) -> LResult<E::V> {
    let op = match op {
        BinaryOp::Add => FloatOp::Add,
        BinaryOp::Sub => FloatOp::Sub,
        BinaryOp::Mul => FloatOp::Mul,
        _ => return internal("paired operation other than add/sub/mul"),
    };
    em.fbin(op, x, y)
}

fn pair_binary<E: Emit>(em: &E, h: Half, op: BinaryOp, a: E::V, b: E::V) -> LResult<E::V> {
    if let Platform::Nvptx(_) = em.platform() {
        let ty = vector_type(em, h);
        let x = em.bitcast(a, ty)?;
        let y = em.bitcast(b, ty)?;
        let v = vector_binary(em, op, x, y)?;
        return em.bitcast(v, em.i32());
    }
    let ((al, ah), (bl, bh)) = (split(em, h, a)?, split(em, h, b)?);
    let lo = arith::binary(em, op, h.dtype(), al, bl)?;
    let hi = arith::binary(em, op, h.dtype(), ah, bh)?;
    join(em, lo, hi)
}

fn pair_fma<E: Emit>(em: &E, h: Half, a: E::V, b: E::V, c: E::V) -> LResult<E::V> {
    if let Platform::Nvptx(_) = em.platform() {
        let ty = vector_type(em, h);
        let cast = |v: E::V| em.bitcast(v, ty);
        let name = format!("llvm.fma.v2{}", em.float_suffix(half_type(em, h)));
        let v = em.intrinsic_value(&name, ty, &[cast(a)?, cast(b)?, cast(c)?])?;
        return em.bitcast(v, em.i32());
    }
    // The host: each lane exactly in f64 (products of halves are exact, the sum rounds once
    // there), then rounded to the half type.
    let ((al, ah), (bl, bh), (cl, ch)) = (split(em, h, a)?, split(em, h, b)?, split(em, h, c)?);
    let lane = |x: E::V, y: E::V, z: E::V| -> LResult<E::V> {
        let wide = |v: E::V| em.fext(v, em.f64());
        let r = em.fma(wide(x)?, wide(y)?, wide(z)?)?;
        arith::from_domain(em, h.dtype(), r)
    };
    let lo = lane(al, bl, cl)?;
    let hi = lane(ah, bh, ch)?;
    join(em, lo, hi)
}

/// The slot pairs of a binary `add`/`sub`/`mul` on `f16`/`bf16` tiles that the GPU computes
/// two at a time (`HADD2`/`HMUL2`): slots that are the two lanes of one register (a
/// dequantized pair) stay together, the rest pair in order. None when the operation is not
/// one of those, a side is not a tile with an even number of slots, or on the host.
pub(crate) fn pairable<E: Emit>(
    em: &E,
    op: BinaryOp,
    dtype: DType,
    a: &super::lower::Lane<E::V>,
    b: &super::lower::Lane<E::V>,
) -> Option<Vec<(usize, usize)>> {
    let Platform::Nvptx(target) = em.platform() else { return None };
    let half = Half::of(dtype)?;
    if !matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul) {
        return None;
    }
    // bf16x2 add/sub/mul are sm_90 instructions.
    if half == Half::Bf16 && target.compute_capability() < 90 {
        return None;
    }
    let tile = a.tile_ref().or_else(|| b.tile_ref())?;
    let n = tile.slots.len();
    if n % 2 != 0 || [a, b].iter().any(|l| l.tile_ref().is_some_and(|t| t.slots.len() != n)) {
        return None;
    }
    // Lanes of one vector: (vector, lane) of each slot of the first tile operand.
    let mut owner: std::collections::HashMap<usize, [Option<usize>; 2]> = std::collections::HashMap::new();
    let mut lanes_of = vec![None; n];
    for (i, slot) in tile.slots.iter().enumerate() {
        let Some((key, lane)) = em.vector_lane(*slot) else { continue };
        if lane > 1 {
            continue;
        }
        let entry = owner.entry(key).or_insert([None, None]);
        entry[lane as usize] = Some(i);
        lanes_of[i] = Some(key);
    }
    let mut used = vec![false; n];
    let mut pairs = Vec::with_capacity(n / 2);
    for i in 0..n {
        if used[i] {
            continue;
        }
        if let Some(key) = lanes_of[i]
            && let Some([Some(lo), Some(hi)]) = owner.get(&key).copied()
            && !used[lo]
            && !used[hi]
            && lo != hi
        {
            used[lo] = true;
            used[hi] = true;
            pairs.push((lo, hi));
        }
    }
    let rest: Vec<usize> = (0..n).filter(|&i| !used[i]).collect();
    for chunk in rest.chunks(2) {
        match chunk {
            [x, y] => pairs.push((*x, *y)),
            _ => return None,
        }
    }
    Some(pairs)
}

/// The binary operation computed on slot pairs as half-pair vectors.
pub(crate) fn paired_binary<E: Emit>(
    em: &E,
    op: BinaryOp,
    dtype: DType,
    pairs: &[(usize, usize)],
    a: impl Fn(usize) -> LResult<E::V>,
    b: impl Fn(usize) -> LResult<E::V>,
) -> LResult<Vec<E::V>> {
    let Some(half) = Half::of(dtype) else { return internal("pairs of a non-half type") };
    let ty = vector_type(em, half);
    let pack = |x: E::V, y: E::V| -> LResult<E::V> {
        let v = em.insert_element(em.undef(ty)?, x, 0)?;
        em.insert_element(v, y, 1)
    };
    let mut out: Vec<Option<E::V>> = vec![None; pairs.len() * 2];
    for &(p, q) in pairs {
        let (x, y) = (pack(a(p)?, a(q)?)?, pack(b(p)?, b(q)?)?);
        let r = vector_binary(em, op, x, y)?;
        out[p] = Some(em.extract_element(r, 0)?);
        out[q] = Some(em.extract_element(r, 1)?);
    }
    out.into_iter().map(|v| v.ok_or_else(|| LowerError::Llvm("paired operation left a slot empty".into()))).collect()
}
