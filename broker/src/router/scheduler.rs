//! Scheduled delivery (ActiveMQ's `AMQ_SCHEDULED_DELAY`, `_PERIOD`,
//! `_REPEAT`): messages held back until their time, then published — once,
//! or `repeat + 1` times `period` apart.
//!
//! Durability: a persistent scheduled message is stored as an ordinary
//! enqueue (its scheduling headers included) when it is sent; each firing
//! records a delivery mark with the number of firings so far, and the last
//! one acknowledges it. After a restart the stored message comes back with
//! its firing count and is rescheduled for what remains.

use super::Destination;
use super::Router;
use super::{now_ms, Message};
use crate::message::PageError;
use crate::store::LogEntry;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The scheduling headers.
pub const DELAY: &str = "AMQ_SCHEDULED_DELAY";
/// Milliseconds between repetitions.
pub const PERIOD: &str = "AMQ_SCHEDULED_PERIOD";
/// Extra firings after the first.
pub const REPEAT: &str = "AMQ_SCHEDULED_REPEAT";
/// Cron schedules, which ferromq refuses rather than silently ignoring.
pub const CRON: &str = "AMQ_SCHEDULED_CRON";

/// Most messages waiting in the scheduler at once.
pub const MAX_SCHEDULED: usize = 100_000;

/// When and how often a message fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Delay before the first firing, ms.
    pub delay: u64,
    /// Time between firings, ms.
    pub period: u64,
    /// Firings after the first.
    pub repeat: u32,
}

impl Schedule {
    /// Reads the scheduling headers of a message; `Ok(None)` when it has
    /// none, `Err` naming the bad header otherwise.
    pub fn of(message: &Message) -> Result<Option<Schedule>, String> {
        let h = &message.headers;
        if h.contains(CRON) {
            return Err(format!(
                "{CRON} is not supported: use {DELAY}, {PERIOD} and {REPEAT}"
            ));
        }
        if !h.contains(DELAY) && !h.contains(PERIOD) && !h.contains(REPEAT) {
            return Ok(None);
        }
        let num = |name: &str| -> Result<u64, String> {
            match h.get(name) {
                None => Ok(0),
                Some(v) => v.trim().parse::<u64>().map_err(|_| {
                    format!("invalid {name} '{v}': expected a number of milliseconds")
                }),
            }
        };
        let repeat = num(REPEAT)?;
        let period = num(PERIOD)?;
        if repeat > 0 && period == 0 {
            return Err(format!("{REPEAT} needs a {PERIOD} greater than 0"));
        }
        Ok(Some(Schedule {
            delay: num(DELAY)?,
            period,
            repeat: u32::try_from(repeat).map_err(|_| format!("{REPEAT} is too large"))?,
        }))
    }

    /// When firing number `fired` (0-based) is due for a message sent at
    /// `sent_ms`.
    pub fn due(&self, sent_ms: u64, fired: u32) -> u64 {
        sent_ms
            .saturating_add(self.delay)
            .saturating_add(self.period.saturating_mul(u64::from(fired)))
    }
}

/// A message waiting to fire.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// The stored original (its headers carry the schedule).
    pub template: Arc<Message>,
    /// Where it goes.
    pub destination: Arc<Destination>,
    /// The schedule.
    pub schedule: Schedule,
    /// Firings so far.
    pub fired: u32,
    /// A message away for a redelivery delay rather than a scheduled one:
    /// `(redelivery count, due time in ms)`. It returns as itself.
    pub returning: Option<(u32, u64)>,
}

/// Messages waiting for their time, earliest first.
#[derive(Default)]
pub struct Scheduler {
    state: Mutex<State>,
    /// Wakes the timer task when an earlier message arrives.
    changed: Notify,
}

#[derive(Default)]
struct State {
    due: BinaryHeap<Reverse<(u64, u64)>>,
    waiting: HashMap<u64, Scheduled>,
}

impl Scheduler {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `entry` until its next firing. Fails when the scheduler is full.
    pub fn insert(&self, entry: Scheduled) -> Result<(), String> {
        let due = match entry.returning {
            Some((_, due)) => due,
            None => entry.schedule.due(entry.template.timestamp, entry.fired),
        };
        let mut st = self.lock();
        if st.waiting.len() >= MAX_SCHEDULED {
            return Err(format!(
                "the scheduler holds its limit of {MAX_SCHEDULED} messages"
            ));
        }
        st.due.push(Reverse((due, entry.template.seq)));
        st.waiting.insert(entry.template.seq, entry);
        drop(st);
        self.changed.notify_one();
        Ok(())
    }

    /// Removes and returns every entry due at `now`, and the time of the
    /// next one still waiting.
    pub fn take_due(&self, now: u64) -> (Vec<Scheduled>, Option<u64>) {
        let mut st = self.lock();
        let mut out = Vec::new();
        while let Some(Reverse((due, seq))) = st.due.peek().copied() {
            if due > now {
                return (out, Some(due));
            }
            st.due.pop();
            if let Some(e) = st.waiting.remove(&seq) {
                out.push(e);
            }
        }
        (out, None)
    }

    /// Number of messages waiting.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until something is inserted.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// A copy of `template` for one firing: a new sequence number and without
/// the scheduling headers (a fired message is an ordinary message). Fails
/// when the template's body is paged out and cannot be read back.
pub fn fire(template: &Message, seq: u64) -> Result<Message, PageError> {
    Ok(Message {
        seq,
        destination: template.destination.clone(),
        persistent: template.persistent,
        priority: template.priority,
        expires: template.expires,
        timestamp: now_ms(),
        headers: template.headers.without(&[DELAY, PERIOD, REPEAT]),
        body: template.body.get()?.into(),
    })
}

impl Router {
    /// Fires scheduled messages when they are due, until the router is
    /// dropped. Spawn once at start.
    pub async fn run_scheduler(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        let scheduler = self.scheduler.clone();
        drop(self);
        loop {
            let next = {
                let Some(router) = weak.upgrade() else { return };
                let (due, next) = router.scheduler.take_due(now_ms());
                for entry in due {
                    router.fire(entry);
                }
                next
            };
            let wait = next.map(|t| t.saturating_sub(now_ms())).unwrap_or(60_000);
            let changed = scheduler.changed();
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(wait.max(1)), changed).await;
        }
    }

    /// Holds a message for its redelivery delay; it returns to its queue.
    pub(super) fn delay_redelivery(&self, message: Arc<Message>, redeliveries: u32, wait: u64) {
        let Some(destination) = self.read().get(&message.destination).cloned() else {
            return; // the queue is gone (a temporary one whose owner left)
        };
        let entry = Scheduled {
            template: message.clone(),
            destination: destination.clone(),
            schedule: Schedule {
                delay: 0,
                period: 0,
                repeat: 0,
            },
            fired: 0,
            returning: Some((redeliveries, now_ms().saturating_add(wait))),
        };
        if self.scheduler.insert(entry).is_err() {
            // Scheduler full: redeliver now rather than lose it.
            destination.return_delayed(message, redeliveries);
        }
    }

    fn fire(&self, mut entry: Scheduled) {
        if let Some((redeliveries, _)) = entry.returning {
            entry
                .destination
                .return_delayed(entry.template, redeliveries);
            return;
        }
        match fire(&entry.template, self.next_seq()) {
            Ok(copy) => drop(self.publish(&entry.destination, copy)),
            // The store cannot read the body back: this firing is lost,
            // the schedule goes on (the log line says which message).
            Err(e) => tracing::error!(
                seq = entry.template.seq,
                error = %e,
                "scheduled message not fired"
            ),
        }
        entry.fired += 1;
        let stored = self.stores(&entry.destination, &entry.template);
        if entry.fired <= entry.schedule.repeat {
            if stored {
                drop(self.store.append(vec![LogEntry::Delivered {
                    seq: entry.template.seq,
                    count: entry.fired,
                }]));
            }
            if let Err(e) = self.scheduler.insert(entry) {
                tracing::warn!(error = %e, "scheduled message dropped");
            }
        } else if stored {
            drop(self.store.append(vec![LogEntry::Ack {
                destination: entry.destination.address.name.clone(),
                seq: entry.template.seq,
            }]));
        }
    }

    /// Messages waiting in the scheduler.
    pub fn scheduled(&self) -> usize {
        self.scheduler.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferromq_protocol::Headers;

    fn message(headers: &[(&str, &str)]) -> Message {
        Message {
            seq: 1,
            destination: "/queue/a".into(),
            persistent: false,
            priority: 4,
            expires: 0,
            timestamp: 1000,
            headers: headers.iter().copied().collect::<Headers>(),
            body: Default::default(),
        }
    }

    #[test]
    fn reads_schedules_and_refuses_bad_ones() {
        assert_eq!(Schedule::of(&message(&[])), Ok(None));
        let s = Schedule::of(&message(&[(DELAY, "500"), (PERIOD, "100"), (REPEAT, "2")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            s,
            Schedule {
                delay: 500,
                period: 100,
                repeat: 2
            }
        );
        assert_eq!((s.due(1000, 0), s.due(1000, 2)), (1500, 1700));
        assert!(Schedule::of(&message(&[(DELAY, "soon")])).is_err());
        assert!(Schedule::of(&message(&[(REPEAT, "3")])).is_err());
        assert!(Schedule::of(&message(&[(CRON, "* * * * *")])).is_err());
    }
}
