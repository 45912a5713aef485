//! Wildcard queue subscriptions (ActiveMQ's `/queue/orders.>`): one
//! subscription that consumes from every queue whose name matches the
//! pattern, the queues that exist when it subscribes and those created
//! later.
//!
//! - [`WildcardSubscription`] owns the subscription: the client's settings
//!   and one *member* per matching queue. A member is an ordinary
//!   [`SubscriptionState`] on that queue, so it competes with the queue's
//!   other consumers in their round robin and each message still goes to
//!   exactly one consumer; unacked messages stay in (and return to) their
//!   own queue, and redelivery limits, DLQ names and store acks are the
//!   concrete queue's.
//! - [`SharedWindow`] is the one prefetch window (and, on a native link, the
//!   one link credit) all members draw from, as ActiveMQ gives a wildcard
//!   consumer one prefetch: a member must take a slot before each delivery,
//!   so the subscription never holds more unacknowledged messages than its
//!   prefetch in total, whichever queues they come from. The window also
//!   numbers the subscription's deliveries, so a cumulative (`client`) ack
//!   covers everything delivered before the acked message on every queue.
//!
//! Lock order: a subscription's member list, then a queue's lock, then the
//! window's lock, then the connection's outbox. A queue that fails to get a
//! slot marks the window starved; whoever frees a slot then asks the
//! router's errand task (which holds no lock) to let every member
//! queue dispatch again ([`super::dead_letter::Errand::Wake`]). Slots freed
//! while queues wait are parked for that wake-up, which visits the queues
//! in turn starting one further each time: otherwise the queue whose
//! message was just acknowledged would take the slot back at once, and a
//! busy queue could keep a small window to itself for ever.

use super::address::{is_wildcard, wildcard_matches, Address, DestinationKind};
use super::durable;
use super::shared_window::SharedWindow;
use super::subscription::{
    AckMode, ConnectionId, Consumer, ConsumerKind, LinkFlow, SubscribeOptions, SubscriptionId,
    SubscriptionState,
};
use super::DeliverySink;
use super::{Destination, Router, RouterError};
use crate::selector::Selector;
use crate::store::{Commit, LogEntry};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Whether a wildcard queue subscription on `pattern` consumes `queue`.
/// Never the pattern destinations themselves, temporary queues (they are
/// their owner's: `/remote-temp-queue/…` never matches `/queue/…`, checked
/// anyway) or durable subscriptions' hidden queues.
pub fn consumes(pattern: &str, queue: &Address) -> bool {
    queue.kind == DestinationKind::Queue
        && !queue.is_temporary()
        && !is_wildcard(&queue.name)
        && !durable::is_durable_queue(&queue.name)
        && wildcard_matches(pattern, &queue.name)
}

/// One wildcard queue subscription.
pub struct WildcardSubscription {
    /// The subscription's id (its session handle's [`Consumer::id`]).
    pub id: SubscriptionId,
    /// The pattern, canonical (`/queue/orders.>`).
    pub pattern: Arc<str>,
    connection: ConnectionId,
    tag: Arc<str>,
    /// Acknowledgement mode of every member.
    pub ack: AckMode,
    selector: Option<Arc<Selector>>,
    exclusive: bool,
    prefetch: usize,
    /// Shared by the members: one sink, so the store's delivery marks keep
    /// the members' deliveries in window order on their way to the socket.
    sink: Arc<dyn DeliverySink>,
    window: Arc<SharedWindow>,
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    /// Unsubscribed: no member is added any more.
    closed: bool,
    /// One per matching queue; each [`Consumer::destination`] is its queue.
    list: Vec<Arc<Consumer>>,
}

impl std::fmt::Debug for WildcardSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WildcardSubscription")
            .field("id", &self.id)
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl WildcardSubscription {
    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The member with subscription id `id` (the id in a MESSAGE's `ack`).
    pub fn member(&self, id: SubscriptionId) -> Option<Arc<Consumer>> {
        self.lock().list.iter().find(|m| m.id == id).cloned()
    }

    /// Every member, one per queue consumed.
    pub fn members(&self) -> Vec<Arc<Consumer>> {
        self.lock().list.clone()
    }
}

/// The wildcard side of [`Router`]: subscribing, adding queues created
/// later, and acknowledgements that span the members.
impl Router {
    /// Subscribes to every queue `pattern` (a wildcard queue destination)
    /// matches, now and later. Returns the session's handle.
    #[allow(clippy::too_many_arguments)] // the same as `Router::subscribe_with`
    pub(super) fn subscribe_wildcard(
        &self,
        pattern: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
        prefetch: usize,
        link_credit: Option<u32>,
    ) -> Arc<Consumer> {
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        let sink = super::delivery_marks::DeliveryMarks::wrap(sink, &pattern, &self.store);
        let wildcard = Arc::new_cyclic(|me| WildcardSubscription {
            id,
            pattern: pattern.address.name.clone(),
            connection,
            tag: tag.clone(),
            ack,
            selector: options.selector,
            exclusive: options.exclusive,
            prefetch: prefetch.max(1),
            sink,
            window: Arc::new(SharedWindow::new(
                prefetch.max(1),
                link_credit,
                self.errands.clone(),
                me.clone(),
            )),
            members: Mutex::new(Members::default()),
        });
        let handle = Arc::new(Consumer {
            id,
            connection,
            destination: pattern,
            tag,
            ack,
            kind: ConsumerKind::Wildcard(wildcard.clone()),
        });
        // Registered before the existing queues are scanned, while a new
        // queue is added to the map before the registry is scanned: a queue
        // created meanwhile is found by one side or both (joining twice is
        // a no-op), never by neither.
        self.queue_wildcards
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(wildcard.clone());
        for queue in self.destinations() {
            if consumes(&wildcard.pattern, &queue.address) {
                self.join(&wildcard, &queue);
            }
        }
        handle
    }

    /// A queue was created: every wildcard subscription matching it starts
    /// consuming it.
    pub(super) fn join_wildcards(&self, queue: &Arc<Destination>) {
        if queue.kind() != DestinationKind::Queue {
            return;
        }
        let matching: Vec<Arc<WildcardSubscription>> = self
            .queue_wildcards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|w| consumes(&w.pattern, &queue.address))
            .cloned()
            .collect();
        for wildcard in matching {
            self.join(&wildcard, queue);
        }
    }

    /// Adds `queue` to `wildcard`'s members (once).
    fn join(&self, wildcard: &Arc<WildcardSubscription>, queue: &Arc<Destination>) {
        let mut members = wildcard.lock();
        if members.closed
            || members
                .list
                .iter()
                .any(|m| Arc::ptr_eq(&m.destination, queue))
        {
            return;
        }
        let member = Arc::new(Consumer {
            id: self.next_subscription.fetch_add(1, Ordering::Relaxed),
            connection: wildcard.connection,
            destination: queue.clone(),
            tag: wildcard.tag.clone(),
            ack: wildcard.ack,
            kind: ConsumerKind::Wildcard(wildcard.clone()),
        });
        // The member's own prefetch is the whole window: the window is
        // what bounds it.
        let mut state =
            SubscriptionState::new(member.clone(), wildcard.sink.clone(), wildcard.prefetch);
        state.selector = wildcard.selector.clone();
        state.exclusive = wildcard.exclusive;
        state.window = Some(wildcard.window.clone());
        members.list.push(member);
        // Under the member list's lock, so an unsubscribe cannot miss it.
        queue.subscribe(state);
    }

    /// Ends a wildcard subscription: every member's unacknowledged messages
    /// go back to their own queue, marked redelivered.
    pub(super) fn unsubscribe_wildcard(&self, wildcard: &WildcardSubscription) {
        self.queue_wildcards
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| w.id != wildcard.id);
        let mut members = wildcard.lock();
        members.closed = true;
        // Emptying the list also breaks the members' references back to
        // the subscription.
        for member in std::mem::take(&mut members.list) {
            member.destination.unsubscribe(member.id);
        }
    }

    /// A wake-up from a wildcard subscription's window: a slot freed, so
    /// every member queue dispatches again.
    pub(super) fn wake_wildcard(&self, wildcard: &WildcardSubscription) {
        let turn = wildcard.window.woken();
        let mut members = wildcard.members();
        if !members.is_empty() {
            let start = turn % members.len();
            members.rotate_left(start);
        }
        for member in members {
            member.destination.redispatch();
        }
    }

    /// Native links: credit over the whole wildcard link.
    pub(super) fn flow_wildcard(
        &self,
        wildcard: &WildcardSubscription,
        receiver_count: u32,
        credit: u32,
        drain: bool,
    ) -> Option<LinkFlow> {
        if wildcard.lock().closed {
            return None;
        }
        wildcard.window.grant(receiver_count, credit);
        // Deliveries the credit allows reach the sink before this returns.
        self.wake_wildcard(wildcard);
        Some(if drain {
            wildcard.window.drain()
        } else {
            wildcard.window.flow()
        })
    }

    /// The member holding message `seq`: `consumer` itself when it is a
    /// member (the MESSAGE's `ack` named it), else searched.
    fn member_holding(
        &self,
        wildcard: &WildcardSubscription,
        consumer: &Arc<Consumer>,
        seq: u64,
    ) -> Result<Arc<Consumer>, RouterError> {
        let found = if consumer.id == wildcard.id {
            wildcard
                .members()
                .into_iter()
                .find(|m| m.destination.has_unacked(m.id, seq))
        } else {
            Some(consumer.clone())
        };
        found.ok_or_else(|| RouterError::NotDelivered(self.message_id(seq)))
    }

    /// For a cumulative (`client`) ack or nack of `seq`: per member, the last
    /// message delivered no later than `seq` on the subscription as a whole.
    fn cumulative_targets(
        &self,
        wildcard: &WildcardSubscription,
        member: &Consumer,
        seq: u64,
    ) -> Result<Vec<(Arc<Consumer>, u64)>, RouterError> {
        let order = member
            .destination
            .delivery_order(member.id, seq)
            .ok_or_else(|| RouterError::NotDelivered(self.message_id(seq)))?;
        Ok(wildcard
            .members()
            .into_iter()
            .filter_map(|m| {
                let last = m.destination.last_delivered_through(m.id, order)?;
                Some((m, last))
            })
            .collect())
    }

    /// [`Router::ack`] of a wildcard subscription: `client` mode
    /// acknowledges everything delivered up to `seq` on every member queue.
    /// The acks are logged against each message's own queue, in one append.
    pub(super) fn ack_wildcard(
        &self,
        wildcard: &WildcardSubscription,
        consumer: &Arc<Consumer>,
        seq: u64,
    ) -> Result<Commit, RouterError> {
        let member = self.member_holding(wildcard, consumer, seq)?;
        let mut entries = Vec::new();
        if wildcard.ack == AckMode::Client {
            for (m, last) in self.cumulative_targets(wildcard, &member, seq)? {
                if let Ok(acked) = m.destination.ack(m.id, last, true) {
                    entries.extend(super::ack_entries(&m.destination, &acked));
                }
            }
        } else {
            let acked = member
                .destination
                .ack(member.id, seq, false)
                .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))?;
            entries.extend(super::ack_entries(&member.destination, &acked));
        }
        Ok(self.append_acks(entries))
    }

    /// [`Router::ack_exact`] of a wildcard subscription (a committed
    /// transaction's acks, which may span queues).
    pub(super) fn ack_exact_wildcard(
        &self,
        wildcard: &WildcardSubscription,
        seqs: &[u64],
    ) -> Commit {
        let mut entries = Vec::new();
        for m in wildcard.members() {
            for &seq in seqs {
                if let Ok(acked) = m.destination.ack(m.id, seq, false) {
                    entries.extend(super::ack_entries(&m.destination, &acked));
                }
            }
        }
        self.append_acks(entries)
    }

    /// [`Router::nack`] of a wildcard subscription: the messages return to
    /// their own queues.
    pub(super) fn nack_wildcard(
        &self,
        wildcard: &WildcardSubscription,
        consumer: &Arc<Consumer>,
        seq: u64,
    ) -> Result<(), RouterError> {
        let member = self.member_holding(wildcard, consumer, seq)?;
        if wildcard.ack == AckMode::Client {
            for (m, last) in self.cumulative_targets(wildcard, &member, seq)? {
                let _ = m.destination.nack(m.id, last, true);
            }
            Ok(())
        } else {
            member
                .destination
                .nack(member.id, seq, false)
                .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))
        }
    }

    /// [`Router::nack_exact`] of a wildcard subscription.
    pub(super) fn nack_exact_wildcard(&self, wildcard: &WildcardSubscription, seqs: &[u64]) {
        for m in wildcard.members() {
            for &seq in seqs {
                let _ = m.destination.nack(m.id, seq, false);
            }
        }
    }

    /// [`Router::stage`] of a wildcard subscription (a transactional ACK or
    /// NACK; cumulative across queues in `client` mode).
    pub(super) fn stage_wildcard(
        &self,
        wildcard: &WildcardSubscription,
        consumer: &Arc<Consumer>,
        seq: u64,
    ) -> Result<Vec<u64>, RouterError> {
        let member = self.member_holding(wildcard, consumer, seq)?;
        if wildcard.ack == AckMode::Client {
            let mut seqs = Vec::new();
            for (m, last) in self.cumulative_targets(wildcard, &member, seq)? {
                if let Ok(held) = m.destination.stage(m.id, last, true) {
                    seqs.extend(held);
                }
            }
            Ok(seqs)
        } else {
            member
                .destination
                .stage(member.id, seq, false)
                .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))
        }
    }

    /// [`Router::unstage`] of a wildcard subscription.
    pub(super) fn unstage_wildcard(&self, wildcard: &WildcardSubscription, seqs: &[u64]) {
        for m in wildcard.members() {
            m.destination.unstage(m.id, seqs);
        }
    }

    /// Whether some member holds `seq` unacknowledged.
    pub(super) fn wildcard_has_unacked(&self, wildcard: &WildcardSubscription, seq: u64) -> bool {
        wildcard
            .members()
            .iter()
            .any(|m| m.destination.has_unacked(m.id, seq))
    }

    /// The queues a wildcard queue pattern matches now (for browsing).
    pub fn queues_matching(&self, pattern: &Address) -> Vec<Arc<Destination>> {
        self.destinations()
            .into_iter()
            .filter(|d| consumes(&pattern.name, &d.address))
            .collect()
    }
}

/// Appends the store entries of acks, in one batch.
impl Router {
    fn append_acks(&self, entries: Vec<LogEntry>) -> Commit {
        if entries.is_empty() {
            Commit::Done
        } else {
            self.store.append(entries)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::router::{Delivery, RouterConfig};
    use crate::store::memory::MemoryStore;

    /// Records deliveries.
    #[derive(Default)]
    struct Collect(Mutex<Vec<Delivery>>);

    impl DeliverySink for Collect {
        fn deliver(&self, d: Delivery) {
            self.0.lock().unwrap().push(d);
        }
    }

    fn publish(router: &Router, queue: &str) {
        let d = router
            .destination(&Address::parse(queue, 1).unwrap(), 1)
            .unwrap();
        router.publish_empty(&d);
    }

    fn wildcard(
        router: &Router,
        pattern: &str,
        prefetch: usize,
        sink: Arc<Collect>,
    ) -> Arc<Consumer> {
        let d = router
            .destination(&Address::parse(pattern, 1).unwrap(), 1)
            .unwrap();
        let options = SubscribeOptions {
            prefetch: Some(prefetch),
            ..SubscribeOptions::default()
        };
        router.subscribe(d, 1, "w".into(), AckMode::ClientIndividual, options, sink)
    }

    #[test]
    fn concurrent_publishers_never_exceed_the_shared_window() {
        let router = Arc::new(Router::new(RouterConfig::default(), Arc::new(MemoryStore)));
        let sink = Arc::new(Collect::default());
        let _w = wildcard(&router, "/queue/race.>", 10, sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let router = router.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        publish(&router, &format!("/queue/race.q{t}"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sink.0.lock().unwrap().len(), 10);
    }

    #[test]
    fn a_busy_queue_does_not_keep_the_window_to_itself() {
        let router = Router::new(RouterConfig::default(), Arc::new(MemoryStore));
        let sink = Arc::new(Collect::default());
        for _ in 0..5 {
            publish(&router, "/queue/fair.a");
        }
        publish(&router, "/queue/fair.b");
        let head = wildcard(&router, "/queue/fair.>", 1, sink.clone());
        let wildcard = head.kind.wildcard().cloned().unwrap();
        let mut from = Vec::new();
        for _ in 0..3 {
            let last = sink.0.lock().unwrap().last().cloned().unwrap();
            from.push(last.message.destination.to_string());
            router.ack(&last.consumer, last.message.seq).unwrap();
            router.wake_wildcard(&wildcard);
        }
        // fair.a's own ack does not take the slot back before fair.b waited.
        assert!(from.iter().any(|d| d == "/queue/fair.b"), "{from:?}");
        assert_eq!(sink.0.lock().unwrap().len(), 4);
    }

    #[test]
    fn an_ack_on_one_queue_lets_another_queue_deliver() {
        let router = Router::new(RouterConfig::default(), Arc::new(MemoryStore));
        let sink = Arc::new(Collect::default());
        publish(&router, "/queue/w.a");
        publish(&router, "/queue/w.b");
        let head = wildcard(&router, "/queue/w.*", 1, sink.clone());
        let first = sink.0.lock().unwrap()[0].clone();
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        assert_eq!(&*first.message.destination, "/queue/w.a");
        router.ack(&first.consumer, first.message.seq).unwrap();
        // The wake-up is the errand task's job; run it by hand.
        let wildcard = head.kind.wildcard().cloned().unwrap();
        router.wake_wildcard(&wildcard);
        let deliveries = sink.0.lock().unwrap().clone();
        assert_eq!(deliveries.len(), 2);
        assert_eq!(&*deliveries[1].message.destination, "/queue/w.b");
        // Through the head, the member holding it is found.
        router.ack(&head, deliveries[1].message.seq).unwrap();
        router.unsubscribe(&head);
        assert!(wildcard.members().is_empty());
    }
}
