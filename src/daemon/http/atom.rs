//! `/history.atom`: incidents as an Atom 1.0 feed (RFC 4287), one entry per incident, so people
//! can follow outages in a feed reader or a chat integration.
//!
//! Entry ids are `tag:` URIs built from the page's and the incident's stable ids, so a reader
//! sees a resolved incident as an update of the same entry, not a new one. Entry content is
//! HTML (the updates, newest first) escaped once for HTML and once more for XML; every
//! user-provided string goes through [`escape`]. Pure: time and URL come from the caller.

use std::fmt::Write;

use super::escape;
use super::statuspage::{incident_id, incident_status, page_name, rfc3339, stable_id};
use crate::daemon::model::{page_indicator, Incident, Snapshot, UnixTime};

/// The time an incident last changed (opened, updated or resolved).
pub fn last_change(incident: &Incident) -> UnixTime {
    incident
        .updates
        .iter()
        .map(|u| u.at)
        .chain(incident.resolved_at)
        .fold(incident.opened_at, f64::max)
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn entry_html(incident: &Incident) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<p>Impact: {}. Opened {}",
        page_indicator(incident.impact),
        rfc3339(incident.opened_at)
    );
    if let Some(r) = incident.resolved_at {
        let _ = write!(html, ", resolved {}", rfc3339(r));
    }
    html.push_str(".</p>");
    if !incident.affected.is_empty() {
        let affected: Vec<String> = incident
            .affected
            .iter()
            .map(|a| escape(a).into_owned())
            .collect();
        let _ = write!(html, "<p>Affected: {}</p>", affected.join(", "));
    }
    let mut updates: Vec<_> = incident.updates.iter().collect();
    updates.sort_by(|a, b| b.at.total_cmp(&a.at));
    for u in updates {
        let _ = write!(
            html,
            "<p><b>{}</b> ({}): {}</p>",
            escape(&capitalized(&u.status)),
            rfc3339(u.at),
            escape(&u.body)
        );
    }
    html
}

/// The feed for `incidents` (newest first). `url` is the page's URL, ending in `/`.
pub fn render(snapshot: &Snapshot, url: &str, incidents: &[Incident], now: UnixTime) -> String {
    let name = page_name(snapshot);
    let page_id = stable_id("page", name);
    let updated = incidents
        .iter()
        .map(last_change)
        .reduce(f64::max)
        .unwrap_or(if snapshot.generated_at > 0.0 {
            snapshot.generated_at
        } else {
            now
        });
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">\n");
    let _ = writeln!(xml, "  <id>tag:sipwatch,2024:{page_id}/history</id>");
    let _ = writeln!(xml, "  <title>{} incidents</title>", escape(name));
    let _ = writeln!(xml, "  <updated>{}</updated>", rfc3339(updated));
    let _ = writeln!(
        xml,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}history.atom\"/>",
        escape(url)
    );
    let _ = writeln!(
        xml,
        "  <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        escape(url)
    );
    xml.push_str("  <author><name>sipwatch</name></author>\n");
    xml.push_str("  <generator>sipwatch</generator>\n");
    for incident in incidents {
        let id = incident_id(incident);
        let status = incident_status(incident);
        let _ = writeln!(xml, "  <entry>");
        let _ = writeln!(
            xml,
            "    <id>tag:sipwatch,2024:{page_id}/incident/{id}</id>"
        );
        let _ = writeln!(
            xml,
            "    <title>[{}] {}</title>",
            escape(&capitalized(&status)),
            escape(&incident.title)
        );
        let _ = writeln!(
            xml,
            "    <published>{}</published>",
            rfc3339(incident.opened_at)
        );
        let _ = writeln!(
            xml,
            "    <updated>{}</updated>",
            rfc3339(last_change(incident))
        );
        let _ = writeln!(
            xml,
            "    <link rel=\"alternate\" type=\"text/html\" href=\"{}#incident-{id}\"/>",
            escape(url)
        );
        let _ = writeln!(
            xml,
            "    <category term=\"{}\"/>",
            page_indicator(incident.impact)
        );
        let _ = writeln!(
            xml,
            "    <content type=\"html\">{}</content>",
            escape(&entry_html(incident))
        );
        let _ = writeln!(xml, "  </entry>");
    }
    xml.push_str("</feed>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::http::statuspage::tests::snapshot;

    #[test]
    fn feed_escapes_and_names_entries() {
        let mut s = snapshot();
        s.open_incidents[0].title = "rec-2 <down> & \"out\"".to_owned();
        s.open_incidents[0].updates[0].body = "reason: <b>503</b>\u{1}".to_owned();
        let xml = render(&s, "http://h:1/", &s.open_incidents, 0.0);
        assert!(
            xml.contains("<title>[Identified] rec-2 &lt;down&gt; &amp; &quot;out&quot;</title>")
        );
        // Body escaped for HTML, then the HTML escaped for XML.
        assert!(
            xml.contains("reason: &amp;lt;b&amp;gt;503&amp;lt;/b&amp;gt;\u{FFFD}"),
            "{xml}"
        );
        assert!(xml.contains("<updated>2023-11-14T22:05:00.000Z</updated>"));
        assert!(xml.contains("href=\"http://h:1/#incident-"));
        assert_eq!(xml.matches("<entry>").count(), 1);
        assert!(!xml.contains('\u{1}'));
    }

    #[test]
    fn empty_feed_is_still_a_feed() {
        let xml = render(&Snapshot::default(), "http://h/", &[], 1_700_000_000.0);
        assert!(xml.contains("<updated>2023-11-14T22:13:20.000Z</updated>"));
        assert!(xml.contains("<title>sipwatch incidents</title>"));
        assert!(!xml.contains("<entry>"));
    }
}
