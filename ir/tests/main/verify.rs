//! Tests of the verify (being written).
