//! The unit files in systemd/ pass `systemd-analyze verify` (PID 1 here is not systemd, so units
//! cannot be started in tests; verify still checks directives, sandboxing options and ExecStart).

use std::process::Command;

#[test]
fn unit_files_verify() {
    let analyze = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("systemd-analyze"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("systemd-analyze is not installed: apt-get install -y systemd"));
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sipwatch");
    for unit in ["sipwatch.service", "sipwatch-agent.service"] {
        let text =
            std::fs::read_to_string(format!("{}/systemd/{unit}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/sipwatch "),
            "{unit} runs the installed binary"
        );
        assert!(text.contains("NoNewPrivileges=yes"), "{unit} is hardened");
        // Verify against the binary this build made (the installed path does not exist here).
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/bin/sipwatch", bin)).unwrap();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let problems: Vec<&str> = stderr.lines().filter(|l| l.contains(unit)).collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "{unit}: {stderr}"
        );
    }
}

#[test]
fn units_notify_watchdog_and_agree_with_the_example_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    for unit in ["sipwatch.service", "sipwatch-agent.service"] {
        let text = std::fs::read_to_string(format!("{root}/systemd/{unit}")).unwrap();
        for line in ["Type=notify", "Restart=on-failure", "NotifyAccess=main"] {
            assert!(text.lines().any(|l| l == line), "{unit} lacks {line}");
        }
        assert!(
            text.lines().any(|l| l.starts_with("WatchdogSec=")),
            "{unit} lacks WatchdogSec="
        );
    }
    let agent_unit =
        std::fs::read_to_string(format!("{root}/systemd/sipwatch-agent.service")).unwrap();
    let state_dir = agent_unit
        .lines()
        .find_map(|l| l.strip_prefix("StateDirectory="))
        .expect("the agent unit has a StateDirectory");
    let example = std::fs::read_to_string(format!("{root}/examples/agent.toml")).unwrap();
    let example: toml::Value = toml::from_str(&example).unwrap();
    assert_eq!(
        example["agent"]["state_dir"].as_str(),
        Some(format!("/var/lib/{state_dir}").as_str()),
        "examples/agent.toml writes where the unit lets the agent write"
    );
    let rule =
        std::fs::read_to_string(format!("{root}/systemd/sipwatch-agent.polkit.rules")).unwrap();
    assert!(
        rule.contains("org.freedesktop.systemd1.manage-units")
            && rule.contains("verb == \"restart\"")
    );
}

/// Runs a `sipwatch` command under a fake systemd notify socket with the watchdog on, and returns
/// the messages received until `want` are all seen.
fn notifications(args: &[&str], want: &[&str]) -> Vec<String> {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipwatch"))
        .args(args)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline
        && !want
            .iter()
            .all(|w| got.iter().any(|g: &String| g.starts_with(w)))
    {
        if let Ok(n) = sock.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "no {w} among {got:?}");
    }
    got
}

#[test]
fn agent_and_daemon_notify_ready_status_and_feed_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            "[agent]\nlisten = \"127.0.0.1:{port}\"\ninterval = \"1s\"\nstate_dir = \"{}\"\n[[service]]\nname = \"me\"\npidfile = \"{}\"\n",
            dir.path().join("state").display(),
            dir.path().join("none.pid").display()
        ),
    )
    .unwrap();
    let got = notifications(
        &["agent", "-c", agent.to_str().unwrap()],
        &["READY=1", "STATUS=", "WATCHDOG=1"],
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("STATUS=watching 1 services")),
        "{got:?}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sip = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = dir.path().join("sipwatch.toml");
    std::fs::write(
        &daemon,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[store]\npath = \"{}\"\n[[target]]\nname = \"a\"\nuri = \"sip:127.0.0.1:{sip}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
            dir.path().join("state.db").display()
        ),
    )
    .unwrap();
    let got = notifications(
        &["run", "-c", daemon.to_str().unwrap()],
        &["READY=1", "STATUS=probing", "WATCHDOG=1"],
    );
    assert!(!got.is_empty());
}
