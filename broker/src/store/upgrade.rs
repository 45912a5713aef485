//! The in-place upgrades of stores written by earlier formats to
//! [`FORMAT`] (6): from format 5 (message records under `M`, apart from
//! their queue order), from formats 4 and 3 (a lane's count alone in its
//! `C` record, then as format 5), and from format 2 (the release before
//! the seq index, queue order and lane counts).
//!
//! **From 5** ([`from_format_5`]): each message's record moves from its
//! `M` key into its `Q` value (the order entry already names its log
//! index), in batches of [`MOVE_CHUNK`] messages so that a deep store's
//! upgrade holds a bounded batch in memory. It reads and writes every
//! message once. Durability ordering: each chunk rewrites its `Q` values
//! and removes their `M` records in one atomic `sled::Batch`; the marker is
//! written after the last chunk, then flushed. A crash in between leaves
//! marker 5 with some `Q` values holding their record already: the next
//! open redoes the upgrade and skips those (a format-5 `Q` value has no
//! record), so every message is moved exactly once.
//!
//! **From 4 and 3** ([`from_format_4`]): each `C` record gets its lane's
//! bytes, from the lane's `V` record (format 4) or, where there is none
//! (format 3 had no `V`), summed from the lane's queue order and seq index
//! (a read per stored message of those lanes only); the `V` records go.
//! Format 3 is format 4 without body files and without `V` records, so one
//! function does both. It reads one record per lane (plus, for a format-3
//! store, the lane's messages), whatever the backlog of a format-4 store.
//! It writes marker 5; the caller then moves the records ([`from_format_5`]).
//!
//! **From 2** ([`from_format_2`]):
//! A format-2 store holds the message records (`M`), delivery counts (`D`),
//! metadata (`K`) and the applied/batch/max-seq markers, all still valid in
//! format 3 (a missing `backlog` field decodes as false: the router held
//! it). What it lacks is the read layout derived from the messages: the
//! `S`, `Q` and `C` records and the live totals. They are derived here in
//! one pass over the `M` records in log order (each record moving into its
//! `Q` value), through the very functions
//! the state machine applies an enqueue with
//! (`StateMachine::index_message`, `StateMachine::write_counts`), so
//! the upgraded store holds the records the state machine would have
//! written had it applied those enqueues. Format 2 had no body files:
//! every body stays inline, and the marker written is the current store
//! format ([`FORMAT`]).
//!
//! Durability ordering of these two: the rewritten records and the new
//! format marker are one `sled::Batch`, applied atomically and then
//! flushed. A crash before the flush leaves the old marker with the old
//! records (or, if sled persisted the batch, the new marker with all the
//! new records), so an upgrade is either redone whole or done.

use super::entry::StoredMessage;
use super::record::{
    self, LaneCount, QueueValue, SeqEntry, COUNT_PREFIX, FORMAT, FORMAT_5, FORMAT_KEY,
    LANE_BYTES_PREFIX, MESSAGE_PREFIX, QUEUE_PREFIX, SEQ_PREFIX,
};
use super::state_machine::{LogKeep, Records, SledRecords, StateMachine, Touched};
use std::time::Instant;
use tracing::info;

/// The oldest format this module upgrades from (the read layout is
/// derived).
pub const FROM: u32 = 2;

/// Messages moved per sled batch by [`from_format_5`]: a batch holds its
/// records in memory (~5 MiB of 1 KiB messages).
pub const MOVE_CHUNK: usize = 4096;

/// Upgrades the format-5 store in `db` to [`FORMAT`]: moves every `M`
/// record into its `Q` value, [`MOVE_CHUNK`] messages per batch, then
/// writes the marker and flushes (see the module doc). Returns the number
/// of messages moved. Fails when a record cannot be read or an order entry
/// has no record (the store is damaged: format 5 wrote and removed both in
/// one batch); what was moved stays moved and is skipped next time.
pub fn from_format_5(db: &sled::Db) -> Result<u64, String> {
    move_records(db, MOVE_CHUNK)
}

fn move_records(db: &sled::Db, chunk: usize) -> Result<u64, String> {
    let started = Instant::now();
    let mut moved = 0u64;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    for item in db.scan_prefix([QUEUE_PREFIX]) {
        let (k, v) = item.map_err(|e| format!("queue order: {e}"))?;
        let value = QueueValue::decode(&v).ok_or("malformed queue order record")?;
        if !value.record.is_empty() {
            continue; // moved by an upgrade a crash interrupted
        }
        let index = k
            .len()
            .checked_sub(8)
            .and_then(|at| record::decode_u64(&k[at..]))
            .ok_or("malformed queue order key")?;
        let old = record::key(MESSAGE_PREFIX, index);
        let raw = db
            .get(old)
            .map_err(|e| format!("message at log index {index}: {e}"))?
            .ok_or_else(|| format!("the record of the message at log index {index} is missing"))?;
        let moved_value = QueueValue {
            record: &raw,
            ..value
        };
        batch.insert(&*k, moved_value.encode());
        batch.remove(&old[..]);
        moved += 1;
        in_batch += 1;
        if in_batch >= chunk {
            db.apply_batch(std::mem::take(&mut batch))
                .map_err(|e| format!("cannot write moved records: {e}"))?;
            in_batch = 0;
        }
    }
    db.apply_batch(std::mem::take(&mut batch))
        .map_err(|e| format!("cannot write moved records: {e}"))?;
    // Records without an order entry are not read by anything (format 5
    // wrote and removed the two together): dead weight, removed.
    let mut orphans = 0u64;
    for item in db.scan_prefix([MESSAGE_PREFIX]) {
        let (k, _) = item.map_err(|e| format!("message records: {e}"))?;
        batch.remove(k);
        orphans += 1;
    }
    batch.insert(FORMAT_KEY, &FORMAT.to_be_bytes());
    db.apply_batch(batch)
        .map_err(|e| format!("cannot write moved records: {e}"))?;
    db.flush()
        .map_err(|e| format!("cannot flush the moved records: {e}"))?;
    info!(
        messages = moved,
        orphans,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store upgraded from format {FORMAT_5} to format {FORMAT}"
    );
    Ok(moved)
}

/// Upgrades the format-4 or format-3 (`from`) store in `tree` to
/// format 5: every `C` record gets its lane's bytes (see the module
/// doc) and the `V` records go, with the new marker in one batch, then a
/// flush. Returns the number of lanes rewritten. Fails (writing nothing)
/// when a record cannot be read.
pub fn from_format_4(db: &sled::Db, from: u32) -> Result<u64, String> {
    let started = Instant::now();
    let mut batch = sled::Batch::default();
    let mut lanes = 0u64;
    for item in db.scan_prefix([COUNT_PREFIX]) {
        let (k, v) = item.map_err(|e| format!("lane counts: {e}"))?;
        let messages = record::decode_u64(&v).ok_or("malformed format-4 lane count")?;
        let lane = &k[1..];
        let bytes = match db
            .get(record::lane_key(LANE_BYTES_PREFIX, lane, None))
            .map_err(|e| format!("lane bytes: {e}"))?
        {
            Some(raw) => record::decode_u64(&raw).ok_or("malformed lane bytes")?,
            None => sum_lane(db, lane)?,
        };
        batch.insert(&*k, &LaneCount { messages, bytes }.encode()[..]);
        lanes += 1;
    }
    for item in db.scan_prefix([LANE_BYTES_PREFIX]) {
        let (k, _) = item.map_err(|e| format!("lane bytes: {e}"))?;
        batch.remove(k);
    }
    batch.insert(FORMAT_KEY, &FORMAT_5.to_be_bytes());
    db.apply_batch(batch)
        .map_err(|e| format!("cannot write the upgraded lane counts: {e}"))?;
    db.flush()
        .map_err(|e| format!("cannot flush the upgraded lane counts: {e}"))?;
    info!(
        lanes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store upgraded from format {from} to format {FORMAT_5}"
    );
    Ok(lanes)
}

/// The bytes of `lane`'s records, from its queue order (`Q`: each value
/// starts with the seq) and the seq index (`S`: each entry has its size
/// and its body file's length), as the state machine counts them.
fn sum_lane(tree: &sled::Tree, lane: &[u8]) -> Result<u64, String> {
    let mut sum = 0u64;
    for item in tree.scan_prefix(record::lane_key(QUEUE_PREFIX, lane, None)) {
        let (_, v) = item.map_err(|e| format!("queue order: {e}"))?;
        let seq = QueueValue::decode(&v)
            .ok_or("malformed queue order record")?
            .seq;
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

/// Upgrades the format-2 store in `tree` to [`FORMAT`]: derives the `S`,
/// `Q` and `C` records and the live totals, writes them with the new
/// marker in one batch and flushes. Returns the number of messages
/// upgraded. Fails (writing nothing) when a record cannot be read.
pub fn from_format_2(db: &sled::Db) -> Result<u64, String> {
    let started = Instant::now();
    let mut sm = StateMachine::empty(LogKeep::NONE);
    let mut records = SledRecords::new(db);
    let mut touched = Touched::default();
    let mut messages = 0u64;
    // `M` keys sort by log index: the order the enqueues were applied in.
    for item in db.scan_prefix([MESSAGE_PREFIX]) {
        let (k, v) = item.map_err(|e| format!("store read: {e}"))?;
        let index = record::index_of(&k).ok_or("malformed message key")?;
        let message = StoredMessage::decode_record(&v)
            .map_err(|e| format!("message at log index {index}: {e}"))?;
        sm.index_message(&message, index, &v, &mut records, &mut touched);
        // The record now lives in its `Q` value.
        records.remove(&k);
        messages += 1;
    }
    sm.write_counts(touched, &mut records);
    records.insert(FORMAT_KEY, &FORMAT.to_be_bytes());
    db.apply_batch(records.into_batch())
        .map_err(|e| format!("cannot write the upgraded records: {e}"))?;
    db.flush()
        .map_err(|e| format!("cannot flush the upgraded records: {e}"))?;
    info!(
        messages,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store upgraded from format {FROM} to format {FORMAT}"
    );
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::{EncodedBatch, Entry, Kind};
    use crate::store::log_writer::{WriterSettings, ACK_GATHER};
    use crate::store::record::{APPLIED_KEY, BATCH_KEY, DELIVERED_PREFIX, MAX_SEQ_KEY};
    use crate::store::sled_store::{SledStore, StoreSettings};
    use crate::store::{Commit, LogEntry, Recovered, Store, StoreError};
    use bytes::Bytes;
    use ferromq_config::StoreSync;
    use prost::Message as _;
    use std::path::Path;
    use std::time::Duration;

    fn settings(path: &Path) -> StoreSettings {
        StoreSettings {
            path: path.to_path_buf(),
            writer: WriterSettings {
                sync: StoreSync::Always,
                batch_delay: Duration::from_millis(2),
                disk_limit: 1 << 30,
                ack_gather: ACK_GATHER,
                checkpoint_bytes: u64::MAX,
            },
            cache_bytes: 8 << 20,
            body_budget: 1 << 30,
            compact_min_bytes: 1 << 30,
            bodies: crate::store::body_segments::BodySettings::new(
                path.with_extension("bodies"),
                64 << 10,
            ),
        }
    }

    fn wait(c: Commit) -> Result<(), StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(c.wait())
    }

    fn stored(seq: u64, destination: &str, priority: u32) -> StoredMessage {
        StoredMessage {
            seq,
            destination: destination.into(),
            priority,
            expires: 0,
            timestamp: 7,
            headers: vec![],
            body: Bytes::from(format!("body {seq}")),
            backlog: false,
            body_ref: None,
        }
    }

    /// What the format-2 apply step left in sled (git show
    /// f9532eb:broker/src/store/state_machine.rs): the marker, the applied
    /// index, batch number and max seq, `M` records keyed by log index and
    /// `D` counts; no `S`, `Q`, `C` or live totals.
    fn write_format_2(path: &Path, messages: &[(u64, StoredMessage, u32)]) {
        let db = crate::store::test_db::open(path);
        db.insert(FORMAT_KEY, &FROM.to_be_bytes()).unwrap();
        let last = messages.iter().map(|(i, _, _)| *i).max().unwrap_or(0);
        let max_seq = messages.iter().map(|(_, m, _)| m.seq).max().unwrap_or(0);
        db.insert(APPLIED_KEY, &(last + 3).to_be_bytes()).unwrap();
        db.insert(BATCH_KEY, &5u64.to_be_bytes()).unwrap();
        db.insert(MAX_SEQ_KEY, &(max_seq + 2).to_be_bytes())
            .unwrap();
        for (index, m, delivered) in messages {
            db.insert(record::key(MESSAGE_PREFIX, *index), m.encode_to_vec())
                .unwrap();
            if *delivered > 0 {
                db.insert(
                    record::key(DELIVERED_PREFIX, *index),
                    &delivered.to_be_bytes(),
                )
                .unwrap();
            }
        }
        db.flush().unwrap();
    }

    /// Every recovered lane read back with the cursor: (destination,
    /// priority, seq, delivered), lane by lane, each in its read order.
    fn read_all(store: &SledStore, rec: &Recovered) -> Vec<(String, u8, u64, u32)> {
        let mut out = Vec::new();
        for lane in &rec.backlog {
            let read = store
                .read_backlog(&lane.destination, lane.priority, 0, usize::MAX)
                .unwrap();
            assert_eq!(read.messages.len() as u64, lane.messages);
            for m in read.messages {
                out.push((
                    lane.destination.clone(),
                    lane.priority,
                    m.message.seq,
                    m.delivered,
                ));
            }
        }
        out
    }

    #[test]
    fn a_format_2_store_is_upgraded_in_place_and_its_messages_read_acked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Log indexes out of seq order in one lane, two priorities, two
        // queues: the cursor must read by log index within each lane.
        let old = vec![
            (3, stored(1, "/queue/a", 4), 0),
            (4, stored(2, "/queue/b", 4), 2),
            (6, stored(5, "/queue/a", 4), 1),
            (9, stored(3, "/queue/a", 4), 0),
            (10, stored(4, "/queue/a", 9), 3),
            (12, stored(6, "/queue/b", 4), 0),
        ];
        write_format_2(dir.path(), &old);

        let (store, rec) = SledStore::open(settings(dir.path())).unwrap();
        assert_eq!(rec.next_seq, 6 + 3, "max_seq is kept");
        let mut lanes: Vec<_> = rec
            .backlog
            .iter()
            .map(|l| (l.destination.as_str(), l.priority, l.messages))
            .collect();
        lanes.sort();
        assert_eq!(
            lanes,
            vec![("/queue/a", 4, 3), ("/queue/a", 9, 1), ("/queue/b", 4, 2)]
        );
        let mut got = read_all(&store, &rec);
        got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let a = |p: u8, seq: u64, d: u32| ("/queue/a".to_string(), p, seq, d);
        let b = |seq: u64, d: u32| ("/queue/b".to_string(), 4, seq, d);
        assert_eq!(
            got,
            vec![
                a(4, 1, 0),
                a(4, 5, 1),
                a(4, 3, 0),
                a(9, 4, 3),
                b(2, 2),
                b(6, 0)
            ]
        );

        // Acks of upgraded messages find them through the derived `S` index.
        wait(store.append(vec![
            LogEntry::Ack {
                destination: "/queue/a".into(),
                seq: 5,
            },
            LogEntry::Ack {
                destination: "/queue/b".into(),
                seq: 2,
            },
            LogEntry::Ack {
                destination: "/queue/a".into(),
                seq: 4,
            },
        ]))
        .unwrap();
        store.close();
        drop(store);

        let (store, rec) = SledStore::open(settings(dir.path())).unwrap();
        let mut got = read_all(&store, &rec);
        got.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        assert_eq!(got, vec![a(4, 1, 0), a(4, 3, 0), b(6, 0)]);
        assert_eq!(rec.backlog.len(), 2, "the emptied lane has no count left");
        drop(store);
        let db = crate::store::test_db::open(dir.path());
        let marker = db.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(record::decode_u32(&marker), Some(FORMAT));
    }

    #[test]
    fn the_upgrade_writes_what_applying_the_enqueues_in_format_3_writes() {
        let dir = tempfile::tempdir().unwrap();
        let old = vec![
            (1, stored(1, "/queue/a", 4), 0),
            (2, stored(2, "/queue/b", 0), 0),
            (3, stored(3, "/queue/a", 4), 0),
        ];
        write_format_2(dir.path(), &old);
        let db = crate::store::test_db::open(dir.path());
        assert_eq!(from_format_2(&db).unwrap(), 3);

        // The same enqueues applied by the state machine, as one batch.
        let mut applied = std::collections::BTreeMap::new();
        let batch = EncodedBatch {
            format: crate::store::entry::FORMAT,
            max_seq: 3,
            entries: old
                .iter()
                .map(|(_, m, _)| Entry {
                    kind: Some(Kind::Enqueue(m.clone())),
                })
                .collect(),
        };
        StateMachine::empty(LogKeep::NONE)
            .apply(&batch, &batch.to_bytes(), &mut applied)
            .unwrap();
        let derived = |prefix: u8| -> Vec<(Vec<u8>, Vec<u8>)> {
            db.scan_prefix([prefix])
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect()
        };
        let expected = |prefix: u8| -> Vec<(Vec<u8>, Vec<u8>)> {
            applied
                .iter()
                .filter(|(k, _)| k.first() == Some(&prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(db.scan_prefix([MESSAGE_PREFIX]).count(), 0, "records moved");
        for prefix in [
            record::SEQ_PREFIX,
            record::QUEUE_PREFIX,
            record::COUNT_PREFIX,
        ] {
            let got = derived(prefix);
            assert!(!got.is_empty(), "prefix {}", prefix as char);
            assert_eq!(got, expected(prefix), "prefix {}", prefix as char);
        }
        assert_eq!(
            db.get(record::LIVE_KEY).unwrap().map(|v| v.to_vec()),
            applied.get(record::LIVE_KEY).cloned()
        );
    }

    #[test]
    fn a_format_2_batch_applies_as_messages_the_router_held() {
        let mut entry = stored(8, "/queue/a", 4);
        entry.backlog = false;
        let batch = EncodedBatch {
            format: FROM,
            max_seq: 8,
            entries: vec![Entry {
                kind: Some(Kind::Enqueue(entry)),
            }],
        };
        let mut records = std::collections::BTreeMap::new();
        let mut sm = StateMachine::empty(LogKeep::NONE);
        let applied = sm.apply_encoded(&batch.to_bytes(), &mut records).unwrap();
        assert_eq!(applied.stored, vec![(8, 1)]);
        let order = records
            .get(&record::lane_key(
                record::QUEUE_PREFIX,
                &record::lane("/queue/a", 4),
                Some(1),
            ))
            .unwrap();
        let order = QueueValue::decode(order).unwrap();
        assert_eq!((order.seq, order.left_to_store), (8, false));
        assert!(!order.record.is_empty());
    }

    /// A format-4 store (lane bytes in `V` records) and one lane without
    /// its `V` record (counted before they existed) upgrade to the `C`
    /// records the state machine writes, with no `V` left.
    #[test]
    fn a_format_4_stores_lane_bytes_are_folded_into_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        let mut sm = StateMachine::empty(LogKeep::NONE);
        let mut big = stored(3, "/queue/b", 4);
        big.body = Bytes::from(vec![b'z'; 3000]);
        let batch = EncodedBatch {
            format: crate::store::entry::FORMAT,
            max_seq: 4,
            entries: [
                stored(1, "/queue/a", 4),
                stored(2, "/queue/a", 9),
                big,
                stored(4, "/queue/b", 4),
            ]
            .into_iter()
            .map(|m| Entry {
                kind: Some(Kind::Enqueue(m)),
            })
            .collect(),
        };
        let mut records = SledRecords::new(&db);
        sm.apply(&batch, &batch.to_bytes(), &mut records).unwrap();
        db.apply_batch(records.into_batch()).unwrap();
        let counts = |db: &sled::Db| -> Vec<(Vec<u8>, Vec<u8>)> {
            db.scan_prefix([record::COUNT_PREFIX])
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect()
        };
        let applied = counts(&db);
        assert_eq!(applied.len(), 3);
        // Back to format 4: counts alone, bytes in `V` but for one lane.
        for (n, (k, v)) in applied.iter().enumerate() {
            let c = LaneCount::decode(v).unwrap();
            db.insert(k, &c.messages.to_be_bytes()).unwrap();
            if n != 1 {
                let key = record::lane_key(LANE_BYTES_PREFIX, &k[1..], None);
                db.insert(key, &c.bytes.to_be_bytes()).unwrap();
            }
        }
        db.insert(FORMAT_KEY, &4u32.to_be_bytes()).unwrap();

        assert_eq!(from_format_4(&db, 4).unwrap(), 3);
        assert_eq!(counts(&db), applied);
        assert_eq!(db.scan_prefix([LANE_BYTES_PREFIX]).count(), 0);
        let marker = db.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(record::decode_u32(&marker), Some(FORMAT_5));
        let (mut recovered, _, _) = StateMachine::recover(&db, LogKeep::NONE).unwrap();
        assert_eq!(recovered, sm);
        assert!(recovered.lane_bytes_mut().of_destination("/queue/b") > 3000);
    }

    /// A format-5 store (records under `M`, order entries without them)
    /// ends with every record in its `Q` value and no `M` key, as applying
    /// its messages writes; an interrupted upgrade (some records moved)
    /// finishes the same way, moving each record once.
    #[test]
    fn format_5_records_move_into_their_queue_order_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let mut sm = StateMachine::empty(LogKeep::NONE);
        let entries: Vec<Entry> = (1..=7)
            .map(|seq| {
                let mut m = stored(seq, if seq % 2 == 0 { "/queue/a" } else { "/queue/b" }, 4);
                m.backlog = seq > 4;
                Entry {
                    kind: Some(Kind::Enqueue(m)),
                }
            })
            .collect();
        let batch = EncodedBatch {
            format: crate::store::entry::FORMAT,
            max_seq: 7,
            entries,
        };
        let mut records = SledRecords::new(&db);
        sm.apply(&batch, &batch.to_bytes(), &mut records).unwrap();
        db.apply_batch(records.into_batch()).unwrap();
        let all = |db: &sled::Db| -> Vec<(Vec<u8>, Vec<u8>)> {
            db.iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .filter(|(k, _)| k.as_slice() != FORMAT_KEY)
                .collect()
        };
        let applied = all(&db);
        // Back to format 5, but for seq 1's record: moved before a crash.
        let mut in_m = 0;
        for (k, v) in applied.iter().filter(|(k, _)| k[0] == QUEUE_PREFIX) {
            let value = QueueValue::decode(v).unwrap();
            let index = record::decode_u64(&k[k.len() - 8..]).unwrap();
            if value.seq == 1 {
                continue;
            }
            db.insert(record::key(MESSAGE_PREFIX, index), value.record)
                .unwrap();
            db.insert(k, &v[..9]).unwrap();
            in_m += 1;
        }
        assert_eq!(in_m, 6);
        db.insert(FORMAT_KEY, &FORMAT_5.to_be_bytes()).unwrap();

        assert_eq!(move_records(&db, 4).unwrap(), 6, "two chunks and a rest");
        assert_eq!(all(&db), applied);
        let marker = db.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(record::decode_u32(&marker), Some(FORMAT));
        assert_eq!(move_records(&db, 4).unwrap(), 0, "nothing left to move");
        // An order entry whose record is gone is damage, reported.
        let (k, v) = applied.iter().find(|(k, _)| k[0] == QUEUE_PREFIX).unwrap();
        db.insert(k, &v[..9]).unwrap();
        let e = move_records(&db, 4).unwrap_err();
        assert!(e.contains("is missing"), "{e}");
    }
}
