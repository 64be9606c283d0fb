//! Tests of layout inference (being written).
