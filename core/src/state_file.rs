//! The local state file: every bot's [`BotRecord`] by workspace id, as JSON. Where the
//! runtimes keep what must survive a restart until the PostgreSQL store takes over. It
//! holds auth keys: the runtime writes it readable by the owner only.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::record::{BotRecord, ChannelState, SessionRecord};
use crate::secret::Secret;
use crate::updates::UpdateState;

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The file's text. Written directly rather than through a JSON tree: the writer
/// rewrites the whole file for ten thousand bots, a few times a second at most.
pub fn encode(records: &BTreeMap<String, BotRecord>) -> String {
    use std::fmt::Write as _;
    let json = |v: &str| serde_json::to_string(v).expect("strings serialize");
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let mut out = String::with_capacity(64 + records.len() * 800);
    out.push_str("{\"version\":1,\"bots\":{");
    for (i, (ws, r)) in records.iter().enumerate() {
        let s = &r.session;
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "\n{}:{{\"home_dc\":{},\"auth_keys\":{{",
            json(ws),
            opt(s.home_dc.map(|d| d.to_string()))
        );
        for (j, (dc, key)) in s.auth_keys.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{dc}\":\"");
            push_hex(&mut out, key.expose());
            out.push('"');
        }
        let _ = write!(
            out,
            "}},\"authorized\":{},\"user_id\":{},\"username\":{},\"updates\":",
            s.authorized,
            opt(s.user_id.map(|id| id.to_string())),
            opt(s.username.as_deref().map(json)),
        );
        match r.updates {
            Some(u) => {
                let _ = write!(
                    out,
                    "{{\"pts\":{},\"qts\":{},\"date\":{},\"seq\":{}}}",
                    u.pts, u.qts, u.date, u.seq
                );
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"channels\":[");
        for (j, c) in r.channels.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"id\":{},\"access_hash\":{},\"pts\":{}}}",
                c.id, c.access_hash, c.pts
            );
        }
        out.push_str("]}");
    }
    out.push_str("\n}}\n");
    out
}

/// Reads a state file; an error names what is wrong (never a key).
pub fn decode(text: &str) -> Result<BTreeMap<String, BotRecord>, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    if root["version"] != 1 {
        return Err("unknown version (expected 1)".into());
    }
    let Some(bots) = root["bots"].as_object() else {
        return Err("no `bots` object".into());
    };
    let mut out = BTreeMap::new();
    for (ws, bot) in bots {
        let bad = |what: &str| format!("bot {ws:?}: {what}");
        let mut session = SessionRecord {
            home_dc: bot["home_dc"].as_i64().map(|d| d as i32),
            authorized: bot["authorized"].as_bool().unwrap_or(false),
            user_id: bot["user_id"].as_i64(),
            username: bot["username"].as_str().map(str::to_owned),
            ..SessionRecord::default()
        };
        for (dc, key) in bot["auth_keys"].as_object().into_iter().flatten() {
            let dc: i32 = dc.parse().map_err(|_| bad("a DC id is not a number"))?;
            let key: [u8; 256] = key
                .as_str()
                .and_then(unhex)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| bad("an auth key is not 512 hex digits"))?;
            session.auth_keys.insert(dc, Secret::new(key));
        }
        let mut record = BotRecord {
            session,
            ..BotRecord::default()
        };
        for c in bot["channels"].as_array().into_iter().flatten() {
            let field = |k: &str| c[k].as_i64().ok_or_else(|| bad("bad channel state"));
            record.channels.push(ChannelState {
                id: field("id")?,
                access_hash: field("access_hash")?,
                pts: field("pts")? as i32,
            });
        }
        if let Some(u) = bot["updates"].as_object() {
            let field = |k: &str| {
                u.get(k)
                    .and_then(Value::as_i64)
                    .map(|v| v as i32)
                    .ok_or_else(|| bad("bad update state"))
            };
            record.updates = Some(UpdateState {
                pts: field("pts")?,
                qts: field("qts")?,
                date: field("date")?,
                seq: field("seq")?,
            });
        }
        out.insert(ws.clone(), record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip() {
        let mut record = BotRecord {
            session: SessionRecord {
                home_dc: Some(2),
                authorized: true,
                user_id: Some(7),
                username: Some("b".into()),
                ..Default::default()
            },
            updates: None,
            channels: vec![ChannelState {
                id: 1_000_000_555,
                access_hash: -42,
                pts: 17,
            }],
        };
        record.session.auth_keys.insert(2, Secret::new([0xab; 256]));
        record.updates = Some(UpdateState {
            pts: 5,
            qts: 0,
            date: 9,
            seq: 1,
        });
        let all: BTreeMap<_, _> = [
            ("ws_1".to_owned(), record),
            ("ws_2".to_owned(), BotRecord::default()),
        ]
        .into();
        let text = encode(&all);
        assert_eq!(decode(&text).unwrap(), all);
        let odd: BTreeMap<_, _> = [("ws \"q\"\n".to_owned(), BotRecord::default())].into();
        assert_eq!(decode(&encode(&odd)).unwrap(), odd);
    }

    #[test]
    fn damaged_files_are_refused_clearly() {
        assert!(decode("{").unwrap_err().starts_with("not JSON"));
        assert_eq!(
            decode(r#"{"version": 2}"#).unwrap_err(),
            "unknown version (expected 1)"
        );
        let bad_key = r#"{"version": 1, "bots": {"ws": {"auth_keys": {"2": "abcd"}}}}"#;
        assert_eq!(
            decode(bad_key).unwrap_err(),
            "bot \"ws\": an auth key is not 512 hex digits"
        );
    }
}
