//! The health surface: `/healthz`, `/livez`, `/readyz` and `/metrics`, answered from the
//! process's lifecycle and its fleet. Both runtimes serve exactly these responses.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fleet::{BotState, FleetStatus, VoiceStatus};
use crate::http::{Method, Request, Response};
use crate::metrics::{self, ProcessSample};

/// The path whose response includes process statistics (which the runtime reads only
/// for it).
pub const METRICS_PATH: &str = "/metrics";

/// Where the process is in its own life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Loading bots; not ready yet.
    Starting,
    /// Started; ready once the fleet has settled.
    Serving,
    /// A stop signal arrived: never ready again.
    Stopping,
}

/// The fleet's loop counts as stuck when it has not run its timers for this long.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(10);

/// What the health surface reports: the process's lifecycle, its bots, the store.
#[derive(Clone, Debug)]
pub struct Health {
    lifecycle: Lifecycle,
    pub fleet: FleetStatus,
    /// The store's last answer was this error (commits are being retried).
    store_error: Option<String>,
    /// When the fleet's loop last ran its timers.
    heartbeat: Option<Instant>,
    /// What start-up waits for (an unreachable store, say).
    starting_reason: Option<String>,
    /// The voice pipeline.
    pub voice: VoiceStatus,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Health {
            lifecycle: Lifecycle::Starting,
            fleet: FleetStatus::new(),
            store_error: None,
            heartbeat: None,
            starting_reason: None,
            voice: VoiceStatus::default(),
        }
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// Start-up is done. Ignored once stopping: a stop cannot be undone.
    pub fn set_serving(&mut self) {
        if self.lifecycle == Lifecycle::Starting {
            self.lifecycle = Lifecycle::Serving;
        }
    }

    pub fn set_stopping(&mut self) {
        self.lifecycle = Lifecycle::Stopping;
    }

    /// What start-up is waiting for, shown as the reason while starting.
    pub fn set_starting_reason(&mut self, reason: Option<String>) {
        self.starting_reason = reason;
    }

    /// The store refuses commits with this error, or (`None`) works.
    pub fn set_store_error(&mut self, error: Option<String>) {
        self.store_error = error;
    }

    pub fn store_error(&self) -> Option<&str> {
        self.store_error.as_deref()
    }

    /// The fleet's loop ran its timers at `now`.
    pub fn heartbeat(&mut self, now: Instant) {
        self.heartbeat = Some(now);
    }

    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.heartbeat
    }

    /// Why the process is not ready at `now`, or `None` when it is. Ready means started
    /// (every bot has had its first try), not stopping, the fleet's loop alive, and the
    /// store writing. One bot's trouble (a backoff, a FLOOD_WAIT, a revoked token) never
    /// makes the process unready: with thousands of bots some bot is always
    /// reconnecting, and a rollout would wait for ever; it shows in the bot's details and
    /// in metrics. An empty fleet is ready: a replica that owns no bot has nothing to wait
    /// for, and `telegram_bots_total == 0` is what alerts watch.
    pub fn not_ready_reason(&self, now: Instant) -> Option<String> {
        match self.lifecycle {
            Lifecycle::Starting => {
                return Some(match &self.starting_reason {
                    Some(why) => format!("starting: {why}"),
                    None => "starting".into(),
                });
            }
            Lifecycle::Stopping => return Some("shutting down".into()),
            Lifecycle::Serving => {}
        }
        if self
            .heartbeat
            .is_none_or(|at| now.saturating_duration_since(at) > HEARTBEAT_STALE)
        {
            return Some("the fleet's loop is not running".into());
        }
        if let Some(error) = &self.store_error {
            return Some(format!("cannot save the bots' state: {error}"));
        }
        match self.fleet.untried() {
            0 => None,
            n => Some(format!("starting bots ({n} not tried yet)")),
        }
    }

    pub fn is_ready(&self, now: Instant) -> bool {
        self.not_ready_reason(now).is_none()
    }

    /// The response to a health request at `now`. `process` is included in `/metrics`
    /// when given.
    pub fn respond(
        &self,
        request: &Request,
        now: Instant,
        process: Option<&ProcessSample>,
    ) -> Response {
        let route = match request.path.as_str() {
            "/healthz" | "/livez" => Route::Live,
            "/readyz" => Route::Ready,
            METRICS_PATH => Route::Metrics,
            _ => return Response::error(404),
        };
        if !matches!(request.method, Method::Get | Method::Head) {
            let mut response = Response::error(405);
            response.allow = Some("GET, HEAD");
            return response;
        }
        match route {
            Route::Live => Response::json(200, json!({ "status": "ok" }).to_string()),
            Route::Ready => self.readiness(now),
            Route::Metrics => Response {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                allow: None,
                body: metrics::render(self, self.is_ready(now), process, now).into_bytes(),
            },
        }
    }

    fn readiness(&self, now: Instant) -> Response {
        let details: Vec<Value> = self
            .fleet
            .bots()
            .map(|b| {
                json!({
                    "workspace_id": b.workspace_id,
                    "username": b.username,
                    "state": b.state.as_str(),
                    "since": rfc3339(b.since),
                    "last_error": b.last_error,
                })
            })
            .collect();
        let bots = self.fleet.count(BotState::Running);
        let (status, body) = match self.not_ready_reason(now) {
            None => (
                200,
                json!({ "status": "ready", "bots": bots, "details": details }),
            ),
            Some(reason) => {
                let mut body = json!({ "status": "not ready", "bots": bots, "reason": reason });
                if let Some(progress) = self.start_progress() {
                    body["progress"] = progress.into();
                }
                body["details"] = details.into();
                (503, body)
            }
        };
        Response::json(status, body.to_string())
    }

    /// While bots have not all had their first try, how far they got, for `/readyz`:
    /// "starting: 412/1000 bots running, 3 failed".
    fn start_progress(&self) -> Option<String> {
        if self.lifecycle != Lifecycle::Serving {
            return None;
        }
        let progress = self.fleet.progress();
        (progress.untried > 0).then(|| format!("starting: {progress}"))
    }
}

enum Route {
    Live,
    Ready,
    Metrics,
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-26T06:00:00Z`).
fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for all u64 seconds we meet.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::BotStatus;

    fn get(path: &str) -> Request {
        Request {
            method: Method::Get,
            path: path.to_owned(),
        }
    }

    fn body(response: &Response) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn liveness_is_ok_in_every_lifecycle() {
        let mut health = Health::new();
        let now = Instant::now();
        for step in 0..3 {
            match step {
                1 => health.set_serving(),
                2 => health.set_stopping(),
                _ => {}
            }
            for path in ["/healthz", "/livez"] {
                let r = health.respond(&get(path), now, None);
                assert_eq!((r.status, body(&r)), (200, json!({"status": "ok"})));
            }
        }
    }

    #[test]
    fn readiness_waits_for_every_first_try_but_not_for_success() {
        let now = Instant::now();
        let mut health = Health::new();
        health.heartbeat(now);
        let r = health.respond(&get("/readyz"), now, None);
        assert_eq!(
            (r.status, body(&r)["reason"].as_str()),
            (503, Some("starting"))
        );
        assert_eq!(body(&r).get("progress"), None, "no bots known yet");

        health.set_serving();
        let r = health.respond(&get("/readyz"), now, None);
        assert_eq!(
            (r.status, body(&r)),
            (200, json!({"status": "ready", "bots": 0, "details": []}))
        );

        let mut bot = BotStatus::new("ws_123", 1_764_136_800);
        bot.username = Some("bot1".into());
        bot.set_state(BotState::Syncing, None, 1_764_136_800);
        health.fleet.upsert(bot);
        let r = health.respond(&get("/readyz"), now, None);
        assert_eq!(r.status, 503);
        assert_eq!(body(&r)["reason"], "starting bots (1 not tried yet)");
        assert_eq!(body(&r)["progress"], "starting: 0/1 bots running, 0 failed");
        assert!(
            r.body
                .starts_with(br#"{"status":"not ready","bots":0,"reason":"#),
            "the keys in their order, progress before the details"
        );
        assert_eq!(
            body(&r)["details"],
            json!([{"workspace_id": "ws_123", "username": "bot1", "state": "syncing",
                    "since": "2025-11-26T06:00:00Z", "last_error": null}])
        );

        // A bot in backoff has been tried: the process is ready, the bot's trouble shows.
        let reason = Some("FLOOD_WAIT_300".to_owned());
        health
            .fleet
            .get_mut("ws_123")
            .unwrap()
            .set_state(BotState::Backoff, reason, 1_764_136_860);
        let r = health.respond(&get("/readyz"), now, None);
        assert_eq!((r.status, body(&r)["bots"].as_u64()), (200, Some(0)));
        assert_eq!(body(&r)["details"][0]["last_error"], "FLOOD_WAIT_300");
        assert_eq!(body(&r).get("progress"), None, "started");

        health.set_stopping();
        health.set_serving();
        let r = health.respond(&get("/readyz"), now, None);
        assert_eq!(body(&r)["reason"], "shutting down");
        assert_eq!(body(&r)["status"], "not ready");
    }

    #[test]
    fn a_store_that_keeps_failing_or_a_stuck_loop_makes_the_process_unready() {
        let now = Instant::now();
        let mut health = Health::new();
        health.set_serving();
        assert_eq!(
            health.not_ready_reason(now).as_deref(),
            Some("the fleet's loop is not running")
        );
        health.heartbeat(now);
        assert!(health.is_ready(now));
        assert!(!health.is_ready(now + HEARTBEAT_STALE + Duration::from_secs(1)));
        health.set_store_error(Some("STATE_FILE /x: Read-only file system".into()));
        let r = health.respond(&get("/readyz"), now, None);
        assert_eq!(
            (r.status, body(&r)["reason"].as_str()),
            (
                503,
                Some("cannot save the bots' state: STATE_FILE /x: Read-only file system")
            )
        );
        health.set_store_error(None);
        assert!(health.is_ready(now));
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let health = Health::new();
        let now = Instant::now();
        assert_eq!(health.respond(&get("/"), now, None).status, 404);
        assert_eq!(health.respond(&get("/healthz/"), now, None).status, 404);
        let post = Request {
            method: Method::Other("POST".into()),
            path: "/metrics".into(),
        };
        let r = health.respond(&post, now, None);
        assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
