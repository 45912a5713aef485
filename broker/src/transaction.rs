//! Client transactions (STOMP BEGIN/COMMIT/ABORT, native Declare/Discharge):
//! work buffered until it commits ([`Transaction::commit`], the one commit
//! path both protocols use) or rolls back ([`Transaction::rollback`]).

use crate::router::{Consumer, Destination, Message, Router};
use crate::store::Commit;
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
    /// ACKs staged in the router (credit freed), applied at COMMIT.
    Ack {
        /// The subscription.
        consumer: Arc<Consumer>,
        /// The messages.
        seqs: Vec<u64>,
    },
    /// NACKs staged in the router, applied at COMMIT.
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

impl Transaction {
    /// Applies the transaction's operations in arrival order: sends go
    /// through [`Router::send`] (the producers' one entry point, so a
    /// scheduled send in a transaction is scheduled), acks and nacks take
    /// effect. Returns the commits to wait for before answering the client
    /// (every persistent send and every ack).
    ///
    /// Durability ordering: the whole transaction goes to the log as one
    /// atomic batch (all of it survives a crash, or none of it): the log is
    /// held ([`Router::hold_log`]) from before the first append until after
    /// the last, and nothing here waits meanwhile. `conn` names the
    /// connection in the log line of a send dropped at commit.
    pub fn commit(self, router: &Router, conn: u64) -> Vec<Commit> {
        let mut commits = Vec::with_capacity(self.ops.len());
        let _atomic = router.hold_log();
        for op in self.ops {
            match op {
                TxOp::Send {
                    destination,
                    message,
                } => match router.send(&destination, message) {
                    Ok(commit) => commits.push(commit),
                    // Validated when it was sent; only a full scheduler
                    // gets here.
                    Err(e) => {
                        tracing::warn!(conn, error = %e, "transactional send dropped at commit")
                    }
                },
                TxOp::Ack { consumer, seqs } => commits.push(router.ack_exact(&consumer, &seqs)),
                TxOp::Nack { consumer, seqs } => router.nack_exact(&consumer, &seqs),
            }
        }
        commits
    }

    /// Undoes the transaction: its sends vanish, its acks and nacks are
    /// undone and the messages are unacknowledged again.
    pub fn rollback(self, router: &Router) {
        for op in self.ops {
            if let TxOp::Ack { consumer, seqs } | TxOp::Nack { consumer, seqs } = op {
                router.unstage(&consumer, &seqs);
            }
        }
    }
}
