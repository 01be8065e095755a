//! The Criterion micro-benchmark of the in-process handler call (figure 5's baseline), shared by
//! `cargo bench -p bench --bench invoke` and the `micro` binary `scripts/bench` runs.

use criterion::Criterion;

/// Name of the benchmark (and of its folder under Criterion's output directory).
pub const HANDLER_CALL: &str = "echo_handler_in_process";

/// Benchmarks one call of [`crate::echo::echo`] with [`crate::echo::sample_request`], on a
/// current-thread Tokio runtime.
pub fn handler_call(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("no Tokio runtime: {e}");
            return;
        }
    };
    c.bench_function(HANDLER_CALL, |b| {
        b.to_async(&runtime).iter(|| async {
            match crate::echo::sample_request() {
                Ok(request) => crate::echo::echo(request).await.is_ok(),
                Err(_) => false,
            }
        });
    });
}
