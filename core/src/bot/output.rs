//! What a bot puts out: actions for its runtime, reports, and warnings.

use std::fmt;
use std::time::Duration;

use crate::fleet::BotState;
use crate::record::Commit;

/// The number of one of a bot's connections.
pub type ConnNo = u32;

/// What the bot asks of its runtime, and what it reports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BotOutput {
    /// Open a connection to this DC, then call [`Bot::handle_connected`] (or
    /// [`Bot::handle_disconnected`] if it cannot be opened). `handshake`: there is no
    /// key for this DC yet, so the connection starts with a handshake. `media`: a
    /// connection for downloads from a DC other than the home one ([`super::media`]).
    Connect {
        conn: ConnNo,
        dc: i32,
        handshake: bool,
        media: bool,
    },
    /// Write these bytes to the connection.
    Send { conn: ConnNo, bytes: Vec<u8> },
    /// Close the connection. No report about it is needed (one that comes is ignored).
    Disconnect { conn: ConnNo },
    /// Write this commit to the store, then call [`Bot::handle_committed`].
    Commit(Commit),
    /// The bot entered `state`.
    State {
        state: BotState,
        reason: Option<String>,
    },
    /// A commit is durable: its messages are handed on.
    Committed(Commit),
    /// The store refused a commit; it is retried.
    CommitFailed { error: String },
    /// The bot reconnects after a backoff.
    Reconnecting,
    /// A voice file the pipeline asked for ([`Bot::download`](super::Bot::download)).
    Downloaded {
        id: crate::voice::JobId,
        result: Result<Vec<u8>, crate::voice::Failure>,
    },
    /// Something went wrong that loses nothing but must not go unseen.
    Warning(Warning),
}

/// Trouble worth a log line and a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// `differenceTooLong`: Telegram keeps no more; updates up to this many pts are gone.
    UpdatesSkipped { pts: i32 },
    /// An answer that does not parse.
    Unparsable { what: &'static str },
    /// Updates that arrived during a sync were dropped; the sync fetches them again.
    HeldDropped,
    /// Telegram refused the stored update state (`PERSISTENT_TIMESTAMP_*`): the bot
    /// starts from the current state, and what came in between is not fetched.
    StateReset { error: String },
    /// `AUTH_KEY_DUPLICATED`: the key was used from two places at once and is dead; a
    /// new handshake and login follow.
    KeyDuplicated,
    /// Too many messages wait for the store: new updates are left for getDifference to
    /// fetch once the store catches up.
    Backlogged,
    /// A sync while running failed; it is tried again on the same connection.
    SyncRetried { error: String, after: Duration },
    /// Catching up a supergroup or channel failed: it is tried again on the channel's
    /// next update, or the channel is forgotten when the bot may no longer read it.
    ChannelSyncFailed {
        channel_id: i64,
        error: String,
        forgotten: bool,
    },
}

impl Warning {
    /// Every [`Warning::kind`], so that metrics show each one from the start.
    pub const KINDS: [&'static str; 8] = [
        "updates_skipped",
        "unparsable_answer",
        "held_updates_dropped",
        "update_state_reset",
        "auth_key_duplicated",
        "store_backlog",
        "sync_retried",
        "channel_sync_failed",
    ];

    /// A short stable name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::UpdatesSkipped { .. } => "updates_skipped",
            Warning::Unparsable { .. } => "unparsable_answer",
            Warning::HeldDropped => "held_updates_dropped",
            Warning::StateReset { .. } => "update_state_reset",
            Warning::KeyDuplicated => "auth_key_duplicated",
            Warning::Backlogged => "store_backlog",
            Warning::SyncRetried { .. } => "sync_retried",
            Warning::ChannelSyncFailed { .. } => "channel_sync_failed",
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UpdatesSkipped { pts } => write!(
                f,
                "Telegram keeps no older updates (differenceTooLong): {pts} pts skipped"
            ),
            Warning::Unparsable { what } => write!(f, "an answer ({what}) does not parse"),
            Warning::HeldDropped => f.write_str(
                "too many updates arrived during a sync: the oldest were dropped and are fetched again",
            ),
            Warning::StateReset { error } => write!(
                f,
                "Telegram refused the stored update state ({error}): starting from the current one"
            ),
            Warning::KeyDuplicated => f.write_str(
                "the auth key was used from two places at once (AUTH_KEY_DUPLICATED): it is dropped, a new key and login follow",
            ),
            Warning::Backlogged => f.write_str(
                "too many messages wait for the store: new updates are fetched once it catches up",
            ),
            Warning::ChannelSyncFailed {
                channel_id,
                error,
                forgotten,
            } => {
                let then = if *forgotten {
                    "the bot may no longer read it: forgotten"
                } else {
                    "fetched again on its next update"
                };
                write!(f, "catching up channel {channel_id} failed ({error}); {then}")
            }
            Warning::SyncRetried { error, after } => write!(
                f,
                "catching up failed ({error}); trying again in {} s on the same connection",
                after.as_secs()
            ),
        }
    }
}
