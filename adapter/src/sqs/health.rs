//! Readiness of the SQS source, from the pollers' last receive calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Readiness of the SQS source: "event source connected".
///
/// Connected unless some receiving poller's last `ReceiveMessage` call failed and none's
/// succeeded. With several pollers, one call failing while the others get through is a blip, not
/// an outage, and readiness should not flap with it. A poller waiting for a free slot makes no
/// calls, so its last result says nothing about now: it stops counting either way until its next
/// call. (With every slot busy no poller receives, and readiness stays green: failing it would
/// get a worker busy with long tasks replaced over an old error.) Cheap to clone; the admin
/// endpoint holds one and asks [`SqsHealth::connected`] per probe.
#[derive(Debug, Clone)]
pub struct SqsHealth(Arc<HealthCounts>);

/// How many pollers are in each state (the idle ones are not counted).
#[derive(Debug, Default)]
struct HealthCounts {
    succeeding: AtomicUsize,
    failing: AtomicUsize,
}

impl SqsHealth {
    /// Connected until proven otherwise: [`SqsSource::new`] has just talked to the queue.
    pub(super) fn new_connected() -> Self {
        Self(Arc::default())
    }

    /// Whether SQS answers, as far as the pollers know.
    pub fn connected(&self) -> bool {
        self.0.failing.load(Ordering::Relaxed) == 0 || self.0.succeeding.load(Ordering::Relaxed) > 0
    }

    /// A new poller's part, idle until its first call.
    pub(super) fn poller(&self) -> PollerHealth {
        PollerHealth {
            shared: self.clone(),
            state: PollerState::Idle,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollerState {
    /// No call yet, or waiting for a slot.
    Idle,
    Succeeding,
    Failing,
}

/// One poller's part of [`SqsHealth`].
#[derive(Debug)]
pub(crate) struct PollerHealth {
    shared: SqsHealth,
    state: PollerState,
}

impl PollerHealth {
    /// Records how this poller's last `ReceiveMessage` call went.
    pub(crate) fn set(&mut self, connected: bool) {
        self.enter(if connected {
            PollerState::Succeeding
        } else {
            PollerState::Failing
        });
    }

    /// The poller waits for a free slot: its last result no longer counts.
    pub(crate) fn waiting(&mut self) {
        self.enter(PollerState::Idle);
    }

    fn enter(&mut self, state: PollerState) {
        let counts = &self.shared.0;
        let counter = |state| match state {
            PollerState::Idle => None,
            PollerState::Succeeding => Some(&counts.succeeding),
            PollerState::Failing => Some(&counts.failing),
        };
        let before = std::mem::replace(&mut self.state, state);
        if before != state {
            if let Some(count) = counter(before) {
                count.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(count) = counter(state) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for PollerHealth {
    /// A poller that stops no longer counts, either way.
    fn drop(&mut self) {
        self.enter(PollerState::Idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_while_any_receiving_poller_gets_through() {
        let health = SqsHealth::new_connected();
        assert!(health.connected(), "connected before the pollers start");
        let mut first = health.poller();
        let mut second = health.poller();
        first.set(false);
        second.set(true);
        assert!(health.connected(), "one poller failing is a blip");
        second.set(false);
        assert!(!health.connected(), "every poller failing is an outage");
        second.set(true);
        assert!(health.connected());
        // The one that got through now waits for a slot: its success is old news.
        second.waiting();
        assert!(
            !health.connected(),
            "only a failing poller is still receiving"
        );
        // Waiting too: its failure is old news as well, and nobody knows better.
        first.waiting();
        assert!(
            health.connected(),
            "no receiving poller: no evidence of an outage"
        );
        first.set(true);
        assert!(health.connected());
        first.set(false);
        drop(first);
        assert!(health.connected(), "a stopped poller no longer counts");
        second.set(false);
        assert!(!health.connected());
    }
}
