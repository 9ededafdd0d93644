//! Arbitrary sequences of what can happen to a fleet: wanted sets that change, the clock
//! moving, connections opened, refused or dropped, the store answering yes or no, a
//! stop. After every step: no panic, no deadline left in the past after the timers ran,
//! admission within its bounds, and a stop that finishes once the store has answered.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use telegram_bots_core::bot::BotConfig;
use telegram_bots_core::fleet::{ConnId, Effect, Fleet, FleetSettings, WantedBot};
use telegram_bots_core::random::Seeded;
use telegram_bots_core::record::CommitId;
use telegram_bots_core::rsa::RsaPublicKey;
use telegram_bots_core::secret::Secret;
use telegram_bots_core::session::{ClientInfo, Now, SessionConfig};
use telegram_bots_core::voice::ObjectLocation;

fuzz_target!(|data: &[u8]| {
    let session_config = Arc::new(SessionConfig::new(
        vec![RsaPublicKey::telegram_production()],
        ClientInfo {
            api_id: 1,
            device_model: "fuzz".into(),
            system_version: "fuzz".into(),
            app_version: "0".into(),
            lang_code: "en".into(),
        },
    ));
    let settings = FleetSettings::default();
    let mut fleet = Fleet::new(settings, session_config);
    fleet.health_mut().set_serving();
    let mut random = Seeded::new(3);
    let mut now = Now {
        instant: Instant::now(),
        unix_secs: 1_790_000_000,
    };
    let mut open: Vec<ConnId> = Vec::new();
    let mut commits: Vec<(telegram_bots_core::fleet::BotId, CommitId)> = Vec::new();
    let mut stopped = false;
    let mut voice_done = Vec::new();
    for op in data.chunks(2) {
        let (kind, arg) = (op[0] % 6, op.get(1).copied().unwrap_or(0));
        match kind {
            0 if !stopped => {
                // Which of eight workspaces are wanted, and with which of two tokens.
                let wanted = (0..8)
                    .filter(|i| arg & (1 << i) != 0)
                    .map(|i| WantedBot {
                        config: BotConfig {
                            workspace_id: format!("ws_{i}"),
                            token: Secret::new(format!("{}:AAfuzz-{}", 100 + i, arg >> 7)),
                            api_id: 1,
                            api_hash: Secret::new("0123456789abcdef0123456789abcdef".into()),
                            default_dc: 1 + i32::from(i % 2),
                            media: Default::default(),
                        },
                        record: None,
                        refused: None,
                    })
                    .collect();
                fleet.set_wanted(wanted, now);
            }
            1 => {
                now.instant += Duration::from_millis(u64::from(arg) * 97);
                now.unix_secs += i64::from(arg) / 10;
                fleet.handle_timeout(now, &mut random);
                if let Some(next) = fleet.poll_timeout() {
                    assert!(next > now.instant, "a deadline in the past");
                }
            }
            2 if !open.is_empty() => {
                let conn = open.remove(usize::from(arg) % open.len());
                if arg & 1 == 0 {
                    fleet.handle_connected(conn, now, &mut random);
                    open.push(conn);
                } else {
                    fleet.handle_disconnected(conn, now, &mut random);
                }
            }
            3 if !commits.is_empty() => {
                let (bot, id) = commits.remove(usize::from(arg) % commits.len());
                let result = if arg & 1 == 0 {
                    Ok(())
                } else {
                    Err("disk full".into())
                };
                fleet.handle_committed(bot, id, result, now, &mut random);
            }
            4 if !open.is_empty() => {
                // Garbage from the network: answered by the session, never by a panic
                // that escapes the fleet.
                let conn = open[usize::from(arg) % open.len()];
                fleet.handle_input(conn, &[arg; 16], now, &mut random);
            }
            5 => {
                fleet.stop(now);
                stopped = true;
            }
            _ => {}
        }
        while let Some(effect) = fleet.poll_effect() {
            match effect {
                Effect::Connect { conn, .. } => open.push(conn),
                Effect::Disconnect { conn } => open.retain(|c| *c != conn),
                Effect::Send { .. } => {}
                Effect::Commit { bot, commit, .. } => commits.push((bot, commit.id)),
                // No bot gets to run on garbage, so no voice message gets this far; if
                // one did, its steps would succeed.
                Effect::StoreVoice { job, voice, .. } => voice_done.push((job, Some(voice))),
                Effect::PublishVoice { job, .. } | Effect::FinishVoice { job, .. } => {
                    voice_done.push((job, None))
                }
            }
        }
        for (job, stored) in std::mem::take(&mut voice_done) {
            match stored {
                Some(voice) => {
                    let location = ObjectLocation::of("voice".into(), voice.object_key(), &[]);
                    fleet.handle_voice_stored(job, Ok(location), now, &mut random)
                }
                None => {
                    fleet.handle_voice_published(job, Ok(()), now, &mut random);
                    fleet.handle_voice_finished(job, Ok(()), now, &mut random);
                }
            }
        }
        while fleet.poll_event().is_some() {}
        let (in_flight, handshakes, _) = fleet.admission_load();
        assert!(in_flight <= settings.admission.max_in_flight);
        assert!(handshakes <= settings.admission.max_handshakes);
    }
    if stopped {
        // Once the store answers everything (failed commits are retried), the stop
        // finishes.
        for _ in 0..100 {
            for (bot, id) in std::mem::take(&mut commits) {
                fleet.handle_committed(bot, id, Ok(()), now, &mut random);
            }
            now.instant += Duration::from_secs(60);
            fleet.handle_timeout(now, &mut random);
            while let Some(effect) = fleet.poll_effect() {
                if let Effect::Commit { bot, commit, .. } = effect {
                    commits.push((bot, commit.id));
                }
            }
            if fleet.is_stopped() {
                break;
            }
        }
        assert!(fleet.is_stopped(), "the stop never finished");
    }
});
