//! A small blocking HTTP/1.1 JSON server for test equipment (the Inngest receiver and
//! the fake DC's control API): a thread per connection, keep-alive, `Content-Length`
//! bodies, and a handler that answers a status and a JSON value, or nothing to drop the
//! connection without an answer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// Bodies larger than this reach the handler as `body: None` (answer 413).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// One request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    /// `None` when the body was over [`MAX_BODY_BYTES`].
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// The body as JSON, or a 400-style message.
    pub fn json(&self) -> Result<Value, String> {
        let body = self.body.as_deref().ok_or("body too large")?;
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
    }
}

pub type Handler = dyn Fn(&Request) -> Option<(u16, Value)> + Send + Sync;

/// A running server; stops accepting on drop.
#[derive(Debug)]
pub struct JsonServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl JsonServer {
    pub fn start(listener: TcpListener, handler: Arc<Handler>) -> std::io::Result<JsonServer> {
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        thread::Builder::new()
            .name("json-server".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let handler = handler.clone();
                    thread::spawn(move || serve(stream, &*handler));
                }
            })?;
        Ok(JsonServer { addr, stopping })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(mut stream: TcpStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some((request, close)) = read_request(&mut stream, &mut buf) {
        let Some((status, body)) = handler(&request) else {
            return; // the handler wants the connection dropped unanswered
        };
        let body = body.to_string();
        // One write: a body written after its head would wait for the client's delayed
        // ACK of the head (Nagle's algorithm), 40 ms an answer.
        let answer = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            reason(status),
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream.write_all(answer.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Status",
    }
}

/// The next request and whether the client asked to close; `None` at EOF or on a
/// broken request.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(Request, bool)> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = req.parse(buf).ok()? {
            let method = req.method?.to_owned();
            let path = req.path?.split('?').next()?.to_owned();
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
            };
            let close = header("connection").is_some_and(|v| v == "close");
            let length: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
            if length > MAX_BODY_BYTES {
                return Some((
                    Request {
                        method,
                        path,
                        body: None,
                    },
                    true,
                ));
            }
            while buf.len() < head_len + length {
                let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + length].to_vec();
            buf.drain(..head_len + length);
            return Some((
                Request {
                    method,
                    path,
                    body: Some(body),
                },
                close,
            ));
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}
