//! ferromq-bench: reproduces the JMS Benchmark (the Amazon MQ throughput
//! benchmark) over STOMP against any broker, with HDR latency measurements,
//! results in the original's JSON shape, and a self-contained HTML report.
//!
//! - [`cli`], [`commands`]: the command line and the `run`/`list`/`report` commands.
//! - [`scenario`], [`matrix`]: what a scenario is and the built-in suites.
//! - [`runner`]: running one scenario (warm-up, sampling, drain).
//! - [`client`]: producer and consumer tasks, protocol-independent.
//! - [`driver`]: the protocol boundary and the STOMP driver.
//! - [`stats`], [`clock`]: counters, histograms, the shared clock.
//! - [`report`], [`progress`]: results file, HTML, terminal output.
//! - [`url`]: broker URLs and failover lists.
//! - [`order`]: the per-producer order and completeness check of a drain.

pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod driver;
pub mod matrix;
pub mod order;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod stats;
pub mod url;
