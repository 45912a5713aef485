//! Connection and process lifecycle through the real broker: heart-beats in
//! both directions, dropping a silent client (and redelivering what it held),
//! SIGTERM, `check-config`, `--config`, and running with no arguments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{ferromq_bin, wait_for_metric, Broker, Client};
use std::process::Command as Process;
use std::time::{Duration, Instant};

const FAST_HEARTBEATS: &str = r#"
[stomp]
heartbeat_send_min = "200ms"
heartbeat_receive_min = "200ms"
heartbeat_grace = 2.0
"#;

fn connect_with_heartbeat(broker: &Broker, heart_beat: &str) -> (Client, Frame) {
    let mut c = broker.raw();
    let reply = c.handshake(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("host", "/"),
            ("heart-beat", heart_beat),
        ],
    );
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    (c, reply)
}

#[test]
fn server_sends_heartbeat_eols_at_the_negotiated_interval() {
    let broker = Broker::start_with(Some(FAST_HEARTBEATS), &[]);
    // We promise nothing, and want one every 250 ms.
    let (mut c, reply) = connect_with_heartbeat(&broker, "0,250");
    assert_eq!(reply.get("heart-beat"), Some("200,200"));
    let bytes = c.read_raw_for(Duration::from_millis(1300));
    assert!(
        bytes.iter().all(|b| *b == b'\n' || *b == b'\r'),
        "only EOLs expected: {bytes:?}"
    );
    let eols = bytes.iter().filter(|b| **b == b'\n').count();
    // About 5 in 1.3 s at 250 ms; allow scheduling slack both ways.
    assert!((3..=8).contains(&eols), "{eols} heart-beats in 1.3 s");
}

#[test]
fn no_heartbeats_unless_asked() {
    let broker = Broker::start_with(Some(FAST_HEARTBEATS), &[]);
    let (mut c, _) = connect_with_heartbeat(&broker, "0,0");
    assert!(c.read_raw_for(Duration::from_millis(800)).is_empty());
}

#[test]
fn server_heartbeats_never_come_faster_than_its_minimum() {
    let broker = Broker::start_with(Some(FAST_HEARTBEATS), &[]);
    // Asking for 10 ms gets the server's 200 ms minimum.
    let (mut c, _) = connect_with_heartbeat(&broker, "0,10");
    let eols = c
        .read_raw_for(Duration::from_millis(1000))
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    assert!((2..=7).contains(&eols), "{eols} heart-beats in 1 s");
}

#[test]
fn client_that_keeps_heartbeating_stays_connected() {
    let broker = Broker::start_with(Some(FAST_HEARTBEATS), &[]);
    // We promise one every 300 ms: silence past 600 ms would be fatal.
    let (mut c, _) = connect_with_heartbeat(&broker, "300,0");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        c.send_raw(b"\n");
    }
    c.send_message("/queue/alive", "still here", &[]);
}

#[test]
fn silent_client_is_dropped_and_its_unacked_messages_redelivered() {
    let broker = Broker::start_with(Some(FAST_HEARTBEATS), &[]);
    let mut p = broker.client();
    for i in 0..3 {
        p.send_message("/queue/hb", &format!("m{i}"), &[]);
    }
    let (mut c, _) = connect_with_heartbeat(&broker, "300,0");
    c.subscribe("s", "/queue/hb", "client-individual");
    c.recv_messages(3);
    let silent_since = Instant::now();
    let e = c.expect_error();
    let waited = silent_since.elapsed();
    assert!(e.get("message").unwrap().contains("heart-beat"), "{e:?}");
    // 2 x 300 ms, not sooner, and not much later.
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "dropped after {waited:?}"
    );
    let mut other = broker.client();
    other.subscribe("s", "/queue/hb", "auto");
    let again = other.recv_messages(3);
    let bodies: Vec<&[u8]> = again.iter().map(|f| &f.body[..]).collect();
    assert_eq!(bodies, [b"m0", b"m1", b"m2"]);
    assert!(again.iter().all(|f| f.get("redelivered") == Some("true")));
}

#[test]
fn sigterm_tells_clients_and_exits_zero_quickly() {
    let mut broker = Broker::start();
    let mut a = broker.client();
    a.subscribe("s", "/queue/term", "client");
    let mut b = broker.client();
    b.send_message("/queue/term", "x", &[]);
    let started = Instant::now();
    let status = broker.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    for c in [&mut a, &mut b] {
        let frames = c.recv_until_closed();
        let e = frames
            .iter()
            .find(|f| f.command == Command::Error)
            .unwrap_or_else(|| panic!("no ERROR: {frames:?}"));
        assert_eq!(e.get("message"), Some("broker shutting down"));
    }
}

#[test]
fn sigterm_right_after_start_still_exits_zero() {
    // The handlers must be in place before "ferromq started" is logged.
    for _ in 0..5 {
        let mut broker = Broker::start();
        let status = broker.terminate();
        assert!(status.success(), "exit status {status:?}");
    }
}

#[test]
fn sigterm_reaches_a_producer_blocked_by_flow_control() {
    let mut broker = Broker::start_with(
        Some("[destinations]\nmemory_limit = \"64KiB\"\n"),
        &["--admin", "127.0.0.1:0"],
    );
    let (mut receipts, mut writer) = broker.client_with_writer();
    let producer = std::thread::spawn(move || {
        let body = vec![b'x'; 16 * 1024];
        for i in 0..100 {
            let f = Frame::new(Command::Send)
                .header("destination", "/queue/blocked")
                .header("receipt", &i.to_string())
                .body(body.clone());
            if writer.send(&f).is_err() {
                return;
            }
        }
    });
    let mut receipted = 0;
    while receipts.recv_within(Duration::from_millis(300)).is_some() {
        receipted += 1;
    }
    // The test is about a blocked producer: it must really be blocked (100
    // bodies of 16 KiB are far over the 64 KiB limit), not merely slow.
    assert!(receipted < 100, "all {receipted} SENDs were receipted");
    let blocked = wait_for_metric(
        broker.admin(),
        "ferromq_destination_blocked_producers{destination=\"/queue/blocked\",kind=\"queue\"}",
        |v| v >= 1.0,
    );
    assert_eq!(
        blocked,
        Some(1.0),
        "the producer is not blocked by flow control ({receipted} receipts)"
    );
    let started = Instant::now();
    let status = broker.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let frames = receipts.recv_until_closed();
    assert!(
        frames
            .iter()
            .any(|f| f.get("message") == Some("broker shutting down")),
        "{frames:?}"
    );
    producer.join().unwrap();
}

#[test]
fn check_config_reports_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[stomp]\nmax_headers = 0\n").unwrap();
    let out = Process::new(ferromq_bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:stomp.max_headers: ", bad.display());
    assert!(stderr.contains(&expected), "{stderr}");

    std::fs::write(&bad, "[stomp]\nno_such_key = 1\n").unwrap();
    let out = Process::new(ferromq_bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_such_key"), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[stomp]\nmax_headers = 50\n").unwrap();
    let out = Process::new(ferromq_bin())
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn config_file_alone_configures_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferromq.toml");
    std::fs::write(
        &config,
        r#"
[broker]
name = "from-the-file"
data_dir = "store"

[stomp]
listen = "127.0.0.1:0"
tls_listen = ""

[native]
listen = ""
tls_listen = ""

[websocket]
listen = ""
tls_listen = ""

[admin]
listen = ""
"#,
    )
    .unwrap();
    let broker =
        Broker::try_start_exact(&["--config", config.to_str().unwrap()], dir.path()).unwrap();
    assert_ne!(broker.stomp.port(), 0);
    let mut c = broker.client();
    c.subscribe("s", "/queue/cfg", "auto");
    broker.client().send_message("/queue/cfg", "x", &[]);
    let m = c.recv();
    assert!(
        m.get("message-id")
            .unwrap()
            .starts_with("ID:from-the-file-"),
        "{m:?}"
    );
}

#[test]
fn bad_config_file_stops_the_broker_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[stomp]\nheartbeat_grace = 0.5\n").unwrap();
    let failure = Broker::try_start_exact(&["--config", config.to_str().unwrap()], dir.path())
        .err()
        .expect("must not start");
    assert!(!failure.status.unwrap().success());
    let expected = format!("{}:stomp.heartbeat_grace", config.display());
    assert!(failure.log.contains(&expected), "{}", failure.log);
}

#[test]
fn no_arguments_listens_on_61613_or_names_the_busy_address() {
    let dir = tempfile::tempdir().unwrap();
    match Broker::try_start_exact(&[], dir.path()) {
        Ok(mut broker) => {
            assert_eq!(broker.stomp, "127.0.0.1:61613".parse().unwrap());
            let mut c = broker.client();
            c.send_message("/queue/defaults", "x", &[]);
            assert!(broker.terminate().success());
        }
        Err(failure) => {
            // Something else holds a default port (another broker on this
            // machine): the error must name the address it could not bind,
            // and that address must really be taken.
            let log = failure.log;
            let addr = log
                .split("cannot listen on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no bind error in the log:\n{log}"));
            assert!(
                std::net::TcpListener::bind(addr).is_err(),
                "{addr} is free, yet the broker could not listen on it:\n{log}"
            );
        }
    }
}
