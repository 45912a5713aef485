//! Redelivery limits, dead-letter queues and expiry (issue 6), end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

/// NACKs without a receipt: a redelivery may be written before a receipt
/// would be, and the tests wait for that MESSAGE instead.
fn nack(c: &mut Client, m: &Frame) {
    let id = m.get("ack").expect("ack header");
    c.send(Frame::new(Command::Nack).header("id", id));
}

#[test]
fn message_nacked_past_max_redeliveries_goes_to_the_dlq() {
    let broker = Broker::start_with(Some("[destinations]\nmax_redeliveries = 2\n"), &[]);
    let mut c = broker.client();
    c.send_message("/queue/work", "poison", &[("kind", "bad")]);
    c.subscribe("w", "/queue/work", "client-individual");
    for delivery in 0..3 {
        let m = c.recv_command(Command::Message);
        assert_eq!(&m.body[..], b"poison");
        assert_eq!(
            m.get("redelivered").is_some(),
            delivery > 0,
            "delivery {delivery}: {m:?}"
        );
        nack(&mut c, &m);
    }
    c.expect_silence(Duration::from_millis(300));
    c.subscribe("d", "/queue/ActiveMQ.DLQ", "auto");
    let dead = c.recv_command(Command::Message);
    assert_eq!(&dead.body[..], b"poison");
    assert_eq!(dead.get("original-destination"), Some("/queue/work"));
    assert!(
        dead.get("dlq-reason").unwrap().contains("3 times"),
        "{dead:?}"
    );
    assert_eq!(dead.get("kind"), Some("bad"));
}

#[test]
fn activemq_nack_policy_sends_straight_to_an_individual_dlq() {
    let broker = Broker::start_with(
        Some("[destinations]\nnack = \"dead-letter\"\nindividual_dead_letter = true\n"),
        &[],
    );
    let mut c = broker.client();
    c.send_message("/queue/orders", "o1", &[]);
    c.subscribe("o", "/queue/orders", "client");
    let m = c.recv_command(Command::Message);
    nack(&mut c, &m);
    c.expect_silence(Duration::from_millis(300));
    c.subscribe("d", "/queue/DLQ.orders", "auto");
    let dead = c.recv_command(Command::Message);
    assert_eq!(&dead.body[..], b"o1");
    assert!(dead.get("dlq-reason").unwrap().contains("NACK"));
}

#[test]
fn expired_messages_are_never_delivered_and_optionally_dead_lettered() {
    let broker = Broker::start_with(Some("[destinations]\nexpired_to_dlq = true\n"), &[]);
    let mut c = broker.client();
    c.send_message("/queue/exp", "stale", &[("expires", "1")]);
    c.send_message("/queue/exp", "fresh", &[]);
    c.subscribe("e", "/queue/exp", "auto");
    let m = c.recv_command(Command::Message);
    assert_eq!(&m.body[..], b"fresh");
    c.expect_silence(Duration::from_millis(200));
    c.subscribe("d", "/queue/ActiveMQ.DLQ", "auto");
    let dead = c.recv_command(Command::Message);
    assert_eq!(&dead.body[..], b"stale");
    assert!(dead.get("dlq-reason").unwrap().contains("expired"));
}

#[test]
fn connection_loss_counts_as_a_failed_delivery() {
    let broker = Broker::start_with(Some("[destinations]\nmax_redeliveries = 1\n"), &[]);
    let mut p = broker.client();
    p.send_message("/queue/crashy", "kills consumers", &[]);
    for _ in 0..2 {
        let mut c = broker.client();
        c.subscribe("c", "/queue/crashy", "client");
        assert_eq!(
            &c.recv_command(Command::Message).body[..],
            b"kills consumers"
        );
        drop(c); // the consumer "crashes" without acking
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut c = broker.client();
    c.subscribe("c", "/queue/crashy", "client");
    c.expect_silence(Duration::from_millis(300));
    c.subscribe("d", "/queue/ActiveMQ.DLQ", "auto");
    assert_eq!(
        &c.recv_command(Command::Message).body[..],
        b"kills consumers"
    );
}

#[test]
fn redelivery_waits_for_the_delay_with_backoff() {
    let broker = Broker::start_with(
        Some("[destinations]\nredelivery_delay = \"300ms\"\nredelivery_backoff = 2.0\n"),
        &[],
    );
    let mut c = broker.client();
    c.send_message("/queue/slow-retry", "retry me", &[]);
    c.subscribe("r", "/queue/slow-retry", "client-individual");
    let first = c.recv_command(Command::Message);
    let t = std::time::Instant::now();
    nack(&mut c, &first);
    let second = c.recv_command(Command::Message);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(280),
        "first redelivery after {waited:?}"
    );
    assert_eq!(second.get("redelivered"), Some("true"));
    let t = std::time::Instant::now();
    nack(&mut c, &second);
    let third = c.recv_command(Command::Message);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(560),
        "second redelivery after {waited:?}"
    );
    assert_eq!(&third.body[..], b"retry me");
}

#[test]
fn persistent_dead_letters_survive_a_crash() {
    let mut broker = Broker::start_with(Some("[destinations]\nnack = \"dead-letter\"\n"), &[]);
    let mut c = broker.client();
    c.send_message("/queue/fragile", "keep me dead", &[("persistent", "true")]);
    c.subscribe("f", "/queue/fragile", "client-individual");
    let m = c.recv_command(Command::Message);
    let id = m.get("ack").unwrap().to_string();
    c.send(
        Frame::new(Command::Nack)
            .header("id", &id)
            .header("receipt", "n"),
    );
    assert_eq!(
        c.recv_command(Command::Receipt).get("receipt-id"),
        Some("n")
    );
    // The dead-letter task moves it asynchronously: wait until the DLQ has it.
    std::thread::sleep(Duration::from_millis(300));
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("d", "/queue/ActiveMQ.DLQ", "auto");
    let dead = c.recv_command(Command::Message);
    assert_eq!(&dead.body[..], b"keep me dead");
    assert_eq!(dead.get("original-destination"), Some("/queue/fragile"));
    c.subscribe("f2", "/queue/fragile", "auto");
    c.expect_silence(Duration::from_millis(300));
}
