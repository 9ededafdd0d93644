//! What of a bot must survive a restart, and the commits that change it.
//!
//! A bot's [`BotRecord`] has two parts that change at very different rates: its MTProto
//! session (home DC, auth keys, login; written a handful of times in a bot's life) and its
//! update state (pts and friends; moved by every message). A [`Commit`] carries only the
//! parts that changed, together with the messages the new update state covers, so that a
//! store writes the messages and the state that says "these are handled" in one
//! transaction, or neither.

use std::collections::BTreeMap;
use std::fmt;

use crate::secret::Secret;
use crate::updates::{IncomingMessage, UpdateState};

/// A bot's MTProto session. Auth keys are secrets: `Debug` shows only their DCs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionRecord {
    pub home_dc: Option<i32>,
    pub auth_keys: BTreeMap<i32, Secret<[u8; 256]>>,
    /// The home DC's key is logged in as the bot.
    pub authorized: bool,
    pub user_id: Option<i64>,
    pub username: Option<String>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("home_dc", &self.home_dc)
            .field("auth_keys", &self.auth_keys.keys().collect::<Vec<_>>())
            .field("authorized", &self.authorized)
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .finish()
    }
}

/// Everything of one bot that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotRecord {
    pub session: SessionRecord,
    /// `None` until the bot has taken its first state from Telegram.
    pub updates: Option<UpdateState>,
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
    /// The messages received since the last commit, oldest first. `updates` covers them:
    /// once the commit is written, a restart does not fetch them again.
    pub messages: Vec<IncomingMessage>,
}

impl Commit {
    /// Whether the commit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.session.is_none() && self.updates.is_none() && self.messages.is_empty()
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
