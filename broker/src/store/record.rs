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
//! | `'M'` + log index (u64 BE) | a live message record ([`super::entry::StoredMessage`]) |
//! | `'D'` + log index (u64 BE) | its delivery count, u32 BE |
//! | `'K'` + utf8 name | router metadata, opaque bytes |
//!
//! `L` is the log; `M`, `D` and `K` are the read layout the apply step
//! derives from it. Keys of messages sort by log index, so a scan returns
//! messages in the order they were published. Any change to this layout or
//! to the entry encoding bumps [`FORMAT`]; an unknown format is refused,
//! never guessed.

pub use super::entry::FORMAT;

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
/// Prefix of message records.
pub const MESSAGE_PREFIX: u8 = b'M';
/// Prefix of delivery counts.
pub const DELIVERED_PREFIX: u8 = b'D';
/// Prefix of router metadata.
pub const META_PREFIX: u8 = b'K';

/// The key of a log batch, message record or delivery count numbered
/// `index`.
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
}
