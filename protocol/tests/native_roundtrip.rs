//! Property tests of the native codec: every performative with arbitrary field
//! values survives encode → decode (also when the stream is cut anywhere), large
//! transfers survive split → reassemble within the frame limit, and arbitrary
//! bytes never make the decoder or reassembler panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use bytes::{Bytes, BytesMut};
use ferromq_protocol::native::stomp_mapping::is_reserved_header;
use ferromq_protocol::native::{
    message_from_stomp, split_transfer, stomp_headers_from, Accepted, Attach, Begin, Close,
    Declare, DeliveryState, Detach, Discharge, Disposition, End, ErrorCondition, ErrorInfo, Flow,
    Frame, Heartbeat, Message, Modified, NativeCodec, Open, Performative, PlainCredentials,
    Properties, Reassembler, Rejected, Released, Role, SettleMode, Transfer, MAX_PRIORITY,
    MIN_MAX_FRAME_SIZE,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Mostly ASCII, sometimes any Unicode (strings must stay valid UTF-8 on the wire).
    prop_oneof![3 => "[ -~]{0,24}", 1 => any::<String>()]
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn error_info() -> impl Strategy<Value = Option<ErrorInfo>> {
    option::of(
        (prop::sample::select(ErrorCondition::ALL.to_vec()), text())
            .prop_map(|(c, d)| ErrorInfo::new(c, d)),
    )
}

fn role() -> impl Strategy<Value = i32> {
    prop_oneof![Just(Role::Sender), Just(Role::Receiver)].prop_map(i32::from)
}

fn open() -> impl Strategy<Value = Open> {
    (
        text(),
        prop_oneof![Just(0u32), MIN_MAX_FRAME_SIZE..=u32::MAX],
        any::<u32>(),
        option::of(
            (text(), text())
                .prop_map(|(username, password)| PlainCredentials { username, password }),
        ),
        vec(text(), 0..4),
        vec(text(), 0..4),
        text(),
    )
        .prop_map(
            |(container_id, max, idle, credentials, offered, desired, hostname)| Open {
                container_id,
                max_frame_size: max,
                idle_timeout_ms: idle,
                credentials,
                offered_capabilities: offered,
                desired_capabilities: desired,
                hostname,
            },
        )
}

fn attach() -> impl Strategy<Value = Attach> {
    (
        (text(), any::<u32>(), role(), text()),
        (
            option::of(text()),
            option::of(text()),
            0i32..3,
            any::<u32>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |((name, handle, role, address), (durable, selector, settle, idc, max))| Attach {
                name,
                handle,
                role,
                address,
                durable_subscription: durable,
                selector,
                settle_mode: settle,
                initial_delivery_count: idc,
                max_message_size: max,
            },
        )
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(handle, link_credit, delivery_count, drain, echo, available)| Flow {
                handle,
                link_credit,
                delivery_count,
                drain,
                echo,
                available,
            },
        )
}

fn properties() -> impl Strategy<Value = Properties> {
    (
        (text(), text(), any::<bool>(), option::of(0..=MAX_PRIORITY)),
        (any::<u64>(), any::<u64>(), option::of(text())),
        (
            option::of(text()),
            option::of(text()),
            any::<bool>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (message_id, destination, persistent, priority),
                (expires, timestamp, correlation_id),
                (reply_to, content_type, redelivered, delivery_count),
            )| Properties {
                message_id,
                destination,
                persistent,
                priority,
                expires,
                timestamp,
                correlation_id,
                reply_to,
                content_type,
                redelivered,
                delivery_count,
            },
        )
}

fn message(max_body: usize) -> impl Strategy<Value = Message> {
    (
        option::of(properties()),
        btree_map(text(), text(), 0..5),
        bytes(max_body),
    )
        .prop_map(|(properties, application_headers, body)| Message {
            properties,
            application_headers,
            body,
        })
}

fn transfer(max_body: usize) -> impl Strategy<Value = Transfer> {
    (
        (any::<u32>(), any::<u64>(), bytes(32)),
        (any::<bool>(), any::<bool>()),
        option::of(message(max_body)),
        option::of(text()),
    )
        .prop_map(
            |((handle, delivery_id, delivery_tag), (settled, more), message, txn_id)| Transfer {
                handle,
                delivery_id,
                delivery_tag,
                settled,
                more,
                message,
                txn_id,
            },
        )
}

fn delivery_state() -> impl Strategy<Value = Option<DeliveryState>> {
    option::of(prop_oneof![
        Just(DeliveryState::Accepted(Accepted {})),
        error_info().prop_map(|error| DeliveryState::Rejected(Rejected { error })),
        Just(DeliveryState::Released(Released {})),
        (any::<bool>(), any::<bool>()).prop_map(|(delivery_failed, undeliverable_here)| {
            DeliveryState::Modified(Modified {
                delivery_failed,
                undeliverable_here,
            })
        }),
    ])
}

fn disposition() -> impl Strategy<Value = Disposition> {
    (
        role(),
        any::<u64>(),
        option::of(any::<u64>()),
        any::<bool>(),
        option::of(text()),
        delivery_state(),
    )
        .prop_map(|(role, first, span, settled, txn_id, state)| Disposition {
            role,
            first,
            // last >= first, which validation requires.
            last: span.map(|s| first.saturating_add(s % 1000)),
            settled,
            txn_id,
            state,
        })
}

fn performative() -> impl Strategy<Value = Performative> {
    prop_oneof![
        open().prop_map(Performative::Open),
        (option::of(any::<u32>()), any::<u32>()).prop_map(|(remote_channel, handle_max)| {
            Performative::Begin(Begin {
                remote_channel,
                handle_max,
            })
        }),
        error_info().prop_map(|error| Performative::End(End { error })),
        attach().prop_map(Performative::Attach),
        (any::<u32>(), any::<bool>(), error_info()).prop_map(|(handle, closed, error)| {
            Performative::Detach(Detach {
                handle,
                closed,
                error,
            })
        }),
        flow().prop_map(Performative::Flow),
        transfer(256).prop_map(Performative::Transfer),
        disposition().prop_map(Performative::Disposition),
        error_info().prop_map(|error| Performative::Close(Close { error })),
        (text(), error_info())
            .prop_map(|(txn_id, error)| Performative::Declare(Declare { txn_id, error })),
        (text(), any::<bool>(), error_info()).prop_map(|(txn_id, fail, error)| {
            Performative::Discharge(Discharge {
                txn_id,
                fail,
                error,
            })
        }),
        Just(Performative::Heartbeat(Heartbeat {})),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u32>(), performative()).prop_map(|(channel, p)| Frame::new(channel, p))
}

/// Shortens `s` to at most `max` bytes, at a character boundary.
fn clip(s: &mut String, max: usize) {
    let end = (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.truncate(end);
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let codec = NativeCodec::default();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).unwrap();
    }
    buf.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_performative_round_trips(frame in frame()) {
        let codec = NativeCodec::default();
        let mut buf = BytesMut::from(&encode_all(std::slice::from_ref(&frame))[..]);
        prop_assert_eq!(codec.decode(&mut buf), Ok(Some(frame)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_stream_cut_anywhere_decodes_the_same(frames in vec(frame(), 1..6), cut in any::<prop::sample::Index>()) {
        let codec = NativeCodec::default();
        let stream = encode_all(&frames);
        let cut = cut.index(stream.len() + 1);
        let mut buf = BytesMut::from(&stream[..cut]);
        let mut decoded = Vec::new();
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            decoded.push(f);
        }
        buf.extend_from_slice(&stream[cut..]);
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            decoded.push(f);
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn split_transfers_reassemble_within_the_frame_limit(
        mut original in transfer(20_000),
        max_frame_size in 512usize..4096,
    ) {
        original.more = false;
        // Keep properties and headers small enough to fit a 512-byte frame.
        if let Some(m) = original.message.as_mut() {
            m.application_headers.retain(|k, v| k.len() + v.len() < 40);
            // (worst case then: 5 strings of 20 bytes, 2 headers, a 32-byte tag)
            while m.application_headers.len() > 2 {
                m.application_headers.pop_first();
            }
            if let Some(p) = m.properties.as_mut() {
                for s in [&mut p.message_id, &mut p.destination] {
                    clip(s, 20);
                }
                for s in [&mut p.correlation_id, &mut p.reply_to, &mut p.content_type].into_iter().flatten() {
                    clip(s, 20);
                }
            }
        }
        if let Some(t) = original.txn_id.as_mut() {
            clip(t, 20);
        }
        let mut codec = NativeCodec::default();
        codec.set_max_outbound_frame_size(max_frame_size as u32);
        codec.set_max_inbound_frame_size(max_frame_size as u32);
        let mut wire = BytesMut::new();
        for frame in split_transfer(7, original.clone(), max_frame_size).unwrap() {
            codec.encode(&frame, &mut wire).unwrap();
        }
        let mut reassembler = Reassembler::new(20_000);
        let mut whole = None;
        while let Some(frame) = codec.decode(&mut wire).unwrap() {
            prop_assert_eq!(frame.channel, 7);
            prop_assert!(whole.is_none(), "frames after the last piece");
            let Some(Performative::Transfer(t)) = frame.performative else {
                return Err(TestCaseError::fail("not a transfer"));
            };
            whole = reassembler.push(t).unwrap();
        }
        // A transfer without a message comes back without one only if it was not split.
        let mut expected = original;
        if whole.as_ref().is_some_and(|w| w.message.is_some()) {
            expected.message.get_or_insert_with(Message::default);
        }
        prop_assert_eq!(whole, Some(expected));
    }

    #[test]
    fn native_to_stomp_to_native_keeps_the_message(mut original in message(64)) {
        let headers = stomp_headers_from(&original);
        let back = message_from_stomp(&headers, original.body.clone()).unwrap();
        // What the mapping documents as not carried: STOMP has no delivery count,
        // reserved names cannot be application headers, and a STOMP message
        // always has (possibly default) properties.
        original.application_headers.retain(|k, _| !is_reserved_header(k));
        let properties = original.properties.get_or_insert_with(Properties::default);
        properties.delivery_count = 0;
        prop_assert_eq!(back, original);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..512), max in 0u32..2048) {
        let codec = NativeCodec::new(max);
        let mut buf = BytesMut::from(&data[..]);
        let mut reassembler = Reassembler::new(1024);
        // Each decoded frame consumes at least its 4-byte prefix, so this ends.
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            if let Some(Performative::Transfer(t)) = frame.performative {
                let _ = reassembler.push(t);
            }
        }
    }

    #[test]
    fn flipped_bytes_give_a_frame_or_an_error(frame in frame(), at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let mut bytes = encode_all(std::slice::from_ref(&frame));
        let at = at.index(bytes.len());
        bytes[at] ^= xor;
        let codec = NativeCodec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        // Any outcome but a panic is fine; a decoded frame must re-encode.
        if let Ok(Some(decoded)) = codec.decode(&mut buf) {
            let mut out = BytesMut::new();
            prop_assert!(codec.encode(&decoded, &mut out).is_ok());
        }
    }
}

#[test]
fn settle_mode_strategy_covers_every_mode() {
    // Guards the `0i32..3` range in `attach()` against a new SettleMode variant.
    let modes: Vec<bool> = (0..4).map(SettleMode::is_valid).collect();
    assert_eq!(modes, [true, true, true, false]);
}
