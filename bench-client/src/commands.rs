//! The three subcommands: `run` (select scenarios, resume, run each, save the
//! file after every scenario, print the table), `list` and `report`.

use crate::cli::{AckArg, ListArgs, ModeArg, ReportArgs, RunArgs, SelectionArgs, Suite};
use crate::driver::native::{NativeDriver, NativeOptions};
use crate::driver::stomp::{StompDriver, StompOptions};
use crate::driver::transport::{tls_config, TlsOptions};
use crate::driver::{Driver, DriverError};
use crate::matrix::{self, MatrixLimits};
use crate::order::checker::{OrderState, StateError};
use crate::order::manifest::{self, ManifestEntry, ManifestError};
use crate::order::SharedOrder;
use crate::progress::{latency, rate, Progress};
use crate::report::json::{
    BenchmarkSettings, LatencyHdr, Report, ReportFileError, ScenarioReport, StampedReport,
};
use crate::report::{html, table};
use crate::runner::{self, RunSettings, ScenarioOutcome};
use crate::scenario::{AckMode, Mode, Scenario};
use crate::stats::{median, percentile_curve, LatencySummary};
use crate::url::{BrokerUrl, Protocol, UrlError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// Why a command failed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// Bad `--url`.
    #[error("--url: {0}")]
    Url(#[from] UrlError),
    /// TLS setup failed.
    #[error("{0}")]
    Tls(#[from] DriverError),
    /// A results file could not be read or written.
    #[error("{0}")]
    File(#[from] ReportFileError),
    /// Inconsistent options.
    #[error("{0}")]
    Usage(String),
    /// The broker could not be reached at all.
    #[error("{0}")]
    Scenario(#[from] crate::runner::ScenarioError),
    /// The order check's manifest could not be read or written.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The order check's state could not be read or written.
    #[error("{0}")]
    OrderState(#[from] StateError),
    /// Writing the HTML report failed.
    #[error("{path}: {source}")]
    Write {
        /// Which file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn is_adhoc(sel: &SelectionArgs) -> bool {
    sel.mode.is_some()
        || sel.producers.is_some()
        || sel.consumers.is_some()
        || sel.destinations.is_some()
        || sel.size.is_some()
        || sel.tx_size.is_some()
        || sel.rate.is_some()
        || sel.persistent
        || sel.async_send
}

/// The scenarios `sel` selects, in run order.
pub fn select_scenarios(sel: &SelectionArgs) -> Result<Vec<Scenario>, CommandError> {
    let mut scenarios = if is_adhoc(sel) {
        let mut s = Scenario::baseline("custom");
        s.mode = match sel.mode {
            Some(ModeArg::Topic) => Mode::Topic,
            _ => Mode::Queue,
        };
        s.persistent = sel.persistent || sel.async_send;
        s.sync_send = !sel.async_send;
        s.producers = sel.producers.unwrap_or(1);
        s.consumers = sel.consumers.unwrap_or(1);
        s.destination_count = sel.destinations.unwrap_or(1).max(1);
        s.message_size = sel.size.unwrap_or(10);
        s.tx_size = sel.tx_size.unwrap_or(0);
        s.producer_rate = sel.rate;
        vec![s]
    } else if sel.quick {
        matrix::quick()
    } else {
        match sel.suite {
            Suite::JmsBenchmark => {
                for g in &sel.skip {
                    if !matrix::JMS_GROUPS.contains(&g.as_str()) {
                        return Err(CommandError::Usage(format!(
                            "--skip: unknown group '{g}' (expected one of {})",
                            matrix::JMS_GROUPS.join(", ")
                        )));
                    }
                }
                let limits = MatrixLimits {
                    max_clients: sel.max_clients,
                    max_destinations: sel.max_destinations,
                };
                matrix::jms_benchmark(limits, &sel.skip)
            }
            Suite::StompBenchmark => matrix::stomp_benchmark(),
        }
    };
    for s in &mut scenarios {
        if sel.durable && s.mode == Mode::Topic {
            s.durable = true;
        }
        if let Some(ack) = sel.ack {
            s.ack = match ack {
                AckArg::Auto => AckMode::Auto,
                AckArg::Client => AckMode::Client,
                AckArg::ClientIndividual => AckMode::ClientIndividual,
            };
            s.ack_explicit = true;
        }
    }
    if let Some(f) = &sel.filter {
        scenarios.retain(|s| s.name().contains(f.as_str()));
    }
    if scenarios.is_empty() {
        return Err(CommandError::Usage("no scenario selected".into()));
    }
    Ok(scenarios)
}

/// `list`.
pub fn list(args: &ListArgs) -> Result<(), CommandError> {
    let scenarios = select_scenarios(&args.selection)?;
    let mut lines: Vec<String> = scenarios.iter().map(Scenario::name).collect();
    lines.push(format!("{} scenarios", scenarios.len()));
    if args.show_skips {
        let limits = MatrixLimits {
            max_clients: args.selection.max_clients,
            max_destinations: args.selection.max_destinations,
        };
        for (s, why) in matrix::skipped_throughput(limits) {
            lines.push(format!("skipped {}: {why}", s.name()));
        }
    }
    print_lines(&lines);
    Ok(())
}

/// Prints to stdout, stopping quietly when the reader goes away
/// (`ferromq-bench list | head`).
fn print_lines(lines: &[String]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}

/// `report`.
pub fn report(args: &ReportArgs) -> Result<(), CommandError> {
    let mut runs = Vec::new();
    for path in &args.inputs {
        let r = Report::load(path)?;
        runs.push((r.label(path), r));
    }
    let page = html::render(&args.title, &runs);
    std::fs::write(&args.out, page).map_err(|source| CommandError::Write {
        path: args.out.display().to_string(),
        source,
    })?;
    eprintln!("wrote {} ({} runs)", args.out.display(), runs.len());
    Ok(())
}

/// `run`.
pub async fn run(args: &RunArgs) -> Result<(), CommandError> {
    let scenarios = select_scenarios(&args.selection)?;
    let url = BrokerUrl::parse(&args.url)?;
    let tls = if url.uses_tls() {
        Some(tls_config(&TlsOptions {
            ca_files: args.ca.clone(),
            insecure: args.insecure,
        })?)
    } else {
        None
    };
    let quick = args.selection.quick;
    let settings = RunSettings {
        warm_up_count: args.warm_up_count.unwrap_or(if quick { 1 } else { 3 }),
        sample_count: args
            .sample_count
            .unwrap_or(if quick { 5 } else { 15 })
            .max(1),
        sample_interval: Duration::from_millis(args.sample_interval.max(10)),
        drain_timeout: Duration::from_millis(args.drain_timeout.unwrap_or(if quick {
            1000
        } else {
            3000
        })),
        no_drain: args.no_drain,
        queue_prefix: args.queue_prefix.clone(),
        topic_prefix: args.topic_prefix.clone(),
        prefetch: args.prefetch.max(1),
        display_errors: args.display_errors,
        ..RunSettings::default()
    };
    if args.manifest.is_some() {
        if let Some(s) = scenarios
            .iter()
            .find(|s| s.producers > crate::order::MAX_PRODUCERS)
        {
            return Err(CommandError::Usage(format!(
                "--manifest: {} has {} producers; stamped runs take at most {}",
                s.name(),
                s.producers,
                crate::order::MAX_PRODUCERS
            )));
        }
    }
    let order = OrderCheck::open(args)?;
    let settings = RunSettings {
        stamp_run: args.manifest.as_ref().map(|_| crate::order::run_id()),
        order: order.as_ref().map(|o| o.state.clone()),
        ..settings
    };
    let connect_timeout = Duration::from_secs(10);
    match url.protocol() {
        Protocol::Stomp => {
            let driver = Arc::new(StompDriver::new(StompOptions {
                url: url.clone(),
                login: args.login.clone(),
                passcode: args.passcode.clone(),
                vhost: args.vhost.clone(),
                connect_timeout,
                tls,
            }));
            run_with(driver, args, &url, &scenarios, &settings, order.as_ref()).await
        }
        Protocol::Native => {
            let driver = Arc::new(NativeDriver::new(NativeOptions {
                url: url.clone(),
                login: args.login.clone(),
                passcode: args.passcode.clone(),
                connect_timeout,
                tls,
            }));
            run_with(driver, args, &url, &scenarios, &settings, order.as_ref()).await
        }
    }
}

/// The order check of a run that receives (`--expect`, `--order-state`).
struct OrderCheck {
    state: SharedOrder,
    expected: Option<HashMap<u64, ManifestEntry>>,
}

impl OrderCheck {
    /// `None` unless asked for; reads the manifest and any saved state.
    fn open(args: &RunArgs) -> Result<Option<OrderCheck>, CommandError> {
        if args.expect.is_none() && args.order_state.is_none() {
            return Ok(None);
        }
        let expected = args.expect.as_deref().map(manifest::load).transpose()?;
        let state = match &args.order_state {
            Some(path) => OrderState::load(path)?,
            None => OrderState::default(),
        };
        Ok(Some(OrderCheck {
            state: Arc::new(Mutex::new(state)),
            expected,
        }))
    }

    /// Saves the state (if asked) and gives the verdict so far.
    fn finish_scenario(
        &self,
        args: &RunArgs,
    ) -> Result<crate::order::checker::OrderReport, CommandError> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = &args.order_state {
            state.save(path)?;
        }
        Ok(state.verdict(self.expected.as_ref()))
    }
}

/// Consecutive scenarios no client could connect to before a run gives up.
const MAX_UNMEASURED_IN_A_ROW: usize = 3;

/// Runs `scenarios` with `driver`, resuming and saving `args.out`.
async fn run_with<D: Driver>(
    driver: Arc<D>,
    args: &RunArgs,
    url: &BrokerUrl,
    scenarios: &[Scenario],
    settings: &RunSettings,
    order: Option<&OrderCheck>,
) -> Result<(), CommandError> {
    let quick = args.selection.quick;
    let mut report = if args.out.exists() {
        let r = Report::load(&args.out)?;
        eprintln!(
            "resuming {}: {} scenarios already done",
            args.out.display(),
            r.scenarios.len()
        );
        let old = &r.benchmark_settings;
        if old.url != url.original {
            eprintln!(
                "warning: {} was measured against {}, this run uses {}",
                args.out.display(),
                old.url,
                url.original
            );
        }
        if old.sample_count.is_some_and(|n| n != settings.sample_count) {
            eprintln!(
                "warning: {} has {:?} samples per scenario, this run takes {}; scenarios already in it are not re-run",
                args.out.display(),
                old.sample_count,
                settings.sample_count
            );
        }
        r
    } else {
        let suite = if is_adhoc(&args.selection) {
            "custom"
        } else if quick {
            "quick"
        } else {
            match args.selection.suite {
                Suite::JmsBenchmark => "jms-benchmark",
                Suite::StompBenchmark => "stomp-benchmark",
            }
        };
        Report::new(BenchmarkSettings {
            broker_name: args.broker_name.clone().unwrap_or_else(|| {
                args.out
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            url: url.original.clone(),
            warm_up_count: settings.warm_up_count,
            sample_count: Some(settings.sample_count),
            sample_interval_ms: Some(settings.sample_interval.as_millis() as u64),
            suite: Some(suite.into()),
            client: Some(format!("ferromq-bench {}", env!("CARGO_PKG_VERSION"))),
        })
    };
    let estimate = scenarios.iter().map(|s| settings.estimate(s)).sum();
    let mut progress = Progress::new(scenarios.len(), estimate);
    let mut unmeasured_in_a_row = 0;
    for scenario in scenarios {
        let params = scenario.parameters();
        if report.has(&params) {
            progress.skipped(&scenario.name(), settings.estimate(scenario));
            continue;
        }
        progress.begin(&scenario.name(), settings.estimate(scenario));
        let outcome = match runner::run_scenario(driver.clone(), scenario, settings, &mut |t| {
            progress.tick(t)
        })
        .await
        {
            Ok(outcome) => {
                unmeasured_in_a_row = 0;
                outcome
            }
            // A broker that cannot take one scenario's clients (ActiveMQ
            // under 100 producers and 100 consumers, say) gets that
            // scenario recorded as unmeasured, with the reason, and the
            // suite goes on; several in a row mean the broker is gone.
            // A refusal (credentials) is the same for every scenario.
            Err(e @ runner::ScenarioError::Refused { .. }) => return Err(e.into()),
            Err(e) if unmeasured_in_a_row + 1 < MAX_UNMEASURED_IN_A_ROW => {
                unmeasured_in_a_row += 1;
                ScenarioOutcome::unmeasured(e.to_string())
            }
            Err(e) => return Err(e.into()),
        };
        let stamped = (!outcome.manifest.is_empty()).then(|| StampedReport {
            producers: outcome.manifest.len() as u64,
            sent: outcome.manifest.iter().map(|e| e.sent).sum(),
            receipted: outcome.manifest.iter().map(|e| e.receipted).sum(),
        });
        if let Some(path) = &args.manifest {
            // Written before the results file: a fill whose manifest is
            // missing lines would make the drain report losses that are not.
            manifest::append(path, &outcome.manifest)?;
        }
        let mut entry = scenario_report(scenario, outcome);
        entry.stamped = stamped;
        if let Some(order) = order {
            let verdict = order.finish_scenario(args)?;
            eprintln!("{}", verdict.summary());
            entry.order = Some(verdict);
        }
        progress.end(&summary_line(&entry));
        report.scenarios.push(entry);
        report.save(&args.out)?;
    }
    print_lines(&[
        table::render(&report),
        format!("results: {}", args.out.display()),
    ]);
    Ok(())
}

fn summary_line(s: &ScenarioReport) -> String {
    let hdr = s.latency_hdr.as_ref().map(|h| h.e2e).unwrap_or_default();
    let errors: u64 = s.errors.iter().sum::<u64>() + s.errors_outside_samples.unwrap_or(0);
    let mut line = format!(
        "prod {}/s  cons {}/s  e2e p50 {} p99 {}",
        rate(median(&s.producer_tp)),
        rate(median(&s.consumer_tp)),
        latency(hdr.p50 as f64),
        latency(hdr.p99 as f64)
    );
    if let Some(f) = s.failover.as_ref().filter(|f| !f.gaps.is_empty()) {
        line.push_str(&format!(
            "  receipt gaps {} (longest {:.0} ms, {} redirects, {} resent)",
            f.gaps.len(),
            f.longest_gap_ms,
            f.redirects,
            f.resent
        ));
    }
    if errors > 0 {
        line.push_str(&format!("  errors {errors}"));
        if let Some(e) = &s.last_error {
            line.push_str(&format!(" (last: {e})"));
        }
    }
    line
}

/// Turns a run's measurements into its results-file entry.
pub fn scenario_report(scenario: &Scenario, outcome: ScenarioOutcome) -> ScenarioReport {
    let series = outcome.series;
    ScenarioReport {
        parameters: scenario.parameters(),
        latency_hdr: Some(LatencyHdr {
            unit: "ns".into(),
            e2e: LatencySummary::of(&series.e2e_total),
            receipt: LatencySummary::of(&series.receipt_total),
            e2e_percentiles: percentile_curve(&series.e2e_total),
            receipt_percentiles: percentile_curve(&series.receipt_total),
        }),
        timestamp: series.timestamp,
        producer_tp: series.producer_tp,
        consumer_tp: series.consumer_tp,
        max_latency: series.max_latency,
        errors: series.errors,
        name: Some(scenario.name()),
        e2e_p50: series.e2e_p50,
        e2e_p99: series.e2e_p99,
        receipt_p50: series.receipt_p50,
        drained: Some(outcome.drained),
        errors_outside_samples: Some(outcome.errors_outside_samples),
        last_error: outcome.last_error,
        failover: outcome.failover,
        order: None,
        stamped: None,
    }
}
