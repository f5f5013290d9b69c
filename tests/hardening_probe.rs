//! `sipwatch probe` against a hostile peer: a registrar asking for a realm other than the one
//! configured gets no credentials, and terminal escapes in a reason phrase or Server header never
//! reach the screen raw.

mod common;

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A UDP peer on 127.0.0.1 that answers every request with `answer(request)`; returns its port
/// and the requests it saw.
fn peer(answer: fn(&str, &str) -> String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..len]).to_string();
            log.lock().unwrap().push(req.clone());
            let common = format!(
                "{}\r\n{}\r\n{};tag=peer\r\n{}\r\n{}\r\n",
                sip_header(&req, "Via"),
                sip_header(&req, "From"),
                sip_header(&req, "To"),
                sip_header(&req, "Call-ID"),
                sip_header(&req, "CSeq")
            );
            let _ = sock.send_to(answer(&req, &common).as_bytes(), from);
        }
    });
    (port, seen)
}

#[test]
fn a_challenge_for_another_realm_gets_no_credentials() {
    let (port, seen) = peer(|_, common| {
        format!(
            "SIP/2.0 401 Unauthorized\r\n{common}WWW-Authenticate: Digest realm=\"evil.example\", \
             nonce=\"abc\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n"
        )
    });
    let out = sipwatch_env(
        &[
            "probe",
            "--json",
            "-m",
            "register",
            "-u",
            "eve",
            "--realm",
            "127.0.0.1",
            &format!("sip:127.0.0.1:{port}"),
        ],
        &[("SIPWATCH_PASSWORD", "98765432")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["result"], "auth_failed", "{line}");
    let reason = line["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("\"evil.example\"") && reason.contains("pinned to realm \"127.0.0.1\""),
        "the reason names both realms: {reason}"
    );
    let reqs = seen.lock().unwrap().clone();
    assert!(!reqs.is_empty(), "the registrar saw the REGISTER");
    for r in &reqs {
        assert!(
            sip_header(r, "Authorization").is_empty(),
            "credentials sent to a hostile realm:\n{r}"
        );
    }
}

#[test]
fn terminal_escapes_from_a_peer_are_escaped_in_human_output() {
    let (port, _seen) = peer(|_, common| {
        format!(
            "SIP/2.0 200 O\x1b[2JK\r\n{common}Server: evil\x1b]0;pwned\x07\u{9b}31m\r\n\
             Content-Length: 0\r\n\r\n"
        )
    });
    for flags in [&["probe"][..], &["probe", "-v"][..]] {
        let mut args = flags.to_vec();
        let uri = format!("sip:127.0.0.1:{port}");
        args.push(&uri);
        let out = sipwatch(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        for bad in ['\x1b', '\x07', '\u{9b}'] {
            assert!(
                !stdout.contains(bad),
                "{flags:?}: raw control character {:?} printed:\n{stdout:?}",
                bad
            );
        }
        assert!(stdout.contains("O\\x1b[2JK"), "{flags:?}: {stdout}");
        assert!(
            stdout.contains("evil\\x1b]0;pwned\\x07"),
            "{flags:?}: {stdout}"
        );
    }
    // JSON keeps the exact text (serde escapes it).
    let out = sipwatch(&["probe", "--json", &format!("sip:127.0.0.1:{port}")]);
    let line = &json_lines(&out)[0];
    assert_eq!(line["reason"], "O\x1b[2JK");
}
