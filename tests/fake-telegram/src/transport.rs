//! The server side of MTProto's transports: the framing is detected from a connection's
//! first bytes, as Telegram does, and then grammers' own (symmetric) framing code is used.

use grammers_crypto::DequeBuffer;
use grammers_mtproto::transport::{
    self, Abridged, Full, Intermediate, Tagged as _, Transport as _,
};

/// Frames larger than this are refused (Telegram's limit is far lower for requests).
const MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Obfuscated or padded-intermediate framing, which the fake DC does not speak.
    Unsupported(&'static str),
    /// A frame the framing cannot accept (bad length, sequence or checksum).
    Malformed(String),
}

enum Framing {
    Full(Full),
    Intermediate(Intermediate),
    Abridged(Abridged),
}

/// `len/4: 1 byte (or 0x7f ‖ 3 bytes LE) ‖ payload`. grammers' `Abridged::unpack` takes
/// any frame under 508 bytes whose first four bytes read as a negative i32 for a
/// transport error; an encrypted message starts with its auth key id, so with half of
/// all keys it refuses every short message.
pub fn unpack_abridged(buf: &[u8]) -> Result<transport::UnpackedOffset, transport::Error> {
    let (header, words) = match buf.first() {
        None => return Err(transport::Error::MissingBytes),
        Some(&b) if b < 0x7f => (1, usize::from(b)),
        Some(_) => match buf.get(1..4) {
            Some(len) => (
                4,
                usize::from(len[0]) | usize::from(len[1]) << 8 | usize::from(len[2]) << 16,
            ),
            None => return Err(transport::Error::MissingBytes),
        },
    };
    let len = words * 4;
    if len > MAX_FRAME {
        return Err(transport::Error::BadLen { got: len as i32 });
    }
    if buf.len() < header + len {
        return Err(transport::Error::MissingBytes);
    }
    Ok(transport::UnpackedOffset {
        data_range: header..header + len,
        next_offset: header + len,
    })
}

/// `len: u32 LE ‖ payload`, as grammers' `Intermediate::unpack` should read it: that one
/// compares the buffer with the payload length without its 4-byte header and then slices
/// past the end (a panic on a partial frame).
pub fn unpack_intermediate(buf: &[u8]) -> Result<transport::UnpackedOffset, transport::Error> {
    let Some(header) = buf.get(..4) else {
        return Err(transport::Error::MissingBytes);
    };
    let len = i32::from_le_bytes(header.try_into().expect("4 bytes"));
    if len < 4 || len % 4 != 0 || len as usize > MAX_FRAME {
        return Err(transport::Error::BadLen { got: len });
    }
    let len = len as usize;
    if buf.len() < 4 + len {
        return Err(transport::Error::MissingBytes);
    }
    Ok(transport::UnpackedOffset {
        data_range: 4..4 + len,
        next_offset: 4 + len,
    })
}

/// Framing for one server connection: bytes in, whole payloads out, and back.
pub struct ServerTransport {
    framing: Option<Framing>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for ServerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTransport({:?})", self.kind())
    }
}

impl Default for ServerTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerTransport {
    pub fn new() -> Self {
        ServerTransport {
            framing: None,
            buf: Vec::new(),
        }
    }

    /// The framing in use, once detected.
    pub fn kind(&self) -> Option<&'static str> {
        match self.framing {
            Some(Framing::Full(_)) => Some("full"),
            Some(Framing::Intermediate(_)) => Some("intermediate"),
            Some(Framing::Abridged(_)) => Some("abridged"),
            None => None,
        }
    }

    /// Adds bytes read from the client and returns every payload now complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, TransportError> {
        self.buf.extend_from_slice(data);
        if self.framing.is_none() && !self.detect()? {
            return Ok(Vec::new());
        }
        let mut payloads = Vec::new();
        loop {
            let framing = self.framing.as_mut().expect("detected");
            let result = match framing {
                Framing::Full(t) => t.unpack(&mut self.buf),
                Framing::Intermediate(_) => unpack_intermediate(&self.buf),
                Framing::Abridged(_) => unpack_abridged(&self.buf),
            };
            match result {
                Ok(offset) => {
                    payloads.push(self.buf[offset.data_range].to_vec());
                    self.buf.drain(..offset.next_offset);
                }
                Err(transport::Error::MissingBytes) => {
                    if self.buf.len() > MAX_FRAME {
                        return Err(TransportError::Malformed("frame too large".into()));
                    }
                    return Ok(payloads);
                }
                Err(e) => return Err(TransportError::Malformed(e.to_string())),
            }
        }
    }

    /// Picks the framing from the first bytes; false until enough bytes are there.
    fn detect(&mut self) -> Result<bool, TransportError> {
        let Some(&first) = self.buf.first() else {
            return Ok(false);
        };
        if first == 0xef {
            self.buf.drain(..1);
            let mut t = Abridged::new();
            t.init_tag(); // the server never sends the tag back
            self.framing = Some(Framing::Abridged(t));
            return Ok(true);
        }
        if self.buf.len() < 8 {
            return Ok(false);
        }
        match &self.buf[..4] {
            [0xee, 0xee, 0xee, 0xee] => {
                self.buf.drain(..4);
                let mut t = Intermediate::new();
                t.init_tag();
                self.framing = Some(Framing::Intermediate(t));
            }
            [0xdd, 0xdd, 0xdd, 0xdd] => {
                return Err(TransportError::Unsupported("padded intermediate"));
            }
            _ if self.buf[4..8] == [0, 0, 0, 0] => self.framing = Some(Framing::Full(Full::new())),
            _ => return Err(TransportError::Unsupported("obfuscated")),
        }
        Ok(true)
    }

    /// Frames `payload` (a multiple of 4 bytes) for the client.
    pub fn pack(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut buffer = DequeBuffer::with_capacity(payload.len() + 4, 12);
        buffer.extend(payload.iter().copied());
        match self.framing.as_mut() {
            Some(Framing::Full(t)) => t.pack(&mut buffer),
            Some(Framing::Intermediate(t)) => t.pack(&mut buffer),
            Some(Framing::Abridged(t)) => t.pack(&mut buffer),
            None => {}
        }
        buffer.as_ref().to_vec()
    }

    /// A transport error (`-404` for an unknown auth key, `-429` for too many
    /// connections), framed as Telegram frames it.
    pub fn pack_error(&mut self, code: i32) -> Vec<u8> {
        self.pack(&(-code).to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frames(
        mut t: impl grammers_mtproto::transport::Transport,
        payloads: &[&[u8]],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let mut b = DequeBuffer::with_capacity(p.len(), 16);
            b.extend(p.iter().copied());
            t.pack(&mut b);
            out.extend_from_slice(b.as_ref());
        }
        out
    }

    #[test]
    fn every_framing_is_detected_and_unpacked_byte_by_byte() {
        let payloads: [&[u8]; 2] = [&[1, 2, 3, 4], &[9; 1024]];
        for (name, bytes) in [
            ("full", client_frames(Full::new(), &payloads)),
            (
                "intermediate",
                client_frames(Intermediate::new(), &payloads),
            ),
            ("abridged", client_frames(Abridged::new(), &payloads)),
        ] {
            let mut server = ServerTransport::new();
            let mut got = Vec::new();
            for b in &bytes {
                got.extend(server.feed(&[*b]).unwrap());
            }
            assert_eq!(server.kind(), Some(name));
            assert_eq!(got, payloads.map(|p| p.to_vec()), "{name}");
        }
    }

    #[test]
    fn abridged_frames_starting_with_a_negative_word_are_data() {
        let payload = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
        let mut server = ServerTransport::new();
        assert_eq!(
            server
                .feed(&client_frames(Abridged::new(), &[&payload]))
                .unwrap(),
            [payload.to_vec()]
        );
    }

    #[test]
    fn replies_carry_no_tag_and_errors_are_framed() {
        let mut server = ServerTransport::new();
        server
            .feed(&client_frames(Abridged::new(), &[&[0; 8]]))
            .unwrap();
        assert_eq!(server.pack(&[7; 8]), [2, 7, 7, 7, 7, 7, 7, 7, 7]);
        assert_eq!(server.pack_error(404), [1, 0x6c, 0xfe, 0xff, 0xff]);
    }

    #[test]
    fn obfuscated_and_corrupt_streams_are_refused() {
        let mut server = ServerTransport::new();
        assert_eq!(
            server.feed(&[0x12; 64]),
            Err(TransportError::Unsupported("obfuscated"))
        );
        let mut bytes = client_frames(Full::new(), &[&[1, 2, 3, 4]]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            ServerTransport::new().feed(&bytes),
            Err(TransportError::Malformed(_))
        ));
    }
}
