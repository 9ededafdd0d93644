//! The health server on OS threads: one accept thread, one short-lived thread per
//! connection (capped), each driving a core [`HttpConnection`].

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use telegram_bots_core::http::{
    ACCEPT_ERROR_PAUSE, DRAIN_TIMEOUT, HttpConnection, MAX_CONNECTIONS, Response,
};

use telegram_bots_adapters::health::Responder;

/// A running health server.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    acceptor: JoinHandle<()>,
}

impl HealthServer {
    /// Serves `health` on `listener` until [`stop`](Self::stop).
    pub fn start(
        listener: TcpListener,
        health: Arc<dyn Responder + Send + Sync>,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let acceptor = thread::Builder::new().name("health-accept".into()).spawn({
            let (stopping, active) = (stopping.clone(), active.clone());
            move || accept_loop(&listener, &health, &stopping, &active)
        })?;
        Ok(HealthServer {
            addr,
            stopping,
            active,
            acceptor,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, then waits up to [`DRAIN_TIMEOUT`] for requests in progress.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // A blocked accept() only returns for a connection: make one.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_millis(200));
        let _ = self.acceptor.join();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The loopback address that reaches a listener bound to `addr` (which may be 0.0.0.0).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut wake = addr;
    if addr.ip().is_unspecified() {
        wake.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    wake
}

fn accept_loop(
    listener: &TcpListener,
    health: &Arc<dyn Responder + Send + Sync>,
    stopping: &AtomicBool,
    active: &Arc<AtomicUsize>,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, usually: do not spin on it.
                tracing::warn!("health server cannot accept: {e}");
                thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            refuse(stream);
            continue;
        }
        let guard = ActiveGuard(active.clone());
        let health = health.clone();
        let spawned = thread::Builder::new()
            .name("health-conn".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let _guard = guard;
                serve(stream, &*health);
            });
        if let Err(e) = spawned {
            tracing::warn!("health server cannot start a connection thread: {e}");
        }
    }
}

/// Decrements the active-connection count when a connection thread ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn refuse(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = stream.write_all(&Response::error(503).encode(false));
}

/// Drives one connection until the core says it is closed.
fn serve(mut stream: TcpStream, health: &dyn Responder) {
    let mut conn = HttpConnection::new(Instant::now());
    let mut buf = [0u8; 4096];
    let mut shut_down_write = false;
    loop {
        let now = Instant::now();
        conn.handle_timeout(now);
        if let Some(request) = conn.poll_request() {
            let response = health.respond(&request);
            conn.respond_to(&request, &response, now);
        }
        let Some(deadline) = conn.poll_timeout() else {
            return;
        };
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        if let Some(out) = conn.poll_transmit() {
            let _ = stream.set_write_timeout(Some(wait));
            match stream.write(out) {
                Ok(n) => conn.advance_transmit(n, Instant::now()),
                Err(e) if is_timeout(&e) => {}
                Err(_) => return,
            }
            continue;
        }
        if conn.is_write_finished() && !shut_down_write {
            let _ = stream.shutdown(Shutdown::Write);
            shut_down_write = true;
        }
        if !conn.wants_read() {
            return;
        }
        let _ = stream.set_read_timeout(Some(wait));
        match stream.read(&mut buf) {
            Ok(0) => conn.handle_eof(),
            Ok(n) => conn.handle_read(&buf[..n], Instant::now()),
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
