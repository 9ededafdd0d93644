//! The control API of the `fake-telegram` binary: JSON over HTTP on loopback.
//! tests/README.md documents every endpoint.

use std::net::TcpListener;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use super::channels::ChannelPost;
use super::fault::Fault;
use super::world::{Content, NewMessage, Sent, VoiceForm};
use crate::json_server::{JsonServer, Request};

/// The line `fake-telegram` prints when it is ready (also `GET /info`).
pub fn info(shared: &Shared, control: Option<std::net::SocketAddr>) -> Value {
    let world = shared.world();
    let dcs: serde_json::Map<String, Value> = world
        .dcs
        .iter()
        .map(|(id, addr)| (id.to_string(), addr.to_string().into()))
        .collect();
    let mut info = json!({
        "dcs": dcs,
        "rsa_public_key_pem": shared.rsa.public_pem(),
        "rsa_fingerprint": shared.rsa.fingerprint(),
        "api_id": super::TEST_API_ID,
        "api_hash": super::TEST_API_HASH,
    });
    if let Some(control) = control {
        info["control"] = format!("http://{control}").into();
    }
    info
}

/// Serves the control API for `shared` on `listener`.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<JsonServer> {
    let control = listener.local_addr()?;
    JsonServer::start(
        listener,
        Arc::new(move |request: &Request| Some(handle(&shared, control, request))),
    )
}

fn bad(message: impl Into<String>) -> (u16, Value) {
    (400, json!({ "error": message.into() }))
}

fn handle(shared: &Shared, control: std::net::SocketAddr, request: &Request) -> (u16, Value) {
    let result = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/info") => Ok(info(shared, Some(control))),
        ("GET", "/stats") => Ok(shared.world().stats_json()),
        ("POST", "/bots") => request.json().and_then(|v| add_bot(shared, &v)),
        ("POST", "/messages") => request.json().and_then(|v| send_messages(shared, &v)),
        ("POST", "/deletions") => request.json().and_then(|v| delete_messages(shared, &v)),
        ("POST", "/channels") => request.json().and_then(|v| add_channel(shared, &v)),
        ("POST", "/apps") => request.json().and_then(|v| {
            let api_id = i32::try_from(integer(&v, "api_id")?)
                .map_err(|_| "`api_id` is out of range".to_owned())?;
            shared.world().add_app(api_id, string(&v, "api_hash")?)?;
            Ok(json!({ "ok": true }))
        }),
        ("POST", "/faults") => request.json().and_then(|v| {
            shared.world().add_fault(Fault::from_json(&v)?)?;
            Ok(json!({ "ok": true }))
        }),
        ("POST", "/auth_keys") => request.json().and_then(|v| add_auth_key(shared, &v)),
        ("GET", "/settings") => Ok(shared.world().settings.to_json()),
        ("POST", "/settings") => request.json().and_then(|v| {
            let mut world = shared.world();
            world.settings.update_from_json(&v)?;
            Ok(world.settings.to_json())
        }),
        (
            _,
            "/info" | "/stats" | "/bots" | "/messages" | "/deletions" | "/channels" | "/apps"
            | "/faults" | "/auth_keys" | "/settings",
        ) => {
            return (405, json!({ "error": "method not allowed" }));
        }
        _ => return (404, json!({ "error": "not found" })),
    };
    match result {
        Ok(body) => (200, body),
        Err(message) => bad(message),
    }
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    v[key]
        .as_str()
        .ok_or_else(|| format!("`{key}` must be a string"))
}

fn integer(v: &Value, key: &str) -> Result<i64, String> {
    v[key]
        .as_i64()
        .ok_or_else(|| format!("`{key}` must be an integer"))
}

/// An optional integer that must fit an i32 (DC ids, durations, chat ids).
fn optional_i32(v: &Value, key: &str) -> Result<Option<i32>, String> {
    optional_integer(v, key)?
        .map(|n| i32::try_from(n).map_err(|_| format!("`{key}` is out of range")))
        .transpose()
}

fn optional_integer(v: &Value, key: &str) -> Result<Option<i64>, String> {
    if v[key].is_null() {
        Ok(None)
    } else {
        integer(v, key).map(Some)
    }
}

fn add_bot(shared: &Shared, v: &Value) -> Result<Value, String> {
    let dc = optional_i32(v, "dc")?;
    let user_id = shared
        .world()
        .add_bot(string(v, "token")?, string(v, "username")?, dc)?;
    Ok(json!({ "user_id": user_id }))
}

/// The `text` or `voice` of a message.
fn content(v: &Value) -> Result<Content, String> {
    match (&v["text"], &v["voice"]) {
        (Value::String(text), Value::Null) => Ok(Content::Text(text.clone())),
        (Value::Null, voice @ Value::Object(_)) => {
            let bytes = match &voice["bytes_base64"] {
                Value::Null => None,
                Value::String(b64) => {
                    use base64::Engine as _;
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|_| "`voice.bytes_base64` is not base64")?,
                    )
                }
                _ => return Err("`voice.bytes_base64` must be a string".into()),
            };
            let size = match (&bytes, optional_integer(voice, "size")?) {
                (Some(b), _) => b.len(),
                (None, Some(size)) if (1..=64 * 1024 * 1024).contains(&size) => size as usize,
                (None, _) => return Err("`voice.size` must be between 1 and 64 MiB".into()),
            };
            Ok(Content::Voice {
                size,
                duration: optional_i32(voice, "duration")?.unwrap_or(1),
                mime_type: voice["mime_type"]
                    .as_str()
                    .unwrap_or("audio/ogg")
                    .to_owned(),
                seed: optional_integer(voice, "seed")?.unwrap_or(size as i64) as u64,
                bytes,
                dc: optional_i32(voice, "dc")?,
                form: match voice["form"].as_str() {
                    None | Some("voice") => VoiceForm::Voice,
                    Some("audio") => VoiceForm::Audio,
                    Some("round_video") => VoiceForm::RoundVideo,
                    Some(other) => {
                        return Err(format!(
                            "`voice.form` {other:?}: voice, audio or round_video"
                        ));
                    }
                },
            })
        }
        _ => Err("exactly one of `text` (a string) or `voice` (an object) is required".into()),
    }
}

fn sent_json(sent: &Sent) -> Value {
    json!({ "message_id": sent.message_id, "pts": sent.pts, "sha256": sent.sha256 })
}

/// One message (to a bot, or into a channel), or an array of messages to one bot sent
/// together.
fn send_messages(shared: &Shared, v: &Value) -> Result<Value, String> {
    if let Value::Array(items) = v {
        let messages = items.iter().map(new_message).collect::<Result<_, _>>()?;
        let sent = shared.world().send_messages(messages)?;
        return Ok(sent.iter().map(sent_json).collect());
    }
    if !v["channel_id"].is_null() {
        if !v["bot"].is_null() || !v["chat_id"].is_null() {
            return Err("a channel message has a `channel_id`, no `bot` or `chat_id`".into());
        }
        let post = ChannelPost {
            channel_id: integer(v, "channel_id")?,
            from_user_id: optional_integer(v, "from_user_id")?,
            content: content(v)?,
        };
        return Ok(sent_json(&shared.world().send_channel_message(post)?));
    }
    Ok(sent_json(&shared.world().send_message(new_message(v)?)?))
}

fn new_message(v: &Value) -> Result<NewMessage, String> {
    let from_user_id = integer(v, "from_user_id")?;
    let chat_id = optional_integer(v, "chat_id")?.unwrap_or(from_user_id);
    if chat_id <= 0 {
        return Err(
            "`chat_id` must be positive (a user id for a private chat, a chat id for a group)"
                .into(),
        );
    }
    Ok(NewMessage {
        bot: string(v, "bot")?.to_owned(),
        chat_id,
        from_user_id,
        content: content(v)?,
    })
}

fn delete_messages(shared: &Shared, v: &Value) -> Result<Value, String> {
    let ids = v["message_ids"]
        .as_array()
        .ok_or("`message_ids` must be an array of message ids")?
        .iter()
        .map(|id| {
            id.as_i64()
                .and_then(|id| i32::try_from(id).ok())
                .ok_or("`message_ids` must be message ids")
        })
        .collect::<Result<Vec<i32>, _>>()?;
    let pts = shared.world().delete_messages(string(v, "bot")?, ids)?;
    Ok(json!({ "pts": pts }))
}

fn add_channel(shared: &Shared, v: &Value) -> Result<Value, String> {
    let megagroup = match &v["megagroup"] {
        Value::Null => true,
        Value::Bool(b) => *b,
        _ => return Err("`megagroup` must be true (a supergroup) or false (a channel)".into()),
    };
    let members: Vec<&str> = match &v["bots"] {
        Value::Null => Vec::new(),
        Value::Array(names) => names
            .iter()
            .map(|n| n.as_str().ok_or("`bots` must be bot usernames"))
            .collect::<Result<_, _>>()?,
        _ => return Err("`bots` must be an array of bot usernames".into()),
    };
    let mut world = shared.world();
    let id = world.add_channel(string(v, "title")?, megagroup, &members)?;
    let access_hash = world.channels[&id].access_hash;
    Ok(json!({ "channel_id": id, "access_hash": access_hash }))
}

fn add_auth_key(shared: &Shared, v: &Value) -> Result<Value, String> {
    let hex = string(v, "auth_key_hex")?;
    if hex.len() != 512 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("`auth_key_hex` must be 512 hex digits (a 256-byte key)".into());
    }
    let key: [u8; 256] =
        std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"));
    let dc = optional_i32(v, "dc")?.unwrap_or(1);
    let bot = v["bot"].as_str().map(str::to_owned);
    let mut world = shared.world();
    if !world.dcs.contains_key(&dc) {
        return Err(format!("no DC {dc}"));
    }
    let bot = match bot {
        Some(name) => Some(
            world
                .bot_by_username(&name)
                .ok_or_else(|| format!("no bot @{name}"))?
                .user_id,
        ),
        None => None,
    };
    let id = world.add_auth_key(dc, key, bot);
    Ok(json!({ "key_id": id }))
}
