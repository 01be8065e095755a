//! `adapter`: see the library's documentation, or `adapter --help`.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = adapter::cli::Cli::parse();
    // The adapter's log lines go through a lossy buffer and a thread of their own: a stalled
    // reader of standard output must never block a tokio worker (health checks would stop).
    let (writer, _flush_at_exit) = adapter::output::adapter_log_writer();
    tracing_subscriber::fmt()
        .with_writer(writer)
        .json()
        .with_env_filter(
            // ADAPTER_LOG first: RUST_LOG is also the function's (it inherits the environment),
            // and a host like the LocalStack executor wants the adapter quieter than the function.
            EnvFilter::try_from_env("ADAPTER_LOG")
                .or_else(|_| EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    adapter::app::run(cli).await
}
