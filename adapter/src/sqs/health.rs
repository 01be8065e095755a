//! What the SQS source shows the admin listener: readiness ([`SqsHealth`]) and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Readiness of the SQS source: "event source connected". Connected unless some receiving
/// poller's last `ReceiveMessage` call failed and none's succeeded (one failing poller is a blip).
/// A poller waiting for a free slot stops counting: with every slot busy readiness stays green,
/// rather than get a worker busy with long tasks replaced over an old error. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SqsHealth {
    succeeding: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
}

impl SqsHealth {
    /// Whether SQS answers, as far as the pollers know.
    pub fn connected(&self) -> bool {
        self.failing.load(Ordering::Relaxed) == 0 || self.succeeding.load(Ordering::Relaxed) > 0
    }

    /// A new poller's part, idle until its first call.
    pub(super) fn poller(&self) -> PollerHealth {
        PollerHealth {
            shared: self.clone(),
            last_call_ok: None,
        }
    }
}

/// One poller's part of [`SqsHealth`].
#[derive(Debug)]
pub(crate) struct PollerHealth {
    shared: SqsHealth,
    last_call_ok: Option<bool>,
}

impl PollerHealth {
    /// Records how this poller's last `ReceiveMessage` call went; `None` while it waits for a slot.
    pub(crate) fn set(&mut self, state: Option<bool>) {
        let count = |ok| match ok {
            true => &self.shared.succeeding,
            false => &self.shared.failing,
        };
        if let Some(ok) = self.last_call_ok {
            count(ok).fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(ok) = state {
            count(ok).fetch_add(1, Ordering::Relaxed);
        }
        self.last_call_ok = state;
    }
}

impl Drop for PollerHealth {
    /// A poller that stops no longer counts, either way.
    fn drop(&mut self) {
        self.set(None);
    }
}

/// Counters and gauges of the SQS source; clones share the same values.
#[derive(Debug, Clone, Default)]
pub(crate) struct SqsMetrics {
    pub(crate) received: Counter,
    pub(crate) deleted: Counter,
    pub(crate) failed: Counter,
    pub(crate) released: Counter,
    pub(crate) filtered: Counter,
    pub(crate) visibility_extensions: Counter,
    pub(crate) receive_errors: Counter,
    pub(crate) delete_errors: Counter,
    pub(crate) batches_in_flight: Gauge,
}

impl SqsMetrics {
    /// Fresh metrics, registered under `adapter_sqs_*` names (counters get `_total` from the encoder).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("adapter_sqs");
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let metrics = Self {
            received: counter("messages_received", "Messages received from the queue"),
            deleted: counter(
                "messages_deleted",
                "Messages deleted after the function succeeded with them",
            ),
            failed: counter(
                "messages_failed",
                "Messages left on the queue because the function failed with them (batch item failures or failed batches)",
            ),
            released: counter(
                "messages_released",
                "Messages made visible again at shutdown because their batch could not finish",
            ),
            filtered: counter(
                "messages_filtered",
                "Messages that matched no filter criteria, deleted without an invocation",
            ),
            visibility_extensions: counter(
                "visibility_extensions",
                "Messages whose visibility timeout was extended while their batch ran",
            ),
            receive_errors: counter("receive_errors", "ReceiveMessage calls that failed"),
            delete_errors: counter(
                "delete_errors",
                "Messages that could not be deleted after retries (they will be delivered again)",
            ),
            batches_in_flight: Gauge::default(),
        };
        registry.register(
            "batches_in_flight",
            "Batches being processed by the function now",
            metrics.batches_in_flight.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_while_any_receiving_poller_gets_through() {
        let health = SqsHealth::default();
        assert!(health.connected(), "connected before the pollers start");
        let mut first = health.poller();
        let mut second = health.poller();
        first.set(Some(false));
        second.set(Some(true));
        assert!(health.connected(), "one poller failing is a blip");
        second.set(Some(false));
        assert!(!health.connected(), "every poller failing is an outage");
        second.set(Some(true));
        assert!(health.connected());
        // The one that got through now waits for a slot: its success is old news.
        second.set(None);
        assert!(
            !health.connected(),
            "only a failing poller is still receiving"
        );
        // Waiting too: its failure is old news as well, and nobody knows better.
        first.set(None);
        assert!(
            health.connected(),
            "no receiving poller: no evidence of an outage"
        );
        first.set(Some(true));
        assert!(health.connected());
        first.set(Some(false));
        drop(first);
        assert!(health.connected(), "a stopped poller no longer counts");
        second.set(Some(false));
        assert!(!health.connected());
    }
}
