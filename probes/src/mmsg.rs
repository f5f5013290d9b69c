//! Batched datagram system calls on one UDP socket: `sendmmsg(2)` and `recvmmsg(2)`.
//!
//! The daemon's UDP lane sends the pings of one 10 ms slot of its schedule in one call, and reads
//! every answer waiting on its socket in one call, instead of one system call per datagram.
//! Non-blocking: both return `WouldBlock` when the kernel has no room or nothing to read, so they
//! run inside tokio's `try_io`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most datagrams one call sends or receives.
pub const BATCH: usize = 32;

/// Sends the first [`BATCH`] of `msgs` (destination, bytes) in one `sendmmsg(2)`; returns how
/// many the kernel took (the first ones, in order). `WouldBlock` when it took none.
pub fn send_batch(fd: RawFd, msgs: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    let n = msgs.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: iovec, mmsghdr and sockaddr_in6 are plain C structs; all-zero is a valid empty value.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above. On the stack: a batch allocates nothing.
    let mut names: [libc::sockaddr_in6; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (to, bytes)) in msgs[..n].iter().enumerate() {
        iov[i] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        hdrs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
        hdrs[i].msg_hdr.msg_namelen = write_socket_addr(*to, &mut names[i]);
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `fd` is a socket the caller owns; every pointer in `hdrs` points into `iov`,
    // `names` or `msgs`, which outlive the call, with the lengths stated.
    let sent =
        unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Asks the kernel to stamp every datagram with the time it arrived (`SO_TIMESTAMPNS`), so a
/// reader that reads late still knows when each answer came.
pub fn enable_timestamps(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd owned by the caller, a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Room for one `recvmmsg(2)`: [`BATCH`] buffers of `size` bytes each (pages are touched only as
/// datagrams fill them).
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    truncated: [bool; BATCH],
    stamps: [Option<SystemTime>; BATCH],
    count: usize,
}

impl RecvBatch {
    pub fn new(size: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; size]).collect(),
            lens: [0; BATCH],
            from: [None; BATCH],
            truncated: [false; BATCH],
            stamps: [None; BATCH],
            count: 0,
        }
    }

    /// Reads every datagram waiting, up to [`BATCH`], in one call; returns how many.
    /// `WouldBlock` when none is waiting.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: plain C structs; all-zero is a valid empty value.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        // Room for one timestamp message each (with alignment slack).
        let mut control = [[0u64; 8]; BATCH];
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.bufs[i].len(),
            };
            hdrs[i].msg_hdr.msg_control = control[i].as_mut_ptr() as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_controllen = std::mem::size_of_val(&control[i]) as _;
            hdrs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `fd` is a socket the caller owns; every pointer points into this frame's
        // arrays or `self.bufs`, which outlive the call, with the lengths stated.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = got as usize;
        for i in 0..self.count {
            self.lens[i] = hdrs[i].msg_len as usize;
            self.truncated[i] = hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.from[i] = socket_addr(&names[i]);
            self.stamps[i] = arrival(&hdrs[i].msg_hdr);
        }
        Ok(self.count)
    }

    /// The datagrams of the last [`receive`](Self::receive).
    pub fn datagrams(&self) -> impl Iterator<Item = Datagram<'_>> {
        (0..self.count).map(|i| Datagram {
            bytes: &self.bufs[i][..self.lens[i]],
            from: self.from[i],
            cut: self.truncated[i],
            arrived: self.stamps[i],
        })
    }
}

/// One datagram read by [`RecvBatch::receive`].
pub struct Datagram<'a> {
    pub bytes: &'a [u8],
    pub from: Option<SocketAddr>,
    /// Longer than the buffer, so cut.
    pub cut: bool,
    /// When the kernel received it (with [`enable_timestamps`]).
    pub arrived: Option<SystemTime>,
}

/// The `SCM_TIMESTAMPNS` of a received message, if the kernel attached one.
fn arrival(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
                let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999);
                return Some(UNIX_EPOCH + Duration::new(secs, nanos));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// Writes `addr` as the kernel wants it into `room` (a sockaddr_in fits in a sockaddr_in6);
/// returns its length.
fn write_socket_addr(addr: SocketAddr, room: &mut libc::sockaddr_in6) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in is smaller than the sockaddr_in6 it is written over, and both
            // are plain C structs.
            unsafe { std::ptr::write(room as *mut _ as *mut libc::sockaddr_in, v4) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            *room = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The address the kernel wrote into `storage` (IPv4 or IPv6; None for another family).
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_one_call_each() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        enable_timestamps(b.as_raw_fd()).unwrap();
        let sent_at = SystemTime::now() - Duration::from_millis(1);
        let payloads: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("datagram {i}").into_bytes())
            .collect();
        let msgs: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        // One call takes at most BATCH; the rest go in the next.
        let first = send_batch(a.as_raw_fd(), &msgs).unwrap();
        assert_eq!(first, BATCH);
        assert_eq!(
            send_batch(a.as_raw_fd(), &msgs[first..]).unwrap(),
            40 - BATCH
        );

        let mut batch = RecvBatch::new(8);
        let mut seen = Vec::new();
        // Loopback delivers inside the send; the deadline only guards against a hang.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < 40 {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of 40 arrived",
                seen.len()
            );
            match batch.receive(b.as_raw_fd()) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    for d in batch.datagrams() {
                        assert_eq!(d.from, Some(a.local_addr().unwrap()));
                        // Stamped by the kernel on arrival, before we read it.
                        let stamp = d.arrived.expect("a kernel timestamp");
                        assert!(stamp >= sent_at && stamp <= SystemTime::now());
                        seen.push((d.bytes.to_vec(), d.cut));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("recvmmsg failed: {e}"),
            }
        }
        // In order; a datagram longer than the 8-byte buffer is cut and says so.
        assert_eq!(seen[0], (b"datagram".to_vec(), true));
        assert_eq!(seen.len(), 40);
        assert!(matches!(
            batch.receive(b.as_raw_fd()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }
}
