//! Bytes of stored messages per destination: what `store_bytes` in the
//! admin API and `ferromq_destination_store_bytes` report.
//!
//! [`LaneBytes`] is the state machine's part: per priority lane, the bytes
//! of the live message records in it (the same record sizes the store's
//! live byte total counts, so the lanes add up to it). The apply step adds
//! a record's size when it indexes a message and takes it off when the
//! message's records go (ack, purge, delete, expiry, a dead-letter move:
//! every removal is an ack in the log), and writes one `V` record per lane
//! it touched, next to the lane's `C` count ([`super::record`]). So a
//! restart reads these records, not the messages, and every node of a
//! cluster, applying the same batches, holds the same figures.
//!
//! [`DestinationBytes`] is what readers see: the lanes summed per
//! destination, published by whoever owns the state machine after each
//! apply (the log writer on a single node, [`super::replicated`] in
//! cluster mode). Only the lanes a batch changed are republished.
//!
//! A format-3 store written before `V` records existed has lane counts
//! without them: recovery sums those lanes once from their queue order
//! and seq index (a read per stored message of those lanes only), and the
//! next batch touching a lane writes its record.

use super::record::{self, SeqEntry, LANE_BYTES_PREFIX, QUEUE_PREFIX, SEQ_PREFIX};
use super::state_machine::Records;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of live message records per lane ([`record::lane`]).
#[derive(Debug, Clone, Default)]
pub struct LaneBytes {
    /// Lanes holding live records; a lane at 0 is removed.
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

    /// Writes the `V` records of the lanes in `touched` (sorted, without
    /// repeats), removing those now empty: once per batch, with the lane
    /// counts.
    pub fn write(&mut self, touched: &[Vec<u8>], records: &mut impl Records) {
        for lane in touched {
            let key = record::lane_key(LANE_BYTES_PREFIX, lane, None);
            match self.lanes.get(lane) {
                Some(&n) if n > 0 => records.put(&key, &n.to_be_bytes()),
                _ => {
                    self.lanes.remove(lane);
                    records.remove(&key);
                }
            }
            self.changed.insert(lane.clone());
        }
    }

    /// Reads the `V` records; `counted` are the lanes holding live
    /// messages (the `C` records). A counted lane without a `V` record is
    /// summed from its records (see the module doc).
    pub fn recover<'a>(
        tree: &sled::Tree,
        counted: impl Iterator<Item = &'a Vec<u8>>,
    ) -> Result<LaneBytes, String> {
        let mut out = LaneBytes::default();
        for item in tree.scan_prefix([LANE_BYTES_PREFIX]) {
            let (k, v) = item.map_err(|e| format!("lane bytes: {e}"))?;
            let bytes = record::decode_u64(&v).ok_or("malformed lane bytes")?;
            out.lanes.insert(k[1..].to_vec(), bytes);
        }
        for lane in counted {
            if !out.lanes.contains_key(lane) {
                let bytes = sum_lane(tree, lane)?;
                out.lanes.insert(lane.clone(), bytes);
            }
        }
        Ok(out)
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

/// The bytes of `lane`'s records, from its queue order (`Q`: each value
/// starts with the seq) and the seq index (`S`: each entry has its size).
fn sum_lane(tree: &sled::Tree, lane: &[u8]) -> Result<u64, String> {
    let mut sum = 0u64;
    for item in tree.scan_prefix(record::lane_key(QUEUE_PREFIX, lane, None)) {
        let (_, v) = item.map_err(|e| format!("queue order: {e}"))?;
        let seq = v
            .get(..8)
            .and_then(record::decode_u64)
            .ok_or("malformed queue order record")?;
        if let Some(raw) = tree
            .get(record::key(SEQ_PREFIX, seq))
            .map_err(|e| format!("seq index of {seq}: {e}"))?
        {
            let entry = SeqEntry::decode(&raw).ok_or("malformed seq index record")?;
            let body_len = entry.body_file.map_or(0, |(_, len)| len);
            sum += u64::from(entry.bytes) + body_len;
        }
    }
    Ok(sum)
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
    use std::collections::BTreeMap;

    fn lane(d: &str, p: u8) -> Vec<u8> {
        record::lane(d, p)
    }

    #[test]
    fn lanes_sum_per_destination_and_only_changes_are_republished() {
        let mut b = LaneBytes::default();
        let mut records = BTreeMap::new();
        b.add(&lane("/queue/a", 4), 100);
        b.add(&lane("/queue/a", 9), 50);
        b.add(&lane("/queue/ab", 4), 7);
        let touched = vec![
            lane("/queue/a", 4),
            lane("/queue/a", 9),
            lane("/queue/ab", 4),
        ];
        b.write(&touched, &mut records);
        assert_eq!(b.of_destination("/queue/a"), 150);
        assert_eq!(b.of_destination("/queue/ab"), 7, "a longer name is apart");
        assert_eq!(b.total(), 157);
        let view = DestinationBytes::default();
        view.publish(&mut b);
        assert_eq!((view.get("/queue/a"), view.get("/queue/ab")), (150, 7));
        // A removal not yet written is not published.
        b.remove(&lane("/queue/a", 9), 50);
        view.publish(&mut b);
        assert_eq!(view.get("/queue/a"), 150);
        b.write(&[lane("/queue/a", 9)], &mut records);
        view.publish(&mut b);
        assert_eq!(view.get("/queue/a"), 100);
        let key = record::lane_key(LANE_BYTES_PREFIX, &lane("/queue/a", 9), None);
        assert!(!records.contains_key(&key), "an empty lane's record goes");
        // Emptying a destination removes it from the view.
        b.remove(&lane("/queue/ab", 4), 7);
        b.write(&[lane("/queue/ab", 4)], &mut records);
        view.publish(&mut b);
        assert_eq!(view.get("/queue/ab"), 0);
        assert!(!view.lock().contains_key("/queue/ab"));
        // A removal past zero (never done) stops at zero.
        b.remove(&lane("/queue/a", 4), 1000);
        assert_eq!(b.of_destination("/queue/a"), 0);
    }

    #[test]
    fn records_are_read_back_and_missing_ones_summed_from_the_lane() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut b = LaneBytes::default();
        let mut records = BTreeMap::new();
        b.add(&lane("/queue/a", 4), 300);
        b.write(&[lane("/queue/a", 4)], &mut records);
        for (k, v) in &records {
            db.insert(k, v.as_slice()).unwrap();
        }
        // Lane /queue/b,4 has two messages (seqs 5 and 6, 40 and 2 bytes)
        // but no B record: written before they existed.
        let b_lane = lane("/queue/b", 4);
        for (seq, index, bytes) in [(5u64, 10u64, 40u32), (6, 11, 2)] {
            let mut order = seq.to_be_bytes().to_vec();
            order.push(0);
            db.insert(record::lane_key(QUEUE_PREFIX, &b_lane, Some(index)), order)
                .unwrap();
            let entry = SeqEntry {
                index,
                bytes,
                lane: b_lane.clone(),
                body_file: None,
            };
            db.insert(record::key(SEQ_PREFIX, seq), entry.encode())
                .unwrap();
        }
        let counted = [lane("/queue/a", 4), b_lane.clone()];
        let got = LaneBytes::recover(&db, counted.iter()).unwrap();
        assert_eq!(got.of_destination("/queue/a"), 300);
        assert_eq!(got.of_destination("/queue/b"), 42);
        let mut got = got;
        let view = DestinationBytes::default();
        view.replace(&mut got);
        assert_eq!((view.get("/queue/a"), view.get("/queue/b")), (300, 42));
    }
}
