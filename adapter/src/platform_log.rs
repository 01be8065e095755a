//! Lambda's platform log lines around every invocation, written to the adapter's standard output
//! between the function's own lines: `START`, `END` and `REPORT` in Lambda's text form, or
//! `platform.start` and `platform.report` records when `AWS_LAMBDA_LOG_FORMAT=JSON`, as Lambda
//! writes them with JSON logging on.
//!
//! They are what Lambda writes into a function's log stream, so log queries written for Lambda
//! (`filter @type = "REPORT"`, a duration from `REPORT`) work on what the adapter writes too. They
//! also mark where one invocation's output ends: the function writes its lines before it posts its
//! reply, and the adapter writes `END`/`REPORT` after that reply arrives, so everything between
//! `START RequestId: X` and `REPORT RequestId: X` on one pipe belongs to invocation X when a process
//! runs one invocation at a time. The LocalStack executor (`localstack-executor/`) relies on that
//! to hand LocalStack each invocation's logs.
//!
//! `Max Memory Used` is, as on Lambda, the peak over the execution environment's life: the
//! largest peak resident set (`VmHWM`) of the function processes. `Init Duration` (spawn to the
//! first `/next`) goes on the next report after a process comes up: exact with one process, one
//! report per new process with several.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::invocation::{Invocation, InvocationResponse, InvokeError};
use crate::output;

/// A [`tower::Layer`] that writes the platform lines around each invocation of the inner service.
#[derive(Debug, Clone, Copy)]
pub struct PlatformLogLayer {
    /// `Memory Size` in the `REPORT` line, in MB.
    pub memory_size: u32,
    /// Text lines or JSON records.
    pub format: LogFormat,
}

/// Lambda's `AWS_LAMBDA_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `START RequestId: …` lines (Lambda's default).
    Text,
    /// `{"time", "type": "platform.start", "record"}` records.
    Json,
}

impl LogFormat {
    /// The format `AWS_LAMBDA_LOG_FORMAT` asks for: `JSON` (any case) or text.
    pub fn from_env() -> Self {
        match std::env::var("AWS_LAMBDA_LOG_FORMAT") {
            Ok(format) if format.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// Init durations of processes that came up, waiting for a report to carry them. Bounded: without
/// `--platform-logs` nothing takes them.
static INIT_DURATIONS: Mutex<VecDeque<Duration>> = Mutex::new(VecDeque::new());

/// Records that a function process took `duration` from its spawn to its first `/next`.
pub(crate) fn record_init(duration: Duration) {
    let mut pending = INIT_DURATIONS.lock().unwrap_or_else(|e| e.into_inner());
    if pending.len() >= 64 {
        pending.pop_front();
    }
    pending.push_back(duration);
}

fn take_init() -> Option<Duration> {
    INIT_DURATIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front()
}

impl<S> tower::Layer<S> for PlatformLogLayer {
    type Service = PlatformLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PlatformLog {
            inner,
            memory_size: self.memory_size,
            format: self.format,
        }
    }
}

/// The service [`PlatformLogLayer`] makes.
#[derive(Debug, Clone)]
pub struct PlatformLog<S> {
    inner: S,
    memory_size: u32,
    format: LogFormat,
}

impl<S> tower::Service<Invocation> for PlatformLog<S>
where
    S: tower::Service<Invocation, Response = InvocationResponse, Error = InvokeError>,
    S::Future: Send + 'static,
{
    type Response = InvocationResponse;
    type Error = InvokeError;
    type Future =
        Pin<Box<dyn Future<Output = Result<InvocationResponse, InvokeError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), InvokeError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        let request_id = invocation.request_id.clone();
        let trace_id = invocation.trace_id.clone();
        let memory_size = self.memory_size;
        let format = self.format;
        // The host's future does nothing until polled, so START is out before the function runs.
        let reply = self.inner.call(invocation);
        Box::pin(async move {
            write_lines(start(format, &request_id, trace_id.as_deref())).await;
            let started = Instant::now();
            let result = reply.await;
            let report = Report {
                request_id: &request_id,
                millis: started.elapsed().as_secs_f64() * 1000.0,
                memory_size,
                max_memory_used: crate::memory::function_peak_mb(),
                init: take_init(),
                outcome: match &result {
                    Ok(InvocationResponse::Success(_)) => Outcome::Success,
                    Ok(InvocationResponse::FunctionError { .. }) => Outcome::Error,
                    Err(error @ (InvokeError::Timeout { .. } | InvokeError::ExitError { .. })) => {
                        Outcome::Failed(
                            error.to_string(),
                            matches!(error, InvokeError::Timeout { .. }),
                        )
                    }
                    Err(_) => Outcome::Error,
                },
            };
            let lines = match format {
                LogFormat::Text => report.text(),
                LogFormat::Json => report.json(),
            };
            // After every line the function wrote before its reply.
            output::barrier().await;
            write_lines(lines).await;
            result
        })
    }
}

/// The line that opens an invocation.
fn start(format: LogFormat, request_id: &str, trace_id: Option<&str>) -> String {
    match format {
        LogFormat::Text => format!("START RequestId: {request_id} Version: $LATEST\n"),
        LogFormat::Json => {
            let mut record = json!({"requestId": request_id, "version": "$LATEST"});
            if let Some(trace) = trace_id {
                record["tracing"] = json!({"type": "X-Amzn-Trace-Id", "value": trace});
            }
            format!(
                "{}\n",
                json!({"time": now(), "type": "platform.start", "record": record})
            )
        }
    }
}

/// How an invocation ended, as the report says it.
enum Outcome {
    Success,
    /// The function replied with an error.
    Error,
    /// The function never replied: why, and whether it was the timeout.
    Failed(String, bool),
}

/// What the closing lines of one invocation say.
struct Report<'a> {
    request_id: &'a str,
    millis: f64,
    memory_size: u32,
    max_memory_used: Option<u64>,
    init: Option<Duration>,
    outcome: Outcome,
}

impl Report<'_> {
    /// Lambda bills whole milliseconds, rounded up.
    fn billed(&self) -> f64 {
        self.millis.ceil().max(1.0)
    }

    /// `END` and `REPORT`, after Lambda's own line for an invocation the function never answered.
    fn text(&self) -> String {
        let Self {
            request_id,
            millis,
            memory_size,
            ..
        } = self;
        let mut lines = String::new();
        if let Outcome::Failed(reason, _) = &self.outcome {
            lines.push_str(&format!("{} {request_id} {reason}\n", now()));
        }
        lines.push_str(&format!(
            "END RequestId: {request_id}\n\
             REPORT RequestId: {request_id}\tDuration: {millis:.2} ms\tBilled Duration: {:.0} ms\t\
             Memory Size: {memory_size} MB\t",
            self.billed()
        ));
        if let Some(used) = self.max_memory_used {
            lines.push_str(&format!("Max Memory Used: {used} MB\t"));
        }
        if let Some(init) = self.init {
            lines.push_str(&format!(
                "Init Duration: {:.2} ms\t",
                init.as_secs_f64() * 1000.0
            ));
        }
        lines.push('\n');
        lines
    }

    /// A `platform.report` record.
    fn json(&self) -> String {
        let mut metrics = json!({
            "durationMs": (self.millis * 100.0).round() / 100.0,
            "billedDurationMs": self.billed() as u64,
            "memorySizeMB": self.memory_size,
        });
        if let Some(used) = self.max_memory_used {
            metrics["maxMemoryUsedMB"] = json!(used);
        }
        if let Some(init) = self.init {
            metrics["initDurationMs"] = json!((init.as_secs_f64() * 100_000.0).round() / 100.0);
        }
        let mut record = json!({"requestId": self.request_id, "metrics": metrics});
        match &self.outcome {
            Outcome::Success => record["status"] = json!("success"),
            Outcome::Error => record["status"] = json!("error"),
            Outcome::Failed(reason, timeout) => {
                record["status"] = json!(if *timeout { "timeout" } else { "error" });
                record["errorType"] = json!(reason);
            }
        }
        format!(
            "{}\n",
            json!({"time": now(), "type": "platform.report", "record": record})
        )
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Queues whole lines on the adapter's standard output, in order with the functions' lines.
async fn write_lines(lines: String) {
    output::stdout().write(lines.into()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(millis: f64, outcome: Outcome) -> Report<'static> {
        Report {
            request_id: "abc",
            millis,
            memory_size: 256,
            max_memory_used: Some(21),
            init: None,
            outcome,
        }
    }

    #[test]
    fn report_has_lambdas_fields_and_bills_whole_milliseconds() {
        assert_eq!(
            report(12.341, Outcome::Success).text(),
            "END RequestId: abc\nREPORT RequestId: abc\tDuration: 12.34 ms\t\
             Billed Duration: 13 ms\tMemory Size: 256 MB\tMax Memory Used: 21 MB\t\n"
        );
        assert!(
            report(0.2, Outcome::Success)
                .text()
                .contains("Billed Duration: 1 ms")
        );
        let first = Report {
            init: Some(Duration::from_micros(45_678)),
            ..report(1.0, Outcome::Success)
        };
        assert!(
            first
                .text()
                .ends_with("Max Memory Used: 21 MB\tInit Duration: 45.68 ms\t\n")
        );
    }

    #[test]
    fn json_records_follow_lambdas_schema() {
        let start: serde_json::Value =
            serde_json::from_str(&start(LogFormat::Json, "abc", Some("Root=1-a"))).unwrap();
        assert_eq!(start["type"], "platform.start");
        assert_eq!(start["record"]["requestId"], "abc");
        assert_eq!(start["record"]["tracing"]["value"], "Root=1-a");

        let timed_out = Report {
            init: Some(Duration::from_millis(40)),
            ..report(
                3000.5,
                Outcome::Failed("Task timed out after 3.00 seconds".into(), true),
            )
        };
        let record: serde_json::Value = serde_json::from_str(&timed_out.json()).unwrap();
        assert_eq!(record["type"], "platform.report");
        assert_eq!(record["record"]["status"], "timeout");
        let metrics = &record["record"]["metrics"];
        assert_eq!(metrics["durationMs"], 3000.5);
        assert_eq!(metrics["billedDurationMs"], 3001);
        assert_eq!(metrics["memorySizeMB"], 256);
        assert_eq!(metrics["maxMemoryUsedMB"], 21);
        assert_eq!(metrics["initDurationMs"], 40.0);
    }
}
