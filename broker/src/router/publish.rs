//! Producers' entry point: sending a message (now or scheduled), publishing
//! it to its destination and to the topic patterns that match it, and
//! producer flow control. The durability rule lives here: a stored message
//! is appended before any consumer can see it.

use super::scheduler::{Schedule, Scheduled};
use super::{address, delivery_marks, Destination, DestinationKind, Message, Router, RouterError};
use crate::store::{Commit, LogEntry, LogHold};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Router {
    /// Publishes a message now, whatever its headers say about scheduling.
    /// Producers go through [`Router::send`] (which calls this for an
    /// unscheduled message); the router uses it for messages it makes
    /// itself (scheduled firings, dead letters).
    ///
    /// Persistent messages are appended to the store *before* they become
    /// visible to consumers, so the log always holds an enqueue before its
    /// ack; the returned [`Commit`] says when the enqueue is durable (the
    /// session waits on it before sending a receipt).
    pub(crate) fn publish(&self, destination: &Destination, message: Message) -> Commit {
        let message = Arc::new(message);
        // A persistent queue whose window is full leaves the message to the
        // store (counted before the append, so a read of its lane knows to
        // wait for it): it is read back in order as consumers drain the
        // queue (see `destination::backlog`).
        let left =
            self.stores(destination, &message) && destination.leave_to_store(message.priority);
        // Kept until the message is dispatched (see `Store::append_for_dispatch`).
        let (commit, _dispatching) = self.store_enqueue(destination, &message, left);
        if commit.is_failed() {
            // Refused (store full or closed): the message never existed.
            if left {
                destination.cancel_leave(message.priority);
            }
            return commit;
        }
        if left {
            return commit;
        }
        if destination.kind() == DestinationKind::Topic
            && self.has_wildcards.load(Ordering::Acquire)
        {
            for w in self
                .wildcards
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                if address::wildcard_matches(w.name(), destination.name()) {
                    w.publish(message.clone());
                }
            }
        }
        let commit = if destination.kind() == DestinationKind::Topic
            && self.has_durables.load(Ordering::Acquire)
        {
            self.publish_to_durables(destination.name(), &message)
        } else {
            commit
        };
        self.publish_live(destination, message);
        commit
    }

    /// Producer flow control for a send to `destination`: waits while it,
    /// or a durable subscription following it (policy `block`), is full.
    pub async fn wait_for_space(&self, destination: &Destination) {
        if destination.is_over_limit() {
            destination.wait_for_space().await;
        }
        if destination.kind() != DestinationKind::Topic
            || !self.has_durables.load(Ordering::Acquire)
            || self.config.durable_drop_oldest
        {
            return;
        }
        let full: Vec<Arc<Destination>> = self
            .durables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| d.follows(destination.name()))
            .filter(|d| d.queue.depth() >= self.config.durable_limit || d.queue.is_over_limit())
            .map(|d| d.queue.clone())
            .collect();
        for queue in full {
            queue.wait_for_room(self.config.durable_limit).await;
        }
    }

    /// Sends a producer's message: the one entry point every protocol uses
    /// (STOMP SEND, native transfer, a committed transaction's sends), so
    /// every header means the same whichever protocol carried it. Scheduled
    /// when it carries scheduling headers (`AMQ_SCHEDULED_DELAY`, ...),
    /// else published at once. See `Router::publish` for the durability
    /// rule.
    pub fn send(
        &self,
        destination: &Arc<Destination>,
        message: Message,
    ) -> Result<Commit, RouterError> {
        let Some(schedule) = Schedule::of(&message).map_err(RouterError::Scheduling)? else {
            return Ok(self.publish(destination, message));
        };
        let template = Arc::new(message);
        let (commit, _) = self.store_enqueue(destination, &template, false);
        if commit.is_failed() {
            return Ok(commit);
        }
        self.scheduler
            .insert(Scheduled {
                template,
                destination: destination.clone(),
                schedule,
                fired: 0,
                returning: None,
            })
            .map_err(RouterError::Scheduling)?;
        Ok(commit)
    }

    /// Appends `message`'s enqueue when it is to be stored. Only queues that
    /// outlive their connection are stored: a topic message (durable
    /// subscriptions store their own copies) or a temporary queue's has
    /// nobody to come back to after a restart.
    fn store_enqueue(
        &self,
        destination: &Destination,
        message: &Arc<Message>,
        backlog: bool,
    ) -> (Commit, LogHold) {
        if backlog {
            // Nobody will see it before it is read back: no dispatch to wait for.
            let commit = self.store.append(vec![LogEntry::Enqueue {
                message: message.clone(),
                backlog: true,
            }]);
            (commit, LogHold::none())
        } else if self.stores(destination, message) {
            self.store.append_for_dispatch(vec![LogEntry::Enqueue {
                message: message.clone(),
                backlog: false,
            }])
        } else {
            (Commit::Done, LogHold::none())
        }
    }

    /// Whether `message` sent to `destination` goes to the store (see
    /// [`delivery_marks::stores_messages_of`]).
    pub(super) fn stores(&self, destination: &Destination, message: &Message) -> bool {
        message.persistent && delivery_marks::stores_messages_of(destination)
    }

    /// Publishes an empty non-persistent message to `destination` (unit
    /// tests of the router's users).
    #[cfg(test)]
    pub(crate) fn publish_empty(&self, destination: &Destination) {
        let message = Message {
            seq: self.next_seq(),
            destination: destination.address.name.clone(),
            persistent: false,
            priority: super::DEFAULT_PRIORITY,
            expires: 0,
            timestamp: 0,
            headers: Default::default(),
            body: Default::default(),
        };
        drop(self.publish(destination, message));
    }
}
