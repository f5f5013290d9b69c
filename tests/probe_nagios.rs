//! `sipwatch probe` as a Nagios plugin, run by a real Nagios Core (Debian `nagios4-core`): the
//! core executes the checks against a real Kamailio and a closed port, parses the output as the
//! plugin guidelines define it (status line, `|` performance data, long output) and writes what
//! it understood to status.dat, which this test reads back. Fails with the install command when
//! Nagios is missing.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_sip_port, require, wait_until_or, Background, Kamailio, KamailioSpec, ROUTE_OK};

/// The service blocks of a Nagios status.dat: service_description -> key -> value.
fn services(status: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out = HashMap::new();
    for block in status.split("servicestatus {").skip(1) {
        let body = block.split('}').next().unwrap_or_default();
        let fields: HashMap<String, String> = body
            .lines()
            .filter_map(|l| l.trim().split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(name) = fields.get("service_description") {
            out.insert(name.clone(), fields);
        }
    }
    out
}

fn write_config(dir: &Path, checks: &[(&str, String)]) -> std::path::PathBuf {
    let d = dir.display();
    let sipwatch = env!("CARGO_BIN_EXE_sipwatch");
    std::fs::create_dir_all(dir.join("checkresults")).unwrap();
    let mut objects = format!(
        "define timeperiod {{\n timeperiod_name always\n alias always\n monday 00:00-24:00\n \
         tuesday 00:00-24:00\n wednesday 00:00-24:00\n thursday 00:00-24:00\n friday 00:00-24:00\n \
         saturday 00:00-24:00\n sunday 00:00-24:00\n}}\n\
         define command {{\n command_name notify_nobody\n command_line /bin/true\n}}\n\
         define command {{\n command_name sipwatch_probe\n command_line {sipwatch} probe $ARG1$\n}}\n\
         define contact {{\n contact_name nobody\n host_notification_period always\n \
         service_notification_period always\n host_notification_commands notify_nobody\n \
         service_notification_commands notify_nobody\n}}\n\
         define host {{\n host_name loopback\n address 127.0.0.1\n max_check_attempts 1\n \
         check_period always\n contacts nobody\n notification_interval 0\n notification_period always\n \
         active_checks_enabled 0\n}}\n"
    );
    for (name, args) in checks {
        objects.push_str(&format!(
            "define service {{\n host_name loopback\n service_description {name}\n \
             check_command sipwatch_probe!{args}\n max_check_attempts 1\n check_interval 60\n \
             retry_interval 60\n check_period always\n contacts nobody\n notification_interval 0\n \
             notification_period always\n notifications_enabled 0\n}}\n"
        ));
    }
    std::fs::write(dir.join("objects.cfg"), objects).unwrap();
    let main = format!(
        "log_file={d}/nagios.log\ncfg_file={d}/objects.cfg\nobject_cache_file={d}/objects.cache\n\
         precached_object_file={d}/objects.precache\nstatus_file={d}/status.dat\nstatus_update_interval=1\n\
         temp_file={d}/nagios.tmp\ntemp_path={d}\nlock_file={d}/nagios.lock\ncheck_result_path={d}/checkresults\n\
         command_file={d}/nagios.cmd\ncheck_external_commands=0\nretain_state_information=0\n\
         state_retention_file={d}/retention.dat\nnagios_user=root\nnagios_group=root\ninterval_length=1\n\
         enable_notifications=0\nservice_inter_check_delay_method=n\nmax_service_check_spread=1\n\
         check_result_reaper_frequency=1\nlog_rotation_method=n\nenable_flap_detection=0\n\
         service_check_timeout=30\n"
    );
    let path = dir.join("nagios.cfg");
    std::fs::write(&path, main).unwrap();
    path
}

#[test]
fn nagios_core_reads_status_perfdata_and_long_output() {
    let nagios = require("nagios4", "nagios4-core");
    let port = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(port, ROUTE_OK));
    let up = format!("sip:127.0.0.1:{port}");
    let closed = format!("sip:127.0.0.1:{}", free_sip_port());

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &[
            ("sip_up", format!("-t 2 -w 150 -c 500 {up}")),
            ("sip_mixed", format!("-t 1 -w 150 -c 500 {up} {closed}")),
            ("sip_bad_args", format!("-t 2 --method invite {up}")),
        ],
    );
    let verify = Command::new(&nagios).arg("-v").arg(&cfg).output().unwrap();
    assert!(
        verify.status.success(),
        "nagios4 -v refuses the config:\n{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let child = Command::new(&nagios)
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nagios4");
    let _nagios = Background {
        child,
        name: "nagios4".into(),
    };
    let status_path = dir.path().join("status.dat");
    let log_path = dir.path().join("nagios.log");
    wait_until_or(
        "Nagios to run the three checks",
        Duration::from_secs(60),
        || std::fs::read_to_string(&log_path).unwrap_or_default(),
        || {
            let text = std::fs::read_to_string(&status_path).unwrap_or_default();
            let s = services(&text);
            s.len() == 3
                && s.values()
                    .all(|f| f.get("has_been_checked").map(String::as_str) == Some("1"))
        },
    );
    let text = std::fs::read_to_string(&status_path).unwrap();
    let s = services(&text);

    // One URI: OK, the status line without the perfdata, the perfdata Nagios split off.
    let ok = &s["sip_up"];
    assert_eq!(ok["current_state"], "0", "{ok:?}");
    assert!(
        ok["plugin_output"].starts_with(&format!("OK: {up} OPTIONS udp")),
        "{ok:?}"
    );
    assert!(!ok["plugin_output"].contains('|'), "{ok:?}");
    let perf = &ok["performance_data"];
    assert!(perf.starts_with("rtt="), "{ok:?}");
    assert!(
        perf.contains("ms;150;500;0 retransmissions=0;;;0"),
        "{ok:?}"
    );

    // Two URIs, one down: CRITICAL on the first line (the one Nagios shows and alerts on),
    // both probes in the long output, a perfdata series per URI.
    let mixed = &s["sip_mixed"];
    assert_eq!(mixed["current_state"], "2", "{mixed:?}");
    assert!(
        mixed["plugin_output"].starts_with("CRITICAL: 2 probes: 1 critical, 1 ok - "),
        "{mixed:?}"
    );
    assert!(mixed["plugin_output"].contains(&closed), "{mixed:?}");
    let long = &mixed["long_plugin_output"];
    assert!(long.contains(&format!("OK: {up} OPTIONS")), "{mixed:?}");
    assert!(
        long.contains(&format!("CRITICAL: {closed} OPTIONS")),
        "{mixed:?}"
    );
    let perf = &mixed["performance_data"];
    assert!(perf.contains(&format!("'{up} rtt'=")), "{mixed:?}");
    assert!(
        perf.contains(&format!("'{closed} rtt'=U;150;500;0")),
        "{mixed:?}"
    );

    // Bad arguments: UNKNOWN, with a line on stdout saying what was wrong.
    let bad = &s["sip_bad_args"];
    assert_eq!(bad["current_state"], "3", "{bad:?}");
    assert!(
        bad["plugin_output"].starts_with("UNKNOWN: ") && bad["plugin_output"].contains("invite"),
        "{bad:?}"
    );
}
