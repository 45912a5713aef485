//! [`Pager`]: which stored bodies stay in memory (the leader's body
//! cache), outside the deterministic apply step.
//!
//! Live bodies held in memory add up to at most `store.memory_limit`; a
//! body written beyond it is paged out once its record is applied (newest
//! first, which keeps the head of each queue, what is dispatched next, in
//! memory); a message the router left to its queue's backlog is not
//! counted (it leaves memory once written), and after a restart messages
//! come back through the queues' cursors, not through here. This touches the
//! router's messages (their [`crate::message::Body`]), so it runs in the
//! log writer after the apply, never inside it: a follower applies batches
//! without any of this.

use super::state_machine::Applied;
use super::LogEntry;
use crate::message::BodySource;
use std::collections::HashMap;
use std::sync::Arc;

/// A live stored body's place.
#[derive(Debug, Clone, Copy)]
struct Residency {
    /// Bytes held in memory (0 once paged out).
    resident: u64,
    /// Paged out.
    paged: bool,
}

/// The paging budget and what is resident.
pub struct Pager {
    budget: u64,
    source: Arc<dyn BodySource>,
    bodies: HashMap<u64, Residency>,
    resident_bytes: u64,
    paged: usize,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("budget", &self.budget)
            .field("resident_bytes", &self.resident_bytes)
            .field("paged", &self.paged)
            .finish()
    }
}

impl Pager {
    /// A pager keeping at most `budget` bytes of live bodies in memory;
    /// paged bodies are read back from `source`.
    pub fn new(budget: u64, source: Arc<dyn BodySource>) -> Pager {
        Pager {
            budget,
            source,
            bodies: HashMap::new(),
            resident_bytes: 0,
            paged: 0,
        }
    }

    /// After a batch built from `entries` was applied (`applied`) and
    /// written to sled (so a reader of a paged body always finds its
    /// record): forgets the removed bodies, counts the new ones, and pages
    /// out the newest of them while over the budget. Returns how many were
    /// paged.
    pub fn after_apply(&mut self, entries: &[LogEntry], applied: &Applied) -> usize {
        for seq in &applied.removed {
            if let Some(r) = self.bodies.remove(seq) {
                if r.paged {
                    self.paged -= 1.min(self.paged);
                } else {
                    self.resident_bytes -= r.resident.min(self.resident_bytes);
                }
            }
        }
        if applied.stored.is_empty() {
            return 0;
        }
        let stored: HashMap<u64, u64> = applied.stored.iter().copied().collect();
        for e in entries {
            // A message left to the store's backlog is not in memory once
            // its batch is written: nothing to count or page.
            if let LogEntry::Enqueue {
                message,
                backlog: false,
            } = e
            {
                if stored.contains_key(&message.seq) {
                    let resident = message.body.len() as u64;
                    self.resident_bytes += resident;
                    self.bodies.insert(
                        message.seq,
                        Residency {
                            resident,
                            paged: false,
                        },
                    );
                }
            }
        }
        let mut paged = 0;
        for e in entries.iter().rev() {
            if self.resident_bytes <= self.budget {
                break;
            }
            let LogEntry::Enqueue {
                message,
                backlog: false,
            } = e
            else {
                continue;
            };
            if !stored.contains_key(&message.seq) {
                continue; // never written (elided)
            }
            let Some(r) = self.bodies.get_mut(&message.seq) else {
                continue;
            };
            if r.paged || r.resident == 0 {
                continue;
            }
            message.body.page_out(&self.source, message.seq);
            self.resident_bytes -= r.resident.min(self.resident_bytes);
            r.resident = 0;
            r.paged = true;
            self.paged += 1;
            paged += 1;
        }
        paged
    }

    /// Bytes of live bodies held in memory.
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    /// Live messages whose body is paged out.
    pub fn paged_messages(&self) -> usize {
        self.paged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::store::entry::{self, StoredMessage};
    use crate::store::record::{self, QueueValue, SeqEntry, QUEUE_PREFIX, SEQ_PREFIX};
    use crate::store::state_machine::{LogKeep, SledRecords, StateMachine};
    use bytes::Bytes;
    use ferromq_protocol::Headers;

    /// Reads bodies straight from a test database.
    struct TreeBodies(sled::Db);

    impl BodySource for TreeBodies {
        fn read_body(&self, seq: u64) -> Result<Bytes, String> {
            let at = self
                .0
                .get(record::key(SEQ_PREFIX, seq))
                .map_err(|e| e.to_string())?
                .ok_or("gone")?;
            let at = SeqEntry::decode(&at).ok_or("bad seq entry")?;
            let key = record::lane_key(QUEUE_PREFIX, &at.lane, Some(at.index));
            let raw = self.0.get(key).map_err(|e| e.to_string())?.ok_or("gone")?;
            let value = QueueValue::decode(&raw).ok_or("bad queue value")?;
            StoredMessage::decode_record(value.record).map(|m| m.body)
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
            backlog: seq > 100,
        }
    }

    fn ack(seq: u64) -> LogEntry {
        LogEntry::Ack {
            destination: "/queue/a".into(),
            seq,
        }
    }

    fn write(sm: &mut StateMachine, pager: &mut Pager, db: &sled::Db, entries: &[LogEntry]) {
        let (built, _) = entry::build(entries, sm.max_seq()).unwrap();
        let mut b = SledRecords::new(db);
        let applied = sm.apply(&built, &built.to_bytes(), &mut b).unwrap();
        db.apply_batch(b.into_batch()).unwrap();
        pager.after_apply(entries, &applied);
    }

    #[test]
    fn bodies_beyond_the_budget_are_paged_newest_first_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        let source: Arc<dyn BodySource> = Arc::new(TreeBodies(db.clone()));
        let mut pager = Pager::new(250, source.clone());
        let mut sm = StateMachine::empty(LogKeep::TAIL);
        let entries: Vec<LogEntry> = (1..=5).map(numbered).collect();
        write(&mut sm, &mut pager, &db, &entries);
        assert_eq!((pager.resident_bytes(), pager.paged_messages()), (200, 3));
        for (seq, e) in (1..).zip(&entries) {
            let LogEntry::Enqueue { message, .. } = e else {
                unreachable!()
            };
            assert_eq!(message.body.is_resident(), seq <= 2, "seq {seq}");
            assert_eq!(message.body.get().unwrap(), format!("{seq:0>100}"));
        }
        // Acks give budget back (resident) or drop the paged count.
        write(&mut sm, &mut pager, &db, &[ack(1), ack(4)]);
        assert_eq!((pager.resident_bytes(), pager.paged_messages()), (100, 2));
        // Later writes use what was given back.
        write(&mut sm, &mut pager, &db, &[numbered(6)]);
        assert_eq!((pager.resident_bytes(), pager.paged_messages()), (200, 2));
        // A message left to the backlog is not counted, nor paged.
        write(&mut sm, &mut pager, &db, &[numbered(101)]);
        assert_eq!((pager.resident_bytes(), pager.paged_messages()), (200, 2));
    }
}
