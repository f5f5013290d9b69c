//! The `sipwatch` binary: parses the command line and hands over to the part that does the work.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sipwatch",
    version,
    about = "SIP health prober and memory-leak watchdog"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Probe SIP nodes once (OPTIONS or REGISTER); Nagios exit codes.
    Probe(Box<sipwatch::probe_cmd::ProbeArgs>),
    /// The prober daemon: probe every target, keep state, serve the status page and metrics.
    Run {
        /// The daemon config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// The node agent: watch the memory and other gauges of this host's services.
    Agent {
        /// The agent config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Leak analysis of a recorded series.
    Leak {
        #[command(subcommand)]
        command: LeakCommand,
    },
    /// Validate a daemon or agent config file and explain every error with its line.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum LeakCommand {
    /// Replay a CSV (timestamp,value) through the agent's online leak detector.
    /// Exit 0: no leak, 1: leak, 2: bad input.
    Analyze(sipwatch::leak_cmd::AnalyzeArgs),
}

/// Exit code for bad arguments: UNKNOWN in the Nagios convention the probe follows.
const EXIT_UNKNOWN: i32 = 3;
/// Exit code of the long-running commands and check-config when the config is wrong.
const EXIT_CONFIG: i32 = 2;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => EXIT_UNKNOWN,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let default_level = match cli.command {
        Command::Probe(_) | Command::CheckConfig { .. } | Command::Leak { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIPWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipwatch: cannot start the async runtime: {e}");
            std::process::exit(EXIT_UNKNOWN);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Probe(args) => match sipwatch::probe_cmd::run(*args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("UNKNOWN: {e:#}");
                    EXIT_UNKNOWN
                }
            },
            Command::Run { config } => {
                if let Err(e) = sipwatch::daemon::config::DaemonConfig::load(&config) {
                    eprintln!("{e}");
                    return EXIT_CONFIG;
                }
                let shutdown = shutdown_on_signal();
                match sipwatch::daemon::run::run(&config, shutdown).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("sipwatch run: {e:#}");
                        1
                    }
                }
            }
            Command::Agent { config } => {
                let config = match sipwatch::agent::check_config(&config) {
                    Ok(_) => config,
                    Err(e) => {
                        eprintln!("{e}");
                        return EXIT_CONFIG;
                    }
                };
                let shutdown = shutdown_on_signal();
                match sipwatch::agent::run(&config, shutdown).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("sipwatch agent: {e:#}");
                        1
                    }
                }
            }
            Command::Leak {
                command: LeakCommand::Analyze(args),
            } => match sipwatch::leak_cmd::run_analyze(&args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("sipwatch leak analyze: {e:#}");
                    EXIT_CONFIG
                }
            },
            Command::CheckConfig { file } => check_config(&file),
        }
    });
    std::process::exit(code);
}

/// A shutdown signal that turns true on SIGTERM or SIGINT.
fn shutdown_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = tx.send(true);
    });
    rx
}

/// `sipwatch check-config FILE`: an agent config has `[[service]]`, a daemon config `[[target]]`.
/// The store's and the alert outbox's folders must take new files (`run` would fail or lose
/// state otherwise).
fn daemon_folders_writable(c: &sipwatch::daemon::config::DaemonConfig) -> Result<(), String> {
    use sipwatch::daemon::store_watch::check_writable;
    if !c.store_path.as_os_str().is_empty() {
        check_writable(&c.store_path, "[store] path")?;
    }
    if !c.alerting.receiver.is_empty() {
        let outbox = c.alerting.outbox.clone().unwrap_or_else(|| {
            c.store_path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("outbox.db")
        });
        check_writable(&outbox, "the alert outbox")?;
    }
    Ok(())
}

fn check_config(file: &std::path::Path) -> i32 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "config error in {}: cannot read the file: {e}",
                file.display()
            );
            return EXIT_CONFIG;
        }
    };
    let is_agent = text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("[[service]]") || l.starts_with("[agent]")
    });
    if is_agent {
        match sipwatch::agent::check_config(file) {
            Ok(c) => {
                println!(
                    "{}: agent config OK ({} services)",
                    file.display(),
                    c.services.len()
                );
                0
            }
            Err(e) => {
                eprintln!("{e}");
                EXIT_CONFIG
            }
        }
    } else {
        match sipwatch::daemon::config::DaemonConfig::load(file) {
            Ok(c) => {
                if let Err(e) = daemon_folders_writable(&c) {
                    eprintln!("config error in {}: {e}", file.display());
                    return EXIT_CONFIG;
                }
                println!(
                    "{}: daemon config OK ({} targets, {} groups)",
                    file.display(),
                    c.targets.len(),
                    c.groups.len()
                );
                0
            }
            Err(e) => {
                eprintln!("{e}");
                EXIT_CONFIG
            }
        }
    }
}
