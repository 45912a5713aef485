//! [`StateMachine`]: what the log describes, applied entry by entry.
//!
//! The in-memory side is an index of live (stored, unacknowledged) messages by
//! sequence number: their log index (the key of their record), delivery count
//! and size. The durable side is sled: applying a batch of entries fills one
//! `sled::Batch` (records written, acknowledged ones removed, the applied
//! index advanced) that the writer applies atomically before its flush.
//!
//! It also keeps the paging budget: live bodies held in memory add up to at
//! most `store.memory_limit`; a body written beyond it is paged out once its
//! record is applied ([`StateMachine::page_out`]), and recovery leaves bodies
//! beyond it on disk.
//!
//! This is the piece a Raft log will feed later: followers apply the same
//! entries in the same order and reach the same state.

use super::record::{self, BodyFrom, DELIVERED_PREFIX, MESSAGE_PREFIX};
use super::{LogEntry, Recovered, StoreError};
use crate::message::{now_ms, BodySource};
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
    /// Bytes of its body held in memory (0 once paged out), against the
    /// paging budget.
    resident: u64,
    /// Its body is paged out.
    paged: bool,
}

/// How many live bodies may stay in memory, and where paged ones are read.
#[derive(Clone)]
pub struct Paging {
    /// Bytes of live bodies kept in memory (`store.memory_limit`).
    pub budget: u64,
    /// Reads paged bodies back.
    pub source: Arc<dyn BodySource>,
}

impl std::fmt::Debug for Paging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paging")
            .field("budget", &self.budget)
            .finish()
    }
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
#[derive(Debug)]
pub struct StateMachine {
    live: HashMap<u64, Live>,
    /// Index the next entry gets (one per entry, like a Raft log index).
    next_index: u64,
    max_seq: u64,
    live_bytes: u64,
    /// Bytes of live bodies in memory (at most `paging.budget`, but for
    /// bodies not yet written).
    resident_bytes: u64,
    /// Live messages whose body is paged out.
    paged: usize,
    paging: Paging,
}

impl StateMachine {
    /// Rebuilds the state from what sled holds: every live message record in
    /// log order, with its delivery count. Expired messages are dropped here
    /// (and their records removed) instead of being handed to the router.
    ///
    /// Bodies are loaded in log order until `paging.budget` is used up; the
    /// rest stay on disk, so a store far bigger than memory recovers in
    /// bounded memory.
    pub fn recover(tree: &sled::Tree, paging: Paging) -> Result<(StateMachine, Recovered), String> {
        let mut sm = StateMachine {
            live: HashMap::new(),
            next_index: 1,
            max_seq: 0,
            live_bytes: 0,
            resident_bytes: 0,
            paged: 0,
            paging,
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
            let body_len = record::decode_body(&v)
                .map_err(|e| format!("message at log index {index}: {e}"))?
                .len() as u64;
            let fits = sm.resident_bytes + body_len <= sm.paging.budget;
            let body_from = if fits {
                BodyFrom::Copy
            } else {
                BodyFrom::Page {
                    source: sm.paging.source.clone(),
                    index,
                }
            };
            let message = record::decode_message(&v, body_from)
                .map_err(|e| format!("message at log index {index}: {e}"))?;
            sm.max_seq = sm.max_seq.max(message.seq);
            sm.next_index = sm.next_index.max(index + 1);
            if message.is_expired(now) {
                expired.push(index);
                continue;
            }
            let delivered = counts.get(&index).copied().unwrap_or(0);
            let resident = if fits { body_len } else { 0 };
            sm.resident_bytes += resident;
            sm.paged += usize::from(!fits);
            sm.live.insert(
                message.seq,
                Live {
                    index,
                    delivered,
                    bytes: v.len() as u64,
                    resident,
                    paged: !fits,
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
    ///
    /// Fails only when a message to write has a body that cannot be read
    /// (see [`record::encode_message`]); the batch must then not be written.
    pub fn apply(
        &mut self,
        entries: &[LogEntry],
        batch: &mut sled::Batch,
    ) -> Result<Applied, StoreError> {
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
                    let raw = record::encode_message(message)
                        .map_err(|e| StoreError::Io(e.to_string()))?;
                    let bytes = raw.len() as u64;
                    batch.insert(&record::key(MESSAGE_PREFIX, index), raw);
                    // Resident until `page_out` decides, after the write.
                    let resident = message.body.len() as u64;
                    self.resident_bytes += resident;
                    self.live.insert(
                        message.seq,
                        Live {
                            index,
                            delivered: 0,
                            bytes,
                            resident,
                            paged: false,
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
                        self.forget_resident(live);
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
        Ok(applied)
    }

    /// Pages out the bodies of `entries`' enqueues that do not fit the
    /// budget. Called after their batch is applied to sled, so a reader of
    /// a paged body always finds its record. Newest bodies go first, which
    /// keeps the head of each queue (what is dispatched next) in memory.
    /// Returns how many were paged.
    pub fn page_out(&mut self, entries: &[LogEntry]) -> usize {
        if self.resident_bytes <= self.paging.budget {
            return 0;
        }
        let mut paged = 0;
        for entry in entries.iter().rev() {
            if self.resident_bytes <= self.paging.budget {
                break;
            }
            let LogEntry::Enqueue { message } = entry else {
                continue;
            };
            let Some(live) = self.live.get_mut(&message.seq) else {
                continue; // acknowledged meanwhile, or never written
            };
            if live.paged || live.resident == 0 {
                continue;
            }
            message.body.page_out(&self.paging.source, live.index);
            self.resident_bytes -= live.resident.min(self.resident_bytes);
            live.resident = 0;
            live.paged = true;
            self.paged += 1;
            paged += 1;
        }
        paged
    }

    fn forget_resident(&mut self, live: Live) {
        if live.paged {
            self.paged -= 1.min(self.paged);
        } else {
            self.resident_bytes -= live.resident.min(self.resident_bytes);
        }
    }

    /// Bytes of live bodies held in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    /// Live messages whose body is paged out.
    pub fn paged_messages(&self) -> usize {
        self.paged
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
    use crate::message::Message;
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
            body: Bytes::from(vec![b'x'; 100]).into(),
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
        let a = sm.apply(entries, &mut batch).unwrap();
        db.apply_batch(batch).unwrap();
        sm.page_out(entries);
        a
    }

    /// Reads bodies straight from the test database.
    struct TreeBodies(sled::Db);

    impl BodySource for TreeBodies {
        fn read_body(&self, index: u64) -> Result<Bytes, String> {
            let raw = self
                .0
                .get(record::key(MESSAGE_PREFIX, index))
                .map_err(|e| e.to_string())?
                .ok_or("gone")?;
            record::decode_body(&raw).map(Bytes::copy_from_slice)
        }
    }

    fn paging(db: &sled::Db, budget: u64) -> Paging {
        Paging {
            budget,
            source: Arc::new(TreeBodies(db.clone())),
        }
    }

    fn numbered(seq: u64) -> LogEntry {
        LogEntry::Enqueue {
            message: Arc::new(Message {
                seq,
                destination: "/queue/a".into(),
                persistent: true,
                priority: 4,
                expires: 0,
                timestamp: 1,
                headers: Headers::new(),
                body: Bytes::from(format!("{seq:0>100}")).into(),
            }),
        }
    }

    #[test]
    fn bodies_beyond_the_budget_are_paged_out_after_their_write_and_read_back() {
        let (_dir, db) = temp_tree();
        let (mut sm, _) = StateMachine::recover(&db, paging(&db, 250)).unwrap();
        let entries: Vec<LogEntry> = (1..=5).map(numbered).collect();
        apply(&mut sm, &db, &entries);
        let resident: Vec<bool> = entries
            .iter()
            .map(|e| match e {
                LogEntry::Enqueue { message } => message.body.is_resident(),
                _ => unreachable!(),
            })
            .collect();
        // The oldest stay (they are dispatched first), the newest go.
        assert_eq!(resident, vec![true, true, false, false, false]);
        assert_eq!((sm.resident_bytes(), sm.paged_messages()), (200, 3));
        for (seq, e) in (1..).zip(&entries) {
            let LogEntry::Enqueue { message } = e else {
                unreachable!()
            };
            assert_eq!(message.body.get().unwrap(), format!("{seq:0>100}"));
        }
        // Acks give budget back (resident) or drop the paged count.
        apply(&mut sm, &db, &[ack(1), ack(4)]);
        assert_eq!((sm.resident_bytes(), sm.paged_messages()), (100, 2));
        // Later writes use what was given back.
        apply(&mut sm, &db, &[numbered(6)]);
        assert_eq!((sm.resident_bytes(), sm.paged_messages()), (200, 2));
    }

    #[test]
    fn recovery_loads_bodies_until_the_budget_and_leaves_the_rest_on_disk() {
        let (_dir, db) = temp_tree();
        let (mut sm, _) = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap();
        apply(&mut sm, &db, &(1..=4).map(numbered).collect::<Vec<_>>());
        let (sm, rec) = StateMachine::recover(&db, paging(&db, 150)).unwrap();
        let resident: Vec<bool> = rec
            .messages
            .iter()
            .map(|(m, _)| m.body.is_resident())
            .collect();
        assert_eq!(resident, vec![true, false, false, false]);
        assert_eq!((sm.resident_bytes(), sm.paged_messages()), (100, 3));
        for (seq, (m, _)) in (1..).zip(&rec.messages) {
            assert_eq!(m.body.len(), 100);
            assert!(m.body.is_stored());
            assert_eq!(m.body.get().unwrap(), format!("{seq:0>100}"));
        }
    }

    #[test]
    fn recovery_returns_unacked_messages_in_log_order_with_counts() {
        let (_dir, db) = temp_tree();
        let (mut sm, rec) = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap();
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
        let (sm2, rec) = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap();
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
        let (mut sm, _) = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap();
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
        let (mut sm, _) = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap();
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
        let (_, rec) = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap();
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
        let e = StateMachine::recover(&db, paging(&db, u64::MAX)).unwrap_err();
        assert!(e.contains("log index 7"), "{e}");
    }
}
