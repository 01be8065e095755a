//! End-to-end tests live in `tests/`; this crate has no code of its own.
//!
//! - `cargo_lambda_watch.rs`: the local loop under `cargo lambda watch`.
//! - `faults.rs`: the API and the worker under the adapter through kill -9, SIGTERM, a killed
//!   function process and an SQS outage; nothing accepted is lost.
//! - `burst.rs`: 1,000 tasks posted at once, every one run (alone in its file, so it runs alone).
//!
//! They start the binaries from `target/debug`: build them first (`cargo build --workspace
//! --bins`, which `scripts/test` does).
