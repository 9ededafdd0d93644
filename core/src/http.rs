//! A minimal HTTP/1.x server connection without IO, for the health surface.
//!
//! One request per connection: the runtime feeds what it read, takes the parsed
//! [`Request`], hands back a [`Response`] with [`HttpConnection::respond_to`], writes what [`HttpConnection::poll_transmit`]
//! gives, half-closes, and drains the peer for a moment so that unread request bytes
//! cannot turn the close into a reset that destroys the response ("lingering close").
//!
//! Every state has a deadline, and the head has a *total* deadline from the moment the
//! connection was accepted: a client that trickles one byte a second cannot keep a
//! connection open past [`HEAD_TIMEOUT`], and a client that stops reading its response
//! is dropped after [`WRITE_TIMEOUT`].

use std::time::{Duration, Instant};

/// The largest request head accepted; larger ones get 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most header lines accepted; more get 431.
pub const MAX_HEADERS: usize = 32;
/// Time from accept to a complete request head; then 408.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to write a response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time spent draining the peer after the response, and the most bytes drained.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
pub const LINGER_MAX_BYTES: usize = 64 * 1024;
/// At most this many health connections are served at once (both runtimes); more are
/// answered 503 at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a stopping server waits for requests already in progress.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a server pauses after a failed accept (out of file descriptors, say), so
/// that it does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The request method, as far as routing cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other method, kept for the log.
    Other(String),
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without its query string.
    pub path: String,
}

/// A response to encode; the connection adds the framing headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Value of an `Allow` header, sent with 405.
    pub allow: Option<&'static str>,
    pub body: Vec<u8>,
}

pub const JSON: &str = "application/json";

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: JSON,
            allow: None,
            body: body.into(),
        }
    }

    /// A JSON error body `{"error":"..."}` for protocol-level failures.
    pub fn error(status: u16) -> Self {
        let body = serde_json::json!({ "error": reason(status).to_ascii_lowercase() });
        Response::json(status, body.to_string())
    }

    /// The bytes on the wire; `head_only` leaves the body out (for HEAD) but keeps its
    /// length in `Content-Length`.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if let Some(allow) = self.allow {
            out.extend_from_slice(format!("Allow: {allow}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[derive(Debug)]
enum State {
    /// Collecting the request head.
    Reading {
        buf: Vec<u8>,
    },
    /// A request was parsed; waiting for the runtime's response.
    Awaiting {
        request: Option<Request>,
    },
    Writing {
        out: Vec<u8>,
        pos: usize,
    },
    /// Response sent and write side shut; discarding what the peer still sends.
    Lingering {
        discarded: usize,
    },
    Closed,
}

/// One health-server connection, from accept to close.
#[derive(Debug)]
pub struct HttpConnection {
    state: State,
    deadline: Instant,
}

impl HttpConnection {
    pub fn new(now: Instant) -> Self {
        HttpConnection {
            state: State::Reading { buf: Vec::new() },
            deadline: now + HEAD_TIMEOUT,
        }
    }

    /// Bytes read from the peer.
    pub fn handle_read(&mut self, data: &[u8], now: Instant) {
        match &mut self.state {
            State::Reading { buf } => {
                // Never hold more than the limit plus one read's worth.
                let room = (MAX_HEAD_BYTES + 1).saturating_sub(buf.len());
                buf.extend_from_slice(&data[..data.len().min(room)]);
                match parse_head(buf) {
                    Ok(Some(request)) => {
                        self.state = State::Awaiting {
                            request: Some(request),
                        };
                    }
                    Ok(None) if buf.len() > MAX_HEAD_BYTES => self.fail(431, now),
                    Ok(None) => {}
                    Err(status) => self.fail(status, now),
                }
            }
            State::Lingering { discarded } => {
                *discarded += data.len();
                if *discarded > LINGER_MAX_BYTES {
                    self.state = State::Closed;
                }
            }
            State::Awaiting { .. } | State::Writing { .. } | State::Closed => {}
        }
    }

    /// The peer closed its side.
    pub fn handle_eof(&mut self) {
        match self.state {
            // A client that half-closes after its request still gets its response.
            State::Awaiting { .. } | State::Writing { .. } => {}
            _ => self.state = State::Closed,
        }
    }

    /// The request, once its head is complete (returned once).
    pub fn poll_request(&mut self) -> Option<Request> {
        match &mut self.state {
            State::Awaiting { request } => request.take(),
            _ => None,
        }
    }

    /// Answers the request from [`poll_request`](Self::poll_request); a HEAD request
    /// gets the headers only.
    pub fn respond_to(&mut self, request: &Request, response: &Response, now: Instant) {
        self.start_writing(response.encode(request.method == Method::Head), now);
    }

    fn fail(&mut self, status: u16, now: Instant) {
        self.start_writing(Response::error(status).encode(false), now);
    }

    fn start_writing(&mut self, out: Vec<u8>, now: Instant) {
        self.state = State::Writing { out, pos: 0 };
        self.deadline = now + WRITE_TIMEOUT;
    }

    /// Bytes to write next, if any.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        match &self.state {
            State::Writing { out, pos } if *pos < out.len() => Some(&out[*pos..]),
            _ => None,
        }
    }

    /// `n` bytes of [`poll_transmit`](Self::poll_transmit) were written.
    pub fn advance_transmit(&mut self, n: usize, now: Instant) {
        if let State::Writing { out, pos } = &mut self.state {
            *pos = (*pos + n).min(out.len());
            if *pos == out.len() {
                self.state = State::Lingering { discarded: 0 };
                self.deadline = now + LINGER_TIMEOUT;
            }
        }
    }

    /// The response is out: the runtime shuts down its write side (once).
    pub fn is_write_finished(&self) -> bool {
        matches!(self.state, State::Lingering { .. } | State::Closed)
    }

    /// Whether reading from the peer serves a purpose now.
    pub fn wants_read(&self) -> bool {
        matches!(self.state, State::Reading { .. } | State::Lingering { .. })
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            _ => Some(self.deadline),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        match self.state {
            State::Reading { .. } => self.fail(408, now),
            _ => self.state = State::Closed,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }
}

/// `Ok(None)` while the head is incomplete; `Err(status)` for a request to refuse.
fn parse_head(buf: &[u8]) -> Result<Option<Request>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let method = match req.method.unwrap_or_default() {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                other => Method::Other(other.to_owned()),
            };
            let target = req.path.unwrap_or_default();
            if !target.starts_with('/') {
                return Err(400);
            }
            let path = target.split(['?', '#']).next().unwrap_or_default();
            Ok(Some(Request {
                method,
                path: path.to_owned(),
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(431),
        Err(_) => Err(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(conn: &HttpConnection) -> String {
        String::from_utf8_lossy(conn.poll_transmit().unwrap_or_default()).into_owned()
    }

    #[test]
    fn request_split_across_reads_is_parsed_once() {
        let t0 = Instant::now();
        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"GET /readyz?verbose=1 HT", t0);
        assert_eq!(conn.poll_request(), None);
        conn.handle_read(b"TP/1.1\r\nHost: x\r\n\r\n", t0);
        let req = conn.poll_request().unwrap();
        assert_eq!(
            req,
            Request {
                method: Method::Get,
                path: "/readyz".into()
            }
        );
        assert_eq!(conn.poll_request(), None);
        assert!(!conn.wants_read());
        conn.respond_to(&req, &Response::json(200, "{}"), t0);
        assert!(text(&conn).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text(&conn).ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn head_keeps_content_length_and_drops_body() {
        let t0 = Instant::now();
        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"HEAD /healthz HTTP/1.0\r\n\r\n", t0);
        let req = conn.poll_request().unwrap();
        conn.respond_to(&req, &Response::json(200, "{\"status\":\"ok\"}"), t0);
        let out = text(&conn);
        assert!(out.contains("Content-Length: 15\r\n"));
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[test]
    fn garbage_gets_400_and_oversized_head_gets_431() {
        let t0 = Instant::now();
        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", t0);
        assert!(text(&conn).starts_with("HTTP/1.1 400 Bad Request"));

        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"GET / HTTP/1.1\r\nX-Big: ", t0);
        for _ in 0..100 {
            conn.handle_read(&[b'a'; 1000], t0);
        }
        assert!(text(&conn).starts_with("HTTP/1.1 431 "));

        let mut conn = HttpConnection::new(t0);
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        conn.handle_read(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), t0);
        assert!(text(&conn).starts_with("HTTP/1.1 431 "));

        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"GET http://example.com/healthz HTTP/1.1\r\n\r\n", t0);
        assert!(text(&conn).starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn trickling_client_is_cut_off_at_the_head_deadline() {
        let t0 = Instant::now();
        let mut conn = HttpConnection::new(t0);
        for (i, byte) in b"GET /healthz".iter().enumerate() {
            let now = t0 + Duration::from_millis(400 * i as u64);
            if now >= conn.poll_timeout().unwrap() {
                conn.handle_timeout(now);
                break;
            }
            conn.handle_read(&[*byte], now);
        }
        assert_eq!(conn.poll_timeout(), Some(t0 + HEAD_TIMEOUT));
        conn.handle_timeout(t0 + HEAD_TIMEOUT);
        assert!(text(&conn).starts_with("HTTP/1.1 408 Request Timeout"));
    }

    #[test]
    fn after_the_response_the_connection_lingers_then_closes() {
        let t0 = Instant::now();
        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"GET / HTTP/1.1\r\n\r\nextra", t0);
        let req = conn.poll_request().unwrap();
        conn.respond_to(&req, &Response::error(404), t0);
        let len = conn.poll_transmit().unwrap().len();
        conn.advance_transmit(len - 1, t0);
        assert!(!conn.is_write_finished());
        conn.advance_transmit(1, t0);
        assert!(conn.is_write_finished() && conn.wants_read());
        conn.handle_read(&[0; 100], t0);
        assert!(!conn.is_closed());
        conn.handle_eof();
        assert!(conn.is_closed());
        assert_eq!(conn.poll_timeout(), None);
    }

    #[test]
    fn a_peer_that_never_reads_is_dropped() {
        let t0 = Instant::now();
        let mut conn = HttpConnection::new(t0);
        conn.handle_read(b"GET / HTTP/1.1\r\n\r\n", t0);
        let req = conn.poll_request().unwrap();
        conn.respond_to(&req, &Response::error(404), t0);
        conn.handle_timeout(t0 + WRITE_TIMEOUT - Duration::from_millis(1));
        assert!(!conn.is_closed());
        conn.handle_timeout(t0 + WRITE_TIMEOUT);
        assert!(conn.is_closed());
    }
}
