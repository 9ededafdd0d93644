//! Sockets to Telegram. A local address can be chosen (`TELEGRAM_BIND_ADDR`): on a
//! multi-homed host, and in tests that run each replica as its own "host" on
//! 127.0.0.2, 127.0.0.3, ...

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long a connection to Telegram may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may wait for a peer that stops reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn socket(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ip) = bind {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

/// A blocking connection, opened within [`CONNECT_TIMEOUT`], with [`WRITE_TIMEOUT`] on
/// writes.
pub fn connect_blocking(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = socket(addr, bind)?;
    socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
    socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(socket.into())
}

/// A non-blocking socket with its connection started: the caller waits until it is
/// writable, then checks [`TcpStream::take_error`].
pub fn connect_started(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = socket(addr, bind)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connections_leave_from_the_chosen_local_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = connect_blocking(addr, Some("127.0.0.3".parse().unwrap())).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), "127.0.0.3".parse::<IpAddr>().unwrap());
        let _default = connect_blocking(addr, None).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
