//! The wrappers clients put around API calls (core.telegram.org/api/invoking):
//! `invokeWithLayer`, `initConnection`, `invokeWithoutUpdates`, `invokeAfterMsg(s)`.
//! Their inner query is parsed as the rest of the buffer: grammers' generated
//! `Deserializable` for them does not read the inner constructor id.

use grammers_tl_types::{self as tl, Cursor, Deserializable, Identifiable as _, functions};

/// The inner query, unparsed (constructor id included).
struct Rest(Vec<u8>);

impl Deserializable for Rest {
    fn deserialize(buf: &mut Cursor) -> tl::deserialize::Result<Self> {
        let mut v = Vec::new();
        buf.read_to_end(&mut v)?;
        Ok(Rest(v))
    }
}

/// What `initConnection` told the server about the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub api_id: i32,
    pub device_model: String,
    pub system_version: String,
    pub app_version: String,
    pub system_lang_code: String,
    pub lang_code: String,
}

/// An API call with its wrappers taken off.
#[derive(Debug)]
pub struct Unwrapped {
    /// The inner call, constructor id first.
    pub query: Vec<u8>,
    /// In `invokeWithoutUpdates`: the connection is not subscribed to updates.
    pub without_updates: bool,
    /// In `initConnection`.
    pub init: Option<ClientInfo>,
}

/// Takes the wrappers off `data` (a message body, constructor id first).
pub fn unwrap(mut data: Vec<u8>) -> tl::deserialize::Result<Unwrapped> {
    let mut without_updates = false;
    let mut init = None;
    // Real clients nest two or three wrappers; more is an attack on the copying below.
    for _ in 0..8 {
        let id = u32::from_bytes(&data)?;
        let rest = &data[4..];
        data = match id {
            functions::InvokeWithLayer::<Rest>::CONSTRUCTOR_ID => {
                functions::InvokeWithLayer::<Rest>::from_bytes(rest)?
                    .query
                    .0
            }
            functions::InitConnection::<Rest>::CONSTRUCTOR_ID => {
                let req = functions::InitConnection::<Rest>::from_bytes(rest)?;
                init = Some(ClientInfo {
                    api_id: req.api_id,
                    device_model: req.device_model,
                    system_version: req.system_version,
                    app_version: req.app_version,
                    system_lang_code: req.system_lang_code,
                    lang_code: req.lang_code,
                });
                req.query.0
            }
            functions::InvokeWithoutUpdates::<Rest>::CONSTRUCTOR_ID => {
                without_updates = true;
                functions::InvokeWithoutUpdates::<Rest>::from_bytes(rest)?
                    .query
                    .0
            }
            functions::InvokeAfterMsg::<Rest>::CONSTRUCTOR_ID => {
                functions::InvokeAfterMsg::<Rest>::from_bytes(rest)?.query.0
            }
            functions::InvokeAfterMsgs::<Rest>::CONSTRUCTOR_ID => {
                functions::InvokeAfterMsgs::<Rest>::from_bytes(rest)?
                    .query
                    .0
            }
            _ => {
                return Ok(Unwrapped {
                    query: data,
                    without_updates,
                    init,
                });
            }
        };
    }
    Err(tl::deserialize::Error::UnexpectedEof)
}
