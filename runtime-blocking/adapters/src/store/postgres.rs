//! The production store: PostgreSQL through the blocking `postgres` crate, one
//! connection per user (the state writer, the store watcher, an admin command).
//! Migrations run in one transaction under an advisory transaction lock, so that two
//! pods migrating at once take turns. A batch of commits is one transaction of a few
//! statements whatever its size (rows go as arrays through `unnest`), and so is a batch
//! of voice outcomes.
//!
//! The connection is made on first use, checked before each later use, and made again
//! when it broke: a database restart costs the calls made while the database was down
//! (they fail with [`StoreError::Unavailable`]), and the next one works. Statements go
//! with their parameter types (`query_typed`), so each is one round trip, with no
//! statement to prepare first.

mod batch;
mod outbox;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::Type;
use postgres::{Client, Config, IsolationLevel, NoTls};
use telegram_bots_core::record::{ChannelState, Commit};
use telegram_bots_core::secret::{Secret, SecretUrl};
use telegram_bots_core::updates::UpdateState;
use telegram_bots_core::voice::{VoiceJob, VoiceKey};

use super::outbox::{RawRow, Rows};
use super::schema::{NOTIFY_CHANNEL, POSTGRES, VERSION};
use super::{
    Backlog, Integration, Migrated, RecordRows, Sealer, SessionRow, Store, StoreError,
    VoiceOutcome, VoiceRow, check_version, reseal,
};

/// How long making a connection may take before the call fails (unless the URL sets
/// `connect_timeout`), and checking a kept one: an unreachable host must not hold the
/// state writer for minutes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run, and a connection may go unanswered, before the call
/// fails (and is retried).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `pg_advisory_xact_lock` key `migrate` holds ("tgbotsmg"): a fixed number, so that
/// every process of every version takes the same lock.
pub const MIGRATION_LOCK: i64 = 0x7467_626f_7473_6d67;

pub struct PostgresStore {
    url: SecretUrl,
    sealer: Sealer,
    /// The connection of every call but [`Store::wait_for_change`]; `None` before the
    /// first call and after it broke.
    client: Option<Client>,
    /// A connection that has run `LISTEN`, for [`Store::wait_for_change`].
    listener: Option<Client>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url.redacted())
            .field("connected", &self.client.is_some())
            .field("listening", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store on `url`; connects on first use (and again after the connection is lost).
    pub fn new(url: SecretUrl, sealer: Sealer) -> PostgresStore {
        PostgresStore {
            url,
            sealer,
            client: None,
            listener: None,
        }
    }

    fn unavailable(&self, e: &postgres::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "PostgreSQL {}: {}",
            self.url.redacted(),
            describe(e)
        ))
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut config: Config = self
            .url
            .expose()
            .parse()
            .map_err(|e| self.unavailable(&e))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A server that goes silent in the middle of a query must not hold the writer
        // (and with it every commit) until TCP gives up.
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(10))
            .tcp_user_timeout(QUERY_TIMEOUT);
        if config.get_options().is_none() {
            config.options(&format!(
                "-c statement_timeout={}",
                QUERY_TIMEOUT.as_millis()
            ));
        }
        config.connect(NoTls).map_err(|e| self.unavailable(&e))
    }

    /// Runs `f` on the connection, made first if there is none or the one kept from an
    /// earlier call has broken. A kept connection is checked first with an empty query
    /// (one round trip): that finds a connection a database restart ended while it sat
    /// idle, or a server gone silent (within [`CONNECT_TIMEOUT`]). The outer error is a
    /// failure to connect, the inner one `f`'s.
    fn with_client<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &Sealer) -> Result<T, postgres::Error>,
    ) -> Result<Result<T, postgres::Error>, StoreError> {
        if let Some(client) = &mut self.client
            && client.is_valid(CONNECT_TIMEOUT).is_err()
        {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(self.connect()?);
        }
        let client = self.client.as_mut().expect("connected above");
        Ok(f(client, &self.sealer))
    }

    /// [`Self::with_client`] where every error is the database's unavailability.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &Sealer) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.with_client(f)?.map_err(|e| self.unavailable(&e))
    }

    /// Runs `sql` (parameters: the workspace, then `value`) in a transaction that is
    /// kept only if it changed a row: a statement-level trigger counts an integration
    /// change even for a statement that matched nothing.
    fn change_one(
        &mut self,
        workspace_id: &str,
        sql: &str,
        value: Option<(&(dyn postgres::types::ToSql + Sync), Type)>,
    ) -> Result<(), StoreError> {
        let changed = self.call(|client, _| {
            let mut tx = client.transaction()?;
            let mut params: Vec<(&(dyn postgres::types::ToSql + Sync), Type)> =
                vec![(&workspace_id, Type::TEXT)];
            params.extend(value);
            let changed = tx.execute_typed(sql, &params)?;
            if changed == 0 {
                tx.rollback()?;
            } else {
                tx.commit()?;
            }
            Ok(changed)
        })?;
        if changed == 0 {
            return Err(StoreError::UnknownWorkspace(workspace_id.to_owned()));
        }
        Ok(())
    }

    /// The outbox's `which` rows, oldest first, at most `limit`.
    fn read_outbox(
        &mut self,
        which: Rows,
        limit: Option<usize>,
    ) -> Result<Vec<VoiceRow>, StoreError> {
        let raw: Vec<RawRow> = self.call(|client, _| outbox::read(client, which, limit))?;
        raw.into_iter()
            .map(|row| {
                row.into_row().map_err(|e| {
                    StoreError::Unavailable(format!("PostgreSQL {}: {e}", self.url.redacted()))
                })
            })
            .collect()
    }

    /// A connection that listens for integration changes.
    fn listen(&self) -> Result<Client, StoreError> {
        let mut client = self.connect()?;
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .map_err(|e| self.unavailable(&e))?;
        Ok(client)
    }
}

/// The server's own message and SQLSTATE where there is one (`Display` says only "db
/// error"), else the error and its causes ("error connecting to server: Connection
/// refused").
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The schema's version, 0 before the first migration (without creating anything).
fn schema_version(client: &mut Client) -> Result<i64, postgres::Error> {
    let exists: bool = client
        .query_typed_one(
            "SELECT to_regclass('telegram_bots_schema') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_typed_one(
            "SELECT COALESCE(MAX(version), 0)::int8 FROM telegram_bots_schema",
            &[],
        )?
        .get(0))
}

impl Store for PostgresStore {
    fn migrate(&mut self) -> Result<Migrated, StoreError> {
        let from = self.call(|client, _| {
            let mut tx = client.transaction()?;
            tx.execute_typed(
                "SELECT pg_advisory_xact_lock($1)",
                &[(&MIGRATION_LOCK, Type::INT8)],
            )?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS telegram_bots_schema (version bigint NOT NULL)",
            )?;
            let from: i64 = tx
                .query_typed_one(
                    "SELECT COALESCE(MAX(version), 0)::int8 FROM telegram_bots_schema",
                    &[],
                )?
                .get(0);
            if from > VERSION {
                tx.rollback()?;
                return Ok(from);
            }
            for v in from + 1..=VERSION {
                tx.batch_execute(POSTGRES[v as usize - 1])?;
                tx.execute_typed(
                    "INSERT INTO telegram_bots_schema (version) VALUES ($1)",
                    &[(&v, Type::INT8)],
                )?;
            }
            tx.commit()?;
            Ok(from)
        })?;
        if from > VERSION {
            return Err(StoreError::SchemaTooNew {
                found: from,
                known: VERSION,
            });
        }
        Ok(Migrated { from, to: VERSION })
    }

    fn check_schema(&mut self) -> Result<(), StoreError> {
        let found = self.call(|client, _| schema_version(client))?;
        check_version(found)
    }

    fn integrations(&mut self) -> Result<Vec<Integration>, StoreError> {
        type Rows = BTreeMap<String, (String, bool, Option<String>, RecordRows)>;
        let rows: Rows = self.call(|client, _| {
            // One snapshot for the five reads.
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let mut rows = Rows::new();
            for r in tx.query_typed(
                "SELECT workspace_id, token_sealed, enabled, last_error FROM telegram_bots_integrations",
                &[],
            )? {
                rows.insert(
                    r.get(0),
                    (r.get(1), r.get(2), r.get(3), RecordRows::default()),
                );
            }
            for r in tx.query_typed(
                "SELECT workspace_id, home_dc, authorized, user_id, username FROM telegram_bots_sessions",
                &[],
            )? {
                if let Some(row) = rows.get_mut(r.get::<_, &str>(0)) {
                    row.3.session = Some(SessionRow {
                        home_dc: r.get(1),
                        authorized: r.get(2),
                        user_id: r.get(3),
                        username: r.get(4),
                    });
                }
            }
            for r in tx.query_typed(
                "SELECT workspace_id, dc, key_sealed FROM telegram_bots_auth_keys ORDER BY workspace_id, dc",
                &[],
            )? {
                if let Some(row) = rows.get_mut(r.get::<_, &str>(0)) {
                    row.3.auth_keys.push((r.get(1), r.get(2)));
                }
            }
            for r in tx.query_typed(
                "SELECT workspace_id, pts, qts, date, seq FROM telegram_bots_update_state",
                &[],
            )? {
                if let Some(row) = rows.get_mut(r.get::<_, &str>(0)) {
                    row.3.updates = Some(UpdateState {
                        pts: r.get(1),
                        qts: r.get(2),
                        date: r.get(3),
                        seq: r.get(4),
                    });
                }
            }
            for r in tx.query_typed(
                "SELECT workspace_id, channel_id, access_hash, pts FROM telegram_bots_channels
                 ORDER BY workspace_id, channel_id",
                &[],
            )? {
                if let Some(row) = rows.get_mut(r.get::<_, &str>(0)) {
                    row.3.channels.push(ChannelState {
                        id: r.get(1),
                        access_hash: r.get(2),
                        pts: r.get(3),
                    });
                }
            }
            tx.commit()?;
            Ok(rows)
        })?;
        Ok(rows
            .into_iter()
            .map(|(ws, (token, enabled, last_error, record))| Integration {
                token: self.sealer.open_token(&ws, &token),
                record: record.open(&self.sealer, &ws),
                workspace_id: ws,
                enabled,
                last_error,
            })
            .collect())
    }

    fn integrations_version(&mut self) -> Result<i64, StoreError> {
        self.call(|client, _| {
            Ok(client
                .query_typed_one(
                    "SELECT integrations FROM telegram_bots_changes WHERE id = 1",
                    &[],
                )?
                .get(0))
        })
    }

    /// One transaction of a few statements ([`batch::write`]).
    fn write(&mut self, batch: &[(String, Commit)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.call(|client, sealer| {
            let mut tx = client.transaction()?;
            batch::write(&mut tx, sealer, batch)?;
            tx.commit()
        })
    }

    fn note_error(&mut self, notes: &[(String, Option<String>)]) -> Result<(), StoreError> {
        if notes.is_empty() {
            return Ok(());
        }
        // The last note of a workspace wins, as when they are applied in order.
        let last: BTreeMap<&str, Option<&str>> = notes
            .iter()
            .map(|(ws, error)| (ws.as_str(), error.as_deref()))
            .collect();
        let workspaces: Vec<&str> = last.keys().copied().collect();
        let errors: Vec<Option<&str>> = last.values().copied().collect();
        self.call(|client, _| {
            client.execute_typed(
                "UPDATE telegram_bots_integrations AS i SET last_error = n.error
                 FROM unnest($1::text[], $2::text[]) AS n(workspace_id, error)
                 WHERE i.workspace_id = n.workspace_id",
                &[(&workspaces, Type::TEXT_ARRAY), (&errors, Type::TEXT_ARRAY)],
            )?;
            Ok(())
        })
    }

    fn add(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError> {
        let result = self.with_client(|client, sealer| {
            let sealed = sealer.seal(token.expose().as_bytes());
            client.execute_typed(
                "INSERT INTO telegram_bots_integrations (workspace_id, token_sealed) VALUES ($1, $2)",
                &[(&workspace_id, Type::TEXT), (&sealed, Type::TEXT)],
            )
        })?;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::Duplicate(workspace_id.to_owned()))
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn set_enabled(&mut self, workspace_id: &str, enabled: bool) -> Result<(), StoreError> {
        self.change_one(
            workspace_id,
            "UPDATE telegram_bots_integrations SET enabled = $2, updated_at = now()
             WHERE workspace_id = $1",
            Some((&enabled, Type::BOOL)),
        )
    }

    fn remove(&mut self, workspace_id: &str) -> Result<(), StoreError> {
        self.change_one(
            workspace_id,
            "DELETE FROM telegram_bots_integrations WHERE workspace_id = $1",
            None,
        )
    }

    fn set_token(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError> {
        let sealed = self.sealer.seal(token.expose().as_bytes());
        self.change_one(
            workspace_id,
            "UPDATE telegram_bots_integrations SET token_sealed = $2, last_error = NULL,
             updated_at = now() WHERE workspace_id = $1",
            Some((&sealed, Type::TEXT)),
        )
    }

    /// Reads every sealed value locked (`FOR UPDATE`: a token set or a key written
    /// meanwhile is not overwritten with its predecessor), reseals here, and writes
    /// back what changed in one statement per table.
    fn rotate_key(&mut self) -> Result<usize, StoreError> {
        self.call(|client, sealer| {
            let mut tx = client.transaction()?;
            let mut token_ws = Vec::new();
            let mut tokens = Vec::new();
            for r in tx.query_typed(
                "SELECT workspace_id, token_sealed FROM telegram_bots_integrations
                 ORDER BY workspace_id FOR UPDATE",
                &[],
            )? {
                let ws: String = r.get(0);
                if let Some(resealed) = reseal(sealer, &ws, "the bot token", r.get(1)) {
                    token_ws.push(ws);
                    tokens.push(resealed);
                }
            }
            let (mut key_ws, mut key_dc, mut keys) = (Vec::new(), Vec::new(), Vec::new());
            for r in tx.query_typed(
                "SELECT workspace_id, dc, key_sealed FROM telegram_bots_auth_keys
                 ORDER BY workspace_id, dc FOR UPDATE",
                &[],
            )? {
                let ws: String = r.get(0);
                if let Some(resealed) = reseal(sealer, &ws, "an auth key", r.get(2)) {
                    key_ws.push(ws);
                    key_dc.push(r.get::<_, i32>(1));
                    keys.push(resealed);
                }
            }
            if !tokens.is_empty() {
                tx.execute_typed(
                    "UPDATE telegram_bots_integrations AS i SET token_sealed = t.sealed
                     FROM unnest($1::text[], $2::text[]) AS t(workspace_id, sealed)
                     WHERE i.workspace_id = t.workspace_id",
                    &[(&token_ws, Type::TEXT_ARRAY), (&tokens, Type::TEXT_ARRAY)],
                )?;
            }
            if !keys.is_empty() {
                tx.execute_typed(
                    "UPDATE telegram_bots_auth_keys AS k SET key_sealed = t.sealed
                     FROM unnest($1::text[], $2::int4[], $3::text[]) AS t(workspace_id, dc, sealed)
                     WHERE k.workspace_id = t.workspace_id AND k.dc = t.dc",
                    &[
                        (&key_ws, Type::TEXT_ARRAY),
                        (&key_dc, Type::INT4_ARRAY),
                        (&keys, Type::TEXT_ARRAY),
                    ],
                )?;
            }
            tx.commit()?;
            Ok(tokens.len() + keys.len())
        })
    }

    fn voice_pending(&mut self, limit: usize) -> Result<Vec<VoiceJob>, StoreError> {
        let rows = self.read_outbox(Rows::Pending, Some(limit))?;
        Ok(rows.into_iter().map(|row| row.job).collect())
    }

    /// One statement ([`outbox::finish`]).
    fn voice_finish(&mut self, outcomes: &[(VoiceKey, VoiceOutcome)]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.call(|client, _| {
            let mut tx = client.transaction()?;
            outbox::finish(&mut tx, outcomes)?;
            tx.commit()
        })
    }

    fn voice_list(&mut self, failed_only: bool) -> Result<Vec<VoiceRow>, StoreError> {
        self.read_outbox(if failed_only { Rows::Failed } else { Rows::All }, None)
    }

    fn voice_retry_failed(&mut self) -> Result<usize, StoreError> {
        self.call(|client, _| outbox::retry_failed(client))
    }

    fn voice_backlog(&mut self) -> Result<Backlog, StoreError> {
        self.call(|client, _| outbox::backlog(client))
    }

    /// Waits on a connection that has run `LISTEN`. Without one (the first call, or
    /// after it broke) the call listens and returns at once: a change made before went
    /// unheard, and the caller's comparison of [`Store::integrations_version`] catches
    /// it. Trouble with the database is not an error: the call returns after `timeout`,
    /// and the next one tries again.
    fn wait_for_change(&mut self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        if let Some(listener) = &mut self.listener {
            let heard = listener.notifications().timeout_iter(timeout).next();
            let why = match heard {
                Ok(Some(_)) => {
                    // One wake-up for what arrived together.
                    while let Ok(Some(_)) = listener.notifications().iter().next() {}
                    return Ok(());
                }
                Ok(None) if !listener.is_closed() => return Ok(()),
                Ok(None) => "connection closed".to_owned(),
                Err(e) => describe(&e),
            };
            tracing::warn!(
                "PostgreSQL {}: the connection listening for integration changes broke ({why}); \
                 listening again",
                self.url.redacted()
            );
            self.listener = None;
        }
        match self.listen() {
            Ok(listener) => self.listener = Some(listener),
            Err(_) => std::thread::sleep(deadline.saturating_duration_since(Instant::now())),
        }
        Ok(())
    }
}
