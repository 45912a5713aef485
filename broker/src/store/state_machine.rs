//! [`StateMachine`]: what the log describes, applied batch by batch.
//!
//! Applying an [`EncodedBatch`] is deterministic: it reads no clock,
//! touches no router memory and depends only on the store's records and
//! the batch, so every node that applies the same batches in the same
//! order reaches the same state (the same records, byte for byte). It
//! keeps the batch itself as a log record (`L`, as many as its [`LogKeep`]
//! says: none on a single node), and derives the read layout: message
//! records in their queue order (`Q`), delivery counts (`D`), the seq
//! index (`S`), lane counts and bytes (`C`,
//! [`super::lane_bytes`]), and metadata (`K`), all written
//! through [`Records`] (one `sled::Batch` per group commit, applied
//! atomically before the flush).
//!
//! Nothing per message is held in memory: an ack or a delivery count finds
//! its message through its `S` record, read through the batch being built
//! ([`Records::get`] sees the batch's own writes first), and the counts the
//! store reports (live messages, their bytes, each lane's length) are kept
//! as records too. So recovery reads a handful of keys and the lane counts,
//! whatever the backlog, and a queue is read back in order by its cursor
//! ([`super::cursor`]). Which bodies stay in memory is not the state
//! machine's business: see [`super::paging`].
//!
//! Body files: an enqueue whose body the single node's writer put in a body
//! file ([`super::body_segments`]) arrives with a reference instead of the
//! body; its record keeps the reference, its `S` entry the segment, and the
//! segment's `B` count ([`super::body_counts`]) is written in the same batch.
//! The apply itself reads and writes no file, so it stays deterministic.

use super::body_counts::BodyCounts;
use super::entry::{EncodedBatch, Entry, Kind, StoredMessage, FORMAT};
use super::lane_bytes::LaneBytes;
use super::record::{
    self, LaneCount, QueueValue, SeqEntry, COUNT_PREFIX, DELIVERED_PREFIX, LIVE_KEY, LOG_PREFIX,
    META_PREFIX, QUEUE_PREFIX, SEQ_PREFIX,
};
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How many applied log batches the store keeps as `L` records: the tail a
/// follower a little behind could catch up from without a snapshot. Older
/// batches are folded into the read layout (which is what a snapshot is
/// built from). Every node of a group must use the same setting (it decides
/// which records apply writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogKeep {
    /// Batches kept, at most (0: none; otherwise the latest is always kept).
    pub batches: usize,
    /// Bytes of batches kept, at most.
    pub bytes: u64,
}

impl LogKeep {
    /// Keep no batch: what a single node uses. Measured: keeping even a
    /// small tail of batches in sled cut persistent throughput without
    /// consumers by more than half (every group commit then rewrites the
    /// tree nodes holding the tail, and the bodies are written twice), and
    /// a replicated log keeps its own entries until every node has them.
    pub const NONE: LogKeep = LogKeep {
        batches: 0,
        bytes: 0,
    };

    /// A short tail (64 batches, 1 MiB): for a store that serves followers
    /// from its own log.
    pub const TAIL: LogKeep = LogKeep {
        batches: 64,
        bytes: 1 << 20,
    };
}

/// Where applying a batch writes: a `sled::Batch` over the store's tree
/// ([`SledRecords`]), a map in tests and dumps.
pub trait Records {
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Removes `key`.
    fn remove(&mut self, key: &[u8]);
    /// The value of `key` with this batch's writes applied. Fails only
    /// when the store cannot be read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
}

impl Records for BTreeMap<Vec<u8>, Vec<u8>> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.insert(key.to_vec(), value.to_vec());
    }

    fn remove(&mut self, key: &[u8]) {
        BTreeMap::remove(self, key);
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// A `sled::Batch` being built over `tree`: reads see the tree as it was
/// plus the batch's own writes (sled applies the batch atomically later).
pub struct SledRecords {
    tree: sled::Tree,
    batch: sled::Batch,
    /// What this batch wrote (`None`: removed), for reads. The same
    /// `IVec`s as the batch holds: a value longer than sled's inline size
    /// is shared (reference counted), not copied a second time.
    written: HashMap<sled::IVec, Option<sled::IVec>>,
}

impl SledRecords {
    /// An empty batch over `tree` (a `sled::Db` derefs to its default tree).
    pub fn new(tree: &sled::Tree) -> SledRecords {
        SledRecords {
            tree: tree.clone(),
            batch: sled::Batch::default(),
            written: HashMap::new(),
        }
    }

    /// Adds a write outside the state machine (the cluster's applied index).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.put(key, value);
    }

    /// The batch, for `apply_batch`.
    pub fn into_batch(self) -> sled::Batch {
        self.batch
    }
}

impl Records for SledRecords {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let (key, value) = (sled::IVec::from(key), sled::IVec::from(value));
        self.batch.insert(key.clone(), value.clone());
        self.written.insert(key, Some(value));
    }

    fn remove(&mut self, key: &[u8]) {
        let key = sled::IVec::from(key);
        self.batch.remove(key.clone());
        self.written.insert(key, None);
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self.written.get(key) {
            return Ok(v.as_ref().map(|v| v.to_vec()));
        }
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| format!("store read: {e}"))
    }
}

/// The lanes and body files whose counts a batch changed, written once at
/// its end ([`StateMachine::write_counts`]).
#[derive(Debug, Default)]
pub(super) struct Touched {
    /// A set, not a list: a batch touches a few lanes many times each, and
    /// a lane's key is copied only the first time.
    lanes: BTreeSet<Vec<u8>>,
    segments: Vec<u32>,
}

/// What applying one batch changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Message records written: `(seq, log index)`.
    pub stored: Vec<(u64, u64)>,
    /// Message records removed, by seq.
    pub removed: Vec<u64>,
}

/// A live message record, with its place in the log (snapshots, and the
/// cluster's leader restore).
#[derive(Debug)]
pub struct RecoveredRecord {
    /// Its log index (the key of its record).
    pub index: u64,
    /// The record.
    pub message: StoredMessage,
    /// Deliveries recorded.
    pub delivered: u32,
}

/// One priority lane of a destination holding live messages: what a
/// restart tells the router, which reads the messages with the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    /// The destination, canonical.
    pub destination: String,
    /// The priority.
    pub priority: u8,
    /// Live messages in it.
    pub messages: u64,
}

/// The store's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMachine {
    /// Index the next entry gets (one per entry).
    next_index: u64,
    /// Number of the last batch applied (one per group commit: what a
    /// replicated log numbers its entries by).
    last_batch: u64,
    max_seq: u64,
    live_messages: u64,
    live_bytes: u64,
    /// Live messages per lane (the `C` records' counts, mirrored): one
    /// entry per destination and priority in use, not per message.
    lanes: BTreeMap<Vec<u8>, u64>,
    /// Live bodies per body file (the `B` records, mirrored).
    bodies: BodyCounts,
    /// Bytes of their records per lane (the `C` records' bytes, mirrored).
    lane_bytes: LaneBytes,
    /// Log batches still kept: `(batch number, bytes)`, oldest first.
    log: VecDeque<(u64, u64)>,
    log_bytes: u64,
    keep: LogKeep,
}

impl Default for StateMachine {
    /// An empty state keeping no log batches ([`LogKeep::NONE`]).
    fn default() -> StateMachine {
        StateMachine {
            next_index: 1,
            last_batch: 0,
            max_seq: 0,
            live_messages: 0,
            live_bytes: 0,
            lanes: BTreeMap::new(),
            bodies: BodyCounts::default(),
            lane_bytes: LaneBytes::default(),
            log: VecDeque::new(),
            log_bytes: 0,
            keep: LogKeep::NONE,
        }
    }
}

impl StateMachine {
    /// Rebuilds the state from what sled holds: a few keys, the lane
    /// counts and the log tail, never the messages. Returns the lanes
    /// holding live messages and the metadata. Decides nothing: expired
    /// messages stay until the router reads and drops them.
    #[allow(clippy::type_complexity)]
    pub fn recover(
        tree: &sled::Tree,
        keep: LogKeep,
    ) -> Result<(StateMachine, Vec<Lane>, Vec<(String, bytes::Bytes)>), String> {
        let mut sm = StateMachine::empty(keep);
        let read_u64 = |key: &[u8]| -> Result<Option<u64>, String> {
            match tree.get(key).map_err(|e| e.to_string())? {
                None => Ok(None),
                Some(v) => record::decode_u64(&v).map(Some).ok_or_else(|| {
                    format!("meta key {:?} is malformed", String::from_utf8_lossy(key))
                }),
            }
        };
        if let Some(applied) = read_u64(record::APPLIED_KEY)? {
            sm.next_index = applied + 1;
        }
        sm.last_batch = read_u64(record::BATCH_KEY)?.unwrap_or(0);
        sm.max_seq = read_u64(record::MAX_SEQ_KEY)?.unwrap_or(0);
        if let Some(v) = tree.get(LIVE_KEY).map_err(|e| e.to_string())? {
            let (count, bytes) = decode_live(&v).ok_or("the live message count is malformed")?;
            sm.live_messages = count;
            sm.live_bytes = bytes;
        }
        for item in tree.scan_prefix([LOG_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let batch = record::index_of(&k).ok_or("malformed log batch key")?;
            sm.log.push_back((batch, v.len() as u64));
            sm.log_bytes += v.len() as u64;
        }
        let mut lanes = Vec::new();
        for item in tree.scan_prefix([COUNT_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let count = LaneCount::decode(&v).ok_or("malformed lane count")?;
            let (destination, priority) =
                record::parse_lane(&k[1..]).ok_or("malformed lane count key")?;
            sm.lanes.insert(k[1..].to_vec(), count.messages);
            sm.lane_bytes.set(&k[1..], count.bytes);
            lanes.push(Lane {
                destination,
                priority,
                messages: count.messages,
            });
        }
        sm.bodies = BodyCounts::recover(tree)?;
        let mut meta = Vec::new();
        for item in tree.scan_prefix([META_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let name = std::str::from_utf8(&k[1..]).map_err(|_| "metadata key is not UTF-8")?;
            meta.push((name.to_string(), bytes::Bytes::copy_from_slice(&v)));
        }
        Ok((sm, lanes, meta))
    }

    /// Every live message record in log order with its delivery count: a
    /// full read of the store (snapshots, and the cluster's leader, which
    /// restores its router with every message in memory).
    pub fn live_records(tree: &sled::Tree) -> Result<Vec<RecoveredRecord>, String> {
        let mut counts = HashMap::new();
        for item in tree.scan_prefix([DELIVERED_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let index = record::index_of(&k).ok_or("malformed delivery-count key")?;
            let count = record::decode_u32(&v).ok_or("malformed delivery count")?;
            counts.insert(index, count);
        }
        let mut records = Vec::new();
        // `Q` keys sort by lane: the records are put back in log order
        // below (they are all in memory anyway).
        for item in tree.scan_prefix([QUEUE_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let index = k
                .len()
                .checked_sub(8)
                .and_then(|at| record::decode_u64(&k[at..]))
                .ok_or("malformed queue order key")?;
            let value = QueueValue::decode(&v)
                .ok_or_else(|| format!("message at log index {index}: malformed queue value"))?;
            let message = StoredMessage::decode_record(value.record)
                .map_err(|e| format!("message at log index {index}: {e}"))?;
            records.push(RecoveredRecord {
                index,
                message,
                delivered: counts.get(&index).copied().unwrap_or(0),
            });
        }
        records.sort_by_key(|r| r.index);
        Ok(records)
    }

    /// An empty state keeping `keep` of its log.
    pub fn empty(keep: LogKeep) -> StateMachine {
        StateMachine {
            keep,
            ..StateMachine::default()
        }
    }

    /// Applies an encoded batch as received (a follower's path, and the
    /// check that the bytes logged are all a node needs). Fails when the
    /// bytes are not a batch of this format (changing nothing) or the
    /// store cannot be read (apply it to a copy to keep the state).
    pub fn apply_encoded(
        &mut self,
        raw: &[u8],
        records: &mut impl Records,
    ) -> Result<Applied, String> {
        let batch = EncodedBatch::from_bytes(raw)?;
        self.apply(&batch, raw, records)
    }

    /// Applies `batch`, whose encoding is `raw` (the writer has both at
    /// hand, so it does not decode what it just encoded): keeps `raw` as
    /// the log record and applies the entries in order. Fails only when
    /// the store cannot be read; the records are then not to be written.
    pub fn apply(
        &mut self,
        batch: &EncodedBatch,
        raw: &[u8],
        records: &mut impl Records,
    ) -> Result<Applied, String> {
        let mut applied = Applied::default();
        self.last_batch += 1;
        if self.keep.batches > 0 {
            records.put(&record::key(LOG_PREFIX, self.last_batch), raw);
            self.log.push_back((self.last_batch, raw.len() as u64));
            self.log_bytes += raw.len() as u64;
        }
        // Also drops a tail kept under an earlier, larger setting.
        while self.log.len() > self.keep.batches
            || (self.log.len() > 1 && self.log_bytes > self.keep.bytes)
        {
            if let Some((old, bytes)) = self.log.pop_front() {
                records.remove(&record::key(LOG_PREFIX, old));
                self.log_bytes -= bytes.min(self.log_bytes);
            }
        }
        let mut touched = Touched::default();
        for entry in &batch.entries {
            let index = self.next_index;
            self.next_index += 1;
            self.apply_entry(entry, index, records, &mut applied, &mut touched)?;
        }
        self.write_counts(touched, records);
        self.max_seq = self.max_seq.max(batch.max_seq);
        records.put(record::APPLIED_KEY, &(self.next_index - 1).to_be_bytes());
        records.put(record::BATCH_KEY, &self.last_batch.to_be_bytes());
        records.put(record::MAX_SEQ_KEY, &self.max_seq.to_be_bytes());
        Ok(applied)
    }

    fn apply_entry(
        &mut self,
        entry: &Entry,
        index: u64,
        records: &mut impl Records,
        applied: &mut Applied,
        touched: &mut Touched,
    ) -> Result<(), String> {
        match &entry.kind {
            Some(Kind::Enqueue(message)) => {
                self.max_seq = self.max_seq.max(message.seq);
                // A seq enqueued twice (never done by the router) replaces
                // the earlier record rather than leaving it behind.
                if let Some(old) = self.find(message.seq, records)? {
                    self.forget(message.seq, &old, records, touched);
                }
                let raw = message.encode_to_vec();
                self.index_message(message, index, &raw, records, touched);
                applied.stored.push((message.seq, index));
            }
            Some(Kind::Ack(ack)) => {
                // Unknown seqs (never stored, or already gone) need nothing.
                if let Some(live) = self.find(ack.seq, records)? {
                    self.forget(ack.seq, &live, records, touched);
                    applied.removed.push(ack.seq);
                }
            }
            Some(Kind::Delivered(d)) => {
                if let Some(live) = self.find(d.seq, records)? {
                    let key = record::key(DELIVERED_PREFIX, live.index);
                    let before = match records.get(&key)? {
                        Some(v) => record::decode_u32(&v).unwrap_or(0),
                        None => 0,
                    };
                    if d.count > before {
                        records.put(&key, &d.count.to_be_bytes());
                    }
                }
            }
            Some(Kind::Put(put)) => records.put(&record::meta_key(&put.key), &put.value),
            Some(Kind::Delete(delete)) => records.remove(&record::meta_key(&delete.key)),
            // An entry of a kind this build does not know: the format check
            // refuses batches of another format, so this is an empty entry.
            None => {}
        }
        Ok(())
    }

    /// Writes a message's record `raw` in its queue order (`Q`, at log
    /// index `index`) and its seq index (`S`), and counts it in its lane
    /// and the totals. The lane's `C` record and the totals are written
    /// by [`StateMachine::write_counts`] for every lane in `touched`.
    /// Applying an enqueue and upgrading a format-2 store
    /// ([`super::upgrade`]) both go through here, so both write the same
    /// records.
    pub(super) fn index_message(
        &mut self,
        message: &StoredMessage,
        index: u64,
        raw: &[u8],
        records: &mut impl Records,
        touched: &mut Touched,
    ) {
        let bytes = raw.len() as u64;
        let priority = u8::try_from(message.priority.min(9)).unwrap_or(9);
        let lane = record::lane(&message.destination, priority);
        let value = QueueValue {
            seq: message.seq,
            left_to_store: message.backlog,
            record: raw,
        };
        records.put(
            &record::lane_key(QUEUE_PREFIX, &lane, Some(index)),
            &value.encode(),
        );
        let entry = SeqEntry {
            index,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            lane,
            body_file: message.body_ref.map(|r| (r.segment, r.len)),
        };
        records.put(&record::key(SEQ_PREFIX, message.seq), &entry.encode());
        if let Some(r) = &message.body_ref {
            self.bodies.add(r, &mut touched.segments);
        }
        // Counted without copying the lane's key unless it is a new lane.
        match self.lanes.get_mut(&entry.lane) {
            Some(n) => *n += 1,
            None => {
                self.lanes.insert(entry.lane.clone(), 1);
            }
        }
        // A body in a body file is the destination's too: its bytes count
        // with the record's.
        let body_len = entry.body_file.map_or(0, |(_, len)| len);
        self.lane_bytes
            .add(&entry.lane, u64::from(entry.bytes) + body_len);
        touched.lanes.insert(entry.lane);
        self.live_messages += 1;
        self.live_bytes += bytes;
    }

    /// Writes the `C` records (count and bytes) of the lanes in `touched`
    /// (removing those now empty), the `B` records of its body files, and
    /// the live totals: once per batch.
    pub(super) fn write_counts(&mut self, touched: Touched, records: &mut impl Records) {
        let Touched { lanes, segments } = touched;
        self.bodies.write(segments, records);
        // In key order (the set's), each lane once.
        let lanes: Vec<Vec<u8>> = lanes.into_iter().collect();
        let mut emptied = Vec::new();
        for lane in &lanes {
            let key = record::lane_key(COUNT_PREFIX, lane, None);
            match self.lanes.get(lane) {
                Some(&messages) if messages > 0 => {
                    let bytes = self.lane_bytes.of_lane(lane);
                    records.put(&key, &LaneCount { messages, bytes }.encode());
                }
                _ => {
                    self.lanes.remove(lane);
                    records.remove(&key);
                    emptied.push(lane.clone());
                }
            }
        }
        self.lane_bytes.written(&lanes, &emptied);
        let mut live = [0u8; 16];
        live[..8].copy_from_slice(&self.live_messages.to_be_bytes());
        live[8..].copy_from_slice(&self.live_bytes.to_be_bytes());
        records.put(LIVE_KEY, &live);
    }

    /// Where live message `seq` is, if it is live.
    fn find(&self, seq: u64, records: &impl Records) -> Result<Option<SeqEntry>, String> {
        match records.get(&record::key(SEQ_PREFIX, seq))? {
            None => Ok(None),
            Some(v) => SeqEntry::decode(&v)
                .map(Some)
                .ok_or_else(|| format!("the seq index of message {seq} is malformed")),
        }
    }

    /// Removes a live message's records.
    fn forget(
        &mut self,
        seq: u64,
        live: &SeqEntry,
        records: &mut impl Records,
        touched: &mut Touched,
    ) {
        records.remove(&record::key(DELIVERED_PREFIX, live.index));
        records.remove(&record::key(SEQ_PREFIX, seq));
        records.remove(&record::lane_key(
            QUEUE_PREFIX,
            &live.lane,
            Some(live.index),
        ));
        if let Some(n) = self.lanes.get_mut(&live.lane) {
            *n = n.saturating_sub(1);
        }
        if !touched.lanes.contains(&live.lane) {
            touched.lanes.insert(live.lane.clone());
        }
        let body_len = live.body_file.map_or(0, |(_, len)| len);
        self.lane_bytes
            .remove(&live.lane, u64::from(live.bytes) + body_len);
        if let Some((segment, len)) = live.body_file {
            self.bodies.remove(segment, len, &mut touched.segments);
        }
        self.live_messages = self.live_messages.saturating_sub(1);
        self.live_bytes -= u64::from(live.bytes).min(self.live_bytes);
    }

    /// A snapshot of the live state built from the read layout (`Q`, `D`,
    /// `K` records): one batch that, applied to an empty store, brings back
    /// every live message in log order with its delivery count, and the
    /// metadata. What a follower too far behind the kept log receives.
    pub fn snapshot(&self, tree: &sled::Tree) -> Result<EncodedBatch, String> {
        let records = StateMachine::live_records(tree)?;
        let (_, _, meta) = StateMachine::recover(tree, self.keep)?;
        let mut entries = Vec::with_capacity(records.len() * 2 + meta.len());
        for r in records {
            let seq = r.message.seq;
            if r.message.body_ref.is_some() {
                // Body files are a single node's layout; a replicated
                // store keeps its bodies inline (super::replicated).
                return Err(format!(
                    "message {seq} has its body in a body file: a snapshot carries bodies inline"
                ));
            }
            entries.push(Entry {
                kind: Some(Kind::Enqueue(r.message)),
            });
            if r.delivered > 0 {
                entries.push(Entry {
                    kind: Some(Kind::Delivered(super::entry::Delivered {
                        seq,
                        count: r.delivered,
                    })),
                });
            }
        }
        for (key, value) in meta {
            entries.push(Entry {
                kind: Some(Kind::Put(super::entry::Put { key, value })),
            });
        }
        Ok(EncodedBatch {
            format: FORMAT,
            max_seq: self.max_seq,
            entries,
        })
    }

    /// The highest message sequence number used.
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// Messages stored and not acknowledged.
    pub fn live_messages(&self) -> u64 {
        self.live_messages
    }

    /// Bytes of their records (bodies in body files not included: this is
    /// what sled holds, which compaction compares its files with).
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Bytes of live bodies in body files.
    pub fn body_bytes(&self) -> u64 {
        self.bodies.bytes()
    }

    /// The body files holding live bodies.
    pub fn body_counts(&self) -> &BodyCounts {
        &self.bodies
    }

    /// Bytes of live records per lane; mutable for publishing what
    /// changed ([`super::lane_bytes::DestinationBytes::publish`]).
    pub fn lane_bytes_mut(&mut self) -> &mut LaneBytes {
        &mut self.lane_bytes
    }

    /// Number of the last batch applied.
    pub fn last_batch(&self) -> u64 {
        self.last_batch
    }

    /// The index the next applied entry gets: every record of a message
    /// applied before now has a smaller index (a restart's cursor reads
    /// everything below it).
    pub fn next_index(&self) -> u64 {
        self.next_index
    }
}

/// The value of [`LIVE_KEY`]: count and bytes.
fn decode_live(raw: &[u8]) -> Option<(u64, u64)> {
    Some((
        record::decode_u64(raw.get(..8)?)?,
        record::decode_u64(raw.get(8..16)?)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::{self, strategies, Ack, Delivered, Put};
    use crate::store::LogEntry;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn stored(seq: u64, dest: &str) -> StoredMessage {
        StoredMessage {
            seq,
            destination: dest.into(),
            priority: 4,
            expires: 0,
            timestamp: 1,
            headers: vec![],
            body: Bytes::from(vec![b'x'; 100]),
            backlog: false,
            body_ref: None,
        }
    }

    fn enqueue(seq: u64, dest: &str) -> Entry {
        Entry {
            kind: Some(Kind::Enqueue(stored(seq, dest))),
        }
    }

    fn ack(seq: u64) -> Entry {
        Entry {
            kind: Some(Kind::Ack(Ack {
                destination: "/queue/a".into(),
                seq,
            })),
        }
    }

    fn delivered(seq: u64, count: u32) -> Entry {
        Entry {
            kind: Some(Kind::Delivered(Delivered { seq, count })),
        }
    }

    fn batch(entries: Vec<Entry>) -> Vec<u8> {
        EncodedBatch {
            format: FORMAT,
            max_seq: 0,
            entries,
        }
        .to_bytes()
    }

    fn temp_db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .open()
            .unwrap();
        (dir, db)
    }

    fn apply(sm: &mut StateMachine, db: &sled::Db, entries: Vec<Entry>) -> Applied {
        let mut b = SledRecords::new(db);
        let a = sm.apply_encoded(&batch(entries), &mut b).unwrap();
        db.apply_batch(b.into_batch()).unwrap();
        a
    }

    #[test]
    fn recovery_reads_counts_not_messages_and_live_records_keep_log_order() {
        let (_dir, db) = temp_db();
        let (mut sm, lanes, _) = StateMachine::recover(&db, LogKeep::TAIL).unwrap();
        assert!(lanes.is_empty());
        // Seq 9 is logged before seq 3 (a transaction's seqs are older than
        // its commit): recovery must follow the log, not the seqs.
        apply(
            &mut sm,
            &db,
            vec![enqueue(9, "/queue/a"), enqueue(3, "/queue/a")],
        );
        apply(&mut sm, &db, vec![enqueue(5, "/queue/b"), ack(9)]);
        apply(&mut sm, &db, vec![delivered(3, 2), delivered(3, 1)]);
        let (sm2, lanes, _) = StateMachine::recover(&db, LogKeep::TAIL).unwrap();
        let recs = StateMachine::live_records(&db).unwrap();
        let got: Vec<(u64, u32)> = recs.iter().map(|r| (r.message.seq, r.delivered)).collect();
        assert_eq!(got, vec![(3, 2), (5, 0)]);
        assert_eq!(sm2.max_seq(), 9, "the acked seq 9 still counts");
        assert_eq!(sm2, sm, "recovery rebuilds exactly the applied state");
        let counts: Vec<(String, u8, u64)> = lanes
            .into_iter()
            .map(|l| (l.destination, l.priority, l.messages))
            .collect();
        assert_eq!(
            counts,
            vec![("/queue/a".into(), 4, 1), ("/queue/b".into(), 4, 1)]
        );
        assert_eq!(sm2.live_messages(), 2);
    }

    /// Per-destination bytes are the sizes of the live records of that
    /// destination, after acks (purge, delete, expiry and dead-letter moves
    /// are acks in the log), across priorities, and after a restart.
    #[test]
    fn destination_bytes_follow_the_live_records_and_survive_recovery() {
        let (_dir, db) = temp_db();
        let (mut sm, _, _) = StateMachine::recover(&db, LogKeep::NONE).unwrap();
        let sized = |seq: u64, dest: &str, priority: u32, body: usize| {
            let mut m = stored(seq, dest);
            m.priority = priority;
            m.body = Bytes::from(vec![b'y'; body]);
            m
        };
        let messages = [
            sized(1, "/queue/a", 4, 100),
            sized(2, "/queue/a", 9, 2000),
            sized(3, "/queue/ab", 4, 10),
            sized(4, "/queue/a", 4, 300),
        ];
        let size = |m: &StoredMessage| m.encode_to_vec().len() as u64;
        apply(
            &mut sm,
            &db,
            messages
                .iter()
                .map(|m| Entry {
                    kind: Some(Kind::Enqueue(m.clone())),
                })
                .collect(),
        );
        let a_all: u64 = [0, 1, 3].iter().map(|&i| size(&messages[i])).sum();
        assert_eq!(sm.lane_bytes_mut().of_destination("/queue/a"), a_all);
        assert_eq!(
            sm.lane_bytes_mut().of_destination("/queue/ab"),
            size(&messages[2])
        );
        assert_eq!(sm.lane_bytes_mut().total(), sm.live_bytes());
        // An ack of seq 2 (priority 9) and a delivery count, which changes
        // no size; an ack of an unknown seq changes nothing.
        apply(&mut sm, &db, vec![ack(2), delivered(1, 3), ack(77)]);
        let a_left = size(&messages[0]) + size(&messages[3]);
        assert_eq!(sm.lane_bytes_mut().of_destination("/queue/a"), a_left);
        let (mut again, _, _) = StateMachine::recover(&db, LogKeep::NONE).unwrap();
        assert_eq!(again, sm);
        assert_eq!(again.lane_bytes_mut().of_destination("/queue/a"), a_left);
        // The last messages gone: the destination's records go too.
        apply(&mut sm, &db, vec![ack(1), ack(4), ack(3)]);
        assert_eq!(sm.lane_bytes_mut().total(), 0);
        assert_eq!(db.scan_prefix([COUNT_PREFIX]).count(), 0);
        let (mut empty, _, _) = StateMachine::recover(&db, LogKeep::NONE).unwrap();
        assert_eq!(empty.lane_bytes_mut().of_destination("/queue/a"), 0);
    }

    #[test]
    fn metadata_is_kept_until_deleted() {
        let (_dir, db) = temp_db();
        let (mut sm, _, _) = StateMachine::recover(&db, LogKeep::TAIL).unwrap();
        let put = |k: &str, v: &'static [u8]| Entry {
            kind: Some(Kind::Put(Put {
                key: k.into(),
                value: Bytes::from_static(v),
            })),
        };
        apply(&mut sm, &db, vec![put("sub/a", b"1"), put("sub/b", b"2")]);
        apply(
            &mut sm,
            &db,
            vec![
                put("sub/a", b"3"),
                Entry {
                    kind: Some(Kind::Delete(entry::Delete {
                        key: "sub/b".into(),
                    })),
                },
            ],
        );
        let (_, lanes, meta) = StateMachine::recover(&db, LogKeep::TAIL).unwrap();
        assert_eq!(meta, vec![("sub/a".to_string(), Bytes::from_static(b"3"))]);
        assert!(lanes.is_empty());
    }

    #[test]
    fn corrupt_record_is_reported_with_its_index() {
        let (_dir, db) = temp_db();
        let key = record::lane_key(QUEUE_PREFIX, &record::lane("/queue/a", 4), Some(7));
        db.insert(key, &b"\0\0\0\0\0\0\0\x01\x01garbage"[..])
            .unwrap();
        let e = StateMachine::live_records(&db).unwrap_err();
        assert!(e.contains("log index 7"), "{e}");
    }

    #[test]
    fn only_the_latest_batches_are_kept_as_log() {
        let mut sm = StateMachine::empty(LogKeep::TAIL);
        let mut records = BTreeMap::new();
        for seq in 1..=(LogKeep::TAIL.batches as u64 + 10) {
            sm.apply_encoded(&batch(vec![enqueue(seq, "/queue/a")]), &mut records)
                .unwrap();
            assert_eq!(sm.live_messages(), seq);
        }
        let logged: Vec<u64> = records
            .keys()
            .filter(|k| k[0] == LOG_PREFIX)
            .filter_map(|k| record::index_of(k))
            .collect();
        assert_eq!(logged.len(), LogKeep::TAIL.batches);
        assert_eq!(logged.first(), Some(&11));
        let last = records.get(record::key(LOG_PREFIX, sm.last_batch()).as_slice());
        let again = EncodedBatch::from_bytes(last.unwrap()).unwrap();
        assert_eq!(
            again.entries,
            vec![enqueue(LogKeep::TAIL.batches as u64 + 10, "/queue/a")]
        );
    }

    /// The leader applies what it built without decoding it; a follower
    /// applies the bytes. Both end in the same state.
    #[test]
    fn the_leaders_batch_and_its_bytes_apply_alike() {
        let m = std::sync::Arc::new(stored(4, "/queue/a").into_message(None));
        let entries = vec![
            LogEntry::Enqueue {
                message: m,
                backlog: false,
            },
            LogEntry::Delivered { seq: 4, count: 1 },
        ];
        let (built, _) = entry::build(&entries, 0).unwrap();
        let raw = built.to_bytes();
        let (mut leader, mut follower) = (
            StateMachine::empty(LogKeep::TAIL),
            StateMachine::empty(LogKeep::TAIL),
        );
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        leader.apply(&built, &raw, &mut a).unwrap();
        follower.apply_encoded(&raw, &mut b).unwrap();
        assert_eq!((leader, a), (follower, b));
    }

    #[test]
    fn a_snapshot_brings_the_live_state_to_an_empty_store() {
        let (_dir, db) = temp_db();
        let (mut sm, _, _) = StateMachine::recover(&db, LogKeep::TAIL).unwrap();
        apply(
            &mut sm,
            &db,
            vec![
                enqueue(1, "/queue/a"),
                enqueue(2, "/queue/b"),
                enqueue(3, "/queue/a"),
            ],
        );
        apply(&mut sm, &db, vec![ack(1), delivered(3, 2)]);
        let snapshot = sm.snapshot(&db).unwrap().to_bytes();
        let (_dir2, fresh) = temp_db();
        let mut other = StateMachine::empty(LogKeep::TAIL);
        let mut b = SledRecords::new(&fresh);
        other.apply_encoded(&snapshot, &mut b).unwrap();
        fresh.apply_batch(b.into_batch()).unwrap();
        let recs = StateMachine::live_records(&fresh).unwrap();
        let got: Vec<(u64, u32)> = recs.iter().map(|r| (r.message.seq, r.delivered)).collect();
        assert_eq!(got, vec![(2, 0), (3, 2)]);
        assert_eq!(other.max_seq(), 3);
        assert_eq!(other.live_bytes(), sm.live_bytes());
    }

    /// Everything a store holds: its records and its in-memory state.
    fn dump(sm: &StateMachine, records: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
        format!("{:?}\n{records:?}", {
            (
                sm.live_messages,
                &sm.lanes,
                &sm.bodies,
                &sm.lane_bytes,
                sm.next_index,
                sm.last_batch,
                sm.max_seq,
                sm.live_bytes,
                &sm.log,
                sm.log_bytes,
            )
        })
    }

    proptest! {
        // Each case opens a sled database: fewer cases than the default.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Deterministic apply: the same random batches (every entry kind,
        /// seqs that meet) applied to two fresh stores give identical
        /// dumps, and so does applying them to a real sled store.
        #[test]
        fn the_same_batches_give_the_same_state(
            batches in prop::collection::vec(strategies::batch(), 1..8),
        ) {
            let (mut a, mut b) = (StateMachine::empty(LogKeep::TAIL), StateMachine::empty(LogKeep::TAIL));
            let (mut ra, mut rb) = (BTreeMap::new(), BTreeMap::new());
            for batch in &batches {
                let raw = batch.to_bytes();
                a.apply_encoded(&raw, &mut ra).unwrap();
                b.apply_encoded(&raw, &mut rb).unwrap();
            }
            prop_assert_eq!(dump(&a, &ra), dump(&b, &rb));
            // The records of the log's state are what recovery reads back.
            let (_dir, db) = temp_db();
            let mut on_disk = StateMachine::empty(LogKeep::TAIL);
            for batch in &batches {
                let mut sb = SledRecords::new(&db);
                on_disk.apply_encoded(&batch.to_bytes(), &mut sb).unwrap();
                db.apply_batch(sb.into_batch()).unwrap();
            }
            let from_sled: BTreeMap<Vec<u8>, Vec<u8>> = db
                .iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(dump(&on_disk, &from_sled), dump(&a, &ra));
            let (recovered, lanes, _) = StateMachine::recover(&db, LogKeep::TAIL).unwrap();
            prop_assert_eq!(&recovered, &on_disk);
            prop_assert_eq!(recovered.live_messages(), a.live_messages());
            prop_assert_eq!(recovered.live_bytes(), a.live_bytes());
            // The counts agree with the records they count.
            let records = StateMachine::live_records(&db).unwrap();
            prop_assert_eq!(records.len() as u64, recovered.live_messages());
            let counted: u64 = lanes.iter().map(|l| l.messages).sum();
            prop_assert_eq!(counted, recovered.live_messages());
            let mut recovered = recovered;
            // Lane bytes count bodies in files too, as the live bytes the
            // store reports do.
            let live = recovered.live_bytes() + recovered.body_bytes();
            prop_assert_eq!(recovered.lane_bytes_mut().total(), live);
            let queued = db.scan_prefix([QUEUE_PREFIX]).count() as u64;
            prop_assert_eq!(queued, recovered.live_messages());
            // The body file counts agree with the records in files.
            let in_files: Vec<_> = records.iter().filter_map(|r| r.message.body_ref).collect();
            let counted: u64 = recovered.body_counts().segments().map(|(_, c)| c.live).sum();
            prop_assert_eq!(counted, in_files.len() as u64);
            let bytes: u64 = in_files.iter().map(|r| r.len).sum();
            prop_assert_eq!(recovered.body_bytes(), bytes);
        }
    }
}
