//! The kernel language: lexer, parser and printer (being written).
