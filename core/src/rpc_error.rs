//! Telegram's RPC errors, parsed: `420 FLOOD_WAIT_30` is code 420, name `FLOOD_WAIT`,
//! value 30.

use std::fmt;

/// An error a Telegram method answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: i32,
    /// The message without its numeric suffix: `FLOOD_WAIT`, `FILE_MIGRATE`, ...
    pub name: String,
    /// The number Telegram put in the message (seconds to wait, a DC id).
    pub value: Option<u32>,
}

impl RpcError {
    pub fn parse(code: i32, message: &str) -> Self {
        // The value is the last `_`-separated part when it is a number; `2FA_...`-style
        // names and numbers inside a name stay as they are.
        if let Some((name, value)) = message.rsplit_once('_')
            && let Ok(value) = value.parse::<u32>()
        {
            return RpcError {
                code,
                name: name.to_owned(),
                value: Some(value),
            };
        }
        RpcError {
            code,
            name: message.to_owned(),
            value: None,
        }
    }

    /// `X_MIGRATE_N`: the DC to move to.
    pub fn migrate_to(&self) -> Option<i32> {
        if self.code == 303 && self.name.ends_with("_MIGRATE") {
            self.value.map(|v| v as i32)
        } else {
            None
        }
    }

    /// `FLOOD_WAIT_N` (and `SLOWMODE_WAIT_N`, `FLOOD_PREMIUM_WAIT_N`): seconds to wait.
    pub fn wait_seconds(&self) -> Option<u32> {
        (self.code == 420).then_some(self.value.unwrap_or(1))
    }

    /// The key is not (or no longer) logged in: log in again.
    pub fn is_auth_key_unregistered(&self) -> bool {
        self.code == 401
            && matches!(
                self.name.as_str(),
                "AUTH_KEY_UNREGISTERED" | "SESSION_REVOKED" | "SESSION_EXPIRED"
            )
    }

    /// `406 AUTH_KEY_DUPLICATED`: the key was used from two places at once and Telegram
    /// revoked it.
    pub fn is_auth_key_duplicated(&self) -> bool {
        self.name == "AUTH_KEY_DUPLICATED"
    }

    /// `PERSISTENT_TIMESTAMP_EMPTY`, `_INVALID`, `_OUTDATED`: the pts or date given to
    /// getDifference is refused.
    pub fn is_persistent_timestamp(&self) -> bool {
        self.name.starts_with("PERSISTENT_TIMESTAMP")
    }

    /// The bot token is bad for good: stop and tell a person.
    pub fn is_token_rejected(&self) -> bool {
        matches!(
            self.name.as_str(),
            "ACCESS_TOKEN_INVALID"
                | "ACCESS_TOKEN_EXPIRED"
                | "BOT_INVALID"
                | "USER_DEACTIVATED"
                | "USER_DEACTIVATED_BAN"
        )
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(f, "{} {}_{v}", self.code, self.name),
            None => write!(f, "{} {}", self.code, self.name),
        }
    }
}

impl std::error::Error for RpcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_split_into_name_and_value() {
        let flood = RpcError::parse(420, "FLOOD_WAIT_30");
        assert_eq!(
            (flood.name.as_str(), flood.value, flood.wait_seconds()),
            ("FLOOD_WAIT", Some(30), Some(30))
        );
        let migrate = RpcError::parse(303, "FILE_MIGRATE_4");
        assert_eq!(migrate.migrate_to(), Some(4));
        assert_eq!(RpcError::parse(303, "USER_MIGRATE_2").migrate_to(), Some(2));
        let plain = RpcError::parse(401, "AUTH_KEY_UNREGISTERED");
        assert_eq!(
            (plain.value, plain.is_auth_key_unregistered()),
            (None, true)
        );
        assert!(RpcError::parse(400, "ACCESS_TOKEN_INVALID").is_token_rejected());
        assert_eq!(
            RpcError::parse(400, "2FA_CONFIRM_WAIT_X").name,
            "2FA_CONFIRM_WAIT_X"
        );
        assert_eq!(flood.to_string(), "420 FLOOD_WAIT_30");
        assert_eq!(RpcError::parse(400, "LIMIT_INVALID").migrate_to(), None);
        assert!(RpcError::parse(406, "AUTH_KEY_DUPLICATED").is_auth_key_duplicated());
        assert!(RpcError::parse(400, "PERSISTENT_TIMESTAMP_INVALID").is_persistent_timestamp());
    }
}
