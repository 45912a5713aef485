//! Deep persistent queues against the real binary: a queue holds a small
//! window of waiting messages in memory (`destinations.queue_window`) and
//! leaves the rest in the store, read back in order as consumers drain it.
//! A backlog many times the window is delivered complete and in order, in
//! priority order, and to consumers with selectors (two that share the
//! queue between them: a lone consumer whose selector matches only
//! messages deeper than a few windows waits, see `destination::backlog`); a restart with a deep
//! backlog delivers its first message quickly; memory stays bounded while
//! a backlog far larger than the window is written and drained; a store
//! reopened at checkpoints (`store.checkpoint_every`) while it fills keeps
//! every receipted message, in order, across a kill -9.
//! A durable subscription's queue pages the same way: an offline
//! subscriber's deep backlog comes back complete and in order, also after a
//! `kill -9`. A queue keeps one order for persistent and non-persistent
//! messages behind its stored backlog, and a purge of a deep queue answers
//! with every message, the stored ones included.
//! (Crashes in the middle of filling and draining a deep queue:
//! `durability_crash.rs`.)
//!
//! Sizes are knobs so CI stays fast: `FERROMQ_DEEP_COUNT` (messages per
//! ordering test, default 1500, with a window of 16: ~90 windows),
//! `FERROMQ_DEEP_RSS_COUNT` (default 20000 messages of 4 KiB, sent by four
//! producers without receipts), `FERROMQ_DEEP_RSS_MIB` (the RSS bound,
//! default 200: measured 139 MiB with the log writer's 1 MiB queue, 219 MiB
//! with a 4 MiB one and 587 MiB with the former 32 MiB one),
//! `FERROMQ_DEEP_CHECKPOINT_COUNT` (default 1000 messages of 32 KiB),
//! `FERROMQ_DEEP_FIRST_MS` (first delivery after a restart, default 5000 ms
//! for a debug build on a loaded machine; the release figure is in
//! BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{http_get, Broker, Client};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WINDOW: usize = 16;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(extra: &str) -> String {
    format!("[destinations]\nqueue_window = {WINDOW}\n{extra}")
}

/// Sends persistent messages built by `make` for `0..n`, receipts
/// pipelined (at most 64 outstanding), and waits for every receipt.
fn produce(c: &mut Client, n: usize, make: impl Fn(usize) -> Frame) {
    produce_as_made(c, n, |i| make(i).header("persistent", "true"));
}

/// [`produce`], with the persistence `make` gives each message.
fn produce_as_made(c: &mut Client, n: usize, make: impl Fn(usize) -> Frame) {
    let mut outstanding = 0;
    for i in 0..n {
        c.send(make(i).header("receipt", &format!("r{i}")));
        outstanding += 1;
        if outstanding >= 64 {
            let r = c.recv();
            assert_eq!(r.command, Command::Receipt, "{r:?}");
            outstanding -= 1;
        }
    }
    for _ in 0..outstanding {
        let r = c.recv();
        assert_eq!(r.command, Command::Receipt, "{r:?}");
    }
}

fn send(queue: &str, body: String) -> Frame {
    Frame::new(Command::Send)
        .header("destination", queue)
        .body(body)
}

/// Subscribes with client-individual acks and a prefetch of 100, receives
/// `n` messages, acking each; returns their bodies.
fn drain(c: &mut Client, id: &str, queue: &str, selector: Option<&str>, n: usize) -> Vec<String> {
    let mut sub = Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", queue)
        .header("ack", "client-individual")
        .header("activemq.prefetchSize", "100");
    if let Some(s) = selector {
        sub = sub.header("selector", s);
    }
    c.send(sub);
    (0..n)
        .map(|_| {
            let m = c.recv();
            assert_eq!(m.command, Command::Message, "{m:?}");
            let ack = m.get("ack").unwrap().to_string();
            c.send(Frame::new(Command::Ack).header("id", &ack));
            String::from_utf8(m.body.to_vec()).unwrap()
        })
        .collect()
}

/// The queue's depth and the broker's view of it, from the admin API.
fn waiting(broker: &Broker, queue: &str) -> u64 {
    let name = queue.trim_start_matches("/queue/");
    let (status, body) = http_get(
        broker.admin(),
        &format!("/api/destinations/queue/{name}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["waiting"]
        .as_u64()
        .or_else(|| v["messages"].as_u64())
        .unwrap_or_else(|| panic!("no waiting count in {body}"))
}

#[test]
fn a_backlog_many_times_the_window_is_delivered_complete_and_in_order() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let broker = Broker::start_with(Some(&config("")), &["--admin", "127.0.0.1:0"]);
    let mut p = broker.client();
    produce(&mut p, n, |i| send("/queue/deep", format!("m{i}")));
    // All of it waits (most of it in the store, not in memory), and the
    // admin API counts both.
    assert_eq!(waiting(&broker, "/queue/deep"), n as u64);
    let mut c = broker.client();
    let got = drain(&mut c, "s", "/queue/deep", None, n);
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "delivered out of order or incomplete");
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn priorities_hold_across_the_store_backlog() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let broker = Broker::start_with(Some(&config("")), &[]);
    let mut p = broker.client();
    // Priorities cycle 0..9, so every window read mixes them and most of
    // each lane is in the store when the consumer comes.
    produce(&mut p, n, |i| {
        send("/queue/deep-prio", format!("{}-{i}", i % 10))
            .header("priority", &(i % 10).to_string())
    });
    let mut c = broker.client();
    let got = drain(&mut c, "s", "/queue/deep-prio", None, n);
    let mut want: Vec<(usize, usize)> = (0..n).map(|i| (i % 10, i)).collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let want: Vec<String> = want.iter().map(|(p, i)| format!("{p}-{i}")).collect();
    assert_eq!(got.len(), want.len());
    let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(
        first_wrong,
        None,
        "priority order broken (got, want): {:?}",
        first_wrong.map(|k| (&got[k], &want[k]))
    );
}

#[test]
fn consumers_with_selectors_each_get_their_messages_from_the_store_in_order() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let broker = Broker::start_with(Some(&config("")), &[]);
    let mut p = broker.client();
    let color = |i: usize| if i % 4 == 0 { "red" } else { "blue" };
    produce(&mut p, n, |i| {
        send("/queue/deep-sel", format!("{}-{i}", color(i))).header("color", color(i))
    });
    // Two selective consumers share the queue: every message is for one
    // of them, and each must see its own in order, all of them, although
    // nearly all were in the store when they subscribed.
    let reds = (0..n).filter(|i| i % 4 == 0).count();
    let mut rc = broker.client();
    let red = std::thread::spawn(move || {
        drain(&mut rc, "r", "/queue/deep-sel", Some("color = 'red'"), reds)
    });
    let mut c = broker.client();
    let blues = drain(
        &mut c,
        "b",
        "/queue/deep-sel",
        Some("color = 'blue'"),
        n - reds,
    );
    let red = red.join().unwrap();
    let want_red: Vec<String> = (0..n)
        .filter(|i| i % 4 == 0)
        .map(|i| format!("red-{i}"))
        .collect();
    let want_blue: Vec<String> = (0..n)
        .filter(|i| i % 4 != 0)
        .map(|i| format!("blue-{i}"))
        .collect();
    assert_eq!(red, want_red);
    assert_eq!(blues, want_blue);
}

#[test]
fn a_restart_with_a_deep_backlog_delivers_its_first_message_quickly() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let bound = Duration::from_millis(knob("FERROMQ_DEEP_FIRST_MS", 5000) as u64);
    let mut broker = Broker::start_with(Some(&config("")), &[]);
    let mut p = broker.client();
    produce(&mut p, n, |i| send("/queue/deep-restart", format!("m{i}")));
    drop(p);
    broker.kill9();
    let started = Instant::now();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/deep-restart", "client-individual");
    let first = c.recv();
    let elapsed = started.elapsed();
    assert_eq!(first.command, Command::Message, "{first:?}");
    assert_eq!(&first.body[..], b"m0");
    assert!(
        elapsed < bound,
        "first delivery {elapsed:?} after the restart began (bound {bound:?})"
    );
    eprintln!("deep restart: {n} messages, first delivery {elapsed:?} after the restart began");
    // And the rest follows, in order, after the one already delivered.
    let ack = first.get("ack").unwrap().to_string();
    c.send(Frame::new(Command::Ack).header("id", &ack));
    for i in 1..n {
        let m = c.recv();
        assert_eq!(String::from_utf8_lossy(&m.body), format!("m{i}"));
        let ack = m.get("ack").unwrap().to_string();
        c.send(Frame::new(Command::Ack).header("id", &ack));
    }
}

/// Samples the broker's `VmRSS` every 10 ms on a thread of its own, so
/// that a short spike between two of the test's own steps is seen too.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0u64, 0u64);
            // Bounded by the test: it stops the sampler before it ends.
            while !stopped.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                if let Some(kib) = status.ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                }) {
                    peak = peak.max(kib);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (peak, samples)
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// The peak RSS in KiB and the number of samples taken.
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn memory_stays_bounded_while_a_backlog_far_larger_than_the_window_is_written_and_drained() {
    let n = knob("FERROMQ_DEEP_RSS_COUNT", 20_000);
    let bound_kib = knob("FERROMQ_DEEP_RSS_MIB", 200) as u64 * 1024;
    const BODY: usize = 4096;
    const PRODUCERS: usize = 4;
    // A small page cache and body budget, so that the bound is about the
    // broker's own memory.
    let broker = Broker::start_with(
        Some(&config("[store]\nmemory_limit = \"16MiB\"\n")),
        &["--admin", "127.0.0.1:0"],
    );
    let sampler = RssSampler::start(broker.pid().unwrap());
    let body = |i: usize| format!("{i:0>width$}", width = BODY);
    // Sends without receipts (each producer's last one asks for one), as
    // fast as the broker reads them: the log writer's queue fills to its
    // bound, and each batch the writer takes is as large as it gets. (A
    // queue of 32 MiB made sled hold ~0.5 GB per batch: its apply_batch
    // frees the leaf versions it replaces only when the batch ends.)
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut c = broker.client();
            std::thread::spawn(move || {
                let mine: Vec<usize> = (0..n).filter(|i| i % PRODUCERS == p).collect();
                let last = mine.len().saturating_sub(1);
                for (k, &i) in mine.iter().enumerate() {
                    let mut f =
                        send(&format!("/queue/deep-rss-{p}"), body(i)).header("persistent", "true");
                    if k == last {
                        f = f.header("receipt", "last");
                    }
                    c.send(f);
                }
                // The broker reads as fast as its store writes: a debug
                // build on a loaded machine takes a while.
                let r = c.recv_within(Duration::from_secs(300));
                assert!(
                    matches!(&r, Some(f) if f.command == Command::Receipt),
                    "{r:?}"
                );
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for p in 0..PRODUCERS {
        let queue = format!("/queue/deep-rss-{p}");
        let expected = (0..n).filter(|i| i % PRODUCERS == p).count() as u64;
        assert_eq!(waiting(&broker, &queue), expected, "{queue}");
    }
    let written_kib = (n * BODY / 1024) as u64;
    let mut c = broker.client();
    for p in 0..PRODUCERS {
        let queue = format!("/queue/deep-rss-{p}");
        c.send(
            Frame::new(Command::Subscribe)
                .header("id", &format!("s{p}"))
                .header("destination", &queue)
                .header("ack", "client-individual")
                .header("activemq.prefetchSize", "100"),
        );
        for i in (0..n).filter(|i| i % PRODUCERS == p) {
            let m = c.recv();
            assert_eq!(m.body.len(), BODY);
            assert_eq!(&m.body[..], body(i).as_bytes(), "message {i}");
            let ack = m.get("ack").unwrap().to_string();
            c.send(Frame::new(Command::Ack).header("id", &ack));
        }
        c.send(Frame::new(Command::Unsubscribe).header("id", &format!("s{p}")));
    }
    let (peak, samples) = sampler.finish();
    eprintln!(
        "deep rss: {n} messages, {written_kib} KiB of bodies, peak RSS {peak} KiB in {samples} samples"
    );
    assert!(samples > 10, "only {samples} RSS samples were taken");
    assert!(
        peak < bound_kib,
        "peak RSS {peak} KiB over the bound of {bound_kib} KiB ({written_kib} KiB of bodies written)"
    );
}

/// Subscribes to the durable subscription `name` on `topic`, client-
/// individual acks, prefetch 100; waits for the receipt.
fn subscribe_durable(c: &mut Client, topic: &str, name: &str) {
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "d")
            .header("destination", topic)
            .header("activemq.subscriptionName", name)
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "100")
            .header("receipt", "sub"),
    );
    assert_eq!(
        c.recv_command(Command::Receipt).get("receipt-id"),
        Some("sub")
    );
}

/// Receives `n` messages, acking each (the last ACK with a receipt, waited
/// for: every ACK before it is durable too, the log keeps their order);
/// returns their bodies.
fn receive_acking(c: &mut Client, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let m = c.recv_command(Command::Message);
        let ack = m.get("ack").unwrap().to_string();
        let mut f = Frame::new(Command::Ack).header("id", &ack);
        if k + 1 == n {
            f = f.header("receipt", "acked");
        }
        c.send(f);
        out.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    if n > 0 {
        assert_eq!(
            c.recv_command(Command::Receipt).get("receipt-id"),
            Some("acked")
        );
    }
    out
}

/// DISCONNECT with a receipt: the subscriber is offline once it arrives.
fn leave(mut c: Client) {
    c.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert_eq!(
        c.recv_command(Command::Receipt).get("receipt-id"),
        Some("bye")
    );
}

/// The admin API's view of a durable subscription's queue.
fn durable_queue(broker: &Broker, client_id: &str, name: &str) -> serde_json::Value {
    let (status, body) = http_get(
        broker.admin(),
        &format!("/api/destinations/queue/%2Fdurable%2F{client_id}%2F{name}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn an_offline_durable_subscriber_gets_a_deep_backlog_complete_and_in_order_from_a_window() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let broker = Broker::start_with(Some(&config("")), &["--admin", "127.0.0.1:0"]);
    let mut c = broker.client_with_id("deep-app");
    subscribe_durable(&mut c, "/topic/deep-t", "s");
    leave(c);
    let mut p = broker.client();
    produce(&mut p, n, |i| send("/topic/deep-t", format!("m{i}")));
    // Everything is kept for the subscriber, and the queue holds a window
    // of it in memory, not the whole backlog: each held message counts at
    // least 256 bytes, so holding all of them would pass this bound.
    let q = durable_queue(&broker, "deep-app", "s");
    assert_eq!(q["messages"].as_u64(), Some(n as u64), "{q}");
    let held = q["bytes"].as_u64().unwrap();
    assert!(
        held < (WINDOW * 4 * 1024) as u64,
        "{held} bytes held in memory for {n} waiting messages"
    );
    let mut c = broker.client_with_id("deep-app");
    subscribe_durable(&mut c, "/topic/deep-t", "s");
    let got = receive_acking(&mut c, n);
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "delivered out of order or incomplete");
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_durable_subscription_s_deep_backlog_survives_kill9_in_order() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let mut broker = Broker::start_with(Some(&config("")), &[]);
    let mut c = broker.client_with_id("crash-app");
    subscribe_durable(&mut c, "/topic/deep-crash", "s");
    leave(c);
    let mut p = broker.client();
    produce(&mut p, n, |i| send("/topic/deep-crash", format!("m{i}")));
    // The subscriber takes a third (acked, the last ack receipted) and is
    // still connected, with a prefetch of unacked deliveries, at the kill.
    let mut c = broker.client_with_id("crash-app");
    subscribe_durable(&mut c, "/topic/deep-crash", "s");
    let first = receive_acking(&mut c, n / 3);
    assert_eq!(
        first,
        (0..n / 3).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    drop(p);
    broker.kill9();
    drop(c);
    let broker = broker.restart();
    let mut c = broker.client_with_id("crash-app");
    subscribe_durable(&mut c, "/topic/deep-crash", "s");
    // Nothing receipted is lost, nothing acked comes back, in order.
    let rest = receive_acking(&mut c, n - n / 3);
    let want: Vec<String> = (n / 3..n).map(|i| format!("m{i}")).collect();
    assert_eq!(rest, want, "lost, duplicated or out of order after kill -9");
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn persistent_and_non_persistent_messages_keep_their_send_order_behind_a_deep_backlog() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let broker = Broker::start_with(Some(&config("")), &[]);
    let mut p = broker.client();
    // Runs of both kinds from one producer, most of them sent while the
    // queue's persistent messages are in the store.
    let persistent = |i: usize| i % 3 != 0 && i % 7 != 0;
    produce_as_made(&mut p, n, |i| {
        send("/queue/deep-mixed", format!("m{i}"))
            .header("persistent", if persistent(i) { "true" } else { "false" })
    });
    let mut c = broker.client();
    let got = drain(&mut c, "s", "/queue/deep-mixed", None, n);
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(
        first_wrong,
        None,
        "send order broken (got, want): {:?}",
        first_wrong.map(|k| (&got[k], &want[k]))
    );
    assert_eq!(got.len(), n);
}

/// POSTs to the admin API (no credentials: the test brokers run without
/// admin authentication) and returns the status and JSON answer.
fn post(broker: &Broker, path: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut answer = agent
        .post(&format!("http://{}{path}", broker.admin()))
        .send_empty()
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap())
}

#[test]
fn purging_a_deep_queue_answers_with_every_message_and_none_comes_back() {
    let n = knob("FERROMQ_DEEP_COUNT", 1500);
    let broker = Broker::start_with(Some(&config("")), &["--admin", "127.0.0.1:0"]);
    let mut p = broker.client();
    produce(&mut p, n, |i| send("/queue/deep-purge", format!("old{i}")));
    let started = Instant::now();
    let (status, answer) = post(&broker, "/api/destinations/queue/deep-purge/purge");
    eprintln!(
        "deep purge: {n} messages, answered in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{answer}");
    // The stored ones are counted too, although their acknowledgement
    // runs on in the background.
    assert_eq!(answer["purged"].as_u64(), Some(n as u64), "{answer}");
    assert_eq!(waiting(&broker, "/queue/deep-purge"), 0);
    // More than a window sent after the purge: delivered, in order, and
    // nothing purged with them.
    let m = 3 * WINDOW;
    produce(&mut p, m, |i| send("/queue/deep-purge", format!("m{i}")));
    let mut c = broker.client();
    let got = drain(&mut c, "s", "/queue/deep-purge", None, m);
    let want: Vec<String> = (0..m).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    c.expect_silence(Duration::from_millis(500));
}

#[test]
fn a_store_reopened_at_checkpoints_keeps_every_receipted_message_across_a_kill9() {
    // 1,000 messages of 32 KiB are ~31 MiB of records: at least one
    // checkpoint at the smallest setting (16 MiB; a second one may wait, as
    // the writer spaces them by 20 times a reopen's time), with a backlog far
    // larger than the window.
    let n = knob("FERROMQ_DEEP_CHECKPOINT_COUNT", 1_000);
    const BODY: usize = 32 * 1024;
    let body = |i: usize| format!("{i:0>width$}", width = BODY);
    let mut broker = Broker::start_with(
        Some(&config("[store]\ncheckpoint_every = \"16MiB\"\n")),
        &[],
    );
    let mut p = broker.client();
    // The writer spaces checkpoints by 20 times its last open's time, so
    // on a fast run the first may come after the first n messages: go on
    // sending, a chunk at a time, until one is logged (at most 8 n).
    let chunk = 250;
    let mut sent = 0;
    while sent < n || broker.log().matches("store checkpointed").count() == 0 {
        assert!(
            sent < 8 * n,
            "no checkpoint after {sent} messages of {BODY} bytes:\n{}",
            broker.log()
        );
        produce(&mut p, chunk, |k| {
            send("/queue/deep-checkpoint", body(sent + k))
        });
        sent += chunk;
    }
    drop(p);
    let checkpoints = broker.log().matches("store checkpointed").count();
    assert!(checkpoints >= 1, "{checkpoints} checkpoints");
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    let got = drain(&mut c, "s", "/queue/deep-checkpoint", None, sent);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(b, &body(i), "message {i} after the restart");
    }
    c.expect_silence(Duration::from_millis(300));
}
