//! A raw HTTP/1.1 client for tests: sends exactly the bytes it is given, so that it can
//! also be the malformed, oversized or slow client a server must survive.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects to `addr`.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// Sends `raw` on a new connection and reads the response until the server closes.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> io::Result<Reply> {
    let mut stream = connect(addr)?;
    stream.write_all(raw)?;
    read_reply(&mut stream)
}

/// `GET path` (or another method) with a well-formed request.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> io::Result<Reply> {
    exchange(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: conformance\r\n\r\n")
            .as_bytes(),
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// Reads until EOF and parses the response. A HEAD response has no body, and the body
/// is everything after the head (the server closes the connection).
pub fn read_reply(stream: &mut TcpStream) -> io::Result<Reply> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> io::Result<Reply> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad("incomplete response head")),
        Err(e) => return Err(bad(&format!("bad response head: {e}"))),
    };
    Ok(Reply {
        status: response.code.ok_or_else(|| bad("no status"))?,
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[head_len..].to_vec(),
    })
}
