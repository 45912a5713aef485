//! The store side of a queue's cursor: reading one priority lane of a
//! destination back in order, from a position, a page at a time.
//!
//! The apply step writes every stored message's record under a `Q` key,
//! by destination, priority and log index ([`super::record`]), so a lane
//! is one ordered key range and a read is a range scan from just after the
//! last index the router read, which returns the records themselves:
//! O(page), whatever the queue's depth. The
//! router decides which messages it keeps in memory and which it leaves in
//! the store (`LogEntry::Enqueue::backlog`), and keeps its own position per
//! lane; the store only answers "the next records of this lane after that
//! position that the router does not hold":
//!
//! - records written by this run are readable only when the router left
//!   them to the store (flag 1 in the `Q` value); those it held (0) are in
//!   its memory already, and a read skips them;
//! - records written before this run started (log index below the
//!   `boot_index` the store opened with) are all readable: after a restart
//!   nothing is in memory, everything comes back through the cursor. In
//!   cluster mode the boot index is fixed when this node's router is
//!   restored as leader (`replicated::ReplicatedState::recovered`): what
//!   earlier leaders wrote is all readable, whichever router held it.
//!
//! Reads see what the writer has applied (in cluster mode: what this node
//! applied from the committed log), not what is still queued or proposed:
//! the router counts what it left to the store and reads again later when
//! a read comes back short (see `router::destination::backlog`).

use super::entry::StoredMessage;
use super::record::{self, QueueValue, DELIVERED_PREFIX, QUEUE_PREFIX};
use crate::message::{BodySource, Message};
use std::sync::Arc;

/// Bodies larger than this, and every body in a body file, are left on
/// disk when a record is read back (read again when delivered): the window is bounded by count, so what a
/// read-back message holds in memory must be small (a window of 5,000
/// holds at most ~20 MiB of bodies).
pub const RESIDENT_BODY_MAX: usize = 4 << 10;

/// One message read back.
#[derive(Debug)]
pub struct BacklogMessage {
    /// Its log index: the position to read after next time.
    pub index: u64,
    /// The message.
    pub message: Arc<Message>,
    /// Deliveries recorded for it.
    pub delivered: u32,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct BacklogRead {
    /// The messages, in lane order.
    pub messages: Vec<BacklogMessage>,
    /// The position to read after next time (the last index looked at,
    /// readable or not; `after` when nothing was).
    pub position: u64,
}

/// Reads up to `limit` readable records of lane (`destination`,
/// `priority`) with a log index above `after`. `boot_index` is the first
/// index of this run (see the module doc). Large bodies stay on disk, read
/// from `bodies` when needed.
pub fn read(
    tree: &sled::Tree,
    destination: &str,
    priority: u8,
    after: u64,
    boot_index: u64,
    limit: usize,
    bodies: &Arc<dyn BodySource>,
) -> Result<BacklogRead, String> {
    let lane = record::lane(destination, priority);
    let from = record::lane_key(QUEUE_PREFIX, &lane, Some(after.saturating_add(1)));
    let prefix = record::lane_key(QUEUE_PREFIX, &lane, None);
    let mut out = BacklogRead {
        messages: Vec::new(),
        position: after,
    };
    if limit == 0 {
        return Ok(out);
    }
    for item in tree.range(from..) {
        let (key, value) = item.map_err(|e| format!("queue order of {destination}: {e}"))?;
        if !key.starts_with(&prefix) {
            break;
        }
        let index = key
            .get(prefix.len()..)
            .and_then(record::decode_u64)
            .ok_or_else(|| format!("malformed queue order key in {destination}"))?;
        out.position = index;
        let value = QueueValue::decode(&value)
            .ok_or_else(|| format!("message at log index {index}: malformed queue value"))?;
        if index >= boot_index && !value.left_to_store {
            continue; // held by the router since it was published
        }
        let stored = StoredMessage::decode_record(value.record)
            .map_err(|e| format!("message at log index {index}: {e}"))?;
        let delivered = match tree
            .get(record::key(DELIVERED_PREFIX, index))
            .map_err(|e| format!("delivery count at log index {index}: {e}"))?
        {
            Some(v) => record::decode_u32(&v).unwrap_or(0),
            None => 0,
        };
        // A body in a body file is always left there (one pread when
        // delivered): a read-back window holds no large body.
        let on_disk = stored.body_ref.is_some() || stored.body.len() > RESIDENT_BODY_MAX;
        let paged = on_disk.then(|| (bodies.clone(), stored.seq));
        out.messages.push(BacklogMessage {
            index,
            message: Arc::new(stored.into_message(paged)),
            delivered,
        });
        if out.messages.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry::{EncodedBatch, Entry, Kind, FORMAT};
    use crate::store::state_machine::{LogKeep, SledRecords, StateMachine};
    use bytes::Bytes;

    struct NoBodies;

    impl BodySource for NoBodies {
        fn read_body(&self, _index: u64) -> Result<Bytes, String> {
            Err("not in this test".into())
        }
    }

    fn enqueue(seq: u64, dest: &str, priority: u32, backlog: bool, body: usize) -> Entry {
        Entry {
            kind: Some(Kind::Enqueue(StoredMessage {
                seq,
                destination: dest.into(),
                priority,
                expires: 0,
                timestamp: 1,
                headers: vec![],
                body: Bytes::from(vec![b'x'; body]),
                backlog,
                body_ref: None,
            })),
        }
    }

    fn ack(seq: u64) -> Entry {
        Entry {
            kind: Some(Kind::Ack(crate::store::entry::Ack {
                destination: "/queue/a".into(),
                seq,
            })),
        }
    }

    fn apply(sm: &mut StateMachine, db: &sled::Db, entries: Vec<Entry>) {
        let raw = EncodedBatch {
            format: FORMAT,
            max_seq: 0,
            entries,
        }
        .to_bytes();
        let mut records = SledRecords::new(db);
        sm.apply_encoded(&raw, &mut records).unwrap();
        db.apply_batch(records.into_batch()).unwrap();
    }

    fn seqs(read: &BacklogRead) -> Vec<u64> {
        read.messages.iter().map(|m| m.message.seq).collect()
    }

    #[test]
    fn a_lane_is_read_in_log_order_a_page_at_a_time_skipping_what_the_router_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        let bodies: Arc<dyn BodySource> = Arc::new(NoBodies);
        let mut sm = StateMachine::empty(LogKeep::NONE);
        // Seqs 1-2 held by the router, 3-7 left to the store, 8 on
        // another lane, 9 on another queue with a longer name.
        let mut entries = vec![
            enqueue(1, "/queue/a", 4, false, 10),
            enqueue(2, "/queue/a", 4, false, 10),
        ];
        entries.extend((3..=7).map(|s| enqueue(s, "/queue/a", 4, true, 10)));
        entries.push(enqueue(8, "/queue/a", 9, true, 10));
        entries.push(enqueue(9, "/queue/ab", 4, true, 10));
        apply(&mut sm, &db, entries);
        let boot = 1; // everything was written by this run
        let first = read(&db, "/queue/a", 4, 0, boot, 3, &bodies).unwrap();
        assert_eq!(seqs(&first), vec![3, 4, 5]);
        let second = read(&db, "/queue/a", 4, first.position, boot, 3, &bodies).unwrap();
        assert_eq!(seqs(&second), vec![6, 7]);
        let done = read(&db, "/queue/a", 4, second.position, boot, 3, &bodies).unwrap();
        assert!(done.messages.is_empty());
        assert_eq!(done.position, second.position);
        assert_eq!(
            seqs(&read(&db, "/queue/a", 9, 0, boot, 10, &bodies).unwrap()),
            vec![8]
        );
        // After a restart (boot index past them) the held ones come back
        // too; acked ones never do.
        apply(&mut sm, &db, vec![ack(4)]);
        let restarted = sm.next_index();
        let all = read(&db, "/queue/a", 4, 0, restarted, 100, &bodies).unwrap();
        assert_eq!(seqs(&all), vec![1, 2, 3, 5, 6, 7]);
    }

    #[test]
    fn large_bodies_stay_on_disk_and_delivery_counts_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        let bodies: Arc<dyn BodySource> = Arc::new(NoBodies);
        let mut sm = StateMachine::empty(LogKeep::NONE);
        apply(
            &mut sm,
            &db,
            vec![
                enqueue(1, "/queue/a", 4, true, 10),
                enqueue(2, "/queue/a", 4, true, RESIDENT_BODY_MAX + 1),
                Entry {
                    kind: Some(Kind::Delivered(crate::store::entry::Delivered {
                        seq: 1,
                        count: 3,
                    })),
                },
            ],
        );
        let got = read(&db, "/queue/a", 4, 0, 1, 10, &bodies).unwrap();
        assert_eq!(got.messages.len(), 2);
        assert_eq!(got.messages[0].delivered, 3);
        assert!(got.messages[0].message.body.is_resident());
        assert!(!got.messages[1].message.body.is_resident());
        assert_eq!(got.messages[1].message.body.len(), RESIDENT_BODY_MAX + 1);
    }
}
