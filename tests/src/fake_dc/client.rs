//! A small blocking MTProto client for testing the fake DC from Rust: grammers' framing
//! and `Encrypted` session, plus a client handshake that takes the server's RSA key as a
//! parameter (grammers' own handshake only trusts Telegram's keys). Test equipment only;
//! the service's client lives in the core.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use grammers_crypto::{AuthKey, DequeBuffer, aes, factorize, generate_key_data_from_nonce};
use grammers_mtproto::mtp::{Deserialization, Encrypted, Mtp as _, Plain};
use grammers_mtproto::transport::{self, Abridged, Full, Intermediate, Transport};
use grammers_tl_types::{
    self as tl, Deserializable as _, RemoteCall, Serializable as _, enums, functions, types,
};
use num_bigint::BigUint;

use super::crypto::{RsaKey, random, sha1, to_be_padded};

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

impl TestClient {
    /// Connects with an auth key the fake DC already knows (a stored session).
    pub fn with_key(addr: SocketAddr, key: [u8; 256], how: Framing) -> io::Result<TestClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
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
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
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
            functions::InvokeWithLayer {
                layer: tl::LAYER,
                query: functions::InitConnection {
                    api_id: 1,
                    device_model: "test".into(),
                    system_version: "test".into(),
                    app_version: "0".into(),
                    system_lang_code: "en".into(),
                    lang_pack: String::new(),
                    lang_code: "en".into(),
                    proxy: None,
                    params: None,
                    query: Serialized(request.to_bytes()),
                },
            }
            .to_bytes()
        };
        let answer = self.call_raw(&body)?;
        R::Return::from_bytes(&answer).map_err(|e| CallError::Protocol(format!("bad answer: {e}")))
    }

    /// Sends one request body and waits for its result (resending after bad_server_salt
    /// and the other retryable notifications).
    pub fn call_raw(&mut self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        'send: for _ in 0..5 {
            let mut buffer = DequeBuffer::with_capacity(body.len() + 64, 64);
            let mut ids = Vec::new();
            let msg_id = loop {
                if let Some(id) = self.mtp.push(&mut buffer, body) {
                    break id;
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

/// The client's half of the handshake, with RSA_PAD; returns the key and first salt.
fn handshake(conn: &mut RawConn, rsa: &RsaKey) -> Result<([u8; 256], i64), CallError> {
    let protocol = |what: &str| CallError::Protocol(what.to_owned());
    let nonce = random::<16>();
    let answer = conn.exchange(&functions::ReqPqMulti { nonce }.to_bytes())?;
    let enums::ResPq::Pq(res_pq) =
        enums::ResPq::from_bytes(&answer).map_err(|_| protocol("resPQ"))?;
    if res_pq.nonce != nonce
        || !res_pq
            .server_public_key_fingerprints
            .contains(&rsa.fingerprint())
    {
        return Err(protocol("resPQ does not match"));
    }
    let pq = u64::from_be_bytes(
        res_pq
            .pq
            .clone()
            .try_into()
            .map_err(|_| protocol("pq size"))?,
    );
    let (p, q) = factorize(pq);
    let new_nonce = random::<32>();
    let server_nonce = res_pq.server_nonce;
    let inner = enums::PQInnerData::Data(types::PQInnerData {
        pq: res_pq.pq,
        p: (p as u32).to_be_bytes().to_vec(),
        q: (q as u32).to_be_bytes().to_vec(),
        nonce,
        server_nonce,
        new_nonce,
    })
    .to_bytes();
    let public = grammers_crypto::rsa::Key::new(&rsa.n().to_string(), &rsa.e().to_string())
        .ok_or_else(|| protocol("key"))?;
    let encrypted_data = grammers_crypto::rsa::encrypt_hashed(&inner, &public, &random::<224>());
    let answer = conn.exchange(
        &functions::ReqDhParams {
            nonce,
            server_nonce,
            p: (p as u32).to_be_bytes().to_vec(),
            q: (q as u32).to_be_bytes().to_vec(),
            public_key_fingerprint: rsa.fingerprint(),
            encrypted_data,
        }
        .to_bytes(),
    )?;
    let enums::ServerDhParams::Ok(ok) =
        enums::ServerDhParams::from_bytes(&answer).map_err(|_| protocol("server_DH_params"))?
    else {
        return Err(protocol("server_DH_params_fail"));
    };
    let (key, iv) = generate_key_data_from_nonce(&server_nonce, &new_nonce);
    let mut plain = ok.encrypted_answer;
    aes::ige_decrypt(&mut plain, &key, &iv);
    let enums::ServerDhInnerData::Data(dh) = enums::ServerDhInnerData::from_bytes(&plain[20..])
        .map_err(|_| protocol("server_DH_inner_data"))?;
    let prime = BigUint::from_bytes_be(&dh.dh_prime);
    let b = BigUint::from_bytes_be(&random::<256>());
    let g_b = BigUint::from(dh.g as u32).modpow(&b, &prime);
    let auth_key: [u8; 256] =
        to_be_padded(&BigUint::from_bytes_be(&dh.g_a).modpow(&b, &prime), 256)
            .try_into()
            .expect("256 bytes");
    let inner = enums::ClientDhInnerData::Data(types::ClientDhInnerData {
        nonce,
        server_nonce,
        retry_id: 0,
        g_b: to_be_padded(&g_b, 256),
    })
    .to_bytes();
    let mut data = sha1(&[&inner]).to_vec();
    data.extend(inner);
    let pad = (16 - data.len() % 16) % 16;
    data.extend_from_slice(&random::<16>()[..pad]);
    aes::ige_encrypt(&mut data, &key, &iv);
    let answer = conn.exchange(
        &functions::SetClientDhParams {
            nonce,
            server_nonce,
            encrypted_data: data,
        }
        .to_bytes(),
    )?;
    match enums::SetClientDhParamsAnswer::from_bytes(&answer).map_err(|_| protocol("dh_gen"))? {
        enums::SetClientDhParamsAnswer::DhGenOk(ok)
            if ok.new_nonce_hash1
                == AuthKey::from_bytes(auth_key).calc_new_nonce_hash(&new_nonce, 1) =>
        {
            let mut salt = [0u8; 8];
            for (i, s) in salt.iter_mut().enumerate() {
                *s = new_nonce[i] ^ server_nonce[i];
            }
            Ok((auth_key, i64::from_le_bytes(salt)))
        }
        _ => Err(protocol("dh_gen not ok")),
    }
}
