//! The tokens of the kernel language.
//!
//! The whole source is split into tokens up front. Lexical problems (a stray character, a
//! malformed number) become [`Tok::Bad`] / [`Tok::BadNumber`] tokens that the parser reports
//! when it meets them, so text that the parser skips (inside a layout expression, or while
//! recovering from an earlier error) is never reported twice.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tok<'s> {
    /// `[A-Za-z_][A-Za-z0-9_]*`: keywords, mnemonics, type names, kernel and parameter names.
    Ident(&'s str),
    /// `%name` (the name without `%`).
    Value(&'s str),
    /// `@name` (the name without `@`).
    Layout(&'s str),
    /// An integer literal.
    Int(i64),
    /// A float literal (`inf` and `nan` are identifiers; `-inf` is lexed here).
    Float(f64),
    /// One of `( ) [ ] { } , : = . -`.
    Punct(u8),
    /// A number that is malformed or out of range, and why.
    BadNumber(&'static str),
    /// A character that starts no token.
    Bad,
    /// The end of the input.
    Eof,
}

/// A token with its byte range and whether it is the first token of its line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token<'s> {
    pub tok: Tok<'s>,
    pub start: usize,
    pub end: usize,
    pub line_start: bool,
}

const PUNCT: &[u8] = b"()[]{},:=.-";

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the identifier starting at `pos` (`pos` itself when there is none).
pub(crate) fn ident_end(bytes: &[u8], pos: usize) -> usize {
    if pos >= bytes.len() || !is_ident_start(bytes[pos]) {
        return pos;
    }
    let mut end = pos + 1;
    while end < bytes.len() && is_ident_char(bytes[end]) {
        end += 1;
    }
    end
}

/// Skips whitespace and `//` comments from `pos`; returns the next position and whether a
/// newline was crossed.
pub(crate) fn skip_trivia(bytes: &[u8], mut pos: usize) -> (usize, bool) {
    let mut newline = false;
    while pos < bytes.len() {
        match bytes[pos] {
            b'\n' => {
                newline = true;
                pos += 1;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => pos += 1,
            b'/' if bytes.get(pos + 1) == Some(&b'/') => {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
            }
            _ => break,
        }
    }
    (pos, newline)
}

/// Splits `src` into tokens; the last one is [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    let mut first = true;
    loop {
        let (next, newline) = skip_trivia(bytes, pos);
        pos = next;
        let line_start = first || newline;
        first = false;
        if pos >= bytes.len() {
            tokens.push(Token { tok: Tok::Eof, start: bytes.len(), end: bytes.len(), line_start });
            return tokens;
        }
        let start = pos;
        let b = bytes[pos];
        let tok = if is_ident_start(b) {
            pos = ident_end(bytes, pos);
            Tok::Ident(&src[start..pos])
        } else if b == b'%' || b == b'@' {
            let end = ident_end(bytes, pos + 1);
            if end == pos + 1 {
                pos += 1;
                // A lone `%` is the remainder sign of an assumption (`where k % 128 == 0`).
                if b == b'%' { Tok::Punct(b'%') } else { Tok::Bad }
            } else {
                pos = end;
                let name = &src[start + 1..end];
                if b == b'%' { Tok::Value(name) } else { Tok::Layout(name) }
            }
        } else if b.is_ascii_digit() || (b == b'-' && bytes.get(pos + 1).is_some_and(u8::is_ascii_digit)) {
            let (tok, end) = number(src, pos);
            pos = end;
            tok
        } else if b == b'-' && ident_end(bytes, pos + 1) == pos + 4 && &src[pos + 1..pos + 4] == "inf" {
            pos += 4;
            Tok::Float(f64::NEG_INFINITY)
        } else if PUNCT.contains(&b) {
            pos += 1;
            Tok::Punct(b)
        } else {
            // One whole character, so spans stay on character boundaries.
            let len = src[pos..].chars().next().map_or(1, char::len_utf8);
            pos += len;
            Tok::Bad
        };
        tokens.push(Token { tok, start, end: pos, line_start });
    }
}

/// Lexes the number starting at `start` (digits, or `-` and digits).
fn number(src: &str, start: usize) -> (Tok<'_>, usize) {
    let bytes = src.as_bytes();
    let digits = |mut p: usize| {
        while p < bytes.len() && bytes[p].is_ascii_digit() {
            p += 1;
        }
        p
    };
    let mut pos = start;
    if bytes[pos] == b'-' {
        pos += 1;
    }
    // A malformed number extends over the letters and digits glued to it.
    let bad = |pos: usize, why: &'static str| {
        let mut end = pos;
        while end < bytes.len() && is_ident_char(bytes[end]) {
            end += 1;
        }
        (Tok::BadNumber(why), end)
    };
    if bytes[start] == b'0' && matches!(bytes.get(start + 1), Some(b'x' | b'X')) {
        let hex_start = start + 2;
        let mut end = hex_start;
        while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
            end += 1;
        }
        if end == hex_start || bytes.get(end).is_some_and(|&b| is_ident_char(b)) {
            return bad(end, "expected hexadecimal digits after `0x`");
        }
        return match i64::from_str_radix(&src[hex_start..end], 16) {
            Ok(v) => (Tok::Int(v), end),
            Err(_) => (Tok::BadNumber("the integer does not fit in 64 bits"), end),
        };
    }
    pos = digits(pos);
    let mut is_float = false;
    if bytes.get(pos) == Some(&b'.') && bytes.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        is_float = true;
        pos = digits(pos + 1);
    }
    if matches!(bytes.get(pos), Some(b'e' | b'E')) {
        let mut p = pos + 1;
        if matches!(bytes.get(p), Some(b'+' | b'-')) {
            p += 1;
        }
        if bytes.get(p).is_some_and(u8::is_ascii_digit) {
            is_float = true;
            pos = digits(p);
        } else {
            return bad(pos, "expected digits in the exponent");
        }
    }
    if bytes.get(pos).is_some_and(|&b| is_ident_char(b)) {
        return bad(pos, "a number cannot be followed by letters");
    }
    let text = &src[start..pos];
    let tok = if is_float {
        match text.parse::<f64>() {
            Ok(v) => Tok::Float(v),
            Err(_) => Tok::BadNumber("not a valid float"),
        }
    } else {
        match text.parse::<i64>() {
            Ok(v) => Tok::Int(v),
            Err(_) => Tok::BadNumber("the integer does not fit in 64 bits"),
        }
    };
    (tok, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok<'_>> {
        lex(src).into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers() {
        assert_eq!(kinds("12 -3 0x1f"), vec![Tok::Int(12), Tok::Int(-3), Tok::Int(31), Tok::Eof]);
        assert_eq!(
            kinds("0.5 -1e-6 3.0e2 1E5"),
            vec![Tok::Float(0.5), Tok::Float(-1e-6), Tok::Float(300.0), Tok::Float(1e5), Tok::Eof]
        );
        assert_eq!(kinds("-inf inf"), vec![Tok::Float(f64::NEG_INFINITY), Tok::Ident("inf"), Tok::Eof]);
        assert!(matches!(kinds("12ab")[0], Tok::BadNumber(_)));
        assert!(matches!(kinds("99999999999999999999")[0], Tok::BadNumber(_)));
        assert!(matches!(kinds("1e")[0], Tok::BadNumber(_)));
        assert_eq!(kinds("1.x"), vec![Tok::Int(1), Tok::Punct(b'.'), Tok::Ident("x"), Tok::Eof]);
    }

    #[test]
    fn names_comments_and_lines() {
        let toks = lex("%a = @b // c\n  x $é");
        let kinds: Vec<_> = toks.iter().map(|t| t.tok).collect();
        assert_eq!(
            kinds,
            vec![Tok::Value("a"), Tok::Punct(b'='), Tok::Layout("b"), Tok::Ident("x"), Tok::Bad, Tok::Bad, Tok::Eof]
        );
        let starts: Vec<_> = toks.iter().map(|t| t.line_start).collect();
        assert_eq!(starts, vec![true, false, false, true, false, false, false]);
        assert_eq!((toks[5].start, toks[5].end), (18, 20));
    }
}
