//! A small blocking MTProto client for testing the fake DC from Rust: grammers' framing
//! and `Encrypted` session, and the core's client handshake (which takes the server's RSA
//! key as a parameter; grammers' own only trusts Telegram's keys).

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use grammers_crypto::DequeBuffer;
use grammers_mtproto::mtp::{Deserialization, Encrypted, Mtp as _, Plain};
use grammers_mtproto::transport::{self, Abridged, Full, Intermediate, Transport};
use grammers_tl_types::{
    self as tl, Deserializable as _, RemoteCall, Serializable as _, enums, functions, types,
};
use telegram_bots_core::handshake::{Handshake, HandshakeError, Progress};
use telegram_bots_core::random::Random;

use super::crypto::RsaKey;

/// The framing a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Full,
    Intermediate,
    Abridged,
}

/// An RPC error from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
}

/// What went wrong in a call.
#[derive(Debug)]
pub enum CallError {
    Rpc(RpcError),
    Io(io::Error),
    /// A transport-level error code from the server (404: unknown auth key; 429).
    Transport(u32),
    Protocol(String),
}

impl From<io::Error> for CallError {
    fn from(e: io::Error) -> Self {
        CallError::Io(e)
    }
}

pub struct TestClient {
    stream: TcpStream,
    transport: Box<dyn Transport + Send>,
    framing: Framing,
    mtp: Encrypted,
    buf: Vec<u8>,
    updates: VecDeque<Vec<u8>>,
    wrapped: bool,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestClient")
    }
}

fn framing(framing: Framing) -> Box<dyn Transport + Send> {
    match framing {
        Framing::Full => Box::new(Full::new()),
        Framing::Intermediate => Box::new(Intermediate::new()),
        Framing::Abridged => Box::new(Abridged::new()),
    }
}

/// A deterministic auth key for tests, one per `seed`.
pub fn test_key(seed: u8) -> [u8; 256] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
}

/// A TCP connection to `addr`, from the local address `from` when given (any address
/// of 127.0.0.0/8 works on Linux: tests play several hosts that way).
pub fn connect(addr: SocketAddr, from: Option<IpAddr>) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(ip) = from {
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| io::Error::new(e.kind(), format!("bind to {ip}: {e}")))?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

impl TestClient {
    /// Connects with an auth key the fake DC already knows (a stored session).
    pub fn with_key(addr: SocketAddr, key: [u8; 256], how: Framing) -> io::Result<TestClient> {
        Self::with_key_from(None, addr, key, how)
    }

    /// [`with_key`](Self::with_key) from the local address `from`.
    pub fn with_key_from(
        from: Option<IpAddr>,
        addr: SocketAddr,
        key: [u8; 256],
        how: Framing,
    ) -> io::Result<TestClient> {
        let stream = connect(addr, from)?;
        Ok(TestClient {
            stream,
            transport: framing(how),
            framing: how,
            mtp: Encrypted::build().finish(key),
            buf: Vec::new(),
            updates: VecDeque::new(),
            wrapped: false,
        })
    }

    /// Connects and creates a new auth key with the DC's RSA key (RSA_PAD padding).
    pub fn with_handshake(
        addr: SocketAddr,
        rsa: &RsaKey,
        how: Framing,
    ) -> Result<(TestClient, [u8; 256]), CallError> {
        let stream = connect(addr, None)?;
        let mut raw = RawConn {
            stream,
            transport: framing(how),
            framing: how,
            buf: Vec::new(),
            plain: Plain::new(),
        };
        let (key, salt) = handshake(&mut raw, rsa)?;
        Ok((
            TestClient {
                stream: raw.stream,
                transport: raw.transport,
                framing: how,
                mtp: Encrypted::build().first_salt(salt).finish(key),
                buf: raw.buf,
                updates: VecDeque::new(),
                wrapped: false,
            },
            key,
        ))
    }

    /// Calls `request` (the first call goes in invokeWithLayer(initConnection(...)), as
    /// every client does) and parses the answer.
    pub fn call<R: RemoteCall>(&mut self, request: &R) -> Result<R::Return, CallError> {
        let body = if self.wrapped {
            request.to_bytes()
        } else {
            self.wrapped = true;
            init_connection(super::TEST_API_ID, request.to_bytes())
        };
        let answer = self.call_raw(&body)?;
        R::Return::from_bytes(&answer).map_err(|e| CallError::Protocol(format!("bad answer: {e}")))
    }

    /// `auth.importBotAuthorization` with the test application.
    pub fn login(&mut self, token: &str) -> Result<enums::auth::Authorization, CallError> {
        self.call(&functions::auth::ImportBotAuthorization {
            flags: 0,
            api_id: super::TEST_API_ID,
            api_hash: super::TEST_API_HASH.into(),
            bot_auth_token: token.into(),
        })
    }

    pub fn get_state(&mut self) -> Result<types::updates::State, CallError> {
        let enums::updates::State::State(state) = self.call(&functions::updates::GetState {})?;
        Ok(state)
    }

    /// `updates.getDifference` from `pts` and `date`.
    pub fn get_difference(
        &mut self,
        pts: i32,
        date: i32,
        pts_total_limit: Option<i32>,
    ) -> Result<enums::updates::Difference, CallError> {
        self.call(&functions::updates::GetDifference {
            pts,
            pts_limit: None,
            pts_total_limit,
            date,
            qts: 0,
            qts_limit: None,
        })
    }

    /// Sends one request body and waits for its result (resending after bad_server_salt
    /// and the other retryable notifications).
    pub fn call_raw(&mut self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        'send: for _ in 0..5 {
            let mut buffer = DequeBuffer::with_capacity(body.len() + 64, 64);
            let mut ids = Vec::new();
            let salts_deadline = Instant::now() + Duration::from_secs(15);
            let msg_id = loop {
                if let Some(id) = self.mtp.push(&mut buffer, body) {
                    break id;
                }
                if Instant::now() > salts_deadline {
                    return Err(CallError::Protocol("future_salts never answered".into()));
                }
                // A get_future_salts went first (or is still unanswered): send what is
                // queued and process what arrives until the session takes requests again.
                ids.extend(self.mtp.finalize(&mut buffer));
                if !buffer.is_empty() {
                    self.send(&mut buffer)?;
                }
                self.receive_until(Instant::now() + Duration::from_secs(10), |_| true)?;
                buffer = DequeBuffer::with_capacity(body.len() + 64, 64);
            };
            ids.push(msg_id);
            ids.extend(self.mtp.finalize(&mut buffer));
            self.send(&mut buffer)?;
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut outcome = None;
            self.receive_until(deadline, |d| {
                let Some(d) = d else { return false };
                match d {
                    Deserialization::RpcResult(r) if r.msg_id == msg_id => {
                        outcome = Some(Ok(r.body.clone()))
                    }
                    Deserialization::RpcError(e) if e.msg_id == msg_id => {
                        outcome = Some(Err(RpcError {
                            code: e.error.error_code,
                            message: e.error.error_message.clone(),
                        }))
                    }
                    Deserialization::BadMessage(b) if ids.contains(&b.msg_id) => {
                        outcome = Some(Err(RpcError {
                            code: -b.code,
                            message: "bad_msg".into(),
                        }))
                    }
                    _ => return false,
                }
                true
            })?;
            match outcome {
                Some(Ok(body)) => return Ok(body),
                Some(Err(e)) if e.code == -48 || e.code == -16 || e.code == -17 => continue 'send,
                Some(Err(e)) if e.message == "bad_msg" => {
                    return Err(CallError::Protocol(format!(
                        "bad_msg_notification {}",
                        -e.code
                    )));
                }
                Some(Err(e)) => return Err(CallError::Rpc(e)),
                None => return Err(CallError::Protocol("no answer".into())),
            }
        }
        Err(CallError::Protocol("still refused after 5 sends".into()))
    }

    /// The next pushed `Updates`, waiting up to `timeout`.
    pub fn next_update(&mut self, timeout: Duration) -> Result<Option<enums::Updates>, CallError> {
        if self.updates.is_empty() {
            let _ = self.receive_until(Instant::now() + timeout, |d| {
                matches!(d, Some(Deserialization::Update(_)))
            });
        }
        self.updates
            .pop_front()
            .map(|u| enums::Updates::from_bytes(&u))
            .transpose()
            .map_err(|e| CallError::Protocol(e.to_string()))
    }

    /// Sends raw bytes on the socket (for malformed-input tests).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn send(&mut self, buffer: &mut DequeBuffer<u8>) -> io::Result<()> {
        self.transport.pack(buffer);
        self.stream.write_all(buffer.as_ref())
    }

    /// Reads and processes messages until `done` says so for one of them (or for `None`,
    /// which it is asked after each payload), or until `deadline`.
    fn receive_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(Option<&Deserialization>) -> bool,
    ) -> Result<(), CallError> {
        loop {
            while let Some(mut payload) =
                next_payload(self.framing, &mut *self.transport, &mut self.buf)?
            {
                let results = self
                    .mtp
                    .deserialize(&mut payload)
                    .map_err(|e| CallError::Protocol(format!("{e:?}")))?;
                let mut finished = done(None);
                for d in results {
                    if let Deserialization::Update(u) = &d {
                        self.updates.push_back(u.clone());
                    }
                    finished |= done(Some(&d));
                }
                if finished {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            read_more(&mut self.stream, &mut self.buf, deadline - now)?;
        }
    }
}

/// `invokeWithLayer(initConnection(query))` as clients send their first request, for the
/// application `api_id`.
pub fn init_connection(api_id: i32, query: Vec<u8>) -> Vec<u8> {
    functions::InvokeWithLayer {
        layer: tl::LAYER,
        query: functions::InitConnection {
            api_id,
            device_model: "test".into(),
            system_version: "test".into(),
            app_version: "0".into(),
            system_lang_code: "en".into(),
            lang_pack: String::new(),
            lang_code: "en".into(),
            proxy: None,
            params: None,
            query: Serialized(query),
        },
    }
    .to_bytes()
}

/// Bytes that serialize as themselves (an already serialized request).
struct Serialized(Vec<u8>);

impl tl::Serializable for Serialized {
    fn serialize(&self, buf: &mut impl Extend<u8>) {
        buf.extend(self.0.iter().copied());
    }
}

struct RawConn {
    stream: TcpStream,
    transport: Box<dyn Transport + Send>,
    framing: Framing,
    buf: Vec<u8>,
    plain: Plain,
}

impl RawConn {
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, CallError> {
        let mut buffer = DequeBuffer::with_capacity(request.len() + 32, 32);
        self.plain.push(&mut buffer, request);
        self.plain.finalize(&mut buffer);
        self.transport.pack(&mut buffer);
        self.stream.write_all(buffer.as_ref())?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(mut payload) =
                next_payload(self.framing, &mut *self.transport, &mut self.buf)?
            {
                let mut out = self
                    .plain
                    .deserialize(&mut payload)
                    .map_err(|e| CallError::Protocol(format!("{e:?}")))?;
                return match out.pop() {
                    Some(Deserialization::RpcResult(r)) => Ok(r.body),
                    _ => Err(CallError::Protocol("unexpected plain answer".into())),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Protocol("handshake timed out".into()));
            }
            read_more(&mut self.stream, &mut self.buf, left)?;
        }
    }
}

/// The next whole payload in `buf`. Intermediate and Abridged frames are read with the
/// fake DC's own readers (see `fake_dc::transport` for grammers' bugs there).
fn next_payload(
    how: Framing,
    transport: &mut dyn Transport,
    buf: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, CallError> {
    let unpacked = match how {
        Framing::Full => transport.unpack(buf),
        Framing::Intermediate => super::transport::unpack_intermediate(buf),
        Framing::Abridged => super::transport::unpack_abridged(buf),
    };
    match unpacked {
        Ok(offset) => {
            let payload = buf[offset.data_range].to_vec();
            buf.drain(..offset.next_offset);
            if payload.len() == 4 {
                let code = i32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
                return Err(CallError::Transport(code.unsigned_abs()));
            }
            Ok(Some(payload))
        }
        Err(transport::Error::MissingBytes) => Ok(None),
        Err(transport::Error::BadStatus { status }) => Err(CallError::Transport(status)),
        Err(e) => Err(CallError::Protocol(e.to_string())),
    }
}

fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Result<(), CallError> {
    stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => Err(CallError::Io(io::ErrorKind::UnexpectedEof.into())),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The operating system's randomness, for the core's handshake.
struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the OS has randomness");
    }
}

/// The core's client handshake (RSA_PAD) over a plain connection; returns the key and
/// first salt.
fn handshake(conn: &mut RawConn, rsa: &RsaKey) -> Result<([u8; 256], i64), CallError> {
    let failed = |e: HandshakeError| CallError::Protocol(format!("handshake: {e}"));
    let (mut handshake, mut request) = Handshake::start(vec![rsa.public()], &mut OsRandom);
    loop {
        let answer = conn.exchange(&request)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match handshake
            .handle(&answer, now, &mut OsRandom)
            .map_err(failed)?
        {
            Progress::Send(next) => request = next,
            Progress::Done(finished) => return Ok((finished.auth_key, finished.first_salt)),
        }
    }
}
