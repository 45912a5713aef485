//! Native codec tests on exact bytes: the preamble, frames written out by hand
//! from the field numbers in `protocol/native.proto`, every frame split at every
//! byte offset, and hostile input (oversized, garbage, truncated) that must give
//! errors, never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use bytes::{Bytes, BytesMut};
use ferromq_protocol::native::{
    looks_like_native, Accepted, Attach, Begin, Close, Declare, DeliveryState, Detach, Discharge,
    Disposition, End, ErrorCondition, ErrorInfo, Flow, Frame, Message, Modified, NativeCodec,
    NativeError, Open, PlainCredentials, Preamble, PreambleCheck, Properties, ProtocolVersion,
    Rejected, Released, Role, SettleMode, Transfer,
};

fn encode(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    NativeCodec::default().encode(frame, &mut buf).unwrap();
    buf.to_vec()
}

/// Decodes every frame in `buf`; asserts nothing but a partial frame is left.
fn decode_all(codec: &NativeCodec, buf: &mut BytesMut) -> Result<Vec<Frame>, NativeError> {
    let mut frames = Vec::new();
    while let Some(frame) = codec.decode(buf)? {
        frames.push(frame);
    }
    Ok(frames)
}

#[test]
fn preamble_bytes_and_checks() {
    assert_eq!(Preamble::CURRENT.to_bytes(), *b"FMQ\x00\x01\x00\x00\x00");
    let v = |major, minor, patch| ProtocolVersion {
        major,
        minor,
        patch,
    };
    let cases: [(&[u8], PreambleCheck); 9] = [
        (b"", PreambleCheck::NeedMore),
        (b"FM", PreambleCheck::NeedMore),
        (b"FMQ\x00\x01\x00", PreambleCheck::NeedMore),
        (b"FMQ\x00\x01\x00\x00\x00", PreambleCheck::Ok(v(1, 0, 0))),
        // A newer minor version of the same major interoperates; frames may follow.
        (
            b"FMQ\x00\x01\x05\x02\x00\x00\x00\x00\x02",
            PreambleCheck::Ok(v(1, 5, 2)),
        ),
        (
            b"FMQ\x00\x02\x00\x00\x00",
            PreambleCheck::Unsupported(v(2, 0, 0)),
        ),
        (
            b"FMQ\x00\x01\x00\x00\x01",
            PreambleCheck::Unsupported(v(1, 0, 0)),
        ),
        (
            b"CONNECT\naccept-version:1.2\n\n\0",
            PreambleCheck::NotNative,
        ),
        (b"GET / HTTP/1.1\r\n", PreambleCheck::NotNative),
    ];
    for (bytes, expected) in cases {
        assert_eq!(Preamble::parse(bytes), expected, "{bytes:?}");
    }
    assert_eq!(
        Preamble::parse(b"AMQP\x00\x01\x00\x00"),
        PreambleCheck::NotNative
    );
    assert_eq!(Preamble::parse(b"F\x00"), PreambleCheck::NotNative);
}

#[test]
fn stomp_listener_can_spot_a_native_client() {
    assert!(looks_like_native(&Preamble::CURRENT.to_bytes()));
    assert!(looks_like_native(b"FMQ\x00\x07\x07\x07\x00"));
    assert!(!looks_like_native(b"FMQ"), "too short to tell");
    for stomp in [&b"CONNECT\n"[..], b"STOMP\n", b"\n", b"SEND\n"] {
        assert!(!looks_like_native(stomp));
    }
}

/// Frames written out byte by byte from the .proto field numbers:
/// tag byte = field number << 3 | wire type (0 varint, 2 length-delimited).
fn literal_cases() -> Vec<(Frame, Vec<u8>)> {
    let mut transfer_bytes = vec![
        0, 0, 0, 0x1a, // length 26
        0x08, 0x01, // channel = 1
        0x42, 0x16, // Frame.transfer (8), 22 bytes
        0x10, 0x01, // delivery_id = 1
        0x20, 0x01, // settled = true
        0x32, 0x10, // Transfer.message (6), 16 bytes
        0x0a, 0x0a, // Message.properties (1), 10 bytes
        0x12, 0x08, // Properties.destination (2), 8 bytes
    ];
    transfer_bytes.extend_from_slice(b"/queue/a");
    transfer_bytes.extend_from_slice(&[0x1a, 0x02, b'h', b'i']); // Message.body (3)
    vec![
        (Frame::heartbeat(), vec![0, 0, 0, 2, 0x6a, 0x00]),
        (
            Frame::new(
                1,
                Flow {
                    handle: 2,
                    link_credit: 100,
                    drain: true,
                    ..Flow::default()
                },
            ),
            vec![
                0, 0, 0, 0x0a, 0x08, 0x01, 0x3a, 0x06, 0x08, 0x02, 0x10, 0x64, 0x20, 0x01,
            ],
        ),
        (
            Frame::close_with(ErrorCondition::NotFound, "no"),
            vec![
                0, 0, 0, 0x0a, 0x52, 0x08, 0x0a, 0x06, 0x08, 0x04, 0x12, 0x02, b'n', b'o',
            ],
        ),
        (
            Frame::new(
                0,
                Open {
                    container_id: "c".into(),
                    max_frame_size: 65536,
                    ..Open::default()
                },
            ),
            vec![
                0, 0, 0, 0x09, 0x12, 0x07, 0x0a, 0x01, b'c', 0x10, 0x80, 0x80, 0x04,
            ],
        ),
        (
            Frame::new(
                1,
                Disposition {
                    role: Role::Receiver.into(),
                    first: 5,
                    last: Some(7),
                    settled: true,
                    state: Some(DeliveryState::Accepted(Accepted {})),
                    ..Disposition::default()
                },
            ),
            vec![
                0, 0, 0, 0x0e, 0x08, 0x01, 0x4a, 0x0a, 0x08, 0x01, 0x10, 0x05, 0x18, 0x07, 0x20,
                0x01, 0x32, 0x00,
            ],
        ),
        (
            Frame::new(
                1,
                Transfer {
                    delivery_id: 1,
                    settled: true,
                    message: Some(Message {
                        properties: Some(Properties {
                            destination: "/queue/a".into(),
                            ..Properties::default()
                        }),
                        body: Bytes::from_static(b"hi"),
                        ..Message::default()
                    }),
                    ..Transfer::default()
                },
            ),
            transfer_bytes,
        ),
    ]
}

#[test]
fn frames_match_hand_written_bytes() {
    let codec = NativeCodec::default();
    for (frame, bytes) in literal_cases() {
        assert_eq!(
            encode(&frame),
            bytes,
            "encoding {}",
            frame.performative_name()
        );
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        assert!(buf.is_empty());
    }
}

/// One frame of every performative, with most fields set.
fn every_performative() -> Vec<Frame> {
    let error = || Some(ErrorInfo::new(ErrorCondition::IllegalState, "state"));
    let mut headers = std::collections::BTreeMap::new();
    headers.insert("x-trace".to_string(), "abc".to_string());
    headers.insert("empty".to_string(), String::new());
    vec![
        Frame::new(
            0,
            Open {
                container_id: "client-1".into(),
                max_frame_size: 4096,
                idle_timeout_ms: 30_000,
                credentials: Some(PlainCredentials {
                    username: "app".into(),
                    password: "secret".into(),
                }),
                offered_capabilities: vec!["a".into()],
                desired_capabilities: vec!["b".into(), "c".into()],
                hostname: "vh".into(),
            },
        ),
        Frame::new(
            1,
            Begin {
                remote_channel: Some(0),
                handle_max: 63,
            },
        ),
        Frame::new(
            1,
            Attach {
                name: "consumer-1".into(),
                handle: 4,
                role: Role::Receiver.into(),
                address: "/topic/prices".into(),
                durable_subscription: Some("sub".into()),
                selector: Some("priority > 3".into()),
                settle_mode: SettleMode::Mixed.into(),
                initial_delivery_count: 0,
                max_message_size: 1 << 20,
            },
        ),
        Frame::new(
            1,
            Flow {
                handle: 4,
                link_credit: 500,
                delivery_count: u32::MAX,
                drain: true,
                echo: true,
                available: 12,
            },
        ),
        Frame::new(
            1,
            Transfer {
                handle: 4,
                delivery_id: u64::MAX,
                delivery_tag: Bytes::from_static(&[0, 1, 2, 255]),
                settled: false,
                more: false,
                txn_id: Some("tx-1".into()),
                message: Some(Message {
                    properties: Some(Properties {
                        message_id: "ID:1".into(),
                        destination: "/queue/orders".into(),
                        persistent: true,
                        priority: Some(0),
                        expires: 1_700_000_000_000,
                        timestamp: 1_600_000_000_000,
                        correlation_id: Some(String::new()),
                        reply_to: Some("/temp-queue/r".into()),
                        content_type: Some("text/plain".into()),
                        redelivered: true,
                        delivery_count: 3,
                    }),
                    application_headers: headers,
                    body: Bytes::from_static(b"\0binary\xff body"),
                }),
            },
        ),
        Frame::new(
            1,
            Disposition {
                role: Role::Receiver.into(),
                first: 10,
                last: None,
                settled: true,
                txn_id: Some("tx-1".into()),
                state: Some(DeliveryState::Rejected(Rejected { error: error() })),
            },
        ),
        Frame::new(
            1,
            Disposition {
                state: Some(DeliveryState::Released(Released {})),
                ..Disposition::default()
            },
        ),
        Frame::new(
            1,
            Disposition {
                state: Some(DeliveryState::Modified(Modified {
                    delivery_failed: true,
                    undeliverable_here: true,
                })),
                ..Disposition::default()
            },
        ),
        Frame::new(
            1,
            Declare {
                txn_id: "tx-1".into(),
                error: None,
            },
        ),
        Frame::new(
            1,
            Discharge {
                txn_id: "tx-1".into(),
                fail: true,
                error: error(),
            },
        ),
        Frame::new(
            1,
            Detach {
                handle: 4,
                closed: true,
                error: error(),
            },
        ),
        Frame::new(1, End { error: error() }),
        Frame::heartbeat(),
        Frame::new(0, Close { error: error() }),
    ]
}

#[test]
fn every_frame_split_at_every_offset_decodes_identically() {
    let frames = every_performative();
    let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
    let codec = NativeCodec::default();
    for split in 0..=stream.len() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&stream[..split]);
        let mut decoded = decode_all(&codec, &mut buf).unwrap();
        buf.extend_from_slice(&stream[split..]);
        decoded.extend(decode_all(&codec, &mut buf).unwrap());
        assert_eq!(decoded, frames, "split at {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn byte_at_a_time_decodes_every_frame() {
    let frames = every_performative();
    let codec = NativeCodec::default();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in frames.iter().flat_map(encode) {
        buf.extend_from_slice(&[byte]);
        decoded.extend(decode_all(&codec, &mut buf).unwrap());
    }
    assert_eq!(decoded, frames);
}

#[test]
fn decoded_body_shares_the_read_buffer() {
    let frame = &every_performative()[4];
    let mut buf = BytesMut::from(&encode(frame)[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let decoded = NativeCodec::default().decode(&mut buf).unwrap().unwrap();
    let Some(ferromq_protocol::native::Performative::Transfer(t)) = decoded.performative else {
        panic!("not a transfer");
    };
    let body = t.message.unwrap().body;
    assert_eq!(&body[..], b"\0binary\xff body");
    assert!(range.contains(&(body.as_ptr() as usize)), "body was copied");
}

#[test]
fn oversized_frame_is_refused_from_its_prefix_alone() {
    let codec = NativeCodec::new(1024);
    let mut buf = BytesMut::from(&[0x00, 0x00, 0x04, 0x00][..]); // 1024 + 4 > 1024
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        NativeError::FrameTooLarge {
            size: 1028,
            limit: 1024
        }
    );
    assert_eq!(err.condition(), ErrorCondition::DecodeError);
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(NativeError::FrameTooLarge { .. })
    ));
    // A frame of exactly the limit is fine.
    let mut buf = BytesMut::from(&[0x00, 0x00, 0x03, 0xfc][..]);
    assert_eq!(codec.decode(&mut buf), Ok(None));
    assert!(buf.capacity() >= 1024, "room reserved for the rest");
}

#[test]
fn a_stalled_large_frame_does_not_pin_its_whole_size() {
    let codec = NativeCodec::new(16 * 1024 * 1024);
    // Announces a frame just under 16 MiB, then nothing.
    let mut buf = BytesMut::from(&[0x00, 0xff, 0xff, 0x00, 0x08][..]);
    assert_eq!(codec.decode(&mut buf), Ok(None));
    assert!(buf.capacity() >= 64 * 1024);
    assert!(buf.capacity() < 1024 * 1024, "reserved {}", buf.capacity());
    assert_eq!(buf.len(), 5, "nothing consumed from a partial frame");
}

#[test]
fn stomp_or_http_on_the_native_port_is_an_error() {
    let codec = NativeCodec::default();
    for text in [
        &b"CONNECT\naccept-version:1.2\n\n\0"[..],
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut buf = BytesMut::from(text);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, NativeError::FrameTooLarge { .. }), "{err}");
    }
}

#[test]
fn garbage_frames_are_decode_errors() {
    let codec = NativeCodec::default();
    let cases: [(&[u8], &str); 6] = [
        // Empty frame: no performative.
        (&[0, 0, 0, 0], "no known performative"),
        // Only an unknown field 14 (a performative from the future).
        (&[0, 0, 0, 2, 0x72, 0x00], "no known performative"),
        // Invalid wire type 7.
        (&[0, 0, 0, 1, 0x0f], "not a valid native frame"),
        // Truncated varint.
        (&[0, 0, 0, 2, 0x08, 0xff], "not a valid native frame"),
        // Length-delimited field longer than the frame.
        (&[0, 0, 0, 2, 0x12, 0x10], "not a valid native frame"),
        // Open.container_id that is not UTF-8.
        (
            &[0, 0, 0, 5, 0x12, 0x03, 0x0a, 0x01, 0xff],
            "not a valid native frame",
        ),
    ];
    for (bytes, expected) in cases {
        let mut buf = BytesMut::from(bytes);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(err.to_string().contains(expected), "{bytes:?}: {err}");
        assert_eq!(err.condition(), ErrorCondition::DecodeError);
    }
}

#[test]
fn invalid_enum_value_is_refused() {
    // Attach with role = 5.
    let mut buf = BytesMut::from(&[0, 0, 0, 4, 0x2a, 0x02, 0x18, 0x05][..]);
    let err = NativeCodec::default().decode(&mut buf).unwrap_err();
    assert!(err.to_string().contains("attach.role"), "{err}");
}
