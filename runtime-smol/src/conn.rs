//! One task per open connection: it connects, then reads whatever arrives (into the
//! executor's shared buffer) and hands it to the fleet. Writes are made by whoever pumps
//! the fleet, straight into the socket; what the socket does not take at once waits in
//! the connection's queue for the task to finish, within [`WRITE_TIMEOUT`].

use std::cell::{Cell, RefCell};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::rc::Rc;

use async_io::{Async, Timer};
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use telegram_bots_adapters::clock::{OsRandom, now};
use telegram_bots_adapters::net::{CONNECT_TIMEOUT, WRITE_TIMEOUT, connect_started};
use telegram_bots_core::fleet::ConnId;

use crate::driver::Runtime;

/// Bytes a connection may have queued for a peer that does not read: beyond this it is
/// taken for dead.
const MAX_QUEUED: usize = 4 * 1024 * 1024;
/// Reads in a row before the task lets others run.
const READS_PER_TURN: usize = 16;

/// A connection's state shared between its task and the writers.
#[derive(Debug)]
pub struct Conn {
    stream: RefCell<Option<Rc<Async<TcpStream>>>>,
    /// What the socket has not taken yet, oldest first.
    queued: RefCell<Vec<u8>>,
    closed: Cell<bool>,
    /// Tells the task to look again: bytes were queued, or the connection closed.
    nudge: Sender<()>,
    nudged: Receiver<()>,
}

impl Conn {
    pub fn new() -> Conn {
        let (nudge, nudged) = channel::bounded(1);
        Conn {
            stream: RefCell::new(None),
            queued: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            nudge,
            nudged,
        }
    }

    /// Writes `bytes` now as far as the socket takes them, queues the rest.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let mut queued = self.queued.borrow_mut();
        let Some(stream) = self.stream.borrow().clone() else {
            // Not connected yet: the bot sends nothing before it is told it is.
            queued.extend_from_slice(bytes);
            return Ok(());
        };
        let mut written = 0;
        if queued.is_empty() {
            written = match stream.get_ref().write(bytes) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
        }
        if written < bytes.len() {
            if queued.len() + bytes.len() - written > MAX_QUEUED {
                return Err(io::Error::other("the peer does not read"));
            }
            queued.extend_from_slice(&bytes[written..]);
            let _ = self.nudge.try_send(());
        }
        Ok(())
    }

    /// The fleet closed the connection.
    pub fn close(&self) {
        self.closed.set(true);
        self.stream.borrow_mut().take();
        let _ = self.nudge.try_send(());
    }
}

impl Default for Conn {
    fn default() -> Self {
        Self::new()
    }
}

/// Connects `conn` and feeds the fleet until the connection ends.
pub async fn run(
    rt: Rc<Runtime>,
    conn: ConnId,
    addr: SocketAddr,
    bind: Option<IpAddr>,
    state: Rc<Conn>,
) {
    let stream = match connect(addr, bind).await {
        Ok(stream) => Rc::new(stream),
        Err(e) => {
            tracing::debug!("connection to {addr} failed: {e}");
            return rt.lost(conn);
        }
    };
    if state.closed.get() || !rt.is_open(conn) {
        return;
    }
    *state.stream.borrow_mut() = Some(stream.clone());
    rt.feed(|f| f.handle_connected(conn, now(), &mut OsRandom));
    if let Err(e) = serve(&rt, conn, &stream, &state).await {
        tracing::debug!("connection to {addr}: {e}");
        rt.lost(conn);
    }
}

enum Wake {
    Readable(io::Result<()>),
    Nudged,
    Flushed(io::Result<()>),
}

/// Reads until the peer closes (an error) or the fleet closes the connection (`Ok`).
async fn serve(
    rt: &Rc<Runtime>,
    conn: ConnId,
    stream: &Async<TcpStream>,
    state: &Conn,
) -> io::Result<()> {
    loop {
        if state.closed.get() {
            return Ok(());
        }
        let readable = async { Wake::Readable(stream.readable().await) };
        let nudged = async {
            let _ = state.nudged.recv().await;
            Wake::Nudged
        };
        let wake = if state.queued.borrow().is_empty() {
            readable.or(nudged).await
        } else {
            let flush = async { Wake::Flushed(flush(stream, state).await) };
            readable.or(flush).or(nudged).await
        };
        match wake {
            Wake::Nudged => continue,
            Wake::Flushed(result) => result?,
            Wake::Readable(result) => {
                result?;
                for _ in 0..READS_PER_TURN {
                    let n = {
                        let mut buffer = rt.read_buffer.borrow_mut();
                        match stream.get_ref().read(&mut buffer) {
                            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        }
                    };
                    let buffer = rt.read_buffer.borrow();
                    rt.fleet
                        .borrow_mut()
                        .handle_input(conn, &buffer[..n], now(), &mut OsRandom);
                    drop(buffer);
                    rt.pump();
                    if state.closed.get() {
                        return Ok(());
                    }
                }
                smol::future::yield_now().await;
            }
        }
    }
}

/// Writes the queue out, within [`WRITE_TIMEOUT`].
async fn flush(stream: &Async<TcpStream>, state: &Conn) -> io::Result<()> {
    let write = async {
        loop {
            stream.writable().await?;
            let mut queued = state.queued.borrow_mut();
            match stream.get_ref().write(&queued) {
                Ok(n) => {
                    queued.drain(..n);
                    if queued.is_empty() {
                        *queued = Vec::new();
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    let timeout = async {
        Timer::after(WRITE_TIMEOUT).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading",
        ))
    };
    write.or(timeout).await
}

async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<Async<TcpStream>> {
    let stream = Async::new(connect_started(addr, bind)?)?;
    let opened = async {
        stream.writable().await?;
        match stream.get_ref().take_error()? {
            Some(e) => Err(e),
            None => Ok(()),
        }
    };
    let timeout = async {
        Timer::after(CONNECT_TIMEOUT).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    opened.or(timeout).await?;
    Ok(stream)
}
