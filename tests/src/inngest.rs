//! An Inngest event receiver that follows Inngest's documented event API
//! (`../shared/specs/inngest-event-api.md`), in process, on a free loopback port.
//!
//! - `POST /e/{event_key}`: one event object or an array of them; each needs a non-empty
//!   string `name` and an object `data`; optional `id` (string), `ts` (integer ms) and
//!   `v` (string). 200 `{"ids":[...],"status":200}`; 400 `{"ids":[],"status":400,
//!   "error":...}` for a bad body (nothing of it is recorded); 401 for an unknown key.
//!   Events over 512 KB are refused with 400, bodies over 3 MB with 413.
//! - An event whose `id` was accepted before is recorded with `duplicate: true`: Inngest
//!   stores it but starts no function for it again.
//! - `GET /health`: 200.
//!
//! Tests read what was accepted with [`InngestReceiver::events`] and script failures with
//! [`InngestReceiver::fail_next`].

use std::collections::{HashSet, VecDeque};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

pub const MAX_EVENT_BYTES: usize = 512 * 1024;
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// One event the receiver accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    /// The id the receiver answered with.
    pub internal_id: String,
    pub name: String,
    pub id: Option<String>,
    pub ts: Option<i64>,
    pub v: Option<String>,
    pub data: Value,
    /// An event with this `id` had been accepted before: it would start no function.
    pub duplicate: bool,
}

/// A scripted failure for the next request to `/e/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this status (5xx: a transient failure) and record nothing.
    Status(u16),
    /// Close the connection without an answer and record nothing.
    Drop,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<ReceivedEvent>,
    seen_ids: HashSet<String>,
    failures: VecDeque<Failure>,
    requests: usize,
    next_id: u64,
}

/// The receiver; stops on drop.
#[derive(Debug)]
pub struct InngestReceiver {
    addr: SocketAddr,
    event_key: String,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
}

impl InngestReceiver {
    /// Starts a receiver that accepts `event_key`.
    pub fn start(event_key: &str) -> InngestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Inngest receiver");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (key, st, stop) = (event_key.to_owned(), state.clone(), stopping.clone());
        thread::Builder::new()
            .name("inngest-receiver".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (key, st) = (key.clone(), st.clone());
                    thread::spawn(move || serve(stream, &key, &st));
                }
            })
            .expect("spawn the Inngest receiver");
        InngestReceiver {
            addr,
            event_key: event_key.to_owned(),
            state,
            stopping,
        }
    }

    /// `http://127.0.0.1:PORT`, for `INNGEST_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn event_key(&self) -> &str {
        &self.event_key
    }

    /// Every accepted event, in order of arrival.
    pub fn events(&self) -> Vec<ReceivedEvent> {
        self.lock().events.clone()
    }

    /// Number of requests to `/e/...`, failed ones included.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// The next request to `/e/...` fails this way (queued: call again for more).
    pub fn fail_next(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
    }

    /// The environment a service needs to send here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("INNGEST_BASE_URL".into(), self.base_url()),
            ("INNGEST_EVENT_KEY".into(), self.event_key.clone()),
        ]
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for InngestReceiver {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Serves requests on one connection (keep-alive) until the peer closes it.
fn serve(mut stream: TcpStream, key: &str, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    loop {
        let Some((method, path, body, close)) = read_request(&mut stream, &mut buf) else {
            return;
        };
        let reply = match (method.as_str(), path.as_str()) {
            ("GET", "/health") => Some((200, json!({"status": 200, "message": "OK"}))),
            ("POST", p) if p.starts_with("/e/") => {
                handle_send(&p["/e/".len()..], key, body.as_deref(), state)
            }
            (_, p) if p.starts_with("/e/") || p == "/health" => {
                Some((405, json!({"status": 405, "error": "method not allowed"})))
            }
            _ => Some((404, json!({"status": 404, "error": "not found"}))),
        };
        let Some((status, body)) = reply else {
            return; // a scripted dropped connection
        };
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body.as_bytes()).is_err()
        {
            return;
        }
        if close {
            return;
        }
    }
}

/// `(method, path, body, connection_close)`; `None` at EOF or on a broken request. A body
/// over [`MAX_BODY_BYTES`] is returned as `None` body (413).
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, String, Option<Vec<u8>>, bool)> {
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
                return Some((method, path, None, true));
            }
            while buf.len() < head_len + length {
                let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + length].to_vec();
            buf.drain(..head_len + length);
            return Some((method, path, Some(body), close));
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The reply to `POST /e/{key}`; `None` to drop the connection.
fn handle_send(
    key_in_path: &str,
    key: &str,
    body: Option<&[u8]>,
    state: &Mutex<State>,
) -> Option<(u16, Value)> {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.requests += 1;
    match state.failures.pop_front() {
        Some(Failure::Drop) => return None,
        Some(Failure::Status(status)) => {
            return Some((
                status,
                json!({"status": status, "error": "scripted failure"}),
            ));
        }
        None => {}
    }
    if key_in_path.is_empty() || key_in_path != key {
        return Some((401, json!({"status": 401, "error": "Event key not found"})));
    }
    let Some(body) = body else {
        return Some((
            413,
            json!({"status": 413, "error": "request body too large"}),
        ));
    };
    let bad = |error: String| Some((400, json!({"ids": [], "status": 400, "error": error})));
    let events = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(events)) => events,
        Ok(event @ Value::Object(_)) => vec![event],
        Ok(_) => return bad("body must be an event object or an array of events".into()),
        Err(e) => return bad(format!("body is not JSON: {e}")),
    };
    let mut parsed = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        match parse_event(event) {
            Ok(event) => parsed.push(event),
            Err(e) => return bad(format!("event {i}: {e}")),
        }
    }
    let mut ids = Vec::with_capacity(parsed.len());
    for mut event in parsed {
        state.next_id += 1;
        event.internal_id = format!("01TESTEVENT{:015}", state.next_id);
        if let Some(id) = &event.id {
            event.duplicate = !state.seen_ids.insert(id.clone());
        }
        ids.push(event.internal_id.clone());
        state.events.push(event);
    }
    Some((200, json!({"ids": ids, "status": 200})))
}

fn parse_event(event: Value) -> Result<ReceivedEvent, String> {
    if event.to_string().len() > MAX_EVENT_BYTES {
        return Err(format!("event is larger than {MAX_EVENT_BYTES} bytes"));
    }
    let Value::Object(mut event) = event else {
        return Err("is not an object".into());
    };
    let name = match event.remove("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => return Err("`name` must be a non-empty string".into()),
    };
    let data = match event.remove("data") {
        Some(data @ Value::Object(_)) => data,
        _ => return Err("`data` must be an object".into()),
    };
    let id = match event.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err("`id` must be a string".into()),
    };
    let ts = match event.remove("ts") {
        None | Some(Value::Null) => None,
        Some(ts) => Some(ts.as_i64().ok_or("`ts` must be an integer (Unix ms)")?),
    };
    let v = match event.remove("v") {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v),
        Some(_) => return Err("`v` must be a string".into()),
    };
    Ok(ReceivedEvent {
        internal_id: String::new(),
        name,
        id,
        ts,
        v,
        data,
        duplicate: false,
    })
}
