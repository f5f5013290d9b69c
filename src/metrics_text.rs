//! Prometheus text output shared by the daemon's and the agent's `/metrics`.
//!
//! prometheus-client writes OpenMetrics; `promtool check metrics` (and older scrapers) read the
//! classic 0.0.4 text format, which differs in the names of counter families and in `# EOF` and
//! `# UNIT` lines. One rewrite serves both endpoints.

/// Turns the OpenMetrics text `prometheus-client` writes into the classic Prometheus text format:
/// a counter family's `# HELP`/`# TYPE` lines name its `_total` samples, and there is no `# EOF`.
/// (Prometheus reads both; `promtool check metrics` and older scrapers read only the classic one.)
pub fn openmetrics_to_prometheus_text(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
