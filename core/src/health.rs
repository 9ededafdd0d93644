//! The health surface: `/healthz`, `/livez`, `/readyz` and `/metrics`, answered from the
//! process's lifecycle and its fleet. Both runtimes serve exactly these responses.

use serde_json::{Value, json};

use crate::fleet::{BotState, Fleet};
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

/// What the health surface reports: the process's lifecycle and its bots.
#[derive(Clone, Debug)]
pub struct Health {
    lifecycle: Lifecycle,
    pub fleet: Fleet,
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
            fleet: Fleet::new(),
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

    /// Ready: started, not stopping, and every bot settled (running, or failed for a
    /// reason that needs a person). An empty fleet is ready: a replica that owns no bot
    /// has nothing to wait for, and `telegram_bots_total == 0` is what alerts watch.
    pub fn is_ready(&self) -> bool {
        self.lifecycle == Lifecycle::Serving && self.fleet.is_settled()
    }

    /// The response to a health request. `process` is included in `/metrics` when given.
    pub fn respond(&self, request: &Request, process: Option<&ProcessSample>) -> Response {
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
            Route::Ready => self.readiness(),
            Route::Metrics => Response {
                status: 200,
                content_type: metrics::CONTENT_TYPE,
                allow: None,
                body: metrics::render(&self.fleet, self.is_ready(), process).into_bytes(),
            },
        }
    }

    fn readiness(&self) -> Response {
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
        let (status, body) = if self.is_ready() {
            (
                200,
                json!({ "status": "ready", "bots": bots, "details": details }),
            )
        } else {
            let reason = match self.lifecycle {
                Lifecycle::Starting => "starting",
                Lifecycle::Stopping => "shutting down",
                Lifecycle::Serving => "waiting for bots to start",
            };
            let body = json!({
                "status": "not ready", "bots": bots, "reason": reason, "details": details,
            });
            (503, body)
        };
        Response::json(status, body.to_string())
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
        for step in 0..3 {
            match step {
                1 => health.set_serving(),
                2 => health.set_stopping(),
                _ => {}
            }
            for path in ["/healthz", "/livez"] {
                let r = health.respond(&get(path), None);
                assert_eq!((r.status, body(&r)), (200, json!({"status": "ok"})));
            }
        }
    }

    #[test]
    fn readiness_follows_lifecycle_and_fleet() {
        let mut health = Health::new();
        let r = health.respond(&get("/readyz"), None);
        assert_eq!(r.status, 503);
        assert_eq!(body(&r)["reason"], "starting");

        health.set_serving();
        let r = health.respond(&get("/readyz"), None);
        assert_eq!(
            (r.status, body(&r)),
            (200, json!({"status": "ready", "bots": 0, "details": []}))
        );

        health.fleet.upsert(BotStatus {
            username: Some("bot1".into()),
            state: BotState::Syncing,
            ..BotStatus::new("ws_123", 1_764_136_800)
        });
        let r = health.respond(&get("/readyz"), None);
        assert_eq!(r.status, 503);
        assert_eq!(
            body(&r)["details"],
            json!([{"workspace_id": "ws_123", "username": "bot1", "state": "syncing",
                    "since": "2025-11-26T06:00:00Z", "last_error": null}])
        );

        health.set_stopping();
        health.set_serving();
        let r = health.respond(&get("/readyz"), None);
        assert_eq!(body(&r)["reason"], "shutting down");
        assert_eq!(body(&r)["status"], "not ready");
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let health = Health::new();
        assert_eq!(health.respond(&get("/"), None).status, 404);
        assert_eq!(health.respond(&get("/healthz/"), None).status, 404);
        let post = Request {
            method: Method::Other("POST".into()),
            path: "/metrics".into(),
        };
        let r = health.respond(&post, None);
        assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
