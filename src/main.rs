//! The `sipwatch` binary: parses the command line and hands over to the part that does the work.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

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
    #[command(after_long_help = RUN_HELP)]
    Run {
        /// The daemon config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// The node agent: watch the memory and other gauges of this host's services.
    #[command(after_long_help = AGENT_HELP)]
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
    /// The restart watchdog: `plan` shows what it would do; `now`, `pause`, `resume` command it.
    Restart {
        #[command(subcommand)]
        command: sipwatch::agent::watchdog::commands::RestartCommand,
    },
    /// Silence alerts in the running daemon for a while (add, list, expire).
    Silence {
        #[command(subcommand)]
        command: sipwatch::alert_cmd::SilenceCommand,
    },
    /// Alert tools: send a test notification through the real outbox, acknowledge a page.
    Alert {
        #[command(subcommand)]
        command: sipwatch::alert_cmd::AlertCommand,
    },
    /// Validate a daemon or agent config file and explain every error with its line.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write the man pages or a shell completion script (from these very definitions).
    Generate {
        #[command(subcommand)]
        what: sipwatch::manual::GenerateCommand,
    },
}

/// `sipwatch run --help`: what a service manager and an operator need beyond the flags.
const RUN_HELP: &str = "\
Signals:
  SIGHUP   reload the config; unchanged targets keep their state (systemctl reload sipwatch)
  SIGTERM, SIGINT
           stop cleanly: in-flight probes finish, the store is flushed

Environment:
  SIPWATCH_LOG   log filter (tracing EnvFilter syntax), e.g. info, debug,
                 sipwatch::daemon=debug; default info. Logs go to stderr, without
                 colours unless stderr is a terminal.

Files:
  /etc/sipwatch/sipwatch.toml   the config (check it with sipwatch check-config)
  /var/lib/sipwatch/state.db    the state store ([store] path)
  [http] listen                 status page, /api/v2/*.json, /metrics, /healthz;
                                default 127.0.0.1:8479

Exit codes:
  0  stopped by SIGTERM or SIGINT
  1  failed while running (e.g. the listen address is taken, the store cannot open)
  2  the config is wrong (the error names file:line:column and the fix), or bad arguments";

/// `sipwatch agent --help`.
const AGENT_HELP: &str = "\
Signals:
  SIGTERM, SIGINT
           stop cleanly: gauge histories are saved in the state directory

Environment:
  SIPWATCH_LOG   log filter (tracing EnvFilter syntax), e.g. info, debug,
                 sipwatch::agent=debug; default info. Logs go to stderr, without
                 colours unless stderr is a terminal.

Files:
  /etc/sipwatch/agent.toml      the config (check it with sipwatch check-config)
  /var/lib/sipwatch/agent/      gauge histories kept across restarts ([agent] state_dir)
  [agent] listen                /metrics, /healthz, /api/v1/services; default 127.0.0.1:9198
  /proc/PID/smaps_rollup, /proc/PID/fd
                                read for every watched process (needs CAP_SYS_PTRACE and
                                CAP_DAC_READ_SEARCH for other users' processes)

Exit codes:
  0  stopped by SIGTERM or SIGINT
  1  failed while running (e.g. the listen address is taken)
  2  the config is wrong (the error names file:line:column and the fix), or bad arguments";

#[derive(Subcommand)]
enum LeakCommand {
    /// Replay a CSV (timestamp,value) through the agent's online leak detector.
    /// Exit 0: no leak, 1: leak, 2: bad input or bad arguments.
    Analyze(sipwatch::leak_cmd::AnalyzeArgs),
}

/// Exit code for bad arguments: UNKNOWN in the Nagios convention the probe follows.
const EXIT_UNKNOWN: i32 = 3;
/// Exit code of the long-running commands and check-config when the config is wrong.
const EXIT_CONFIG: i32 = 2;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage_error(&e)),
    };
    let default_level = match cli.command {
        Command::Probe(_)
        | Command::CheckConfig { .. }
        | Command::Leak { .. }
        | Command::Generate { .. }
        | Command::Restart { .. }
        | Command::Silence { .. }
        | Command::Alert { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIPWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The daemon's probes, their state and the store live on one thread: a probe's answer, its
    // report and its state change are handed along without waking another thread (work moved
    // between runtime threads was a quarter of the CPU per probe). Its HTTP server has a runtime
    // of its own (see daemon::run), so page loads do not delay probes.
    let mut builder = if matches!(cli.command, Command::Run { .. }) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipwatch: cannot start the async runtime: {e}");
            std::process::exit(EXIT_UNKNOWN);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Probe(args) => {
                let json = args.json;
                match sipwatch::probe_cmd::run(*args).await {
                    Ok(code) => code,
                    Err(e) => {
                        // Nagios reads stdout; a person running it by hand reads stderr too. With
                        // --json stdout stays JSON lines only (nothing: no probe ran).
                        if !json {
                            println!("UNKNOWN: {}", one_line(&format!("{e:#}")));
                        }
                        eprintln!("UNKNOWN: {e:#}");
                        EXIT_UNKNOWN
                    }
                }
            }
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
            Command::Restart { command } => sipwatch::agent::watchdog::commands::run(command).await,
            Command::CheckConfig { file } => check_config(&file),
            Command::Generate { what } => match sipwatch::manual::run(Cli::command(), &what) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("sipwatch generate: {e:#}");
                    1
                }
            },
            Command::Silence { command } => sipwatch::alert_cmd::silence(command).await,
            Command::Alert { command } => sipwatch::alert_cmd::alert(command).await,
        }
    });
    std::process::exit(code);
}

/// Prints a command-line error and returns its exit code: 0 for --help/--version; for `probe`
/// UNKNOWN (3) with an `UNKNOWN: ...` line on stdout, where Nagios reads (not with `--json`, whose
/// stdout is JSON lines only); otherwise 2, the code every other command's help gives for bad input.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    let subcommand = std::env::args().nth(1).unwrap_or_default();
    if subcommand == "probe" {
        let text = e.render().to_string();
        let first = text
            .lines()
            .map(|l| l.trim_start_matches("error: ").trim())
            .find(|l| !l.is_empty())
            .unwrap_or("bad arguments");
        if !std::env::args().any(|a| a == "--json") {
            println!("UNKNOWN: {first} (see sipwatch probe --help)");
        }
        let _ = e.print();
        return EXIT_UNKNOWN;
    }
    let _ = e.print();
    EXIT_CONFIG
}

/// An error as one line (Nagios shows only the first line of plugin output in its overviews).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
                if let Some(note) = sipwatch::alert_cmd::outbox_notice(&c) {
                    eprintln!("{note}");
                }
                0
            }
            Err(e) => {
                eprintln!("{e}");
                EXIT_CONFIG
            }
        }
    }
}
