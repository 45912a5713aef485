//! [`Transaction`]: transfers and dispositions that take effect together at
//! commit, or not at all (STOMP BEGIN/COMMIT/ABORT semantics).

use super::connection::{Shared, CHANNEL};
use super::error::ClientError;
use crate::native::{Discharge, Frame};
use std::sync::Arc;
use tokio::sync::oneshot;

/// An open transaction, from [`super::Connection::declare`].
pub struct Transaction {
    shared: Arc<Shared>,
    id: String,
}

impl Transaction {
    pub(super) fn new(shared: Arc<Shared>, id: String) -> Transaction {
        Transaction { shared, id }
    }

    /// The transaction id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Commits; returns once the broker has applied (and stored) the work.
    pub async fn commit(self) -> Result<(), ClientError> {
        self.discharge(false).await
    }

    /// Rolls back: transfers are dropped, dispositions undone.
    pub async fn rollback(self) -> Result<(), ClientError> {
        self.discharge(true).await
    }

    async fn discharge(self, fail: bool) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.shared.lock().txns.insert(self.id.clone(), tx);
        let frame = Frame::new(
            CHANNEL,
            Discharge {
                txn_id: self.id.clone(),
                fail,
                error: None,
            },
        );
        self.shared.send(frame).await?;
        rx.await.map_err(|_| self.shared.closed_error())?
    }
}
