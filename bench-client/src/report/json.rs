//! The results file, in the original JMS Benchmark's shape
//! (`benchmark_settings` + `scenarios[]` with `parameters`, `timestamp`,
//! `producer tp`, `consumer tp`, `max latency`, `errors`) so its viewer can load
//! our runs, plus extra keys it ignores: per-sample latency percentiles and
//! whole-scenario HDR summaries (`latency_hdr`). Files written by the original
//! load too (the extra keys are optional).
//!
//! The file is rewritten (atomically) after every scenario, and a run given an
//! existing file skips the scenarios already in it.

use crate::order::checker::OrderReport;
use crate::stats::LatencySummary;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A whole results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// How the run was made.
    pub benchmark_settings: BenchmarkSettings,
    /// One entry per finished scenario, in run order.
    pub scenarios: Vec<ScenarioReport>,
}

/// The original's settings block plus ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkSettings {
    /// Label of the broker in reports.
    pub broker_name: String,
    /// The `--url` given.
    pub url: String,
    /// Warm-up intervals discarded per scenario.
    pub warm_up_count: u32,
    /// Samples per scenario (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<u32>,
    /// Sample length in ms (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_interval_ms: Option<u64>,
    /// Which suite was run (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// The client that produced the file (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Whole-scenario latency data from the HDR histograms (nanoseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyHdr {
    /// Always `"ns"`.
    pub unit: String,
    /// Send stamp (intended send time for fixed-rate runs) to receipt by a consumer.
    pub e2e: LatencySummary,
    /// Send (or COMMIT) to RECEIPT, for persistent or transacted producers.
    pub receipt: LatencySummary,
    /// `[percentile, ns]` points of the end-to-end distribution.
    pub e2e_percentiles: Vec<(f64, u64)>,
    /// `[percentile, ns]` points of the receipt distribution.
    pub receipt_percentiles: Vec<(f64, u64)>,
}

/// One scenario's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// The scenario's identity (original keys).
    pub parameters: Map<String, Value>,
    /// End of each sample, ms since the Unix epoch.
    pub timestamp: Vec<u64>,
    /// Messages produced per sample.
    #[serde(rename = "producer tp")]
    pub producer_tp: Vec<u64>,
    /// Messages consumed per sample.
    #[serde(rename = "consumer tp")]
    pub consumer_tp: Vec<u64>,
    /// Largest end-to-end latency per sample, ns.
    #[serde(rename = "max latency")]
    pub max_latency: Vec<u64>,
    /// Errors per sample.
    pub errors: Vec<u64>,
    /// Our scenario name (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Median end-to-end latency per sample, ns (ours).
    #[serde(
        rename = "e2e latency p50",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub e2e_p50: Vec<u64>,
    /// 99th percentile end-to-end latency per sample, ns (ours).
    #[serde(
        rename = "e2e latency p99",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub e2e_p99: Vec<u64>,
    /// Median send-to-receipt time per sample, ns (ours).
    #[serde(
        rename = "receipt latency p50",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub receipt_p50: Vec<u64>,
    /// HDR summaries (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_hdr: Option<LatencyHdr>,
    /// Messages left behind and removed by the drain (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<u64>,
    /// Errors during warm-up, shutdown and drain, which no sample covers (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_outside_samples: Option<u64>,
    /// The last client error, if any (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Receipt gaps and reconnects, for runs with receipts or redirects
    /// (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverReport>,
    /// The order check's verdict after this scenario, over every drain run
    /// sharing its state (ours; `--expect`, `--order-state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderReport>,
    /// What the stamped producers sent (ours; `--manifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamped: Option<StampedReport>,
}

/// What a stamping run's producers sent, in all (the manifest has each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampedReport {
    /// Producers that stamped their messages.
    pub producers: u64,
    /// Messages they handed to their links.
    pub sent: u64,
    /// Of those, covered by a RECEIPT.
    pub receipted: u64,
}

/// What a failover cost the producers of one scenario (warm-up, samples
/// and shutdown alike): the gaps in the receipt timeline, and how the
/// clients got back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverReport {
    /// Messages confirmed by a RECEIPT (a COMMIT's counts its messages).
    pub receipted: u64,
    /// Longest time between two receipts (or from the last one to the
    /// end), ms.
    pub longest_gap_ms: f64,
    /// Every interval without a receipt of at least `gap_min_ms`, in order.
    pub gaps: Vec<GapReport>,
    /// The shortest interval recorded as a gap, ms.
    pub gap_min_ms: u64,
    /// Gaps beyond the ones kept.
    #[serde(default)]
    pub gaps_not_kept: u64,
    /// `not the leader` refusals followed (not counted as errors).
    pub redirects: u64,
    /// SENDs resent because their link failed before the RECEIPT came.
    pub resent: u64,
    /// Transacted messages whose COMMIT's RECEIPT never came (not resent).
    pub unconfirmed: u64,
}

/// One interval without receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapReport {
    /// The last receipt before it, ms since the Unix epoch.
    pub start_unix_ms: u64,
    /// The first receipt after it (or the scenario's end), ms since the
    /// Unix epoch.
    pub end_unix_ms: u64,
    /// Its length, ms.
    pub ms: f64,
    /// The scenario ended before a receipt did.
    pub open: bool,
}

/// Reading or writing a results file failed.
#[derive(Debug, Error)]
pub enum ReportFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a results file.
    #[error("{path}: not a benchmark results file: {source}")]
    Format {
        /// Which file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl Report {
    /// An empty report.
    pub fn new(settings: BenchmarkSettings) -> Report {
        Report {
            benchmark_settings: settings,
            scenarios: Vec::new(),
        }
    }

    /// Whether a scenario with these parameters is already in the file.
    pub fn has(&self, parameters: &Map<String, Value>) -> bool {
        self.scenarios.iter().any(|s| &s.parameters == parameters)
    }

    /// Reads a results file.
    pub fn load(path: &Path) -> Result<Report, ReportFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportFileError::Format {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the file atomically (temporary file, then rename), so an
    /// interrupted run never leaves a truncated file behind.
    pub fn save(&self, path: &Path) -> Result<(), ReportFileError> {
        let io = |source| ReportFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text =
            serde_json::to_string_pretty(self).map_err(|source| ReportFileError::Format {
                path: path.to_path_buf(),
                source,
            })?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The broker label: `broker_name`, or the file name without `.json`.
    pub fn label(&self, path: &Path) -> String {
        if !self.benchmark_settings.broker_name.is_empty() {
            return self.benchmark_settings.broker_name.clone();
        }
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn sample_report() -> Report {
        let mut r = Report::new(BenchmarkSettings {
            broker_name: "activemq".into(),
            url: "stomp://127.0.0.1:61613".into(),
            warm_up_count: 3,
            sample_count: Some(2),
            sample_interval_ms: Some(1000),
            suite: Some("quick".into()),
            client: Some("ferromq-bench 0.1.0".into()),
        });
        r.scenarios.push(ScenarioReport {
            parameters: Scenario::baseline("throughput").parameters(),
            timestamp: vec![1, 2],
            producer_tp: vec![10, 11],
            consumer_tp: vec![9, 12],
            max_latency: vec![100, 200],
            errors: vec![0, 1],
            name: Some("x".into()),
            e2e_p50: vec![50, 60],
            e2e_p99: vec![90, 95],
            receipt_p50: vec![],
            latency_hdr: None,
            drained: Some(3),
            errors_outside_samples: None,
            last_error: None,
            failover: None,
            order: None,
            stamped: None,
        });
        r
    }

    #[test]
    fn round_trip_keeps_original_key_names() {
        let r = sample_report();
        let text = serde_json::to_string(&r).unwrap();
        for key in [
            "\"producer tp\"",
            "\"consumer tp\"",
            "\"max latency\"",
            "\"errors\"",
            "\"warm_up_count\"",
        ] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
        assert!(
            !text.contains("receipt latency p50"),
            "empty extras are omitted"
        );
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn loads_a_file_in_the_original_format() {
        let original = r#"{"benchmark_settings":{"broker_name":"activemq-5.8.0-openwire","url":"tcp://127.0.0.1:61616","warm_up_count":3},
          "scenarios":[{"parameters":{"group":"latency","mode":"queue","persistent":false,"message_size":10,"tx_size":0,
          "destination_count":1,"producers":1,"consumers":1,"producer_rate":100},
          "timestamp":[1],"producer tp":[100],"consumer tp":[100],"max latency":[120000],"errors":[0]}]}"#;
        let r: Report = serde_json::from_str(original).unwrap();
        assert_eq!(r.scenarios[0].parameters["producer_rate"], 100);
        assert!(r.scenarios[0].latency_hdr.is_none());
    }

    #[test]
    fn save_load_and_resume_check() {
        let dir = std::env::temp_dir().join(format!("ferromq-bench-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.json");
        let r = sample_report();
        r.save(&path).unwrap();
        let back = Report::load(&path).unwrap();
        assert_eq!(back, r);
        assert!(back.has(&Scenario::baseline("throughput").parameters()));
        let mut other = Scenario::baseline("throughput");
        other.persistent = true;
        assert!(!back.has(&other.parameters()));
        assert_eq!(back.label(&path), "activemq");
        std::fs::write(&path, "{not json").unwrap();
        let err = Report::load(&path).unwrap_err().to_string();
        assert!(err.contains("run.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
