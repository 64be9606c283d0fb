//! The rewrite rules, as a table: each rule is a left-hand pattern, the variables that must be
//! constants, a condition on what the analysis knows of the matched classes, and the
//! right-hand side it builds when the condition holds. The module documentation of
//! [`crate::simplify`] lists every rule with the reason it is valid.
//!
//! One table serves the pass (each rule becomes an egg [`Rewrite`] per integer type of the
//! kernel, with a conditional applier) and the tests (which evaluate both sides with
//! `lang::eval` over every input of small types whenever the condition holds).

use egg::{Applier, ENodeOrVar, Id, PatternAst, RecExpr, Rewrite, Subst, Symbol, Var};

use super::lang::{IndexAnalysis, IndexEGraph, IndexNode, IndexOp, IntTy, Range, eval};

/// A left-hand pattern: operations over variables (`?x`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pat {
    /// A variable: any e-class of the rule's type.
    Var(&'static str),
    /// An operation of the rule's type.
    Op(IndexOp, Box<Pat>, Box<Pat>),
}

/// A right-hand side: operations over the pattern's variables and constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rhs {
    /// A variable of the pattern.
    Var(&'static str),
    /// A constant, taken modulo 2^N in the rule's type.
    Const(i128),
    /// An operation.
    Op(IndexOp, Box<Rhs>, Box<Rhs>),
}

fn var(name: &'static str) -> Rhs {
    Rhs::Var(name)
}

fn cst(v: impl Into<i128>) -> Rhs {
    Rhs::Const(v.into())
}

fn op(o: IndexOp, a: Rhs, b: Rhs) -> Rhs {
    Rhs::Op(o, Box::new(a), Box::new(b))
}

/// What a rule's condition sees: the type, and the interval (a point for constants) of each
/// matched variable.
#[derive(Clone, Debug)]
pub struct Ctx<'a> {
    /// The rule's type.
    pub ty: IntTy,
    facts: &'a [(&'static str, Range)],
}

impl<'a> Ctx<'a> {
    /// The context of a match.
    pub fn new(ty: IntTy, facts: &'a [(&'static str, Range)]) -> Ctx<'a> {
        Ctx { ty, facts }
    }

    /// The interval of a variable (the whole type if unknown).
    pub fn range(&self, name: &str) -> Range {
        self.facts.iter().find(|(n, _)| *n == name).map_or(self.ty.full(), |(_, r)| *r)
    }

    /// The value of a variable, if it is a constant.
    pub fn constant(&self, name: &str) -> Option<i64> {
        self.range(name).constant()
    }

    /// Shorthand for [`Ctx::constant`].
    fn c(&self, name: &str) -> Option<i64> {
        self.constant(name)
    }

    /// The code of a constant variable (its bits as an unsigned number): how shift amounts
    /// are read.
    fn code(&self, name: &str) -> Option<u64> {
        self.c(name).map(|v| self.ty.code(v))
    }

    fn n(&self) -> u64 {
        u64::from(self.ty.bits())
    }

    /// `k` when `v = 2^k` with `k ≥ 1` (as a value: positive).
    fn log2(&self, v: i64) -> Option<u32> {
        (v > 1 && (v as u64).is_power_of_two()).then(|| v.trailing_zeros())
    }

    /// Whether `x · m` is exact (never wraps) for every `x` in the interval.
    fn mul_fits(&self, x: Range, m: i64) -> bool {
        let (a, b) = (i128::from(x.lo) * i128::from(m), i128::from(x.hi) * i128::from(m));
        self.fits(a.min(b), a.max(b))
    }

    /// Whether `lo..=hi` lies in the type.
    fn fits(&self, lo: i128, hi: i128) -> bool {
        lo >= i128::from(self.ty.min()) && hi <= i128::from(self.ty.max())
    }

    /// Whether `x · m + y` is exact (never wraps, the product neither) for every `x`, `y` in
    /// their intervals.
    fn mul_add_fits(&self, x: Range, m: i64, y: Range) -> bool {
        let (a, b) = (i128::from(x.lo) * i128::from(m), i128::from(x.hi) * i128::from(m));
        self.mul_fits(x, m) && self.fits(a.min(b) + i128::from(y.lo), a.max(b) + i128::from(y.hi))
    }
}

/// One rewrite rule.
#[derive(Debug)]
pub struct Rule {
    /// Its name (the egg rule is `name.type`).
    pub name: &'static str,
    /// The left-hand pattern, `(op a b)` with `?variables`.
    pub lhs: &'static str,
    /// The variables that must be constants for the rule to apply.
    pub constants: &'static [&'static str],
    /// When it is valid, in words.
    pub condition: &'static str,
    /// The right-hand side, or `None` when the condition does not hold.
    pub apply: fn(&Ctx) -> Option<Rhs>,
}

use IndexOp::*;

/// Every rule, in the order of the module documentation.
pub static RULES: &[Rule] = &[
    // ----- commutativity -----
    Rule {
        name: "comm-add",
        lhs: "(add ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(Add, var("y"), var("x"))),
    },
    Rule {
        name: "comm-mul",
        lhs: "(mul ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(Mul, var("y"), var("x"))),
    },
    Rule {
        name: "comm-min",
        lhs: "(min ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(Min, var("y"), var("x"))),
    },
    Rule {
        name: "comm-max",
        lhs: "(max ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(Max, var("y"), var("x"))),
    },
    Rule {
        name: "comm-and",
        lhs: "(and ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(And, var("y"), var("x"))),
    },
    Rule {
        name: "comm-or",
        lhs: "(or ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(Or, var("y"), var("x"))),
    },
    Rule {
        name: "comm-xor",
        lhs: "(xor ?x ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(op(Xor, var("y"), var("x"))),
    },
    // ----- addition and subtraction -----
    Rule {
        name: "add-zero",
        lhs: "(add ?x ?c)",
        constants: &["c"],
        condition: "c = 0",
        apply: |k| (k.c("c")? == 0).then(|| var("x")),
    },
    Rule {
        name: "sub-zero",
        lhs: "(sub ?x ?c)",
        constants: &["c"],
        condition: "c = 0",
        apply: |k| (k.c("c")? == 0).then(|| var("x")),
    },
    Rule { name: "sub-self", lhs: "(sub ?x ?x)", constants: &[], condition: "always", apply: |_| Some(cst(0)) },
    Rule {
        name: "sub-const",
        lhs: "(sub ?x ?c)",
        constants: &["c"],
        condition: "c ≠ 0 (x − c ≡ x + (−c) mod 2^N)",
        apply: |k| {
            let c = k.c("c")?;
            (c != 0).then(|| op(Add, var("x"), cst(-i128::from(c))))
        },
    },
    Rule {
        name: "add-sub-cancel",
        lhs: "(add (sub ?x ?y) ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(var("x")),
    },
    Rule {
        name: "sub-add-cancel",
        lhs: "(sub (add ?x ?y) ?y)",
        constants: &[],
        condition: "always",
        apply: |_| Some(var("x")),
    },
    Rule {
        name: "add-self",
        lhs: "(add ?x ?x)",
        constants: &[],
        condition: "always (→ 0 for u1)",
        apply: |k| Some(if k.ty.bits() == 1 { cst(0) } else { op(Shl, var("x"), cst(1)) }),
    },
    Rule {
        name: "add-reassoc",
        lhs: "(add (add ?x ?a) ?b)",
        constants: &["a", "b"],
        condition: "always",
        apply: |k| Some(op(Add, var("x"), cst(i128::from(k.c("a")?) + i128::from(k.c("b")?)))),
    },
    // ----- multiplication -----
    Rule {
        name: "mul-zero",
        lhs: "(mul ?x ?c)",
        constants: &["c"],
        condition: "c = 0",
        apply: |k| (k.c("c")? == 0).then(|| cst(0)),
    },
    Rule {
        name: "mul-one",
        lhs: "(mul ?x ?c)",
        constants: &["c"],
        condition: "c = 1",
        apply: |k| (k.c("c")? == 1).then(|| var("x")),
    },
    Rule {
        name: "mul-neg-one",
        lhs: "(mul ?x ?c)",
        constants: &["c"],
        condition: "c ≡ −1 mod 2^N, N ≥ 2",
        apply: |k| (k.c("c")? == k.ty.all_ones() && k.ty.bits() >= 2).then(|| op(Sub, cst(0), var("x"))),
    },
    Rule {
        name: "mul-pow2",
        lhs: "(mul ?x ?c)",
        constants: &["c"],
        condition: "the code of c is 2^k, 1 ≤ k < N",
        apply: |k| {
            let code = k.code("c")?;
            (code > 1 && code.is_power_of_two()).then(|| op(Shl, var("x"), cst(code.trailing_zeros())))
        },
    },
    Rule {
        name: "shl-as-mul",
        lhs: "(shl ?x ?k)",
        constants: &["k"],
        condition: "the code of k is < N",
        apply: |k| {
            let s = k.code("k")?;
            (s < k.n()).then(|| op(Mul, var("x"), cst(1i128 << s)))
        },
    },
    Rule {
        name: "mul-reassoc",
        lhs: "(mul (mul ?x ?a) ?b)",
        constants: &["a", "b"],
        condition: "always",
        apply: |k| Some(op(Mul, var("x"), cst(i128::from(k.c("a")?) * i128::from(k.c("b")?)))),
    },
    Rule {
        name: "mul-add-distribute",
        lhs: "(mul (add ?x ?a) ?c)",
        constants: &["a", "c"],
        condition: "always",
        apply: |k| Some(op(Add, op(Mul, var("x"), var("c")), cst(i128::from(k.c("a")?) * i128::from(k.c("c")?)))),
    },
    Rule {
        name: "add-mul-factor",
        lhs: "(add (mul ?x ?a) (mul ?x ?b))",
        constants: &["a", "b"],
        condition: "always",
        apply: |k| Some(op(Mul, var("x"), cst(i128::from(k.c("a")?) + i128::from(k.c("b")?)))),
    },
    Rule {
        name: "add-mul-one",
        lhs: "(add (mul ?x ?a) ?x)",
        constants: &["a"],
        condition: "always",
        apply: |k| Some(op(Mul, var("x"), cst(i128::from(k.c("a")?) + 1))),
    },
    // ----- division -----
    Rule {
        name: "div-one",
        lhs: "(div ?x ?c)",
        constants: &["c"],
        condition: "c = 1",
        apply: |k| (k.c("c")? == 1).then(|| var("x")),
    },
    Rule {
        name: "div-neg-one",
        lhs: "(div ?x ?c)",
        constants: &["c"],
        condition: "c = −1 (signed; wraps like the division)",
        apply: |k| (k.c("c")? == -1).then(|| op(Sub, cst(0), var("x"))),
    },
    Rule {
        name: "div-pow2",
        lhs: "(div ?x ?c)",
        constants: &["c"],
        condition: "c = 2^k > 1: the shift (arithmetic for signed types) rounds toward −∞ too",
        apply: |k| Some(op(Shr, var("x"), cst(k.log2(k.c("c")?)?))),
    },
    Rule {
        name: "shr-as-div",
        lhs: "(shr ?x ?k)",
        constants: &["k"],
        condition: "1 ≤ k and 2^k is a value of the type",
        apply: |k| {
            let s = k.c("k")?;
            ((1..=62).contains(&s) && (1i64 << s) <= k.ty.max()).then(|| op(Div, var("x"), cst(1i128 << s)))
        },
    },
    Rule {
        name: "div-mul-exact",
        lhs: "(div (mul ?x ?m) ?c)",
        constants: &["m", "c"],
        condition: "c ≠ 0 divides m, m/c is a value of the type, x·m never wraps",
        apply: |k| {
            let (m, c) = (k.c("m")?, k.c("c")?);
            (c != 0 && m % c == 0 && k.ty.contains(m / c) && k.mul_fits(k.range("x"), m))
                .then(|| op(Mul, var("x"), cst(m / c)))
        },
    },
    Rule {
        name: "div-mul-divisor",
        lhs: "(div (mul ?x ?a) ?c)",
        constants: &["a", "c"],
        condition: "a ≠ 0 divides c ≠ 0, c/a is a value of the type, x·a never wraps",
        apply: |k| {
            let (a, c) = (k.c("a")?, k.c("c")?);
            (a != 0 && c != 0 && c % a == 0 && k.ty.contains(c / a) && k.mul_fits(k.range("x"), a))
                .then(|| op(Div, var("x"), cst(c / a)))
        },
    },
    Rule {
        name: "div-div",
        lhs: "(div (div ?x ?a) ?b)",
        constants: &["a", "b"],
        condition: "a > 0, b > 0, a·b is a value of the type",
        apply: |k| {
            let (a, b) = (k.c("a")?, k.c("b")?);
            (a > 0 && b > 0 && k.fits(0, i128::from(a) * i128::from(b)))
                .then(|| op(Div, var("x"), cst(i128::from(a) * i128::from(b))))
        },
    },
    Rule {
        name: "div-add-mul",
        lhs: "(div (add (mul ?x ?c) ?y) ?c)",
        constants: &["c"],
        condition: "c > 0, x·c and x·c + y never wrap",
        apply: |k| {
            let c = k.c("c")?;
            (c > 0 && k.mul_add_fits(k.range("x"), c, k.range("y")))
                .then(|| op(Add, var("x"), op(Div, var("y"), var("c"))))
        },
    },
    // ----- remainder -----
    Rule {
        name: "rem-one",
        lhs: "(rem ?x ?c)",
        constants: &["c"],
        condition: "c = ±1",
        apply: |k| (k.c("c")?.abs() == 1).then(|| cst(0)),
    },
    Rule {
        name: "rem-pow2",
        lhs: "(rem ?x ?c)",
        constants: &["c"],
        condition: "c = 2^k > 1: the remainder of a positive divisor is the low k bits, for any sign",
        apply: |k| {
            let c = k.c("c")?;
            k.log2(c)?;
            Some(op(And, var("x"), cst(c - 1)))
        },
    },
    Rule {
        name: "and-as-rem",
        lhs: "(and ?x ?m)",
        constants: &["m"],
        condition: "m = 2^k − 1 with k ≥ 1 and 2^k a value of the type",
        apply: |k| {
            let m = k.c("m")?;
            (m >= 1 && m < k.ty.max() && ((m as u64) + 1).is_power_of_two())
                .then(|| op(Rem, var("x"), cst(i128::from(m) + 1)))
        },
    },
    Rule {
        name: "rem-small",
        lhs: "(rem ?x ?y)",
        constants: &[],
        condition: "0 ≤ x < y (all values), or y < x ≤ 0",
        apply: |k| {
            let (x, y) = (k.range("x"), k.range("y"));
            ((x.lo >= 0 && x.hi < y.lo) || (x.hi <= 0 && y.hi < x.lo)).then(|| var("x"))
        },
    },
    Rule {
        name: "rem-mul",
        lhs: "(rem (mul ?x ?m) ?c)",
        constants: &["m", "c"],
        condition: "c ≠ 0 divides m, x·m never wraps",
        apply: |k| {
            let (m, c) = (k.c("m")?, k.c("c")?);
            (c != 0 && m % c == 0 && k.mul_fits(k.range("x"), m)).then(|| cst(0))
        },
    },
    Rule {
        name: "rem-add-mul",
        lhs: "(rem (add (mul ?x ?c) ?y) ?c)",
        constants: &["c"],
        condition: "c ≠ 0, x·c and x·c + y never wrap",
        apply: |k| {
            let c = k.c("c")?;
            (c != 0 && k.mul_add_fits(k.range("x"), c, k.range("y"))).then(|| op(Rem, var("y"), var("c")))
        },
    },
    // ----- ceiling division -----
    Rule {
        name: "cdiv-one",
        lhs: "(cdiv ?x ?c)",
        constants: &["c"],
        condition: "c = 1",
        apply: |k| (k.c("c")? == 1).then(|| var("x")),
    },
    Rule {
        name: "cdiv-neg-one",
        lhs: "(cdiv ?x ?c)",
        constants: &["c"],
        condition: "c = −1 (signed; wraps like the division)",
        apply: |k| (k.c("c")? == -1).then(|| op(Sub, cst(0), var("x"))),
    },
    Rule {
        name: "cdiv-pow2",
        lhs: "(cdiv ?x ?c)",
        constants: &["c"],
        condition: "c = 2^k > 1 and x + c − 1 never wraps",
        apply: |k| {
            let c = k.c("c")?;
            let s = k.log2(c)?;
            k.fits(0, i128::from(k.range("x").hi) + i128::from(c) - 1)
                .then(|| op(Shr, op(Add, var("x"), cst(c - 1)), cst(s)))
        },
    },
    Rule {
        name: "cdiv-mul-exact",
        lhs: "(cdiv (mul ?x ?m) ?c)",
        constants: &["m", "c"],
        condition: "c ≠ 0 divides m, m/c is a value of the type, x·m never wraps",
        apply: |k| {
            let (m, c) = (k.c("m")?, k.c("c")?);
            (c != 0 && m % c == 0 && k.ty.contains(m / c) && k.mul_fits(k.range("x"), m))
                .then(|| op(Mul, var("x"), cst(m / c)))
        },
    },
    // ----- bitwise -----
    Rule {
        name: "and-zero",
        lhs: "(and ?x ?c)",
        constants: &["c"],
        condition: "c = 0",
        apply: |k| (k.c("c")? == 0).then(|| cst(0)),
    },
    Rule {
        name: "and-ones",
        lhs: "(and ?x ?c)",
        constants: &["c"],
        condition: "every bit of c is set",
        apply: |k| (k.c("c")? == k.ty.all_ones()).then(|| var("x")),
    },
    Rule { name: "and-self", lhs: "(and ?x ?x)", constants: &[], condition: "always", apply: |_| Some(var("x")) },
    Rule {
        name: "and-mask-small",
        lhs: "(and ?x ?m)",
        constants: &["m"],
        condition: "m = 2^k − 1 ≥ 0 and 0 ≤ x ≤ m",
        apply: |k| {
            let m = k.c("m")?;
            let x = k.range("x");
            (m >= 0 && ((m as u64) + 1).is_power_of_two() && x.lo >= 0 && x.hi <= m).then(|| var("x"))
        },
    },
    Rule {
        name: "or-zero",
        lhs: "(or ?x ?c)",
        constants: &["c"],
        condition: "c = 0",
        apply: |k| (k.c("c")? == 0).then(|| var("x")),
    },
    Rule {
        name: "or-ones",
        lhs: "(or ?x ?c)",
        constants: &["c"],
        condition: "every bit of c is set",
        apply: |k| (k.c("c")? == k.ty.all_ones()).then(|| var("c")),
    },
    Rule { name: "or-self", lhs: "(or ?x ?x)", constants: &[], condition: "always", apply: |_| Some(var("x")) },
    Rule {
        name: "xor-zero",
        lhs: "(xor ?x ?c)",
        constants: &["c"],
        condition: "c = 0",
        apply: |k| (k.c("c")? == 0).then(|| var("x")),
    },
    Rule { name: "xor-self", lhs: "(xor ?x ?x)", constants: &[], condition: "always", apply: |_| Some(cst(0)) },
    // ----- min and max -----
    Rule { name: "min-self", lhs: "(min ?x ?x)", constants: &[], condition: "always", apply: |_| Some(var("x")) },
    Rule { name: "max-self", lhs: "(max ?x ?x)", constants: &[], condition: "always", apply: |_| Some(var("x")) },
    Rule {
        name: "min-range",
        lhs: "(min ?x ?y)",
        constants: &[],
        condition: "x ≤ y for all values",
        apply: |k| (k.range("x").hi <= k.range("y").lo).then(|| var("x")),
    },
    Rule {
        name: "max-range",
        lhs: "(max ?x ?y)",
        constants: &[],
        condition: "x ≥ y for all values",
        apply: |k| (k.range("x").lo >= k.range("y").hi).then(|| var("x")),
    },
    // ----- shifts -----
    Rule {
        name: "shl-zero",
        lhs: "(shl ?x ?k)",
        constants: &["k"],
        condition: "k = 0",
        apply: |k| (k.c("k")? == 0).then(|| var("x")),
    },
    Rule {
        name: "shr-zero",
        lhs: "(shr ?x ?k)",
        constants: &["k"],
        condition: "k = 0",
        apply: |k| (k.c("k")? == 0).then(|| var("x")),
    },
    Rule {
        name: "shl-large",
        lhs: "(shl ?x ?k)",
        constants: &["k"],
        condition: "the code of k is ≥ N",
        apply: |k| (k.code("k")? >= k.n()).then(|| cst(0)),
    },
    Rule {
        name: "shr-large",
        lhs: "(shr ?x ?k)",
        constants: &["k"],
        condition: "the code of k is ≥ N, and x ≥ 0 (→ 0) or x < 0 (→ −1) for all values",
        apply: |k| {
            let x = k.range("x");
            if k.code("k")? < k.n() {
                None
            } else if x.lo >= 0 {
                Some(cst(0))
            } else if x.hi < 0 {
                Some(cst(-1))
            } else {
                None
            }
        },
    },
    Rule {
        name: "shl-shl",
        lhs: "(shl (shl ?x ?a) ?b)",
        constants: &["a", "b"],
        condition: "the codes a, b are < N (→ 0 when a + b ≥ N)",
        apply: |k| {
            let (a, b) = (k.code("a")?, k.code("b")?);
            if a >= k.n() || b >= k.n() {
                None
            } else if a + b >= k.n() {
                Some(cst(0))
            } else {
                Some(op(Shl, var("x"), cst(a + b)))
            }
        },
    },
    Rule {
        name: "shr-shr",
        lhs: "(shr (shr ?x ?a) ?b)",
        constants: &["a", "b"],
        condition: "the codes a, b are < N (unsigned: → 0 when a + b ≥ N; signed: the sum capped at N − 1)",
        apply: |k| {
            let (a, b) = (k.code("a")?, k.code("b")?);
            if a >= k.n() || b >= k.n() {
                None
            } else if k.ty.signed() {
                Some(op(Shr, var("x"), cst((a + b).min(k.n() - 1))))
            } else if a + b >= k.n() {
                Some(cst(0))
            } else {
                Some(op(Shr, var("x"), cst(a + b)))
            }
        },
    },
    Rule {
        name: "shr-shl-cancel",
        lhs: "(shr (shl ?x ?k) ?k)",
        constants: &["k"],
        condition: "the code of k is < N and x·2^k never wraps",
        apply: |k| {
            let s = k.code("k")?;
            (s < k.n() && s < 62 && k.mul_fits(k.range("x"), 1i64 << s)).then(|| var("x"))
        },
    },
];

/// Parses a pattern `(op a b)` with `?variables`.
pub fn parse_pattern(text: &'static str) -> Result<Pat, String> {
    fn expr(s: &'static str, pos: &mut usize) -> Result<Pat, String> {
        let bytes = s.as_bytes();
        let skip = |pos: &mut usize| {
            while *pos < bytes.len() && bytes[*pos] == b' ' {
                *pos += 1;
            }
        };
        skip(pos);
        if bytes.get(*pos) == Some(&b'(') {
            *pos += 1;
            let start = *pos;
            while *pos < bytes.len() && bytes[*pos].is_ascii_alphabetic() {
                *pos += 1;
            }
            let name = &s[start..*pos];
            let op = IndexOp::from_name(name).ok_or_else(|| format!("unknown operation `{name}` in `{s}`"))?;
            let a = expr(s, pos)?;
            let b = expr(s, pos)?;
            skip(pos);
            if bytes.get(*pos) != Some(&b')') {
                return Err(format!("expected `)` at {} in `{s}`", *pos));
            }
            *pos += 1;
            Ok(Pat::Op(op, Box::new(a), Box::new(b)))
        } else if bytes.get(*pos) == Some(&b'?') {
            *pos += 1;
            let start = *pos;
            while *pos < bytes.len() && bytes[*pos].is_ascii_alphanumeric() {
                *pos += 1;
            }
            if start == *pos {
                return Err(format!("empty variable name in `{s}`"));
            }
            Ok(Pat::Var(&s[start..*pos]))
        } else {
            Err(format!("unexpected text at {} in `{s}`", *pos))
        }
    }
    let mut pos = 0;
    let pat = expr(text, &mut pos)?;
    if text[pos..].trim().is_empty() { Ok(pat) } else { Err(format!("trailing text in `{text}`")) }
}

impl Pat {
    /// The variables, each once, in order of first appearance.
    pub fn vars(&self) -> Vec<&'static str> {
        fn walk(p: &Pat, out: &mut Vec<&'static str>) {
            match p {
                Pat::Var(v) => {
                    if !out.contains(v) {
                        out.push(v);
                    }
                }
                Pat::Op(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The value for variable values `env` (`None`: a division by zero, or a variable
    /// `env` does not know).
    pub fn eval(&self, ty: IntTy, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        match self {
            Pat::Var(v) => env(v),
            Pat::Op(o, a, b) => eval(ty, *o, a.eval(ty, env)?, b.eval(ty, env)?),
        }
    }

    fn to_ast(&self, ty: IntTy, ast: &mut PatternAst<IndexNode>) -> Result<Id, String> {
        Ok(match self {
            Pat::Var(v) => ast.add(ENodeOrVar::Var(format!("?{v}").parse::<Var>().map_err(|e| e.to_string())?)),
            Pat::Op(o, a, b) => {
                let (a, b) = (a.to_ast(ty, ast)?, b.to_ast(ty, ast)?);
                ast.add(ENodeOrVar::ENode(IndexNode::Bin(*o, ty, [a, b])))
            }
        })
    }
}

impl Rhs {
    /// The value for variable values `env`.
    pub fn eval(&self, ty: IntTy, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        match self {
            Rhs::Var(v) => env(v),
            Rhs::Const(c) => Some(ty.wrap(*c)),
            Rhs::Op(o, a, b) => eval(ty, *o, a.eval(ty, env)?, b.eval(ty, env)?),
        }
    }

    fn add_to(&self, ty: IntTy, egraph: &mut IndexEGraph, bound: &[(&'static str, Id)]) -> Option<Id> {
        Some(match self {
            Rhs::Var(v) => bound.iter().find(|(n, _)| n == v)?.1,
            Rhs::Const(c) => egraph.add(IndexNode::Const(ty, ty.wrap(*c))),
            Rhs::Op(o, a, b) => {
                let (a, b) = (a.add_to(ty, egraph, bound)?, b.add_to(ty, egraph, bound)?);
                egraph.add(IndexNode::Bin(*o, ty, [a, b]))
            }
        })
    }
}

/// A rule instantiated for one type: checks the condition on the match, then adds the
/// right-hand side and merges it with the matched class.
#[derive(Debug)]
struct RuleApplier {
    rule: &'static Rule,
    ty: IntTy,
    vars: Vec<(&'static str, Var)>,
}

impl Applier<IndexNode, IndexAnalysis> for RuleApplier {
    fn apply_one(
        &self,
        egraph: &mut IndexEGraph,
        eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<IndexNode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let mut bound = Vec::with_capacity(self.vars.len());
        let mut facts = Vec::with_capacity(self.vars.len());
        for &(name, v) in &self.vars {
            let Some(&id) = subst.get(v) else { return vec![] };
            bound.push((name, id));
            facts.push((name, egraph[id].data.range));
        }
        let ctx = Ctx::new(self.ty, &facts);
        if self.rule.constants.iter().any(|c| ctx.constant(c).is_none()) {
            return vec![];
        }
        let Some(rhs) = (self.rule.apply)(&ctx) else { return vec![] };
        let Some(id) = rhs.add_to(self.ty, egraph, &bound) else { return vec![] };
        if egraph.union(eclass, id) { vec![eclass] } else { vec![] }
    }
}

/// The egg rewrites of every rule for each of `types`.
pub fn rewrites(types: &[IntTy]) -> Result<Vec<Rewrite<IndexNode, IndexAnalysis>>, String> {
    let mut out = Vec::with_capacity(types.len() * RULES.len());
    for &ty in types {
        for rule in RULES {
            let pat = parse_pattern(rule.lhs)?;
            let mut ast: PatternAst<IndexNode> = RecExpr::default();
            pat.to_ast(ty, &mut ast)?;
            let vars = pat
                .vars()
                .into_iter()
                .map(|v| Ok((v, format!("?{v}").parse::<Var>().map_err(|e| e.to_string())?)))
                .collect::<Result<Vec<_>, String>>()?;
            let applier = RuleApplier { rule, ty, vars };
            out.push(Rewrite::new(format!("{}.{ty}", rule.name), egg::Pattern::new(ast), applier)?);
        }
    }
    Ok(out)
}
