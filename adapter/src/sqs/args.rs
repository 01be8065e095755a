//! The flags of `adapter sqs`, Lambda's event source mapping settings.

use std::sync::Arc;

use super::{MAX_PER_RECEIVE, SqsError};
use crate::event_filter::FilterCriteria;

/// Flags of `adapter sqs`. Each has an `ADAPTER_*` environment equivalent for ECS task definitions.
#[derive(clap::Args, Debug, Clone)]
pub struct SqsArgs {
    /// URL of the queue to consume (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
    /// Without the flag and `ADAPTER_QUEUE_URL`, the functions' own `QUEUE_URL` is used.
    #[arg(long, env = "ADAPTER_QUEUE_URL", hide_default_value = true,
          default_value_t = std::env::var("QUEUE_URL").unwrap_or_default())]
    pub queue_url: String,

    /// Most messages per invocation (Lambda's `BatchSize`). Above 10 needs a batching window of at
    /// least 1 second, as in Lambda.
    #[arg(long, env = "ADAPTER_BATCH_SIZE", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,

    /// Seconds to keep gathering messages before invoking (Lambda's
    /// `MaximumBatchingWindowInSeconds`); 0 invokes with what one receive call returns.
    #[arg(long, env = "ADAPTER_BATCHING_WINDOW", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=300))]
    pub batching_window: u16,

    /// Read `batchItemFailures` from the function's reply (Lambda's `ReportBatchItemFailures`).
    /// When false, any successful invocation deletes the whole batch.
    #[arg(long, env = "ADAPTER_REPORT_BATCH_ITEM_FAILURES", default_value_t = true,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub report_batch_item_failures: bool,

    /// Extend a running batch's visibility when less than this fraction of the queue's visibility
    /// timeout is left since the last extension (0.5: extend at half-time).
    #[arg(long, env = "ADAPTER_VISIBILITY_EXTENSION_MARGIN", default_value_t = 0.5,
          value_parser = parse_fraction)]
    pub visibility_extension_margin: f64,

    /// Receive loops polling the queue at once (Lambda's pollers). Unset: enough to fill the free
    /// concurrency at 10 messages a call, 1 to 5. Each idle one costs a long poll every 20 s.
    #[arg(long, env = "ADAPTER_POLLERS",
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub pollers: Option<u16>,

    /// Lambda's `FilterCriteria` as JSON (`{"Filters": [{"Pattern": "..."}]}`): messages that
    /// match no filter are deleted unrun. Checked at start; an invalid one stops the adapter.
    #[arg(long, env = "ADAPTER_FILTER_CRITERIA", value_name = "JSON",
          value_parser = parse_filter_criteria)]
    pub filter_criteria: Option<Arc<FilterCriteria>>,
}

impl SqsArgs {
    /// Receive loops for `max_concurrency` slots: `--pollers`, or enough that one round of receive
    /// calls fills every slot (at most [`AUTO_POLLERS_MAX`]); never more than slots.
    pub fn poller_count(&self, max_concurrency: usize) -> usize {
        let slots = max_concurrency.max(1);
        let wanted = match self.pollers {
            Some(pollers) => usize::from(pollers),
            None => (slots * usize::from(self.batch_size))
                .div_ceil(MAX_PER_RECEIVE)
                .clamp(1, AUTO_POLLERS_MAX),
        };
        wanted.min(slots)
    }

    /// Lambda's rules for the flags, on a FIFO queue or not (before the queue is known: not).
    pub(super) fn check(&self, fifo: bool) -> Result<(), SqsError> {
        let size = self.batch_size;
        let problem = if self.queue_url.is_empty() {
            "no queue: give --queue-url, ADAPTER_QUEUE_URL or QUEUE_URL".to_owned()
        } else if size > 10 && self.batching_window == 0 {
            format!(
                "--batch-size {size} needs --batching-window of at least 1 second (a batch above 10 messages is gathered over several receive calls)"
            )
        } else if fifo && size > 10 {
            format!("--batch-size {size} is too large for a FIFO queue: at most 10 (Lambda's rule)")
        } else if fifo && self.batching_window > 0 {
            "--batching-window is not supported for FIFO queues (Lambda's rule); leave it at 0"
                .to_owned()
        } else {
            return Ok(());
        };
        Err(SqsError::Config(problem))
    }
}

/// Most receive loops started without `--pollers`.
pub const AUTO_POLLERS_MAX: usize = 5;

fn parse_filter_criteria(s: &str) -> Result<Arc<FilterCriteria>, String> {
    let criteria = FilterCriteria::parse(s).map_err(|e| e.to_string())?;
    Ok(Arc::new(criteria))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s.parse().map_err(|e| format!("{e}"))?;
    let strictly_between = value > 0.0 && value < 1.0;
    let error = || format!("{value} is not strictly between 0 and 1");
    strictly_between.then_some(value).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sqs: SqsArgs,
    }

    fn parse(args: &[&str]) -> Result<SqsArgs, clap::Error> {
        let argv = ["adapter", "--queue-url", "http://q"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| cli.sqs)
    }

    #[test]
    fn defaults_are_lambdas() {
        let args = parse(&[]).expect("parses");
        assert_eq!(args.batch_size, 10);
        assert_eq!(args.batching_window, 0);
        assert!(args.report_batch_item_failures);
        assert!((args.visibility_extension_margin - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn report_batch_item_failures_takes_an_optional_value() {
        let flag = |v: &[&str]| parse(v).expect("parses").report_batch_item_failures;
        assert!(!flag(&["--report-batch-item-failures=false"]));
        assert!(flag(&["--report-batch-item-failures=true"]));
        assert!(flag(&["--report-batch-item-failures"]));
        assert!(parse(&["--report-batch-item-failures=maybe"]).is_err());
    }

    #[test]
    fn ranges_are_lambdas() {
        assert!(parse(&["--batch-size", "10000"]).is_ok());
        assert!(parse(&["--batch-size", "0"]).is_err());
        assert!(parse(&["--batch-size", "10001"]).is_err());
        assert!(parse(&["--batching-window", "300"]).is_ok());
        assert!(parse(&["--batching-window", "301"]).is_err());
        assert!(parse(&["--visibility-extension-margin", "1"]).is_err());
        assert!(parse(&["--visibility-extension-margin", "0.25"]).is_ok());
    }

    #[test]
    fn pollers_fill_the_free_slots_up_to_five() {
        let count =
            |flags: &[&str], concurrency| parse(flags).expect("parses").poller_count(concurrency);
        assert_eq!(count(&["--batch-size", "1"], 10), 1);
        assert_eq!(count(&["--batch-size", "1"], 11), 2);
        assert_eq!(count(&["--batch-size", "1"], 1000), AUTO_POLLERS_MAX);
        assert_eq!(count(&["--batch-size", "10"], 3), 3);
        // A poller holds a slot while it polls: never more pollers than slots.
        assert_eq!(count(&["--pollers", "8"], 2), 2);
        assert_eq!(count(&["--pollers", "8"], 100), 8);
        assert!(parse(&["--pollers", "0"]).is_err());
    }

    #[test]
    fn filter_criteria_are_checked_when_parsed() {
        let criteria = r#"{"Filters": [{"Pattern": "{\"body\": {\"kind\": [\"a\"]}}"}]}"#;
        let args = parse(&["--filter-criteria", criteria]).expect("parses");
        assert!(args.filter_criteria.is_some_and(|f| !f.is_empty()));
        let error = parse(&[
            "--filter-criteria",
            r#"{"Filters": [{"Pattern": "{\"a\": 1}"}]}"#,
        ])
        .expect_err("a rule must be an array")
        .to_string();
        assert!(error.contains("filter 0: `a` must be an array"), "{error}");
    }
}
