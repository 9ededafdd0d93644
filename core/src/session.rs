//! One MTProto connection to a DC, without IO: the auth-key handshake when there is no
//! key, then an encrypted session (grammers' `Encrypted`: salts, acks, containers, gzip)
//! framed with the Full transport, a table of requests in flight with resends after
//! retryable `bad_msg_notification`s, and keep-alive with `ping_delay_disconnect`.
//!
//! In the quinn-proto manner: [`Session::handle_input`] and [`Session::handle_timeout`]
//! take what arrived and the time, [`Session::invoke`] is the one command, and the
//! caller drains [`Session::poll_transmit`], [`Session::poll_event`] and
//! [`Session::poll_timeout`] after each. grammers' `Encrypted` reads the system clock for
//! message ids (it cannot be injected); every timer here runs on the `now` given.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grammers_crypto::DequeBuffer;
use grammers_mtproto::MsgId;
use grammers_mtproto::mtp::{Deserialization, Encrypted, Mtp as _, Plain};
use grammers_mtproto::transport::{self, Full, Transport as _};
use grammers_tl_types::{self as tl, Serializable as _, functions};

use crate::handshake::{Finished, Handshake, HandshakeError, Progress};
use crate::random::Random;
use crate::rpc_error::RpcError;
use crate::rsa::RsaPublicKey;

/// The current time, both as the monotonic clock timers use and as Unix seconds (for the
/// handshake's server-time offset). A runtime reads both clocks once per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub unix_secs: i64,
}

/// What `initConnection` tells Telegram about the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub api_id: i32,
    pub device_model: String,
    pub system_version: String,
    pub app_version: String,
    pub lang_code: String,
}

/// Shared by every session of a process.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// RSA keys trusted for handshakes (Telegram's, or a test DC's).
    pub rsa_keys: Vec<RsaPublicKey>,
    pub client: ClientInfo,
    /// How often to ping an otherwise quiet connection.
    pub ping_interval: Duration,
    /// `ping_delay_disconnect`'s delay: the server closes a connection that stops pinging.
    pub disconnect_delay: Duration,
    /// With nothing received for this long, the connection is taken for dead.
    pub idle_timeout: Duration,
}

impl SessionConfig {
    pub fn new(rsa_keys: Vec<RsaPublicKey>, client: ClientInfo) -> Self {
        SessionConfig {
            rsa_keys,
            client,
            ping_interval: Duration::from_secs(60),
            disconnect_delay: Duration::from_secs(75),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// Why a session stopped; the connection must be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The server does not know the auth key (transport error -404): make a new key.
    UnknownAuthKey,
    /// Transport error -429: too many connections from this address.
    TooManyConnections,
    /// Another transport error code.
    TransportStatus(u32),
    /// Frames that do not parse.
    Transport(String),
    Handshake(HandshakeError),
    /// A message the session cannot accept (wrong key, session or a fatal bad_msg).
    Protocol(String),
    /// Nothing arrived for `idle_timeout`.
    Timeout,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::UnknownAuthKey => f.write_str("the server does not know the auth key"),
            SessionError::TooManyConnections => f.write_str("too many connections (-429)"),
            SessionError::TransportStatus(code) => write!(f, "transport error -{code}"),
            SessionError::Transport(e) => write!(f, "transport: {e}"),
            SessionError::Handshake(e) => write!(f, "handshake: {e}"),
            SessionError::Protocol(e) => write!(f, "protocol: {e}"),
            SessionError::Timeout => f.write_str("the connection went quiet"),
        }
    }
}

impl std::error::Error for SessionError {}

/// Identifies a request of [`Session::invoke`].
pub type RequestId = u64;

/// What the session tells its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// Requests can flow. `new_key` is set when a handshake just made the key: it must be
    /// persisted before it is relied on.
    Ready {
        new_key: Option<Box<Finished>>,
    },
    Result {
        id: RequestId,
        body: Vec<u8>,
    },
    Error {
        id: RequestId,
        error: RpcError,
    },
    /// A boxed `Updates` object pushed by the server (or returned by a request).
    Update(Vec<u8>),
    /// The session is over; drop the connection.
    Failed(SessionError),
}

struct Pending {
    id: RequestId,
    body: Vec<u8>,
    /// The message id it was last sent with.
    msg_id: Option<MsgId>,
    /// A keep-alive ping, answered inside the session.
    internal: bool,
    /// How often the server asked for it again (bad salt, clock, seqno).
    resends: u8,
}

/// Not derived: a request's body can hold a secret (the login carries the bot token).
impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("id", &self.id)
            .field("body_len", &self.body.len())
            .field("sent", &self.msg_id.is_some())
            .field("internal", &self.internal)
            .field("resends", &self.resends)
            .finish()
    }
}

/// The largest frame accepted.
const MAX_FRAME: usize = 4 * 1024 * 1024;

/// The most receive-buffer capacity an idle session keeps: thousands of idle sessions
/// each keep theirs, so an empty buffer above this is given back.
const RX_KEEP: usize = 1024;

/// A request the server keeps refusing this often means the session is broken (a server
/// that never accepts our clock or salt must not make the client spin).
const MAX_RESENDS: u8 = 5;

/// Encrypted messages in a row that answer nothing of ours. grammers answers some
/// refusals internally (those of its own `get_future_salts`) and, after a clock
/// correction, keeps msg_ids above the last one sent: a clock far off makes it ask
/// forever. A fresh session (a reconnect) starts clean.
const MAX_UNPRODUCTIVE: u32 = 32;

enum Phase {
    Handshaking(Handshake),
    Ready(Box<Encrypted>),
    Failed,
}

/// One connection's MTProto state.
pub struct Session {
    config: Arc<SessionConfig>,
    transport: Full,
    rx: Vec<u8>,
    phase: Phase,
    pending: Vec<Pending>,
    /// Containers sent, with the requests inside, to resend on a container's bad_msg.
    containers: VecDeque<(MsgId, Vec<RequestId>)>,
    next_id: RequestId,
    /// `initConnection` wraps requests until the server has answered one of them.
    initialized: bool,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<SessionEvent>,
    next_ping: Instant,
    last_received: Instant,
    unproductive: u32,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Handshaking(_) => "handshaking",
            Phase::Ready(_) => "ready",
            Phase::Failed => "failed",
        };
        f.debug_struct("Session")
            .field("phase", &phase)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Session {
    /// A session on a fresh connection: with `auth_key` it is ready at once (a stored
    /// session), without it starts a handshake.
    pub fn new(
        config: Arc<SessionConfig>,
        auth_key: Option<[u8; 256]>,
        now: Now,
        random: &mut impl Random,
    ) -> Self {
        let mut session = Session {
            transport: Full::new(),
            rx: Vec::new(),
            phase: Phase::Failed,
            pending: Vec::new(),
            containers: VecDeque::new(),
            next_id: 1,
            initialized: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_ping: now.instant + config.ping_interval,
            last_received: now.instant,
            unproductive: 0,
            config,
        };
        match auth_key {
            Some(key) => {
                session.phase = Phase::Ready(Box::new(Encrypted::build().finish(key)));
                session
                    .events
                    .push_back(SessionEvent::Ready { new_key: None });
            }
            None => {
                let (handshake, request) =
                    Handshake::start(session.config.rsa_keys.clone(), random);
                session.phase = Phase::Handshaking(handshake);
                session.send_plain(&request);
            }
        }
        session
    }

    /// Queues a request (a serialized TL function); its answer comes as an event.
    pub fn invoke(&mut self, body: Vec<u8>) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push(Pending {
            id,
            body,
            msg_id: None,
            internal: false,
            resends: 0,
        });
        self.flush();
        id
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready(_))
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, data: &[u8], now: Now, random: &mut impl Random) {
        if matches!(self.phase, Phase::Failed) {
            return;
        }
        self.last_received = now.instant;
        self.rx.extend_from_slice(data);
        // The transport is not authenticated: a forged length must not make us buffer
        // gigabytes. Telegram's frames stay far below this (file chunks are 1 MiB).
        if let Some(len) = self
            .rx
            .get(..4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
            && len > MAX_FRAME as i32
        {
            return self.fail(SessionError::Transport(format!("a {len}-byte frame")));
        }
        loop {
            let offset = match self.transport.unpack(&mut self.rx) {
                Ok(offset) => offset,
                Err(transport::Error::MissingBytes) => break,
                Err(transport::Error::BadStatus { status }) => {
                    return self.fail(status_error(status));
                }
                Err(e) => return self.fail(SessionError::Transport(e.to_string())),
            };
            let mut payload = self.rx[offset.data_range].to_vec();
            self.rx.drain(..offset.next_offset);
            // A large answer (a file chunk) must not leave a large buffer behind: thousands
            // of idle sessions each keep theirs.
            if self.rx.is_empty() && self.rx.capacity() > RX_KEEP {
                self.rx = Vec::new();
            }
            if payload.len() == 4 {
                let code = i32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
                return self.fail(status_error(code.unsigned_abs()));
            }
            match &mut self.phase {
                Phase::Handshaking(_) => self.handshake_answer(&mut payload, now, random),
                Phase::Ready(_) => self.encrypted_answer(&mut payload),
                Phase::Failed => return,
            }
            if matches!(self.phase, Phase::Failed) {
                return;
            }
        }
        self.flush();
    }

    /// Timers: keep-alive pings and the idle deadline.
    pub fn handle_timeout(&mut self, now: Now) {
        if matches!(self.phase, Phase::Failed) {
            return;
        }
        if now.instant >= self.last_received + self.config.idle_timeout {
            return self.fail(SessionError::Timeout);
        }
        if now.instant >= self.next_ping {
            self.next_ping = now.instant + self.config.ping_interval;
            if self.is_ready() {
                let ping = functions::PingDelayDisconnect {
                    ping_id: now.unix_secs,
                    disconnect_delay: self.config.disconnect_delay.as_secs() as i32,
                };
                let id = self.next_id;
                self.next_id += 1;
                self.pending.push(Pending {
                    id,
                    body: ping.to_bytes(),
                    msg_id: None,
                    internal: true,
                    resends: 0,
                });
                self.flush();
            }
        }
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let frame = self.transmit.pop_front();
        if frame.is_none() && self.transmit.capacity() > 0 {
            // An idle session keeps no queue.
            self.transmit = VecDeque::new();
        }
        frame
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        event
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Failed => None,
            _ => Some(
                self.next_ping
                    .min(self.last_received + self.config.idle_timeout),
            ),
        }
    }

    fn fail(&mut self, error: SessionError) {
        self.phase = Phase::Failed;
        self.transmit.clear();
        self.events.push_back(SessionEvent::Failed(error));
    }

    fn send_plain(&mut self, body: &[u8]) {
        let mut buffer = DequeBuffer::with_capacity(body.len() + 32, 32);
        Plain::new().push(&mut buffer, body);
        Plain::new().finalize(&mut buffer);
        self.pack(buffer);
    }

    fn pack(&mut self, mut buffer: DequeBuffer<u8>) {
        self.transport.pack(&mut buffer);
        self.transmit.push_back(buffer.as_ref().to_vec());
    }

    fn handshake_answer(&mut self, payload: &mut [u8], now: Now, random: &mut impl Random) {
        let body = match Plain::new().deserialize(payload) {
            Ok(mut results) => match results.pop() {
                Some(Deserialization::RpcResult(result)) => result.body,
                _ => {
                    return self.fail(SessionError::Protocol(
                        "unexpected unencrypted answer".into(),
                    ));
                }
            },
            Err(e) => {
                return self.fail(SessionError::Protocol(format!("unencrypted answer: {e:?}")));
            }
        };
        let Phase::Handshaking(handshake) = &mut self.phase else {
            return;
        };
        match handshake.handle(&body, now.unix_secs, random) {
            Ok(Progress::Send(request)) => self.send_plain(&request),
            Ok(Progress::Done(finished)) => {
                let mtp = Encrypted::build()
                    .time_offset(finished.time_offset)
                    .first_salt(finished.first_salt)
                    .finish(finished.auth_key);
                self.phase = Phase::Ready(Box::new(mtp));
                self.events.push_back(SessionEvent::Ready {
                    new_key: Some(finished),
                });
            }
            Err(e) => self.fail(SessionError::Handshake(e)),
        }
    }

    fn encrypted_answer(&mut self, payload: &mut [u8]) {
        let Phase::Ready(mtp) = &mut self.phase else {
            return;
        };
        let results = match mtp.deserialize(payload) {
            Ok(results) => results,
            Err(e) => return self.fail(SessionError::Protocol(format!("{e:?}"))),
        };
        let productive = results.iter().any(|r| match r {
            Deserialization::RpcResult(r) => {
                self.pending.iter().any(|p| p.msg_id == Some(r.msg_id))
            }
            Deserialization::RpcError(e) => self.pending.iter().any(|p| p.msg_id == Some(e.msg_id)),
            Deserialization::Update(_) | Deserialization::OwnUpdate { .. } => true,
            _ => false,
        });
        self.unproductive = if productive { 0 } else { self.unproductive + 1 };
        if self.unproductive > MAX_UNPRODUCTIVE {
            return self.fail(SessionError::Protocol(
                "the server answers nothing we asked".into(),
            ));
        }
        for result in results {
            match result {
                Deserialization::RpcResult(r) => {
                    if let Some(p) = self.take_pending(r.msg_id) {
                        self.initialized = true;
                        if !p.internal {
                            self.events.push_back(SessionEvent::Result {
                                id: p.id,
                                body: r.body,
                            });
                        }
                    }
                }
                Deserialization::RpcError(e) => {
                    if let Some(p) = self.take_pending(e.msg_id) {
                        self.initialized = true;
                        let error = RpcError::parse(e.error.error_code, &e.error.error_message);
                        if !p.internal {
                            self.events
                                .push_back(SessionEvent::Error { id: p.id, error });
                        }
                    }
                }
                Deserialization::BadMessage(bad) if bad.retryable() => {
                    self.mark_for_resend(bad.msg_id)
                }
                Deserialization::BadMessage(bad) if bad.fatal() => {
                    return self.fail(SessionError::Protocol(format!(
                        "bad_msg_notification {}",
                        bad.code
                    )));
                }
                Deserialization::BadMessage(bad) => self.mark_for_resend(bad.msg_id),
                Deserialization::Update(update) | Deserialization::OwnUpdate { update, .. } => {
                    self.events.push_back(SessionEvent::Update(update));
                }
                Deserialization::Failure(_) => {}
            }
        }
    }

    fn take_pending(&mut self, msg_id: MsgId) -> Option<Pending> {
        let i = self.pending.iter().position(|p| p.msg_id == Some(msg_id))?;
        Some(self.pending.remove(i))
    }

    /// A sent message (or container) was refused in a way that asks for a resend.
    fn mark_for_resend(&mut self, msg_id: MsgId) {
        let in_container: Vec<RequestId> = self
            .containers
            .iter()
            .filter(|(id, _)| *id == msg_id)
            .flat_map(|(_, ids)| ids.clone())
            .collect();
        let mut exhausted = false;
        for p in &mut self.pending {
            if p.msg_id == Some(msg_id) || in_container.contains(&p.id) {
                p.msg_id = None;
                p.resends += 1;
                exhausted |= p.resends > MAX_RESENDS;
            }
        }
        if exhausted {
            self.fail(SessionError::Protocol(
                "the server keeps refusing a request".into(),
            ));
        }
    }

    /// Sends every request not yet sent (or to be resent), as far as the session allows.
    fn flush(&mut self) {
        let Phase::Ready(mtp) = &mut self.phase else {
            return;
        };
        let mut buffer = DequeBuffer::with_capacity(1024, 64);
        let mut sent = Vec::new();
        for p in self.pending.iter_mut().filter(|p| p.msg_id.is_none()) {
            let body = if self.initialized || p.internal {
                p.body.clone()
            } else {
                wrap_init(&self.config.client, &p.body)
            };
            match mtp.push(&mut buffer, &body) {
                Some(msg_id) => {
                    p.msg_id = Some(msg_id);
                    sent.push(p.id);
                }
                // A full container, or future salts asked for first: the rest waits.
                None => break,
            }
        }
        if let Some(container) = mtp.finalize(&mut buffer)
            && (sent.len() > 1 || !self.pending.iter().any(|p| p.msg_id == Some(container)))
        {
            // Containers whose requests are all answered can no longer be refused.
            let pending = &self.pending;
            self.containers
                .retain(|(_, ids)| ids.iter().any(|id| pending.iter().any(|p| p.id == *id)));
            if !sent.is_empty() {
                self.containers.push_back((container, sent));
            }
            while self.containers.len() > 64 {
                self.containers.pop_front();
            }
        }
        if !buffer.is_empty() {
            self.pack(buffer);
        }
    }
}

fn status_error(status: u32) -> SessionError {
    match status {
        404 => SessionError::UnknownAuthKey,
        429 => SessionError::TooManyConnections,
        other => SessionError::TransportStatus(other),
    }
}

/// `invokeWithLayer(layer, initConnection(..., query))`.
fn wrap_init(client: &ClientInfo, query: &[u8]) -> Vec<u8> {
    functions::InvokeWithLayer {
        layer: tl::LAYER,
        query: functions::InitConnection {
            api_id: client.api_id,
            device_model: client.device_model.clone(),
            system_version: client.system_version.clone(),
            app_version: client.app_version.clone(),
            system_lang_code: client.lang_code.clone(),
            lang_pack: String::new(),
            lang_code: client.lang_code.clone(),
            proxy: None,
            params: None,
            query: Raw(query),
        },
    }
    .to_bytes()
}

/// `invokeWithoutUpdates(query)`: Telegram pushes no updates to the connection that
/// carries it (a media connection's, whose updates would duplicate the home one's).
pub fn without_updates(query: &[u8]) -> Vec<u8> {
    functions::InvokeWithoutUpdates { query: Raw(query) }.to_bytes()
}

/// Already serialized bytes, written as they are.
struct Raw<'a>(&'a [u8]);

impl tl::Serializable for Raw<'_> {
    fn serialize(&self, buf: &mut impl Extend<u8>) {
        buf.extend(self.0.iter().copied());
    }
}
