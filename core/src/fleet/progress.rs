//! The start's progress, for the operator watching a thousand bots come up: every
//! [`PROGRESS_EVERY`] while they start, a [`FleetEvent::Progress`] ("412/1000 bots
//! running, 3 failed"), and a last one with the time it took once every bot has had its
//! first try (the moment readiness waits for). A start that is over before the first
//! report, an empty fleet among them, has the last one only.
//!
//! Only the process's start is reported: it begins with the first wanted set and ends
//! for good with its last report (or a stop). A bot added later has its own line when it
//! runs. Counting is a scan of the bots, done at a report; between reports the
//! workspaces still waiting for their first try are kept in a set, so that the last
//! report comes the moment the last bot is tried, without a scan per bot.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Fleet, FleetEvent, FleetStatus};
use crate::session::Now;

/// How often the start's progress is reported while bots start.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Where the fleet is in its start.
#[derive(Debug, Default)]
pub(super) enum Start {
    /// No wanted set yet.
    #[default]
    NotBegun,
    Starting {
        began: Instant,
        next_report: Instant,
        /// Workspaces whose bot has not had its first try.
        waiting: HashSet<String>,
    },
    /// Reported as done, or stopped.
    Over,
}

impl Fleet {
    /// After a wanted set: the start begins with the first one; one that comes while
    /// starting adds its bots to those waited for.
    pub(super) fn progress_wanted(&mut self, now: Now) {
        let waiting = untried(&self.health.fleet);
        match &mut self.startup {
            Start::NotBegun => {
                self.startup = Start::Starting {
                    began: now.instant,
                    next_report: now.instant + PROGRESS_EVERY,
                    waiting,
                }
            }
            Start::Starting { waiting: w, .. } => *w = waiting,
            Start::Over => return,
        }
        self.progress_maybe_done(now);
    }

    /// The current bot of `workspace_id` has had its first try (it runs, waits to
    /// retry, or has failed).
    pub(super) fn progress_tried(&mut self, workspace_id: &str, now: Now) {
        if let Start::Starting { waiting, .. } = &mut self.startup
            && waiting.remove(workspace_id)
            && waiting.is_empty()
        {
            self.progress_maybe_done(now);
        }
    }

    /// A report if one is due at `now`.
    pub(super) fn progress_timeout(&mut self, now: Now) {
        let Start::Starting {
            next_report,
            waiting,
            ..
        } = &mut self.startup
        else {
            return;
        };
        if now.instant < *next_report {
            return;
        }
        *next_report = now.instant + PROGRESS_EVERY;
        let progress = self.health.fleet.progress();
        if progress.untried == 0 {
            waiting.clear();
            return self.progress_maybe_done(now);
        }
        self.events.push_back(FleetEvent::Progress {
            progress,
            elapsed: None,
        });
    }

    /// The next report, while starting.
    pub(super) fn progress_deadline(&self) -> Option<Instant> {
        match &self.startup {
            Start::Starting { next_report, .. } => Some(*next_report),
            _ => None,
        }
    }

    /// The start is over without a last report (a stop).
    pub(super) fn progress_end(&mut self) {
        self.startup = Start::Over;
    }

    /// The last report, when no bot is left to try.
    fn progress_maybe_done(&mut self, now: Now) {
        let Start::Starting { began, waiting, .. } = &mut self.startup else {
            return;
        };
        if !waiting.is_empty() {
            return;
        }
        let progress = self.health.fleet.progress();
        if progress.untried > 0 {
            // The set missed a bot (it is the scan that counts): take the scan's.
            *waiting = untried(&self.health.fleet);
            return;
        }
        let elapsed = now.instant.saturating_duration_since(*began);
        self.startup = Start::Over;
        self.events.push_back(FleetEvent::Progress {
            progress,
            elapsed: Some(elapsed),
        });
    }
}

/// The workspaces whose bot has not had its first try.
fn untried(fleet: &FleetStatus) -> HashSet<String> {
    fleet
        .bots()
        .filter(|b| !b.tried)
        .map(|b| b.workspace_id.clone())
        .collect()
}
