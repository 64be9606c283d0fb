//! Tests of the text (being written).
