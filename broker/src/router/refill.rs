//! Reading persistent queues' backlogs back from the store: the store read
//! a queue's window asks for (`Errand::ReadBacklog`) runs here, on a
//! blocking thread, never under a destination lock; what it returns joins
//! the queue's window (`Destination::land_backlog`). Also what needs the
//! store beyond a window: browsing past it, and acknowledging a purged or
//! deleted queue's stored messages (in the background, a bounded page per
//! blocking call: `Router::drop_backlog`).
//!
//! Restart: the store recovers no message, only each lane's count
//! (`Recovered::backlog`); a stored message carrying scheduling headers is
//! handed to the scheduler when its queue's cursor reaches it (so a
//! scheduled message deep in a backlog fires once read back), and an
//! expired one is dropped or dead-lettered by the dispatch, as any expired
//! waiting message.

use super::dead_letter::Errand;
use super::destination::backlog::{Next, ReadPlan, BROWSE_SCAN, MAX_EMPTY_READS, RETRY};
use super::pending::Pending;
use super::scheduler::{Schedule, Scheduled};
use super::{Destination, Message, Router};
use crate::store::cursor::BacklogMessage;
use crate::store::LogEntry;
use std::sync::Arc;
use std::time::Duration;

/// Wait after a failed store read before trying again.
const AFTER_FAILURE: Duration = Duration::from_millis(500);
/// Messages read and acknowledged per blocking call when a purged or
/// deleted queue's backlog is dropped.
const DROP_PAGE: usize = 1000;

impl Router {
    /// Runs read `plan` of queue `name` and lands it (see module doc).
    pub(super) fn read_backlog(self: &Arc<Self>, name: Arc<str>, plan: ReadPlan) {
        let Some(destination) = self.lookup(&name) else {
            return; // deleted meanwhile: its backlog went with it
        };
        let router = Arc::downgrade(self);
        let store = self.store.clone();
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                store.read_backlog(&name, plan.priority, plan.after, plan.limit)
            })
            .await;
            let Some(router) = router.upgrade() else {
                return;
            };
            let read = match read {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => {
                    tracing::error!(destination = destination.name(), error = %e, "reading a queue's backlog from the store failed");
                    destination.backlog_read_failed(&plan);
                    tokio::time::sleep(AFTER_FAILURE).await;
                    destination.resume_backlog();
                    return;
                }
                Err(e) => {
                    tracing::error!(destination = destination.name(), error = %e, "the backlog reader stopped");
                    destination.backlog_read_failed(&plan);
                    tokio::time::sleep(AFTER_FAILURE).await;
                    destination.resume_backlog();
                    return;
                }
            };
            let count = read.messages.len();
            let keep = router.sort_read_back(&destination, read.messages);
            if destination.land_backlog(&plan, count, read.position, keep) == Some(Next::Retry) {
                tokio::time::sleep(RETRY).await;
                destination.resume_backlog();
            }
        });
    }

    /// Messages read back: scheduled ones go to the scheduler (they were
    /// stored when sent, and only a restart makes them readable), the rest
    /// join the window.
    fn sort_read_back(
        &self,
        destination: &Arc<Destination>,
        read: Vec<BacklogMessage>,
    ) -> Vec<(usize, Pending)> {
        let mut keep = Vec::with_capacity(read.len());
        for (place, m) in read.into_iter().enumerate() {
            if let Ok(Some(schedule)) = Schedule::of(&m.message) {
                let entry = Scheduled {
                    template: m.message,
                    destination: destination.clone(),
                    schedule,
                    fired: m.delivered,
                    returning: None,
                };
                if let Err(e) = self.scheduler.insert(entry) {
                    tracing::warn!(destination = destination.name(), error = %e, "a stored scheduled message could not be scheduled again");
                }
                continue;
            }
            keep.push((
                place,
                Pending {
                    message: m.message,
                    redeliveries: m.delivered,
                },
            ));
        }
        keep
    }

    /// Up to `limit` waiting messages of `destination` in delivery order,
    /// window and store alike, that `selector` (if any) accepts. Reads the
    /// store lanes from the cursor's position: at most [`BROWSE_SCAN`]
    /// records beyond those returned. Blocks on the store: call it off the
    /// async workers for a deep queue (`tokio::task::spawn_blocking`).
    pub fn browse_deep(
        &self,
        destination: &Destination,
        limit: usize,
        selector: Option<&crate::selector::Selector>,
    ) -> Vec<Arc<Message>> {
        let (window, lanes, parked) = destination.browse_view();
        if lanes.is_empty() && parked.iter().all(Vec::is_empty) {
            return destination.browse(limit, selector);
        }
        let now = super::now_ms();
        let accepts = |m: &Message| !m.is_expired(now) && selector.is_none_or(|s| s.matches(m));
        let mut out = Vec::new();
        let mut scanned = 0usize;
        for priority in (0..10u8).rev() {
            for m in &window[usize::from(priority)] {
                if out.len() >= limit {
                    return out;
                }
                if accepts(m) {
                    out.push(m.clone());
                }
            }
            let (mut after, stored) = lanes
                .iter()
                .find(|l| l.0 == priority)
                .map_or((0, 0), |&(_, after, stored)| (after, stored));
            let mut seen = 0u64;
            while out.len() < limit && seen < stored && scanned < BROWSE_SCAN + limit {
                let page = (limit - out.len()).clamp(1, 1000);
                let read = match self
                    .store
                    .read_backlog(destination.name(), priority, after, page)
                {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::warn!(destination = destination.name(), error = %e, "browsing the store backlog failed");
                        return out;
                    }
                };
                if read.messages.is_empty() {
                    break;
                }
                after = read.position;
                seen += read.messages.len() as u64;
                scanned += read.messages.len();
                out.extend(
                    read.messages
                        .into_iter()
                        .map(|m| m.message)
                        .filter(|m| accepts(m))
                        .take(limit - out.len()),
                );
            }
            // Messages parked behind the lane's stored ones: shown after
            // what was read of it (their exact places among stored
            // messages are known only as the cursor reads them).
            for m in &parked[usize::from(priority)] {
                if out.len() >= limit {
                    return out;
                }
                if accepts(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }

    /// Takes every message `destination` left in the store off its books
    /// (purge, delete) and returns how many; their acknowledgement runs in
    /// the background (`Errand::DropBacklog`, `Router::drop_lanes`).
    /// Cheap: one short hold of the destination's lock, no store access,
    /// so the admin handler or session calling it blocks nothing.
    ///
    /// `retired`: the destination was removed (deleted, or a durable
    /// subscription's queue unsubscribed), so a destination of the same
    /// name may be created while the drop runs. Its store lanes would start
    /// at position 0, where they would find the dropped messages, so it is
    /// created with its lanes held ([`Destination::with_backlog_held`]) until
    /// the drop is done and hands it the positions past them.
    pub fn drop_backlog(&self, destination: &Arc<Destination>, retired: bool) -> usize {
        let lanes = destination.take_backlog();
        if lanes.is_empty() {
            return 0;
        }
        let count: u64 = lanes.iter().map(|&(_, _, stored)| stored).sum();
        if retired {
            *self
                .draining
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(destination.address.name.clone())
                .or_default() += 1;
        }
        let _ = self.errands.send(Errand::DropBacklog {
            destination: destination.clone(),
            lanes,
            retired,
        });
        usize::try_from(count).unwrap_or(usize::MAX)
    }

    /// Whether a retired destination named `name` is still having its
    /// stored messages dropped (a new one of that name holds its lanes).
    pub(super) fn is_draining(&self, name: &str) -> bool {
        self.draining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Starts acknowledging `lanes` of `destination` (see
    /// [`Router::drop_backlog`]) on a task of its own.
    pub(super) fn start_drop(
        self: &Arc<Self>,
        destination: Arc<Destination>,
        lanes: Vec<(u8, u64, u64)>,
        retired: bool,
    ) {
        let router = self.clone();
        tokio::spawn(async move {
            let mut ends = Vec::with_capacity(lanes.len());
            for (priority, after, stored) in lanes {
                let end = router
                    .drop_lanes(&destination, priority, after, stored)
                    .await;
                ends.push((priority, end));
            }
            if retired {
                router.finish_retired_drop(&destination.address.name, &ends);
            }
        });
    }

    /// A retired destination's drop is done: a successor of the same name,
    /// created meanwhile, reads its lanes from past the dropped messages.
    /// Order: the name leaves `draining` first, so a successor created
    /// after is not held, and one created before is found by the lookup.
    fn finish_retired_drop(&self, name: &Arc<str>, ends: &[(u8, u64)]) {
        {
            let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
            match draining.get_mut(name) {
                Some(n) if *n > 1 => {
                    // Another drop of the name still runs: the successor
                    // waits for the last one.
                    *n -= 1;
                    return;
                }
                _ => {
                    draining.remove(name);
                }
            }
        }
        if let Some(successor) = self.lookup(name) {
            successor.release_held_backlog(ends);
        }
    }

    /// Acknowledges the first `stored` messages of lane `priority` after
    /// log index `after`: each page ([`DROP_PAGE`] records at most, read and
    /// their acks appended) is one blocking call on tokio's blocking pool,
    /// so neither a runtime worker nor a destination lock waits on the
    /// store; a short read (the writer has not applied them yet) is retried
    /// after [`RETRY`], at most [`MAX_EMPTY_READS`] times in a row. Then the
    /// lane's position moves past them and its reads resume. Returns that
    /// position.
    async fn drop_lanes(
        &self,
        destination: &Arc<Destination>,
        priority: u8,
        after: u64,
        stored: u64,
    ) -> u64 {
        let mut after = after;
        let mut seen = 0u64;
        let mut empty = 0u32;
        // Never more than were counted: a message left after the purge
        // began is not the purge's.
        while seen < stored {
            let page = usize::try_from(stored - seen)
                .unwrap_or(usize::MAX)
                .min(DROP_PAGE);
            let store = self.store.clone();
            let name = destination.address.name.clone();
            let done = tokio::task::spawn_blocking(move || {
                let read = store.read_backlog(&name, priority, after, page)?;
                let acks: Vec<LogEntry> = read
                    .messages
                    .iter()
                    .map(|m| LogEntry::Ack {
                        destination: name.clone(),
                        seq: m.message.seq,
                    })
                    .collect();
                let count = acks.len();
                if count > 0 {
                    // Not waited for: a crash before the acks reach the
                    // disk brings the purged messages back, the safe way.
                    drop(store.append(acks));
                }
                Ok::<_, crate::store::StoreError>((count, read.position))
            })
            .await;
            match done {
                Ok(Ok((0, _))) => {
                    empty += 1;
                    if empty >= MAX_EMPTY_READS {
                        tracing::warn!(destination = destination.name(), missing = stored - seen, "purged messages never appeared in the store; the rest comes back at the next start if stored");
                        break;
                    }
                    tokio::time::sleep(RETRY).await;
                }
                Ok(Ok((count, position))) => {
                    empty = 0;
                    seen += count as u64;
                    after = position;
                }
                Ok(Err(e)) => {
                    tracing::warn!(destination = destination.name(), error = %e, "purging the store backlog failed; the rest comes back at the next start");
                    break;
                }
                Err(e) => {
                    tracing::warn!(destination = destination.name(), error = %e, "purging the store backlog stopped; the rest comes back at the next start");
                    break;
                }
            }
        }
        destination.skip_backlog(priority, after);
        after
    }
}
