//! In-process call of the echo handler: the baseline of the Invoke API round trip (figure 5).
//! `scripts/bench` runs the same benchmark through the `micro` binary.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main};

criterion_group!(benches, bench::micro::handler_call);
criterion_main!(benches);
