//! The store's edges, against the real binary: the disk limit (persistent
//! SENDs refused with an ERROR naming the receipt, consumers keep working and
//! free space), disk space given back once a burst is consumed, and data
//! directories the broker cannot use (corrupt files, a
//! path it cannot create): a clear error naming the path, a non-zero exit,
//! no panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferromq_protocol::stomp::{Command, Frame};
use ferromq_tests::{ferromq_bin, http_get, metric, Broker, WAIT};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

/// Runs the broker on `data_dir`, expecting it to refuse to start. Returns
/// its stderr.
fn refused_start(data_dir: &Path) -> String {
    let mut child = Process::new(ferromq_bin())
        .args([
            "--stomp",
            "127.0.0.1:0",
            "--stomp-tls",
            "",
            "--native",
            "",
            "--native-tls",
            "",
            "--websocket",
            "",
            "--websocket-tls",
            "",
            "--admin",
            "",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker started on a store it should refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "exit status {status:?}; stderr:\n{err}");
    assert!(!err.contains("panicked"), "a panic, not an error:\n{err}");
    err
}

#[test]
fn over_the_disk_limit_sends_get_an_error_and_consumers_free_space() {
    let broker = Broker::start_with(Some("[store]\ndisk_limit = \"1MiB\"\n"), &[]);
    let mut p = broker.client();
    let body = "x".repeat(60 * 1024);
    let mut stored = 0;
    let error = loop {
        assert!(stored < 100, "the disk limit never applied");
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/full")
                .header("persistent", "true")
                .header("receipt", &format!("r{stored}"))
                .body(body.clone()),
        );
        let f = p.recv();
        if f.command == Command::Error {
            break f;
        }
        assert_eq!(f.command, Command::Receipt, "{f:?}");
        stored += 1;
    };
    assert_eq!(
        error.get("receipt-id"),
        Some(format!("r{stored}").as_str()),
        "{error:?}"
    );
    assert!(
        String::from_utf8_lossy(&error.body).contains("disk_limit"),
        "{error:?}"
    );
    assert!(
        (15..=17).contains(&stored),
        "stored {stored} before the limit"
    );
    // The refused message was not delivered either: a consumer gets exactly
    // the stored ones, and acknowledging them makes room again.
    let mut c = broker.client();
    // Prefetch 1; an ACK frees credit, so the next MESSAGE may arrive
    // before that ACK's RECEIPT (which waits for the disk): take both kinds
    // in any order.
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/full")
            .header("ack", "client-individual")
            .header("activemq.prefetchSize", "1"),
    );
    let (mut messages, mut receipts) = (0, 0);
    while receipts < stored {
        let f = c.recv();
        match f.command {
            Command::Message => {
                c.send(
                    Frame::new(Command::Ack)
                        .header("id", f.get("ack").unwrap())
                        .header("receipt", &format!("a{messages}")),
                );
                messages += 1;
            }
            Command::Receipt => receipts += 1,
            _ => panic!("unexpected {f:?}"),
        }
    }
    assert_eq!(messages, stored);
    c.expect_silence(Duration::from_millis(300));
    let mut p2 = broker.client();
    p2.send_message("/queue/full", &body, &[("persistent", "true")]);
    let m = c.recv_command(Command::Message);
    assert_eq!(m.body.len(), body.len());
}

#[test]
fn corrupt_store_files_are_a_clear_error_naming_the_path() {
    let mut broker = Broker::start();
    let mut p = broker.client();
    p.send_message("/queue/c", "soon unreadable", &[("persistent", "true")]);
    broker.terminate();
    let store = broker.data_dir.join("store");
    let mut damaged = 0;
    for name in ["conf", "db"] {
        let f = store.join(name);
        if f.exists() {
            std::fs::write(&f, vec![0x5Au8; 8192]).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "no sled files found in {}", store.display());
    let err = refused_start(&broker.data_dir);
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert!(err.contains("store"), "{err}");
}

#[test]
fn a_data_dir_that_cannot_be_created_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-directory");
    std::fs::write(&file, b"plain file").unwrap();
    let data_dir = file.join("data");
    let err = refused_start(&data_dir);
    assert!(err.contains(&data_dir.display().to_string()), "{err}");
}

#[test]
fn a_refused_send_without_receipt_is_an_error_not_a_silent_loss() {
    let broker = Broker::start_with(Some("[store]\ndisk_limit = \"1MiB\"\n"), &[]);
    let mut p = broker.client();
    let body = "y".repeat(100 * 1024);
    for _ in 0..10 {
        p.send_message("/queue/nr", &body, &[("persistent", "true")]);
    }
    // The store now holds 1000 KiB: the next one does not fit, and this
    // SEND asks for no receipt that could carry the ERROR.
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/nr")
            .header("persistent", "true")
            .body(body.clone()),
    );
    let e = p.expect_error();
    assert!(e.get("message").unwrap().contains("not stored"), "{e:?}");
    // Nothing of the refused message reached the queue.
    let mut c = broker.client();
    c.subscribe("s", "/queue/nr", "auto");
    for _ in 0..10 {
        assert_eq!(c.recv_command(Command::Message).body.len(), body.len());
    }
    c.expect_silence(Duration::from_millis(300));
}

fn store_gauge(broker: &Broker, name: &str) -> f64 {
    let (status, text) = http_get(broker.admin(), "/metrics", None);
    assert_eq!(status, 200, "{text}");
    metric(&text, name).expect(&text)
}

#[test]
fn a_consumed_burst_gives_its_disk_space_back_while_the_broker_runs() {
    let broker = Broker::start_with(
        Some("[store]\ncompact_threshold = \"4MiB\"\n"),
        &["--admin", "127.0.0.1:0"],
    );
    let mut p = broker.client();
    let body = "b".repeat(64 * 1024);
    for i in 0..480 {
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/burst")
                .header("persistent", "true")
                .header("receipt", &format!("r{i}"))
                .body(body.clone()),
        );
    }
    for _ in 0..480 {
        assert_eq!(p.recv().command, Command::Receipt);
    }
    let high_water = store_gauge(&broker, "ferromq_store_disk_bytes");
    assert!(
        high_water > 25e6,
        "only {high_water} bytes on disk for 30 MiB"
    );
    let mut c = broker.client();
    c.subscribe("s", "/queue/burst", "auto");
    for _ in 0..480 {
        assert_eq!(c.recv().command, Command::Message);
    }
    // Compaction runs once the writer has been idle for a second. It logs
    // "store compacted" only after swapping the files and removing the old
    // ones, and the gauge can see the small directory (or none, between the
    // two renames) before that line is written: wait for both.
    let deadline = Instant::now() + WAIT;
    let mut on_disk = high_water;
    while on_disk > 4e6 || !broker.log().contains("store compacted") {
        assert!(
            Instant::now() < deadline,
            "still {on_disk} bytes on disk (high water {high_water}), or no compaction logged; log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        on_disk = store_gauge(&broker, "ferromq_store_disk_bytes");
    }
    // Measured again after the compaction is complete: the space stays won.
    let on_disk = store_gauge(&broker, "ferromq_store_disk_bytes");
    assert!(on_disk <= 4e6, "{on_disk} bytes on disk after compaction");
    // The compacted store keeps working, and keeps what it is given.
    p.send_message("/queue/burst", "after", &[("persistent", "true")]);
    assert_eq!(&c.recv_command(Command::Message).body[..], b"after");
    p.send_message("/queue/kept", "kept", &[("persistent", "true")]);
    drop(c);
    let mut broker = broker;
    broker.kill9();
    let broker = broker.restart();
    let mut c = broker.client();
    c.subscribe("k", "/queue/kept", "auto");
    assert_eq!(&c.recv_command(Command::Message).body[..], b"kept");
}
