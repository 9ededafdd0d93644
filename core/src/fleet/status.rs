//! What the health surface knows about the fleet: each bot's state, and the counters
//! behind `/metrics`.

use std::collections::BTreeMap;
use std::fmt;

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

    /// Whether a bot in this state has had its first try: it runs, waits to retry, or
    /// needs a person. Readiness waits for every bot's first try, not for its success.
    pub fn has_been_tried(self) -> bool {
        matches!(
            self,
            BotState::Running | BotState::Backoff | BotState::Failed
        )
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
    /// The bot has had its first try (see [`BotState::has_been_tried`]).
    pub tried: bool,
    /// Reconnections since the process started.
    pub reconnects: u64,
    /// Messages received and durably handed on since the process started.
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
            tried: false,
            reconnects: 0,
            messages: 0,
        }
    }

    /// The bot entered `state`, for `reason` if it is trouble.
    pub fn set_state(&mut self, state: BotState, reason: Option<String>, now_unix: u64) {
        if state != self.state {
            self.since = now_unix;
        }
        self.state = state;
        self.tried |= state.has_been_tried();
        if reason.is_some() {
            self.last_error = reason;
        } else if state == BotState::Running {
            self.last_error = None;
        }
    }
}

/// The bots counted by how far they got: the start's progress reports and `/readyz`
/// while starting. Shown as "412/1000 bots running, 3 failed" (", 2 retrying" when some
/// wait in backoff).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: usize,
    pub running: usize,
    /// Failed: they need a person (a revoked token, say).
    pub failed: usize,
    /// Waiting in backoff to try again.
    pub retrying: usize,
    /// Not tried yet (see [`BotState::has_been_tried`]).
    pub untried: usize,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} bots running, {} failed",
            self.running, self.total, self.failed
        )?;
        if self.retrying > 0 {
            write!(f, ", {} retrying", self.retrying)?;
        }
        Ok(())
    }
}

/// Process-wide counters, by what they count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Warnings by kind (see [`crate::bot::Warning::kind`]).
    pub warnings: BTreeMap<&'static str, u64>,
    /// Bots restarted after an internal error.
    pub bot_restarts: u64,
    /// Commits written, and commits the store refused.
    pub commits: u64,
    pub commit_failures: u64,
}

/// The bots of this process, keyed by workspace id, and the fleet's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetStatus {
    bots: BTreeMap<String, BotStatus>,
    pub counters: Counters,
}

impl FleetStatus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the status of one bot.
    pub fn upsert(&mut self, status: BotStatus) {
        self.bots.insert(status.workspace_id.clone(), status);
    }

    pub fn get(&self, workspace_id: &str) -> Option<&BotStatus> {
        self.bots.get(workspace_id)
    }

    pub fn get_mut(&mut self, workspace_id: &str) -> Option<&mut BotStatus> {
        self.bots.get_mut(workspace_id)
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

    /// Bots that have not had their first try yet.
    pub fn untried(&self) -> usize {
        self.bots.values().filter(|b| !b.tried).count()
    }

    /// The bots counted by how far they got (one pass).
    pub fn progress(&self) -> Progress {
        let mut p = Progress {
            total: self.bots.len(),
            ..Progress::default()
        };
        for bot in self.bots.values() {
            match bot.state {
                BotState::Running => p.running += 1,
                BotState::Failed => p.failed += 1,
                BotState::Backoff => p.retrying += 1,
                _ => {}
            }
            p.untried += usize::from(!bot.tried);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bot_counts_as_tried_once_it_has_run_waited_or_failed() {
        let mut status = BotStatus::new("ws_1", 0);
        for state in [
            BotState::Handshaking,
            BotState::Authorizing,
            BotState::Syncing,
        ] {
            status.set_state(state, None, 1);
            assert!(!status.tried, "{state:?}");
        }
        status.set_state(BotState::Backoff, Some("connection lost".into()), 2);
        assert!(status.tried);
        assert_eq!(status.last_error.as_deref(), Some("connection lost"));
        status.set_state(BotState::Connecting, None, 3);
        assert!(status.tried, "tried stays tried");
        status.set_state(BotState::Running, None, 4);
        assert_eq!((status.last_error, status.since), (None, 4));
    }

    #[test]
    fn the_table_is_in_workspace_order_and_counts_untried_bots() {
        let mut fleet = FleetStatus::new();
        fleet.upsert(BotStatus::new("ws_2", 0));
        fleet.upsert(BotStatus::new("ws_1", 0));
        fleet
            .get_mut("ws_2")
            .unwrap()
            .set_state(BotState::Running, None, 1);
        let order: Vec<_> = fleet.bots().map(|b| b.workspace_id.as_str()).collect();
        assert_eq!(order, ["ws_1", "ws_2"]);
        assert_eq!((fleet.untried(), fleet.count(BotState::Running)), (1, 1));
    }

    #[test]
    fn progress_counts_running_failed_retrying_and_untried_bots() {
        let mut fleet = FleetStatus::new();
        let states = [
            Some(BotState::Running),
            Some(BotState::Running),
            Some(BotState::Failed),
            Some(BotState::Backoff),
            Some(BotState::Syncing),
            None,
        ];
        for (i, state) in states.into_iter().enumerate() {
            let mut bot = BotStatus::new(&format!("ws_{i}"), 0);
            if let Some(state) = state {
                bot.set_state(state, None, 1);
            }
            fleet.upsert(bot);
        }
        let p = fleet.progress();
        assert_eq!(
            p,
            Progress {
                total: 6,
                running: 2,
                failed: 1,
                retrying: 1,
                untried: 2
            }
        );
        assert_eq!(p.to_string(), "2/6 bots running, 1 failed, 1 retrying");
        assert_eq!(
            FleetStatus::new().progress().to_string(),
            "0/0 bots running, 0 failed"
        );
    }
}
