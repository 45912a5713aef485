//! Per-destination store bytes (issue 17, `store_bytes`) through the real
//! broker: persistent messages of a known size are counted in the API, the
//! console's listing and `/metrics`; non-persistent ones are not; acks and
//! a purge take them off; and the figure after `kill -9` and a restart is
//! the one before it (it is recovered from the store's lane records, not
//! recounted from memory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{http_get, metric, Broker, Client};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const ADMIN: &[&str] = &["--admin", "127.0.0.1:0"];
/// Persistent messages sent to the queue under test.
const N: usize = 40;
/// Their body size.
const BODY: usize = 1000;
/// What a record may add to its body (seq, destination, timestamps and
/// the few headers a STOMP SEND carries here): a generous bound.
const OVERHEAD: u64 = 400;
const QUEUE: &str = "/queue/store.bytes";
const OTHER: &str = "/queue/store.other";
const TRANSIENT: &str = "/queue/store.transient";

fn get(admin: SocketAddr, path: &str) -> Value {
    let (status, body) = http_get(admin, path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `store_bytes` of `queue` from its own route, checked against the
/// listing and the Prometheus series.
fn store_bytes(admin: SocketAddr, queue: &str) -> u64 {
    let short = queue.trim_start_matches("/queue/");
    let one = get(admin, &format!("/api/destinations/queue/{short}"))["store_bytes"]
        .as_u64()
        .expect("store_bytes is a number");
    let listed = get(admin, &format!("/api/destinations?kind=queue&name={short}"));
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == queue)
        .unwrap_or_else(|| panic!("{queue} not listed: {listed}"));
    assert_eq!(row["store_bytes"].as_u64(), Some(one), "{row}");
    let (_, text) = http_get(admin, "/metrics", None);
    let series =
        format!("ferromq_destination_store_bytes{{destination=\"{queue}\",kind=\"queue\"}}");
    assert_eq!(metric(&text, &series), Some(one as f64), "{series}");
    one
}

/// The store's total live bytes (`GET /api/overview`).
fn live_bytes(admin: SocketAddr) -> u64 {
    get(admin, "/api/overview")["store"]["live_bytes"]
        .as_u64()
        .expect("store.live_bytes")
}

/// A SEND with a receipt (its commit: for a persistent message, stored).
fn send(c: &mut Client, dest: &str, body: &str, persistent: bool, receipt: &str) {
    let f = Frame::new(Command::Send)
        .header("destination", dest)
        .header("persistent", if persistent { "true" } else { "false" })
        .body(body.to_string());
    c.send_with_receipt(f, receipt);
}

/// Polls `store_bytes` of `queue` until `want` holds (a purge's removals
/// reach the store after the purge answers), for at most 20 s. While the
/// figure is still moving only the destination's own route is read: the
/// three views are read one after another, so comparing them mid-purge
/// would race the purge. Once it has settled they are compared.
fn wait_store_bytes(admin: SocketAddr, queue: &str, want: impl Fn(u64) -> bool) -> u64 {
    let short = queue.trim_start_matches("/queue/");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = get(admin, &format!("/api/destinations/queue/{short}"))["store_bytes"]
            .as_u64()
            .expect("store_bytes is a number");
        if want(got) || Instant::now() > deadline {
            return store_bytes(admin, queue);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn store_bytes_count_stored_messages_through_acks_purge_and_kill9_restarts() {
    let mut broker = Broker::start_with(None, ADMIN);
    let admin = broker.admin();
    let mut p = broker.client();
    let body = "x".repeat(BODY);
    for i in 0..N {
        send(&mut p, QUEUE, &body, true, &format!("q{i}"));
    }
    for i in 0..5 {
        send(&mut p, OTHER, &body, true, &format!("o{i}"));
    }
    for i in 0..10 {
        send(&mut p, TRANSIENT, &body, false, &format!("t{i}"));
    }
    drop(p);

    // Every persistent record is its body plus a bounded overhead; the
    // destinations add up to the store's live total; non-persistent
    // messages are held in memory only.
    let sent = store_bytes(admin, QUEUE);
    let n = N as u64;
    assert!(
        sent >= n * BODY as u64 && sent <= n * (BODY as u64 + OVERHEAD),
        "{sent} bytes for {N} messages of {BODY}"
    );
    let other = store_bytes(admin, OTHER);
    assert!(other >= 5 * BODY as u64 && other <= 5 * (BODY as u64 + OVERHEAD));
    assert_eq!(store_bytes(admin, TRANSIENT), 0);
    assert_eq!(
        get(admin, "/api/destinations/queue/store.transient")["messages"],
        10
    );
    assert_eq!(live_bytes(admin), sent + other);

    // Acknowledge 15 (each ACK's receipt waits for the store).
    let acked = 15;
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", QUEUE)
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "100"),
    );
    let got: Vec<Frame> = (0..N).map(|_| c.recv_command(Command::Message)).collect();
    for (i, m) in got.iter().take(acked).enumerate() {
        let receipt = format!("a{i}");
        c.send(
            Frame::new(Command::Ack)
                .header("id", m.get("ack").expect("ack header"))
                .header("receipt", &receipt),
        );
        let r = c.recv_command(Command::Receipt);
        assert_eq!(r.get("receipt-id"), Some(receipt.as_str()));
    }
    let after_acks = store_bytes(admin, QUEUE);
    let freed = sent - after_acks;
    let k = acked as u64;
    assert!(
        after_acks < sent && freed >= k * BODY as u64 && freed <= k * (BODY as u64 + OVERHEAD),
        "{sent} -> {after_acks} after {acked} acks"
    );
    assert_eq!(live_bytes(admin), after_acks + other);

    // kill -9 with 25 unacknowledged: the same figure comes back.
    broker.kill9();
    let mut broker = broker.restart();
    let admin = broker.admin();
    assert_eq!(store_bytes(admin, QUEUE), after_acks);
    assert_eq!(store_bytes(admin, OTHER), other);
    assert_eq!(live_bytes(admin), after_acks + other);
    assert!(
        broker.log().contains("store opened"),
        "the restart opened the store"
    );

    // Purge: every stored message of the queue goes, the other queue's
    // stay. The queue's messages are read back from the store after the
    // restart, so the purge removes stored records (a positive count).
    let (status, answer) = {
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        use std::io::{Read, Write};
        let req = format!(
            "POST /api/destinations/queue/store.bytes/purge HTTP/1.1\r\nHost: {admin}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out)
    };
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains(&format!("\"purged\":{}", N - acked)),
        "{answer}"
    );
    assert_eq!(wait_store_bytes(admin, QUEUE, |b| b == 0), 0);
    assert_eq!(store_bytes(admin, OTHER), other);
    assert_eq!(live_bytes(admin), other);

    // And after another kill -9 the purge holds: the queue stored nothing,
    // so nothing brings it back.
    broker.kill9();
    let broker = broker.restart();
    let admin = broker.admin();
    let (status, answer) = http_get(admin, "/api/destinations/queue/store.bytes", None);
    assert_eq!(status, 404, "{answer}");
    assert_eq!(store_bytes(admin, OTHER), other);
    assert_eq!(live_bytes(admin), other);
}
