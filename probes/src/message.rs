//! SIP messages for probing: the target URI, the OPTIONS and REGISTER requests we send and the
//! responses we read back.
//!
//! Requests are built as `rsip::Request` values and serialised by rsip; responses are parsed by rsip
//! and the few fields a probe needs (status, Via branch, CSeq, Call-ID, tags, Server, challenges,
//! Contact bindings) are pulled out into [`ResponseHead`]. Compact header names (RFC 3261 §7.3.3:
//! `v`, `i`, `f`, `t`, `m`, `l`) are understood, because real servers send them.
//!
//! This module does not send anything and keeps no state: identifiers (branch, tag, Call-ID) are
//! generated here, but which request goes out when is the transaction's and the prober's job.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;
use rsip::headers::UntypedHeader;
use rsip::Header;

/// The magic cookie that starts every RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// The transport a probe travels over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The token used in Via headers (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the transport is reliable (RFC 3261 §17.1.2.2: no Timer E retransmissions).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The default port of the transport (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }

    /// Parses `udp`, `tcp` or `tls` (any case).
    pub fn parse(s: &str) -> Result<Transport, MessageError> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            other => Err(MessageError::UnknownTransport(other.to_string())),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// Errors in URIs and messages. Each names what was wrong; none includes a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    #[error("{0:?} is not a SIP URI: write it as sip:host[:port][;transport=udp|tcp|tls] or sips:host[:port]")]
    NotSipUri(String),
    #[error("unknown transport {0:?}: use udp, tcp or tls")]
    UnknownTransport(String),
    #[error("sips: URIs require TLS, but transport {0} was asked for")]
    SipsNeedsTls(Transport),
    #[error("response is not valid SIP: {0}")]
    Malformed(String),
    #[error("response is missing its {0} header")]
    MissingHeader(&'static str),
    #[error("message too large ({0} bytes): refusing to buffer more than {1} bytes")]
    TooLarge(usize, usize),
}

/// A probe target as the user wrote it, checked and taken apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetUri {
    /// The URI exactly as given.
    pub original: String,
    pub secure: bool,
    pub user: Option<String>,
    /// Host name or IP address literal (IPv6 without brackets).
    pub host: String,
    pub port: Option<u16>,
    /// The `transport` URI parameter, if present.
    pub transport: Option<Transport>,
}

impl TargetUri {
    /// Parses a `sip:` or `sips:` URI with rsip and checks it can be probed.
    pub fn parse(s: &str) -> Result<TargetUri, MessageError> {
        let trimmed = s.trim();
        let lower = trimmed.to_ascii_lowercase();
        if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
            return Err(MessageError::NotSipUri(s.to_string()));
        }
        // rsip accepts only known transport tokens; check the parameter ourselves first so an
        // unknown one gets its own message.
        let mut transport = None;
        for param in trimmed.split(';').skip(1) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("transport") {
                transport = Some(Transport::parse(value.trim())?);
            }
        }
        let secure = lower.starts_with("sips:");
        let (user, host, port) = match rsip::Uri::try_from(trimmed) {
            Ok(uri) => {
                let host = match uri.host() {
                    rsip::Host::Domain(d) => d.to_string(),
                    rsip::Host::IpAddr(ip) => ip.to_string(),
                };
                (
                    uri.user().map(str::to_string),
                    host,
                    uri.port().map(|p| u16::from(*p)),
                )
            }
            // rsip 0.4 does not read bracketed IPv6 literals; take those apart here.
            Err(e) => parse_ipv6_uri(trimmed)
                .ok_or_else(|| MessageError::NotSipUri(format!("{trimmed} ({e})")))?,
        };
        if host.is_empty() {
            return Err(MessageError::NotSipUri(s.to_string()));
        }
        if secure {
            if let Some(t) = transport {
                if t != Transport::Tls && t != Transport::Tcp {
                    return Err(MessageError::SipsNeedsTls(t));
                }
            }
            // RFC 3261 §26.2: sips means TLS on every hop; `;transport=tcp` is the legacy spelling.
            transport = Some(Transport::Tls);
        }
        Ok(TargetUri {
            original: trimmed.to_string(),
            secure,
            user,
            host,
            port,
            transport,
        })
    }

    /// The host as an IP address, when the URI holds a numeric host.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The Request-URI to put on the wire: scheme, host, port and transport, no user part for
    /// REGISTER (RFC 3261 §10.2: the registrar's domain), the user kept for OPTIONS.
    pub fn request_uri(&self, keep_user: bool) -> String {
        let scheme = if self.secure { "sips" } else { "sip" };
        let mut s = format!("{scheme}:");
        if keep_user {
            if let Some(u) = &self.user {
                s.push_str(u);
                s.push('@');
            }
        }
        s.push_str(&host_for_uri(&self.host));
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        if let Some(t) = self.transport {
            if !self.secure && t != Transport::Udp {
                s.push_str(&format!(";transport={t}"));
            }
        }
        s
    }
}

/// `sip:[user@][v6]:port;params` for the IPv6 literals rsip cannot parse.
fn parse_ipv6_uri(s: &str) -> Option<(Option<String>, String, Option<u16>)> {
    let rest = s.split_once(':')?.1;
    let rest = rest.split(';').next()?;
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, hp)) => (Some(u.to_string()), hp),
        None => (None, rest),
    };
    let inner = hostport.strip_prefix('[')?;
    let (ip, after) = inner.split_once(']')?;
    let ip: std::net::Ipv6Addr = ip.parse().ok()?;
    let port = match after.strip_prefix(':') {
        Some(p) => Some(p.parse().ok()?),
        None if after.is_empty() => None,
        None => return None,
    };
    Some((user, ip.to_string(), port))
}

/// Writes an IPv6 literal in brackets, anything else as is.
pub fn host_for_uri(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn addr_for_uri(addr: SocketAddr) -> String {
    format!("{}:{}", host_for_uri(&addr.ip().to_string()), addr.port())
}

/// The method of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Method {
    #[serde(rename = "OPTIONS")]
    Options,
    #[serde(rename = "REGISTER")]
    Register,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fresh RFC 3261 branch: the magic cookie plus 96 random bits.
pub fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{}", random_token(12))
}

/// A fresh From tag (64 random bits).
pub fn new_tag() -> String {
    random_token(8)
}

/// A fresh Call-ID (128 random bits) scoped to our host.
pub fn new_call_id(local: IpAddr) -> String {
    format!("{}@{}", random_token(16), local)
}

fn random_token(bytes: usize) -> String {
    let mut raw = [0u8; 32];
    let raw = &mut raw[..bytes.min(32)];
    rand::thread_rng().fill(raw);
    hex::encode(raw)
}

/// Everything needed to build one request of a probe. Identifiers are chosen by the caller so a
/// REGISTER retry keeps its Call-ID and From tag and bumps the CSeq (RFC 3261 §22.2).
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub request_uri: String,
    /// The To and From URI (address of record for REGISTER).
    pub aor: String,
    pub transport: Transport,
    /// Our address as seen by the socket, for Via and Contact.
    pub local: SocketAddr,
    pub branch: String,
    pub from_tag: String,
    pub call_id: String,
    pub cseq: u32,
    pub max_forwards: u8,
    /// REGISTER only: the Contact URI and its Expires.
    pub contact: Option<String>,
    pub expires: Option<u32>,
    /// `Authorization` or `Proxy-Authorization` and its value.
    pub authorization: Option<(AuthHeader, String)>,
    pub user_agent: String,
}

/// Which header carries our credentials: 401 asks for `Authorization`, 407 for `Proxy-Authorization`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthHeader {
    Authorization,
    ProxyAuthorization,
}

/// The `User-Agent` we send: `sipwatch/<version>`.
pub fn user_agent() -> String {
    concat!("sipwatch/", env!("CARGO_PKG_VERSION")).to_string()
}

/// The Contact URI we register: our socket address, with the transport when it is not UDP.
pub fn contact_uri(user: &str, local: SocketAddr, transport: Transport) -> String {
    let scheme = if transport == Transport::Tls {
        "sips"
    } else {
        "sip"
    };
    let mut s = format!("{scheme}:{user}@{}", addr_for_uri(local));
    if transport == Transport::Tcp {
        s.push_str(";transport=tcp");
    }
    s
}

/// Builds the request with rsip. All values come from the spec; nothing random happens here.
pub fn build_request(spec: &RequestSpec) -> Result<rsip::Request, MessageError> {
    let uri = rsip::Uri::try_from(spec.request_uri.as_str())
        .map_err(|e| MessageError::NotSipUri(format!("{} ({e})", spec.request_uri)))?;
    let method = match spec.method {
        Method::Options => rsip::Method::Options,
        Method::Register => rsip::Method::Register,
    };
    let mut headers = rsip::Headers::default();
    headers.push(Header::Via(rsip::headers::Via::new(format!(
        "SIP/2.0/{} {};branch={};rport",
        spec.transport.via_token(),
        addr_for_uri(spec.local),
        spec.branch
    ))));
    headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new(
        spec.max_forwards.to_string(),
    )));
    headers.push(Header::From(rsip::headers::From::new(format!(
        "<{}>;tag={}",
        spec.aor, spec.from_tag
    ))));
    headers.push(Header::To(rsip::headers::To::new(format!(
        "<{}>",
        spec.aor
    ))));
    headers.push(Header::CallId(rsip::headers::CallId::new(
        spec.call_id.clone(),
    )));
    headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
        "{} {}",
        spec.cseq,
        spec.method.as_str()
    ))));
    if let Some(contact) = &spec.contact {
        headers.push(Header::Contact(rsip::headers::Contact::new(format!(
            "<{contact}>"
        ))));
    }
    if let Some(expires) = spec.expires {
        headers.push(Header::Expires(rsip::headers::Expires::new(
            expires.to_string(),
        )));
    }
    if let Some((which, value)) = &spec.authorization {
        headers.push(match which {
            AuthHeader::Authorization => {
                Header::Authorization(rsip::headers::Authorization::new(value.clone()))
            }
            AuthHeader::ProxyAuthorization => {
                Header::ProxyAuthorization(rsip::headers::ProxyAuthorization::new(value.clone()))
            }
        });
    }
    if spec.method == Method::Options {
        headers.push(Header::Accept(rsip::headers::Accept::new(
            "application/sdp".to_string(),
        )));
    }
    headers.push(Header::UserAgent(rsip::headers::UserAgent::new(
        spec.user_agent.clone(),
    )));
    headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
        "0".to_string(),
    )));
    Ok(rsip::Request {
        method,
        uri,
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    })
}

/// An OPTIONS request rendered by rsip once, kept with where its branch, From tag and Call-ID
/// sit, so the next request of the same probe spec is a copy with the new identifiers written
/// over the old ones: byte for byte what [`build_request`] renders, without building and rendering
/// the rsip message again (a fifth of the daemon's CPU per ping).
///
/// Kept per probe spec, whose OPTIONS requests differ only in their identifiers and in what the
/// socket gives (transport, local address): those are compared, the rest is the spec's. Debug
/// builds check every copy against rsip's rendering, so the tests catch a request that starts to
/// differ in something else.
#[derive(Debug)]
pub struct RequestTemplate {
    transport: Transport,
    local: SocketAddr,
    bytes: Vec<u8>,
    /// Where each identifier starts, and its length.
    branch: (usize, usize),
    tag: (usize, usize),
    call_id: (usize, usize),
}

impl RequestTemplate {
    /// Learns the template from an OPTIONS `spec` and its rendering `text`; None for another
    /// method, or when an identifier does not appear exactly once (then rsip builds every request).
    pub fn learn(spec: &RequestSpec, text: &str) -> Option<RequestTemplate> {
        let once = |needle: &str| -> Option<usize> {
            let mut found = text.match_indices(needle).map(|(i, _)| i);
            let first = found.next()?;
            found.next().is_none().then_some(first)
        };
        if spec.method != Method::Options
            || spec.branch.is_empty()
            || spec.from_tag.is_empty()
            || spec.call_id.is_empty()
        {
            return None;
        }
        Some(RequestTemplate {
            transport: spec.transport,
            local: spec.local,
            branch: (once(&spec.branch)?, spec.branch.len()),
            tag: (
                once(&format!(";tag={}", spec.from_tag))? + ";tag=".len(),
                spec.from_tag.len(),
            ),
            call_id: (once(&spec.call_id)?, spec.call_id.len()),
            bytes: text.as_bytes().to_vec(),
        })
    }

    /// Writes the request with these identifiers into `out` (cleared first); false, and `out`
    /// left empty, when an identifier's length differs from the template's.
    pub fn fill(&self, out: &mut Vec<u8>, branch: &str, from_tag: &str, call_id: &str) -> bool {
        out.clear();
        let ids = [
            (self.branch, branch),
            (self.tag, from_tag),
            (self.call_id, call_id),
        ];
        if ids.iter().any(|((_, len), v)| v.len() != *len) {
            return false;
        }
        out.extend_from_slice(&self.bytes);
        for ((at, len), value) in ids {
            out[at..at + len].copy_from_slice(value.as_bytes());
        }
        true
    }

    /// The rendered request's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The request for `spec` (of the spec the template was learnt from), when the socket and the
    /// identifiers' lengths are the same.
    pub fn render(&self, spec: &RequestSpec) -> Option<Vec<u8>> {
        let fits = spec.method == Method::Options
            && spec.transport == self.transport
            && spec.local == self.local
            && spec.branch.len() == self.branch.1
            && spec.from_tag.len() == self.tag.1
            && spec.call_id.len() == self.call_id.1;
        if !fits {
            return None;
        }
        let mut out = Vec::with_capacity(self.bytes.len());
        self.fill(&mut out, &spec.branch, &spec.from_tag, &spec.call_id);
        debug_assert!(
            build_request(spec).is_ok_and(|r| r.to_string().as_bytes() == out.as_slice()),
            "a request of this spec differs from its template in more than its identifiers"
        );
        Some(out)
    }
}

/// One binding from a REGISTER 200 OK's Contact headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub uri: String,
    pub expires: Option<u32>,
}

/// What a probe needs from a response, pulled out of the rsip parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub code: u16,
    pub reason: String,
    /// Branch of the topmost Via.
    pub branch: Option<String>,
    pub cseq: Option<u32>,
    pub cseq_method: Option<String>,
    pub call_id: Option<String>,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    /// `Server` header, or `User-Agent` when the server sent no `Server`.
    pub server: Option<String>,
    pub www_authenticate: Vec<String>,
    pub proxy_authenticate: Vec<String>,
    pub bindings: Vec<Binding>,
    pub min_expires: Option<u32>,
    pub retry_after: Option<u32>,
}

/// Parses one whole response. Requests, garbage and truncated messages are errors, never panics.
pub fn parse_response(bytes: &[u8]) -> Result<ResponseHead, MessageError> {
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if !bytes.starts_with(b"SIP/2.0 ") {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
        return Err(MessageError::Malformed(format!(
            "expected a status line starting with \"SIP/2.0 \", got {shown:?}"
        )));
    }
    let head_end = find_head_end(bytes).ok_or_else(|| {
        MessageError::Malformed("truncated: no blank line after the headers".into())
    })?;
    let first_line_end = bytes.iter().position(|b| *b == b'\n').unwrap_or(head_end);
    let status_line = String::from_utf8_lossy(&bytes[..first_line_end]);
    let mut parts = status_line.trim_end().splitn(3, ' ');
    parts.next();
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..=699).contains(c))
        .ok_or_else(|| MessageError::Malformed(format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").trim();

    // A plain head (one `Name: value` per line, UTF-8) is split here, without building rsip's
    // message: the daemon reads thousands of answers a second and rsip's parse was a sixth of its
    // CPU. Anything else (folded lines, odd names) goes through rsip, which judges it. Both give
    // the same header names and values (a test compares them on a corpus).
    match plain_head(code, reason, &bytes[..head_end]) {
        Some(head) => Ok(head),
        None => Ok(read_head(
            code,
            reason.to_string(),
            &rsip_headers(&bytes[..head_end])?,
        )),
    }
}

/// The headers of `head` as rsip reads them.
fn rsip_headers(head: &[u8]) -> Result<Vec<(HeaderName, Cow<'_, str>)>, MessageError> {
    let response = rsip::Response::try_from(head)
        .map_err(|e| MessageError::Malformed(short(&e.to_string())))?;
    Ok(response
        .headers
        .iter()
        .map(|h| {
            let (name, value) = header_name_value(h);
            (name, Cow::Owned(value))
        })
        .collect())
}

/// A plain head read as it is split, with no list of its headers in between. None for anything
/// that is not plain ([`plain_headers`]).
fn plain_head(code: u16, reason: &str, head: &[u8]) -> Option<ResponseHead> {
    let mut b = HeadBuilder::new(code, reason.to_string());
    split_plain(head, |name, value| b.header(&name, value))?;
    Some(b.finish())
}

/// The headers of a plain head: after the status line, each line `Name: value` with a token
/// for a name right before the colon, UTF-8, no folding. None for anything else.
#[cfg(test)]
fn plain_headers(head: &[u8]) -> Option<Vec<(HeaderName, Cow<'_, str>)>> {
    let mut out = Vec::with_capacity(16);
    split_plain(head, |name, value| out.push((name, Cow::Borrowed(value))))?;
    Some(out)
}

/// Hands each header of a plain head to `each`, in order; None (part way through, perhaps)
/// when the head is not plain.
fn split_plain<'a>(head: &'a [u8], mut each: impl FnMut(HeaderName, &'a str)) -> Option<()> {
    let text = std::str::from_utf8(head).ok()?;
    let mut rest = &text[memchr::memchr(b'\n', text.as_bytes())? + 1..];
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len());
        // Every line ends in CRLF; a bare LF or CR is not plain.
        let line = rest[..end].strip_suffix('\r')?;
        rest = &rest[(end + 1).min(rest.len())..];
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) || memchr::memchr(b'\r', line.as_bytes()).is_some() {
            return None;
        }
        let colon = memchr::memchr(b':', line.as_bytes())?;
        let name = &line[..colon];
        // No space before the colon either: rsip refuses it, and the two must agree.
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return None;
        }
        each(header_name(name), line[colon + 1..].trim());
    }
    Some(())
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// A header's name as the probe reads it, compact forms folded in (case-insensitive).
fn header_name(name: &str) -> HeaderName {
    const NAMES: [(&str, HeaderName); 19] = [
        ("via", HeaderName::Via),
        ("v", HeaderName::Via),
        ("cseq", HeaderName::CSeq),
        ("call-id", HeaderName::CallId),
        ("i", HeaderName::CallId),
        ("from", HeaderName::From),
        ("f", HeaderName::From),
        ("to", HeaderName::To),
        ("t", HeaderName::To),
        ("server", HeaderName::Server),
        ("user-agent", HeaderName::UserAgent),
        ("www-authenticate", HeaderName::WwwAuthenticate),
        ("proxy-authenticate", HeaderName::ProxyAuthenticate),
        ("contact", HeaderName::Contact),
        ("m", HeaderName::Contact),
        ("content-length", HeaderName::ContentLength),
        ("l", HeaderName::ContentLength),
        ("min-expires", HeaderName::MinExpires),
        ("retry-after", HeaderName::RetryAfter),
    ];
    // Most names are of other lengths than the ones read: compare those only.
    NAMES
        .into_iter()
        .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .map_or(HeaderName::Other, |(_, h)| h)
}

/// What a probe needs from the headers of a response with this status.
fn read_head(code: u16, reason: String, headers: &[(HeaderName, Cow<'_, str>)]) -> ResponseHead {
    let mut b = HeadBuilder::new(code, reason);
    for (name, value) in headers {
        b.header(name, value);
    }
    b.finish()
}

/// A response head, filled in header by header.
struct HeadBuilder {
    head: ResponseHead,
    user_agent: Option<String>,
    via_seen: bool,
}

impl HeadBuilder {
    fn new(code: u16, reason: String) -> HeadBuilder {
        HeadBuilder {
            head: ResponseHead {
                code,
                reason,
                branch: None,
                cseq: None,
                cseq_method: None,
                call_id: None,
                from_tag: None,
                to_tag: None,
                server: None,
                www_authenticate: Vec::new(),
                proxy_authenticate: Vec::new(),
                bindings: Vec::new(),
                min_expires: None,
                retry_after: None,
            },
            user_agent: None,
            via_seen: false,
        }
    }

    fn header(&mut self, name: &HeaderName, value: &str) {
        let head = &mut self.head;
        match name {
            HeaderName::Via if !self.via_seen => {
                self.via_seen = true;
                // Only the topmost Via counts; a comma-joined list keeps its first entry.
                let first = list_entries(value).next().unwrap_or_default();
                head.branch = param_value(first, "branch");
            }
            HeaderName::CSeq => {
                let mut it = value.split_whitespace();
                head.cseq = it.next().and_then(|n| n.parse().ok());
                head.cseq_method = it.next().map(str::to_string);
            }
            HeaderName::CallId => head.call_id = Some(value.trim().to_string()),
            HeaderName::From => head.from_tag = param_value(value, "tag"),
            HeaderName::To => head.to_tag = param_value(value, "tag"),
            HeaderName::Server => head.server = Some(value.trim().to_string()),
            HeaderName::UserAgent => self.user_agent = Some(value.trim().to_string()),
            HeaderName::WwwAuthenticate => head.www_authenticate.push(value.trim().to_string()),
            HeaderName::ProxyAuthenticate => head.proxy_authenticate.push(value.trim().to_string()),
            HeaderName::Contact => {
                for entry in list_entries(value) {
                    if let Some(b) = parse_binding(entry) {
                        head.bindings.push(b);
                    }
                }
            }
            HeaderName::MinExpires => head.min_expires = value.trim().parse().ok(),
            HeaderName::RetryAfter => {
                head.retry_after = value
                    .split([' ', ';', '('])
                    .next()
                    .and_then(|v| v.parse().ok())
            }
            _ => {}
        }
    }

    fn finish(mut self) -> ResponseHead {
        if self.head.server.is_none() {
            self.head.server = self.user_agent;
        }
        self.head
    }
}

fn short(s: &str) -> String {
    let mut s: String = s.chars().take(120).collect();
    if s.is_empty() {
        s.push_str("unparseable headers");
    }
    s
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find(bytes, b"\r\n\r\n").map(|p| p + 4)
}

/// The header names a probe reads, with compact forms folded in.
#[derive(Debug, PartialEq, Eq)]
enum HeaderName {
    Via,
    CSeq,
    CallId,
    From,
    To,
    Server,
    UserAgent,
    WwwAuthenticate,
    ProxyAuthenticate,
    Contact,
    ContentLength,
    MinExpires,
    RetryAfter,
    Other,
}

fn header_name_value(h: &Header) -> (HeaderName, String) {
    match h {
        Header::Via(v) => (HeaderName::Via, v.value().to_string()),
        Header::CSeq(v) => (HeaderName::CSeq, v.value().to_string()),
        Header::CallId(v) => (HeaderName::CallId, v.value().to_string()),
        Header::From(v) => (HeaderName::From, v.value().to_string()),
        Header::To(v) => (HeaderName::To, v.value().to_string()),
        Header::Server(v) => (HeaderName::Server, v.value().to_string()),
        Header::UserAgent(v) => (HeaderName::UserAgent, v.value().to_string()),
        Header::WwwAuthenticate(v) => (HeaderName::WwwAuthenticate, v.value().to_string()),
        Header::ProxyAuthenticate(v) => (HeaderName::ProxyAuthenticate, v.value().to_string()),
        Header::Contact(v) => (HeaderName::Contact, v.value().to_string()),
        Header::ContentLength(v) => (HeaderName::ContentLength, v.value().to_string()),
        Header::MinExpires(v) => (HeaderName::MinExpires, v.value().to_string()),
        Header::RetryAfter(v) => (HeaderName::RetryAfter, v.value().to_string()),
        Header::Other(name, value) => {
            let n = match name.trim().to_ascii_lowercase().as_str() {
                "v" => HeaderName::Via,
                "i" => HeaderName::CallId,
                "f" => HeaderName::From,
                "t" => HeaderName::To,
                "m" => HeaderName::Contact,
                "l" => HeaderName::ContentLength,
                _ => HeaderName::Other,
            };
            (n, value.clone())
        }
        _ => (HeaderName::Other, String::new()),
    }
}

/// Splits a comma-separated header value, leaving commas inside quotes and `<...>` alone.
pub fn split_list(value: &str) -> Vec<String> {
    list_entries(value).map(str::to_string).collect()
}

/// The entries of a comma-separated header value, trimmed, empty ones skipped; commas inside
/// quotes (a backslash escapes the next character there) and inside `<...>` do not separate.
/// Lazy: the first entry (a top Via) costs a scan of itself only.
pub fn list_entries(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let text = rest?;
        let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
        let mut cut = None;
        for (i, c) in text.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '<' if !in_quotes => in_angle = true,
                '>' if !in_quotes => in_angle = false,
                ',' if !in_quotes && !in_angle => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let entry = match cut {
            Some(i) => {
                rest = Some(&text[i + 1..]);
                &text[..i]
            }
            None => {
                rest = None;
                text
            }
        };
        let entry = entry.trim();
        if !entry.is_empty() {
            return Some(entry);
        }
    })
}

/// The value of a `;name=value` header parameter (outside any `<...>` URI), case-insensitive name.
pub fn param_value(value: &str, name: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=')?;
        if n.trim().eq_ignore_ascii_case(name) {
            Some(v.trim().trim_matches('"').to_string())
        } else {
            None
        }
    })
}

fn parse_binding(entry: &str) -> Option<Binding> {
    let uri = match (entry.find('<'), entry.find('>')) {
        (Some(a), Some(b)) if b > a => entry[a + 1..b].to_string(),
        _ => entry.split(';').next()?.trim().to_string(),
    };
    if uri.is_empty() || uri == "*" {
        return None;
    }
    let expires = param_value(entry, "expires").and_then(|v| v.parse().ok());
    Some(Binding { uri, expires })
}

/// Compares two SIP URIs the way a registrar would for our purpose: scheme, user, host and port,
/// case-insensitive on scheme and host, ignoring parameters.
pub fn same_contact(a: &str, b: &str) -> bool {
    fn key(u: &str) -> String {
        let u = u.split(';').next().unwrap_or(u).trim();
        let (scheme, rest) = u.split_once(':').unwrap_or(("sip", u));
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hp)) => (user, hp),
            None => ("", rest),
        };
        format!(
            "{}:{}@{}",
            scheme.to_ascii_lowercase(),
            user,
            hostport.to_ascii_lowercase()
        )
    }
    key(a) == key(b)
}

/// Stream framing (RFC 3261 §18.3): how many bytes at the start of `buf` form one whole message,
/// once they have all arrived. Leading CRLF keep-alives are counted into the message so the caller
/// can drop them with it. `Ok(None)` means "read more".
pub fn stream_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, MessageError> {
    let skip = buf
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[skip..];
    let Some(head_end) = find_head_end(rest) else {
        if rest.len() > max {
            return Err(MessageError::TooLarge(rest.len(), max));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&rest[..head_end]);
    let mut content_length = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                content_length = Some(value.trim().parse::<usize>().map_err(|_| {
                    MessageError::Malformed(format!("bad Content-Length {:?}", value.trim()))
                })?);
            }
        }
    }
    // §18.3: over a stream the header is mandatory.
    let body = content_length.ok_or(MessageError::MissingHeader("Content-Length"))?;
    let total = head_end + body;
    if total > max {
        return Err(MessageError::TooLarge(total, max));
    }
    if rest.len() >= total {
        Ok(Some(skip + total))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: Method) -> RequestSpec {
        RequestSpec {
            method,
            request_uri: "sip:127.0.0.1:5060".into(),
            aor: "sip:alice@example.org".into(),
            transport: Transport::Udp,
            local: "127.0.0.1:40000".parse().unwrap(),
            branch: new_branch(),
            from_tag: new_tag(),
            call_id: new_call_id("127.0.0.1".parse().unwrap()),
            cseq: 1,
            max_forwards: 70,
            contact: None,
            expires: None,
            authorization: None,
            user_agent: user_agent(),
        }
    }

    #[test]
    fn a_template_renders_what_rsip_renders_with_new_identifiers() {
        let first = spec(Method::Options);
        let t = RequestTemplate::learn(&first, &build_request(&first).unwrap().to_string())
            .expect("identifiers found once each");
        for _ in 0..50 {
            let next = RequestSpec {
                branch: new_branch(),
                from_tag: new_tag(),
                call_id: new_call_id("127.0.0.1".parse().unwrap()),
                ..first.clone()
            };
            let rendered = t
                .render(&next)
                .expect("same request but for its identifiers");
            assert_eq!(
                String::from_utf8(rendered).unwrap(),
                build_request(&next).unwrap().to_string()
            );
        }
        // Another socket, or identifiers of other lengths: no template (rsip builds it).
        let moved = RequestSpec {
            local: "127.0.0.1:40001".parse().unwrap(),
            ..first.clone()
        };
        assert!(t.render(&moved).is_none());
        let longer_tag = RequestSpec {
            from_tag: format!("{}0", first.from_tag),
            ..first.clone()
        };
        assert!(t.render(&longer_tag).is_none());
    }

    #[test]
    fn options_has_every_mandatory_header() {
        let s = spec(Method::Options);
        let text = build_request(&s).unwrap().to_string();
        assert!(
            text.starts_with("OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains(&format!(
            "Via: SIP/2.0/UDP 127.0.0.1:40000;branch={};rport\r\n",
            s.branch
        )));
        assert!(text.contains("Max-Forwards: 70\r\n"));
        assert!(text.contains(&format!(
            "From: <sip:alice@example.org>;tag={}\r\n",
            s.from_tag
        )));
        assert!(text.contains("To: <sip:alice@example.org>\r\n"));
        assert!(text.contains(&format!("Call-ID: {}\r\n", s.call_id)));
        assert!(text.contains("CSeq: 1 OPTIONS\r\n"));
        assert!(text.contains(&format!(
            "User-Agent: sipwatch/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    }

    #[test]
    fn register_carries_contact_expires_and_auth() {
        let mut s = spec(Method::Register);
        s.contact = Some(contact_uri("alice", s.local, Transport::Udp));
        s.expires = Some(60);
        s.cseq = 2;
        s.authorization = Some((AuthHeader::ProxyAuthorization, "Digest x=\"1\"".into()));
        let text = build_request(&s).unwrap().to_string();
        assert!(
            text.contains("Contact: <sip:alice@127.0.0.1:40000>\r\n"),
            "{text}"
        );
        assert!(text.contains("Expires: 60\r\n"));
        assert!(text.contains("CSeq: 2 REGISTER\r\n"));
        assert!(
            text.contains("Proxy-Authorization: Digest x=\"1\"\r\n"),
            "{text}"
        );
    }

    #[test]
    fn branches_are_fresh_and_long_enough() {
        let a = new_branch();
        let b = new_branch();
        assert_ne!(a, b);
        assert!(a.starts_with(BRANCH_COOKIE));
        // 64 random bits at least = 16 hex digits after the cookie.
        assert!(a.len() - BRANCH_COOKIE.len() >= 16);
    }

    /// The plain split and rsip's read the same names and values, so both give the same head;
    /// and what is not plain goes to rsip.
    #[test]
    fn the_plain_split_reads_what_rsip_reads() {
        let corpus = [
            // Kamailio's answer to a ping, as the daemon reads thousands a second.
            "SIP/2.0 200 Keepalive\r\nVia: SIP/2.0/UDP 127.0.0.1:41000;branch=z9hG4bK00000001000000020a0b0c0d;rport=41000\r\nFrom: <sip:sipwatch@127.0.0.1>;tag=0123456789abcdef\r\nTo: <sip:sipwatch@127.0.0.1>;tag=a6a1c5f60faecf035a1ae5b6e96e979a-2c0b\r\nCall-ID: 0123456789abcdef0123456789abcdef@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nServer: kamailio (5.8.4 (x86_64/linux))\r\nContent-Length: 0\r\n\r\n",
            // Compact forms, lower case, two Vias in one line.
            "SIP/2.0 503 Service Unavailable\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\nvia: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bKc\r\nf: \"Ops, on call\" <sip:a@b;x=1>;tag=ft\r\nt: <sip:a@b>\r\ni: abc@h\r\ncseq: 7 OPTIONS\r\nuser-agent: SIPp\r\nRetry-After: 30 (maintenance);duration=60\r\nl: 0\r\n\r\n",
            // A challenge and bindings, with commas inside quotes and brackets.
            "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKq;received=1.2.3.4\r\nFrom: <sip:u@d>;tag=1\r\nTo: <sip:u@d>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n, \\\"x\\\" y\", qop=\"auth,auth-int\"\r\nProxy-Authenticate: Digest realm=\"p\"\r\nContact: <sip:u@1.1.1.1;a=b,c>;expires=60, sip:u@2.2.2.2;expires=10\r\nMin-Expires: 120\r\nServer:   padded   \r\nX-Other: anything: at all\r\nContent-Length: 0\r\n\r\n",
        ];
        for raw in corpus {
            let head_end = find_head_end(raw.as_bytes()).expect("a whole head");
            let plain = plain_headers(&raw.as_bytes()[..head_end]).expect("a plain head");
            let rsip = rsip_headers(&raw.as_bytes()[..head_end]).expect("rsip reads it");
            let a = read_head(200, String::new(), &plain);
            let b = read_head(200, String::new(), &rsip);
            assert_eq!(a, b, "{raw}");
            let streamed = plain_head(200, "", &raw.as_bytes()[..head_end]).expect("plain");
            assert_eq!(streamed, b, "{raw}");
            assert!(a.branch.is_some() && a.call_id.is_some() && a.cseq_method.is_some());
            assert_eq!(
                parse_response(raw.as_bytes()).expect("parses").branch,
                a.branch
            );
        }
        // Not plain: a folded line, a name that is no token, a space before the colon, a line
        // without a colon.
        for odd in [
            "SIP/2.0 200 OK\r\nCSeq : 1 OPTIONS\r\n\r\n",
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bKf\r\n\r\n",
            "SIP/2.0 200 OK\r\nVi a: x\r\n\r\n",
            "SIP/2.0 200 OK\r\nno colon here\r\n\r\n",
        ] {
            let head_end = find_head_end(odd.as_bytes()).expect("a whole head");
            assert!(
                plain_headers(&odd.as_bytes()[..head_end]).is_none(),
                "{odd}"
            );
            assert!(
                plain_head(200, "OK", &odd.as_bytes()[..head_end]).is_none(),
                "{odd}"
            );
        }
    }

    #[test]
    fn parses_a_kamailio_register_ok() {
        let raw = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport=40000;received=127.0.0.1\r\n\
From: <sip:alice@example.org>;tag=f1\r\n\
To: <sip:alice@example.org>;tag=t2\r\n\
Call-ID: cid@127.0.0.1\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:alice@127.0.0.1:40000>;expires=60, <sip:alice@10.0.0.9:5060;transport=tcp>;expires=3600\r\n\
Server: kamailio (5.6.3 (x86_64/linux))\r\n\
Content-Length: 0\r\n\r\n";
        let h = parse_response(raw.as_bytes()).unwrap();
        assert_eq!(h.code, 200);
        assert_eq!(h.reason, "OK");
        assert_eq!(h.branch.as_deref(), Some("z9hG4bKabc"));
        assert_eq!(h.cseq, Some(2));
        assert_eq!(h.cseq_method.as_deref(), Some("REGISTER"));
        assert_eq!(h.call_id.as_deref(), Some("cid@127.0.0.1"));
        assert_eq!(h.from_tag.as_deref(), Some("f1"));
        assert_eq!(h.to_tag.as_deref(), Some("t2"));
        assert_eq!(h.server.as_deref(), Some("kamailio (5.6.3 (x86_64/linux))"));
        assert_eq!(h.bindings.len(), 2);
        assert_eq!(h.bindings[0].expires, Some(60));
        assert!(same_contact(
            &h.bindings[0].uri,
            "sip:alice@127.0.0.1:40000"
        ));
        assert!(!same_contact(
            &h.bindings[1].uri,
            "sip:alice@127.0.0.1:40000"
        ));
    }

    #[test]
    fn understands_compact_headers_and_challenges() {
        let raw = "SIP/2.0 401 Unauthorized\r\n\
v: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKq\r\n\
f: <sip:a@b>;tag=x\r\n\
t: <sip:a@b>\r\n\
i: abc\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"r\", nonce=\"n, with comma\", algorithm=SHA-256, qop=\"auth\"\r\n\
WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\"\r\n\
l: 0\r\n\r\n";
        let h = parse_response(raw.as_bytes()).unwrap();
        assert_eq!(h.code, 401);
        assert_eq!(h.branch.as_deref(), Some("z9hG4bKq"));
        assert_eq!(h.call_id.as_deref(), Some("abc"));
        assert_eq!(h.from_tag.as_deref(), Some("x"));
        assert_eq!(h.www_authenticate.len(), 2);
        assert!(h.www_authenticate[0].contains("n, with comma"));
    }

    #[test]
    fn rejects_garbage_requests_and_truncation() {
        assert!(parse_response(b"").is_err());
        assert!(parse_response(b"\x00\x01\x02garbage").is_err());
        assert!(parse_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n").is_err());
        assert!(parse_response(b"SIP/2.0 200 OK\r\nVia: x").is_err());
        assert!(parse_response(b"SIP/2.0 2000 OK\r\n\r\n").is_err());
        assert!(parse_response(b"SIP/2.0 099 Low\r\n\r\n").is_err());
        // Every prefix of a valid response is either an error or (the whole thing) a success.
        let raw = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        for n in 0..raw.len() {
            let _ = parse_response(&raw[..n]);
        }
        assert!(parse_response(raw).is_ok());
    }

    #[test]
    fn target_uris() {
        let t = TargetUri::parse("sip:127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("127.0.0.1", Some(5070), Some(Transport::Tcp))
        );
        assert_eq!(t.request_uri(false), "sip:127.0.0.1:5070;transport=tcp");
        let t = TargetUri::parse("sips:edge.example.org").unwrap();
        assert!(t.secure);
        assert_eq!(t.transport, Some(Transport::Tls));
        assert_eq!(t.port, None);
        let t = TargetUri::parse("sip:alice@example.org").unwrap();
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!(t.request_uri(false), "sip:example.org");
        assert_eq!(t.request_uri(true), "sip:alice@example.org");
        assert!(matches!(
            TargetUri::parse("http://example.org"),
            Err(MessageError::NotSipUri(_))
        ));
        assert!(matches!(
            TargetUri::parse("example.org"),
            Err(MessageError::NotSipUri(_))
        ));
        assert!(matches!(
            TargetUri::parse("sip:example.org;transport=sctp"),
            Err(MessageError::UnknownTransport(_))
        ));
        assert!(matches!(
            TargetUri::parse("sips:example.org;transport=udp"),
            Err(MessageError::SipsNeedsTls(Transport::Udp))
        ));
    }

    #[test]
    fn stream_framing_waits_for_the_whole_body() {
        let msg = b"SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for n in 0..msg.len() {
            assert_eq!(stream_frame_len(&msg[..n], 65536).unwrap(), None, "at {n}");
        }
        assert_eq!(stream_frame_len(msg, 65536).unwrap(), Some(msg.len()));
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(msg);
        two.extend_from_slice(msg);
        assert_eq!(stream_frame_len(&two, 65536).unwrap(), Some(4 + msg.len()));
        assert!(stream_frame_len(b"SIP/2.0 200 OK\r\n\r\n", 65536).is_err());
        assert!(stream_frame_len(b"SIP/2.0 200 OK\r\nl: x\r\n\r\n", 65536).is_err());
        assert!(stream_frame_len(&[b'a'; 100], 50).is_err());
    }
}
