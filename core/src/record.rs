//! What of a bot must survive a restart, and the commits that change it.
//!
//! A bot's [`BotRecord`] has two parts that change at very different rates: its MTProto
//! session (home DC, auth keys, login; written a handful of times in a bot's life) and its
//! update state (pts and friends; moved by every message). A [`Commit`] carries only the
//! parts that changed, together with the messages the new update state covers, so that a
//! store writes the messages and the state that says "these are handled" in one
//! transaction, or neither.

use std::fmt;

use crate::secret::Secret;
use crate::updates::{IncomingMessage, UpdateState};

/// A bot's auth keys by DC: usually one, rarely two. A vector, not a `BTreeMap`, whose
/// smallest node has room for eleven 256-byte keys: ten thousand bots keep a few copies
/// of this each.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthKeys(Vec<(i32, Secret<[u8; 256]>)>);

impl AuthKeys {
    pub fn get(&self, dc: &i32) -> Option<&Secret<[u8; 256]>> {
        self.0.iter().find(|(d, _)| d == dc).map(|(_, k)| k)
    }

    pub fn contains_key(&self, dc: &i32) -> bool {
        self.get(dc).is_some()
    }

    pub fn insert(&mut self, dc: i32, key: Secret<[u8; 256]>) {
        self.remove(&dc);
        self.0.push((dc, key));
        self.0.sort_by_key(|(d, _)| *d);
        self.0.shrink_to_fit();
    }

    pub fn remove(&mut self, dc: &i32) {
        self.0.retain(|(d, _)| d != dc);
    }

    /// The DCs, in order.
    pub fn keys(&self) -> impl Iterator<Item = &i32> {
        self.0.iter().map(|(d, _)| d)
    }

    /// The keys by DC, in DC order.
    pub fn iter(&self) -> impl Iterator<Item = (&i32, &Secret<[u8; 256]>)> {
        self.0.iter().map(|(d, k)| (d, k))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::ops::Index<&i32> for AuthKeys {
    type Output = Secret<[u8; 256]>;

    fn index(&self, dc: &i32) -> &Self::Output {
        self.get(dc).expect("a key for this DC")
    }
}

impl fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys()).finish()
    }
}

/// A bot's MTProto session. Auth keys are secrets: `Debug` shows only their DCs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionRecord {
    pub home_dc: Option<i32>,
    pub auth_keys: AuthKeys,
    /// The home DC's key is logged in as the bot.
    pub authorized: bool,
    pub user_id: Option<i64>,
    pub username: Option<String>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("home_dc", &self.home_dc)
            .field("auth_keys", &self.auth_keys)
            .field("authorized", &self.authorized)
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .finish()
    }
}

/// A supergroup or channel the bot is in: Telegram numbers its updates with a pts of its
/// own, and `updates.getChannelDifference` needs the access hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelState {
    pub id: i64,
    pub access_hash: i64,
    pub pts: i32,
}

/// Everything of one bot that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotRecord {
    pub session: SessionRecord,
    /// `None` until the bot has taken its first state from Telegram.
    pub updates: Option<UpdateState>,
    /// The supergroups and channels the bot has heard from, by id.
    pub channels: Vec<ChannelState>,
}

impl BotRecord {
    /// The record after `commit`.
    pub fn apply(&mut self, commit: &Commit) {
        if let Some(session) = &commit.session {
            self.session = session.clone();
        }
        if let Some(updates) = commit.updates {
            self.updates = Some(updates);
        }
        if let Some(channels) = &commit.channels {
            self.channels = channels.clone();
        }
    }

    pub fn channel(&self, id: i64) -> Option<&ChannelState> {
        self.channels.iter().find(|c| c.id == id)
    }
}

/// Identifies a commit among one bot's commits (increasing).
pub type CommitId = u64;

/// A change to a bot's record and the messages it covers. The store writes it whole or
/// not at all, then reports which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub id: CommitId,
    /// The new session, when it changed since the last commit.
    pub session: Option<SessionRecord>,
    /// The new update state, when it changed since the last commit.
    pub updates: Option<UpdateState>,
    /// Every channel's state, when one changed since the last commit.
    pub channels: Option<Vec<ChannelState>>,
    /// The messages received since the last commit, oldest first. `updates` covers them:
    /// once the commit is written, a restart does not fetch them again.
    pub messages: Vec<IncomingMessage>,
}

impl Commit {
    /// Whether the commit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.session.is_none()
            && self.updates.is_none()
            && self.channels.is_none()
            && self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_replaces_only_what_it_carries() {
        let mut record = BotRecord::default();
        record.session.username = Some("bot1".into());
        let state = UpdateState {
            pts: 7,
            ..UpdateState::default()
        };
        record.apply(&Commit {
            id: 1,
            session: None,
            updates: Some(state),
            channels: None,
            messages: vec![],
        });
        assert_eq!(record.session.username.as_deref(), Some("bot1"));
        assert_eq!(record.updates, Some(state));
    }

    #[test]
    fn debug_hides_auth_keys() {
        let mut session = SessionRecord::default();
        session.auth_keys.insert(2, Secret::new([0xab; 256]));
        let debug = format!("{session:?}");
        assert!(debug.contains("auth_keys: [2]"), "{debug}");
        assert!(!debug.contains("171"), "{debug}");
    }
}
