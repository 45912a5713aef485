//! The concise terminal table printed at the end of a run: one row per
//! scenario with median throughputs (the statistic the original's numbers are
//! quoted in) and HDR latency percentiles.

use super::json::{Report, ScenarioReport};
use crate::progress::{latency, rate};
use crate::stats::median;

/// Name of a scenario for display: ours, or one built from the parameters.
pub fn display_name(s: &ScenarioReport) -> String {
    if let Some(n) = &s.name {
        return n.clone();
    }
    s.parameters
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(t) => format!("{k}={t}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders the table.
pub fn render(report: &Report) -> String {
    let header = [
        "scenario", "prod/s", "cons/s", "e2e p50", "e2e p99", "e2e max", "rcpt p50", "errors",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for s in &report.scenarios {
        let hdr = s.latency_hdr.as_ref();
        let e2e = hdr.map(|h| h.e2e).unwrap_or_default();
        let receipt = hdr.map(|h| h.receipt).unwrap_or_default();
        let max = if e2e.count > 0 {
            e2e.max as f64
        } else {
            s.max_latency.iter().copied().max().unwrap_or(0) as f64
        };
        rows.push([
            display_name(s),
            rate(median(&s.producer_tp)),
            rate(median(&s.consumer_tp)),
            latency(e2e.p50 as f64),
            latency(e2e.p99 as f64),
            latency(max),
            latency(receipt.p50 as f64),
            (s.errors.iter().sum::<u64>() + s.errors_outside_samples.unwrap_or(0)).to_string(),
        ]);
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths.iter()).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&header.map(String::from));
    out.push_str(&line(&widths.map(|w| "-".repeat(w))));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::BenchmarkSettings;
    use crate::scenario::Scenario;

    #[test]
    fn table_shows_medians() {
        let mut r = Report::new(BenchmarkSettings {
            broker_name: "b".into(),
            url: "u".into(),
            warm_up_count: 0,
            sample_count: None,
            sample_interval_ms: None,
            suite: None,
            client: None,
        });
        r.scenarios.push(ScenarioReport {
            parameters: Scenario::baseline("throughput").parameters(),
            timestamp: vec![1, 2, 3],
            producer_tp: vec![1000, 50_000, 2000],
            consumer_tp: vec![10, 20, 30],
            max_latency: vec![1_000_000, 5_000_000, 2_000_000],
            errors: vec![0, 2, 1],
            name: Some("throughput/queue-np-1p1d1c-10b-tx0".into()),
            e2e_p50: vec![],
            e2e_p99: vec![],
            receipt_p50: vec![],
            latency_hdr: None,
            drained: None,
            errors_outside_samples: None,
            last_error: None,
            failover: None,
            order: None,
            stamped: None,
        });
        let t = render(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("throughput/queue-np-1p1d1c-10b-tx0"));
        assert!(lines[2].contains("2.00k"), "{t}");
        assert!(lines[2].contains("5.0ms"), "{t}");
        assert!(lines[2].trim_end().ends_with('3'), "{t}");
    }
}
