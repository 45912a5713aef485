//! The admin HTTP endpoint through the real broker: `/healthz`, `/metrics`
//! counters moving while a producer and a consumer run, producers blocked by
//! flow control, `/api/destinations` JSON, and HTTP Basic auth for group
//! `admins` once users are configured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{hash_password, http_get, metric, Broker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];

fn series(name: &str, destination: &str) -> String {
    format!("{name}{{destination=\"{destination}\",kind=\"queue\"}}")
}

fn scrape(broker: &Broker) -> String {
    let (status, body) = http_get(broker.admin(), "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn healthz_and_unknown_paths() {
    let broker = Broker::start_with(None, ADMIN);
    assert_eq!(
        http_get(broker.admin(), "/healthz", None),
        (200, "ok\n".into())
    );
    assert_eq!(http_get(broker.admin(), "/nope", None).0, 404);
    assert!(broker.wait_for_log("listener=\"admin\""));
}

#[test]
fn metrics_move_while_a_producer_and_a_consumer_run() {
    let broker = Broker::start_with(None, ADMIN);
    let q = "/queue/metered";
    let mut consumer = broker.client();
    consumer.subscribe("s", q, "auto");
    let before = scrape(&broker);
    assert_eq!(
        metric(&before, &series("ferromq_destination_consumers", q)),
        Some(1.0)
    );
    assert_eq!(
        metric(&before, &series("ferromq_destination_enqueued_total", q)),
        Some(0.0)
    );

    // A producer and a consumer run in the background while we scrape.
    let running = Arc::new(AtomicBool::new(true));
    let stop = running.clone();
    let mut producer = broker.client();
    let produce = std::thread::spawn(move || {
        let mut sent = 0u64;
        while stop.load(Ordering::Relaxed) && sent < 20_000 {
            producer.send_message("/queue/metered", "tick", &[]);
            sent += 1;
        }
        sent
    });
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let consume = std::thread::spawn(move || {
        while let Some(f) = consumer.recv_within(Duration::from_secs(3)) {
            assert_eq!(f.command, Command::Message);
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while samples.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let m = scrape(&broker);
        samples.push((
            metric(&m, &series("ferromq_destination_enqueued_total", q)).unwrap(),
            metric(&m, &series("ferromq_destination_dequeued_total", q)).unwrap(),
        ));
    }
    running.store(false, Ordering::Relaxed);
    let sent = produce.join().unwrap();
    assert!(
        samples.windows(2).any(|w| w[1].0 > w[0].0),
        "enqueued never moved: {samples:?}"
    );
    assert!(
        samples.windows(2).any(|w| w[1].1 > w[0].1),
        "dequeued never moved: {samples:?}"
    );
    consume.join().unwrap();
    assert_eq!(received.load(Ordering::Relaxed), sent);
    let m = scrape(&broker);
    assert_eq!(
        metric(&m, &series("ferromq_destination_enqueued_total", q)),
        Some(sent as f64)
    );
    assert_eq!(
        metric(&m, &series("ferromq_destination_dequeued_total", q)),
        Some(sent as f64)
    );
    assert_eq!(
        metric(&m, &series("ferromq_destination_messages", q)),
        Some(0.0)
    );
    assert!(
        metric(&m, "ferromq_connections_total").unwrap() >= 2.0,
        "{m}"
    );
}

#[test]
fn unacked_dequeued_and_redelivered_follow_acks() {
    let broker = Broker::start_with(None, ADMIN);
    let q = "/queue/acks";
    let mut producer = broker.client();
    for i in 0..5 {
        producer.send_message(q, &format!("m{i}"), &[]);
    }
    let mut consumer = broker.client();
    consumer.subscribe("s", q, "client-individual");
    let delivered = consumer.recv_messages(5);
    let m = scrape(&broker);
    assert_eq!(
        metric(&m, &series("ferromq_destination_unacked", q)),
        Some(5.0)
    );
    assert_eq!(metric(&m, "ferromq_connections"), Some(2.0), "{m}");
    for f in &delivered[..3] {
        consumer.send_with_receipt(
            Frame::new(Command::Ack).header("id", f.get("ack").unwrap()),
            "ack",
        );
    }
    let m = scrape(&broker);
    assert_eq!(
        metric(&m, &series("ferromq_destination_dequeued_total", q)),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, &series("ferromq_destination_unacked", q)),
        Some(2.0)
    );
    // NACK one: it is redelivered and the counter says so.
    consumer.send(Frame::new(Command::Nack).header("id", delivered[3].get("ack").unwrap()));
    let again = consumer.recv();
    assert_eq!(again.body, delivered[3].body);
    let m = scrape(&broker);
    assert_eq!(
        metric(&m, &series("ferromq_destination_redelivered_total", q)),
        Some(1.0)
    );
}

#[test]
fn store_size_and_flush_latency_are_reported() {
    let broker = Broker::start_with(None, ADMIN);
    let before = scrape(&broker);
    let flushes = |m: &str| metric(m, "ferromq_store_flush_seconds_count").unwrap();
    let mut c = broker.client();
    for i in 0..5 {
        c.send_message(
            "/queue/durable",
            &format!("p{i}"),
            &[("persistent", "true")],
        );
    }
    let m = scrape(&broker);
    // sync = always: every receipted persistent SEND waited for a flush.
    assert!(flushes(&m) >= flushes(&before) + 1.0, "{m}");
    assert!(metric(&m, "ferromq_store_live_bytes").unwrap() > 0.0, "{m}");
    assert!(metric(&m, "ferromq_store_disk_bytes").unwrap() > 0.0, "{m}");
    let inf = metric(&m, "ferromq_store_flush_seconds_bucket{le=\"+Inf\"}").unwrap();
    assert_eq!(inf, flushes(&m));
    assert!(metric(&m, "ferromq_store_flush_seconds_sum").unwrap() > 0.0);
    // Consuming them empties the live bytes again.
    c.subscribe("s", "/queue/durable", "auto");
    c.recv_messages(5);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&scrape(&broker), "ferromq_store_live_bytes") != Some(0.0) {
        assert!(Instant::now() < deadline, "live bytes never went back to 0");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn blocked_producers_are_reported() {
    let broker = Broker::start_with(Some("[destinations]\nmemory_limit = \"1KiB\"\n"), ADMIN);
    let q = "/queue/full";
    let (mut producer, mut writer) = broker.client_with_writer();
    // 800 bytes plus the per-message overhead pass the 1 KiB limit: the
    // receipt comes, then the session waits for space.
    writer
        .send(
            &Frame::new(Command::Send)
                .header("destination", q)
                .header("receipt", "r")
                .body(vec![b'x'; 800]),
        )
        .unwrap();
    producer.recv_command(Command::Receipt);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&broker);
        if metric(&m, &series("ferromq_destination_blocked_producers", q)) == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no blocked producer reported: {m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Draining unblocks it.
    let mut consumer = broker.client();
    consumer.subscribe("s", q, "auto");
    consumer.recv_messages(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(&broker);
        if metric(&m, &series("ferromq_destination_blocked_producers", q)) == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "producer still blocked: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn api_destinations_is_json() {
    let broker = Broker::start_with(None, ADMIN);
    let mut c = broker.client();
    c.send_message("/queue/j1", "a", &[]);
    c.send_message("/queue/j1", "b", &[]);
    c.subscribe("t", "/topic/j2", "auto");
    let (status, body) = http_get(broker.admin(), "/api/destinations", None);
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let find = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {body}"))
    };
    let q = find("/queue/j1");
    assert_eq!(q["kind"], "queue");
    assert_eq!(q["messages"], 2);
    assert_eq!(q["enqueued"], 2);
    assert_eq!(q["consumers"], 0);
    let t = find("/topic/j2");
    assert_eq!(t["kind"], "topic");
    assert_eq!(t["consumers"], 1);
}

#[test]
fn with_users_admin_needs_basic_auth_of_group_admins() {
    let hash = hash_password("adm-pw");
    let config = format!(
        r#"
[[auth.users]]
name = "root"
password_hash = "{hash}"
groups = ["admins"]
[[auth.users]]
name = "app"
password_hash = "{hash}"
"#
    );
    let broker = Broker::start_with(Some(&config), ADMIN);
    let admin = broker.admin();
    assert_eq!(http_get(admin, "/metrics", None).0, 401);
    assert_eq!(http_get(admin, "/api/destinations", None).0, 401);
    assert_eq!(http_get(admin, "/metrics", Some(("root", "wrong"))).0, 401);
    assert_eq!(http_get(admin, "/metrics", Some(("app", "adm-pw"))).0, 401);
    let (status, body) = http_get(admin, "/metrics", Some(("root", "adm-pw")));
    assert_eq!(status, 200);
    assert!(body.contains("ferromq_connections "), "{body}");
    // Health checks need no credentials.
    assert_eq!(http_get(admin, "/healthz", None).0, 200);
    assert!(broker.wait_for_log("admin authentication failed"));
    assert!(!broker.log().contains("adm-pw"));
    let m = http_get(admin, "/metrics", Some(("root", "adm-pw"))).1;
    assert!(
        metric(&m, "ferromq_auth_failures_total").unwrap() >= 2.0,
        "{m}"
    );
}
