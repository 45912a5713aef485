//! Durable topic subscriptions (issue 6) in the ActiveMQ, Artemis and
//! RabbitMQ dialects, end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame, Version};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

fn connect(broker: &Broker, client_id: Option<&str>) -> Client {
    let mut c = broker.raw();
    let mut f = Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("host", "/");
    if let Some(id) = client_id {
        f = f.header("client-id", id);
    }
    c.send(f);
    assert_eq!(c.recv().command, Command::Connected);
    c.set_version(Version::V1_2);
    c
}

fn durable_subscribe(
    c: &mut Client,
    id: &str,
    topic: &str,
    dialect: (&str, &str),
    extra: &[(&str, &str)],
) {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", topic)
        .header(dialect.0, dialect.1)
        .header("receipt", "s");
    for (k, v) in extra {
        f = f.header(k, v);
    }
    c.send(f);
    assert_eq!(
        c.recv_command(Command::Receipt).get("receipt-id"),
        Some("s")
    );
}

/// DISCONNECT with a receipt: once it arrives the broker has ended the
/// subscriptions, so a message published next is kept for the durable
/// subscription instead of going to this departing (auto-ack) consumer.
fn leave(mut c: Client) {
    c.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert_eq!(
        c.recv_command(Command::Receipt).get("receipt-id"),
        Some("bye")
    );
}

fn body(c: &mut Client) -> String {
    String::from_utf8(c.recv_command(Command::Message).body.to_vec()).unwrap()
}

#[test]
fn messages_published_while_away_are_delivered_on_return() {
    for dialect in [
        ("activemq.subscriptionName", "sub1"),
        ("durable-subscription-name", "sub1"),
    ] {
        let broker = Broker::start();
        let mut c = connect(&broker, Some("app-1"));
        durable_subscribe(&mut c, "d", "/topic/news", dialect, &[]);
        leave(c);
        let mut p = broker.client();
        p.send_message("/topic/news", "while away 1", &[]);
        p.send_message("/topic/news", "while away 2", &[]);
        let mut c = connect(&broker, Some("app-1"));
        durable_subscribe(&mut c, "d", "/topic/news", dialect, &[]);
        let m = c.recv_command(Command::Message);
        assert_eq!(&m.body[..], b"while away 1", "{dialect:?}");
        assert_eq!(m.get("destination"), Some("/topic/news"));
        assert_eq!(body(&mut c), "while away 2");
    }
}

#[test]
fn rabbitmq_durable_true_form_needs_no_client_id() {
    let broker = Broker::start();
    let mut c = connect(&broker, None);
    durable_subscribe(
        &mut c,
        "my-sub",
        "/topic/r",
        ("durable", "true"),
        &[("ack", "client-individual")],
    );
    leave(c);
    broker.client().send_message("/topic/r", "kept", &[]);
    let mut c = connect(&broker, None);
    durable_subscribe(&mut c, "my-sub", "/topic/r", ("durable", "true"), &[]);
    assert_eq!(body(&mut c), "kept");
}

#[test]
fn unsubscribe_with_the_name_deletes_the_subscription() {
    let broker = Broker::start();
    let mut c = connect(&broker, Some("app-2"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/t",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    c.send(
        Frame::new(Command::Unsubscribe)
            .header("id", "d")
            .header("activemq.subscriptionName", "s")
            .header("receipt", "u"),
    );
    assert_eq!(
        c.recv_command(Command::Receipt).get("receipt-id"),
        Some("u")
    );
    leave(c);
    broker
        .client()
        .send_message("/topic/t", "nobody keeps this", &[]);
    let mut c = connect(&broker, Some("app-2"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/t",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn durable_subscription_with_selector_keeps_only_matching_messages() {
    let broker = Broker::start();
    let mut c = connect(&broker, Some("app-3"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/sel",
        ("activemq.subscriptionName", "s"),
        &[("selector", "kind = 'keep'")],
    );
    leave(c);
    let mut p = broker.client();
    p.send_message("/topic/sel", "drop me", &[("kind", "drop")]);
    p.send_message("/topic/sel", "keep me", &[("kind", "keep")]);
    let mut c = connect(&broker, Some("app-3"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/sel",
        ("activemq.subscriptionName", "s"),
        &[("selector", "kind = 'keep'")],
    );
    assert_eq!(body(&mut c), "keep me");
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn durable_errors_are_explicit() {
    let broker = Broker::start();
    let mut c = connect(&broker, None);
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "d")
            .header("destination", "/topic/x")
            .header("activemq.subscriptionName", "s"),
    );
    assert!(c
        .expect_error()
        .get("message")
        .unwrap()
        .contains("client-id"));
    let mut c = connect(&broker, Some("app-4"));
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "d")
            .header("destination", "/queue/x")
            .header("activemq.subscriptionName", "s"),
    );
    assert!(c.expect_error().get("message").unwrap().contains("Queue"));
    let mut a = connect(&broker, Some("app-5"));
    durable_subscribe(
        &mut a,
        "d",
        "/topic/y",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    let mut b = connect(&broker, Some("app-5"));
    b.send(
        Frame::new(Command::Subscribe)
            .header("id", "d")
            .header("destination", "/topic/y")
            .header("activemq.subscriptionName", "s"),
    );
    assert!(b.expect_error().get("message").unwrap().contains("in use"));
}

#[test]
fn persistent_backlog_survives_a_crash() {
    let mut broker = Broker::start();
    let mut c = connect(&broker, Some("app-6"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/crash",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    leave(c);
    let mut p = broker.client();
    p.send_message("/topic/crash", "persisted", &[("persistent", "true")]);
    p.send_message("/topic/crash", "transient", &[]);
    broker.kill9();
    let broker = broker.restart();
    let mut c = connect(&broker, Some("app-6"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/crash",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    let m = c.recv_command(Command::Message);
    assert_eq!(&m.body[..], b"persisted");
    assert_eq!(m.get("destination"), Some("/topic/crash"));
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn subscription_itself_survives_a_restart() {
    let mut broker = Broker::start();
    let mut c = connect(&broker, Some("app-7"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/after",
        ("activemq.subscriptionName", "s"),
        &[("selector", "n > 1")],
    );
    leave(c);
    broker.terminate();
    let broker = broker.restart();
    // Published after the restart, while the subscriber is still away.
    let mut p = broker.client();
    p.send_message("/topic/after", "one", &[("persistent", "true"), ("n", "1")]);
    p.send_message("/topic/after", "two", &[("persistent", "true"), ("n", "2")]);
    let mut c = connect(&broker, Some("app-7"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/after",
        ("activemq.subscriptionName", "s"),
        &[("selector", "n > 1")],
    );
    let m = c.recv_command(Command::Message);
    assert_eq!(&m.body[..], b"two");
    assert_eq!(m.get("destination"), Some("/topic/after"));
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn full_subscription_drops_its_oldest_under_drop_oldest() {
    let broker = Broker::start_with(
        Some("[destinations]\ndurable_subscription_limit = 2\ndurable_subscription_policy = \"drop-oldest\"\n"),
        &[],
    );
    let mut c = connect(&broker, Some("app-8"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/full",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    leave(c);
    let mut p = broker.client();
    for body in ["m1", "m2", "m3"] {
        p.send_message("/topic/full", body, &[]);
    }
    let mut c = connect(&broker, Some("app-8"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/full",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    assert_eq!(body(&mut c), "m2");
    assert_eq!(body(&mut c), "m3");
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn full_subscription_blocks_producers_under_block() {
    let broker = Broker::start_with(
        Some("[destinations]\ndurable_subscription_limit = 2\n"),
        &[],
    );
    let mut c = connect(&broker, Some("app-9"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/block",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    leave(c);
    let mut p = broker.client();
    p.send_message("/topic/block", "m1", &[]);
    p.send_message("/topic/block", "m2", &[]);
    // The third SEND is taken, then the producer is held: its next frame's
    // receipt does not come until the subscriber drains.
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/block")
            .body("m3"),
    );
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/block")
            .header("receipt", "held")
            .body("m4"),
    );
    assert!(
        p.recv_within(Duration::from_millis(500)).is_none(),
        "producer was not held"
    );
    let mut c = connect(&broker, Some("app-9"));
    durable_subscribe(
        &mut c,
        "d",
        "/topic/block",
        ("activemq.subscriptionName", "s"),
        &[],
    );
    assert_eq!(body(&mut c), "m1");
    assert_eq!(
        p.recv_command(Command::Receipt).get("receipt-id"),
        Some("held")
    );
}
