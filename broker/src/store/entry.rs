//! The stable binary encoding of the log: one [`EncodedBatch`] per group
//! commit, holding the [`Entry`]s of that batch, encoded with prost (the
//! encoding the native protocol uses) under format version [`FORMAT`].
//!
//! The encoded batch is the unit of the log: the writer applies it, keeps
//! it under its batch number, and a follower would receive exactly these
//! bytes and apply them (`StateMachine::apply_encoded`). A message's
//! record in the read layout is the encoding of its [`StoredMessage`], the
//! same message as inside the batch.
//!
//! Compatibility: fields are only ever added with new tags; a change that
//! old readers would misread bumps [`FORMAT`], which is checked per batch
//! and per store.

use super::LogEntry;
use crate::message::{Body, BodySource, Message, PageError};
use bytes::Bytes;
use ferromq_protocol::Headers;
use prost::Message as _;
use std::collections::HashSet;
use std::sync::Arc;

/// The log format this build writes and reads (store and batches).
/// Format 1 (before the log of encoded batches) had no batches; format 2
/// had no seq index, queue order or lane counts (`S`, `Q`, `C`).
pub const FORMAT: u32 = 3;

/// The oldest batch format this build still applies. A format-2 batch is a
/// format-3 batch whose enqueues all have `backlog` unset (prost decodes the
/// missing field as false: the router held the message), so applying it
/// writes the format-3 layout. Accepting it is what lets a cluster node
/// upgraded in place replay the format-2 entries still in its Raft log (and
/// apply those an old leader proposes during a rolling upgrade).
pub const OLDEST_BATCH_FORMAT: u32 = 2;

/// One group commit: what the writer appends to the log as one record and
/// applies atomically.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedBatch {
    /// [`FORMAT`] of the writer that built it.
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// The highest message sequence number the writer had used when it
    /// built the batch: an enqueue consumed within its batch is left out
    /// (see [`build`]), yet its seq must never be handed out again.
    #[prost(uint64, tag = "2")]
    pub max_seq: u64,
    /// The entries, in log order.
    #[prost(message, repeated, tag = "3")]
    pub entries: Vec<Entry>,
}

/// One state change (the encoded form of a [`LogEntry`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// What changed.
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5")]
    pub kind: Option<Kind>,
}

/// The kinds of [`Entry`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// A persistent message was published.
    #[prost(message, tag = "1")]
    Enqueue(StoredMessage),
    /// A persistent message was consumed (or expired, or moved to a DLQ:
    /// the router decides, the log records that it is gone).
    #[prost(message, tag = "2")]
    Ack(Ack),
    /// A persistent message's delivery count.
    #[prost(message, tag = "3")]
    Delivered(Delivered),
    /// Router metadata set.
    #[prost(message, tag = "4")]
    Put(Put),
    /// Router metadata removed.
    #[prost(message, tag = "5")]
    Delete(Delete),
}

/// A stored message: everything a restart needs to bring it back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredMessage {
    /// Its sequence number.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// Its destination, canonical (`/queue/x`).
    #[prost(string, tag = "2")]
    pub destination: String,
    /// JMS priority, 0 to 9.
    #[prost(uint32, tag = "3")]
    pub priority: u32,
    /// Expiry in ms since the epoch, 0 = never.
    #[prost(uint64, tag = "4")]
    pub expires: u64,
    /// Publication time in ms since the epoch.
    #[prost(uint64, tag = "5")]
    pub timestamp: u64,
    /// Producer-set headers, in order.
    #[prost(message, repeated, tag = "6")]
    pub headers: Vec<Header>,
    /// The body, unless it is in a body file (`body_ref`).
    #[prost(bytes = "bytes", tag = "7")]
    pub body: Bytes,
    /// The router did not keep it in memory: a queue's cursor reads it
    /// back from the store (see [`LogEntry::Enqueue`]).
    #[prost(bool, tag = "8")]
    pub backlog: bool,
    /// Where the body is when it is not inline: set only by the node that
    /// wrote it to its own body file ([`super::body_segments`]), in the
    /// batch it applies and the message record (its `Q` value) that keeps it. A
    /// replicated log carries bodies inline: a body file is a node's local
    /// layout.
    #[prost(message, optional, tag = "9")]
    pub body_ref: Option<BodyRef>,
}

/// A body in a body file: segment, place, length and CRC-32 (checked on
/// every read, so a damaged file is reported, never delivered).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BodyRef {
    /// The segment file's number (`bodies/<segment>.body`), from 1.
    #[prost(uint32, tag = "1")]
    pub segment: u32,
    /// Byte offset in the file.
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    /// Length in bytes.
    #[prost(uint64, tag = "3")]
    pub len: u64,
    /// CRC-32 (IEEE) of the bytes.
    #[prost(uint32, tag = "4")]
    pub crc: u32,
}

/// One header of a [`StoredMessage`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// See [`LogEntry::Ack`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ack {
    /// Its destination.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// Its sequence number.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

/// See [`LogEntry::Delivered`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Delivered {
    /// The message's sequence number.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// Deliveries so far.
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// See [`LogEntry::Put`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Put {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The caller's bytes.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// See [`LogEntry::Delete`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Delete {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
}

impl StoredMessage {
    /// The record of `m`. Fails only if its body is paged out and cannot be
    /// read back (a body is paged only after its own record is written, so
    /// this means the store is failing).
    pub fn of(m: &Message) -> Result<StoredMessage, PageError> {
        Ok(StoredMessage {
            seq: m.seq,
            destination: m.destination.to_string(),
            priority: u32::from(m.priority),
            expires: m.expires,
            timestamp: m.timestamp,
            headers: m
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            body: m.body.get()?,
            backlog: false,
            body_ref: None,
        })
    }

    /// Length of the body, inline or in a body file.
    pub fn body_len(&self) -> u64 {
        match &self.body_ref {
            Some(r) => r.len,
            None => self.body.len() as u64,
        }
    }

    /// The message again. Its body is copied into memory, or with
    /// `paged = Some((source, seq))` left on disk and read back from
    /// `source` by its `seq` when needed. A body in a body file must be
    /// paged: without `paged` it would be empty.
    pub fn into_message(self, paged: Option<(Arc<dyn BodySource>, u64)>) -> Message {
        let len = usize::try_from(self.body_len()).unwrap_or(usize::MAX);
        let mut headers = Headers::new();
        for h in &self.headers {
            headers.push(&h.name, &h.value);
        }
        let body = match paged {
            None => {
                let body = Body::new(self.body);
                body.mark_stored();
                body
            }
            Some((source, seq)) => Body::paged(len, source, seq),
        };
        Message {
            seq: self.seq,
            destination: self.destination.into(),
            persistent: true,
            // Written from a u8; a larger value is clamped, not wrapped.
            priority: u8::try_from(self.priority.min(9)).unwrap_or(9),
            expires: self.expires,
            timestamp: self.timestamp,
            headers,
            body,
        }
    }

    /// Decodes a message record (the read layout's value), naming what is
    /// malformed.
    pub fn decode_record(raw: &[u8]) -> Result<StoredMessage, String> {
        StoredMessage::decode(raw).map_err(|e| format!("malformed message record: {e}"))
    }
}

impl Entry {
    /// The encoded form of `entry`.
    pub fn of(entry: &LogEntry) -> Result<Entry, PageError> {
        let kind = match entry {
            LogEntry::Enqueue { message, backlog } => {
                let mut stored = StoredMessage::of(message)?;
                stored.backlog = *backlog;
                Kind::Enqueue(stored)
            }
            LogEntry::Ack { destination, seq } => Kind::Ack(Ack {
                destination: destination.to_string(),
                seq: *seq,
            }),
            LogEntry::Delivered { seq, count } => Kind::Delivered(Delivered {
                seq: *seq,
                count: *count,
            }),
            LogEntry::Put { key, value } => Kind::Put(Put {
                key: key.to_string(),
                value: value.clone(),
            }),
            LogEntry::Delete { key } => Kind::Delete(Delete {
                key: key.to_string(),
            }),
        };
        Ok(Entry { kind: Some(kind) })
    }
}

/// What [`build`] left out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Enqueue/ack pairs that met inside the batch and were never logged
    /// (store-and-dispatch: consumed before they reached the disk).
    pub elided: usize,
}

/// Builds the batch the writer logs from the entries it took from its
/// queue. Leader-side only: followers apply what this produced.
///
/// Store-and-dispatch: a message whose enqueue and ack are both in these
/// entries was consumed and acknowledged before anything about it reached
/// the log, so neither is logged (nor its delivery records); the producer's
/// receipt still waits for this batch (and thus for the ack), which keeps
/// the contract "a receipt means on disk, or consumed and acknowledged".
/// `max_seq` carries the highest seq used, elided ones included.
pub fn build(entries: &[LogEntry], max_seq: u64) -> Result<(EncodedBatch, Pruned), PageError> {
    let mut max_seq = max_seq;
    let mut enqueued = HashSet::new();
    for e in entries {
        if let LogEntry::Enqueue { message, .. } = e {
            enqueued.insert(message.seq);
            max_seq = max_seq.max(message.seq);
        }
    }
    let elide: HashSet<u64> = entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::Ack { seq, .. } if enqueued.contains(seq) => Some(*seq),
            _ => None,
        })
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let gone = match e {
            LogEntry::Enqueue { message, .. } => elide.contains(&message.seq),
            LogEntry::Ack { seq, .. } | LogEntry::Delivered { seq, .. } => elide.contains(seq),
            LogEntry::Put { .. } | LogEntry::Delete { .. } => false,
        };
        if !gone {
            out.push(Entry::of(e)?);
        }
    }
    Ok((
        EncodedBatch {
            format: FORMAT,
            max_seq,
            entries: out,
        },
        Pruned {
            elided: elide.len(),
        },
    ))
}

impl EncodedBatch {
    /// The bytes of the log record (and of what a follower receives).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Reads a batch back, refusing formats other than
    /// [`OLDEST_BATCH_FORMAT`] to [`FORMAT`].
    pub fn from_bytes(raw: &[u8]) -> Result<EncodedBatch, String> {
        let batch = EncodedBatch::decode(raw).map_err(|e| format!("malformed log batch: {e}"))?;
        if !(OLDEST_BATCH_FORMAT..=FORMAT).contains(&batch.format) {
            return Err(format!(
                "log batch written in format {}, this ferromq reads format \
                 {OLDEST_BATCH_FORMAT} to format {FORMAT} only",
                batch.format
            ));
        }
        Ok(batch)
    }
}

#[cfg(test)]
pub(crate) mod strategies {
    //! proptest strategies for entries and batches (shared with the
    //! state machine's tests).
    use super::*;
    use proptest::prelude::*;

    /// Seqs from a small range, so that acks and delivery counts meet
    /// their enqueues.
    pub fn seq() -> impl Strategy<Value = u64> {
        1u64..40
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z/._é-]{0,12}"
    }

    /// Any message record.
    pub fn stored_message() -> impl Strategy<Value = StoredMessage> {
        (
            seq(),
            text(),
            0u32..10,
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec((text(), text()), 0..4),
            prop::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            prop::option::of((1u32..4, 0u64..1000, 1u64..100)),
        )
            .prop_map(
                |(seq, destination, priority, expires, timestamp, headers, body, backlog, file)| {
                    StoredMessage {
                        seq,
                        destination,
                        priority,
                        expires,
                        timestamp,
                        headers: headers
                            .into_iter()
                            .map(|(name, value)| Header { name, value })
                            .collect(),
                        body: body.into(),
                        backlog,
                        // Some in a single node's own batches and records.
                        body_ref: file.map(|(segment, offset, len)| BodyRef {
                            segment,
                            offset,
                            len,
                            crc: 0,
                        }),
                    }
                },
            )
    }

    /// Any entry, every kind.
    pub fn entry() -> impl Strategy<Value = Entry> {
        let key = "[a-c]{1,2}";
        prop_oneof![
            stored_message().prop_map(Kind::Enqueue),
            (text(), seq()).prop_map(|(destination, seq)| Kind::Ack(Ack { destination, seq })),
            (seq(), 0u32..5).prop_map(|(seq, count)| Kind::Delivered(Delivered { seq, count })),
            (key, prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(key, v)| Kind::Put(Put {
                key,
                value: v.into()
            })),
            key.prop_map(|key| Kind::Delete(Delete { key })),
        ]
        .prop_map(|kind| Entry { kind: Some(kind) })
    }

    /// Any batch of this format.
    pub fn batch() -> impl Strategy<Value = EncodedBatch> {
        (any::<u64>(), prop::collection::vec(entry(), 0..12)).prop_map(|(max_seq, entries)| {
            EncodedBatch {
                format: FORMAT,
                max_seq,
                entries,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::strategies;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every entry kind survives encoding, alone and inside a batch.
        #[test]
        fn batches_round_trip(batch in strategies::batch()) {
            let raw = batch.to_bytes();
            prop_assert_eq!(EncodedBatch::from_bytes(&raw).unwrap(), batch.clone());
            for e in &batch.entries {
                prop_assert_eq!(&Entry::decode(&e.encode_to_vec()[..]).unwrap(), e);
            }
        }

        #[test]
        fn message_records_round_trip(m in strategies::stored_message()) {
            let raw = m.encode_to_vec();
            prop_assert_eq!(StoredMessage::decode_record(&raw).unwrap(), m);
        }

        /// Through the broker's own types: a message, turned into a record
        /// and back, keeps every field.
        #[test]
        fn messages_round_trip_through_their_record(m in strategies::stored_message()) {
            let message = m.clone().into_message(None);
            let again = StoredMessage::of(&message).unwrap();
            // `backlog` is the router's choice at append, not the message's.
            // A body in a file is the caller's to page in: `into_message(None)`
            // keeps the inline bytes, and the record made again has no reference.
            prop_assert_eq!(again, StoredMessage { backlog: false, body_ref: None, ..m });
            prop_assert!(message.body.is_stored());
        }
    }

    #[test]
    fn another_format_is_refused_naming_both_versions() {
        let mut batch = EncodedBatch {
            format: 1,
            max_seq: 3,
            entries: vec![],
        };
        let e = EncodedBatch::from_bytes(&batch.to_bytes()).unwrap_err();
        assert!(
            e.contains("format 1") && e.contains(&format!("format {FORMAT}")),
            "{e}"
        );
        batch.format = FORMAT + 1;
        let e = EncodedBatch::from_bytes(&batch.to_bytes()).unwrap_err();
        assert!(e.contains(&format!("format {}", FORMAT + 1)), "{e}");
        batch.format = FORMAT;
        assert_eq!(EncodedBatch::from_bytes(&batch.to_bytes()).unwrap(), batch);
        assert!(EncodedBatch::from_bytes(b"\xff\xff\xff").is_err());
    }

    fn message(seq: u64) -> Arc<Message> {
        Arc::new(Message {
            seq,
            destination: "/queue/a".into(),
            persistent: true,
            priority: 4,
            expires: 0,
            timestamp: 1,
            headers: Headers::new(),
            body: Bytes::from_static(b"x").into(),
        })
    }

    #[test]
    fn a_pair_consumed_within_the_batch_is_left_out_but_its_seq_counts() {
        let entries = vec![
            LogEntry::Enqueue {
                message: message(7),
                backlog: false,
            },
            LogEntry::Delivered { seq: 7, count: 1 },
            LogEntry::Enqueue {
                message: message(5),
                backlog: false,
            },
            LogEntry::Ack {
                destination: "/queue/a".into(),
                seq: 7,
            },
            LogEntry::Ack {
                destination: "/queue/a".into(),
                seq: 2,
            },
        ];
        let (batch, pruned) = build(&entries, 3).unwrap();
        assert_eq!(pruned.elided, 1);
        assert_eq!(batch.max_seq, 7);
        let kinds: Vec<_> = batch
            .entries
            .iter()
            .map(|e| match &e.kind {
                Some(Kind::Enqueue(m)) => format!("enqueue {}", m.seq),
                Some(Kind::Ack(a)) => format!("ack {}", a.seq),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec!["enqueue 5", "ack 2"]);
    }
}
