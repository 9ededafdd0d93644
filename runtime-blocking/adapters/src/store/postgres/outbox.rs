//! The voice outbox in PostgreSQL: one statement whatever the number of rows, the rows
//! as one array per column through `unnest`.

use postgres::GenericClient;
use postgres::types::Type;
use telegram_bots_core::voice::{VoiceJob, VoiceKey};

use crate::store::outbox::{COLUMNS, FAILED, OutcomeColumns, PENDING, RawRow, Rows, last_outcomes};
use crate::store::{Backlog, VoiceOutcome};

/// Adds a pending row for each job whose message has none yet, in the jobs' order.
pub(super) fn insert(
    tx: &mut postgres::Transaction<'_>,
    jobs: &[VoiceJob],
) -> Result<(), postgres::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let keys = KeyColumns::new(jobs.iter().map(|j| &j.key));
    let column = |f: fn(&VoiceJob) -> i64| jobs.iter().map(f).collect::<Vec<i64>>();
    let column32 = |f: fn(&VoiceJob) -> i32| jobs.iter().map(f).collect::<Vec<i32>>();
    let from_user_id: Vec<Option<i64>> = jobs.iter().map(|j| j.from_user_id).collect();
    let file_reference: Vec<&[u8]> = jobs.iter().map(|j| &j.file.file_reference[..]).collect();
    let mime_type: Vec<&str> = jobs.iter().map(|j| j.file.mime_type.as_str()).collect();
    let media_kind: Vec<&str> = jobs.iter().map(|j| j.file.kind.as_str()).collect();
    // WITH ORDINALITY and ORDER BY: rows get their `seq` in the jobs' order.
    tx.execute_typed(
        "INSERT INTO telegram_bots_voice_outbox (workspace_id, chat_kind, chat_id, message_id,
         from_user_id, date, document_id, access_hash, file_reference, dc_id, size, mime_type,
         duration_seconds, received_at_ms, media_kind)
         SELECT workspace_id, chat_kind, chat_id, message_id, from_user_id, date, document_id,
         access_hash, file_reference, dc_id, size, mime_type, duration_seconds, received_at_ms,
         media_kind
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[], $5::int8[], $6::int4[],
                     $7::int8[], $8::int8[], $9::bytea[], $10::int4[], $11::int8[], $12::text[],
                     $13::int4[], $14::int8[], $15::text[])
         WITH ORDINALITY AS j(workspace_id, chat_kind, chat_id, message_id, from_user_id, date,
              document_id, access_hash, file_reference, dc_id, size, mime_type,
              duration_seconds, received_at_ms, media_kind, n)
         ORDER BY n
         ON CONFLICT DO NOTHING",
        &[
            (&keys.workspace_id, Type::TEXT_ARRAY),
            (&keys.chat_kind, Type::TEXT_ARRAY),
            (&keys.chat_id, Type::INT8_ARRAY),
            (&keys.message_id, Type::INT4_ARRAY),
            (&from_user_id, Type::INT8_ARRAY),
            (&column32(|j| j.date), Type::INT4_ARRAY),
            (&column(|j| j.file.document_id), Type::INT8_ARRAY),
            (&column(|j| j.file.access_hash), Type::INT8_ARRAY),
            (&file_reference, Type::BYTEA_ARRAY),
            (&column32(|j| j.file.dc_id), Type::INT4_ARRAY),
            (&column(|j| j.file.size), Type::INT8_ARRAY),
            (&mime_type, Type::TEXT_ARRAY),
            (&column32(|j| j.file.duration_seconds), Type::INT4_ARRAY),
            (&column(|j| j.received_at_ms), Type::INT8_ARRAY),
            (&media_kind, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

/// Applies each message's last outcome ([`crate::store::outbox::OutcomeColumns`]).
pub(super) fn finish(
    tx: &mut postgres::Transaction<'_>,
    outcomes: &[(VoiceKey, VoiceOutcome)],
) -> Result<(), postgres::Error> {
    let last = last_outcomes(outcomes);
    if last.is_empty() {
        return Ok(());
    }
    let keys = KeyColumns::new(last.keys().copied());
    let columns: Vec<_> = last.values().map(|o| OutcomeColumns::of(o)).collect();
    let status: Vec<Option<&str>> = columns.iter().map(|c| c.status).collect();
    let attempts: Vec<i32> = columns.iter().map(|c| c.attempts).collect();
    let last_error: Vec<Option<&str>> = columns.iter().map(|c| c.last_error).collect();
    let object_key: Vec<Option<&str>> = columns.iter().map(|c| c.object_key).collect();
    tx.execute_typed(
        "UPDATE telegram_bots_voice_outbox AS o SET status = COALESCE(u.status, o.status),
         attempts = o.attempts + u.attempts, last_error = u.last_error,
         object_key = COALESCE(u.object_key, o.object_key), updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[], $5::text[], $6::int4[],
                     $7::text[], $8::text[])
              AS u(workspace_id, chat_kind, chat_id, message_id, status, attempts, last_error,
                   object_key)
         WHERE o.workspace_id = u.workspace_id AND o.chat_kind = u.chat_kind
         AND o.chat_id = u.chat_id AND o.message_id = u.message_id
         AND (o.status = 'pending' OR u.status = 'done')",
        &[
            (&keys.workspace_id, Type::TEXT_ARRAY),
            (&keys.chat_kind, Type::TEXT_ARRAY),
            (&keys.chat_id, Type::INT8_ARRAY),
            (&keys.message_id, Type::INT4_ARRAY),
            (&status, Type::TEXT_ARRAY),
            (&attempts, Type::INT4_ARRAY),
            (&last_error, Type::TEXT_ARRAY),
            (&object_key, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}

/// `which` rows, oldest first, at most `limit`.
pub(super) fn read(
    client: &mut impl GenericClient,
    which: Rows,
    limit: Option<usize>,
) -> Result<Vec<RawRow>, postgres::Error> {
    let limit: Option<i64> = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let rows = client.query_typed(
        &format!(
            "SELECT {COLUMNS} FROM telegram_bots_voice_outbox {}
             ORDER BY received_at_ms, seq LIMIT $1",
            which.filter()
        ),
        &[(&limit, Type::INT8)],
    )?;
    Ok(rows
        .iter()
        .map(|r| RawRow {
            workspace_id: r.get(0),
            chat_kind: r.get(1),
            chat_id: r.get(2),
            message_id: r.get(3),
            from_user_id: r.get(4),
            date: r.get(5),
            document_id: r.get(6),
            access_hash: r.get(7),
            file_reference: r.get(8),
            dc_id: r.get(9),
            size: r.get(10),
            mime_type: r.get(11),
            duration_seconds: r.get(12),
            received_at_ms: r.get(13),
            attempts: r.get(14),
            status: r.get(15),
            last_error: r.get(16),
            object_key: r.get(17),
            media_kind: r.get(18),
        })
        .collect())
}

/// Failed rows back to pending, attempts from zero, the error kept; how many.
pub(super) fn retry_failed(client: &mut impl GenericClient) -> Result<usize, postgres::Error> {
    let n = client.execute_typed(
        "UPDATE telegram_bots_voice_outbox SET status = $1, attempts = 0, updated_at = now()
         WHERE status = $2",
        &[(&PENDING, Type::TEXT), (&FAILED, Type::TEXT)],
    )?;
    Ok(n as usize)
}

/// The pending rows' count and oldest arrival.
pub(super) fn backlog(client: &mut impl GenericClient) -> Result<Backlog, postgres::Error> {
    let row = client.query_one(
        "SELECT count(*), min(received_at_ms) FROM telegram_bots_voice_outbox
         WHERE status = 'pending'",
        &[],
    )?;
    Ok(Backlog {
        pending: row.get::<_, i64>(0).max(0) as u64,
        oldest_ms: row.get(1),
    })
}

/// Messages' keys as one array per column.
struct KeyColumns<'a> {
    workspace_id: Vec<&'a str>,
    chat_kind: Vec<&'static str>,
    chat_id: Vec<i64>,
    message_id: Vec<i32>,
}

impl<'a> KeyColumns<'a> {
    fn new(keys: impl Iterator<Item = &'a VoiceKey>) -> KeyColumns<'a> {
        let mut c = KeyColumns {
            workspace_id: Vec::new(),
            chat_kind: Vec::new(),
            chat_id: Vec::new(),
            message_id: Vec::new(),
        };
        for key in keys {
            c.workspace_id.push(&key.workspace_id);
            c.chat_kind.push(key.chat.kind());
            c.chat_id.push(key.chat.id());
            c.message_id.push(key.message_id);
        }
        c
    }
}
