//! The on-disk encoding of the store, format version [`FORMAT`].
//!
//! Everything lives in sled's default tree so that one group commit is one
//! atomic `apply_batch`. Keys start with a one-byte kind:
//!
//! | key | value |
//! |---|---|
//! | `0x00 "format"` | format version, u32 big-endian |
//! | `0x00 "applied"` | index of the last log entry applied, u64 BE |
//! | `0x00 "max_seq"` | highest message sequence number stored, u64 BE |
//! | `'M'` + log index (u64 BE) | a live message record (below) |
//! | `'D'` + log index (u64 BE) | its delivery count, u32 BE |
//! | `'K'` + utf8 name | router metadata, opaque bytes |
//!
//! Keys of messages sort by log index, so a scan returns messages in the
//! order they were published. A message record is:
//! `version u8 (=1) | seq u64 | priority u8 | expires u64 | timestamp u64 |
//! destination (u16 len + utf8) | header count u32 | (u32 len + utf8) name,
//! value pairs | body (u32 len + bytes)`, integers big-endian. Any change to
//! this layout bumps [`FORMAT`]; an unknown format is refused, never guessed.

use crate::message::{Body, BodySource, Message, PageError};
use bytes::Bytes;
use ferromq_protocol::Headers;
use std::sync::Arc;

/// The store format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Key of the format version.
pub const FORMAT_KEY: &[u8] = b"\x00format";
/// Key of the last applied log index.
pub const APPLIED_KEY: &[u8] = b"\x00applied";
/// Key of the highest message sequence number stored.
pub const MAX_SEQ_KEY: &[u8] = b"\x00max_seq";
/// Prefix of message records.
pub const MESSAGE_PREFIX: u8 = b'M';
/// Prefix of delivery counts.
pub const DELIVERED_PREFIX: u8 = b'D';
/// Prefix of router metadata.
pub const META_PREFIX: u8 = b'K';

const RECORD_VERSION: u8 = 1;

/// The key of a message record or delivery count at log `index`.
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

/// The log index in a key made by [`key`].
pub fn index_of(key: &[u8]) -> Option<u64> {
    let raw: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// Size of `m`'s record, without encoding it.
pub fn encoded_len(m: &Message) -> usize {
    let headers: usize = m.headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    1 + 8 + 1 + 8 + 8 + 2 + m.destination.len() + 4 + headers + 4 + m.body.len()
}

/// Encodes a persistent message's record. Fails only if the body is paged
/// out and cannot be read back (a body is paged only after its own record
/// is written, so this means the store is failing).
pub fn encode_message(m: &Message) -> Result<Vec<u8>, PageError> {
    let body = m.body.get()?;
    let mut out = Vec::with_capacity(encoded_len(m));
    out.push(RECORD_VERSION);
    out.extend_from_slice(&m.seq.to_be_bytes());
    out.push(m.priority);
    out.extend_from_slice(&m.expires.to_be_bytes());
    out.extend_from_slice(&m.timestamp.to_be_bytes());
    // Destination names are at most a few hundred bytes (address.rs caps
    // them), so u16 is plenty; clamp rather than wrap if that ever changes.
    let dest = m.destination.as_bytes();
    let dest = &dest[..dest.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(dest.len() as u16).to_be_bytes());
    out.extend_from_slice(dest);
    out.extend_from_slice(&(m.headers.len() as u32).to_be_bytes());
    for (k, v) in m.headers.iter() {
        put_bytes(&mut out, k.as_bytes());
        put_bytes(&mut out, v.as_bytes());
    }
    put_bytes(&mut out, &body);
    Ok(out)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Where a decoded message's body goes.
pub enum BodyFrom {
    /// Copied into memory.
    Copy,
    /// Left on disk: read back from `source` at log `index` when needed.
    Page {
        /// The store's reader.
        source: Arc<dyn BodySource>,
        /// The record's log index.
        index: u64,
    },
}

/// Reads a record back. The error says what was malformed.
pub fn decode_message(raw: &[u8], body_from: BodyFrom) -> Result<Message, String> {
    let mut r = Reader { raw, pos: 0 };
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(format!("message record version {version} is unknown"));
    }
    let seq = r.u64()?;
    let priority = r.u8()?;
    let expires = r.u64()?;
    let timestamp = r.u64()?;
    let dest_len = usize::from(r.u16()?);
    let destination: Arc<str> = r.str(dest_len)?.into();
    let count = r.u32()?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let kl = r.u32()? as usize;
        let k = r.str(kl)?;
        let vl = r.u32()? as usize;
        let v = r.str(vl)?;
        headers.push(k, v);
    }
    let raw_body = r.body()?;
    let body = match body_from {
        BodyFrom::Copy => {
            let body = Body::new(Bytes::copy_from_slice(raw_body));
            body.mark_stored();
            body
        }
        BodyFrom::Page { source, index } => Body::paged(raw_body.len(), source, index),
    };
    Ok(Message {
        seq,
        destination,
        persistent: true,
        priority,
        expires,
        timestamp,
        headers,
        body,
    })
}

/// Just the body of a record (reading a paged body back), checked as
/// strictly as [`decode_message`] checks the whole record.
pub fn decode_body(raw: &[u8]) -> Result<&[u8], String> {
    let mut r = Reader { raw, pos: 0 };
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(format!("message record version {version} is unknown"));
    }
    // seq, priority, expires, timestamp
    r.take(8 + 1 + 8 + 8)?;
    let dest_len = usize::from(r.u16()?);
    r.take(dest_len)?;
    for _ in 0..r.u32()? {
        let kl = r.u32()? as usize;
        r.take(kl)?;
        let vl = r.u32()? as usize;
        r.take(vl)?;
    }
    r.body()
}

/// A u32 value (delivery counts, the format version).
pub fn decode_u32(raw: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(raw.try_into().ok()?))
}

/// A u64 value (indexes, sequence numbers).
pub fn decode_u64(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.raw.len())
            .ok_or_else(|| format!("message record truncated at byte {}", self.pos))?;
        let s = &self.raw[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        decode_u32(self.take(4)?).ok_or_else(|| "bad u32".to_string())
    }

    fn u64(&mut self) -> Result<u64, String> {
        decode_u64(self.take(8)?).ok_or_else(|| "bad u64".to_string())
    }

    /// The length-prefixed body, which must end the record.
    fn body(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        let body = self.take(len)?;
        if self.pos != self.raw.len() {
            return Err(format!(
                "message record has {} trailing bytes",
                self.raw.len() - self.pos
            ));
        }
        Ok(body)
    }

    fn str(&mut self, n: usize) -> Result<&'a str, String> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| format!("message record has invalid UTF-8 at byte {at}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut headers = Headers::new();
        headers.push("content-type", "text/plain");
        headers.push("x", "y:z");
        Message {
            seq: 42,
            destination: "/queue/a".into(),
            persistent: true,
            priority: 7,
            expires: 123,
            timestamp: 456,
            headers,
            body: Bytes::from_static(b"hello\0world").into(),
        }
    }

    #[test]
    fn message_round_trips() {
        let m = sample();
        let raw = encode_message(&m).unwrap();
        assert_eq!(raw.len(), encoded_len(&m));
        let back = decode_message(&raw, BodyFrom::Copy).unwrap();
        assert_eq!(back.seq, 42);
        assert_eq!(&*back.destination, "/queue/a");
        assert_eq!((back.priority, back.expires, back.timestamp), (7, 123, 456));
        assert_eq!(back.headers.get("x"), Some("y:z"));
        assert_eq!(back.headers.len(), 2);
        assert_eq!(&back.body.get().unwrap()[..], b"hello\0world");
        assert!(back.body.is_stored());
        assert_eq!(decode_body(&raw).unwrap(), b"hello\0world");
    }

    #[test]
    fn truncated_or_padded_records_are_rejected() {
        let raw = encode_message(&sample()).unwrap();
        for cut in 0..raw.len() {
            assert!(
                decode_message(&raw[..cut], BodyFrom::Copy).is_err(),
                "cut at {cut}"
            );
            assert!(decode_body(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = raw.clone();
        long.push(0);
        assert!(decode_message(&long, BodyFrom::Copy)
            .unwrap_err()
            .contains("trailing"));
        assert!(decode_body(&long).unwrap_err().contains("trailing"));
        let mut future = raw;
        future[0] = 9;
        assert!(decode_message(&future, BodyFrom::Copy)
            .unwrap_err()
            .contains("version 9"));
    }

    #[test]
    fn keys_sort_by_index() {
        let a = key(MESSAGE_PREFIX, 2);
        let b = key(MESSAGE_PREFIX, 256);
        assert!(a < b);
        assert_eq!(index_of(&b), Some(256));
    }
}
