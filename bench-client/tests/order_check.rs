//! The per-producer order check end to end, with the real `ferromq` and
//! `ferromq-bench` binaries: two fill runs (async sends, then receipted
//! ones) stamp their messages and append to one manifest, the broker is
//! killed with -9 and restarted, and a drain in two runs (the order state
//! carried between them) finds every receipted message once and in order.
//! A manifest line for messages that were never sent then shows the check
//! reporting exactly those as lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use ferromq_tests::Broker;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs ferromq-bench with `args` and returns the last scenario's entry.
fn bench(broker: &Broker, out: &Path, args: &[&str]) -> Value {
    let url = format!("stomp://{}", broker.listener("stomp").unwrap());
    let o = Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
        .args(["run", "--url", &url, "--mode", "queue", "--size", "256"])
        .args(["--warmup", "0", "--sample-interval", "300"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "ferromq-bench failed: {stderr}\nbroker log:\n{}",
        broker.log()
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    report["scenarios"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number '{key}' in {v}"))
}

#[test]
fn a_drain_in_two_runs_after_a_crash_finds_every_receipted_message_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.jsonl");
    let state = dir.path().join("order-state.json");
    let (m, s) = (manifest.to_str().unwrap(), state.to_str().unwrap());
    let mut broker = Broker::start();
    let fill = [
        "--producers",
        "3",
        "--consumers",
        "0",
        "--destinations",
        "3",
    ];
    let stamp = ["--samples", "3", "--no-drain", "--manifest", m];
    // Paced, so that a debug broker on a loaded machine answers the async
    // producers' last receipted SEND within the bench's wait.
    let a = bench(
        &broker,
        &dir.path().join("fill-1.json"),
        &[&fill[..], &stamp[..], &["--async-send", "--rate", "1500"]].concat(),
    );
    let b = bench(
        &broker,
        &dir.path().join("fill-2.json"),
        &[&fill[..], &stamp[..], &["--persistent"]].concat(),
    );
    let (mut sent, mut receipted) = (0, 0);
    for fill in [&a, &b] {
        let st = &fill["stamped"];
        assert_eq!(n(st, "producers"), 3, "{fill}");
        sent += n(st, "sent");
        receipted += n(st, "receipted");
    }
    assert!(receipted > 0, "the fills had messages receipted: {a}\n{b}");
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap().lines().count(),
        6,
        "one manifest line per producer of both runs"
    );

    broker.kill9();
    let broker = broker.restart();

    // One sample with consumers and no drain: part of the backlog.
    let drain = [
        "--producers",
        "0",
        "--consumers",
        "3",
        "--destinations",
        "3",
    ];
    let check = ["--expect", m, "--order-state", s];
    let first = bench(
        &broker,
        &dir.path().join("drain-1.json"),
        &[&drain[..], &check[..], &["--samples", "1", "--no-drain"]].concat(),
    );
    assert!(n(&first["order"], "received") > 0, "{first}");
    // Then drain runs until everything receipted is back: a restarted
    // broker reading a backlog back (a debug build on a loaded machine) may
    // pause longer than one run's idle end. At most eight runs.
    let mut last = first.clone();
    for run in 2..10 {
        last = bench(
            &broker,
            &dir.path().join(format!("drain-{run}.json")),
            &[
                &drain[..],
                &check[..],
                &["--samples", "1", "--drain-timeout", "3000"],
            ]
            .concat(),
        );
        let o = &last["order"];
        if n(o, "lost") == 0 && n(o, "received") + n(o, "unconfirmed_missing") == sent {
            break;
        }
    }
    let order = &last["order"];
    assert_eq!(n(order, "lost"), 0, "{order}\n{}", broker.log());
    assert_eq!(n(order, "duplicates"), 0, "{order}");
    assert_eq!(n(order, "out_of_order"), 0, "{order}");
    assert_eq!(n(order, "producers_expected"), 6, "{order}");
    assert_eq!(n(order, "unknown_producers"), 0, "{order}");
    assert_eq!(n(order, "unstamped"), 0, "{order}");
    assert_eq!(order["exact"], true, "{order}");
    // Everything sent and not missing arrived, over both drain runs, and
    // that is at least everything receipted.
    let received = n(order, "received");
    assert_eq!(received, sent - n(order, "unconfirmed_missing"), "{order}");
    assert!(received >= receipted, "{order}");
    // The state carried from run to run: the first run received some
    // (asserted above) and the last run, which alone may have received
    // none of them (a quiet machine drains all in the first run), reports
    // none lost: it counted the first run's too.
    assert!(received >= n(&first["order"], "received"), "{order}");

    // Five messages receipted to a producer that sent nothing: lost, exactly.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&manifest)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(
                b"{\"producer\":1,\"destination\":\"/queue/loadq-0\",\"first\":1,\"sent\":5,\"receipted\":5}\n",
            )
        })
        .unwrap();
    let again = bench(
        &broker,
        &dir.path().join("drain-last.json"),
        &[&drain[..], &check[..], &["--samples", "1"]].concat(),
    );
    let order = &again["order"];
    assert_eq!(n(order, "lost"), 5, "{order}");
    assert_eq!(n(order, "received"), received, "nothing new arrived");
    assert_eq!(order["problems"][0]["producer"], 1, "{order}");
}
