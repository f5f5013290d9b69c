//! A UDP socket shared by many probes (the daemon probes thousands of nodes; one socket per probe
//! would cost a bind, a file descriptor and a task each time).
//!
//! One receive task reads every datagram, finds the branch of its topmost Via with a cheap scan
//! (no full parse) and hands it to the probe that announced that branch. A datagram whose branch
//! nobody waits for (a late retransmitted answer, a stranger) is dropped and counted. Each probe
//! holds an [`EndpointSlot`], which implements [`Wire`] and forgets its branches when dropped.
//!
//! ICMP errors: the socket asks for them (`IP_RECVERR`). When one arrives (a node whose process
//! died answers with port unreachable), the receive task reads the socket's error queue, which
//! hands back the datagram that caused it: its top Via branch names the probe, which fails at once
//! with "connection refused" instead of waiting for Timer F, as the one-shot `probe` does.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::message::Transport;
use crate::transport::{CertInfo, TransportError, Wire, MAX_MESSAGE};

/// What the receive task hands a probe: a datagram and its source, or an ICMP error reported for
/// a datagram the probe sent.
#[derive(Debug)]
enum Delivery {
    Datagram(Vec<u8>, SocketAddr),
    /// ICMP port (or host) unreachable, with the errno the kernel reported.
    Unreachable(i32),
}

/// A probe's mailbox: what the receive task routed to it, and a wake-up. Starts empty and
/// allocates nothing until something arrives (a bounded channel per probe allocated a block of
/// slots each time, a large allocation on the hot path).
#[derive(Default)]
struct Inbox {
    queue: Mutex<VecDeque<Delivery>>,
    ready: Notify,
}

/// At most this many deliveries wait in one probe's inbox; more are dropped (a flood of
/// retransmitted answers is not worth keeping).
const INBOX_CAPACITY: usize = 16;

impl Inbox {
    /// Queues `d`; false when the inbox is full.
    fn deliver(&self, d: Delivery) -> bool {
        let Ok(mut q) = self.queue.lock() else {
            return false;
        };
        if q.len() >= INBOX_CAPACITY {
            return false;
        }
        q.push_back(d);
        drop(q);
        self.ready.notify_one();
        true
    }

    fn take(&self) -> Option<Delivery> {
        self.queue.lock().ok()?.pop_front()
    }
}

type Route = Arc<Inbox>;

/// A shared UDP socket and its branch router.
pub struct UdpEndpoint {
    socket: Arc<UdpSocket>,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    unrouted: Arc<AtomicU64>,
    local_port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UdpEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpEndpoint {
    /// Binds `addr` (e.g. `0.0.0.0:0`) and starts the receive task.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Arc<UdpEndpoint>> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        crate::transport::enable_icmp_errors(&socket, addr.is_ipv6());
        let local_port = socket.local_addr()?.port();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let unrouted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(receive_loop(
            socket.clone(),
            routes.clone(),
            unrouted.clone(),
        ));
        Ok(Arc::new(UdpEndpoint {
            socket,
            routes,
            unrouted,
            local_port,
            task,
        }))
    }

    /// A slot for one probe of `peer`; `local_ip` is the address our Via and Contact carry.
    pub fn slot(self: &Arc<Self>, peer: SocketAddr, local_ip: IpAddr) -> EndpointSlot {
        EndpointSlot {
            endpoint: self.clone(),
            peer,
            local: SocketAddr::new(local_ip, self.local_port),
            inbox: Arc::default(),
            branches: Vec::new(),
            foreign: 0,
        }
    }

    /// Datagrams no probe was waiting for.
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// Probes currently waiting for an answer on this socket.
    pub fn in_flight(&self) -> usize {
        self.routes.lock().map(|r| r.len()).unwrap_or(0)
    }
}

async fn receive_loop(
    socket: Arc<UdpSocket>,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    unrouted: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut errors = 0u32;
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            // An ICMP error queued on the socket wakes only "error" readiness.
            r = socket.ready(Interest::ERROR) => match r {
                Ok(_) => {
                    route_icmp_errors(&socket, &routes, &mut buf);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let (n, from) = match received {
            Ok(x) => {
                errors = 0;
                x
            }
            Err(e) => {
                // The pending ICMP error itself (ECONNREFUSED): the queue says for whom.
                if route_icmp_errors(&socket, &routes, &mut buf) > 0 {
                    continue;
                }
                // Anything else: nothing to route; back off if they repeat.
                errors = errors.saturating_add(1);
                tracing::debug!(error = %e, "shared UDP socket receive error");
                if errors > 100 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        let datagram = &buf[..n];
        let route = top_via_branch(datagram)
            .and_then(|b| routes.lock().ok().and_then(|r| r.get(b).cloned()));
        match route {
            Some(tx) => {
                if !tx.deliver(Delivery::Datagram(datagram.to_vec(), from)) {
                    unrouted.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                unrouted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Drains the socket's error queue (`MSG_ERRQUEUE`): each entry carries the datagram that drew
/// the ICMP error, whose branch names the probe to fail. Returns how many entries were read.
fn route_icmp_errors(
    socket: &UdpSocket,
    routes: &Mutex<HashMap<String, Route>>,
    buf: &mut [u8],
) -> usize {
    let mut read = 0;
    // Bounded: the queue is bounded by the receive buffer, but never spin here.
    for _ in 0..1024 {
        let Some((len, errno)) = recv_error(socket, buf) else {
            break;
        };
        read += 1;
        let Some(branch) = top_via_branch(&buf[..len]) else {
            continue;
        };
        let route = routes.lock().ok().and_then(|r| r.get(branch).cloned());
        if let Some(tx) = route {
            let _ = tx.deliver(Delivery::Unreachable(errno));
        }
    }
    read
}

/// One entry of the error queue: the length of the original datagram copied into `buf` and the
/// errno of the ICMP error (ECONNREFUSED for port unreachable). None when the queue is empty.
pub fn recv_error(socket: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> Option<(usize, i32)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one sock_extended_err plus its offender address, with alignment slack.
    let mut control = [0u64; 64];
    // SAFETY: zeroed msghdr is a valid "empty" value; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: a valid fd owned by `socket`; msg points to live buffers of the stated sizes.
    let n = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return None;
    }
    let mut errno = libc::ECONNREFUSED;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let level = (*c).cmsg_level;
            let kind = (*c).cmsg_type;
            if (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
            {
                let ee = libc::CMSG_DATA(c) as *const libc::sock_extended_err;
                errno = std::ptr::read_unaligned(ee).ee_errno as i32;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((n as usize, errno))
}

/// The branch parameter of the topmost Via of a SIP message, found without a full parse.
pub fn top_via_branch(msg: &[u8]) -> Option<&str> {
    let head_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len());
    let head = std::str::from_utf8(&msg[..head_end]).ok()?;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v") {
            let first = value.split(',').next()?;
            return first.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("branch").then(|| v.trim())
            });
        }
    }
    None
}

/// How often a send is repeated when the socket reports another datagram's ICMP error.
pub const SEND_RETRIES: u32 = 16;

/// An error the kernel reports on a socket call for an earlier datagram's ICMP answer.
pub fn is_async_icmp_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN)
    )
}

/// One probe's view of a shared socket.
pub struct EndpointSlot {
    endpoint: Arc<UdpEndpoint>,
    peer: SocketAddr,
    local: SocketAddr,
    inbox: Route,
    branches: Vec<String>,
    foreign: u32,
}

impl Drop for EndpointSlot {
    fn drop(&mut self) {
        if let Ok(mut routes) = self.endpoint.routes.lock() {
            for b in &self.branches {
                routes.remove(b);
            }
        }
    }
}

impl Wire for EndpointSlot {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
    fn transport(&self) -> Transport {
        Transport::Udp
    }
    fn foreign_datagrams(&self) -> u32 {
        self.foreign
    }
    fn peer_certificate(&self) -> Option<&CertInfo> {
        None
    }
    fn expect_branch(&mut self, branch: &str) {
        if let Ok(mut routes) = self.endpoint.routes.lock() {
            routes.insert(branch.to_string(), self.inbox.clone());
        }
        self.branches.push(branch.to_string());
    }
    async fn send(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        let peer = self.peer;
        let mut attempt = 0;
        loop {
            match self.endpoint.socket.send_to(bytes, peer).await {
                Ok(_) => return Ok(()),
                // With IP_RECVERR, an ICMP error for ANOTHER probe's datagram is also reported
                // by the next call on the socket, which may be this send (the kernel's pending
                // socket error). It is not about `peer`: the error queue routes it to its probe.
                // The failed call cleared it, so send again.
                Err(source) if is_async_icmp_error(&source) && attempt < SEND_RETRIES => {
                    attempt += 1;
                }
                Err(source) => return Err(TransportError::Io { peer, source }),
            }
        }
    }
    async fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        loop {
            let next = match self.inbox.take() {
                Some(d) => d,
                None => {
                    // Registered before looking again, so a delivery in between is not missed.
                    let notified = self.inbox.ready.notified();
                    match self.inbox.take() {
                        Some(d) => d,
                        None => {
                            notified.await;
                            continue;
                        }
                    }
                }
            };
            match next {
                Delivery::Datagram(bytes, from) if from == self.peer => return Ok(bytes),
                Delivery::Datagram(..) => self.foreign += 1,
                Delivery::Unreachable(errno) => {
                    return Err(TransportError::io(
                        self.peer,
                        std::io::Error::from_raw_os_error(errno),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_via_branch() {
        let m = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;rport=1;branch=z9hG4bKa, SIP/2.0/UDP x;branch=z9hG4bKb\r\nVia: SIP/2.0/UDP y;branch=z9hG4bKc\r\n\r\n";
        assert_eq!(top_via_branch(m), Some("z9hG4bKa"));
        assert_eq!(
            top_via_branch(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;branch=q\r\n\r\n"),
            Some("q")
        );
        assert_eq!(top_via_branch(b"garbage"), None);
        assert_eq!(
            top_via_branch(b"SIP/2.0 200 OK\r\nTo: <sip:a;branch=x>\r\n\r\n"),
            None
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_the_probe_at_once() {
        // A port nobody listens on: the kernel answers port unreachable, which must reach the
        // probe that sent to it (by the branch of the datagram in the error queue), quickly.
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let alive = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ep = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut dead = ep.slot(closed, "127.0.0.1".parse().unwrap());
        let mut other = ep.slot(alive.local_addr().unwrap(), "127.0.0.1".parse().unwrap());
        dead.expect_branch("z9hG4bKdead");
        other.expect_branch("z9hG4bKother");
        let request = |b: &str| {
            format!("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch={b}\r\n\r\n")
        };
        other
            .send(request("z9hG4bKother").as_bytes())
            .await
            .unwrap();
        dead.send(request("z9hG4bKdead").as_bytes()).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), dead.recv())
            .await
            .expect("the ICMP error should end the wait long before 2 s");
        assert!(
            matches!(got, Err(TransportError::Refused(p)) if p == closed),
            "{got:?}"
        );
        // The other probe is untouched and still gets its answer.
        let mut buf = [0u8; 200];
        let (_, from) = alive.recv_from(&mut buf).await.unwrap();
        alive
            .send_to(
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKother\r\n\r\n",
                from,
            )
            .await
            .unwrap();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(2), other.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).contains("z9hG4bKother"));
    }

    #[tokio::test]
    async fn another_probes_icmp_error_does_not_fail_a_send() {
        // Dead and alive probes interleaved on one socket: the kernel reports each port
        // unreachable on the next call of the socket, often the alive probe's send. That send
        // must still go out (the error belongs to the dead probe, routed by the error queue).
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let alive = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ep = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut dead = ep.slot(closed, "127.0.0.1".parse().unwrap());
        let mut other = ep.slot(alive.local_addr().unwrap(), "127.0.0.1".parse().unwrap());
        for i in 0..100 {
            let _ = dead.send(format!("dead {i}").as_bytes()).await;
            other
                .send(format!("alive {i}").as_bytes())
                .await
                .unwrap_or_else(|e| panic!("send {i} to the live peer failed: {e}"));
        }
        let mut buf = [0u8; 100];
        for _ in 0..100 {
            tokio::time::timeout(std::time::Duration::from_secs(2), alive.recv_from(&mut buf))
                .await
                .expect("every datagram to the live peer arrives")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn routes_answers_by_branch() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = server.local_addr().unwrap();
        let ep = UdpEndpoint::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut a = ep.slot(peer, "127.0.0.1".parse().unwrap());
        let mut b = ep.slot(peer, "127.0.0.1".parse().unwrap());
        a.expect_branch("z9hG4bKa");
        b.expect_branch("z9hG4bKb");
        a.send(b"ping").await.unwrap();
        let mut buf = [0u8; 100];
        let (_, from) = server.recv_from(&mut buf).await.unwrap();
        for br in ["z9hG4bKb", "z9hG4bKa", "z9hG4bKnobody"] {
            let msg = format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch={br}\r\n\r\n");
            server.send_to(msg.as_bytes(), from).await.unwrap();
        }
        let got_a = a.recv().await.unwrap();
        let got_b = b.recv().await.unwrap();
        assert!(String::from_utf8_lossy(&got_a).contains("z9hG4bKa"));
        assert!(String::from_utf8_lossy(&got_b).contains("z9hG4bKb"));
        tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while ep.unrouted() < 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(ep.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(ep.in_flight(), 0);
    }
}
