//! Dead letters: messages a destination gives up on (delivered too often,
//! rejected under the dead-letter NACK policy, or expired).
//!
//! A destination cannot publish to its dead-letter queue itself, because that
//! would take a second destination lock while holding its own. It sends a
//! [`DeadLetter`] down a channel instead (an [`Errand`]), and
//! [`super::Router`]'s errand task moves it: a copy goes to the DLQ (when the
//! policy says so) and the original is acknowledged in the store. The channel needs no bound of its
//! own: each message dies at most once, so its length is bounded by the
//! messages the destinations were allowed to hold (and the wake-ups of
//! wildcard queue subscriptions it also carries, by one per subscription).
//!
//! A DLQ an administrator deletes while a dead letter is on its way is
//! re-created for it, as a producer's send re-creates a deleted queue; when
//! it cannot be, the copy's store entry is cancelled along with it (no ghost
//! at the next start).

use super::Message;
use super::{Address, Destination, Router};
use crate::store::LogEntry;
use std::sync::Arc;

/// Why a message is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathCause {
    /// Redelivered more than `max_redeliveries` times.
    TooManyRedeliveries(u32),
    /// NACKed under the `dead-letter` NACK policy.
    Rejected,
    /// Its `expires` time passed before delivery.
    Expired,
}

impl DeathCause {
    /// The text of the `dlq-reason` header.
    pub fn describe(self) -> String {
        match self {
            DeathCause::TooManyRedeliveries(n) => {
                format!("delivery failed {n} times (max redeliveries exceeded)")
            }
            DeathCause::Rejected => "rejected by a consumer (NACK)".into(),
            DeathCause::Expired => "expired before delivery".into(),
        }
    }
}

/// What happens to rejected messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackPolicy {
    /// NACK puts the message back for redelivery (until max redeliveries).
    Redeliver,
    /// NACK sends the message straight to the DLQ (ActiveMQ's behaviour).
    DeadLetter,
}

/// Redelivery and dead-letter settings shared by every destination.
#[derive(Debug, Clone)]
pub struct DeadLetterPolicy {
    /// Deliveries after the first before a message is dead-lettered.
    pub max_redeliveries: u32,
    /// Shared DLQ name, without `/queue/`.
    pub queue: String,
    /// Use `DLQ.<name>` per destination instead of the shared queue.
    pub individual: bool,
    /// What NACK does.
    pub nack: NackPolicy,
    /// Expired messages go to the DLQ (else they are dropped).
    pub expired_to_dlq: bool,
    /// Wait before a redelivery, ms (0 = redeliver at once).
    pub redelivery_delay: u64,
    /// Each further redelivery waits this many times longer.
    pub redelivery_backoff: f64,
}

impl Default for DeadLetterPolicy {
    fn default() -> Self {
        DeadLetterPolicy {
            max_redeliveries: 6,
            queue: "ActiveMQ.DLQ".into(),
            individual: false,
            nack: NackPolicy::Redeliver,
            expired_to_dlq: false,
            redelivery_delay: 0,
            redelivery_backoff: 1.0,
        }
    }
}

impl DeadLetterPolicy {
    /// The DLQ for messages from `destination` (canonical name).
    pub fn dlq_for(&self, destination: &str) -> String {
        if self.individual {
            let short = destination
                .strip_prefix("/queue/")
                .or_else(|| destination.strip_prefix("/topic/"))
                .unwrap_or(destination);
            format!("/queue/DLQ.{short}")
        } else {
            format!("/queue/{}", self.queue)
        }
    }

    /// How long redelivery number `n` (1 = first redelivery) waits, in ms;
    /// 0 when redelivery is immediate. Capped at an hour.
    pub fn redelivery_wait(&self, n: u32) -> u64 {
        if self.redelivery_delay == 0 || n == 0 {
            return 0;
        }
        let factor = self
            .redelivery_backoff
            .max(1.0)
            .powi(n.saturating_sub(1).min(64) as i32);
        ((self.redelivery_delay as f64) * factor).min(3_600_000.0) as u64
    }

    /// Whether `destination` is a dead-letter queue (never dead-lettered again).
    pub fn is_dlq(&self, destination: &str) -> bool {
        destination == format!("/queue/{}", self.queue) || destination.starts_with("/queue/DLQ.")
    }
}

/// An errand a destination sends the router on: work it cannot do under its
/// own lock (act on another destination, or wait on a timer). The router's
/// errand task ([`Router::run_errands`]) carries them out: it buries dead
/// letters, brings messages back after their redelivery delay and wakes
/// wildcard queue subscriptions.
#[derive(Debug)]
pub enum Errand {
    /// Leaves for good (DLQ or dropped).
    Dead(DeadLetter),
    /// Comes back to the same destination after a redelivery delay.
    Delayed {
        /// The message.
        message: Arc<Message>,
        /// Its redelivery count on return.
        redeliveries: u32,
        /// How long it stays away, ms.
        wait: u64,
    },
    /// Not a dead letter: a wildcard queue subscription's shared window has
    /// room again, so its member queues must dispatch (which a queue cannot
    /// make another queue do under its own lock). At most one is queued per
    /// subscription.
    Wake(std::sync::Weak<super::queue_wildcard::WildcardSubscription>),
    /// A persistent queue's window runs low: read the next page of its
    /// store backlog (off the destination's lock, see `router::refill`).
    ReadBacklog {
        /// The queue, by name.
        destination: Arc<str>,
        /// What to read.
        plan: super::destination::backlog::ReadPlan,
    },
    /// A purged or deleted queue's stored messages: acknowledge them a page
    /// at a time (see `Router::drop_backlog`).
    DropBacklog {
        /// The queue (a deleted one is no longer found by name).
        destination: Arc<Destination>,
        /// `(priority, position, stored)` of each lane.
        lanes: Vec<(u8, u64, u64)>,
        /// The queue was removed (see `Router::drop_backlog`).
        retired: bool,
    },
}

/// A message on its way out of a destination.
#[derive(Debug)]
pub struct DeadLetter {
    /// The message.
    pub message: Arc<Message>,
    /// The destination it leaves (its store entries are keyed by it).
    pub from: Arc<str>,
    /// Why.
    pub cause: DeathCause,
    /// Copy it to the DLQ (else it is only dropped).
    pub to_dlq: bool,
}

impl Router {
    /// The errand task: runs the destinations' [`Errand`]s (dead letters to
    /// their DLQ and out of the store, redelivery delays, wake-ups of
    /// wildcard queue subscriptions) until the router is dropped. Spawn once
    /// at start.
    pub async fn run_errands(self: Arc<Self>) {
        let rx = self
            .errand_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut rx) = rx else { return };
        // Hold only a weak reference while waiting, so the router can go.
        let weak = Arc::downgrade(&self);
        drop(self);
        while let Some(errand) = rx.recv().await {
            let Some(router) = weak.upgrade() else { break };
            match errand {
                Errand::Dead(dead) => router.bury(dead),
                Errand::Delayed {
                    message,
                    redeliveries,
                    wait,
                } => router.delay_redelivery(message, redeliveries, wait),
                Errand::Wake(wildcard) => {
                    if let Some(w) = wildcard.upgrade() {
                        router.wake_wildcard(&w);
                    }
                }
                Errand::ReadBacklog { destination, plan } => router.read_backlog(destination, plan),
                Errand::DropBacklog {
                    destination,
                    lanes,
                    retired,
                } => router.start_drop(destination, lanes, retired),
            }
        }
    }

    fn bury(&self, dead: DeadLetter) {
        let dlq = if dead.to_dlq {
            let dlq_name = self.dead_letter_policy.dlq_for(&dead.from);
            match Address::parse(&dlq_name, 0).and_then(|a| self.destination(&a, 0)) {
                Ok(dlq) => Some(dlq),
                Err(e) => {
                    tracing::warn!(dlq = %dlq_name, seq = dead.message.seq, error = %e, "dead letter dropped: its dead-letter queue could not be created");
                    None
                }
            }
        } else {
            None
        };
        self.bury_into(dead, dlq);
    }

    /// Moves `dead` into `dlq` (a copy; `None`: dropped) and acknowledges
    /// the original in the store.
    fn bury_into(&self, dead: DeadLetter, dlq: Option<Arc<Destination>>) {
        let mut entries = Vec::new();
        let mut moved = None;
        if let Some(dlq) = dlq {
            let m = &dead.message;
            let body = match m.body.copy() {
                Ok(body) => body,
                Err(e) => {
                    // Not acknowledged either: the stored original comes
                    // back after a restart rather than being lost.
                    tracing::error!(seq = m.seq, error = %e, "dead letter not moved");
                    return;
                }
            };
            let mut headers = m.headers.without(&["original-destination", "dlq-reason"]);
            headers.push("original-destination", &m.destination);
            headers.push("dlq-reason", &dead.cause.describe());
            let copy = Arc::new(Message {
                seq: self.next_seq(),
                destination: dlq.address.name.clone(),
                persistent: m.persistent,
                priority: m.priority,
                // A message expired on arrival would expire again here.
                expires: 0,
                timestamp: m.timestamp,
                headers,
                body,
            });
            if copy.persistent {
                entries.push(LogEntry::Enqueue {
                    message: copy.clone(),
                    backlog: false,
                });
            }
            moved = Some((dlq, copy));
        }
        if dead.message.persistent {
            entries.push(LogEntry::Ack {
                destination: dead.from.clone(),
                seq: dead.message.seq,
            });
        }
        if !entries.is_empty() {
            // The DLQ copy and the ack of the original go in one append, in
            // that order: a crash between them leaves a duplicate in the
            // DLQ, never a loss.
            drop(self.store.append(entries));
        }
        // Published after the append, as `publish` does: the store has
        // marked the body as its own before the DLQ accounts for it. An
        // administrator may have deleted the DLQ since it was looked up:
        // the copy then goes to the DLQ re-created under the same name (its
        // store entry names the DLQ by name, so a restart finds it there
        // too), or, when that cannot be, its store entry is cancelled so it
        // does not come back at the next start.
        if let Some((dlq, copy)) = moved {
            self.publish_live(&dlq, copy);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::router::{RouterConfig, DEFAULT_PRIORITY};
    use crate::store::{Commit, Handoff, LogHold, Store};
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    /// A store that only records what is appended.
    #[derive(Default)]
    struct Recording(Mutex<Vec<LogEntry>>);

    impl Store for Recording {
        fn append(&self, entries: Vec<LogEntry>) -> Commit {
            self.0.lock().unwrap().extend(entries);
            Commit::Done
        }
        fn append_for_dispatch(&self, entries: Vec<LogEntry>) -> (Commit, LogHold) {
            (self.append(entries), LogHold::none())
        }
        fn hand_off(&self, _: Option<(u64, u32)>, _: bool, handoff: Handoff) -> Option<Handoff> {
            Some(handoff)
        }
        fn hold(&self) -> LogHold {
            LogHold::none()
        }
        fn close(&self) {}
        fn metrics(&self) -> Option<crate::metrics::StoreMetrics> {
            None
        }
    }

    impl Recording {
        /// (destination, seq) of each message enqueued and not acked: what
        /// a restart would bring back.
        fn live(&self) -> BTreeSet<(String, u64)> {
            let mut live = BTreeSet::new();
            for e in self.0.lock().unwrap().iter() {
                match e {
                    LogEntry::Enqueue { message, .. } => {
                        live.insert((message.destination.to_string(), message.seq));
                    }
                    LogEntry::Ack { destination, seq } => {
                        live.remove(&(destination.to_string(), *seq));
                    }
                    _ => {}
                }
            }
            live
        }
    }

    const DLQ: &str = "/queue/ActiveMQ.DLQ";

    fn router(max_destinations: usize) -> (Router, Arc<Recording>) {
        let store = Arc::new(Recording::default());
        let config = RouterConfig {
            max_destinations,
            ..RouterConfig::default()
        };
        (Router::new(config, store.clone()), store)
    }

    fn destination(r: &Router, name: &str) -> Arc<Destination> {
        r.destination(&Address::parse(name, 1).unwrap(), 1).unwrap()
    }

    /// A persistent message of `/queue/src`, stored, about to die.
    fn dying(r: &Router, store: &Recording) -> DeadLetter {
        let message = Arc::new(Message {
            seq: r.next_seq(),
            destination: "/queue/src".into(),
            persistent: true,
            priority: DEFAULT_PRIORITY,
            expires: 0,
            timestamp: 0,
            headers: Default::default(),
            body: bytes::Bytes::from_static(b"dead").into(),
        });
        drop(store.append(vec![LogEntry::Enqueue {
            message: message.clone(),
            backlog: false,
        }]));
        DeadLetter {
            message,
            from: "/queue/src".into(),
            cause: DeathCause::Rejected,
            to_dlq: true,
        }
    }

    /// What the DLQ holds now, by seq.
    fn in_dlq(r: &Router) -> BTreeSet<(String, u64)> {
        r.lookup(DLQ).map_or_else(BTreeSet::new, |d| {
            d.browse(usize::MAX, None)
                .iter()
                .map(|m| (DLQ.to_string(), m.seq))
                .collect()
        })
    }

    #[test]
    fn a_dead_letter_for_a_dlq_deleted_meanwhile_lands_in_the_re_created_one() {
        let (r, store) = router(100);
        destination(&r, "/queue/src");
        let stale = destination(&r, DLQ);
        assert_eq!(r.delete(&stale), Ok(0));
        // The errand task looked the DLQ up before the delete.
        r.bury_into(dying(&r, &store), Some(stale.clone()));
        assert_eq!(stale.waiting_len(), 0);
        let live = r.lookup(DLQ).expect("the DLQ is re-created");
        assert_eq!(live.waiting_len(), 1);
        // The store holds the copy in the DLQ and nothing else: a restart
        // brings back exactly what is live.
        assert_eq!(store.live(), in_dlq(&r));
        assert_eq!(store.live().len(), 1);
    }

    #[test]
    fn a_dead_letter_that_no_dlq_can_take_leaves_nothing_in_the_store() {
        // Room for the source and the DLQ only: once the DLQ is deleted and
        // something else takes its place, it cannot be re-created.
        let (r, store) = router(2);
        destination(&r, "/queue/src");
        let stale = destination(&r, DLQ);
        assert_eq!(r.delete(&stale), Ok(0));
        destination(&r, "/queue/other");
        r.bury_into(dying(&r, &store), Some(stale));
        assert!(r.lookup(DLQ).is_none());
        // Neither the original nor its copy comes back at a restart.
        assert_eq!(store.live(), BTreeSet::new());
        let acks = store
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, LogEntry::Ack { destination, .. } if &**destination == DLQ))
            .count();
        assert_eq!(acks, 1, "the copy's enqueue is cancelled");
    }

    /// The race run for real: dead letters buried while the DLQ is deleted,
    /// each round. Whatever the order, what the store would bring back at
    /// a restart is exactly what the live DLQ holds.
    #[test]
    fn dead_letters_racing_dlq_deletes_leave_the_store_consistent() {
        let (r, store) = router(100);
        destination(&r, "/queue/src");
        let (mut deleted, mut outlived) = (0, 0);
        for round in 0..300 {
            let dlq = destination(&r, DLQ);
            let dead = dying(&r, &store);
            let start = std::sync::Barrier::new(2);
            let delete = std::thread::scope(|s| {
                s.spawn(|| {
                    start.wait();
                    r.bury_into(dead, Some(dlq.clone()));
                });
                start.wait();
                r.delete(&dlq)
            });
            if let Ok(n) = delete {
                deleted += n;
            }
            let held = in_dlq(&r);
            assert_eq!(store.live(), held, "round {round}");
            outlived += usize::from(!held.is_empty());
        }
        // Both orders happen: some dead letters were deleted with the DLQ,
        // and some reached a DLQ re-created after a delete.
        assert!(deleted > 0, "no delete took a dead letter with it");
        assert!(outlived > 0, "no dead letter outlived a delete");
    }
}
