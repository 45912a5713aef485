//! ferromq-bench against a real three-node ferromq cluster on loopback
//! (issue 16, item 6): persistent sends with a RECEIPT each go to
//! `failover:(all three)`; the leader is killed with SIGKILL in the middle
//! of the run. The run must complete; its JSON must report the failover
//! as a receipt gap that contains the kill and ends (a receipt from the new
//! leader), count the followers' `not the leader` refusals as redirects
//! rather than errors, and every message confirmed by a receipt must still
//! be in the queue for the drain (no consumers run, so the drain removes
//! exactly what the cluster kept; resent SENDs may add duplicates, never
//! remove any).
//!
//! The nodes (the e2e tests' cluster harness, `ferromq_tests::cluster`)
//! use the `[cluster]` defaults for heartbeat and election timeout: the
//! failover this test prints is the one users get.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use ferromq_tests::cluster::{cluster_named, start_all, wait_for_leader, wait_for_leader_except};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Generous bound for an election plus the new leader's restore on a
/// loaded machine (the target is under 3 s median).
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn the_bench_follows_the_new_leader_and_reports_the_gap() {
    let root = tempfile::tempdir().unwrap();
    // The shared harness's nodes with no timing keys: `[cluster]` defaults.
    let (mut nodes, _) = cluster_named(root.path(), "bench-failover", false, |_| String::new());
    start_all(&mut nodes);
    let leader = wait_for_leader(&nodes, FAILOVER_BOUND);
    let url = format!(
        "failover:({})",
        nodes
            .iter()
            .map(|n| format!("stomp://{}", n.stomp))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = root.path().join("bench.json");
    let bench = Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
        .args([
            "run",
            "--url",
            &url,
            "--persistent",
            "--producers",
            "3",
            "--consumers",
            "0",
            "--destinations",
            "1",
            "--size",
            "256",
            "--warmup",
            "0",
            "--samples",
            "12",
            "--sample-interval",
            "1000",
            "--drain-timeout",
            "3000",
            "--display-errors",
            "-o",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Kill the leader while the producers are sending.
    std::thread::sleep(Duration::from_secs(4));
    let killed_at = unix_ms();
    nodes[leader].kill9();
    let new = wait_for_leader_except(&nodes, leader, FAILOVER_BOUND);
    assert_ne!(new, leader);

    let output = bench.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs = || {
        nodes
            .iter()
            .map(|n| n.log())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    assert!(
        output.status.success(),
        "the bench run did not complete: {stderr}\nnodes:\n{}",
        logs()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let scenario = &report["scenarios"][0];
    let failover = &scenario["failover"];
    let receipted = failover["receipted"].as_u64().unwrap();
    let drained = scenario["drained"].as_u64().unwrap();
    let gaps = failover["gaps"].as_array().unwrap();
    assert!(!gaps.is_empty(), "no receipt gap reported: {failover}");
    // The gap the kill falls in (receipts already on the wire may land a
    // few ms after the kill), ended by a receipt from the new leader.
    let gap = gaps
        .iter()
        .find(|g| {
            g["start_unix_ms"].as_u64().unwrap() <= killed_at + 100
                && g["end_unix_ms"].as_u64().unwrap() > killed_at
        })
        .unwrap_or_else(|| panic!("no gap around the kill at {killed_at}: {failover}"));
    assert_eq!(gap["open"], false, "no receipt after the kill: {failover}");
    let failover_ms = gap["end_unix_ms"].as_u64().unwrap() - killed_at;
    println!(
        "failover (kill -9 to the first receipt from the new leader): {failover_ms} ms; {failover}"
    );
    assert!(
        Duration::from_millis(failover_ms) < FAILOVER_BOUND,
        "{failover_ms} ms"
    );
    assert!(
        receipted > 0
            && failover["longest_gap_ms"].as_f64().unwrap() >= gap["ms"].as_f64().unwrap(),
        "{failover}"
    );
    // Two of the three producers start on a follower, and every producer
    // meets a follower (or the election) after the kill.
    assert!(failover["redirects"].as_u64().unwrap() >= 2, "{failover}");
    // Every receipted message is still there for the drain.
    assert!(
        drained >= receipted,
        "receipted {receipted} but only {drained} drained: {scenario}\n{stderr}\nnodes:\n{}",
        logs()
    );
}
