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
