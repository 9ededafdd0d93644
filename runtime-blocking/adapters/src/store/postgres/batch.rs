//! A batch of commits written to PostgreSQL in a fixed number of statements whatever
//! its size: one workspace's commits folded into one change, then each table's rows as
//! one array per column, through `unnest`; the voice outbox's rows likewise
//! ([`super::outbox::insert`]).

use std::collections::{BTreeMap, BTreeSet};

use postgres::types::Type;
use telegram_bots_core::record::{ChannelState, Commit, SessionRecord};
use telegram_bots_core::updates::UpdateState;

use crate::store::outbox::{now_ms, voice_jobs};
use crate::store::{Sealer, session_rows};

/// Writes `batch` in `tx`: the workspaces that have an integration, locked against a
/// concurrent `remove` (`FOR KEY SHARE`; a commit for a workspace without one is
/// dropped), then their rows, each table one statement, and the outbox rows of their
/// voice messages. Workspaces go in order, so two writers cannot deadlock.
pub(super) fn write(
    tx: &mut postgres::Transaction<'_>,
    sealer: &Sealer,
    batch: &[(String, Commit)],
) -> Result<(), postgres::Error> {
    let mut folded = fold(batch);
    let wanted: Vec<&str> = folded.keys().copied().collect();
    let present: BTreeSet<String> = tx
        .query_typed(
            "SELECT workspace_id FROM telegram_bots_integrations
             WHERE workspace_id = ANY($1) ORDER BY workspace_id FOR KEY SHARE",
            &[(&wanted, Type::TEXT_ARRAY)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    folded.retain(|ws, _| present.contains(*ws));
    Columns::new(sealer, &folded).write(tx)?;
    let mut jobs = voice_jobs(batch, now_ms());
    jobs.retain(|job| present.contains(&job.key.workspace_id));
    super::outbox::insert(tx, &jobs)
}

/// One workspace's commits of a batch, folded in order as [`BotRecord::apply`] does (a
/// later commit's parts replace an earlier one's): one statement may write a row once.
///
/// [`BotRecord::apply`]: telegram_bots_core::record::BotRecord::apply
#[derive(Default)]
struct Folded<'a> {
    session: Option<&'a SessionRecord>,
    updates: Option<UpdateState>,
    channels: Option<&'a [ChannelState]>,
}

fn fold(batch: &[(String, Commit)]) -> BTreeMap<&str, Folded<'_>> {
    let mut folded: BTreeMap<&str, Folded<'_>> = BTreeMap::new();
    for (ws, commit) in batch {
        let entry = folded.entry(ws).or_default();
        if let Some(session) = &commit.session {
            entry.session = Some(session);
        }
        if let Some(updates) = commit.updates {
            entry.updates = Some(updates);
        }
        if let Some(channels) = &commit.channels {
            entry.channels = Some(channels);
        }
    }
    folded
}

/// A batch as columns, one array per column, for `unnest`.
#[derive(Default)]
struct Columns<'a> {
    session_ws: Vec<&'a str>,
    home_dc: Vec<Option<i32>>,
    authorized: Vec<bool>,
    user_id: Vec<Option<i64>>,
    username: Vec<Option<String>>,
    key_ws: Vec<&'a str>,
    key_dc: Vec<i32>,
    key_sealed: Vec<String>,
    state_ws: Vec<&'a str>,
    pts: Vec<i32>,
    qts: Vec<i32>,
    date: Vec<i32>,
    seq: Vec<i32>,
    channels_ws: Vec<&'a str>,
    channel_ws: Vec<&'a str>,
    channel_id: Vec<i64>,
    access_hash: Vec<i64>,
    channel_pts: Vec<i32>,
}

impl<'a> Columns<'a> {
    fn new(sealer: &Sealer, folded: &BTreeMap<&'a str, Folded<'_>>) -> Columns<'a> {
        let mut c = Columns::default();
        for (&ws, f) in folded {
            if let Some(session) = f.session {
                let (row, keys) = session_rows(sealer, session);
                c.session_ws.push(ws);
                c.home_dc.push(row.home_dc);
                c.authorized.push(row.authorized);
                c.user_id.push(row.user_id);
                c.username.push(row.username);
                for (dc, sealed) in keys {
                    c.key_ws.push(ws);
                    c.key_dc.push(dc);
                    c.key_sealed.push(sealed);
                }
            }
            if let Some(u) = f.updates {
                c.state_ws.push(ws);
                c.pts.push(u.pts);
                c.qts.push(u.qts);
                c.date.push(u.date);
                c.seq.push(u.seq);
            }
            if let Some(channels) = f.channels {
                c.channels_ws.push(ws);
                for channel in channels {
                    c.channel_ws.push(ws);
                    c.channel_id.push(channel.id);
                    c.access_hash.push(channel.access_hash);
                    c.channel_pts.push(channel.pts);
                }
            }
        }
        c
    }

    /// Writes the columns: at most six statements, whatever the batch's size.
    fn write(&self, tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
        if !self.session_ws.is_empty() {
            tx.execute_typed(
                "INSERT INTO telegram_bots_sessions (workspace_id, home_dc, authorized, user_id, username)
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::bool[], $4::int8[], $5::text[])
                 ON CONFLICT (workspace_id) DO UPDATE SET home_dc = excluded.home_dc,
                 authorized = excluded.authorized, user_id = excluded.user_id,
                 username = excluded.username",
                &[
                    (&self.session_ws, Type::TEXT_ARRAY),
                    (&self.home_dc, Type::INT4_ARRAY),
                    (&self.authorized, Type::BOOL_ARRAY),
                    (&self.user_id, Type::INT8_ARRAY),
                    (&self.username, Type::TEXT_ARRAY),
                ],
            )?;
            tx.execute_typed(
                "DELETE FROM telegram_bots_auth_keys WHERE workspace_id = ANY($1)",
                &[(&self.session_ws, Type::TEXT_ARRAY)],
            )?;
        }
        if !self.key_ws.is_empty() {
            tx.execute_typed(
                "INSERT INTO telegram_bots_auth_keys (workspace_id, dc, key_sealed)
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::text[])",
                &[
                    (&self.key_ws, Type::TEXT_ARRAY),
                    (&self.key_dc, Type::INT4_ARRAY),
                    (&self.key_sealed, Type::TEXT_ARRAY),
                ],
            )?;
        }
        if !self.state_ws.is_empty() {
            tx.execute_typed(
                "INSERT INTO telegram_bots_update_state (workspace_id, pts, qts, date, seq)
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int4[], $5::int4[])
                 ON CONFLICT (workspace_id) DO UPDATE SET pts = excluded.pts, qts = excluded.qts,
                 date = excluded.date, seq = excluded.seq",
                &[
                    (&self.state_ws, Type::TEXT_ARRAY),
                    (&self.pts, Type::INT4_ARRAY),
                    (&self.qts, Type::INT4_ARRAY),
                    (&self.date, Type::INT4_ARRAY),
                    (&self.seq, Type::INT4_ARRAY),
                ],
            )?;
        }
        if !self.channels_ws.is_empty() {
            tx.execute_typed(
                "DELETE FROM telegram_bots_channels WHERE workspace_id = ANY($1)",
                &[(&self.channels_ws, Type::TEXT_ARRAY)],
            )?;
        }
        if !self.channel_ws.is_empty() {
            tx.execute_typed(
                "INSERT INTO telegram_bots_channels (workspace_id, channel_id, access_hash, pts)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int4[])",
                &[
                    (&self.channel_ws, Type::TEXT_ARRAY),
                    (&self.channel_id, Type::INT8_ARRAY),
                    (&self.access_hash, Type::INT8_ARRAY),
                    (&self.channel_pts, Type::INT4_ARRAY),
                ],
            )?;
        }
        Ok(())
    }
}
