//! Tests of the builder (being written).
