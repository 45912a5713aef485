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
}
