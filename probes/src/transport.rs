//! Byte movers: one connection to one SIP node over UDP, TCP or TLS.
//!
//! A [`Connection`] sends a request and hands back whole messages: datagrams over UDP (those that
//! come from another address are dropped and counted), Content-Length framed messages over TCP and
//! TLS (RFC 3261 §18.3, partial reads and several messages per read handled). For TLS it reports
//! the peer certificate's days left and whether it names the host we asked for.
//!
//! It does not retransmit, time out or interpret SIP: the transaction decides when to send and the
//! prober owns the clock.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::message::{stream_frame_len, Transport};

/// Largest message we accept (a SIP message over UDP fits in 65,535 bytes; the same cap protects
/// the stream buffer from a hostile peer that never ends its headers).
pub const MAX_MESSAGE: usize = 65_535;

/// A transport failure, worded for the person reading the probe's output.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connection refused by {0} (nothing listens there, or ICMP port unreachable)")]
    Refused(SocketAddr),
    #[error("could not connect to {0} within {1:?}")]
    ConnectTimeout(SocketAddr, Duration),
    #[error("{0} closed the connection")]
    Closed(SocketAddr),
    #[error("TLS handshake with {peer} failed: {detail}{hint}")]
    Tls {
        peer: SocketAddr,
        detail: String,
        hint: &'static str,
    },
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    #[error("{peer} sent an unframeable stream: {detail}")]
    Framing { peer: SocketAddr, detail: String },
    #[error("I/O error with {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
}

impl TransportError {
    pub fn io(peer: SocketAddr, source: std::io::Error) -> TransportError {
        if source.kind() == std::io::ErrorKind::ConnectionRefused {
            TransportError::Refused(peer)
        } else {
            TransportError::Io { peer, source }
        }
    }
}

/// How to trust TLS servers.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Trust only this CA bundle (PEM) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (still reported, never trusted). Only when the user asked.
    pub insecure: bool,
}

/// A ready TLS connector: build once per run, share between probes.
#[derive(Clone)]
pub struct TlsContext {
    connector: tokio_rustls::TlsConnector,
}

impl TlsContext {
    pub fn new(opts: &TlsOptions) -> Result<TlsContext, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::TlsSetup(e.to_string()))?;
        let config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            let mut pinned: Vec<CertificateDer<'static>> = Vec::new();
            match &opts.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        TransportError::TlsSetup(format!(
                            "cannot read CA file {}: {e}",
                            path.display()
                        ))
                    })?;
                    let mut added = 0;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let cert = cert.map_err(|e| {
                            TransportError::TlsSetup(format!(
                                "CA file {} is not valid PEM: {e}",
                                path.display()
                            ))
                        })?;
                        pinned.push(cert.clone());
                        roots.add(cert).map_err(|e| {
                            TransportError::TlsSetup(format!(
                                "CA file {}: unusable certificate: {e}",
                                path.display()
                            ))
                        })?;
                        added += 1;
                    }
                    if added == 0 {
                        return Err(TransportError::TlsSetup(format!(
                            "CA file {} holds no PEM certificate",
                            path.display()
                        )));
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        // A broken system root is not our problem to report; skip it.
                        let _ = roots.add(cert);
                    }
                }
            }
            if pinned.is_empty() {
                builder.with_root_certificates(roots).with_no_client_auth()
            } else {
                // A `--ca` file may hold the server's own self-signed certificate (made with
                // `openssl req -x509`, which marks it CA:TRUE): curl, sipsak and Kamailio accept
                // that as pinning, so do we (see `PinnedOrWebPki`).
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TransportError::TlsSetup(e.to_string()))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { webpki, pinned }))
                    .with_no_client_auth()
            }
        };
        Ok(TlsContext {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

/// The peer certificate, as far as on-call cares.
#[derive(Clone, Debug, PartialEq)]
pub struct CertInfo {
    pub days_left: i64,
    /// `notAfter`, unix seconds (None when the certificate cannot be parsed).
    pub not_after: Option<i64>,
    pub name_matches: bool,
    pub subject: String,
}

/// What a probe exchange needs from the path to a node: a dedicated [`Connection`] (one-shot
/// probes, TCP/TLS in the daemon) or a slot on a shared UDP socket (`endpoint::EndpointSlot`).
pub trait Wire: Send {
    fn local_addr(&self) -> SocketAddr;
    fn peer_addr(&self) -> SocketAddr;
    fn transport(&self) -> Transport;
    /// Datagrams from another address than the peer, dropped.
    fn foreign_datagrams(&self) -> u32;
    fn peer_certificate(&self) -> Option<&CertInfo>;
    /// Announces the branch of the next client transaction (a shared socket routes by it).
    fn expect_branch(&mut self, branch: &str);
    fn send(
        &mut self,
        bytes: &[u8],
    ) -> impl std::future::Future<Output = Result<(), TransportError>> + Send;
    /// The next whole message from the peer; cancel-safe.
    fn recv(&mut self)
        -> impl std::future::Future<Output = Result<Vec<u8>, TransportError>> + Send;
}

impl Wire for Connection {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
    fn transport(&self) -> Transport {
        self.transport
    }
    fn foreign_datagrams(&self) -> u32 {
        self.foreign
    }
    fn peer_certificate(&self) -> Option<&CertInfo> {
        self.cert.as_ref()
    }
    fn expect_branch(&mut self, _branch: &str) {}
    async fn send(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        Connection::send(self, bytes).await
    }
    async fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        Connection::recv(self).await
    }
}

trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

enum Inner {
    Udp(UdpSocket),
    Stream {
        io: Box<dyn AsyncStream>,
        buf: Vec<u8>,
    },
}

/// One open path to one node.
pub struct Connection {
    inner: Inner,
    peer: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    foreign: u32,
    cert: Option<CertInfo>,
}

impl Connection {
    /// Opens a path to `peer`. For TLS, `server_name` is used for SNI and the name check.
    pub async fn open(
        transport: Transport,
        peer: SocketAddr,
        server_name: &str,
        tls: Option<&TlsContext>,
        connect_timeout: Duration,
    ) -> Result<Connection, TransportError> {
        match transport {
            Transport::Udp => {
                let local_ip = route_ip(peer)
                    .await
                    .map_err(|e| TransportError::io(peer, e))?;
                let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0))
                    .await
                    .map_err(|e| TransportError::io(peer, e))?;
                enable_icmp_errors(&socket, peer.is_ipv6());
                let local = socket
                    .local_addr()
                    .map_err(|e| TransportError::io(peer, e))?;
                Ok(Connection {
                    inner: Inner::Udp(socket),
                    peer,
                    local,
                    transport,
                    foreign: 0,
                    cert: None,
                })
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(peer))
                    .await
                    .map_err(|_| TransportError::ConnectTimeout(peer, connect_timeout))?
                    .map_err(|e| TransportError::io(peer, e))?;
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().map_err(|e| TransportError::io(peer, e))?;
                if transport == Transport::Tcp {
                    return Ok(Connection {
                        inner: Inner::Stream {
                            io: Box::new(tcp),
                            buf: Vec::new(),
                        },
                        peer,
                        local,
                        transport,
                        foreign: 0,
                        cert: None,
                    });
                }
                let tls = tls.ok_or_else(|| {
                    TransportError::TlsSetup("no TLS context for a TLS probe".into())
                })?;
                let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
                    TransportError::TlsSetup(format!(
                        "{server_name:?} is not a TLS server name: {e}"
                    ))
                })?;
                let stream = tokio::time::timeout(
                    connect_timeout,
                    tls.connector.connect(name, tcp),
                )
                .await
                .map_err(|_| TransportError::ConnectTimeout(peer, connect_timeout))?
                .map_err(|e| {
                    let detail = e.to_string();
                    let hint = if detail.contains("certificate") {
                        " (trust your CA with --ca FILE, or skip verification with --insecure)"
                    } else {
                        ""
                    };
                    TransportError::Tls { peer, detail, hint }
                })?;
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|der| cert_info(der.as_ref(), server_name));
                Ok(Connection {
                    inner: Inner::Stream {
                        io: Box::new(stream),
                        buf: Vec::new(),
                    },
                    peer,
                    local,
                    transport,
                    foreign: 0,
                    cert,
                })
            }
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Datagrams received from an address other than the peer, dropped.
    pub fn foreign_datagrams(&self) -> u32 {
        self.foreign
    }

    pub fn peer_certificate(&self) -> Option<&CertInfo> {
        self.cert.as_ref()
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let peer = self.peer;
        match &mut self.inner {
            Inner::Udp(socket) => socket
                .send_to(bytes, peer)
                .await
                .map(|_| ())
                .map_err(|e| TransportError::io(peer, e)),
            Inner::Stream { io, .. } => {
                io.write_all(bytes)
                    .await
                    .map_err(|e| TransportError::io(peer, e))?;
                io.flush().await.map_err(|e| TransportError::io(peer, e))
            }
        }
    }

    /// The next whole message from the peer. Cancel-safe: nothing read is lost if the future is
    /// dropped, so it can sit in a `select!` next to a timer.
    pub async fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        let peer = self.peer;
        match &mut self.inner {
            Inner::Udp(socket) => {
                let mut buf = vec![0u8; MAX_MESSAGE];
                loop {
                    let (n, from) = socket
                        .recv_from(&mut buf)
                        .await
                        .map_err(|e| TransportError::io(peer, e))?;
                    if from != peer {
                        self.foreign += 1;
                        tracing::debug!(%from, %peer, "dropped a datagram from another address");
                        continue;
                    }
                    buf.truncate(n);
                    return Ok(buf);
                }
            }
            Inner::Stream { io, buf } => loop {
                match stream_frame_len(buf, MAX_MESSAGE) {
                    Ok(Some(len)) => {
                        let msg: Vec<u8> = buf.drain(..len).collect();
                        return Ok(msg);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(TransportError::Framing {
                            peer,
                            detail: e.to_string(),
                        })
                    }
                }
                let mut chunk = [0u8; 8192];
                let n = io
                    .read(&mut chunk)
                    .await
                    .map_err(|e| TransportError::io(peer, e))?;
                if n == 0 {
                    return Err(TransportError::Closed(peer));
                }
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

/// The local address the kernel would use to reach `peer` (so Via and Contact carry a real IP).
pub async fn route_ip(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if peer.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let probe = UdpSocket::bind(any).await?;
    probe.connect(peer).await?;
    Ok(probe.local_addr()?.ip())
}

/// Asks the kernel to report ICMP errors (port unreachable) on this unconnected socket, so a
/// closed UDP port is a fast `transport_error` instead of a Timer F timeout.
pub fn enable_icmp_errors(socket: &impl std::os::fd::AsRawFd, v6: bool) {
    let one: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    // SAFETY: a valid fd owned by `socket`, a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("IP_RECVERR not available; a closed UDP port will look like a timeout");
    }
}

/// Reads what on-call needs from a DER certificate: days until `notAfter` and whether the
/// subjectAltName (or, without one, the CN) names `host` (RFC 6125 wildcard in the left label).
pub fn cert_info(der: &[u8], host: &str) -> CertInfo {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return CertInfo {
            days_left: 0,
            not_after: None,
            name_matches: false,
            subject: "<unparseable certificate>".into(),
        };
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let not_after = cert.validity().not_after.timestamp();
    let days_left = (not_after - now).div_euclid(86_400);
    let host_ip: Option<IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    let mut names_seen = false;
    let mut matches = false;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    names_seen = true;
                    if host_ip.is_none() && dns_name_matches(dns, host) {
                        matches = true;
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    names_seen = true;
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if ip.is_some() && ip == host_ip {
                        matches = true;
                    }
                }
                _ => {}
            }
        }
    }
    if !names_seen {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                if dns_name_matches(cn, host) {
                    matches = true;
                }
            }
        }
    }
    CertInfo {
        days_left,
        not_after: Some(not_after),
        name_matches: matches,
        subject: cert.subject().to_string(),
    }
}

fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = pattern.strip_prefix("*.") {
        match host.split_once('.') {
            Some((label, domain)) => !label.is_empty() && domain == rest,
            None => false,
        }
    } else {
        pattern == host
    }
}

/// The usual chain verification against the CA file, plus pinning: a server certificate that is
/// itself in the CA file is accepted even where WebPKI refuses it (a self-signed certificate
/// with CA:TRUE is `CaUsedAsEndEntity` there), as long as it is valid now and names the host.
/// The handshake signatures are checked as always, so the server proves it holds the key.
#[derive(Debug)]
struct PinnedOrWebPki {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let Err(chain_error) = chain else {
            return chain;
        };
        if !self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Err(chain_error);
        }
        pinned_cert_usable(end_entity.as_ref(), server_name, now.as_secs())
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A pinned certificate still has to be within its validity dates and name the host.
fn pinned_cert_usable(
    der: &[u8],
    server_name: &ServerName<'_>,
    now: u64,
) -> Result<(), rustls::Error> {
    use rustls::CertificateError;
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if now < cert.validity().not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
    }
    if now > cert.validity().not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    let host = match server_name {
        ServerName::DnsName(name) => name.as_ref().to_string(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => String::new(),
    };
    if !cert_info(der, &host).name_matches {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
    }
    Ok(())
}

/// Accepts every certificate; used only with `--insecure`. Signatures are still checked so the
/// handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(dns_name_matches("*.example.org", "edge.example.org"));
        assert!(!dns_name_matches("*.example.org", "a.b.example.org"));
        assert!(!dns_name_matches("*.example.org", "example.org"));
        assert!(dns_name_matches("Edge.Example.org.", "edge.example.org"));
    }

    #[tokio::test]
    async fn closed_udp_port_is_refused_fast() {
        // Find a port nobody listens on: bind, note it, drop.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peer: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = Connection::open(
            Transport::Udp,
            peer,
            "127.0.0.1",
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        c.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n").await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), c.recv()).await;
        assert!(matches!(r, Ok(Err(TransportError::Refused(_)))), "{r:?}");
    }

    #[tokio::test]
    async fn udp_drops_datagrams_from_other_addresses() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = server.local_addr().unwrap();
        let mut c = Connection::open(
            Transport::Udp,
            peer,
            "127.0.0.1",
            None,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        c.send(b"ping").await.unwrap();
        let mut buf = [0u8; 64];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        other.send_to(b"spoof", from).unwrap();
        server.send_to(b"real", from).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), c.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"real");
        assert_eq!(c.foreign_datagrams(), 1);
    }
}
