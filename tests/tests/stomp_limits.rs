//! Limits through the real broker, each set small in a config file: frame
//! size, header count, header line length, the frame and CONNECT timeouts,
//! producer flow control, and a slow consumer that must not stop others or
//! grow the broker's memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{http_get, metric, Broker, Client};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SMALL_FRAMES: &str = r#"
[stomp]
max_frame_size = "4KiB"
max_header_line = "1KiB"
max_headers = 10
"#;

fn message(e: &Frame) -> String {
    e.get("message").unwrap().to_string()
}

fn still_serving(broker: &Broker) {
    let mut c = broker.client();
    c.subscribe("s", "/queue/after", "auto");
    broker.client().send_message("/queue/after", "ok", &[]);
    assert_eq!(&c.recv().body[..], b"ok");
}

#[test]
fn frame_over_max_frame_size_is_refused() {
    let broker = Broker::start_with(Some(SMALL_FRAMES), &[]);
    // Just under the limit is fine.
    let mut ok = broker.client();
    ok.send_message("/queue/big", &"x".repeat(3500), &[]);
    let mut c = broker.client();
    let body = vec![b'y'; 5000];
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/big")
            .body(body),
    );
    let e = c.expect_error();
    assert!(message(&e).contains("4096"), "{e:?}");
    still_serving(&broker);
}

#[test]
fn body_without_content_length_is_refused_once_over_the_limit() {
    let broker = Broker::start_with(Some(SMALL_FRAMES), &[]);
    let mut c = broker.client();
    // No NUL ever comes: the broker must not wait for one.
    let mut raw = b"SEND\ndestination:/queue/big\n\n".to_vec();
    raw.extend(std::iter::repeat_n(b'z', 5000));
    c.send_raw(&raw);
    let e = c.expect_error();
    assert!(message(&e).contains("4096"), "{e:?}");
    still_serving(&broker);
}

#[test]
fn content_length_over_the_limit_is_refused_before_the_body() {
    let broker = Broker::start_with(Some(SMALL_FRAMES), &[]);
    let mut c = broker.client();
    c.send_raw(b"SEND\ndestination:/queue/big\ncontent-length:1000000\n\n");
    let e = c.expect_error();
    assert!(message(&e).contains("4096"), "{e:?}");
}

#[test]
fn too_many_headers_are_refused() {
    let broker = Broker::start_with(Some(SMALL_FRAMES), &[]);
    let mut ok = broker.client();
    let nine: Vec<(String, String)> = (0..7).map(|i| (format!("h{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = nine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // destination, receipt, content-length and 7 more: at the limit.
    ok.send_message("/queue/h", "ok", &refs);
    let mut c = broker.client();
    let mut f = Frame::new(Command::Send).header("destination", "/queue/h");
    for i in 0..10 {
        f = f.header(&format!("h{i}"), "v");
    }
    c.send(f);
    let e = c.expect_error();
    assert!(message(&e).contains("10"), "{e:?}");
    still_serving(&broker);
}

#[test]
fn header_line_over_the_limit_is_refused() {
    let broker = Broker::start_with(Some(SMALL_FRAMES), &[]);
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/h")
            .header("long", &"v".repeat(2000)),
    );
    let e = c.expect_error();
    assert!(message(&e).contains("1024"), "{e:?}");
    still_serving(&broker);
}

const SHORT_TIMEOUTS: &str = r#"
[stomp]
frame_timeout = "1s"
connect_timeout = "1s"
"#;

/// Expects the ERROR to arrive after about `timeout` (not immediately, not
/// much later).
fn assert_cut_off_after(c: &mut Client, started: Instant, needle: &str) {
    let e = c.expect_error();
    let waited = started.elapsed();
    assert!(message(&e).contains(needle), "{e:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "cut off after {waited:?}"
    );
}

#[test]
fn half_a_frame_then_silence_is_cut_off() {
    let broker = Broker::start_with(Some(SHORT_TIMEOUTS), &[]);
    let mut c = broker.client();
    let started = Instant::now();
    c.send_raw(b"SEND\ndestination:/queue/half\n");
    assert_cut_off_after(&mut c, started, "incomplete");
    still_serving(&broker);
}

#[test]
fn half_a_body_then_silence_is_cut_off() {
    let broker = Broker::start_with(Some(SHORT_TIMEOUTS), &[]);
    let mut c = broker.client();
    let started = Instant::now();
    c.send_raw(b"SEND\ndestination:/queue/half\ncontent-length:100\n\n0123456789");
    assert_cut_off_after(&mut c, started, "incomplete");
}

#[test]
fn a_frame_trickled_byte_by_byte_is_cut_off_by_frame_timeout() {
    let broker = Broker::start_with(Some(SHORT_TIMEOUTS), &[]);
    let (mut c, mut writer) = broker.client_with_writer();
    let started = Instant::now();
    // Each byte arrives well inside frame_timeout, but the frame as a whole
    // would take 6 s: the broker must cut it off after about 1 s.
    let trickle = std::thread::spawn(move || {
        for b in b"SEND\ndestination:/queue/trickle\nheader:value\n\nbody".iter() {
            if writer.send_raw(std::slice::from_ref(b)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let e = c.expect_error();
    let waited = started.elapsed();
    assert!(message(&e).contains("incomplete"), "{e:?}");
    assert!(
        waited < Duration::from_millis(2500),
        "cut off after {waited:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn no_connect_within_connect_timeout_is_cut_off() {
    let broker = Broker::start_with(Some(SHORT_TIMEOUTS), &[]);
    let mut c = broker.raw();
    let started = Instant::now();
    assert_cut_off_after(&mut c, started, "CONNECT");
    still_serving(&broker);
}

#[test]
fn half_a_connect_frame_is_cut_off_by_connect_timeout() {
    let broker = Broker::start_with(Some(SHORT_TIMEOUTS), &[]);
    let mut c = broker.raw();
    let started = Instant::now();
    c.send_raw(b"CONNECT\naccept-version:1.2\n");
    assert_cut_off_after(&mut c, started, "CONNECT");
}

#[test]
fn a_connect_trickled_byte_by_byte_is_cut_off_by_connect_timeout() {
    let broker = Broker::start_with(Some(SHORT_TIMEOUTS), &[]);
    let stream = std::net::TcpStream::connect(broker.stomp).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut c = Client::over(Box::new(stream));
    let started = Instant::now();
    // A byte every 200 ms for 2 s: each gap is well inside connect_timeout,
    // but CONNECT must be complete 1 s after the accept.
    let trickle = std::thread::spawn(move || {
        for b in b"CONNECT\naccept".iter() {
            if writer.write_all(std::slice::from_ref(b)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let e = c.expect_error();
    let waited = started.elapsed();
    assert!(message(&e).contains("CONNECT"), "{e:?}");
    assert!(
        waited < Duration::from_millis(2500),
        "cut off after {waited:?}"
    );
    trickle.join().unwrap();
}

const FLOW_CONTROL: &str = r#"
[destinations]
memory_limit = "1MiB"
"#;

#[test]
fn producer_stalls_over_the_memory_limit_and_resumes_when_drained() {
    let broker = Broker::start_with(Some(FLOW_CONTROL), &[]);
    const COUNT: usize = 160; // 10 MiB of 64 KiB bodies, 10x the limit
    let (mut receipts, mut writer) = broker.client_with_writer();
    let producer = std::thread::spawn(move || {
        let body = vec![b'p'; 64 * 1024];
        for i in 0..COUNT {
            let f = Frame::new(Command::Send)
                .header("destination", "/queue/flow")
                .header("receipt", &i.to_string())
                .body(body.clone());
            writer.send(&f).unwrap();
        }
    });
    // Receipts flow until the queue holds about 1 MiB, then stop.
    let mut confirmed = 0;
    while receipts.recv_within(Duration::from_millis(500)).is_some() {
        confirmed += 1;
    }
    assert!(
        (10..=40).contains(&confirmed),
        "{confirmed} sends confirmed with no consumer and a 1 MiB limit"
    );
    let rss_stalled = broker.rss_kib();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        receipts.recv_within(Duration::from_millis(100)).is_none(),
        "producer was not stalled"
    );
    assert!(
        broker.rss_kib() < rss_stalled + 8 * 1024,
        "memory grew while the producer was stalled"
    );
    // A consumer drains the queue: the producer resumes and every message
    // arrives once.
    let mut consumer = broker.client();
    consumer.subscribe("s", "/queue/flow", "auto");
    for _ in 0..COUNT {
        let m = consumer.recv();
        assert_eq!(m.body.len(), 64 * 1024);
    }
    while confirmed < COUNT {
        assert_eq!(receipts.recv().command, Command::Receipt);
        confirmed += 1;
    }
    producer.join().unwrap();
    consumer.expect_silence(Duration::from_millis(100));
}

const SLOW_CONSUMER: &str = r#"
[destinations]
memory_limit = "8MiB"
"#;

/// A destination with a consumer that never reads and one that does: while
/// a producer pushes 50 MiB, the reader keeps receiving, the producer is
/// never held for good, and the broker's RSS stays bounded. What the
/// non-reading consumer holds (in flight, and on a topic its backlog) is
/// capped at half the memory limit, so producer flow control never waits
/// on it. The slow consumer must really have held messages: on a queue it
/// took some the fast one never got; on a topic its backlog overflowed
/// (`ferromq_destination_discarded_total` counts the losses).
fn slow_consumer_case(dest: &str, body_len: usize) {
    let mut broker = Broker::start_with(Some(SLOW_CONSUMER), &["--admin", "127.0.0.1:0"]);
    let count = 50 * 1024 * 1024 / body_len;
    // Subscribed, and then never reads.
    let mut slow = broker.client();
    slow.subscribe("slow", dest, "auto");
    let mut fast = broker.client();
    fast.subscribe("fast", dest, "auto");
    let rss_start = broker.rss_kib();
    let (_receipts, mut writer) = broker.client_with_writer();
    let destination = dest.to_string();
    let producer = std::thread::spawn(move || {
        let body = vec![b's'; body_len];
        for _ in 0..count {
            let f = Frame::new(Command::Send)
                .header("destination", &destination)
                .body(body.clone());
            if writer.send(&f).is_err() {
                return false;
            }
        }
        true
    });
    let mut received = 0;
    let mut rss_max = rss_start;
    let deadline = Instant::now() + Duration::from_secs(40);
    while let Some(f) = fast.recv_within(Duration::from_secs(3)) {
        assert_eq!(f.body.len(), body_len);
        received += 1;
        if received % 100 == 0 {
            rss_max = rss_max.max(broker.rss_kib());
        }
        assert!(Instant::now() < deadline, "too slow: {received} received");
    }
    eprintln!(
        "{body_len}-byte bodies: fast consumer received {received} of {count}; RSS {rss_start} -> {rss_max} KiB"
    );
    let topic = dest.starts_with("/topic/");
    let discarded = metric(
        &http_get(broker.admin(), "/metrics", None).1,
        &format!(
            "ferromq_destination_discarded_total{{destination=\"{dest}\",kind=\"{}\"}}",
            if topic { "topic" } else { "queue" }
        ),
    );
    // A producer still blocked now would be stuck for good: free it.
    let finished = producer.is_finished();
    broker.kill9();
    if topic {
        // The counter is per topic: the fast subscriber's own losses (what
        // it did not receive) are in it too.
        let fast_lost = (count - received) as f64;
        assert!(
            discarded.is_some_and(|d| d > fast_lost),
            "the slow topic subscriber lost nothing (discarded {discarded:?}, the fast one \
             lost {fast_lost}): it was not slow"
        );
    } else {
        assert!(
            received < count,
            "the fast consumer got all {count}: the slow one held nothing"
        );
    }
    assert!(
        producer.join().unwrap() && finished,
        "the producer was held for good; the fast consumer got {received} of {count}"
    );
    assert!(
        received > count / 2,
        "the fast consumer got only {received} of {count}"
    );
    assert!(
        rss_max < rss_start + 64 * 1024,
        "broker RSS grew from {rss_start} KiB to {rss_max} KiB"
    );
    drop(slow);
}

#[test]
fn slow_consumer_does_not_stop_others_and_memory_stays_bounded() {
    slow_consumer_case("/queue/slow", 4 * 1024);
}

#[test]
fn slow_consumer_of_large_messages_does_not_stop_others() {
    // 1000 (the default prefetch) x 64 KiB is far over the 8 MiB limit.
    slow_consumer_case("/queue/slow", 64 * 1024);
}

const FEW: &str = r#"
[limits]
max_connections = 3
max_connections_per_ip = 3
max_subscriptions_per_connection = 2
max_destinations = 3
"#;

#[test]
fn connection_limit_refuses_with_an_error_and_frees_slots() {
    let broker = Broker::start_with(Some(FEW), &[]);
    let held: Vec<Client> = (0..3).map(|_| broker.client()).collect();
    let mut refused = broker.raw();
    let e = refused.expect_error();
    assert!(message(&e).contains("max_connections"), "{e:?}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    broker.client().send_message("/queue/a", "room again", &[]);
}

#[test]
fn subscription_limit_per_connection() {
    let broker = Broker::start_with(Some(FEW), &[]);
    let mut c = broker.client();
    c.subscribe("a", "/queue/a", "auto");
    c.subscribe("b", "/queue/b", "auto");
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "c")
            .header("destination", "/queue/a")
            .header("receipt", "r"),
    );
    let e = c.expect_error();
    assert!(message(&e).contains("subscription limit"), "{e:?}");
    assert_eq!(e.get("receipt-id"), Some("r"));
}

#[test]
fn destination_limit() {
    let broker = Broker::start_with(Some(FEW), &[]);
    let mut c = broker.client();
    for d in ["/queue/a", "/queue/b", "/topic/c"] {
        c.send_message(d, "x", &[]);
    }
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/d")
            .body("x"),
    );
    let e = c.expect_error();
    assert!(message(&e).contains("destination limit"), "{e:?}");
    // Existing destinations still work.
    broker.client().send_message("/queue/a", "y", &[]);
}

#[test]
fn client_flooding_receipts_without_reading_throttles_only_itself() {
    const FRAMES: u32 = 300_000;
    let mut broker = Broker::start();
    let rss_start = broker.rss_kib();
    let (flooder, mut writer) = broker.client_with_writer();
    let sent = Arc::new(AtomicU32::new(0));
    let flood = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            // Never reads its receipts; stops when the broker stops reading.
            for i in 0..FRAMES {
                let f = Frame::new(Command::Send)
                    .header("destination", "/topic/flood")
                    .header("receipt", &format!("receipt-number-{i}"));
                if writer.send(&f).is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Throttled: the broker stops reading the flooder (its writes block
    // once the socket buffers are full), long before all frames are in.
    let stalled_at = stalled_count(&sent, &flood);
    assert!(
        stalled_at.is_some_and(|n| n > 0),
        "the flooder was never throttled: it wrote {} of {FRAMES} frames{}",
        sent.load(Ordering::Relaxed),
        if flood.is_finished() {
            " and finished"
        } else {
            " without a pause"
        }
    );
    // Others are served promptly meanwhile.
    let mut other = broker.client();
    other.subscribe("s", "/queue/unaffected", "auto");
    broker
        .client()
        .send_message("/queue/unaffected", "served", &[]);
    assert_eq!(&other.recv().body[..], b"served");
    // ... and the flooder is still held where it was.
    assert_eq!(
        Some(sent.load(Ordering::Relaxed)),
        stalled_at,
        "the flooder moved on while it still read nothing"
    );
    let rss = broker.rss_kib();
    assert!(
        rss < rss_start + 64 * 1024,
        "broker RSS grew from {rss_start} KiB to {rss} KiB"
    );
    broker.kill9();
    flood.join().unwrap();
    drop(flooder);
}

/// Waits (bounded) until the flooder's count of written frames stops
/// growing for two seconds while it is still running (longer than any
/// scheduling hiccup of a loaded machine); returns that count, or `None` if
/// it finished or never paused.
fn stalled_count(sent: &AtomicU32, flood: &std::thread::JoinHandle<()>) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = sent.load(Ordering::Relaxed);
    while Instant::now() < deadline && !flood.is_finished() {
        std::thread::sleep(Duration::from_secs(2));
        let now = sent.load(Ordering::Relaxed);
        if now == last && !flood.is_finished() {
            return Some(now);
        }
        last = now;
    }
    None
}

#[test]
fn slow_topic_subscriber_does_not_stop_others() {
    // It loses messages (counted as discarded) instead of holding the
    // producer, and with it every other subscriber.
    slow_consumer_case("/topic/slow", 4 * 1024);
}
