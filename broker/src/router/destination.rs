//! [`Destination`]: one queue or topic, its waiting messages, its subscriptions
//! and their credit, behind one short-held mutex.
//!
//! Locking: each destination has its own `std::sync::Mutex`, held only for
//! in-memory bookkeeping (never across an `.await`, never while taking another
//! destination's lock), so producers and consumers of different destinations
//! never contend. Delivering calls a [`super::DeliverySink`], which only queues.
//!
//! A persistent queue holds a window of waiting messages in memory and
//! leaves the rest to the store, read back as consumers drain it: see
//! [`backlog`] (the bookkeeping), `window` (applying it under the lock)
//! and `parked` (one order for persistent and non-persistent messages).

use super::address::{Address, DestinationKind};
use super::dead_letter::{DeadLetter, DeadLetterPolicy, DeathCause, Errand, NackPolicy};
use super::pending::{Pending, PendingQueue};
use super::subscription::{ConnectionId, InFlight, LinkFlow, SubscriptionId, SubscriptionState};
use super::{now_ms, Message};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

pub mod backlog;
mod parked;
mod wildcard_member;
mod window;

/// Counters exported as metrics. Monotonic except `depth`-like values, which
/// are computed on demand.
#[derive(Debug, Default)]
pub struct DestinationStats {
    /// Messages published.
    pub enqueued: AtomicU64,
    /// Messages acknowledged (consumed).
    pub dequeued: AtomicU64,
    /// Deliveries to consumers (first deliveries and redeliveries).
    pub delivered: AtomicU64,
    /// Deliveries of messages that had been delivered before.
    pub redelivered: AtomicU64,
    /// Messages dropped because they expired.
    pub expired: AtomicU64,
    /// Topic messages dropped because a subscriber's backlog was full.
    pub discarded: AtomicU64,
}

/// A queue or topic.
pub struct Destination {
    /// Canonical name and kind.
    pub address: Address,
    /// Producer flow control threshold in bytes.
    memory_limit: usize,
    /// Queues with consumers: producers also pause once this many messages
    /// wait (0 = off), so slow consumers mean slower producers, not seconds
    /// of queueing latency.
    flow_window: usize,
    /// Producers must wait: over `memory_limit` or `flow_window`. Mirrored
    /// outside the lock so producers check it without locking.
    over_limit: AtomicBool,
    /// Most messages one topic subscriber may have waiting.
    backlog_limit: usize,
    /// Bytes held (waiting or unacked), mirrored outside the lock so producers
    /// can check flow control without locking.
    memory: AtomicUsize,
    /// Producers waiting for `memory` to drop below the limit.
    waiting_producers: AtomicUsize,
    space: Notify,
    /// Metrics.
    pub stats: DestinationStats,
    /// Redelivery limits and where dead letters go.
    policy: Arc<DeadLetterPolicy>,
    /// This destination is a DLQ: its messages are never dead-lettered again.
    is_dlq: bool,
    errands: mpsc::UnboundedSender<Errand>,
    /// Deleted by an administrator ([`Destination::retire`]): it takes no
    /// more messages. Set and read under the state lock, so a publish
    /// either lands before the delete (and is dropped with it) or sees the
    /// flag and goes to the destination's successor.
    deleted: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Queues only: messages waiting for a consumer with credit.
    waiting: PendingQueue,
    /// Persistent queues: messages left to the store (see [`backlog`]).
    backlog: backlog::Backlog,
    subscriptions: Vec<SubscriptionState>,
    /// Round-robin cursor over `subscriptions`.
    next: usize,
    bytes: usize,
    /// Message groups: which subscription each active group is pinned to.
    groups: HashMap<Arc<str>, SubscriptionId>,
    /// The first exclusive subscription, which alone receives while it exists.
    exclusive_owner: Option<SubscriptionId>,
    /// A grouped message was published or restored here. Sticky: a group
    /// whose messages wait before any was delivered has no owner in
    /// `groups` yet, and only the filtered path pins one.
    grouped: bool,
    /// Some subscription has a selector or is exclusive, or a grouped message
    /// was seen: dispatch must check each message against each subscriber.
    /// Otherwise the plain round-robin fast path applies.
    filtered: bool,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// The subscription is gone.
    NoSubscription,
    /// No such message is awaiting acknowledgement on the subscription.
    NotDelivered,
}

/// A snapshot for metrics and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSnapshot {
    /// Messages waiting for a consumer.
    pub waiting: usize,
    /// Messages delivered and not yet acknowledged.
    pub unacked: usize,
    /// Subscriptions.
    pub consumers: usize,
    /// Bytes held.
    pub bytes: usize,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.address.name)
            .finish()
    }
}

impl Destination {
    /// An empty destination. `queue_window`: a persistent queue whose
    /// store keeps a backlog holds that many waiting messages and leaves
    /// further persistent ones to the store (`None`: holds everything).
    pub fn new(
        address: Address,
        memory_limit: usize,
        flow_window: usize,
        backlog_limit: usize,
        queue_window: Option<usize>,
        policy: Arc<DeadLetterPolicy>,
        errands: mpsc::UnboundedSender<Errand>,
    ) -> Destination {
        let state = State {
            backlog: match queue_window {
                Some(window) => backlog::Backlog::new(window, true),
                None => backlog::Backlog::default(),
            },
            ..State::default()
        };
        Destination {
            is_dlq: policy.is_dlq(&address.name),
            policy,
            errands,
            address,
            memory_limit,
            flow_window,
            over_limit: AtomicBool::new(false),
            backlog_limit: backlog_limit.max(1),
            memory: AtomicUsize::new(0),
            waiting_producers: AtomicUsize::new(0),
            space: Notify::new(),
            stats: DestinationStats::default(),
            deleted: AtomicBool::new(false),
            state: Mutex::new(state),
        }
    }

    /// The canonical name.
    pub fn name(&self) -> &str {
        &self.address.name
    }

    /// Queue or topic.
    pub fn kind(&self) -> DestinationKind {
        self.address.kind
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a broker bug; the state is
        // still structurally valid, so keep serving rather than poison everyone.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether producers must wait before publishing more.
    pub fn is_over_limit(&self) -> bool {
        self.over_limit.load(Ordering::Relaxed)
    }

    /// Waits until the destination is under its memory limit (producer flow
    /// control). Returns at once when it already is.
    pub async fn wait_for_space(&self) {
        self.waiting_producers.fetch_add(1, Ordering::SeqCst);
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_over_limit() {
                break;
            }
            notified.await;
        }
        self.waiting_producers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Producers currently blocked by flow control.
    pub fn blocked_producers(&self) -> usize {
        self.waiting_producers.load(Ordering::Relaxed)
    }

    /// Publishes a message: hands it to a consumer with credit or keeps it.
    /// A message for a deleted destination is dropped: producers go through
    /// [`Destination::try_publish`], which hands it back instead.
    pub fn publish(&self, message: Arc<Message>) {
        drop(self.try_publish(message));
    }

    /// Whether an administrator deleted this destination (see
    /// [`Destination::retire`]).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Deletes this destination unless it has subscriptions (`Err` with
    /// their count): marks it deleted and drains its waiting messages, all
    /// under its lock, so every publish either happened before (its message
    /// is among those returned) or is refused by [`Destination::try_publish`].
    pub fn retire(&self) -> Result<Vec<Arc<Message>>, usize> {
        let mut st = self.lock();
        if !st.subscriptions.is_empty() {
            return Err(st.subscriptions.len());
        }
        self.deleted.store(true, Ordering::Release);
        let mut out: Vec<_> = st.waiting.drain().into_iter().map(|p| p.message).collect();
        out.extend(st.backlog.drain_parked().into_iter().map(|p| p.message));
        st.bytes = 0;
        self.account(&st);
        Ok(out)
    }

    /// [`Destination::publish`], handing the message back (`Err`) when the
    /// destination was deleted: the caller finds its successor.
    pub fn try_publish(&self, message: Arc<Message>) -> Result<(), Arc<Message>> {
        // A queue message expired on arrival is given up as `dispatch` gives
        // up an expired waiting one; it must not reach a consumer just
        // because one was ready. (The clock is read only for messages that
        // can expire.)
        if self.address.kind == DestinationKind::Queue
            && message.expires != 0
            && message.is_expired(now_ms())
        {
            self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            self.bury(message, DeathCause::Expired, self.policy.expired_to_dlq);
            return Ok(());
        }
        let mut st = self.lock();
        if self.deleted.load(Ordering::Acquire) {
            return Err(message);
        }
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        let p = Pending {
            message,
            redeliveries: 0,
        };
        match self.address.kind {
            DestinationKind::Queue => {
                st.bytes += p.message.footprint();
                if p.message.group().is_some() {
                    st.grouped = true;
                    st.filtered = true;
                }
                // Invariant: no subscription with credit has an eligible
                // waiting message, so a new message may go straight to an
                // eligible one without overtaking anything it could have had.
                // A message whose lane has messages in the store waits
                // behind them, persistent or not: one order for both (see
                // `backlog`).
                if st.backlog.should_park(p.message.priority) {
                    st.backlog.park(p);
                    self.account(&st);
                    return Ok(());
                }
                // A message below the priority of messages still in the
                // store waits for them (strict priority, see `backlog`).
                if (st.waiting.is_empty() || st.filtered)
                    && p.message.priority >= st.backlog.floor()
                {
                    let target = if st.filtered {
                        st.next_eligible(&p.message)
                    } else {
                        st.next_with_credit()
                    };
                    if let Some(i) = target {
                        let closes_group = p.message.closes_group();
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        st.deliver_to(i, p);
                        // The group's other waiting messages may now go to
                        // anyone: the invariant needs a dispatch again.
                        if closes_group {
                            self.dispatch(&mut st);
                        }
                        self.account(&st);
                        return Ok(());
                    }
                }
                st.waiting.push_back(p);
            }
            DestinationKind::Topic => {
                let fp = p.message.footprint();
                let limit = self.backlog_limit;
                let mut added = 0;
                let mut discarded = 0;
                for sub in &mut st.subscriptions {
                    if !sub.selects(&p.message) {
                        continue;
                    }
                    // A subscriber's backlog is bounded by count and, with
                    // what it has in flight, by its share of the memory
                    // limit: one that stops reading loses messages instead of
                    // blocking the producer (and so every other subscriber).
                    let room = sub.backlog.len() < limit
                        && sub.inflight_bytes + sub.backlog.bytes() < sub.max_inflight_bytes;
                    if sub.backlog.is_empty() && sub.has_credit() {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        sub.deliver(p.clone());
                    } else if room {
                        sub.backlog.push_back(p.clone());
                    } else {
                        discarded += 1;
                        continue;
                    }
                    added += fp;
                }
                st.bytes += added;
                if discarded > 0 {
                    self.stats.discarded.fetch_add(discarded, Ordering::Relaxed);
                }
            }
        }
        self.account(&st);
        Ok(())
    }

    /// Puts a message recovered from the store back in the waiting list.
    /// Topic messages are only recovered for durable subscriptions, which
    /// keep their own queue, so this is for queues.
    pub fn restore(&self, message: Arc<Message>, redeliveries: u32) {
        let mut st = self.lock();
        st.bytes += message.footprint();
        if message.group().is_some() {
            st.grouped = true;
            st.filtered = true;
        }
        st.waiting.push_back(Pending {
            message,
            redeliveries,
        });
        self.account(&st);
    }

    /// Adds a subscription and delivers what it can take at once.
    pub fn subscribe(&self, sub: SubscriptionState) {
        self.attach(sub, false);
    }

    /// [`Destination::subscribe`], unless an administrator deleted this
    /// destination (`false`, nothing attached): the caller subscribes to its
    /// successor instead. Checked under the lock [`Destination::retire`]
    /// marks it under, so a subscription is either seen by the delete
    /// (which then refuses) or refused here.
    #[must_use]
    pub fn try_subscribe(&self, sub: SubscriptionState) -> bool {
        self.attach(sub, true)
    }

    fn attach(&self, mut sub: SubscriptionState, unless_deleted: bool) -> bool {
        // Half the limit: one consumer that stops reading leaves the other
        // half for the rest (see `SubscriptionState::max_inflight_bytes`).
        sub.max_inflight_bytes = (self.memory_limit / 2).max(1);
        let mut st = self.lock();
        if unless_deleted && self.deleted.load(Ordering::Acquire) {
            return false;
        }
        st.subscriptions.push(sub);
        st.refresh_filters();
        self.dispatch(&mut st);
        self.account(&st);
        true
    }

    /// Removes a subscription. On a queue its unacknowledged messages go back
    /// in front of the waiting ones, in their delivery order, marked
    /// redelivered; on a topic they are dropped with the subscription.
    pub fn unsubscribe(&self, id: SubscriptionId) -> Option<SubscriptionState> {
        let mut st = self.lock();
        let i = st.subscriptions.iter().position(|s| s.consumer.id == id)?;
        let mut sub = st.subscriptions.remove(i);
        if st.next > i {
            st.next -= 1;
        }
        // Its message groups move to whoever gets their next message.
        st.groups.retain(|_, owner| *owner != id);
        st.refresh_filters();
        let returned = sub.take_unacked();
        match self.address.kind {
            DestinationKind::Queue => self.requeue(&mut st, returned),
            DestinationKind::Topic => {
                let freed: usize = returned
                    .iter()
                    .map(|f| f.message.footprint())
                    .sum::<usize>()
                    + sub
                        .backlog
                        .iter()
                        .map(|p| p.message.footprint())
                        .sum::<usize>();
                st.bytes -= freed.min(st.bytes);
                sub.backlog.drain();
            }
        }
        self.dispatch(&mut st);
        self.account(&st);
        Some(sub)
    }

    /// Acknowledges message `seq` (and, when `cumulative`, every message
    /// delivered before it) on subscription `id`. Returns the messages
    /// consumed, for the store.
    pub fn ack(
        &self,
        id: SubscriptionId,
        seq: u64,
        cumulative: bool,
    ) -> Result<Vec<Arc<Message>>, AckError> {
        let mut st = self.lock();
        let sub = st.subscription(id)?;
        let pos = sub.position(seq).ok_or(AckError::NotDelivered)?;
        let taken = take_acked(sub, pos, cumulative);
        let freed: usize = taken.iter().map(|f| f.message.footprint()).sum();
        st.bytes -= freed.min(st.bytes);
        self.stats
            .dequeued
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        self.dispatch(&mut st);
        self.account(&st);
        Ok(taken.into_iter().map(|f| f.message).collect())
    }

    /// Rejects message `seq` (cumulatively in client mode): it goes back to be
    /// delivered again, marked redelivered.
    pub fn nack(&self, id: SubscriptionId, seq: u64, cumulative: bool) -> Result<(), AckError> {
        let mut st = self.lock();
        let sub = st.subscription(id)?;
        let pos = sub.position(seq).ok_or(AckError::NotDelivered)?;
        let taken = take_acked(sub, pos, cumulative);
        if self.policy.nack == NackPolicy::DeadLetter && !self.is_dlq {
            let freed: usize = taken.iter().map(|f| f.message.footprint()).sum();
            st.bytes -= freed.min(st.bytes);
            for f in taken {
                self.bury(f.message, DeathCause::Rejected, true);
            }
            self.dispatch(&mut st);
            self.account(&st);
            return Ok(());
        }
        match self.address.kind {
            DestinationKind::Queue => self.requeue(&mut st, taken),
            DestinationKind::Topic => {
                // A topic subscriber gets its own message again.
                if let Ok(sub) = st.subscription(id) {
                    for f in taken.into_iter().rev() {
                        sub.backlog.push_front(Pending {
                            message: f.message,
                            redeliveries: f.redeliveries + 1,
                        });
                    }
                }
            }
        }
        self.dispatch(&mut st);
        self.account(&st);
        Ok(())
    }

    /// Marks message `seq` (cumulatively in client mode) as acknowledged inside
    /// a transaction: its credit is returned now, the message is removed only
    /// by [`Destination::ack`]ing the returned sequence numbers at commit.
    pub fn stage(
        &self,
        id: SubscriptionId,
        seq: u64,
        cumulative: bool,
    ) -> Result<Vec<u64>, AckError> {
        let mut st = self.lock();
        let sub = st.subscription(id)?;
        let pos = sub.position(seq).ok_or(AckError::NotDelivered)?;
        let first = if cumulative { 0 } else { pos };
        let mut seqs = Vec::new();
        for f in sub.unacked.range_mut(first..=pos) {
            if !f.staged {
                f.staged = true;
                seqs.push(f.message.seq);
            }
        }
        sub.add_staged(seqs.len());
        self.dispatch(&mut st);
        self.account(&st);
        Ok(seqs)
    }

    /// Undoes [`Destination::stage`] (transaction aborted): the messages are
    /// unacknowledged again and count against credit.
    pub fn unstage(&self, id: SubscriptionId, seqs: &[u64]) {
        let mut st = self.lock();
        if let Ok(sub) = st.subscription(id) {
            let mut unstaged = 0;
            for f in sub
                .unacked
                .iter_mut()
                .filter(|f| f.staged && seqs.contains(&f.message.seq))
            {
                f.staged = false;
                unstaged += 1;
            }
            sub.remove_staged(unstaged);
        }
    }

    /// Acknowledges exactly the deliveries `seqs` of subscription `id`, under
    /// one lock (unknown ones are skipped): auto-ack deliveries written to
    /// the connection, a native Disposition range, a committed transaction's
    /// acks. Returns the messages consumed, for the store.
    pub fn ack_exact(&self, id: SubscriptionId, seqs: &[u64]) -> Vec<Arc<Message>> {
        let mut st = self.lock();
        let Ok(sub) = st.subscription(id) else {
            return Vec::new();
        };
        let mut done = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            // Written in delivery order, so the match is nearly always at the front.
            if let Some(pos) = sub.position(seq) {
                if let Some(f) = sub.remove_unacked(pos) {
                    done.push(f.message);
                }
            }
        }
        let freed: usize = done.iter().map(|m| m.footprint()).sum();
        st.bytes -= freed.min(st.bytes);
        self.stats
            .dequeued
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        self.dispatch(&mut st);
        self.account(&st);
        done
    }

    /// Credit-based subscriptions: grants credit (see
    /// [`SubscriptionState::grant`]), delivers what it allows at once and,
    /// when `drain`, uses up what is left. `None` if the subscription is gone.
    pub fn flow(
        &self,
        id: SubscriptionId,
        receiver_count: u32,
        credit: u32,
        drain: bool,
    ) -> Option<LinkFlow> {
        let mut st = self.lock();
        st.subscription(id).ok()?.grant(receiver_count, credit);
        self.dispatch(&mut st);
        let sub = st.subscription(id).ok()?;
        if drain {
            sub.drain();
        }
        let flow = LinkFlow {
            delivery_count: sub.delivered,
            link_credit: sub.link_credit.unwrap_or(0),
        };
        self.account(&st);
        Some(flow)
    }

    /// Messages waiting for a consumer.
    pub fn waiting_len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Messages waiting, in memory and in the store (a durable
    /// subscription's limit).
    pub fn depth(&self) -> usize {
        let st = self.lock();
        st.waiting.len()
            + st.backlog.parked_len()
            + usize::try_from(st.backlog.stored()).unwrap_or(usize::MAX)
    }

    /// Removes the oldest waiting message (a full durable subscription with
    /// the `drop-oldest` policy).
    pub fn drop_oldest(&self) -> Option<Arc<Message>> {
        let mut st = self.lock();
        let p = st.waiting.pop_oldest()?;
        st.bytes -= p.message.footprint().min(st.bytes);
        self.stats.discarded.fetch_add(1, Ordering::Relaxed);
        self.account(&st);
        Some(p.message)
    }

    /// Removes every waiting message, in delivery order, with its delivery
    /// count.
    pub fn drain_waiting(&self) -> Vec<(Arc<Message>, u32)> {
        let mut st = self.lock();
        let mut waiting = st.waiting.drain();
        waiting.extend(st.backlog.drain_parked());
        let out: Vec<_> = waiting
            .into_iter()
            .map(|p| (p.message, p.redeliveries))
            .collect();
        let freed: usize = out.iter().map(|(m, _)| m.footprint()).sum();
        st.bytes -= freed.min(st.bytes);
        self.account(&st);
        out
    }

    /// Waits until fewer than `limit` messages wait and the memory limit is
    /// respected (producers of a topic whose durable subscription is full).
    pub async fn wait_for_room(&self, limit: usize) {
        self.waiting_producers.fetch_add(1, Ordering::SeqCst);
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_over_limit() && self.depth() < limit {
                break;
            }
            notified.await;
        }
        self.waiting_producers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Up to `limit` waiting messages in delivery order, without consuming
    /// them (queue browsing).
    pub fn browse(
        &self,
        limit: usize,
        selector: Option<&crate::selector::Selector>,
    ) -> Vec<Arc<Message>> {
        let st = self.lock();
        let now = now_ms();
        st.waiting
            .iter()
            .filter(|p| !p.message.is_expired(now))
            .filter(|p| selector.is_none_or(|s| s.matches(&*p.message)))
            .take(limit)
            .map(|p| p.message.clone())
            .collect()
    }

    /// Whether subscription `id` holds message `seq` unacknowledged.
    pub fn has_unacked(&self, id: SubscriptionId, seq: u64) -> bool {
        let mut st = self.lock();
        st.subscription(id)
            .map(|s| s.position(seq).is_some())
            .unwrap_or(false)
    }

    /// Counts for metrics.
    pub fn snapshot(&self) -> DestinationSnapshot {
        let st = self.lock();
        let backlog: usize = st.subscriptions.iter().map(|s| s.backlog.len()).sum();
        DestinationSnapshot {
            waiting: st.waiting.len()
                + backlog
                + st.backlog.parked_len()
                + st.backlog.stored() as usize,
            unacked: st.subscriptions.iter().map(|s| s.unacked.len()).sum(),
            consumers: st.subscriptions.len(),
            bytes: st.bytes,
        }
    }

    /// Each subscription's owner, tag, prefetch and counts (management API).
    pub fn subscriptions(&self) -> Vec<super::manage::SubscriptionView> {
        let st = self.lock();
        st.subscriptions
            .iter()
            .map(|s| super::manage::SubscriptionView::of(s, self.name()))
            .collect()
    }

    /// Whether the destination has no subscription and holds nothing.
    pub fn is_idle(&self) -> bool {
        let st = self.lock();
        st.subscriptions.is_empty()
            && st.waiting.is_empty()
            && st.backlog.is_empty()
            && st.backlog.parked_len() == 0
    }

    /// Whether a connection other than `conn` has a subscription here.
    pub fn has_subscriber_other_than(&self, conn: ConnectionId) -> bool {
        self.lock()
            .subscriptions
            .iter()
            .any(|s| s.consumer.connection != conn)
    }

    /// Whether connection `conn` has a subscription here.
    pub fn has_subscriber_from(&self, conn: ConnectionId) -> bool {
        self.lock()
            .subscriptions
            .iter()
            .any(|s| s.consumer.connection == conn)
    }

    /// Moves waiting messages to subscriptions with credit, then asks for
    /// the store's next page when the window runs low.
    fn dispatch(&self, st: &mut State) {
        self.dispatch_waiting(st);
        if self.address.kind == DestinationKind::Queue {
            self.plan_backlog_read(st);
        }
    }

    fn dispatch_waiting(&self, st: &mut State) {
        let floor = st.backlog.floor();
        let now = if st.waiting.is_empty() && st.subscriptions.iter().all(|s| s.backlog.is_empty())
        {
            return;
        } else {
            now_ms()
        };
        let mut expired = 0u64;
        let mut freed = 0usize;
        match self.address.kind {
            DestinationKind::Queue if st.filtered => {
                // Each subscriber in turn takes the first message it may
                // have, until a full round delivers nothing. A round starts
                // where the cursor was: the cursor moves with each delivery,
                // and counting from it mid-round would skip subscribers.
                loop {
                    let mut delivered = false;
                    let n = st.subscriptions.len();
                    let start = st.next;
                    for k in 0..n {
                        let i = (start + k) % n;
                        if !st.subscriptions[i].take_credit() {
                            continue;
                        }
                        let State {
                            waiting,
                            subscriptions,
                            groups,
                            exclusive_owner,
                            ..
                        } = &mut *st;
                        let sub = &subscriptions[i];
                        let found = waiting.pop_matching_from(floor, |p| {
                            eligible(sub, *exclusive_owner, groups, &p.message)
                        });
                        let Some(p) = found else {
                            subscriptions[i].return_credit();
                            continue;
                        };
                        if p.message.is_expired(now) {
                            subscriptions[i].return_credit();
                            expired += 1;
                            freed += p.message.footprint();
                            self.bury(p.message, DeathCause::Expired, self.policy.expired_to_dlq);
                            delivered = true;
                            continue;
                        }
                        if p.redeliveries > 0 {
                            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        st.deliver_to(i, p);
                        st.next = (i + 1) % n.max(1);
                        delivered = true;
                    }
                    if !delivered || st.waiting.is_empty() {
                        break;
                    }
                }
            }
            DestinationKind::Queue => {
                while st.waiting.len_from(floor) > 0 {
                    let Some(i) = st.next_with_credit() else {
                        break;
                    };
                    let Some(p) = st.waiting.pop_from(floor) else {
                        st.subscriptions[i].return_credit();
                        break;
                    };
                    if p.message.is_expired(now) {
                        st.subscriptions[i].return_credit();
                        expired += 1;
                        freed += p.message.footprint();
                        self.bury(p.message, DeathCause::Expired, self.policy.expired_to_dlq);
                        continue;
                    }
                    if p.redeliveries > 0 {
                        self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                    }
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    st.subscriptions[i].deliver(p);
                }
            }
            DestinationKind::Topic => {
                for sub in &mut st.subscriptions {
                    while sub.has_credit() {
                        let Some(p) = sub.backlog.pop() else { break };
                        if p.message.is_expired(now) {
                            expired += 1;
                            freed += p.message.footprint();
                            self.bury(p.message, DeathCause::Expired, self.policy.expired_to_dlq);
                            continue;
                        }
                        if p.redeliveries > 0 {
                            self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        sub.deliver(p);
                    }
                }
            }
        }
        if expired > 0 {
            self.stats.expired.fetch_add(expired, Ordering::Relaxed);
            st.bytes -= freed.min(st.bytes);
        }
    }

    /// Puts returned messages back in front, keeping their relative order,
    /// marked redelivered; those delivered too often become dead letters.
    fn requeue(&self, st: &mut State, returned: Vec<InFlight>) {
        for f in returned.into_iter().rev() {
            let redeliveries = f.redeliveries + 1;
            if redeliveries > self.policy.max_redeliveries && !self.is_dlq {
                st.bytes -= f.message.footprint().min(st.bytes);
                self.bury(
                    f.message,
                    DeathCause::TooManyRedeliveries(redeliveries),
                    true,
                );
                continue;
            }
            let wait = self.policy.redelivery_wait(redeliveries);
            if wait > 0 {
                // Back after the redelivery delay (the router's scheduler
                // returns it); until then it is not this queue's.
                st.bytes -= f.message.footprint().min(st.bytes);
                let _ = self.errands.send(Errand::Delayed {
                    message: f.message,
                    redeliveries,
                    wait,
                });
                continue;
            }
            st.waiting.push_front(Pending {
                message: f.message,
                redeliveries,
            });
        }
    }

    /// A message back from its redelivery delay: first in line again.
    pub fn return_delayed(&self, message: Arc<Message>, redeliveries: u32) {
        let mut st = self.lock();
        st.bytes += message.footprint();
        st.waiting.push_front(Pending {
            message,
            redeliveries,
        });
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// Hands a message to the router's errand task.
    fn bury(&self, message: Arc<Message>, cause: DeathCause, to_dlq: bool) {
        let _ = self.errands.send(Errand::Dead(DeadLetter {
            message,
            from: self.address.name.clone(),
            cause,
            to_dlq,
        }));
    }

    /// Publishes the byte count for lock-free flow-control checks and wakes
    /// blocked producers once there is room.
    fn account(&self, st: &State) {
        self.memory.store(st.bytes, Ordering::Relaxed);
        // A queue that leaves persistent messages to the store does not
        // hold their producers for them: the window bounds what they cost
        // in memory, and the store's own limit refuses them when full.
        // Messages parked behind the store count as waiting ones: they are
        // held in memory (see `backlog`).
        let counted = if st.backlog.enabled() {
            st.waiting.len() - st.waiting.persistent_len() + st.backlog.parked_len()
        } else {
            st.waiting.len()
        };
        let over = st.bytes >= self.memory_limit
            || (self.flow_window > 0
                && !st.subscriptions.is_empty()
                && counted >= self.flow_window);
        self.over_limit.store(over, Ordering::Relaxed);
        if !over && self.waiting_producers.load(Ordering::SeqCst) > 0 {
            self.space.notify_waiters();
        }
    }
}

impl State {
    /// Adds a message read back from the store (or parked behind it) at
    /// the end of the window; its bytes are the caller's to count.
    fn join_window(&mut self, p: Pending) {
        if p.message.group().is_some() {
            self.grouped = true;
            self.filtered = true;
        }
        self.waiting.push_back(p);
    }

    fn subscription(&mut self, id: SubscriptionId) -> Result<&mut SubscriptionState, AckError> {
        self.subscriptions
            .iter_mut()
            .find(|s| s.consumer.id == id)
            .ok_or(AckError::NoSubscription)
    }

    /// Recomputes the dispatch mode after the subscriptions changed.
    fn refresh_filters(&mut self) {
        self.exclusive_owner = self
            .subscriptions
            .iter()
            .find(|s| s.exclusive)
            .map(|s| s.consumer.id);
        let any_filter = self
            .subscriptions
            .iter()
            .any(|s| s.selector.is_some() || s.exclusive);
        self.filtered = any_filter || self.grouped;
    }

    /// The next subscription in round-robin order with credit that may take
    /// `message` (selector, exclusivity, message group).
    fn next_eligible(&mut self, message: &Message) -> Option<usize> {
        let n = self.subscriptions.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let sub = &self.subscriptions[i];
            // Eligibility first: taking credit reserves a wildcard member's
            // shared window slot.
            if eligible(sub, self.exclusive_owner, &self.groups, message) && sub.take_credit() {
                self.next = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    /// Delivers to subscription `i`, pinning the message's group to it (or
    /// closing the group when the message says so).
    fn deliver_to(&mut self, i: usize, p: Pending) {
        if let Some(group) = p.message.group() {
            if p.message.closes_group() {
                self.groups.remove(group);
            } else if !self.groups.contains_key(group) {
                self.groups
                    .insert(group.into(), self.subscriptions[i].consumer.id);
            }
        }
        self.subscriptions[i].deliver(p);
    }

    /// The next subscription in round-robin order that has credit.
    fn next_with_credit(&mut self) -> Option<usize> {
        let n = self.subscriptions.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.subscriptions[i].take_credit() {
                self.next = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }
}

/// Whether `sub` may receive `message` on a queue.
fn eligible(
    sub: &SubscriptionState,
    exclusive_owner: Option<SubscriptionId>,
    groups: &HashMap<Arc<str>, SubscriptionId>,
    message: &Message,
) -> bool {
    if exclusive_owner.is_some_and(|owner| owner != sub.consumer.id) {
        return false;
    }
    if let Some(owner) = message.group().and_then(|g| groups.get(g)) {
        if *owner != sub.consumer.id {
            return false;
        }
    }
    sub.selects(message)
}

/// Removes the acknowledged entries: just `pos`, or (cumulative) every
/// non-staged entry up to and including `pos`.
fn take_acked(sub: &mut SubscriptionState, pos: usize, cumulative: bool) -> Vec<InFlight> {
    if !cumulative {
        // (`remove_unacked` also drops it from the staged count.)
        return sub.remove_unacked(pos).into_iter().collect();
    }
    let mut taken = Vec::with_capacity(pos + 1);
    let mut kept = std::collections::VecDeque::new();
    for f in sub.unacked.drain(..=pos) {
        if f.staged {
            kept.push_back(f);
        } else {
            taken.push(f);
        }
    }
    for f in kept.into_iter().rev() {
        sub.unacked.push_front(f);
    }
    for f in &taken {
        sub.forget_bytes(f);
    }
    taken
}
