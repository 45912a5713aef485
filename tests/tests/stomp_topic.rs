//! Topic semantics through the real broker: every current subscriber gets
//! every message, in order; nothing is kept for subscribers that come later.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

fn bodies(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8(f.body.to_vec()).unwrap())
        .collect()
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let broker = Broker::start();
    let mut subs: Vec<Client> = (0..4)
        .map(|i| {
            let mut c = broker.client();
            c.subscribe(&format!("t{i}"), "/topic/news", "auto");
            c
        })
        .collect();
    let mut producer = broker.client();
    let expected: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    for m in &expected {
        producer.send_message("/topic/news", m, &[]);
    }
    for (i, s) in subs.iter_mut().enumerate() {
        let got = s.recv_messages(100);
        assert_eq!(bodies(&got), expected, "subscriber {i}");
        assert!(got
            .iter()
            .all(|f| f.get("subscription") == Some(format!("t{i}").as_str())));
        s.expect_silence(Duration::from_millis(100));
    }
}

#[test]
fn two_subscriptions_on_one_connection_each_get_a_copy() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("a", "/topic/twice", "auto");
    c.subscribe("b", "/topic/twice", "auto");
    broker.client().send_message("/topic/twice", "x", &[]);
    let got = c.recv_messages(2);
    let mut subs: Vec<&str> = got.iter().map(|f| f.get("subscription").unwrap()).collect();
    subs.sort();
    assert_eq!(subs, ["a", "b"]);
}

#[test]
fn nothing_is_retained_for_late_subscribers() {
    let broker = Broker::start();
    let mut producer = broker.client();
    producer.send_message("/topic/late", "before anyone", &[]);
    let mut early = broker.client();
    early.subscribe("e", "/topic/late", "auto");
    producer.send_message("/topic/late", "first", &[]);
    let mut late = broker.client();
    late.subscribe("l", "/topic/late", "auto");
    producer.send_message("/topic/late", "second", &[]);
    assert_eq!(bodies(&early.recv_messages(2)), ["first", "second"]);
    assert_eq!(bodies(&late.recv_messages(1)), ["second"]);
    late.expect_silence(Duration::from_millis(200));
    early.expect_silence(Duration::from_millis(100));
}

#[test]
fn unsubscribed_subscriber_stops_receiving() {
    let broker = Broker::start();
    let mut a = broker.client();
    a.subscribe("a", "/topic/leave", "auto");
    let mut b = broker.client();
    b.subscribe("b", "/topic/leave", "auto");
    a.send_with_receipt(Frame::new(Command::Unsubscribe).header("id", "a"), "u");
    broker.client().send_message("/topic/leave", "after", &[]);
    assert_eq!(bodies(&b.recv_messages(1)), ["after"]);
    a.expect_silence(Duration::from_millis(200));
}

#[test]
fn topic_and_queue_of_the_same_name_are_separate() {
    let broker = Broker::start();
    let mut t = broker.client();
    t.subscribe("t", "/topic/same", "auto");
    let mut q = broker.client();
    q.subscribe("q", "/queue/same", "auto");
    let mut p = broker.client();
    p.send_message("/queue/same", "for the queue", &[]);
    p.send_message("/topic/same", "for the topic", &[]);
    assert_eq!(bodies(&q.recv_messages(1)), ["for the queue"]);
    assert_eq!(bodies(&t.recv_messages(1)), ["for the topic"]);
    q.expect_silence(Duration::from_millis(100));
    t.expect_silence(Duration::from_millis(100));
}
