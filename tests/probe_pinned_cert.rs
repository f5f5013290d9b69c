//! A self-signed server certificate made the usual way (`openssl req -x509`, which marks it
//! CA:TRUE) and given with `--ca` is accepted as pinned, as curl, sipsak and Kamailio's clients
//! do; its validity dates and names are still checked, and a different self-signed certificate
//! in the CA file does not let it through.

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    describe, free_sip_port, json_lines, require, sipwatch, Kamailio, KamailioSpec, TlsFiles,
    ROUTE_OK,
};

/// `openssl req -x509` as a user types it: a self-signed certificate for `san`.
fn openssl_self_signed(dir: &Path, name: &str, san: &str, days: &str) -> TlsFiles {
    let openssl = require("openssl", "openssl");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            &format!("subjectAltName={san}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req -x509: {}",
        describe(&out)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl x509");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl no longer marks self-signed certificates CA:TRUE; this test needs one"
    );
    TlsFiles {
        ca: cert.clone(),
        cert,
        key,
        days: 30,
    }
}

#[test]
fn a_pinned_self_signed_ca_true_certificate_is_accepted_and_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let tls = openssl_self_signed(dir.path(), "server", "IP:127.0.0.1", "30");
    let port = free_sip_port();
    let mut spec = KamailioSpec::new(port, ROUTE_OK);
    spec.tls = Some(tls.clone());
    let _k = Kamailio::start(spec);
    let ca = tls.ca.to_str().unwrap();
    let uri = format!("sip:127.0.0.1:{};transport=tls", port + 1);

    // Pinned: accepted, certificate reported.
    let out = sipwatch(&["probe", "--json", "--ca", ca, &uri]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = &json_lines(&out)[0];
    assert_eq!(line["status"], "ok", "{line}");
    assert_eq!(line["cert_name_matches"], true);
    assert!(line["cert_days_left"].as_i64().unwrap() >= 29, "{line}");

    // Another self-signed certificate in the CA file: the server's is not trusted.
    let other = openssl_self_signed(dir.path(), "other", "IP:127.0.0.1", "30");
    let out = sipwatch(&["probe", "--json", "--ca", other.ca.to_str().unwrap(), &uri]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["result"], "transport_error");

    // Pinned but not naming the host asked for: refused.
    let wrong_name = format!("sip:localhost:{};transport=tls", port + 1);
    let out = sipwatch(&["probe", "--json", "--ca", ca, &wrong_name]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let reason = json_lines(&out)[0]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.to_ascii_lowercase().contains("name"),
        "the error names the problem: {reason}"
    );
}
