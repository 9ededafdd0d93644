//! The fleet: the bots this process owns and what each one is doing, as the health
//! surface reports it.
//!
//! The bot state machines that drive these states arrive with the MTProto core; until then
//! the fleet is a plain table that a runtime fills, and an empty fleet is reported as such.

use std::collections::BTreeMap;

/// Where a bot is in its life, as reported on `/readyz` and in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BotState {
    Connecting,
    Handshaking,
    Authorizing,
    Syncing,
    Running,
    Backoff,
    Failed,
    Stopping,
    Stopped,
}

impl BotState {
    pub const ALL: [BotState; 9] = [
        BotState::Connecting,
        BotState::Handshaking,
        BotState::Authorizing,
        BotState::Syncing,
        BotState::Running,
        BotState::Backoff,
        BotState::Failed,
        BotState::Stopping,
        BotState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BotState::Connecting => "connecting",
            BotState::Handshaking => "handshaking",
            BotState::Authorizing => "authorizing",
            BotState::Syncing => "syncing",
            BotState::Running => "running",
            BotState::Backoff => "backoff",
            BotState::Failed => "failed",
            BotState::Stopping => "stopping",
            BotState::Stopped => "stopped",
        }
    }

    /// Whether the bot has reached a state that start-up waits for. `Failed` counts: a
    /// revoked token needs a person, not a restart, and must not hold a rollout hostage
    /// (it stays visible in `/readyz` details and in metrics).
    pub fn is_settled(self) -> bool {
        matches!(self, BotState::Running | BotState::Failed)
    }
}

/// What the health surface knows about one bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotStatus {
    pub workspace_id: String,
    /// The bot's @username once it has been learned from Telegram.
    pub username: Option<String>,
    pub state: BotState,
    /// Unix seconds at which the bot entered `state`.
    pub since: u64,
    /// The last error, already free of secrets.
    pub last_error: Option<String>,
    /// Reconnections since the process started.
    pub reconnects: u64,
    /// Messages received since the process started.
    pub messages: u64,
}

impl BotStatus {
    /// A bot that has just been created.
    pub fn new(workspace_id: &str, now_unix: u64) -> Self {
        BotStatus {
            workspace_id: workspace_id.to_owned(),
            username: None,
            state: BotState::Connecting,
            since: now_unix,
            last_error: None,
            reconnects: 0,
            messages: 0,
        }
    }

    /// Applies what the bot reported.
    pub fn record(&mut self, event: &crate::bot::BotEvent, now_unix: u64) {
        use crate::bot::BotEvent;
        match event {
            BotEvent::State { state, reason } => {
                if *state != self.state {
                    self.since = now_unix;
                }
                self.state = *state;
                if reason.is_some() {
                    self.last_error = reason.clone();
                } else if *state == BotState::Running {
                    self.last_error = None;
                }
            }
            BotEvent::Snapshot(snapshot) => {
                if snapshot.username.is_some() {
                    self.username = snapshot.username.clone();
                }
            }
            BotEvent::Message(_) => self.messages += 1,
            BotEvent::Reconnecting => self.reconnects += 1,
        }
    }
}

impl Fleet {
    /// The status of one bot, to update it.
    pub fn get_mut(&mut self, workspace_id: &str) -> Option<&mut BotStatus> {
        self.bots.get_mut(workspace_id)
    }
}

/// The bots of this process, keyed by workspace id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    bots: BTreeMap<String, BotStatus>,
}

impl Fleet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the status of one bot.
    pub fn upsert(&mut self, status: BotStatus) {
        self.bots.insert(status.workspace_id.clone(), status);
    }

    pub fn remove(&mut self, workspace_id: &str) -> Option<BotStatus> {
        self.bots.remove(workspace_id)
    }

    /// The bots in workspace-id order.
    pub fn bots(&self) -> impl ExactSizeIterator<Item = &BotStatus> {
        self.bots.values()
    }

    pub fn len(&self) -> usize {
        self.bots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bots.is_empty()
    }

    pub fn count(&self, state: BotState) -> usize {
        self.bots.values().filter(|b| b.state == state).count()
    }

    /// Every bot has settled (see [`BotState::is_settled`]); true for an empty fleet.
    pub fn is_settled(&self) -> bool {
        self.bots.values().all(|b| b.state.is_settled())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(ws: &str, state: BotState) -> BotStatus {
        BotStatus {
            state,
            ..BotStatus::new(ws, 0)
        }
    }

    #[test]
    fn fleet_settles_when_every_bot_runs_or_has_failed() {
        let mut fleet = Fleet::new();
        assert!(fleet.is_settled());
        fleet.upsert(bot("ws_2", BotState::Running));
        fleet.upsert(bot("ws_1", BotState::Syncing));
        assert!(!fleet.is_settled());
        fleet.upsert(bot("ws_1", BotState::Failed));
        assert!(fleet.is_settled());
        assert_eq!(fleet.len(), 2);
        assert_eq!(fleet.count(BotState::Running), 1);
        let order: Vec<_> = fleet.bots().map(|b| b.workspace_id.as_str()).collect();
        assert_eq!(order, ["ws_1", "ws_2"]);
    }
}
