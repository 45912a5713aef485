//! Runs one scenario the way the original does: start consumers then
//! producers, wait for them to connect, discard the warm-up periods, take N
//! samples (counters read and reset each interval), stop every client, then
//! drain what is left on the destinations so the next scenario starts clean.

use crate::client::consumer::{self, ConsumerPlan};
use crate::client::failover::{GapSummary, Reconnect, GAP_MIN};
use crate::client::producer::{self, ProducerPlan};
use crate::client::ScenarioShared;
use crate::clock;
use crate::driver::{ConsumerLink, ConsumerSpec, Driver, ProducerSpec};
use crate::order::manifest::ManifestEntry;
use crate::order::{self, SharedOrder};
use crate::report::json::{FailoverReport, GapReport};
use crate::scenario::{AckMode, Mode, Scenario};
use crate::stats::{IntervalCounts, SampleSeries};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Sampling and naming settings of a run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Warm-up intervals discarded.
    pub warm_up_count: u32,
    /// Samples per scenario (unless the scenario says otherwise).
    pub sample_count: u32,
    /// Length of one sample.
    pub sample_interval: Duration,
    /// A drain ends after this long without a message.
    pub drain_timeout: Duration,
    /// No drain after a scenario (`--no-drain`).
    pub no_drain: bool,
    /// How long to wait for all clients to connect.
    pub connect_wait: Duration,
    /// Prefix of queue names.
    pub queue_prefix: String,
    /// Prefix of topic names.
    pub topic_prefix: String,
    /// Consumer prefetch.
    pub prefetch: u32,
    /// Pause before a client reconnects.
    pub reconnect_delay: Duration,
    /// Print errors as they happen.
    pub display_errors: bool,
    /// Stamp producers' messages for the order check with this run id
    /// ([`order::producer_id`]).
    pub stamp_run: Option<u64>,
    /// Check the order of everything consumers and the drain receive.
    pub order: Option<SharedOrder>,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            warm_up_count: 3,
            sample_count: 15,
            sample_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(3),
            no_drain: false,
            connect_wait: Duration::from_secs(10),
            queue_prefix: "/queue/".into(),
            topic_prefix: "/topic/".into(),
            prefetch: 1000,
            reconnect_delay: Duration::from_secs(1),
            display_errors: false,
            stamp_run: None,
            order: None,
        }
    }
}

impl RunSettings {
    /// Samples for `s`.
    pub fn samples_for(&self, s: &Scenario) -> u32 {
        s.sample_count.unwrap_or(self.sample_count)
    }

    /// Rough duration of `s`, for the ETA.
    pub fn estimate(&self, s: &Scenario) -> Duration {
        let intervals = self.warm_up_count + self.samples_for(s);
        let drain = if s.needs_drain() {
            self.drain_timeout
        } else {
            Duration::ZERO
        };
        self.sample_interval * intervals + drain + Duration::from_millis(500)
    }
}

/// What a live sample looks like to the progress display.
#[derive(Debug, Clone, Copy)]
pub struct SampleTick {
    /// 1-based sample number (0 during warm-up).
    pub sample: u32,
    /// Samples in this scenario.
    pub of: u32,
    /// The interval's counts.
    pub counts: IntervalCounts,
}

/// The measurements of one scenario.
pub struct ScenarioOutcome {
    /// Per-sample series and histograms.
    pub series: SampleSeries,
    /// Messages removed by the drain.
    pub drained: u64,
    /// Errors counted outside the samples (warm-up, shutdown).
    pub errors_outside_samples: u64,
    /// The last error seen, if any.
    pub last_error: Option<String>,
    /// Receipt gaps and reconnects (`None` with neither receipts nor
    /// redirects).
    pub failover: Option<FailoverReport>,
    /// What the stamped producers sent (empty unless stamping).
    pub manifest: Vec<ManifestEntry>,
}

impl ScenarioOutcome {
    /// A scenario that could not be measured (no client connected): no
    /// samples, one error, and why.
    pub fn unmeasured(reason: String) -> ScenarioOutcome {
        ScenarioOutcome {
            series: SampleSeries::default(),
            drained: 0,
            errors_outside_samples: 1,
            last_error: Some(reason),
            failover: None,
            manifest: Vec::new(),
        }
    }
}

/// Runs `scenario`, calling `tick` after every interval. Fails only when no
/// client could connect at all; partial failures are counted as errors.
pub async fn run_scenario<D: Driver>(
    driver: Arc<D>,
    scenario: &Scenario,
    settings: &RunSettings,
    tick: &mut (dyn FnMut(SampleTick) + Send),
) -> Result<ScenarioOutcome, ScenarioError> {
    let shared = Arc::new(
        ScenarioShared::new(settings.reconnect_delay, settings.display_errors)
            .with_order(settings.order.clone()),
    );
    let body: Arc<[u8]> = payload(scenario.message_size).into();
    let mut tasks = JoinSet::new();
    for plan in consumer_plans(scenario, settings) {
        tasks.spawn(consumer::run(driver.clone(), plan, shared.clone()));
    }
    let expected_consumers = if scenario.staging {
        0
    } else {
        scenario.consumers
    };
    // Consumers subscribe (with a receipt) before producers start, so topic
    // subscribers see the first messages.
    wait_connected(&shared, expected_consumers, settings.connect_wait).await;
    for plan in producer_plans(scenario, &body, settings) {
        if plan.rate.is_some() {
            tasks.spawn(producer::spawn_on_own_thread(
                driver.clone(),
                plan,
                shared.clone(),
            ));
        } else {
            tasks.spawn(producer::run(driver.clone(), plan, shared.clone()));
        }
    }
    wait_connected(
        &shared,
        expected_consumers + scenario.producers,
        settings.connect_wait,
    )
    .await;

    if scenario.producers + expected_consumers > 0 && shared.connected.load(Ordering::Relaxed) == 0
    {
        // Nothing could connect (wrong port, TLS trust, credentials): every
        // further scenario would fail the same way, so stop here.
        shared.stop();
        tasks.abort_all();
        let last_error = shared
            .why_not_connected()
            .unwrap_or_else(|| "no error reported".into());
        if shared.was_refused() {
            return Err(ScenarioError::Refused { last_error });
        }
        return Err(ScenarioError::NoClientConnected {
            wait: settings.connect_wait,
            last_error,
        });
    }
    let start = Instant::now();
    let interval = settings.sample_interval;
    let samples = settings.samples_for(scenario);
    let midpoint = scenario
        .staging
        .then(|| start + interval * (settings.warm_up_count + samples / 2));
    let mut outside = 0u64;
    for w in 1..=settings.warm_up_count {
        sleep_until_or_midpoint(start + interval * w, midpoint, &shared).await;
        let counts = shared.counters.take();
        outside += counts.errors;
        tick(SampleTick {
            sample: 0,
            of: samples,
            counts,
        });
    }
    // Everything recorded during warm-up is discarded.
    shared.e2e.take();
    shared.receipt.take();
    let mut series = SampleSeries::default();
    let sampling_start = start + interval * settings.warm_up_count;
    for i in 1..=samples {
        sleep_until_or_midpoint(sampling_start + interval * i, midpoint, &shared).await;
        let counts = shared.counters.take();
        let e2e = shared.e2e.take();
        let receipt = shared.receipt.take();
        series.push(clock::unix_ms(), counts, &e2e, &receipt);
        tick(SampleTick {
            sample: i,
            of: samples,
            counts,
        });
    }
    shared.stop();
    let gaps = shared.gaps.finish(clock::now_ns());
    // Clients finish their current operation and disconnect; one that hangs
    // on a dead socket is abandoned.
    let stopped = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    outside += shared.counters.take().errors;
    let drained = if scenario.needs_drain() && !settings.no_drain {
        drain(driver.as_ref(), scenario, settings).await
    } else {
        0
    };
    Ok(ScenarioOutcome {
        series,
        drained,
        errors_outside_samples: outside,
        last_error: shared.last_error(),
        failover: failover_report(&shared, gaps),
        manifest: shared.take_manifest(),
    })
}

/// The results-file form of the gaps and reconnect counts, with the gaps'
/// ends on the wall clock (so they can be matched with a log of kills).
fn failover_report(shared: &ScenarioShared, gaps: GapSummary) -> Option<FailoverReport> {
    let redirects = shared.redirects.load(Ordering::Relaxed);
    if gaps.receipted == 0 && redirects == 0 {
        return None;
    }
    let (now_ns, now_unix_ms) = (clock::now_ns(), clock::unix_ms());
    let unix_ms = |ns: u64| now_unix_ms.saturating_sub(now_ns.saturating_sub(ns) / 1_000_000);
    let ms = |ns: u64| ns as f64 / 1e6;
    Some(FailoverReport {
        receipted: gaps.receipted,
        longest_gap_ms: ms(gaps.longest_ns),
        gaps: gaps
            .gaps
            .iter()
            .map(|g| GapReport {
                start_unix_ms: unix_ms(g.start_ns),
                end_unix_ms: unix_ms(g.end_ns),
                ms: ms(g.end_ns.saturating_sub(g.start_ns)),
                open: g.open,
            })
            .collect(),
        gap_min_ms: GAP_MIN.as_millis() as u64,
        gaps_not_kept: gaps.dropped,
        redirects,
        resent: shared.resent.load(Ordering::Relaxed),
        unconfirmed: shared.unconfirmed.load(Ordering::Relaxed),
    })
}

/// Why a scenario could not be measured at all.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The broker refused the clients' connections (credentials, say) and
    /// none connected: every scenario would fail the same way.
    #[error("the broker refused the connection: {last_error}")]
    Refused {
        /// The refusal.
        last_error: String,
    },
    /// Not one client connected within the connect wait.
    #[error("no client could connect within {wait:?}; last error: {last_error}")]
    NoClientConnected {
        /// How long we waited.
        wait: Duration,
        /// The most recent connection error.
        last_error: String,
    },
}

/// Waits until `expected` clients have connected, at most `limit`; a
/// refusal with nobody connected ends the wait at once.
async fn wait_connected(shared: &ScenarioShared, expected: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while shared.connected.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        if shared.was_refused() && shared.connected.load(Ordering::Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sleeps until `until`, firing the staging midpoint on the way if it falls
/// before then.
async fn sleep_until_or_midpoint(
    until: Instant,
    midpoint: Option<Instant>,
    shared: &ScenarioShared,
) {
    if let Some(m) = midpoint {
        if !shared.past_midpoint() && m <= until {
            tokio::time::sleep_until(m.into()).await;
            shared.reach_midpoint();
        }
    }
    tokio::time::sleep_until(until.into()).await;
}

/// The original's payload: a text line padded with `a..z` to `size` bytes.
pub fn payload(size: usize) -> Vec<u8> {
    let mut body: Vec<u8> = b"Message from ferromq-bench\n"
        .iter()
        .copied()
        .take(size)
        .collect();
    let mut letter = 0u8;
    while body.len() < size {
        body.push(b'a' + letter);
        letter = (letter + 1) % 26;
    }
    body
}

/// Durable subscription name of consumer `i` (stable, so a drain can reattach).
fn durable_name(i: u32) -> String {
    format!("ferromq-bench-c{i}")
}

fn consumer_ack(scenario: &Scenario) -> AckMode {
    // A transaction on the consuming side covers ACKs; with `ack:auto` there
    // would be nothing for it to commit.
    if scenario.tx_size > 0 && scenario.ack == AckMode::Auto {
        AckMode::Client
    } else {
        scenario.ack
    }
}

fn consumer_plans(scenario: &Scenario, settings: &RunSettings) -> Vec<ConsumerPlan> {
    (0..scenario.consumers)
        .map(|i| ConsumerPlan {
            index: i,
            spec: ConsumerSpec {
                destination: scenario.destination(
                    i,
                    &settings.queue_prefix,
                    &settings.topic_prefix,
                ),
                ack: consumer_ack(scenario),
                durable_name: (scenario.durable && scenario.mode == Mode::Topic)
                    .then(|| durable_name(i)),
                prefetch: settings.prefetch,
            },
            tx_size: scenario.tx_size,
            delay: scenario
                .slow_consumer
                .filter(|s| s.index == i)
                .map(|s| s.delay),
            start_at_midpoint: scenario.staging,
        })
        .collect()
}

fn producer_plans(
    scenario: &Scenario,
    body: &Arc<[u8]>,
    settings: &RunSettings,
) -> Vec<ProducerPlan> {
    let share = scenario
        .producer_rate
        .map(|r| r as f64 / f64::from(scenario.producers.max(1)));
    (0..scenario.producers)
        .map(|i| ProducerPlan {
            index: i,
            spec: ProducerSpec {
                destination: scenario.destination(
                    i,
                    &settings.queue_prefix,
                    &settings.topic_prefix,
                ),
                persistent: scenario.persistent,
                body: body.clone(),
            },
            sync_send: scenario.persistent && scenario.sync_send,
            tx_size: scenario.tx_size,
            rate: share,
            stop_at_midpoint: scenario.staging,
            own_thread: false,
            stamp_id: settings.stamp_run.map(|run| order::producer_id(run, i)),
        })
        .collect()
}

/// Consumes what is left until nothing arrives for `drain_timeout`; removes
/// durable subscriptions. Returns the number of messages drained.
async fn drain<D: Driver>(driver: &D, scenario: &Scenario, settings: &RunSettings) -> u64 {
    let targets: Vec<ConsumerSpec> = if scenario.durable && scenario.mode == Mode::Topic {
        (0..scenario.consumers)
            .map(|i| ConsumerSpec {
                destination: scenario.destination(
                    i,
                    &settings.queue_prefix,
                    &settings.topic_prefix,
                ),
                ack: AckMode::Auto,
                durable_name: Some(durable_name(i)),
                prefetch: settings.prefetch,
            })
            .collect()
    } else {
        (0..scenario.destination_count)
            .map(|d| ConsumerSpec {
                destination: scenario.destination(
                    d,
                    &settings.queue_prefix,
                    &settings.topic_prefix,
                ),
                ack: AckMode::Auto,
                durable_name: None,
                prefetch: settings.prefetch,
            })
            .collect()
    };
    let drains = targets.iter().enumerate().map(|(i, spec)| async move {
        // A cluster may have failed over during the run: follow refusals
        // to the leader, for as long as clients may take to connect.
        let mut reconnect = Reconnect::new(i, driver.endpoint_count());
        let deadline = Instant::now() + settings.connect_wait;
        let mut link = loop {
            match driver.connect_consumer(reconnect.endpoint(), spec).await {
                Ok(link) => break link,
                Err(e) if Instant::now() < deadline => {
                    let leader = e.leader().and_then(|a| driver.endpoint_at(a));
                    let pause = reconnect.failed(&e, leader, settings.reconnect_delay);
                    tokio::time::sleep(pause).await;
                }
                Err(_) => return 0u64,
            }
        };
        let mut received = Vec::with_capacity(4096);
        let mut total = 0u64;
        loop {
            received.clear();
            match tokio::time::timeout(settings.drain_timeout, link.receive(&mut received)).await {
                Ok(Ok(n)) => {
                    total += n as u64;
                    if let Some(o) = &settings.order {
                        order::observe_all(o, &spec.destination, &received);
                    }
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if spec.durable_name.is_some() {
            link.unsubscribe_and_close().await;
        } else {
            link.close().await;
        }
        total
    });
    let mut total = 0;
    for n in join_all(drains).await {
        total += n;
    }
    total
}

/// Runs futures concurrently on the current task.
async fn join_all<F: std::future::Future<Output = u64>>(
    futures: impl Iterator<Item = F>,
) -> Vec<u64> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<u64>> = vec![None; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in done.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().map(|v| v.unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_exact_size() {
        for size in [0, 1, 10, 27, 1000, 100_000] {
            let p = payload(size);
            assert_eq!(p.len(), size);
        }
        let p = payload(40);
        assert!(p.starts_with(b"Message from"));
        assert_eq!(&p[27..30], b"abc");
    }

    #[test]
    fn plans_follow_the_scenario() {
        let mut s = Scenario::baseline("throughput");
        (s.producers, s.destination_count, s.consumers) = (10, 10, 10);
        s.tx_size = 10;
        s.ack = AckMode::Auto;
        s.producer_rate = Some(1000);
        let settings = RunSettings::default();
        let body: Arc<[u8]> = payload(10).into();
        let producers = producer_plans(&s, &body, &settings);
        assert_eq!(producers.len(), 10);
        assert_eq!(producers[3].spec.destination, "/queue/loadq-3");
        assert_eq!(producers[0].rate, Some(100.0));
        let consumers = consumer_plans(&s, &settings);
        assert_eq!(consumers[7].spec.destination, "/queue/loadq-7");
        assert_eq!(consumers[0].spec.ack, AckMode::Client, "tx forces acks");
        assert!(consumers.iter().all(|c| c.spec.durable_name.is_none()));
        s.mode = Mode::Topic;
        s.durable = true;
        let consumers = consumer_plans(&s, &settings);
        assert_eq!(
            consumers[2].spec.durable_name.as_deref(),
            Some("ferromq-bench-c2")
        );
    }
}
