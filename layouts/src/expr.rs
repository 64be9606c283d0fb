//! The text syntax of layouts: a lexer, parsers and printers for register, shared and
//! global layouts. Printing then parsing gives back an equal layout, and a printed string
//! parses and prints back to itself. Whitespace may appear between any two tokens.
//!
//! Register layouts:
//!
//! ```text
//! expr    := factor ('.' factor)*                      composition, left to right = outer to inner
//! factor  := ('local' | 'column_local' | 'spatial' | 'column_spatial') '(' sizes? ')'
//!          | 'replicated' '(' n ')'
//!          | 'layout' '(' 'dims' '=' '[' ('[' sizes? ']') % ',' ']' ','
//!                         'threads' '=' '[' (n | 'r'n) % ',' ']' ','
//!                         'slots' '=' '[' n % ',' ']' ')'
//! ```
//!
//! (`x % ','` is a possibly empty comma-separated list of `x`; `n` is a decimal number.)
//! In the general `layout(...)` form, modes are numbered in flattened order (dim 0's
//! outer to inner, then dim 1's, ...); `threads` lists thread axes most significant first
//! (`r4` is a replicated axis of size 4) and `slots` the slot modes most significant
//! first.
//!
//! The printer canonicalizes, then factors the layout greedily into primitives: with a
//! pointer to the next unconsumed (outermost) mode of each dim and to the heads of the
//! thread and slot lists, it repeatedly (1) if the head of the slot list is the next mode
//! of its dim, takes the longest run of slot entries that are each the next mode of
//! their dim with dims strictly increasing (`local`) or strictly decreasing
//! (`column_local`); (2) else, if the head of the thread list is a replicated axis, emits
//! `replicated(n)`; (3) else, if it is the next mode of its dim, takes the same kind of
//! run of thread entries (`spatial` / `column_spatial`). Local levels are thus preferred
//! to spatial ones when both could start. If neither head can start a level, the whole
//! layout is printed in the general form. A layout of rank > 0 whose factors are all
//! rank 0 gets a leading `local(1,...,1)` so that its rank survives the round trip.

use std::fmt;
use std::str::FromStr;

use crate::error::LayoutError;
use crate::global::GlobalLayout;
use crate::register::{RegisterLayout, ThreadAxis};
use crate::shared::{SharedLayout, StridedMode, Swizzle};

/// The names of the register layout primitives, as listed in error messages.
pub const REGISTER_PRIMITIVES: &[&str] =
    &["local", "column_local", "spatial", "column_spatial", "replicated", "layout"];

/// The names that may start a shared layout expression.
pub const SHARED_CONSTRUCTORS: &[&str] = &["row_major", "column_major", "strided", "modes"];

/// The names that may start a global layout expression.
pub const GLOBAL_CONSTRUCTORS: &[&str] = &["row_major", "column_major", "strided"];

/// What went wrong while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A token other than the ones allowed here.
    Unexpected {
        /// What the parser could accept, e.g. "',' or ')'".
        expected: String,
        /// What it found, e.g. "']'" or "end of input".
        found: String,
    },
    /// A name that is not a known constructor.
    UnknownName {
        /// The name found.
        name: String,
        /// The names allowed here.
        known: &'static [&'static str],
    },
    /// A number that does not fit in its type.
    NumberOverflow {
        /// The number's text.
        text: String,
    },
    /// The expression is well formed but building the layout failed (rank mismatch,
    /// size 0, invalid parts...); the offset is that of the offending factor.
    Layout(LayoutError),
}

/// A parse failure, with the byte offset in the input where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    offset: usize,
    kind: ParseErrorKind,
}

impl ParseError {
    fn new(offset: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { offset, kind }
    }

    /// Byte offset in the input (0-based).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Column in the input (1-based; expressions are one line).
    pub fn column(&self) -> usize {
        self.offset + 1
    }

    /// What went wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// The message followed by the input and a caret under the offending position, for
    /// command-line output:
    ///
    /// ```text
    /// error: expected ',' or ')' but found ']' at column 14
    ///   spatial(8,4,]
    ///               ^
    /// ```
    pub fn render(&self, input: &str) -> String {
        let caret_pad: String = input
            .get(..self.offset.min(input.len()))
            .unwrap_or("")
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("error: {self}\n  {input}\n  {caret_pad}^")
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ParseErrorKind::Unexpected { expected, found } => {
                write!(f, "expected {expected} but found {found}")?;
            }
            ParseErrorKind::UnknownName { name, known } => {
                write!(f, "unknown name '{name}' (known: {})", known.join(", "))?;
            }
            ParseErrorKind::NumberOverflow { text } => {
                write!(f, "number {text} is too large")?;
            }
            ParseErrorKind::Layout(e) => write!(f, "{e}")?,
        }
        write!(f, " at column {}", self.column())
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ParseErrorKind::Layout(e) => Some(e),
            _ => None,
        }
    }
}

type PResult<T> = std::result::Result<T, ParseError>;

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    Number(&'a str),
    Punct(char),
    End,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Number(s) => format!("number {s}"),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::End => "end of input".to_string(),
        }
    }
}

const PUNCTUATION: &[char] = &['(', ')', '[', ']', ',', '.', '=', ':', '-'];

fn lex(input: &str) -> PResult<Vec<(usize, Tok<'_>)>> {
    let mut tokens = Vec::new();
    let bytes = input.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        let c = bytes[pos];
        if c.is_ascii_whitespace() {
            pos += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = pos;
            while pos < bytes.len() && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_') {
                pos += 1;
            }
            tokens.push((start, Tok::Ident(&input[start..pos])));
        } else if c.is_ascii_digit() {
            let start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            tokens.push((start, Tok::Number(&input[start..pos])));
        } else if PUNCTUATION.contains(&char::from(c)) {
            tokens.push((pos, Tok::Punct(char::from(c))));
            pos += 1;
        } else {
            let found = input[pos..].chars().next().unwrap_or('?');
            return Err(ParseError::new(
                pos,
                ParseErrorKind::Unexpected {
                    expected: "a name, a number or one of ( ) [ ] , . = : -".to_string(),
                    found: format!("'{found}'"),
                },
            ));
        }
    }
    tokens.push((input.len(), Tok::End));
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------
// Parser helpers
// ---------------------------------------------------------------------------------------

struct Parser<'a> {
    tokens: Vec<(usize, Tok<'a>)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> PResult<Parser<'a>> {
        Ok(Parser { tokens: lex(input)?, pos: 0 })
    }

    fn peek(&self) -> Tok<'a> {
        self.tokens[self.pos].1
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].0
    }

    fn bump(&mut self) -> (usize, Tok<'a>) {
        let token = self.tokens[self.pos];
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError::new(
            self.offset(),
            ParseErrorKind::Unexpected { expected: expected.to_string(), found: self.peek().describe() },
        )
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Tok::Punct(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> PResult<()> {
        if self.eat(c) { Ok(()) } else { Err(self.error(&format!("'{c}'"))) }
    }

    fn expect_keyword(&mut self, word: &str) -> PResult<()> {
        if self.peek() == Tok::Ident(word) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(&format!("'{word}'")))
        }
    }

    fn ident(&mut self, expected: &str) -> PResult<(usize, &'a str)> {
        match self.peek() {
            Tok::Ident(s) => Ok((self.bump().0, s)),
            _ => Err(self.error(expected)),
        }
    }

    fn number<T: FromStr>(&mut self) -> PResult<T> {
        match self.peek() {
            Tok::Number(text) => {
                let (offset, _) = self.bump();
                text.parse()
                    .map_err(|_| ParseError::new(offset, ParseErrorKind::NumberOverflow { text: text.to_string() }))
            }
            _ => Err(self.error("a number")),
        }
    }

    fn signed(&mut self) -> PResult<i64> {
        let start = self.offset();
        let negative = self.eat('-');
        match self.peek() {
            Tok::Number(text) => {
                self.bump();
                let full = if negative { format!("-{text}") } else { text.to_string() };
                full.parse().map_err(|_| ParseError::new(start, ParseErrorKind::NumberOverflow { text: full }))
            }
            _ => Err(self.error("a number")),
        }
    }

    /// `item (',' item)*` up to `close`, which is consumed. Empty lists allowed.
    fn list<T>(&mut self, close: char, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(',') {
                return Err(self.error(&format!("',' or '{close}'")));
            }
        }
    }

    fn numbers<T: FromStr>(&mut self, open: char, close: char) -> PResult<Vec<T>> {
        self.expect(open)?;
        self.list(close, |p| p.number())
    }

    fn end(&mut self, expected: &str) -> PResult<()> {
        if self.peek() == Tok::End { Ok(()) } else { Err(self.error(expected)) }
    }
}

fn layout_error(offset: usize) -> impl Fn(LayoutError) -> ParseError {
    move |e| ParseError::new(offset, ParseErrorKind::Layout(e))
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------------------
// Register layouts
// ---------------------------------------------------------------------------------------

fn register_factor(p: &mut Parser<'_>) -> PResult<(usize, RegisterLayout)> {
    let (offset, name) = p.ident("a layout primitive")?;
    let at = layout_error(offset);
    let layout = match name {
        "local" | "column_local" | "spatial" | "column_spatial" => {
            let shape: Vec<usize> = p.numbers('(', ')')?;
            match name {
                "local" => RegisterLayout::local(&shape),
                "column_local" => RegisterLayout::column_local(&shape),
                "spatial" => RegisterLayout::spatial(&shape),
                _ => RegisterLayout::column_spatial(&shape),
            }
            .map_err(at)?
        }
        "replicated" => {
            p.expect('(')?;
            let n: usize = p.number()?;
            p.expect(')')?;
            RegisterLayout::replicated(n).map_err(at)?
        }
        "layout" => {
            p.expect('(')?;
            p.expect_keyword("dims")?;
            p.expect('=')?;
            p.expect('[')?;
            let dims = p.list(']', |p| p.numbers::<usize>('[', ']'))?;
            p.expect(',')?;
            p.expect_keyword("threads")?;
            p.expect('=')?;
            p.expect('[')?;
            let threads = p.list(']', thread_axis)?;
            p.expect(',')?;
            p.expect_keyword("slots")?;
            p.expect('=')?;
            let slots = p.numbers::<usize>('[', ']')?;
            p.expect(')')?;
            RegisterLayout::from_parts(dims, threads, slots).map_err(at)?.canonicalize()
        }
        _ => {
            return Err(ParseError::new(
                offset,
                ParseErrorKind::UnknownName { name: name.to_string(), known: REGISTER_PRIMITIVES },
            ));
        }
    };
    Ok((offset, layout))
}

fn thread_axis(p: &mut Parser<'_>) -> PResult<ThreadAxis> {
    const EXPECTED: &str = "a mode number or a replicated axis such as r4";
    match p.peek() {
        Tok::Number(_) => Ok(ThreadAxis::Mode(p.number()?)),
        Tok::Ident(word) => {
            let digits = word.strip_prefix('r').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(p.error(EXPECTED));
            }
            let (offset, _) = p.bump();
            digits
                .parse()
                .map(ThreadAxis::Replicated)
                .map_err(|_| ParseError::new(offset, ParseErrorKind::NumberOverflow { text: digits.to_string() }))
        }
        _ => Err(p.error(EXPECTED)),
    }
}

/// Parses a register layout expression: primitives and general forms composed with `.`.
fn parse_register(input: &str) -> PResult<RegisterLayout> {
    let mut p = Parser::new(input)?;
    let (_, mut layout) = register_factor(&mut p)?;
    while p.eat('.') {
        let (offset, factor) = register_factor(&mut p)?;
        layout = layout.compose(&factor).map_err(layout_error(offset))?;
    }
    p.end("'.' or end of input")?;
    Ok(layout.canonicalize())
}

impl FromStr for RegisterLayout {
    type Err = ParseError;

    /// Parses the expression syntax, e.g. `local(2,1).spatial(8,4).local(1,2)` or
    /// `layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])`. The result is canonical.
    fn from_str(s: &str) -> PResult<RegisterLayout> {
        parse_register(s)
    }
}

impl RegisterLayout {
    /// Parses the expression syntax (same as `str::parse`); errors carry a position.
    pub fn parse(input: &str) -> std::result::Result<RegisterLayout, ParseError> {
        parse_register(input)
    }

    /// The general form of the canonical layout,
    /// `layout(dims=[[2,8],[4,2]], threads=[1,2], slots=[0,3])`, whatever the printer
    /// would choose.
    pub fn to_general_string(&self) -> String {
        general_form(&self.canonicalize())
    }
}

fn general_form(layout: &RegisterLayout) -> String {
    let dims: Vec<String> = layout.dims().iter().map(|d| format!("[{}]", join(d))).collect();
    let threads: Vec<String> = layout
        .threads()
        .iter()
        .map(|a| match a {
            ThreadAxis::Mode(m) => m.to_string(),
            ThreadAxis::Replicated(n) => format!("r{n}"),
        })
        .collect();
    format!("layout(dims=[{}], threads=[{}], slots=[{}])", dims.join(","), threads.join(","), join(layout.slots()))
}

/// Writes a canonical layout as a product of primitives, or `None` when the greedy
/// factorization gets stuck. Local levels are tried before spatial ones.
fn as_primitives(layout: &RegisterLayout) -> Option<Vec<String>> {
    let rank = layout.rank();
    let mut mode_dim = Vec::new();
    for (d, dim) in layout.dims().iter().enumerate() {
        mode_dim.extend(std::iter::repeat_n(d, dim.len()));
    }
    let sizes: Vec<usize> = layout.dims().iter().flatten().copied().collect();
    let mut first_mode = Vec::with_capacity(rank);
    let mut acc = 0;
    for dim in layout.dims() {
        first_mode.push(acc);
        acc += dim.len();
    }
    // Next unconsumed mode number of each dim.
    let mut next = first_mode.clone();
    let is_next = |next: &[usize], m: usize| next[mode_dim[m]] == m;
    let threads = layout.threads();
    let slots = layout.slots();
    let (mut ti, mut si) = (0, 0);
    let mut factors = Vec::new();
    let mut carries_rank = false;
    // Takes the longest run of `list[start..]` of next modes with monotonic dims; returns
    // its modes.
    let run = |next: &[usize], list: &[Option<usize>]| -> Vec<usize> {
        let mut taken: Vec<usize> = Vec::new();
        let mut increasing = None;
        for entry in list {
            let Some(m) = *entry else { break };
            if !is_next(next, m) {
                break;
            }
            if let Some(&prev) = taken.last() {
                let (a, b) = (mode_dim[prev], mode_dim[m]);
                let up = b > a;
                if a == b || increasing.is_some_and(|inc| inc != up) {
                    break;
                }
                increasing = Some(up);
            }
            taken.push(m);
        }
        taken
    };
    let level = |name: &str, modes: &[usize], increasing: bool| -> String {
        let mut shape = vec![1usize; rank];
        for &m in modes {
            shape[mode_dim[m]] = sizes[m];
        }
        let prefix = if increasing { "" } else { "column_" };
        format!("{prefix}{name}({})", join(&shape))
    };
    let direction = |modes: &[usize]| modes.len() < 2 || mode_dim[modes[1]] > mode_dim[modes[0]];
    while ti < threads.len() || si < slots.len() {
        if si < slots.len() && is_next(&next, slots[si]) {
            let entries: Vec<Option<usize>> = slots[si..].iter().map(|&m| Some(m)).collect();
            let modes = run(&next, &entries);
            factors.push(level("local", &modes, direction(&modes)));
            carries_rank = true;
            for &m in &modes {
                next[mode_dim[m]] += 1;
            }
            si += modes.len();
            continue;
        }
        match threads.get(ti) {
            Some(ThreadAxis::Replicated(n)) => {
                factors.push(format!("replicated({n})"));
                ti += 1;
            }
            Some(ThreadAxis::Mode(m)) if is_next(&next, *m) => {
                let entries: Vec<Option<usize>> = threads[ti..]
                    .iter()
                    .map(|a| match a {
                        ThreadAxis::Mode(m) => Some(*m),
                        ThreadAxis::Replicated(_) => None,
                    })
                    .collect();
                let modes = run(&next, &entries);
                factors.push(level("spatial", &modes, direction(&modes)));
                carries_rank = true;
                for &m in &modes {
                    next[mode_dim[m]] += 1;
                }
                ti += modes.len();
            }
            _ => return None,
        }
    }
    if !carries_rank && (rank > 0 || factors.is_empty()) {
        factors.insert(0, format!("local({})", join(&vec![1usize; rank])));
    }
    Some(factors)
}

impl fmt::Display for RegisterLayout {
    /// Prints the canonical form as a product of primitives when the greedy algorithm of
    /// the crate docs finds one (local levels tried before spatial ones), else in the
    /// general form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let canonical = self.canonicalize();
        match as_primitives(&canonical) {
            Some(factors) => write!(f, "{}", factors.join(".")),
            None => write!(f, "{}", general_form(&canonical)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared layouts
// ---------------------------------------------------------------------------------------

fn parse_shared(input: &str) -> PResult<SharedLayout> {
    let mut p = Parser::new(input)?;
    let (offset, name) = p.ident("a shared layout constructor")?;
    let at = layout_error(offset);
    let layout = match name {
        "row_major" => SharedLayout::row_major(&p.numbers::<usize>('(', ')')?).map_err(at)?,
        "column_major" => SharedLayout::column_major(&p.numbers::<usize>('(', ')')?).map_err(at)?,
        "strided" => {
            p.expect('(')?;
            let shape = p.numbers::<usize>('[', ']')?;
            p.expect(',')?;
            let strides = p.numbers::<usize>('[', ']')?;
            p.expect(')')?;
            SharedLayout::strided(&shape, &strides).map_err(at)?
        }
        "modes" => {
            p.expect('(')?;
            p.expect('[')?;
            let modes = p.list(']', |p| {
                p.expect('[')?;
                p.list(']', |p| {
                    let size = p.number()?;
                    p.expect(':')?;
                    let stride = p.number()?;
                    Ok(StridedMode { size, stride })
                })
            })?;
            p.expect(')')?;
            SharedLayout::from_modes(modes).map_err(at)?
        }
        _ => {
            return Err(ParseError::new(
                offset,
                ParseErrorKind::UnknownName { name: name.to_string(), known: SHARED_CONSTRUCTORS },
            ));
        }
    };
    let layout = if p.eat('.') {
        let offset = p.offset();
        p.expect_keyword("swizzle")?;
        p.expect('(')?;
        let bits = p.number()?;
        p.expect(',')?;
        let base = p.number()?;
        p.expect(',')?;
        let shift = p.number()?;
        p.expect(')')?;
        layout.with_swizzle(Swizzle::new(bits, base, shift).map_err(layout_error(offset))?)
    } else {
        layout
    };
    p.end("'.swizzle(B,M,S)' or end of input")?;
    Ok(layout)
}

impl FromStr for SharedLayout {
    type Err = ParseError;

    /// Parses `row_major(64,32)`, `column_major(64,32)`, `strided([64,32],[32,1])` or
    /// `modes([[8:1,8:64],[64:8]])` (per dim, `size:stride` modes outer to inner),
    /// optionally followed by `.swizzle(B,M,S)`.
    fn from_str(s: &str) -> PResult<SharedLayout> {
        parse_shared(s)
    }
}

impl SharedLayout {
    /// Parses the shared layout syntax (same as `str::parse`).
    pub fn parse(input: &str) -> std::result::Result<SharedLayout, ParseError> {
        parse_shared(input)
    }
}

impl fmt::Display for SharedLayout {
    /// Prints `row_major(...)` or `column_major(...)` when the modes are exactly those,
    /// else `strided([...],[...])` when every dim has one mode, else `modes(...)`; then
    /// `.swizzle(B,M,S)` if there is a swizzle.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unswizzled = self.clone().without_swizzle();
        let shape = self.shape();
        if SharedLayout::row_major(&shape).is_ok_and(|l| l == unswizzled) {
            write!(f, "row_major({})", join(&shape))?;
        } else if SharedLayout::column_major(&shape).is_ok_and(|l| l == unswizzled) {
            write!(f, "column_major({})", join(&shape))?;
        } else if self.modes().iter().all(|d| d.len() == 1) {
            let strides: Vec<usize> = self.modes().iter().map(|d| d[0].stride).collect();
            write!(f, "strided([{}],[{}])", join(&shape), join(&strides))?;
        } else {
            let dims: Vec<String> = self
                .modes()
                .iter()
                .map(|d| {
                    let modes: Vec<String> = d.iter().map(|m| format!("{}:{}", m.size, m.stride)).collect();
                    format!("[{}]", modes.join(","))
                })
                .collect();
            write!(f, "modes([{}])", dims.join(","))?;
        }
        if let Some(s) = self.swizzle() {
            write!(f, ".swizzle({},{},{})", s.bits(), s.base(), s.shift())?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Global layouts
// ---------------------------------------------------------------------------------------

fn parse_global(input: &str) -> PResult<GlobalLayout> {
    let mut p = Parser::new(input)?;
    let (offset, name) = p.ident("a global layout constructor")?;
    let at = layout_error(offset);
    let layout = match name {
        "row_major" => GlobalLayout::row_major(&p.numbers::<usize>('(', ')')?).map_err(at)?,
        "column_major" => GlobalLayout::column_major(&p.numbers::<usize>('(', ')')?).map_err(at)?,
        "strided" => {
            p.expect('(')?;
            let shape = p.numbers::<usize>('[', ']')?;
            p.expect(',')?;
            p.expect('[')?;
            let strides = p.list(']', Parser::signed)?;
            p.expect(')')?;
            GlobalLayout::new(&shape, &strides, 0).map_err(at)?
        }
        _ => {
            return Err(ParseError::new(
                offset,
                ParseErrorKind::UnknownName { name: name.to_string(), known: GLOBAL_CONSTRUCTORS },
            ));
        }
    };
    let layout = if p.eat('.') {
        let offset = p.offset();
        p.expect_keyword("offset")?;
        p.expect('(')?;
        let base = p.signed()?;
        p.expect(')')?;
        layout.with_base_offset(base).map_err(layout_error(offset))?
    } else {
        layout
    };
    p.end("'.offset(N)' or end of input")?;
    Ok(layout)
}

impl FromStr for GlobalLayout {
    type Err = ParseError;

    /// Parses `row_major(64,32)`, `column_major(64,32)` or `strided([64,32],[32,-1])`,
    /// optionally followed by `.offset(N)` (N may be negative).
    fn from_str(s: &str) -> PResult<GlobalLayout> {
        parse_global(s)
    }
}

impl GlobalLayout {
    /// Parses the global layout syntax (same as `str::parse`).
    pub fn parse(input: &str) -> std::result::Result<GlobalLayout, ParseError> {
        parse_global(input)
    }
}

impl fmt::Display for GlobalLayout {
    /// Prints `row_major(...)` or `column_major(...)` when the strides are exactly those,
    /// else `strided([...],[...])`; then `.offset(N)` if the base offset is not 0.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = self.shape();
        let same = |l: GlobalLayout| l.strides() == self.strides();
        if GlobalLayout::row_major(shape).is_ok_and(same) {
            write!(f, "row_major({})", join(shape))?;
        } else if GlobalLayout::column_major(shape).is_ok_and(same) {
            write!(f, "column_major({})", join(shape))?;
        } else {
            write!(f, "strided([{}],[{}])", join(shape), join(self.strides()))?;
        }
        if self.base_offset() != 0 {
            write!(f, ".offset({})", self.base_offset())?;
        }
        Ok(())
    }
}
