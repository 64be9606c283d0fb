//! Tests of the interp (being written).
