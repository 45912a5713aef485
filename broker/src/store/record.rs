//! The store's key layout in sled, format version [`FORMAT`].
//!
//! Everything lives in sled's default tree so that one group commit is one
//! atomic `apply_batch`. Keys start with a one-byte kind:
//!
//! | key | value |
//! |---|---|
//! | `0x00 "format"` | format version, u32 big-endian |
//! | `0x00 "applied"` | index of the last log entry applied, u64 BE |
//! | `0x00 "batch"` | number of the last log batch applied, u64 BE |
//! | `0x00 "max_seq"` | highest message sequence number used, u64 BE |
//! | `'L'` + batch number (u64 BE) | an encoded log batch ([`super::entry::EncodedBatch`]); the latest few, if the store keeps any ([`super::state_machine::LogKeep`]) |
//! | `0x00 "live"` | live messages (u64 BE) and the bytes of their records (u64 BE) |
//! | `'Q'` + [`lane`] + log index (u64 BE) | a live message, in queue order: its seq (u64 BE), whether the router left it to the store (1) or held it (0), then its record ([`super::entry::StoredMessage`]; its body inline, or a reference into a body file, [`super::entry::BodyRef`]): [`QueueValue`] |
//! | `'S'` + seq (u64 BE) | where the live message `seq` is: [`SeqEntry`] (its lane and log index, so its `Q` key; with its body file's segment and the body's length when it is in one) |
//! | `'D'` + log index (u64 BE) | its delivery count, u32 BE; only for a message delivered at least once |
//! | `'C'` + [`lane`] | that lane's live messages and the bytes of their records (bodies in body files included): [`LaneCount`], u64 BE each ([`super::lane_bytes`]) |
//! | `'B'` + segment (u32 BE) | a body file holding live bodies: their count, bytes, and the end of the bytes referred to (u64 BE each; [`super::body_counts`]) |
//! | `'K'` + utf8 name | router metadata, opaque bytes |
//!
//! `L` is the log; the rest is the read layout the apply step derives from
//! it. `Q` keys sort by destination, priority and log index, which is the
//! order a queue's cursor reads its backlog in ([`super::cursor`]): one
//! range scan returns the records themselves. `S` lets an ack, a delivery
//! count and a paged body's read find a message by its seq without an
//! index in memory, and `C` lets recovery count a queue (and its bytes) without
//! reading it; `B` does the same for the body files.
//! Any change to this layout or
//! to the entry encoding bumps [`FORMAT`]; an unknown format is refused,
//! never guessed.
//!
//! The store's format and the log batch's ([`super::entry::FORMAT`]) are
//! numbered apart since store format 4: body files changed what a message
//! record may hold (and added `B`), not what a batch of the log, or a
//! cluster's entry, holds.
//!
//! **Keys per stored message.** Two, `Q` (with the record) and `S`, plus
//! `D` once delivered; per lane touched by a batch, one `C`. Format 5 and
//! earlier kept the record under `'M'` + log index apart from its `Q`
//! order entry: three keys per message, and sled 0.34 keeps an in-memory
//! page table entry per tree node, which grows with the keys (the page
//! table is what grew a deep store's RSS and open time per message).
//! [`super::upgrade`] moves format 5's `M` records into their `Q` values.
//!
//! Format 4 kept a lane's bytes in a `'V'` + [`lane`] record of its own
//! beside the `C` count: two records per lane touched by every group
//! commit. Format 5 folds them into one `C` value; [`super::upgrade`]
//! rewrites a format-4 (or 3) store's `C` records and removes the `V` ones.

/// The store format this build writes: 6, a message's record in its `Q`
/// value. Formats 5 (records under `M`), 4 (`C` and `V` apart), 3 (no
/// body files, no `V`) and 2 (no read layout) are upgraded in place
/// ([`super::upgrade`]).
pub const FORMAT: u32 = 6;

/// The store format with records under `M` and a lane's count and bytes
/// in one `C` record.
pub const FORMAT_5: u32 = 5;

/// The store format with a lane's bytes in a `V` record of their own.
pub const FORMAT_4: u32 = 4;

/// The store format before body files and lane bytes: a format-4 store
/// without body files and without `V` records.
pub const FORMAT_3: u32 = 3;

/// Key of the format version.
pub const FORMAT_KEY: &[u8] = b"\x00format";
/// Key of the last applied log index.
pub const APPLIED_KEY: &[u8] = b"\x00applied";
/// Key of the last applied batch number.
pub const BATCH_KEY: &[u8] = b"\x00batch";
/// Key of the highest message sequence number used.
pub const MAX_SEQ_KEY: &[u8] = b"\x00max_seq";
/// Prefix of log batches.
pub const LOG_PREFIX: u8 = b'L';
/// Prefix of format 5's (and earlier) message records, by log index: only
/// the upgrades read them (since format 6 the record is in the `Q` value),
/// and a snapshot install removes any.
pub const MESSAGE_PREFIX: u8 = b'M';
/// Prefix of delivery counts.
pub const DELIVERED_PREFIX: u8 = b'D';
/// Prefix of router metadata.
pub const META_PREFIX: u8 = b'K';
/// Key of the live message count and bytes.
pub const LIVE_KEY: &[u8] = b"\x00live";
/// Prefix of the seq index.
pub const SEQ_PREFIX: u8 = b'S';
/// Prefix of the queue order.
pub const QUEUE_PREFIX: u8 = b'Q';
/// Prefix of lane counts.
pub const COUNT_PREFIX: u8 = b'C';
/// Prefix of body file counts.
pub const BODY_PREFIX: u8 = b'B';
/// Prefix of format 4's lane bytes records (folded into `C` since format
/// 5: only the upgrade reads them, and a snapshot install removes any).
pub const LANE_BYTES_PREFIX: u8 = b'V';

/// The part of a `Q` or `C` key naming one priority lane of one
/// destination: the destination's length (u16 BE), its bytes, and the
/// priority (one byte). The length keeps `/queue/a` and `/queue/ab` apart.
/// Destination names are far shorter than 64 KiB (the config bounds
/// them); a longer one is cut, which only merges lanes of two absurd names.
pub fn lane(destination: &str, priority: u8) -> Vec<u8> {
    let name = &destination.as_bytes()[..destination.len().min(u16::MAX as usize)];
    let mut k = Vec::with_capacity(3 + name.len());
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name);
    k.push(priority);
    k
}

/// The destination and priority in a lane made by [`lane`].
pub fn parse_lane(raw: &[u8]) -> Option<(String, u8)> {
    let len = usize::from(u16::from_be_bytes(raw.get(..2)?.try_into().ok()?));
    let name = std::str::from_utf8(raw.get(2..2 + len)?).ok()?;
    let priority = *raw.get(2 + len)?;
    (raw.len() == 3 + len).then(|| (name.to_string(), priority))
}

/// `prefix` + `lane` (+ `index`, when given).
pub fn lane_key(prefix: u8, lane: &[u8], index: Option<u64>) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + lane.len() + 8);
    k.push(prefix);
    k.extend_from_slice(lane);
    if let Some(index) = index {
        k.extend_from_slice(&index.to_be_bytes());
    }
    k
}

/// A `Q` value: a live message in its lane's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueValue<'a> {
    /// The message's seq.
    pub seq: u64,
    /// The router left it to the store (read back by the cursor even in
    /// the run that wrote it).
    pub left_to_store: bool,
    /// Its record ([`super::entry::StoredMessage`], encoded).
    pub record: &'a [u8],
}

/// Bytes of a `Q` value before the record.
const QUEUE_VALUE_HEAD: usize = 9;

impl<'a> QueueValue<'a> {
    /// Its encoding: seq (u64 BE), the flag (one byte, 1 or 0), the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(QUEUE_VALUE_HEAD + self.record.len());
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.push(u8::from(self.left_to_store));
        v.extend_from_slice(self.record);
        v
    }

    /// Reads an encoding made by [`QueueValue::encode`]. A format-5 `Q`
    /// value (seq and flag, no record) decodes with an empty record.
    pub fn decode(raw: &'a [u8]) -> Option<QueueValue<'a>> {
        Some(QueueValue {
            seq: decode_u64(raw.get(..8)?)?,
            left_to_store: *raw.get(8)? == 1,
            record: raw.get(QUEUE_VALUE_HEAD..)?,
        })
    }
}

/// The value of a `C` key: a lane's live messages and the bytes of their
/// records (with their bodies in body files, as [`super::lane_bytes`]
/// counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneCount {
    /// Live messages in the lane.
    pub messages: u64,
    /// Bytes of their records.
    pub bytes: u64,
}

impl LaneCount {
    /// Its encoding: messages, then bytes, u64 BE each.
    pub fn encode(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&self.messages.to_be_bytes());
        v[8..].copy_from_slice(&self.bytes.to_be_bytes());
        v
    }

    /// Reads an encoding made by [`LaneCount::encode`]; `None` for
    /// anything else (a format-4 count alone is 8 bytes: not this).
    pub fn decode(raw: &[u8]) -> Option<LaneCount> {
        if raw.len() != 16 {
            return None;
        }
        Some(LaneCount {
            messages: decode_u64(&raw[..8])?,
            bytes: decode_u64(&raw[8..])?,
        })
    }
}

/// The value of an `S` key: where a live message's records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqEntry {
    /// Log index of its enqueue (its `Q` and `D` keys).
    pub index: u64,
    /// Size of its record, for the live byte count.
    pub bytes: u32,
    /// Its lane ([`lane`]).
    pub lane: Vec<u8>,
    /// When its body is in a body file: the segment and the body's length
    /// (what an ack uncounts in [`super::body_counts`] without reading the
    /// message record).
    pub body_file: Option<(u32, u64)>,
}

impl SeqEntry {
    /// Its encoding: index, bytes, lane, then segment (u32 BE) and body
    /// length (u64 BE) when the body is in a file. A format-3 entry is the
    /// same without the last two.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + self.lane.len());
        v.extend_from_slice(&self.index.to_be_bytes());
        v.extend_from_slice(&self.bytes.to_be_bytes());
        v.extend_from_slice(&self.lane);
        if let Some((segment, len)) = self.body_file {
            v.extend_from_slice(&segment.to_be_bytes());
            v.extend_from_slice(&len.to_be_bytes());
        }
        v
    }

    /// Reads an encoding made by [`SeqEntry::encode`].
    pub fn decode(raw: &[u8]) -> Option<SeqEntry> {
        let rest = raw.get(12..)?;
        // The lane says its own length: the destination's length (u16 BE),
        // its bytes, the priority.
        let name_len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let lane_len = 3 + name_len;
        let lane = rest.get(..lane_len)?;
        let body_file = match rest.get(lane_len..)? {
            [] => None,
            tail if tail.len() == 12 => {
                Some((decode_u32(tail.get(..4)?)?, decode_u64(tail.get(4..)?)?))
            }
            _ => return None,
        };
        Some(SeqEntry {
            index: decode_u64(raw.get(..8)?)?,
            bytes: decode_u32(raw.get(8..12)?)?,
            lane: lane.to_vec(),
            body_file,
        })
    }
}

/// The key of a log batch or delivery count numbered `index` (or of a
/// format-5 message record).
pub fn key(prefix: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The key of router metadata `name`.
pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(META_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The number in a key made by [`key`].
pub fn index_of(key: &[u8]) -> Option<u64> {
    let raw: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// A u32 value (delivery counts, the format version).
pub fn decode_u32(raw: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(raw.try_into().ok()?))
}

/// A u64 value (indexes, sequence numbers).
pub fn decode_u64(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_index() {
        let a = key(MESSAGE_PREFIX, 2);
        let b = key(MESSAGE_PREFIX, 256);
        assert!(a < b);
        assert_eq!(index_of(&b), Some(256));
        assert_eq!(index_of(b"M"), None);
    }

    #[test]
    fn lanes_keep_names_apart_and_sort_by_index() {
        let a = lane("/queue/a", 4);
        let ab = lane("/queue/ab", 4);
        assert_ne!(
            &lane_key(QUEUE_PREFIX, &a, None)[..],
            &lane_key(QUEUE_PREFIX, &ab, None)[..a.len() + 1]
        );
        assert!(lane_key(QUEUE_PREFIX, &a, Some(2)) < lane_key(QUEUE_PREFIX, &a, Some(256)));
        assert_eq!(parse_lane(&ab), Some(("/queue/ab".to_string(), 4)));
        assert_eq!(parse_lane(&ab[..4]), None);
        let mut e = SeqEntry {
            index: 7,
            bytes: 99,
            lane: a,
            body_file: None,
        };
        assert_eq!(SeqEntry::decode(&e.encode()), Some(e.clone()));
        assert_eq!(SeqEntry::decode(b"short"), None);
        e.body_file = Some((3, 10 << 20));
        let raw = e.encode();
        assert_eq!(SeqEntry::decode(&raw), Some(e));
        assert_eq!(SeqEntry::decode(&raw[..raw.len() - 1]), None, "a cut tail");
    }

    #[test]
    fn queue_values_hold_the_record() {
        let v = QueueValue {
            seq: 9,
            left_to_store: true,
            record: b"rec",
        };
        let raw = v.encode();
        assert_eq!(QueueValue::decode(&raw), Some(v));
        let old = QueueValue::decode(&raw[..9]).unwrap();
        assert!(old.record.is_empty(), "format 5's order entry");
        assert_eq!(QueueValue::decode(&raw[..8]), None);
    }

    #[test]
    fn lane_counts_hold_messages_and_bytes() {
        let c = LaneCount {
            messages: 3,
            bytes: 1 << 40,
        };
        assert_eq!(LaneCount::decode(&c.encode()), Some(c));
        assert_eq!(
            LaneCount::decode(&3u64.to_be_bytes()),
            None,
            "format 4's count"
        );
    }
}
