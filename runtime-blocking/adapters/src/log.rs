//! The fleet's events as log lines, the same in both runtimes. Lines name the workspace,
//! never a token or a key; routine steps are at debug level so that ten thousand bots
//! starting do not flood the log.

use telegram_bots_core::fleet::{BotState, FleetEvent};
use telegram_bots_core::updates::IncomingMessage;
use telegram_bots_core::voice::{VoiceKey, VoiceOutcome};

pub fn fleet_event(event: &FleetEvent) {
    match event {
        FleetEvent::State {
            workspace_id,
            state,
            reason,
        } => match reason {
            Some(reason) => {
                tracing::warn!("workspace {workspace_id}: {} ({reason})", state.as_str())
            }
            None if matches!(state, BotState::Running | BotState::Stopped) => {
                tracing::info!("workspace {workspace_id}: {}", state.as_str())
            }
            None => tracing::debug!("workspace {workspace_id}: {}", state.as_str()),
        },
        FleetEvent::Delivered {
            workspace_id,
            messages,
        } => {
            for message in messages {
                delivered(workspace_id, message);
            }
        }
        FleetEvent::Reconnecting { workspace_id } => {
            tracing::info!("workspace {workspace_id}: reconnecting")
        }
        FleetEvent::Warning {
            workspace_id,
            warning,
        } => tracing::warn!("workspace {workspace_id}: {warning}"),
        FleetEvent::Panicked {
            workspace_id,
            restart_in,
        } => tracing::error!(
            "workspace {workspace_id}: internal error (a panic, see above); restarting from its last saved state in {} ms",
            restart_in.as_millis()
        ),
        FleetEvent::StoreFailing { error } => {
            tracing::error!(
                "cannot save the bots' state: {error}; retrying (readiness is off until it works)"
            )
        }
        FleetEvent::StoreRecovered => tracing::info!("the bots' state is saved again"),
        FleetEvent::Voice { key, outcome } => voice(key, outcome),
    }
}

fn voice(key: &VoiceKey, outcome: &VoiceOutcome) {
    let ws = &key.workspace_id;
    let (chat, message) = (key.chat, key.message_id);
    match outcome {
        VoiceOutcome::Done { object_key } => tracing::info!(
            "workspace {ws}: voice message {message} in chat {chat} stored as {object_key} and announced"
        ),
        VoiceOutcome::Retry { error } => tracing::warn!(
            "workspace {ws}: voice message {message} in chat {chat}: {error}; retrying"
        ),
        VoiceOutcome::Failed { reason } => tracing::error!(
            "workspace {ws}: voice message {message} in chat {chat} failed: {reason} (see `outbox list --failed`, then `outbox retry`)"
        ),
    }
}

fn delivered(workspace_id: &str, m: &IncomingMessage) {
    match &m.voice {
        Some(v) => tracing::info!(
            "workspace {workspace_id}: voice message {} in chat {} ({} bytes, {} s)",
            m.message_id,
            m.chat,
            v.size,
            v.duration_seconds
        ),
        None => tracing::info!(
            "workspace {workspace_id}: message {} in chat {}",
            m.message_id,
            m.chat
        ),
    }
}
