//! Logging on stdout, in one schema for the functions and the adapter that hosts them.
//!
//! Under Lambda, stdout goes to CloudWatch Logs; under the adapter it is passed through to the
//! container's log driver. Lambda's log controls are honoured:
//! - `AWS_LAMBDA_LOG_FORMAT`: `Text` gives plain lines; anything else (`JSON`, or unset) gives
//!   JSON lines `{"timestamp", "level", "message", <fields>...}`, the adapter's own schema too.
//! - the level comes from `RUST_LOG`, then Lambda's `AWS_LAMBDA_LOG_LEVEL`, then `info`.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. Call once, first thing in `main`; a second call is a no-op.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .and_then(|level| EnvFilter::try_new(level.to_lowercase()).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if text_format(std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref()) {
        let _ = subscriber.with_ansi(false).try_init();
    } else {
        let _ = subscriber
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .flatten_event(true)
            .try_init();
    }
}

/// Whether `AWS_LAMBDA_LOG_FORMAT` asks for text.
fn text_format(format: Option<&str>) -> bool {
    format.is_some_and(|f| f.eq_ignore_ascii_case("text"))
}

#[cfg(test)]
mod tests {
    use super::text_format;

    #[test]
    fn json_unless_text_is_asked_for() {
        assert!(text_format(Some("Text")));
        assert!(text_format(Some("TEXT")));
        assert!(!text_format(Some("JSON")));
        assert!(!text_format(None));
    }
}
