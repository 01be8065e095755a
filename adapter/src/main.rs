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
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_target(false)
        .with_env_filter(
            // ADAPTER_LOG first: RUST_LOG is also the function's (it inherits the environment),
            // and a host like the LocalStack executor wants the adapter quieter than the function.
            EnvFilter::try_from_env("ADAPTER_LOG")
                .or_else(|_| EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| EnvFilter::new("info")),
        );
    // The functions' schema (shared::logging): one query reads the adapter's lines and theirs.
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text")) {
        subscriber.with_ansi(false).init();
    } else {
        subscriber
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    }
    adapter::app::run(cli).await
}
