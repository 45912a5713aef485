//! `ferromq`: the broker daemon's command line.
//!
//! `ferromq` runs with embedded defaults (STOMP on 127.0.0.1:61613);
//! `ferromq --config FILE` reads TOML; flags override the file;
//! `ferromq check-config FILE` validates a file and exits.

use clap::{Parser, Subcommand};
use ferromq_broker::Broker;
use ferromq_config::{Config, LogFormat};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "ferromq",
    version,
    about = "A fast, dependable STOMP message broker"
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
        .or_else(|_| EnvFilter::try_new(&config.log.level))
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
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
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
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
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
    wait_for_signal().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    info!("shutting down");
    broker.shutdown().await;
    info!("stopped");
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
