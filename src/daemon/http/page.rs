//! `/`: the status page a person on call reads at a glance, in plain HTML and CSS (no JavaScript;
//! it reloads itself every 30 s with a meta refresh).
//!
//! Top to bottom: a store-error banner when the store cannot be written, the overall banner
//! (worst component, same rule as the Statuspage indicator), current incidents, each group with
//! its quorum (`2 of 3 up, min 2`) and member targets, the ungrouped targets, then incidents of the
//! last 7 days. A target shows its status, URI, uptime over 24 h and 7 d, an inline SVG of its RTT
//! over 24 h, and a row per node with its state in colour and in words. Every user-provided
//! string passes through [`escape`]. Pure: the router gathers [`PageData`] from the history.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use chrono_tz::Tz;

use super::escape;
use super::statuspage::{
    group_id, group_members, incident_id, incident_status, page_name, target_id, ungrouped_targets,
    worst_status,
};
use crate::daemon::model::{
    page_indicator, ComponentStatus, GroupState, GroupView, Incident, NodeState, NodeView,
    Snapshot, TargetView, UnixTime,
};
use crate::daemon::timefmt;

/// The refresh interval written into `<meta http-equiv="refresh">`.
pub const REFRESH_SECS: u32 = 30;
const DAY: f64 = 86400.0;
/// The RTT chart's width in pixels; the 24 h series is averaged into this many / 2 buckets.
const CHART_W: f64 = 288.0;
const CHART_H: f64 = 48.0;
const CHART_BUCKETS: usize = 144;

/// One target's past, as the history answered (errors are shown on the page).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetHistory {
    pub uptime_24h: Result<Option<f64>, String>,
    pub uptime_7d: Result<Option<f64>, String>,
    /// Per-minute average RTT in ms, oldest first.
    pub rtt_24h: Result<Vec<(UnixTime, f64)>, String>,
}

/// What the page needs beyond the snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct PageData {
    pub now: UnixTime,
    /// By target name; a missing target renders "no data". Shared: the page reuses it for a few
    /// seconds ([`super::PAGE_HISTORY_TTL_SECS`]).
    pub targets: Arc<HashMap<String, TargetHistory>>,
    /// Incidents of the last 7 days, newest first.
    pub recent_incidents: Result<Vec<Incident>, String>,
}

// Writing into a String cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

const CSS: &str = r#"
:root{--ok:#1a7f37;--amber:#d4a72c;--minor:#7d5800;--major:#bc4c00;--crit:#cf222e;--maint:#0969da;--unk:#6e7781;--bg:#f6f8fa;--line:#d0d7de;--text:#1f2328;--muted:#59636e}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:var(--bg);color:var(--text)}
main{max-width:980px;margin:0 auto;padding:12px 16px}
header.top{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:4px 16px}
h1{font-size:1.5rem;margin:8px 0}
h2.section{font-size:1.15rem;margin:22px 0 8px}
a{color:var(--maint)}
.muted{color:var(--muted)}
.banner{border-radius:8px;padding:14px 18px;margin:12px 0;color:#fff;font-size:1.2rem;font-weight:600}
.banner small{display:block;font-size:.9rem;font-weight:400}
.b-none{background:var(--ok)}.b-minor{background:var(--amber);color:var(--text)}.b-major{background:var(--major)}.b-critical{background:var(--crit)}.b-maint{background:var(--maint)}
.store-error{border:2px solid var(--crit);background:#ffebe9;color:#82071e;padding:12px 16px;border-radius:8px;margin:12px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:10px 0}
.ghead{display:flex;gap:10px;align-items:center;flex-wrap:wrap;border-bottom:1px solid var(--line);padding-bottom:8px}
.ghead h2{margin:0;font-size:1.2rem}
.badge{display:inline-block;border-radius:999px;padding:1px 10px;font-size:.8rem;font-weight:600;color:#fff;white-space:nowrap}
.s-operational{background:var(--ok)}.s-degraded_performance{background:var(--amber);color:var(--text)}.s-partial_outage{background:var(--major)}.s-major_outage{background:var(--crit)}.s-under_maintenance{background:var(--maint)}
.quorum{font-weight:600}.q-up{color:var(--ok)}.q-degraded{color:var(--minor)}.q-down{color:var(--crit)}
.target{padding:10px 0;border-bottom:1px solid #eaeef2}
.target:last-child{border-bottom:0}
.thead{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.thead h3{margin:0;font-size:1.05rem}
.uri{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.82rem;color:var(--muted);word-break:break-all}
.tbody{display:flex;gap:12px 24px;flex-wrap:wrap;align-items:center;margin:6px 0}
.uptime{display:flex;gap:16px}.uptime b{font-variant-numeric:tabular-nums;font-size:1.05rem}
figure{margin:0}figcaption{font-size:.78rem;color:var(--muted)}
svg.rtt{display:block;background:var(--bg);border:1px solid var(--line);border-radius:4px}
table.nodes{border-collapse:collapse;width:100%;font-size:.88rem;table-layout:fixed}
table.nodes th:nth-child(1){width:28%}table.nodes th:nth-child(2){width:15%}table.nodes th:nth-child(3){width:15%}
table.nodes th{text-align:left;font-weight:600;color:var(--muted);border-bottom:1px solid var(--line);padding:3px 10px 3px 0}
table.nodes td{padding:3px 10px 3px 0;vertical-align:top;overflow-wrap:anywhere}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.85rem}
.state{font-weight:600;white-space:nowrap}
.state::before{content:"";display:inline-block;width:.7em;height:.7em;border-radius:50%;margin-right:.35em;background:currentColor}
.n-up{color:var(--ok)}.n-degraded{color:var(--minor)}.n-down{color:var(--crit)}.n-unknown{color:var(--unk)}
.tag{display:inline-block;border:1px solid currentColor;border-radius:4px;padding:0 5px;font-size:.75rem;margin-left:4px;font-weight:600}
.incident{border-left:5px solid var(--line)}.i-minor{border-left-color:var(--amber)}.i-major{border-left-color:var(--major)}.i-critical{border-left-color:var(--crit)}
.incident h3{margin:0 0 4px;font-size:1.05rem}
ol.updates{margin:6px 0 0;padding-left:18px}
.err{color:var(--crit)}
footer{margin:24px 0;font-size:.85rem;color:var(--muted)}
"#;

/// Human words for a component status.
pub fn status_label(s: ComponentStatus) -> &'static str {
    match s {
        ComponentStatus::Operational => "Operational",
        ComponentStatus::DegradedPerformance => "Degraded performance",
        ComponentStatus::PartialOutage => "Partial outage",
        ComponentStatus::MajorOutage => "Major outage",
        ComponentStatus::UnderMaintenance => "Under maintenance",
    }
}

/// The overall banner's headline for the worst component status.
pub fn banner_headline(worst: ComponentStatus) -> &'static str {
    match worst {
        ComponentStatus::Operational => "All systems operational",
        ComponentStatus::UnderMaintenance => "All systems operational, maintenance in progress",
        ComponentStatus::DegradedPerformance => "Degraded performance",
        ComponentStatus::PartialOutage => "Partial outage",
        ComponentStatus::MajorOutage => "Major outage",
    }
}

/// Uptime as a percentage, truncated (never rounded up to 100 %) to two decimals.
pub fn fmt_uptime(u: &Result<Option<f64>, String>) -> String {
    match u {
        Ok(Some(f)) if f.is_finite() => {
            let pct = (f.clamp(0.0, 1.0) * 10000.0).floor() / 100.0;
            if pct >= 100.0 {
                "100%".to_owned()
            } else {
                format!("{pct:.2}%")
            }
        }
        Ok(_) => "no data".to_owned(),
        Err(e) => format!(
            "<span class=\"err\" title=\"{}\">unavailable</span>",
            escape(e)
        ),
    }
}

fn node_state_class(s: NodeState) -> &'static str {
    match s {
        NodeState::Up => "n-up",
        NodeState::Degraded => "n-degraded",
        NodeState::Down => "n-down",
        NodeState::Unknown => "n-unknown",
    }
}

/// "2 of 3 up, min 2".
pub fn quorum_text(g: &GroupView) -> String {
    format!("{} of {} up, min {}", g.serving, g.members.len(), g.min_up)
}

fn group_state_words(s: GroupState) -> (&'static str, &'static str) {
    match s {
        GroupState::Up => ("q-up", "all members serving"),
        GroupState::Degraded => ("q-degraded", "quorum kept"),
        GroupState::Down => ("q-down", "below quorum"),
    }
}

/// The inline SVG of a 24 h RTT series (ms), averaged into buckets; gaps stay gaps. None when the
/// series holds no usable point.
/// A number with one decimal, as `{:.1}` writes it (ties to even) but without its exact-decimal
/// machinery, which was a tenth of a 10,000-target page's time (chart points and RTTs). Values
/// too large for the shortcut go to `{:.1}`.
struct Dec1(f64);

impl std::fmt::Display for Dec1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenths = (self.0 * 10.0).round_ties_even();
        if !tenths.is_finite() || tenths.abs() >= 1e15 {
            return write!(f, "{:.1}", self.0);
        }
        let t = tenths as i64;
        let sign = if t < 0 || (t == 0 && self.0.is_sign_negative()) {
            "-"
        } else {
            ""
        };
        let t = t.unsigned_abs();
        write!(f, "{sign}{}.{}", t / 10, t % 10)
    }
}

pub fn rtt_chart(series: &[(UnixTime, f64)], now: UnixTime) -> Option<String> {
    let since = now - DAY;
    let width = DAY / CHART_BUCKETS as f64;
    let mut sums = vec![(0.0f64, 0u32); CHART_BUCKETS];
    let (mut min, mut max, mut total, mut n) = (f64::INFINITY, 0.0f64, 0.0, 0u32);
    for &(t, v) in series {
        if !v.is_finite() || v < 0.0 || t < since || t > now + 60.0 {
            continue;
        }
        let i = (((t - since) / width) as usize).min(CHART_BUCKETS - 1);
        sums[i].0 += v;
        sums[i].1 += 1;
        min = min.min(v);
        max = max.max(v);
        total += v;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let top = max.max(0.001);
    let step = CHART_W / CHART_BUCKETS as f64;
    let mut d = String::new();
    let mut prev = false;
    for (i, (sum, count)) in sums.iter().enumerate() {
        if *count == 0 {
            prev = false;
            continue;
        }
        let x = (i as f64 + 0.5) * step;
        let y = CHART_H - 3.0 - (sum / f64::from(*count)) / top * (CHART_H - 8.0);
        let next_filled = sums.get(i + 1).is_some_and(|b| b.1 > 0);
        if prev {
            w!(d, "L{} {}", Dec1(x), Dec1(y));
        } else if next_filled {
            w!(d, "M{} {}", Dec1(x), Dec1(y));
        } else {
            // An isolated bucket: a short dash so it shows.
            w!(d, "M{} {}h2", Dec1(x - 1.0), Dec1(y));
        }
        prev = true;
    }
    let avg = total / f64::from(n);
    let summary = format!(
        "min {} · avg {} · max {} ms",
        Dec1(min),
        Dec1(avg),
        Dec1(max)
    );
    let mut svg = String::new();
    w!(
        svg,
        "<figure><svg class=\"rtt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"RTT over 24 hours, {summary}\">\
         <title>RTT over 24 h: {summary}</title>\
         <line x1=\"0\" y1=\"5\" x2=\"{w}\" y2=\"5\" stroke=\"#d0d7de\" stroke-dasharray=\"2 3\"/>\
         <path d=\"{d}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>\
         </svg><figcaption>RTT 24 h: {summary}</figcaption></figure>",
        w = CHART_W,
        h = CHART_H,
    );
    Some(svg)
}

fn last_probe_text(n: &NodeView, now: UnixTime, zone: Tz) -> String {
    let Some(o) = &n.last else {
        return "<span class=\"muted\">not probed yet</span>".to_owned();
    };
    let mut parts: Vec<String> = Vec::new();
    match o.code {
        Some(code) => parts.push(format!("{code} {}", escape(&o.reason))),
        None if o.reason.is_empty() => parts.push(escape(o.result.as_str()).into_owned()),
        None => parts.push(format!(
            "{}: {}",
            escape(o.result.as_str()),
            escape(&o.reason)
        )),
    }
    if let Some(rtt) = o.rtt_ms {
        parts.push(format!("{} ms", Dec1(rtt)));
    }
    if let Some(days) = o.cert_days_left {
        parts.push(format!("cert {days} d left"));
    }
    format!(
        "{} <span class=\"muted\" title=\"{}\">({} ago)</span>",
        parts.join(" · "),
        timefmt::date_time(o.at, zone),
        timefmt::duration(now - o.at)
    )
}

fn render_node(out: &mut String, n: &NodeView, now: UnixTime, zone: Tz) {
    let last = last_probe_text(n, now, zone);
    w!(
        out,
        "<tr><td><code>{}</code> <span class=\"muted\">{}</span></td>\
         <td><span class=\"state {}\">{}</span>{}</td>\
         <td title=\"{}\">for {}</td><td>{}</td></tr>",
        escape(&n.node),
        escape(&n.transport),
        node_state_class(n.state),
        n.state.as_str(),
        if n.flapping {
            " <span class=\"tag n-degraded\">flapping</span>"
        } else {
            ""
        },
        timefmt::date_time(n.since, zone),
        timefmt::duration(now - n.since),
        last,
    );
}

fn render_target(out: &mut String, t: &TargetView, data: &PageData, zone: Tz) {
    w!(
        out,
        "<div class=\"target\" id=\"target-{}\"><div class=\"thead\"><h3>{}</h3>\
         <span class=\"badge s-{}\">{}</span>{}</div>\
         <div class=\"uri\">{} {}</div>",
        target_id(&t.name),
        escape(&t.name),
        t.status.as_str(),
        status_label(t.status),
        if t.in_maintenance {
            " <span class=\"tag n-unknown\">maintenance</span>"
        } else {
            ""
        },
        escape(&t.method),
        escape(&t.uri),
    );
    if let Some(e) = &t.dns_error {
        w!(out, "<p class=\"err\">DNS: {}</p>", escape(e));
    }
    out.push_str("<div class=\"tbody\">");
    match data.targets.get(&t.name) {
        Some(h) => {
            w!(
                out,
                "<div class=\"uptime\"><span>Uptime 24 h <b>{}</b></span>\
                 <span>7 d <b>{}</b></span></div>",
                fmt_uptime(&h.uptime_24h),
                fmt_uptime(&h.uptime_7d)
            );
            match &h.rtt_24h {
                Ok(series) => match rtt_chart(series, data.now) {
                    Some(svg) => out.push_str(&svg),
                    None => out.push_str("<span class=\"muted\">no RTT data in 24 h</span>"),
                },
                Err(e) => w!(
                    out,
                    "<span class=\"err\">RTT unavailable: {}</span>",
                    escape(e)
                ),
            }
        }
        None => out.push_str("<span class=\"muted\">no history</span>"),
    }
    out.push_str("</div>");
    if t.nodes.is_empty() {
        out.push_str("<p class=\"muted\">No nodes resolved.</p>");
    } else {
        out.push_str(
            "<table class=\"nodes\"><thead><tr><th>Node</th><th>State</th><th>Since</th>\
             <th>Last probe</th></tr></thead><tbody>",
        );
        for n in &t.nodes {
            render_node(out, n, data.now, zone);
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</div>");
}

fn render_incident(out: &mut String, i: &Incident, now: UnixTime, zone: Tz) {
    let status = incident_status(i);
    w!(
        out,
        "<article class=\"card incident i-{}\" id=\"incident-{}\"><h3>{}</h3>\
         <p class=\"muted\"><span class=\"badge s-{}\">{}</span> {} · opened {}",
        page_indicator(i.impact),
        incident_id(i),
        escape(&i.title),
        i.impact.as_str(),
        status_label(i.impact),
        escape(&status),
        timefmt::date_time(i.opened_at, zone),
    );
    match i.resolved_at {
        Some(r) => w!(
            out,
            " · resolved {} after {}",
            timefmt::date_time(r, zone),
            timefmt::duration(r - i.opened_at)
        ),
        None => w!(
            out,
            " · ongoing for {}",
            timefmt::duration(now - i.opened_at)
        ),
    }
    out.push_str("</p>");
    if !i.affected.is_empty() {
        let affected: Vec<String> = i.affected.iter().map(|a| escape(a).into_owned()).collect();
        w!(out, "<p>Affected: {}</p>", affected.join(", "));
    }
    let mut updates: Vec<_> = i.updates.iter().collect();
    updates.sort_by(|a, b| b.at.total_cmp(&a.at));
    if !updates.is_empty() {
        out.push_str("<ol class=\"updates\">");
        for u in updates {
            w!(
                out,
                "<li><b>{}</b> <span class=\"muted\">{}</span>: {}</li>",
                escape(&u.status),
                timefmt::date_time(u.at, zone),
                escape(&u.body)
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("</article>");
}

/// The whole page.
pub fn render(snapshot: &Snapshot, data: &PageData) -> String {
    let name = escape(page_name(snapshot));
    let worst = worst_status(snapshot);
    let mut out = String::with_capacity(16 * 1024 + snapshot.targets.len() * 3 * 1024);
    let zone = crate::daemon::timefmt::zone_or_utc(&snapshot.time_zone);
    w!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>{name} status</title>\
         <link rel=\"alternate\" type=\"application/atom+xml\" title=\"Incidents\" href=\"/history.atom\">\
         <style>{CSS}</style></head><body><main>\
         <header class=\"top\"><h1>{name}</h1><span class=\"muted\">Updated {} · reloads every {REFRESH_SECS} s</span></header>",
        timefmt::date_time(snapshot.generated_at, zone),
    );

    if let Some(e) = &snapshot.store_error {
        w!(
            out,
            "<div class=\"store-error\" role=\"alert\"><strong>Store error:</strong> {}<br>\
             State changes and incidents are not being saved; history below may be incomplete.</div>",
            escape(e)
        );
    }

    super::alerting_page::render_banner(&mut out, &snapshot.alerting, data.now);

    let banner_class = match worst {
        ComponentStatus::UnderMaintenance => "b-maint",
        other => match page_indicator(other) {
            "minor" => "b-minor",
            "major" => "b-major",
            "critical" => "b-critical",
            _ => "b-none",
        },
    };
    let operational = snapshot
        .targets
        .iter()
        .filter(|t| t.status == ComponentStatus::Operational)
        .count();
    let below_quorum = snapshot
        .groups
        .iter()
        .filter(|g| g.state == GroupState::Down)
        .count();
    w!(
        out,
        "<div class=\"banner {banner_class}\" role=\"status\" id=\"overall\">{}<small>{} of {} targets operational",
        banner_headline(worst),
        operational,
        snapshot.targets.len()
    );
    if below_quorum > 0 {
        w!(
            out,
            " · {below_quorum} group{} below quorum",
            if below_quorum == 1 { "" } else { "s" }
        );
    }
    out.push_str("</small></div>");

    let open: Vec<&Incident> = snapshot
        .open_incidents
        .iter()
        .filter(|i| i.resolved_at.is_none())
        .collect();
    if !open.is_empty() {
        out.push_str(
            "<section id=\"current-incidents\"><h2 class=\"section\">Current incidents</h2>",
        );
        for i in &open {
            render_incident(&mut out, i, data.now, zone);
        }
        out.push_str("</section>");
    }

    for g in &snapshot.groups {
        let (qclass, qwords) = group_state_words(g.state);
        w!(
            out,
            "<section class=\"card group\" id=\"group-{}\"><div class=\"ghead\"><h2>{}</h2>\
             <span class=\"badge s-{}\">{}</span><span class=\"quorum {qclass}\">{} ({qwords})</span>{}</div>",
            group_id(&g.name),
            escape(&g.name),
            g.status.as_str(),
            status_label(g.status),
            quorum_text(g),
            if g.in_maintenance {
                " <span class=\"tag n-unknown\">maintenance</span>"
            } else {
                ""
            },
        );
        for t in group_members(snapshot, &g.name) {
            render_target(&mut out, t, data, zone);
        }
        out.push_str("</section>");
    }
    let loose = ungrouped_targets(snapshot);
    if !loose.is_empty() {
        w!(
            out,
            "<section class=\"card group\" id=\"ungrouped\"><div class=\"ghead\"><h2>{}</h2></div>",
            if snapshot.groups.is_empty() {
                "Targets"
            } else {
                "Other targets"
            }
        );
        for t in loose {
            render_target(&mut out, t, data, zone);
        }
        out.push_str("</section>");
    }
    if snapshot.targets.is_empty() {
        out.push_str("<p class=\"muted\">No targets configured.</p>");
    }

    if !snapshot.scheduled_maintenances.is_empty() {
        out.push_str(
            "<section id=\"maintenance\"><h2 class=\"section\">Scheduled maintenance</h2><ul>",
        );
        for m in &snapshot.scheduled_maintenances {
            let covered: Vec<String> = m
                .targets
                .iter()
                .chain(m.groups.iter())
                .map(|n| escape(n).into_owned())
                .collect();
            w!(
                out,
                "<li>{}<b>{}</b> {} to {} <span class=\"muted\">({})</span></li>",
                if m.in_progress {
                    "<span class=\"tag n-unknown\">in progress</span> "
                } else {
                    ""
                },
                covered.join(", "),
                timefmt::date_time(m.starts_at, zone),
                crate::daemon::timefmt::clock(m.ends_at, m.starts_at, zone),
                escape(&m.schedule),
            );
        }
        out.push_str("</ul></section>");
    }

    if !snapshot.agents.is_empty() {
        render_agents(&mut out, &snapshot.agents, data.now);
    }

    super::alerting_page::render_section(&mut out, &snapshot.alerting, zone);

    out.push_str(
        "<section id=\"past-incidents\"><h2 class=\"section\">Incidents in the last 7 days</h2>",
    );
    match &data.recent_incidents {
        Ok(recent) => {
            let past: Vec<&Incident> = recent
                .iter()
                .filter(|i| !open.iter().any(|o| o.id == i.id))
                .collect();
            if past.is_empty() {
                out.push_str("<p class=\"muted\">No incidents in the last 7 days.</p>");
            }
            for i in past {
                render_incident(&mut out, i, data.now, zone);
            }
        }
        Err(e) => w!(
            out,
            "<p class=\"err\">Incident history unavailable: {}</p>",
            escape(e)
        ),
    }
    out.push_str("</section>");

    out.push_str(
        "<footer>Feeds: <a href=\"/api/v2/summary.json\">summary.json</a> · \
         <a href=\"/api/v2/components.json\">components.json</a> · \
         <a href=\"/api/v2/incidents.json\">incidents.json</a> · \
         <a href=\"/history.atom\">history.atom</a> · <a href=\"/metrics\">metrics</a> · \
         <a href=\"/healthz\">healthz</a></footer></main></body></html>\n",
    );
    out
}

fn fmt_gauge_value(v: f64, unit: &str) -> String {
    if unit == "bytes" {
        format!("{:.1} MB", v / 1_048_576.0)
    } else {
        format!("{v:.0} {unit}")
    }
}

/// "Node memory": what each node agent last reported (services, PSS, leak verdicts, time left).
fn render_agents(out: &mut String, agents: &[crate::daemon::model::AgentSummary], now: UnixTime) {
    out.push_str(
        "<section class=\"card group\" id=\"node-memory\"><div class=\"ghead\"><h2>Node memory</h2></div>",
    );
    for a in agents {
        w!(
            out,
            "<h3>{} <span class=\"muted\">reported {} ago</span></h3><table class=\"nodes\"><tr><th>service</th><th>state</th><th>PSS</th><th>gauges</th></tr>",
            escape(&a.host),
            timefmt::duration((now - a.received_at).max(0.0))
        );
        for s in &a.services {
            let mut gauges = String::new();
            for g in &s.gauges {
                let value = g
                    .value
                    .map(|v| fmt_gauge_value(v, &g.unit))
                    .unwrap_or_else(|| "-".into());
                let limit = g
                    .limit
                    .map(|l| format!(" / {}", fmt_gauge_value(l, &g.unit)))
                    .unwrap_or_default();
                let verdict = match g.verdict.as_str() {
                    "leak" => {
                        let eta = g
                            .eta_seconds
                            .map(|e| format!(", limit in {}", timefmt::duration(e)))
                            .unwrap_or_default();
                        format!("<strong class=\"down\">LEAK</strong>{eta}")
                    }
                    "" => String::new(),
                    other => escape(other).into_owned(),
                };
                w!(
                    gauges,
                    "{}: {}{} {}<br>",
                    escape(&g.name),
                    value,
                    limit,
                    verdict
                );
            }
            w!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&s.name),
                if s.up {
                    format!("up ({} processes)", s.processes)
                } else {
                    "<strong class=\"down\">not running</strong>".to_string()
                },
                s.pss_bytes
                    .map(|b| fmt_gauge_value(b as f64, "bytes"))
                    .unwrap_or_else(|| "-".into()),
                gauges
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
    render_restarts(out, agents);
}

/// "Restarts": the watchdog decisions each agent last reported, newest first.
fn render_restarts(out: &mut String, agents: &[crate::daemon::model::AgentSummary]) {
    let mut rows: Vec<(&str, &crate::agent::watchdog::audit::RestartRecord)> = agents
        .iter()
        .flat_map(|a| a.restarts.iter().map(move |r| (a.host.as_str(), r)))
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| b.1.at.cmp(&a.1.at));
    out.push_str(
        "<section class=\"card group\" id=\"restarts\"><div class=\"ghead\"><h2>Restarts</h2></div>\
         <table class=\"nodes\"><tr><th>when</th><th>host</th><th>service</th><th>trigger</th><th>decision</th><th>what happened</th></tr>",
    );
    for (host, r) in rows.into_iter().take(30) {
        let decision = match r.decision.as_str() {
            "failed" => "<strong class=\"down\">failed</strong>".to_owned(),
            other => escape(other).into_owned(),
        };
        w!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} <span class=\"muted\">{}</span></td><td>{}</td></tr>",
            escape(&r.at),
            escape(host),
            escape(&r.service),
            r.trigger.as_str(),
            decision,
            escape(&r.why),
            escape(&r.summary)
        );
    }
    out.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::http::statuspage::tests::snapshot;

    fn data(now: UnixTime) -> PageData {
        let mut targets = HashMap::new();
        for name in ["rec-1", "rec-2", "edge"] {
            targets.insert(
                name.to_owned(),
                TargetHistory {
                    uptime_24h: Ok(Some(0.99999)),
                    uptime_7d: Ok(Some(0.5)),
                    rtt_24h: Ok((0..600)
                        .map(|i| (now - 36000.0 + 60.0 * f64::from(i), 1.0 + f64::from(i % 7)))
                        .collect()),
                },
            );
        }
        PageData {
            now,
            targets: Arc::new(targets),
            recent_incidents: Ok(vec![]),
        }
    }

    #[test]
    fn page_shows_banner_quorum_nodes_and_chart() {
        let s = snapshot();
        let html = render(&s, &data(s.generated_at));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(html.contains("Major outage"));
        assert!(html.contains("1 of 2 up, min 1 (quorum kept)"));
        assert!(html.contains("<span class=\"state n-down\">down</span>"));
        assert!(html.contains("Uptime 24 h <b>99.99%</b>"));
        assert!(html.contains("7 d <b>50.00%</b>"));
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("max 7.0 ms"));
        assert!(html.contains("id=\"current-incidents\""));
        assert!(html.contains("No incidents in the last 7 days."));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn user_strings_are_escaped_and_store_error_shown() {
        let mut s = snapshot();
        s.page_name = "<script>alert(1)</script>".to_owned();
        let t = std::sync::Arc::make_mut(&mut s.targets[0]);
        t.name = "<img src=x onerror=alert(1)>".to_owned();
        if let Some(o) = t.nodes[0].last.as_mut() {
            o.reason = "<b>".to_owned();
        }
        s.store_error = Some("disk full <sda1>".to_owned());
        let html = render(&s, &data(s.generated_at));
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("200 &lt;b&gt;"));
        assert!(html.contains("<strong>Store error:</strong> disk full &lt;sda1&gt;"));
    }

    #[test]
    fn healthy_page_is_green() {
        let mut s = snapshot();
        for t in &mut s.targets {
            std::sync::Arc::make_mut(t).status = ComponentStatus::Operational;
        }
        s.groups[0].status = ComponentStatus::Operational;
        s.groups[0].state = GroupState::Up;
        s.groups[0].serving = 2;
        s.open_incidents.clear();
        let html = render(&s, &data(s.generated_at));
        assert!(html.contains("<div class=\"banner b-none\" role=\"status\" id=\"overall\">All systems operational<small>3 of 3 targets operational</small>"));
        assert!(html.contains("2 of 2 up, min 1 (all members serving)"));
        assert!(!html.contains("current-incidents"));
        assert!(!html.contains("class=\"store-error\""));
        s.groups[0].state = GroupState::Down;
        s.groups[0].status = ComponentStatus::MajorOutage;
        let html = render(&s, &data(s.generated_at));
        assert!(html.contains("b-critical"));
        assert!(html.contains("1 group below quorum"));
    }

    #[test]
    fn history_errors_are_shown_not_hidden() {
        let s = snapshot();
        let mut d = data(s.generated_at);
        d.recent_incidents = Err("database is locked".to_owned());
        if let Some(h) = Arc::get_mut(&mut d.targets).and_then(|t| t.get_mut("edge")) {
            h.uptime_7d = Err("no such table".to_owned());
            h.rtt_24h = Ok(vec![]);
        }
        let html = render(&s, &d);
        assert!(html.contains("Incident history unavailable: database is locked"));
        assert!(html.contains("title=\"no such table\">unavailable"));
        assert!(html.contains("no RTT data in 24 h"));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_uptime(&Ok(Some(1.0))), "100%");
        assert_eq!(fmt_uptime(&Ok(Some(0.999999))), "99.99%");
        assert_eq!(fmt_uptime(&Ok(None)), "no data");
        assert_eq!(timefmt::duration(59.0), "59 s");
        assert_eq!(timefmt::duration(3600.0 * 3.0 + 720.0), "3 h 12 min");
        assert_eq!(timefmt::duration(86400.0 * 2.0 + 3600.0 * 4.0), "2 d 4 h");
        assert_eq!(
            timefmt::date_time(1_700_000_000.0, chrono_tz::UTC),
            "2023-11-14 22:13 UTC"
        );
        assert_eq!(
            timefmt::date_time(1_700_000_000.0, "Europe/Berlin".parse().unwrap()),
            "2023-11-14 23:13 CET"
        );
        // One decimal as `{:.1}` writes it; they may differ only on a value a hair from a tie.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let v = match i % 4 {
                0 => i as f64 / 100.0,
                1 => (rng % 10_000_000) as f64 / 1000.0,
                2 => -((rng % 100_000) as f64) / 997.0,
                _ => f64::from_bits(rng) % 1e6,
            };
            if !v.is_finite() {
                continue;
            }
            let (ours, std) = (Dec1(v).to_string(), format!("{v:.1}"));
            let near_tie = ((v * 10.0).abs().fract() - 0.5).abs() < 1e-6;
            assert!(ours == std || near_tie, "{v}: {ours} against {std}");
        }
        assert_eq!(Dec1(-0.04).to_string(), format!("{:.1}", -0.04));
        assert_eq!(Dec1(1e300).to_string(), format!("{:.1}", 1e300));
        assert!(rtt_chart(&[], 1e9).is_none());
        let one = rtt_chart(&[(1e9 - 100.0, 5.0)], 1e9).expect("one point charts");
        assert!(one.contains("h2\""), "{one}");
    }
}
