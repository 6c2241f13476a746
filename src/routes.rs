//! Route matching and path normalization: pure functions, compiled once at config load.
