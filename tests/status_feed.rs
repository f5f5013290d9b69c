//! The daemon's status feed as a reader sees it: `[[maintenance]]` windows in
//! `scheduled_maintenances` and on `/api/v2/scheduled-maintenances{,/upcoming,/active}.json`,
//! times in the configured `[status] time_zone`, and incident text in words. Runs the real
//! daemon against a port where nothing answers.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Timelike};
use common::{free_sip_port, wait_until_or, Daemon};

#[test]
fn maintenances_zone_and_incident_words() {
    let zone: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let now = chrono::Utc::now().with_timezone(&zone);
    // A window open now (it began at the top of this hour, lasts two hours) and one later today
    // or tomorrow (three hours after the top of this hour).
    let open_at = format!("daily {:02}:00", now.hour());
    let later = (now.hour() + 3) % 24;
    let later_at = format!("daily {later:02}:00");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let config = dir.path().join("sipwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[http]
listen = "{listen}"
[store]
path = "{store}"
[status]
page_name = "Voice"
time_zone = "America/New_York"
[defaults]
interval = "200ms"
timeout = "150ms"
fail_threshold = 1
[[target]]
name = "recorder"
uri = "sip:127.0.0.1:{dead}"
[[target]]
name = "edge"
uri = "sip:127.0.0.1:{dead2}"
group = "edges"
[[group]]
name = "edges"
min_up = 1
[[maintenance]]
schedule = "{open_at}"
duration = "2h"
targets = ["recorder"]
[[maintenance]]
schedule = "{later_at}"
duration = "30m"
groups = ["edges"]
"#,
            store = dir.path().join("state.db").display(),
            dead = free_sip_port(),
            dead2 = free_sip_port(),
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &listen, &dir.path().join("daemon.log"));

    let summary = daemon.json("/api/v2/summary.json");
    assert_eq!(summary["page"]["time_zone"], "America/New_York");
    let all = summary["scheduled_maintenances"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(all.len(), 2, "{summary:#}");
    // Soonest first: the open one.
    assert_eq!(all[0]["status"], "in_progress", "{summary:#}");
    assert_eq!(all[0]["impact"], "maintenance");
    assert_eq!(all[0]["components"][0]["name"], "recorder");
    let top_of_hour = zone
        .with_ymd_and_hms(now.year_(), now.month_(), now.day_(), now.hour(), 0, 0)
        .single()
        .unwrap();
    assert_eq!(
        all[0]["scheduled_for"],
        top_of_hour
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    );
    assert_eq!(all[1]["status"], "scheduled");
    let body = all[1]["incident_updates"][0]["body"].as_str().unwrap();
    assert!(body.contains(&format!("{later:02}:00 E")), "{body}"); // EST or EDT
    assert!(body.contains("30 min"), "{body}");

    let active = daemon.json("/api/v2/scheduled-maintenances/active.json");
    let upcoming = daemon.json("/api/v2/scheduled-maintenances/upcoming.json");
    let feed = daemon.json("/api/v2/scheduled-maintenances.json");
    assert_eq!(
        active["scheduled_maintenances"].as_array().unwrap().len(),
        1
    );
    assert_eq!(active["scheduled_maintenances"][0]["status"], "in_progress");
    assert_eq!(
        upcoming["scheduled_maintenances"].as_array().unwrap().len(),
        1
    );
    assert_eq!(upcoming["scheduled_maintenances"][0]["status"], "scheduled");
    assert_eq!(feed["scheduled_maintenances"].as_array().unwrap().len(), 2);

    // The edge's only node is down: an incident in words, in the page's zone.
    wait_until_or(
        "an incident for edge",
        Duration::from_secs(20),
        || daemon.log_text(),
        || {
            daemon.json("/api/v2/incidents/unresolved.json")["incidents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["name"] == "edge: down"))
        },
    );
    let incidents = daemon.json("/api/v2/incidents/unresolved.json");
    let edge = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "edge: down")
        .unwrap()
        .clone();
    let text = edge["incident_updates"][0]["body"].as_str().unwrap();
    assert!(text.contains(" down since "), "{text}");
    assert!(text.contains(" ES") || text.contains(" ED"), "{text}");
    let longest_number = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_number < 9, "no unix time: {text}");

    // Logs to a file (not a terminal): no ANSI colour codes.
    let log = daemon.log_text();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI codes in a log file:\n{log}");

    // The page shows its times in the zone too.
    let (status, page) = common::http_get(&listen, "/").unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Scheduled maintenance"), "{page}");
    assert!(page.contains(" EST") || page.contains(" EDT"), "{page}");
}

/// Month, day and year of a zoned time without pulling the Datelike trait into every call.
trait Ymd {
    fn year_(&self) -> i32;
    fn month_(&self) -> u32;
    fn day_(&self) -> u32;
}

impl<Tz: chrono::TimeZone> Ymd for chrono::DateTime<Tz> {
    fn year_(&self) -> i32 {
        chrono::Datelike::year(self)
    }
    fn month_(&self) -> u32 {
        chrono::Datelike::month(self)
    }
    fn day_(&self) -> u32 {
        chrono::Datelike::day(self)
    }
}

/// `sipwatch_probe_up` (and `sipwatch_node_up`) are absent until the target has a verdict, so an
/// `sipwatch_probe_up == 0` rule does not fire while a daemon starts; then the 0 appears.
#[test]
fn probe_up_is_absent_until_the_first_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let config = dir.path().join("sipwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{}\"\n\
             [[target]]\nname = \"dead\"\nuri = \"sip:127.0.0.1:{}\"\ninterval = \"1s\"\n\
             timeout = \"300ms\"\nfail_threshold = 3\n",
            dir.path().join("state.db").display(),
            free_sip_port()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&config, &listen, &dir.path().join("daemon.log"));
    let metrics = || common::http_get(&listen, "/metrics").unwrap().1;
    // Three failures one second apart are needed: for the first two seconds there is no verdict.
    let body = metrics();
    assert!(body.contains("sipwatch_build_info{"), "{body}");
    assert!(!body.contains("sipwatch_probe_up{"), "{body}");
    assert!(!body.contains("sipwatch_node_up{"), "{body}");
    wait_until_or(
        "sipwatch_probe_up 0 after three failures",
        Duration::from_secs(20),
        || daemon.log_text(),
        || metrics().contains(r#"sipwatch_probe_up{target="dead",group=""} 0"#),
    );
    assert!(metrics().contains(r#"sipwatch_node_up{target="dead",node="127.0.0.1:"#));
}
