//! `sipwatch silence add|list|expire`, `sipwatch alert test` and `sipwatch alert ack`: the
//! on-call's controls from a shell.
//!
//! Silences live in the running daemon: these commands call its HTTP API
//! (`/api/v1/silences`), found through the daemon config (`[http] listen`, `[alerting]
//! api_token_file`) or `--url`/`--token-file`. `alert test` sends a marked test notification
//! through the real outbox: when the daemon is not running it opens the outbox itself and
//! dispatches; when the daemon holds the outbox it asks the daemon to send
//! (`POST /api/v1/notifications/test`). Either way it prints `RECEIVER: delivered` or
//! `RECEIVER: failed: WHY` per receiver and exits 1 when any failed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use sipwatch_alerting::{Outbox, OutboxError, OutboxOptions, Secret};

use crate::daemon::config::DaemonConfig;

/// Where the daemon's API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The daemon config (its [http] listen and [alerting] api_token_file are used).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/sipwatch/sipwatch.toml"
    )]
    pub config: PathBuf,
    /// The daemon's base URL, instead of the config's [http] listen.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// File with the API token, instead of the config's [alerting] api_token_file.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence alerts matching every MATCHER (label=value, label!=value, label=~regex).
    Add {
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long, e.g. 2h, 30m.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (shown on the status page).
        #[arg(long, default_value = "")]
        comment: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List silences (active, pending and recently expired).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a silence now.
    Expire {
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Send a clearly marked test notification to RECEIVERs (default: all) through the real
    /// outbox and print each outcome. Exit 0: all delivered, 1: any failed, 2: config error.
    Test {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[arg(value_name = "RECEIVER")]
        receivers: Vec<String>,
        /// How long to wait for the outcome.
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        timeout: String,
    },
    /// Acknowledge a notification (its KEY is in the notification, e.g.
    /// sipwatch/notify/default/group=frontends): escalation stops, the resolve is still sent.
    Ack {
        #[arg(value_name = "KEY")]
        key: String,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Whether another process holds the outbox at `path` (sipwatch opens it in exclusive mode).
pub fn outbox_in_use(path: &Path) -> bool {
    if !path.exists() {
        return false;
    }
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return false;
    };
    let _ = conn.busy_timeout(Duration::from_millis(200));
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => false,
        Err(e) => matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ),
    }
}

/// What `check-config` says about the outbox beyond the config itself: a file held by a
/// running process (fine if it is this daemon, a clash if it is another one).
pub fn outbox_notice(cfg: &DaemonConfig) -> Option<String> {
    if cfg.alerting.receiver.is_empty() {
        return None;
    }
    let path = cfg.outbox_path();
    outbox_in_use(&path).then(|| {
        format!(
            "note: the alert outbox {} is in use by a running sipwatch process; if that is not \
             the daemon of this config, the two would clash (the second exits at start): give \
             each daemon its own [store] path or [alerting] outbox",
            path.display()
        )
    })
}

fn base_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("http://{ip}:{}", listen.port())
}

struct Api {
    base: String,
    token: Secret,
    client: reqwest::Client,
}

impl Api {
    fn from_args(args: &ApiArgs) -> anyhow::Result<Api> {
        let cfg = if args.url.is_none() || args.token_file.is_none() {
            Some(DaemonConfig::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?)
        } else {
            None
        };
        Api::new(cfg.as_ref(), args.url.clone(), args.token_file.as_deref())
    }

    fn new(
        cfg: Option<&DaemonConfig>,
        url: Option<String>,
        token_file: Option<&Path>,
    ) -> anyhow::Result<Api> {
        let base = match (url, cfg) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Some(cfg)) => base_url(cfg.listen),
            (None, None) => bail!("give --url or a daemon config with -c"),
        };
        let token_path = match (
            token_file,
            cfg.and_then(|c| c.alerting.api_token_file.as_deref()),
        ) {
            (Some(p), _) | (None, Some(p)) => p.to_path_buf(),
            (None, None) => bail!(
                "the daemon config has no [alerting] api_token_file; add one (and restart the \
                 daemon) or give --token-file"
            ),
        };
        let token = Secret::from_file(&token_path)
            .map_err(|e| anyhow::anyhow!("API token {}: {e}", token_path.display()))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            base,
            token,
            client,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method, &url)
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the daemon at {}: {}; is `sipwatch run` running, and is [http] \
                 listen right?",
                self.base,
                e.without_url()
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("the daemon answered {status}: {}", text.trim());
        }
        serde_json::from_str(&text).with_context(|| format!("the daemon answered non-JSON: {text}"))
    }
}

fn print_silence(s: &serde_json::Value) {
    let matchers: Vec<String> = s["matchers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let ends = s["ends"].as_f64().unwrap_or(0.0);
    let until = chrono::DateTime::from_timestamp(ends as i64, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_default();
    println!(
        "{}  {:<8} until {}  {}  {}",
        s["id"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        until,
        matchers.join(","),
        s["comment"].as_str().unwrap_or("")
    );
}

/// Runs a `silence` subcommand; returns the exit code.
pub async fn silence(cmd: SilenceCommand) -> i32 {
    let result = async {
        match cmd {
            SilenceCommand::Add {
                matchers,
                duration,
                comment,
                api,
            } => {
                sipwatch_alerting::duration::parse_seconds(&duration)
                    .map_err(|e| anyhow::anyhow!("--for {duration:?}: {e}"))?;
                for m in &matchers {
                    sipwatch_alerting::matcher::Matcher::parse(m)
                        .map_err(|e| anyhow::anyhow!(e))?;
                }
                let api = Api::from_args(&api)?;
                let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
                let answer = api
                    .call(
                        reqwest::Method::POST,
                        "/api/v1/silences",
                        Some(serde_json::json!({
                            "matchers": matchers,
                            "duration": duration,
                            "comment": comment,
                            "created_by": user,
                        })),
                    )
                    .await?;
                print_silence(&answer["silence"]);
            }
            SilenceCommand::List { json, api } => {
                let api = Api::from_args(&api)?;
                let answer = api
                    .call(reqwest::Method::GET, "/api/v1/silences", None)
                    .await?;
                if json {
                    println!("{answer}");
                } else {
                    let list = answer["silences"].as_array().cloned().unwrap_or_default();
                    if list.is_empty() {
                        println!("no silences");
                    }
                    for s in &list {
                        print_silence(s);
                    }
                }
            }
            SilenceCommand::Expire { id, api } => {
                let api = Api::from_args(&api)?;
                let answer = api
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/api/v1/silences/{id}"),
                        None,
                    )
                    .await?;
                print_silence(&answer["silence"]);
            }
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sipwatch silence: {e:#}");
            1
        }
    }
}

/// Runs an `alert` subcommand; returns the exit code.
pub async fn alert(cmd: AlertCommand) -> i32 {
    let (config, receivers, timeout) = match cmd {
        AlertCommand::Test {
            config,
            receivers,
            timeout,
        } => (config, receivers, timeout),
        AlertCommand::Ack { key, by, api } => return ack(key, by, api).await,
    };
    let cfg = match DaemonConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let timeout = match sipwatch_alerting::duration::parse_duration(&timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sipwatch alert test: --timeout: {e}");
            return 2;
        }
    };
    let configured: Vec<String> = cfg
        .alerting
        .receiver
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    if configured.is_empty() {
        eprintln!(
            "sipwatch alert test: {} has no [[alerting.receiver]]; add one first",
            config.display()
        );
        return 2;
    }
    if let Some(unknown) = receivers.iter().find(|r| !configured.contains(r)) {
        eprintln!(
            "sipwatch alert test: no receiver is named {unknown:?}; the receivers are: {}",
            configured.join(", ")
        );
        return 2;
    }
    let chosen = if receivers.is_empty() {
        configured
    } else {
        receivers
    };
    let results = match test_send(&cfg, &chosen, timeout).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipwatch alert test: {e:#}");
            return 1;
        }
    };
    let mut failed = false;
    for (receiver, outcome) in &results {
        match outcome {
            Ok(()) => println!("{receiver}: delivered"),
            Err(e) => {
                failed = true;
                println!("{receiver}: failed: {e}");
            }
        }
    }
    i32::from(failed)
}

async fn test_send(
    cfg: &DaemonConfig,
    receivers: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let source = cfg
        .alerting
        .source
        .clone()
        .unwrap_or_else(sipwatch_alerting::host_name);
    let notifiers = sipwatch_alerting::build(&cfg.alerting.receiver)
        .map_err(|e| anyhow::anyhow!("[alerting]: {e}"))?;
    let path = cfg.outbox_path();
    match Outbox::open(&path, notifiers, OutboxOptions::default()) {
        Ok(outbox) => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let dispatcher = tokio::spawn(outbox.clone().run(stopped));
            let alert =
                sipwatch_alerting::test_send::test_alert(&source, cfg.alerting.url.as_deref());
            let results =
                sipwatch_alerting::test_send::send_and_wait(&outbox, &alert, receivers, timeout)
                    .await;
            let _ = stop.send(true);
            let _ = dispatcher.await;
            Ok(results?)
        }
        Err(OutboxError::Locked { .. }) => {
            // The daemon runs and holds the outbox: it sends the test for us.
            let api = Api::new(Some(cfg), None, None).context(
                "the daemon is running and holds the outbox, so the test goes through its API",
            )?;
            let answer = api
                .call(
                    reqwest::Method::POST,
                    "/api/v1/notifications/test",
                    Some(serde_json::json!({ "receivers": receivers })),
                )
                .await?;
            let list = answer["results"].as_array().cloned().unwrap_or_default();
            Ok(list
                .iter()
                .map(|r| {
                    let name = r["receiver"].as_str().unwrap_or("?").to_string();
                    let outcome = match r["outcome"].as_str() {
                        Some("delivered") => Ok(()),
                        _ => Err(r["error"].as_str().unwrap_or("failed").to_string()),
                    };
                    (name, outcome)
                })
                .collect())
        }
        Err(e) => Err(e.into()),
    }
}

async fn ack(key: String, by: Option<String>, api: ApiArgs) -> i32 {
    let result = async {
        let api = Api::from_args(&api)?;
        let by = by.unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "cli".into()));
        api.call(
            reqwest::Method::POST,
            "/api/v1/acks",
            Some(serde_json::json!({ "key": key, "by": by })),
        )
        .await
    }
    .await;
    match result {
        Ok(_) => {
            println!("acknowledged {key}");
            0
        }
        Err(e) => {
            eprintln!("sipwatch alert ack: {e:#}");
            1
        }
    }
}
