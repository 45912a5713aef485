//! The live progress line on stderr: scenario k of n, sample, live msg/s,
//! elapsed time and ETA. On a terminal it redraws one line; otherwise (CI
//! logs) it prints one line per finished scenario.

use crate::runner::SampleTick;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a whole run.
pub struct Progress {
    total: usize,
    current: usize,
    name: String,
    started: Instant,
    /// Estimated time of the scenarios not yet started.
    remaining_estimate: Duration,
    scenario_started: Instant,
    scenario_estimate: Duration,
    tty: bool,
}

impl Progress {
    /// A run of `total` scenarios estimated to take `estimate`.
    pub fn new(total: usize, estimate: Duration) -> Progress {
        Progress {
            total,
            current: 0,
            name: String::new(),
            started: Instant::now(),
            remaining_estimate: estimate,
            scenario_started: Instant::now(),
            scenario_estimate: Duration::ZERO,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Scenario `name` (estimated at `estimate`) starts.
    pub fn begin(&mut self, name: &str, estimate: Duration) {
        self.current += 1;
        self.name = name.to_string();
        self.scenario_started = Instant::now();
        self.scenario_estimate = estimate;
        self.remaining_estimate = self.remaining_estimate.saturating_sub(estimate);
        if self.tty {
            self.draw(&format!("connecting…  {}", self.times()));
        }
    }

    /// One interval finished.
    pub fn tick(&mut self, t: SampleTick) {
        if !self.tty {
            return;
        }
        let phase = if t.sample == 0 {
            "warm-up".to_string()
        } else {
            format!("sample {}/{}", t.sample, t.of)
        };
        let errors = if t.counts.errors > 0 {
            format!("  errors {}", t.counts.errors)
        } else {
            String::new()
        };
        self.draw(&format!(
            "{phase}  prod {}/s  cons {}/s{errors}  {}",
            rate(t.counts.produced as f64),
            rate(t.counts.consumed as f64),
            self.times()
        ));
    }

    /// The current scenario finished with this one-line summary.
    pub fn end(&mut self, summary: &str) {
        let line = format!(
            "[{}/{}] {}  {summary}  ({})",
            self.current,
            self.total,
            self.name,
            self.times()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{line}");
    }

    /// A scenario skipped because the results file already has it.
    pub fn skipped(&mut self, name: &str, estimate: Duration) {
        self.current += 1;
        self.remaining_estimate = self.remaining_estimate.saturating_sub(estimate);
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{}/{}] {name}  already in the results file, skipped",
            self.current,
            self.total
        );
    }

    fn times(&self) -> String {
        let left_here = self
            .scenario_estimate
            .saturating_sub(self.scenario_started.elapsed());
        format!(
            "elapsed {}  ETA {}",
            clock_text(self.started.elapsed()),
            clock_text(left_here + self.remaining_estimate)
        )
    }

    fn draw(&self, detail: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{}/{}] {}  {detail}",
            self.current, self.total, self.name
        );
        let _ = err.flush();
    }
}

/// `1h02m`, `3m07s`, `12s`.
pub fn clock_text(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `950`, `12.3k`, `1.05M`.
pub fn rate(v: f64) -> String {
    // Thresholds sit where rounding would carry into the next unit, so 9,999.5
    // prints as 10.0k rather than 10.00k.
    if v >= 999_500.0 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 9_995.0 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 999.5 {
        format!("{:.2}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A nanosecond latency as `850µs`, `12.3ms`, `1.20s`.
pub fn latency(ns: f64) -> String {
    if ns <= 0.0 {
        "-".into()
    } else if ns >= 1e9 {
        format!("{:.2}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.1}ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.0}µs", ns / 1e3)
    } else {
        format!("{ns:.0}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(clock_text(Duration::from_secs(3725)), "1h02m");
        assert_eq!(clock_text(Duration::from_secs(187)), "3m07s");
        assert_eq!(clock_text(Duration::from_secs(12)), "12s");
        assert_eq!(rate(950.0), "950");
        assert_eq!(rate(1234.0), "1.23k");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(1_050_000.0), "1.05M");
        assert_eq!(rate(9_999.5), "10.0k");
        assert_eq!(rate(999.6), "1.00k");
        assert_eq!(latency(850_000.0), "850µs");
        assert_eq!(latency(12_300_000.0), "12.3ms");
        assert_eq!(latency(0.0), "-");
    }
}
