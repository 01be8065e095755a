//! Tiny Lambda functions the adapter's integration tests host, and the benchmarks too.
//!
//! The handlers live in this library so that every place that runs one runs the same code: the
//! `echo` binary under the adapter or `cargo lambda watch`, and the benchmarks' plain-server floor
//! and in-process baseline.

pub mod echo;
