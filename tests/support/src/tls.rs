//! A CA and a server certificate made for the test (rcgen), written as PEM files.

use std::path::{Path, PathBuf};

/// The PEM files [`make_tls`] wrote.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub days: i64,
}

/// Makes a CA and a leaf certificate for `names` (DNS names or IP addresses) valid for `days`
/// days, in `dir` (`ca.pem`, `server.pem`, `server.key`).
pub fn make_tls(dir: &Path, names: &[&str], days: i64) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipwatch test CA");
    let ca = ca_params.self_signed(&ca_key).expect("a self-signed CA");
    let key = KeyPair::generate().expect("a server key");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("server certificate parameters");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after =
        time::OffsetDateTime::now_utc() + time::Duration::days(days) + time::Duration::hours(1);
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("a server certificate");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        days,
    };
    std::fs::write(&files.ca, ca.pem()).expect("write ca.pem");
    std::fs::write(&files.cert, cert.pem()).expect("write server.pem");
    std::fs::write(&files.key, key.serialize_pem()).expect("write server.key");
    files
}
