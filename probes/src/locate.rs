//! RFC 3263 server location: from a SIP URI to the list of (transport, address) nodes to probe.
//!
//! Order of business (RFC 3263 §4):
//! 1. a numeric host is used as is, with the URI's port or the transport's default;
//! 2. a host name with an explicit port: A/AAAA only (§4.2);
//! 3. otherwise NAPTR (§4.1) picks transports and SRV names (`SIPS+D2T`, `SIP+D2T`, `SIP+D2U`),
//!    else SRV is queried directly (`_sips._tcp`, `_sip._tcp`, `_sip._udp`), else A/AAAA on the
//!    default port.
//!
//! Unlike a phone, which wants one server, a prober wants every node: all SRV targets of the
//! chosen service and every address of each target are returned, each one a node reported on its
//! own. SRV targets are ordered by priority, then by weight (heaviest first) so output is stable.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioAsyncResolver;

use crate::message::{TargetUri, Transport};

/// One node to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The host name the node was reached by (for TLS SNI and the certificate name check).
    pub server_name: String,
    /// `literal`, `a`, `srv` or `naptr`.
    pub located_by: &'static str,
}

/// The result of locating a target: its nodes and until when the answer may be cached.
#[derive(Clone, Debug)]
pub struct Located {
    pub destinations: Vec<Destination>,
    /// When the shortest TTL in the chain runs out (None for numeric hosts: never).
    pub valid_until: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("DNS lookup of {name} failed: {detail}")]
    Lookup { name: String, detail: String },
    #[error("{0} has no NAPTR, SRV, A or AAAA records")]
    NoRecords(String),
    #[error(
        "{name}: no usable transport (NAPTR offers {offered}; sipwatch speaks UDP, TCP and TLS)"
    )]
    NoTransport { name: String, offered: String },
}

/// A DNS resolver for server location.
#[derive(Clone)]
pub struct Locator {
    resolver: TokioAsyncResolver,
}

impl Locator {
    /// Uses `/etc/resolv.conf`, or the given server (`--dns-server IP:PORT`, UDP then TCP).
    pub fn new(dns_server: Option<SocketAddr>) -> Result<Locator, LocateError> {
        let mut opts = ResolverOpts::default();
        opts.attempts = 2;
        opts.timeout = std::time::Duration::from_secs(2);
        let resolver = match dns_server {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], group), opts)
            }
            None => {
                let (config, mut sys_opts) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| LocateError::Lookup {
                        name: "/etc/resolv.conf".into(),
                        detail: e.to_string(),
                    })?;
                sys_opts.attempts = opts.attempts;
                TokioAsyncResolver::tokio(config, sys_opts)
            }
        };
        Ok(Locator { resolver })
    }

    /// Locates every node behind `target`. `forced` is a transport asked for on the command line.
    pub async fn locate(
        &self,
        target: &TargetUri,
        forced: Option<Transport>,
    ) -> Result<Located, LocateError> {
        let wanted = forced.or(target.transport);
        if let Some(ip) = target.ip() {
            let transport = wanted.unwrap_or(Transport::Udp);
            let port = target.port.unwrap_or(transport.default_port());
            return Ok(Located {
                destinations: vec![Destination {
                    transport,
                    addr: SocketAddr::new(ip, port),
                    server_name: target.host.clone(),
                    located_by: "literal",
                }],
                valid_until: None,
            });
        }
        let host = target.host.trim_end_matches('.').to_string();
        if let Some(port) = target.port {
            let transport = wanted.unwrap_or(Transport::Udp);
            let (ips, until) = self.addresses(&host).await?;
            return Ok(Located {
                destinations: ips
                    .into_iter()
                    .map(|ip| Destination {
                        transport,
                        addr: SocketAddr::new(ip, port),
                        server_name: host.clone(),
                        located_by: "a",
                    })
                    .collect(),
                valid_until: Some(until),
            });
        }

        // §4.1: NAPTR first, unless the transport is already fixed.
        let mut services: Vec<(Transport, String, &'static str)> = Vec::new();
        let mut until: Option<Instant> = None;
        if wanted.is_none() {
            let (naptr, naptr_until, offered) = self.naptr(&host, target.secure).await?;
            if !naptr.is_empty() {
                until = naptr_until;
                services = naptr
                    .into_iter()
                    .map(|(t, name)| (t, name, "naptr"))
                    .collect();
            } else if !offered.is_empty() {
                return Err(LocateError::NoTransport {
                    name: host,
                    offered: offered.join(", "),
                });
            }
        }
        if services.is_empty() {
            let candidates: Vec<Transport> = match (wanted, target.secure) {
                (Some(t), _) => vec![t],
                (None, true) => vec![Transport::Tls],
                (None, false) => vec![Transport::Tls, Transport::Tcp, Transport::Udp],
            };
            services = candidates
                .into_iter()
                .map(|t| (t, srv_name(t, &host), "srv"))
                .collect();
        }

        // The first service with SRV records wins; all its targets are nodes.
        for (transport, srv, how) in &services {
            let records = match self.resolver.srv_lookup(srv.as_str()).await {
                Ok(lookup) => {
                    until = min_instant(until, Some(lookup.as_lookup().valid_until()));
                    let mut recs: Vec<(u16, u16, u16, String)> = lookup
                        .iter()
                        .map(|s| (s.priority(), s.weight(), s.port(), s.target().to_utf8()))
                        .filter(|r| r.3 != ".")
                        .collect();
                    recs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.3.cmp(&b.3)));
                    recs
                }
                Err(e) if is_no_records(&e) => continue,
                Err(e) => {
                    return Err(LocateError::Lookup {
                        name: srv.clone(),
                        detail: e.to_string(),
                    })
                }
            };
            if records.is_empty() {
                continue;
            }
            let mut destinations = Vec::new();
            for (_, _, port, target_name) in records {
                let name = target_name.trim_end_matches('.').to_string();
                let (ips, ip_until) = self.addresses(&name).await?;
                until = min_instant(until, Some(ip_until));
                for ip in ips {
                    let d = Destination {
                        transport: *transport,
                        addr: SocketAddr::new(ip, port),
                        server_name: name.clone(),
                        located_by: how,
                    };
                    if !destinations.contains(&d) {
                        destinations.push(d);
                    }
                }
            }
            return Ok(Located {
                destinations,
                valid_until: until,
            });
        }

        // §4.2 fallback: A/AAAA on the default port, UDP for sip:, TLS for sips:.
        let transport = wanted.unwrap_or(if target.secure {
            Transport::Tls
        } else {
            Transport::Udp
        });
        let (ips, ip_until) = self.addresses(&host).await?;
        Ok(Located {
            destinations: ips
                .into_iter()
                .map(|ip| Destination {
                    transport,
                    addr: SocketAddr::new(ip, transport.default_port()),
                    server_name: host.clone(),
                    located_by: "a",
                })
                .collect(),
            valid_until: min_instant(until, Some(ip_until)),
        })
    }

    /// NAPTR records we can use, in order/preference order, as (transport, SRV name); plus the
    /// services offered at all (to explain a "no usable transport" failure).
    async fn naptr(
        &self,
        host: &str,
        secure: bool,
    ) -> Result<(Vec<(Transport, String)>, Option<Instant>, Vec<String>), LocateError> {
        let lookup = match self.resolver.lookup(host, RecordType::NAPTR).await {
            Ok(l) => l,
            Err(e) if is_no_records(&e) => return Ok((vec![], None, vec![])),
            Err(e) => {
                return Err(LocateError::Lookup {
                    name: host.to_string(),
                    detail: e.to_string(),
                })
            }
        };
        let mut records: Vec<(u16, u16, Transport, String)> = Vec::new();
        let mut offered = Vec::new();
        for rdata in lookup.iter() {
            let RData::NAPTR(n) = rdata else { continue };
            let service = String::from_utf8_lossy(n.services()).to_ascii_uppercase();
            offered.push(service.clone());
            // Only "S" (go to SRV) records are in scope for SIP (RFC 3263 §4.1).
            if !n.flags().eq_ignore_ascii_case(b"s") {
                continue;
            }
            let transport = match service.as_str() {
                "SIPS+D2T" => Transport::Tls,
                "SIP+D2T" if !secure => Transport::Tcp,
                "SIP+D2U" if !secure => Transport::Udp,
                _ => continue,
            };
            records.push((
                n.order(),
                n.preference(),
                transport,
                n.replacement().to_utf8().trim_end_matches('.').to_string(),
            ));
        }
        records.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok((
            records.into_iter().map(|r| (r.2, r.3)).collect(),
            Some(lookup.valid_until()),
            offered,
        ))
    }

    async fn addresses(&self, host: &str) -> Result<(Vec<IpAddr>, Instant), LocateError> {
        match self.resolver.lookup_ip(host).await {
            Ok(l) => {
                let mut ips: Vec<IpAddr> = l.iter().collect();
                ips.sort();
                ips.dedup();
                if ips.is_empty() {
                    return Err(LocateError::NoRecords(host.to_string()));
                }
                Ok((ips, l.valid_until()))
            }
            Err(e) if is_no_records(&e) => Err(LocateError::NoRecords(host.to_string())),
            Err(e) => Err(LocateError::Lookup {
                name: host.to_string(),
                detail: e.to_string(),
            }),
        }
    }
}

fn srv_name(t: Transport, host: &str) -> String {
    match t {
        Transport::Tls => format!("_sips._tcp.{host}"),
        Transport::Tcp => format!("_sip._tcp.{host}"),
        Transport::Udp => format!("_sip._udp.{host}"),
    }
}

fn is_no_records(e: &ResolveError) -> bool {
    matches!(e.kind(), ResolveErrorKind::NoRecordsFound { .. })
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn numeric_hosts_skip_dns() {
        let l = Locator::new(Some("127.0.0.1:1".parse().unwrap())).unwrap();
        let t = TargetUri::parse("sip:127.0.0.1").unwrap();
        let d = l.locate(&t, None).await.unwrap();
        assert_eq!(d.destinations.len(), 1);
        assert_eq!(d.destinations[0].addr, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(d.destinations[0].transport, Transport::Udp);
        let t = TargetUri::parse("sips:[::1]").unwrap();
        let d = l.locate(&t, None).await.unwrap();
        assert_eq!(d.destinations[0].addr, "[::1]:5061".parse().unwrap());
        assert_eq!(d.destinations[0].transport, Transport::Tls);
        let t = TargetUri::parse("sip:127.0.0.1:5070").unwrap();
        let d = l.locate(&t, Some(Transport::Tcp)).await.unwrap();
        assert_eq!(d.destinations[0].addr, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(d.destinations[0].transport, Transport::Tcp);
    }

    #[test]
    fn srv_names() {
        assert_eq!(
            srv_name(Transport::Tls, "example.org"),
            "_sips._tcp.example.org"
        );
        assert_eq!(
            srv_name(Transport::Tcp, "example.org"),
            "_sip._tcp.example.org"
        );
        assert_eq!(
            srv_name(Transport::Udp, "example.org"),
            "_sip._udp.example.org"
        );
    }
}
