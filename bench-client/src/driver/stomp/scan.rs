//! Reading MESSAGE and RECEIPT frames on the hot paths without allocating.
//!
//! The shared decoder (`ferromq_protocol::stomp::Decoder`) builds an owned
//! [`Frame`](ferromq_protocol::stomp::Frame) per message (two allocations for
//! its headers). A benchmark consumer needs only three things from a MESSAGE:
//! its length, the send stamp, and the ack id, so [`scan_message`] reads those
//! in place from the read buffer and copies the ack id into a reused string;
//! [`scan_receipt`] does the same for a persistent producer's RECEIPTs. Every
//! other command is left to the shared decoder.

use crate::order::{Origin, PRODUCER_HEADER, SEQ_HEADER};
use ferromq_protocol::stomp::{FrameError, Version};

/// What is at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole MESSAGE frame of `len` bytes (NUL included) with this stamp
    /// (0 when absent); its ack id was appended to the output string.
    Message {
        /// Bytes to remove from the buffer.
        len: usize,
        /// Value of the stamp header.
        stamp: u64,
        /// The producer and sequence number headers, when both are there.
        origin: Option<Origin>,
        /// `redelivered:true`.
        redelivered: bool,
    },
    /// Some other command: hand the buffer to the shared decoder.
    Other,
    /// Part of a MESSAGE: read more.
    Incomplete,
}

/// Bytes of heart-beat EOLs (`\n` or `\r\n`) at the front of `buf`.
pub fn heartbeat_len(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

/// A RECEIPT at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptScan {
    /// A whole RECEIPT of `len` bytes; `id` is its `receipt-id` when numeric.
    Receipt {
        /// Bytes to remove from the buffer.
        len: usize,
        /// The numeric receipt id, if it is one.
        id: Option<u64>,
    },
    /// Some other command: hand the buffer to the shared decoder.
    Other,
    /// Part of a RECEIPT: read more.
    Incomplete,
}

/// Looks at the frame at the front of `buf` (which must not start with a
/// heart-beat). For a complete MESSAGE, appends the value of `ack_key`
/// (unescaped for `version`) to `ack_out` when given.
pub fn scan_message(
    buf: &[u8],
    version: Version,
    stamp_key: &str,
    ack_key: &str,
    mut ack_out: Option<&mut String>,
    max_frame: usize,
) -> Result<Scan, FrameError> {
    let ack_len_before = ack_out.as_ref().map_or(0, |s| s.len());
    let mut stamp: Option<u64> = None;
    let mut producer: Option<Option<u64>> = None;
    let mut seq: Option<Option<u64>> = None;
    let mut redelivered: Option<bool> = None;
    let mut ack_seen = false;
    // STOMP: the first occurrence of a repeated header wins.
    let found = walk_frame(buf, b"MESSAGE", max_frame, |name, value| {
        if name == stamp_key.as_bytes() && stamp.is_none() {
            stamp = Some(parse_u64(value).unwrap_or(0));
        } else if name == PRODUCER_HEADER.as_bytes() && producer.is_none() {
            producer = Some(parse_u64(value));
        } else if name == SEQ_HEADER.as_bytes() && seq.is_none() {
            seq = Some(parse_u64(value));
        } else if name == b"redelivered" && redelivered.is_none() {
            redelivered = Some(value == b"true");
        } else if name == ack_key.as_bytes() && !ack_seen {
            ack_seen = true;
            if let Some(out) = ack_out.as_deref_mut() {
                unescape_into(value, version, out)?;
            }
        }
        Ok(())
    })?;
    Ok(match found {
        Walk::Frame(len) => Scan::Message {
            len,
            stamp: stamp.unwrap_or(0),
            origin: match (producer.flatten(), seq.flatten()) {
                (Some(producer), Some(seq)) => Some(Origin { producer, seq }),
                _ => None,
            },
            redelivered: redelivered.unwrap_or(false),
        },
        Walk::Other => Scan::Other,
        Walk::Incomplete => {
            // Undo a partial ack id: the frame is scanned again later.
            if let Some(out) = ack_out {
                out.truncate(ack_len_before);
            }
            Scan::Incomplete
        }
    })
}

/// Looks for a RECEIPT at the front of `buf` (not starting with a heart-beat).
pub fn scan_receipt(buf: &[u8], max_frame: usize) -> Result<ReceiptScan, FrameError> {
    let mut id: Option<Option<u64>> = None;
    let found = walk_frame(buf, b"RECEIPT", max_frame, |name, value| {
        if name == b"receipt-id" && id.is_none() {
            id = Some(parse_u64(value));
        }
        Ok(())
    })?;
    Ok(match found {
        Walk::Frame(len) => ReceiptScan::Receipt {
            len,
            id: id.flatten(),
        },
        Walk::Other => ReceiptScan::Other,
        Walk::Incomplete => ReceiptScan::Incomplete,
    })
}

/// Outcome of walking one frame.
enum Walk {
    /// A whole frame of the wanted command, this many bytes long.
    Frame(usize),
    /// Another command.
    Other,
    /// Part of a frame of the wanted command.
    Incomplete,
}

/// Walks the frame at the front of `buf` if its command is `command`,
/// calling `on_header(name, raw_value)` for every header line except
/// `content-length`, which it uses to find the end of the body. A header
/// visitor may run again for the same frame after `Incomplete`.
fn walk_frame(
    buf: &[u8],
    command: &[u8],
    max_frame: usize,
    mut on_header: impl FnMut(&[u8], &[u8]) -> Result<(), FrameError>,
) -> Result<Walk, FrameError> {
    let Some(first_eol) = buf.iter().position(|&b| b == b'\n') else {
        let may_be = command.starts_with(buf) || buf.starts_with(command);
        return Ok(if may_be {
            Walk::Incomplete
        } else {
            Walk::Other
        });
    };
    if trim_cr(&buf[..first_eol]) != command {
        return Ok(Walk::Other);
    }
    let mut pos = first_eol + 1;
    let mut content_length: Option<usize> = None;
    let body_start = loop {
        let Some(rel) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > max_frame {
                return Err(FrameError::FrameTooLarge { limit: max_frame });
            }
            return Ok(Walk::Incomplete);
        };
        let line = trim_cr(&buf[pos..pos + rel]);
        pos += rel + 1;
        if line.is_empty() {
            break pos;
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
            FrameError::MalformedHeader(String::from_utf8_lossy(line).into_owned())
        })?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name == b"content-length" {
            if content_length.is_none() {
                let text = std::str::from_utf8(value).map_err(|_| FrameError::InvalidUtf8)?;
                content_length = Some(
                    text.trim()
                        .parse()
                        .map_err(|_| FrameError::BadContentLength(text.to_string()))?,
                );
            }
        } else {
            on_header(name, value)?;
        }
    };
    let len = match content_length {
        Some(n) => {
            let total = body_start + n + 1;
            if total > max_frame {
                return Err(FrameError::FrameTooLarge { limit: max_frame });
            }
            if buf.len() < total {
                return Ok(Walk::Incomplete);
            }
            if buf[total - 1] != 0 {
                return Err(FrameError::MissingNul);
            }
            total
        }
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            Some(nul) => body_start + nul + 1,
            None => {
                if buf.len() > max_frame {
                    return Err(FrameError::FrameTooLarge { limit: max_frame });
                }
                return Ok(Walk::Incomplete);
            }
        },
    };
    Ok(Walk::Frame(len))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// Appends `raw` to `out`, undoing the header escaping of `version`.
fn unescape_into(raw: &[u8], version: Version, out: &mut String) -> Result<(), FrameError> {
    let text = std::str::from_utf8(raw).map_err(|_| FrameError::InvalidUtf8)?;
    if version == Version::V1_0 || !text.contains('\\') {
        out.push_str(text);
        return Ok(());
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if version >= Version::V1_2 => out.push('\r'),
            Some(other) => return Err(FrameError::InvalidEscape(other)),
            None => return Err(FrameError::InvalidEscape(' ')),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ferromq_protocol::stomp::{encode_frame, Command, Frame};

    const MAX: usize = 1 << 20;

    fn message(ack: &str, stamp: Option<&str>, body: &[u8]) -> BytesMut {
        let mut f = Frame::new(Command::Message)
            .header("destination", "/queue/loadq-0")
            .header("message-id", ack)
            .header("subscription", "bench-0")
            .header("ack", ack);
        if let Some(s) = stamp {
            f = f.header("bench-ts", s);
        }
        let mut b = BytesMut::new();
        encode_frame(&f.body(body.to_vec()), Version::V1_2, &mut b);
        // A scanned frame ends at its NUL; the LF the broker writes after
        // it is a heart-beat EOL for `heartbeat_len`.
        assert!(b.ends_with(b"\0\n"), "{b:?}");
        b.truncate(b.len() - 1);
        b
    }

    fn scan(buf: &[u8], out: &mut String) -> Result<Scan, FrameError> {
        scan_message(buf, Version::V1_2, "bench-ts", "ack", Some(out), MAX)
    }

    #[test]
    fn reads_length_stamp_and_unescaped_ack_id() {
        let b = message("ID:host-1:2", Some("123456789"), b"hello\0world");
        let mut out = String::new();
        assert_eq!(
            scan(&b, &mut out).unwrap(),
            Scan::Message {
                len: b.len(),
                stamp: 123456789,
                origin: None,
                redelivered: false,
            }
        );
        assert_eq!(out, "ID:host-1:2", "\\c unescaped back to ':'");
        // Without a stamp header the stamp is 0.
        let b = message("7", None, b"x");
        out.clear();
        assert!(matches!(
            scan(&b, &mut out).unwrap(),
            Scan::Message { stamp: 0, .. }
        ));
    }

    #[test]
    fn reads_the_order_stamp_and_the_redelivered_flag() {
        let raw = b"MESSAGE\nack:1\nbench-producer:77\nbench-seq:5\nredelivered:true\n\n\0";
        let mut out = String::new();
        assert_eq!(
            scan(raw, &mut out).unwrap(),
            Scan::Message {
                len: raw.len(),
                stamp: 0,
                origin: Some(Origin {
                    producer: 77,
                    seq: 5
                }),
                redelivered: true,
            }
        );
        // A producer without a number (or a number that is not one) is no
        // stamp at all.
        let raw = b"MESSAGE\nack:1\nbench-producer:77\nbench-seq:x\n\n\0";
        assert!(matches!(
            scan(raw, &mut out).unwrap(),
            Scan::Message {
                origin: None,
                redelivered: false,
                ..
            }
        ));
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_end() {
        let b = message("ID:a:b", Some("42"), b"0123456789");
        for cut in 0..b.len() {
            let mut out = String::from("prev|");
            assert_eq!(
                scan(&b[..cut], &mut out).unwrap(),
                Scan::Incomplete,
                "cut {cut}"
            );
            assert_eq!(
                out, "prev|",
                "a partial frame leaves no ack id behind (cut {cut})"
            );
        }
        // Two frames back to back, as the broker writes them (NUL, LF): the
        // first is reported alone, and the LF is left as a heart-beat.
        let mut two = b.clone();
        two.extend_from_slice(b"\n");
        two.extend_from_slice(&b);
        let mut out = String::new();
        assert_eq!(
            scan(&two, &mut out).unwrap(),
            Scan::Message {
                len: b.len(),
                stamp: 42,
                origin: None,
                redelivered: false,
            }
        );
        assert_eq!(heartbeat_len(&two[b.len()..]), 1);
    }

    #[test]
    fn without_content_length_the_body_ends_at_nul() {
        let raw = b"MESSAGE\r\nack:5\r\nbench-ts:9\r\nbench-ts:10\r\n\r\nbody\0MESSAGE\n";
        let mut out = String::new();
        assert_eq!(
            scan(raw, &mut out).unwrap(),
            Scan::Message {
                len: 48,
                stamp: 9,
                origin: None,
                redelivered: false
            },
            "CRLF lines, first repeated header wins"
        );
        assert_eq!(out, "5");
        assert_eq!(&raw[48..], b"MESSAGE\n");
    }

    #[test]
    fn other_commands_and_errors() {
        let mut out = String::new();
        assert_eq!(
            scan(b"RECEIPT\nreceipt-id:1\n\n\0", &mut out).unwrap(),
            Scan::Other
        );
        assert_eq!(scan(b"ERR", &mut out).unwrap(), Scan::Other);
        assert_eq!(scan(b"MESS", &mut out).unwrap(), Scan::Incomplete);
        assert!(matches!(
            scan(b"MESSAGE\ncontent-length:x\n\n\0", &mut out),
            Err(FrameError::BadContentLength(_))
        ));
        assert!(matches!(
            scan(b"MESSAGE\ncontent-length:2\n\nabc", &mut out),
            Err(FrameError::MissingNul)
        ));
        assert!(matches!(
            scan(b"MESSAGE\nno-colon\n\n\0", &mut out),
            Err(FrameError::MalformedHeader(_))
        ));
        assert!(matches!(
            scan(b"MESSAGE\nack:a\\qb\n\n\0", &mut out),
            Err(FrameError::InvalidEscape('q'))
        ));
        assert!(matches!(
            scan_message(
                b"MESSAGE\ncontent-length:100\n\n",
                Version::V1_2,
                "t",
                "ack",
                None,
                50
            ),
            Err(FrameError::FrameTooLarge { limit: 50 })
        ));
        // STOMP 1.0 has no escapes: the id is taken as it is.
        out.clear();
        scan_message(
            b"MESSAGE\nmessage-id:a\\cb\n\n\0",
            Version::V1_0,
            "t",
            "message-id",
            Some(&mut out),
            MAX,
        )
        .unwrap();
        assert_eq!(out, "a\\cb");
        assert_eq!(
            scan_receipt(b"RECEIPT\nreceipt-id:77\n\n\0MESSAGE", MAX).unwrap(),
            ReceiptScan::Receipt {
                len: 24,
                id: Some(77)
            }
        );
        assert_eq!(
            scan_receipt(b"RECEIPT\nreceipt-id:subscribed\n\n\0", MAX).unwrap(),
            ReceiptScan::Receipt { len: 32, id: None }
        );
        assert_eq!(
            scan_receipt(b"RECEIPT\nreceipt-id:7", MAX).unwrap(),
            ReceiptScan::Incomplete
        );
        assert_eq!(
            scan_receipt(b"ERROR\n\n\0", MAX).unwrap(),
            ReceiptScan::Other
        );
        assert_eq!(heartbeat_len(b"\n\r\n\nMESSAGE"), 4);
        assert_eq!(heartbeat_len(b"MESSAGE"), 0);
        assert_eq!(
            heartbeat_len(b"\r"),
            0,
            "a lone CR may be the start of CRLF"
        );
    }
}
