//! The voice outbox in SQLite: a statement per row, in the caller's transaction.

use rusqlite::{Connection, params};
use telegram_bots_core::voice::{VoiceJob, VoiceKey};

use crate::store::outbox::{COLUMNS, FAILED, OutcomeColumns, PENDING, RawRow, Rows, last_outcomes};
use crate::store::{Backlog, VoiceOutcome};

/// Adds a pending row for each job whose message has none yet.
pub(super) fn insert(conn: &Connection, jobs: &[VoiceJob]) -> Result<(), rusqlite::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO telegram_bots_voice_outbox (workspace_id, chat_kind, chat_id, message_id,
         from_user_id, date, document_id, access_hash, file_reference, dc_id, size, mime_type,
         duration_seconds, received_at_ms, media_kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT DO NOTHING",
    )?;
    for job in jobs {
        let (key, file) = (&job.key, &job.file);
        insert.execute(params![
            key.workspace_id,
            key.chat.kind(),
            key.chat.id(),
            key.message_id,
            job.from_user_id,
            job.date,
            file.document_id,
            file.access_hash,
            file.file_reference,
            file.dc_id,
            file.size,
            file.mime_type,
            file.duration_seconds,
            job.received_at_ms,
            file.kind.as_str(),
        ])?;
    }
    Ok(())
}

/// Applies each message's last outcome ([`crate::store::outbox::OutcomeColumns`]).
pub(super) fn finish(
    conn: &Connection,
    outcomes: &[(VoiceKey, VoiceOutcome)],
) -> Result<(), rusqlite::Error> {
    let mut update = conn.prepare_cached(
        "UPDATE telegram_bots_voice_outbox SET status = COALESCE(?5, status),
         attempts = attempts + ?6, last_error = ?7, object_key = COALESCE(?8, object_key),
         updated_at = CURRENT_TIMESTAMP
         WHERE workspace_id = ?1 AND chat_kind = ?2 AND chat_id = ?3 AND message_id = ?4
         AND (status = 'pending' OR ?5 = 'done')",
    )?;
    for (key, outcome) in last_outcomes(outcomes) {
        let c = OutcomeColumns::of(outcome);
        update.execute(params![
            key.workspace_id,
            key.chat.kind(),
            key.chat.id(),
            key.message_id,
            c.status,
            c.attempts,
            c.last_error,
            c.object_key,
        ])?;
    }
    Ok(())
}

/// `which` rows, oldest first, at most `limit`.
pub(super) fn read(
    conn: &Connection,
    which: Rows,
    limit: Option<usize>,
) -> Result<Vec<RawRow>, rusqlite::Error> {
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut query = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM telegram_bots_voice_outbox {}
         ORDER BY received_at_ms, rowid LIMIT ?1",
        which.filter()
    ))?;
    let rows = query.query_map([limit], |r| {
        Ok(RawRow {
            workspace_id: r.get(0)?,
            chat_kind: r.get(1)?,
            chat_id: r.get(2)?,
            message_id: r.get(3)?,
            from_user_id: r.get(4)?,
            date: r.get(5)?,
            document_id: r.get(6)?,
            access_hash: r.get(7)?,
            file_reference: r.get(8)?,
            dc_id: r.get(9)?,
            size: r.get(10)?,
            mime_type: r.get(11)?,
            duration_seconds: r.get(12)?,
            received_at_ms: r.get(13)?,
            attempts: r.get(14)?,
            status: r.get(15)?,
            last_error: r.get(16)?,
            object_key: r.get(17)?,
            media_kind: r.get(18)?,
        })
    })?;
    rows.collect()
}

/// Failed rows back to pending, attempts from zero, the error kept; how many.
pub(super) fn retry_failed(conn: &Connection) -> Result<usize, rusqlite::Error> {
    conn.execute(
        "UPDATE telegram_bots_voice_outbox SET status = ?1, attempts = 0,
         updated_at = CURRENT_TIMESTAMP WHERE status = ?2",
        params![PENDING, FAILED],
    )
}

/// The pending rows' count and oldest arrival.
pub(super) fn backlog(conn: &Connection) -> Result<Backlog, rusqlite::Error> {
    conn.query_row(
        "SELECT count(*), min(received_at_ms) FROM telegram_bots_voice_outbox WHERE status = ?1",
        [PENDING],
        |r| {
            Ok(Backlog {
                pending: r.get::<_, i64>(0)?.max(0) as u64,
                oldest_ms: r.get(1)?,
            })
        },
    )
}
