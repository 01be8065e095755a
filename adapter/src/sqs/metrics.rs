//! Prometheus metrics of the SQS source.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
        let metrics = Self::default();
        let counters = [
            (
                "adapter_sqs_messages_received",
                "Messages received from the queue",
                &metrics.received,
            ),
            (
                "adapter_sqs_messages_deleted",
                "Messages deleted after the function succeeded with them",
                &metrics.deleted,
            ),
            (
                "adapter_sqs_messages_failed",
                "Messages left on the queue because the function failed with them (batch item failures or failed batches)",
                &metrics.failed,
            ),
            (
                "adapter_sqs_messages_released",
                "Messages made visible again at shutdown because their batch could not finish",
                &metrics.released,
            ),
            (
                "adapter_sqs_messages_filtered",
                "Messages that matched no filter criteria, deleted without an invocation",
                &metrics.filtered,
            ),
            (
                "adapter_sqs_visibility_extensions",
                "Messages whose visibility timeout was extended while their batch ran",
                &metrics.visibility_extensions,
            ),
            (
                "adapter_sqs_receive_errors",
                "ReceiveMessage calls that failed",
                &metrics.receive_errors,
            ),
            (
                "adapter_sqs_delete_errors",
                "Messages that could not be deleted after retries (they will be delivered again)",
                &metrics.delete_errors,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "adapter_sqs_batches_in_flight",
            "Batches being processed by the function now",
            metrics.batches_in_flight.clone(),
        );
        metrics
    }
}
