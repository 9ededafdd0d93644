//! Voice messages on their way to transcription: what identifies one, where its audio is
//! stored, and the event that announces it. Pure decisions, shared by the pipeline, the
//! store's outbox and the sinks.
//!
//! A voice message is identified by its workspace, its chat (with the chat's kind:
//! Telegram numbers users, groups and channels separately) and its message id. The same
//! identity gives the object key (a retry writes the same key) and the Inngest event id
//! (Inngest drops a second event with the same id within 24 hours), so that any retry,
//! after any crash, can never start a second transcription.

mod pipeline;
mod stats;

use std::time::Duration;

use serde_json::{Value, json};

pub use self::pipeline::{JobId, Pipeline, PipelineLimits, VoiceEffect};
pub use self::stats::{Histogram, PipelineStats};
use crate::updates::{IncomingMessage, Peer, VoiceFile};

/// The event's name in Inngest.
pub const EVENT_NAME: &str = "telegram/voice.received";

/// Which voice message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoiceKey {
    pub workspace_id: String,
    pub chat: Peer,
    pub message_id: i32,
}

impl VoiceKey {
    /// The Inngest event id: `tg-voice:{workspace}:{chat kind}:{chat id}:{message id}`.
    pub fn event_id(&self) -> String {
        format!(
            "tg-voice:{}:{}:{}:{}",
            self.workspace_id,
            self.chat.kind(),
            self.chat.id(),
            self.message_id
        )
    }
}

/// A voice message waiting to be stored and announced, as the outbox holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceJob {
    pub key: VoiceKey,
    pub from_user_id: Option<i64>,
    /// When the message was sent (Unix seconds, Telegram's).
    pub date: i32,
    pub file: VoiceFile,
    /// When the service received it (Unix milliseconds), for the pipeline's latency.
    pub received_at_ms: i64,
    /// Attempts so far that failed in a way worth retrying.
    pub attempts: u32,
}

impl VoiceJob {
    /// The job for a received message, if it is a voice message.
    pub fn from_message(
        workspace_id: &str,
        message: &IncomingMessage,
        received_at_ms: i64,
    ) -> Option<VoiceJob> {
        let file = message.voice.clone()?;
        Some(VoiceJob {
            key: VoiceKey {
                workspace_id: workspace_id.to_owned(),
                chat: message.chat,
                message_id: message.message_id,
            },
            from_user_id: message.from_user_id,
            date: message.date,
            file,
            received_at_ms,
            attempts: 0,
        })
    }

    /// Where the audio is stored:
    /// `{workspace}/{yyyy}/{mm}/{dd}/{chat kind}-{chat id}/{message id}.{ext}`, dated by the
    /// message's date (UTC), so that a retry writes the same key.
    pub fn object_key(&self) -> String {
        let (y, m, d) = civil_date(i64::from(self.date));
        format!(
            "{}/{y:04}/{m:02}/{d:02}/{}-{}/{}.{}",
            sanitize(&self.key.workspace_id),
            self.key.chat.kind(),
            self.key.chat.id(),
            self.key.message_id,
            extension(&self.file.mime_type)
        )
    }

    /// The object's metadata (S3 `x-amz-meta-*`): who, where, how long. No secret.
    pub fn object_metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            ("workspace-id", self.key.workspace_id.clone()),
            ("chat-type", self.key.chat.kind().to_owned()),
            ("chat-id", self.key.chat.id().to_string()),
            ("message-id", self.key.message_id.to_string()),
            ("duration-seconds", self.file.duration_seconds.to_string()),
            ("media-kind", self.file.kind.as_str().to_owned()),
        ]
    }

    /// The Inngest event for the stored audio (never the audio itself).
    pub fn event(&self, stored: &ObjectLocation, bot_username: Option<&str>) -> Value {
        json!({
            "name": EVENT_NAME,
            "id": self.key.event_id(),
            "ts": i64::from(self.date) * 1000,
            "data": {
                "workspace_id": self.key.workspace_id,
                "bot_username": bot_username,
                "chat": { "id": self.key.chat.id(), "type": self.key.chat.kind() },
                "message_id": self.key.message_id,
                "from_user_id": self.from_user_id,
                "date": self.date,
                "kind": self.file.kind.as_str(),
                "duration": self.file.duration_seconds,
                "mime_type": self.file.mime_type,
                "size": self.file.size,
                "s3": { "bucket": stored.bucket, "key": stored.key },
                "sha256": stored.sha256,
            },
        })
    }
}

/// What became of a voice message, for the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoiceOutcome {
    /// Stored at this object key and announced: the row is done.
    Done { object_key: String },
    /// It cannot succeed (a 4xx that retrying will not change): the row is failed with
    /// the reason, until `outbox retry`.
    Failed { reason: String },
    /// It failed in a way worth retrying: the row stays pending, its attempts counted
    /// and the error kept.
    Retry { error: String },
}

/// Why a step of a voice message failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Retrying cannot help (a file Telegram does not have, a 4xx from S3 or Inngest).
    pub permanent: bool,
    /// The other side asked to wait this long (FLOOD_WAIT, `Retry-After`).
    pub retry_after: Option<Duration>,
    /// For the outbox and the log; no secret.
    pub reason: String,
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            retry_after: None,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            retry_after: None,
            reason: reason.into(),
        }
    }
}

/// Where a stored voice message's audio is, and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectLocation {
    pub bucket: String,
    pub key: String,
    /// The SHA-256 of the stored bytes (lowercase hex), so that a consumer can check
    /// what it reads against what the service stored.
    pub sha256: String,
}

impl ObjectLocation {
    /// The location of `bytes` stored at `bucket`/`key`.
    pub fn of(bucket: String, key: String, bytes: &[u8]) -> ObjectLocation {
        use sha2::{Digest as _, Sha256};
        let sha256 = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ObjectLocation {
            bucket,
            key,
            sha256,
        }
    }
}

/// The file name extension for a MIME type (`.ogg` for Telegram's voice messages).
fn extension(mime_type: &str) -> &'static str {
    match mime_type {
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/wav" | "audio/x-wav" => "wav",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

/// A workspace id as one safe path segment: anything but letters, digits, `-`, `_` and
/// `.` becomes `_` (and `..` cannot form a path).
fn sanitize(segment: &str) -> String {
    let clean: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        format!("_{clean}")
    } else {
        clean
    }
}

/// Year, month, day (UTC) of Unix seconds (Howard Hinnant's civil-from-days).
fn civil_date(unix: i64) -> (i64, u32, u32) {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(chat: Peer) -> VoiceJob {
        VoiceJob {
            key: VoiceKey {
                workspace_id: "ws_123".into(),
                chat,
                message_id: 456,
            },
            from_user_id: Some(789),
            date: 1_795_651_200, // 2026-11-26T00:00:00Z
            file: VoiceFile {
                kind: crate::updates::MediaKind::Voice,
                document_id: 1,
                access_hash: 2,
                file_reference: vec![3],
                dc_id: 2,
                size: 48_211,
                mime_type: "audio/ogg".into(),
                duration_seconds: 7,
            },
            received_at_ms: 0,
            attempts: 0,
        }
    }

    #[test]
    fn the_identity_gives_the_event_id_and_the_object_key() {
        let j = job(Peer::Channel(555));
        assert_eq!(j.key.event_id(), "tg-voice:ws_123:channel:555:456");
        assert_eq!(j.object_key(), "ws_123/2026/11/26/channel-555/456.ogg");
        // The same message id in a private chat is another message.
        assert_ne!(job(Peer::User(555)).key.event_id(), j.key.event_id());
    }

    #[test]
    fn the_event_carries_the_location_not_the_audio() {
        let stored = ObjectLocation::of("voice".into(), "ws_123/x.ogg".into(), b"abc");
        let event = job(Peer::User(42)).event(&stored, Some("bot1"));
        assert_eq!(event["name"], EVENT_NAME);
        assert_eq!(event["id"], "tg-voice:ws_123:user:42:456");
        let data = &event["data"];
        assert_eq!(data["chat"], json!({"id": 42, "type": "user"}));
        assert_eq!(
            data["s3"],
            json!({"bucket": "voice", "key": "ws_123/x.ogg"})
        );
        assert_eq!(
            (data["duration"].as_i64(), data["size"].as_i64()),
            (Some(7), Some(48_211))
        );
        assert_eq!(data["mime_type"], "audio/ogg");
        assert_eq!(
            data["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_hostile_workspace_id_stays_one_path_segment() {
        let mut j = job(Peer::User(1));
        j.key.workspace_id = "../etc/passwd".into();
        assert!(
            j.object_key().starts_with(".._etc_passwd/"),
            "{}",
            j.object_key()
        );
        j.key.workspace_id = "..".into();
        assert!(j.object_key().starts_with("_../"), "{}", j.object_key());
    }
}
