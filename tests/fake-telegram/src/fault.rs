//! Scripted faults: what a test asks the fake DC to get wrong, and when.

use serde_json::Value;

use super::world::UserId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Close the bot's (or every) live connection now (FIN).
    DropConnections,
    /// Reset the bot's (or every) live connection now (RST).
    ResetConnections,
    /// Hold the answer to the next matching request for `millis`.
    Stall,
    /// Answer the next matching request with `420 FLOOD_WAIT_{seconds}`.
    FloodWait,
    /// Answer `401 AUTH_KEY_UNREGISTERED` and forget the key's login.
    AuthKeyUnregistered,
    /// Revoke the bot's token now: its sessions are logged out and it cannot log in.
    RevokeToken,
    /// Make the bot's next message skip `count` pts, creating a gap.
    SkipPts,
    /// Answer the next `upload.getFile` with `400 FILE_REFERENCE_EXPIRED`.
    FileReferenceExpired,
    /// Refuse the next new connection with transport error -429.
    TooManyConnections,
    /// Answer the next matching request with `code` and `message`.
    RpcError,
    /// Answer the next matching request with a bare `future_salt`, a message no server
    /// sends and grammers' session panics on: for tests of panic isolation.
    BareFutureSalt,
    /// Replace the bot's next push with `updatesTooLong` (the update stays in the box,
    /// for `updates.getDifference`).
    UpdatesTooLong,
    /// Push the bot's next update twice.
    DuplicateUpdate,
    /// Hold the bot's next push back until the one after it has gone (out of order).
    ReorderUpdates,
    /// Replace the bot's next supergroup or channel push with `updateChannelTooLong`.
    ChannelTooLong,
}

impl FaultKind {
    pub const ALL: [(&'static str, FaultKind); 15] = [
        ("drop_connections", FaultKind::DropConnections),
        ("reset_connections", FaultKind::ResetConnections),
        ("stall", FaultKind::Stall),
        ("flood_wait", FaultKind::FloodWait),
        ("auth_key_unregistered", FaultKind::AuthKeyUnregistered),
        ("revoke_token", FaultKind::RevokeToken),
        ("skip_pts", FaultKind::SkipPts),
        ("file_reference_expired", FaultKind::FileReferenceExpired),
        ("too_many_connections", FaultKind::TooManyConnections),
        ("rpc_error", FaultKind::RpcError),
        ("bare_future_salt", FaultKind::BareFutureSalt),
        ("updates_too_long", FaultKind::UpdatesTooLong),
        ("duplicate_update", FaultKind::DuplicateUpdate),
        ("reorder_updates", FaultKind::ReorderUpdates),
        ("channel_too_long", FaultKind::ChannelTooLong),
    ];
}

/// One scripted fault. `bot` and `method` (a TL name such as `upload.getFile`) narrow
/// what it matches; `times` is how many matches it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub bot: Option<String>,
    pub bot_id: Option<UserId>,
    pub method: Option<String>,
    pub times: u32,
    pub seconds: u32,
    pub millis: u64,
    pub count: i32,
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            bot: None,
            bot_id: None,
            method: None,
            times: 1,
            seconds: 0,
            millis: 0,
            count: 1,
            code: 500,
            message: "INTERNAL".into(),
        }
    }

    pub fn for_bot(mut self, username: &str) -> Fault {
        self.bot = Some(username.to_owned());
        self
    }

    pub fn for_method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_owned());
        self
    }

    pub fn matches(&self, kind: FaultKind, bot: Option<UserId>, method: Option<&str>) -> bool {
        self.kind == kind
            && (self.bot_id.is_none() || self.bot_id == bot)
            && (self.method.is_none() || self.method.as_deref() == method)
    }

    /// From the control API's JSON: `{"kind": "flood_wait", "bot": "bot1", "method":
    /// "updates.getState", "times": 2, "seconds": 3}`.
    pub fn from_json(v: &Value) -> Result<Fault, String> {
        let kind_name = v["kind"].as_str().ok_or("`kind` is required")?;
        let kind = FaultKind::ALL
            .iter()
            .find(|(name, _)| *name == kind_name)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown kind {kind_name:?}; one of {}", names.join(", "))
            })?;
        let mut fault = Fault::new(kind);
        let text = |key: &str| -> Result<Option<String>, String> {
            match &v[key] {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(format!("`{key}` must be a string")),
            }
        };
        let number = |key: &str| -> Result<Option<i64>, String> {
            match &v[key] {
                Value::Null => Ok(None),
                n => n
                    .as_i64()
                    .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                    .map(Some)
                    .ok_or(format!("`{key}` must be an integer from 0 to {}", i32::MAX)),
            }
        };
        fault.bot = text("bot")?;
        fault.method = text("method")?;
        if let Some(times) = number("times")? {
            fault.times = times.max(1) as u32;
        }
        if let Some(s) = number("seconds")? {
            fault.seconds = s as u32;
        }
        if let Some(ms) = number("millis")? {
            fault.millis = ms as u64;
        }
        if let Some(c) = number("count")? {
            fault.count = c as i32;
        }
        if let Some(c) = number("code")? {
            fault.code = c as i32;
        }
        if let Some(m) = text("message")? {
            fault.message = m;
        }
        // Faults that cannot match what they were narrowed to would wait forever.
        match kind {
            FaultKind::TooManyConnections if fault.bot.is_some() || fault.method.is_some() => {
                return Err(
                    "too_many_connections applies to the next connection, not to a bot or method"
                        .into(),
                );
            }
            FaultKind::SkipPts
            | FaultKind::DropConnections
            | FaultKind::ResetConnections
            | FaultKind::RevokeToken
            | FaultKind::UpdatesTooLong
            | FaultKind::DuplicateUpdate
            | FaultKind::ReorderUpdates
            | FaultKind::ChannelTooLong
                if fault.method.is_some() =>
            {
                return Err(format!("{kind_name} does not take a method"));
            }
            _ => {}
        }
        Ok(fault)
    }
}
