//! The fleet's events as log lines, the same in both runtimes. Lines name the workspace,
//! never a token or a key.
//!
//! At info level there is a line per state change of a bot (running, stopped, trouble)
//! and per start-up progress report, never one per message: ten thousand bots receiving
//! must not flood the log. Routine steps (connecting, syncing) and every message handed
//! on or voice message stored are at debug; a voice message's retry or failure is an
//! exception an operator must see, at warn or error.
//!
//! Each line is a sentence that stands on its own ("workspace ws_1: running") and carries
//! its facts as fields too (`workspace_id`, `state`, `reason`, `error`, `message_id`,
//! ...): the text format writes the sentence, the JSON format both (see
//! `startup::init_logging`).

use telegram_bots_core::fleet::{BotState, FleetEvent, Progress};
use telegram_bots_core::updates::IncomingMessage;
use telegram_bots_core::voice::{VoiceKey, VoiceOutcome};

pub fn fleet_event(event: &FleetEvent) {
    match event {
        FleetEvent::State {
            workspace_id: ws,
            state,
            reason,
        } => {
            let name = state.as_str();
            match reason {
                Some(reason) => tracing::warn!(
                    workspace_id = %ws,
                    state = name,
                    reason = %reason,
                    "workspace {ws}: {name} ({reason})"
                ),
                None if matches!(state, BotState::Running | BotState::Stopped) => {
                    tracing::info!(workspace_id = %ws, state = name, "workspace {ws}: {name}")
                }
                None => {
                    tracing::debug!(workspace_id = %ws, state = name, "workspace {ws}: {name}")
                }
            }
        }
        FleetEvent::Delivered {
            workspace_id,
            messages,
        } => {
            for message in messages {
                delivered(workspace_id, message);
            }
        }
        FleetEvent::Reconnecting { workspace_id: ws } => {
            tracing::info!(workspace_id = %ws, "workspace {ws}: reconnecting")
        }
        FleetEvent::Warning {
            workspace_id: ws,
            warning,
        } => tracing::warn!(
            workspace_id = %ws,
            warning = warning.kind(),
            "workspace {ws}: {warning}"
        ),
        FleetEvent::Panicked {
            workspace_id: ws,
            restart_in,
        } => {
            let ms = restart_in.as_millis() as u64;
            tracing::error!(
                workspace_id = %ws,
                state = "backoff",
                reason = "internal error (a panic)",
                restart_in_ms = ms,
                "workspace {ws}: internal error (a panic, see above); restarting from its last saved state in {ms} ms"
            )
        }
        FleetEvent::StoreFailing { error } => tracing::error!(
            error = %error,
            "cannot save the bots' state: {error}; retrying (readiness is off until it works)"
        ),
        FleetEvent::StoreRecovered => tracing::info!("the bots' state is saved again"),
        FleetEvent::Voice { key, outcome } => voice(key, outcome),
        FleetEvent::Progress { progress, elapsed } => start_progress(progress, *elapsed),
    }
}

/// "starting: 412/1000 bots running, 3 failed" every few seconds while the bots start,
/// and "started: 997/1000 bots running, 3 failed, in 5.2 s" once every bot has had its
/// first try.
fn start_progress(p: &Progress, elapsed: Option<std::time::Duration>) {
    let Progress {
        total,
        running,
        failed,
        retrying,
        untried,
    } = *p;
    match elapsed {
        None => tracing::info!(total, running, failed, retrying, untried, "starting: {p}"),
        Some(elapsed) => tracing::info!(
            total,
            running,
            failed,
            retrying,
            elapsed_ms = elapsed.as_millis() as u64,
            "started: {p}, in {:.1} s",
            elapsed.as_secs_f64()
        ),
    }
}

fn voice(key: &VoiceKey, outcome: &VoiceOutcome) {
    let ws = &key.workspace_id;
    let (chat, message) = (key.chat, key.message_id);
    match outcome {
        VoiceOutcome::Done { object_key } => tracing::debug!(
            workspace_id = %ws,
            chat = %chat,
            message_id = message,
            object_key = %object_key,
            "workspace {ws}: voice message {message} in chat {chat} stored as {object_key} and announced"
        ),
        VoiceOutcome::Retry { error } => tracing::warn!(
            workspace_id = %ws,
            chat = %chat,
            message_id = message,
            error = %error,
            "workspace {ws}: voice message {message} in chat {chat}: {error}; retrying"
        ),
        VoiceOutcome::Failed { reason } => tracing::error!(
            workspace_id = %ws,
            chat = %chat,
            message_id = message,
            reason = %reason,
            "workspace {ws}: voice message {message} in chat {chat} failed: {reason} (see `outbox list --failed`, then `outbox retry`)"
        ),
    }
}

fn delivered(ws: &str, m: &IncomingMessage) {
    let (chat, message) = (m.chat, m.message_id);
    match &m.voice {
        Some(v) => tracing::debug!(
            workspace_id = %ws,
            chat = %chat,
            message_id = message,
            voice_bytes = v.size,
            voice_seconds = v.duration_seconds,
            "workspace {ws}: voice message {message} in chat {chat} ({} bytes, {} s)",
            v.size,
            v.duration_seconds
        ),
        None => tracing::debug!(
            workspace_id = %ws,
            chat = %chat,
            message_id = message,
            "workspace {ws}: message {message} in chat {chat}"
        ),
    }
}
