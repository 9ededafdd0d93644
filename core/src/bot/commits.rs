//! A bot's queue of changes on their way to the store.
//!
//! Changes to the record and received messages collect here until they go out as one
//! [`Commit`]. One commit is in flight at a time; what arrives meanwhile waits for the
//! next one, so a busy bot writes in batches and a store that is slower than Telegram
//! slows commits down instead of piling them up. A failed commit goes back to the front
//! of the queue and is retried after a backoff: it is never dropped, and nothing in it
//! counts as handled before the store said so.

use std::time::{Duration, Instant};

use crate::backoff;
use crate::random::Random;
use crate::record::{BotRecord, Commit, CommitId};
use crate::updates::{IncomingMessage, MediaKinds};

/// The first retry of a failed commit comes after up to this long, doubling to
/// [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_millis(200);
const RETRY_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(super) struct Commits {
    /// Which media are handed on as voice messages; others go as plain messages.
    media: MediaKinds,
    next_id: CommitId,
    session_dirty: bool,
    updates_dirty: bool,
    channels_dirty: bool,
    /// Received and not yet in a commit, oldest first.
    messages: Vec<IncomingMessage>,
    /// Written by the store now; its answer has not come yet.
    in_flight: Option<Commit>,
    /// Failed commits in a row.
    failures: u32,
    /// After a failure: when to try again.
    retry_at: Option<Instant>,
}

impl Commits {
    pub(super) fn new(media: MediaKinds) -> Commits {
        Commits {
            media,
            ..Commits::default()
        }
    }

    pub(super) fn session_changed(&mut self) {
        self.session_dirty = true;
    }

    pub(super) fn updates_changed(&mut self) {
        self.updates_dirty = true;
    }

    pub(super) fn channels_changed(&mut self) {
        self.channels_dirty = true;
    }

    /// A received message: the one place where what counts as a voice message is decided,
    /// so that the outbox, the pipeline and the log agree.
    pub(super) fn push_message(&mut self, mut message: IncomingMessage) {
        if message
            .voice
            .as_ref()
            .is_some_and(|v| !self.media.accepts(v.kind))
        {
            message.voice = None;
        }
        self.messages.push(message);
    }

    /// Messages received and not yet durable.
    pub(super) fn backlog(&self) -> usize {
        self.messages.len() + self.in_flight.as_ref().map_or(0, |c| c.messages.len())
    }

    /// Nothing waits to be written and nothing is being written.
    pub(super) fn is_settled(&self) -> bool {
        self.in_flight.is_none() && !self.has_changes()
    }

    fn has_changes(&self) -> bool {
        self.session_dirty || self.updates_dirty || self.channels_dirty || !self.messages.is_empty()
    }

    /// The commit to hand to the store now, if one is due: there are changes, none is in
    /// flight, and no retry is being waited out.
    pub(super) fn poll(&mut self, record: &BotRecord, now: Instant) -> Option<Commit> {
        if self.in_flight.is_some()
            || !self.has_changes()
            || self.retry_at.is_some_and(|at| now < at)
        {
            return None;
        }
        self.retry_at = None;
        self.next_id += 1;
        let commit = Commit {
            id: self.next_id,
            session: std::mem::take(&mut self.session_dirty).then(|| record.session.clone()),
            updates: std::mem::take(&mut self.updates_dirty)
                .then_some(record.updates)
                .flatten(),
            channels: std::mem::take(&mut self.channels_dirty).then(|| record.channels.clone()),
            messages: std::mem::take(&mut self.messages),
        };
        self.in_flight = Some(commit.clone());
        Some(commit)
    }

    /// The store's answer for commit `id`: the commit when it is durable, `None` when it
    /// failed (it is queued again) or is not the one in flight.
    pub(super) fn handle_result(
        &mut self,
        id: CommitId,
        result: Result<(), String>,
        now: Instant,
        random: &mut impl Random,
    ) -> Option<Commit> {
        if self.in_flight.as_ref().is_none_or(|c| c.id != id) {
            return None;
        }
        let commit = self.in_flight.take().expect("checked above");
        if result.is_ok() {
            self.failures = 0;
            return Some(commit);
        }
        // Back to the front: the next commit carries these messages first, and the
        // newest session and update state (which cover them).
        self.session_dirty |= commit.session.is_some();
        self.updates_dirty |= commit.updates.is_some();
        self.channels_dirty |= commit.channels.is_some();
        let mut messages = commit.messages;
        messages.append(&mut self.messages);
        self.messages = messages;
        let delay = backoff::full_jitter(RETRY_BASE, RETRY_CAP, self.failures, random);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + delay);
        None
    }

    /// When a failed commit is tried again.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.in_flight.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Seeded;
    use crate::updates::{Peer, UpdateState};

    fn message(id: i32) -> IncomingMessage {
        IncomingMessage {
            chat: Peer::User(1),
            message_id: id,
            from_user_id: Some(1),
            date: 0,
            text: String::new(),
            voice: None,
        }
    }

    fn record(pts: i32) -> BotRecord {
        BotRecord {
            updates: Some(UpdateState {
                pts,
                ..UpdateState::default()
            }),
            ..BotRecord::default()
        }
    }

    #[test]
    fn one_commit_in_flight_and_what_arrives_meanwhile_goes_in_the_next() {
        let (now, mut random) = (Instant::now(), Seeded::new(1));
        let mut commits = Commits::default();
        commits.push_message(message(1));
        commits.updates_changed();
        let first = commits.poll(&record(1), now).unwrap();
        assert_eq!((first.messages.len(), first.updates.unwrap().pts), (1, 1));
        assert!(
            first.session.is_none(),
            "an unchanged session is not written"
        );
        commits.push_message(message(2));
        commits.updates_changed();
        assert_eq!(commits.poll(&record(2), now), None, "one at a time");
        assert_eq!(commits.backlog(), 2);
        let done = commits.handle_result(first.id, Ok(()), now, &mut random);
        assert_eq!(done, Some(first));
        let second = commits.poll(&record(2), now).unwrap();
        assert_eq!(second.messages, [message(2)]);
    }

    #[test]
    fn a_failed_commit_is_retried_first_after_a_backoff() {
        let (now, mut random) = (Instant::now(), Seeded::new(1));
        let mut commits = Commits::default();
        commits.push_message(message(1));
        commits.updates_changed();
        commits.session_changed();
        let first = commits.poll(&record(1), now).unwrap();
        commits.push_message(message(2));
        assert_eq!(
            commits.handle_result(first.id, Err("disk full".into()), now, &mut random),
            None
        );
        let at = commits.poll_timeout().expect("a retry is scheduled");
        assert!(at > now && at <= now + RETRY_BASE);
        assert_eq!(commits.poll(&record(3), now), None, "not before the retry");
        let again = commits.poll(&record(3), at).unwrap();
        assert_eq!(again.messages, [message(1), message(2)]);
        assert_eq!(
            again.updates.unwrap().pts,
            3,
            "the newest state, covering both"
        );
        assert!(again.session.is_some(), "the session change is not lost");
        assert_eq!(commits.poll_timeout(), None);
        assert!(!commits.is_settled());
        commits.handle_result(again.id, Ok(()), at, &mut random);
        assert!(commits.is_settled());
    }

    #[test]
    fn an_answer_for_another_commit_changes_nothing() {
        let (now, mut random) = (Instant::now(), Seeded::new(1));
        let mut commits = Commits::default();
        commits.updates_changed();
        let first = commits.poll(&record(1), now).unwrap();
        assert_eq!(
            commits.handle_result(first.id + 1, Ok(()), now, &mut random),
            None
        );
        assert!(!commits.is_settled());
    }
}
