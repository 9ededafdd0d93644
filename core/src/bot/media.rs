//! Media connections: downloads of files that Telegram keeps on another DC.
//!
//! `upload.getFile` answers `FILE_MIGRATE_X` for a file stored on DC X. The bot then
//! opens a second connection to DC X (a [`ConnNo`] of its own, in the same output
//! stream as the home connection), with the key its record holds for X or a new one from
//! a handshake (stored through a commit like the home key, so that a restart does not
//! handshake again), copies its login there (`auth.exportAuthorization` on the home
//! connection, `auth.importAuthorization` on the media one: never the token, whose logins
//! Telegram rate-limits), and fetches the file's chunks there. Every request on it is
//! wrapped in `invokeWithoutUpdates`: updates belong to the home connection.
//!
//! The login is imported on every new media connection instead of being remembered: it
//! costs two small calls, and a remembered one can be stale (the key logged out since).
//!
//! Downloads for one DC share its connection; it closes after [`MEDIA_IDLE`] without
//! traffic, when the bot stops, and with the home connection. Its loss ends the downloads
//! on it as transient failures (the pipeline retries them) and touches nothing else. A
//! connection that fails before it is ready makes its DC back off (full jitter over 1 s
//! doubling to 5 min), meanwhile its downloads fail at once with the time left as their
//! `retry_after`. A key the DC does not know (`-404`, `AUTH_KEY_UNREGISTERED`,
//! `AUTH_KEY_INVALID`) is dropped, and the next connection makes a new one.
//!
//! Media connections do not go through the fleet's admission: the voice pipeline already
//! bounds the downloads in flight (a few per bot, a few dozen per process), each bot has
//! at most [`MAX_MEDIA_DCS`] of them, and their keys are stored, so their handshakes are
//! rare.

use std::time::{Duration, Instant};

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, functions};

use super::download::REQUEST_TIMEOUT;
use super::{Bot, BotOutput, Call, ConnNo, MAX_DC_ID, PHASE_TIMEOUT};
use crate::backoff;
use crate::random::Random;
use crate::rpc_error::RpcError;
use crate::secret::Secret;
use crate::session::{self, Now, RequestId, Session, SessionError, SessionEvent};
use crate::voice::{Failure, JobId};

/// A media connection without traffic for this long is closed.
pub const MEDIA_IDLE: Duration = Duration::from_secs(60);
/// Media connections a bot keeps at most (Telegram has five DCs; one is home).
pub const MAX_MEDIA_DCS: usize = 4;
/// A DC whose media connection failed is tried again after full jitter over this,
/// doubling with each failure in a row, up to the cap.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Asked for with [`BotOutput::Connect`]; not open yet.
    Opening,
    /// Open: the stored key is taken, or a handshake makes one.
    Keying,
    /// The login is being copied (export on the home connection, import here).
    Authorizing,
    Ready,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MediaCall {
    Import,
    GetFile(JobId),
}

/// One media connection.
#[derive(Debug)]
pub(super) struct Media {
    dc: i32,
    conn: ConnNo,
    session: Option<Box<Session>>,
    phase: Phase,
    calls: Vec<(RequestId, MediaCall)>,
    /// Given up if not ready by then (a DC that answers pings but not the import).
    ready_by: Option<Instant>,
    /// The last request or answer; idle from then on.
    last_used: Instant,
}

/// A DC whose media connection failed lately.
#[derive(Debug)]
pub(super) struct Backoff {
    dc: i32,
    failures: u32,
    until: Instant,
}

impl Bot {
    /// `FILE_MIGRATE_X` for the download at `at`: it goes on on DC `dc`, or fails.
    pub(super) fn migrate_download(
        &mut self,
        at: usize,
        dc: i32,
        error: &RpcError,
        random: &mut impl Random,
    ) {
        let refusal = if self.downloads[at].dc.is_some() {
            // Moved again by the media DC itself: no chasing, a retry starts over.
            Some(Failure::transient(format!(
                "the file moved again on its DC ({error})"
            )))
        } else if !(1..=MAX_DC_ID).contains(&dc) {
            Some(Failure::permanent(format!(
                "Telegram points the file at DC {dc}, which does not exist ({error})"
            )))
        } else if dc == self.home_dc() {
            Some(Failure::transient(format!(
                "Telegram points the file at the home DC it was asked on ({error})"
            )))
        } else {
            self.media_refusal(dc, random)
        };
        if let Some(failure) = refusal {
            let d = self.take_download(at);
            return self.downloaded(d.id, Err(failure));
        }
        let id = self.downloads[at].id;
        self.downloads[at].dc = Some(dc);
        self.downloads[at].deadline = Some(self.now + REQUEST_TIMEOUT);
        match self.media.iter().position(|m| m.dc == dc) {
            Some(i) if self.media[i].phase == Phase::Ready => self.request_chunk(id),
            // It waits for the connection to be ready.
            Some(_) => {}
            None => self.open_media(dc),
        }
    }

    /// Why a download cannot go to `dc` now: the DC backs off, or every media connection
    /// is busy. An idle one is closed to make room.
    fn media_refusal(&mut self, dc: i32, random: &mut impl Random) -> Option<Failure> {
        let now = self.now;
        if let Some(b) = self
            .media_backoff
            .iter()
            .find(|b| b.dc == dc && b.until > now)
        {
            let mut failure = Failure::transient(format!(
                "the media connection to DC {dc} failed lately ({} times in a row)",
                b.failures
            ));
            failure.retry_after = Some(b.until - now);
            return Some(failure);
        }
        if self.media.iter().any(|m| m.dc == dc) || self.media.len() < MAX_MEDIA_DCS {
            return None;
        }
        let downloads = &self.downloads;
        match self
            .media
            .iter()
            .position(|m| !downloads.iter().any(|d| d.dc == Some(m.dc)))
        {
            Some(idle) => {
                let failure = Failure::transient("closed for another DC");
                self.drop_media(idle, failure, random);
                None
            }
            None => Some(Failure::transient(format!(
                "all {MAX_MEDIA_DCS} media connections of the bot are busy"
            ))),
        }
    }

    fn open_media(&mut self, dc: i32) {
        let conn = self.next_conn();
        self.media.push(Media {
            dc,
            conn,
            session: None,
            phase: Phase::Opening,
            calls: Vec::new(),
            ready_by: Some(self.now + PHASE_TIMEOUT),
            last_used: self.now,
        });
        self.out.push_back(BotOutput::Connect {
            conn,
            dc,
            handshake: !self.record.session.auth_keys.contains_key(&dc),
            media: true,
        });
    }

    fn media_index(&self, conn: ConnNo) -> Option<usize> {
        self.media.iter().position(|m| m.conn == conn)
    }

    pub(super) fn is_media(&self, conn: ConnNo) -> bool {
        self.media_index(conn).is_some()
    }

    /// The media connection `conn` is open: its session starts, with the stored key.
    pub(super) fn media_connected(&mut self, conn: ConnNo, now: Now, random: &mut impl Random) {
        let Some(i) = self.media_index(conn) else {
            return;
        };
        if self.media[i].phase != Phase::Opening {
            return;
        }
        let dc = self.media[i].dc;
        let key = self.record.session.auth_keys.get(&dc).map(|k| *k.expose());
        let session = Session::new(self.session_config.clone(), key, now, random);
        let m = &mut self.media[i];
        m.session = Some(Box::new(session));
        m.phase = Phase::Keying;
        self.drive_media(conn, random);
    }

    pub(super) fn media_input(
        &mut self,
        conn: ConnNo,
        data: &[u8],
        now: Now,
        random: &mut impl Random,
    ) {
        if let Some(session) = self
            .media
            .iter_mut()
            .find(|m| m.conn == conn)
            .and_then(|m| m.session.as_mut())
        {
            session.handle_input(data, now, random);
        }
        self.drive_media(conn, random);
    }

    pub(super) fn media_disconnected(&mut self, conn: ConnNo, random: &mut impl Random) {
        if let Some(i) = self.media_index(conn) {
            let dc = self.media[i].dc;
            let failure = Failure::transient(format!("the media connection to DC {dc} was lost"));
            self.drop_media(i, failure, random);
        }
    }

    /// Moves a media session's output to the bot's outputs and its events into the
    /// downloads.
    fn drive_media(&mut self, conn: ConnNo, random: &mut impl Random) {
        while let Some(session) = self
            .media
            .iter_mut()
            .find(|m| m.conn == conn)
            .and_then(|m| m.session.as_mut())
        {
            if let Some(bytes) = session.poll_transmit() {
                self.out.push_back(BotOutput::Send { conn, bytes });
                continue;
            }
            let Some(event) = session.poll_event() else {
                break;
            };
            self.on_media_event(conn, event, random);
        }
        // An export may wait on the home session, and a new key for the next commit.
        self.drive(random);
    }

    fn on_media_event(&mut self, conn: ConnNo, event: SessionEvent, random: &mut impl Random) {
        let Some(i) = self.media_index(conn) else {
            return;
        };
        let dc = self.media[i].dc;
        match event {
            SessionEvent::Ready { new_key } => {
                if let Some(finished) = new_key {
                    // The home key's rule: a new key goes into the next commit.
                    let key = Secret::new(finished.auth_key);
                    self.session_record().auth_keys.insert(dc, key);
                }
                self.media[i].phase = Phase::Authorizing;
                if self.session().is_none() {
                    let failure = Failure::transient("the home connection is not open");
                    return self.drop_media(i, failure, random);
                }
                let export = functions::auth::ExportAuthorization { dc_id: dc };
                self.invoke(Call::ExportAuthorization(dc), export.to_bytes());
            }
            SessionEvent::Result { id, body } => {
                self.media[i].last_used = self.now;
                match self.media[i].take_call(id) {
                    Some(MediaCall::Import) => self.media_ready(i),
                    Some(MediaCall::GetFile(job)) => self.on_file_part(job, &body),
                    None => {}
                }
            }
            SessionEvent::Error { id, error } => {
                self.media[i].last_used = self.now;
                let Some(call) = self.media[i].take_call(id) else {
                    return;
                };
                if error.is_auth_key_unregistered() || error.name == "AUTH_KEY_INVALID" {
                    // The key lost its login or is gone: a new key and import next time.
                    self.session_record().auth_keys.remove(&dc);
                    let failure = Failure::transient(format!("DC {dc} refused the key ({error})"));
                    return self.drop_media(i, failure, random);
                }
                match call {
                    MediaCall::Import => {
                        let reason = format!("importing the login on DC {dc}: {error}");
                        self.drop_media(i, Failure::transient(reason), random);
                    }
                    MediaCall::GetFile(job) => self.on_download_error(job, error, random),
                }
            }
            // Not subscribed (invokeWithoutUpdates): the home connection has them all.
            SessionEvent::Update(_) => {}
            SessionEvent::Failed(error) => {
                if error == SessionError::UnknownAuthKey {
                    self.session_record().auth_keys.remove(&dc);
                }
                let failure = Failure::transient(format!("media connection to DC {dc}: {error}"));
                self.drop_media(i, failure, random);
            }
        }
    }

    /// The login is on the media DC: the downloads waiting for it start.
    fn media_ready(&mut self, i: usize) {
        let dc = self.media[i].dc;
        self.media[i].phase = Phase::Ready;
        self.media[i].ready_by = None;
        self.media_backoff.retain(|b| b.dc != dc);
        let waiting: Vec<JobId> = self
            .downloads
            .iter()
            .filter(|d| d.dc == Some(dc))
            .map(|d| d.id)
            .collect();
        for id in waiting {
            self.request_chunk(id);
        }
    }

    /// The home connection's answer to `auth.exportAuthorization` for `dc`.
    pub(super) fn on_exported(&mut self, dc: i32, body: &[u8], random: &mut impl Random) {
        let Some(i) = self
            .media
            .iter()
            .position(|m| m.dc == dc && m.phase == Phase::Authorizing)
        else {
            return;
        };
        match enums::auth::ExportedAuthorization::from_bytes(body) {
            Ok(enums::auth::ExportedAuthorization::Authorization(exported)) => {
                let import = functions::auth::ImportAuthorization {
                    id: exported.id,
                    bytes: exported.bytes,
                };
                self.media_invoke(i, MediaCall::Import, &import.to_bytes());
            }
            Err(_) => {
                let failure =
                    Failure::transient("auth.exportAuthorization's answer does not parse");
                self.drop_media(i, failure, random);
            }
        }
    }

    /// An error on the home connection's `auth.exportAuthorization` for `dc`.
    pub(super) fn on_export_error(&mut self, dc: i32, error: RpcError, random: &mut impl Random) {
        let Some(i) = self.media.iter().position(|m| m.dc == dc) else {
            return;
        };
        let reason = format!("exporting the login to DC {dc}: {error}");
        let failure = if error.name == "DC_ID_INVALID" {
            Failure::permanent(reason)
        } else {
            Failure {
                permanent: false,
                retry_after: error
                    .wait_seconds()
                    .map(|s| Duration::from_secs(u64::from(s))),
                reason,
            }
        };
        self.drop_media(i, failure, random);
    }

    /// Sends a request on media connection `i`, out of the update stream.
    fn media_invoke(&mut self, i: usize, call: MediaCall, body: &[u8]) {
        let m = &mut self.media[i];
        let Some(session) = m.session.as_mut() else {
            return;
        };
        let id = session.invoke(session::without_updates(body));
        m.calls.push((id, call));
        m.last_used = self.now;
        let conn = m.conn;
        while let Some(bytes) = session.poll_transmit() {
            self.out.push_back(BotOutput::Send { conn, bytes });
        }
    }

    /// A chunk of download `job` on its DC's media connection, which is ready.
    pub(super) fn media_get_file(&mut self, dc: i32, job: JobId, body: &[u8]) {
        match self.media.iter().position(|m| m.dc == dc) {
            Some(i) => self.media_invoke(i, MediaCall::GetFile(job), body),
            None => {
                if let Some(at) = self.downloads.iter().position(|d| d.id == job) {
                    let d = self.take_download(at);
                    let failure = Failure::transient(format!("no media connection to DC {dc}"));
                    self.downloaded(d.id, Err(failure));
                }
            }
        }
    }

    /// A late answer for a download that is gone must not be waited for.
    pub(super) fn forget_media_call(&mut self, job: JobId) {
        for m in &mut self.media {
            m.calls.retain(|(_, c)| *c != MediaCall::GetFile(job));
        }
    }

    /// Ends media connection `i` and the downloads on it with `failure`. One that never
    /// got ready makes its DC back off.
    fn drop_media(&mut self, i: usize, failure: Failure, random: &mut impl Random) {
        let m = self.media.remove(i);
        self.out.push_back(BotOutput::Disconnect { conn: m.conn });
        if m.phase != Phase::Ready {
            let failures = match self.media_backoff.iter().position(|b| b.dc == m.dc) {
                Some(at) => self.media_backoff.remove(at).failures,
                None => 0,
            };
            let delay = backoff::full_jitter(BACKOFF_BASE, BACKOFF_CAP, failures, random);
            self.media_backoff.push(Backoff {
                dc: m.dc,
                failures: failures.saturating_add(1),
                until: self.now + delay,
            });
        }
        let ended: Vec<usize> = (0..self.downloads.len())
            .rev()
            .filter(|at| self.downloads[*at].dc == Some(m.dc))
            .collect();
        for at in ended {
            let d = self.downloads.remove(at);
            self.downloaded(d.id, Err(failure.clone()));
        }
    }

    /// Closes every media connection (the home one is closing; their downloads end with
    /// it).
    pub(super) fn close_media(&mut self) {
        for m in std::mem::take(&mut self.media) {
            self.out.push_back(BotOutput::Disconnect { conn: m.conn });
        }
    }

    /// Timers of the media connections: their sessions', getting ready, idleness.
    pub(super) fn media_timeout(&mut self, now: Now, random: &mut impl Random) {
        let conns: Vec<ConnNo> = self.media.iter().map(|m| m.conn).collect();
        for conn in conns {
            let Some(i) = self.media_index(conn) else {
                continue;
            };
            let dc = self.media[i].dc;
            if self.media[i].ready_by.is_some_and(|at| now.instant >= at) {
                let reason = format!("DC {dc} did not get ready for downloads in time");
                self.drop_media(i, Failure::transient(reason), random);
            } else if self
                .media_idle_at(&self.media[i])
                .is_some_and(|at| now.instant >= at)
            {
                self.drop_media(i, Failure::transient("idle"), random);
            } else {
                if let Some(session) = self.media[i].session.as_mut() {
                    session.handle_timeout(now);
                }
                self.drive_media(conn, random);
            }
        }
    }

    /// When a media connection without downloads counts as idle.
    fn media_idle_at(&self, m: &Media) -> Option<Instant> {
        let busy = self.downloads.iter().any(|d| d.dc == Some(m.dc));
        (!busy).then_some(m.last_used + MEDIA_IDLE)
    }

    pub(super) fn media_poll_timeout(&self) -> Option<Instant> {
        self.media
            .iter()
            .flat_map(|m| {
                [
                    m.ready_by,
                    self.media_idle_at(m),
                    m.session.as_ref().and_then(|s| s.poll_timeout()),
                ]
            })
            .flatten()
            .min()
    }

    /// A download leaves: its media connection was used until now.
    pub(super) fn take_download(&mut self, at: usize) -> super::download::Download {
        let d = self.downloads.remove(at);
        let now = self.now;
        if let Some(m) =
            d.dc.and_then(|dc| self.media.iter_mut().find(|m| m.dc == dc))
        {
            m.last_used = now;
        }
        d
    }
}

impl Media {
    fn take_call(&mut self, id: RequestId) -> Option<MediaCall> {
        let at = self.calls.iter().position(|(x, _)| *x == id)?;
        Some(self.calls.remove(at).1)
    }
}
