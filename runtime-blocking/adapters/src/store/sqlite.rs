//! The embedded store: one SQLite file (bundled SQLite, WAL, `synchronous = FULL` so that
//! a committed transaction survives a power cut), for a service that runs without
//! PostgreSQL. One process writes it; the admin commands may open it at the same time
//! (SQLite serialises writers; each waits up to [`BUSY_TIMEOUT`]).

mod outbox;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use telegram_bots_core::record::{ChannelState, Commit};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::updates::UpdateState;
use telegram_bots_core::voice::{VoiceJob, VoiceKey};

use super::outbox::{RawRow, Rows, now_ms, voice_jobs};
use super::schema::{SQLITE, VERSION};
use super::{
    Backlog, Integration, Migrated, RecordRows, Sealer, SessionRow, Store, StoreError,
    VoiceOutcome, VoiceRow, check_version, reseal, session_rows,
};

/// How long a write waits for another connection's transaction.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteStore {
    conn: Connection,
    sealer: Sealer,
    path: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file, owner-only: it holds sealed secrets.
    pub fn open(path: &Path, sealer: Sealer) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let fail = |e: rusqlite::Error| StoreError::Unavailable(format!("SQLite {shown}: {e}"));
        let conn = Connection::open(path).map_err(fail)?;
        set_private(path).map_err(|e| StoreError::Unavailable(format!("SQLite {shown}: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(fail)?;
        Ok(SqliteStore {
            conn,
            sealer,
            path: shown,
        })
    }

    fn fail(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Unavailable(format!("SQLite {}: {e}", self.path))
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS telegram_bots_schema (version INTEGER NOT NULL)",
            )
            .map_err(|e| self.fail(e))?;
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM telegram_bots_schema",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.fail(e))
    }

    /// Runs `f` in one immediate (writing) transaction.
    fn write_tx<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &Sealer) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| StoreError::Unavailable(format!("SQLite {path}: {e}"));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let value = f(&tx, &self.sealer).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(value)
    }

    /// The outbox's `which` rows, oldest first, at most `limit`.
    fn read_outbox(
        &mut self,
        which: Rows,
        limit: Option<usize>,
    ) -> Result<Vec<VoiceRow>, StoreError> {
        let raw: Vec<RawRow> = outbox::read(&self.conn, which, limit).map_err(|e| self.fail(e))?;
        raw.into_iter()
            .map(|row| {
                row.into_row()
                    .map_err(|e| StoreError::Unavailable(format!("SQLite {}: {e}", self.path)))
            })
            .collect()
    }

    /// `UPDATE ... WHERE workspace_id = ?` that must hit a row.
    fn update_one(
        &mut self,
        workspace_id: &str,
        sql: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<(), StoreError> {
        let changed = self.write_tx(|tx, _| tx.execute(sql, params![value, workspace_id]))?;
        if changed == 0 {
            return Err(StoreError::UnknownWorkspace(workspace_id.to_owned()));
        }
        Ok(())
    }
}

fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

impl Store for SqliteStore {
    fn migrate(&mut self) -> Result<Migrated, StoreError> {
        self.version()?;
        let migrated = self.write_tx(|tx, _| {
            let from: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM telegram_bots_schema",
                [],
                |r| r.get(0),
            )?;
            if from <= VERSION {
                for v in from + 1..=VERSION {
                    tx.execute_batch(SQLITE[v as usize - 1])?;
                    tx.execute("INSERT INTO telegram_bots_schema VALUES (?1)", [v])?;
                }
            }
            Ok(from)
        })?;
        if migrated > VERSION {
            return Err(StoreError::SchemaTooNew {
                found: migrated,
                known: VERSION,
            });
        }
        Ok(Migrated {
            from: migrated,
            to: VERSION,
        })
    }

    fn check_schema(&mut self) -> Result<(), StoreError> {
        let exists = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'telegram_bots_schema'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.fail(e))?
            .is_some();
        let found = if exists {
            self.conn
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM telegram_bots_schema",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| self.fail(e))?
        } else {
            0
        };
        check_version(found)
    }

    fn integrations(&mut self) -> Result<Vec<Integration>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| StoreError::Unavailable(format!("SQLite {path}: {e}"));
        let tx = self.conn.transaction().map_err(fail)?;
        let mut rows: BTreeMap<String, (String, bool, Option<String>, RecordRows)> =
            BTreeMap::new();
        let mut read = || -> Result<(), rusqlite::Error> {
            let mut q = tx.prepare(
                "SELECT workspace_id, token_sealed, enabled, last_error FROM telegram_bots_integrations",
            )?;
            for r in q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
                let (ws, token, enabled, error): (String, String, bool, Option<String>) = r?;
                rows.insert(ws, (token, enabled, error, RecordRows::default()));
            }
            let mut q = tx.prepare(
                "SELECT workspace_id, home_dc, authorized, user_id, username FROM telegram_bots_sessions",
            )?;
            for r in q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    SessionRow {
                        home_dc: r.get(1)?,
                        authorized: r.get(2)?,
                        user_id: r.get(3)?,
                        username: r.get(4)?,
                    },
                ))
            })? {
                let (ws, session) = r?;
                if let Some(row) = rows.get_mut(&ws) {
                    row.3.session = Some(session);
                }
            }
            let mut q = tx.prepare(
                "SELECT workspace_id, dc, key_sealed FROM telegram_bots_auth_keys ORDER BY workspace_id, dc",
            )?;
            for r in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))? {
                let (ws, dc, key) = r?;
                if let Some(row) = rows.get_mut(&ws) {
                    row.3.auth_keys.push((dc, key));
                }
            }
            let mut q = tx.prepare(
                "SELECT workspace_id, pts, qts, date, seq FROM telegram_bots_update_state",
            )?;
            for r in q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    UpdateState {
                        pts: r.get(1)?,
                        qts: r.get(2)?,
                        date: r.get(3)?,
                        seq: r.get(4)?,
                    },
                ))
            })? {
                let (ws, state) = r?;
                if let Some(row) = rows.get_mut(&ws) {
                    row.3.updates = Some(state);
                }
            }
            let mut q = tx.prepare(
                "SELECT workspace_id, channel_id, access_hash, pts FROM telegram_bots_channels ORDER BY workspace_id, channel_id",
            )?;
            for r in q.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    ChannelState {
                        id: r.get(1)?,
                        access_hash: r.get(2)?,
                        pts: r.get(3)?,
                    },
                ))
            })? {
                let (ws, channel) = r?;
                if let Some(row) = rows.get_mut(&ws) {
                    row.3.channels.push(channel);
                }
            }
            Ok(())
        };
        read().map_err(fail)?;
        tx.commit().map_err(fail)?;
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
        // Asked every second by the store watcher: prepared once, not parsed each time.
        self.conn
            .prepare_cached("SELECT integrations FROM telegram_bots_changes WHERE id = 1")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.fail(e))
    }

    fn write(&mut self, batch: &[(String, Commit)]) -> Result<(), StoreError> {
        let jobs = voice_jobs(batch, now_ms());
        self.write_tx(|tx, sealer| {
            let mut present = BTreeSet::new();
            for (ws, commit) in batch {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM telegram_bots_integrations WHERE workspace_id = ?1")?
                    .query_row([ws], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    continue;
                }
                present.insert(ws.as_str());
                if let Some(session) = &commit.session {
                    let (row, keys) = session_rows(sealer, session);
                    tx.prepare_cached(
                        "INSERT INTO telegram_bots_sessions VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (workspace_id) DO UPDATE SET home_dc = ?2, authorized = ?3,
                         user_id = ?4, username = ?5",
                    )?
                    .execute(params![ws, row.home_dc, row.authorized, row.user_id, row.username])?;
                    tx.prepare_cached("DELETE FROM telegram_bots_auth_keys WHERE workspace_id = ?1")?
                        .execute([ws])?;
                    for (dc, key) in keys {
                        tx.prepare_cached("INSERT INTO telegram_bots_auth_keys VALUES (?1, ?2, ?3)")?
                            .execute(params![ws, dc, key])?;
                    }
                }
                if let Some(u) = commit.updates {
                    tx.prepare_cached(
                        "INSERT INTO telegram_bots_update_state VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (workspace_id) DO UPDATE SET pts = ?2, qts = ?3, date = ?4, seq = ?5",
                    )?
                    .execute(params![ws, u.pts, u.qts, u.date, u.seq])?;
                }
                if let Some(channels) = &commit.channels {
                    tx.prepare_cached("DELETE FROM telegram_bots_channels WHERE workspace_id = ?1")?
                        .execute([ws])?;
                    for c in channels {
                        tx.prepare_cached("INSERT INTO telegram_bots_channels VALUES (?1, ?2, ?3, ?4)")?
                            .execute(params![ws, c.id, c.access_hash, c.pts])?;
                    }
                }
            }
            let jobs: Vec<VoiceJob> = jobs
                .into_iter()
                .filter(|job| present.contains(job.key.workspace_id.as_str()))
                .collect();
            outbox::insert(tx, &jobs)
        })
    }

    fn note_error(&mut self, notes: &[(String, Option<String>)]) -> Result<(), StoreError> {
        self.write_tx(|tx, _| {
            for (ws, error) in notes {
                tx.prepare_cached(
                    "UPDATE telegram_bots_integrations SET last_error = ?1 WHERE workspace_id = ?2",
                )?
                .execute(params![error, ws])?;
            }
            Ok(())
        })
    }

    fn add(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError> {
        let result = self.write_tx(|tx, sealer| {
            let inserted = tx.execute(
                "INSERT INTO telegram_bots_integrations (workspace_id, token_sealed) VALUES (?1, ?2)
                 ON CONFLICT (workspace_id) DO NOTHING",
                params![workspace_id, sealer.seal(token.expose().as_bytes())],
            )?;
            Ok(inserted)
        })?;
        if result == 0 {
            return Err(StoreError::Duplicate(workspace_id.to_owned()));
        }
        Ok(())
    }

    fn set_enabled(&mut self, workspace_id: &str, enabled: bool) -> Result<(), StoreError> {
        self.update_one(
            workspace_id,
            "UPDATE telegram_bots_integrations SET enabled = ?1, updated_at = CURRENT_TIMESTAMP
             WHERE workspace_id = ?2",
            &enabled,
        )
    }

    fn remove(&mut self, workspace_id: &str) -> Result<(), StoreError> {
        let removed = self.write_tx(|tx, _| {
            tx.execute(
                "DELETE FROM telegram_bots_integrations WHERE workspace_id = ?1",
                [workspace_id],
            )
        })?;
        if removed == 0 {
            return Err(StoreError::UnknownWorkspace(workspace_id.to_owned()));
        }
        Ok(())
    }

    fn set_token(&mut self, workspace_id: &str, token: &Secret<String>) -> Result<(), StoreError> {
        let sealed = self.sealer.seal(token.expose().as_bytes());
        self.update_one(
            workspace_id,
            "UPDATE telegram_bots_integrations SET token_sealed = ?1, last_error = NULL,
             updated_at = CURRENT_TIMESTAMP WHERE workspace_id = ?2",
            &sealed,
        )
    }

    fn rotate_key(&mut self) -> Result<usize, StoreError> {
        self.write_tx(|tx, sealer| {
            let mut rewritten = 0;
            let tokens: Vec<(String, String)> = tx
                .prepare("SELECT workspace_id, token_sealed FROM telegram_bots_integrations")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (ws, sealed) in tokens {
                if let Some(resealed) = reseal(sealer, &ws, "the bot token", &sealed) {
                    tx.execute(
                        "UPDATE telegram_bots_integrations SET token_sealed = ?1 WHERE workspace_id = ?2",
                        params![resealed, ws],
                    )?;
                    rewritten += 1;
                }
            }
            let keys: Vec<(String, i32, String)> = tx
                .prepare("SELECT workspace_id, dc, key_sealed FROM telegram_bots_auth_keys")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (ws, dc, sealed) in keys {
                if let Some(resealed) = reseal(sealer, &ws, "an auth key", &sealed) {
                    tx.execute(
                        "UPDATE telegram_bots_auth_keys SET key_sealed = ?1 WHERE workspace_id = ?2 AND dc = ?3",
                        params![resealed, ws, dc],
                    )?;
                    rewritten += 1;
                }
            }
            Ok(rewritten)
        })
    }

    fn voice_pending(&mut self, limit: usize) -> Result<Vec<VoiceJob>, StoreError> {
        let rows = self.read_outbox(Rows::Pending, Some(limit))?;
        Ok(rows.into_iter().map(|row| row.job).collect())
    }

    fn voice_finish(&mut self, outcomes: &[(VoiceKey, VoiceOutcome)]) -> Result<(), StoreError> {
        self.write_tx(|tx, _| outbox::finish(tx, outcomes))
    }

    fn voice_list(&mut self, failed_only: bool) -> Result<Vec<VoiceRow>, StoreError> {
        self.read_outbox(if failed_only { Rows::Failed } else { Rows::All }, None)
    }

    fn voice_retry_failed(&mut self) -> Result<usize, StoreError> {
        self.write_tx(|tx, _| outbox::retry_failed(tx))
    }

    fn voice_backlog(&mut self) -> Result<Backlog, StoreError> {
        outbox::backlog(&self.conn).map_err(|e| self.fail(e))
    }
}
