//! Finding the real programs the tests need, and children that do not outlive their test.

use std::path::PathBuf;
use std::process::{Child, Command};

/// The Python interpreter the fixtures run (Debian's, where its packages are installed).
pub const PYTHON: &str = "/usr/bin/python3";

/// The path of `program` on PATH (or in an sbin directory); fails with the install command when
/// it is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    match dirs.iter().map(|d| d.join(program)).find(|p| p.is_file()) {
        Some(p) => p,
        None => panic!(
            "{program} is not installed; this test needs the real thing: apt-get install -y {package}"
        ),
    }
}

/// Fails with the install command unless [`PYTHON`] can import `module`.
pub fn require_python_module(module: &str, package: &str) {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: apt-get install -y {package}"
    );
    let imported = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        imported,
        "{module} is not importable by {PYTHON}: apt-get install -y {package}"
    );
}

/// A background process (SIPp, dnsmasq, an agent) killed on drop.
pub struct Background {
    pub child: Child,
    pub name: String,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
