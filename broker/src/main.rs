//! `ferromq`: the broker daemon's command line.
//!
//! `ferromq` runs with embedded defaults (STOMP on 127.0.0.1:61613);
//! `ferromq --config FILE` reads TOML; flags override the file;
//! `ferromq check-config FILE` validates a file and exits;
//! `ferromq passwd` hashes a password read from stdin for `password_hash`;
//! `ferromq admin ...` manages a running broker through its admin API;
//! `ferromq cluster status|add|promote|remove` shows and changes a
//! cluster's membership through a node's admin API.
//! SIGHUP re-reads the config file and applies the TLS certificates, users
//! and ACL; SIGTERM/SIGINT shut down gracefully.

use clap::{Parser, Subcommand};
use ferromq_broker::Broker;
use ferromq_config::{Config, LogFormat};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: every message allocates a few small
/// objects on one thread and frees them on another, which glibc's arenas
/// handle poorly (malloc/free were ~18% of broker CPU in a 10x10 profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "ferromq",
    version,
    about = "A fast, dependable STOMP message broker",
    // A flag given twice takes the last value, so wrappers (and the test
    // harness) can append overrides to a default command line.
    args_override_self = true
)]
struct Cli {
    /// TOML configuration file (defaults are embedded; see --print-default-config).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// STOMP listen address (overrides stomp.listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    stomp: Option<String>,
    /// STOMP+TLS listen address (overrides stomp.tls_listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    stomp_tls: Option<String>,
    /// STOMP over WebSocket (ws://) listen address (overrides websocket.listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    websocket: Option<String>,
    /// STOMP over WebSocket+TLS (wss://) listen address (overrides websocket.tls_listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    websocket_tls: Option<String>,
    /// Native protocol listen address (overrides native.listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    native: Option<String>,
    /// Native+TLS listen address (overrides native.tls_listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    native_tls: Option<String>,
    /// Admin HTTP listen address (overrides admin.listen; "" disables).
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Data directory (overrides broker.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the default configuration file, with comments, and exit.
    #[arg(long)]
    print_default_config: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate a configuration file; exits non-zero with `file:key: reason` on error.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Read a password from stdin (one line) and print its Argon2id hash
    /// for `password_hash` in `[[auth.users]]` or the users file.
    Passwd,
    /// Manage a running broker through its admin API (exit 0 ok, 1 failed, 2 usage).
    Admin(ferromq_broker::admin_client::AdminArgs),
    /// A cluster's state and membership through a node's admin API (exit 0 ok, 1 failed, 2 usage).
    Cluster(ferromq_broker::cluster_client::ClusterArgs),
}

fn non_empty(v: String) -> Option<String> {
    (!v.trim().is_empty()).then_some(v)
}

/// Loads the file (or the defaults) and applies command-line overrides,
/// validating the result as a whole.
fn load(cli: &Cli) -> Result<Config, ferromq_config::ConfigError> {
    let (mut config, origin) = match &cli.config {
        Some(path) => (Config::load(path)?, path.clone()),
        None => (Config::default(), PathBuf::from("<defaults>")),
    };
    if let Some(v) = &cli.stomp {
        config.stomp.listen = non_empty(v.clone());
    }
    if let Some(v) = &cli.stomp_tls {
        config.stomp.tls_listen = non_empty(v.clone());
    }
    if let Some(v) = &cli.websocket {
        config.websocket.listen = non_empty(v.clone());
    }
    if let Some(v) = &cli.websocket_tls {
        config.websocket.tls_listen = non_empty(v.clone());
    }
    if let Some(v) = &cli.native {
        config.native.listen = non_empty(v.clone());
    }
    if let Some(v) = &cli.native_tls {
        config.native.tls_listen = non_empty(v.clone());
    }
    if let Some(v) = &cli.admin {
        config.admin.listen = non_empty(v.clone());
    }
    if let Some(dir) = &cli.data_dir {
        config.broker.data_dir = dir.clone();
    }
    let flags = Path::new("<command line>");
    config.validate(if cli.config.is_some() { &origin } else { flags })?;
    Ok(config)
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        // sled reports a damaged file by logging the file's raw contents at
        // ERROR; the store already says what is wrong in one line.
        .or_else(|_| EnvFilter::try_new(format!("{},sled=off", config.log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", ferromq_config::EXAMPLE_CONFIG);
        return ExitCode::SUCCESS;
    }
    if let Some(Cmd::CheckConfig { file }) = &cli.command {
        return match Config::load(file) {
            Ok(config) => {
                for warning in config.warnings(file) {
                    eprintln!("warning: {warning}");
                }
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Cmd::Passwd) = &cli.command {
        return passwd();
    }
    if let Some(Cmd::Admin(args)) = &cli.command {
        return match ferromq_broker::admin_client::run(args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("ferromq admin: {}", failure.0);
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Cmd::Cluster(args)) = &cli.command {
        return match ferromq_broker::cluster_client::run(args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("ferromq cluster: {}", failure.0);
                ExitCode::FAILURE
            }
        };
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferromq: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let origin = cli.config.as_deref().unwrap_or(Path::new("<defaults>"));
    for warning in config.warnings(origin) {
        warn!("configuration: {warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(&cli, config))
}

/// `ferromq passwd`: the password is the first line of stdin (without its
/// line ending), so it never appears in the process list or shell history.
fn passwd() -> ExitCode {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("Password (visible as you type; pipe it in to avoid that): ");
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("ferromq passwd: cannot read the password from stdin: {e}");
        return ExitCode::from(2);
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("ferromq passwd: empty password (give it as the first line of stdin)");
        return ExitCode::from(2);
    }
    match ferromq_broker::auth::password::hash(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferromq passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli, config: Config) -> ExitCode {
    let mut signals = match Signals::register() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let broker = match Broker::start(&config).await {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            eprintln!("ferromq: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Tell systemd (Type=notify) we are ready: every listener is bound.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    info!(version = env!("CARGO_PKG_VERSION"), "ferromq started");
    let restart = loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Reload => reload(cli, &broker),
                Signal::Stop => break false,
            },
            _ = broker.restart_requested() => break true,
        }
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    info!("shutting down");
    broker.shutdown().await;
    if restart {
        return restart_self();
    }
    info!("stopped");
    ExitCode::SUCCESS
}

/// Cluster mode: a leader that lost its leadership replaces itself with a
/// fresh copy of the daemon (same binary, arguments and pid, so a
/// supervisor or a test keeps tracking it), which rejoins as a follower
/// with its router rebuilt from the store. Every file is closed on exec
/// (Rust opens them close-on-exec), which releases the stores' locks.
fn restart_self() -> ExitCode {
    use std::os::unix::process::CommandExt;
    info!("restarting to rejoin the cluster as a follower");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            error!(error = %e, "cannot find this executable to restart; exiting");
            return ExitCode::from(75);
        }
    };
    let e = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    error!(error = %e, "cannot restart; exiting");
    ExitCode::from(75)
}

/// What a signal asks for.
enum Signal {
    /// SIGHUP.
    Reload,
    /// SIGTERM or SIGINT.
    Stop,
}

/// SIGHUP: re-reads the config file (with the command-line overrides) and
/// applies what can change while running. A bad file changes nothing.
fn reload(cli: &Cli, broker: &Broker) {
    match load(cli) {
        Ok(config) => match broker.reload(&config) {
            Ok(()) => info!("configuration reloaded"),
            Err(e) => error!("{e}"),
        },
        Err(e) => error!("configuration not reloaded: {e}"),
    }
}

/// The signals the daemon handles, registered before the listeners open:
/// SIGHUP's default action would kill the process.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the next SIGHUP, SIGTERM or SIGINT.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
        }
    }
}
