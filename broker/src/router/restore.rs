//! Restoring the router from what the store recovered at start: durable
//! subscriptions first, then messages, each back on its destination or in
//! the scheduler; messages that expired while the broker was down are
//! dropped (and their drop written to the log). A store that keeps queue
//! backlogs returns only how many messages each queue lane holds: the
//! queues read them back themselves (`refill`), so a restart does not
//! wait for a deep backlog.

use super::durable;
use super::scheduler::{Schedule, Scheduled};
use super::{now_ms, Address, Destination, DestinationKind, Router, RouterError};
use crate::store::LogEntry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Router {
    /// Puts recovered messages back (at start, before any listener opens)
    /// and continues sequence numbers after the highest recovered one.
    pub fn restore(&self, recovered: crate::store::Recovered) -> Result<(), RouterError> {
        self.next_seq
            .fetch_max(recovered.next_seq, Ordering::Relaxed);
        // Durable subscriptions first, so their queues exist (with the
        // topic they show) before their messages come back.
        for (key, value) in &recovered.meta {
            if key.starts_with("durable/") {
                match durable::Definition::decode(value) {
                    Some(definition) => self.restore_durable(definition)?,
                    None => {
                        tracing::warn!(%key, "unreadable durable subscription definition skipped")
                    }
                }
            }
        }
        // Expiry is the router's decision, written as entries: the store
        // applies its log without a clock, so it brings expired messages
        // back like the rest and the router drops them here (as before
        // the log kept entries, they are not dead-lettered at restart).
        let now = now_ms();
        let mut expired = Vec::new();
        // A store that keeps backlogs recovered counts, not messages: each
        // queue reads its own back (see `refill`).
        for lane in &recovered.backlog {
            let name: Arc<str> = lane.destination.as_str().into();
            let destination = self.restored_destination(&name)?;
            destination.restore_backlog(lane.priority, lane.messages);
        }
        for (message, redeliveries) in recovered.messages {
            if message.is_expired(now) {
                expired.push(LogEntry::Ack {
                    destination: message.destination.clone(),
                    seq: message.seq,
                });
                continue;
            }
            let destination = self.restored_destination(&message.destination)?;
            // A stored scheduled message resumes its schedule; its delivery
            // count is the number of times it already fired.
            if let Ok(Some(schedule)) = Schedule::of(&message) {
                self.scheduler
                    .insert(Scheduled {
                        template: message,
                        destination,
                        schedule,
                        fired: redeliveries,
                        returning: None,
                    })
                    .map_err(RouterError::Scheduling)?;
                continue;
            }
            destination.restore(message, redeliveries);
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "expired stored messages dropped");
            drop(self.store.append(expired));
        }
        Ok(())
    }

    /// The destination stored messages named: a durable subscription's
    /// queue is found by name (its binding to the topic returns when its
    /// subscriber does).
    fn restored_destination(&self, name: &Arc<str>) -> Result<Arc<Destination>, RouterError> {
        let address = if durable::is_durable_queue(name) {
            Address {
                kind: DestinationKind::Queue,
                name: name.clone(),
                temp_owner: None,
                owner_name: None,
            }
        } else {
            Address::parse(name, 0)?
        };
        self.destination(&address, address.temp_owner.unwrap_or(0))
    }
}
