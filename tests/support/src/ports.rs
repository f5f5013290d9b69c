//! Ports free on 127.0.0.1 at the moment of asking. Tests run side by side (and beside other
//! test runs), so nothing listens on a fixed port.

use std::net::{TcpListener, UdpSocket};

/// A TCP port free at the time of the call.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
    listener.local_addr().expect("the bound address").port()
}

/// A port free for both UDP and TCP (the same number on both), as a SIP listener needs.
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..200 {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// A port free for UDP and TCP whose next port is free too (SIP on `port`, SIP over TLS on
/// `port + 1`).
pub fn free_sip_port() -> u16 {
    for _ in 0..200 {
        let Ok(tcp) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = tcp.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port > 60000 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}
