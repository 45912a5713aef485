//! [`MemoryStore`]: keeps nothing beyond the router's own memory. Every append
//! is "durable" at once; a restart loses all messages.

use super::{Commit, LogEntry, Store};

/// The store used when persistence is off.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn append(&self, _entries: Vec<LogEntry>) -> Commit {
        Commit::Done
    }
}
