//! The voice outbox as both back ends read and write it: which rows a batch of commits
//! adds, what an outcome does to a row, and a row's columns back into a [`VoiceRow`].
//! The SQL is each back end's; the decisions are here, once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use telegram_bots_core::record::Commit;
use telegram_bots_core::updates::{MediaKind, Peer, VoiceFile};
use telegram_bots_core::voice::{VoiceJob, VoiceKey};

use super::{VoiceOutcome, VoiceRow};

pub const PENDING: &str = "pending";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// The columns a row is read with, in [`RawRow`]'s order (both back ends).
pub const COLUMNS: &str = "workspace_id, chat_kind, chat_id, message_id, from_user_id, date, \
     document_id, access_hash, file_reference, dc_id, size, mime_type, duration_seconds, \
     received_at_ms, attempts, status, last_error, object_key, media_kind";

/// Which rows a read returns.
#[derive(Clone, Copy, Debug)]
pub enum Rows {
    Pending,
    Failed,
    All,
}

impl Rows {
    /// The `WHERE` clause, with the status written out: a partial index (the pending
    /// rows') serves only a query whose condition is known when it is planned. Pending
    /// rows of a disabled integration are left out: they wait for it, and must not
    /// crowd out everyone else's under a limit.
    pub fn filter(self) -> &'static str {
        match self {
            Rows::Pending => {
                "WHERE status = 'pending' AND workspace_id IN \
                 (SELECT workspace_id FROM telegram_bots_integrations WHERE enabled)"
            }
            Rows::Failed => "WHERE status = 'failed'",
            Rows::All => "",
        }
    }
}

/// The wall clock in Unix milliseconds: when a batch's voice messages were received.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The outbox rows of `batch`'s voice messages, received at `received_at_ms`, in the
/// batch's order. A message given twice keeps its first row, as a row already in the
/// outbox is kept (`ON CONFLICT DO NOTHING`): one statement may not write a row twice,
/// and the first sighting of a message is the one that counts.
pub fn voice_jobs(batch: &[(String, Commit)], received_at_ms: i64) -> Vec<VoiceJob> {
    let mut seen = BTreeSet::new();
    batch
        .iter()
        .flat_map(|(ws, commit)| {
            commit
                .messages
                .iter()
                .filter_map(move |m| VoiceJob::from_message(ws, m, received_at_ms))
        })
        .filter(|job| seen.insert(job.key.clone()))
        .collect()
}

/// The outcome that counts for each message: the last one given for it (a back end
/// applies them in one statement, where a row can change once).
pub fn last_outcomes(outcomes: &[(VoiceKey, VoiceOutcome)]) -> BTreeMap<&VoiceKey, &VoiceOutcome> {
    outcomes
        .iter()
        .map(|(key, outcome)| (key, outcome))
        .collect()
}

/// An outcome as the parameters of the back ends' update, which reads: a done outcome
/// applies to any row; a failed or retry one only to a row still pending (a row done
/// meanwhile stays done). `status` is the new status, or `None` to keep it (a retry);
/// `attempts` is added; `last_error` replaces the row's; `object_key` replaces the row's
/// when it is `Some`.
#[derive(Debug)]
pub struct OutcomeColumns<'a> {
    pub status: Option<&'static str>,
    pub attempts: i32,
    pub last_error: Option<&'a str>,
    pub object_key: Option<&'a str>,
}

impl<'a> OutcomeColumns<'a> {
    pub(crate) fn of(outcome: &'a VoiceOutcome) -> OutcomeColumns<'a> {
        match outcome {
            VoiceOutcome::Done { object_key } => OutcomeColumns {
                status: Some(DONE),
                attempts: 0,
                last_error: None,
                object_key: Some(object_key),
            },
            VoiceOutcome::Failed { reason } => OutcomeColumns {
                status: Some(FAILED),
                attempts: 0,
                last_error: Some(reason),
                object_key: None,
            },
            VoiceOutcome::Retry { error } => OutcomeColumns {
                status: None,
                attempts: 1,
                last_error: Some(error),
                object_key: None,
            },
        }
    }
}

/// A row's [`COLUMNS`] as read.
#[derive(Debug)]
pub struct RawRow {
    pub workspace_id: String,
    pub chat_kind: String,
    pub chat_id: i64,
    pub message_id: i32,
    pub from_user_id: Option<i64>,
    pub date: i32,
    pub document_id: i64,
    pub access_hash: i64,
    pub file_reference: Vec<u8>,
    pub dc_id: i32,
    pub size: i64,
    pub mime_type: String,
    pub duration_seconds: i32,
    pub received_at_ms: i64,
    pub attempts: i32,
    pub status: String,
    pub last_error: Option<String>,
    pub object_key: Option<String>,
    pub media_kind: String,
}

impl RawRow {
    /// The row, or why it is not one this build wrote (naming it).
    pub fn into_row(self) -> Result<VoiceRow, String> {
        let chat = peer(&self.chat_kind, self.chat_id).ok_or_else(|| {
            format!(
                "voice outbox row of workspace {:?}, message {}: unknown chat kind {:?}",
                self.workspace_id, self.message_id, self.chat_kind
            )
        })?;
        let kind = MediaKind::parse(&self.media_kind).ok_or_else(|| {
            format!(
                "voice outbox row of workspace {:?}, message {}: unknown media kind {:?}",
                self.workspace_id, self.message_id, self.media_kind
            )
        })?;
        Ok(VoiceRow {
            job: VoiceJob {
                key: VoiceKey {
                    workspace_id: self.workspace_id,
                    chat,
                    message_id: self.message_id,
                },
                from_user_id: self.from_user_id,
                date: self.date,
                file: VoiceFile {
                    document_id: self.document_id,
                    access_hash: self.access_hash,
                    file_reference: self.file_reference,
                    dc_id: self.dc_id,
                    size: self.size,
                    mime_type: self.mime_type,
                    duration_seconds: self.duration_seconds,
                    kind,
                },
                received_at_ms: self.received_at_ms,
                attempts: u32::try_from(self.attempts).unwrap_or(0),
            },
            status: self.status,
            last_error: self.last_error,
            object_key: self.object_key,
        })
    }
}

/// The chat of `kind` ([`Peer::kind`]) and `id`.
fn peer(kind: &str, id: i64) -> Option<Peer> {
    match kind {
        "user" => Some(Peer::User(id)),
        "chat" => Some(Peer::Chat(id)),
        "channel" => Some(Peer::Channel(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telegram_bots_core::updates::IncomingMessage;

    fn message(chat: Peer, id: i32, voice: bool, reference: u8) -> IncomingMessage {
        IncomingMessage {
            chat,
            message_id: id,
            from_user_id: Some(7),
            date: 1_700_000_000,
            text: String::new(),
            voice: voice.then(|| VoiceFile {
                kind: telegram_bots_core::updates::MediaKind::Voice,
                document_id: 1,
                access_hash: 2,
                file_reference: vec![reference],
                dc_id: 2,
                size: 10,
                mime_type: "audio/ogg".into(),
                duration_seconds: 1,
            }),
        }
    }

    fn commit(messages: Vec<IncomingMessage>) -> Commit {
        Commit {
            id: 1,
            session: None,
            updates: None,
            channels: None,
            messages,
        }
    }

    #[test]
    fn only_voice_messages_make_rows_and_the_first_sighting_wins() {
        let batch = vec![
            (
                "ws-1".to_owned(),
                commit(vec![
                    message(Peer::User(5), 1, true, 1),
                    message(Peer::User(5), 2, false, 0),
                ]),
            ),
            (
                "ws-2".to_owned(),
                commit(vec![message(Peer::User(5), 1, true, 2)]),
            ),
            (
                "ws-1".to_owned(),
                commit(vec![message(Peer::User(5), 1, true, 3)]),
            ),
        ];
        let jobs = voice_jobs(&batch, 42);
        let seen: Vec<(&str, u8)> = jobs
            .iter()
            .map(|j| (j.key.workspace_id.as_str(), j.file.file_reference[0]))
            .collect();
        assert_eq!(seen, [("ws-1", 1), ("ws-2", 2)]);
        assert!(
            jobs.iter()
                .all(|j| j.received_at_ms == 42 && j.attempts == 0)
        );
    }

    #[test]
    fn every_kind_of_chat_reads_back() {
        for chat in [Peer::User(1), Peer::Chat(2), Peer::Channel(3)] {
            assert_eq!(peer(chat.kind(), chat.id()), Some(chat));
        }
        assert_eq!(peer("group", 1), None);
    }
}
