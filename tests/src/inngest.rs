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
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

use crate::json_server::{JsonServer, Request};

pub const MAX_EVENT_BYTES: usize = 512 * 1024;
pub use crate::json_server::MAX_BODY_BYTES;

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
    /// When the receiver accepted it.
    pub received_at: Instant,
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
    /// Every request fails this way while set.
    failing: Option<Failure>,
    requests: usize,
    next_id: u64,
}

/// The receiver; stops on drop.
#[derive(Debug)]
pub struct InngestReceiver {
    addr: SocketAddr,
    event_key: String,
    state: Arc<Mutex<State>>,
    _server: JsonServer,
}

impl InngestReceiver {
    /// Starts a receiver that accepts `event_key`.
    pub fn start(event_key: &str) -> InngestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Inngest receiver");
        let state = Arc::new(Mutex::new(State::default()));
        let (key, st) = (event_key.to_owned(), state.clone());
        let server = JsonServer::start(listener, Arc::new(move |r: &Request| handle(r, &key, &st)))
            .expect("start the Inngest receiver");
        InngestReceiver {
            addr: server.addr(),
            event_key: event_key.to_owned(),
            state,
            _server: server,
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

    /// The accepted events from the `from`-th on (for a reader that keeps its place).
    pub fn events_from(&self, from: usize) -> Vec<ReceivedEvent> {
        self.lock().events.get(from..).unwrap_or_default().to_vec()
    }

    /// Number of requests to `/e/...`, failed ones included.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// The next request to `/e/...` fails this way (queued: call again for more).
    pub fn fail_next(&self, failure: Failure) {
        self.lock().failures.push_back(failure);
    }

    /// Every request to `/e/...` fails this way until called again with `None` (an
    /// outage).
    pub fn set_failing(&self, failure: Option<Failure>) {
        self.lock().failing = failure;
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

fn handle(request: &Request, key: &str, state: &Mutex<State>) -> Option<(u16, Value)> {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/health") => Some((200, json!({"status": 200, "message": "OK"}))),
        ("POST", p) if p.starts_with("/e/") => {
            handle_send(&p["/e/".len()..], key, request.body.as_deref(), state)
        }
        (_, p) if p.starts_with("/e/") || p == "/health" => {
            Some((405, json!({"status": 405, "error": "method not allowed"})))
        }
        _ => Some((404, json!({"status": 404, "error": "not found"}))),
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
    let failing = state.failing.clone();
    match state.failures.pop_front().or(failing) {
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
        received_at: Instant::now(),
    })
}
