//! The Transfer fast path, for code that moves many messages: encodes a
//! Transfer frame straight from borrowed parts ([`TransferParts`]), without
//! building (or allocating) the prost [`super::Transfer`], [`super::Message`]
//! and header map on the way. Reading one in place is [`super::view`] (a
//! client's) and [`super::inbound`] (a broker's, strict).
//!
//! The bytes are ordinary protobuf, readable by [`super::NativeCodec`]: field
//! order is free in protobuf, so the encoder writes the body last (the caller
//! may then write it from its own buffer, see [`encode_transfer_head`]).
//! Only whole messages take this path; a Transfer larger than the peer's
//! frame limit gets [`NativeError::DoesNotFit`] and must go through
//! [`super::split_transfer`].

use super::codec::LENGTH_PREFIX_LEN;
use super::error::NativeError;
use bytes::{BufMut, BytesMut};
use prost::encoding::{encode_varint, encoded_len_varint};

// Field numbers of native.proto.
pub(super) const FRAME_CHANNEL: u64 = 1;
pub(super) const FRAME_TRANSFER: u64 = 8;
pub(super) const T_HANDLE: u64 = 1;
pub(super) const T_DELIVERY_ID: u64 = 2;
const T_TAG: u64 = 3;
pub(super) const T_SETTLED: u64 = 4;
pub(super) const T_MORE: u64 = 5;
pub(super) const T_MESSAGE: u64 = 6;
const T_TXN: u64 = 7;
const M_PROPERTIES: u64 = 1;
pub(super) const M_HEADERS: u64 = 2;
pub(super) const M_BODY: u64 = 3;

pub(super) const VARINT: u64 = 0;
pub(super) const FIXED64: u64 = 1;
pub(super) const LEN: u64 = 2;
pub(super) const FIXED32: u64 = 5;

/// Borrowed [`super::Properties`]: the same fields, nothing owned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PropertiesRef<'a> {
    /// See [`super::Properties::message_id`].
    pub message_id: &'a str,
    /// See [`super::Properties::destination`].
    pub destination: &'a str,
    /// See [`super::Properties::persistent`].
    pub persistent: bool,
    /// See [`super::Properties::priority`].
    pub priority: Option<u32>,
    /// See [`super::Properties::expires`].
    pub expires: u64,
    /// See [`super::Properties::timestamp`].
    pub timestamp: u64,
    /// See [`super::Properties::correlation_id`].
    pub correlation_id: Option<&'a str>,
    /// See [`super::Properties::reply_to`].
    pub reply_to: Option<&'a str>,
    /// See [`super::Properties::content_type`].
    pub content_type: Option<&'a str>,
    /// See [`super::Properties::redelivered`].
    pub redelivered: bool,
    /// See [`super::Properties::delivery_count`].
    pub delivery_count: u32,
}

/// A whole (unsplit) Transfer frame as borrowed parts. `headers` makes the
/// application headers' iterator, called twice (once to size the frame, once
/// to write it); a name must appear at most once (a decoder keeps the last of
/// duplicates).
#[derive(Debug, Clone)]
pub struct TransferParts<'a, H> {
    /// The session channel.
    pub channel: u32,
    /// The link handle.
    pub handle: u32,
    /// The delivery id.
    pub delivery_id: u64,
    /// The delivery tag (empty: none).
    pub delivery_tag: &'a [u8],
    /// Pre-settled.
    pub settled: bool,
    /// The transaction, if any.
    pub txn_id: Option<&'a str>,
    /// The properties, if any.
    pub properties: Option<PropertiesRef<'a>>,
    /// Makes an iterator over the application headers.
    pub headers: H,
}

fn key_len(field: u64) -> usize {
    encoded_len_varint(field << 3)
}

fn put_key(field: u64, wire: u64, buf: &mut BytesMut) {
    encode_varint((field << 3) | wire, buf);
}

fn varint_field_len(field: u64, v: u64) -> usize {
    key_len(field) + encoded_len_varint(v)
}

fn bytes_field_len(field: u64, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

fn put_varint_field(field: u64, v: u64, buf: &mut BytesMut) {
    put_key(field, VARINT, buf);
    encode_varint(v, buf);
}

fn put_bytes_field(field: u64, bytes: &[u8], buf: &mut BytesMut) {
    put_key(field, LEN, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

fn put_len_prefix(field: u64, len: usize, buf: &mut BytesMut) {
    put_key(field, LEN, buf);
    encode_varint(len as u64, buf);
}

impl PropertiesRef<'_> {
    fn encoded_len(&self) -> usize {
        let mut n = 0;
        let text = |field, s: &str| {
            if s.is_empty() {
                0
            } else {
                bytes_field_len(field, s.len())
            }
        };
        let opt = |field, s: Option<&str>| s.map_or(0, |s| bytes_field_len(field, s.len()));
        let num = |field, v: u64| {
            if v == 0 {
                0
            } else {
                varint_field_len(field, v)
            }
        };
        n += text(1, self.message_id);
        n += text(2, self.destination);
        n += num(3, u64::from(self.persistent));
        n += self
            .priority
            .map_or(0, |p| varint_field_len(4, u64::from(p)));
        n += num(5, self.expires);
        n += num(6, self.timestamp);
        n += opt(7, self.correlation_id);
        n += opt(8, self.reply_to);
        n += opt(9, self.content_type);
        n += num(10, u64::from(self.redelivered));
        n += num(11, u64::from(self.delivery_count));
        n
    }

    fn encode(&self, buf: &mut BytesMut) {
        let text = |field, s: &str, buf: &mut BytesMut| {
            if !s.is_empty() {
                put_bytes_field(field, s.as_bytes(), buf);
            }
        };
        let opt = |field, s: Option<&str>, buf: &mut BytesMut| {
            if let Some(s) = s {
                put_bytes_field(field, s.as_bytes(), buf);
            }
        };
        let num = |field, v: u64, buf: &mut BytesMut| {
            if v != 0 {
                put_varint_field(field, v, buf);
            }
        };
        text(1, self.message_id, buf);
        text(2, self.destination, buf);
        num(3, u64::from(self.persistent), buf);
        if let Some(p) = self.priority {
            put_varint_field(4, u64::from(p), buf);
        }
        num(5, self.expires, buf);
        num(6, self.timestamp, buf);
        opt(7, self.correlation_id, buf);
        opt(8, self.reply_to, buf);
        opt(9, self.content_type, buf);
        num(10, u64::from(self.redelivered), buf);
        num(11, u64::from(self.delivery_count), buf);
    }
}

fn entry_len(name: &str, value: &str) -> usize {
    bytes_field_len(1, name.len()) + bytes_field_len(2, value.len())
}

/// Appends the frame of `parts` carrying a body of `body_len` bytes, all of
/// it except the body itself, which must be appended next (it is the frame's
/// last field). Returns the whole frame's size, prefix included. Fails
/// without writing if that exceeds `max_frame_size`.
pub fn encode_transfer_head<'h, H, I>(
    parts: &TransferParts<'_, H>,
    body_len: usize,
    max_frame_size: usize,
    buf: &mut BytesMut,
) -> Result<usize, NativeError>
where
    H: Fn() -> I,
    I: Iterator<Item = (&'h str, &'h str)>,
{
    let props_len = parts.properties.as_ref().map(PropertiesRef::encoded_len);
    let headers_len: usize = (parts.headers)()
        .map(|(k, v)| bytes_field_len(M_HEADERS, entry_len(k, v)))
        .sum();
    let message_len = props_len.map_or(0, |n| bytes_field_len(M_PROPERTIES, n)) + headers_len + {
        if body_len == 0 {
            0
        } else {
            bytes_field_len(M_BODY, body_len)
        }
    };
    let mut transfer_len = bytes_field_len(T_MESSAGE, message_len);
    if parts.handle != 0 {
        transfer_len += varint_field_len(T_HANDLE, u64::from(parts.handle));
    }
    if parts.delivery_id != 0 {
        transfer_len += varint_field_len(T_DELIVERY_ID, parts.delivery_id);
    }
    if !parts.delivery_tag.is_empty() {
        transfer_len += bytes_field_len(T_TAG, parts.delivery_tag.len());
    }
    if parts.settled {
        transfer_len += varint_field_len(T_SETTLED, 1);
    }
    if let Some(txn) = parts.txn_id {
        transfer_len += bytes_field_len(T_TXN, txn.len());
    }
    let mut frame_len = bytes_field_len(FRAME_TRANSFER, transfer_len);
    if parts.channel != 0 {
        frame_len += varint_field_len(FRAME_CHANNEL, u64::from(parts.channel));
    }
    let size = frame_len.saturating_add(LENGTH_PREFIX_LEN);
    let prefix = u32::try_from(frame_len)
        .ok()
        .filter(|_| size <= max_frame_size);
    let Some(prefix) = prefix else {
        return Err(NativeError::DoesNotFit {
            performative: "transfer",
            needed: size,
            limit: max_frame_size,
        });
    };
    buf.reserve(size - body_len);
    buf.put_u32(prefix);
    if parts.channel != 0 {
        put_varint_field(FRAME_CHANNEL, u64::from(parts.channel), buf);
    }
    put_len_prefix(FRAME_TRANSFER, transfer_len, buf);
    if parts.handle != 0 {
        put_varint_field(T_HANDLE, u64::from(parts.handle), buf);
    }
    if parts.delivery_id != 0 {
        put_varint_field(T_DELIVERY_ID, parts.delivery_id, buf);
    }
    if !parts.delivery_tag.is_empty() {
        put_bytes_field(T_TAG, parts.delivery_tag, buf);
    }
    if parts.settled {
        put_varint_field(T_SETTLED, 1, buf);
    }
    if let Some(txn) = parts.txn_id {
        put_bytes_field(T_TXN, txn.as_bytes(), buf);
    }
    put_len_prefix(T_MESSAGE, message_len, buf);
    if let (Some(props), Some(n)) = (&parts.properties, props_len) {
        put_len_prefix(M_PROPERTIES, n, buf);
        props.encode(buf);
    }
    for (name, value) in (parts.headers)() {
        put_len_prefix(M_HEADERS, entry_len(name, value), buf);
        put_bytes_field(1, name.as_bytes(), buf);
        put_bytes_field(2, value.as_bytes(), buf);
    }
    if body_len > 0 {
        put_len_prefix(M_BODY, body_len, buf);
    }
    Ok(size)
}

/// Appends the whole Transfer frame of `parts` with `body`; see
/// [`encode_transfer_head`]. Returns the frame's size.
pub fn encode_transfer<'h, H, I>(
    parts: &TransferParts<'_, H>,
    body: &[u8],
    max_frame_size: usize,
    buf: &mut BytesMut,
) -> Result<usize, NativeError>
where
    H: Fn() -> I,
    I: Iterator<Item = (&'h str, &'h str)>,
{
    let size = encode_transfer_head(parts, body.len(), max_frame_size, buf)?;
    buf.put_slice(body);
    Ok(size)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::native::{Frame, Message, NativeCodec, Properties, Transfer};
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn parts<'a>(
        headers: &'a [(&'a str, &'a str)],
        properties: Option<PropertiesRef<'a>>,
    ) -> TransferParts<'a, impl Fn() -> std::iter::Copied<std::slice::Iter<'a, (&'a str, &'a str)>>>
    {
        TransferParts {
            channel: 1,
            handle: 3,
            delivery_id: 300,
            delivery_tag: b"tag",
            settled: true,
            txn_id: Some("7"),
            properties,
            headers: move || headers.iter().copied(),
        }
    }

    #[test]
    fn the_codec_reads_what_the_fast_path_writes() {
        let props = PropertiesRef {
            message_id: "ID:1",
            destination: "/queue/a",
            persistent: true,
            priority: Some(4),
            expires: 99,
            timestamp: 1_700_000_000_000,
            correlation_id: Some(""),
            reply_to: Some("/queue/r"),
            content_type: None,
            redelivered: true,
            delivery_count: 2,
        };
        let headers = [("bench-ts", "123456789"), ("x", "")];
        let mut buf = BytesMut::new();
        let size =
            encode_transfer(&parts(&headers, Some(props)), b"hello", 1 << 20, &mut buf).unwrap();
        assert_eq!(size, buf.len());
        let frame = NativeCodec::default().decode(&mut buf).unwrap().unwrap();
        let expected = Frame::new(
            1,
            Transfer {
                handle: 3,
                delivery_id: 300,
                delivery_tag: Bytes::from_static(b"tag"),
                settled: true,
                more: false,
                message: Some(Message {
                    properties: Some(Properties {
                        message_id: "ID:1".into(),
                        destination: "/queue/a".into(),
                        persistent: true,
                        priority: Some(4),
                        expires: 99,
                        timestamp: 1_700_000_000_000,
                        correlation_id: Some(String::new()),
                        reply_to: Some("/queue/r".into()),
                        content_type: None,
                        redelivered: true,
                        delivery_count: 2,
                    }),
                    application_headers: BTreeMap::from([
                        ("bench-ts".to_string(), "123456789".to_string()),
                        ("x".to_string(), String::new()),
                    ]),
                    body: Bytes::from_static(b"hello"),
                }),
                txn_id: Some("7".into()),
            },
        );
        assert_eq!(frame, expected);
    }

    #[test]
    fn empty_parts_encode_as_prost_does() {
        let mut ours = BytesMut::new();
        let none: [(&str, &str); 0] = [];
        let p = TransferParts {
            channel: 0,
            handle: 0,
            delivery_id: 0,
            delivery_tag: &[],
            settled: false,
            txn_id: None,
            properties: None,
            headers: || none.iter().copied(),
        };
        encode_transfer(&p, &[], 1 << 20, &mut ours).unwrap();
        let mut theirs = BytesMut::new();
        let t = Transfer {
            message: Some(Message::default()),
            ..Transfer::default()
        };
        NativeCodec::default()
            .encode(&Frame::new(0, t), &mut theirs)
            .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn too_large_is_refused_without_writing() {
        let mut buf = BytesMut::new();
        let err = encode_transfer(&parts(&[], None), &[0u8; 600], 512, &mut buf).unwrap_err();
        assert!(matches!(err, NativeError::DoesNotFit { limit: 512, .. }));
        assert!(buf.is_empty());
    }
}
