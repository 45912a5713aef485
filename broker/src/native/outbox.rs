//! [`Outbox`]: everything one native connection will write, in order —
//! replies from its state machine and deliveries from the router — drained by
//! the connection's single writer task.
//!
//! The same design as the STOMP outbox (`crate::stomp::outbox`), with native
//! items. Bounds: deliveries are bounded by link credit and prefetch, which
//! the router enforces before calling a [`LinkSink`]; replies by
//! `reply_limit`, past which the connection stops reading until the writer
//! catches up, so a client that floods requests without reading throttles
//! only itself.

use crate::router::{Delivery, DeliverySink};
use crate::store::Commit;
use ferromq_protocol::native::Frame;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// One item for the writer.
#[derive(Debug)]
pub enum Outgoing {
    /// The broker's Open: also sets the outbound frame limit (the peer's) and
    /// how often to heart-beat (None: never).
    Open {
        /// The frame.
        frame: Frame,
        /// The peer's frame size limit.
        peer_max_frame_size: u32,
        /// Heart-beat interval: half the peer's idle timeout.
        heartbeat: Option<Duration>,
    },
    /// A frame to write as it is.
    Frame(Frame),
    /// `ok` once every commit is durable, else `failed` (a Discharge answer).
    AfterCommits {
        /// What must be durable first.
        commits: Vec<Commit>,
        /// Written on success.
        ok: Box<Frame>,
        /// Written if a commit failed.
        failed: Box<Frame>,
    },
    /// A producer's unsettled transfer: `accepted` once `commit` is durable
    /// (the STOMP RECEIPT rule), `rejected` if it fails. Consecutive ones are
    /// written as one Disposition range.
    Accept {
        /// The producer's session.
        channel: u32,
        /// The transfer's delivery id.
        delivery_id: u64,
        /// The store append of a persistent message.
        commit: Commit,
    },
    /// A message for a consumer link.
    Delivery {
        /// The link's session.
        channel: u32,
        /// The link's handle.
        handle: u32,
        /// What to send.
        delivery: Delivery,
    },
}

#[derive(Default)]
struct State {
    items: VecDeque<Outgoing>,
    replies: usize,
    closed: bool,
}

/// The queue between a connection's producers of output and its writer.
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    room: Notify,
    reply_limit: usize,
}

impl Outbox {
    /// An empty outbox allowing `reply_limit` queued replies.
    pub fn new(reply_limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            room: Notify::new(),
            reply_limit: reply_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item. Ignored once closed.
    pub fn push(&self, item: Outgoing) {
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if !matches!(item, Outgoing::Delivery { .. }) {
                st.replies += 1;
            }
            st.items.push_back(item);
        }
        self.ready.notify_one();
    }

    /// Queues a frame.
    pub fn frame(&self, frame: Frame) {
        self.push(Outgoing::Frame(frame));
    }

    /// Waits until the writer has room for more replies.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().replies < self.reply_limit {
                return;
            }
            notified.await;
        }
    }

    /// Takes everything queued. `None` once closed and empty: the writer ends.
    pub fn take(&self, into: &mut VecDeque<Outgoing>) -> Option<()> {
        let mut st = self.lock();
        if st.items.is_empty() && st.closed {
            return None;
        }
        std::mem::swap(&mut st.items, into);
        st.replies = 0;
        drop(st);
        self.room.notify_waiters();
        Some(())
    }

    /// Waits for something to write.
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Queues `last` (a Close) and accepts nothing more; the writer finishes
    /// the replies queued and ends. Deliveries still queued are not written:
    /// the state machine returns them to their queues.
    pub fn close_with(&self, last: Option<Frame>) {
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if let Some(frame) = last {
                st.items.push_back(Outgoing::Frame(frame));
            }
            st.closed = true;
        }
        self.ready.notify_one();
    }

    /// Whether [`Outbox::close_with`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// The router's view of one consumer link: its deliveries go to the
/// connection's outbox tagged with the link's channel and handle.
pub struct LinkSink {
    /// The connection's outbox.
    pub outbox: Arc<Outbox>,
    /// The link's session.
    pub channel: u32,
    /// The link's handle.
    pub handle: u32,
}

impl DeliverySink for LinkSink {
    fn deliver(&self, delivery: Delivery) {
        self.outbox.push(Outgoing::Delivery {
            channel: self.channel,
            handle: self.handle,
            delivery,
        });
    }
}
