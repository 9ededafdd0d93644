//! One client connection to a fake DC, without IO: framed bytes in, framed bytes out.
//! Handles the handshake, MTProto 2.0 sessions (salts, new sessions, containers, gzip,
//! acks, pings, bad_msg notifications), the auth-key conflict detector, and hands API
//! requests to [`rpc`](super::rpc).

use std::io::Read as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grammers_tl_types::{
    Deserializable as _, Identifiable as _, Serializable as _, enums, functions, types,
};

use super::crypto::{auth_key_id, decrypt_from_client, encrypt_to_client, random};
use super::fault::FaultKind;
use super::handshake::{Handshake, Outcome};
use super::rpc::{self, Caller};
use super::transport::ServerTransport;
use super::world::{AuthKey, ConnId, Push, World, now_unix};
use super::{Shared, log};

const MSG_CONTAINER: u32 = 0x73f1_f8dc;
const GZIP_PACKED: u32 = 0x3072_cfa1;
const RPC_RESULT: u32 = 0xf35c_6d01;
const MAX_UNZIPPED: u64 = 16 * 1024 * 1024;

/// What the driver must do after feeding bytes.
#[derive(Debug, Default)]
pub struct Output {
    /// Frames to write, in order; each after its delay (a `stall` fault).
    pub frames: Vec<(Option<Duration>, Vec<u8>)>,
    /// Close once the frames are written.
    pub close: bool,
}

impl Output {
    fn send(&mut self, frame: Vec<u8>) {
        self.frames.push((None, frame));
    }
}

/// An encrypted message waiting to be sealed: alone, or with its neighbours in a
/// `msg_container` (as Telegram bundles its answers).
#[derive(Debug)]
struct Inner {
    delay: Option<Duration>,
    msg_id: i64,
    seq_no: i32,
    body: Vec<u8>,
}

/// Where a message sits: the nesting rules allow `gzip_packed` in a container, nothing
/// deeper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Depth {
    Top,
    InContainer,
    InGzip,
}

/// Results larger than this go out as `gzip_packed` when that makes them smaller.
const GZIP_THRESHOLD: usize = 512;

#[derive(Debug)]
struct Key {
    id: i64,
    bytes: Box<[u8; 256]>,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnId,
    pub dc: i32,
    transport: ServerTransport,
    handshake: Handshake,
    key: Option<Key>,
    session_id: Option<i64>,
    /// This connection has sent a message with its current key.
    used_key: bool,
    last_msg_id: i64,
    content_sent: i32,
    /// Close if no ping_delay_disconnect renews this.
    pub disconnect_at: Option<Instant>,
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

impl Connection {
    pub fn new(id: ConnId, dc: i32) -> Connection {
        Connection {
            id,
            dc,
            transport: ServerTransport::new(),
            handshake: Handshake::default(),
            key: None,
            session_id: None,
            used_key: false,
            last_msg_id: 0,
            content_sent: 0,
            disconnect_at: None,
        }
    }

    /// Refuses the connection with a transport error (`-429`), framed for the client.
    pub fn refuse(&mut self, data: &[u8], code: i32) -> Vec<u8> {
        let _ = self.transport.feed(data);
        self.transport.pack_error(code)
    }

    /// Bytes read from the client.
    pub fn handle_read(&mut self, data: &[u8], shared: &Shared) -> Output {
        let mut out = Output::default();
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
                out.send(self.transport.pack_error(404));
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
                let salt = self
                    .key
                    .as_ref()
                    .and_then(|k| shared.world().keys.get(&k.id).map(|e| e.salt));
                if let Some(salt) = salt {
                    let message = self.inner(maybe_gzip(bytes), true, 3, None);
                    self.seal(salt, vec![message], &mut out);
                }
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
                world.keys.insert(
                    id,
                    AuthKey {
                        key: auth_key.clone(),
                        dc: self.dc,
                        salt,
                        bot: None,
                        from_handshake: true,
                        counted_for: None,
                        last_sender: None,
                    },
                );
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
        out.send(self.transport.pack(&message));
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
            self.session_id = None;
            self.used_key = false;
        }
        let salt = entry.salt;
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

        let mut outbox = Vec::new();
        if let Some(other) = self.conflict(&mut world, key_id) {
            {
                // Telegram's answer to one key used from two places at once.
                world.stats.auth_key_conflicts += 1;
                world.keys.remove(&key_id);
                if let Some(conn) = world.conns.get(&other) {
                    let _ = conn.push.try_send(Push::Close { reset: false });
                }
                log(&format!(
                    "conn {}: AUTH_KEY_DUPLICATED for key {key_id:016x}",
                    self.id
                ));
                // Every request in the message gets the error (a container holds acks too).
                let error = rpc_error(406, "AUTH_KEY_DUPLICATED");
                let requests = if u32::from_bytes(&body).ok() == Some(MSG_CONTAINER) {
                    unpack_container(&body[4..])
                } else {
                    vec![(msg_id, body)]
                };
                let answers = requests
                    .into_iter()
                    .filter(|(_, b)| {
                        u32::from_bytes(b).ok() != Some(types::MsgsAck::CONSTRUCTOR_ID)
                    })
                    .map(|(id, _)| self.inner(rpc_result(id, &error), true, 1, None))
                    .collect();
                self.seal(salt, answers, out);
                out.close = true;
                return Ok(());
            }
        }
        if self.session_id != Some(session_id) {
            self.session_id = Some(session_id);
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
            outbox.push(self.inner(created.to_bytes(), true, 3, None));
        }

        // msg_id: divisible by 4, within 300 s in the past and 30 s in the future.
        let msg_time = msg_id >> 32;
        let now = i64::from(now_unix());
        let bad_msg = if msg_id % 4 != 0 {
            Some(18)
        } else if now - msg_time > 300 {
            Some(16)
        } else if msg_time - now > 30 {
            Some(17)
        } else {
            None
        };
        if let Some(code) = bad_msg {
            let notification = enums::BadMsgNotification::Notification(types::BadMsgNotification {
                bad_msg_id: msg_id,
                bad_msg_seqno: seq_no,
                error_code: code,
            });
            outbox.push(self.inner(notification.to_bytes(), false, 1, None));
            self.seal(salt, outbox, out);
            return Ok(());
        }
        if client_salt != salt {
            let bad_salt = enums::BadMsgNotification::BadServerSalt(types::BadServerSalt {
                bad_msg_id: msg_id,
                bad_msg_seqno: seq_no,
                error_code: 48,
                new_server_salt: salt,
            });
            outbox.push(self.inner(bad_salt.to_bytes(), false, 1, None));
            self.seal(salt, outbox, out);
            return Ok(());
        }
        self.message(&mut world, msg_id, body, salt, &mut outbox, Depth::Top);
        self.seal(salt, outbox, out);
        Ok(())
    }

    /// One (possibly contained or gzipped) message from the client.
    fn message(
        &mut self,
        world: &mut World,
        msg_id: i64,
        body: Vec<u8>,
        salt: i64,
        out: &mut Vec<Inner>,
        depth: Depth,
    ) {
        let Ok(id) = u32::from_bytes(&body) else {
            return;
        };
        // Telegram allows a container at the top only, and gzip inside nothing but a
        // container; deeper nesting is an attack on the recursion below.
        let nested_too_deep = match id {
            MSG_CONTAINER => depth != Depth::Top,
            GZIP_PACKED => depth == Depth::InGzip,
            _ => false,
        };
        if nested_too_deep {
            let notification = enums::BadMsgNotification::Notification(types::BadMsgNotification {
                bad_msg_id: msg_id,
                bad_msg_seqno: 0,
                error_code: 64,
            });
            out.push(self.inner(notification.to_bytes(), false, 1, None));
            return;
        }
        let answer = |s: &mut Self, bytes: Vec<u8>, content: bool, out: &mut Vec<Inner>| {
            out.push(s.inner(bytes, content, 1, None));
        };
        match id {
            MSG_CONTAINER => {
                for (inner_id, inner) in unpack_container(&body[4..]) {
                    self.message(world, inner_id, inner, salt, out, Depth::InContainer);
                }
            }
            GZIP_PACKED => {
                if let Some(unpacked) = gunzip(&body[4..]) {
                    world.stats.gzipped_requests += 1;
                    self.message(world, msg_id, unpacked, salt, out, Depth::InGzip);
                }
            }
            types::MsgsAck::CONSTRUCTOR_ID => {}
            functions::Ping::CONSTRUCTOR_ID => {
                if let Ok(ping) = functions::Ping::from_bytes(&body[4..]) {
                    let pong = enums::Pong::Pong(types::Pong {
                        msg_id,
                        ping_id: ping.ping_id,
                    });
                    answer(self, pong.to_bytes(), false, out);
                }
            }
            functions::PingDelayDisconnect::CONSTRUCTOR_ID => {
                if let Ok(ping) = functions::PingDelayDisconnect::from_bytes(&body[4..]) {
                    self.disconnect_at = Some(
                        Instant::now() + Duration::from_secs(ping.disconnect_delay.max(0) as u64),
                    );
                    let pong = enums::Pong::Pong(types::Pong {
                        msg_id,
                        ping_id: ping.ping_id,
                    });
                    answer(self, pong.to_bytes(), false, out);
                }
            }
            functions::GetFutureSalts::CONSTRUCTOR_ID => {
                let num = functions::GetFutureSalts::from_bytes(&body[4..])
                    .map_or(1, |r| r.num.clamp(1, 64));
                let now = now_unix();
                let salts = (0..num)
                    .map(|i| {
                        let since = now - 60 + i * 3600;
                        types::FutureSalt {
                            valid_since: since,
                            valid_until: since + 5400,
                            salt,
                        }
                    })
                    .collect();
                // Bare, not in an rpc_result: grammers waits for exactly this.
                let salts = enums::FutureSalts::Salts(types::FutureSalts {
                    req_msg_id: msg_id,
                    now,
                    salts: grammers_tl_types::RawVec(salts),
                });
                answer(self, salts.to_bytes(), false, out);
            }
            functions::DestroySession::CONSTRUCTOR_ID => {
                if let Ok(req) = functions::DestroySession::from_bytes(&body[4..]) {
                    let ok = enums::DestroySessionRes::DestroySessionOk(types::DestroySessionOk {
                        session_id: req.session_id,
                    });
                    answer(self, rpc_result(msg_id, &ok.to_bytes()), true, out);
                }
            }
            _ => {
                let caller = Caller {
                    dc: self.dc,
                    key_id: self.key.as_ref().map_or(0, |k| k.id),
                };
                let reply = rpc::call(world, caller, body);
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
                    out.push(self.inner(body, false, 1, None));
                    return;
                }
                out.push(self.inner(rpc_result(msg_id, &result), true, 1, reply.delay));
            }
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

    /// Numbers a message of this session: a fresh msg_id of the given parity, and the
    /// seq_no its kind calls for.
    fn inner(
        &mut self,
        body: Vec<u8>,
        content: bool,
        parity: i64,
        delay: Option<Duration>,
    ) -> Inner {
        self.last_msg_id = server_msg_id(self.last_msg_id, parity);
        let seq_no = if content {
            self.content_sent += 1;
            self.content_sent * 2 - 1
        } else {
            self.content_sent * 2
        };
        Inner {
            delay,
            msg_id: self.last_msg_id,
            seq_no,
            body,
        }
    }

    /// Encrypts and frames `messages`: runs of undelayed ones share a `msg_container`.
    fn seal(&mut self, salt: i64, messages: Vec<Inner>, out: &mut Output) {
        let mut run: Vec<Inner> = Vec::new();
        for message in messages {
            if message.delay.is_some() {
                self.seal_run(salt, std::mem::take(&mut run), out);
                let delay = message.delay;
                if let Some(frame) = self.encrypt(salt, &message) {
                    out.frames.push((delay, frame));
                }
            } else {
                run.push(message);
            }
        }
        self.seal_run(salt, run, out);
    }

    fn seal_run(&mut self, salt: i64, run: Vec<Inner>, out: &mut Output) {
        let message = match run.len() {
            0 => return,
            1 => run.into_iter().next().expect("one"),
            n => {
                let mut body = MSG_CONTAINER.to_le_bytes().to_vec();
                body.extend((n as i32).to_le_bytes());
                for m in &run {
                    body.extend(m.msg_id.to_le_bytes());
                    body.extend(m.seq_no.to_le_bytes());
                    body.extend((m.body.len() as i32).to_le_bytes());
                    body.extend_from_slice(&m.body);
                }
                self.inner(body, false, 1, None)
            }
        };
        if let Some(frame) = self.encrypt(salt, &message) {
            out.send(frame);
        }
    }

    /// Wraps one message in this session's encryption and framing.
    fn encrypt(&mut self, salt: i64, message: &Inner) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let session_id = self.session_id?;
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

fn rpc_result(req_msg_id: i64, result: &[u8]) -> Vec<u8> {
    let mut v = RPC_RESULT.to_le_bytes().to_vec();
    v.extend(req_msg_id.to_le_bytes());
    v.extend_from_slice(result);
    v
}

fn rpc_error(code: i32, message: &str) -> Vec<u8> {
    enums::RpcError::Error(types::RpcError {
        error_code: code,
        error_message: message.to_owned(),
    })
    .to_bytes()
}

/// `count` × (msg_id, seqno, bytes, body); malformed tails are dropped.
fn unpack_container(data: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(count) = data
        .get(..4)
        .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
    else {
        return out;
    };
    let mut at = 4;
    for _ in 0..count.clamp(0, 1024) {
        let Some(head) = data.get(at..at + 16) else {
            break;
        };
        let msg_id = i64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = i32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        let Some(body) = usize::try_from(len)
            .ok()
            .and_then(|len| data.get(at + 16..at + 16 + len))
        else {
            break;
        };
        at += 16 + body.len();
        out.push((msg_id, body.to_vec()));
    }
    out
}

/// `data` as `gzip_packed` when it is large and that makes it smaller.
fn maybe_gzip(data: Vec<u8>) -> Vec<u8> {
    use std::io::Write as _;
    if data.len() < GZIP_THRESHOLD {
        return data;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let packed = encoder.write_all(&data).and_then(|()| encoder.finish());
    match packed {
        Ok(packed) if packed.len() + 8 < data.len() => {
            let mut out = GZIP_PACKED.to_le_bytes().to_vec();
            packed.serialize(&mut out);
            out
        }
        _ => data,
    }
}

/// `gzip_packed`'s TL bytes, inflated (at most 16 MiB).
fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let packed = Vec::<u8>::from_bytes(data).ok()?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .take(MAX_UNZIPPED)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}
