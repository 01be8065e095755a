//! What the function host counts, in Prometheus form.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::queue::InvokeResult;
use crate::gauge::GaugeGuard;
use crate::invocation::{InvocationResponse, InvokeError};

/// Label of `invocations_total`: how an invocation ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The host's metrics; cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct HostMetrics {
    invocations: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    in_flight: Gauge,
    restarts: Counter,
    ready_processes: Gauge,
    runtime_api_refused: Counter,
}

impl HostMetrics {
    /// Creates the metrics and registers them under `adapter_`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            invocations: Family::default(),
            // 5 ms to ~20 min: covers quick HTTP calls and long tasks.
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 18)),
            in_flight: Gauge::default(),
            restarts: Counter::default(),
            ready_processes: Gauge::default(),
            runtime_api_refused: Counter::default(),
        };
        let registry = registry.sub_registry_with_prefix("adapter");
        registry.register(
            "invocations",
            "Invocations by outcome (success, function_error, timeout, exit_error, not_ready, shutting_down)",
            metrics.invocations.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Time from submitting an invocation to its result",
            metrics.duration.clone(),
        );
        registry.register(
            "invocations_in_flight",
            "Invocations submitted and not yet finished",
            metrics.in_flight.clone(),
        );
        registry.register(
            "function_restarts",
            "Function processes started again after an exit, crash or kill",
            metrics.restarts.clone(),
        );
        registry.register(
            "function_processes_ready",
            "Function processes that have called /next since they started",
            metrics.ready_processes.clone(),
        );
        registry.register(
            "runtime_api_refused_connections",
            "Connections to a Runtime API refused because they did not come from its function process",
            metrics.runtime_api_refused.clone(),
        );
        metrics
    }

    /// Counts a finished invocation.
    pub(crate) fn record(&self, result: &InvokeResult, elapsed: Duration) {
        let outcome = match result {
            Ok(InvocationResponse::Success(_)) => "success",
            Ok(InvocationResponse::FunctionError { .. }) => "function_error",
            Err(InvokeError::Timeout { .. }) => "timeout",
            Err(InvokeError::ExitError { .. }) => "exit_error",
            Err(InvokeError::NotReady) => "not_ready",
            Err(InvokeError::ShuttingDown) => "shutting_down",
        };
        self.invocations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one more invocation in flight until the guard drops.
    pub(crate) fn in_flight_guard(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }

    /// Counts a restart of a function process.
    pub(crate) fn restarted(&self) {
        self.restarts.inc();
    }

    /// The count of refused Runtime API connections, for the listeners that refuse them.
    pub(crate) fn runtime_api_refused(&self) -> Counter {
        self.runtime_api_refused.clone()
    }

    /// Sets how many processes are ready.
    pub(crate) fn set_ready_processes(&self, ready: usize) {
        self.ready_processes
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }
}
