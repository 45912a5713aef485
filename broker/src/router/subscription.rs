//! Subscriptions: the [`Consumer`] handle a session keeps, and the
//! [`SubscriptionState`] the router keeps for it (credit and unacked messages).

use super::destination::Destination;
use super::pending::{Pending, PendingQueue};
use super::queue_wildcard::WildcardSubscription;
use super::shared_window::SharedWindow;
use super::{DeliverySink, Message};
use crate::selector::Selector;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

/// Broker-wide unique subscription number.
pub type SubscriptionId = u64;

/// Unique id of a client connection (any protocol).
pub type ConnectionId = u64;

/// When a delivered message counts as consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Consumed once written to the connection (not at dispatch, unlike
    /// ActiveMQ, so a connection that dies first loses nothing).
    Auto,
    /// Cumulative: acknowledging a message acknowledges every message
    /// delivered before it on the subscription (ActiveMQ's `client`).
    Client,
    /// Each message is acknowledged on its own.
    ClientIndividual,
}

impl AckMode {
    /// Parses STOMP's `ack` header values.
    pub fn parse(s: &str) -> Option<AckMode> {
        match s {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

/// What a session holds for one of its subscriptions, and what each
/// [`super::Delivery`] points back to.
#[derive(Debug)]
pub struct Consumer {
    /// Broker-wide id.
    pub id: SubscriptionId,
    /// The connection that owns it.
    pub connection: ConnectionId,
    /// The destination consumed from.
    pub destination: Arc<Destination>,
    /// The protocol's own name for the subscription (STOMP's `id` header).
    pub tag: Arc<str>,
    /// Acknowledgement mode.
    pub ack: AckMode,
    /// Which kind of subscription it is.
    pub kind: ConsumerKind,
}

impl Consumer {
    /// The id of the subscription the client made: a wildcard member
    /// answers with its wildcard subscription's id.
    pub fn subscription_id(&self) -> SubscriptionId {
        match &self.kind {
            ConsumerKind::Plain => self.id,
            ConsumerKind::Wildcard(w) => w.id,
        }
    }
}

/// Which kind of subscription a [`Consumer`] is. The router's entry points
/// (ack, nack, credit, unsubscribe, ...) match on it, so each says what it
/// does for every kind.
#[derive(Debug, Clone)]
pub enum ConsumerKind {
    /// A subscription on one destination.
    Plain,
    /// Part of a wildcard queue subscription (`/queue/orders.>`): the
    /// session's handle and each per-queue member it consumes through.
    Wildcard(Arc<WildcardSubscription>),
}

impl ConsumerKind {
    /// The wildcard queue subscription, for a [`ConsumerKind::Wildcard`].
    pub fn wildcard(&self) -> Option<&Arc<WildcardSubscription>> {
        match self {
            ConsumerKind::Plain => None,
            ConsumerKind::Wildcard(w) => Some(w),
        }
    }
}

/// Options a subscriber chooses, beyond destination and ack mode.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// Messages delivered before an acknowledgement is needed (None: the
    /// destination kind's default).
    pub prefetch: Option<usize>,
    /// JMS selector.
    pub selector: Option<Arc<Selector>>,
    /// ActiveMQ's exclusive consumer.
    pub exclusive: bool,
}

/// A message delivered and not yet acknowledged.
#[derive(Debug)]
pub struct InFlight {
    /// The message.
    pub message: Arc<Message>,
    /// Deliveries before this one.
    pub redeliveries: u32,
    /// Acknowledged inside an open transaction: no longer counts against
    /// credit, but is only removed when the transaction commits.
    pub staged: bool,
    /// Wildcard members: the delivery's place in the order of every
    /// delivery of the wildcard subscription (its shared window's count),
    /// which cumulative acks follow across queues. 0 otherwise.
    pub order: u64,
}

/// The router's state for one subscription. Lives inside its destination's
/// lock.
pub struct SubscriptionState {
    /// The shared handle.
    pub consumer: Arc<Consumer>,
    /// Where deliveries go.
    pub sink: Arc<dyn DeliverySink>,
    /// Most unacknowledged (non-staged) messages at once: the prefetch.
    pub prefetch: usize,
    /// Delivered, not yet acknowledged, in delivery order.
    pub unacked: VecDeque<InFlight>,
    /// How many of `unacked` are staged by a transaction.
    pub staged: usize,
    /// Topic subscribers only: messages waiting for this subscriber's credit.
    pub backlog: PendingQueue,
    /// Only messages this selector matches are delivered here.
    pub selector: Option<Arc<Selector>>,
    /// While an exclusive consumer exists, a queue delivers to it alone.
    pub exclusive: bool,
    /// Credit-based links (the native protocol): deliveries the consumer
    /// still allows, granted explicitly and used up by each delivery, on top
    /// of the prefetch window. `None`: the prefetch window alone (STOMP).
    pub link_credit: Option<u32>,
    /// Deliveries made on this subscription, wrapping: a native link's
    /// delivery count.
    pub delivered: u32,
    /// Bytes (footprints) of `unacked`.
    pub inflight_bytes: usize,
    /// No more deliveries while `inflight_bytes` is at or over this: a
    /// consumer that stops reading then holds only a share of its
    /// destination's memory limit, so producer flow control never lets it
    /// starve the other consumers. Set by the destination.
    pub max_inflight_bytes: usize,
    /// Wildcard queue members: the prefetch window (and link credit) shared
    /// with the subscription's members on other queues.
    pub window: Option<Arc<SharedWindow>>,
    /// A slot of `window` taken by [`SubscriptionState::take_credit`] and
    /// not yet used by a delivery. A `Cell` because credit is checked
    /// through shared references while the destination lock is held.
    reserved: Cell<bool>,
    /// How many of `unacked` (non-staged) this member counts in `window`.
    counted: usize,
}

/// A credit-based subscription's flow state after a credit grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFlow {
    /// Deliveries made on the subscription (including drained credit).
    pub delivery_count: u32,
    /// Credit left.
    pub link_credit: u32,
}

impl SubscriptionState {
    /// A new subscription with empty state.
    pub fn new(consumer: Arc<Consumer>, sink: Arc<dyn DeliverySink>, prefetch: usize) -> Self {
        SubscriptionState {
            consumer,
            sink,
            prefetch: prefetch.max(1),
            unacked: VecDeque::new(),
            staged: 0,
            backlog: PendingQueue::default(),
            selector: None,
            exclusive: false,
            link_credit: None,
            delivered: 0,
            inflight_bytes: 0,
            max_inflight_bytes: usize::MAX,
            window: None,
            reserved: Cell::new(false),
            counted: 0,
        }
    }

    /// Whether the selector (if any) accepts `message`.
    pub fn selects(&self, message: &Message) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(message))
    }

    /// Whether another message may be delivered now.
    pub fn has_credit(&self) -> bool {
        self.has_own_credit()
            && self
                .window
                .as_ref()
                .is_none_or(|w| self.reserved.get() || w.has_room())
    }

    /// Credit by this subscription's own limits (not a shared window's).
    fn has_own_credit(&self) -> bool {
        self.unacked.len() - self.staged < self.prefetch
            && self.link_credit != Some(0)
            && self.inflight_bytes < self.max_inflight_bytes
    }

    /// [`SubscriptionState::has_credit`] for a delivery about to be made: a
    /// wildcard member also takes a slot of its shared window, so members on
    /// different queues (dispatching under different locks) can never
    /// deliver more than the window together. A slot taken and then not
    /// used must go back with [`SubscriptionState::return_credit`].
    pub fn take_credit(&self) -> bool {
        // Own limits only: a full window must be asked, so it knows this
        // queue waits for a slot.
        if !self.has_own_credit() {
            return false;
        }
        match &self.window {
            None => true,
            Some(_) if self.reserved.get() => true,
            Some(w) => {
                let taken = w.try_reserve();
                self.reserved.set(taken);
                taken
            }
        }
    }

    /// Gives back a window slot [`SubscriptionState::take_credit`] took
    /// when no delivery followed (nothing eligible, or it had expired).
    pub fn return_credit(&self) {
        if let Some(w) = &self.window {
            if self.reserved.replace(false) {
                w.unreserve();
            }
        }
    }

    /// Brings this member's count in its shared window up to date after
    /// messages were acknowledged, returned, staged or unstaged.
    fn sync_window(&mut self) {
        let Some(w) = &self.window else { return };
        let now = self.unacked.len() - self.staged;
        if now > self.counted {
            w.add(now - self.counted);
        } else if now < self.counted {
            w.release(self.counted - now);
        }
        self.counted = now;
    }

    /// `n` more of `unacked` are staged by a transaction (no longer counted
    /// against credit).
    pub fn add_staged(&mut self, n: usize) {
        self.staged += n;
        self.sync_window();
    }

    /// `n` staged messages count against credit again (transaction aborted).
    pub fn remove_staged(&mut self, n: usize) {
        self.staged -= n.min(self.staged);
        self.sync_window();
    }

    /// Sets a credit-based subscription's credit so that the consumer may
    /// receive up to `receiver_count + credit` deliveries in total, as AMQP
    /// link credit is computed (wrapping counts; never below zero).
    pub fn grant(&mut self, receiver_count: u32, credit: u32) {
        let allowed = receiver_count
            .wrapping_add(credit)
            .wrapping_sub(self.delivered);
        // Negative (as i32): more deliveries were made than the consumer's
        // count plus its credit allow (its grant crossed deliveries in
        // flight), so nothing is left.
        self.link_credit = Some(if (allowed as i32) < 0 {
            0
        } else {
            allowed.min(credit)
        });
    }

    /// Uses up the remaining credit (drain): the delivery count advances by it.
    pub fn drain(&mut self) {
        if let Some(c) = self.link_credit.replace(0) {
            self.delivered = self.delivered.wrapping_add(c);
        }
    }

    /// Records `p` as delivered and hands it to the sink.
    pub fn deliver(&mut self, p: Pending) {
        if let Some(c) = &mut self.link_credit {
            *c = c.saturating_sub(1);
        }
        self.delivered = self.delivered.wrapping_add(1);
        let delivery = super::Delivery {
            consumer: self.consumer.clone(),
            message: p.message.clone(),
            redeliveries: p.redeliveries,
        };
        let order = match &self.window {
            None => {
                self.sink.deliver(delivery);
                0
            }
            Some(w) => {
                self.counted += 1;
                w.deliver(self.reserved.replace(false), &*self.sink, delivery)
            }
        };
        self.inflight_bytes += p.message.footprint();
        self.unacked.push_back(InFlight {
            message: p.message,
            redeliveries: p.redeliveries,
            staged: false,
            order,
        });
    }

    /// Position of message `seq` among the unacked, if delivered here.
    pub fn position(&self, seq: u64) -> Option<usize> {
        self.unacked.iter().position(|f| f.message.seq == seq)
    }

    /// Takes every unacked message, in delivery order, for redelivery.
    pub fn take_unacked(&mut self) -> Vec<InFlight> {
        self.staged = 0;
        self.inflight_bytes = 0;
        let taken = self.unacked.drain(..).collect();
        self.return_credit();
        self.sync_window();
        taken
    }

    /// Removes the unacked message at `pos`, keeping the byte count (and the
    /// staged count, when it was staged).
    pub fn remove_unacked(&mut self, pos: usize) -> Option<InFlight> {
        let f = self.unacked.remove(pos)?;
        if f.staged {
            self.staged -= 1;
        }
        self.forget_bytes(&f);
        Some(f)
    }

    /// Takes `f` (already removed from `unacked`) out of the byte count.
    pub fn forget_bytes(&mut self, f: &InFlight) {
        self.inflight_bytes = self.inflight_bytes.saturating_sub(f.message.footprint());
        self.sync_window();
    }
}
