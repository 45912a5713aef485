//! Queues bigger than memory, against the real binary: persistent bodies
//! beyond `store.memory_limit` are paged out to the store and read back when
//! dispatched, so a backlog many times the memory limits is accepted, kept
//! across a restart and delivered intact and in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{http_get, metric, Broker, Client};

/// Both limits at their minimum: without paging, a destination holding more
/// than 1 MiB of bodies would hold its producers (flow control) and the
/// sends below would never get their receipts.
const CONFIG: &str = "[store]\nmemory_limit = \"1MiB\"\n[destinations]\nmemory_limit = \"1MiB\"\n";
const COUNT: usize = 300;
const BODY: usize = 32 * 1024;

/// A body that tells which message it is, all the way through.
fn body(i: usize) -> String {
    let tag = format!("<{i:06}>");
    tag.repeat(BODY / tag.len())
}

fn store_gauges(broker: &Broker) -> (f64, f64) {
    let (status, text) = http_get(broker.admin(), "/metrics", None);
    assert_eq!(status, 200, "{text}");
    let resident = metric(&text, "ferromq_store_resident_bytes").expect(&text);
    let paged = metric(&text, "ferromq_store_paged_messages").expect(&text);
    (resident, paged)
}

fn produce(c: &mut Client, queue: &str, range: std::ops::Range<usize>) {
    for i in range {
        c.send_with_receipt(
            Frame::new(Command::Send)
                .header("destination", queue)
                .header("persistent", "true")
                .body(body(i)),
            &format!("r{i}"),
        );
    }
}

/// Receives messages `0..COUNT` in order, checking every body; the first
/// `redelivered` of them must be marked redelivered.
fn drain_and_check(c: &mut Client, queue: &str, redelivered: usize) {
    c.subscribe("s", queue, "client-individual");
    for i in 0..COUNT {
        let m = c.recv();
        assert_eq!(m.command, Command::Message, "{m:?}");
        assert_eq!(m.body.len(), body(i).len(), "message {i}: wrong length");
        assert!(
            m.body[..] == *body(i).as_bytes(),
            "message {i}: body differs (starts {:?})",
            String::from_utf8_lossy(&m.body[..16])
        );
        assert_eq!(m.get("redelivered") == Some("true"), i < redelivered, "{i}");
        let ack = m.get("ack").unwrap().to_string();
        c.send(Frame::new(Command::Ack).header("id", &ack));
    }
    c.send_with_receipt(Frame::new(Command::Disconnect), "bye");
}

#[test]
fn a_backlog_many_times_the_memory_limits_is_paged_and_delivered_intact() {
    let broker = Broker::start_with(Some(CONFIG), &["--admin", "127.0.0.1:0"]);
    let mut p = broker.client();
    produce(&mut p, "/queue/big", 0..COUNT);
    // ~9.4 MiB of bodies were accepted with a 1 MiB budget: most are on
    // disk only.
    let (resident, paged) = store_gauges(&broker);
    assert!(resident <= 1024.0 * 1024.0, "{resident} bytes resident");
    assert!(
        paged as usize >= COUNT - 40,
        "only {paged} of {COUNT} paged"
    );
    let mut c = broker.client();
    drain_and_check(&mut c, "/queue/big", 0);
    // The acks reach the store's gauges with the writer's next batch.
    let deadline = std::time::Instant::now() + ferromq_tests::WAIT;
    loop {
        let gauges = store_gauges(&broker);
        if gauges == (0.0, 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acked bodies still counted: {gauges:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_paged_backlog_survives_a_restart_and_recovers_within_the_budget() {
    let mut broker = Broker::start_with(Some(CONFIG), &["--admin", "127.0.0.1:0"]);
    let mut p = broker.client();
    produce(&mut p, "/queue/kept", 0..COUNT);
    // Half of it was delivered once, unacknowledged, before the crash.
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "first")
            .header("destination", "/queue/kept")
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "10"),
    );
    for i in 0..10 {
        let m = c.recv();
        assert!(m.body[..] == *body(i).as_bytes(), "message {i}");
    }
    broker.kill9();
    let broker = broker.restart();
    // Recovery loads no message at all: the queue's cursor reads them
    // back from the store (bodies over 4 KiB stay on disk until they are
    // delivered), so nothing is resident in the store's budget.
    let (resident, paged) = store_gauges(&broker);
    assert!(resident <= 1024.0 * 1024.0, "{resident} bytes resident");
    assert_eq!(paged, 0.0, "recovery handed bodies to the pager");
    let mut c = broker.client();
    drain_and_check(&mut c, "/queue/kept", 10);
}

/// With paging, memory grows by the backlog's bookkeeping and what sled
/// caches, not by the bodies themselves. (sled 0.34 keeps a share of what
/// it writes in memory, more for bigger values; BENCHMARKS.md has figures.)
#[test]
fn the_broker_stays_small_while_a_backlog_far_bigger_than_its_budget_builds_up() {
    let broker = Broker::start_with(Some("[store]\nmemory_limit = \"1MiB\"\n"), &[]);
    let mut p = broker.client();
    let before = broker.rss_kib();
    let chunk = "m".repeat(4096);
    // 64 MiB of persistent bodies, nobody consuming; receipts read in
    // windows of 256 so the socket stays busy.
    for window in 0..64 {
        for i in 0..256 {
            p.send(
                Frame::new(Command::Send)
                    .header("destination", "/queue/huge")
                    .header("persistent", "true")
                    .header("receipt", &format!("r{window}-{i}"))
                    .body(chunk.clone()),
            );
        }
        for _ in 0..256 {
            let r = p.recv();
            assert_eq!(r.command, Command::Receipt, "{r:?}");
        }
    }
    let grown_mib = broker.rss_kib().saturating_sub(before) / 1024;
    // Measured here: +60 MiB paged (most of it sled's share), +195 MiB with
    // a budget big enough to page nothing. Paging broken would cost the
    // 64 MiB of bodies on top of sled's share.
    assert!(
        grown_mib < 100,
        "rss grew by {grown_mib} MiB for a 64 MiB backlog"
    );
}
