//! Command-line syntax (clap). Option names follow the original where it had
//! one (`--sample-count`, `--warm-up-count`, `--max-clients`, `--skip`, …), with
//! the short forms the issue asks for as aliases.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Reproduce the JMS Benchmark against any STOMP broker and compare runs.
#[derive(Debug, Parser)]
#[command(name = "ferromq-bench", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a suite (or one ad-hoc scenario) and write a results file.
    Run(Box<RunArgs>),
    /// Render results files into one self-contained HTML report.
    Report(ReportArgs),
    /// Print the scenarios a suite would run.
    List(ListArgs),
}

/// Built-in scenario sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The JMS Benchmark's 155 scenarios (what the Amazon MQ blog ran).
    JmsBenchmark,
    /// The older stomp-benchmark's built-in scenarios.
    StompBenchmark,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Point-to-point.
    Queue,
    /// Publish/subscribe.
    Topic,
}

/// `--ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckArg {
    /// `ack:auto`.
    Auto,
    /// `ack:client`.
    Client,
    /// `ack:client-individual`.
    ClientIndividual,
}

/// Which scenarios.
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Scenario suite.
    #[arg(long, value_enum, default_value = "jms-benchmark")]
    pub suite: Suite,
    /// A handful of representative scenarios, 1 warm-up + 5 samples each (< 2 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Groups to leave out (comma list): throughput, slow_consumer, latency, queue_staging.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Only scenarios whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Cap on producers + consumers in the throughput matrix.
    #[arg(long, default_value_t = 200)]
    pub max_clients: u32,
    /// Destination counts are powers of ten below this.
    #[arg(long, default_value_t = 100)]
    pub max_destinations: u32,
    /// Use durable subscriptions in topic scenarios (the original never did).
    #[arg(long)]
    pub durable: bool,
    /// Ad hoc: queue or topic (any ad-hoc flag runs one custom scenario).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Ad hoc: persistent messages, a RECEIPT per SEND.
    #[arg(long)]
    pub persistent: bool,
    /// Ad hoc: persistent without waiting for receipts.
    #[arg(long)]
    pub async_send: bool,
    /// Ad hoc: producers.
    #[arg(long)]
    pub producers: Option<u32>,
    /// Ad hoc: consumers.
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Ad hoc: destinations.
    #[arg(long)]
    pub destinations: Option<u32>,
    /// Ad hoc: body size in bytes.
    #[arg(long)]
    pub size: Option<usize>,
    /// Ad hoc: messages per transaction.
    #[arg(long)]
    pub tx_size: Option<u32>,
    /// Ad hoc: total producer rate, msg/s (latency measured from the intended send time).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Acknowledgement mode (overrides the suite's choice everywhere).
    #[arg(long, value_enum)]
    pub ack: Option<AckArg>,
}

/// `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Scenario selection.
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Results file (JSON); an existing file is resumed.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Broker URL: stomp://h:p, stomp+ssl://h:p, ferromq://h:p,
    /// ferromq+tls://h:p, or a failover list failover:(url,url,...) (e.g. the
    /// members of a ferromq cluster: a client refused with "not the leader"
    /// goes to the leader it names, else to the next URL; receipt gaps are
    /// reported).
    #[arg(
        long,
        default_value = "stomp://127.0.0.1:61613",
        env = "FERROMQ_BENCH_URL"
    )]
    pub url: String,
    /// Label for the broker in reports (default: file name).
    #[arg(long)]
    pub broker_name: Option<String>,
    /// STOMP login.
    #[arg(long, alias = "user-name")]
    pub login: Option<String>,
    /// STOMP passcode.
    #[arg(long, alias = "password", env = "FERROMQ_BENCH_PASSCODE")]
    pub passcode: Option<String>,
    /// STOMP `host` header (RabbitMQ virtual host).
    #[arg(long, default_value = "/")]
    pub vhost: String,
    /// Extra trusted CA certificate (PEM); repeatable.
    #[arg(long)]
    pub ca: Vec<PathBuf>,
    /// Accept any TLS server certificate (self-signed test brokers).
    #[arg(long)]
    pub insecure: bool,
    /// Samples per scenario (default 15, quick 5).
    #[arg(long, alias = "samples")]
    pub sample_count: Option<u32>,
    /// Sample length in ms.
    #[arg(long, default_value_t = 1000)]
    pub sample_interval: u64,
    /// Warm-up periods discarded (default 3, quick 1).
    #[arg(long, alias = "warmup")]
    pub warm_up_count: Option<u32>,
    /// A drain ends after this many ms without a message (default 3000, quick 1000).
    #[arg(long)]
    pub drain_timeout: Option<u64>,
    /// Leave what the scenario's producers sent in the queues (no drain
    /// after the samples): filling a deep queue over several runs.
    #[arg(long)]
    pub no_drain: bool,
    /// Queue name prefix.
    #[arg(long, default_value = "/queue/")]
    pub queue_prefix: String,
    /// Topic name prefix.
    #[arg(long, default_value = "/topic/")]
    pub topic_prefix: String,
    /// Consumer prefetch (activemq.prefetchSize / prefetch-count).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u32,
    /// Print every client error as it happens.
    #[arg(long)]
    pub display_errors: bool,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stamp every message with its producer's id and a sequence number,
    /// and append what each producer sent and had receipted to this
    /// manifest (JSON lines; several fill runs share one file).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Check, per producer, the order and completeness of what this run
    /// receives against a manifest: lost, duplicated, out of order, in the
    /// results file's `order`. Needs one consumer per destination.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Carry the order check's state across runs: read from this file if
    /// it exists, written after every scenario (a drain in several runs).
    /// Turns the check on without `--expect` (totals only).
    #[arg(long, value_name = "FILE")]
    pub order_state: Option<PathBuf>,
}

/// `report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Results files to compare (ours or the original JMS Benchmark's).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// HTML file to write.
    #[arg(short = 'o', long = "out", default_value = "report.html")]
    pub out: PathBuf,
    /// Page title.
    #[arg(long, default_value = "ferromq-bench report")]
    pub title: String,
}

/// `list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Scenario selection.
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Also print the throughput combinations the skip rules remove, and why.
    #[arg(long)]
    pub show_skips: bool,
}
