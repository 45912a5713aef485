//! Scheduled delivery with ActiveMQ's headers (issue 6), end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::Broker;
use std::time::{Duration, Instant};

#[test]
fn delayed_message_arrives_after_its_delay() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("s", "/queue/later", "auto");
    let mut p = broker.client();
    let sent = Instant::now();
    p.send_message(
        "/queue/later",
        "wait for it",
        &[("AMQ_SCHEDULED_DELAY", "700")],
    );
    c.expect_silence(Duration::from_millis(400));
    let m = c.recv_command(Command::Message);
    assert!(
        sent.elapsed() >= Duration::from_millis(650),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(&m.body[..], b"wait for it");
    assert!(
        m.get("AMQ_SCHEDULED_DELAY").is_none(),
        "fired copies carry no schedule: {m:?}"
    );
}

#[test]
fn repeated_message_fires_repeat_plus_one_times() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("s", "/topic/tick", "auto");
    let mut p = broker.client();
    p.send_message(
        "/topic/tick",
        "tick",
        &[
            ("AMQ_SCHEDULED_DELAY", "100"),
            ("AMQ_SCHEDULED_PERIOD", "150"),
            ("AMQ_SCHEDULED_REPEAT", "2"),
        ],
    );
    for _ in 0..3 {
        assert_eq!(&c.recv_command(Command::Message).body[..], b"tick");
    }
    c.expect_silence(Duration::from_millis(500));
}

#[test]
fn unsupported_or_bad_schedules_are_refused() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/c")
            .header("AMQ_SCHEDULED_CRON", "0 * * * *")
            .header("receipt", "r"),
    );
    let e = p.expect_error();
    assert!(
        e.get("message").unwrap().contains("AMQ_SCHEDULED_CRON"),
        "{e:?}"
    );
    assert_eq!(e.get("receipt-id"), Some("r"));
    let mut p = broker.client();
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/c")
            .header("AMQ_SCHEDULED_DELAY", "soon"),
    );
    assert!(p
        .expect_error()
        .get("message")
        .unwrap()
        .contains("AMQ_SCHEDULED_DELAY"));
}

#[test]
fn persistent_scheduled_message_survives_a_crash() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    p.send_message(
        "/queue/durable-later",
        "still scheduled",
        &[("persistent", "true"), ("AMQ_SCHEDULED_DELAY", "1500")],
    );
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/durable-later", "auto");
    let m = c.recv_command(Command::Message);
    assert_eq!(&m.body[..], b"still scheduled");
    c.expect_silence(Duration::from_millis(300));
}
