//! Runs tiny scenarios against a real broker (ActiveMQ in CI, via
//! `tests/peer-activemq.sh`). The broker URL comes from
//! `FERROMQ_BENCH_PEER_URL`; the tests fail when it is unset, so a CI job that
//! forgets to start the broker cannot pass silently.
#![allow(clippy::unwrap_used)] // tests may unwrap

use ferromq_bench::driver::stomp::{StompDriver, StompOptions};
use ferromq_bench::report::json::Report;
use ferromq_bench::runner::{run_scenario, RunSettings, ScenarioOutcome};
use ferromq_bench::scenario::{AckMode, Mode, Scenario};
use ferromq_bench::stats::LatencySummary;
use ferromq_bench::url::BrokerUrl;
use std::sync::Arc;
use std::time::Duration;

fn peer_url() -> String {
    match std::env::var("FERROMQ_BENCH_PEER_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!("FERROMQ_BENCH_PEER_URL is not set: start a broker (tests/peer-activemq.sh) and point it there"),
    }
}

fn driver() -> Arc<StompDriver> {
    let url = BrokerUrl::parse(&peer_url()).unwrap();
    Arc::new(StompDriver::new(StompOptions {
        url,
        login: std::env::var("FERROMQ_BENCH_PEER_LOGIN").ok(),
        passcode: std::env::var("FERROMQ_BENCH_PEER_PASSCODE").ok(),
        vhost: "/".into(),
        connect_timeout: Duration::from_secs(10),
        tls: None,
    }))
}

/// Tests run in parallel, so each uses its own destination names.
fn settings(tag: &str) -> RunSettings {
    RunSettings {
        warm_up_count: 1,
        sample_count: 3,
        sample_interval: Duration::from_millis(500),
        drain_timeout: Duration::from_millis(500),
        queue_prefix: format!("/queue/ferromq-bench-{tag}-"),
        topic_prefix: format!("/topic/ferromq-bench-{tag}-"),
        ..RunSettings::default()
    }
}

async fn run(s: &Scenario) -> ScenarioOutcome {
    let tag = s.name().replace(['/', '-'], "");
    run_with(s, settings(&tag)).await
}

async fn run_with(s: &Scenario, settings: RunSettings) -> ScenarioOutcome {
    run_scenario(driver(), s, &settings, &mut |_| {})
        .await
        .unwrap()
}

fn assert_flowed(name: &str, o: &ScenarioOutcome) {
    let produced: u64 = o.series.producer_tp.iter().sum();
    let consumed: u64 = o.series.consumer_tp.iter().sum();
    let errors: u64 = o.series.errors.iter().sum::<u64>() + o.errors_outside_samples;
    assert_eq!(o.series.len(), 3, "{name}: samples");
    assert!(produced > 0, "{name}: nothing produced");
    assert!(consumed > 0, "{name}: nothing consumed");
    assert_eq!(errors, 0, "{name}: errors, last: {:?}", o.last_error);
    assert!(
        !o.series.e2e_total.is_empty(),
        "{name}: no latency recorded"
    );
    assert!(
        o.series.max_latency.iter().any(|&m| m > 0),
        "{name}: no max latency"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_throughput_and_drain() {
    let s = Scenario::baseline("test");
    let o = run(&s).await;
    assert_flowed("queue np", &o);
    // Non-persistent queue with a fast producer: consumers keep up or the
    // drain removes the rest; either way nothing is left for the next test.
    let o2 = run(&s).await;
    assert_flowed("queue np again", &o2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sends_wait_for_receipts() {
    let mut s = Scenario::baseline("test");
    s.persistent = true;
    s.ack = AckMode::ClientIndividual;
    // A prefetch of 5: if our ACKs did not match the broker's ids, delivery
    // would stop after 5 unacknowledged messages.
    let o = run_with(
        &s,
        RunSettings {
            prefetch: 5,
            ..settings("persistentack")
        },
    )
    .await;
    assert_flowed("queue p", &o);
    let consumed: u64 = o.series.consumer_tp.iter().sum();
    assert!(
        consumed > 50,
        "consumer kept receiving with prefetch 5: {consumed}"
    );
    let r = LatencySummary::of(&o.series.receipt_total);
    assert!(r.count > 0 && r.p50 > 0, "receipt latency recorded: {r:?}");
    // One receipt per confirmed send. A producer records a send's receipt
    // latency and then counts the send; the sampler takes the counters and
    // then the histograms. A send whose two records straddle the end of the
    // warm-up or of the last sample is counted on one side only, so each
    // producer may be one short at each of those two boundaries.
    let produced: u64 = o.series.producer_tp.iter().sum();
    let straddling = 2 * u64::from(s.producers);
    assert!(
        r.count + straddling >= produced,
        "{} receipts for {produced} sends",
        r.count
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_fixed_rate() {
    let mut s = Scenario::baseline("test");
    s.persistent = true;
    s.tx_size = 10;
    let o = run_with(
        &s,
        RunSettings {
            prefetch: 5,
            ..settings("txack")
        },
    )
    .await;
    assert_flowed("queue p tx10", &o);
    let consumed: u64 = o.series.consumer_tp.iter().sum();
    assert!(
        consumed > 50,
        "transacted ACKs release the prefetch window: {consumed}"
    );

    let mut paced = Scenario::baseline("test");
    paced.producer_rate = Some(200);
    paced.ack = AckMode::Auto;
    let o = run(&paced).await;
    assert_flowed("paced", &o);
    for &n in &o.series.producer_tp {
        // 200 msg/s over 0.5 s samples: 100 per sample, give or take timing.
        assert!(
            (80..=120).contains(&n),
            "paced producer sent {n} in a sample"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_fan_out_and_durable_subscriptions() {
    let mut s = Scenario::baseline("test");
    s.mode = Mode::Topic;
    s.consumers = 3;
    s.ack = AckMode::Auto;
    let o = run(&s).await;
    assert_flowed("topic 1p3c", &o);
    let produced: u64 = o.series.producer_tp.iter().sum();
    let consumed: u64 = o.series.consumer_tp.iter().sum();
    assert!(
        consumed > produced,
        "fan-out counts every delivery: {consumed} vs {produced}"
    );

    s.durable = true;
    s.persistent = true;
    s.consumers = 2;
    let o = run(&s).await;
    assert_flowed("durable topic", &o);
}

#[test]
fn binary_runs_and_writes_a_resumable_file() {
    let dir = std::env::temp_dir().join(format!("ferromq-bench-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("peer.json");
    let exe = env!("CARGO_BIN_EXE_ferromq-bench");
    let args = [
        "run",
        "--url",
        &peer_url(),
        "--quick",
        "--filter",
        "latency/",
        "--sample-count",
        "2",
        "--warm-up-count",
        "1",
        "--sample-interval",
        "500",
        "-o",
    ];
    let first = std::process::Command::new(exe)
        .args(args)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("e2e p99"));
    let report = Report::load(&out).unwrap();
    assert_eq!(report.scenarios.len(), 2);
    let hdr = report.scenarios[0].latency_hdr.as_ref().unwrap();
    assert!(hdr.e2e.count > 0 && hdr.e2e.p50 <= hdr.e2e.p99 && hdr.e2e.p99 <= hdr.e2e.max);
    // A second run with the same file has nothing left to do.
    let started = std::time::Instant::now();
    let output = std::process::Command::new(exe)
        .args(args)
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "resumed run re-ran scenarios"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("skipped"));
    assert_eq!(Report::load(&out).unwrap().scenarios.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
