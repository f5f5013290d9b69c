//! The daemon's HTTP layer against strangers: bodies are not read before the token is checked,
//! bodies are capped per route, slow headers and idle connections are closed, and a flood of
//! connections neither exhausts file descriptors nor keeps `/healthz` from answering for long.
//! The limits are those of `sipwatch::daemon::http::serve::Limits::default()`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "the-real-agent-token";

fn start_daemon(dir: &std::path::Path) -> Daemon {
    let token = dir.join("agent.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let cfg = dir.join("sipwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[http]
listen = "{listen}"
[store]
path = "{db}"
[agents]
token_file = "{token}"
[[target]]
name = "closed"
uri = "sip:127.0.0.1:{port}"
interval = "10s"
timeout = "1s"
"#,
            db = dir.join("state.db").display(),
            token = token.display(),
            port = free_sip_port(),
        ),
    )
    .unwrap();
    Daemon::start(&cfg, &listen, &dir.join("daemon.log"))
}

fn pid(d: &Daemon) -> u32 {
    d.child.as_ref().expect("running").id()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The status code of whatever the server answered on `s` within `wait`, if anything.
fn status_within(s: &mut TcpStream, wait: Duration) -> Option<u16> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

/// Whether the server closed `s` within `wait` (EOF or reset).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn post_head(listen: &str, token: &str, length: usize) -> String {
    format!(
        "POST /api/v1/agents/report HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[test]
fn unauthenticated_bodies_are_never_read_and_bodies_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());
    let pid = pid(&daemon);
    let before = rss_kib(pid);

    // 300 strangers announce 900 kB bodies (under the 1 MiB cap of the route) and send the first
    // 64 KiB: each is refused at once, without the daemon waiting for (or buffering) the rest.
    let chunk = vec![b'x'; 64 * 1024];
    let mut held = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(&daemon.listen).unwrap();
        s.write_all(post_head(&daemon.listen, "wrong", 900_000).as_bytes())
            .unwrap();
        let _ = s.write_all(&chunk);
        let status = status_within(&mut s, Duration::from_secs(5));
        assert_eq!(
            status,
            Some(401),
            "stranger #{i} was not refused before its body"
        );
        held.push(s);
    }
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "300 held unauthenticated uploads grew the daemon by {grown} KiB (limit 64 MiB)"
    );
    drop(held);

    // A request head over 64 KiB is refused (431).
    let mut s = TcpStream::connect(&daemon.listen).unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let _ = s.write_all(big.as_bytes());
    assert_eq!(status_within(&mut s, Duration::from_secs(5)), Some(431));

    // With the right token, a body over the route's cap is refused (413), not read.
    let mut s = TcpStream::connect(&daemon.listen).unwrap();
    s.write_all(post_head(&daemon.listen, TOKEN, 2_000_000).as_bytes())
        .unwrap();
    assert_eq!(status_within(&mut s, Duration::from_secs(5)), Some(413));
    // A report within the cap is still accepted.
    let body = r#"{"host":"h1","services":[]}"#;
    let mut s = TcpStream::connect(&daemon.listen).unwrap();
    s.write_all(post_head(&daemon.listen, TOKEN, body.len()).as_bytes())
        .unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let status = status_within(&mut s, Duration::from_secs(5));
    assert!(
        matches!(status, Some(202) | Some(400)),
        "an authenticated small body is read and judged: {status:?}"
    );
}

#[test]
fn slow_headers_idle_connections_and_floods_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(dir.path());
    let pid = pid(&daemon);
    let fds_before = open_fds(pid);

    // A request head that never ends, and a connection that never says anything.
    let mut partial = TcpStream::connect(&daemon.listen).unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut silent = TcpStream::connect(&daemon.listen).unwrap();
    // 700 more idle connections, past the 512 the daemon keeps open.
    let started = Instant::now();
    let flood: Vec<TcpStream> = (0..700)
        .filter_map(|_| TcpStream::connect(&daemon.listen).ok())
        .collect();
    assert!(
        flood.len() > 600,
        "the test could open only {} connections",
        flood.len()
    );

    // The daemon's descriptors stay bounded by its connection limit (plus its own files).
    std::thread::sleep(Duration::from_millis(500));
    let fds = open_fds(pid);
    assert!(
        fds <= fds_before + 512 + 16,
        "{fds} descriptors open with 700 idle connections (before: {fds_before})"
    );

    // /healthz answers within the header timeout (10 s) plus a generous margin.
    wait_until(
        "/healthz during a connection flood",
        Duration::from_secs(25),
        || http_get(&daemon.listen, "/healthz").is_ok_and(|(s, _)| s == 200),
    );
    assert!(
        closed_within(&mut partial, Duration::from_secs(25)),
        "a partial request head was still open after {:?}",
        started.elapsed()
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)),
        "a silent connection was still open after {:?}",
        started.elapsed()
    );
    drop(flood);
}
