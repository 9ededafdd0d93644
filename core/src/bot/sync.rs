//! The bot's calls to Telegram and what it does with their answers: login, learning who
//! it is, taking or catching up the update state, and applying pushed updates by the pts
//! rule, with getDifference for gaps, `updatesTooLong`, check-ins and after a backlog.

use std::time::Duration;

use grammers_tl_types::{Deserializable as _, Serializable as _, enums, functions};

use super::{Bot, Call, MAX_DC_ID, Warning};
use crate::backoff;
use crate::fleet::BotState;
use crate::random::Random;
use crate::rpc_error::RpcError;
use crate::updates::{self, PtsCheck, Received, UpdateState};

/// Updates kept while the bot syncs. Few: what is dropped beyond them is fetched again
/// by the sync itself, and ten thousand bots syncing at once each hold theirs.
pub(super) const MAX_HELD: usize = 100;
/// Messages waiting for the store beyond which new updates are left to getDifference.
const MAX_BACKLOG: usize = 1000;
/// A failed sync while running is retried after full jitter up to this ceiling.
const RESYNC_BASE: Duration = Duration::from_secs(2);
const RESYNC_CAP: Duration = Duration::from_secs(120);

impl Bot {
    pub(super) fn login(&mut self) {
        self.set_state(BotState::Authorizing, None);
        let request = functions::auth::ImportBotAuthorization {
            flags: 0,
            api_id: self.config.api_id,
            api_hash: self.config.api_hash.expose().clone(),
            bot_auth_token: self.config.token.expose().clone(),
        };
        self.invoke(Call::Login, request.to_bytes());
    }

    /// After connecting (and logging in): who am I, and what did I miss.
    pub(super) fn sync(&mut self) {
        self.set_state(BotState::Syncing, None);
        let me = functions::users::GetUsers {
            id: vec![enums::InputUser::UserSelf],
        };
        self.invoke(Call::GetMe, me.to_bytes());
        self.resync();
    }

    /// Takes the update state: getDifference from the stored one, or getState.
    pub(super) fn resync(&mut self) {
        match self.record.updates {
            Some(state) => self.get_difference(state),
            None => {
                self.syncing = true;
                self.invoke(Call::GetState, functions::updates::GetState {}.to_bytes());
            }
        }
    }

    /// Catches up while running (a gap, `updatesTooLong`, a check-in): updates are held
    /// until the difference is in, and a server that never answers is given up on.
    pub(super) fn start_difference(&mut self) {
        if self.syncing || self.state != BotState::Running {
            return;
        }
        if self.phase_deadline.is_none() {
            self.phase_deadline = Some(self.now + super::PHASE_TIMEOUT);
        }
        self.resync();
    }

    fn get_difference(&mut self, state: UpdateState) {
        self.syncing = true;
        let request = functions::updates::GetDifference {
            pts: state.pts,
            pts_limit: None,
            pts_total_limit: None,
            date: state.date,
            qts: state.qts,
            qts_limit: None,
        };
        self.invoke(Call::GetDifference, request.to_bytes());
    }

    fn learn_self(&mut self, user: &enums::User) {
        if let enums::User::User(u) = user
            && (self.record.session.user_id != Some(u.id)
                || self.record.session.username != u.username)
        {
            let session = self.session_record();
            session.user_id = Some(u.id);
            session.username = u.username.clone();
        }
    }

    fn set_updates(&mut self, state: UpdateState) {
        if self.record.updates != Some(state) {
            self.record.updates = Some(state);
            self.commits.updates_changed();
        }
    }

    pub(super) fn on_result(&mut self, call: Call, body: &[u8], random: &mut impl Random) {
        match call {
            Call::Login => {
                if let Ok(enums::auth::Authorization::Authorization(auth)) =
                    enums::auth::Authorization::from_bytes(body)
                {
                    self.learn_self(&auth.user);
                }
                let home = self.home_dc();
                let session = self.session_record();
                session.authorized = true;
                session.home_dc = Some(home);
                self.sync();
            }
            Call::GetMe => match Vec::<enums::User>::from_bytes(body) {
                Ok(users) => {
                    if let Some(user) = users.first() {
                        self.learn_self(user);
                    }
                }
                Err(_) => self.warn(Warning::Unparsable {
                    what: "users.getUsers",
                }),
            },
            Call::GetState => match enums::updates::State::from_bytes(body) {
                Ok(enums::updates::State::State(state)) => {
                    self.set_updates(UpdateState::from(&state));
                    self.sync_done();
                }
                Err(_) => self.unparsable("updates.State", random),
            },
            Call::GetDifference => match enums::updates::Difference::from_bytes(body) {
                Ok(difference) => self.on_difference(difference),
                Err(_) => self.unparsable("updates.Difference", random),
            },
            Call::GetChannelDifference(id) => self.on_channel_difference(id, body),
            Call::GetFile(id) => self.on_file_part(id, body),
            Call::RefetchMessage(id) => self.on_refetched(id, body),
            Call::ExportAuthorization(dc) => self.on_exported(dc, body, random),
        }
    }

    /// A sync answer that does not parse: nothing can be trusted on this connection.
    fn unparsable(&mut self, what: &'static str, random: &mut impl Random) {
        self.warn(Warning::Unparsable { what });
        self.close();
        self.back_off(
            random,
            format!("Telegram's answer ({what}) does not parse"),
            None,
        );
    }

    fn on_difference(&mut self, difference: enums::updates::Difference) {
        let (messages, state, more) = match difference {
            enums::updates::Difference::Empty(empty) => {
                let state = self.record.updates.map(|s| UpdateState {
                    date: empty.date,
                    seq: empty.seq,
                    ..s
                });
                (vec![], state, false)
            }
            enums::updates::Difference::Difference(d) => {
                // Supergroups and channels with news come as `updateChannelTooLong`.
                self.learn_channels(&d.chats);
                self.on_channel_events(updates::channel_events(&d.other_updates));
                let enums::updates::State::State(s) = d.state;
                (d.new_messages, Some(UpdateState::from(&s)), false)
            }
            enums::updates::Difference::Slice(d) => {
                self.learn_channels(&d.chats);
                self.on_channel_events(updates::channel_events(&d.other_updates));
                let enums::updates::State::State(s) = d.intermediate_state;
                (d.new_messages, Some(UpdateState::from(&s)), true)
            }
            enums::updates::Difference::TooLong(t) => {
                // Telegram keeps no more: start from its pts (those messages are gone).
                let mut state = self.record.updates.unwrap_or_default();
                let skipped = t.pts.saturating_sub(state.pts);
                self.warn(Warning::UpdatesSkipped { pts: skipped });
                state.pts = t.pts;
                (vec![], Some(state), false)
            }
        };
        for message in messages.iter().filter_map(updates::incoming) {
            self.commits.push_message(message);
        }
        if let Some(state) = state {
            self.set_updates(state);
        }
        self.syncing = false;
        match (more, self.record.updates) {
            (true, Some(state)) if self.commits.backlog() < MAX_BACKLOG => {
                self.get_difference(state)
            }
            (true, Some(_)) => {
                // The store is behind: the next slice waits until it catches up.
                self.backlogged = true;
                self.sync_done();
            }
            _ => self.sync_done(),
        }
    }

    /// The update state is taken: the bot runs, and what arrived meanwhile is applied.
    fn sync_done(&mut self) {
        self.syncing = false;
        self.held_dropped = false;
        self.last_update = self.now;
        self.phase_deadline = None;
        if self.state != BotState::Running {
            self.migrations = 0;
            self.running_since = Some(self.now);
            self.set_state(BotState::Running, None);
        }
        // Applied by the pts rule: duplicates of what the sync brought are skipped,
        // anything newer is delivered or shows a gap.
        while !self.syncing && self.state == BotState::Running {
            let Some(updates) = self.held.pop_front() else {
                break;
            };
            self.on_updates(updates);
        }
    }

    /// Once the store has caught up, fetch what was left to getDifference.
    pub(super) fn resume_after_backlog(&mut self) {
        if self.backlogged && self.commits.backlog() < MAX_BACKLOG / 2 {
            self.backlogged = false;
            self.start_difference();
        }
    }

    pub(super) fn on_updates(&mut self, updates: enums::Updates) {
        if self.syncing || self.state != BotState::Running {
            if self.held.len() == MAX_HELD {
                // Dropping the oldest is safe: the sync in progress starts from a pts
                // before them, and the next update applied shows any gap.
                self.held.pop_front();
                if !std::mem::replace(&mut self.held_dropped, true) {
                    self.warn(Warning::HeldDropped);
                }
            }
            self.held.push_back(updates);
            return;
        }
        self.last_update = self.now;
        if self.backlogged || self.commits.backlog() >= MAX_BACKLOG {
            // Not applied: pts stays where it is, and getDifference fetches these later.
            if !self.backlogged {
                self.backlogged = true;
                self.warn(Warning::Backlogged);
            }
            return;
        }
        let Some(mut state) = self.record.updates else {
            return;
        };
        match updates::received(&updates) {
            Received::TooLong => self.start_difference(),
            Received::Updates(list) => {
                let (all, chats) = updates::parts(&updates);
                self.learn_channels(chats);
                self.on_channel_events(updates::channel_events(all));
                for update in list {
                    match updates::check_pts(state.pts, update.pts, update.pts_count) {
                        PtsCheck::Apply => {
                            state.pts = update.pts;
                            if let Some(message) = update.message {
                                self.commits.push_message(message);
                            }
                        }
                        PtsCheck::Duplicate => {}
                        PtsCheck::Gap => {
                            self.set_updates(state);
                            self.start_difference();
                            return;
                        }
                    }
                }
                self.set_updates(state);
            }
        }
    }

    pub(super) fn on_error(&mut self, call: Call, error: RpcError, random: &mut impl Random) {
        if error.is_token_rejected() {
            // A person must fix the token: no retries that would hammer Telegram.
            self.close();
            self.held.clear();
            self.set_state(
                BotState::Failed,
                Some(format!("Telegram rejected the bot token ({})", error.name)),
            );
            return;
        }
        if error.is_auth_key_duplicated() {
            // Telegram revoked the key: reconnecting with it would only fail again.
            self.warn(Warning::KeyDuplicated);
            self.close();
            self.drop_home_key();
            self.back_off(random, format!("{call:?}: {error}"), None);
            return;
        }
        if let Call::GetChannelDifference(id) = call {
            return self.on_channel_error(id, error);
        }
        if let Call::GetFile(id) | Call::RefetchMessage(id) = call {
            return self.on_download_error(id, error, random);
        }
        if let Call::ExportAuthorization(dc) = call {
            return self.on_export_error(dc, error, random);
        }
        if let Some(dc) = error.migrate_to().filter(|_| call == Call::Login) {
            // One move per connection attempt, to a plausible DC: a DC pointing at itself
            // or two pointing at each other must not make the bot log in without end.
            self.close();
            if (1..=MAX_DC_ID).contains(&dc) && dc != self.home_dc() && self.migrations < 2 {
                self.migrations += 1;
                self.session_record().home_dc = Some(dc);
                self.connect();
            } else {
                let reason = format!("Telegram redirects to DC {dc} again");
                self.back_off(random, reason, None);
            }
            return;
        }
        if error.is_auth_key_unregistered() {
            self.logged_out(call, random);
            return;
        }
        if call == Call::GetDifference && error.is_persistent_timestamp() {
            // The stored pts or date is refused: start from the current state.
            self.warn(Warning::StateReset {
                error: error.to_string(),
            });
            self.record.updates = None;
            self.resync();
            return;
        }
        let wait = error
            .wait_seconds()
            .map(|s| Duration::from_secs(u64::from(s)));
        if self.state == BotState::Running {
            // The connection is healthy: try the sync again later on it.
            // Updates stay held until then (the sync fetches anything they would bring).
            let delay = backoff::full_jitter(RESYNC_BASE, RESYNC_CAP, 0, random)
                .max(wait.unwrap_or_default());
            self.syncing = true;
            self.phase_deadline = None;
            self.resync_at = Some(self.now + delay);
            self.warn(Warning::SyncRetried {
                error: error.to_string(),
                after: delay,
            });
            return;
        }
        self.close();
        self.back_off(random, format!("{call:?}: {error}"), wait);
    }

    /// `AUTH_KEY_UNREGISTERED` and friends: the key is not logged in (any more).
    fn logged_out(&mut self, call: Call, random: &mut impl Random) {
        // Every call in flight fails alike: one login answers them all (the sync after it
        // asks again), and one per connection: a server that logs the key out again right
        // away gets a back-off, not a login loop.
        if self.state == BotState::Authorizing && call != Call::Login {
            return;
        }
        self.calls.clear();
        self.syncing = false;
        self.session_record().authorized = false;
        if self.relogins == 0 && call != Call::Login {
            self.relogins += 1;
            self.login();
        } else {
            self.close();
            self.back_off(random, "Telegram logged the bot out again".into(), None);
        }
    }
}
