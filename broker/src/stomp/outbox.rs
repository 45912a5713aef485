//! [`Outbox`]: everything one STOMP connection will write, in order — replies
//! from its session and deliveries from the router — drained by the
//! connection's single writer task.
//!
//! Bounds: deliveries are bounded by subscription credit (the router never
//! delivers past a subscription's prefetch); replies are bounded by
//! `reply_limit`, past which the session stops reading from its client until
//! the writer catches up, so a client that floods receipts without reading
//! them throttles only itself.

use crate::router::{Delivery, DeliverySink, Message};
use std::sync::Arc;
use crate::store::Commit;
use ferromq_protocol::stomp::{Frame, Version};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// One item for the writer.
#[derive(Debug)]
pub enum Outgoing {
    /// CONNECTED: also switches the writer to the negotiated version and
    /// heart-beat interval.
    Connected {
        /// The frame.
        frame: Frame,
        /// Negotiated version.
        version: Version,
        /// How often the server must send something (None: never).
        heartbeat: Option<Duration>,
    },
    /// A reply frame (RECEIPT, ERROR).
    Frame(Frame),
    /// A RECEIPT to send once `after` is durable (an ERROR if it fails).
    Receipt {
        /// The `receipt-id`.
        id: String,
        /// Store commits it waits for.
        after: Vec<Commit>,
    },
    /// A MESSAGE.
    Delivery(Delivery),
    /// A MESSAGE seen by a queue browser: not consumed, never acknowledged.
    Browsed {
        /// The browser's subscription id.
        tag: Arc<str>,
        /// The message.
        message: Arc<Message>,
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
    /// Wakes the writer.
    ready: Notify,
    /// Wakes a session waiting for reply room.
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

    /// Queues a reply. Ignored once closed.
    pub fn push(&self, item: Outgoing) {
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if !matches!(item, Outgoing::Delivery(_)) {
                st.replies += 1;
            }
            st.items.push_back(item);
        }
        self.ready.notify_one();
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

    /// No more items will be accepted; the writer finishes what is queued
    /// (replies only: see [`Outbox::is_closed`]) and ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Once closed, queued deliveries are not written: the session has
    /// already returned them to their queues.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

impl DeliverySink for Outbox {
    fn deliver(&self, delivery: Delivery) {
        self.push(Outgoing::Delivery(delivery));
    }
}
