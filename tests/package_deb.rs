//! The .deb, as a user installs it: built by `.ci/build-deb` with cargo-deb from the binary this
//! test run built (the dev profile, so CI does not pay for a second, release build), installed
//! with `dpkg -i`, then used: `sipwatch --version`, the man pages, the bash completion, the
//! sysusers.d user and tmpfiles.d directories, check-config on the shipped examples, and the
//! installed daemon started as the `sipwatch` user. Needs root (dpkg) and cargo-deb; fails with
//! the fix when either is missing. The package is purged at the end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{describe, free_sip_port, http_get, require, wait_until_or};

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

/// Purges the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "sipwatch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn build_deb(out_dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        has_cargo_deb,
        "cargo-deb is not installed; install it with: cargo install cargo-deb --locked --version 3.8.0 \
         (tests/install-deps.sh does)"
    );
    // The test binary and the sipwatch binary share this target dir: .../debug/deps/THIS.
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sipwatch"));
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in TARGET/debug");
    let out = run(Command::new(root.join(".ci/build-deb"))
        .args(["--profile", "dev", "--no-build"])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("DEB_OUT", out_dir));
    assert!(
        out.status.success(),
        ".ci/build-deb failed: {}",
        describe(&out)
    );
    std::fs::read_dir(out_dir)
        .expect("read the .deb output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}: {}", out_dir.display(), describe(&out)))
}

#[test]
fn the_deb_installs_and_runs() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test installs the .deb with dpkg -i and needs root; run the tests as root (CI does)"
    );
    require("dpkg", "dpkg");
    require("systemd-sysusers", "systemd");
    require("systemd-tmpfiles", "systemd");
    require("setpriv", "util-linux");
    require("man", "man-db");

    let work = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(&work.path().join("deb"));

    // What dpkg-deb says the package holds.
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let listing = String::from_utf8_lossy(&contents.stdout).to_string();
    for path in [
        "./usr/bin/sipwatch",
        "./usr/lib/systemd/system/sipwatch.service",
        "./usr/lib/systemd/system/sipwatch-agent.service",
        "./usr/lib/sysusers.d/sipwatch.conf",
        "./usr/lib/tmpfiles.d/sipwatch.conf",
        "./usr/share/doc/sipwatch/examples/sipwatch.toml",
        "./usr/share/doc/sipwatch/examples/agent.toml",
        "./usr/share/doc/sipwatch/copyright",
        "./usr/share/man/man1/sipwatch.1.gz",
        "./usr/share/man/man1/sipwatch-probe.1.gz",
        "./usr/share/bash-completion/completions/sipwatch",
        "./usr/share/zsh/vendor-completions/_sipwatch",
        "./usr/share/fish/vendor_completions.d/sipwatch.fish",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the .deb:\n{listing}"
        );
    }

    let _ = Command::new("dpkg").args(["--purge", "sipwatch"]).output();
    let guard = Installed;
    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(out.status.success(), "dpkg -i failed: {}", describe(&out));

    // The installed binary.
    let out = run(Command::new("/usr/bin/sipwatch").arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sipwatch {}", env!("CARGO_PKG_VERSION")),
        "{}",
        describe(&out)
    );

    // The installed units name the installed binary and an existing user.
    require("systemd-analyze", "systemd");
    let out = run(Command::new("systemd-analyze").args([
        "verify",
        "/usr/lib/systemd/system/sipwatch.service",
        "/usr/lib/systemd/system/sipwatch-agent.service",
    ]));
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        describe(&out)
    );

    // postinst ran systemd-sysusers: the user exists, as a system user without a login shell.
    let out = run(Command::new("getent").args(["passwd", "sipwatch"]));
    let passwd = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "no sipwatch user after install");
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "sipwatch is not a system user: {passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");

    // The tmpfiles.d entry creates the state directories with the owner the units expect (boot
    // does this on a systemd machine; here we apply it as boot would).
    let out =
        run(Command::new("systemd-tmpfiles")
            .args(["--create", "/usr/lib/tmpfiles.d/sipwatch.conf"]));
    assert!(out.status.success(), "systemd-tmpfiles: {}", describe(&out));
    for dir in [
        "/var/lib/sipwatch",
        "/var/lib/sipwatch/agent",
        "/etc/sipwatch",
    ] {
        let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(meta.is_dir(), "{dir} is not a directory");
    }
    let owner = run(Command::new("stat").args(["-c", "%U:%G %a", "/var/lib/sipwatch"]));
    assert_eq!(
        String::from_utf8_lossy(&owner.stdout).trim(),
        "sipwatch:sipwatch 750"
    );

    // The man page is the clap definition, rendered (the exit-code table of probe --help).
    let out = run(Command::new("man")
        .args(["-P", "cat", "sipwatch-probe"])
        .env("MANWIDTH", "100"));
    let page = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "man sipwatch-probe: {}",
        describe(&out)
    );
    assert!(page.contains("UNKNOWN"), "{page}");
    assert!(page.contains("--warn-rtt"), "{page}");

    // The bash completion registers itself and completes subcommands.
    let out = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/sipwatch && complete -p sipwatch",
    ]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sipwatch"),
        "{}",
        describe(&out)
    );

    // check-config on the shipped examples; the daemon example names secret files under
    // /etc/sipwatch, which a user creates first: here they are made in a temp dir instead.
    let secrets = work.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("probe.pw"), "probe-password\n").unwrap();
    std::fs::write(secrets.join("agent.token"), "agent-token\n").unwrap();
    std::fs::write(secrets.join("ca.pem"), "").unwrap();
    let example = std::fs::read_to_string("/usr/share/doc/sipwatch/examples/sipwatch.toml")
        .expect("the daemon example is installed");
    let daemon_example = work.path().join("sipwatch.toml");
    std::fs::write(
        &daemon_example,
        example.replace("/etc/sipwatch/", &format!("{}/", secrets.display())),
    )
    .unwrap();
    let out = run(Command::new("/usr/bin/sipwatch")
        .arg("check-config")
        .arg(&daemon_example));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("daemon config OK"),
        "{}",
        describe(&out)
    );
    let out = run(Command::new("/usr/bin/sipwatch").args([
        "check-config",
        "/usr/share/doc/sipwatch/examples/agent.toml",
    ]));
    assert!(out.status.success(), "{}", describe(&out));

    // The installed daemon starts as the sipwatch user, writes its store in /var/lib/sipwatch
    // and serves /healthz.
    let run_dir = tempfile::Builder::new()
        .prefix("sipwatch-deb-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        run_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_sip_port());
    let store = format!("/var/lib/sipwatch/deb-test-{}.db", std::process::id());
    let config = run_dir.path().join("sipwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"{listen}\"\n[store]\npath = \"{store}\"\n\
             [[target]]\nname = \"nothing\"\nuri = \"sip:127.0.0.1:{}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
            free_sip_port()
        ),
    )
    .unwrap();
    let log = run_dir.path().join("daemon.log");
    // setpriv execs (no session wrapper in between), so SIGTERM reaches the daemon itself.
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=sipwatch",
            "--regid=sipwatch",
            "--init-groups",
            "/usr/bin/sipwatch",
            "run",
            "-c",
        ])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the installed daemon");
    wait_until_or(
        "the installed daemon's /healthz",
        Duration::from_secs(20),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || {
            http_get(&listen, "/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
        },
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("wait for the daemon");
    let owner = run(Command::new("stat").args(["-c", "%U", &store]));
    let _ = std::fs::remove_file(&store);
    let _ = std::fs::remove_file(format!("{store}-wal"));
    let _ = std::fs::remove_file(format!("{store}-shm"));
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "sipwatch");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI colour codes in a log that is not a terminal:\n{text}"
    );
    assert!(status.success(), "daemon exit {status:?}:\n{text}");
    drop(guard);
}
