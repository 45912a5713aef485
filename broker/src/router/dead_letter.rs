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

use super::Message;
use super::{Address, Router};
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
            }
        }
    }

    fn bury(&self, dead: DeadLetter) {
        let mut entries = Vec::new();
        let mut moved = None;
        if dead.to_dlq {
            let dlq_name = self.dead_letter_policy.dlq_for(&dead.from);
            let address = Address::parse(&dlq_name, 0);
            if let Ok(dlq) = address.and_then(|a| self.destination(&a, 0)) {
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
        // marked the body as its own before the DLQ accounts for it.
        if let Some((dlq, copy)) = moved {
            dlq.publish(copy);
        }
    }
}
