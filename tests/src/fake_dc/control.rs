//! The control API of the `fake-telegram` binary: JSON over HTTP on loopback.
//! tests/README.md documents every endpoint.

use std::net::TcpListener;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use super::fault::Fault;
use super::world::{Content, NewMessage};
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
        ("POST", "/messages") => request.json().and_then(|v| send_message(shared, &v)),
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
            "/info" | "/stats" | "/bots" | "/messages" | "/faults" | "/auth_keys" | "/settings",
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

fn send_message(shared: &Shared, v: &Value) -> Result<Value, String> {
    let from_user_id = integer(v, "from_user_id")?;
    let chat_id = optional_integer(v, "chat_id")?.unwrap_or(from_user_id);
    if chat_id <= 0 {
        return Err(
            "`chat_id` must be positive (a user id for a private chat, a chat id for a group)"
                .into(),
        );
    }
    let content = match (&v["text"], &v["voice"]) {
        (Value::String(text), Value::Null) => Content::Text(text.clone()),
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
            Content::Voice {
                size,
                duration: optional_i32(voice, "duration")?.unwrap_or(1),
                mime_type: voice["mime_type"]
                    .as_str()
                    .unwrap_or("audio/ogg")
                    .to_owned(),
                seed: optional_integer(voice, "seed")?.unwrap_or(size as i64) as u64,
                bytes,
                dc: optional_i32(voice, "dc")?,
            }
        }
        _ => {
            return Err(
                "exactly one of `text` (a string) or `voice` (an object) is required".into(),
            );
        }
    };
    let sent = shared.world().send_message(NewMessage {
        bot: string(v, "bot")?.to_owned(),
        chat_id,
        from_user_id,
        content,
    })?;
    Ok(json!({ "message_id": sent.message_id, "pts": sent.pts, "sha256": sent.sha256 }))
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
