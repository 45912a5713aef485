//! Loads the HTML report in headless Chromium (Debian package `chromium`) and
//! checks that the script ran to the end (`data-rendered="ok"`), that it drew
//! charts, and that the console logged no error. Fails if Chromium is missing.

#![allow(clippy::unwrap_used)] // tests may unwrap

use ferromq_bench::matrix::{jms_benchmark, MatrixLimits};
use ferromq_bench::report::html;
use ferromq_bench::report::json::{BenchmarkSettings, LatencyHdr, Report, ScenarioReport};
use ferromq_bench::scenario::{Mode, Scenario};
use ferromq_bench::stats::{new_histogram, percentile_curve, LatencySummary};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random numbers (no dependency needed for test data).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn synthetic_run(name: &str, seed: u64, speed: u64) -> Report {
    let mut rng = Lcg(seed);
    let mut r = Report::new(BenchmarkSettings {
        broker_name: name.into(),
        url: "stomp://127.0.0.1:61613".into(),
        warm_up_count: 3,
        sample_count: Some(15),
        sample_interval_ms: Some(1000),
        suite: Some("jms-benchmark".into()),
        client: Some("test".into()),
    });
    for s in jms_benchmark(MatrixLimits::default(), &[]) {
        let n = 15;
        let base = speed * 1000 / (1 + s.message_size as u64 / 1000);
        let tp: Vec<u64> = (0..n).map(|_| base + rng.next() % (base / 5 + 1)).collect();
        let mut h = new_histogram();
        for _ in 0..2000 {
            h.record(50_000 + rng.next() % 2_000_000).unwrap();
        }
        let mut receipt = new_histogram();
        if s.persistent {
            for _ in 0..500 {
                receipt.record(200_000 + rng.next() % 500_000).unwrap();
            }
        }
        r.scenarios.push(ScenarioReport {
            parameters: s.parameters(),
            timestamp: (0..n).map(|i| 1_700_000_000_000 + i * 1000).collect(),
            producer_tp: tp.clone(),
            consumer_tp: tp.iter().map(|v| v * 9 / 10).collect(),
            max_latency: (0..n).map(|_| 1_000_000 + rng.next() % 9_000_000).collect(),
            errors: vec![0; n as usize],
            name: Some(s.name()),
            e2e_p50: (0..n).map(|_| 100_000 + rng.next() % 50_000).collect(),
            e2e_p99: (0..n).map(|_| 900_000 + rng.next() % 500_000).collect(),
            receipt_p50: vec![],
            latency_hdr: Some(LatencyHdr {
                unit: "ns".into(),
                e2e: LatencySummary::of(&h),
                receipt: LatencySummary::of(&receipt),
                e2e_percentiles: percentile_curve(&h),
                receipt_percentiles: percentile_curve(&receipt),
            }),
            drained: Some(0),
            errors_outside_samples: None,
            last_error: None,
            failover: None,
            order: None,
            stamped: None,
        });
    }
    r
}

fn chromium() -> PathBuf {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(candidate);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("headless Chromium not found: apt-get install -y chromium");
}

/// Runs Chromium headless on `page` with extra args; returns (stdout, stderr).
fn run_chromium(page: &Path, hash: &str, extra: &[&str]) -> (String, String) {
    let profile = page.with_extension("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}{hash}", page.display()))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_renders_charts_without_errors() {
    let dir = std::env::temp_dir().join(format!("ferromq-bench-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    let runs = vec![
        ("ferromq".to_string(), synthetic_run("ferromq", 1, 60)),
        ("activemq".to_string(), synthetic_run("activemq", 2, 30)),
    ];
    std::fs::write(&page, html::render("test report", &runs)).unwrap();

    let (dom, log) = run_chromium(&page, "", &["--dump-dom"]);
    assert_rendered(&dom, &log);
    let svgs = dom.matches("<svg").count();
    // Summary: 4 sections x (6 queue + 6 topic sweeps) + the latency chart + others.
    assert!(svgs >= 40, "only {svgs} charts drawn");
    assert!(dom.contains("Queue throughput as you scale message size"));
    assert!(dom.contains("Queue latency as you scale producer throughput"));
    assert!(dom.matches("<rect").count() > 100, "box plots have boxes");

    // Log scales draw the same charts.
    let (dom_log, log) = run_chromium(&page, "#summary&log", &["--dump-dom"]);
    assert_rendered(&dom_log, &log);
    assert_eq!(dom_log.matches("<svg").count(), svgs);
    assert_ne!(dom_log, dom, "log scale changes the drawing");

    // Details: one time series per scenario (155) for the two runs.
    let (dom, log) = run_chromium(&page, "#details", &["--dump-dom"]);
    assert_rendered(&dom, &log);
    assert_eq!(
        dom.matches("<polyline").count(),
        155 * 2,
        "a line per run per scenario"
    );
    // Latency: a percentile plot and table per scenario.
    let (dom, log) = run_chromium(&page, "#latency", &["--dump-dom"]);
    assert_rendered(&dom, &log);
    assert_eq!(dom.matches("<table").count(), 155);
    assert!(dom.contains("99.99%"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An ad-hoc run as `bench-compare.sh` writes it: three scenarios whose rates
/// differ by two orders of magnitude, one of them without consumers.
fn adhoc_run(name: &str, scale: u64) -> Report {
    let mut r = Report::new(BenchmarkSettings {
        broker_name: name.into(),
        url: "stomp://127.0.0.1:61613".into(),
        warm_up_count: 2,
        sample_count: Some(5),
        sample_interval_ms: Some(1000),
        suite: Some("custom".into()),
        client: Some("test".into()),
    });
    // (persistent, consumers, message size, messages per second)
    for (persistent, consumers, size, rate) in [
        (false, 1, 1024, 400_000 * scale),
        (true, 0, 1024, 3_200 * scale),
        (false, 1, 102_400, 17_000 * scale),
    ] {
        let mut s = Scenario::baseline("custom");
        s.mode = Mode::Queue;
        s.persistent = persistent;
        s.consumers = consumers;
        s.message_size = size;
        let n = 5;
        let tp: Vec<u64> = (0..n).map(|i| rate + i * rate / 50).collect();
        r.scenarios.push(ScenarioReport {
            parameters: s.parameters(),
            timestamp: (0..n).map(|i| 1_700_000_000_000 + i * 1000).collect(),
            producer_tp: tp.clone(),
            consumer_tp: if consumers == 0 {
                vec![0; n as usize]
            } else {
                tp
            },
            max_latency: vec![1_000_000; n as usize],
            errors: vec![0; n as usize],
            name: Some(s.name()),
            e2e_p50: vec![],
            e2e_p99: vec![],
            receipt_p50: vec![],
            latency_hdr: None,
            drained: Some(0),
            errors_outside_samples: None,
            last_error: None,
            failover: None,
            order: None,
            stamped: None,
        });
    }
    r
}

#[test]
fn adhoc_report_gives_each_scenario_its_own_chart_of_what_it_measures() {
    let dir = std::env::temp_dir().join(format!("ferromq-bench-adhoc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    let runs = vec![
        ("ferromq".to_string(), adhoc_run("ferromq", 2)),
        ("activemq".to_string(), adhoc_run("activemq", 1)),
    ];
    std::fs::write(&page, html::render("ad-hoc report", &runs)).unwrap();
    let (dom, log) = run_chromium(&page, "", &["--dump-dom"]);
    assert_rendered(&dom, &log);
    // No parameter sweeps in an ad-hoc run: no empty matrix sections.
    assert!(
        !dom.contains("Persistent Scenarios"),
        "empty matrix sections are shown"
    );
    assert_eq!(dom.matches("<details").count(), 0, "empty sections shown");
    // One chart per scenario, each on its own scale.
    assert_eq!(dom.matches("<svg").count(), 3, "one chart per scenario");
    // The scenario without consumers charts what its producers sent, not
    // its (always zero) consumer throughput.
    assert!(
        dom.contains("Producer throughput (no consumers)"),
        "no-consumer scenario not charted by producer throughput"
    );
    assert!(
        dom.contains("median ferromq 6.66k msg/s · activemq 3.33k msg/s"),
        "no-consumer scenario's medians missing:\n{dom}"
    );
    // Each chart's axis reaches its own maximum: the 100 KiB scenario's
    // (at most 36.7k msg/s, axis to 50k) is not drawn on the 1 KiB
    // scenario's 800k scale.
    assert!(
        dom.contains(">50.0k<"),
        "100 KiB scenario lacks its own scale"
    );
    assert!(
        dom.contains(">10.0k<"),
        "no-consumer scenario lacks its own scale"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn assert_rendered(dom: &str, log: &str) {
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "script did not finish; console:\n{log}"
    );
    for line in log.lines() {
        let l = line.to_ascii_lowercase();
        assert!(
            !(l.contains("console") && (l.contains("error") || l.contains("uncaught"))),
            "console error: {line}"
        );
        assert!(!l.contains("uncaught"), "script error: {line}");
    }
}
