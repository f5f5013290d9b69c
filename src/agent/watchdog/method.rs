//! How a restart (and a drain action) is done: `systemd` (the Manager's `RestartUnit` over the
//! system D-Bus, through zbus), `command` (a program run without a shell, killed after its
//! timeout, its output kept for the error) and `signal` (to the main process, for services whose
//! supervisor brings them back). JSON-RPC over HTTP for drain and undrain is here too.
//!
//! A method returns once the restart was asked for; whether the service really came back is the
//! verification's business ([`super::executor`]).

use std::process::Stdio;
use std::time::Duration;

use super::config::{Action, Method, RpcCall};

/// systemd's bus name, object and interface (org.freedesktop.systemd1(5)).
pub const SYSTEMD_DESTINATION: &str = "org.freedesktop.systemd1";
pub const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
pub const SYSTEMD_MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// `RestartUnit(in s name, in s mode, out o job)`.
pub const RESTART_UNIT: &str = "RestartUnit";

/// The arguments of `RestartUnit`: the unit, and the job mode `"replace"`.
pub fn restart_unit_args(unit: &str) -> (&str, &str) {
    (unit, "replace")
}

/// The D-Bus method call `RestartUnit` asks for (built, for checking; [`restart`] sends the same
/// destination, path, interface, member and arguments).
pub fn restart_unit_message(unit: &str) -> zbus::Result<zbus::message::Message> {
    zbus::message::Message::method_call(SYSTEMD_PATH, RESTART_UNIT)?
        .destination(SYSTEMD_DESTINATION)?
        .interface(SYSTEMD_MANAGER)?
        .build(&restart_unit_args(unit))
}

async fn systemd_restart(unit: &str) -> Result<String, String> {
    let fix = "the agent's user needs polkit permission to manage the unit: see systemd/sipwatch-agent.polkit.rules";
    let conn = zbus::Connection::system()
        .await
        .map_err(|e| format!("cannot reach the system D-Bus: {e}"))?;
    let reply = conn
        .call_method(
            Some(SYSTEMD_DESTINATION),
            SYSTEMD_PATH,
            Some(SYSTEMD_MANAGER),
            RESTART_UNIT,
            &restart_unit_args(unit),
        )
        .await
        .map_err(|e| format!("systemd RestartUnit({unit}) failed: {e}; {fix}"))?;
    let job: zbus::zvariant::OwnedObjectPath = reply
        .body()
        .deserialize()
        .map_err(|e| format!("systemd answered RestartUnit oddly: {e}"))?;
    Ok(format!("systemd job {}", job.as_str()))
}

/// Runs a program (no shell) with a timeout; Ok with a short note, Err with what went wrong and
/// the end of its output.
pub async fn run_command(argv: &[String], timeout: Duration) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {program}: {e}; check the path and that the agent's user may run it"
            )
        })?;
    // The error output is read aside: a daemon the command starts may keep the pipe open.
    let mut stderr = child.stderr.take();
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut buf).await;
        }
        buf
    });
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            reader.abort();
            return Err(format!(
                "{program} did not finish within {}; it was killed (raise timeout or make the command return)",
                sipwatch_alerting::duration::format_seconds(timeout.as_secs_f64())
            ));
        }
        Ok(Err(e)) => return Err(format!("{program}: {e}")),
        Ok(Ok(status)) => status,
    };
    if status.success() {
        reader.abort();
        return Ok(format!("{program} exited 0"));
    }
    let text = match tokio::time::timeout(Duration::from_millis(300), reader).await {
        Ok(Ok(buf)) => String::from_utf8_lossy(&buf).into_owned(),
        _ => String::new(),
    };
    let tail: String = text
        .trim()
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("{program} failed ({status}): {tail}"))
}

/// Calls a JSON-RPC 2.0 method over HTTP; an `error` member in the answer is a failure.
pub async fn call_rpc(
    client: &reqwest::Client,
    rpc: &RpcCall,
    timeout: Duration,
) -> Result<String, String> {
    let body =
        serde_json::json!({"jsonrpc": "2.0", "method": rpc.method, "params": rpc.params, "id": 1});
    let answer = client
        .post(&rpc.url)
        .timeout(timeout)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("JSON-RPC {} at {}: {e}", rpc.method, rpc.url))?;
    let status = answer.status();
    let value: serde_json::Value = answer.json().await.map_err(|e| {
        format!(
            "JSON-RPC {} at {}: HTTP {status}, not JSON: {e}",
            rpc.method, rpc.url
        )
    })?;
    if let Some(err) = value.get("error") {
        return Err(format!(
            "JSON-RPC {} at {} answered an error: {err}",
            rpc.method, rpc.url
        ));
    }
    Ok(format!("{} ok", rpc.method))
}

/// Carries out a drain or undrain action.
pub async fn run_action(
    client: &reqwest::Client,
    action: &Action,
    timeout: Duration,
) -> Result<String, String> {
    match action {
        Action::Command(argv) => run_command(argv, timeout).await,
        Action::Rpc(rpc) => call_rpc(client, rpc, timeout).await,
    }
}

/// Asks for the restart.
pub async fn restart(method: &Method, main_pid: Option<i32>) -> Result<String, String> {
    match method {
        Method::Systemd { unit } => systemd_restart(unit).await,
        Method::Command { argv, timeout } => run_command(argv, *timeout).await,
        Method::Signal { signal, name } => {
            let pid = main_pid
                .filter(|p| *p > 1)
                .ok_or_else(|| "the service has no main process to signal".to_owned())?;
            // SAFETY: kill(2) with a pid the agent found for this service and a fixed signal.
            let rc = unsafe { libc::kill(pid, *signal) };
            if rc == 0 {
                Ok(format!("SIG{name} sent to pid {pid}"))
            } else {
                Err(format!(
                    "cannot send SIG{name} to pid {pid}: {}",
                    std::io::Error::last_os_error()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_unit_message_matches_the_documented_signature() {
        let msg = restart_unit_message("kamailio.service").unwrap();
        let header = msg.header();
        assert_eq!(header.message_type(), zbus::message::Type::MethodCall);
        assert_eq!(
            header.destination().unwrap().as_str(),
            "org.freedesktop.systemd1"
        );
        assert_eq!(header.path().unwrap().as_str(), "/org/freedesktop/systemd1");
        assert_eq!(
            header.interface().unwrap().as_str(),
            "org.freedesktop.systemd1.Manager"
        );
        assert_eq!(header.member().unwrap().as_str(), "RestartUnit");
        let body = msg.body();
        // org.freedesktop.systemd1(5): RestartUnit(in s name, in s mode, out o job): two string
        // arguments, not one structure.
        assert_eq!(body.signature().to_string_no_parens(), "ss");
        assert_eq!(header.signature().to_string_no_parens(), "ss");
        let (unit, mode): (String, String) = body.deserialize().unwrap();
        assert_eq!(
            (unit.as_str(), mode.as_str()),
            ("kamailio.service", "replace")
        );
    }

    #[tokio::test]
    async fn commands_run_without_a_shell_and_time_out() {
        let ok = run_command(&["true".into()], Duration::from_secs(5)).await;
        assert!(ok.is_ok(), "{ok:?}");
        let e = run_command(
            &["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.contains("boom"), "{e}");
        let e = run_command(&["sleep".into(), "10".into()], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.contains("killed"), "{e}");
        let e = run_command(&["echo $HOME".into()], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("cannot run"), "no shell: {e}");
    }
}
