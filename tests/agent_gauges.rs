//! Application gauges against real inputs: a log file the test writes (rotation, truncation, a line
//! written in two parts), alerting log lines, a shell command (number, failure, timeout), a
//! filesystem, and an HTTP JSON endpoint served by a local axum server.

mod agent_support;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_support::{free_port, parse_config, Driver};
use sipwatch::agent::events::AgentEvent;
use sipwatch::agent::report::LimitSource;

/// A config whose one service is this test process (so process gauges work) with extra gauges.
fn config_with(dir: &Path, gauges: &str) -> sipwatch::agent::AgentConfig {
    let pidfile = dir.join("self.pid");
    std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
    parse_config(&format!(
        "[agent]\nstate_dir = \"{}\"\n[[service]]\nname = \"app\"\npidfile = \"{}\"\n{gauges}",
        dir.join("state").display(),
        pidfile.display()
    ))
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

const STATS: &str = r#"2024-05-02 10:00:01 "webbridge": INFO : [DEBUGGING] Stats"#;

#[tokio::test]
async fn log_regex_follows_a_log_across_rotation_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("webbridge.log");
    append(&log, &format!("{STATS} 5, c:1, d:1\n"));
    let config = config_with(
        dir.path(),
        &format!(
            r#"
[[service.gauge]]
kind = "log_regex"
name = "sessions"
file = "{log}"
regex = 'Stats (\d+)'
limit = 149
[[service.gauge]]
kind = "log_alert"
name = "stats_lines"
file = "{log}"
patterns = ['Stats \d+, c:']
"#,
            log = log.display()
        ),
    );
    let mut d = Driver::new(&config);
    d.tick().await;
    assert_eq!(
        d.gauge("sessions").value,
        None,
        "lines written before the agent started are skipped"
    );
    assert_eq!(d.gauge("sessions").limit, Some(149.0));
    assert_eq!(d.gauge("sessions").limit_source, Some(LimitSource::Config));

    append(&log, &format!("{STATS} 149, c:3477, d:3170\n"));
    d.tick().await;
    assert_eq!(d.gauge("sessions").value, Some(149.0));

    append(
        &log,
        &format!("{STATS} 13, c:1, d:1\nunrelated\n{STATS} 14, c:1, d:1\n"),
    );
    d.tick().await;
    assert_eq!(
        d.gauge("sessions").value,
        Some(14.0),
        "the newest matching line wins"
    );
    assert_eq!(
        d.gauge("sessions").samples,
        2,
        "one sample per tick with new lines"
    );

    // logrotate's rename: the old writer adds a last line to the renamed file, then a new file.
    std::fs::rename(&log, dir.path().join("webbridge.log.1")).unwrap();
    append(
        &dir.path().join("webbridge.log.1"),
        &format!("{STATS} 15, c:1, d:1\n"),
    );
    append(&log, &format!("{STATS} 16, c:1, d:1\n"));
    d.tick().await;
    assert_eq!(d.gauge("sessions").value, Some(16.0));
    assert_eq!(
        d.gauge("stats_lines").value,
        Some(5.0),
        "no line lost across the rotation (149, 13, 14, 15, 16)"
    );

    // copytruncate: same file, emptied, then written again (shorter than before).
    std::fs::write(&log, format!("{STATS} 7, c:1, d:1\n")).unwrap();
    d.tick().await;
    assert_eq!(d.gauge("sessions").value, Some(7.0));

    // A line written in two parts is read once complete.
    append(&log, &format!("{STATS} 1"));
    d.tick().await;
    assert_eq!(d.gauge("sessions").value, Some(7.0));
    append(&log, "8, c:1, d:1\n");
    d.tick().await;
    assert_eq!(d.gauge("sessions").value, Some(18.0));
    assert!(d.gauge("sessions").error.is_none());

    // The file disappears: an error, reported once; it comes back: read from its start.
    std::fs::remove_file(&log).unwrap();
    d.tick().await;
    d.tick().await;
    assert!(d
        .gauge("sessions")
        .error
        .as_deref()
        .unwrap_or("")
        .contains("cannot read log file"));
    let failed = d
        .events
        .iter()
        .filter(|e| matches!(e, AgentEvent::GaugeFailed { gauge, .. } if gauge == "sessions"))
        .count();
    assert_eq!(failed, 1);
    append(&log, &format!("{STATS} 3, c:1, d:1\n"));
    d.tick().await;
    assert_eq!(d.gauge("sessions").value, Some(3.0));
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, AgentEvent::GaugeRecovered { gauge, .. } if gauge == "sessions")));
}

#[tokio::test]
async fn kamailio_shm_log_lines_alert_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kamailio.log");
    append(&log, "");
    let config = config_with(
        dir.path(),
        &format!(
            r#"
[[service.gauge]]
kind = "log_alert"
name = "shm_errors"
file = "{}"
patterns = ["no more shm memory", "could not allocate shared memory"]
"#,
            log.display()
        ),
    );
    let mut d = Driver::new(&config);
    d.tick().await;
    append(
        &log,
        " 5(123) INFO: <core> [main.c:1]: all fine\n\
         12(4567) ERROR: htable [ht_api.c:119]: ht_cell_new(): no more shm memory\n\
         12(4567) ERROR: tm [t_funcs.c:1]: could not allocate shared memory from shm pool\n",
    );
    d.tick().await;
    let alerts: Vec<(&str, &str)> = d
        .events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::LogAlert {
                pattern,
                line,
                gauge,
                ..
            } if gauge == "shm_errors" => Some((pattern.as_str(), line.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 2, "{:?}", d.events);
    assert_eq!(alerts[0].0, "no more shm memory");
    assert!(alerts[0].1.contains("ht_cell_new()"));
    assert_eq!(alerts[1].0, "could not allocate shared memory");
    assert_eq!(d.gauge("shm_errors").value, Some(2.0));
    assert!(
        !d.gauge("shm_errors").detect,
        "alert counts are not leak-detected"
    );
    assert!(d
        .metrics
        .encode()
        .contains(r#"sipwatch_log_alerts_total{service="app",gauge="shm_errors"} 2"#));
}

#[tokio::test]
async fn command_gauge_reads_a_number_and_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!(
        "{}.{}",
        30 + rand::random::<u8>() % 50,
        rand::random::<u16>()
    );
    let config = config_with(
        dir.path(),
        &format!(
            r#"
[[service.gauge]]
kind = "command"
name = "sessions"
command = "echo 'webbridge: sessions 42 of 149'"
[[service.gauge]]
kind = "command"
name = "failing"
command = "echo oops >&2; exit 3"
[[service.gauge]]
kind = "command"
name = "silent"
command = "echo no number here"
[[service.gauge]]
kind = "command"
name = "hung"
command = "sleep {marker} | cat"
timeout = "300ms"
"#
        ),
    );
    let mut d = Driver::new(&config);
    let started = Instant::now();
    d.tick().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the hung command is cut at its timeout"
    );
    assert_eq!(d.gauge("sessions").value, Some(42.0));
    let failing = d.gauge("failing").error.clone().unwrap_or_default();
    assert!(
        failing.contains("command failed") && failing.contains("oops"),
        "{failing}"
    );
    assert!(d
        .gauge("silent")
        .error
        .as_deref()
        .unwrap_or("")
        .contains("printed no number"));
    assert!(d
        .gauge("hung")
        .error
        .as_deref()
        .unwrap_or("")
        .contains("did not finish within"));
    // The whole pipeline was killed, not only the shell.
    agent_support::wait_until("the hung sleep killed", Duration::from_secs(5), || {
        !std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c).replace('\0', " ").trim()
                        == format!("sleep {marker}")
                })
                .unwrap_or(false)
        })
    });
}

#[tokio::test]
async fn filesystem_gauge_sees_a_file_written() {
    let base = if Path::new("/dev/shm").is_dir() {
        Path::new("/dev/shm")
    } else {
        Path::new("/tmp")
    };
    let fs_dir = tempfile::tempdir_in(base).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &format!(
            "[[service.gauge]]\nkind = \"filesystem\"\nname = \"spool\"\npath = \"{}\"\n",
            fs_dir.path().display()
        ),
    );
    let mut d = Driver::new(&config);
    d.tick().await;
    let before = d.gauge("spool").value.expect("used bytes");
    let size = d.gauge("spool").limit.expect("usable size found");
    assert!(size > before && d.gauge("spool").limit_source == Some(LimitSource::Found));
    // Compare with df.
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=used,avail"])
        .arg(fs_dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&df.stdout);
    let nums: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        (nums[0] - before).abs() <= 0.02 * size,
        "df used {} vs gauge {before}",
        nums[0]
    );
    assert!(
        (nums[0] + nums[1] - size).abs() <= 0.02 * size,
        "df size {} vs gauge {size}",
        nums[0] + nums[1]
    );

    let mut f = std::fs::File::create(fs_dir.path().join("recording.wav")).unwrap();
    f.write_all(&vec![7u8; 64 << 20]).unwrap();
    f.sync_all().unwrap();
    d.tick_until(Duration::from_secs(10), "64 MiB more used", |r| {
        r.gauges
            .iter()
            .any(|g| g.name == "spool" && g.value.is_some_and(|v| v >= before + 60.0 * 1048576.0))
    })
    .await;
}

#[tokio::test]
async fn http_json_gauge_reads_a_pointer_and_reports_failures() {
    use axum::routing::get;
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route(
            "/stats",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    axum::Json(serde_json::json!({"sessions": {"active": n * 10, "limit": "149"}}))
                }
            }),
        )
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/text", get(|| async { "sessions=3" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        &format!(
            r#"
[[service.gauge]]
kind = "http_json"
name = "active"
url = "http://127.0.0.1:{port}/stats"
pointer = "/sessions/active"
limit = 149
[[service.gauge]]
kind = "http_json"
name = "limit_as_string"
url = "http://127.0.0.1:{port}/stats"
pointer = "/sessions/limit"
[[service.gauge]]
kind = "http_json"
name = "missing"
url = "http://127.0.0.1:{port}/stats"
pointer = "/sessions/gone"
[[service.gauge]]
kind = "http_json"
name = "broken"
url = "http://127.0.0.1:{port}/broken"
pointer = "/x"
[[service.gauge]]
kind = "http_json"
name = "text"
url = "http://127.0.0.1:{port}/text"
pointer = "/x"
[[service.gauge]]
kind = "http_json"
name = "refused"
url = "http://127.0.0.1:{closed}/stats"
pointer = "/x"
timeout = "1s"
"#
        ),
    );
    let mut d = Driver::new(&config);
    d.tick().await;
    let first = d.gauge("active").value.expect("a value");
    assert!(first >= 10.0 && first % 10.0 == 0.0, "{first}");
    d.tick().await;
    assert!(
        d.gauge("active").value.unwrap() > first,
        "read again each tick"
    );
    assert_eq!(d.gauge("limit_as_string").value, Some(149.0));
    let err = |name: &str| d.gauge(name).error.clone().unwrap_or_default();
    assert!(
        err("missing").contains("nothing at pointer \"/sessions/gone\""),
        "{}",
        err("missing")
    );
    assert!(err("broken").contains("HTTP 500"), "{}", err("broken"));
    assert!(
        err("text").contains("did not answer JSON"),
        "{}",
        err("text")
    );
    assert!(
        err("refused").contains("connection refused"),
        "{}",
        err("refused")
    );
    assert!(d
        .metrics
        .encode()
        .contains(r#"sipwatch_gauge_errors_total{service="app",gauge="broken"} 2"#));
}
