//! A gauge counted up for as long as a value lives.

use prometheus_client::metrics::gauge::Gauge;

/// Adds one to a gauge now and takes it off when dropped, so the count stays right when the task
/// holding it is aborted or panics.
#[derive(Debug)]
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Counts one more in `gauge` until the guard drops.
    pub(crate) fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
