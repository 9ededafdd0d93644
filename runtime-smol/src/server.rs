//! The health server on async-io: one task per connection (capped), each driving a core
//! [`HttpConnection`].

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use smol::LocalExecutor;
use smol::channel;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use telegram_bots_adapters::health::Responder;
use telegram_bots_core::http::{
    ACCEPT_ERROR_PAUSE, DRAIN_TIMEOUT, HttpConnection, MAX_CONNECTIONS, Response,
};

/// Serves `health` on `listener` until `stop` resolves, then drains requests in progress
/// for up to [`DRAIN_TIMEOUT`].
pub async fn serve<R: Responder + 'static>(
    ex: &Rc<LocalExecutor<'_>>,
    listener: Async<TcpListener>,
    health: Rc<R>,
    stop: impl Future<Output = ()>,
) {
    // Every connection task holds a clone of `active`; the receiver sees the channel
    // close once the last one has finished.
    let (active, all_done) = channel::bounded::<()>(1);
    let accept = async {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, usually: do not spin on it.
                    tracing::warn!("health server cannot accept: {e}");
                    Timer::after(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            if active.sender_count() > MAX_CONNECTIONS {
                ex.spawn(refuse(stream)).detach();
                continue;
            }
            let (guard, health) = (active.clone(), health.clone());
            ex.spawn(async move {
                let _guard = guard;
                serve_connection(stream, &*health).await;
            })
            .detach();
        }
    };
    accept.or(stop).await;
    drop(listener);
    drop(active);
    let _ = all_done
        .recv()
        .or(async {
            Timer::after(DRAIN_TIMEOUT).await;
            Ok(())
        })
        .await;
}

async fn refuse(mut stream: Async<TcpStream>) {
    let _ = stream
        .write_all(&Response::error(503).encode(false))
        .or(async {
            Timer::after(Duration::from_millis(100)).await;
            Ok(())
        })
        .await;
}

/// Drives one connection until the core says it is closed.
async fn serve_connection(mut stream: Async<TcpStream>, health: &impl Responder) {
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
        if let Some(out) = conn.poll_transmit() {
            match stream.write(out).or(timeout_at(deadline)).await {
                Ok(n) => conn.advance_transmit(n, Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
            continue;
        }
        if conn.is_write_finished() && !shut_down_write {
            let _ = stream.get_ref().shutdown(Shutdown::Write);
            shut_down_write = true;
        }
        if !conn.wants_read() {
            return;
        }
        match stream.read(&mut buf).or(timeout_at(deadline)).await {
            Ok(0) => conn.handle_eof(),
            Ok(n) => conn.handle_read(&buf[..n], Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

async fn timeout_at(deadline: Instant) -> io::Result<usize> {
    Timer::at(deadline).await;
    Err(io::ErrorKind::TimedOut.into())
}

/// The address the listener is bound to, for the start-up log.
pub fn local_addr(listener: &Async<TcpListener>) -> io::Result<SocketAddr> {
    listener.get_ref().local_addr()
}
