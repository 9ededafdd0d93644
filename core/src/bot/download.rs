//! A bot's downloads of voice files, on its own connection, interleaved with its updates:
//! chunked `upload.getFile` under Telegram's rules (offset and limit multiples of 4 KiB,
//! a limit that divides 1 MiB, never across a 1 MiB boundary: fixed chunks of
//! [`CHUNK`] from offset 0 satisfy all three), a fresh file reference fetched once when
//! Telegram says it expired, FLOOD_WAIT passed on as the time to wait, a file on another
//! DC fetched over a media connection there ([`super::media`]). A download's trouble
//! never touches the connection or the updates; a lost connection ends every download in
//! flight on it, to be retried by the pipeline, and so does a request without an answer
//! within [`REQUEST_TIMEOUT`] (a chunk that never comes must not hold its job forever).

use std::time::{Duration, Instant};

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, functions, types};

use super::{Bot, BotOutput, Call};
use crate::fleet::BotState;
use crate::random::Random;
use crate::rpc_error::RpcError;
use crate::updates::{self, Peer, VoiceFile};
use crate::voice::{Failure, JobId, VoiceJob};

/// Bytes per `upload.getFile`: a multiple of 4 KiB that divides 1 MiB.
pub const CHUNK: i32 = 128 * 1024;
/// Larger files are refused: a voice message is far smaller, and a file is held whole
/// in memory once.
pub const MAX_FILE: i64 = 64 * 1024 * 1024;
/// How long a download's request (or its wait for a media connection) may go unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One download in progress.
#[derive(Debug)]
pub(super) struct Download {
    pub(super) id: JobId,
    chat: Peer,
    message_id: i32,
    file: VoiceFile,
    bytes: Vec<u8>,
    /// A fresh file reference was fetched already (once is enough: a second expiry is
    /// a failure to retry later).
    refetched: bool,
    /// The DC it is fetched from after `FILE_MIGRATE`; `None`: the home DC.
    pub(super) dc: Option<i32>,
    /// When the request in flight, or the wait for a media connection, is given up.
    pub(super) deadline: Option<Instant>,
}

impl Bot {
    /// Downloads a voice file for the pipeline's job `id`; the result comes as
    /// [`BotOutput::Downloaded`].
    pub fn download(&mut self, id: JobId, job: &VoiceJob, random: &mut impl Random) {
        if job.file.size > MAX_FILE {
            let reason = format!(
                "a {}-byte file is larger than {MAX_FILE} bytes",
                job.file.size
            );
            return self.downloaded(id, Err(Failure::permanent(reason)));
        }
        if self.state != BotState::Running {
            return self.downloaded(id, Err(Failure::transient("the bot is not connected")));
        }
        self.downloads.push(Download {
            id,
            chat: job.key.chat,
            message_id: job.key.message_id,
            file: job.file.clone(),
            bytes: Vec::with_capacity(job.file.size.clamp(0, MAX_FILE) as usize),
            refetched: false,
            dc: None,
            deadline: None,
        });
        self.request_chunk(id);
        self.drive(random);
    }

    pub(super) fn downloaded(&mut self, id: JobId, result: Result<Vec<u8>, Failure>) {
        self.out.push_back(BotOutput::Downloaded { id, result });
    }

    pub(super) fn request_chunk(&mut self, id: JobId) {
        let deadline = self.now + REQUEST_TIMEOUT;
        let Some(d) = self.downloads.iter_mut().find(|d| d.id == id) else {
            return;
        };
        d.deadline = Some(deadline);
        let request = functions::upload::GetFile {
            precise: false,
            cdn_supported: false,
            location: enums::InputFileLocation::InputDocumentFileLocation(
                types::InputDocumentFileLocation {
                    id: d.file.document_id,
                    access_hash: d.file.access_hash,
                    file_reference: d.file.file_reference.clone(),
                    thumb_size: String::new(),
                },
            ),
            offset: d.bytes.len() as i64,
            limit: CHUNK,
        };
        match d.dc {
            None => self.invoke(Call::GetFile(id), request.to_bytes()),
            Some(dc) => self.media_get_file(dc, id, &request.to_bytes()),
        }
    }

    pub(super) fn on_file_part(&mut self, id: JobId, body: &[u8]) {
        let Some(at) = self.downloads.iter().position(|d| d.id == id) else {
            return;
        };
        let part = match enums::upload::File::from_bytes(body) {
            Ok(enums::upload::File::File(f)) => f.bytes,
            Ok(enums::upload::File::CdnRedirect(_)) => {
                let d = self.take_download(at);
                return self.downloaded(d.id, Err(Failure::permanent("Telegram redirects the file to a CDN, which this client does not fetch from")));
            }
            Err(_) => {
                let d = self.take_download(at);
                return self.downloaded(
                    d.id,
                    Err(Failure::transient("an upload.File that does not parse")),
                );
            }
        };
        let d = &mut self.downloads[at];
        let last = part.len() < CHUNK as usize;
        d.bytes.extend_from_slice(&part);
        if d.bytes.len() as i64 > MAX_FILE {
            let d = self.take_download(at);
            return self.downloaded(
                d.id,
                Err(Failure::permanent("the file is larger than announced")),
            );
        }
        if last || d.bytes.len() as i64 >= d.file.size {
            let d = self.take_download(at);
            self.downloaded(d.id, Ok(d.bytes));
        } else {
            self.request_chunk(id);
        }
    }

    /// An error on a download's call. Never the connection's business.
    pub(super) fn on_download_error(
        &mut self,
        id: JobId,
        error: RpcError,
        random: &mut impl Random,
    ) {
        let Some(at) = self.downloads.iter().position(|d| d.id == id) else {
            return;
        };
        if error.name == "FILE_REFERENCE_EXPIRED" && !self.downloads[at].refetched {
            self.downloads[at].refetched = true;
            return self.refetch(id);
        }
        if let Some(dc) = error.migrate_to() {
            return self.migrate_download(at, dc, &error, random);
        }
        let d = self.take_download(at);
        let failure = if let Some(wait) = error.wait_seconds() {
            Failure {
                permanent: false,
                retry_after: Some(Duration::from_secs(u64::from(wait))),
                reason: error.to_string(),
            }
        } else if matches!(
            error.name.as_str(),
            "FILE_ID_INVALID" | "LOCATION_INVALID" | "FILE_REFERENCE_INVALID" | "MSG_ID_INVALID"
        ) {
            Failure::permanent(error.to_string())
        } else {
            Failure::transient(error.to_string())
        };
        self.downloaded(d.id, Err(failure));
    }

    /// Fetches the message again for a fresh file reference.
    fn refetch(&mut self, id: JobId) {
        let deadline = self.now + REQUEST_TIMEOUT;
        let Some(d) = self.downloads.iter_mut().find(|d| d.id == id) else {
            return;
        };
        d.deadline = Some(deadline);
        let d = &*d;
        let ids = vec![enums::InputMessage::Id(types::InputMessageId {
            id: d.message_id,
        })];
        let body = match d.chat {
            Peer::Channel(channel) => {
                let access_hash = self.record.channel(channel).map_or(0, |c| c.access_hash);
                functions::channels::GetMessages {
                    channel: enums::InputChannel::Channel(types::InputChannel {
                        channel_id: channel,
                        access_hash,
                    }),
                    id: ids,
                }
                .to_bytes()
            }
            Peer::User(_) | Peer::Chat(_) => {
                functions::messages::GetMessages { id: ids }.to_bytes()
            }
        };
        self.invoke(Call::RefetchMessage(id), body);
    }

    pub(super) fn on_refetched(&mut self, id: JobId, body: &[u8]) {
        let Some(at) = self.downloads.iter().position(|d| d.id == id) else {
            return;
        };
        let messages = match enums::messages::Messages::from_bytes(body) {
            Ok(enums::messages::Messages::Messages(m)) => m.messages,
            Ok(enums::messages::Messages::Slice(m)) => m.messages,
            Ok(enums::messages::Messages::ChannelMessages(m)) => m.messages,
            _ => vec![],
        };
        let d = &self.downloads[at];
        let fresh = messages
            .iter()
            .filter_map(updates::incoming)
            .find(|m| m.message_id == d.message_id && m.chat == d.chat)
            .and_then(|m| m.voice)
            .filter(|v| v.document_id == d.file.document_id);
        match fresh {
            Some(file) => {
                self.downloads[at].file.file_reference = file.file_reference;
                self.request_chunk(id);
            }
            None => {
                let d = self.take_download(at);
                self.downloaded(
                    d.id,
                    Err(Failure::permanent("the message or its file is gone")),
                );
            }
        }
    }

    /// Downloads whose request went unanswered for [`REQUEST_TIMEOUT`] end, to be retried;
    /// a late answer finds nothing to go to.
    pub(super) fn expire_downloads(&mut self) {
        let now = self.now;
        while let Some(at) = self
            .downloads
            .iter()
            .position(|d| d.deadline.is_some_and(|at| now >= at))
        {
            let d = self.take_download(at);
            self.calls.retain(
                |(_, c)| !matches!(c, Call::GetFile(j) | Call::RefetchMessage(j) if *j == d.id),
            );
            self.forget_media_call(d.id);
            let reason = format!(
                "no answer from Telegram within {} s",
                REQUEST_TIMEOUT.as_secs()
            );
            self.downloaded(d.id, Err(Failure::transient(reason)));
        }
    }

    pub(super) fn downloads_deadline(&self) -> Option<Instant> {
        self.downloads.iter().filter_map(|d| d.deadline).min()
    }

    /// The connection is gone: every download in flight ends, to be retried.
    pub(super) fn end_downloads(&mut self) {
        for d in std::mem::take(&mut self.downloads) {
            self.downloaded(d.id, Err(Failure::transient("connection lost")));
        }
    }
}
