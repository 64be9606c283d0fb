//! Tests of index simplification (being written).
