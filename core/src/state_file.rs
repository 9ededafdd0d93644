//! The local state file: every bot's [`BotSnapshot`] by workspace id, as JSON. Where the
//! runtimes keep what must survive a restart until the PostgreSQL store takes over. It
//! holds auth keys: the runtime writes it readable by the owner only.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::bot::BotSnapshot;
use crate::secret::Secret;
use crate::updates::UpdateState;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

pub fn encode(snapshots: &BTreeMap<String, BotSnapshot>) -> String {
    let bots: Map<String, Value> = snapshots
        .iter()
        .map(|(ws, s)| {
            let keys: Map<String, Value> =
                s.auth_keys.iter().map(|(dc, key)| (dc.to_string(), hex(key.expose()).into())).collect();
            let bot = json!({
                "home_dc": s.home_dc,
                "auth_keys": keys,
                "authorized": s.authorized,
                "user_id": s.user_id,
                "username": s.username,
                "updates": s.updates.map(|u| json!({"pts": u.pts, "qts": u.qts, "date": u.date, "seq": u.seq})),
            });
            (ws.clone(), bot)
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "version": 1, "bots": bots }))
        .expect("JSON values serialize")
}

/// Reads a state file; an error names what is wrong (never a key).
pub fn decode(text: &str) -> Result<BTreeMap<String, BotSnapshot>, String> {
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
        let mut snapshot = BotSnapshot {
            home_dc: bot["home_dc"].as_i64().map(|d| d as i32),
            authorized: bot["authorized"].as_bool().unwrap_or(false),
            user_id: bot["user_id"].as_i64(),
            username: bot["username"].as_str().map(str::to_owned),
            ..BotSnapshot::default()
        };
        for (dc, key) in bot["auth_keys"].as_object().into_iter().flatten() {
            let dc: i32 = dc.parse().map_err(|_| bad("a DC id is not a number"))?;
            let key: [u8; 256] = key
                .as_str()
                .and_then(unhex)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| bad("an auth key is not 512 hex digits"))?;
            snapshot.auth_keys.insert(dc, Secret::new(key));
        }
        if let Some(u) = bot["updates"].as_object() {
            let field = |k: &str| {
                u.get(k)
                    .and_then(Value::as_i64)
                    .map(|v| v as i32)
                    .ok_or_else(|| bad("bad update state"))
            };
            snapshot.updates = Some(UpdateState {
                pts: field("pts")?,
                qts: field("qts")?,
                date: field("date")?,
                seq: field("seq")?,
            });
        }
        out.insert(ws.clone(), snapshot);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip() {
        let mut snapshot = BotSnapshot {
            home_dc: Some(2),
            authorized: true,
            user_id: Some(7),
            username: Some("b".into()),
            ..Default::default()
        };
        snapshot.auth_keys.insert(2, Secret::new([0xab; 256]));
        snapshot.updates = Some(UpdateState {
            pts: 5,
            qts: 0,
            date: 9,
            seq: 1,
        });
        let all: BTreeMap<_, _> = [
            ("ws_1".to_owned(), snapshot),
            ("ws_2".to_owned(), BotSnapshot::default()),
        ]
        .into();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
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
