//! The Transfer fast path, for code that moves many messages: encodes a
//! Transfer frame straight from borrowed parts ([`TransferParts`]) and reads
//! one in place ([`TransferView`]), without building (or allocating) the
//! prost [`super::Transfer`], [`super::Message`] and header map on the way.
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
const FRAME_CHANNEL: u64 = 1;
const FRAME_TRANSFER: u64 = 8;
const T_HANDLE: u64 = 1;
const T_DELIVERY_ID: u64 = 2;
const T_TAG: u64 = 3;
const T_SETTLED: u64 = 4;
const T_MORE: u64 = 5;
const T_MESSAGE: u64 = 6;
const T_TXN: u64 = 7;
const M_PROPERTIES: u64 = 1;
const M_HEADERS: u64 = 2;
const M_BODY: u64 = 3;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

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

/// The size of the complete frame at the front of `buf` (prefix included),
/// `None` if it is not all there yet, an error if its prefix announces more
/// than `max_frame_size`.
pub fn complete_frame_len(buf: &[u8], max_frame_size: usize) -> Result<Option<usize>, NativeError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_LEN) else {
        return Ok(None);
    };
    let mut len = [0u8; LENGTH_PREFIX_LEN];
    len.copy_from_slice(prefix);
    let size = usize::try_from(u32::from_be_bytes(len))
        .unwrap_or(usize::MAX)
        .saturating_add(LENGTH_PREFIX_LEN);
    if size > max_frame_size {
        return Err(NativeError::FrameTooLarge {
            size,
            limit: max_frame_size,
        });
    }
    Ok((buf.len() >= size).then_some(size))
}

/// A Transfer frame read in place: the routing fields, with the message's
/// headers and body still in the frame's bytes.
///
/// Unlike [`super::NativeCodec::decode`] this does not run
/// [`mod@super::validate`]: it is for clients reading a broker's transfers,
/// not for a broker reading untrusted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferView<'a> {
    /// The session channel.
    pub channel: u32,
    /// The link handle.
    pub handle: u32,
    /// The delivery id.
    pub delivery_id: u64,
    /// Pre-settled.
    pub settled: bool,
    /// More pieces of this message follow.
    pub more: bool,
    message: &'a [u8],
}

/// Reads protobuf fields of one message, in place.
struct Fields<'a> {
    rest: &'a [u8],
}

/// One field's value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn malformed(reason: &str) -> NativeError {
    NativeError::Malformed {
        reason: reason.to_string(),
    }
}

fn read_varint(rest: &mut &[u8]) -> Result<u64, NativeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest
            .split_first()
            .ok_or_else(|| malformed("truncated varint"))?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("varint longer than 10 bytes"))
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, NativeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = read_varint(&mut self.rest)?;
        let value = match key & 7 {
            VARINT => Value::Varint(read_varint(&mut self.rest)?),
            LEN => {
                let len = usize::try_from(read_varint(&mut self.rest)?)
                    .map_err(|_| malformed("length overflows"))?;
                if len > self.rest.len() {
                    return Err(malformed("length-delimited field runs past its message"));
                }
                let (bytes, tail) = self.rest.split_at(len);
                self.rest = tail;
                Value::Bytes(bytes)
            }
            FIXED64 | FIXED32 => {
                let n = if key & 7 == FIXED64 { 8 } else { 4 };
                if n > self.rest.len() {
                    return Err(malformed("truncated fixed-width field"));
                }
                self.rest = &self.rest[n..];
                Value::Fixed
            }
            _ => return Err(malformed("unsupported wire type")),
        };
        Ok(Some((key >> 3, value)))
    }
}

impl<'a> TransferView<'a> {
    /// Reads the frame `frame` (prefix included, exactly one frame). `None`
    /// when it carries another performative.
    pub fn parse(frame: &'a [u8]) -> Result<Option<TransferView<'a>>, NativeError> {
        let body = frame
            .get(LENGTH_PREFIX_LEN..)
            .ok_or_else(|| malformed("frame shorter than its length prefix"))?;
        let mut channel = 0u32;
        let mut transfer = None;
        let mut fields = Fields { rest: body };
        while let Some((field, value)) = fields.next_field()? {
            match (field, value) {
                (FRAME_CHANNEL, Value::Varint(v)) => channel = v as u32,
                (FRAME_TRANSFER, Value::Bytes(b)) => transfer = Some(b),
                // Another performative (a frame carries exactly one).
                (2..=13, _) => return Ok(None),
                _ => {}
            }
        }
        let Some(transfer) = transfer else {
            return Ok(None);
        };
        let mut view = TransferView {
            channel,
            handle: 0,
            delivery_id: 0,
            settled: false,
            more: false,
            message: &[],
        };
        let mut fields = Fields { rest: transfer };
        while let Some((field, value)) = fields.next_field()? {
            match (field, value) {
                (T_HANDLE, Value::Varint(v)) => view.handle = v as u32,
                (T_DELIVERY_ID, Value::Varint(v)) => view.delivery_id = v,
                (T_SETTLED, Value::Varint(v)) => view.settled = v != 0,
                (T_MORE, Value::Varint(v)) => view.more = v != 0,
                (T_MESSAGE, Value::Bytes(b)) => view.message = b,
                _ => {}
            }
        }
        Ok(Some(view))
    }

    /// The value of application header `name` (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let mut fields = Fields { rest: self.message };
        while let Ok(Some((field, value))) = fields.next_field() {
            let (M_HEADERS, Value::Bytes(entry)) = (field, value) else {
                continue;
            };
            let mut key: &[u8] = &[];
            let mut val: &[u8] = &[];
            let mut entry = Fields { rest: entry };
            while let Ok(Some((f, v))) = entry.next_field() {
                match (f, v) {
                    (1, Value::Bytes(b)) => key = b,
                    (2, Value::Bytes(b)) => val = b,
                    _ => {}
                }
            }
            if key == name.as_bytes() {
                return std::str::from_utf8(val).ok();
            }
        }
        None
    }

    /// The body bytes this frame carries (a piece, when split).
    pub fn body(&self) -> &'a [u8] {
        let mut fields = Fields { rest: self.message };
        let mut body: &[u8] = &[];
        while let Ok(Some((field, value))) = fields.next_field() {
            if let (M_BODY, Value::Bytes(b)) = (field, value) {
                body = b;
            }
        }
        body
    }
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

    #[test]
    fn the_view_reads_what_the_codec_writes() {
        let transfer = Transfer {
            handle: 2,
            delivery_id: 1 << 40,
            delivery_tag: Bytes::from_static(b"t"),
            settled: false,
            more: true,
            message: Some(Message {
                properties: Some(Properties {
                    message_id: "m".into(),
                    ..Properties::default()
                }),
                application_headers: BTreeMap::from([
                    ("a".to_string(), "1".to_string()),
                    ("bench-ts".to_string(), "42".to_string()),
                ]),
                body: Bytes::from_static(b"body"),
            }),
            txn_id: None,
        };
        let mut buf = BytesMut::new();
        let codec = NativeCodec::default();
        codec.encode(&Frame::new(5, transfer), &mut buf).unwrap();
        assert_eq!(complete_frame_len(&buf, 1 << 20).unwrap(), Some(buf.len()));
        assert_eq!(
            complete_frame_len(&buf[..buf.len() - 1], 1 << 20).unwrap(),
            None
        );
        assert!(complete_frame_len(&buf, 8).is_err());
        let view = TransferView::parse(&buf).unwrap().unwrap();
        assert_eq!(
            (
                view.channel,
                view.handle,
                view.delivery_id,
                view.settled,
                view.more
            ),
            (5, 2, 1 << 40, false, true)
        );
        assert_eq!(view.header("bench-ts"), Some("42"));
        assert_eq!(view.header("a"), Some("1"));
        assert_eq!(view.header("b"), None);
        assert_eq!(view.body(), b"body");

        let mut flow = BytesMut::new();
        codec
            .encode(&Frame::new(1, crate::native::Flow::default()), &mut flow)
            .unwrap();
        assert_eq!(TransferView::parse(&flow).unwrap(), None);
        // Truncated inside a field: an error, not a panic.
        let cut = buf.len() - 3;
        let mut short = buf[..cut].to_vec();
        short[..4].copy_from_slice(&((cut - 4) as u32).to_be_bytes());
        assert!(TransferView::parse(&short).is_err());
    }
}
