//! A queue's window under its lock: what a [`Destination`] does with its
//! [`Backlog`] (the pure bookkeeping of what it left to the store, see
//! [`super::backlog`] for the rules): leaving a message to the store,
//! landing a read in the window with the parked messages in their places,
//! handing the cursor over to a successor, purging, holding and releasing
//! lanes. Each method takes the destination's lock once, briefly, and
//! never reads the store: reads run off the lock (`router::refill`).

use super::super::pending::Pending;
use super::backlog::{Backlog, Next, ReadPlan, LANES};
use super::{Destination, State};
use std::sync::Arc;

impl Destination {
    /// Decides, for a persistent message about to be appended, whether it
    /// is left to the store (see the module doc) and counts it if so.
    pub fn leave_to_store(&self, priority: u8) -> bool {
        let mut st = self.lock();
        if self.is_deleted() {
            return false;
        }
        let leave = st.backlog.should_leave(priority, st.waiting.len());
        if leave {
            st.backlog.add(priority, 1);
            self.stats
                .enqueued
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        leave
    }

    /// Undoes [`Destination::leave_to_store`]: the store refused the append.
    pub fn cancel_leave(&self, priority: u8) {
        let mut st = self.lock();
        st.backlog.cancel(priority);
        // Its lane may have nothing stored now: what was parked behind it
        // joins the window.
        for p in st.backlog.release(priority) {
            st.join_window(p);
        }
        self.dispatch(&mut st);
        self.account(&st);
        self.stats
            .enqueued
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// At start: `count` messages of `priority` are in the store.
    pub fn restore_backlog(&self, priority: u8, count: u64) {
        let mut st = self.lock();
        st.backlog.add(priority, count);
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// A read of `plan` came back: `read` messages in all (the count the
    /// lane loses), up to log index `position`; `keep` are the ones that
    /// join the window, each with its place in the read (the router took
    /// scheduled and expired ones out). Messages parked behind the lane's
    /// stored ones join between them, in their place.
    pub fn land_backlog(
        &self,
        plan: &ReadPlan,
        read: usize,
        position: u64,
        keep: Vec<(usize, Pending)>,
    ) -> Option<Next> {
        let mut st = self.lock();
        let next = st.backlog.landed(plan, read, position)?;
        let deleted = self.is_deleted();
        let mut keep = keep.into_iter().peekable();
        for k in 0..read {
            if let Some((_, p)) = keep.next_if(|(i, _)| *i == k) {
                if !deleted {
                    st.bytes += p.message.footprint();
                    st.join_window(p);
                }
            }
            for p in st.backlog.read_one(plan.priority) {
                st.join_window(p);
            }
        }
        for p in st.backlog.release(plan.priority) {
            st.join_window(p);
        }
        self.dispatch(&mut st);
        self.account(&st);
        Some(next)
    }

    /// A read of `plan` failed.
    pub fn backlog_read_failed(&self, plan: &ReadPlan) {
        self.lock().backlog.failed(plan);
    }

    /// After a short read's pause: dispatch again, which reads again.
    pub fn resume_backlog(&self) {
        let mut st = self.lock();
        st.backlog.resume();
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// Plans a read when the window runs low (or consumers starve), and
    /// sends it to the router. Called at the end of every dispatch.
    pub(super) fn plan_backlog_read(&self, st: &mut State) {
        if st.backlog.is_empty() {
            return;
        }
        let wanting = st.subscriptions.iter().any(|s| s.has_credit());
        if let Some(plan) = st.backlog.plan(st.waiting.len(), wanting) {
            let _ = self
                .errands
                .send(super::super::dead_letter::Errand::ReadBacklog {
                    destination: self.address.name.clone(),
                    plan,
                });
        }
    }

    /// What browsing needs beyond the window: the waiting messages lane by
    /// lane, the store lanes' positions,
    /// and the messages parked behind each lane.
    #[allow(clippy::type_complexity)]
    pub fn browse_view(
        &self,
    ) -> (
        Vec<Vec<Arc<super::Message>>>,
        Vec<(u8, u64, u64)>,
        Vec<Vec<Arc<super::Message>>>,
    ) {
        let st = self.lock();
        let window = (0..LANES as u8)
            .map(|p| st.waiting.lane(p).map(|w| w.message.clone()).collect())
            .collect();
        let parked = (0..LANES as u8)
            .map(|p| st.backlog.parked(p).map(|w| w.message.clone()).collect())
            .collect();
        (window, st.backlog.lanes(), parked)
    }

    /// Hands this queue's store cursor over (a durable subscription's queue
    /// re-created under its topic's name: `Router::durable_subscribe`);
    /// this queue keeps none. Pair with [`Destination::adopt_backlog`] on
    /// the successor, without holding this lock meanwhile.
    pub fn give_up_backlog(&self) -> Backlog {
        let mut st = self.lock();
        let backlog = std::mem::take(&mut st.backlog);
        st.bytes -= backlog.parked_bytes().min(st.bytes);
        self.account(&st);
        backlog
    }

    /// Takes over a predecessor's store cursor (see
    /// [`Destination::give_up_backlog`]): its counts and positions, so
    /// nothing is read twice or left behind.
    pub fn adopt_backlog(&self, mut backlog: Backlog) {
        if !backlog.enabled() {
            return;
        }
        backlog.forget_read();
        let mut st = self.lock();
        st.bytes += backlog.parked_bytes();
        st.backlog = backlog;
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// See [`Backlog::skip`]; the lane may be read again, so dispatch.
    pub fn skip_backlog(&self, priority: u8, position: u64) {
        let mut st = self.lock();
        st.backlog.skip(priority, position);
        for p in st.backlog.release(priority) {
            st.join_window(p);
        }
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// A queue created while a removed one of the same name still has its
    /// stored messages dropped (`Router::drop_backlog`): `held`, its lanes
    /// are not read until [`Destination::release_held_backlog`]. Messages
    /// left to them meanwhile are counted and wait, after the dropped
    /// ones in the log.
    pub fn with_backlog_held(mut self, held: bool) -> Destination {
        if held {
            // Not shared yet: no lock taken (the caller holds the map's).
            self.state
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .backlog
                .hold();
        }
        self
    }

    /// The predecessor's drop is done: each lane reads on from past what
    /// was dropped of it (`ends`: `(priority, position)`), the others from
    /// where they are.
    pub fn release_held_backlog(&self, ends: &[(u8, u64)]) {
        let mut st = self.lock();
        for p in 0..LANES as u8 {
            let end = ends.iter().find(|e| e.0 == p).map_or(0, |e| e.1);
            st.backlog.skip(p, end);
            for m in st.backlog.release(p) {
                st.join_window(m);
            }
        }
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// Whether a purge or delete is still acknowledging stored messages.
    pub fn purging_backlog(&self) -> bool {
        self.lock().backlog.purging()
    }

    /// Takes every stored message off the books (purge, delete): returns
    /// the lanes to acknowledge, `(priority, position, stored)` (see
    /// [`Backlog::take_for_purge`]).
    pub fn take_backlog(&self) -> Vec<(u8, u64, u64)> {
        let mut st = self.lock();
        let lanes = st.backlog.take_for_purge();
        self.account(&st);
        lanes
    }
}
