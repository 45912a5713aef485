//! ActiveMQ/JMS features over STOMP (issue 6): selectors, priority,
//! wildcards, composite destinations, message groups, exclusive consumers,
//! queue browsing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::time::Duration;

fn subscribe_with(c: &mut Client, id: &str, destination: &str, extra: &[(&str, &str)]) {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
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

fn bodies(c: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| String::from_utf8(c.recv_command(Command::Message).body.to_vec()).unwrap())
        .collect()
}

#[test]
fn selector_filters_queue_messages() {
    let broker = Broker::start();
    let mut c = broker.client();
    subscribe_with(
        &mut c,
        "s",
        "/queue/sel",
        &[("selector", "color = 'red' AND size > 10")],
    );
    let mut p = broker.client();
    p.send_message(
        "/queue/sel",
        "blue-big",
        &[("color", "blue"), ("size", "20")],
    );
    p.send_message(
        "/queue/sel",
        "red-small",
        &[("color", "red"), ("size", "5")],
    );
    p.send_message("/queue/sel", "red-big", &[("color", "red"), ("size", "20")]);
    assert_eq!(bodies(&mut c, 1), ["red-big"]);
    c.expect_silence(Duration::from_millis(200));
    // Unselected messages stay for other consumers.
    let mut other = broker.client();
    other.subscribe("o", "/queue/sel", "auto");
    let mut rest = bodies(&mut other, 2);
    rest.sort();
    assert_eq!(rest, ["blue-big", "red-small"]);
}

#[test]
fn selector_on_topics_and_jms_headers() {
    let broker = Broker::start();
    let mut c = broker.client();
    subscribe_with(
        &mut c,
        "t",
        "/topic/sel",
        &[("selector", "JMSPriority >= 7 OR type LIKE 'urg%'")],
    );
    let mut p = broker.client();
    p.send_message("/topic/sel", "low", &[("priority", "2")]);
    p.send_message("/topic/sel", "high", &[("priority", "8")]);
    p.send_message("/topic/sel", "typed", &[("type", "urgent")]);
    assert_eq!(bodies(&mut c, 2), ["high", "typed"]);
}

#[test]
fn invalid_selector_gets_an_error_naming_the_position() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "bad")
            .header("destination", "/queue/x")
            .header("selector", "color = 'red' AND")
            .header("receipt", "r"),
    );
    let e = c.expect_error();
    let msg = e.get("message").unwrap();
    assert!(msg.contains("position"), "{msg}");
    assert_eq!(e.get("receipt-id"), Some("r"));
    broker
        .client()
        .send_message("/queue/x", "still serving", &[]);
}

#[test]
fn priority_orders_waiting_messages() {
    let broker = Broker::start();
    let mut p = broker.client();
    for (body, prio) in [
        ("p1", "1"),
        ("p9", "9"),
        ("p4a", "4"),
        ("p4b", "4"),
        ("p7", "7"),
    ] {
        p.send_message("/queue/prio", body, &[("priority", prio)]);
    }
    let mut c = broker.client();
    c.subscribe("c", "/queue/prio", "auto");
    assert_eq!(bodies(&mut c, 5), ["p9", "p7", "p4a", "p4b", "p1"]);
}

#[test]
fn wildcard_topic_subscriptions() {
    let broker = Broker::start();
    let mut all = broker.client();
    all.subscribe("a", "/topic/PRICE.STOCK.>", "auto");
    let mut nyse = broker.client();
    nyse.subscribe("n", "/topic/PRICE.*.NYSE", "auto");
    let mut p = broker.client();
    p.send_message("/topic/PRICE.STOCK.NYSE", "ibm", &[]);
    p.send_message("/topic/PRICE.STOCK.NASDAQ.ORCL", "orcl", &[]);
    p.send_message("/topic/PRICE.BOND.NYSE", "bond", &[]);
    assert_eq!(bodies(&mut all, 2), ["ibm", "orcl"]);
    let m = nyse.recv_command(Command::Message);
    assert_eq!(&m.body[..], b"ibm");
    assert_eq!(m.get("destination"), Some("/topic/PRICE.STOCK.NYSE"));
    assert_eq!(bodies(&mut nyse, 1), ["bond"]);
    // Sending to a pattern is an error.
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/PRICE.>")
            .body("x"),
    );
    assert!(p
        .expect_error()
        .get("message")
        .unwrap()
        .contains("wildcard"));
}

#[test]
fn composite_send_reaches_every_destination() {
    let broker = Broker::start();
    let mut q = broker.client();
    q.subscribe("q", "/queue/comp", "auto");
    let mut t = broker.client();
    t.subscribe("t", "/topic/comp", "auto");
    let mut p = broker.client();
    p.send_message("/queue/comp,/topic/comp", "both", &[]);
    assert_eq!(bodies(&mut q, 1), ["both"]);
    assert_eq!(bodies(&mut t, 1), ["both"]);
}

#[test]
fn message_groups_stick_to_one_consumer() {
    let broker = Broker::start();
    let mut a = broker.client();
    subscribe_with(&mut a, "a", "/queue/grp", &[("ack", "client-individual")]);
    let mut b = broker.client();
    subscribe_with(&mut b, "b", "/queue/grp", &[("ack", "client-individual")]);
    let mut p = broker.client();
    for i in 0..6 {
        let group = if i % 2 == 0 { "even" } else { "odd" };
        p.send_message(
            "/queue/grp",
            &format!("{group}-{i}"),
            &[("JMSXGroupID", group)],
        );
    }
    let from_a = bodies(&mut a, 3);
    let from_b = bodies(&mut b, 3);
    let group_of = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|s| s.split('-').next().unwrap().to_string())
            .collect()
    };
    let ga = group_of(&from_a);
    let gb = group_of(&from_b);
    assert!(ga.iter().all(|g| *g == ga[0]), "{from_a:?}");
    assert!(gb.iter().all(|g| *g == gb[0]), "{from_b:?}");
    assert_ne!(ga[0], gb[0]);
}

#[test]
fn exclusive_consumer_gets_everything_while_it_lives() {
    let broker = Broker::start();
    let mut plain = broker.client();
    plain.subscribe("p", "/queue/excl", "auto");
    let mut excl = broker.client();
    subscribe_with(
        &mut excl,
        "e",
        "/queue/excl",
        &[("activemq.exclusive", "true")],
    );
    let mut p = broker.client();
    for i in 0..4 {
        p.send_message("/queue/excl", &format!("m{i}"), &[]);
    }
    assert_eq!(bodies(&mut excl, 4), ["m0", "m1", "m2", "m3"]);
    plain.expect_silence(Duration::from_millis(200));
    excl.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert_eq!(
        excl.recv_command(Command::Receipt).get("receipt-id"),
        Some("bye")
    );
    p.send_message("/queue/excl", "after", &[]);
    assert_eq!(bodies(&mut plain, 1), ["after"]);
}

#[test]
fn browsing_shows_messages_without_consuming_them() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/br", "one", &[]);
    p.send_message("/queue/br", "two", &[]);
    let mut b = broker.client();
    subscribe_with(&mut b, "b", "/queue/br", &[("browser", "true")]);
    let m1 = b.recv_command(Command::Message);
    let m2 = b.recv_command(Command::Message);
    let end = b.recv_command(Command::Message);
    assert_eq!((&m1.body[..], &m2.body[..]), (&b"one"[..], &b"two"[..]));
    assert_eq!(end.get("browser"), Some("end"));
    let mut c = broker.client();
    c.subscribe("c", "/queue/br", "auto");
    assert_eq!(bodies(&mut c, 2), ["one", "two"]);
}

#[test]
fn closing_a_group_frees_it_for_another_consumer() {
    let broker = Broker::start();
    let mut a = broker.client();
    // Three unacknowledged messages fill `a`'s prefetch.
    subscribe_with(
        &mut a,
        "a",
        "/queue/grp-close",
        &[("ack", "client-individual"), ("activemq.prefetchSize", "3")],
    );
    let mut p = broker.client();
    p.send_message("/queue/grp-close", "first", &[("JMSXGroupID", "g")]);
    assert_eq!(&a.recv_command(Command::Message).body[..], b"first");
    // A second consumer arrives; the group stays pinned to `a` ...
    let mut b = broker.client();
    subscribe_with(
        &mut b,
        "b",
        "/queue/grp-close",
        &[("ack", "client-individual")],
    );
    p.send_message("/queue/grp-close", "pinned", &[("JMSXGroupID", "g")]);
    assert_eq!(&a.recv_command(Command::Message).body[..], b"pinned");
    b.expect_silence(Duration::from_millis(200));
    // ... until a message with JMSXGroupSeq -1 closes it.
    p.send_message(
        "/queue/grp-close",
        "last",
        &[("JMSXGroupID", "g"), ("JMSXGroupSeq", "-1")],
    );
    assert_eq!(&a.recv_command(Command::Message).body[..], b"last");
    // `a` is full, and the group is free again: the next one goes to `b`
    // (were the group still pinned to `a`, it would wait for `a`).
    p.send_message("/queue/grp-close", "free", &[("JMSXGroupID", "g")]);
    assert_eq!(&b.recv_command(Command::Message).body[..], b"free");
}
