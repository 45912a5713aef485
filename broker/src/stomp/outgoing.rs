//! What a STOMP connection writes: the [`Outgoing`] items of its
//! [`Outbox`] (the queue itself, and its bounds, are `crate::outbox`), and the
//! router's [`DeliverySink`] for STOMP subscriptions.

use crate::outbox::OutboxItem;
use crate::router::{Delivery, DeliverySink, Message};
use crate::store::Commit;
use ferromq_protocol::stomp::{Frame, Version};
use std::sync::Arc;
use std::time::Duration;

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

impl OutboxItem for Outgoing {
    fn is_reply(&self) -> bool {
        !matches!(self, Outgoing::Delivery(_))
    }
}

/// A STOMP connection's outbox.
pub type Outbox = crate::outbox::Outbox<Outgoing>;

impl DeliverySink for Outbox {
    fn deliver(&self, delivery: Delivery) {
        self.push(Outgoing::Delivery(delivery));
    }
}
