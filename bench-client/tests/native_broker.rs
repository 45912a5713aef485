//! ferromq-bench over the native protocol against the real `ferromq`
//! binary (started by the e2e harness on ephemeral loopback ports): the
//! quick suite, cut short, must move messages both ways in every scenario
//! (non-persistent, persistent with receipts, transactions, durable topic
//! subscribers, 100 KB bodies, fixed rate) and report the native run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use ferromq_tests::Broker;
use std::process::Command;

#[test]
fn quick_suite_over_the_native_protocol() {
    let broker = Broker::start_with(None, &["--native", "127.0.0.1:0"]);
    let native = broker
        .listener("native")
        .expect("the broker logs its native listener");
    let url = format!("ferromq://{native}");
    let dir = tempfile_dir("native-quick");
    let out = dir.join("native.json");
    let o = Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
        .args([
            "run",
            "--url",
            &url,
            "--quick",
            "--durable",
            "--warm-up-count",
            "1",
            "--sample-count",
            "2",
            "--sample-interval",
            "400",
            "--drain-timeout",
            "400",
            "--display-errors",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "ferromq-bench failed: {stderr}\nbroker log:\n{}",
        broker.log()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["benchmark_settings"]["url"], url.as_str());
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 9, "{report}");
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let sum = |key: &str| -> u64 {
            s[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum()
        };
        assert!(sum("producer tp") > 0, "{name}: nothing produced: {s}");
        assert!(sum("consumer tp") > 0, "{name}: nothing consumed: {s}");
        assert_eq!(sum("errors"), 0, "{name}: errors: {s}\n{stderr}");
        let e2e = &s["latency_hdr"]["e2e"];
        assert!(
            e2e["count"].as_u64().unwrap_or(0) > 0,
            "{name}: no latency recorded: {s}"
        );
        if s["parameters"]["persistent"] == true && s["parameters"]["tx_size"] == 0 {
            let receipt = &s["latency_hdr"]["receipt"];
            assert!(
                receipt["count"].as_u64().unwrap_or(0) > 0,
                "{name}: no receipt latency: {s}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ferromq-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
