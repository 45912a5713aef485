//! [`StateMachine`]: what the log describes, applied entry by entry.
//!
//! The in-memory side is an index of live (stored, unacknowledged) messages by
//! sequence number: their log index (the key of their record), delivery count
//! and size. The durable side is sled: applying a batch of entries fills one
//! `sled::Batch` (records written, acknowledged ones removed, the applied
//! index advanced) that the writer applies atomically before its flush.
//!
//! This is the piece a Raft log will feed later: followers apply the same
//! entries in the same order and reach the same state.

use super::record::{self, DELIVERED_PREFIX, MESSAGE_PREFIX};
use super::{LogEntry, Recovered};
use crate::router::now_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One stored message the router has not seen acknowledged.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// Log index of its enqueue: the key of its record.
    index: u64,
    /// Deliveries recorded so far.
    delivered: u32,
    /// Size of its record, for the disk limit.
    bytes: u64,
}

/// Counts from applying one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Message records written.
    pub written: usize,
    /// Message records removed.
    pub removed: usize,
    /// Enqueue/ack pairs that met inside the batch and were never written
    /// (store-and-dispatch: consumed before they reached the disk).
    pub elided: usize,
}

/// The store's state machine.
#[derive(Debug, Default)]
pub struct StateMachine {
    live: HashMap<u64, Live>,
    /// Index the next entry gets (one per entry, like a Raft log index).
    next_index: u64,
    max_seq: u64,
    live_bytes: u64,
}

impl StateMachine {
    /// Rebuilds the state from what sled holds: every live message record in
    /// log order, with its delivery count. Expired messages are dropped here
    /// (and their records removed) instead of being handed to the router.
    pub fn recover(tree: &sled::Tree) -> Result<(StateMachine, Recovered), String> {
        let mut sm = StateMachine {
            next_index: 1,
            ..StateMachine::default()
        };
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
        sm.max_seq = read_u64(record::MAX_SEQ_KEY)?.unwrap_or(0);
        let mut counts = HashMap::new();
        for item in tree.scan_prefix([DELIVERED_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let index = record::index_of(&k).ok_or("malformed delivery-count key")?;
            let count = record::decode_u32(&v).ok_or("malformed delivery count")?;
            counts.insert(index, count);
        }
        let now = now_ms();
        let mut messages = Vec::new();
        let mut expired = Vec::new();
        for item in tree.scan_prefix([MESSAGE_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let index = record::index_of(&k).ok_or("malformed message key")?;
            let message = record::decode_message(&v)
                .map_err(|e| format!("message at log index {index}: {e}"))?;
            sm.max_seq = sm.max_seq.max(message.seq);
            sm.next_index = sm.next_index.max(index + 1);
            if message.is_expired(now) {
                expired.push(index);
                continue;
            }
            let delivered = counts.get(&index).copied().unwrap_or(0);
            sm.live.insert(
                message.seq,
                Live {
                    index,
                    delivered,
                    bytes: v.len() as u64,
                },
            );
            sm.live_bytes += v.len() as u64;
            messages.push((Arc::new(message), delivered));
        }
        for index in expired {
            tree.remove(record::key(MESSAGE_PREFIX, index))
                .and_then(|_| tree.remove(record::key(DELIVERED_PREFIX, index)))
                .map_err(|e| e.to_string())?;
        }
        let mut meta = Vec::new();
        for item in tree.scan_prefix([record::META_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let name = std::str::from_utf8(&k[1..]).map_err(|_| "metadata key is not UTF-8")?;
            meta.push((name.to_string(), bytes::Bytes::copy_from_slice(&v)));
        }
        let recovered = Recovered {
            messages,
            next_seq: sm.max_seq + 1,
            meta,
        };
        Ok((sm, recovered))
    }

    /// Applies `entries` in order, recording the writes in `batch`.
    ///
    /// Store-and-dispatch: a message whose enqueue and ack are both in this
    /// batch was consumed and acknowledged before anything about it reached
    /// the disk, so neither is written; the producer's receipt still waits
    /// for this batch (and thus for the ack), which keeps the contract "a
    /// receipt means on disk, or consumed and acknowledged".
    pub fn apply(&mut self, entries: &[LogEntry], batch: &mut sled::Batch) -> Applied {
        let mut applied = Applied::default();
        let enqueued_here: HashSet<u64> = entries
            .iter()
            .filter_map(|e| match e {
                LogEntry::Enqueue { message } => Some(message.seq),
                _ => None,
            })
            .collect();
        let elide: HashSet<u64> = entries
            .iter()
            .filter_map(|e| match e {
                LogEntry::Ack { seq, .. } if enqueued_here.contains(seq) => Some(*seq),
                _ => None,
            })
            .collect();
        let max_seq_before = self.max_seq;
        for entry in entries {
            let index = self.next_index;
            self.next_index += 1;
            match entry {
                LogEntry::Enqueue { message } => {
                    self.max_seq = self.max_seq.max(message.seq);
                    if elide.contains(&message.seq) {
                        applied.elided += 1;
                        continue;
                    }
                    let raw = record::encode_message(message);
                    let bytes = raw.len() as u64;
                    batch.insert(&record::key(MESSAGE_PREFIX, index), raw);
                    self.live.insert(
                        message.seq,
                        Live {
                            index,
                            delivered: 0,
                            bytes,
                        },
                    );
                    self.live_bytes += bytes;
                    applied.written += 1;
                }
                LogEntry::Ack { seq, .. } => {
                    // Unknown seqs (elided above, or never stored) need nothing.
                    if let Some(live) = self.live.remove(seq) {
                        batch.remove(&record::key(MESSAGE_PREFIX, live.index));
                        if live.delivered > 0 {
                            batch.remove(&record::key(DELIVERED_PREFIX, live.index));
                        }
                        self.live_bytes -= live.bytes.min(self.live_bytes);
                        applied.removed += 1;
                    }
                }
                LogEntry::Put { key, value } => {
                    batch.insert(record::meta_key(key), &value[..]);
                }
                LogEntry::Delete { key } => batch.remove(record::meta_key(key)),
                LogEntry::Delivered { seq, count } => {
                    if let Some(live) = self.live.get_mut(seq) {
                        if *count > live.delivered {
                            live.delivered = *count;
                            batch.insert(
                                &record::key(DELIVERED_PREFIX, live.index),
                                &count.to_be_bytes(),
                            );
                        }
                    }
                }
            }
        }
        if !entries.is_empty() {
            batch.insert(record::APPLIED_KEY, &(self.next_index - 1).to_be_bytes());
        }
        if self.max_seq != max_seq_before {
            batch.insert(record::MAX_SEQ_KEY, &self.max_seq.to_be_bytes());
        }
        applied
    }

    /// Messages stored and not acknowledged.
    pub fn live_messages(&self) -> usize {
        self.live.len()
    }

    /// Bytes of their records.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Whether message `seq` is stored and not acknowledged.
    pub fn is_live(&self, seq: u64) -> bool {
        self.live.contains_key(&seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Message;
    use bytes::Bytes;
    use ferromq_protocol::Headers;

    fn msg(seq: u64, dest: &str) -> Arc<Message> {
        Arc::new(Message {
            seq,
            destination: dest.into(),
            persistent: true,
            priority: 4,
            expires: 0,
            timestamp: 1,
            headers: Headers::new(),
            body: Bytes::from(vec![b'x'; 100]),
        })
    }

    fn enqueue(seq: u64, dest: &str) -> LogEntry {
        LogEntry::Enqueue {
            message: msg(seq, dest),
        }
    }

    fn ack(seq: u64) -> LogEntry {
        LogEntry::Ack {
            destination: "/queue/a".into(),
            seq,
        }
    }

    fn temp_tree() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .open()
            .unwrap();
        (dir, db)
    }

    fn apply(sm: &mut StateMachine, db: &sled::Db, entries: &[LogEntry]) -> Applied {
        let mut batch = sled::Batch::default();
        let a = sm.apply(entries, &mut batch);
        db.apply_batch(batch).unwrap();
        a
    }

    #[test]
    fn recovery_returns_unacked_messages_in_log_order_with_counts() {
        let (_dir, db) = temp_tree();
        let (mut sm, rec) = StateMachine::recover(&db).unwrap();
        assert!(rec.messages.is_empty());
        // Seq 9 is logged before seq 3 (a transaction's seqs are older than
        // its commit): recovery must follow the log, not the seqs.
        apply(
            &mut sm,
            &db,
            &[enqueue(9, "/queue/a"), enqueue(3, "/queue/a")],
        );
        apply(&mut sm, &db, &[enqueue(5, "/queue/b"), ack(9)]);
        apply(
            &mut sm,
            &db,
            &[
                LogEntry::Delivered { seq: 3, count: 2 },
                LogEntry::Delivered { seq: 3, count: 1 },
            ],
        );
        let (sm2, rec) = StateMachine::recover(&db).unwrap();
        let got: Vec<(u64, u32)> = rec.messages.iter().map(|(m, n)| (m.seq, *n)).collect();
        assert_eq!(got, vec![(3, 2), (5, 0)]);
        assert_eq!(rec.next_seq, 10, "the acked seq 9 still counts");
        assert_eq!(sm2.live_messages(), 2);
        assert_eq!(sm2.live_bytes(), sm.live_bytes());
        assert_eq!(sm2.next_index, sm.next_index);
    }

    #[test]
    fn enqueue_and_ack_in_one_batch_are_never_written() {
        let (_dir, db) = temp_tree();
        let (mut sm, _) = StateMachine::recover(&db).unwrap();
        let a = apply(
            &mut sm,
            &db,
            &[
                enqueue(1, "/queue/a"),
                LogEntry::Delivered { seq: 1, count: 1 },
                enqueue(2, "/queue/a"),
                ack(1),
            ],
        );
        assert_eq!(
            a,
            Applied {
                written: 1,
                removed: 0,
                elided: 1
            }
        );
        assert!(!sm.is_live(1));
        assert!(sm.is_live(2));
        assert_eq!(db.scan_prefix([MESSAGE_PREFIX]).count(), 1);
        assert_eq!(db.scan_prefix([DELIVERED_PREFIX]).count(), 0);
        let a = apply(&mut sm, &db, &[ack(2), ack(77)]);
        assert_eq!(a.removed, 1);
        assert_eq!(sm.live_bytes(), 0);
        assert_eq!(db.scan_prefix([MESSAGE_PREFIX]).count(), 0);
    }

    #[test]
    fn metadata_is_kept_until_deleted() {
        let (_dir, db) = temp_tree();
        let (mut sm, _) = StateMachine::recover(&db).unwrap();
        let put = |k: &str, v: &'static [u8]| LogEntry::Put {
            key: k.into(),
            value: Bytes::from_static(v),
        };
        apply(&mut sm, &db, &[put("sub/a", b"1"), put("sub/b", b"2")]);
        apply(
            &mut sm,
            &db,
            &[
                put("sub/a", b"3"),
                LogEntry::Delete {
                    key: "sub/b".into(),
                },
            ],
        );
        let (_, rec) = StateMachine::recover(&db).unwrap();
        assert_eq!(
            rec.meta,
            vec![("sub/a".to_string(), Bytes::from_static(b"3"))]
        );
        assert!(rec.messages.is_empty());
    }

    #[test]
    fn corrupt_record_is_reported_with_its_index() {
        let (_dir, db) = temp_tree();
        db.insert(record::key(MESSAGE_PREFIX, 7), &b"\x01garbage"[..])
            .unwrap();
        let e = StateMachine::recover(&db).unwrap_err();
        assert!(e.contains("log index 7"), "{e}");
    }
}
