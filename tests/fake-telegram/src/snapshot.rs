//! The world's durable part as JSON, so that a fake DC set can stop and start again as
//! Telegram does for its clients: the same bots, users and chats, message boxes at the
//! same pts with their history, the files of those messages, and the auth keys with
//! their logins. The service's demo keeps one across runs, which is what lets its second
//! run resume every stored session with no new login.
//!
//! Left out, as a restart of Telegram's own would lose them: live connections, salts
//! (keys get new ones; clients follow `bad_server_salt`), scripted faults, settings,
//! exported authorizations, held pushes and the counters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use grammers_tl_types::{Deserializable as _, Serializable as _, enums};
use serde_json::{Value, json};

use super::channels::Channel;
use super::crypto::{random, sha256};
use super::messages::{Event, LogEntry, hex};
use super::world::{AuthKey, Bot, StoredFile, User, World};

const VERSION: u64 = 1;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| format!("{what}: not base64"))
}

fn int(v: &Value, what: &str) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| format!("{what}: not an integer"))
}

fn int32(v: &Value, what: &str) -> Result<i32, String> {
    i32::try_from(int(v, what)?).map_err(|_| format!("{what}: out of range"))
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{what}: not a string"))
}

fn list<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{what}: not a list"))
}

fn log_json(log: &[LogEntry]) -> Value {
    log.iter()
        .map(|e| {
            let mut entry = json!({"pts": e.pts, "pts_count": e.pts_count, "date": e.date});
            match &e.event {
                Event::Message { message, from } => {
                    let tl = enums::Message::Message((**message).clone()).to_bytes();
                    entry["message"] = b64(&tl).into();
                    entry["from"] = json!(from);
                }
                Event::Deleted(ids) => entry["deleted"] = json!(ids),
            }
            entry
        })
        .collect()
}

fn log_from(v: &Value) -> Result<Vec<LogEntry>, String> {
    list(v, "log")?
        .iter()
        .map(|e| {
            let event = if let Some(ids) = e.get("deleted") {
                Event::Deleted(
                    list(ids, "deleted")?
                        .iter()
                        .map(|id| int32(id, "deleted id"))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                let tl = unb64(&e["message"], "message")?;
                let message = match enums::Message::from_bytes(&tl) {
                    Ok(enums::Message::Message(m)) => m,
                    _ => return Err("message: not a TL message".into()),
                };
                Event::Message {
                    message: Box::new(message),
                    from: e["from"].as_i64(),
                }
            };
            Ok(LogEntry {
                pts: int32(&e["pts"], "pts")?,
                pts_count: int32(&e["pts_count"], "pts_count")?,
                date: int32(&e["date"], "date")?,
                event,
            })
        })
        .collect()
}

fn ids(v: &Value, what: &str) -> Result<BTreeSet<i64>, String> {
    list(v, what)?.iter().map(|id| int(id, what)).collect()
}

impl World {
    /// The durable part of the world (see the module's doc). File contents are kept
    /// once per distinct content.
    pub fn snapshot(&self) -> Value {
        let mut blobs = BTreeMap::new();
        // Sorted, so that the same world always gives the same file.
        let mut files: Vec<&StoredFile> = self.files.values().collect();
        files.sort_by_key(|f| f.id);
        let mut users: Vec<&User> = self.users.values().collect();
        users.sort_by_key(|u| u.id);
        let mut keys: Vec<(&i64, &AuthKey)> = self.keys.iter().collect();
        keys.sort_by_key(|(id, _)| **id);
        let files: Vec<Value> = files
            .into_iter()
            .map(|f| {
                let sha = hex(&sha256(&[&f.bytes]));
                blobs.entry(sha.clone()).or_insert_with(|| b64(&f.bytes));
                json!({
                    "id": f.id, "access_hash": f.access_hash, "dc": f.dc, "sha256": sha,
                    "receivers": f.receivers, "reference_secret": b64(&f.reference_secret),
                })
            })
            .collect();
        json!({
            "version": VERSION,
            "next_id": self.next_id(),
            "apps": self.apps,
            "bots": self.bots.values().map(|b| json!({
                "user_id": b.user_id, "username": b.username, "token": b.token,
                "access_hash": b.access_hash, "home_dc": b.home_dc, "revoked": b.revoked,
                "pts": b.pts, "seq": b.seq, "date": b.date,
                "next_message_id": b.next_message_id, "log": log_json(&b.log),
            })).collect::<Vec<_>>(),
            "users": users.into_iter().map(|u| json!({
                "id": u.id, "access_hash": u.access_hash, "first_name": u.first_name,
            })).collect::<Vec<_>>(),
            "channels": self.channels.values().map(|c| json!({
                "id": c.id, "access_hash": c.access_hash, "title": c.title,
                "megagroup": c.megagroup, "members": c.members, "pts": c.pts, "date": c.date,
                "next_message_id": c.next_message_id, "log": log_json(&c.log),
            })).collect::<Vec<_>>(),
            "files": files,
            "blobs": blobs,
            "keys": keys.into_iter().map(|(id, k)| json!({
                "id": id, "key": b64(&k.key[..]), "dc": k.dc, "bot": k.bot,
                "from_handshake": k.from_handshake, "counted_for": k.counted_for,
                "initialized": k.initialized,
            })).collect::<Vec<_>>(),
        })
    }

    /// Takes back what [`World::snapshot`] saved; the DCs' addresses stay this world's
    /// (a key on a DC this set does not have is dropped). On an error nothing changes.
    pub fn restore(&mut self, v: &Value) -> Result<(), String> {
        if v["version"].as_u64() != Some(VERSION) {
            return Err(format!("not a version {VERSION} snapshot"));
        }
        let mut apps = BTreeMap::new();
        for (id, hash) in v["apps"].as_object().ok_or("apps: not an object")? {
            let id = id
                .parse()
                .map_err(|_| format!("apps: {id:?} is no api_id"))?;
            apps.insert(id, text(hash, "api_hash")?);
        }
        let mut bots = BTreeMap::new();
        for b in list(&v["bots"], "bots")? {
            let bot = Bot {
                user_id: int(&b["user_id"], "user_id")?,
                username: text(&b["username"], "username")?,
                token: text(&b["token"], "token")?,
                access_hash: int(&b["access_hash"], "access_hash")?,
                home_dc: int32(&b["home_dc"], "home_dc")?,
                revoked: b["revoked"].as_bool().unwrap_or(false),
                pts: int32(&b["pts"], "pts")?,
                seq: int32(&b["seq"], "seq")?,
                date: int32(&b["date"], "date")?,
                next_message_id: int32(&b["next_message_id"], "next_message_id")?,
                log: log_from(&b["log"])?,
                recent_logins: Vec::new(),
            };
            bots.insert(bot.user_id, bot);
        }
        let mut users = HashMap::new();
        for u in list(&v["users"], "users")? {
            let user = User {
                id: int(&u["id"], "user id")?,
                access_hash: int(&u["access_hash"], "access_hash")?,
                first_name: text(&u["first_name"], "first_name")?,
            };
            users.insert(user.id, user);
        }
        let mut channels = BTreeMap::new();
        for c in list(&v["channels"], "channels")? {
            let channel = Channel {
                id: int(&c["id"], "channel id")?,
                access_hash: int(&c["access_hash"], "access_hash")?,
                title: text(&c["title"], "title")?,
                megagroup: c["megagroup"].as_bool().unwrap_or(false),
                members: ids(&c["members"], "members")?,
                pts: int32(&c["pts"], "pts")?,
                date: int32(&c["date"], "date")?,
                next_message_id: int32(&c["next_message_id"], "next_message_id")?,
                log: log_from(&c["log"])?,
            };
            channels.insert(channel.id, channel);
        }
        let mut blobs = HashMap::new();
        for (sha, bytes) in v["blobs"].as_object().ok_or("blobs: not an object")? {
            blobs.insert(sha.clone(), Arc::new(unb64(bytes, "blob")?));
        }
        let mut files = HashMap::new();
        for f in list(&v["files"], "files")? {
            let sha = text(&f["sha256"], "sha256")?;
            let file = StoredFile {
                id: int(&f["id"], "file id")?,
                access_hash: int(&f["access_hash"], "access_hash")?,
                dc: int32(&f["dc"], "dc")?,
                bytes: blobs.get(&sha).ok_or("a file without its blob")?.clone(),
                receivers: ids(&f["receivers"], "receivers")?,
                reference_secret: unb64(&f["reference_secret"], "reference_secret")?
                    .try_into()
                    .map_err(|_| "reference_secret: not 8 bytes")?,
            };
            files.insert(file.id, file);
        }
        let mut keys = HashMap::new();
        for k in list(&v["keys"], "keys")? {
            let dc = int32(&k["dc"], "dc")?;
            if !self.dcs.contains_key(&dc) {
                continue;
            }
            let bytes: [u8; 256] = unb64(&k["key"], "key")?
                .try_into()
                .map_err(|_| "key: not 256 bytes")?;
            let salt = i64::from_le_bytes(random());
            let mut key = AuthKey::new(Box::new(bytes), dc, salt, k["from_handshake"] == true);
            key.bot = k["bot"].as_i64();
            key.counted_for = k["counted_for"].as_i64();
            key.initialized = k["initialized"] == true;
            keys.insert(int(&k["id"], "key id")?, key);
        }
        let next_id = int(&v["next_id"], "next_id")?;
        self.apps = apps;
        self.bots = bots;
        self.users = users;
        self.channels = channels;
        self.files = files;
        self.keys = keys;
        self.set_next_id(next_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_world_snapshots_the_same() {
        let mut world = World::default();
        world.dcs.insert(1, "127.0.0.1:1".parse().expect("valid"));
        world.add_bot("100:secret", "alpha_bot", None).expect("bot");
        let voice = |seed| super::super::messages::Content::Voice {
            size: 5000,
            duration: 2,
            mime_type: "audio/ogg".into(),
            seed,
            bytes: None,
            dc: None,
            form: Default::default(),
        };
        for (chat, content) in [
            (7, voice(1)),
            (8, voice(1)),
            (7, super::super::messages::Content::Text("hi".into())),
        ] {
            world
                .send_message(super::super::messages::NewMessage {
                    bot: "alpha_bot".into(),
                    chat_id: chat,
                    from_user_id: chat,
                    content,
                })
                .expect("sent");
        }
        let group = world.add_channel("g", true, &["alpha_bot"]).expect("group");
        world
            .send_channel_message(super::super::channels::ChannelPost {
                channel_id: group,
                from_user_id: Some(7),
                content: voice(2),
            })
            .expect("posted");
        let user = world.bot_by_username("alpha_bot").map(|b| b.user_id);
        world.add_auth_key(1, [3; 256], user);
        let snapshot = world.snapshot();
        assert_eq!(snapshot["files"].as_array().map(Vec::len), Some(3));
        assert_eq!(snapshot["blobs"].as_object().map(|b| b.len()), Some(2));
        assert_eq!(snapshot["bots"][0]["log"].as_array().map(Vec::len), Some(3));
        let mut again = World::default();
        again.dcs = world.dcs.clone();
        again.restore(&snapshot).expect("restores");
        assert!(again.snapshot() == snapshot, "the restored world differs");
        assert!(again.restore(&json!({"version": 99})).is_err());
    }

    #[test]
    fn a_bad_snapshot_changes_nothing() {
        let mut world = World::default();
        world.add_bot("100:secret", "alpha_bot", Some(1)).ok();
        let before = world.snapshot();
        let mut broken = before.clone();
        broken["bots"] = json!([{"user_id": "x"}]);
        assert!(world.restore(&broken).is_err());
        assert_eq!(world.snapshot(), before);
    }
}
