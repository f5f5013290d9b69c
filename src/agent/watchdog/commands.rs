//! `sipwatch restart plan|now|pause|resume`: the watchdog for people.
//!
//! `plan` evaluates each service's policy from the config and the state the agent keeps (pause,
//! restarts counted by the cap, a deferred restart), at now or at `--at TIME`: how a person checks
//! a schedule and its windows before trusting them. `now`, `pause` and `resume` drop a command
//! file in the service's state directory (whoever may write there may command the agent) and
//! wait until the running agent takes it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::audit::{self, CommandFile};
use super::policy::RestartPolicy;

const DEFAULT_CONFIG: &str = "/etc/sipwatch/agent.toml";

/// `sipwatch restart ...`.
#[derive(clap::Subcommand)]
pub enum RestartCommand {
    /// For each service: the next scheduled restart, whether a window is open, what the watchdog
    /// would do now and why.
    Plan {
        /// The agent config file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Evaluate at this instant instead of now (RFC 3339, e.g. 2026-03-29T02:30:00+02:00).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// One JSON object: {"services": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Ask the agent to restart SERVICE now (through the guards unless --force, which is audited).
    Now {
        service: String,
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Skip the guards (pause, cap, cooldown, windows); recorded with who forced it.
        #[arg(long)]
        force: bool,
    },
    /// Pause SERVICE's automatic restarts until resumed.
    Pause {
        service: String,
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Resume SERVICE's automatic restarts (also after a failed verification).
    Resume {
        service: String,
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Serialize)]
struct ServicePlan {
    service: String,
    next_scheduled: Option<String>,
    window_open: bool,
    would_restart_now: bool,
    why: String,
    planned: Option<serde_json::Value>,
    paused: bool,
    dry_run: bool,
    restarts_in_cap_span: usize,
}

fn parse_at(text: &str) -> Result<f64, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|d| d.timestamp_millis() as f64 / 1000.0)
        .map_err(|e| format!("--at {text:?}: {e}; write RFC 3339, e.g. 2026-03-29T02:30:00+01:00 or 2026-03-29T01:30:00Z"))
}

/// Runs the command; returns the exit code.
pub async fn run(command: RestartCommand) -> i32 {
    match command {
        RestartCommand::Plan { config, at, json } => plan(&config, at.as_deref(), json),
        RestartCommand::Now {
            service,
            config,
            force,
        } => send(&config, &service, "now", force).await,
        RestartCommand::Pause { service, config } => send(&config, &service, "pause", false).await,
        RestartCommand::Resume { service, config } => {
            send(&config, &service, "resume", false).await
        }
    }
}

fn plan(path: &Path, at: Option<&str>, json: bool) -> i32 {
    let config = match crate::agent::check_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let now = match at.map(parse_at).transpose() {
        Ok(t) => t.unwrap_or_else(crate::agent::clock::unix_now),
        Err(e) => {
            eprintln!("sipwatch restart plan: {e}");
            return 3;
        }
    };
    let mut services = Vec::new();
    for s in &config.services {
        let Some(rc) = &s.restart else {
            services.push(ServicePlan {
                service: s.name.clone(),
                next_scheduled: None,
                window_open: false,
                would_restart_now: false,
                why: "no_policy: the service has no [service.restart]".into(),
                planned: None,
                paused: false,
                dry_run: false,
                restarts_in_cap_span: 0,
            });
            continue;
        };
        let policy = RestartPolicy::new(rc.clone(), audit::load_state(&config.state_dir, &s.name));
        let e = policy.explain(now);
        services.push(ServicePlan {
            service: s.name.clone(),
            next_scheduled: e.next_scheduled.map(audit::rfc3339),
            window_open: e.window_open,
            would_restart_now: e.would_restart_now,
            why: e.why,
            planned: e.planned.map(|p| serde_json::json!({"at": audit::rfc3339(p.at), "trigger": p.trigger, "reason": p.reason})),
            paused: e.paused,
            dry_run: rc.dry_run,
            restarts_in_cap_span: e.restarts_in_cap_span,
        });
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "at": audit::rfc3339(now), "services": services })
        );
    } else {
        println!("restart plan at {}", audit::rfc3339(now));
        for p in &services {
            println!(
                "{}: next scheduled {}; window {}; {} now ({})",
                p.service,
                p.next_scheduled.as_deref().unwrap_or("none"),
                if p.window_open { "open" } else { "closed" },
                if p.would_restart_now {
                    "would restart"
                } else {
                    "would not restart"
                },
                p.why
            );
            if let Some(planned) = &p.planned {
                println!("  deferred restart planned: {planned}");
            }
        }
    }
    0
}

async fn send(path: &Path, service: &str, command: &str, force: bool) -> i32 {
    let config = match crate::agent::check_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match config.services.iter().find(|s| s.name == service) {
        None => {
            let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
            eprintln!(
                "sipwatch restart {command}: no service \"{service}\" in {}; its services are {}",
                path.display(),
                names.join(", ")
            );
            return 2;
        }
        Some(s) if s.restart.is_none() => {
            eprintln!("sipwatch restart {command}: service \"{service}\" has no [service.restart] in {}; add one first", path.display());
            return 2;
        }
        Some(_) => {}
    }
    let dir = audit::commands_dir(&config.state_dir, service);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("sipwatch restart {command}: cannot write to {}: {e}; run as the agent's user (or root)", dir.display());
        return 1;
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let file = dir.join(format!("{stamp}-{}.json", std::process::id()));
    let body = CommandFile {
        command: command.to_owned(),
        force,
        user: std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_default(),
    };
    let tmp = file.with_extension("tmp");
    let written = serde_json::to_vec(&body)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, &file));
    if let Err(e) = written {
        eprintln!(
            "sipwatch restart {command}: cannot write {}: {e}; run as the agent's user (or root)",
            file.display()
        );
        return 1;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while file.exists() {
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(&file);
            eprintln!("sipwatch restart {command}: the agent did not take the command within 15 s (is `sipwatch agent -c {}` running?); withdrawn", path.display());
            return 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{command}{} taken by the agent for {service}; its decisions are at GET http://{}/api/v1/restarts",
        if force { " --force" } else { "" },
        config.listen
    );
    0
}
