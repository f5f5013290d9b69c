//! The status page's alerting section: is on-call being reached, what is silenced, what is
//! muted. A receiver failing longer than `[alerting] unhealthy_after` gets a loud banner at the
//! top; silences, muted alerts and acknowledgements are listed so nobody wonders why a down node did not page.
//! Rendering only; the numbers come from the snapshot (`daemon::paging`).

use std::fmt::Write as _;

use super::escape;
use crate::daemon::model::{AlertingView, UnixTime};
use crate::daemon::timefmt;

/// Banner lines for unhealthy receivers (empty when all are fine).
pub fn unhealthy_lines(view: &AlertingView, now: UnixTime) -> Vec<String> {
    view.receivers
        .iter()
        .filter(|r| r.unhealthy)
        .map(|r| {
            format!(
                "receiver {} ({}) failing for {}, {} notification(s) pending",
                r.name,
                r.kind,
                timefmt::duration((now - r.failing_since.unwrap_or(now)).max(0.0)),
                r.pending
            )
        })
        .collect()
}

/// The banner (top of the page) when a receiver is unhealthy.
pub fn render_banner(out: &mut String, view: &AlertingView, now: UnixTime) {
    let lines = unhealthy_lines(view, now);
    if lines.is_empty() {
        return;
    }
    out.push_str(
        "<div class=\"store-error\" role=\"alert\" id=\"alert-delivery\"><strong>Alerts are not \
         being delivered:</strong>",
    );
    for l in lines {
        let _ = write!(out, "<br>{}", escape(&l));
    }
    out.push_str("<br>On-call may not be reached; check the receivers and the daemon log.</div>");
}

/// Silences and muted alerts (nothing when there are none).
pub fn render_section(out: &mut String, view: &AlertingView, zone: chrono_tz::Tz) {
    let silences: Vec<_> = view
        .silences
        .iter()
        .filter(|s| s.state != "expired")
        .collect();
    let muted: Vec<_> = view.alerts.iter().filter(|a| a.state != "active").collect();
    if silences.is_empty() && muted.is_empty() && view.acks.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"card group\" id=\"silences\"><div class=\"ghead\"><h2>Silences and \
         muted alerts</h2></div>",
    );
    if !silences.is_empty() {
        out.push_str(
            "<table class=\"nodes\"><tr><th>silence</th><th>matchers</th><th>until</th>\
             <th>comment</th></tr>",
        );
        for s in silences {
            let _ = write!(
                out,
                "<tr><td>{} <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{} \
                 <span class=\"muted\">({})</span></td></tr>",
                escape(&s.id),
                escape(&s.state),
                escape(&s.matchers.join(", ")),
                timefmt::date_time(s.ends, zone),
                escape(&s.comment),
                escape(&s.created_by)
            );
        }
        out.push_str("</table>");
    }
    if !muted.is_empty() {
        out.push_str(
            "<table class=\"nodes\"><tr><th>alert</th><th>since</th><th>why not sent</th></tr>",
        );
        for a in muted {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{} by {}</td></tr>",
                escape(&a.summary),
                timefmt::date_time(a.since, zone),
                escape(&a.state),
                escape(a.by.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    if !view.acks.is_empty() {
        out.push_str(
            "<table class=\"nodes\" id=\"acks\"><tr><th>acknowledged</th><th>by</th><th>at</th></tr>",
        );
        for a in &view.acks {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.key),
                escape(&a.by),
                timefmt::date_time(a.at, zone)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}
