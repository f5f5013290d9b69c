//! The `sipwatch` binary: parses the command line and hands over to the part that does the work.

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
    Probe(sipwatch::probe_cmd::ProbeArgs),
}

/// Exit code for bad arguments: UNKNOWN in the Nagios convention the probe follows.
const EXIT_UNKNOWN: i32 = 3;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIPWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
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
            Command::Probe(args) => match sipwatch::probe_cmd::run(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("UNKNOWN: {e:#}");
                    EXIT_UNKNOWN
                }
            },
        }
    });
    std::process::exit(code);
}
