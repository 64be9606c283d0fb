//! Lookup-table weight types: `2^N` codes that decode through a table of values.
//!
//! A lookup-table (LUT) weight type stores its codes exactly like the unsigned integer type
//! `uN` — a packed little-endian bit stream, N bits per weight — but code `c` means
//! `table[c]`, an arbitrary real value, instead of the integer `c`: *same storage, different
//! decode*. The weight is then scaled like any other (`w = table[q]·s`, see
//! [`crate::lowbit`]).
//!
//! In the tile IR the decode is one instruction, `lookup` (`%w = lookup %q [v0, v1, …] : f16`:
//! see `docs/language.md`), applied to the `uN` view of the loaded bytes where other weight
//! types are `cast`. The table is not a data type of its own: a [`anybit_ir::DType`] is a
//! closed arithmetic type every instruction, codec and backend handles, while a table type only
//! ever appears as storage that is decoded once; keeping the storage `uN` and the decode an
//! instruction leaves the rest of the IR unchanged, and the interpreter, printer, parser,
//! verifier and backends each handle one more instruction.
//!
//! [`Lut`] holds a table of up to 16 `f32` values (codes of 1 to 4 bits; the IR's `lookup`
//! itself takes up to 8-bit codes). Two tables are built in:
//!
//! - [`Lut::IQ4_NL`] — ggml's IQ4_NL levels (`kvalues_iq4nl`), 16 signed integers from −127
//!   to 113: GGUF's IQ4_NL stores an f16 scale `d` per 32 weights and `w = d·table[q]`.
//! - [`Lut::NF4`] — the 4-bit NormalFloat levels of bitsandbytes (QLoRA): 16 `f32` values
//!   from −1 to 1 (with an exact 0), scaled by a per-block absmax.
//!
//! Any other table of 2, 4, 8 or 16 finite values can be made with [`Lut::new`].

use std::fmt;

use anybit_ir::DType;
use anybit_ir::program::Literal;

/// The widest code a [`Lut`] decodes: tables of at most 2^4 entries.
pub const MAX_LUT_BITS: u32 = 4;

/// Why a table cannot be a [`Lut`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LutError {
    /// The number of entries is not 2, 4, 8 or 16.
    #[error("a lookup table has 2, 4, 8 or 16 entries (one per code of u1 … u4), not {0}")]
    Size(usize),
    /// An entry is infinite or NaN.
    #[error("lookup table entry {index} is {value}: entries must be finite")]
    NotFinite {
        /// The code whose entry it is.
        index: usize,
        /// The entry.
        value: f32,
    },
}

/// A decode table: code `c` of the storage type `u{bits}` means `values[c]` (an `f32`).
///
/// Compared and hashed by the bits of its entries (so `-0.0` and `0.0` differ), which keeps it
/// usable as part of a kernel-cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lut {
    bits: u8,
    /// The entries' `f32` bit patterns; those past `2^bits` are 0.
    values: [u32; 16],
}

const fn table16(values: [f32; 16]) -> Lut {
    let mut bits = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        bits[i] = values[i].to_bits();
        i += 1;
    }
    Lut { bits: 4, values: bits }
}

impl Lut {
    /// GGUF's IQ4_NL levels (ggml's `kvalues_iq4nl`): code `c` means the integer
    /// `[-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113][c]`.
    pub const IQ4_NL: Lut = table16([
        -127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0,
    ]);

    /// The 4-bit NormalFloat levels of bitsandbytes (`nf4`), as the `f32` values it uses.
    // Written as published: each decimal is exactly the f32 value (a test checks it).
    #[allow(clippy::excessive_precision)]
    pub const NF4: Lut = table16([
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]);

    /// A table of 2, 4, 8 or 16 finite values (codes of u1, u2, u3 or u4).
    pub fn new(values: &[f32]) -> Result<Lut, LutError> {
        let bits = match values.len() {
            2 => 1,
            4 => 2,
            8 => 3,
            16 => 4,
            n => return Err(LutError::Size(n)),
        };
        let mut table = [0u32; 16];
        for (index, (slot, &value)) in table.iter_mut().zip(values).enumerate() {
            if !value.is_finite() {
                return Err(LutError::NotFinite { index, value });
            }
            *slot = value.to_bits();
        }
        Ok(Lut { bits, values: table })
    }

    /// The tables with names: `iq4nl` and `nf4`.
    pub const NAMED: [(&'static str, Lut); 2] = [("iq4nl", Lut::IQ4_NL), ("nf4", Lut::NF4)];

    /// The table called `name` (`iq4nl`, `nf4`).
    pub fn from_name(name: &str) -> Option<Lut> {
        Lut::NAMED.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
    }

    /// The code width N: the table has 2^N entries.
    pub fn bits(&self) -> u32 {
        u32::from(self.bits)
    }

    /// The number of entries, 2^N.
    pub fn len(&self) -> usize {
        1 << self.bits
    }

    /// Never: a table has at least 2 entries (for symmetry with [`Lut::len`]).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The storage type of the codes, `uN`.
    pub fn storage(&self) -> DType {
        DType::uint(self.bits()).unwrap_or(DType::F32)
    }

    /// The entries, in code order.
    pub fn values(&self) -> Vec<f32> {
        self.values[..self.len()].iter().map(|&b| f32::from_bits(b)).collect()
    }

    /// The value of `code` (`None` past the table).
    pub fn value(&self, code: u32) -> Option<f32> {
        (code < 1 << self.bits).then(|| f32::from_bits(self.values[code as usize]))
    }

    /// The largest magnitude of an entry.
    pub fn max_abs(&self) -> f64 {
        self.values().into_iter().map(|v| f64::from(v).abs()).fold(0.0, f64::max)
    }

    /// Whether every entry is exactly a value of `dtype` (then a `lookup` to `dtype` rounds
    /// nothing).
    pub fn exact_in(&self, dtype: DType) -> bool {
        self.values().into_iter().all(|v| {
            let v = f64::from(v);
            dtype
                .decode_f64(dtype.encode(v))
                .is_ok_and(|back| back == v && back.is_sign_negative() == v.is_sign_negative())
        })
    }

    /// The entries as IR literals (each an `f32` value written exactly).
    pub fn literals(&self) -> Vec<Literal> {
        self.values().into_iter().map(|v| Literal::Float(f64::from(v))).collect()
    }

    /// Its name in kernel names and listings: `iq4nl`, `nf4`, or for another table
    /// `lut{N}x` and 8 hex digits of a hash of its entries.
    pub fn name(&self) -> String {
        if let Some((name, _)) = Lut::NAMED.iter().find(|(_, l)| l == self) {
            return (*name).to_string();
        }
        // FNV-1a over the entries' bits: stable across runs and builds.
        let mut hash: u32 = 0x811c_9dc5;
        for &b in &self.values[..self.len()] {
            for byte in b.to_le_bytes() {
                hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
            }
        }
        format!("lut{}x{hash:08x}", self.bits)
    }
}

impl fmt::Debug for Lut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lut({} {:?})", self.name(), self.values())
    }
}

impl fmt::Display for Lut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}
