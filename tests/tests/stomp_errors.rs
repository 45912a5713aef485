//! Protocol errors through the real broker: each bad input gets exactly one
//! ERROR frame with a `message` header (and `receipt-id` when the frame had a
//! `receipt`), then the connection closes, and the broker keeps serving
//! other and new clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};

/// A bystander connected before the error must be unaffected, and a new
/// client must work afterwards.
fn still_serving(broker: &Broker, bystander: &mut Client) {
    bystander.send_message("/queue/bystander", "unaffected", &[]);
    let mut fresh = broker.client();
    fresh.subscribe("s", "/queue/bystander", "auto");
    let m = fresh.recv();
    assert_eq!(&m.body[..], b"unaffected");
}

/// Sends `bytes` on a fresh connection (after CONNECT when `connected`) and
/// returns the single ERROR frame.
fn error_for(broker: &Broker, connected: bool, bytes: &[u8]) -> Frame {
    let mut c = if connected {
        broker.client()
    } else {
        broker.raw()
    };
    c.send_raw(bytes);
    c.expect_error()
}

fn message(e: &Frame) -> &str {
    e.get("message").unwrap()
}

#[test]
fn garbage_before_connect() {
    let broker = Broker::start();
    let mut bystander = broker.client();
    let e = error_for(
        &broker,
        false,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\n\n\0",
    );
    assert!(!message(&e).is_empty());
    still_serving(&broker, &mut bystander);
}

#[test]
fn garbage_after_connect() {
    let broker = Broker::start();
    let mut bystander = broker.client();
    let e = error_for(&broker, true, b"hello broker\nhow are you\n\n\0");
    assert!(message(&e).contains("hello broker"), "{e:?}");
    still_serving(&broker, &mut bystander);
}

#[test]
fn unknown_command() {
    let broker = Broker::start();
    let mut bystander = broker.client();
    let e = error_for(&broker, true, b"PUBLISH\ndestination:/queue/a\n\nx\0");
    assert!(message(&e).contains("PUBLISH"), "{e:?}");
    still_serving(&broker, &mut bystander);
}

#[test]
fn lowercase_command_is_unknown() {
    let broker = Broker::start();
    let e = error_for(&broker, true, b"send\ndestination:/queue/a\n\nx\0");
    assert!(message(&e).contains("send"), "{e:?}");
}

#[test]
fn header_line_without_colon() {
    let broker = Broker::start();
    let e = error_for(&broker, true, b"SEND\ndestination:/queue/a\nnocolon\n\nx\0");
    assert!(message(&e).contains("nocolon"), "{e:?}");
}

#[test]
fn bad_content_length() {
    let broker = Broker::start();
    let e = error_for(
        &broker,
        true,
        b"SEND\ndestination:/queue/a\ncontent-length:ten\n\nx\0",
    );
    assert!(message(&e).contains("content-length"), "{e:?}");
}

#[test]
fn content_length_body_not_followed_by_nul() {
    let broker = Broker::start();
    let e = error_for(
        &broker,
        true,
        b"SEND\ndestination:/queue/a\ncontent-length:2\n\nabc\0",
    );
    assert!(message(&e).contains("NUL"), "{e:?}");
}

#[test]
fn missing_required_headers_echo_the_receipt() {
    let broker = Broker::start();
    let mut bystander = broker.client();
    let cases: [(Frame, &str); 5] = [
        (Frame::new(Command::Send).body("x"), "destination"),
        (
            Frame::new(Command::Subscribe).header("id", "s"),
            "destination",
        ),
        (
            Frame::new(Command::Subscribe).header("destination", "/queue/a"),
            "id",
        ),
        (Frame::new(Command::Unsubscribe), "id"),
        (Frame::new(Command::Commit), "transaction"),
    ];
    for (frame, header) in cases {
        let command = frame.command;
        let mut c = broker.client();
        c.send(frame.header("receipt", "r-42"));
        let e = c.expect_error();
        assert_eq!(e.get("receipt-id"), Some("r-42"), "{command}: {e:?}");
        assert!(message(&e).contains(header), "{command}: {e:?}");
    }
    still_serving(&broker, &mut bystander);
}

#[test]
fn frame_before_connect() {
    let broker = Broker::start();
    let mut bystander = broker.client();
    let e = error_for(
        &broker,
        false,
        b"SEND\ndestination:/queue/a\nreceipt:early\n\nx\0",
    );
    assert!(message(&e).contains("CONNECT"), "{e:?}");
    assert_eq!(e.get("receipt-id"), Some("early"));
    still_serving(&broker, &mut bystander);
}

#[test]
fn connect_twice() {
    let broker = Broker::start();
    let e = error_for(&broker, true, b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    assert!(message(&e).contains("CONNECT"), "{e:?}");
}

#[test]
fn server_frame_from_a_client() {
    let broker = Broker::start();
    let e = error_for(&broker, true, b"MESSAGE\ndestination:/queue/a\n\nx\0");
    assert!(message(&e).contains("MESSAGE"), "{e:?}");
}

#[test]
fn invalid_subscription_headers() {
    let broker = Broker::start();
    for (frame, needle) in [
        (
            Frame::new(Command::Subscribe)
                .header("id", "s")
                .header("destination", "/queue/a")
                .header("ack", "sometimes"),
            "sometimes",
        ),
        (
            Frame::new(Command::Unsubscribe).header("id", "never-subscribed"),
            "never-subscribed",
        ),
        (
            Frame::new(Command::Send)
                .header("destination", "/queue/a")
                .header("priority", "high"),
            "priority",
        ),
    ] {
        let mut c = broker.client();
        c.send(frame);
        let e = c.expect_error();
        assert!(message(&e).contains(needle), "{e:?}");
    }
}

#[test]
fn duplicate_subscription_id() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("same", "/queue/a", "auto");
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "same")
            .header("destination", "/queue/b"),
    );
    let e = c.expect_error();
    assert!(message(&e).contains("same"), "{e:?}");
}

#[test]
fn native_protocol_preamble_on_the_stomp_port() {
    let broker = Broker::start();
    let mut bystander = broker.client();
    let e = error_for(&broker, false, b"FMQ\0\x01\0\0\0");
    assert!(message(&e).contains("native"), "{e:?}");
    still_serving(&broker, &mut bystander);
}

#[test]
fn http_request_on_the_stomp_port() {
    let broker = Broker::start();
    let e = error_for(&broker, false, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(message(&e).contains("GET"), "{e:?}");
}

#[test]
fn many_bad_clients_do_not_disturb_a_busy_one() {
    let broker = Broker::start();
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/busy", "auto");
    let mut producer = broker.client();
    for i in 0..20 {
        let mut bad = broker.raw();
        bad.send_raw(b"\xff\xfe\xfd\n\n\0");
        bad.expect_error();
        producer.send_message("/queue/busy", &format!("m{i}"), &[]);
    }
    for i in 0..20 {
        assert_eq!(consumer.recv().body, format!("m{i}").as_bytes());
    }
}
