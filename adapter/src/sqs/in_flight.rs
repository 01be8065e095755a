//! The messages received and not yet settled ([`InFlightMessages`]), and the keeper that keeps
//! them invisible while they are gathered and processed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{QueueClient, Receipt};
use super::health::SqsMetrics;
use crate::lock::lock;

/// When and how far to extend visibility, derived from the queue's visibility timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisibilityPolicy {
    /// Extend once this long has passed since the receive.
    pub first_after: Duration,
    /// Extend again once this long has passed since the last extension.
    pub extend_after: Duration,
    /// The visibility timeout each extension sets, counted from the extension.
    pub extend_to: Duration,
    /// How often the keeper looks for messages due for extension.
    pub tick: Duration,
}

impl VisibilityPolicy {
    /// The policy for a queue whose visibility timeout is `queue_timeout`, extending when less
    /// than `margin` (0..1) of it is left.
    pub fn new(queue_timeout: Duration, margin: f64) -> Self {
        // SQS counts whole seconds; at least 2 s, so a 0 or 1 s queue still has room for the call.
        let extend_to = Duration::from_secs(queue_timeout.as_secs().max(2));
        let share = (1.0 - margin).clamp(0.05, 0.95);
        let extend_after = extend_to.mul_f64(share);
        // The receive set the queue's timeout, not `extend_to` (a 1 s queue: extend at 0.5 s).
        let first_after = queue_timeout.min(extend_to).mul_f64(share);
        // Often enough that an extension lands before the message reappears, whatever the margin.
        let slack = (queue_timeout.min(extend_to) - first_after).min(extend_to - extend_after);
        let tick = (slack / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        Self {
            first_after,
            extend_after,
            extend_to,
            tick,
        }
    }

    /// How long a message may be kept invisible once its invocation is handed to the host: the
    /// wait for a process, the run, and one extension's worth for the delete.
    pub fn hold(&self, invocation_timeout: Duration) -> Duration {
        wait_for_process(invocation_timeout) + invocation_timeout + self.extend_to
    }
}

/// How long a batch may wait for a function process (one restarting after a crash) before it
/// fails: at least 30 s, as the `sqs` module docs explain.
pub(crate) fn wait_for_process(invocation_timeout: Duration) -> Duration {
    invocation_timeout.max(Duration::from_secs(30))
}

#[derive(Debug)]
struct Entry {
    receipt: Receipt,
    due_at: Instant,
    hold_until: Instant,
}

/// The messages received and not yet settled: registered by the pollers, held and unregistered
/// by the batches, extended by the keeper, drained for release at shutdown. One entry per message
/// id, for its latest receipt handle (a change for an older delivery changes nothing), extended
/// only while `now < hold_until`, so a stuck batch hides it for a bounded time.
#[derive(Debug, Clone)]
pub struct InFlightMessages {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    max_hold: Duration,
    policy: VisibilityPolicy,
}

impl InFlightMessages {
    /// An empty registry; no message is extended more than `max_hold` after it was tracked.
    pub fn new(max_hold: Duration, policy: VisibilityPolicy) -> Self {
        Self {
            entries: Arc::default(),
            max_hold,
            policy,
        }
    }

    /// Applies `f` to the entries whose registered delivery is one of `receipts`.
    fn update<'a>(&self, receipts: impl IntoIterator<Item = &'a Receipt>, f: impl Fn(&mut Entry)) {
        let mut entries = lock(&self.entries);
        for receipt in receipts {
            if let Some(entry) = entries.get_mut(&receipt.message_id)
                && entry.receipt == *receipt
            {
                f(entry);
            }
        }
    }

    /// Starts tracking messages received at `received_at`.
    pub fn track<'a>(&self, receipts: impl IntoIterator<Item = &'a Receipt>, received_at: Instant) {
        let mut entries = lock(&self.entries);
        for receipt in receipts {
            let entry = Entry {
                receipt: receipt.clone(),
                due_at: received_at + self.policy.first_after,
                hold_until: received_at + self.max_hold,
            };
            entries.insert(receipt.message_id.clone(), entry);
        }
    }

    /// Stops tracking settled messages; a newer delivery of one stays tracked.
    pub fn untrack<'a>(&self, receipts: impl IntoIterator<Item = &'a Receipt>) {
        let mut entries = lock(&self.entries);
        for receipt in receipts {
            let tracked = entries.get(&receipt.message_id);
            if tracked.is_some_and(|e| e.receipt == *receipt) {
                entries.remove(&receipt.message_id);
            }
        }
    }

    /// Lets these messages be extended for `hold` from now (when their invocation starts).
    pub fn hold_for<'a>(&self, receipts: impl IntoIterator<Item = &'a Receipt>, hold: Duration) {
        let until = Instant::now() + hold;
        self.update(receipts, |entry| entry.hold_until = until);
    }

    /// No longer extends these messages (SQS refused them for good), though they stay tracked.
    pub fn stop_extending<'a>(&self, receipts: impl IntoIterator<Item = &'a Receipt>, at: Instant) {
        self.update(receipts, |e| e.hold_until = e.hold_until.min(at));
    }

    /// Tracked messages due for extension at `now`, within their hold.
    pub fn due(&self, now: Instant) -> Vec<Receipt> {
        let due = |e: &Entry| (now >= e.due_at && now < e.hold_until).then(|| e.receipt.clone());
        lock(&self.entries).values().filter_map(due).collect()
    }

    /// Records that these messages were extended at `at` (untracked ones are skipped).
    pub fn mark_extended<'a>(&self, message_ids: impl IntoIterator<Item = &'a str>, at: Instant) {
        let mut entries = lock(&self.entries);
        for id in message_ids {
            if let Some(entry) = entries.get_mut(id) {
                entry.due_at = at + self.policy.extend_after;
            }
        }
    }

    /// Removes and returns every tracked message.
    pub fn drain(&self) -> Vec<Receipt> {
        let mut entries = lock(&self.entries);
        entries.drain().map(|(_, e)| e.receipt).collect()
    }

    /// The keeper task: extends due messages until `stop` fires.
    pub(crate) async fn keep_visible(
        self,
        queue: QueueClient,
        metrics: SqsMetrics,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(self.policy.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = Instant::now();
            let due = self.due(now);
            if due.is_empty() {
                continue;
            }
            // Stopping mid-call is fine (idempotent calls); one try: what fails is due next tick.
            let report = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                report = queue.change_visibility(&due, self.policy.extend_to, 1) => report,
            };
            self.mark_extended(report.done.iter().map(String::as_str), now);
            // Refused for good (settled or delivered again): asking again only adds calls.
            self.stop_extending(&report.rejected, now);
            let extended = report.done.len();
            metrics.visibility_extensions.inc_by(extended as u64);
            tracing::debug!(extended, "extended visibility");
            let refused: HashSet<&str> = report.rejected.iter().map(|r| &*r.message_id).collect();
            for (message_id, reason) in &report.failed {
                // A refusal is a message settled meanwhile; all failing is SQS out of reach.
                if extended == 0 && !refused.contains(message_id.as_str()) {
                    tracing::warn!(%message_id, %reason, "could not extend visibility");
                } else {
                    tracing::debug!(%message_id, %reason, "could not extend visibility");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(id: &str) -> Receipt {
        Receipt {
            message_id: id.into(),
            receipt_handle: format!("handle-{id}"),
        }
    }

    #[test]
    fn policy_extends_at_half_time_to_the_queue_timeout() {
        let policy = VisibilityPolicy::new(Duration::from_secs(30), 0.5);
        assert_eq!(policy.extend_to, Duration::from_secs(30));
        assert_eq!(policy.first_after, Duration::from_secs(15));
        assert_eq!(policy.extend_after, Duration::from_secs(15));
        assert!(policy.tick < policy.extend_after);
        // A small margin leaves little slack: the keeper looks more often.
        let tight = VisibilityPolicy::new(Duration::from_secs(30), 0.1);
        assert_eq!(tight.first_after, Duration::from_secs(27));
        assert!(tight.tick <= Duration::from_millis(750), "{:?}", tight.tick);
        // A tiny queue timeout still leaves room for the call itself, and the first extension
        // comes before the receive's own timeout runs out.
        let one = VisibilityPolicy::new(Duration::from_secs(1), 0.5);
        assert_eq!(one.extend_to, Duration::from_secs(2));
        assert_eq!(one.first_after, Duration::from_millis(500));
        assert!(one.tick < one.first_after && one.extend_after < one.extend_to);
        let zero = VisibilityPolicy::new(Duration::ZERO, 0.5);
        assert_eq!(
            zero.first_after,
            Duration::ZERO,
            "extended at the first tick"
        );
    }

    #[test]
    fn due_selects_stale_untracked_are_gone_and_hold_is_bounded() {
        let start = Instant::now();
        let policy = VisibilityPolicy::new(Duration::from_secs(30), 0.5);
        let in_flight = InFlightMessages::new(Duration::from_secs(100), policy);
        in_flight.track(&[receipt("a"), receipt("b")], start);
        in_flight.track(&[receipt("c")], start + Duration::from_secs(10));
        let at = |s| start + Duration::from_secs(s);
        let ids = |mut v: Vec<Receipt>| {
            v.sort_by(|x, y| x.message_id.cmp(&y.message_id));
            v.into_iter().map(|r| r.message_id).collect::<Vec<_>>()
        };

        assert!(in_flight.due(at(14)).is_empty());
        assert_eq!(ids(in_flight.due(at(15))), ["a", "b"]);
        in_flight.mark_extended(["a"], at(15));
        in_flight.untrack(&[Receipt {
            message_id: "b".into(),
            receipt_handle: "stale".into(),
        }]);
        assert_eq!(
            ids(in_flight.due(at(15))),
            ["b"],
            "a stale receipt untracks nothing; a was just extended"
        );
        in_flight.untrack(&[receipt("b")]);
        assert_eq!(ids(in_flight.due(at(25))), ["c"]);
        assert_eq!(ids(in_flight.due(at(30))), ["a", "c"]);
        // Past its hold a message is no longer extended, but still released at shutdown.
        assert_eq!(ids(in_flight.due(at(105))), ["c"]);
        assert_eq!(ids(in_flight.drain()), ["a", "c"]);
        assert!(in_flight.drain().is_empty());
    }

    #[test]
    fn a_message_from_a_one_second_queue_is_due_before_it_reappears() {
        let start = Instant::now();
        let policy = VisibilityPolicy::new(Duration::from_secs(1), 0.5);
        let in_flight = InFlightMessages::new(Duration::from_secs(100), policy);
        in_flight.track(&[receipt("a")], start);
        assert!(in_flight.due(start + Duration::from_millis(400)).is_empty());
        assert_eq!(in_flight.due(start + Duration::from_millis(500)).len(), 1);
        // Extended to 2 s: due again after 1 s.
        in_flight.mark_extended(["a"], start + Duration::from_millis(500));
        assert!(
            in_flight
                .due(start + Duration::from_millis(1_400))
                .is_empty()
        );
        assert_eq!(in_flight.due(start + Duration::from_millis(1_500)).len(), 1);
    }

    #[test]
    fn a_refused_message_is_no_longer_extended_but_still_tracked() {
        let start = Instant::now();
        let policy = VisibilityPolicy::new(Duration::from_secs(30), 0.5);
        let in_flight = InFlightMessages::new(Duration::from_secs(100), policy);
        in_flight.track(&[receipt("a"), receipt("b")], start);
        let stale = Receipt {
            message_id: "b".into(),
            receipt_handle: "an older delivery".into(),
        };
        in_flight.stop_extending(&[receipt("a"), stale], start + Duration::from_secs(1));
        let due: Vec<_> = in_flight
            .due(start + Duration::from_secs(15))
            .into_iter()
            .map(|r| r.message_id)
            .collect();
        assert_eq!(due, ["b"], "b's own receipt was not refused");
        assert_eq!(
            in_flight.drain().len(),
            2,
            "both still released at shutdown"
        );
    }
}
