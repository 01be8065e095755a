//! Lambda's platform log lines around every invocation: `START`, `END` and `REPORT`, in Lambda's
//! text form, written to the adapter's standard output between the function's own lines.
//!
//! They are what Lambda writes into a function's log stream, so log queries written for Lambda
//! (`filter @type = "REPORT"`, a duration from `REPORT`) work on what the adapter writes too. They
//! also mark where one invocation's output ends: the function writes its lines before it posts its
//! reply, and the adapter writes `END`/`REPORT` after that reply arrives, so everything between
//! `START RequestId: X` and `REPORT RequestId: X` on one pipe belongs to invocation X when a process
//! runs one invocation at a time. The LocalStack executor (`localstack-executor/`) relies on that
//! to hand LocalStack each invocation's logs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::invocation::{Invocation, InvocationResponse, InvokeError};
use crate::output;

/// A [`tower::Layer`] that writes the platform lines around each invocation of the inner service.
#[derive(Debug, Clone, Copy)]
pub struct PlatformLogLayer {
    /// `Memory Size` in the `REPORT` line, in MB.
    pub memory_size: u32,
}

impl<S> tower::Layer<S> for PlatformLogLayer {
    type Service = PlatformLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PlatformLog {
            inner,
            memory_size: self.memory_size,
        }
    }
}

/// The service [`PlatformLogLayer`] makes.
#[derive(Debug, Clone)]
pub struct PlatformLog<S> {
    inner: S,
    memory_size: u32,
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
        let memory_size = self.memory_size;
        // The host's future does nothing until polled, so START is out before the function runs.
        let reply = self.inner.call(invocation);
        Box::pin(async move {
            write_lines(format!("START RequestId: {request_id} Version: $LATEST\n")).await;
            let started = Instant::now();
            let result = reply.await;
            let millis = started.elapsed().as_secs_f64() * 1000.0;
            let mut lines = String::new();
            if let Err(error @ (InvokeError::Timeout { .. } | InvokeError::ExitError { .. })) =
                &result
            {
                // Lambda's own line for an invocation the function never answered.
                lines.push_str(&format!(
                    "{} {request_id} {error}\n",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ));
            }
            lines.push_str(&report(&request_id, millis, memory_size));
            // After every line the function wrote before its reply.
            output::barrier().await;
            write_lines(lines).await;
            result
        })
    }
}

/// The `END` and `REPORT` lines of one invocation that took `millis` milliseconds.
fn report(request_id: &str, millis: f64, memory_size: u32) -> String {
    // Lambda bills whole milliseconds, rounded up.
    let billed = millis.ceil().max(1.0);
    format!(
        "END RequestId: {request_id}\n\
         REPORT RequestId: {request_id}\tDuration: {millis:.2} ms\tBilled Duration: {billed:.0} ms\t\
         Memory Size: {memory_size} MB\t\n"
    )
}

/// Queues whole lines on the adapter's standard output, in order with the functions' lines.
async fn write_lines(lines: String) {
    output::stdout().write(lines.into()).await;
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn report_has_lambdas_fields_and_bills_whole_milliseconds() {
        let lines = report("abc", 12.341, 256);
        assert_eq!(
            lines,
            "END RequestId: abc\nREPORT RequestId: abc\tDuration: 12.34 ms\t\
             Billed Duration: 13 ms\tMemory Size: 256 MB\t\n"
        );
        assert!(report("abc", 0.2, 128).contains("Billed Duration: 1 ms"));
    }
}
