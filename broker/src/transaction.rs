//! Client transactions (STOMP BEGIN/COMMIT/ABORT, native Declare/Discharge):
//! work buffered until it commits or rolls back.

use crate::router::{Consumer, Destination, Message};
use std::sync::Arc;

/// One buffered operation.
pub enum TxOp {
    /// A SEND, published at COMMIT.
    Send {
        /// Where to.
        destination: Arc<Destination>,
        /// What.
        message: Message,
    },
    /// ACKs held by the router (credit freed), applied at COMMIT.
    Ack {
        /// The subscription.
        consumer: Arc<Consumer>,
        /// The messages.
        seqs: Vec<u64>,
    },
    /// NACKs held by the router, applied at COMMIT.
    Nack {
        /// The subscription.
        consumer: Arc<Consumer>,
        /// The messages.
        seqs: Vec<u64>,
    },
}

/// An open transaction.
#[derive(Default)]
pub struct Transaction {
    /// Operations in arrival order.
    pub ops: Vec<TxOp>,
    /// Bytes of buffered messages (bounded by the session config).
    pub bytes: usize,
}
