//! Source spans and diagnostics: what went wrong, and where in which file.
//!
//! The parser and the verifier report problems as [`Diagnostic`]s, each with the [`Span`] (byte
//! range in the source text) of the construct at fault when there is one. A [`SourceFile`]
//! renders them the way compilers do:
//!
//! ```text
//! error: `dot` operand shapes do not agree: a is [16, 32], b is [16, 8]
//!   --> examples/matmul.abk:12:9
//!    |
//! 12 |     %d = dot %a, %b, %c
//!    |          ^^^^^^^^^^^^^^
//! ```

use std::fmt;

/// A byte range `[start, end)` in a source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The range `[start, end)`.
    pub fn new(start: usize, end: usize) -> Span {
        let clamp = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        Span { start: clamp(start), end: clamp(end.max(start)) }
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The input is rejected.
    Error,
    /// The input is accepted, but probably not what was meant.
    Warning,
}

/// A problem found in a program, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one line.
    pub message: String,
    /// Where, when known.
    pub span: Option<Span>,
    /// Further lines: what was expected, where something else was defined, …
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(message: impl Into<String>, span: Option<Span>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, message: message.into(), span, notes: Vec::new() }
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.message)?;
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// Several diagnostics, at least one of them an error: what fallible front-end steps return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A source text with its name, for rendering diagnostics with line, column and snippet.
#[derive(Clone, Debug)]
pub struct SourceFile<'a> {
    name: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceFile<'a> {
    /// `text`, read from the file called `name`.
    pub fn new(name: &'a str, text: &'a str) -> SourceFile<'a> {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceFile { name, text, line_starts }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    fn line_text(&self, line: usize) -> &'a str {
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).map_or(self.text.len(), |&next| next - 1);
        self.text.get(start..end).unwrap_or("").trim_end_matches('\r')
    }

    /// `name:line:col` of a span's start.
    pub fn location(&self, span: Span) -> String {
        let (line, col) = self.line_col(span.start as usize);
        format!("{}:{line}:{col}", self.name)
    }

    /// The diagnostic with its location and a caret snippet under the span's first line.
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let label = match diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{label}: {}", diagnostic.message);
        match diagnostic.span {
            Some(span) => {
                let (line, col) = self.line_col(span.start as usize);
                let (end_line, end_col) = self.line_col(span.end as usize);
                let text = self.line_text(line);
                let width = if end_line == line { end_col.saturating_sub(col).max(1) } else { 1 };
                let gutter = line.to_string().len();
                let pad: String = text.chars().take(col - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                out.push_str(&format!("\n{:gutter$}--> {}:{line}:{col}", "", self.name));
                out.push_str(&format!("\n{:gutter$} |", ""));
                out.push_str(&format!("\n{line} | {text}"));
                out.push_str(&format!("\n{:gutter$} | {pad}{}", "", "^".repeat(width)));
            }
            None => out.push_str(&format!("\n  --> {}", self.name)),
        }
        for note in &diagnostic.notes {
            out.push_str(&format!("\n  = note: {note}"));
        }
        out
    }

    /// Every diagnostic rendered, separated by blank lines.
    pub fn render_all(&self, diagnostics: &[Diagnostic]) -> String {
        diagnostics.iter().map(|d| self.render(d)).collect::<Vec<_>>().join("\n\n")
    }

    /// The report of a rejected file, as tools print it: every diagnostic by position, then
    /// `N errors in NAME`. The first line's `error: ` is left out, for the caller's error type
    /// to add.
    pub fn report(&self, mut diagnostics: Vec<Diagnostic>) -> String {
        diagnostics.sort_by_key(|d| d.span.map_or(u32::MAX, |s| s.start));
        let count = diagnostics.len();
        format!(
            "{}\n\n{count} error{} in {}",
            self.render_all(&diagnostics).trim_start_matches("error: "),
            if count == 1 { "" } else { "s" },
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_and_caret() {
        let file = SourceFile::new("k.abk", "kernel k() {\n  %x = bad\n}\n");
        let d = Diagnostic::error("unknown instruction `bad`", Some(Span::new(20, 23)))
            .with_note("expected an instruction");
        assert_eq!(
            file.render(&d),
            "error: unknown instruction `bad`\n --> k.abk:2:8\n  |\n2 |   %x = bad\n  |        ^^^\n  = note: expected an instruction"
        );
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(1000), (4, 1));
    }
}
