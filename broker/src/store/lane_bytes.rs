//! Bytes of stored messages per destination: what `store_bytes` in the
//! admin API and `ferromq_destination_store_bytes` report.
//!
//! [`LaneBytes`] is the state machine's part: per priority lane, the bytes
//! of the live message records in it (the same record sizes the store's
//! live byte total counts, so the lanes add up to it). The apply step adds
//! a record's size when it indexes a message and takes it off when the
//! message's records go (ack, purge, delete, expiry, a dead-letter move:
//! every removal is an ack in the log), and writes each touched lane's
//! bytes in its `C` record, with its count ([`super::record::LaneCount`]):
//! one record per lane and batch. So a restart reads these records, not
//! the messages, and every node of a cluster, applying the same batches,
//! holds the same figures.
//!
//! [`DestinationBytes`] is what readers see: the lanes summed per
//! destination, published by whoever owns the state machine after each
//! apply (the log writer on a single node, [`super::replicated`] in
//! cluster mode). Only the lanes a batch changed are republished.
//!
//! Format 4 kept these bytes in `V` records of their own, and format 3 had
//! none: [`super::upgrade`] folds or sums them into the `C` records.

use super::record;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of live message records per lane ([`record::lane`]).
#[derive(Debug, Clone, Default)]
pub struct LaneBytes {
    /// Lanes holding live records; an emptied lane is removed.
    lanes: BTreeMap<Vec<u8>, u64>,
    /// Lanes written since the last publication (bounded by the lanes in
    /// use; drained by [`DestinationBytes::publish`]).
    changed: BTreeSet<Vec<u8>>,
}

/// Two states are equal when they hold the same figures; what is still to
/// be published is bookkeeping, not state.
impl PartialEq for LaneBytes {
    fn eq(&self, other: &LaneBytes) -> bool {
        self.lanes == other.lanes
    }
}

impl Eq for LaneBytes {}

impl LaneBytes {
    /// A record of `bytes` was indexed in `lane`.
    pub fn add(&mut self, lane: &[u8], bytes: u64) {
        match self.lanes.get_mut(lane) {
            Some(n) => *n += bytes,
            None => {
                self.lanes.insert(lane.to_vec(), bytes);
            }
        }
    }

    /// A record of `bytes` left `lane`.
    pub fn remove(&mut self, lane: &[u8], bytes: u64) {
        if let Some(n) = self.lanes.get_mut(lane) {
            *n = n.saturating_sub(bytes);
        }
    }

    /// The bytes of `lane` (0 when it has none), for its `C` record.
    pub fn of_lane(&self, lane: &[u8]) -> u64 {
        self.lanes.get(lane).copied().unwrap_or(0)
    }

    /// `lane`'s bytes as its `C` record says (recovery).
    pub fn set(&mut self, lane: &[u8], bytes: u64) {
        self.lanes.insert(lane.to_vec(), bytes);
    }

    /// The lanes in `touched` had their `C` records written in this batch;
    /// those in `emptied` hold no message any more and are dropped. Once
    /// per batch.
    pub fn written(&mut self, touched: &[Vec<u8>], emptied: &[Vec<u8>]) {
        for lane in emptied {
            self.lanes.remove(lane);
        }
        self.changed.extend(touched.iter().cloned());
    }

    /// Bytes of live records of `destination`, all priorities.
    pub fn of_destination(&self, destination: &str) -> u64 {
        let from = record::lane(destination, 0);
        let to = record::lane(destination, u8::MAX);
        self.lanes.range(from..=to).map(|(_, n)| n).sum()
    }

    /// Bytes of all live records (the store's live byte total).
    pub fn total(&self) -> u64 {
        self.lanes.values().sum()
    }
}

/// Stored bytes per destination, as readers (the admin API) see them.
/// Cloning shares it.
///
/// Lock order: its mutex is a leaf. It is taken under the replicated
/// state's lock (cluster apply) and alone everywhere else; nothing is
/// called while it is held.
#[derive(Debug, Clone, Default)]
pub struct DestinationBytes(Arc<Mutex<HashMap<String, u64>>>);

impl DestinationBytes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Republishes the destinations of the lanes changed since the last
    /// publication.
    pub fn publish(&self, lanes: &mut LaneBytes) {
        if lanes.changed.is_empty() {
            return;
        }
        let changed = std::mem::take(&mut lanes.changed);
        let mut names: Vec<String> = changed
            .iter()
            .filter_map(|lane| record::parse_lane(lane).map(|(name, _)| name))
            .collect();
        names.dedup(); // lanes sort by destination: repeats are adjacent
        let mut view = self.lock();
        for name in names {
            match lanes.of_destination(&name) {
                0 => view.remove(&name),
                n => view.insert(name, n),
            };
        }
    }

    /// Replaces everything with `lanes` (at start, and after a snapshot
    /// replaced the whole state).
    pub fn replace(&self, lanes: &mut LaneBytes) {
        lanes.changed.clear();
        let mut fresh: HashMap<String, u64> = HashMap::new();
        for (lane, n) in &lanes.lanes {
            if let Some((name, _)) = record::parse_lane(lane) {
                *fresh.entry(name).or_insert(0) += n;
            }
        }
        *self.lock() = fresh;
    }

    /// Bytes of `destination`'s stored messages (0 when it has none).
    pub fn get(&self, destination: &str) -> u64 {
        self.lock().get(destination).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(d: &str, p: u8) -> Vec<u8> {
        record::lane(d, p)
    }

    #[test]
    fn lanes_sum_per_destination_and_only_changes_are_republished() {
        let mut b = LaneBytes::default();
        b.add(&lane("/queue/a", 4), 100);
        b.add(&lane("/queue/a", 9), 50);
        b.add(&lane("/queue/ab", 4), 7);
        let touched = vec![
            lane("/queue/a", 4),
            lane("/queue/a", 9),
            lane("/queue/ab", 4),
        ];
        b.written(&touched, &[]);
        assert_eq!(b.of_destination("/queue/a"), 150);
        assert_eq!(b.of_lane(&lane("/queue/a", 9)), 50);
        assert_eq!(b.of_destination("/queue/ab"), 7, "a longer name is apart");
        assert_eq!(b.total(), 157);
        let view = DestinationBytes::default();
        view.publish(&mut b);
        assert_eq!((view.get("/queue/a"), view.get("/queue/ab")), (150, 7));
        // A removal not yet written is not published.
        b.remove(&lane("/queue/a", 9), 50);
        view.publish(&mut b);
        assert_eq!(view.get("/queue/a"), 150);
        b.written(&[lane("/queue/a", 9)], &[lane("/queue/a", 9)]);
        view.publish(&mut b);
        assert_eq!(view.get("/queue/a"), 100);
        assert!(
            !b.lanes.contains_key(&lane("/queue/a", 9)),
            "an emptied lane goes"
        );
        // Emptying a destination removes it from the view.
        b.remove(&lane("/queue/ab", 4), 7);
        b.written(&[lane("/queue/ab", 4)], &[lane("/queue/ab", 4)]);
        view.publish(&mut b);
        assert_eq!(view.get("/queue/ab"), 0);
        assert!(!view.lock().contains_key("/queue/ab"));
        // A removal past zero (never done) stops at zero.
        b.remove(&lane("/queue/a", 4), 1000);
        assert_eq!(b.of_destination("/queue/a"), 0);
    }

    #[test]
    fn recovered_lanes_replace_the_view() {
        let mut b = LaneBytes::default();
        b.set(&lane("/queue/a", 4), 300);
        b.set(&lane("/queue/b", 4), 40);
        b.set(&lane("/queue/b", 0), 2);
        let view = DestinationBytes::default();
        view.publish(&mut b);
        assert_eq!(view.get("/queue/a"), 0, "nothing changed by a batch");
        view.replace(&mut b);
        assert_eq!((view.get("/queue/a"), view.get("/queue/b")), (300, 42));
    }
}
