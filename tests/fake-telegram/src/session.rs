//! One client connection to a fake DC, without IO: framed bytes in, framed bytes out, and
//! timers ([`Connection::poll_timeout`], [`Connection::handle_timeout`]). Handles the
//! handshake and MTProto 2.0 sessions as strictly as Telegram: padding, msg_id and seqno
//! checks ([`received`](super::received)), rotating salts, containers and gzip both ways,
//! acknowledgements both ways with pushed updates sent again until acknowledged, pings and
//! the idle timeout; the auth-key conflict detector; and hands API requests to
//! [`rpc`](super::rpc).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grammers_tl_types::{
    Deserializable as _, Identifiable as _, Serializable as _, enums, functions, types,
};

use super::crypto::{auth_key_id, decrypt_from_client, encrypt_to_client, random};
use super::envelope::{
    GZIP_PACKED, MSG_CONTAINER, Message, constructor, container, gunzip, maybe_gzip, msgs_ack,
    rpc_error, rpc_result, unpack_container,
};
use super::fault::FaultKind;
use super::handshake::{Handshake, Outcome};
use super::received::{Received, Verdict};
use super::rpc::{self, Caller};
use super::salts::now_millis;
use super::settings::Settings;
use super::transport::ServerTransport;
use super::world::{AuthKey, ConnId, Push, World, now_unix};
use super::{Shared, log};

/// What the driver must do after feeding bytes or a timeout.
#[derive(Debug, Default)]
pub struct Output {
    /// Frames to write, in order.
    pub frames: Vec<Vec<u8>>,
    /// Close once the frames are written.
    pub close: bool,
}

#[derive(Debug)]
struct Key {
    id: i64,
    bytes: Box<[u8; 256]>,
}

/// A pushed update the client has not acknowledged yet.
#[derive(Debug)]
struct Unacked {
    body: Vec<u8>,
    sent_at: Instant,
    sends: u32,
}

/// The client session on this connection, as the server keeps it.
#[derive(Debug)]
struct Session {
    id: i64,
    received: Received,
    /// Pushed updates by msg_id, until acknowledged.
    unacked: BTreeMap<i64, Unacked>,
    /// Too far behind: `updatesTooLong` went out, and no updates until the client calls
    /// `updates.getDifference`.
    behind: bool,
}

/// An answer held back by a `stall` fault: numbered and sealed when it is due, so that
/// what the connection sends meanwhile keeps its msg_ids in order.
#[derive(Debug)]
struct Delayed {
    at: Instant,
    body: Vec<u8>,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnId,
    pub dc: i32,
    transport: ServerTransport,
    handshake: Handshake,
    key: Option<Key>,
    session: Option<Session>,
    /// This connection has sent a message with its current key.
    used_key: bool,
    last_msg_id: i64,
    content_sent: i32,
    /// Close if no ping_delay_disconnect renews this.
    pub disconnect_at: Option<Instant>,
    /// When the client last sent anything (the idle timeout runs from here).
    last_received: Instant,
    delayed: Vec<Delayed>,
    settings: Settings,
}

/// A server msg_id for now: unix time in the high half, `parity` (1 for answers, 3 for
/// what the server starts) in the low bits.
fn server_msg_id(last: i64, parity: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut id =
        ((now.as_secs() as i64) << 32) | ((i64::from(now.subsec_nanos()) << 2) & !3) | parity;
    if id <= last {
        id = (last & !3) + 4 + parity;
    }
    id
}

/// Whether a client message must be content-related (`Some(true)`: API queries), must
/// not be (`Some(false)`: acks and containers), or may be either (other service
/// messages). A `gzip_packed` body is judged by what it packs.
fn must_be_content(body: &[u8]) -> Option<bool> {
    match constructor(body)? {
        MSG_CONTAINER | types::MsgsAck::CONSTRUCTOR_ID => Some(false),
        GZIP_PACKED => match gunzip(body).as_deref().and_then(constructor) {
            Some(GZIP_PACKED | MSG_CONTAINER) | None => None,
            Some(_) => gunzip(body).and_then(|b| must_be_content(&b)),
        },
        functions::Ping::CONSTRUCTOR_ID
        | functions::PingDelayDisconnect::CONSTRUCTOR_ID
        | functions::GetFutureSalts::CONSTRUCTOR_ID
        | functions::DestroySession::CONSTRUCTOR_ID
        | functions::DestroyAuthKey::CONSTRUCTOR_ID
        | functions::RpcDropAnswer::CONSTRUCTOR_ID
        | types::MsgsStateReq::CONSTRUCTOR_ID
        | types::MsgResendReq::CONSTRUCTOR_ID
        | types::HttpWait::CONSTRUCTOR_ID => None,
        _ => Some(true),
    }
}

fn bad_msg(msg_id: i64, seq_no: i32, code: i32) -> Vec<u8> {
    enums::BadMsgNotification::Notification(types::BadMsgNotification {
        bad_msg_id: msg_id,
        bad_msg_seqno: seq_no,
        error_code: code,
    })
    .to_bytes()
}

/// What a server message is, for its numbering and what happens after it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An answer to a request (content-related, msg_id 1 mod 4).
    Answer,
    /// A service message needing no acknowledgement (acks, pongs, notifications).
    Service,
    /// Something the server starts that the client must acknowledge (new_session_created,
    /// updatesTooLong; msg_id 3 mod 4).
    Notice,
    /// A pushed update: sent again until acknowledged. `sends` so far.
    Update { sends: u32 },
}

/// A message to send: its body and kind.
type Outbox = Vec<(Vec<u8>, Kind)>;

impl Connection {
    pub fn new(id: ConnId, dc: i32) -> Connection {
        Connection::with_settings(id, dc, Settings::default())
    }

    /// A connection under `settings` (they are refreshed from the world on every message).
    pub fn with_settings(id: ConnId, dc: i32, settings: Settings) -> Connection {
        Connection {
            id,
            dc,
            transport: ServerTransport::new(),
            handshake: Handshake::default(),
            key: None,
            session: None,
            used_key: false,
            last_msg_id: 0,
            content_sent: 0,
            disconnect_at: None,
            last_received: Instant::now(),
            delayed: Vec::new(),
            settings,
        }
    }

    /// Refuses the connection with a transport error (`-429`), framed for the client.
    pub fn refuse(&mut self, data: &[u8], code: i32) -> Vec<u8> {
        let _ = self.transport.feed(data);
        self.transport.pack_error(code)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resend = self.session.as_ref().and_then(|s| {
            s.unacked
                .values()
                .map(|u| u.sent_at + self.settings.resend_after)
                .min()
        });
        [
            self.disconnect_at,
            Some(self.last_received + self.settings.idle_timeout),
            self.delayed.iter().map(|d| d.at).min(),
            resend,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: the idle timeout and `ping_delay_disconnect` close the connection; held
    /// answers go out when due; unacknowledged updates are sent again.
    pub fn handle_timeout(&mut self, shared: &Shared) -> Output {
        let now = Instant::now();
        let mut out = Output::default();
        if self.disconnect_at.is_some_and(|at| at <= now)
            || self.last_received + self.settings.idle_timeout <= now
        {
            log(&format!("conn {}: idle, closed", self.id));
            out.close = true;
            return out;
        }
        let mut outbox = Outbox::new();
        let due: Vec<Delayed>;
        (due, self.delayed) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|d| d.at <= now);
        outbox.extend(due.into_iter().map(|d| (d.body, Kind::Answer)));
        if let Some(session) = &mut self.session {
            let stale: Vec<i64> = session
                .unacked
                .iter()
                .filter(|(_, u)| u.sent_at + self.settings.resend_after <= now)
                .map(|(id, _)| *id)
                .collect();
            for msg_id in stale {
                let update = session.unacked.remove(&msg_id).expect("listed");
                if update.sends <= self.settings.max_resends {
                    // A new message: the old msg_id may not be sent again on its own.
                    let kind = Kind::Update {
                        sends: update.sends,
                    };
                    outbox.push((update.body, kind));
                }
            }
        }
        if !outbox.is_empty() {
            let salt = self
                .key
                .as_ref()
                .and_then(|k| shared.world().current_salt(k.id));
            if let Some(salt) = salt {
                self.seal(salt, outbox, now, &mut out);
            }
        }
        out
    }

    /// Bytes read from the client.
    pub fn handle_read(&mut self, data: &[u8], shared: &Shared) -> Output {
        let mut out = Output::default();
        self.last_received = Instant::now();
        let payloads = match self.transport.feed(data) {
            Ok(p) => p,
            Err(e) => {
                log(&format!("conn {}: transport: {e:?}", self.id));
                out.close = true;
                return out;
            }
        };
        for payload in payloads {
            if payload.len() < 8 {
                log(&format!("conn {}: {}-byte payload", self.id, payload.len()));
                out.close = true;
                break;
            }
            let key_id = i64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
            let result = if key_id == 0 {
                self.plain(&payload, shared, &mut out)
            } else {
                self.encrypted(key_id, &payload, shared, &mut out)
            };
            if let Err(reason) = result {
                log(&format!("conn {} (dc {}): {reason}", self.id, self.dc));
                out.frames.push(self.transport.pack_error(404));
                out.close = true;
            }
            if out.close {
                break;
            }
        }
        out
    }

    /// Something the world asks of this connection.
    pub fn handle_push(&mut self, push: Push, shared: &Shared) -> Output {
        let mut out = Output::default();
        match push {
            Push::Close { .. } => out.close = true,
            Push::Updates(bytes) => {
                let (Some(key), Some(session)) = (&self.key, &mut self.session) else {
                    return out;
                };
                let Some(salt) = shared.world().current_salt(key.id) else {
                    return out;
                };
                if session.behind {
                    return out;
                }
                let message = if session.unacked.len() >= self.settings.max_unacked_updates {
                    // Fallen too far behind: the client must fetch the difference.
                    log(&format!("conn {}: too far behind: updatesTooLong", self.id));
                    session.unacked.clear();
                    session.behind = true;
                    (enums::Updates::TooLong.to_bytes(), Kind::Notice)
                } else {
                    (maybe_gzip(bytes), Kind::Update { sends: 0 })
                };
                self.seal(salt, vec![message], Instant::now(), &mut out);
            }
        }
        out
    }

    fn plain(&mut self, payload: &[u8], shared: &Shared, out: &mut Output) -> Result<(), String> {
        if payload.len() < 20 {
            return Err("short unencrypted message".into());
        }
        let len = i32::from_le_bytes(payload[16..20].try_into().expect("4 bytes"));
        let data = usize::try_from(len)
            .ok()
            .and_then(|len| payload.get(20..20 + len))
            .ok_or("unencrypted message length out of range")?;
        let reply = match self.handshake.handle(data, &shared.rsa, now_unix())? {
            Outcome::Reply(reply) => reply,
            Outcome::Done {
                reply,
                auth_key,
                salt,
            } => {
                let id = auth_key_id(&auth_key);
                let mut world = shared.world();
                world.stats.handshakes += 1;
                world
                    .keys
                    .insert(id, AuthKey::new(auth_key.clone(), self.dc, salt, true));
                self.key = Some(Key {
                    id,
                    bytes: auth_key,
                });
                reply
            }
        };
        self.last_msg_id = server_msg_id(self.last_msg_id, 1);
        let mut message = 0i64.to_le_bytes().to_vec();
        message.extend(self.last_msg_id.to_le_bytes());
        message.extend((reply.len() as i32).to_le_bytes());
        message.extend(reply);
        out.frames.push(self.transport.pack(&message));
        Ok(())
    }

    fn encrypted(
        &mut self,
        key_id: i64,
        payload: &[u8],
        shared: &Shared,
        out: &mut Output,
    ) -> Result<(), String> {
        let mut world = shared.world();
        self.settings = world.settings.clone();
        let Some(entry) = world.keys.get(&key_id) else {
            return Err(format!("unknown auth key {key_id:016x}"));
        };
        if entry.dc != self.dc {
            return Err(format!(
                "auth key of DC {} used on DC {}",
                entry.dc, self.dc
            ));
        }
        if self.key.as_ref().is_none_or(|k| k.id != key_id) {
            self.key = Some(Key {
                id: key_id,
                bytes: entry.key.clone(),
            });
            self.session = None;
            self.used_key = false;
        }
        let key = self.key.as_ref().expect("set above");
        let plain = decrypt_from_client(&key.bytes, payload)
            .ok_or("message does not decrypt (msg_key mismatch)")?;
        let field = |at: usize| i64::from_le_bytes(plain[at..at + 8].try_into().expect("8 bytes"));
        let (client_salt, session_id, msg_id) = (field(0), field(8), field(16));
        let seq_no = i32::from_le_bytes(plain[24..28].try_into().expect("4 bytes"));
        let len = i32::from_le_bytes(plain[28..32].try_into().expect("4 bytes"));
        let body = usize::try_from(len)
            .ok()
            .filter(|len| len % 4 == 0 && 32 + len <= plain.len())
            .map(|len| plain[32..32 + len].to_vec())
            .ok_or("encrypted message length out of range")?;
        let padding = plain.len() - 32 - body.len();
        if !(12..=1024).contains(&padding) {
            return Err(format!(
                "{padding} bytes of padding (MTProto 2.0: 12 to 1024)"
            ));
        }
        if let Some(conn) = world.conns.get_mut(&self.id) {
            conn.last_active = Instant::now();
        }

        let now = Instant::now();
        let salt = world.current_salt(key_id).expect("the key exists");
        let mut outbox = Outbox::new();
        if self.session.as_ref().map(|s| s.id) != Some(session_id) {
            self.session = Some(Session {
                id: session_id,
                received: Received::new(self.settings.remembered_msg_ids),
                unacked: BTreeMap::new(),
                behind: false,
            });
            self.content_sent = 0;
            if let Some(conn) = world.conns.get_mut(&self.id) {
                conn.key_id = Some(key_id);
                conn.session_id = Some(session_id);
            }
            if let Some(bot) = world.keys.get(&key_id).and_then(|k| k.bot) {
                world.note_sessions(bot);
            }
            let created = enums::NewSession::Created(types::NewSessionCreated {
                first_msg_id: msg_id,
                unique_id: i64::from_le_bytes(random::<8>()),
                server_salt: salt,
            });
            outbox.push((created.to_bytes(), Kind::Notice));
        }
        if let Some(other) = self.conflict(&mut world, key_id) {
            self.duplicated(&mut world, key_id, other, msg_id, &body, salt, out);
            return Ok(());
        }
        let mut acks = Vec::new();
        self.top_level(
            &mut world,
            (msg_id, seq_no, body),
            client_salt,
            &mut outbox,
            &mut acks,
        );
        if !acks.is_empty() {
            outbox.insert(0, (msgs_ack(acks), Kind::Service));
        }
        drop(world);
        self.seal(salt, outbox, now, out);
        Ok(())
    }

    /// Telegram's answer to one key used from two places at once: every request in the
    /// message gets `406 AUTH_KEY_DUPLICATED`, the key is revoked, both connections close.
    #[allow(clippy::too_many_arguments)]
    fn duplicated(
        &mut self,
        world: &mut World,
        key_id: i64,
        other: ConnId,
        msg_id: i64,
        body: &[u8],
        salt: i64,
        out: &mut Output,
    ) {
        world.stats.auth_key_conflicts += 1;
        world.keys.remove(&key_id);
        if let Some(conn) = world.conns.get(&other) {
            let _ = conn.push.try_send(Push::Close { reset: false });
        }
        log(&format!(
            "conn {}: AUTH_KEY_DUPLICATED for key {key_id:016x}",
            self.id
        ));
        let requests = if constructor(body) == Some(MSG_CONTAINER) {
            unpack_container(body).unwrap_or_default()
        } else {
            vec![Message {
                msg_id,
                seq_no: 1,
                body: body.to_vec(),
            }]
        };
        let error = rpc_error(406, "AUTH_KEY_DUPLICATED");
        let answers = requests
            .into_iter()
            .filter(|m| must_be_content(&m.body) != Some(false))
            .map(|m| (rpc_result(m.msg_id, &error), Kind::Answer))
            .collect();
        self.seal(salt, answers, Instant::now(), out);
        out.close = true;
    }

    /// One top-level client message: checked, and if accepted, its contents processed.
    fn top_level(
        &mut self,
        world: &mut World,
        (msg_id, seq_no, body): (i64, i32, Vec<u8>),
        client_salt: i64,
        outbox: &mut Outbox,
        acks: &mut Vec<i64>,
    ) {
        let now_unix = i64::from(now_unix());
        let is_container = constructor(&body) == Some(MSG_CONTAINER);
        let contents = if is_container {
            match unpack_container(&body) {
                Some(contents) => Some(contents),
                None => {
                    outbox.push((bad_msg(msg_id, seq_no, 64), Kind::Service));
                    return;
                }
            }
        } else {
            None
        };
        let content = must_be_content(&body);
        let session = self.session.as_mut().expect("a session is set up first");
        match session
            .received
            .check(msg_id, seq_no, content, is_container, now_unix)
        {
            Verdict::Accept => {}
            Verdict::Duplicate => return,
            Verdict::Refuse(code) => {
                outbox.push((bad_msg(msg_id, seq_no, code), Kind::Service));
                return;
            }
        }
        // A container comes after its contents: lower msg_ids, seqnos not above its own,
        // and no containers inside.
        if let Some(contents) = &contents
            && contents.iter().any(|m| {
                m.msg_id >= msg_id
                    || m.seq_no > seq_no
                    || constructor(&m.body) == Some(MSG_CONTAINER)
            })
        {
            outbox.push((bad_msg(msg_id, seq_no, 64), Kind::Service));
            return;
        }
        let key_id = self.key.as_ref().expect("encrypted").id;
        let salts = &world.keys[&key_id].salts;
        let (period, grace) = (self.settings.salt_period, self.settings.salt_grace);
        if !salts.accepts(client_salt, now_millis(), period, grace) {
            let bad_salt = enums::BadMsgNotification::BadServerSalt(types::BadServerSalt {
                bad_msg_id: msg_id,
                bad_msg_seqno: seq_no,
                error_code: 48,
                new_server_salt: salts.current(now_millis(), period),
            });
            outbox.push((bad_salt.to_bytes(), Kind::Service));
            return;
        }
        session.received.record(msg_id, seq_no);
        let Some(contents) = contents else {
            return self.process(world, msg_id, seq_no, body, outbox, acks);
        };
        for m in contents {
            let session = self.session.as_mut().expect("set up");
            let content = must_be_content(&m.body);
            match session
                .received
                .check(m.msg_id, m.seq_no, content, false, now_unix)
            {
                Verdict::Accept => session.received.record(m.msg_id, m.seq_no),
                Verdict::Duplicate => continue,
                Verdict::Refuse(code) => {
                    outbox.push((bad_msg(m.msg_id, m.seq_no, code), Kind::Service));
                    continue;
                }
            }
            self.process(world, m.msg_id, m.seq_no, m.body, outbox, acks);
        }
    }

    /// One accepted message. A content-related one that is not answered in this reply (a
    /// held answer, or nothing to answer) is acknowledged with `msgs_ack`.
    fn process(
        &mut self,
        world: &mut World,
        msg_id: i64,
        seq_no: i32,
        body: Vec<u8>,
        outbox: &mut Outbox,
        acks: &mut Vec<i64>,
    ) {
        let before = outbox.len();
        self.dispatch(world, msg_id, body, outbox);
        if seq_no & 1 == 1 && outbox.len() == before {
            acks.push(msg_id);
        }
    }

    fn dispatch(&mut self, world: &mut World, msg_id: i64, body: Vec<u8>, outbox: &mut Outbox) {
        let Some(id) = constructor(&body) else {
            return;
        };
        let pong = |ping_id| enums::Pong::Pong(types::Pong { msg_id, ping_id }).to_bytes();
        match id {
            GZIP_PACKED => match gunzip(&body) {
                Some(unpacked)
                    if !matches!(constructor(&unpacked), Some(GZIP_PACKED | MSG_CONTAINER)) =>
                {
                    world.stats.gzipped_requests += 1;
                    self.dispatch(world, msg_id, unpacked, outbox);
                }
                _ => outbox.push((bad_msg(msg_id, 0, 64), Kind::Service)),
            },
            types::MsgsAck::CONSTRUCTOR_ID => {
                if let (Ok(ack), Some(session)) =
                    (types::MsgsAck::from_bytes(&body[4..]), &mut self.session)
                {
                    for id in ack.msg_ids {
                        session.unacked.remove(&id);
                    }
                }
            }
            functions::Ping::CONSTRUCTOR_ID => {
                if let Ok(ping) = functions::Ping::from_bytes(&body[4..]) {
                    outbox.push((pong(ping.ping_id), Kind::Service));
                }
            }
            functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
                if let Ok(ping) = functions::PingDelayDisconnect::from_bytes(&body[4..]) {
                    let delay = Duration::from_secs(ping.disconnect_delay.max(0) as u64);
                    self.disconnect_at = Some(Instant::now() + delay);
                    outbox.push((pong(ping.ping_id), Kind::Service));
                }
            }
            functions::GetFutureSalts::CONSTRUCTOR_ID => {
                let num = functions::GetFutureSalts::from_bytes(&body[4..]).map_or(1, |r| r.num);
                let key_id = self.key.as_ref().expect("encrypted").id;
                let salts = world.keys[&key_id].salts.future(
                    now_millis(),
                    num,
                    self.settings.salt_period,
                    self.settings.salt_grace,
                );
                // Bare, not in an rpc_result: grammers waits for exactly this.
                let salts = enums::FutureSalts::Salts(types::FutureSalts {
                    req_msg_id: msg_id,
                    now: now_unix(),
                    salts: grammers_tl_types::RawVec(salts),
                });
                outbox.push((salts.to_bytes(), Kind::Service));
            }
            functions::DestroySession::CONSTRUCTOR_ID => {
                if let Ok(req) = functions::DestroySession::from_bytes(&body[4..]) {
                    let ok = enums::DestroySessionRes::DestroySessionOk(types::DestroySessionOk {
                        session_id: req.session_id,
                    });
                    outbox.push((rpc_result(msg_id, &ok.to_bytes()), Kind::Answer));
                }
            }
            types::MsgsStateReq::CONSTRUCTOR_ID => {
                if let (Ok(req), Some(session)) =
                    (types::MsgsStateReq::from_bytes(&body[4..]), &self.session)
                {
                    let info = req
                        .msg_ids
                        .iter()
                        .map(|id| session.received.state(*id))
                        .collect();
                    let info = enums::MsgsStateInfo::Info(types::MsgsStateInfo {
                        req_msg_id: msg_id,
                        info,
                    });
                    outbox.push((info.to_bytes(), Kind::Service));
                }
            }
            _ => self.api_call(world, msg_id, body, outbox),
        }
    }

    fn api_call(&mut self, world: &mut World, msg_id: i64, body: Vec<u8>, outbox: &mut Outbox) {
        let caller = Caller {
            dc: self.dc,
            key_id: self.key.as_ref().map_or(0, |k| k.id),
            conn: self.id,
        };
        let reply = rpc::call(world, caller, body);
        if reply.method == "updates.getDifference"
            && let Some(session) = &mut self.session
        {
            session.behind = false;
        }
        let result = match reply.result {
            Ok(bytes) => bytes,
            Err((code, message)) => {
                log(&format!(
                    "conn {}: {} -> {code} {message}",
                    self.id, reply.method
                ));
                rpc_error(code, &message)
            }
        };
        let result = if reply.method == "upload.getFile" {
            result
        } else {
            maybe_gzip(result)
        };
        let bot = world.keys.get(&caller.key_id).and_then(|k| k.bot);
        if world
            .take_fault(FaultKind::BareFutureSalt, bot, Some(reply.method))
            .is_some()
        {
            // A message no well-behaved server sends (grammers panics on it).
            let salt = types::FutureSalt {
                valid_since: 0,
                valid_until: i32::MAX,
                salt: 1,
            };
            let mut body = types::FutureSalt::CONSTRUCTOR_ID.to_le_bytes().to_vec();
            body.extend(salt.to_bytes());
            outbox.push((body, Kind::Service));
            return;
        }
        let answer = rpc_result(msg_id, &result);
        match reply.delay {
            // Only this answer waits; the connection goes on meanwhile.
            Some(delay) => self.delayed.push(Delayed {
                at: Instant::now() + delay,
                body: answer,
            }),
            None => outbox.push((answer, Kind::Answer)),
        }
    }

    /// The auth-key conflict detector, by Telegram's rule: one key in use from two peer
    /// addresses at once ("used under two different IP addresses simultaneously"). Several
    /// sessions and connections from one address are fine. In use means alternating
    /// traffic: the other connection sent the key's previous message, is still open, and
    /// this one had used the key before that. A connection that went quiet (a dead peer
    /// the server has not noticed yet, or one closing while its successor starts) is no
    /// conflict.
    fn conflict(&mut self, world: &mut World, key_id: i64) -> Option<ConnId> {
        let peer = world.conns.get(&self.id)?.peer;
        let key = world.keys.get_mut(&key_id)?;
        let previous = key.last_sender.replace((self.id, peer));
        let used_before = std::mem::replace(&mut self.used_key, true);
        let (other, other_peer) = previous?;
        let live = world.conns.contains_key(&other);
        (other != self.id && other_peer != peer && live && used_before).then_some(other)
    }

    /// Numbers a message of this session: a fresh msg_id (1 mod 4 for answers, 3 mod 4 for
    /// what the server starts) and the seq_no its kind calls for.
    fn number(&mut self, body: Vec<u8>, kind: Kind) -> Message {
        let (content, parity) = match kind {
            Kind::Answer => (true, 1),
            Kind::Service => (false, 1),
            Kind::Notice | Kind::Update { .. } => (true, 3),
        };
        self.last_msg_id = server_msg_id(self.last_msg_id, parity);
        let seq_no = if content {
            self.content_sent += 1;
            self.content_sent * 2 - 1
        } else {
            self.content_sent * 2
        };
        Message {
            msg_id: self.last_msg_id,
            seq_no,
            body,
        }
    }

    /// Numbers, encrypts and frames `outbox` (several share a `msg_container`, as Telegram
    /// bundles its answers); pushed updates wait for their acknowledgement.
    fn seal(&mut self, salt: i64, outbox: Outbox, now: Instant, out: &mut Output) {
        let mut messages = Vec::with_capacity(outbox.len());
        for (body, kind) in outbox {
            let m = self.number(body, kind);
            if let (Kind::Update { sends }, Some(session)) = (kind, &mut self.session) {
                let update = Unacked {
                    body: m.body.clone(),
                    sent_at: now,
                    sends: sends + 1,
                };
                session.unacked.insert(m.msg_id, update);
            }
            messages.push(m);
        }
        let message = match messages.len() {
            0 => return,
            1 => messages.pop().expect("one"),
            _ => self.number(container(&messages), Kind::Service),
        };
        if let Some(frame) = self.encrypt(salt, &message) {
            out.frames.push(frame);
        }
    }

    /// Wraps one message in this session's encryption and framing.
    fn encrypt(&mut self, salt: i64, message: &Message) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let session_id = self.session.as_ref()?.id;
        let mut plain = Vec::with_capacity(32 + message.body.len());
        plain.extend(salt.to_le_bytes());
        plain.extend(session_id.to_le_bytes());
        plain.extend(message.msg_id.to_le_bytes());
        plain.extend(message.seq_no.to_le_bytes());
        plain.extend((message.body.len() as i32).to_le_bytes());
        plain.extend_from_slice(&message.body);
        let packet = encrypt_to_client(&key.bytes, &plain);
        Some(self.transport.pack(&packet))
    }
}
