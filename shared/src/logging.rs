//! JSON-lines logging on stdout.
//!
//! Under Lambda, stdout goes to CloudWatch Logs; under the adapter it is passed through to the
//! container's log driver. The level comes from `RUST_LOG`, then Lambda's own
//! `AWS_LAMBDA_LOG_LEVEL`, then `info`.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. Call once, first thing in `main`; a second call is a no-op.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .and_then(|level| EnvFilter::try_new(level.to_lowercase()).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .without_time()
        .try_init();
}
