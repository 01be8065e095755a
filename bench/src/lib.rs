//! Benchmark harness for the adapter and the task service: the pieces `scripts/bench` runs.
//!
//! - [`echo`]: the echo handler of `test-functions/src/bin/echo.rs`, copied (see the module docs),
//!   so the plain-server floor and the in-process baseline run the same code the adapter hosts;
//! - [`stats`]: latency percentiles and the `bench ...` result lines;
//! - [`procfs`]: resident memory of a process tree from `/proc`;
//! - [`report`]: the tables of `BENCHMARKS.md`;
//! - [`micro`]: the Criterion benchmark of the in-process handler call.

pub mod echo;
pub mod micro;
pub mod procfs;
pub mod report;
pub mod stats;
