//! MTProto's wrappers around message bodies, both ways: `rpc_result`, `rpc_error`,
//! `msg_container`, `gzip_packed` and `msgs_ack` (grammers keeps its own private).

use std::io::Read as _;

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, types};

pub const MSG_CONTAINER: u32 = 0x73f1_f8dc;
pub const GZIP_PACKED: u32 = 0x3072_cfa1;
pub const RPC_RESULT: u32 = 0xf35c_6d01;
/// Most messages in one container (Telegram's limit).
pub const MAX_CONTAINED: usize = 1024;
const MAX_UNZIPPED: u64 = 16 * 1024 * 1024;
/// Results larger than this go out as `gzip_packed` when that makes them smaller.
const GZIP_THRESHOLD: usize = 512;

/// One message inside a container (or on its own): msg_id, seqno and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub msg_id: i64,
    pub seq_no: i32,
    pub body: Vec<u8>,
}

pub fn constructor(body: &[u8]) -> Option<u32> {
    u32::from_bytes(body).ok()
}

pub fn rpc_result(req_msg_id: i64, result: &[u8]) -> Vec<u8> {
    let mut v = RPC_RESULT.to_le_bytes().to_vec();
    v.extend(req_msg_id.to_le_bytes());
    v.extend_from_slice(result);
    v
}

pub fn rpc_error(code: i32, message: &str) -> Vec<u8> {
    enums::RpcError::Error(types::RpcError {
        error_code: code,
        error_message: message.to_owned(),
    })
    .to_bytes()
}

pub fn msgs_ack(msg_ids: Vec<i64>) -> Vec<u8> {
    enums::MsgsAck::Ack(types::MsgsAck { msg_ids }).to_bytes()
}

/// A `msg_container` body with `messages`.
pub fn container(messages: &[Message]) -> Vec<u8> {
    let mut body = MSG_CONTAINER.to_le_bytes().to_vec();
    body.extend((messages.len() as i32).to_le_bytes());
    for m in messages {
        body.extend(m.msg_id.to_le_bytes());
        body.extend(m.seq_no.to_le_bytes());
        body.extend((m.body.len() as i32).to_le_bytes());
        body.extend_from_slice(&m.body);
    }
    body
}

/// The messages of a `msg_container` body (constructor id included); `None` when it is
/// malformed: a count out of range, a length past the end, or bytes left over.
pub fn unpack_container(body: &[u8]) -> Option<Vec<Message>> {
    let data = body.get(4..)?;
    let count = usize::try_from(i32::from_le_bytes(data.get(..4)?.try_into().ok()?)).ok()?;
    if count > MAX_CONTAINED {
        return None;
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let head = data.get(at..at + 16)?;
        let msg_id = i64::from_le_bytes(head[..8].try_into().ok()?);
        let seq_no = i32::from_le_bytes(head[8..12].try_into().ok()?);
        let len = usize::try_from(i32::from_le_bytes(head[12..16].try_into().ok()?)).ok()?;
        let body = data.get(at + 16..at + 16 + len)?;
        at += 16 + len;
        out.push(Message {
            msg_id,
            seq_no,
            body: body.to_vec(),
        });
    }
    (at == data.len()).then_some(out)
}

/// `data` as `gzip_packed` when it is large and that makes it smaller.
pub fn maybe_gzip(data: Vec<u8>) -> Vec<u8> {
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

/// The body inside a `gzip_packed` body (constructor id included), at most 16 MiB.
pub fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let packed = Vec::<u8>::from_bytes(body.get(4..)?).ok()?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .take(MAX_UNZIPPED)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_and_gzip_round_trip() {
        let messages = vec![
            Message {
                msg_id: 8,
                seq_no: 1,
                body: vec![1, 2, 3, 4],
            },
            Message {
                msg_id: 12,
                seq_no: 2,
                body: vec![],
            },
        ];
        let body = container(&messages);
        assert_eq!(unpack_container(&body), Some(messages));
        assert_eq!(unpack_container(&body[..body.len() - 1]), None);
        let mut extra = body.clone();
        extra.extend([0; 4]);
        assert_eq!(unpack_container(&extra), None, "bytes left over");

        let big = vec![7u8; 4096];
        let packed = maybe_gzip(big.clone());
        assert_eq!(constructor(&packed), Some(GZIP_PACKED));
        assert_eq!(gunzip(&packed), Some(big));
    }
}
