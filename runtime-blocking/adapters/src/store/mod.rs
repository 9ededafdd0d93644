//! The store: integrations (one bot per workspace, its token sealed), each bot's session
//! (home DC, auth keys sealed, login, who it is), its update state and its channels, and
//! the voice outbox (a row per voice message until it is stored and announced). In
//! PostgreSQL in production ([`postgres`]), in an embedded SQLite file otherwise
//! ([`sqlite`]); both behind [`Store`], both passing one test suite.
//!
//! Blocking, like the `postgres` and `rusqlite` crates: the runtimes call it from the
//! state writer's thread, the store watcher's thread and the admin commands, never from
//! an executor. Sealing (XSalsa20-Poly1305) is the core's [`Keyring`]; nonces come from
//! the operating system here.

mod outbox;
mod place;
pub mod postgres;
pub mod schema;
pub mod sqlite;

pub use self::place::{KEY_FILE, Place, SQLITE_FILE, StorePlace};

pub(crate) use self::outbox::now_ms;

use std::fmt;

use telegram_bots_core::record::{BotRecord, ChannelState, Commit, SessionRecord};
use telegram_bots_core::seal::Keyring;
use telegram_bots_core::secret::Secret;
use telegram_bots_core::updates::UpdateState;
pub use telegram_bots_core::voice::VoiceOutcome;
use telegram_bots_core::voice::{VoiceJob, VoiceKey};

use crate::clock::OsRandom;

/// What went wrong, for an operator: names the workspace or the database, never a
/// secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The database cannot be reached or answered with an error (retry later).
    Unavailable(String),
    /// The schema is newer than this build knows.
    SchemaTooNew { found: i64, known: i64 },
    /// The schema has not been created or upgraded (`telegram-bots migrate`).
    NotMigrated { found: i64, known: i64 },
    /// `integrations add` for a workspace that has one.
    Duplicate(String),
    /// A command for a workspace that has none.
    UnknownWorkspace(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(e) => f.write_str(e),
            StoreError::SchemaTooNew { found, known } => write!(
                f,
                "the database's schema is version {found}, newer than this build knows ({known}): run a newer telegram-bots"
            ),
            StoreError::NotMigrated { found, known } => write!(
                f,
                "the database's schema is version {found}, this build needs {known}: run `telegram-bots migrate`"
            ),
            StoreError::Duplicate(ws) => write!(f, "workspace {ws:?} already has an integration"),
            StoreError::UnknownWorkspace(ws) => write!(f, "no integration for workspace {ws:?}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// One integration as the fleet and the admin commands see it.
#[derive(Clone, Debug)]
pub struct Integration {
    pub workspace_id: String,
    pub enabled: bool,
    /// The bot token, or why it cannot be read (a key that does not open it).
    pub token: Result<Secret<String>, String>,
    /// Session, update state and channels, as the last commit left them. Auth keys that
    /// do not open are left out (the bot makes new ones).
    pub record: BotRecord,
    /// What the service last reported about the bot (a rejected token, say).
    pub last_error: Option<String>,
}

/// What a migration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// A store of integrations and bot state. Every method is one transaction.
pub trait Store: Send + 'static {
    /// Creates or upgrades the schema to [`schema::VERSION`]; a newer one is refused.
    /// Safe to run from two processes at once.
    fn migrate(&mut self) -> Result<Migrated, StoreError>;

    /// Checks that the schema is the one this build knows (for `run`).
    fn check_schema(&mut self) -> Result<(), StoreError>;

    /// Every integration, enabled or not, in workspace order.
    fn integrations(&mut self) -> Result<Vec<Integration>, StoreError>;

    /// A number that changes whenever an integration is added, removed, enabled,
    /// disabled or given a new token (by this process or any other).
    fn integrations_version(&mut self) -> Result<i64, StoreError>;

    /// Writes the fleet's commits, all or none: the new state and, in the same
    /// transaction, an outbox row for each voice message the commit covers (a message
    /// already in the outbox is left as it is). A commit for a workspace whose
    /// integration is gone is dropped (its bot is being stopped).
    fn write(&mut self, batch: &[(String, Commit)]) -> Result<(), StoreError>;

    /// Records the bot's latest trouble (or `None` once it runs), for `integrations list`.
    fn note_error(&mut self, notes: &[(String, Option<String>)]) -> Result<(), StoreError>;

    fn add(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError>;
    fn set_enabled(&mut self, workspace_id: &str, enabled: bool) -> Result<(), StoreError>;
    /// Removes the integration with its session and state.
    fn remove(&mut self, workspace_id: &str) -> Result<(), StoreError>;
    /// A new token; the session stays (a token of another bot starts afresh anyway).
    fn set_token(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError>;
    /// Rewrites every sealed value under the current key; how many were rewritten.
    fn rotate_key(&mut self) -> Result<usize, StoreError>;

    /// Voice messages still to store and announce (the outbox's pending rows), oldest
    /// first, at most `limit`: what a crash left behind is resumed from here.
    fn voice_pending(&mut self, limit: usize) -> Result<Vec<VoiceJob>, StoreError>;

    /// Records what became of voice messages, all or none. A done outcome applies to any
    /// row; a failed or retry one only to a row still pending (a row done meanwhile stays
    /// done). A message given twice counts its last outcome; one without a row (its
    /// integration removed) is skipped.
    fn voice_finish(&mut self, outcomes: &[(VoiceKey, VoiceOutcome)]) -> Result<(), StoreError>;

    /// The outbox's rows (only the failed ones with `failed_only`), oldest first.
    fn voice_list(&mut self, failed_only: bool) -> Result<Vec<VoiceRow>, StoreError>;

    /// Makes every failed row pending again; how many.
    fn voice_retry_failed(&mut self) -> Result<usize, StoreError>;

    /// The outbox's backlog: how many rows are pending, and when the oldest of them was
    /// received (Unix milliseconds), for `/metrics`.
    fn voice_backlog(&mut self) -> Result<Backlog, StoreError>;

    /// Waits until integrations may have changed, or `timeout` (whichever is first); the
    /// caller then compares [`Store::integrations_version`]. By default it just waits.
    fn wait_for_change(&mut self, timeout: std::time::Duration) -> Result<(), StoreError> {
        std::thread::sleep(timeout);
        Ok(())
    }
}

/// The outbox's pending rows, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    /// When the oldest pending row was received (Unix milliseconds).
    pub oldest_ms: Option<i64>,
}

/// An outbox row, for `outbox list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceRow {
    pub job: VoiceJob,
    /// `pending`, `done` or `failed`.
    pub status: String,
    pub last_error: Option<String>,
    pub object_key: Option<String>,
}

impl Store for Box<dyn Store> {
    fn migrate(&mut self) -> Result<Migrated, StoreError> {
        (**self).migrate()
    }
    fn check_schema(&mut self) -> Result<(), StoreError> {
        (**self).check_schema()
    }
    fn integrations(&mut self) -> Result<Vec<Integration>, StoreError> {
        (**self).integrations()
    }
    fn integrations_version(&mut self) -> Result<i64, StoreError> {
        (**self).integrations_version()
    }
    fn write(&mut self, batch: &[(String, Commit)]) -> Result<(), StoreError> {
        (**self).write(batch)
    }
    fn note_error(&mut self, notes: &[(String, Option<String>)]) -> Result<(), StoreError> {
        (**self).note_error(notes)
    }
    fn add(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError> {
        (**self).add(workspace_id, token)
    }
    fn set_enabled(&mut self, workspace_id: &str, enabled: bool) -> Result<(), StoreError> {
        (**self).set_enabled(workspace_id, enabled)
    }
    fn remove(&mut self, workspace_id: &str) -> Result<(), StoreError> {
        (**self).remove(workspace_id)
    }
    fn set_token(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError> {
        (**self).set_token(workspace_id, token)
    }
    fn rotate_key(&mut self) -> Result<usize, StoreError> {
        (**self).rotate_key()
    }
    fn voice_pending(&mut self, limit: usize) -> Result<Vec<VoiceJob>, StoreError> {
        (**self).voice_pending(limit)
    }
    fn voice_finish(&mut self, outcomes: &[(VoiceKey, VoiceOutcome)]) -> Result<(), StoreError> {
        (**self).voice_finish(outcomes)
    }
    fn voice_list(&mut self, failed_only: bool) -> Result<Vec<VoiceRow>, StoreError> {
        (**self).voice_list(failed_only)
    }
    fn voice_retry_failed(&mut self) -> Result<usize, StoreError> {
        (**self).voice_retry_failed()
    }
    fn voice_backlog(&mut self) -> Result<Backlog, StoreError> {
        (**self).voice_backlog()
    }
    fn wait_for_change(&mut self, timeout: std::time::Duration) -> Result<(), StoreError> {
        (**self).wait_for_change(timeout)
    }
}

/// Whether a schema of version `found` is the one this build needs (for
/// [`Store::check_schema`]).
pub fn check_version(found: i64) -> Result<(), StoreError> {
    match found {
        v if v == schema::VERSION => Ok(()),
        v if v > schema::VERSION => Err(StoreError::SchemaTooNew {
            found: v,
            known: schema::VERSION,
        }),
        v => Err(StoreError::NotMigrated {
            found: v,
            known: schema::VERSION,
        }),
    }
}

/// Sealing and opening, the same for every back end.
#[derive(Clone, Debug)]
pub struct Sealer {
    keyring: Keyring,
}

impl Sealer {
    pub fn new(keyring: Keyring) -> Sealer {
        Sealer { keyring }
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        telegram_bots_core::random::Random::fill(&mut OsRandom, &mut nonce);
        self.keyring.seal(plaintext, nonce)
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The token, or why it does not open (naming the workspace).
    pub fn open_token(&self, workspace_id: &str, sealed: &str) -> Result<Secret<String>, String> {
        self.keyring
            .open(sealed)
            .map_err(|e| format!("integration {workspace_id}: the bot token {e}"))
            .and_then(|plain| {
                String::from_utf8(plain.expose().clone())
                    .map(Secret::new)
                    .map_err(|_| {
                        format!("integration {workspace_id}: the bot token is not text (wrong ENCRYPTION_KEY?)")
                    })
            })
    }

    /// An auth key, or `None` (with a warning) when it does not open: the bot makes a new
    /// one rather than fail.
    pub fn open_auth_key(
        &self,
        workspace_id: &str,
        dc: i32,
        sealed: &str,
    ) -> Option<Secret<[u8; 256]>> {
        match self.keyring.open(sealed) {
            Ok(plain) => <[u8; 256]>::try_from(plain.expose().as_slice())
                .ok()
                .map(Secret::new),
            Err(e) => {
                tracing::warn!(
                    workspace_id = %workspace_id,
                    dc,
                    error = %e,
                    "integration {workspace_id}: the auth key for DC {dc} {e}; the bot makes a new one"
                );
                None
            }
        }
    }
}

/// A bot's record as rows: what a back end reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordRows {
    pub session: Option<SessionRow>,
    /// `(dc, sealed key)`.
    pub auth_keys: Vec<(i32, String)>,
    pub updates: Option<UpdateState>,
    pub channels: Vec<ChannelState>,
}

/// The session's columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRow {
    pub home_dc: Option<i32>,
    pub authorized: bool,
    pub user_id: Option<i64>,
    pub username: Option<String>,
}

impl RecordRows {
    /// The record, its auth keys opened.
    pub fn open(self, sealer: &Sealer, workspace_id: &str) -> BotRecord {
        let mut session = SessionRecord::default();
        if let Some(row) = self.session {
            session.home_dc = row.home_dc;
            session.authorized = row.authorized;
            session.user_id = row.user_id;
            session.username = row.username;
        }
        for (dc, sealed) in &self.auth_keys {
            if let Some(key) = sealer.open_auth_key(workspace_id, *dc, sealed) {
                session.auth_keys.insert(*dc, key);
            }
        }
        if session
            .auth_keys
            .get(&session.home_dc.unwrap_or(0))
            .is_none()
        {
            // A login belongs to a key: without the key there is none.
            session.authorized = false;
        }
        BotRecord {
            session,
            updates: self.updates,
            channels: self.channels,
        }
    }
}

/// A session as its row and sealed keys.
pub fn session_rows(sealer: &Sealer, session: &SessionRecord) -> (SessionRow, Vec<(i32, String)>) {
    let row = SessionRow {
        home_dc: session.home_dc,
        authorized: session.authorized,
        user_id: session.user_id,
        username: session.username.clone(),
    };
    let keys = session
        .auth_keys
        .iter()
        .map(|(dc, key)| (*dc, sealer.seal(key.expose())))
        .collect();
    (row, keys)
}

/// `sealed` under the current key, if it is not already; `None` (with a warning) when it
/// does not open with any key.
pub(crate) fn reseal(
    sealer: &Sealer,
    workspace_id: &str,
    what: &str,
    sealed: &str,
) -> Option<String> {
    if sealer.keyring().is_current(sealed) {
        return None;
    }
    match sealer.keyring().open(sealed) {
        Ok(plain) => Some(sealer.seal(plain.expose())),
        Err(e) => {
            tracing::warn!(
                workspace_id = %workspace_id,
                error = %e,
                "integration {workspace_id}: {what} {e}; left as it is"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_rows_and_a_key_that_does_not_open_is_dropped() {
        let sealer = Sealer::new(Keyring::new([1; 32], None));
        let mut session = SessionRecord {
            home_dc: Some(2),
            authorized: true,
            user_id: Some(7),
            username: Some("bot".into()),
            ..SessionRecord::default()
        };
        session.auth_keys.insert(2, Secret::new([5; 256]));
        let (row, keys) = session_rows(&sealer, &session);
        let rows = RecordRows {
            session: Some(row),
            auth_keys: keys,
            updates: None,
            channels: vec![],
        };
        assert_eq!(rows.clone().open(&sealer, "ws").session, session);
        let other = Sealer::new(Keyring::new([2; 32], None));
        let opened = rows.open(&other, "ws");
        assert!(opened.session.auth_keys.is_empty());
        assert!(!opened.session.authorized, "no key, no login");
    }
}
