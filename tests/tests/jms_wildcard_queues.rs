//! Wildcard queue subscriptions (ActiveMQ's `/queue/orders.>`) through the
//! real broker: one subscription consumes every matching queue, existing or
//! created later, competing with the queues' own consumers (each message
//! consumed once), under one prefetch window; acks, NACKs, unsubscribe,
//! dead letters and restarts act on each message's own queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{hash_password, Broker, Client};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn subscribe_with(c: &mut Client, id: &str, destination: &str, extra: &[(&str, &str)]) {
    let mut f = Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
        .header("receipt", &format!("sub-{id}"));
    for (k, v) in extra {
        f = f.header(k, v);
    }
    c.send(f);
    let r = c.recv_command(Command::Receipt);
    assert_eq!(r.get("receipt-id"), Some(format!("sub-{id}").as_str()));
}

fn body(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

/// Receives `n` MESSAGEs and returns (body, destination) pairs.
fn received(c: &mut Client, n: usize) -> Vec<(String, String)> {
    c.recv_messages(n)
        .iter()
        .map(|m| (body(m), m.get("destination").unwrap().to_string()))
        .collect()
}

/// Sends an ACK or NACK for `m` and waits for its receipt; returns the
/// MESSAGEs that arrived meanwhile (the ack freed credit).
fn settle(c: &mut Client, command: Command, m: &Frame, extra: &[(&str, &str)]) -> Vec<Frame> {
    let mut f = Frame::new(command)
        .header("id", m.get("ack").expect("ack header"))
        .header("receipt", "settled");
    for (k, v) in extra {
        f = f.header(k, v);
    }
    c.send(f);
    let mut messages = Vec::new();
    loop {
        let f = c.recv();
        match f.command {
            Command::Receipt => {
                assert_eq!(f.get("receipt-id"), Some("settled"));
                return messages;
            }
            Command::Message => messages.push(f),
            _ => panic!("unexpected {f:?}"),
        }
    }
}

fn unsubscribe(c: &mut Client, id: &str) {
    c.send_with_receipt(Frame::new(Command::Unsubscribe).header("id", id), "unsub");
}

#[test]
fn consumes_existing_and_later_created_queues_showing_the_concrete_queue() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/orders.eu", "waiting", &[]);
    let mut c = broker.client();
    c.subscribe("all", "/queue/orders.>", "auto");
    assert_eq!(
        received(&mut c, 1),
        [("waiting".into(), "/queue/orders.eu".into())]
    );
    // A queue created after the subscription, two elements below.
    p.send_message("/queue/orders.us.west", "later", &[]);
    let m = c.recv_command(Command::Message);
    assert_eq!(body(&m), "later");
    assert_eq!(m.get("destination"), Some("/queue/orders.us.west"));
    assert_eq!(m.get("subscription"), Some("all"));
    // `>` needs at least one more element; other names do not match.
    p.send_message("/queue/orders", "parent", &[]);
    p.send_message("/queue/ordersx.eu", "other", &[]);
    p.send_message("/topic/orders.eu", "topic", &[]);
    c.expect_silence(Duration::from_millis(300));
    // Those stayed in their queues.
    let mut parent = broker.client();
    parent.subscribe("p", "/queue/orders", "auto");
    assert_eq!(body(&parent.recv_command(Command::Message)), "parent");
    // Sending to the pattern itself is still refused.
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/orders.>")
            .body("x"),
    );
    assert!(p
        .expect_error()
        .get("message")
        .unwrap()
        .contains("wildcard"));
}

#[test]
fn star_matches_exactly_one_element() {
    let broker = Broker::start();
    let mut c = broker.client();
    c.subscribe("one", "/queue/star.*", "auto");
    let mut p = broker.client();
    p.send_message("/queue/star.a.b", "deep", &[]);
    p.send_message("/queue/star.a", "one", &[]);
    assert_eq!(
        received(&mut c, 1),
        [("one".into(), "/queue/star.a".into())]
    );
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn competes_with_a_concrete_consumer_each_message_once() {
    let broker = Broker::start();
    let mut concrete = broker.client();
    concrete.subscribe("c", "/queue/comp.a", "auto");
    let mut wild = broker.client();
    wild.subscribe("w", "/queue/comp.>", "auto");
    // A second, overlapping wildcard consumer competes as well.
    let mut star = broker.client();
    star.subscribe("s", "/queue/comp.*", "auto");
    let mut p = broker.client();
    let mut sent = HashSet::new();
    for i in 0..60 {
        let (queue, b) = if i % 3 == 2 {
            ("/queue/comp.b", format!("b{i}"))
        } else {
            ("/queue/comp.a", format!("a{i}"))
        };
        p.send_message(queue, &b, &[]);
        sent.insert(b);
    }
    let mut seen: HashMap<String, &str> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < sent.len() && Instant::now() < deadline {
        for (name, c) in [
            ("concrete", &mut concrete),
            ("wild", &mut wild),
            ("star", &mut star),
        ] {
            while let Some(f) = c.recv_within(Duration::from_millis(20)) {
                assert_eq!(f.command, Command::Message, "{f:?}");
                let b = body(&f);
                let queue = if b.starts_with('b') {
                    "/queue/comp.b"
                } else {
                    "/queue/comp.a"
                };
                assert_eq!(f.get("destination"), Some(queue));
                if let Some(first) = seen.insert(b.clone(), name) {
                    panic!("{b} delivered twice ({first} and {name})");
                }
            }
        }
    }
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), sent);
    // Round robin on comp.a: both consumers had a share of it.
    let a_by = |who: &str| {
        seen.iter()
            .filter(|(b, n)| b.starts_with('a') && **n == who)
            .count()
    };
    assert!(
        a_by("concrete") > 0 && a_by("wild") > 0 && a_by("star") > 0,
        "{seen:?}"
    );
    // comp.b has only the wildcard consumers, and shares it between them.
    let b_by = |who: &str| {
        seen.iter()
            .filter(|(b, n)| b.starts_with('b') && **n == who)
            .count()
    };
    assert_eq!(b_by("concrete"), 0);
    assert!(b_by("wild") > 0 && b_by("star") > 0, "{seen:?}");
    concrete.expect_silence(Duration::from_millis(200));
    wild.expect_silence(Duration::from_millis(200));
    star.expect_silence(Duration::from_millis(200));
}

#[test]
fn one_prefetch_window_over_all_matching_queues() {
    let broker = Broker::start();
    let mut p = broker.client();
    for q in ["a", "b", "c"] {
        for i in 0..4 {
            p.send_message(&format!("/queue/pf.{q}"), &format!("{q}{i}"), &[]);
        }
    }
    let mut c = broker.client();
    subscribe_with(
        &mut c,
        "w",
        "/queue/pf.>",
        &[("ack", "client-individual"), ("activemq.prefetchSize", "5")],
    );
    let first = c.recv_messages(5);
    c.expect_silence(Duration::from_millis(400));
    // A queue created now is consumed too, but only within the window.
    p.send_message("/queue/pf.d", "d0", &[]);
    c.expect_silence(Duration::from_millis(300));
    // Two acks make room for exactly two more.
    let mut more = settle(&mut c, Command::Ack, &first[0], &[]);
    more.extend(settle(&mut c, Command::Ack, &first[1], &[]));
    while more.len() < 2 {
        more.push(c.recv_command(Command::Message));
    }
    c.expect_silence(Duration::from_millis(400));
    // Acking everything lets the rest (13 sent, 7 so far) through, at most
    // five at a time.
    let mut all: Vec<Frame> = first.into_iter().skip(2).chain(more).collect();
    let mut bodies: HashSet<String> = HashSet::new();
    let mut outstanding = all.len();
    while let Some(m) = all.pop() {
        bodies.insert(body(&m));
        outstanding -= 1;
        let arrived = settle(&mut c, Command::Ack, &m, &[]);
        outstanding += arrived.len();
        assert!(outstanding <= 5, "more than the prefetch unacknowledged");
        all.extend(arrived);
        if all.is_empty() {
            if let Some(f) = c.recv_within(Duration::from_millis(300)) {
                outstanding += 1;
                all.push(f);
            }
        }
    }
    assert_eq!(bodies.len() + 2, 13, "{bodies:?}");
    assert!(bodies.contains("d0"));
}

#[test]
fn client_ack_is_cumulative_across_queues_and_nack_returns_to_its_queue() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/ca.a", "a1", &[]);
    p.send_message("/queue/ca.b", "b1", &[]);
    p.send_message("/queue/ca.a", "a2", &[]);
    p.send_message("/queue/ca.b", "b2", &[]);
    let mut c = broker.client();
    c.subscribe("w", "/queue/ca.>", "client");
    let got = c.recv_messages(4);
    let order: Vec<String> = got.iter().map(body).collect();
    // ACK of the third acknowledges the first three, whatever their queues.
    assert!(settle(&mut c, Command::Ack, &got[2], &[]).is_empty());
    // NACK of the fourth: it comes back, redelivered, from its own queue.
    let mut again = settle(&mut c, Command::Nack, &got[3], &[]);
    if again.is_empty() {
        again.push(c.recv_command(Command::Message));
    }
    let again = &again[0];
    assert_eq!(body(again), order[3]);
    assert_eq!(again.get("redelivered"), Some("true"));
    assert_eq!(again.get("destination"), got[3].get("destination"));
    c.expect_silence(Duration::from_millis(300));
    // Unsubscribing returns it (unacked) to its queue; the others are gone.
    unsubscribe(&mut c, "w");
    let last_queue = got[3].get("destination").unwrap().to_string();
    let other_queue = if last_queue == "/queue/ca.a" {
        "/queue/ca.b"
    } else {
        "/queue/ca.a"
    };
    let mut check = broker.client();
    check.subscribe("l", &last_queue, "auto");
    let back = check.recv_command(Command::Message);
    assert_eq!(body(&back), order[3]);
    assert_eq!(back.get("redelivered"), Some("true"));
    check.subscribe("o", other_queue, "auto");
    check.expect_silence(Duration::from_millis(300));
}

#[test]
fn client_individual_acks_and_unsubscribe_return_the_rest_to_their_queues() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/ci.a", "a1", &[]);
    p.send_message("/queue/ci.b", "b1", &[]);
    p.send_message("/queue/ci.c", "c1", &[]);
    let mut c = broker.client();
    c.subscribe("w", "/queue/ci.>", "client-individual");
    let got = c.recv_messages(3);
    let of = |b: &str| got.iter().find(|m| body(m) == b).unwrap().clone();
    // Only b1 is acknowledged (individually: a1 delivered before it stays).
    settle(&mut c, Command::Ack, &of("b1"), &[]);
    // A transactional ACK of c1 that is aborted leaves c1 unacknowledged.
    c.send_with_receipt(Frame::new(Command::Begin).header("transaction", "t"), "b");
    settle(&mut c, Command::Ack, &of("c1"), &[("transaction", "t")]);
    c.send_with_receipt(Frame::new(Command::Abort).header("transaction", "t"), "ab");
    unsubscribe(&mut c, "w");
    let mut check = broker.client();
    check.subscribe("a", "/queue/ci.a", "auto");
    let a = check.recv_command(Command::Message);
    assert_eq!(
        (body(&a).as_str(), a.get("redelivered")),
        ("a1", Some("true"))
    );
    check.subscribe("c", "/queue/ci.c", "auto");
    let cm = check.recv_command(Command::Message);
    assert_eq!(
        (body(&cm).as_str(), cm.get("redelivered")),
        ("c1", Some("true"))
    );
    check.subscribe("b", "/queue/ci.b", "auto");
    check.expect_silence(Duration::from_millis(300));
}

#[test]
fn committed_transactional_ack_spans_queues() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/tx.a", "a1", &[]);
    p.send_message("/queue/tx.b", "b1", &[]);
    let mut c = broker.client();
    c.subscribe("w", "/queue/tx.>", "client");
    let got = c.recv_messages(2);
    c.send_with_receipt(Frame::new(Command::Begin).header("transaction", "t"), "b");
    // Cumulative: the second message's ACK covers both queues.
    settle(&mut c, Command::Ack, &got[1], &[("transaction", "t")]);
    c.send_with_receipt(Frame::new(Command::Commit).header("transaction", "t"), "cm");
    unsubscribe(&mut c, "w");
    let mut check = broker.client();
    check.subscribe("all", "/queue/tx.>", "auto");
    check.expect_silence(Duration::from_millis(300));
}

#[test]
fn selector_applies_to_every_matching_queue() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/sel.a", "eu-a", &[("region", "eu")]);
    p.send_message("/queue/sel.a", "us-a", &[("region", "us")]);
    let mut c = broker.client();
    subscribe_with(
        &mut c,
        "w",
        "/queue/sel.>",
        &[("selector", "region = 'eu'")],
    );
    p.send_message("/queue/sel.b", "us-b", &[("region", "us")]);
    p.send_message("/queue/sel.b", "eu-b", &[("region", "eu")]);
    let mut got: Vec<_> = received(&mut c, 2).into_iter().map(|(b, _)| b).collect();
    got.sort();
    assert_eq!(got, ["eu-a", "eu-b"]);
    c.expect_silence(Duration::from_millis(300));
    let mut rest = broker.client();
    rest.subscribe("r", "/queue/sel.>", "auto");
    let mut left: Vec<_> = received(&mut rest, 2).into_iter().map(|(b, _)| b).collect();
    left.sort();
    assert_eq!(left, ["us-a", "us-b"]);
}

#[test]
fn persistent_acks_are_logged_against_the_concrete_queue_and_survive_a_restart() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    for (q, b) in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")] {
        p.send_message(&format!("/queue/keep.{q}"), b, &[("persistent", "true")]);
    }
    let mut c = broker.client();
    c.subscribe("w", "/queue/keep.>", "client-individual");
    let got = c.recv_messages(4);
    for m in &got {
        if body(m) != "b2" {
            // The receipt waits for the ack to be on disk.
            settle(&mut c, Command::Ack, m, &[]);
        }
    }
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("w", "/queue/keep.>", "client-individual");
    let back = c.recv_command(Command::Message);
    assert_eq!(body(&back), "b2");
    assert_eq!(back.get("destination"), Some("/queue/keep.b"));
    assert_eq!(back.get("redelivered"), Some("true"));
    c.expect_silence(Duration::from_millis(400));
}

#[test]
fn nack_to_dead_letter_names_the_concrete_queue() {
    let broker = Broker::start_with(Some("[destinations]\nnack = \"dead-letter\"\n"), &[]);
    let mut c = broker.client();
    c.subscribe("w", "/queue/dl.>", "client-individual");
    let mut p = broker.client();
    p.send_message("/queue/dl.x", "bad", &[]);
    let m = c.recv_command(Command::Message);
    settle(&mut c, Command::Nack, &m, &[]);
    let mut dlq = broker.client();
    dlq.subscribe("d", "/queue/ActiveMQ.DLQ", "auto");
    let dead = dlq.recv_command(Command::Message);
    assert_eq!(body(&dead), "bad");
    assert_eq!(dead.get("original-destination"), Some("/queue/dl.x"));
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn redelivery_limit_counts_on_the_concrete_queue() {
    let broker = Broker::start_with(Some("[destinations]\nmax_redeliveries = 1\n"), &[]);
    let mut c = broker.client();
    c.subscribe("w", "/queue/rl.>", "client-individual");
    let mut p = broker.client();
    p.send_message("/queue/rl.x", "poison", &[]);
    let first = c.recv_command(Command::Message);
    let mut again = settle(&mut c, Command::Nack, &first, &[]);
    if again.is_empty() {
        again.push(c.recv_command(Command::Message));
    }
    assert_eq!(again[0].get("redelivered"), Some("true"));
    assert_eq!(again[0].get("destination"), Some("/queue/rl.x"));
    // The second NACK exceeds the limit: dead-lettered, not redelivered.
    assert!(settle(&mut c, Command::Nack, &again[0], &[]).is_empty());
    let mut dlq = broker.client();
    dlq.subscribe("d", "/queue/ActiveMQ.DLQ", "auto");
    let dead = dlq.recv_command(Command::Message);
    assert_eq!(body(&dead), "poison");
    assert_eq!(dead.get("original-destination"), Some("/queue/rl.x"));
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_wildcard_subscription_counts_once_toward_the_subscription_limit() {
    let broker = Broker::start_with(
        Some("[limits]\nmax_subscriptions_per_connection = 2\n"),
        &[],
    );
    let mut p = broker.client();
    for q in ["a", "b", "c"] {
        p.send_message(&format!("/queue/lim.{q}"), q, &[]);
    }
    let mut c = broker.client();
    c.subscribe("w", "/queue/lim.>", "auto");
    assert_eq!(c.recv_messages(3).len(), 3);
    c.subscribe("x", "/queue/other", "auto");
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "y")
            .header("destination", "/queue/more"),
    );
    let e = c.expect_error();
    assert!(e
        .get("message")
        .unwrap()
        .contains("subscription limit of 2"));
}

#[test]
fn wildcards_over_temporary_queues_are_refused() {
    let broker = Broker::start();
    let mut owner = broker.client();
    owner.subscribe("r", "/temp-queue/replies.x", "auto");
    for pattern in ["/temp-queue/replies.>", "/remote-temp-queue/c1-replies.*"] {
        let mut c = broker.client();
        c.send(
            Frame::new(Command::Subscribe)
                .header("id", "t")
                .header("destination", pattern),
        );
        let e = c.expect_error();
        assert!(
            e.get("message").unwrap().contains("temporary"),
            "{pattern}: {e:?}"
        );
    }
    // A `/queue/>` wildcard never sees another connection's temporary queue.
    let mut greedy = broker.client();
    greedy.subscribe("g", "/queue/>", "auto");
    let mut p = broker.client();
    let session = {
        let (mut c, connected) = broker.connect_as(None, None);
        let s = connected.get("session").unwrap().to_string();
        c.subscribe("mine", "/temp-queue/t", "auto");
        (c, s)
    };
    let (mut temp_owner, id) = session;
    let conn = id.strip_prefix("ferromq-").unwrap();
    p.send_message(&format!("/remote-temp-queue/c{conn}-t"), "private", &[]);
    assert_eq!(body(&temp_owner.recv_command(Command::Message)), "private");
    greedy.expect_silence(Duration::from_millis(300));
}

#[test]
fn acl_needs_a_rule_covering_the_whole_queue_pattern() {
    const PASSWORD: &str = "wild-pw";
    let h = hash_password(PASSWORD);
    let config = format!(
        r#"
[auth]
anonymous = false
[[auth.users]]
name = "app"
password_hash = "{h}"
[[auth.users]]
name = "eu"
password_hash = "{h}"
[[auth.users]]
name = "reader"
password_hash = "{h}"

[[acl]]
destination = "/queue/acl.>"
read = ["app", "reader"]
write = ["app"]
admin = ["app"]
[[acl]]
destination = "/queue/acl.eu"
read = ["eu"]
"#
    );
    let broker = Broker::start_with(Some(&config), &[]);
    let mut p = broker.client_as("app", PASSWORD);
    p.send_message("/queue/acl.eu", "m", &[]);
    // Reading one matching queue does not allow the pattern.
    let mut eu = broker.client_as("eu", PASSWORD);
    eu.send(
        Frame::new(Command::Subscribe)
            .header("id", "w")
            .header("destination", "/queue/acl.>"),
    );
    let e = eu.expect_error();
    assert_eq!(
        e.get("message"),
        Some("user 'eu' is not authorized to read /queue/acl.> (missing 'read' permission)")
    );
    // A rule covering it does (no 'admin' needed for the pattern itself).
    let mut reader = broker.client_as("reader", PASSWORD);
    reader.subscribe("w", "/queue/acl.*", "auto");
    assert_eq!(body(&reader.recv_command(Command::Message)), "m");
}

#[test]
fn browsing_a_wildcard_shows_every_matching_queue() {
    let broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/br.a", "a", &[]);
    p.send_message("/queue/br.b", "b", &[]);
    let mut c = broker.client();
    subscribe_with(&mut c, "peek", "/queue/br.>", &[("browser", "true")]);
    let got = c.recv_messages(3);
    let mut bodies: Vec<_> = got[..2].iter().map(body).collect();
    bodies.sort();
    assert_eq!(bodies, ["a", "b"]);
    assert_eq!(got[2].get("browser"), Some("end"));
    // Not consumed.
    let mut after = broker.client();
    after.subscribe("w", "/queue/br.>", "auto");
    assert_eq!(after.recv_messages(2).len(), 2);
}

/// The native protocol: a receiver link on a queue pattern, with credit
/// counted over the whole link.
#[tokio::test]
async fn native_receiver_link_on_a_queue_pattern() {
    use ferromq_protocol::client::{OutgoingMessage, ReceiverOptions, SettleMode};
    let b = native_common::broker();
    let conn = native_common::connect(&b).await;
    for q in ["a", "b"] {
        let s = conn
            .open_sender(&format!("/queue/nw.{q}"), SettleMode::Unsettled)
            .await
            .unwrap();
        for i in 0..3 {
            s.send_and_wait(OutgoingMessage::text(&format!("{q}{i}")))
                .await
                .unwrap();
        }
    }
    let mut r = conn
        .open_receiver(
            "/queue/nw.>",
            ReceiverOptions {
                credit: 4,
                settle_mode: SettleMode::Unsettled,
                ..ReceiverOptions::default()
            },
        )
        .await
        .unwrap();
    // Credit 4 over both queues: four transfers, then nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut first = Vec::new();
    while let Some(d) = r.try_recv() {
        first.push(d);
    }
    assert_eq!(first.len(), 4, "credit is counted over the whole link");
    for d in &first {
        let props = d.properties();
        let q = &body_str(d)[..1];
        assert_eq!(props.destination, format!("/queue/nw.{q}"));
    }
    // Releasing one returns it to its own queue, redelivered.
    r.release(&first[0]).await.unwrap();
    for d in &first[1..] {
        r.accept(d).await.unwrap();
    }
    r.grant(10).await.unwrap();
    let mut rest = Vec::new();
    while rest.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(10), r.recv())
            .await
            .expect("no message in time")
            .expect("link closed");
        rest.push(d);
    }
    let mut bodies: Vec<String> = first.iter().chain(&rest).map(body_str).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies, ["a0", "a1", "a2", "b0", "b1", "b2"]);
    let again = rest
        .iter()
        .find(|d| body_str(d) == body_str(&first[0]))
        .expect("the released message came back");
    assert!(again.properties().redelivered);
    conn.close().await.unwrap();
}

fn body_str(d: &ferromq_protocol::client::Delivery) -> String {
    String::from_utf8_lossy(d.body()).into_owned()
}
