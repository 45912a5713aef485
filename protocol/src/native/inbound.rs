//! A peer's whole Transfer read in place, for a broker's hot path:
//! [`InboundTransfer::parse`] returns the transfer's fields borrowed from the
//! frame's bytes only when [`super::NativeCodec::decode`] would decode the
//! same frame to the same values and accept it; for anything else (another
//! performative, a piece of a split message, a repeated or mistyped field,
//! invalid UTF-8, a priority out of range, map keys not in strictly
//! ascending order) it returns `None`, and the caller decodes the frame
//! normally, which then gives the usual result or error. Protobuf allows
//! both forms; the strict one is what every encoder of this crate writes.

use super::codec::LENGTH_PREFIX_LEN;
use super::lean::PropertiesRef;
use super::transfer::MAX_PRIORITY;

/// A whole Transfer frame's fields (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTransfer<'a> {
    /// The session channel.
    pub channel: u32,
    /// The link handle.
    pub handle: u32,
    /// The delivery id.
    pub delivery_id: u64,
    /// Pre-settled.
    pub settled: bool,
    /// The transaction, if any.
    pub txn_id: Option<&'a str>,
    /// The message's properties, if present.
    pub properties: Option<PropertiesRef<'a>>,
    /// The encoded message (its headers are read by [`InboundTransfer::headers`]).
    message: &'a [u8],
    /// The message body.
    pub body: &'a [u8],
}

/// A cursor over one protobuf message's fields.
struct Cursor<'a> {
    rest: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            // prost refuses a 10th byte above 1; so do we (by falling back).
            return (shift < 63 || byte <= 1).then_some(value);
        }
    }
    None
}

impl<'a> Cursor<'a> {
    /// The next field; `Some(None)` at the end; `None` for anything the
    /// strict reader does not take (fixed-width and group wire types
    /// included: no field of the schema uses them).
    fn next_field(&mut self) -> Option<Option<(u64, Value<'a>)>> {
        if self.rest.is_empty() {
            return Some(None);
        }
        let key = varint(&mut self.rest)?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return None;
        }
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut self.rest)?),
            2 => {
                let len = usize::try_from(varint(&mut self.rest)?).ok()?;
                if len > self.rest.len() {
                    return None;
                }
                let (bytes, tail) = self.rest.split_at(len);
                self.rest = tail;
                Value::Bytes(bytes)
            }
            _ => return None,
        };
        Some(Some((field, value)))
    }
}

/// Records that a singular field was seen; `None` if it was seen before.
fn once(seen: &mut u32, field: u64) -> Option<()> {
    let bit = 1u32 << field;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

impl<'a> InboundTransfer<'a> {
    /// Reads `frame` (length prefix included, exactly one frame); see the
    /// module documentation for when this is `None`.
    pub fn parse(frame: &'a [u8]) -> Option<InboundTransfer<'a>> {
        let mut cursor = Cursor {
            rest: frame.get(LENGTH_PREFIX_LEN..)?,
        };
        let (mut channel, mut transfer, mut seen) = (0u32, None, 0u32);
        while let Some((field, value)) = cursor.next_field()? {
            once(&mut seen, field.min(31))?;
            match (field, value) {
                (1, Value::Varint(v)) => channel = v as u32,
                (8, Value::Bytes(b)) => transfer = Some(b),
                _ => return None,
            }
        }
        let mut t = InboundTransfer {
            channel,
            handle: 0,
            delivery_id: 0,
            settled: false,
            txn_id: None,
            properties: None,
            message: &[],
            body: &[],
        };
        let mut cursor = Cursor { rest: transfer? };
        let mut seen = 0u32;
        let mut message = None;
        while let Some((field, value)) = cursor.next_field()? {
            once(&mut seen, field.min(31))?;
            match (field, value) {
                (1, Value::Varint(v)) => t.handle = v as u32,
                (2, Value::Varint(v)) => t.delivery_id = v,
                (3, Value::Bytes(_)) => {}
                (4, Value::Varint(v)) => t.settled = v != 0,
                // A piece of a split message: the reassembler's business.
                (5, Value::Varint(0)) => {}
                (6, Value::Bytes(b)) => message = Some(b),
                (7, Value::Bytes(b)) => t.txn_id = Some(text(b)?),
                _ => return None,
            }
        }
        if let Some(message) = message {
            t.read_message(message)?;
        }
        Some(t)
    }

    fn read_message(&mut self, message: &'a [u8]) -> Option<()> {
        let mut cursor = Cursor { rest: message };
        let mut seen = 0u32;
        let mut last_key: Option<&'a str> = None;
        while let Some((field, value)) = cursor.next_field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => {
                    once(&mut seen, 1)?;
                    self.properties = Some(read_properties(b)?);
                }
                (2, Value::Bytes(entry)) => {
                    let (key, _) = read_entry(entry)?;
                    // Strictly ascending keys: no duplicates to resolve,
                    // and the order a decoded map gives them.
                    if last_key.is_some_and(|last| last >= key) {
                        return None;
                    }
                    last_key = Some(key);
                }
                (3, Value::Bytes(b)) => {
                    once(&mut seen, 3)?;
                    self.body = b;
                }
                _ => return None,
            }
        }
        self.message = message;
        Some(())
    }

    /// The application headers, in the order a decoded map would give them.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut cursor = Cursor { rest: self.message };
        std::iter::from_fn(move || loop {
            match cursor.next_field()?? {
                (2, Value::Bytes(entry)) => return read_entry(entry),
                _ => continue,
            }
        })
    }
}

fn read_entry(entry: &[u8]) -> Option<(&str, &str)> {
    let mut cursor = Cursor { rest: entry };
    let (mut key, mut value, mut seen) = ("", "", 0u32);
    while let Some((field, v)) = cursor.next_field()? {
        once(&mut seen, field.min(31))?;
        match (field, v) {
            (1, Value::Bytes(b)) => key = text(b)?,
            (2, Value::Bytes(b)) => value = text(b)?,
            _ => return None,
        }
    }
    Some((key, value))
}

fn read_properties(bytes: &[u8]) -> Option<PropertiesRef<'_>> {
    let mut p = PropertiesRef::default();
    let mut cursor = Cursor { rest: bytes };
    let mut seen = 0u32;
    while let Some((field, value)) = cursor.next_field()? {
        once(&mut seen, field.min(31))?;
        match (field, value) {
            (1, Value::Bytes(b)) => p.message_id = text(b)?,
            (2, Value::Bytes(b)) => p.destination = text(b)?,
            (3, Value::Varint(v)) => p.persistent = v != 0,
            (4, Value::Varint(v)) => {
                let priority = v as u32;
                if priority > MAX_PRIORITY {
                    return None;
                }
                p.priority = Some(priority);
            }
            (5, Value::Varint(v)) => p.expires = v,
            (6, Value::Varint(v)) => p.timestamp = v,
            (7, Value::Bytes(b)) => p.correlation_id = Some(text(b)?),
            (8, Value::Bytes(b)) => p.reply_to = Some(text(b)?),
            (9, Value::Bytes(b)) => p.content_type = Some(text(b)?),
            (10, Value::Varint(v)) => p.redelivered = v != 0,
            (11, Value::Varint(v)) => p.delivery_count = v as u32,
            _ => return None,
        }
    }
    Some(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::native::lean::{encode_transfer, TransferParts};
    use crate::native::{Flow, Frame, Message, NativeCodec, Performative, Properties, Transfer};
    use bytes::{Bytes, BytesMut};
    use std::collections::BTreeMap;

    fn encoded(t: Transfer) -> BytesMut {
        let mut buf = BytesMut::new();
        NativeCodec::default()
            .encode(&Frame::new(3, t), &mut buf)
            .unwrap();
        buf
    }

    /// The strict reader agrees with the codec wherever it answers.
    fn agrees(frame: &[u8]) -> Option<InboundTransfer<'_>> {
        let ours = InboundTransfer::parse(frame);
        if let Some(t) = &ours {
            let mut buf = BytesMut::from(frame);
            let decoded = NativeCodec::default().decode(&mut buf).unwrap().unwrap();
            let Some(Performative::Transfer(d)) = decoded.performative else {
                panic!("not a transfer");
            };
            assert_eq!(decoded.channel, t.channel);
            assert_eq!(
                (d.handle, d.delivery_id, d.settled),
                (t.handle, t.delivery_id, t.settled)
            );
            assert_eq!(d.txn_id.as_deref(), t.txn_id);
            let m = d.message.unwrap_or_default();
            assert_eq!(&m.body[..], t.body);
            let headers: Vec<(&str, &str)> = t.headers().collect();
            let theirs: Vec<(&str, &str)> = m
                .application_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(headers, theirs);
            let p = m.properties.as_ref();
            assert_eq!(p.is_some(), t.properties.is_some());
            if let (Some(p), Some(q)) = (p, &t.properties) {
                assert_eq!(p.destination, q.destination);
                assert_eq!(p.persistent, q.persistent);
                assert_eq!(p.priority, q.priority);
                assert_eq!(p.correlation_id.as_deref(), q.correlation_id);
                assert_eq!(p.reply_to.as_deref(), q.reply_to);
                assert_eq!(p.content_type.as_deref(), q.content_type);
                assert_eq!((p.expires, p.timestamp), (q.expires, q.timestamp));
            }
        }
        ours
    }

    #[test]
    fn reads_what_both_encoders_write() {
        let t = Transfer {
            handle: 2,
            delivery_id: 77,
            delivery_tag: Bytes::from_static(b"x"),
            settled: true,
            more: false,
            message: Some(Message {
                properties: Some(Properties {
                    destination: "/queue/b".into(),
                    persistent: true,
                    priority: Some(7),
                    correlation_id: Some("c".into()),
                    ..Properties::default()
                }),
                application_headers: BTreeMap::from([
                    ("a".to_string(), "1".to_string()),
                    ("b".to_string(), String::new()),
                    ("bench-ts".to_string(), "99".to_string()),
                ]),
                body: Bytes::from_static(b"payload"),
            }),
            txn_id: Some("t1".into()),
        };
        let buf = encoded(t);
        let got = agrees(&buf).expect("the codec's encoding is strict");
        assert_eq!(got.headers().count(), 3);

        let headers = [("bench-ts", "5")];
        let parts = TransferParts {
            channel: 1,
            handle: 0,
            delivery_id: 0,
            delivery_tag: &[],
            settled: false,
            txn_id: None,
            properties: None,
            headers: || headers.iter().copied(),
        };
        let mut buf = BytesMut::new();
        encode_transfer(&parts, b"b", 1 << 20, &mut buf).unwrap();
        let got = agrees(&buf).expect("the fast path's encoding is strict");
        assert_eq!(got.headers().collect::<Vec<_>>(), vec![("bench-ts", "5")]);
        assert!(got.properties.is_none());
    }

    #[test]
    fn leaves_everything_unusual_to_the_codec() {
        // Another performative.
        let mut flow = BytesMut::new();
        NativeCodec::default()
            .encode(&Frame::new(1, Flow::default()), &mut flow)
            .unwrap();
        assert!(InboundTransfer::parse(&flow).is_none());
        // A piece of a split message.
        let piece = encoded(Transfer {
            more: true,
            ..Transfer::default()
        });
        assert!(InboundTransfer::parse(&piece).is_none());
        // Priority out of range (the codec refuses it).
        let bad = encoded(Transfer {
            message: Some(Message {
                properties: Some(Properties {
                    priority: Some(10),
                    ..Properties::default()
                }),
                ..Message::default()
            }),
            ..Transfer::default()
        });
        assert!(InboundTransfer::parse(&bad).is_none());
        // Keys out of order (a hand-made encoding the map would reorder).
        let headers = [("b", "1"), ("a", "2")];
        let parts = TransferParts {
            channel: 1,
            handle: 0,
            delivery_id: 0,
            delivery_tag: &[],
            settled: false,
            txn_id: None,
            properties: None,
            headers: || headers.iter().copied(),
        };
        let mut buf = BytesMut::new();
        encode_transfer(&parts, b"", 1 << 20, &mut buf).unwrap();
        assert!(InboundTransfer::parse(&buf).is_none());
        // Invalid UTF-8 in a header value.
        let mut frame = encoded(Transfer {
            message: Some(Message {
                application_headers: BTreeMap::from([("k".to_string(), "v".to_string())]),
                ..Message::default()
            }),
            ..Transfer::default()
        })
        .to_vec();
        let at = frame.iter().rposition(|&b| b == b'v').unwrap();
        frame[at] = 0xff;
        assert!(InboundTransfer::parse(&frame).is_none());
        // Truncated.
        let whole = encoded(Transfer {
            message: Some(Message {
                body: Bytes::from_static(b"abcdef"),
                ..Message::default()
            }),
            ..Transfer::default()
        });
        assert!(InboundTransfer::parse(&whole[..whole.len() - 2]).is_none());
        assert!(InboundTransfer::parse(&whole[..2]).is_none());
    }
}
