//! `sipwatch probe` where things go wrong or get interesting: silent ports and Timer F, closed
//! ports, SIPp answering late or never, garbage and spoofed answers, bad input, and RFC 3263
//! server location through a real DNS server (dnsmasq).

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::*;

const UAS_LATE_200: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="100 then a late 200">
  <recv request="OPTIONS" />
  <send><![CDATA[
SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <pause milliseconds="1200"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]late[call_number]
[last_Call-ID:]
[last_CSeq:]
Server: SIPp late UAS
Content-Length: 0

]]></send>
</scenario>
"#;

const UAS_SILENT: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="never answers">
  <recv request="OPTIONS" />
  <pause milliseconds="60000"/>
</scenario>
"#;

#[test]
fn sipp_uas_sends_100_then_a_late_200() {
    let port = free_sip_port();
    let dir = tempfile::tempdir().unwrap();
    let _uas = sipp_uas(dir.path(), port, UAS_LATE_200);
    let out = sipwatch(&["probe", "--json", &format!("sip:127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["code"], 200);
    // Our retransmission at T1 (500 ms) makes SIPp repeat its 100, as a UAS must; after the 100
    // Timer E runs at T2 (4 s), so nothing more is sent before the 200 at 1.2 s.
    assert_eq!(line["provisional"], serde_json::json!([100, 100]));
    assert_eq!(line["retransmissions"], 1);
    assert_eq!(line["server"], "SIPp late UAS");
    let rtt = line["rtt_ms"].as_f64().unwrap();
    assert!(rtt >= 1200.0, "the 200 came after the pause, rtt {rtt}");
}

#[test]
fn sipp_uas_that_never_answers_times_out_after_timer_f() {
    let port = free_sip_port();
    let dir = tempfile::tempdir().unwrap();
    let _uas = sipp_uas(dir.path(), port, UAS_SILENT);
    let out = probe_json(port, "2s", &["--t1", "100ms"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "timeout");
    assert_eq!(line["code"], serde_json::Value::Null);
    // Sends at 0, 100, 300, 700, 1500 ms (T1 doubling); Timer F at 2 s.
    assert_eq!(line["retransmissions"], 4);
}

#[test]
fn silent_port_sees_the_rfc3261_retransmission_schedule() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let counter = std::thread::spawn(move || {
        silent
            .set_read_timeout(Some(Duration::from_secs(4)))
            .unwrap();
        let mut branches = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = silent.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let branch = text
                .split("branch=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            branches.push(branch);
        }
        branches
    });
    let out = probe_json(port, "1500ms", &["--t1", "100ms", "--t2", "400ms"]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "timeout", "{}", describe(&out));
    // Sends at 0, 100, 300, 700, 1100 ms (T2 caps the interval at 400 ms); Timer F at 1.5 s.
    assert_eq!(line["retransmissions"], 4);
    let branches = counter.join().unwrap();
    assert_eq!(branches.len(), 5, "datagrams seen by the silent port");
    assert!(
        branches.iter().all(|b| b == &branches[0]),
        "retransmissions reuse the branch"
    );
    assert!(line["reason"]
        .as_str()
        .unwrap()
        .contains("4 retransmissions"));
}

#[test]
fn closed_udp_port_is_a_transport_error_not_a_timeout() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = probe_json(port, "10s", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "transport_error");
    assert!(
        line["reason"].as_str().unwrap().contains("refused"),
        "{line}"
    );
}

#[test]
fn closed_tcp_port_is_a_transport_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = sipwatch(&[
        "probe",
        "--json",
        &format!("sip:127.0.0.1:{port};transport=tcp"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["result"], "transport_error");
}

/// `sipwatch probe --json --timeout TIMEOUT [EXTRA...] sip:127.0.0.1:PORT`.
fn probe_json(port: u16, timeout: &str, extra: &[&str]) -> std::process::Output {
    let uri = format!("sip:127.0.0.1:{port}");
    let mut args = vec!["probe", "--json", "--timeout", timeout];
    args.extend_from_slice(extra);
    args.push(&uri);
    sipwatch(&args)
}

/// A UDP peer that answers every request with `reply(request)`, from `from` if given.
fn fake_peer(
    reply: fn(&str) -> Vec<u8>,
    from: Option<UdpSocket>,
) -> (u16, std::thread::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let answer = reply(&req);
            match &from {
                Some(other) => other.send_to(&answer, peer).unwrap(),
                None => sock.send_to(&answer, peer).unwrap(),
            };
        }
    });
    (port, h)
}

#[test]
fn garbage_answers_are_bad_response_with_a_clear_message() {
    let (port, _h) = fake_peer(|_| b"\x00\x01HELLO garbage \xff\xfe".to_vec(), None);
    let out = probe_json(port, "700ms", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "bad_response");
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("unparseable"), "{reason}");
}

#[test]
fn truncated_answers_are_bad_response() {
    let (port, _h) = fake_peer(
        |req| {
            format!(
                "SIP/2.0 200 OK\r\n{}\r\nCSeq: 1 OPT",
                sip_header(req, "Via")
            )
            .into_bytes()
        },
        None,
    );
    let out = probe_json(port, "700ms", &[]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "bad_response", "{}", describe(&out));
    assert!(
        line["reason"].as_str().unwrap().contains("truncated"),
        "{line}"
    );
}

#[test]
fn answers_that_do_not_match_the_transaction_are_never_taken() {
    // Right shape, wrong branch: must be dropped and counted, and the probe times out.
    let (port, _h) = fake_peer(
        |req| {
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnotours\r\n{}\r\n{}\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                sip_header(req, "From"), sip_header(req, "To"), sip_header(req, "Call-ID"), sip_header(req, "CSeq")
            )
            .into_bytes()
        },
        None,
    );
    let out = probe_json(port, "700ms", &[]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "timeout", "{}", describe(&out));
    assert!(
        line["mismatched_responses"].as_u64().unwrap() >= 1,
        "{line}"
    );
}

#[test]
fn an_answer_from_another_address_is_ignored() {
    let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (port, _h) = fake_peer(
        |req| {
            format!(
                "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{}\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                sip_header(req, "Via"),
                sip_header(req, "From"),
                sip_header(req, "To"),
                sip_header(req, "Call-ID"),
                sip_header(req, "CSeq")
            )
            .into_bytes()
        },
        Some(spoofer),
    );
    let out = probe_json(port, "700ms", &[]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "timeout", "{}", describe(&out));
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("from other addresses ignored"),
        "{line}"
    );
}

#[test]
fn bad_input_is_unknown_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["probe", "http://example.org"], "is not a SIP URI"),
        (
            &["probe", "sip:127.0.0.1;transport=sctp"],
            "unknown transport",
        ),
        // A bare number is seconds (-t of every Nagios plugin); a word is no duration.
        (
            &["probe", "--timeout", "fast", "sip:127.0.0.1"],
            "write e.g. \"10s\"",
        ),
        (
            &[
                "probe",
                "-m",
                "register",
                "-u",
                "a",
                "--password-file",
                "/nonexistent/pw",
                "sip:127.0.0.1",
            ],
            "cannot read the password file",
        ),
        (&["probe", "-m", "register", "sip:127.0.0.1"], "--username"),
        (
            &["probe", "-m", "register", "-u", "a", "sip:127.0.0.1"],
            "SIPWATCH_PASSWORD",
        ),
        (
            &["probe", "--ca", "/nonexistent/ca.pem", "sips:127.0.0.1"],
            "cannot read CA file",
        ),
        (&["probe"], "URI"),
    ];
    for (args, needle) in cases {
        let out = sipwatch(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", describe(&out));
        // Nagios reads stdout: one UNKNOWN line there too.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("UNKNOWN: ") && stdout.lines().count() == 1,
            "{args:?}: {}",
            describe(&out)
        );
        // With --json stdout stays JSON lines only: nothing, no probe ran.
        let mut json_args = args.to_vec();
        json_args.insert(1, "--json");
        let out = sipwatch(&json_args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{json_args:?}: {}",
            describe(&out)
        );
        assert!(out.stdout.is_empty(), "{json_args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }
}

/// dnsmasq on a loopback port serving the records a test gives.
fn dnsmasq(dir: &std::path::Path, records: &[String]) -> (Background, u16) {
    let dnsmasq = require("dnsmasq", "dnsmasq-base");
    let port = free_sip_port();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 multi.test\n127.0.0.2 multi.test\n127.0.0.1 node1.test\n127.0.0.1 node2.test\n",
    )
    .unwrap();
    let mut cmd = Command::new(dnsmasq);
    cmd.args([
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--user=root",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--addn-hosts={}", hosts.display()))
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
    .args(records)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let child = cmd.spawn().expect("start dnsmasq");
    let bg = Background {
        child,
        name: "dnsmasq".into(),
    };
    wait_until("dnsmasq to listen", Duration::from_secs(10), || {
        UdpSocket::bind(("127.0.0.1", port)).is_err()
    });
    (bg, port)
}

#[test]
fn rfc3263_srv_naptr_and_several_a_records_are_all_probed() {
    let p1 = free_sip_port();
    let _k1 = Kamailio::start(KamailioSpec::new(p1, ROUTE_OK));
    let p2 = free_sip_port();
    let _k2 = Kamailio::start(KamailioSpec::new(p2, ROUTE_OK));
    let mut spec = KamailioSpec::new(p1, ROUTE_OK);
    spec.ip = "127.0.0.2".into();
    let _k3 = Kamailio::start(spec);

    let dir = tempfile::tempdir().unwrap();
    let (_dns, dns_port) = dnsmasq(
        dir.path(),
        &[
            // SRV for UDP: two nodes, priority 10 before 20.
            format!("--srv-host=_sip._udp.pbx.test,node2.test,{p2},20,10"),
            format!("--srv-host=_sip._udp.pbx.test,node1.test,{p1},10,10"),
            // NAPTR says: use TCP, via this SRV name.
            "--naptr-record=nap.test,10,10,S,SIP+D2T,,_sip._tcp.nap.test".into(),
            format!("--srv-host=_sip._tcp.nap.test,node1.test,{p1},10,10"),
        ],
    );
    let dns = format!("127.0.0.1:{dns_port}");

    let out = sipwatch(&["probe", "--json", "--dns-server", &dns, "sip:pbx.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    assert_eq!(lines[0]["remote"], format!("127.0.0.1:{p1}"));
    assert_eq!(lines[1]["remote"], format!("127.0.0.1:{p2}"));
    assert!(lines
        .iter()
        .all(|l| l["located_by"] == "srv" && l["transport"] == "udp" && l["code"] == 200));
    assert!(lines.iter().all(|l| l["target"] == "sip:pbx.test"));

    let out = sipwatch(&["probe", "--json", "--dns-server", &dns, "sip:nap.test"]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{}", describe(&out));
    assert_eq!(lines[0]["located_by"], "naptr");
    assert_eq!(lines[0]["transport"], "tcp");
    assert_eq!(lines[0]["code"], 200);

    // An explicit port skips NAPTR/SRV: every A record is a node.
    let out = sipwatch(&[
        "probe",
        "--json",
        "--dns-server",
        &dns,
        &format!("sip:multi.test:{p1}"),
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    let remotes: Vec<&str> = lines
        .iter()
        .map(|l| l["remote"].as_str().unwrap())
        .collect();
    assert_eq!(
        remotes,
        vec![format!("127.0.0.1:{p1}"), format!("127.0.0.2:{p1}")]
    );
    assert!(lines
        .iter()
        .all(|l| l["status"] == "ok" && l["located_by"] == "a"));

    // A name that does not exist: UNKNOWN, dns_error.
    let out = sipwatch(&["probe", "--json", "--dns-server", &dns, "sip:nowhere.test"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "dns_error");
    assert_eq!(line["remote"], serde_json::Value::Null);
}

/// A registrar that answers the first REGISTER with a challenge, the first answer with
/// `stale=true` and a new nonce, and the second answer with 200 listing the Contact.
#[test]
fn a_stale_nonce_is_retried_once_with_the_new_nonce() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while let Ok((len, peer)) = sock.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..len]).to_string();
            log.lock().unwrap().push(req.clone());
            let common = format!(
                "{}\r\n{}\r\n{};tag=reg\r\n{}\r\n{}\r\n",
                sip_header(&req, "Via"),
                sip_header(&req, "From"),
                sip_header(&req, "To"),
                sip_header(&req, "Call-ID"),
                sip_header(&req, "CSeq")
            );
            let expires0 = sip_header(&req, "Expires").contains(": 0");
            let answer = match n {
                0 => format!("SIP/2.0 401 Unauthorized\r\n{common}WWW-Authenticate: Digest realm=\"r\", nonce=\"first\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n"),
                1 => format!("SIP/2.0 401 Unauthorized\r\n{common}WWW-Authenticate: Digest realm=\"r\", nonce=\"second\", qop=\"auth\", stale=true\r\nContent-Length: 0\r\n\r\n"),
                _ if expires0 => format!("SIP/2.0 200 OK\r\n{common}Content-Length: 0\r\n\r\n"),
                _ => {
                    let contact = sip_header(&req, "Contact").split_once(':').unwrap().1.trim().to_string();
                    format!("SIP/2.0 200 OK\r\n{common}Contact: {contact};expires=60\r\nContent-Length: 0\r\n\r\n")
                }
            };
            sock.send_to(answer.as_bytes(), peer).unwrap();
            n += 1;
        }
    });
    let out = probe_register("--json", "eve", port, "pw");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["binding_confirmed"], true);
    let reqs = seen.lock().unwrap().clone();
    assert!(reqs.len() >= 3, "{reqs:#?}");
    assert!(
        sip_header(&reqs[1], "Authorization").contains("nonce=\"first\""),
        "{}",
        reqs[1]
    );
    assert!(
        sip_header(&reqs[2], "Authorization").contains("nonce=\"second\""),
        "{}",
        reqs[2]
    );
    assert!(
        sip_header(&reqs[2], "Authorization").contains("nc=00000001"),
        "nc restarts with a new nonce"
    );
    assert!(
        sip_header(&reqs[2], "CSeq").contains("3 REGISTER"),
        "{}",
        reqs[2]
    );
    let call_ids: Vec<&str> = reqs.iter().map(|r| sip_header(r, "Call-ID")).collect();
    assert!(
        call_ids.iter().all(|c| *c == call_ids[0]),
        "same Call-ID throughout"
    );
}
