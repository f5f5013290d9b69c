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

/// `sipwatch probe --help`: the Nagios plugin contract.
const PROBE_HELP: &str = "\
Output (Nagios plugin guidelines):
  The first line carries the worst status of all probes, then `|` and the performance data
  (rtt in ms with the -w/-c thresholds, retransmissions, cert_days with the certificate
  thresholds); one line per probe follows. With several URIs every label is prefixed with
  the URI. Errors before any probe print one `UNKNOWN: ...` line on stdout.

Exit codes (the worst probe wins):
  0  OK        2xx; for OPTIONS any answer that proves the node alive (404, 405, 483)
  1  WARNING   503, slower than -w, certificate within --cert-warn-days
  2  CRITICAL  timeout, transport or TLS error, auth rejected, unexpected code, slower
               than -c, certificate within --cert-crit-days or not naming the host
  3  UNKNOWN   bad arguments, unreadable password file, DNS failure before any probe

Environment:
  SIPWATCH_PASSWORD  the REGISTER password when --password-file is not given
  SIPWATCH_LOG       log filter for stderr (default warn)";

/// Flags of `sipwatch probe`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = PROBE_HELP)]
pub struct ProbeArgs {
    /// SIP URIs to probe: sip:host[:port][;transport=udp|tcp|tls] or sips:host[:port].
    #[arg(required = true, value_name = "URI")]
    pub uris: Vec<String>,
    /// OPTIONS ping (default) or REGISTER with digest auth.
    #[arg(long, short = 'm', default_value = "options", value_parser = parse_method)]
    pub method: Method,
    /// Force a transport (otherwise the URI's ;transport= or RFC 3263 decides).
    #[arg(long, value_parser = parse_transport)]
    pub transport: Option<Transport>,
    /// Timer F: give up on a request after this long (e.g. 5s, 800ms; a bare number is seconds).
    #[arg(long, short = 't', default_value = "5s", value_parser = parse_timeout)]
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
    /// WARNING when the answer takes longer than this (e.g. 200ms, 0.2s; a bare number is ms,
    /// the unit of the rtt performance data).
    #[arg(long, short = 'w', value_parser = parse_rtt_threshold)]
    pub warn_rtt: Option<Duration>,
    /// CRITICAL when the answer takes longer than this (a bare number is ms).
    #[arg(long, short = 'c', value_parser = parse_rtt_threshold)]
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
    #[arg(long, default_value_t = 1)]
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

/// `-t`: a duration, or a bare number of seconds as every Nagios plugin takes it.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    bare_number_or_duration(s, 1.0)
}

/// `-w`/`-c`: a duration, or a bare number of milliseconds (the unit of the `rtt` perfdata).
fn parse_rtt_threshold(s: &str) -> Result<Duration, String> {
    bare_number_or_duration(s, 1e-3)
}

fn bare_number_or_duration(s: &str, bare_unit_seconds: f64) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Duration::try_from_secs_f64(n * bare_unit_seconds)
            .map_err(|_| format!("{s:?} is too large")),
        Ok(_) => Err(format!("{s:?} must be a positive number")),
        Err(_) => parse_duration(s),
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
            request_template: Default::default(),
        })
        .collect();

    let mut worst = Status::Ok;
    let mut stats = RoundStats::default();
    let mut outcomes_seen: Vec<ProbeOutcome> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
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
        for (_, outcomes) in results {
            for o in outcomes {
                worst = worst.worst(o.status);
                stats.add(&o);
                if args.json {
                    // JSON lines stream as they come: they are for programs, not for Nagios.
                    let mut out = stdout.lock();
                    writeln!(out, "{}", serde_json::to_string(&o)?)?;
                    out.flush()?;
                } else {
                    writeln!(body, "{}", human_line(&o))?;
                    if args.verbose {
                        print_exchange(&mut body, &o)?;
                    }
                }
                outcomes_seen.push(o);
            }
        }
    }
    if !args.json {
        // Nagios plugin guidelines: the first line carries the worst status and the performance
        // data; the per-probe lines follow as long output.
        let mut out = stdout.lock();
        let thresholds = PerfThresholds {
            warn_rtt_ms: policy.warn_rtt_ms,
            crit_rtt_ms: policy.crit_rtt_ms,
            cert_warn_days: policy.cert_warn_days,
            cert_crit_days: policy.cert_crit_days,
        };
        let perf = perfdata(&outcomes_seen, &thresholds);
        if outcomes_seen.len() == 1 {
            let line = human_line(&outcomes_seen[0]);
            writeln!(out, "{line} | {perf}")?;
            if args.verbose {
                print_exchange(&mut out, &outcomes_seen[0])?;
            }
        } else {
            writeln!(out, "{} | {perf}", summary_line(&outcomes_seen, worst))?;
            out.write_all(&body)?;
        }
        if args.count > 1 {
            writeln!(out, "{}", stats.summary())?;
        }
        out.flush()?;
    }
    Ok(worst.exit_code())
}

/// The first line when there are several probes: the worst status, the counts per status and the
/// first probe with the worst status, e.g.
/// `CRITICAL: 2 probes: 1 critical, 1 ok - sip:10.0.0.6 OPTIONS udp 10.0.0.6:5060 timeout: ...`.
pub fn summary_line(outcomes: &[ProbeOutcome], worst: Status) -> String {
    let mut counts = Vec::new();
    for status in [
        Status::Critical,
        Status::Warning,
        Status::Unknown,
        Status::Ok,
    ] {
        let n = outcomes.iter().filter(|o| o.status == status).count();
        if n > 0 {
            counts.push(format!("{n} {}", status.label().to_ascii_lowercase()));
        }
    }
    let mut line = format!(
        "{}: {} probes: {}",
        worst.label(),
        outcomes.len(),
        counts.join(", ")
    );
    if worst != Status::Ok {
        if let Some(o) = outcomes.iter().find(|o| o.status == worst) {
            let detail = human_line(o);
            let detail = detail
                .split_once(": ")
                .map(|(_, rest)| rest)
                .unwrap_or(&detail);
            // Not `;`: Nagios turns it into `:` (it delimits its external commands).
            line.push_str(&format!(" - {detail}"));
        }
    }
    line
}

/// The thresholds the performance data shows next to each value.
#[derive(Debug, Clone, Copy)]
pub struct PerfThresholds {
    pub warn_rtt_ms: Option<f64>,
    pub crit_rtt_ms: Option<f64>,
    pub cert_warn_days: i64,
    pub cert_crit_days: i64,
}

/// Nagios performance data (plugin guidelines: `'label'=value[UOM];[warn];[crit];[min];[max]`,
/// space-separated): `rtt` in ms (the median over `--count` rounds, `U` when nothing answered),
/// `retransmissions` (the sum) and, for TLS, `cert_days` (alerting below the thresholds: `14:`).
/// One series per URI and remote node; with several, each label starts with the URI (and node).
pub fn perfdata(outcomes: &[ProbeOutcome], th: &PerfThresholds) -> String {
    let mut series: Vec<((String, String), Vec<&ProbeOutcome>)> = Vec::new();
    for o in outcomes {
        let key = (o.target.clone(), o.remote.clone().unwrap_or_default());
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(o),
            None => series.push((key, vec![o])),
        }
    }
    let many = series.len() > 1;
    let mut fields = Vec::new();
    for ((target, remote), list) in &series {
        let nodes_of_target = series.iter().filter(|((t, _), _)| t == target).count();
        let prefix = match (many, nodes_of_target > 1) {
            (false, _) => String::new(),
            (true, false) => format!("{target} "),
            (true, true) => format!("{target} {remote} "),
        };
        let label = |name: &str| perf_label(&format!("{prefix}{name}"));
        let mut rtts: Vec<f64> = list.iter().filter_map(|o| o.rtt_ms).collect();
        rtts.sort_by(f64::total_cmp);
        let rtt = match rtts.get(rtts.len() / 2) {
            Some(ms) => format!("{}ms", perf_number(*ms)),
            None => "U".to_string(),
        };
        fields.push(format!(
            "{}={rtt};{};{};0",
            label("rtt"),
            th.warn_rtt_ms.map(perf_number).unwrap_or_default(),
            th.crit_rtt_ms.map(perf_number).unwrap_or_default(),
        ));
        let retransmissions: u32 = list.iter().map(|o| o.retransmissions).sum();
        fields.push(format!(
            "{}={retransmissions};;;0",
            label("retransmissions")
        ));
        if let Some(days) = list.iter().filter_map(|o| o.cert_days_left).min() {
            fields.push(format!(
                "{}={days};{}:;{}:",
                label("cert_days"),
                th.cert_warn_days,
                th.cert_crit_days
            ));
        }
    }
    fields.join(" ")
}

/// A perfdata label: `=` and `'` are not allowed in one, so they become `_`; quoted when it has
/// a space.
fn perf_label(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c == '=' || c == '\'' { '_' } else { c })
        .collect();
    if clean.contains(' ') {
        format!("'{clean}'")
    } else {
        clean
    }
}

/// A number as perfdata writes it: at most three decimals, no trailing zeros, no exponent.
fn perf_number(x: f64) -> String {
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".to_string()
    } else {
        text.to_string()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sipwatch_probes::outcome::ResultKind;

    fn outcome(target: &str, remote: &str, status: Status, rtt: Option<f64>) -> ProbeOutcome {
        ProbeOutcome {
            target: target.into(),
            method: Method::Options,
            transport: Transport::Udp,
            remote: Some(remote.into()),
            status,
            result: if rtt.is_some() {
                ResultKind::Ok
            } else {
                ResultKind::Timeout
            },
            code: rtt.map(|_| 200),
            reason: if rtt.is_some() { "OK" } else { "no answer" }.into(),
            rtt_ms: rtt,
            retransmissions: if rtt.is_some() { 0 } else { 6 },
            server: None,
            cert_days_left: None,
            cert_name_matches: None,
            cert_not_after: None,
            mismatched_responses: 0,
            provisional: Vec::new(),
            located_by: Some("literal".into()),
            binding_confirmed: None,
            unregistered: None,
            started_at: 0.0,
            exchange: Vec::new(),
        }
    }

    const TH: PerfThresholds = PerfThresholds {
        warn_rtt_ms: Some(50.0),
        crit_rtt_ms: Some(200.0),
        cert_warn_days: 14,
        cert_crit_days: 3,
    };

    #[test]
    fn perfdata_of_one_probe_has_plain_labels_and_thresholds() {
        let mut o = outcome("sips:a", "10.0.0.1:5061", Status::Ok, Some(0.3104));
        o.cert_days_left = Some(87);
        assert_eq!(
            perfdata(&[o], &TH),
            "rtt=0.31ms;50;200;0 retransmissions=0;;;0 cert_days=87;14:;3:"
        );
        let none = PerfThresholds {
            warn_rtt_ms: None,
            crit_rtt_ms: None,
            ..TH
        };
        let o = outcome("sip:a", "10.0.0.1:5060", Status::Ok, Some(12.0));
        assert_eq!(perfdata(&[o], &none), "rtt=12ms;;;0 retransmissions=0;;;0");
    }

    #[test]
    fn perfdata_of_several_uris_names_each_and_quotes_labels() {
        let a = outcome(
            "sip:a;transport=tcp",
            "10.0.0.1:5060",
            Status::Ok,
            Some(1.5),
        );
        let b = outcome("sip:b", "10.0.0.2:5060", Status::Critical, None);
        assert_eq!(
            perfdata(&[a, b], &TH),
            "'sip:a;transport_tcp rtt'=1.5ms;50;200;0 'sip:a;transport_tcp retransmissions'=0;;;0 \
             'sip:b rtt'=U;50;200;0 'sip:b retransmissions'=6;;;0"
        );
    }

    #[test]
    fn rounds_give_the_median_rtt_and_nodes_behind_one_name_are_separate() {
        let rounds: Vec<_> = [3.0, 1.0, 2.0]
            .iter()
            .map(|ms| outcome("sip:a", "10.0.0.1:5060", Status::Ok, Some(*ms)))
            .collect();
        assert!(perfdata(&rounds, &TH).starts_with("rtt=2ms;"));
        let n1 = outcome("sip:edge", "10.0.0.1:5060", Status::Ok, Some(1.0));
        let n2 = outcome("sip:edge", "10.0.0.2:5060", Status::Ok, Some(2.0));
        let text = perfdata(&[n1, n2], &TH);
        assert!(
            text.starts_with("'sip:edge 10.0.0.1:5060 rtt'=1ms;"),
            "{text}"
        );
        assert!(text.contains("'sip:edge 10.0.0.2:5060 rtt'=2ms;"), "{text}");
    }

    #[test]
    fn the_summary_line_leads_with_the_worst_status() {
        let ok = outcome("sip:a", "10.0.0.1:5060", Status::Ok, Some(1.0));
        let down = outcome("sip:b", "10.0.0.2:5060", Status::Critical, None);
        let line = summary_line(&[ok.clone(), down], Status::Critical);
        assert!(
            line.starts_with(
                "CRITICAL: 2 probes: 1 critical, 1 ok - sip:b OPTIONS udp 10.0.0.2:5060"
            ),
            "{line}"
        );
        assert_eq!(
            summary_line(&[ok.clone(), ok], Status::Ok),
            "OK: 2 probes: 2 ok"
        );
    }

    #[test]
    fn bare_numbers_follow_the_nagios_units() {
        assert_eq!(parse_timeout("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_timeout("800ms").unwrap(), Duration::from_millis(800));
        assert_eq!(
            parse_rtt_threshold("50").unwrap(),
            Duration::from_millis(50)
        );
        assert_eq!(
            parse_rtt_threshold("0.2s").unwrap(),
            Duration::from_millis(200)
        );
        assert!(parse_rtt_threshold("-1").is_err());
    }
}
