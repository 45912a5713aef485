//! The binary's command line: suites listed with the right counts, usage
//! errors reported with a non-zero exit, and `report` writing one HTML file
//! from results files (ours and the original's format).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferromq-bench"))
        .args(args)
        .output()
        .unwrap()
}

fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn list_counts_each_suite() {
    for (args, expected) in [
        (vec!["list"], "155 scenarios"),
        (vec!["list", "--suite", "stomp-benchmark"], "73 scenarios"),
        (vec!["list", "--quick"], "9 scenarios"),
        (vec!["list", "--skip", "throughput"], "11 scenarios"),
        (vec!["list", "--filter", "latency/"], "5 scenarios"),
        (
            vec!["list", "--mode", "topic", "--consumers", "3"],
            "1 scenarios",
        ),
    ] {
        let o = bench(&args);
        assert!(o.status.success(), "{args:?}");
        assert_eq!(last_line(&o), expected, "{args:?}");
    }
    let o = bench(&[
        "list",
        "--mode",
        "topic",
        "--durable",
        "--ack",
        "client-individual",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("custom/topic-np-durable-1p1d1c-10b-tx0-ack-client-individual"),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_non_zero_with_the_reason() {
    let o = bench(&["list", "--skip", "nonsense"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown group 'nonsense'"));

    let out = std::env::temp_dir().join(format!("ferromq-bench-cli-{}.json", std::process::id()));
    let o = bench(&[
        "run",
        "--url",
        "amqp://127.0.0.1:5672",
        "--quick",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--url") && err.contains("unsupported scheme"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written on a usage error");

    let o = bench(&["report", "/nonexistent/run.json", "-o", "/tmp/x.html"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/run.json"));
}

#[test]
fn report_writes_one_html_file_from_several_runs() {
    let dir = std::env::temp_dir().join(format!("ferromq-bench-cli-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A file in the original JMS Benchmark format, and one of ours.
    let original = dir.join("activemq-5.8.0-openwire.json");
    std::fs::write(
        &original,
        r#"{"benchmark_settings":{"broker_name":"","url":"tcp://127.0.0.1:61616","warm_up_count":3},
           "scenarios":[{"parameters":{"group":"throughput","mode":"queue","persistent":false,"message_size":10,
           "tx_size":0,"destination_count":1,"producers":1,"consumers":1},
           "timestamp":[1,2],"producer tp":[100,110],"consumer tp":[90,95],"max latency":[1000,2000],"errors":[0,0]}]}"#,
    )
    .unwrap();
    let ours = dir.join("ours.json");
    let text = std::fs::read_to_string(&original)
        .unwrap()
        .replace("\"broker_name\":\"\"", "\"broker_name\":\"ferromq\"");
    std::fs::write(&ours, text).unwrap();
    let html = dir.join("report.html");
    let o = bench(&[
        "report",
        original.to_str().unwrap(),
        ours.to_str().unwrap(),
        "-o",
        html.to_str().unwrap(),
        "--title",
        "two runs",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<title>two runs</title>"));
    // The label falls back to the file name when broker_name is empty.
    assert!(page.contains("\"label\":\"activemq-5.8.0-openwire\""));
    assert!(page.contains("\"label\":\"ferromq\""));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scenario no client can connect to is recorded as unmeasured (with the
/// reason) and the suite goes on; three in a row end the run with an error.
#[test]
fn unreachable_scenarios_are_recorded_and_three_in_a_row_end_the_run() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.json");
    let o = bench(&[
        "run",
        "--quick",
        "--url",
        &format!("stomp://127.0.0.1:{port}"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no client could connect"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let scenarios = run["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2, "{run:#}");
    for s in scenarios {
        assert!(s["consumer tp"].as_array().unwrap().is_empty(), "{s:#}");
        assert!(
            s["last_error"]
                .as_str()
                .unwrap()
                .contains("no client could connect"),
            "{s:#}"
        );
    }
}
