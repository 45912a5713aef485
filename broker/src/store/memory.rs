//! [`MemoryStore`]: keeps nothing beyond the router's own memory. Every append
//! is "durable" at once; a restart loses all messages.

use super::{Commit, Handoff, LogEntry, LogHold, Store};

/// The store used when persistence is off.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn append(&self, _entries: Vec<LogEntry>) -> Commit {
        Commit::Done
    }

    /// Nothing is written, so nothing waits for the dispatch.
    fn append_for_dispatch(&self, entries: Vec<LogEntry>) -> (Commit, LogHold) {
        (self.append(entries), LogHold::none())
    }

    /// Nothing is recorded: every delivery goes out at once.
    fn hand_off(
        &self,
        _mark: Option<(u64, u32)>,
        _must_wait: bool,
        handoff: Handoff,
    ) -> Option<Handoff> {
        Some(handoff)
    }

    /// There are no batches to keep together.
    fn hold(&self) -> LogHold {
        LogHold::none()
    }

    fn close(&self) {}

    fn metrics(&self) -> Option<crate::metrics::StoreMetrics> {
        None
    }
}
