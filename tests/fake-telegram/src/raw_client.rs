//! A hand-made MTProto session for tests of what well-behaved clients never send: the
//! test chooses every msg_id, seqno, salt, padding and container. It speaks the Full
//! transport and shows the server's messages as they are (containers unpacked).

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grammers_crypto::DequeBuffer;
use grammers_mtproto::transport::{self, Full, Transport as _};
use grammers_tl_types::{Deserializable as _, Identifiable as _, Serializable as _, enums, types};

use super::client::{CallError, connect};
use super::crypto::{Direction, decrypt, encrypt, padding_for};
use super::envelope::{
    GZIP_PACKED, MSG_CONTAINER, Message, RPC_RESULT, constructor, container, gunzip,
    unpack_container,
};

pub struct RawClient {
    stream: TcpStream,
    transport: Full,
    key: [u8; 256],
    pub session_id: i64,
    /// The salt messages go out with unless the test says otherwise.
    pub salt: i64,
    last_msg_id: i64,
    content_sent: i32,
    rx: Vec<u8>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawClient(session {:x})", self.session_id)
    }
}

/// A client msg_id for Unix time `secs` (and now's fraction of a second).
pub fn msg_id_at(secs: i64) -> i64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    (secs << 32) | ((i64::from(nanos) << 2) & 0xffff_fffc)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl RawClient {
    /// A new session on a key the DC knows, from `from` when given.
    pub fn connect(
        addr: SocketAddr,
        from: Option<IpAddr>,
        key: [u8; 256],
        salt: i64,
    ) -> io::Result<RawClient> {
        let stream = connect(addr, from)?;
        Ok(RawClient {
            stream,
            transport: Full::new(),
            key,
            session_id: i64::from_le_bytes(super::crypto::random::<8>()),
            salt,
            last_msg_id: 0,
            content_sent: 0,
            rx: Vec::new(),
        })
    }

    /// A fresh msg_id: now, above every one this client made.
    pub fn next_msg_id(&mut self) -> i64 {
        let mut id = msg_id_at(unix_now());
        if id <= self.last_msg_id {
            id = self.last_msg_id + 4;
        }
        self.last_msg_id = id;
        id
    }

    /// The next seqno, as a well-behaved client numbers a message of this kind.
    pub fn next_seq_no(&mut self, content: bool) -> i32 {
        if content {
            self.content_sent += 1;
            self.content_sent * 2 - 1
        } else {
            self.content_sent * 2
        }
    }

    /// `body` numbered as a well-behaved client would.
    pub fn message(&mut self, body: Vec<u8>, content: bool) -> Message {
        Message {
            msg_id: self.next_msg_id(),
            seq_no: self.next_seq_no(content),
            body,
        }
    }

    /// `contents` in a container numbered after them.
    pub fn container(&mut self, contents: &[Message]) -> Message {
        self.message(container(contents), false)
    }

    /// Sends `m` with the client's salt and the least padding.
    pub fn send(&mut self, m: &Message) -> io::Result<()> {
        let plain = self.plaintext(m, self.salt);
        self.send_plaintext(&plain, padding_for(plain.len()))
    }

    /// Sends `m` with this salt and `padding` bytes of padding (which must bring the
    /// plaintext to a multiple of 16 bytes).
    pub fn send_with(&mut self, m: &Message, salt: i64, padding: usize) -> io::Result<()> {
        let plain = self.plaintext(m, salt);
        self.send_plaintext(&plain, padding)
    }

    /// The length of `m`'s plaintext before padding.
    pub fn plaintext_len(m: &Message) -> usize {
        32 + m.body.len()
    }

    fn plaintext(&self, m: &Message, salt: i64) -> Vec<u8> {
        let mut plain = Vec::with_capacity(32 + m.body.len());
        plain.extend(salt.to_le_bytes());
        plain.extend(self.session_id.to_le_bytes());
        plain.extend(m.msg_id.to_le_bytes());
        plain.extend(m.seq_no.to_le_bytes());
        plain.extend((m.body.len() as i32).to_le_bytes());
        plain.extend_from_slice(&m.body);
        plain
    }

    fn send_plaintext(&mut self, plain: &[u8], padding: usize) -> io::Result<()> {
        let packet = encrypt(&self.key, plain, padding, Direction::ClientToServer);
        let mut buffer = DequeBuffer::with_capacity(packet.len() + 16, 16);
        buffer.extend(packet);
        self.transport.pack(&mut buffer);
        self.stream.write_all(buffer.as_ref())
    }

    /// The server's messages until `wait` passes with nothing new (containers unpacked).
    pub fn receive(&mut self, wait: Duration) -> Result<Vec<Message>, CallError> {
        let mut all = Vec::new();
        while let Some(messages) = self.next_frame(wait)? {
            all.extend(messages);
        }
        Ok(all)
    }

    /// Reads until a message matching `want` arrives (returned with those before it), or
    /// `wait` has passed.
    pub fn receive_until(
        &mut self,
        wait: Duration,
        mut want: impl FnMut(&Message) -> bool,
    ) -> Result<Vec<Message>, CallError> {
        let deadline = Instant::now() + wait;
        let mut all = Vec::new();
        while !all.iter().any(&mut want) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_frame(left)? {
                Some(messages) => all.extend(messages),
                None => break,
            }
        }
        Ok(all)
    }

    /// The messages of the next frame, or `None` when none came within `wait`.
    fn next_frame(&mut self, wait: Duration) -> Result<Option<Vec<Message>>, CallError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.transport.unpack(&mut self.rx) {
                Ok(offset) => {
                    let payload = self.rx[offset.data_range].to_vec();
                    self.rx.drain(..offset.next_offset);
                    if payload.len() == 4 {
                        let code = i32::from_le_bytes(payload[..4].try_into().expect("4"));
                        return Err(CallError::Transport(code.unsigned_abs()));
                    }
                    return self.open(&payload).map(Some);
                }
                Err(transport::Error::MissingBytes) => {}
                Err(e) => return Err(CallError::Protocol(e.to_string())),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(CallError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn open(&self, payload: &[u8]) -> Result<Vec<Message>, CallError> {
        let plain = decrypt(&self.key, payload, Direction::ServerToClient)
            .ok_or_else(|| CallError::Protocol("a server message that does not decrypt".into()))?;
        let session = i64::from_le_bytes(plain[8..16].try_into().expect("8"));
        if session != self.session_id {
            return Err(CallError::Protocol("a message for another session".into()));
        }
        let len = i32::from_le_bytes(plain[28..32].try_into().expect("4")) as usize;
        let message = Message {
            msg_id: i64::from_le_bytes(plain[16..24].try_into().expect("8")),
            seq_no: i32::from_le_bytes(plain[24..28].try_into().expect("4")),
            body: plain
                .get(32..32 + len)
                .ok_or_else(|| CallError::Protocol("bad length".into()))?
                .to_vec(),
        };
        if constructor(&message.body) == Some(MSG_CONTAINER) {
            return unpack_container(&message.body)
                .ok_or_else(|| CallError::Protocol("a malformed container".into()));
        }
        Ok(vec![message])
    }

    /// Whether the server closed the connection within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.next_frame(deadline.saturating_duration_since(Instant::now())) {
                Err(CallError::Io(_)) | Err(CallError::Transport(_)) => return true,
                Ok(_) | Err(_) => {}
            }
        }
        false
    }
}

/// The `bad_msg_notification` / `bad_server_salt` codes in `messages`, by bad msg_id.
pub fn bad_msgs(messages: &[Message]) -> Vec<(i64, i32)> {
    messages
        .iter()
        .filter_map(
            |m| match enums::BadMsgNotification::from_bytes(&m.body).ok()? {
                enums::BadMsgNotification::Notification(n) => Some((n.bad_msg_id, n.error_code)),
                enums::BadMsgNotification::BadServerSalt(n) => Some((n.bad_msg_id, n.error_code)),
            },
        )
        .collect()
}

/// The msg_ids `msgs_ack` messages in `messages` acknowledge.
pub fn acked(messages: &[Message]) -> Vec<i64> {
    messages
        .iter()
        .filter(|m| constructor(&m.body) == Some(types::MsgsAck::CONSTRUCTOR_ID))
        .filter_map(|m| types::MsgsAck::from_bytes(&m.body[4..]).ok())
        .flat_map(|a| a.msg_ids)
        .collect()
}

/// The result (gzip undone) answering `req_msg_id`, if among `messages`.
pub fn rpc_result_for(messages: &[Message], req_msg_id: i64) -> Option<Vec<u8>> {
    messages.iter().find_map(|m| {
        if constructor(&m.body) != Some(RPC_RESULT) {
            return None;
        }
        let req = i64::from_le_bytes(m.body.get(4..12)?.try_into().ok()?);
        let result = m.body[12..].to_vec();
        (req == req_msg_id).then(|| match constructor(&result) {
            Some(GZIP_PACKED) => gunzip(&result).unwrap_or_default(),
            _ => result,
        })
    })
}

/// How many messages in `messages` have this constructor.
pub fn count(messages: &[Message], id: u32) -> usize {
    messages
        .iter()
        .filter(|m| constructor(&m.body) == Some(id))
        .count()
}

/// A `ping` body.
pub fn ping(ping_id: i64) -> Vec<u8> {
    grammers_tl_types::functions::Ping { ping_id }.to_bytes()
}
