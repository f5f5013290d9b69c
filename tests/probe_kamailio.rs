//! `sipwatch probe` against real Kamailio on loopback: OPTIONS over UDP, TCP and TLS, REGISTER
//! with digest (MD5 and SHA-256), wrong passwords, 503, Max-Forwards 0, and the output contract
//! (JSON keys, Nagios exit codes, human lines, --count statistics, --verbose).

mod common;

use common::*;

#[test]
fn options_over_udp_tcp_and_tls() {
    let port = free_sip_port();
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path(), &["localhost", "127.0.0.1"], 200);
    let mut spec = KamailioSpec::new(port, ROUTE_OK);
    spec.tls = Some(tls.clone());
    let _k = Kamailio::start(spec);

    let udp = format!("sip:127.0.0.1:{port}");
    let tcp = format!("sip:127.0.0.1:{port};transport=tcp");
    let tls_uri = format!("sips:127.0.0.1:{}", port + 1);
    let ca = tls.ca.to_string_lossy().to_string();
    let out = sipwatch(&["probe", "--json", "--ca", &ca, &udp, &tcp, &tls_uri]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{}", describe(&out));
    for (line, (target, transport)) in
        lines
            .iter()
            .zip([(&udp, "udp"), (&tcp, "tcp"), (&tls_uri, "tls")])
    {
        assert_eq!(line["target"], target.as_str());
        assert_eq!(line["method"], "OPTIONS");
        assert_eq!(line["transport"], transport);
        assert_eq!(line["status"], "ok");
        assert_eq!(line["result"], "ok");
        assert_eq!(line["code"], 200);
        assert_eq!(line["reason"], "OK");
        assert_eq!(line["retransmissions"], 0);
        assert!(line["rtt_ms"].as_f64().unwrap() > 0.0);
        assert!(
            line["server"].as_str().unwrap().contains("kamailio"),
            "{line}"
        );
        for key in ["remote", "retransmissions", "server"] {
            assert!(line.get(key).is_some(), "missing {key} in {line}");
        }
    }
    assert_eq!(lines[0]["remote"], format!("127.0.0.1:{port}"));
    assert_eq!(lines[2]["remote"], format!("127.0.0.1:{}", port + 1));
    let days = lines[2]["cert_days_left"].as_i64().unwrap();
    assert!((199..=200).contains(&days), "cert_days_left {days}");
    assert_eq!(lines[2]["cert_name_matches"], true);
    assert!(lines[0].get("cert_days_left").is_none());
}

#[test]
fn tls_verification_fails_without_the_ca_and_insecure_still_reports_the_cert() {
    let port = free_sip_port();
    let dir = tempfile::tempdir().unwrap();
    // The certificate names another host and expires in 5 days.
    let tls = make_tls(dir.path(), &["sip.example.org"], 5);
    let mut spec = KamailioSpec::new(port, ROUTE_OK);
    spec.tls = Some(tls.clone());
    let _k = Kamailio::start(spec);
    let uri = format!("sip:127.0.0.1:{};transport=tls", port + 1);

    let out = sipwatch(&["probe", "--json", &uri]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "transport_error");
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert!(
        reason.contains("--ca"),
        "the error should teach the fix: {reason}"
    );

    let out = sipwatch(&["probe", "--json", "--insecure", &uri]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["code"], 200, "{}", describe(&out));
    assert_eq!(line["cert_name_matches"], false);
    assert_eq!(line["cert_days_left"], 5);
    // Name mismatch is critical even when the handshake was allowed.
    assert_eq!(line["result"], "cert_problem");
    assert_eq!(out.status.code(), Some(2));

    // The right CA and a matching name, but close to expiry: WARNING.
    let tls_ok = make_tls(dir.path(), &["127.0.0.1"], 10);
    drop(_k);
    let port2 = free_sip_port();
    let mut spec = KamailioSpec::new(port2, ROUTE_OK);
    spec.tls = Some(tls_ok.clone());
    let _k2 = Kamailio::start(spec);
    let uri = format!("sips:127.0.0.1:{}", port2 + 1);
    let out = sipwatch(&["probe", "--json", "--ca", tls_ok.ca.to_str().unwrap(), &uri]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "warning", "{}", describe(&out));
    assert_eq!(line["result"], "cert_problem");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn register_with_digest_succeeds_confirms_the_binding_and_unregisters() {
    let port = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(port, ROUTE_OK));
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let uri = format!("sip:127.0.0.1:{port}");
    for transport in ["udp", "tcp"] {
        let out = sipwatch(&[
            "probe",
            "--json",
            "-m",
            "register",
            "-u",
            "alice",
            "--password-file",
            pw.to_str().unwrap(),
            "--transport",
            transport,
            &uri,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let line = &json_lines(&out)[0];
        assert_eq!(line["method"], "REGISTER");
        assert_eq!(line["code"], 200);
        assert_eq!(line["binding_confirmed"], true);
        assert_eq!(line["unregistered"], true);
        let all = String::from_utf8_lossy(&out.stdout);
        assert!(!all.contains("secret"), "password leaked: {all}");
    }
    // The password from the environment works the same, and never shows in --verbose.
    let out = sipwatch_env(
        &["probe", "-v", "-m", "register", "-u", "bob", &uri],
        &[("SIPWATCH_PASSWORD", "secret")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Authorization: Digest username=\"bob\""),
        "{text}"
    );
    assert!(text.contains("nc=00000001"), "{text}");
    assert!(
        text.contains("CSeq: 2 REGISTER"),
        "authenticated retry bumps CSeq: {text}"
    );
    assert!(
        text.contains("Expires: 0"),
        "unregisters afterwards: {text}"
    );
    assert!(!text.contains("secret"), "password leaked: {text}");
}

#[test]
fn register_with_a_wrong_password_is_auth_failed() {
    let port = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(port, ROUTE_OK));
    let out = probe_register("--json", "alice", port, "wrong-password");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "auth_failed");
    assert_eq!(line["status"], "critical");
    assert_eq!(line["code"], 401);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("wrong-password"));
}

#[test]
fn register_with_sha256_digest() {
    let port = free_sip_port();
    let mut spec = KamailioSpec::new(port, ROUTE_OK);
    spec.modules = "modparam(\"auth\", \"algorithm\", \"SHA-256\")".into();
    let _k = Kamailio::start(spec);
    let out = probe_register("-v", "carol", port, "secret");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("algorithm=SHA-256"), "{text}");
}

#[test]
fn maintenance_503_is_a_warning_and_expect_makes_it_critical() {
    let port = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(
        port,
        r#"sl_send_reply("503", "Maintenance"); exit;"#,
    ));
    let uri = format!("sip:127.0.0.1:{port}");
    let out = sipwatch(&["probe", "--json", &uri]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "warning");
    assert_eq!(line["result"], "error_response");
    assert_eq!(line["code"], 503);
    assert_eq!(line["reason"], "Maintenance");

    let out = sipwatch(&["probe", "--expect", "200", &uri]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("CRITICAL: "), "{text}");
    assert!(text.contains("503 Maintenance"), "{text}");
}

#[test]
fn max_forwards_zero_probes_the_first_hop() {
    let port = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(port, ROUTE_OK));
    let out = sipwatch(&[
        "probe",
        "--json",
        "--max-forwards",
        "0",
        &format!("sip:127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["code"], 483);
    assert_eq!(line["status"], "ok");
}

#[test]
fn count_repeats_like_ping_and_the_worst_status_wins() {
    let port = free_sip_port();
    let _k = Kamailio::start(KamailioSpec::new(port, ROUTE_OK));
    let up = format!("sip:127.0.0.1:{port}");
    let out = sipwatch(&["probe", "--count", "3", "--interval", "50ms", &up]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // Nagios: the first line is the worst status with the performance data, then one line per probe.
    assert!(text.starts_with("OK: 3 probes: 3 ok | rtt="), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK: sip:")).count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("--- 3 probes, 3 answered, 0.0% loss, rtt min/avg/median/max = "),
        "{text}"
    );

    // One node up, one port closed: CRITICAL wins.
    let closed = format!("sip:127.0.0.1:{}", free_sip_port());
    let out = sipwatch(&["probe", &up, &closed]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // ... and the first line says so, although the first URI is OK.
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("CRITICAL: 2 probes: 1 critical, 1 ok - "),
        "{text}"
    );
    assert!(first.contains(&closed), "{text}");
    assert!(first.contains(&format!("'{up} rtt'=")), "{text}");
}

#[test]
fn register_answers_a_407_proxy_challenge() {
    let port = free_sip_port();
    let route = r#"
  if (is_method("REGISTER")) {
    if (!pv_proxy_authenticate("$td", "secret", "0")) { proxy_challenge("$td", "1"); exit; }
    if (!save("location")) { sl_reply_error(); }
    exit;
  }
  sl_send_reply("200", "OK");
"#;
    let _k = Kamailio::start(KamailioSpec::new(port, route));
    let out = probe_register("-v", "dave", port, "secret");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIP/2.0 407"), "{text}");
    assert!(
        text.contains("Proxy-Authorization: Digest username=\"dave\""),
        "{text}"
    );
    let out = probe_register("--json", "dave", port, "nope");
    assert_eq!(
        json_lines(&out)[0]["result"],
        "auth_failed",
        "{}",
        describe(&out)
    );
    assert_eq!(json_lines(&out)[0]["code"], 407);
}
