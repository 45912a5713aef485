#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
//! STOMP codec tests: byte literals, frames split at every offset, limits and
//! property round trips.

use bytes::BytesMut;
use ferromq_protocol::stomp::{
    encode_frame, Command, Decoder, Frame, FrameError, FrameWriter, Limits, Version, FRAME_END,
};
use proptest::prelude::*;

fn decoder(version: Version) -> Decoder {
    let mut d = Decoder::new(Limits::default());
    d.set_version(version);
    d
}

/// Decodes everything in `bytes` fed in one piece.
fn decode_all(bytes: &[u8], version: Version) -> Result<Vec<Frame>, FrameError> {
    let mut d = decoder(version);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

/// Decodes `bytes` fed in two pieces split at `at`.
fn decode_split(bytes: &[u8], at: usize, version: Version) -> Result<Vec<Frame>, FrameError> {
    let mut d = decoder(version);
    let mut buf = BytesMut::from(&bytes[..at]);
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf)? {
        out.push(f);
    }
    buf.extend_from_slice(&bytes[at..]);
    while let Some(f) = d.decode(&mut buf)? {
        out.push(f);
    }
    assert!(buf.iter().all(|&b| b == b'\n' || b == b'\r'));
    Ok(out)
}

#[test]
fn decodes_connect_with_lf() {
    let frames = decode_all(
        b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0",
        Version::V1_0,
    )
    .unwrap();
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.command, Command::Connect);
    assert_eq!(f.get("accept-version"), Some("1.2"));
    assert_eq!(f.get("host"), Some("localhost"));
    assert!(f.body.is_empty());
}

#[test]
fn decodes_crlf_line_endings() {
    let frames = decode_all(
        b"SEND\r\ndestination:/queue/a\r\n\r\nhello\0",
        Version::V1_2,
    )
    .unwrap();
    assert_eq!(frames[0].command, Command::Send);
    assert_eq!(frames[0].get("destination"), Some("/queue/a"));
    assert_eq!(&frames[0].body[..], b"hello");
}

#[test]
fn skips_heartbeats_between_frames() {
    let bytes =
        b"\n\r\n\nSEND\ndestination:/queue/a\n\nx\0\n\n\r\nSEND\ndestination:/queue/b\n\ny\0\n";
    let frames = decode_all(bytes, Version::V1_1).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[1].body[..], b"y");
}

#[test]
fn content_length_body_may_contain_nul() {
    let frames = decode_all(
        b"SEND\ndestination:/queue/a\ncontent-length:5\n\na\0b\0c\0",
        Version::V1_2,
    )
    .unwrap();
    assert_eq!(&frames[0].body[..], b"a\0b\0c");
}

#[test]
fn content_length_without_nul_is_an_error() {
    let err = decode_all(
        b"SEND\ndestination:/q\ncontent-length:2\n\nabc\0",
        Version::V1_2,
    )
    .unwrap_err();
    assert_eq!(err, FrameError::MissingNul);
}

#[test]
fn repeated_headers_first_wins() {
    let frames = decode_all(
        b"SEND\ndestination:/queue/a\ndestination:/queue/b\n\n\0",
        Version::V1_2,
    )
    .unwrap();
    assert_eq!(frames[0].get("destination"), Some("/queue/a"));
    assert_eq!(frames[0].headers.len(), 2);
}

#[test]
fn unescapes_headers_in_1_1_and_1_2_but_not_connect() {
    let f = &decode_all(b"SEND\na\\cb:c\\\\d\\ne\n\n\0", Version::V1_1).unwrap()[0];
    assert_eq!(f.get("a:b"), Some("c\\d\ne"));
    let f = &decode_all(b"SEND\nk:x\\ry\n\n\0", Version::V1_2).unwrap()[0];
    assert_eq!(f.get("k"), Some("x\ry"));
    // 1.1 does not define \r.
    assert_eq!(
        decode_all(b"SEND\nk:x\\ry\n\n\0", Version::V1_1).unwrap_err(),
        FrameError::InvalidEscape('r')
    );
    // 1.0 and CONNECT never unescape.
    let f = &decode_all(b"SEND\nk:a\\nb\n\n\0", Version::V1_0).unwrap()[0];
    assert_eq!(f.get("k"), Some("a\\nb"));
    let f = &decode_all(b"CONNECT\npasscode:p\\cw\n\n\0", Version::V1_2).unwrap()[0];
    assert_eq!(f.get("passcode"), Some("p\\cw"));
    // Header values may contain ':' after the first one.
    let f = &decode_all(b"CONNECT\nlogin:a:b\n\n\0", Version::V1_0).unwrap()[0];
    assert_eq!(f.get("login"), Some("a:b"));
}

#[test]
fn rejects_unknown_commands_and_bad_headers() {
    assert!(matches!(
        decode_all(b"GET / HTTP/1.1\nHost: x\n\n\0", Version::V1_0),
        Err(FrameError::UnknownCommand(_))
    ));
    assert!(matches!(
        decode_all(b"SEND\nnocolon\n\n\0", Version::V1_0),
        Err(FrameError::MalformedHeader(_))
    ));
    assert!(matches!(
        decode_all(b"SEND\ncontent-length:abc\n\n\0", Version::V1_0),
        Err(FrameError::BadContentLength(_))
    ));
    assert_eq!(
        decode_all(b"SEND\nk:\xff\n\n\0", Version::V1_2).unwrap_err(),
        FrameError::InvalidUtf8
    );
}

#[test]
fn enforces_limits_without_waiting_for_the_whole_frame() {
    let limits = Limits {
        max_frame_size: 1024,
        max_headers: 3,
        max_header_line: 64,
    };
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:5000\n\n"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        FrameError::FrameTooLarge { limit: 1024 }
    );

    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        FrameError::TooManyHeaders { limit: 3 }
    );

    // An endless header line is refused once it passes the limit, before any NUL.
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\nk:"[..]);
    buf.extend_from_slice(&[b'x'; 100]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        FrameError::HeaderLineTooLong { limit: 64 }
    );

    // A body without content-length and without NUL is refused at the frame limit.
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
    assert!(d.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&[b'x'; 2000]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        FrameError::FrameTooLarge { limit: 1024 }
    );
}

#[test]
fn partial_frames_need_more_bytes() {
    let bytes = b"SEND\ndestination:/queue/a\ncontent-length:3\n\nabc\0";
    for end in 0..bytes.len() {
        let mut d = decoder(Version::V1_2);
        let mut buf = BytesMut::from(&bytes[..end]);
        assert_eq!(d.decode(&mut buf).unwrap(), None, "prefix of {end} bytes");
    }
}

#[test]
fn every_split_point_decodes_the_same() {
    let samples: &[&[u8]] = &[
        b"CONNECT\r\naccept-version:1.0,1.1,1.2\r\nhost:/\r\nheart-beat:1000,1000\r\n\r\n\0\n",
        b"SEND\ndestination:/queue/a\ncontent-length:4\n\n\0\0\0\0\0\n\nSEND\ndestination:/topic/b\n\nno length\0",
        b"\n\nSUBSCRIBE\nid:0\ndestination:/queue/x\nack:client-individual\n\n\0ACK\nid:1\n\n\0",
        b"SEND\nk:a\\cb\\\\c\\nd\\re\n\nbody\0",
    ];
    for bytes in samples {
        let whole = decode_all(bytes, Version::V1_2).unwrap();
        assert!(!whole.is_empty());
        for at in 0..=bytes.len() {
            assert_eq!(
                decode_split(bytes, at, Version::V1_2).unwrap(),
                whole,
                "split at {at}"
            );
        }
    }
}

#[test]
fn byte_by_byte_feeding_decodes_the_same() {
    let bytes = b"SEND\ndestination:/queue/a\n\nhello\0\nSEND\ncontent-length:2\n\nhi\0";
    let whole = decode_all(bytes, Version::V1_2).unwrap();
    let mut d = decoder(Version::V1_2);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in bytes.iter() {
        buf.extend_from_slice(&[b]);
        while let Some(f) = d.decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    assert_eq!(out, whole);
}

#[test]
fn encodes_with_escaping_and_content_length() {
    let frame = Frame::new(Command::Message)
        .header("k:1", "a\nb\\c")
        .body("xyz");
    let mut buf = BytesMut::new();
    encode_frame(&frame, Version::V1_2, &mut buf);
    assert_eq!(
        &buf[..],
        b"MESSAGE\nk\\c1:a\\nb\\\\c\ncontent-length:3\n\nxyz\0\n"
    );

    let mut buf = BytesMut::new();
    encode_frame(
        &Frame::new(Command::Connected).header("server", "a:b"),
        Version::V1_2,
        &mut buf,
    );
    assert_eq!(&buf[..], b"CONNECTED\nserver:a:b\n\n\0\n");
}

#[test]
fn every_encoded_frame_ends_with_nul_and_lf() {
    let mut buf = BytesMut::new();
    let mut w = FrameWriter::begin(&mut buf, Command::Message, Version::V1_2);
    w.header("subscription", "0");
    w.finish(b"a\0b");
    assert_eq!(
        &buf[..],
        b"MESSAGE\nsubscription:0\ncontent-length:3\n\na\0b\0\n"
    );
    assert_eq!(FRAME_END, b"\0\n");
    // Without a body (no content-length), too.
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame::new(Command::Receipt).header("receipt-id", "r"),
        Version::V1_0,
        &mut buf,
    );
    assert_eq!(&buf[..], b"RECEIPT\nreceipt-id:r\n\n\0\n");
}

#[test]
fn eols_after_the_nul_are_taken_with_the_frame() {
    let mut d = decoder(Version::V1_2);
    let mut buf = BytesMut::from(&b"RECEIPT\nreceipt-id:1\n\n\0\n\r\nMESSAGE\n\n\0\n"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap().unwrap().command,
        Command::Receipt
    );
    assert_eq!(&buf[..], b"MESSAGE\n\n\0\n");
    assert_eq!(
        d.decode(&mut buf).unwrap().unwrap().command,
        Command::Message
    );
    assert!(buf.is_empty(), "{buf:?}");
    // A lone CR may be the start of a CRLF: it waits for the next call.
    let mut buf = BytesMut::from(&b"RECEIPT\n\n\0\r"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap().unwrap().command,
        Command::Receipt
    );
    assert_eq!(&buf[..], b"\r");
}

#[test]
fn a_message_then_a_receipt_written_back_to_back_decode_as_two_frames() {
    // What PHP's extension reads: after the MESSAGE's content-length body,
    // NUL and LF, and the RECEIPT starts right after them.
    let mut buf = BytesMut::new();
    encode_frame(
        &Frame::new(Command::Message)
            .header("destination", "/queue/a")
            .body("hello"),
        Version::V1_2,
        &mut buf,
    );
    let message_len = buf.len();
    encode_frame(
        &Frame::new(Command::Receipt).header("receipt-id", "r"),
        Version::V1_2,
        &mut buf,
    );
    assert_eq!(&buf[message_len - 2..message_len + 7], b"\0\nRECEIPT");
    let frames = decode_all(&buf, Version::V1_2).unwrap();
    let commands: Vec<_> = frames.iter().map(|f| f.command).collect();
    assert_eq!(commands, [Command::Message, Command::Receipt]);
    assert_eq!(&frames[0].body[..], b"hello");
    assert_eq!(frames[1].get("receipt-id"), Some("r"));
}

fn header_text() -> impl Strategy<Value = String> {
    // Printable text plus the characters escaping must handle.
    proptest::string::string_regex("[a-zA-Z0-9 _./:\\\\\\n\\r-]{0,20}").unwrap()
}

proptest! {
    #[test]
    fn round_trip(
        command in prop_oneof![Just(Command::Send), Just(Command::Message), Just(Command::Ack), Just(Command::Error)],
        headers in proptest::collection::vec((header_text().prop_filter("name", |s| !s.is_empty()), header_text()), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        split in 0usize..400,
    ) {
        let mut frame = Frame::new(command).body(body);
        for (n, v) in &headers {
            if n != "content-length" {
                frame = frame.header(n, v);
            }
        }
        let mut buf = BytesMut::new();
        encode_frame(&frame, Version::V1_2, &mut buf);
        let bytes = buf.to_vec();
        let decoded = decode_split(&bytes, split.min(bytes.len()), Version::V1_2).unwrap();
        prop_assert_eq!(decoded.len(), 1);
        let got = &decoded[0];
        prop_assert_eq!(got.command, frame.command);
        prop_assert_eq!(&got.body, &frame.body);
        let want: Vec<_> = frame.headers.iter().collect();
        let have: Vec<_> = got.headers.iter().filter(|(n, _)| *n != "content-length").collect();
        prop_assert_eq!(have, want);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut d = Decoder::new(Limits { max_frame_size: 256, max_headers: 8, max_header_line: 64 });
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..10 {
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    }
}

#[test]
fn a_sized_body_says_how_many_bytes_it_still_wants() {
    let mut d = decoder(Version::V1_2);
    let head = b"SEND\ndestination:/queue/a\ncontent-length:1000\n\n";
    let mut buf = BytesMut::from(&head[..head.len() - 1]);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert_eq!(d.bytes_wanted(buf.len()), None, "the head is not complete");
    buf.extend_from_slice(b"\n");
    buf.extend_from_slice(&[b'x'; 300]);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    // 700 more body bytes and the NUL.
    assert_eq!(d.bytes_wanted(buf.len()), Some(701));
    buf.extend_from_slice(&[b'x'; 700]);
    buf.extend_from_slice(b"\0");
    let frame = d.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.body.len(), 1000);
    assert_eq!(d.bytes_wanted(buf.len()), None, "the next frame is unknown");
    // Without a content-length nothing is known in advance.
    let mut buf = BytesMut::from(&b"SEND\ndestination:/queue/a\n\nabc"[..]);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert_eq!(d.bytes_wanted(buf.len()), None);
}

#[test]
fn a_head_finished_apart_from_its_body_is_the_same_frame() {
    let body = vec![b'z'; 70_000];
    for version in Version::ALL {
        let mut whole = BytesMut::new();
        let mut w = FrameWriter::begin(&mut whole, Command::Message, version);
        w.header("destination", "/queue/a");
        w.finish(&body);
        let mut apart = BytesMut::new();
        let mut w = FrameWriter::begin(&mut apart, Command::Message, version);
        w.header("destination", "/queue/a");
        w.finish_head(body.len());
        apart.extend_from_slice(&body);
        apart.extend_from_slice(FRAME_END);
        assert_eq!(whole, apart, "{version:?}");
        let frames = decode_all(&apart, version).unwrap();
        assert_eq!(frames[0].body.len(), body.len());
    }
    let mut empty = BytesMut::new();
    FrameWriter::begin(&mut empty, Command::Message, Version::V1_2).finish_head(0);
    assert_eq!(&empty[..], b"MESSAGE\n\n", "no content-length for no body");
}
