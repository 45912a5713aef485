//! What a native connection writes: the [`Outgoing`] items of its
//! [`Outbox`] — replies from its state machine and deliveries from the
//! router, in order — drained by the connection's single writer task.
//!
//! The queue and its bounds are the shared `crate::outbox`; this module
//! holds the native items and the router's [`LinkSink`]. Deliveries are
//! bounded by link credit and prefetch, which the router enforces before
//! calling a [`LinkSink`].

use crate::outbox::OutboxItem;
use crate::router::{Delivery, DeliverySink};
use crate::store::Commit;
use ferromq_protocol::native::Frame;
use std::sync::Arc;
use std::time::Duration;

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

impl OutboxItem for Outgoing {
    fn is_reply(&self) -> bool {
        !matches!(self, Outgoing::Delivery { .. })
    }
}

/// A native connection's outbox.
pub type Outbox = crate::outbox::Outbox<Outgoing>;

/// Native conveniences on the shared outbox.
pub trait FrameOutbox {
    /// Queues a frame.
    fn frame(&self, frame: Frame);
}

impl FrameOutbox for Outbox {
    fn frame(&self, frame: Frame) {
        self.push(Outgoing::Frame(frame));
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
