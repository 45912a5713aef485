//! The store: an ordered log of typed [`LogEntry`]s describing every state
//! change a persistent message goes through.
//!
//! The router appends entries; a [`Store`] makes them durable and tells the
//! caller when through a [`Commit`]. The store never sees a protocol: it knows
//! messages, destinations and sequence numbers. Replication (Raft) will sit in
//! front of `append` without changing this interface: a commit will then mean
//! "durable on a quorum".

pub mod memory;

use crate::router::Message;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::oneshot;

/// One state change of a persistent message or of durable metadata.
#[derive(Debug, Clone)]
pub enum LogEntry {
    /// A persistent message was published.
    Enqueue {
        /// The message (its destination is inside).
        message: Arc<Message>,
    },
    /// A persistent message was consumed.
    Ack {
        /// Its destination.
        destination: Arc<str>,
        /// Its sequence number.
        seq: u64,
    },
}

/// A store failure, reported to the producer instead of a receipt.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Writing or flushing failed.
    #[error("store write failed: {0}")]
    Io(String),
    /// The store is over its disk limit.
    #[error("store is full ({0})")]
    Full(String),
    /// The store has shut down.
    #[error("store is closed")]
    Closed,
}

/// When appended entries become durable.
#[derive(Debug)]
pub enum Commit {
    /// Already durable (or nothing needed writing).
    Done,
    /// Durable when the receiver yields `Ok(())`.
    Pending(oneshot::Receiver<Result<(), StoreError>>),
}

impl Commit {
    /// Waits until durable.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self {
            Commit::Done => Ok(()),
            Commit::Pending(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
        }
    }
}

/// What a store holds after a restart: the state machine rebuilt from the log.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Messages published and not acknowledged, in log (publication) order,
    /// each with the number of times it had been delivered.
    pub messages: Vec<(Arc<Message>, u32)>,
    /// One past the highest message sequence number ever used.
    pub next_seq: u64,
}

/// A durable log of [`LogEntry`]s.
pub trait Store: Send + Sync {
    /// Appends entries in order. The returned [`Commit`] resolves once every
    /// one of them is durable.
    fn append(&self, entries: Vec<LogEntry>) -> Commit;

    /// Rebuilds the state the log describes. Called once, at start.
    fn recover(&self) -> Result<Recovered, StoreError> {
        Ok(Recovered::default())
    }
}
