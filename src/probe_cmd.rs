//! `sipwatch probe`: the one-shot prober, sipsak/Nagios-plugin style.
//!
//! Parses flags into a [`ProbeSpec`], runs it (once, or `--count N` times like ping), prints one
//! line per probe (or one JSON object per line with `--json`, or the whole exchange with
//! `--verbose`) and returns the Nagios exit code: the worst status across all URIs and rounds.
//! Probing itself lives in `sipwatch-probes`; this file only speaks to the person at the terminal.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sipwatch_probes::digest::Credentials;
use sipwatch_probes::locate::Locator;
use sipwatch_probes::message::{Method, TargetUri, Transport};
use sipwatch_probes::outcome::{Policy, ProbeOutcome, Status};
use sipwatch_probes::probe::{ProbeSpec, Prober};
use sipwatch_probes::transaction::Timers;
use sipwatch_probes::transport::{TlsContext, TlsOptions};

use sipwatch_alerting::duration::parse_duration;

/// Flags of `sipwatch probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// SIP URIs to probe: sip:host[:port][;transport=udp|tcp|tls] or sips:host[:port].
    #[arg(required = true, value_name = "URI")]
    pub uris: Vec<String>,
    /// OPTIONS ping (default) or REGISTER with digest auth.
    #[arg(long, short = 'm', default_value = "options", value_parser = parse_method)]
    pub method: Method,
    /// Force a transport (otherwise the URI's ;transport= or RFC 3263 decides).
    #[arg(long, short = 't', value_parser = parse_transport)]
    pub transport: Option<Transport>,
    /// Timer F: give up on a request after this long (e.g. 5s, 800ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Timer T1: first UDP retransmission interval (RFC 3261 default 500ms).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub t1: Duration,
    /// Timer T2: cap of the UDP retransmission interval (RFC 3261 default 4s).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub t2: Duration,
    /// Max-Forwards; 0 probes the first hop only (a 483 then proves that hop alive).
    #[arg(long, default_value_t = 70)]
    pub max_forwards: u8,
    /// Final codes that count as OK, comma-separated (makes the policy strict), e.g. 200 or 200,404.
    #[arg(long, value_delimiter = ',')]
    pub expect: Option<Vec<u16>>,
    /// WARNING when the answer takes longer than this (e.g. 200ms).
    #[arg(long, value_parser = parse_duration)]
    pub warn_rtt: Option<Duration>,
    /// CRITICAL when the answer takes longer than this.
    #[arg(long, value_parser = parse_duration)]
    pub crit_rtt: Option<Duration>,
    /// WARNING when the TLS certificate expires within this many days.
    #[arg(long, default_value_t = 14)]
    pub cert_warn_days: i64,
    /// CRITICAL when the TLS certificate expires within this many days.
    #[arg(long, default_value_t = 3)]
    pub cert_crit_days: i64,
    /// Trust this CA bundle (PEM) for TLS instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the TLS certificate (its expiry and names are still reported).
    #[arg(long)]
    pub insecure: bool,
    /// Resolve names with this DNS server (IP:PORT) instead of /etc/resolv.conf.
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// REGISTER: the user name (also the user part of the address of record).
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// REGISTER: read the password from this file (first line). Or set SIPWATCH_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// REGISTER: the domain of the address of record (default: --realm, else the URI's host).
    #[arg(long)]
    pub domain: Option<String>,
    /// REGISTER: answer digest challenges for this realm only; a challenge for another realm
    /// is auth_failed and nothing is sent.
    #[arg(long)]
    pub realm: Option<String>,
    /// REGISTER: Expires of the test binding, in seconds.
    #[arg(long, default_value_t = 60)]
    pub expires: u32,
    /// REGISTER: leave the binding in place instead of removing it afterwards.
    #[arg(long)]
    pub keep_binding: bool,
    /// One JSON object per probe, one per line.
    #[arg(long)]
    pub json: bool,
    /// Print the SIP messages exchanged.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Probe this many times, like ping, then print min/avg/max/loss.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub count: u32,
    /// Pause between rounds with --count.
    #[arg(long, short = 'i', default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
}

fn parse_method(s: &str) -> Result<Method, String> {
    match s.to_ascii_lowercase().as_str() {
        "options" => Ok(Method::Options),
        "register" => Ok(Method::Register),
        _ => Err(format!("unknown method {s:?}: use options or register")),
    }
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    Transport::parse(s).map_err(|e| e.to_string())
}

/// Runs the command; returns the exit code. Errors are bad input (exit 3, UNKNOWN).
pub async fn run(args: ProbeArgs) -> anyhow::Result<i32> {
    let timers = Timers {
        t1: args.t1,
        t2: args.t2,
        t4: Duration::from_secs(5),
        timer_f: args.timeout,
    };
    timers
        .validate()
        .map_err(|e| anyhow::anyhow!("bad timers: {e}"))?;
    let mut targets = Vec::new();
    for uri in &args.uris {
        targets.push(TargetUri::parse(uri)?);
    }
    let credentials = match args.method {
        Method::Register => {
            let user = args.username.clone().context(
                "REGISTER needs --username USER (and --password-file FILE or SIPWATCH_PASSWORD)",
            )?;
            Some(Credentials::new(
                user,
                read_password(args.password_file.as_deref())?,
            ))
        }
        Method::Options => None,
    };
    let needs_tls = args.transport == Some(Transport::Tls)
        || targets
            .iter()
            .any(|t| t.secure || t.transport == Some(Transport::Tls))
        || args.transport.is_none() && targets.iter().any(|t| t.ip().is_none());
    let tls = if needs_tls {
        Some(TlsContext::new(&TlsOptions {
            ca_file: args.ca.clone(),
            insecure: args.insecure,
        })?)
    } else {
        None
    };
    let prober = Prober::new(Locator::new(args.dns_server)?, tls);
    let policy = Policy {
        expect: args.expect.clone(),
        warn_rtt_ms: args.warn_rtt.map(|d| d.as_secs_f64() * 1e3),
        crit_rtt_ms: args.crit_rtt.map(|d| d.as_secs_f64() * 1e3),
        cert_warn_days: args.cert_warn_days,
        cert_crit_days: args.cert_crit_days,
    };
    let specs: Vec<ProbeSpec> = targets
        .into_iter()
        .map(|target| ProbeSpec {
            target,
            method: args.method,
            transport: args.transport,
            timers,
            max_forwards: args.max_forwards,
            policy: policy.clone(),
            credentials: credentials.clone(),
            domain: args.domain.clone().or_else(|| args.realm.clone()),
            realm: args.realm.clone(),
            expires: args.expires,
            keep_binding: args.keep_binding,
            record_exchange: args.verbose,
        })
        .collect();

    let mut worst = Status::Ok;
    let mut stats = RoundStats::default();
    let stdout = std::io::stdout();
    for round in 0..args.count.max(1) {
        if round > 0 {
            tokio::time::sleep(args.interval).await;
        }
        let mut set = tokio::task::JoinSet::new();
        for (i, spec) in specs.iter().cloned().enumerate() {
            let prober = prober.clone();
            set.spawn(async move { (i, prober.probe(&spec).await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            results.push(joined.context("probe task failed")?);
        }
        results.sort_by_key(|(i, _)| *i);
        let mut out = stdout.lock();
        for (_, outcomes) in results {
            for o in outcomes {
                worst = worst.worst(o.status);
                stats.add(&o);
                if args.verbose && !args.json {
                    print_exchange(&mut out, &o)?;
                }
                if args.json {
                    writeln!(out, "{}", serde_json::to_string(&o)?)?;
                } else {
                    writeln!(out, "{}", human_line(&o))?;
                }
            }
        }
        out.flush()?;
    }
    if args.count > 1 && !args.json {
        println!("{}", stats.summary());
    }
    Ok(worst.exit_code())
}

/// The password, from `--password-file` (first line) or `SIPWATCH_PASSWORD`. Never printed.
fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the password file {}: check the path and that this user may read it",
                path.display()
            )
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            anyhow::bail!("the password file {} is empty", path.display());
        }
        return Ok(line);
    }
    match std::env::var("SIPWATCH_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => anyhow::bail!(
            "REGISTER needs a password: give --password-file FILE or set SIPWATCH_PASSWORD"
        ),
    }
}

/// One line a person reads at a glance, e.g.
/// `OK: sip:127.0.0.1:5060 udp 127.0.0.1:5060 200 OK in 0.31 ms (kamailio (5.6.3))`.
pub fn human_line(o: &ProbeOutcome) -> String {
    let mut s = format!(
        "{}: {} {} {} {}",
        o.status.label(),
        o.target,
        o.method,
        o.transport,
        o.remote.as_deref().unwrap_or("-")
    );
    match (o.code, o.rtt_ms) {
        (Some(code), Some(rtt)) => s.push_str(&format!(" {code} {} in {rtt:.2} ms", o.reason)),
        _ => s.push_str(&format!(" {}: {}", o.result.as_str(), o.reason)),
    }
    if o.code.is_some() && o.result.as_str() != "ok" {
        s.push_str(&format!(" [{}]", o.result.as_str()));
    }
    if o.retransmissions > 0 {
        s.push_str(&format!(", {} retransmissions", o.retransmissions));
    }
    if let Some(days) = o.cert_days_left {
        s.push_str(&format!(", cert {days} days left"));
        if o.cert_name_matches == Some(false) {
            s.push_str(" (name mismatch)");
        }
    }
    if o.binding_confirmed == Some(true) {
        s.push_str(", binding confirmed");
    }
    if let Some(server) = &o.server {
        s.push_str(&format!(" ({server})"));
    }
    // Reason phrase and Server come from the peer: no terminal escapes reach the screen.
    sipwatch_probes::text::escape_control(&s).into_owned()
}

fn print_exchange(out: &mut impl Write, o: &ProbeOutcome) -> std::io::Result<()> {
    for m in &o.exchange {
        let arrow = if m.sent { "-->" } else { "<--" };
        writeln!(out, "{arrow} {} at +{:.3} ms", m.peer, m.at_ms)?;
        for line in m.text.trim_end().lines() {
            writeln!(out, "    {}", sipwatch_probes::text::escape_control(line))?;
        }
    }
    Ok(())
}

/// min/avg/max/loss across `--count` rounds.
#[derive(Default)]
struct RoundStats {
    sent: u32,
    answered: u32,
    rtts: Vec<f64>,
}

impl RoundStats {
    fn add(&mut self, o: &ProbeOutcome) {
        self.sent += 1;
        if let Some(rtt) = o.rtt_ms {
            self.answered += 1;
            self.rtts.push(rtt);
        }
    }

    fn summary(&self) -> String {
        let loss = if self.sent == 0 {
            0.0
        } else {
            100.0 * f64::from(self.sent - self.answered) / f64::from(self.sent)
        };
        if self.rtts.is_empty() {
            return format!("--- {} probes, 0 answered, {loss:.1}% loss ---", self.sent);
        }
        let min = self.rtts.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = self.rtts.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let avg = self.rtts.iter().sum::<f64>() / self.rtts.len() as f64;
        let mut sorted = self.rtts.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        format!(
            "--- {} probes, {} answered, {loss:.1}% loss, rtt min/avg/median/max = {min:.3}/{avg:.3}/{median:.3}/{max:.3} ms ---",
            self.sent, self.answered
        )
    }
}
