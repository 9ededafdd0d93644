//! What the fake Telegram knows: bots and their tokens, users, chats, each bot's update
//! state and log, stored files, auth keys, live connections, scripted faults and the
//! counters tests read. One `World` serves every DC of a set, as Telegram's accounts
//! span its DCs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use grammers_tl_types::enums;
use smol::channel::Sender;

use super::channels::Channel;
use super::fault::{Fault, FaultKind};
pub use super::files::StoredFile;
pub use super::messages::{Content, LogEntry, NewMessage, Sent, VoiceForm, hex, voice_bytes};
use super::salts::{Salts, now_millis};
use super::settings::Settings;
use super::tl_defaults;

pub type UserId = i64;
pub type ConnId = u64;

/// Something the world asks a live connection to do.
#[derive(Clone, Debug)]
pub enum Push {
    /// Send this boxed `Updates` object.
    Updates(Vec<u8>),
    /// Close the connection: politely (FIN) or with a reset (RST).
    Close { reset: bool },
}

#[derive(Clone, Debug)]
pub struct Bot {
    pub user_id: UserId,
    pub username: String,
    pub token: String,
    pub access_hash: i64,
    pub home_dc: i32,
    pub revoked: bool,
    pub pts: i32,
    /// The common `seq` of the `updates` / `updatesCombined` pushed to the bot.
    pub seq: i32,
    pub date: i32,
    pub next_message_id: i32,
    /// Messages by pts, oldest first.
    pub log: Vec<LogEntry>,
    /// When the bot logged in lately (`login_limit` per `login_window`).
    pub recent_logins: Vec<Instant>,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub access_hash: i64,
    pub first_name: String,
}

#[derive(Clone, Debug)]
pub struct AuthKey {
    pub key: Box<[u8; 256]>,
    pub dc: i32,
    pub salts: Salts,
    /// The bot this key is logged in as.
    pub bot: Option<UserId>,
    /// Made by a handshake here (not registered as a stored session).
    pub from_handshake: bool,
    /// The bot whose handshake count this key is in (the first it logged in as).
    pub counted_for: Option<UserId>,
    /// The connection, and its peer address, of the key's latest message.
    pub last_sender: Option<(ConnId, IpAddr)>,
    /// `initConnection` was called on this key (its client info is saved).
    pub initialized: bool,
}

impl AuthKey {
    /// A key made by a handshake here, or registered as a stored session.
    pub fn new(key: Box<[u8; 256]>, dc: i32, first_salt: i64, from_handshake: bool) -> AuthKey {
        AuthKey {
            key,
            dc,
            salts: Salts::new(first_salt, now_millis()),
            bot: None,
            from_handshake,
            counted_for: None,
            last_sender: None,
            initialized: false,
        }
    }
}

/// A live connection, as the world sees it.
#[derive(Clone, Debug)]
pub struct Conn {
    pub dc: i32,
    /// The client's address: one auth key may be used from one address at a time.
    pub peer: IpAddr,
    pub key_id: Option<i64>,
    pub session_id: Option<i64>,
    /// When the client last sent a message here (updates go to a session's most recently
    /// active connection).
    pub last_active: Instant,
    /// An API call not in `invokeWithoutUpdates` (and not a file method) subscribed this
    /// connection to updates.
    pub subscribed: bool,
    pub push: Sender<Push>,
}

impl Conn {
    /// A connection from 127.0.0.1 (in-memory tests have no socket).
    pub fn new(dc: i32, push: Sender<Push>) -> Conn {
        Conn::from_peer(dc, IpAddr::V4(Ipv4Addr::LOCALHOST), push)
    }

    pub fn from_peer(dc: i32, peer: IpAddr, push: Sender<Push>) -> Conn {
        Conn {
            dc,
            peer,
            key_id: None,
            session_id: None,
            last_active: Instant::now(),
            subscribed: false,
            push,
        }
    }
}

/// Counters for tests.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub handshakes: u64,
    pub connections_total: u64,
    pub auth_key_conflicts: u64,
    pub files_served: u64,
    pub logins: HashMap<UserId, u64>,
    pub messages_pushed: HashMap<UserId, u64>,
    /// Handshakes whose key then logged in as the bot.
    pub handshakes_by_bot: HashMap<UserId, u64>,
    pub files_served_by_bot: HashMap<UserId, u64>,
    /// Client messages that arrived as `gzip_packed`.
    pub gzipped_requests: u64,
    /// API calls by method name.
    pub calls: BTreeMap<&'static str, u64>,
    /// The most client sessions logged in as the bot at once.
    pub peak_sessions: HashMap<UserId, u64>,
    /// The most distinct peer addresses of those sessions at once.
    pub peak_peers: HashMap<UserId, u64>,
}

#[derive(Debug, Default)]
pub struct World {
    pub dcs: BTreeMap<i32, SocketAddr>,
    pub bots: BTreeMap<UserId, Bot>,
    pub users: HashMap<UserId, User>,
    pub channels: BTreeMap<i64, Channel>,
    pub files: HashMap<i64, StoredFile>,
    pub keys: HashMap<i64, AuthKey>,
    pub conns: HashMap<ConnId, Conn>,
    pub faults: Vec<Fault>,
    pub stats: Stats,
    pub settings: Settings,
    /// auth.exportAuthorization tokens: bytes -> (user, target dc).
    pub exported: HashMap<Vec<u8>, (UserId, i32)>,
    /// Registered applications: api_id -> api_hash.
    pub apps: BTreeMap<i32, String>,
    /// Pushes a `reorder_updates` fault holds back until the bot's next one.
    pub held_pushes: HashMap<UserId, Vec<enums::Updates>>,
    next_id: i64,
}

impl World {
    /// A fresh id for users, documents and access hashes (never 0).
    pub fn fresh_id(&mut self) -> i64 {
        self.next_id += 1;
        0x5eed_0000_0000 + self.next_id * 7919
    }

    /// Where [`World::fresh_id`] is, for a snapshot.
    pub(super) fn next_id(&self) -> i64 {
        self.next_id
    }

    pub(super) fn set_next_id(&mut self, next_id: i64) {
        self.next_id = next_id;
    }

    pub fn first_dc(&self) -> i32 {
        self.dcs.keys().next().copied().unwrap_or(1)
    }

    /// Registers an application: Telegram's `api_hash` is 32 hex digits.
    pub fn add_app(&mut self, api_id: i32, api_hash: &str) -> Result<(), String> {
        if api_id <= 0 || api_hash.len() != 32 || !api_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("an app is a positive api_id and a 32-hex-digit api_hash".into());
        }
        if self.apps.contains_key(&api_id) {
            return Err(format!("api_id {api_id} is registered"));
        }
        self.apps.insert(api_id, api_hash.to_owned());
        Ok(())
    }

    /// Registers a bot. As with Telegram's tokens, the numeric prefix before ':' is the
    /// bot's user id: a token without one, or whose id is taken, is refused.
    pub fn add_bot(
        &mut self,
        token: &str,
        username: &str,
        home_dc: Option<i32>,
    ) -> Result<UserId, String> {
        let username = username.trim_start_matches('@');
        if token.is_empty() || username.is_empty() {
            return Err("token and username are required".into());
        }
        if self
            .bots
            .values()
            .any(|b| b.token == token || b.username.eq_ignore_ascii_case(username))
        {
            return Err(format!(
                "a bot with this token or username @{username} exists"
            ));
        }
        let home_dc = home_dc.unwrap_or_else(|| self.first_dc());
        if !self.dcs.contains_key(&home_dc) {
            return Err(format!("no DC {home_dc}"));
        }
        let user_id = match token.split_once(':') {
            Some((id, secret)) if !secret.is_empty() => id
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("the token's prefix {id:?} is no user id"))?,
            _ => return Err("a bot token is `<user id>:<secret>`".into()),
        };
        if self.users.contains_key(&user_id) || self.bots.contains_key(&user_id) {
            return Err(format!("user id {user_id} (the token's prefix) is taken"));
        }
        let access_hash = self.fresh_id();
        self.bots.insert(
            user_id,
            Bot {
                user_id,
                username: username.to_owned(),
                token: token.to_owned(),
                access_hash,
                home_dc,
                revoked: false,
                pts: 1,
                seq: 0,
                date: now_unix(),
                next_message_id: 1,
                log: Vec::new(),
                recent_logins: Vec::new(),
            },
        );
        Ok(user_id)
    }

    pub fn bot_by_username(&self, username: &str) -> Option<&Bot> {
        let username = username.trim_start_matches('@');
        self.bots
            .values()
            .find(|b| b.username.eq_ignore_ascii_case(username))
    }

    pub fn bot_by_token(&self, token: &str) -> Option<&Bot> {
        self.bots.values().find(|b| b.token == token)
    }

    pub(super) fn ensure_user(&mut self, id: UserId) {
        if !self.users.contains_key(&id) && !self.bots.contains_key(&id) {
            let access_hash = self.fresh_id();
            self.users.insert(
                id,
                User {
                    id,
                    access_hash,
                    first_name: format!("User {id}"),
                },
            );
        }
    }

    /// The TL user object of a bot (`is_self` when it is the asking bot).
    pub fn bot_user(&self, bot: &Bot, is_self: bool) -> enums::User {
        let mut u = tl_defaults::user(bot.user_id);
        u.is_self = is_self;
        u.bot = true;
        // `bot` and `bot_info_version` share flag 14: set both.
        u.bot_info_version = Some(1);
        u.access_hash = Some(bot.access_hash);
        u.first_name = Some(bot.username.clone());
        u.username = Some(bot.username.clone());
        enums::User::User(u)
    }

    pub fn user_object(&self, id: UserId) -> Option<enums::User> {
        if let Some(bot) = self.bots.get(&id) {
            return Some(self.bot_user(bot, false));
        }
        let user = self.users.get(&id)?;
        let mut u = tl_defaults::user(id);
        u.access_hash = Some(user.access_hash);
        u.first_name = Some(user.first_name.clone());
        Some(enums::User::User(u))
    }

    pub fn chat_object(&self, chat_id: i64) -> enums::Chat {
        let chat = tl_defaults::chat(
            chat_id,
            format!("Chat {chat_id}"),
            enums::ChatPhoto::Empty,
            2,
            now_unix(),
            1,
        );
        enums::Chat::Chat(chat)
    }

    /// Sends `push` to the sessions Telegram would push to: on the bot's home DC (not one
    /// that only imported an authorization for downloads), logged in as the bot,
    /// subscribed (not only `invokeWithoutUpdates` and file calls), each on its most
    /// recently active connection. A close goes to every connection of the bot.
    pub fn push_to_bot(&mut self, bot_id: UserId, push: Push) {
        let logged_in = |conn: &Conn| {
            conn.key_id
                .and_then(|k| self.keys.get(&k))
                .is_some_and(|k| k.bot == Some(bot_id))
        };
        if matches!(push, Push::Close { .. }) {
            for conn in self.conns.values().filter(|c| logged_in(c)) {
                let _ = conn.push.try_send(push.clone());
            }
            return;
        }
        let home = self.bots.get(&bot_id).map(|b| b.home_dc);
        let mut targets: HashMap<(i64, i64), &Conn> = HashMap::new();
        for conn in self.conns.values() {
            let (Some(key_id), Some(session_id)) = (conn.key_id, conn.session_id) else {
                continue;
            };
            if !logged_in(conn) || !conn.subscribed || Some(conn.dc) != home {
                continue;
            }
            let best = targets.entry((key_id, session_id)).or_insert(conn);
            if conn.last_active > best.last_active {
                *best = conn;
            }
        }
        let pushed = targets
            .values()
            .filter(|conn| conn.push.try_send(push.clone()).is_ok())
            .count() as u64;
        *self.stats.messages_pushed.entry(bot_id).or_default() += pushed;
    }

    /// Removes and returns the first matching scripted fault (counting down `times`).
    pub fn take_fault(
        &mut self,
        kind: FaultKind,
        bot: Option<UserId>,
        method: Option<&str>,
    ) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.matches(kind, bot, method))?;
        let fault = self.faults[i].clone();
        if self.faults[i].times <= 1 {
            self.faults.remove(i);
        } else {
            self.faults[i].times -= 1;
        }
        Some(fault)
    }

    /// Applies a fault: the immediate ones now, the others when they match.
    pub fn add_fault(&mut self, fault: Fault) -> Result<(), String> {
        let bot = match &fault.bot {
            Some(name) => Some(
                self.bot_by_username(name)
                    .ok_or_else(|| format!("no bot @{name}"))?
                    .user_id,
            ),
            None => None,
        };
        match fault.kind {
            FaultKind::DropConnections | FaultKind::ResetConnections => {
                let reset = fault.kind == FaultKind::ResetConnections;
                match bot {
                    Some(bot) => self.push_to_bot(bot, Push::Close { reset }),
                    None => {
                        for conn in self.conns.values() {
                            let _ = conn.push.try_send(Push::Close { reset });
                        }
                    }
                }
            }
            FaultKind::RevokeToken => {
                let bot = bot.ok_or("revoke_token needs a bot")?;
                self.bots.get_mut(&bot).expect("looked up").revoked = true;
                // Telegram logs every session of a revoked bot out.
                for key in self.keys.values_mut() {
                    if key.bot == Some(bot) {
                        key.bot = None;
                    }
                }
            }
            _ => self.faults.push(Fault {
                bot_id: bot,
                ..fault
            }),
        }
        Ok(())
    }

    /// Registers a key as if a handshake had made it, logged in as `bot` if given.
    pub fn add_auth_key(&mut self, dc: i32, key: [u8; 256], bot: Option<UserId>) -> i64 {
        let id = super::crypto::auth_key_id(&key);
        let salt = i64::from_le_bytes(super::crypto::random::<8>());
        let mut entry = AuthKey::new(Box::new(key), dc, salt, false);
        entry.bot = bot;
        entry.counted_for = bot;
        self.keys.insert(id, entry);
        id
    }

    /// The salt the server wants now from key `key_id`.
    pub fn current_salt(&self, key_id: i64) -> Option<i64> {
        let key = self.keys.get(&key_id)?;
        Some(key.salts.current(now_millis(), self.settings.salt_period))
    }

    /// Logs key `key_id` in as `bot`. A key made by a handshake counts as one handshake
    /// of the first bot it logs in as.
    pub fn log_in(&mut self, key_id: i64, bot: UserId) {
        if let Some(key) = self.keys.get_mut(&key_id) {
            key.bot = Some(bot);
            if key.from_handshake && key.counted_for.is_none() {
                key.counted_for = Some(bot);
                *self.stats.handshakes_by_bot.entry(bot).or_default() += 1;
            }
        }
        self.note_sessions(bot);
    }

    /// The bot's live client sessions (distinct auth key and session id on live
    /// connections whose key is logged in as the bot) and their distinct peer addresses.
    pub fn live_sessions(&self, bot: UserId) -> (usize, usize) {
        let mut sessions = HashSet::new();
        let mut peers = HashSet::new();
        for conn in self.conns.values() {
            let (Some(key_id), Some(session_id)) = (conn.key_id, conn.session_id) else {
                continue;
            };
            if self.keys.get(&key_id).is_some_and(|k| k.bot == Some(bot)) {
                sessions.insert((key_id, session_id));
                peers.insert(conn.peer);
            }
        }
        (sessions.len(), peers.len())
    }

    /// Records the bot's live sessions and peer addresses if they are at a new peak: call
    /// after anything that can add a session of the bot.
    pub fn note_sessions(&mut self, bot: UserId) {
        let (sessions, peers) = self.live_sessions(bot);
        let peak = self.stats.peak_sessions.entry(bot).or_default();
        *peak = (*peak).max(sessions as u64);
        let peak = self.stats.peak_peers.entry(bot).or_default();
        *peak = (*peak).max(peers as u64);
    }

    pub fn stats_json(&self) -> serde_json::Value {
        let per_bot = |map: &HashMap<UserId, u64>| -> serde_json::Map<String, serde_json::Value> {
            self.bots
                .values()
                .map(|b| {
                    (
                        b.username.clone(),
                        map.get(&b.user_id).copied().unwrap_or(0).into(),
                    )
                })
                .collect()
        };
        let live_by_bot: serde_json::Map<String, serde_json::Value> = self
            .bots
            .values()
            .map(|b| {
                let n = self
                    .conns
                    .values()
                    .filter(|c| {
                        c.key_id
                            .and_then(|k| self.keys.get(&k))
                            .is_some_and(|k| k.bot == Some(b.user_id))
                    })
                    .count();
                (b.username.clone(), n.into())
            })
            .collect();
        let current =
            |pick: fn((usize, usize)) -> usize| -> serde_json::Map<String, serde_json::Value> {
                self.bots
                    .values()
                    .map(|b| {
                        (
                            b.username.clone(),
                            pick(self.live_sessions(b.user_id)).into(),
                        )
                    })
                    .collect()
            };
        serde_json::json!({
            "logins": per_bot(&self.stats.logins),
            "handshakes_by_bot": per_bot(&self.stats.handshakes_by_bot),
            "files_served_by_bot": per_bot(&self.stats.files_served_by_bot),
            "messages_pushed": per_bot(&self.stats.messages_pushed),
            "live_connections": live_by_bot,
            "live_sessions": current(|(sessions, _)| sessions),
            "peer_addresses": current(|(_, peers)| peers),
            "peak_live_sessions": per_bot(&self.stats.peak_sessions),
            "peak_peer_addresses": per_bot(&self.stats.peak_peers),
            "handshakes": self.stats.handshakes,
            "connections": self.conns.len(),
            "connections_total": self.stats.connections_total,
            "auth_key_conflicts": self.stats.auth_key_conflicts,
            "files_served": self.stats.files_served,
            "gzipped_requests": self.stats.gzipped_requests,
            "calls": self.stats.calls,
            "auth_keys": self.keys.len(),
        })
    }
}

pub fn now_unix() -> i32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i32)
}
