//! The parser: tokens to a [`Module`], with name resolution and typing.
//!
//! Statements are parsed and lowered one at a time: operands are resolved against the values
//! visible at that point, the instruction is typed with [`infer::result_types`], and its
//! results are defined. Problems are collected as diagnostics:
//!
//! - a *syntax* error abandons the statement and skips to the next line at the same brace
//!   depth (or to the `}` that closes the block), so the following statements are still
//!   checked;
//! - a *semantic* error (an undefined name, a type error, a bad layout) is reported and the
//!   statement is dropped without skipping anything;
//! - the results of a dropped statement are *poisoned*: they count as defined, and a later
//!   statement that uses one is dropped silently, so one mistake gives one diagnostic.
//!
//! A kernel with errors is left out of the module; parsing goes on with the next kernel. The
//! arena order of values and instructions is that of [`crate::builder::KernelBuilder`], so a
//! printed built kernel parses back to an equal one.

use std::collections::{HashMap, HashSet};

use anybit_layouts::expr::{REGISTER_PRIMITIVES, SHARED_CONSTRUCTORS};
use anybit_layouts::{ParseError as LayoutParseError, ParseErrorKind, RegisterLayout, SharedLayout};

use super::lexer::{Tok, Token, ident_end, lex, skip_trivia};
use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::dtype::DType;
use crate::program::infer;
use crate::program::{
    Assumption, Axis, BinaryOp, Block, CompareOp, GridExpr, GridOp, InstData, Kernel, LayoutDef, Literal, MmaShape,
    Module, NamedLayout, Op, Operand, Param, ParamType, ReduceOp, RegisterTensorType, SharedTensorType, Type, UnaryOp,
    ValueData, ValueDef, ValueId, Via,
};

/// Blocks (and grid expressions) nested deeper than this are rejected, so that hostile input
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Parses a whole module.
pub(crate) fn parse(src: &str) -> Result<Module, Diagnostics> {
    let mut parser = Parser {
        src,
        toks: lex(src),
        pos: 0,
        diags: Vec::new(),
        module: Module::default(),
        bad_layouts: HashSet::new(),
        kernel_names: HashMap::new(),
        bad: false,
        unclosed: false,
        last_close: Span::default(),
    };
    parser.module();
    if parser.diags.is_empty() { Ok(parser.module) } else { Err(Diagnostics(parser.diags)) }
}

/// A syntax error was reported; the caller recovers.
#[derive(Debug)]
struct Reported;

type PResult<T> = Result<T, Reported>;

/// What a name stands for in a kernel body.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Value(ValueId),
    /// Defined by a statement that had an error: uses are dropped silently.
    Poisoned,
}

/// A block being parsed.
#[derive(Debug, Default)]
struct Level {
    /// Names defined in it (they go out of scope with it).
    names: Vec<String>,
    block: Block,
    /// The `yield` statement and its operands' spans.
    yield_span: Option<Span>,
    yield_spans: Vec<Span>,
    /// The yield used a value that has an error.
    yield_bad: bool,
    /// A statement after the `yield` was reported.
    after_yield_reported: bool,
}

/// The state of the kernel being parsed.
#[derive(Debug)]
struct Scope {
    kernel: Kernel,
    /// Every name defined in the kernel, with where.
    names: HashMap<String, Span>,
    /// The names visible at this point.
    visible: HashMap<String, Binding>,
    /// The open blocks, the kernel body first.
    levels: Vec<Level>,
}

impl Scope {
    fn level(&mut self) -> &mut Level {
        if self.levels.is_empty() {
            self.levels.push(Level::default());
        }
        let last = self.levels.len() - 1;
        &mut self.levels[last]
    }

    fn push_level(&mut self) {
        self.levels.push(Level::default());
    }

    fn pop_level(&mut self) -> Level {
        let level = self.levels.pop().unwrap_or_default();
        for name in &level.names {
            self.visible.remove(name);
        }
        level
    }
}

/// A grid expression as written, before its names are resolved to parameters.
enum RawGrid<'s> {
    Const(u64),
    Name(&'s str, Span),
    Binary(GridOp, Box<RawGrid<'s>>, Box<RawGrid<'s>>),
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token<'s>>,
    pos: usize,
    diags: Vec<Diagnostic>,
    module: Module,
    /// Layout names whose definition had an error (uses are not reported again).
    bad_layouts: HashSet<String>,
    kernel_names: HashMap<String, Span>,
    /// The current statement has a reported semantic error: it is dropped.
    bad: bool,
    /// A missing `}` was reported for the current kernel.
    unclosed: bool,
    /// The span of the last `}` that closed a block.
    last_close: Span,
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("{n} {word}") } else { format!("{n} {word}s") }
}

/// A type for messages: its description, with the layout when there is one.
fn type_text(ty: &Type) -> String {
    match ty {
        Type::Register(RegisterTensorType { layout: Some(l), .. }) => format!("{} layout {l}", ty.describe()),
        Type::Shared(SharedTensorType { layout: Some(l), .. }) => format!("{} layout {l}", ty.describe()),
        _ => ty.describe(),
    }
}

/// The end of the layout expression starting at `start`: identifiers followed by balanced
/// parentheses/brackets, joined by `.`. Scanning stops at any character that cannot occur in
/// a layout expression and at the end of the line, so an unbalanced expression ends before
/// the next statement.
fn layout_extent(bytes: &[u8], start: usize) -> usize {
    // Whitespace and comments, but not a line break: an expression ends with its line.
    let gap = |pos: usize| {
        let (next, newline) = skip_trivia(bytes, pos);
        if newline { None } else { Some(next) }
    };
    let mut end = start;
    let mut pos = start;
    loop {
        let id_end = ident_end(bytes, pos);
        if id_end == pos {
            break;
        }
        end = id_end;
        let Some(open) = gap(id_end).filter(|&p| bytes.get(p) == Some(&b'(')) else { break };
        let mut depth = 0usize;
        let mut q = open;
        while let Some(next) = gap(q) {
            q = next;
            let Some(&b) = bytes.get(q) else { break };
            match b {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth = depth.saturating_sub(1),
                b',' | b'.' | b'=' | b':' | b'-' => {}
                b if b.is_ascii_alphanumeric() || b == b'_' => {}
                _ => break,
            }
            q += 1;
            end = q;
            if depth == 0 {
                break;
            }
        }
        if depth != 0 {
            break;
        }
        let Some(dot) = gap(end).filter(|&p| bytes.get(p) == Some(&b'.')) else { break };
        end = dot + 1;
        let Some(next) = gap(end) else { break };
        pos = next;
    }
    end
}

/// `src[start..end]` with `//` comments blanked out (byte for byte, so offsets are kept).
fn blank_comments(src: &str, start: usize, end: usize) -> String {
    let bytes = src.as_bytes().get(start..end).unwrap_or(&[]);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which kind of layout an expression is, by its first primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LayoutKind {
    Register,
    Shared,
}

impl LayoutKind {
    fn noun(self) -> &'static str {
        match self {
            LayoutKind::Register => "register layout",
            LayoutKind::Shared => "shared layout",
        }
    }
}

impl<'s> Parser<'s> {
    // ------------------------------------------------------------------------------------
    // Tokens and messages
    // ------------------------------------------------------------------------------------

    fn peek(&self) -> Token<'s> {
        self.toks.get(self.pos).or(self.toks.last()).copied().unwrap_or(Token {
            tok: Tok::Eof,
            start: self.src.len(),
            end: self.src.len(),
            line_start: true,
        })
    }

    fn peek_second(&self) -> Tok<'s> {
        self.toks.get(self.pos + 1).map_or(Tok::Eof, |t| t.tok)
    }

    fn bump(&mut self) -> Token<'s> {
        let t = self.peek();
        if !matches!(t.tok, Tok::Eof) {
            self.pos += 1;
        }
        t
    }

    fn prev_end(&self) -> usize {
        self.pos.checked_sub(1).and_then(|p| self.toks.get(p)).map_or(0, |t| t.end)
    }

    fn span_of(t: &Token<'_>) -> Span {
        Span::new(t.start, t.end)
    }

    /// Where a token is reported: the end of file is reported just after the last token.
    fn report_span(&self, t: &Token<'_>) -> Span {
        match t.tok {
            Tok::Eof => {
                let end = self.toks.iter().rev().nth(1).map_or(0, |t| t.end);
                Span::new(end, end)
            }
            _ => Self::span_of(t),
        }
    }

    fn describe(&self, t: &Token<'_>) -> String {
        match t.tok {
            Tok::Eof => "end of file".to_string(),
            Tok::BadNumber(why) => format!("invalid number `{}` ({why})", self.text(t)),
            _ => format!("`{}`", self.text(t)),
        }
    }

    fn text(&self, t: &Token<'_>) -> &'s str {
        self.src.get(t.start..t.end).unwrap_or("")
    }

    fn error(&mut self, message: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(message, Some(span)));
    }

    /// Reports "expected …, found …" at the next token.
    fn expected(&mut self, expected: &str) -> Reported {
        let t = self.peek();
        let message = format!("expected {expected}, found {}", self.describe(&t));
        let span = self.report_span(&t);
        self.error(message, span);
        Reported
    }

    fn at_punct(&self, c: u8) -> bool {
        self.peek().tok == Tok::Punct(c)
    }

    fn eat_punct(&mut self, c: u8) -> bool {
        let hit = self.at_punct(c);
        if hit {
            self.bump();
        }
        hit
    }

    fn expect_punct(&mut self, c: u8, context: &str) -> PResult<Token<'s>> {
        if self.at_punct(c) { Ok(self.bump()) } else { Err(self.expected(&format!("`{}` {context}", char::from(c)))) }
    }

    fn at_word(&self, word: &str) -> bool {
        self.peek().tok == Tok::Ident(word)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let hit = self.at_word(word);
        if hit {
            self.bump();
        }
        hit
    }

    fn expect_word(&mut self, word: &str, context: &str) -> PResult<Token<'s>> {
        if self.at_word(word) { Ok(self.bump()) } else { Err(self.expected(&format!("`{word}` {context}"))) }
    }

    fn ident(&mut self, what: &str) -> PResult<(&'s str, Span)> {
        let t = self.peek();
        match t.tok {
            Tok::Ident(name) => {
                self.bump();
                Ok((name, Self::span_of(&t)))
            }
            _ => Err(self.expected(what)),
        }
    }

    fn location(&self, span: Span) -> String {
        let (line, col) = SourceFile::new("", self.src).line_col(span.start as usize);
        format!("line {line}, column {col}")
    }

    /// A comma-separated list closed by `close` (the opening token is already consumed).
    fn list<T>(&mut self, close: u8, what: &str, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut items = Vec::new();
        if self.eat_punct(close) {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.eat_punct(b',') {
                continue;
            }
            if self.eat_punct(close) {
                return Ok(items);
            }
            return Err(self.expected(&format!("`,` or `{}` after {what}", char::from(close))));
        }
    }

    /// A non-negative integer that fits `max`; a bad value is reported and gives 0.
    fn uint(&mut self, what: &str, max: u64) -> PResult<u64> {
        let t = self.peek();
        match t.tok {
            Tok::Int(v) => {
                self.bump();
                match u64::try_from(v) {
                    Ok(v) if v <= max => Ok(v),
                    _ => {
                        self.error(
                            format!("{what} must be an integer from 0 to {max}, found `{v}`"),
                            Self::span_of(&t),
                        );
                        self.bad = true;
                        Ok(0)
                    }
                }
            }
            _ => Err(self.expected(what)),
        }
    }

    fn usize(&mut self, what: &str) -> PResult<usize> {
        let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX).min(i64::MAX as u64);
        Ok(usize::try_from(self.uint(what, max)?).unwrap_or(0))
    }

    // ------------------------------------------------------------------------------------
    // Module level
    // ------------------------------------------------------------------------------------

    fn module(&mut self) {
        loop {
            let t = self.peek();
            let start = self.pos;
            match t.tok {
                Tok::Eof => break,
                Tok::Ident("layout") => {
                    if self.layout_def().is_err() {
                        self.recover_item(start);
                    }
                }
                Tok::Ident("kernel") => {
                    self.unclosed = false;
                    if self.kernel().is_err() {
                        self.recover_item(start);
                    }
                }
                _ => {
                    self.expected("`layout` or `kernel`");
                    self.recover_item(start);
                }
            }
        }
    }

    /// Skips to the next `layout` or `kernel` that starts a line.
    fn recover_item(&mut self, start: usize) {
        loop {
            let t = self.peek();
            match t.tok {
                Tok::Eof => return,
                Tok::Ident("layout" | "kernel") if t.line_start && self.pos > start => return,
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn layout_def(&mut self) -> PResult<()> {
        let kw = self.bump();
        let t = self.peek();
        let (name, name_span) = match t.tok {
            Tok::Layout(name) => {
                self.bump();
                (name, Self::span_of(&t))
            }
            _ => return Err(self.expected("a layout name `@name` after `layout`")),
        };
        self.bad = false;
        let result = self.layout_def_rest(name, name_span, kw.start);
        if result.is_err() || self.bad {
            self.bad_layouts.insert(name.to_string());
        }
        result
    }

    fn layout_def_rest(&mut self, name: &str, name_span: Span, start: usize) -> PResult<()> {
        self.expect_punct(b'=', "after the layout name")?;
        let t = self.peek();
        let Tok::Ident(first) = t.tok else {
            return Err(self.expected("a layout expression"));
        };
        let kind = if REGISTER_PRIMITIVES.contains(&first) {
            LayoutKind::Register
        } else if SHARED_CONSTRUCTORS.contains(&first) {
            LayoutKind::Shared
        } else {
            self.error(
                format!(
                    "unknown layout primitive `{first}`: a register layout starts with one of {}, a shared layout with one of {}",
                    REGISTER_PRIMITIVES.join(", "),
                    SHARED_CONSTRUCTORS.join(", ")
                ),
                Self::span_of(&t),
            );
            self.skip_layout_text();
            self.bad = true;
            return Ok(());
        };
        let layout = match kind {
            LayoutKind::Register => self.inline_layout(kind, RegisterLayout::parse)?.map(LayoutDef::Register),
            LayoutKind::Shared => self.inline_layout(kind, SharedLayout::parse)?.map(LayoutDef::Shared),
        };
        let span = Span::new(start, self.prev_end());
        if let Some(previous) = self.module.layouts.iter().find(|l| l.name == name).and_then(|l| l.span) {
            let note = format!("first defined at {}", self.location(previous));
            self.diags.push(
                Diagnostic::error(format!("layout `@{name}` is already defined"), Some(name_span)).with_note(note),
            );
            return Ok(());
        }
        if self.bad_layouts.contains(name) {
            self.error(format!("layout `@{name}` is already defined"), name_span);
            return Ok(());
        }
        if let Some(layout) = layout {
            self.module.layouts.push(NamedLayout { name: name.to_string(), layout, span: Some(span) });
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // Layouts
    // ------------------------------------------------------------------------------------

    /// Consumes the tokens of the layout expression at the current token; returns its range.
    fn skip_layout_text(&mut self) -> (usize, usize) {
        let start = self.peek().start;
        let end = layout_extent(self.src.as_bytes(), start).max(self.peek().end);
        while !matches!(self.peek().tok, Tok::Eof) && self.peek().start < end {
            self.bump();
        }
        (start, end)
    }

    /// Parses the inline layout expression at the current token with the layouts crate;
    /// a malformed one is reported (mapped into the file) and gives `None`.
    fn inline_layout<L>(
        &mut self,
        kind: LayoutKind,
        parse: fn(&str) -> Result<L, LayoutParseError>,
    ) -> PResult<Option<L>> {
        if !matches!(self.peek().tok, Tok::Ident(_)) {
            return Err(self.expected(&format!("a {} expression or `@name`", kind.noun())));
        }
        let (start, end) = self.skip_layout_text();
        let text = blank_comments(self.src, start, end);
        match parse(&text) {
            Ok(layout) => Ok(Some(layout)),
            Err(e) => {
                self.layout_error(kind, start, end, &e);
                self.bad = true;
                Ok(None)
            }
        }
    }

    fn layout_error(&mut self, kind: LayoutKind, start: usize, end: usize, e: &LayoutParseError) {
        let at = start + e.offset().min(end - start);
        let rest = self.src.get(at..).unwrap_or("");
        let word = ident_end(rest.as_bytes(), 0);
        let one = rest.chars().next().map_or(0, char::len_utf8);
        let mut span = Span::new(at, at + if word > 0 { word } else { one });
        let noun = kind.noun();
        let message = match e.kind() {
            ParseErrorKind::Unexpected { expected, found } => {
                let found = if at >= end {
                    // The expression ended early: name what follows it in the file.
                    let next = self.peek();
                    if next.line_start || matches!(next.tok, Tok::Eof) {
                        span = Span::new(end, end);
                        "the end of the line".to_string()
                    } else {
                        span = self.report_span(&next);
                        self.describe(&next)
                    }
                } else {
                    found.clone()
                };
                format!("expected {expected} in the {noun}, found {found}")
            }
            ParseErrorKind::UnknownName { name, known } => {
                format!("unknown {noun} primitive `{name}` (expected one of {})", known.join(", "))
            }
            ParseErrorKind::NumberOverflow { text } => format!("number {text} is too large in the {noun}"),
            ParseErrorKind::Layout(err) => {
                span = Span::new(at, end);
                format!("invalid {noun}: {err}")
            }
        };
        self.error(message, span);
    }

    /// `@name` or an inline register layout.
    fn register_layout(&mut self) -> PResult<RegisterLayout> {
        let t = self.peek();
        if let Tok::Layout(name) = t.tok {
            self.bump();
            let found = self.module.layouts.iter().find(|l| l.name == name).map(|l| l.layout.clone());
            return Ok(match found {
                Some(LayoutDef::Register(l)) => l,
                other => {
                    self.named_layout_problem(name, other.is_some(), LayoutKind::Register, Self::span_of(&t));
                    RegisterLayout::unit()
                }
            });
        }
        Ok(self.inline_layout(LayoutKind::Register, RegisterLayout::parse)?.unwrap_or_else(RegisterLayout::unit))
    }

    /// `@name` or an inline shared layout.
    fn shared_layout(&mut self) -> PResult<Option<SharedLayout>> {
        let t = self.peek();
        if let Tok::Layout(name) = t.tok {
            self.bump();
            let found = self.module.layouts.iter().find(|l| l.name == name).map(|l| l.layout.clone());
            return Ok(match found {
                Some(LayoutDef::Shared(l)) => Some(l),
                other => {
                    self.named_layout_problem(name, other.is_some(), LayoutKind::Shared, Self::span_of(&t));
                    None
                }
            });
        }
        self.inline_layout(LayoutKind::Shared, SharedLayout::parse)
    }

    fn named_layout_problem(&mut self, name: &str, other_kind: bool, wanted: LayoutKind, span: Span) {
        self.bad = true;
        if other_kind {
            let (is, needs) = match wanted {
                LayoutKind::Register => ("a shared layout", "a register tensor needs a register layout"),
                LayoutKind::Shared => ("a register layout", "a shared tensor needs a shared layout"),
            };
            self.error(format!("`@{name}` is {is}; {needs}"), span);
        } else if !self.bad_layouts.contains(name) {
            self.error(format!("unknown layout `@{name}` (layouts must be defined before they are used)"), span);
        }
    }

    // ------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------

    fn dtype(&mut self, what: &str) -> PResult<DType> {
        let t = self.peek();
        let Tok::Ident(name) = t.tok else {
            return Err(self.expected(what));
        };
        self.bump();
        match name.parse::<DType>() {
            Ok(d) => Ok(d),
            Err(e) => {
                self.error(e.to_string(), Self::span_of(&t));
                self.bad = true;
                Ok(DType::F32)
            }
        }
    }

    /// An identifier naming one of an enumeration's variants (`x`, `sum`, …).
    fn keyword<T>(&mut self, from_name: fn(&str) -> Option<T>, expected: &str) -> PResult<T> {
        let found = match self.peek().tok {
            Tok::Ident(name) => from_name(name),
            _ => None,
        };
        match found {
            Some(value) => {
                self.bump();
                Ok(value)
            }
            None => Err(self.expected(expected)),
        }
    }

    fn shape(&mut self, context: &str) -> PResult<Vec<usize>> {
        self.expect_punct(b'[', context)?;
        self.list(b']', "a dimension size", |p| p.usize("a dimension size"))
    }

    fn register_type(&mut self) -> PResult<RegisterTensorType> {
        let dtype = self.dtype("an element type")?;
        let shape = self.shape("after the element type (a tensor type is written `f16[16, 64]`)")?;
        let layout = if self.eat_word("layout") { Some(self.register_layout()?) } else { None };
        Ok(RegisterTensorType::new(dtype, shape, layout))
    }

    fn shared_type(&mut self) -> PResult<SharedTensorType> {
        let dtype = self.dtype("an element type")?;
        let shape = self.shape("after the element type (a tensor type is written `f16[64, 64]`)")?;
        let layout = if self.eat_word("layout") { self.shared_layout()? } else { None };
        Ok(SharedTensorType::new(dtype, shape, layout))
    }

    // ------------------------------------------------------------------------------------
    // Kernels
    // ------------------------------------------------------------------------------------

    fn kernel(&mut self) -> PResult<()> {
        let errors_before = self.diags.len();
        let kw = self.bump();
        let (name, name_span) = self.ident("the kernel's name after `kernel`")?;
        self.bad = false;
        self.expect_punct(b'(', "after the kernel name")?;
        let declared = self.list(b')', "a parameter", |p| {
            let (name, span) = p.ident("a parameter name")?;
            p.expect_punct(b':', "after the parameter name")?;
            let pointer = p.eat_word("ptr");
            let dtype =
                p.dtype(if pointer { "an element type after `ptr`" } else { "a type (`ptr` or a data type)" })?;
            let ty = if pointer { ParamType::Pointer(dtype) } else { ParamType::Scalar(dtype) };
            // A pointer may declare its buffer's shape: `x: ptr f16[m, k]`.
            let shape = if pointer && p.peek().tok == Tok::Punct(b'[') {
                p.bump();
                p.list(b']', "a buffer dimension", |p| p.raw_grid_expr(0))?
            } else {
                Vec::new()
            };
            // And the alignment of its address: `x: ptr f16[m, k] align 16`.
            let align = if pointer && p.at_word("align") {
                let kw = p.bump();
                let at = p.peek();
                let bytes = p.uint("the alignment in bytes after `align`", 1 << 12)?;
                if !bytes.is_power_of_two() {
                    p.error(format!("an alignment is a power of two, found {bytes}"), Self::span_of(&at));
                }
                let _ = kw;
                Some(u32::try_from(bytes).unwrap_or(1))
            } else {
                None
            };
            Ok((name, span.join(Span::new(span.start as usize, p.prev_end())), ty, shape, align))
        })?;
        let params: Vec<(&str, Span, ParamType)> = declared.iter().map(|(n, s, t, _, _)| (*n, *s, *t)).collect();
        let aligns: Vec<Option<u32>> = declared.iter().map(|d| d.4).collect();
        let shapes: Vec<Vec<GridExpr>> = declared
            .into_iter()
            .map(|(_, _, _, shape, _)| shape.into_iter().map(|raw| self.resolve_grid(raw, &params)).collect())
            .collect();
        let assumptions = if self.eat_word("where") { self.assumptions(&params)? } else { Vec::new() };
        self.expect_word("grid", "after the parameters")?;
        let grid_open = self.expect_punct(b'(', "after `grid`")?;
        let grid = self.list(b')', "a grid expression", |p| p.grid_expr(&params, 0))?;
        if grid.is_empty() || grid.len() > 3 {
            let span = Span::new(grid_open.start, self.prev_end());
            self.error(format!("a grid has 1 to 3 axes, found {}", grid.len()), span);
        }
        self.expect_word("warps", "after the grid")?;
        self.expect_punct(b'(', "after `warps`")?;
        let warps = self.uint("the number of warps", u64::from(u32::MAX))?;
        self.expect_punct(b')', "after the number of warps")?;
        let open = self.expect_punct(b'{', "to open the kernel body")?;

        let mut scope = Scope {
            kernel: Kernel {
                name: name.to_string(),
                params: Vec::new(),
                grid,
                warps: u32::try_from(warps).unwrap_or(0),
                values: Default::default(),
                insts: Default::default(),
                body: Block::default(),
                assumptions,
                span: None,
            },
            names: HashMap::new(),
            visible: HashMap::new(),
            levels: vec![Level::default()],
        };
        for (i, (((pname, span, ty), shape), align)) in params.into_iter().zip(shapes).zip(aligns).enumerate() {
            let value = self.define(&mut scope, pname, span, ty.value_type(), ValueDef::Param(i));
            scope.kernel.params.push(Param { name: pname.to_string(), ty, shape, align, value, span: Some(span) });
        }
        self.block_body(&mut scope, 0, Self::span_of(&open))?;
        let level = scope.pop_level();
        let mut kernel = scope.kernel;
        kernel.body = level.block;
        kernel.span = Some(Span::new(kw.start, self.prev_end()));
        if let Some(&previous) = self.kernel_names.get(name) {
            let note = format!("first defined at {}", self.location(previous));
            self.diags.push(
                Diagnostic::error(format!("kernel `{name}` is already defined"), Some(name_span)).with_note(note),
            );
        } else {
            self.kernel_names.insert(name.to_string(), name_span);
        }
        if self.diags.len() == errors_before {
            self.module.kernels.push(kernel);
        }
        Ok(())
    }

    /// After `where`: `k % 128 == 0, n % 8 == 0`, on integer scalar parameters.
    fn assumptions(&mut self, params: &[(&str, Span, ParamType)]) -> PResult<Vec<Assumption>> {
        let mut out = Vec::new();
        loop {
            let (name, name_span) = self.ident("a parameter name in `where` (e.g. `where k % 128 == 0`)")?;
            self.expect_punct(b'%', "after the parameter name (an assumption is written `k % 128 == 0`)")?;
            let at = self.peek();
            let divisor = self.uint("the divisor of the assumption", u64::from(u32::MAX))?;
            if divisor == 0 {
                self.error("the divisor of an assumption is at least 1", Self::span_of(&at));
            }
            self.expect_punct(b'=', "after the divisor (an assumption is written `k % 128 == 0`)")?;
            self.expect_punct(b'=', "after the divisor (an assumption is written `k % 128 == 0`)")?;
            let zero = self.peek();
            if self.uint("`0` after `==`", 0).is_err() {
                return Err(Reported);
            }
            let span = name_span.join(Self::span_of(&zero));
            match params.iter().position(|p| p.0 == name) {
                Some(i) if matches!(params[i].2, ParamType::Scalar(d) if d.is_integer()) => {
                    out.push(Assumption { param: i, divisor, span: Some(span) });
                }
                Some(_) => self.error(format!("`{name}` is not an integer scalar parameter"), name_span),
                None => self.error(format!("unknown parameter `{name}` in `where`"), name_span),
            }
            if !self.eat_punct(b',') {
                return Ok(out);
            }
        }
    }

    fn grid_expr(&mut self, params: &[(&str, Span, ParamType)], depth: usize) -> PResult<GridExpr> {
        let raw = self.raw_grid_expr(depth)?;
        Ok(self.resolve_grid(raw, params))
    }

    /// A grid expression with its parameter names not yet resolved (buffer shapes may name
    /// parameters declared after them).
    fn raw_grid_expr(&mut self, depth: usize) -> PResult<RawGrid<'s>> {
        let t = self.peek();
        if depth > MAX_DEPTH {
            self.error("grid expression is nested too deeply", Self::span_of(&t));
            return Err(Reported);
        }
        match t.tok {
            Tok::Int(v) => {
                self.bump();
                Ok(RawGrid::Const(u64::try_from(v).unwrap_or_else(|_| {
                    self.error(format!("a grid size cannot be negative, found `{v}`"), Self::span_of(&t));
                    0
                })))
            }
            Tok::Ident(name) if self.peek_second() == Tok::Punct(b'(') => {
                self.bump();
                self.bump();
                let op = GridOp::from_name(name);
                if op.is_none() {
                    self.error(
                        format!("unknown grid function `{name}` (expected add, sub, mul, div, cdiv, min or max)"),
                        Self::span_of(&t),
                    );
                }
                let a = self.raw_grid_expr(depth + 1)?;
                self.expect_punct(b',', &format!("after the first argument of `{name}`"))?;
                let b = self.raw_grid_expr(depth + 1)?;
                self.expect_punct(b')', &format!("after the second argument of `{name}`"))?;
                Ok(RawGrid::Binary(op.unwrap_or(GridOp::Add), Box::new(a), Box::new(b)))
            }
            Tok::Ident(name) => {
                self.bump();
                Ok(RawGrid::Name(name, Self::span_of(&t)))
            }
            _ => Err(self.expected("a grid expression (an integer, a parameter or a function such as `cdiv(n, 128)`)")),
        }
    }

    /// Resolves parameter names, reporting names that are not integer scalar parameters.
    fn resolve_grid(&mut self, raw: RawGrid<'s>, params: &[(&str, Span, ParamType)]) -> GridExpr {
        match raw {
            RawGrid::Const(c) => GridExpr::Const(c),
            RawGrid::Binary(op, a, b) => {
                let (a, b) = (self.resolve_grid(*a, params), self.resolve_grid(*b, params));
                GridExpr::binary(op, a, b)
            }
            RawGrid::Name(name, span) => match params.iter().position(|(p, _, _)| *p == name) {
                Some(i) => {
                    if !matches!(params[i].2, ParamType::Scalar(d) if d.is_integer()) {
                        self.error(
                            format!("grid expressions use integer scalar parameters; `{name}` is a {}", params[i].2),
                            span,
                        );
                    }
                    GridExpr::Param(i)
                }
                None => {
                    self.error(format!("`{name}` is not a parameter of this kernel"), span);
                    GridExpr::Const(0)
                }
            },
        }
    }

    // ------------------------------------------------------------------------------------
    // Names
    // ------------------------------------------------------------------------------------

    /// Defines a value in the innermost block.
    fn define(&mut self, scope: &mut Scope, name: &str, span: Span, ty: Type, def: ValueDef) -> ValueId {
        let id = scope.kernel.values.append(ValueData { name: name.to_string(), ty, def, span: Some(span) });
        self.claim(scope, name, span, Binding::Value(id));
        id
    }

    fn claim(&mut self, scope: &mut Scope, name: &str, span: Span, binding: Binding) {
        if let Some(&previous) = scope.names.get(name) {
            let note = format!("first defined at {}", self.location(previous));
            self.diags.push(Diagnostic::error(format!("`%{name}` is already defined"), Some(span)).with_note(note));
            return;
        }
        scope.names.insert(name.to_string(), span);
        scope.visible.insert(name.to_string(), binding);
        scope.level().names.push(name.to_string());
    }

    /// Marks the results of a dropped statement as defined-with-errors.
    fn poison(&mut self, scope: &mut Scope, results: &[(&str, Span)]) {
        for &(name, span) in results {
            self.claim(scope, name, span, Binding::Poisoned);
        }
    }

    fn resolve(&mut self, scope: &Scope, name: &str, span: Span) -> ValueId {
        match scope.visible.get(name) {
            Some(Binding::Value(id)) => return *id,
            Some(Binding::Poisoned) => {}
            None if scope.names.contains_key(name) => self.error(
                format!("`%{name}` is not visible here: it is defined inside a block that does not enclose this use"),
                span,
            ),
            None => self.error(format!("undefined value `%{name}`"), span),
        }
        self.bad = true;
        ValueId::from_index(0)
    }

    // ------------------------------------------------------------------------------------
    // Blocks and statements
    // ------------------------------------------------------------------------------------

    /// Parses statements up to and including the `}` that closes the block (the `{` is
    /// consumed). Fails when the block is not closed.
    fn block_body(&mut self, scope: &mut Scope, depth: usize, open: Span) -> PResult<()> {
        loop {
            let t = self.peek();
            match t.tok {
                Tok::Punct(b'}') => {
                    self.bump();
                    self.last_close = Self::span_of(&t);
                    return Ok(());
                }
                Tok::Eof | Tok::Ident("kernel" | "layout") if t.line_start || matches!(t.tok, Tok::Eof) => {
                    if !self.unclosed {
                        self.unclosed = true;
                        let (line, col) = SourceFile::new("", self.src).line_col(open.start as usize);
                        self.expected(&format!("`}}` to close the block opened at line {line}, column {col}"));
                    }
                    return Err(Reported);
                }
                _ => {
                    let start = self.pos;
                    if self.statement(scope, depth).is_err() {
                        if self.unclosed {
                            return Err(Reported);
                        }
                        self.recover_statement(start);
                    }
                }
            }
        }
    }

    /// Skips the rest of a statement that has a syntax error: up to the next line at the same
    /// brace depth, or the `}` that starts a line and closes the current block.
    fn recover_statement(&mut self, start: usize) {
        let mut depth = 0i64;
        loop {
            let t = self.peek();
            let fresh_line = t.line_start && self.pos > start;
            match t.tok {
                Tok::Eof => return,
                Tok::Ident("kernel" | "layout") if fresh_line => return,
                _ if fresh_line && depth <= 0 => return,
                // A `}` that starts a line closes the block; one inside the broken line is
                // taken as part of it.
                Tok::Punct(b'}') if depth <= 0 && t.line_start => return,
                Tok::Punct(b'{') => depth += 1,
                Tok::Punct(b'}') => depth -= 1,
                _ => {}
            }
            self.bump();
        }
    }

    fn statement(&mut self, scope: &mut Scope, depth: usize) -> PResult<()> {
        self.bad = false;
        let first = self.peek();
        let level = scope.level();
        if level.yield_span.is_some() && !level.after_yield_reported {
            level.after_yield_reported = true;
            self.error("`yield` must be the last statement of its block", Self::span_of(&first));
        }
        let mut results: Vec<(&'s str, Span)> = Vec::new();
        if let Tok::Value(_) = first.tok {
            loop {
                let t = self.peek();
                let Tok::Value(name) = t.tok else {
                    self.expected("a result name `%name` after `,`");
                    self.poison(scope, &results);
                    return Err(Reported);
                };
                self.bump();
                results.push((name, Self::span_of(&t)));
                if self.eat_punct(b',') {
                    continue;
                }
                if self.eat_punct(b'=') {
                    break;
                }
                self.expected("`=` or `,` after a result name");
                self.poison(scope, &results);
                return Err(Reported);
            }
        }
        let outcome = self.instruction(scope, &results, depth);
        if outcome.is_err() {
            self.poison(scope, &results);
        }
        outcome
    }

    fn instruction(&mut self, scope: &mut Scope, results: &[(&'s str, Span)], depth: usize) -> PResult<()> {
        let t = self.peek();
        let Tok::Ident(mnemonic) = t.tok else {
            return Err(self.expected(if results.is_empty() { "a statement" } else { "an instruction after `=`" }));
        };
        let start = t.start;
        if mnemonic == "yield" {
            if !results.is_empty() {
                self.error("`yield` defines no values", Self::span_of(&t));
            }
            return self.yield_statement(scope);
        }
        if mnemonic == "for" || mnemonic == "if" {
            if depth >= MAX_DEPTH {
                self.error(format!("blocks are nested more than {MAX_DEPTH} deep"), Self::span_of(&t));
                return Err(Reported);
            }
            self.bump();
            return if mnemonic == "for" {
                self.for_statement(scope, results, start, depth)
            } else {
                self.if_statement(scope, results, start, depth)
            };
        }
        self.bump();
        let op = match mnemonic {
            "const" => {
                let value = self.literal("a literal after `const`")?;
                self.expect_punct(b':', "after the constant (a constant is written `const 1 : i32`)")?;
                let dtype = self.dtype("the constant's type")?;
                Op::Const { value, dtype }
            }
            "block_index" => {
                let axis = self.keyword(Axis::from_name, "an axis `x`, `y` or `z` after `block_index`")?;
                Op::BlockIndex { axis }
            }
            "fma" => {
                let ops = self.operands(scope, mnemonic, 3, start)?;
                Op::Fma { a: ops[0], b: ops[1], c: ops[2] }
            }
            "select" => {
                let ops = self.operands(scope, mnemonic, 3, start)?;
                Op::Select { cond: ops[0], on_true: ops[1], on_false: ops[2] }
            }
            "cast" => {
                let x = self.operand(scope, "the operand of `cast`")?;
                self.expect_punct(b':', "after the operand of `cast` (a cast is written `cast %x : f16`)")?;
                let to = self.dtype("the target type of `cast`")?;
                Op::Cast { x, to }
            }
            "lookup" => {
                let x = self.value(scope, "the codes of `lookup`")?;
                self.expect_punct(
                    b'[',
                    "before the table of `lookup` (a lookup is written `lookup %q [-1.0, 1.0] : f16`)",
                )?;
                let table = self.list(b']', "a table entry", |p| p.literal("a table entry (a literal)"))?;
                self.expect_punct(b':', "after the table of `lookup`")?;
                let to = self.dtype("the element type of `lookup`")?;
                Op::Lookup { x, table, to }
            }
            "fill" => {
                let value = self.operand(scope, "the value of `fill`")?;
                self.expect_punct(b':', "after the value of `fill`")?;
                Op::Fill { value, ty: self.register_type()? }
            }
            "iota" => {
                let dim = self.usize("the dimension of `iota`")?;
                self.expect_punct(b':', "after the dimension of `iota`")?;
                Op::Iota { dim, ty: self.register_type()? }
            }
            "view" | "broadcast" => {
                let x = self.value(scope, &format!("the operand of `{mnemonic}`"))?;
                self.expect_punct(b':', &format!("after the operand of `{mnemonic}`"))?;
                let ty = self.register_type()?;
                if mnemonic == "view" { Op::View { x, ty } } else { Op::Broadcast { x, ty } }
            }
            "reduce" => {
                let op = self.keyword(ReduceOp::from_name, "`sum`, `max` or `min` after `reduce`")?;
                let x = self.value(scope, "the operand of `reduce`")?;
                self.expect_word("dims", "after the operand of `reduce`")?;
                let dims = self.shape("after `dims`")?;
                let keep_dims = self.eat_word("keep");
                let layout = if self.eat_word("layout") { Some(self.register_layout()?) } else { None };
                Op::Reduce { op, x, dims, keep_dims, layout }
            }
            "dot" => {
                let ops = self.operands(scope, mnemonic, 3, start)?;
                let [a, b, c] = [ops[0], ops[1], ops[2]].map(|o| self.must_be_value(o, "`dot`", start));
                Op::Dot { a, b, c }
            }
            "global_view" => {
                let ptr = self.value(scope, "the pointer of `global_view`")?;
                let shape = self.index_list(scope, "before the shape of `global_view`", "a dimension")?;
                self.expect_word("strides", "after the shape of `global_view` (strides are always written)")?;
                let strides = self.index_list(scope, "after `strides`", "a stride")?;
                Op::GlobalView { ptr, shape, strides }
            }
            "load_global" | "load_shared" => {
                let src = self.value(scope, &format!("the source of `{mnemonic}`"))?;
                let offsets = self.index_list(scope, "before the offsets", "an offset")?;
                self.expect_punct(b':', &format!("after the offsets of `{mnemonic}`"))?;
                let ty = self.register_type()?;
                if mnemonic == "load_global" {
                    let inside = if self.eat_word("inside") { self.shape("after `inside`")? } else { vec![] };
                    Op::LoadGlobal { src, offsets, ty, inside }
                } else {
                    Op::LoadShared { src, offsets, ty }
                }
            }
            "store_global" | "store_shared" => {
                let value = self.value(scope, &format!("the value stored by `{mnemonic}`"))?;
                self.expect_punct(b',', "after the stored value")?;
                let dst = self.value(scope, &format!("the destination of `{mnemonic}`"))?;
                let offsets = self.index_list(scope, "before the offsets", "an offset")?;
                if mnemonic == "store_global" {
                    Op::StoreGlobal { value, dst, offsets }
                } else {
                    Op::StoreShared { value, dst, offsets }
                }
            }
            "alloc_shared" => {
                self.expect_punct(b':', "after `alloc_shared`")?;
                Op::AllocShared { ty: self.shared_type()? }
            }
            "free_shared" => Op::FreeShared { tensor: self.value(scope, "the tile freed by `free_shared`")? },
            "copy_async" => {
                let src = self.value(scope, "the source view of `copy_async`")?;
                let src_offsets = self.index_list(scope, "before the source offsets", "an offset")?;
                self.expect_punct(b',', "after the source offsets of `copy_async`")?;
                let dst = self.value(scope, "the destination tile of `copy_async`")?;
                let dst_offsets = self.index_list(scope, "before the destination offsets", "an offset")?;
                self.expect_punct(b':', "after the destination offsets of `copy_async`")?;
                let shape = self.shape("before the copied shape")?;
                Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape }
            }
            "commit_group" => Op::CommitGroup,
            "sync" => Op::Sync,
            "wait_group" => {
                let pending = self.uint("the number of groups `wait_group` leaves in flight", u64::from(u32::MAX))?;
                Op::WaitGroup { pending: u32::try_from(pending).unwrap_or(0) }
            }
            _ => {
                if let Some(op) = UnaryOp::from_name(mnemonic) {
                    let ops = self.operands(scope, mnemonic, 1, start)?;
                    Op::Unary { op, x: ops[0] }
                } else if let Some(op) = BinaryOp::from_name(mnemonic) {
                    let ops = self.operands(scope, mnemonic, 2, start)?;
                    Op::Binary { op, lhs: ops[0], rhs: ops[1] }
                } else if let Some(op) = CompareOp::from_name(mnemonic) {
                    let ops = self.operands(scope, mnemonic, 2, start)?;
                    Op::Compare { op, lhs: ops[0], rhs: ops[1] }
                } else {
                    self.error(format!("unknown instruction `{mnemonic}`"), Self::span_of(&t));
                    return Err(Reported);
                }
            }
        };
        let via = if self.eat_word("via") { Some(self.via(&op)?) } else { None };
        let span = Span::new(start, self.prev_end());
        self.emit(scope, op, results, span, via);
        Ok(())
    }

    /// `(flag)` after a selection's name, or nothing: whether the flag is given.
    fn optional_flag(&mut self, name: &str, flag: &str) -> PResult<bool> {
        if !self.eat_punct(b'(') {
            return Ok(false);
        }
        self.expect_word(flag, &format!("after `{name}(`"))?;
        self.expect_punct(b')', &format!("after `{flag}`"))?;
        Ok(true)
    }

    /// A selection after `via`: `scalar`, `vector(8)`, `vector(8, checked)`, `mma(m16n8k16)`,
    /// `fma`, `dequant`, `ldmatrix`, `ldmatrix(trans)`, `async`, `async(checked)`.
    fn via(&mut self, op: &Op) -> PResult<Via> {
        let t = self.peek();
        let (word, span) = self.ident("a selection after `via` (`vector(8)`, `mma(m16n8k16)`, `fma`, …)")?;
        let via = match word {
            "scalar" => Via::Scalar,
            "fma" => Via::Fma,
            "dequant" => Via::Dequant,
            "async" => Via::Async { checked: self.optional_flag("async", "checked")? },
            "ldmatrix" => Via::Ldmatrix { trans: self.optional_flag("ldmatrix", "trans")? },
            "vector" => {
                self.expect_punct(b'(', "after `vector`")?;
                let width = self.uint("the vector width in elements", 128)?;
                let checked = if self.eat_punct(b',') {
                    self.expect_word("checked", "after the vector width")?;
                    true
                } else {
                    false
                };
                self.expect_punct(b')', "after the vector width")?;
                Via::Vector { width: u32::try_from(width).unwrap_or(0), checked }
            }
            "mma" => {
                self.expect_punct(b'(', "after `mma`")?;
                let (shape, shape_span) = self.ident("an mma shape (`m16n8k16` or `m16n8k32`)")?;
                let swapped = if self.eat_punct(b',') {
                    self.expect_word("swapped", "after the mma shape")?;
                    true
                } else {
                    false
                };
                self.expect_punct(b')', "after the mma shape")?;
                match MmaShape::from_name(shape) {
                    Some(s) => Via::Mma { shape: s, swapped },
                    None => {
                        self.error(format!("unknown mma shape `{shape}` (expected m16n8k16 or m16n8k32)"), shape_span);
                        return Err(Reported);
                    }
                }
            }
            _ => {
                self.error(
                    format!(
                        "unknown selection `{word}` (expected scalar, vector, mma, fma, dequant, ldmatrix or async)"
                    ),
                    Self::span_of(&t),
                );
                return Err(Reported);
            }
        };
        if !via.applies_to(op) {
            self.error(format!("`via {via}` does not apply to `{}`", op.mnemonic()), span);
            return Err(Reported);
        }
        Ok(via)
    }

    /// Types `op`, appends it to the current block and defines its results.
    fn emit(&mut self, scope: &mut Scope, op: Op, results: &[(&str, Span)], span: Span, via: Option<Via>) {
        if self.bad {
            self.poison(scope, results);
            return;
        }
        let types = match infer::result_types(&scope.kernel, &op) {
            Ok(types) => types,
            Err(e) => {
                self.error(e.0, span);
                self.poison(scope, results);
                return;
            }
        };
        if types.len() != results.len() {
            self.error(count_message(op.mnemonic(), types.len(), results.len()), span);
            self.poison(scope, results);
            return;
        }
        let id = scope.kernel.insts.append(InstData { op, results: Vec::new(), via, span: Some(span) });
        let mut values = Vec::with_capacity(types.len());
        for (i, (ty, &(name, name_span))) in types.into_iter().zip(results).enumerate() {
            values.push(self.define(scope, name, name_span, ty, ValueDef::Result(id, i)));
        }
        if let Some(inst) = scope.kernel.insts.get_mut(id) {
            inst.results = values;
        }
        scope.level().block.insts.push(id);
    }

    // ------------------------------------------------------------------------------------
    // Operands
    // ------------------------------------------------------------------------------------

    fn literal(&mut self, what: &str) -> PResult<Literal> {
        let lit = match self.peek().tok {
            Tok::Int(v) => Literal::Int(v),
            Tok::Float(v) => Literal::Float(v),
            Tok::Ident("inf") => Literal::Float(f64::INFINITY),
            Tok::Ident("nan") => Literal::Float(f64::NAN),
            _ => return Err(self.expected(what)),
        };
        self.bump();
        Ok(lit)
    }

    /// Whether the next tokens start a statement (`%x =` at the start of a line) rather than
    /// continue the current one: newlines separate nothing, but an operand missing at the
    /// end of a line should not swallow the next statement's result.
    fn at_statement_start(&self) -> bool {
        let t = self.peek();
        t.line_start && matches!(t.tok, Tok::Value(_)) && self.peek_second() == Tok::Punct(b'=')
    }

    /// `%name` or a literal.
    fn operand(&mut self, scope: &Scope, what: &str) -> PResult<Operand> {
        let t = self.peek();
        if self.at_statement_start() {
            return Err(self.expected(&format!("{what} (`%name` or a literal)")));
        }
        if let Tok::Value(name) = t.tok {
            self.bump();
            return Ok(Operand::Value(self.resolve(scope, name, Self::span_of(&t))));
        }
        Ok(Operand::Literal(self.literal(&format!("{what} (`%name` or a literal)"))?))
    }

    /// `%name` only.
    fn value(&mut self, scope: &Scope, what: &str) -> PResult<ValueId> {
        let t = self.peek();
        match t.tok {
            Tok::Value(name) if !self.at_statement_start() => {
                self.bump();
                Ok(self.resolve(scope, name, Self::span_of(&t)))
            }
            _ => Err(self.expected(&format!("{what} (a value `%name`)"))),
        }
    }

    fn must_be_value(&mut self, operand: Operand, mnemonic: &str, start: usize) -> ValueId {
        match operand {
            Operand::Value(v) => v,
            Operand::Literal(l) => {
                let span = Span::new(start, self.prev_end());
                self.error(format!("{mnemonic} operands must be values, found the literal {l}"), span);
                self.bad = true;
                ValueId::from_index(0)
            }
        }
    }

    /// The comma-separated operands of an elementwise instruction (or `dot`); their number
    /// must be `count`. The result always has `count` entries.
    fn operands(&mut self, scope: &Scope, mnemonic: &str, count: usize, start: usize) -> PResult<Vec<Operand>> {
        let mut ops = vec![self.operand(scope, &format!("an operand of `{mnemonic}`"))?];
        while self.eat_punct(b',') {
            ops.push(self.operand(scope, &format!("an operand of `{mnemonic}`"))?);
        }
        if ops.len() != count {
            let span = Span::new(start, self.prev_end());
            self.error(format!("`{mnemonic}` takes {}, found {}", plural(count, "operand"), ops.len()), span);
            self.bad = true;
        }
        ops.resize(count, Operand::Literal(Literal::Int(0)));
        Ok(ops)
    }

    /// `[operand, …]`.
    fn index_list(&mut self, scope: &Scope, context: &str, what: &str) -> PResult<Vec<Operand>> {
        self.expect_punct(b'[', context)?;
        self.list(b']', what, |p| p.operand(scope, what))
    }

    // ------------------------------------------------------------------------------------
    // Control flow
    // ------------------------------------------------------------------------------------

    fn yield_statement(&mut self, scope: &mut Scope) -> PResult<()> {
        let kw = self.bump();
        let mut ops = Vec::new();
        let mut spans = Vec::new();
        loop {
            let start = self.peek().start;
            ops.push(self.operand(scope, "a yielded value")?);
            spans.push(Span::new(start, self.prev_end()));
            if !self.eat_punct(b',') {
                break;
            }
        }
        let span = Span::new(kw.start, self.prev_end());
        if scope.levels.len() <= 1 {
            self.error("`yield` is only allowed at the end of a `for` or `if` block", span);
            return Ok(());
        }
        let bad = self.bad;
        let level = scope.level();
        if level.yield_span.is_none() {
            level.block.yields = ops;
            level.yield_span = Some(span);
            level.yield_spans = spans;
            level.yield_bad = bad;
        }
        Ok(())
    }

    /// Parses `{ … }` as a new block; returns it.
    fn nested_block(&mut self, scope: &mut Scope, depth: usize, open_context: &str) -> PResult<Level> {
        let open = self.expect_punct(b'{', open_context)?;
        scope.push_level();
        let outcome = self.block_body(scope, depth + 1, Self::span_of(&open));
        let level = scope.pop_level();
        outcome.map(|()| level)
    }

    /// Checks that a block yields values of `types`.
    fn check_yields(&mut self, kernel: &Kernel, what: &str, level: &Level, types: &[Type], close: Span) {
        if level.yield_bad {
            return;
        }
        let yields = &level.block.yields;
        if yields.len() != types.len() {
            let span = level.yield_span.unwrap_or(close);
            let message = if yields.is_empty() {
                format!("{what} must end with `yield` of {}", plural(types.len(), "value"))
            } else {
                format!("{what} yields {}, expected {}", plural(yields.len(), "value"), types.len())
            };
            self.error(message, span);
            return;
        }
        for (i, (y, expected)) in yields.iter().zip(types).enumerate() {
            let span = level.yield_spans.get(i).copied().or(level.yield_span).unwrap_or(close);
            match *y {
                Operand::Literal(l) => {
                    self.error(
                        format!("{what} yields the literal {l}; yield a typed value (use `const` or `fill`)"),
                        span,
                    );
                }
                Operand::Value(v) => {
                    if let Some(got) = kernel.values.get(v).map(|v| &v.ty)
                        && got != expected
                    {
                        let (got, expected) = if got.describe() == expected.describe() {
                            (type_text(got), type_text(expected))
                        } else {
                            (got.describe(), expected.describe())
                        };
                        self.error(format!("{what} yields a {got} at position {i}, expected a {expected}"), span);
                    }
                }
            }
        }
    }

    fn for_statement(
        &mut self,
        scope: &mut Scope,
        results: &[(&'s str, Span)],
        start: usize,
        depth: usize,
    ) -> PResult<()> {
        let t = self.peek();
        let Tok::Value(index_name) = t.tok else {
            return Err(self.expected("the loop index `%name` after `for`"));
        };
        self.bump();
        let index_span = Self::span_of(&t);
        self.expect_punct(b'=', "after the loop index")?;
        let start_bound = self.operand(scope, "the loop's start")?;
        self.expect_word("to", "after the loop's start")?;
        let end = self.operand(scope, "the loop's end")?;
        let step = if self.eat_word("step") {
            self.operand(scope, "the loop's step")?
        } else {
            Operand::Literal(Literal::Int(1))
        };
        let unroll = if self.eat_word("unroll") {
            Some(u32::try_from(self.uint("the unroll factor", u64::from(u32::MAX))?).unwrap_or(0))
        } else {
            None
        };
        let mut carried_names: Vec<(&'s str, Span)> = Vec::new();
        let mut inits = Vec::new();
        if self.eat_word("iter") {
            self.expect_punct(b'(', "after `iter`")?;
            let items = self.list(b')', "a carried value", |p| {
                let t = p.peek();
                let Tok::Value(name) = t.tok else {
                    return Err(p.expected("a carried value `%name`"));
                };
                p.bump();
                p.expect_punct(b'=', "after a carried value's name (`iter (%acc = %init)`)")?;
                let init = p.operand(scope, "the carried value's initial value")?;
                Ok(((name, Self::span_of(&t)), init))
            })?;
            for (name, init) in items {
                carried_names.push(name);
                inits.push(init);
            }
        }
        let header = Span::new(start, self.prev_end());
        let mut header_ok = !self.bad;
        let mut typed = None;
        if header_ok {
            let provisional = Op::For {
                start: start_bound,
                end,
                step,
                unroll,
                index: ValueId::from_index(0),
                carried: Vec::new(),
                inits: inits.clone(),
                body: Block::default(),
            };
            let bounds = [(start_bound, "start"), (end, "end"), (step, "step")];
            match infer::result_types(&scope.kernel, &provisional)
                .and_then(|types| infer::loop_index_dtype(&scope.kernel, &bounds).map(|d| (types, d)))
            {
                Ok(found) => typed = Some(found),
                Err(e) => {
                    self.error(e.0, header);
                    header_ok = false;
                }
            }
        }
        if header_ok && results.len() != carried_names.len() {
            let message = format!(
                "`for` carries {} (one per `iter` binding), but {} given",
                plural(carried_names.len(), "value"),
                names_given(results.len())
            );
            self.error(message, header);
            header_ok = false;
        }
        let open = self.expect_punct(b'{', "to open the loop body")?;
        scope.push_level();
        let mut loop_parts = None;
        match typed {
            Some((types, index_dtype)) if header_ok => {
                let id = scope.kernel.insts.append(InstData {
                    op: Op::Sync,
                    results: Vec::new(),
                    via: None,
                    span: Some(header),
                });
                let index =
                    self.define(scope, index_name, index_span, Type::Scalar(index_dtype), ValueDef::LoopIndex(id));
                let mut carried = Vec::with_capacity(types.len());
                for (i, (ty, &(name, span))) in types.iter().zip(&carried_names).enumerate() {
                    carried.push(self.define(scope, name, span, ty.clone(), ValueDef::LoopCarried(id, i)));
                }
                loop_parts = Some((id, index, carried, types));
            }
            _ => {
                self.claim(scope, index_name, index_span, Binding::Poisoned);
                for &(name, span) in &carried_names {
                    self.claim(scope, name, span, Binding::Poisoned);
                }
            }
        }
        let outcome = self.block_body(scope, depth + 1, Self::span_of(&open));
        let level = scope.pop_level();
        outcome?;
        let Some((id, index, carried, types)) = loop_parts else {
            self.poison(scope, results);
            return Ok(());
        };
        let close = self.last_close;
        self.check_yields(&scope.kernel, "the `for` body", &level, &types, close);
        let mut values = Vec::with_capacity(types.len());
        for (i, (ty, &(name, span))) in types.into_iter().zip(results).enumerate() {
            values.push(self.define(scope, name, span, ty, ValueDef::Result(id, i)));
        }
        if let Some(inst) = scope.kernel.insts.get_mut(id) {
            inst.op = Op::For { start: start_bound, end, step, unroll, index, carried, inits, body: level.block };
            inst.results = values;
        }
        scope.level().block.insts.push(id);
        Ok(())
    }

    fn if_statement(
        &mut self,
        scope: &mut Scope,
        results: &[(&'s str, Span)],
        start: usize,
        depth: usize,
    ) -> PResult<()> {
        let cond = self.operand(scope, "the condition of `if`")?;
        let header = Span::new(start, self.prev_end());
        let header_ok = !self.bad;
        let then_level = self.nested_block(scope, depth, "to open the `then` block of `if`")?;
        let else_level =
            if self.eat_word("else") { Some(self.nested_block(scope, depth, "after `else`")?) } else { None };
        let else_close = self.last_close;
        if !header_ok || then_level.yield_bad || else_level.as_ref().is_some_and(|l| l.yield_bad) {
            self.poison(scope, results);
            return Ok(());
        }
        let has_else = else_level.is_some();
        let else_level = else_level.unwrap_or_default();
        // The condition is checked on its own so that its error points at the header, and the
        // yields' errors at the `yield`.
        let condition_only = Op::If { cond, then_body: Block::default(), else_body: Block::default() };
        let op = Op::If { cond, then_body: then_level.block.clone(), else_body: else_level.block.clone() };
        let typed = infer::result_types(&scope.kernel, &condition_only).map_err(|e| (e, header)).and_then(|_| {
            infer::result_types(&scope.kernel, &op).map_err(|e| (e, then_level.yield_span.unwrap_or(header)))
        });
        let types = match typed {
            Ok(types) => types,
            Err((e, span)) => {
                self.error(e.0, span);
                self.poison(scope, results);
                return Ok(());
            }
        };
        let errors = self.diags.len();
        if !has_else && !types.is_empty() {
            self.error(
                format!(
                    "`if` yields {}, so it needs an `else` block that yields the same",
                    plural(types.len(), "value")
                ),
                header,
            );
        } else {
            self.check_yields(&scope.kernel, "the `else` block", &else_level, &types, else_close);
        }
        if results.len() != types.len() {
            let message = format!(
                "`if` yields {} (the values its blocks yield), but {} given",
                plural(types.len(), "value"),
                names_given(results.len())
            );
            self.error(message, header);
        }
        if self.diags.len() != errors {
            self.poison(scope, results);
            return Ok(());
        }
        let id = scope.kernel.insts.append(InstData { op, results: Vec::new(), via: None, span: Some(header) });
        let mut values = Vec::with_capacity(types.len());
        for (i, (ty, &(name, span))) in types.into_iter().zip(results).enumerate() {
            values.push(self.define(scope, name, span, ty, ValueDef::Result(id, i)));
        }
        if let Some(inst) = scope.kernel.insts.get_mut(id) {
            inst.results = values;
        }
        scope.level().block.insts.push(id);
        Ok(())
    }
}

fn count_message(mnemonic: &str, defined: usize, given: usize) -> String {
    if given == 0 {
        format!("`{mnemonic}` defines {}; name the results (`%x = {mnemonic} …`)", plural(defined, "value"))
    } else if defined == 0 {
        format!("`{mnemonic}` defines no values, but {} given", names_given(given))
    } else {
        format!("`{mnemonic}` defines {}, but {} given", plural(defined, "value"), names_given(given))
    }
}

fn names_given(n: usize) -> String {
    if n == 1 { "1 result name is".to_string() } else { format!("{n} result names are") }
}
