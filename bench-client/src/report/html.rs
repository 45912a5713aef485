//! The self-contained HTML report: one file with the results of any number of
//! runs embedded as JSON and a small hand-written viewer (`viewer.js`,
//! `viewer.css`) that draws SVG charts — the original viewer's Summary (box
//! plots per parameter sweep) and Details (time series per scenario), plus
//! latency-percentile plots from our HDR data. Nothing is fetched: the page
//! works from `file://` and offline.

use super::json::Report;
use serde::Serialize;

const VIEWER_JS: &str = include_str!("viewer.js");
const VIEWER_CSS: &str = include_str!("viewer.css");

#[derive(Serialize)]
struct PageData<'a> {
    title: &'a str,
    runs: Vec<RunData<'a>>,
}

#[derive(Serialize)]
struct RunData<'a> {
    label: &'a str,
    settings: &'a super::json::BenchmarkSettings,
    scenarios: &'a [super::json::ScenarioReport],
}

/// Renders the page for `runs` (label, results).
pub fn render(title: &str, runs: &[(String, Report)]) -> String {
    let data = PageData {
        title,
        runs: runs
            .iter()
            .map(|(label, r)| RunData {
                label,
                settings: &r.benchmark_settings,
                scenarios: &r.scenarios,
            })
            .collect(),
    };
    // Serializing plain data cannot fail; an empty object keeps the page valid.
    let json = serde_json::to_string(&data).unwrap_or_else(|_| "{}".into());
    // `<` only occurs inside JSON strings, where `\u003c` means the same; this
    // keeps `</script>` in a broker name from ending the data block.
    let json = json.replace('<', "\\u003c");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{VIEWER_CSS}</style>\n</head>\n<body>\n\
         <header id=\"header\"></header>\n<main id=\"content\"></main>\n\
         <script id=\"bench-data\" type=\"application/json\">{json}</script>\n\
         <script>\n{VIEWER_JS}</script>\n</body>\n</html>\n",
        title = escape_html(title),
    )
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::BenchmarkSettings;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let r = Report::new(BenchmarkSettings {
            broker_name: "</script><b>x".into(),
            url: "stomp://h:1".into(),
            warm_up_count: 3,
            sample_count: None,
            sample_interval_ms: None,
            suite: None,
            client: None,
        });
        let page = render("A & B", &[("</script>".into(), r)]);
        assert!(page.contains("<title>A &amp; B</title>"));
        assert_eq!(
            page.matches("</script>").count(),
            2,
            "only the two real closing tags"
        );
        for banned in ["<script src", "<link ", "https://", "@import"] {
            assert!(
                !page.contains(banned),
                "page references the network: {banned}"
            );
        }
        assert!(page.contains("document.body.dataset.rendered = \"ok\""));
    }

    #[test]
    fn failover_gaps_are_embedded_for_the_viewer() {
        use crate::report::json::{FailoverReport, GapReport, ScenarioReport};
        let mut r = Report::new(BenchmarkSettings {
            broker_name: "cluster".into(),
            url: "failover:(stomp://a:1,stomp://b:2)".into(),
            warm_up_count: 1,
            sample_count: None,
            sample_interval_ms: None,
            suite: None,
            client: None,
        });
        r.scenarios.push(ScenarioReport {
            parameters: crate::scenario::Scenario::baseline("throughput").parameters(),
            timestamp: vec![1],
            producer_tp: vec![1],
            consumer_tp: vec![1],
            max_latency: vec![1],
            errors: vec![0],
            name: Some("x".into()),
            e2e_p50: vec![],
            e2e_p99: vec![],
            receipt_p50: vec![],
            latency_hdr: None,
            drained: None,
            errors_outside_samples: None,
            last_error: None,
            failover: Some(FailoverReport {
                receipted: 10,
                longest_gap_ms: 2345.5,
                gaps: vec![GapReport {
                    start_unix_ms: 1_700_000_000_000,
                    end_unix_ms: 1_700_000_002_345,
                    ms: 2345.5,
                    open: false,
                }],
                gap_min_ms: 500,
                gaps_not_kept: 0,
                redirects: 4,
                resent: 1,
                unconfirmed: 0,
            }),
            order: None,
            stamped: None,
        });
        let page = render("gaps", &[("cluster".into(), r)]);
        assert!(page.contains("\"longest_gap_ms\":2345.5"), "data embedded");
        assert!(page.contains("function gapTable"), "the viewer draws them");
    }
}
