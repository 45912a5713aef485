//! [`SharedWindow`]: the one prefetch window (and native link credit) of a
//! wildcard queue subscription, shared by its members on every queue it
//! consumes (see [`super::queue_wildcard`] for why and for the lock order).
//! A member takes a slot before each delivery, so the members, dispatching
//! under different queues' locks, can never deliver more than the window
//! together; the window numbers the deliveries for cumulative acks, and
//! wakes the member queues when a slot frees while some of them wait.

use super::dead_letter::Errand;
use super::queue_wildcard::WildcardSubscription;
use super::subscription::LinkFlow;
use super::{Delivery, DeliverySink};
use std::sync::{Mutex, MutexGuard, Weak};
use tokio::sync::mpsc;

/// The prefetch window and link credit shared by a wildcard subscription's
/// members. See the module doc.
pub struct SharedWindow {
    state: Mutex<WindowState>,
    /// Where wake-ups go: the router's errand task.
    wake: mpsc::UnboundedSender<Errand>,
    subscription: Weak<WildcardSubscription>,
}

struct WindowState {
    prefetch: usize,
    /// Delivered and unacknowledged (not staged by a transaction), over all
    /// members.
    counted: usize,
    /// Slots taken for a delivery about to happen.
    reserved: usize,
    /// Native links: deliveries the client still allows (None: STOMP).
    link_credit: Option<u32>,
    /// Deliveries made, wrapping: the native link's delivery count.
    delivered: u32,
    /// Numbers deliveries, for cumulative acks across queues.
    next_order: u64,
    /// A member found no slot: wake the members when one frees.
    starved: bool,
    /// Slots freed while starved, kept for the wake-up's round.
    parked: usize,
    /// Which member the next wake-up's round starts with.
    turn: usize,
    /// A wake-up is on its way (at most one at a time).
    wake_queued: bool,
}

impl SharedWindow {
    /// A window of `prefetch` slots (and, for a native link, no credit
    /// until granted) whose wake-ups go to `wake`.
    pub fn new(
        prefetch: usize,
        link_credit: Option<u32>,
        wake: mpsc::UnboundedSender<Errand>,
        subscription: Weak<WildcardSubscription>,
    ) -> SharedWindow {
        SharedWindow {
            state: Mutex::new(WindowState {
                prefetch: prefetch.max(1),
                counted: 0,
                reserved: 0,
                link_credit,
                delivered: 0,
                next_order: 0,
                starved: false,
                parked: 0,
                turn: 0,
                wake_queued: false,
            }),
            wake,
            subscription,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(st: &WindowState) -> bool {
        st.counted + st.reserved + st.parked < st.prefetch
            && st.link_credit.is_none_or(|c| c as usize > st.reserved)
    }

    /// Whether a slot is free (without taking it).
    pub fn has_room(&self) -> bool {
        Self::room(&self.lock())
    }

    /// Takes a slot for a delivery; marks the window starved when none is
    /// free, so the queue is told once one is.
    pub fn try_reserve(&self) -> bool {
        let mut st = self.lock();
        if Self::room(&st) {
            st.reserved += 1;
            true
        } else {
            st.starved = true;
            false
        }
    }

    /// Gives back a slot taken for a delivery that did not happen.
    pub fn unreserve(&self) {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(1);
        self.freed(&mut st, 1);
    }

    /// `n` more unacknowledged messages (a transaction's acks undone).
    pub fn add(&self, n: usize) {
        self.lock().counted += n;
    }

    /// `n` messages acknowledged, returned or staged by a transaction.
    pub fn release(&self, n: usize) {
        let mut st = self.lock();
        st.counted = st.counted.saturating_sub(n);
        self.freed(&mut st, n);
    }

    /// Makes a delivery: uses the slot taken for it (`reserved`), numbers
    /// it and hands it to `sink` under the window lock, so the members'
    /// deliveries reach the connection in the order they are numbered.
    pub fn deliver(&self, reserved: bool, sink: &dyn DeliverySink, delivery: Delivery) -> u64 {
        let mut st = self.lock();
        if reserved {
            st.reserved = st.reserved.saturating_sub(1);
        }
        st.counted += 1;
        if let Some(c) = &mut st.link_credit {
            *c = c.saturating_sub(1);
        }
        st.delivered = st.delivered.wrapping_add(1);
        st.next_order += 1;
        let order = st.next_order;
        sink.deliver(delivery);
        order
    }

    /// Native links: credit for `receiver_count + credit` deliveries in total
    /// over the whole link (as [`SubscriptionState::grant`]).
    pub(super) fn grant(&self, receiver_count: u32, credit: u32) {
        let mut st = self.lock();
        let allowed = receiver_count
            .wrapping_add(credit)
            .wrapping_sub(st.delivered);
        st.link_credit = Some(if (allowed as i32) < 0 {
            0
        } else {
            allowed.min(credit)
        });
    }

    /// Native drain: uses up the credit not taken by a delivery under way.
    pub(super) fn drain(&self) -> LinkFlow {
        let mut st = self.lock();
        let reserved = u32::try_from(st.reserved).unwrap_or(u32::MAX);
        if let Some(c) = st.link_credit {
            let unused = c.saturating_sub(reserved);
            st.delivered = st.delivered.wrapping_add(unused);
            st.link_credit = Some(c - unused);
        }
        Self::flow_of(&st)
    }

    pub(super) fn flow(&self) -> LinkFlow {
        Self::flow_of(&self.lock())
    }

    fn flow_of(st: &WindowState) -> LinkFlow {
        LinkFlow {
            delivery_count: st.delivered,
            link_credit: st.link_credit.unwrap_or(0),
        }
    }

    /// `n` slots freed: when queues wait for one, they are parked for the
    /// wake-up (sent once), which hands them out in turn.
    fn freed(&self, st: &mut WindowState, n: usize) {
        if !st.starved {
            return;
        }
        st.parked += n;
        if !st.wake_queued {
            st.wake_queued = true;
            let _ = self.wake.send(Errand::Wake(self.subscription.clone()));
        }
    }

    /// The wake-up is being handled: parked slots are free again, a slot
    /// freed from now on sends another. Returns where its round starts.
    pub(super) fn woken(&self) -> usize {
        let mut st = self.lock();
        st.wake_queued = false;
        st.starved = false;
        st.parked = 0;
        st.turn = st.turn.wrapping_add(1);
        st.turn
    }
}
