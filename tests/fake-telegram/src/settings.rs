//! The fake DC's timeouts and limits. The defaults are Telegram's where Telegram documents
//! them (and the fake's own choice where it does not: tests/FAKE-TELEGRAM-DIFFERENCES.md);
//! tests shorten them so that nothing sleeps for minutes.

use std::time::Duration;

use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long one server salt is the current one (Telegram: 30 minutes).
    pub salt_period: Duration,
    /// How long a salt is still accepted after its period (Telegram: 1800 s).
    pub salt_grace: Duration,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A pushed update the client has not acknowledged for this long is sent again.
    pub resend_after: Duration,
    /// How often an unacknowledged update is sent again before the server gives up on it.
    pub max_resends: u32,
    /// A session with this many unacknowledged updates has fallen too far behind: it gets
    /// `updatesTooLong` and no more updates until it calls `updates.getDifference`.
    pub max_unacked_updates: usize,
    /// How many of a session's latest client msg_ids the server remembers (duplicates,
    /// seqno checks; a msg_id below all of them is `bad_msg_notification` 20).
    pub remembered_msg_ids: usize,
    /// A file reference stops working this long after it was handed out.
    pub file_reference_ttl: Duration,
    /// Bot logins (`auth.importBotAuthorization`) one bot may make per `login_window`;
    /// the next one draws `FLOOD_WAIT`.
    pub login_limit: u32,
    pub login_window: Duration,
    /// Most messages in one `updates.difference`; more make a `differenceSlice`.
    pub difference_slice: usize,
    /// How far behind `updates.getDifference` may be before it answers
    /// `differenceTooLong` (a smaller `pts_total_limit` wins).
    pub difference_limit: i32,
    /// The same for `updates.getChannelDifference` (`channelDifferenceTooLong`).
    pub channel_difference_limit: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            salt_period: Duration::from_secs(30 * 60),
            salt_grace: Duration::from_secs(1800),
            idle_timeout: Duration::from_secs(300),
            resend_after: Duration::from_secs(150),
            max_resends: 5,
            max_unacked_updates: 1000,
            remembered_msg_ids: 1024,
            file_reference_ttl: Duration::from_secs(2 * 3600),
            login_limit: 5,
            login_window: Duration::from_secs(3600),
            difference_slice: 100,
            difference_limit: 1000,
            channel_difference_limit: 100_000,
        }
    }
}

impl Settings {
    /// The duration settings, by the name the control API gives them (plus `_ms`: they
    /// are in milliseconds there).
    fn durations_mut(&mut self) -> [(&'static str, &mut Duration); 6] {
        [
            ("salt_period", &mut self.salt_period),
            ("salt_grace", &mut self.salt_grace),
            ("idle_timeout", &mut self.idle_timeout),
            ("resend_after", &mut self.resend_after),
            ("file_reference_ttl", &mut self.file_reference_ttl),
            ("login_window", &mut self.login_window),
        ]
    }

    /// As the control API shows them (`GET /settings`).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "max_resends": self.max_resends,
            "max_unacked_updates": self.max_unacked_updates,
            "remembered_msg_ids": self.remembered_msg_ids,
            "login_limit": self.login_limit,
            "difference_slice": self.difference_slice,
            "difference_limit": self.difference_limit,
            "channel_difference_limit": self.channel_difference_limit,
        });
        for (name, duration) in self.clone().durations_mut() {
            v[format!("{name}_ms")] = (duration.as_millis() as u64).into();
        }
        v
    }

    /// Applies the fields present in `v` (`POST /settings`); unknown fields are refused.
    pub fn update_from_json(&mut self, v: &Value) -> Result<(), String> {
        let fields = v.as_object().ok_or("settings must be a JSON object")?;
        let mut next = self.clone();
        for (key, value) in fields {
            let number = value
                .as_u64()
                .filter(|n| *n <= i32::MAX as u64)
                .ok_or_else(|| format!("`{key}` must be an integer from 0 to {}", i32::MAX))?;
            let positive = || {
                (number > 0)
                    .then_some(number)
                    .ok_or_else(|| format!("`{key}` must be positive"))
            };
            match key.as_str() {
                "max_resends" => next.max_resends = number as u32,
                "max_unacked_updates" => next.max_unacked_updates = positive()? as usize,
                "remembered_msg_ids" => next.remembered_msg_ids = positive()? as usize,
                "login_limit" => next.login_limit = positive()? as u32,
                "difference_slice" => next.difference_slice = positive()? as usize,
                "difference_limit" => next.difference_limit = positive()? as i32,
                "channel_difference_limit" => next.channel_difference_limit = positive()? as i32,
                other => {
                    let (_, duration) = next
                        .durations_mut()
                        .into_iter()
                        .find(|(name, _)| other.strip_suffix("_ms") == Some(name))
                        .ok_or_else(|| format!("unknown setting `{other}`"))?;
                    *duration = Duration::from_millis(positive()?);
                }
            }
        }
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_refusals() {
        let mut s = Settings::default();
        s.update_from_json(&json!({"idle_timeout_ms": 500, "login_limit": 2}))
            .unwrap();
        assert_eq!(s.idle_timeout, Duration::from_millis(500));
        assert_eq!(s.to_json()["idle_timeout_ms"], 500);
        assert_eq!(s.to_json()["login_limit"], 2);
        for bad in [
            json!({"idle_timeout": 5}),
            json!({"idle_timeout_ms": 0}),
            json!({"login_limit": -1}),
            json!([1]),
        ] {
            assert!(s.update_from_json(&bad).is_err(), "{bad}");
        }
        assert_eq!(s.login_limit, 2, "a refused update changes nothing");
    }
}
