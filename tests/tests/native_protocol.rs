//! The native protocol frame by frame against the real broker: preamble
//! handling, each performative's answer, and every kind of bad input ending
//! in Close with the matching condition while the broker keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::native::{
    Attach, Begin, Close, Declare, Detach, Discharge, End, ErrorCondition, Flow, Frame, Message,
    Open, Performative, Preamble, Role, SettleMode, Transfer,
};
use native_common::{assert_error, broker, native_addr, Raw};
use std::time::Duration;

/// A fresh connection still works: the broker kept serving.
fn still_serving(addr: std::net::SocketAddr) {
    let mut raw = Raw::open(addr);
    raw.send(Frame::new(0, Close::default()));
    let close = raw.recv();
    assert!(
        matches!(
            close.performative,
            Some(Performative::Close(Close { error: None }))
        ),
        "{close:?}"
    );
    assert!(raw.at_eof());
}

#[test]
fn preamble_is_answered_and_wrong_versions_get_ours_then_close() {
    let b = broker();
    let addr = native_addr(&b);
    let mut raw = Raw::connect(addr);
    raw.send_bytes(&Preamble::CURRENT.to_bytes());
    assert_eq!(raw.read_exact(8), b"FMQ\0\x01\x00\x00\x00");

    let mut raw = Raw::connect(addr);
    raw.send_bytes(b"FMQ\0\x02\x00\x00\x00");
    assert_eq!(raw.read_exact(8), b"FMQ\0\x01\x00\x00\x00");
    assert!(raw.at_eof(), "version 2 must be closed after our preamble");
    still_serving(addr);
}

#[test]
fn garbage_http_and_stomp_are_closed_without_reply() {
    let b = broker();
    let addr = native_addr(&b);
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"CONNECT\naccept-version:1.2\n\n\0",
        b"\x00\x01\x02\x03\x04\x05\x06\x07\x08",
    ] {
        let mut raw = Raw::connect(addr);
        raw.send_bytes(junk);
        assert!(raw.at_eof(), "not closed after {junk:?}");
        assert!(
            raw.read_exact(1).is_empty(),
            "no reply expected to {junk:?}"
        );
    }
    assert!(b.wait_for_log("not the ferromq native protocol"));
    still_serving(addr);
}

#[test]
fn every_performative_gets_its_answer() {
    let b = broker();
    let addr = native_addr(&b);
    let mut raw = Raw::open(addr);
    // A second session on channel 5, then End.
    raw.send(Frame::new(5, Begin::default()));
    let begin = raw.recv();
    assert_eq!(begin.channel, 5);
    let Some(Performative::Begin(answer)) = begin.performative else {
        panic!("{begin:?}")
    };
    assert_eq!(answer.remote_channel, Some(5));
    raw.send(Frame::new(5, End::default()));
    assert!(matches!(
        raw.recv().performative,
        Some(Performative::End(_))
    ));

    // Attach a receiver: the broker answers as sender; Flow with echo is answered.
    let attach = raw.attach(1, Role::Receiver, "/queue/perf", SettleMode::Unsettled);
    let Some(Performative::Attach(a)) = attach.performative else {
        panic!("{attach:?}")
    };
    assert_eq!(
        (a.handle, a.role(), a.address.as_str()),
        (1, Role::Sender, "/queue/perf")
    );
    raw.flow(1, 0, 7, false, true);
    let flow = raw.recv();
    let Some(Performative::Flow(f)) = flow.performative else {
        panic!("{flow:?}")
    };
    assert_eq!((f.handle, f.link_credit, f.delivery_count), (1, 7, 0));

    // Attach a sender: the broker answers as receiver and grants credit.
    let attach = raw.attach(2, Role::Sender, "/queue/perf", SettleMode::Unsettled);
    let Some(Performative::Attach(a)) = attach.performative else {
        panic!("{attach:?}")
    };
    assert_eq!(a.role(), Role::Receiver);
    let flow = raw.recv();
    let Some(Performative::Flow(f)) = flow.performative else {
        panic!("{flow:?}")
    };
    assert!(f.link_credit > 0 && f.handle == 2, "{f:?}");

    // Transfer unsettled → accepted; the message reaches the receiver link.
    raw.send(Frame::new(
        1,
        Transfer {
            handle: 2,
            delivery_id: 0,
            message: Some(Message {
                body: "hi".into(),
                ..Message::default()
            }),
            ..Transfer::default()
        },
    ));
    let mut accepted = false;
    let mut delivered = None;
    while !(accepted && delivered.is_some()) {
        match raw.recv().performative {
            Some(Performative::Disposition(d)) => {
                assert_eq!((d.role(), d.first, d.settled), (Role::Receiver, 0, true));
                accepted = true;
            }
            Some(Performative::Transfer(t)) => {
                assert_eq!((t.handle, t.settled), (1, false));
                assert_eq!(&t.message.as_ref().unwrap().body[..], b"hi");
                delivered = Some(t.delivery_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Declare, Discharge (commit), Discharge of an unknown id.
    raw.send(Frame::new(
        1,
        Declare {
            txn_id: "t1".into(),
            error: None,
        },
    ));
    let Some(Performative::Declare(d)) = raw.recv().performative else {
        panic!()
    };
    assert_eq!((d.txn_id.as_str(), d.error), ("t1", None));
    raw.send(Frame::new(
        1,
        Declare {
            txn_id: "t1".into(),
            error: None,
        },
    ));
    let Some(Performative::Declare(d)) = raw.recv().performative else {
        panic!()
    };
    assert_error(&d.error.unwrap(), ErrorCondition::IllegalState, "t1");
    raw.send(Frame::new(
        1,
        Discharge {
            txn_id: "t1".into(),
            fail: false,
            error: None,
        },
    ));
    let Some(Performative::Discharge(d)) = raw.recv().performative else {
        panic!()
    };
    assert_eq!(d.error, None);
    raw.send(Frame::new(
        1,
        Discharge {
            txn_id: "nope".into(),
            fail: true,
            error: None,
        },
    ));
    let Some(Performative::Discharge(d)) = raw.recv().performative else {
        panic!()
    };
    assert_error(&d.error.unwrap(), ErrorCondition::NotFound, "nope");

    // Detach both links; Close.
    raw.send(Frame::new(
        1,
        Detach {
            handle: 1,
            closed: true,
            error: None,
        },
    ));
    let Some(Performative::Detach(d)) = raw.recv().performative else {
        panic!()
    };
    assert_eq!((d.handle, d.closed, d.error), (1, true, None));
    raw.send(Frame::new(0, Close::default()));
    let mut closed = false;
    while let Some(f) = raw.recv_within(Duration::from_secs(5)) {
        if matches!(
            f.performative,
            Some(Performative::Close(Close { error: None }))
        ) {
            closed = true;
            break;
        }
    }
    assert!(closed && raw.at_eof());
    // The unsettled delivery went back to the queue with the connection.
    let mut again = Raw::open(addr);
    again.attach(1, Role::Receiver, "/queue/perf", SettleMode::Settled);
    again.flow(1, 0, 10, false, false);
    let Some(Performative::Transfer(t)) = again.recv().performative else {
        panic!()
    };
    let props = t.message.unwrap().properties.unwrap();
    assert!(props.redelivered && props.delivery_count == 1, "{props:?}");
}

#[test]
fn refused_attach_is_attach_then_detach_with_the_error() {
    let b = broker();
    let mut raw = Raw::open(native_addr(&b));
    raw.attach(3, Role::Sender, "/nowhere/x", SettleMode::Settled);
    let Some(Performative::Detach(d)) = raw.recv().performative else {
        panic!()
    };
    assert_error(&d.error.unwrap(), ErrorCondition::NotFound, "/nowhere/x");
    // Queue patterns are fine (tests/jms_wildcard_queues.rs); patterns
    // over temporary queues are not.
    raw.attach(4, Role::Receiver, "/temp-queue/a.*", SettleMode::Settled);
    let Some(Performative::Detach(d)) = raw.recv().performative else {
        panic!()
    };
    assert_error(&d.error.unwrap(), ErrorCondition::NotAllowed, "wildcard");
    // The connection goes on: handle 3 is free again.
    let attach = raw.attach(3, Role::Sender, "/queue/ok", SettleMode::Settled);
    assert!(matches!(attach.performative, Some(Performative::Attach(_))));
}

/// Sends `frame` on a fresh open connection and returns the Close's error.
fn close_after(
    addr: std::net::SocketAddr,
    frames: Vec<Frame>,
) -> ferromq_protocol::native::ErrorInfo {
    let mut raw = Raw::open(addr);
    for f in frames {
        raw.send(f);
    }
    raw.expect_close()
}

#[test]
fn bad_inputs_close_with_the_matching_condition_and_others_go_on() {
    let b = broker();
    let addr = native_addr(&b);
    // A bystander with a receiver link must be unaffected throughout.
    let mut bystander = Raw::open(addr);
    bystander.attach(1, Role::Receiver, "/queue/bystander", SettleMode::Settled);

    // Garbage after the preamble.
    let mut raw = Raw::open(addr);
    raw.send_bytes(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert_error(
        &raw.expect_close(),
        ErrorCondition::DecodeError,
        "not a valid native frame",
    );

    // A frame prefix over the 1 MiB limit.
    let mut raw = Raw::open(addr);
    raw.send_bytes(&[0x10, 0, 0, 0]);
    assert_error(
        &raw.expect_close(),
        ErrorCondition::DecodeError,
        "exceeds the maximum frame size",
    );

    // Something other than Open first.
    let mut raw = Raw::connect(addr);
    raw.send_bytes(&Preamble::CURRENT.to_bytes());
    raw.read_exact(8);
    raw.send(Frame::new(1, Begin::default()));
    assert_error(
        &raw.expect_close(),
        ErrorCondition::IllegalState,
        "before open",
    );

    // A second Open.
    let e = close_after(addr, vec![Frame::new(0, Open::default())]);
    assert_error(&e, ErrorCondition::IllegalState, "second open");

    // A frame on a channel without a session.
    let e = close_after(addr, vec![Frame::new(9, Flow::default())]);
    assert_error(&e, ErrorCondition::NotFound, "channel 9");

    // A frame for an unknown handle.
    let e = close_after(
        addr,
        vec![Frame::new(
            1,
            Flow {
                handle: 42,
                ..Flow::default()
            },
        )],
    );
    assert_error(&e, ErrorCondition::NotFound, "handle 42");

    // Attach on a live handle.
    let attach = |handle| {
        Frame::new(
            1,
            Attach {
                name: "x".into(),
                handle,
                role: Role::Sender.into(),
                address: "/queue/x".into(),
                ..Attach::default()
            },
        )
    };
    let e = close_after(addr, vec![attach(1), attach(1)]);
    assert_error(&e, ErrorCondition::IllegalState, "already attached");

    // A transfer without credit: a receiver link has none to give.
    let mut raw = Raw::open(addr);
    raw.attach(1, Role::Receiver, "/queue/x", SettleMode::Settled);
    raw.send(Frame::new(
        1,
        Transfer {
            handle: 1,
            ..Transfer::default()
        },
    ));
    assert_error(
        &raw.expect_close(),
        ErrorCondition::IllegalState,
        "handle 1",
    );

    // The bystander still gets messages, and new connections work.
    let mut producer = Raw::open(addr);
    producer.attach(1, Role::Sender, "/queue/bystander", SettleMode::Settled);
    producer.recv();
    producer.send(Frame::new(
        1,
        Transfer {
            handle: 1,
            settled: true,
            message: Some(Message {
                body: "still here".into(),
                ..Message::default()
            }),
            ..Transfer::default()
        },
    ));
    bystander.flow(1, 0, 5, false, false);
    let Some(Performative::Transfer(t)) = bystander.recv().performative else {
        panic!()
    };
    assert_eq!(&t.message.unwrap().body[..], b"still here");
    still_serving(addr);
}

#[test]
fn silent_client_is_closed_after_the_idle_timeout_and_heartbeats_keep_it() {
    let b = native_common::broker_with("[native]\nidle_timeout = \"1s\"\n", &[]);
    let addr = native_addr(&b);
    let mut silent = Raw::open(addr);
    // Heart-beating every 300 ms keeps a connection for 2.4 s, while the
    // silent one is closed after 1 s.
    let mut alive = Raw::open(addr);
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        alive.send(Frame::heartbeat());
    }
    assert_error(
        &silent.expect_close(),
        ErrorCondition::ResourceLimitExceeded,
        "idle timeout",
    );
    alive.send(Frame::new(0, Close::default()));
    assert!(matches!(
        alive.recv().performative,
        Some(Performative::Close(Close { error: None }))
    ));
}

#[test]
fn broker_heartbeats_at_half_the_clients_idle_timeout() {
    let b = broker();
    let mut raw = Raw::connect(native_addr(&b));
    raw.send_bytes(&Preamble::CURRENT.to_bytes());
    raw.read_exact(8);
    raw.send(Frame::new(
        0,
        Open {
            idle_timeout_ms: 400,
            ..Open::default()
        },
    ));
    raw.recv();
    // Read raw frames (recv skips heart-beats): count them over 1.1 s.
    let mut codec_buf = bytes::BytesMut::new();
    let started = std::time::Instant::now();
    let mut beats = 0;
    let mut chunk = [0u8; 256];
    while started.elapsed() < Duration::from_millis(1100) {
        if let Ok(n) = std::io::Read::read(&mut raw.stream, &mut chunk) {
            codec_buf.extend_from_slice(&chunk[..n]);
        }
        while let Some(f) = ferromq_protocol::native::NativeCodec::default()
            .decode(&mut codec_buf)
            .unwrap()
        {
            if matches!(f.performative, Some(Performative::Heartbeat(_))) {
                beats += 1;
            }
        }
    }
    assert!(
        (3..=7).contains(&beats),
        "{beats} heart-beats in 1.1 s at a 200 ms interval"
    );
}

#[test]
fn producer_credit_stops_over_the_memory_limit_and_transfers_past_it_close() {
    let b = native_common::broker_with("[destinations]\nmemory_limit = \"8KiB\"\n", &[]);
    let addr = native_addr(&b);
    let mut raw = Raw::open(addr);
    raw.attach(1, Role::Sender, "/queue/full", SettleMode::Settled);
    let Some(Performative::Flow(f)) = raw.recv().performative else {
        panic!()
    };
    let credit = u64::from(f.link_credit);
    // 1 KiB messages: the queue is over its 8 KiB limit after a few, so
    // the broker never refills the credit however many are sent.
    let body = bytes::Bytes::from(vec![b'x'; 1024]);
    for id in 0..credit {
        raw.send(Frame::new(
            1,
            Transfer {
                handle: 1,
                delivery_id: id,
                settled: true,
                message: Some(Message {
                    body: body.clone(),
                    ..Message::default()
                }),
                ..Transfer::default()
            },
        ));
    }
    assert!(
        raw.recv_within(Duration::from_millis(500)).is_none(),
        "no new credit over the limit"
    );
    // A consumer drains the queue: the producer gets credit again.
    let mut consumer = Raw::open(addr);
    consumer.attach(1, Role::Receiver, "/queue/full", SettleMode::Settled);
    consumer.flow(1, 0, u32::MAX / 2, false, false);
    let mut received = 0;
    while received < credit {
        if let Some(Performative::Transfer(_)) = consumer.recv().performative {
            received += 1;
        }
    }
    let Some(Performative::Flow(f)) = raw.recv().performative else {
        panic!()
    };
    assert_eq!((f.handle, f.delivery_count), (1, credit as u32), "{f:?}");
    assert!(f.link_credit > 0);
    // The consumer leaves; ten large messages put the queue over its limit
    // again, then exceeding what was granted closes the connection.
    consumer.send(Frame::new(0, Close::default()));
    assert!(consumer.at_eof());
    let big = |id| {
        Frame::new(
            1,
            Transfer {
                handle: 1,
                delivery_id: id,
                settled: true,
                message: Some(Message {
                    body: body.clone(),
                    ..Message::default()
                }),
                ..Transfer::default()
            },
        )
    };
    for id in 0..=u64::from(f.link_credit) {
        raw.send(big(credit + id));
    }
    let mut close = None;
    while close.is_none() {
        match raw.recv().performative {
            Some(Performative::Close(c)) => close = c.error,
            Some(Performative::Flow(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_error(
        &close.unwrap(),
        ErrorCondition::IllegalState,
        "without credit",
    );
}

#[test]
fn shutdown_closes_native_connections_with_a_reason() {
    let mut b = broker();
    let mut raw = Raw::open(native_addr(&b));
    let status = b.broker.terminate();
    assert!(status.success(), "{status:?}");
    assert_error(
        &raw.expect_close(),
        ErrorCondition::InternalError,
        "shutting down",
    );
}
