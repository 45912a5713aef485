//! A Transfer frame read in place, for clients reading a broker's
//! transfers: [`TransferView`] gives the routing fields and finds a header or
//! the body in the frame's bytes without decoding (or allocating) the prost
//! message; [`complete_frame_len`] says whether a whole frame is buffered.

use super::codec::LENGTH_PREFIX_LEN;
use super::error::NativeError;
use super::lean::{
    FIXED32, FIXED64, FRAME_CHANNEL, FRAME_TRANSFER, LEN, M_BODY, M_HEADERS, T_DELIVERY_ID,
    T_HANDLE, T_MESSAGE, T_MORE, T_SETTLED, VARINT,
};

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
    use bytes::{Bytes, BytesMut};
    use std::collections::BTreeMap;

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
