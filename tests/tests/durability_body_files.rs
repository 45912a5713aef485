//! Persistent bodies in body files (`<data_dir>/bodies/`), against the real
//! binary: large bodies are written there once, survive a kill -9 intact
//! and in order, and the files go once the queue is drained; a deep queue
//! whose backlog (beyond the in-memory window) has its bodies in files is
//! read back by the cursor in order, before and after a kill -9; what a
//! crash leaves in the directory without a record is deleted at the next
//! start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{Broker, Client};
use std::path::Path;
use std::time::{Duration, Instant};

const COUNT: usize = 6;
const BODY: usize = 2 * 1024 * 1024;

/// A body that tells which message it is, all the way through.
fn body(i: usize, len: usize) -> Vec<u8> {
    let tag = format!("<{i:06}>");
    tag.repeat(len / tag.len()).into_bytes()
}

/// Bytes of the segment files in `<data_dir>/bodies` (0 if it does not
/// exist).
fn body_file_bytes(data_dir: &Path) -> u64 {
    segment_files(data_dir)
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum()
}

fn segment_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("bodies")) else {
        return Vec::new();
    };
    let mut files: Vec<_> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .collect();
    files.sort();
    files
}

/// Waits (bounded) until no segment file is left: the one being written
/// goes once the store is idle, checked every second.
fn wait_for_no_body_files(data_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = body_file_bytes(data_dir);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} bytes of body files left after the drain"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Receives `range` in order, checking each body (`len` bytes) and whether
/// it is marked redelivered (`redelivered(i)`), acking each.
fn receive_in_order(
    c: &mut Client,
    range: std::ops::Range<usize>,
    len: usize,
    redelivered: impl Fn(usize) -> bool,
) -> usize {
    let mut received = 0;
    for i in range {
        let m = c.recv();
        assert_eq!(m.command, Command::Message, "{m:?}");
        assert_eq!(m.body.len(), len, "message {i}: wrong length");
        assert!(
            m.body[..] == body(i, len)[..],
            "message {i}: body differs (starts {:?})",
            String::from_utf8_lossy(&m.body[..12.min(m.body.len())])
        );
        assert_eq!(
            m.get("redelivered") == Some("true"),
            redelivered(i),
            "message {i}"
        );
        let ack = m.get("ack").unwrap().to_string();
        c.send(Frame::new(Command::Ack).header("id", &ack));
        received += 1;
    }
    received
}

#[test]
fn large_bodies_survive_a_kill_9_and_their_files_go_once_drained() {
    let mut broker = Broker::start();
    let data_dir = broker.data_dir.clone();
    let mut p = broker.client();
    for i in 0..COUNT {
        p.send_with_receipt(
            Frame::new(Command::Send)
                .header("destination", "/queue/large")
                .header("persistent", "true")
                .body(body(i, BODY)),
            &format!("r{i}"),
        );
    }
    // Every receipted body is in a body file, and written once: the files
    // hold the bodies and nothing else of size.
    let stored = body_file_bytes(&data_dir);
    let want = (COUNT * BODY) as u64;
    assert!(
        (want..want + want / 10).contains(&stored),
        "{stored} bytes in body files for {want} bytes of bodies"
    );
    // Two are delivered, unacknowledged, before the crash.
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "first")
            .header("destination", "/queue/large")
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "2"),
    );
    for i in 0..2 {
        let m = c.recv();
        assert!(
            m.body[..] == body(i, BODY)[..],
            "message {i} before the crash"
        );
    }
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/large", "client-individual");
    let received = receive_in_order(&mut c, 0..COUNT, BODY, |i| i < 2);
    assert_eq!(received, COUNT);
    c.send_with_receipt(Frame::new(Command::Disconnect), "bye");
    wait_for_no_body_files(&data_dir);
    assert!(data_dir.join("bodies").is_dir());
}

/// A deep queue (a window of 16 in memory) whose backlog's bodies are all
/// in body files: the cursor reads them back in order, part before a
/// kill -9 and the rest after it, and the files go once it is drained.
#[test]
fn a_backlog_beyond_the_window_is_read_back_from_body_files_across_a_kill_9() {
    const N: usize = 300;
    const LEN: usize = 8 * 1024;
    let mut broker = Broker::start_with(
        Some("[destinations]\nqueue_window = 16\n[store]\nbody_inline_max = \"1KiB\"\n"),
        &[],
    );
    let data_dir = broker.data_dir.clone();
    let mut p = broker.client();
    for i in 0..N {
        p.send_with_receipt(
            Frame::new(Command::Send)
                .header("destination", "/queue/deepfiles")
                .header("persistent", "true")
                .body(body(i, LEN)),
            &format!("r{i}"),
        );
    }
    assert!(
        body_file_bytes(&data_dir) >= (N * LEN) as u64,
        "every body in a file: {} bytes",
        body_file_bytes(&data_dir)
    );
    // A third is consumed and acked before the crash (read from the files
    // through the cursor), the next one delivered but not acked.
    let mut c = broker.client();
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "first")
            .header("destination", "/queue/deepfiles")
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "1"),
    );
    assert_eq!(receive_in_order(&mut c, 0..N / 3, LEN, |_| false), N / 3);
    let m = c.recv();
    assert!(m.body[..] == body(N / 3, LEN)[..], "the one left unacked");
    c.send_with_receipt(Frame::new(Command::Disconnect), "bye");
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("s", "/queue/deepfiles", "client-individual");
    // The unacked one may come back marked redelivered (its delivery was
    // recorded) or not (the disconnect returned it first): its body and
    // place are what matter.
    let m = c.recv();
    assert!(
        m.body[..] == body(N / 3, LEN)[..],
        "first after the restart"
    );
    let ack = m.get("ack").unwrap().to_string();
    c.send(Frame::new(Command::Ack).header("id", &ack));
    let received = receive_in_order(&mut c, N / 3 + 1..N, LEN, |_| false);
    assert_eq!(received, N - N / 3 - 1);
    c.expect_silence(Duration::from_millis(300));
    c.send_with_receipt(Frame::new(Command::Disconnect), "bye");
    wait_for_no_body_files(&data_dir);
}

/// What a crash can leave in the bodies directory without a record (a
/// segment whose batch never reached the store, a torn tail) is reclaimed
/// at the next start, without touching files that are not segments; the
/// live bodies still come back.
#[test]
fn garbage_left_by_a_crash_is_reclaimed_at_start() {
    const LEN: usize = 100 * 1024;
    let mut broker = Broker::start();
    let data_dir = broker.data_dir.clone();
    let mut p = broker.client();
    for i in 0..3 {
        p.send_with_receipt(
            Frame::new(Command::Send)
                .header("destination", "/queue/garbage")
                .header("persistent", "true")
                .body(body(i, LEN)),
            &format!("r{i}"),
        );
    }
    broker.kill9();
    let live = segment_files(&data_dir);
    assert_eq!(live.len(), 1, "{live:?}");
    // A torn tail on the live segment and an unreferenced later segment.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&live[0])
            .unwrap();
        f.write_all(&[b'!'; 5000]).unwrap();
    }
    let bodies = data_dir.join("bodies");
    std::fs::write(bodies.join("0000000999.body"), vec![b'?'; 70_000]).unwrap();
    std::fs::write(bodies.join("README"), b"not a segment").unwrap();
    let broker = broker.restart();
    assert_eq!(segment_files(&data_dir), live, "the stray segment is gone");
    assert_eq!(
        body_file_bytes(&data_dir),
        (3 * LEN) as u64,
        "the torn tail is cut off"
    );
    assert!(bodies.join("README").exists());
    let mut c = broker.client();
    c.subscribe("s", "/queue/garbage", "client-individual");
    assert_eq!(receive_in_order(&mut c, 0..3, LEN, |_| false), 3);
}
