//! Consumers' entry points: subscribing (by frame or by link credit),
//! credit, acknowledging and rejecting (at once or held for a transaction),
//! and the log entries an acknowledgement writes. A wildcard queue
//! subscription is handed to [`super::queue_wildcard`].

use super::subscription::SubscriptionState;
use super::{
    delivery_marks, AckMode, ConnectionId, Consumer, ConsumerKind, DeliverySink, Destination,
    DestinationKind, LinkFlow, Message, Router, RouterError, SubscribeOptions,
};
use crate::store::{Commit, LogEntry};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Router {
    /// Adds a subscription. Messages may be delivered to `sink` before this
    /// returns, so a protocol that must answer first (STOMP's RECEIPT) holds
    /// the sink's deliveries until its answer is queued. A `destination`
    /// an administrator deleted since the caller looked it up is replaced by
    /// the live one of the same name (re-created, as a send would), so the
    /// subscriber gets what is sent after (the returned consumer names the
    /// destination it is on).
    pub fn subscribe(
        &self,
        destination: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
    ) -> Arc<Consumer> {
        self.subscribe_with(destination, connection, tag, ack, options, sink, None)
    }

    /// Adds a credit-based subscription (a native protocol link): nothing is
    /// delivered until [`Router::flow`] grants credit, and each delivery
    /// uses one, on top of the prefetch window that bounds unacknowledged
    /// messages.
    pub fn subscribe_link(
        &self,
        destination: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
    ) -> Arc<Consumer> {
        self.subscribe_with(destination, connection, tag, ack, options, sink, Some(0))
    }

    /// Grants a [`Router::subscribe_link`] subscription credit for
    /// `receiver_count + credit` deliveries in total (AMQP link credit);
    /// `drain` uses up what cannot be delivered now. Deliveries it allows
    /// reach the sink before this returns. `None` if the subscription is gone.
    pub fn flow(
        &self,
        consumer: &Consumer,
        receiver_count: u32,
        credit: u32,
        drain: bool,
    ) -> Option<LinkFlow> {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.flow_wildcard(w, receiver_count, credit, drain),
            ConsumerKind::Plain => {
                consumer
                    .destination
                    .flow(consumer.id, receiver_count, credit, drain)
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the public entry points name them all
    fn subscribe_with(
        &self,
        destination: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
        link_credit: Option<u32>,
    ) -> Arc<Consumer> {
        let prefetch = options.prefetch.unwrap_or(match destination.kind() {
            DestinationKind::Queue => self.config.queue_prefetch,
            DestinationKind::Topic => self.config.topic_prefetch,
        });
        if destination.kind() == DestinationKind::Queue && destination.address.is_wildcard() {
            return self.subscribe_wildcard(
                destination,
                connection,
                tag,
                ack,
                options,
                sink,
                prefetch,
                link_credit,
            );
        }
        // A consumer and its state name their destination, so each attempt
        // builds its own.
        let build = |destination: &Arc<Destination>| {
            let consumer = Arc::new(Consumer {
                id: self.next_subscription.fetch_add(1, Ordering::Relaxed),
                connection,
                destination: destination.clone(),
                tag: tag.clone(),
                ack,
                kind: ConsumerKind::Plain,
            });
            // Deliveries of stored messages are recorded, so they come back
            // marked redelivered after a restart.
            let marked =
                delivery_marks::DeliveryMarks::wrap(sink.clone(), destination, &self.store);
            let mut state = SubscriptionState::new(consumer.clone(), marked, prefetch);
            state.selector = options.selector.clone();
            state.exclusive = options.exclusive;
            state.link_credit = link_credit;
            (consumer, state)
        };
        /// Bounded: each further attempt follows a delete that raced with
        /// this subscribe.
        const ATTEMPTS: usize = 4;
        let mut destination = destination;
        for _ in 1..ATTEMPTS {
            let (consumer, state) = build(&destination);
            if destination.try_subscribe(state) {
                return consumer;
            }
            // An administrator deleted it after the caller looked it up:
            // subscribe to the destination of the same name, re-created as
            // a SEND re-creates it, so later SENDs reach this subscriber. (A
            // temporary destination is re-created only for its owner.)
            match self.destination(&destination.address, connection) {
                Ok(successor) => destination = successor,
                Err(e) => {
                    tracing::warn!(
                        destination = destination.name(),
                        error = %e,
                        "a subscriber raced a delete and the destination could not be re-created"
                    );
                    break;
                }
            }
        }
        // Live, or deleted at every attempt, or not re-creatable: attached
        // all the same (on a deleted destination it receives nothing, as if
        // the delete had come just after; rare enough to accept rather than
        // refuse the subscribe).
        let (consumer, state) = build(&destination);
        destination.subscribe(state);
        consumer
    }

    /// Ends a subscription; unacknowledged queue messages are redelivered.
    pub fn unsubscribe(&self, consumer: &Consumer) {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.unsubscribe_wildcard(w),
            ConsumerKind::Plain => {
                consumer.destination.unsubscribe(consumer.id);
            }
        }
    }

    /// Whether `consumer` (any member, for a wildcard subscription) holds
    /// message `seq` unacknowledged.
    pub fn has_unacked(&self, consumer: &Consumer, seq: u64) -> bool {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.wildcard_has_unacked(w, seq),
            ConsumerKind::Plain => consumer.destination.has_unacked(consumer.id, seq),
        }
    }

    /// Acknowledges (cumulatively for `client` mode).
    /// The [`Commit`] says when the ack is durable (an ACK's RECEIPT waits
    /// for it, so an acknowledged message never comes back).
    pub fn ack(&self, consumer: &Arc<Consumer>, seq: u64) -> Result<Commit, RouterError> {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.ack_wildcard(w, consumer, seq),
            ConsumerKind::Plain => {
                let cumulative = consumer.ack == AckMode::Client;
                let acked = consumer
                    .destination
                    .ack(consumer.id, seq, cumulative)
                    .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))?;
                Ok(self.log_acks(&consumer.destination, &acked))
            }
        }
    }

    /// Acknowledges exactly `seqs` (a committed transaction's acks, a native
    /// Disposition range). The [`Commit`] says when they are durable.
    pub fn ack_exact(&self, consumer: &Consumer, seqs: &[u64]) -> Commit {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.ack_exact_wildcard(w, seqs),
            ConsumerKind::Plain => self.ack_delivered(consumer, seqs),
        }
    }

    /// Rejects (cumulatively for `client` mode): redelivered later.
    pub fn nack(&self, consumer: &Arc<Consumer>, seq: u64) -> Result<(), RouterError> {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.nack_wildcard(w, consumer, seq),
            ConsumerKind::Plain => {
                let cumulative = consumer.ack == AckMode::Client;
                consumer
                    .destination
                    .nack(consumer.id, seq, cumulative)
                    .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))
            }
        }
    }

    /// Rejects exactly `seqs` (a committed transaction's nacks).
    pub fn nack_exact(&self, consumer: &Consumer, seqs: &[u64]) {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.nack_exact_wildcard(w, seqs),
            ConsumerKind::Plain => {
                for &seq in seqs {
                    let _ = consumer.destination.nack(consumer.id, seq, false);
                }
            }
        }
    }

    /// A transactional ACK/NACK: frees credit now, applies at commit.
    pub fn stage(&self, consumer: &Arc<Consumer>, seq: u64) -> Result<Vec<u64>, RouterError> {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.stage_wildcard(w, consumer, seq),
            ConsumerKind::Plain => {
                let cumulative = consumer.ack == AckMode::Client;
                consumer
                    .destination
                    .stage(consumer.id, seq, cumulative)
                    .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))
            }
        }
    }

    /// Undoes [`Router::stage`] for an aborted transaction.
    pub fn unstage(&self, consumer: &Consumer, seqs: &[u64]) {
        match &consumer.kind {
            ConsumerKind::Wildcard(w) => self.unstage_wildcard(w, seqs),
            ConsumerKind::Plain => {
                consumer.destination.unstage(consumer.id, seqs);
            }
        }
    }

    /// Auto-ack deliveries that reached the socket: a writer's batch of
    /// `(consumer, seq)` pairs in write order ([`Router::ack_runs`]); empties
    /// the batch. Losing such an ack in a crash means a redelivery, which
    /// at-least-once allows, so nothing waits for its commit.
    pub fn settle_all_written(&self, written: &mut Vec<(Arc<Consumer>, u64)>) {
        drop(self.ack_runs(written));
        written.clear();
    }

    /// Acknowledges exactly the deliveries `delivered`, `(the delivery's
    /// consumer, seq)` pairs, with one router call per run of the same
    /// consumer (a writer's batch, a native Disposition range). One
    /// [`Commit`] per run.
    pub fn ack_runs(&self, delivered: &[(Arc<Consumer>, u64)]) -> Vec<Commit> {
        let mut commits = Vec::new();
        let mut seqs = Vec::new();
        let mut i = 0;
        while i < delivered.len() {
            let consumer = &delivered[i].0;
            seqs.clear();
            // By identity: a wildcard subscription's members share its tag.
            while i < delivered.len() && Arc::ptr_eq(&delivered[i].0, consumer) {
                seqs.push(delivered[i].1);
                i += 1;
            }
            commits.push(self.ack_delivered(consumer, &seqs));
        }
        commits
    }

    /// Acknowledges exactly `seqs`, all delivered on `consumer` (a delivery's
    /// own subscription: for a wildcard one, the member on the message's
    /// queue), under one destination lock.
    fn ack_delivered(&self, consumer: &Consumer, seqs: &[u64]) -> Commit {
        let acked = consumer.destination.ack_exact(consumer.id, seqs);
        self.log_acks(&consumer.destination, &acked)
    }

    /// Holds the store's log writer (see [`crate::store::Store::hold`]):
    /// what is appended until the guard drops is applied atomically.
    pub fn hold_log(&self) -> crate::store::LogHold {
        self.store.hold()
    }

    pub(super) fn log_acks(&self, destination: &Destination, acked: &[Arc<Message>]) -> Commit {
        let entries = ack_entries(destination, acked);
        if entries.is_empty() {
            return Commit::Done;
        }
        // Auto-ack callers drop the commit: losing such an ack in a crash
        // means a redelivery, which at-least-once allows. An ACK frame with
        // a receipt waits for it.
        self.store.append(entries)
    }
}

/// The store entries acknowledging `acked` (its persistent messages) on
/// `destination`.
pub(super) fn ack_entries(destination: &Destination, acked: &[Arc<Message>]) -> Vec<LogEntry> {
    acked
        .iter()
        .filter(|m| m.persistent)
        .map(|m| LogEntry::Ack {
            destination: destination.address.name.clone(),
            seq: m.seq,
        })
        .collect()
}
