//! HTTP Digest authentication as a SIP client uses it (RFC 3261 §22, RFC 7616, RFC 8760).
//!
//! A registrar or proxy answers 401/407 with one or more `WWW-Authenticate` / `Proxy-Authenticate`
//! headers. [`Challenge::parse`] reads one header value, [`choose`] (or [`choose_from_headers`])
//! picks the strongest challenge we can answer, and [`authorize`] computes the `Authorization` /
//! `Proxy-Authorization` header value for the retried request. [`NonceCounter`] keeps the `nc`
//! count per nonce, and [`new_cnonce`] makes a fresh client nonce.
//!
//! This file is pure: no sockets, no clocks, no logging. Randomness is confined to [`new_cnonce`];
//! [`authorize`] takes the cnonce as an argument so that tests are deterministic. It deliberately
//! does not implement the server side (nonce issuing, replay checks), `Authentication-Info` /
//! `rspauth` checking, or RFC 7616's `username*` extended notation for non-ASCII user names.
//! Passwords live only in [`Credentials`], whose `Debug` output redacts them; no error message
//! in this module ever contains a password.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use rand::RngCore;
use sha2::{Digest as _, Sha256, Sha512_256};

/// Digest hash algorithm, as named by the `algorithm` parameter (RFC 7616 §3.3, RFC 8760 §2).
///
/// The `-sess` variants fold the server nonce and client nonce into HA1 (RFC 7616 §3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm we support, weakest first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
    ];

    /// The canonical token, as written in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Parses an `algorithm` token case-insensitively; `None` if we do not support it.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token.trim()))
    }

    /// Ordering key for [`choose`]: SHA-512-256 (3) > SHA-256 (2) > MD5 (1). A `-sess` variant
    /// is as strong as its base hash.
    pub fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// True for the `-sess` variants.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// H(data) as lowercase hex (RFC 7616 §3.4.1).
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => {
                hex::encode(Sha512_256::digest(data))
            }
        }
    }

    fn hash_str(self, data: &str) -> String {
        self.hash_hex(data.as_bytes())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_token(s)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm { token: excerpt(s) })
    }
}

/// What went wrong with a Digest header. Messages name the problem and where it is, quote at
/// most a short excerpt of the offending text, and never contain a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("authentication header is empty; expected something like `Digest realm=\"...\", nonce=\"...\"`")]
    Empty,
    #[error("authentication scheme is `{scheme}`, not Digest; sipwatch can only answer Digest challenges (RFC 3261 §22)")]
    NotDigest { scheme: String },
    #[error("malformed Digest parameters at byte {at}: {problem}")]
    Malformed { at: usize, problem: String },
    #[error("Digest {context} has no `{param}` parameter, which is required ({rfc})")]
    MissingParam {
        context: &'static str,
        param: &'static str,
        rfc: &'static str,
    },
    #[error("Digest parameter `{param}` appears more than once; each parameter may appear only once (RFC 7235 §2.1)")]
    DuplicateParam { param: String },
    #[error("Digest algorithm `{token}` is not supported; sipwatch supports MD5, MD5-sess, SHA-256, SHA-256-sess, SHA-512-256 and SHA-512-256-sess")]
    UnsupportedAlgorithm { token: String },
    #[error("Digest nonce count nc={value} is not 8 hexadecimal digits (RFC 7616 §3.4)")]
    InvalidNonceCount { value: String },
    #[error("no authentication challenge in the response; a 401 needs WWW-Authenticate and a 407 needs Proxy-Authenticate (RFC 3261 §22.2, §22.3)")]
    NoChallenge,
    #[error("none of the {} authentication challenge(s) is usable: {}", problems.len(), problems.join("; "))]
    NoUsableChallenge { problems: Vec<String> },
    #[error(
        "the server asked for realm {} but this target is pinned to realm \"{}\"; no credentials \
         were sent (a server asking for another realm may be trying to capture a crackable \
         response: fix `realm` only if the server's realm is really the right one)",
        offered.iter().map(|r| format!("\"{}\"", crate::text::escape_control(r))).collect::<Vec<_>>().join(", "),
        crate::text::escape_control(pinned)
    )]
    RealmNotPinned {
        offered: Vec<String>,
        pinned: String,
    },
}

/// One Digest challenge from a `WWW-Authenticate` or `Proxy-Authenticate` header (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `MD5` when the header has no `algorithm` parameter.
    pub algorithm: Algorithm,
    /// Offered qop values, lowercased, in header order; empty means RFC 2069 compatibility mode.
    pub qop: Vec<String>,
    /// The previous request's nonce was stale: retry with the new nonce, the password was fine.
    pub stale: bool,
    pub domain: Option<String>,
    /// RFC 7616 §3.4.4: the server wants `username` sent as H(username:realm).
    pub userhash: bool,
}

impl Challenge {
    /// Parses a WWW-Authenticate / Proxy-Authenticate header value, e.g.
    /// `Digest realm="x", nonce="y", qop="auth,auth-int", algorithm=SHA-256, stale=TRUE`.
    ///
    /// Parameters may come in any order; unknown ones are ignored. `realm` and `nonce` are
    /// required; an `algorithm` we do not support is an error ([`choose_from_headers`] skips
    /// such challenges).
    pub fn parse(header_value: &str) -> Result<Challenge, DigestError> {
        let params = parse_digest_header(header_value)?;
        let mut seen = Seen::default();
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        let mut domain = None;
        let mut userhash = None;
        for Param { name, value } in params {
            let slot = match name.as_str() {
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "opaque" => &mut opaque,
                "algorithm" => &mut algorithm,
                "qop" => &mut qop,
                "stale" => &mut stale,
                "domain" => &mut domain,
                "userhash" => &mut userhash,
                _ => continue,
            };
            seen.check(&name)?;
            *slot = Some(value);
        }
        const CTX: &str = "challenge";
        const RFC: &str = "RFC 7616 §3.3";
        let realm = realm.ok_or(DigestError::MissingParam {
            context: CTX,
            param: "realm",
            rfc: RFC,
        })?;
        let nonce = nonce.ok_or(DigestError::MissingParam {
            context: CTX,
            param: "nonce",
            rfc: RFC,
        })?;
        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(token) => token.parse()?,
        };
        let qop = qop
            .map(|list| {
                list.split(',')
                    .map(|q| q.trim().to_ascii_lowercase())
                    .filter(|q| !q.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Challenge {
            realm,
            nonce,
            opaque,
            algorithm,
            qop,
            stale: stale.is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
            domain,
            userhash: userhash.is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
        })
    }

    /// The qop [`authorize`] will use: `auth` if offered, else `auth-int` if offered, else
    /// `None` (RFC 2069 compatibility; also when only unknown qop values are offered).
    pub fn qop_to_use(&self) -> Option<&'static str> {
        if self.qop.iter().any(|q| q == "auth") {
            Some("auth")
        } else if self.qop.iter().any(|q| q == "auth-int") {
            Some("auth-int")
        } else {
            None
        }
    }
}

/// Picks the challenge to answer: the strongest algorithm we support (SHA-512-256 > SHA-256 >
/// MD5), and among equally strong ones the topmost (RFC 8760 §2.4). `None` if `challenges` is empty.
pub fn choose(challenges: &[Challenge]) -> Option<&Challenge> {
    let mut best: Option<&Challenge> = None;
    for c in challenges {
        if best.is_none_or(|b| c.algorithm.strength() > b.algorithm.strength()) {
            best = Some(c);
        }
    }
    best
}

/// Parses every challenge header value of a 401/407 (in header order), skips those we cannot
/// use (unsupported algorithm, non-Digest scheme, malformed), and [`choose`]s among the rest.
/// The error lists why each one was unusable.
pub fn choose_from_headers<'a, I>(header_values: I) -> Result<Challenge, DigestError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut usable = Vec::new();
    let mut problems = Vec::new();
    for (i, value) in header_values.into_iter().enumerate() {
        match Challenge::parse(value) {
            Ok(c) => usable.push(c),
            Err(e) => problems.push(format!("challenge #{}: {e}", i + 1)),
        }
    }
    if let Some(best) = choose(&usable) {
        return Ok(best.clone());
    }
    if problems.is_empty() {
        Err(DigestError::NoChallenge)
    } else {
        Err(DigestError::NoUsableChallenge { problems })
    }
}

/// Like [`choose_from_headers`], but with `realm` set only a challenge for exactly that realm is
/// answered: a challenge for any other realm is [`DigestError::RealmNotPinned`], so a server that
/// asks for a realm of its choosing never gets a response computed with our password.
pub fn choose_for_realm<'a, I>(
    header_values: I,
    realm: Option<&str>,
) -> Result<Challenge, DigestError>
where
    I: IntoIterator<Item = &'a str>,
{
    let Some(pinned) = realm else {
        return choose_from_headers(header_values);
    };
    let mut usable = Vec::new();
    let mut offered = Vec::new();
    let mut problems = Vec::new();
    for (i, value) in header_values.into_iter().enumerate() {
        match Challenge::parse(value) {
            Ok(c) if c.realm == pinned => usable.push(c),
            Ok(c) => offered.push(c.realm),
            Err(e) => problems.push(format!("challenge #{}: {e}", i + 1)),
        }
    }
    if let Some(best) = choose(&usable) {
        return Ok(best.clone());
    }
    if !offered.is_empty() {
        return Err(DigestError::RealmNotPinned {
            offered,
            pinned: pinned.to_string(),
        });
    }
    if problems.is_empty() {
        Err(DigestError::NoChallenge)
    } else {
        Err(DigestError::NoUsableChallenge { problems })
    }
}

/// A SIP account's user name and password. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// Hashes what `Eq` compares (a changed password makes a different probe); never printed.
impl std::hash::Hash for Credentials {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.username.hash(state);
        self.password.hash(state);
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The credentials of an `Authorization` / `Proxy-Authorization` header (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The user name, or H(username:realm) when `userhash` is set.
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub nc: Option<u32>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
    pub userhash: bool,
}

impl Authorization {
    /// The header value: `Digest username="..", realm="..", nonce="..", uri="..",
    /// response="..", algorithm=SHA-256, cnonce="..", qop=auth, nc=00000001, opaque=".."`.
    /// `algorithm`, `qop` and `nc` are unquoted as RFC 7616 §3.4 requires; `nc` is 8 lowercase
    /// hex digits.
    pub fn header_value(&self) -> String {
        let mut out = String::from("Digest ");
        push_quoted(&mut out, "username", &self.username);
        out.push_str(", ");
        push_quoted(&mut out, "realm", &self.realm);
        out.push_str(", ");
        push_quoted(&mut out, "nonce", &self.nonce);
        out.push_str(", ");
        push_quoted(&mut out, "uri", &self.uri);
        out.push_str(", ");
        push_quoted(&mut out, "response", &self.response);
        out.push_str(", algorithm=");
        out.push_str(self.algorithm.as_str());
        if let Some(cnonce) = &self.cnonce {
            out.push_str(", ");
            push_quoted(&mut out, "cnonce", cnonce);
        }
        if let Some(qop) = &self.qop {
            out.push_str(", qop=");
            out.push_str(qop);
        }
        if let Some(nc) = self.nc {
            out.push_str(&format!(", nc={nc:08x}"));
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", ");
            push_quoted(&mut out, "opaque", opaque);
        }
        if self.userhash {
            out.push_str(", userhash=true");
        }
        out
    }

    /// Parses an `Authorization` / `Proxy-Authorization` header value (the inverse of
    /// [`Authorization::header_value`]); useful for test servers and for checking what we send.
    pub fn parse(header_value: &str) -> Result<Authorization, DigestError> {
        let params = parse_digest_header(header_value)?;
        let mut seen = Seen::default();
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = None;
        let mut cnonce = None;
        let mut nc = None;
        let mut qop = None;
        let mut opaque = None;
        let mut userhash = None;
        for Param { name, value } in params {
            let slot = match name.as_str() {
                "username" => &mut username,
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "uri" => &mut uri,
                "response" => &mut response,
                "algorithm" => &mut algorithm,
                "cnonce" => &mut cnonce,
                "nc" => &mut nc,
                "qop" => &mut qop,
                "opaque" => &mut opaque,
                "userhash" => &mut userhash,
                _ => continue,
            };
            seen.check(&name)?;
            *slot = Some(value);
        }
        let required = |v: Option<String>, param: &'static str| {
            v.ok_or(DigestError::MissingParam {
                context: "credentials",
                param,
                rfc: "RFC 7616 §3.4",
            })
        };
        let nc = match nc {
            None => None,
            Some(v) => {
                let ok = v.len() == 8 && v.bytes().all(|b| b.is_ascii_hexdigit());
                let parsed = u32::from_str_radix(&v, 16).ok().filter(|_| ok);
                Some(parsed.ok_or_else(|| DigestError::InvalidNonceCount { value: excerpt(&v) })?)
            }
        };
        Ok(Authorization {
            username: required(username, "username")?,
            realm: required(realm, "realm")?,
            nonce: required(nonce, "nonce")?,
            uri: required(uri, "uri")?,
            response: required(response, "response")?,
            algorithm: match algorithm {
                None => Algorithm::Md5,
                Some(token) => token.parse()?,
            },
            cnonce,
            nc,
            qop: qop.map(|q| q.trim().to_ascii_lowercase()),
            opaque,
            userhash: userhash.is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
        })
    }
}

/// Computes the credentials answering `challenge` for a request (RFC 7616 §3.4.1, RFC 2617 §3.2.2).
///
/// - qop: `auth` if offered, else `auth-int` (which hashes `body`), else RFC 2069 compatibility:
///   response = H(HA1:nonce:HA2) and no `cnonce`/`nc`/`qop` are sent.
/// - `-sess` algorithms: HA1 = H(H(user:realm:pass):nonce:cnonce). They need a cnonce even
///   without qop, so `cnonce` is sent whenever the algorithm is a `-sess` one.
/// - `digest_uri` is the Request-URI of the request being authorized (RFC 3261 §22.4).
/// - `nc` is this nonce's use count, starting at 1 (see [`NonceCounter`]); `cnonce` should come
///   from [`new_cnonce`].
pub fn authorize(
    challenge: &Challenge,
    creds: &Credentials,
    method: &str,
    digest_uri: &str,
    body: &[u8],
    nc: u32,
    cnonce: &str,
) -> Authorization {
    let alg = challenge.algorithm;
    let realm = &challenge.realm;
    let nonce = &challenge.nonce;
    let qop = challenge.qop_to_use();

    let mut ha1 = alg.hash_str(&format!("{}:{realm}:{}", creds.username, creds.password));
    if alg.is_session() {
        ha1 = alg.hash_str(&format!("{ha1}:{nonce}:{cnonce}"));
    }
    let ha2 = match qop {
        Some("auth-int") => {
            let body_hash = alg.hash_hex(body);
            alg.hash_str(&format!("{method}:{digest_uri}:{body_hash}"))
        }
        _ => alg.hash_str(&format!("{method}:{digest_uri}")),
    };
    let response = match qop {
        Some(qop) => alg.hash_str(&format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")),
        None => alg.hash_str(&format!("{ha1}:{nonce}:{ha2}")),
    };
    let username = if challenge.userhash {
        alg.hash_str(&format!("{}:{realm}", creds.username))
    } else {
        creds.username.clone()
    };
    Authorization {
        username,
        realm: realm.clone(),
        nonce: nonce.clone(),
        uri: digest_uri.to_owned(),
        response,
        algorithm: alg,
        cnonce: (qop.is_some() || alg.is_session()).then(|| cnonce.to_owned()),
        nc: qop.map(|_| nc),
        qop: qop.map(str::to_owned),
        opaque: challenge.opaque.clone(),
        userhash: challenge.userhash,
    }
}

/// A fresh client nonce: 128 random bits as 32 lowercase hex digits.
pub fn new_cnonce() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Counts uses of the current server nonce for the `nc` parameter: 1 for the first request
/// with a nonce, 2 for the next with the same nonce, back to 1 when the nonce changes.
#[derive(Debug, Clone, Default)]
pub struct NonceCounter {
    nonce: Option<String>,
    count: u32,
}

impl NonceCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `nc` to send with a request answering `nonce`.
    pub fn next(&mut self, nonce: &str) -> u32 {
        if self.nonce.as_deref() == Some(nonce) {
            self.count = self.count.saturating_add(1);
        } else {
            self.nonce = Some(nonce.to_owned());
            self.count = 1;
        }
        self.count
    }
}

// ---------------------------------------------------------------------------------------------
// Header parsing: `Digest` LWS param *(COMMA param), param = token EQUAL (token / quoted-string)
// (RFC 3261 §25.1, RFC 7235 §2.1). Lenient where real servers are sloppy: unquoted values may
// contain any character but whitespace and comma (base64 nonces), empty list elements are skipped.

struct Param {
    /// Lowercased parameter name.
    name: String,
    value: String,
}

/// Rejects a second occurrence of a known parameter.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn check(&mut self, name: &str) -> Result<(), DigestError> {
        if self.0.iter().any(|n| n == name) {
            return Err(DigestError::DuplicateParam {
                param: excerpt(name),
            });
        }
        self.0.push(name.to_owned());
        Ok(())
    }
}

/// Checks the scheme is Digest and returns the parameter list.
fn parse_digest_header(header_value: &str) -> Result<Vec<Param>, DigestError> {
    let mut cur = Cursor::new(header_value);
    cur.skip_ws();
    if cur.at_end() {
        return Err(DigestError::Empty);
    }
    let scheme_at = cur.pos;
    let scheme = cur.take_while(is_tchar);
    if scheme.is_empty() {
        return Err(cur.malformed(format!(
            "expected an authentication scheme such as `Digest`, found {}",
            cur.describe_next()
        )));
    }
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(DigestError::NotDigest {
            scheme: excerpt(scheme),
        });
    }
    if !cur.at_end() && !cur.peek().is_some_and(is_ws) {
        return Err(DigestError::Malformed {
            at: scheme_at + scheme.len(),
            problem: format!(
                "expected whitespace after the scheme `Digest`, found {}",
                cur.describe_next()
            ),
        });
    }
    parse_params(&mut cur)
}

fn parse_params(cur: &mut Cursor<'_>) -> Result<Vec<Param>, DigestError> {
    let mut params = Vec::new();
    loop {
        cur.skip_ws_and_commas();
        if cur.at_end() {
            return Ok(params);
        }
        let name = cur.take_while(is_tchar);
        if name.is_empty() {
            return Err(cur.malformed(format!(
                "expected a parameter name, found {}",
                cur.describe_next()
            )));
        }
        let name = name.to_ascii_lowercase();
        cur.skip_ws();
        if cur.peek() != Some('=') {
            return Err(cur.malformed(format!(
                "parameter `{}` has no value; write it as {}=value, found {}",
                excerpt(&name),
                excerpt(&name),
                cur.describe_next()
            )));
        }
        cur.bump();
        cur.skip_ws();
        let value = if cur.peek() == Some('"') {
            cur.quoted_string(&name)?
        } else {
            let v = cur.take_while(|c| !is_ws(c) && c != ',');
            if v.is_empty() {
                return Err(cur.malformed(format!(
                    "parameter `{}` has an empty value; use \"\" for an empty string",
                    excerpt(&name)
                )));
            }
            v.to_owned()
        };
        params.push(Param { name, value });
        cur.skip_ws();
        match cur.peek() {
            None | Some(',') => {}
            Some(_) => {
                return Err(cur.malformed(format!(
                    "expected `,` after parameter `{}`, found {}",
                    excerpt(params.last().map(|p| p.name.as_str()).unwrap_or("")),
                    cur.describe_next()
                )))
            }
        }
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn skip_ws(&mut self) {
        self.take_while(is_ws);
    }

    fn skip_ws_and_commas(&mut self) {
        self.take_while(|c| is_ws(c) || c == ',');
    }

    /// Reads a quoted-string starting at the opening quote; `\x` stands for `x` and a folded
    /// line break (CR/LF plus surrounding whitespace) stands for one space (RFC 3261 §7.3.1).
    fn quoted_string(&mut self, name: &str) -> Result<String, DigestError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(DigestError::Malformed {
                        at: open,
                        problem: format!(
                            "the quoted value of `{}` has no closing `\"`",
                            excerpt(name)
                        ),
                    })
                }
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => {
                        return Err(DigestError::Malformed {
                            at: open,
                            problem: format!(
                            "the quoted value of `{}` ends in a lone `\\` and has no closing `\"`",
                            excerpt(name)
                        ),
                        })
                    }
                },
                Some('\r' | '\n') => {
                    while out.ends_with([' ', '\t']) {
                        out.pop();
                    }
                    self.skip_ws();
                    out.push(' ');
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "the end of the header".to_owned(),
            Some(c) => format!("{:?}", c),
        }
    }

    fn malformed(&self, problem: String) -> DigestError {
        DigestError::Malformed {
            at: self.pos,
            problem,
        }
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// HTTP tchar (RFC 7230 §3.2.6), a superset of SIP's token characters (RFC 3261 §25.1).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A short, printable excerpt of untrusted text for error messages.
fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// Appends `name="value"`, escaping `"` and `\` (RFC 3261 §25.1 quoted-pair). CR, LF and other
/// control characters cannot appear in a quoted-string at all, so each becomes a space: a value
/// can never break out of its header.
fn push_quoted(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    // RFC 7616 §3.9.1. Note the RFC's cnonce is "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".
    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

    fn rfc7616_challenge(algorithm: &str) -> Challenge {
        Challenge::parse(&format!(
            "Digest\n    realm=\"http-auth@example.org\",\n    qop=\"auth, auth-int\",\n    \
             algorithm={algorithm},\n    nonce=\"{RFC7616_NONCE}\",\n    opaque=\"{RFC7616_OPAQUE}\""
        ))
        .expect("RFC 7616 challenge parses")
    }

    fn mufasa() -> Credentials {
        Credentials::new("Mufasa", "Circle of Life")
    }

    fn md5_hex(s: &str) -> String {
        hex::encode(Md5::digest(s.as_bytes()))
    }

    #[test]
    fn rfc7616_md5_example() {
        let ch = rfc7616_challenge("MD5");
        assert_eq!(ch.algorithm, Algorithm::Md5);
        let auth = authorize(
            &ch,
            &mufasa(),
            "GET",
            "/dir/index.html",
            b"",
            1,
            RFC7616_CNONCE,
        );
        assert_eq!(auth.response, "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(auth.qop.as_deref(), Some("auth"));
        assert_eq!(auth.nc, Some(1));
        assert_eq!(auth.cnonce.as_deref(), Some(RFC7616_CNONCE));
        assert_eq!(auth.opaque.as_deref(), Some(RFC7616_OPAQUE));
        assert_eq!(
            auth.header_value(),
            format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
                 nonce=\"{RFC7616_NONCE}\", uri=\"/dir/index.html\", \
                 response=\"8ca523f5e9506fed4657c9700eebdbec\", algorithm=MD5, \
                 cnonce=\"{RFC7616_CNONCE}\", qop=auth, nc=00000001, opaque=\"{RFC7616_OPAQUE}\""
            )
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let ch = rfc7616_challenge("SHA-256");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let auth = authorize(
            &ch,
            &mufasa(),
            "GET",
            "/dir/index.html",
            b"",
            1,
            RFC7616_CNONCE,
        );
        assert_eq!(
            auth.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(auth.header_value().contains(", algorithm=SHA-256, "));
    }

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5 (note the capital O in this RFC's password).
        let ch = Challenge::parse(
            "Digest\r\n realm=\"testrealm@host.com\",\r\n qop=\"auth,auth-int\",\r\n \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("RFC 2617 challenge parses");
        assert_eq!(ch.algorithm, Algorithm::Md5, "missing algorithm means MD5");
        let creds = Credentials::new("Mufasa", "Circle Of Life");
        let auth = authorize(&ch, &creds, "GET", "/dir/index.html", b"", 1, "0a4f113b");
        assert_eq!(auth.response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn md5_sess_matches_hand_derivation() {
        let ch = Challenge::parse(
            r#"Digest realm="sip.example.net", nonce="abc123", algorithm=MD5-sess, qop="auth""#,
        )
        .expect("parses");
        assert_eq!(ch.algorithm, Algorithm::Md5Sess);
        let creds = Credentials::new("alice", "secret");
        let auth = authorize(
            &ch,
            &creds,
            "REGISTER",
            "sip:sip.example.net",
            b"",
            3,
            "c0ffee",
        );
        let ha1 = md5_hex(&format!(
            "{}:abc123:c0ffee",
            md5_hex("alice:sip.example.net:secret")
        ));
        let ha2 = md5_hex("REGISTER:sip:sip.example.net");
        let expected = md5_hex(&format!("{ha1}:abc123:00000003:c0ffee:auth:{ha2}"));
        assert_eq!(auth.response, expected);
        assert_eq!(auth.algorithm, Algorithm::Md5Sess);
        assert!(auth.header_value().contains("algorithm=MD5-sess, "));
        assert!(auth.header_value().contains("nc=00000003"));
    }

    #[test]
    fn rfc2069_mode_without_qop() {
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n""#).expect("parses");
        let auth = authorize(
            &ch,
            &Credentials::new("u", "p"),
            "OPTIONS",
            "sip:x",
            b"",
            1,
            "cn",
        );
        let expected = md5_hex(&format!(
            "{}:n:{}",
            md5_hex("u:r:p"),
            md5_hex("OPTIONS:sip:x")
        ));
        assert_eq!(auth.response, expected);
        assert_eq!((auth.cnonce, auth.nc, auth.qop), (None, None, None));
    }

    #[test]
    fn auth_int_only_when_auth_not_offered_and_hashes_body() {
        let both = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int,auth""#)
            .expect("parses");
        assert_eq!(both.qop_to_use(), Some("auth"));
        let only_int =
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#).expect("parses");
        assert_eq!(only_int.qop_to_use(), Some("auth-int"));
        let creds = Credentials::new("u", "p");
        let body = b"v=0\r\n";
        let auth = authorize(&only_int, &creds, "INVITE", "sip:b@x", body, 1, "cn");
        let ha2 = md5_hex(&format!(
            "INVITE:sip:b@x:{}",
            hex::encode(Md5::digest(body))
        ));
        let expected = md5_hex(&format!(
            "{}:n:00000001:cn:auth-int:{ha2}",
            md5_hex("u:r:p")
        ));
        assert_eq!(auth.response, expected);
        assert_eq!(auth.qop.as_deref(), Some("auth-int"));
        let other = authorize(&only_int, &creds, "INVITE", "sip:b@x", b"v=1\r\n", 1, "cn");
        assert_ne!(
            other.response, auth.response,
            "auth-int must cover the body"
        );
    }

    // Expected values computed once with Python's hashlib.new("sha512_256"); the user hash also
    // checked with `openssl dgst -sha512-256`.
    #[test]
    fn sha512_256_auth() {
        let ch = Challenge::parse(
            r#"Digest realm="sip.example.net", nonce="5f1c0b3a", algorithm=sha-512-256, qop=auth"#,
        )
        .expect("parses");
        assert_eq!(ch.algorithm, Algorithm::Sha512_256);
        let creds = Credentials::new("alice", "p@ss \"w0rd\"");
        let auth = authorize(
            &ch,
            &creds,
            "REGISTER",
            "sip:sip.example.net",
            b"",
            1,
            "0a4f113b",
        );
        assert_eq!(
            auth.response,
            "15434fc6d76354091b3d6ddcdf44ba8fac0b91fd8da0a9c6593192d6719ee18f"
        );
    }

    #[test]
    fn sha512_256_sess_auth_int_with_userhash() {
        let ch = Challenge::parse(
            r#"Digest realm="sip.example.net", nonce="5f1c0b3a", algorithm=SHA-512-256-sess, qop="auth-int", userhash=true"#,
        )
        .expect("parses");
        assert!(ch.userhash);
        let creds = Credentials::new("alice", "p@ss \"w0rd\"");
        let auth = authorize(
            &ch,
            &creds,
            "REGISTER",
            "sip:sip.example.net",
            b"v=0\r\n",
            0x2a,
            "0a4f113b",
        );
        assert_eq!(
            auth.response,
            "92e6e6e2a3ed369d7e22cf279f60b6cb5776a68a24543a64bc811f72cafa4986"
        );
        assert_eq!(
            auth.username,
            "870f51ffa7d3fd272664cd5532ab5459cf7e110d159027d8051d7e80fd71b887"
        );
        let header = auth.header_value();
        assert!(header.contains("nc=0000002a"), "{header}");
        assert!(header.ends_with(", userhash=true"), "{header}");
    }

    #[test]
    fn sha256_primitive_is_right() {
        // FIPS 180-4 "abc" vectors, so a swapped hash function cannot hide.
        assert_eq!(
            Algorithm::Sha512_256.hash_hex(b"abc"),
            "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
        );
        assert_eq!(
            Algorithm::Sha256.hash_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Algorithm::Md5Sess.hash_hex(b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn algorithm_tokens_round_trip_case_insensitively() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_token(alg.as_str()), Some(alg));
            assert_eq!(
                Algorithm::from_token(&alg.as_str().to_lowercase()),
                Some(alg)
            );
            assert_eq!(
                Algorithm::from_token(&alg.as_str().to_uppercase()),
                Some(alg)
            );
        }
        assert_eq!(Algorithm::from_token("SHA-1"), None);
        assert_eq!(Algorithm::from_token("SHA-512"), None);
        assert!(Algorithm::Sha512_256Sess.strength() > Algorithm::Sha256.strength());
        assert!(Algorithm::Sha256Sess.strength() > Algorithm::Md5.strength());
        assert_eq!(Algorithm::Md5Sess.strength(), Algorithm::Md5.strength());
    }

    #[test]
    fn parses_all_fields_in_any_order_with_odd_spacing() {
        let ch = Challenge::parse(
            "  digest   STALE = TRUE ,algorithm=\"sha-256\",, qop=\"auth,auth-int\" ,\
             x-unknown=\"a, b=\\\"c\\\"\", domain=\"sip:a.example sip:b.example\",\
             nonce=\"n,o\\\"nce\",opaque=\"op\",realm=\"re\\\\alm\", charset=UTF-8  ",
        )
        .expect("parses");
        assert_eq!(
            ch,
            Challenge {
                realm: "re\\alm".into(),
                nonce: "n,o\"nce".into(),
                opaque: Some("op".into()),
                algorithm: Algorithm::Sha256,
                qop: vec!["auth".into(), "auth-int".into()],
                stale: true,
                domain: Some("sip:a.example sip:b.example".into()),
                userhash: false,
            }
        );
    }

    #[test]
    fn unquoted_values_and_unquoted_qop_are_accepted() {
        let ch = Challenge::parse("Digest realm=asterisk,nonce=abc/def==,qop=auth,stale=false")
            .expect("parses");
        assert_eq!(ch.realm, "asterisk");
        assert_eq!(ch.nonce, "abc/def==");
        assert_eq!(ch.qop, vec!["auth".to_string()]);
        assert!(!ch.stale);
    }

    #[test]
    fn folded_line_inside_quotes_is_one_space() {
        let ch = Challenge::parse("Digest realm=\"a \r\n  b\", nonce=\"n\"").expect("parses");
        assert_eq!(ch.realm, "a b");
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let err = |s: &str| Challenge::parse(s).expect_err(s);
        assert_eq!(err(""), DigestError::Empty);
        assert_eq!(err("   "), DigestError::Empty);
        assert_eq!(
            err("Basic realm=\"x\""),
            DigestError::NotDigest {
                scheme: "Basic".into()
            }
        );
        assert!(matches!(
            err("Digest nonce=\"n\""),
            DigestError::MissingParam { param: "realm", .. }
        ));
        assert!(matches!(
            err("Digest realm=\"r\""),
            DigestError::MissingParam { param: "nonce", .. }
        ));
        assert_eq!(
            err("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1"),
            DigestError::UnsupportedAlgorithm {
                token: "SHA-1".into()
            }
        );
        assert_eq!(
            err("Digest realm=\"r\", realm=\"s\", nonce=\"n\""),
            DigestError::DuplicateParam {
                param: "realm".into()
            }
        );
        let unterminated = err("Digest nonce=\"n\", realm=\"r");
        assert!(
            unterminated.to_string().contains("`realm` has no closing"),
            "{unterminated}"
        );
        let no_value = err("Digest realm");
        assert!(
            no_value.to_string().contains("`realm` has no value"),
            "{no_value}"
        );
        let missing_comma = err("Digest realm=\"r\" nonce=\"n\"");
        assert!(
            missing_comma
                .to_string()
                .contains("expected `,` after parameter `realm`"),
            "{missing_comma}"
        );
        assert!(matches!(
            err("Digest=realm"),
            DigestError::Malformed { at: 6, .. }
        ));
        let msg = DigestError::MissingParam {
            context: "challenge",
            param: "nonce",
            rfc: "RFC 7616 §3.3",
        }
        .to_string();
        assert_eq!(
            msg,
            "Digest challenge has no `nonce` parameter, which is required (RFC 7616 §3.3)"
        );
    }

    #[test]
    fn long_garbage_is_excerpted_in_errors() {
        let scheme = "X".repeat(500);
        let msg = Challenge::parse(&scheme)
            .expect_err("not digest")
            .to_string();
        assert!(msg.len() < 250, "{msg}");
        assert!(msg.contains('…'));
    }

    fn ch(alg: Algorithm, nonce: &str) -> Challenge {
        Challenge {
            realm: "r".into(),
            nonce: nonce.into(),
            opaque: None,
            algorithm: alg,
            qop: vec!["auth".into()],
            stale: false,
            domain: None,
            userhash: false,
        }
    }

    #[test]
    fn choose_prefers_strongest_then_topmost() {
        use Algorithm::*;
        assert_eq!(choose(&[]), None);
        let list = [
            ch(Md5, "1"),
            ch(Sha256, "2"),
            ch(Sha512_256, "3"),
            ch(Sha256, "4"),
        ];
        assert_eq!(choose(&list).map(|c| c.nonce.as_str()), Some("3"));
        let list = [ch(Md5, "1"), ch(Sha256Sess, "2"), ch(Sha256, "3")];
        assert_eq!(choose(&list).map(|c| c.nonce.as_str()), Some("2"));
        let list = [ch(Md5, "1"), ch(Md5Sess, "2")];
        assert_eq!(choose(&list).map(|c| c.nonce.as_str()), Some("1"));
    }

    #[test]
    fn a_pinned_realm_is_the_only_one_answered() {
        let evil = r#"Digest realm="evil.example", nonce="n1", algorithm=SHA-256"#;
        let good = r#"Digest realm="127.0.0.1", nonce="n2""#;
        match choose_for_realm([evil], Some("127.0.0.1")) {
            Err(DigestError::RealmNotPinned { offered, pinned }) => {
                assert_eq!(offered, vec!["evil.example".to_string()]);
                assert_eq!(pinned, "127.0.0.1");
            }
            other => panic!("hostile realm answered: {other:?}"),
        }
        // The stronger challenge is for the wrong realm: the pinned one is answered.
        let chosen = choose_for_realm([evil, good], Some("127.0.0.1")).expect("pinned realm");
        assert_eq!(chosen.nonce, "n2");
        // Without a pin every realm is answered, as before.
        assert_eq!(
            choose_for_realm([evil], None).expect("any").realm,
            "evil.example"
        );
        let msg = choose_for_realm(["Digest realm=\"\x1b[2J\", nonce=n"], Some("r"))
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\x1b'), "{msg}");
    }

    #[test]
    fn choose_from_headers_skips_unusable_challenges() {
        let best = choose_from_headers([
            r#"Digest realm="r", nonce="md5", algorithm=MD5"#,
            r#"Digest realm="r", nonce="sha1", algorithm=SHA-1"#,
            r#"Digest realm="r", nonce="future", algorithm=SHA3-512"#,
            r#"Digest realm="r", nonce="sha256", algorithm=SHA-256"#,
            r#"Basic realm="r""#,
        ])
        .expect("a usable challenge");
        assert_eq!(best.nonce, "sha256");

        let err = choose_from_headers([
            r#"Digest realm="r", nonce="n", algorithm=SHA-1"#,
            r#"Basic realm="r""#,
        ])
        .expect_err("nothing usable");
        let msg = err.to_string();
        assert!(msg.contains("none of the 2"), "{msg}");
        assert!(
            msg.contains("challenge #1: Digest algorithm `SHA-1`"),
            "{msg}"
        );
        assert!(
            msg.contains("challenge #2: authentication scheme is `Basic`"),
            "{msg}"
        );
        assert_eq!(choose_from_headers([]), Err(DigestError::NoChallenge));
    }

    #[test]
    fn nc_is_eight_lowercase_hex_digits() {
        let c = ch(Algorithm::Md5, "n");
        let creds = Credentials::new("u", "p");
        for (nc, text) in [
            (1, "nc=00000001"),
            (0xff, "nc=000000ff"),
            (0xABCDEF12, "nc=abcdef12"),
            (u32::MAX, "nc=ffffffff"),
        ] {
            let header = authorize(&c, &creds, "OPTIONS", "sip:x", b"", nc, "cn").header_value();
            assert!(header.contains(&format!(", {text}")), "{header}");
            assert_eq!(Authorization::parse(&header).expect("parses").nc, Some(nc));
        }
    }

    #[test]
    fn nonce_counter_counts_per_nonce() {
        let mut counter = NonceCounter::new();
        assert_eq!(counter.next("a"), 1);
        assert_eq!(counter.next("a"), 2);
        assert_eq!(counter.next("a"), 3);
        assert_eq!(counter.next("b"), 1);
        assert_eq!(counter.next("b"), 2);
        assert_eq!(counter.next("a"), 1);
    }

    #[test]
    fn debug_redacts_password() {
        let creds = Credentials::new("alice", "hunter2-very-secret");
        let dbg = format!("{creds:?} {creds:#?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains("alice"));
        let auth = authorize(
            &ch(Algorithm::Md5, "n"),
            &creds,
            "OPTIONS",
            "sip:x",
            b"",
            1,
            "c",
        );
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!auth.header_value().contains("hunter2"));
    }

    #[test]
    fn header_value_round_trips_through_the_parser() {
        let challenge = Challenge {
            realm: "we\"ird\\realm, with comma".into(),
            nonce: "n=o/n+ce".into(),
            opaque: Some("op \"q\"".into()),
            algorithm: Algorithm::Sha256Sess,
            qop: vec!["auth".into()],
            stale: false,
            domain: None,
            userhash: false,
        };
        let creds = Credentials::new("bob \"the\" \\builder", "pw");
        let auth = authorize(
            &challenge,
            &creds,
            "REGISTER",
            "sip:reg.example;transport=tcp",
            b"",
            7,
            "cn1",
        );
        let parsed = Authorization::parse(&auth.header_value()).expect("our own header parses");
        assert_eq!(parsed, auth);
        // The same parameter list also reads as a (challenge-like) parameter list.
        let as_challenge = Challenge::parse(&auth.header_value()).expect("parses as challenge");
        assert_eq!(as_challenge.realm, challenge.realm);
        assert_eq!(as_challenge.nonce, challenge.nonce);
        assert_eq!(as_challenge.opaque, challenge.opaque);
        assert_eq!(as_challenge.algorithm, Algorithm::Sha256Sess);
        assert_eq!(as_challenge.qop, vec!["auth".to_string()]);
    }

    #[test]
    fn header_value_cannot_inject_lines() {
        let c = ch(Algorithm::Md5, "n");
        let creds = Credentials::new("eve\r\nVia: evil", "p");
        let header = authorize(&c, &creds, "OPTIONS", "sip:x", b"", 1, "c").header_value();
        assert!(
            !header.contains('\r') && !header.contains('\n'),
            "{header:?}"
        );
    }

    #[test]
    fn authorization_parse_rejects_bad_nc_and_missing_response() {
        let base = r#"Digest username="u", realm="r", nonce="n", uri="sip:x", response="abc""#;
        assert!(Authorization::parse(base).is_ok());
        assert_eq!(
            Authorization::parse(&format!("{base}, nc=1")),
            Err(DigestError::InvalidNonceCount { value: "1".into() })
        );
        assert!(Authorization::parse(&format!("{base}, nc=0000000g")).is_err());
        assert!(Authorization::parse(&format!("{base}, nc=+0000001")).is_err());
        assert!(matches!(
            Authorization::parse(r#"Digest username="u", realm="r", nonce="n", uri="sip:x""#),
            Err(DigestError::MissingParam {
                param: "response",
                ..
            })
        ));
    }

    #[test]
    fn cnonces_are_fresh_hex_of_128_bits() {
        let a = new_cnonce();
        let b = new_cnonce();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn garbage_never_panics() {
        const VALID: &str = "Digest realm=\"r\\\"x\", nonce=\"a,b\", qop=\"auth,auth-int\", \
                             algorithm=SHA-256-sess, opaque=\"o\", stale=TRUE, userhash=true";
        // Every prefix and suffix of a valid header (at char boundaries).
        for (i, _) in VALID.char_indices() {
            let _ = Challenge::parse(&VALID[..i]);
            let _ = Challenge::parse(&VALID[i..]);
            let _ = Authorization::parse(&VALID[..i]);
        }
        // Random strings over an alphabet rich in syntax characters, and random mutations.
        let alphabet: Vec<char> = "Digest realmnoncqp=\",\\ \t\r\n-_=/+é€😀\u{0}\u{7f}DIGEST"
            .chars()
            .collect();
        let mut rng = StdRng::seed_from_u64(0x005e_edd1_6e57);
        let mut parsed_ok = 0;
        for _ in 0..20_000 {
            let s: String = if rng.gen_bool(0.5) {
                let len = rng.gen_range(0..60);
                let mut s = String::from(if rng.gen_bool(0.7) { "Digest " } else { "" });
                s.extend((0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]));
                s
            } else {
                let mut chars: Vec<char> = VALID.chars().collect();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(0..chars.len());
                    match rng.gen_range(0..3) {
                        0 => {
                            chars.remove(at);
                        }
                        1 => chars.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                        _ => chars[at] = alphabet[rng.gen_range(0..alphabet.len())],
                    }
                }
                chars.into_iter().collect()
            };
            if let Ok(c) = Challenge::parse(&s) {
                parsed_ok += 1;
                // Whatever parses must be answerable without panicking.
                let _ = authorize(
                    &c,
                    &Credentials::new("u", "p"),
                    "OPTIONS",
                    "sip:x",
                    b"",
                    1,
                    "c",
                );
            }
            let _ = Authorization::parse(&s);
            let _ = choose_from_headers([s.as_str(), VALID]);
        }
        // The fuzzer must reach the success path too, or it tests only the first error.
        assert!(parsed_ok > 100, "only {parsed_ok} garbled headers parsed");
    }
}
