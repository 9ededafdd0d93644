//! The voice pipeline through the core's fleet, against the fake DC, in memory with a
//! fake clock: a voice message is downloaded in chunks, stored, announced and recorded;
//! failures are retried or fail the row; a crash at any step loses nothing and starts no
//! second transcription; a stop waits for what is under way.

use std::collections::BTreeSet;
use std::time::Duration;

use telegram_bots_core::fleet::{BotState, FleetEvent, FleetSettings};
use telegram_bots_core::updates::MediaKinds;
use telegram_bots_core::voice::{Failure, VoiceOutcome};
use telegram_bots_tests::fake_dc::crypto::sha256;
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fake_dc::messages::{Content, NewMessage, Sent, VoiceForm, hex};
use telegram_bots_tests::fleet_sim::{OutboxRow, Sim, voice_job};

/// A voice message of `size` bytes from user 5 to bot `i`, in their private chat.
fn voice(sim: &Sim, i: usize, size: usize, seed: u64) -> Sent {
    sound(sim, i, VoiceForm::Voice, "audio/ogg", size, seed)
}

/// A voice message whose file Telegram keeps on DC `dc`.
fn voice_on(sim: &Sim, i: usize, size: usize, seed: u64, dc: i32) -> Sent {
    send(sim, i, VoiceForm::Voice, "audio/ogg", size, seed, Some(dc))
}

/// A file with sound in `form`, from user 5 to bot `i`, in their private chat.
fn sound(sim: &Sim, i: usize, form: VoiceForm, mime: &str, size: usize, seed: u64) -> Sent {
    send(sim, i, form, mime, size, seed, None)
}

/// The message of [`sound`], its file on `dc` (the bot's home DC when `None`).
fn send(
    sim: &Sim,
    i: usize,
    form: VoiceForm,
    mime: &str,
    size: usize,
    seed: u64,
    dc: Option<i32>,
) -> Sent {
    sim.telegram
        .send_message(NewMessage {
            bot: format!("bot{i}"),
            chat_id: 5,
            from_user_id: 5,
            content: Content::Voice {
                size,
                duration: 7,
                mime_type: mime.into(),
                seed,
                bytes: None,
                dc,
                form,
            },
        })
        .unwrap()
}

/// A sim with bots 0..n running.
fn running(n: usize) -> Sim {
    let mut sim = Sim::new(n, FleetSettings::default());
    let wanted = sim.wanted(0..n);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), n);
    sim
}

fn row(sim: &Sim, message_id: i32) -> &OutboxRow {
    sim.outbox
        .values()
        .find(|r| r.job.key.message_id == message_id)
        .unwrap_or_else(|| panic!("no outbox row for message {message_id}"))
}

fn done(sim: &Sim, message_id: i32) -> bool {
    matches!(
        row(sim, message_id).outcome,
        Some(VoiceOutcome::Done { .. })
    )
}

/// The stored object of a message: its bytes' sha256 and how many times it was written.
fn object(sim: &Sim, message_id: i32) -> (String, u32) {
    let key = row(sim, message_id).job.object_key();
    let (bytes, writes) = &sim.objects[&key];
    (hex(&sha256(&[bytes])), *writes)
}

#[test]
fn a_voice_message_is_downloaded_stored_announced_and_recorded() {
    let mut sim = running(1);
    // Three chunks and a bit: the download goes on across several calls.
    let sent = voice(&sim, 0, 3 * 128 * 1024 + 1000, 1);
    sim.run();

    assert!(
        done(&sim, sent.message_id),
        "{:?}",
        row(&sim, sent.message_id)
    );
    assert_eq!(
        object(&sim, sent.message_id),
        (sent.sha256.clone().unwrap(), 1),
        "the very bytes Telegram holds, written once"
    );
    let key = row(&sim, sent.message_id).job.object_key();
    assert!(
        key.starts_with("ws_0/") && key.ends_with(&format!("/user-5/{}.ogg", sent.message_id)),
        "{key}"
    );
    assert_eq!(sim.published.len(), 1);
    let event = &sim.published[0];
    assert_eq!(event["name"], "telegram/voice.received");
    assert_eq!(
        event["id"],
        format!("tg-voice:ws_0:user:5:{}", sent.message_id)
    );
    assert_eq!(event["data"]["s3"]["key"], key.as_str());
    assert_eq!(event["data"]["bot_username"], "bot0");
    assert_eq!(event["data"]["duration"], 7);
    assert!(
        event.get("audio").is_none() && !event.to_string().contains("AAfleet"),
        "no audio and no token in the event"
    );

    let voice = &sim.fleet.health().voice;
    assert_eq!((voice.stats.done, voice.stats.failed), (1, 0));
    assert_eq!(voice.stats.bytes_downloaded, 3 * 128 * 1024 + 1000);
    assert_eq!(voice.stats.latency.count, 1);
    assert_eq!(voice.in_memory, 0);
    assert!(sim.events.iter().any(|e| matches!(
        e,
        FleetEvent::Voice { outcome: VoiceOutcome::Done { object_key }, .. } if *object_key == key
    )));
}

#[test]
fn transient_failures_are_retried_after_a_backoff_and_recorded() {
    let mut sim = running(1);
    let mut slow = Failure::transient("503 SlowDown");
    slow.retry_after = Some(Duration::from_secs(30));
    sim.store_failures.push_back(slow);
    sim.publish_failures
        .push_back(Failure::transient("connection refused"));
    let start = sim.now.instant;
    let sent = voice(&sim, 0, 5000, 2);
    sim.run();

    let r = row(&sim, sent.message_id);
    assert!(r.is_pending(), "not given up: {r:?}");
    assert_eq!(
        r.outcome,
        Some(VoiceOutcome::Retry {
            error: "s3: 503 SlowDown".into()
        }),
        "the error is recorded"
    );
    sim.advance_until(Duration::from_secs(600), |s| done(s, sent.message_id));
    assert!(
        sim.now.instant - start >= Duration::from_secs(30),
        "Retry-After is honoured"
    );
    assert_eq!(row(&sim, sent.message_id).retries, 2);
    assert_eq!(object(&sim, sent.message_id), (sent.sha256.unwrap(), 1));
    assert_eq!(sim.published.len(), 1, "one event accepted");
    let stats = &sim.fleet.health().voice.stats;
    assert_eq!(stats.retried, 2);
    assert_eq!(stats.errors[&("s3", "transient")], 1);
    assert_eq!(stats.errors[&("inngest", "transient")], 1);
}

#[test]
fn a_permanent_failure_fails_its_row_and_the_others_go_on() {
    let mut sim = running(1);
    sim.publish_failures
        .push_back(Failure::permanent("400: event too large"));
    let first = voice(&sim, 0, 1000, 3);
    sim.run();
    let second = voice(&sim, 0, 1000, 4);
    sim.run();
    assert_eq!(
        row(&sim, first.message_id).outcome,
        Some(VoiceOutcome::Failed {
            reason: "400: event too large".into()
        })
    );
    assert!(done(&sim, second.message_id));
    let stats = &sim.fleet.health().voice.stats;
    assert_eq!((stats.done, stats.failed), (1, 1));
}

#[test]
fn an_expired_file_reference_is_fetched_again() {
    let mut sim = running(1);
    sim.telegram
        .add_fault(Fault::new(FaultKind::FileReferenceExpired).for_bot("bot0"))
        .unwrap();
    let sent = voice(&sim, 0, 200_000, 5);
    sim.run();
    assert!(done(&sim, sent.message_id));
    assert_eq!(object(&sim, sent.message_id), (sent.sha256.unwrap(), 1));
    assert_eq!(
        sim.fleet.health().voice.stats.retried,
        0,
        "no retry: the message is fetched again at once"
    );
}

#[test]
fn a_flood_wait_on_a_download_is_waited_out_and_the_updates_go_on() {
    let mut sim = running(1);
    let mut flood = Fault::new(FaultKind::FloodWait)
        .for_bot("bot0")
        .for_method("upload.getFile");
    flood.seconds = 20;
    sim.telegram.add_fault(flood).unwrap();
    let start = sim.now.instant;
    let sent = voice(&sim, 0, 1000, 6);
    sim.run();
    assert!(!done(&sim, sent.message_id));
    // The bot still takes in messages meanwhile.
    let text = sim.telegram.send_text("bot0", 5, "still here").unwrap();
    sim.run();
    assert!(sim.delivered["ws_0"].contains(&text.message_id));
    sim.advance_until(Duration::from_secs(600), |s| done(s, sent.message_id));
    assert!(sim.now.instant - start >= Duration::from_secs(20));
    assert_eq!(
        sim.fleet.health().voice.stats.errors[&("download", "transient")],
        1
    );
}

/// Crashes after `steps` answered voice effects (0: downloaded, not stored; 1: stored,
/// not announced; 2: announced, not recorded), then starts a new fleet.
fn crash_after(steps: usize) {
    let mut sim = running(2);
    sim.hold_voice = true;
    let sent = voice(&sim, 0, 150_000, 7);
    sim.run();
    for _ in 0..steps {
        sim.answer_held();
    }
    assert!(!done(&sim, sent.message_id));
    sim.crash(FleetSettings::default());

    // The outbox is read before any bot runs: the jobs wait there for their bots.
    sim.read_outbox();
    assert_eq!(sim.fleet.health().voice.in_memory, 0);
    let wanted = sim.wanted(0..2);
    sim.set_wanted(wanted);
    sim.read_outbox();
    sim.run();

    assert!(
        done(&sim, sent.message_id),
        "step {steps}: {:?}",
        row(&sim, sent.message_id)
    );
    let (sha, writes) = object(&sim, sent.message_id);
    assert_eq!(sha, sent.sha256.unwrap(), "step {steps}");
    assert!(writes <= 2, "one key, rewritten at most once");
    let ids: BTreeSet<&str> = sim
        .published
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "one event id: Inngest starts one transcription"
    );
    assert!(
        sim.published.windows(2).all(|w| w[0] == w[1]),
        "a repeated event is the same event"
    );
    assert_eq!(
        sim.published.len(),
        if steps == 2 { 2 } else { 1 },
        "step {steps}"
    );
}

#[test]
fn a_crash_after_the_download_loses_nothing() {
    crash_after(0);
}

#[test]
fn a_crash_after_the_store_loses_nothing() {
    crash_after(1);
}

#[test]
fn a_crash_after_the_event_loses_nothing_and_starts_no_second_transcription() {
    crash_after(2);
}

#[test]
fn a_backlog_beyond_memory_is_read_past_the_jobs_already_held() {
    let mut settings = FleetSettings::default();
    settings.voice.in_memory = 2;
    let mut sim = Sim::new(1, settings);
    let wanted = sim.wanted(0..1);
    sim.set_wanted(wanted);
    sim.hold_voice = true;
    let sent: Vec<Sent> = (0..4).map(|i| voice(&sim, 0, 1000, 50 + i)).collect();
    sim.run();
    assert_eq!(
        sim.fleet.health().voice.in_memory,
        2,
        "two wait in the outbox"
    );
    let first = voice_job(&sim.voice_handed[0]).unwrap();
    sim.answer_held_job(first);
    assert!(done(&sim, sent[0].message_id));
    assert_eq!(sim.fleet.health().voice.in_memory, 1);

    // The oldest pending row is the job still held: a read of the room alone would
    // return only that row, and the backlog would wait for it to finish.
    sim.read_outbox();
    assert_eq!(
        sim.fleet.health().voice.in_memory,
        2,
        "a row the pipeline did not hold was taken"
    );

    sim.hold_voice = false;
    sim.answer_held();
    sim.read_outbox();
    assert!(sent.iter().all(|s| done(&sim, s.message_id)));
    let ids: BTreeSet<&str> = sim
        .published
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!((ids.len(), sim.published.len()), (4, 4), "one event each");
}

#[test]
fn an_outbox_read_from_before_a_job_finished_does_not_start_it_again() {
    let mut sim = running(1);
    let sent = voice(&sim, 0, 1000, 8);
    sim.run();
    assert!(done(&sim, sent.message_id));
    // A read that began before the row was marked done still lists it.
    let job = row(&sim, sent.message_id).job.clone();
    let read_at = sim.now.instant - Duration::from_millis(1);
    sim.fleet
        .handle_voice_pending(vec![job], read_at, sim.now, &mut sim.random);
    sim.run();
    assert_eq!(sim.published.len(), 1);
    assert_eq!(sim.fleet.health().voice.in_memory, 0);
}

#[test]
fn a_stop_waits_for_the_voice_messages_under_way() {
    let mut sim = running(1);
    sim.hold_voice = true;
    let sent = voice(&sim, 0, 1000, 9);
    sim.run();
    assert_eq!(sim.voice_handed.len(), 1, "the store is under way");
    sim.fleet.stop(sim.now);
    sim.run();
    assert!(!sim.fleet.is_stopped(), "the voice message is under way");
    sim.hold_voice = false;
    sim.run();
    assert!(done(&sim, sent.message_id));
    assert!(sim.fleet.is_stopped());
}

#[test]
fn audio_files_and_round_videos_count_only_where_the_deployment_says_so() {
    // By default only voice messages: the others are plain messages, with no outbox row.
    let mut sim = running(1);
    let audio = sound(&sim, 0, VoiceForm::Audio, "audio/mpeg", 3000, 10);
    let round = sound(&sim, 0, VoiceForm::RoundVideo, "video/mp4", 4000, 11);
    sim.run();
    assert_eq!(sim.delivered["ws_0"], [audio.message_id, round.message_id]);
    assert!(sim.outbox.is_empty(), "{:?}", sim.outbox);
    assert!(sim.published.is_empty());

    // MEDIA_KINDS=voice,audio,video_note: all three go through, each named by its kind.
    let mut sim = Sim::new(1, FleetSettings::default());
    sim.media = MediaKinds {
        audio: true,
        video_notes: true,
    };
    let wanted = sim.wanted(0..1);
    sim.set_wanted(wanted);
    let sent = [
        (
            sound(&sim, 0, VoiceForm::Audio, "audio/mpeg", 3000, 12),
            "audio",
            "mp3",
        ),
        (
            sound(&sim, 0, VoiceForm::RoundVideo, "video/mp4", 4000, 13),
            "video_note",
            "mp4",
        ),
        (voice(&sim, 0, 2000, 14), "voice", "ogg"),
    ];
    sim.run();
    for (sent, kind, extension) in sent {
        assert!(done(&sim, sent.message_id), "{kind}");
        assert_eq!(object(&sim, sent.message_id).0, sent.sha256.unwrap());
        let event = sim
            .published
            .iter()
            .find(|e| e["data"]["message_id"] == sent.message_id)
            .unwrap();
        assert_eq!(event["data"]["kind"], kind);
        assert_eq!(event["data"]["duration"], 7);
        let key = event["data"]["s3"]["key"].as_str().unwrap();
        assert!(key.ends_with(&format!(".{extension}")), "{key}");
    }
}

/// Bot 0 running against DCs 1 (its home) and 2.
fn running_with_dc2() -> Sim {
    let mut sim = Sim::with_dcs(1, 2, FleetSettings::default());
    let wanted = sim.wanted(0..1);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 1);
    sim
}

/// The fake DC's count of calls to `method`.
fn calls(sim: &Sim, method: &str) -> u64 {
    sim.telegram
        .world()
        .stats
        .calls
        .get(method)
        .copied()
        .unwrap_or(0)
}

fn handshakes(sim: &Sim) -> u64 {
    sim.telegram.world().stats.handshakes
}

#[test]
fn a_voice_file_on_another_dc_is_fetched_over_a_media_connection() {
    let mut sim = running_with_dc2();
    let before = handshakes(&sim);
    let sent = voice_on(&sim, 0, 3 * 128 * 1024 + 1000, 20, 2);
    sim.run();

    assert!(
        done(&sim, sent.message_id),
        "{:?}",
        row(&sim, sent.message_id)
    );
    assert_eq!(
        object(&sim, sent.message_id),
        (sent.sha256.unwrap(), 1),
        "byte-exact"
    );
    assert_eq!(sim.connects_to(2), 1, "one media connection");
    assert_eq!(sim.open_on(2).len(), 1, "kept open for the next file");
    assert_eq!(sim.open_on(1).len(), 1, "the home connection stays");
    assert_eq!(handshakes(&sim) - before, 1, "a key for DC 2");
    assert_eq!(calls(&sim, "auth.exportAuthorization"), 1);
    assert_eq!(calls(&sim, "auth.importAuthorization"), 1);
    assert_eq!(
        calls(&sim, "auth.importBotAuthorization"),
        1,
        "the token logs in on the home DC only"
    );
    assert!(
        sim.durable["ws_0"].session.auth_keys.contains_key(&2),
        "the DC-2 key is committed"
    );
    assert_eq!(sim.durable["ws_0"].session.home_dc, Some(1));
    assert_eq!(sim.fleet.health().voice.stats.retried, 0);
}

#[test]
fn a_second_file_on_that_dc_reuses_its_connection_and_key() {
    let mut sim = running_with_dc2();
    let first = voice_on(&sim, 0, 200_000, 21, 2);
    sim.run();
    assert!(done(&sim, first.message_id));
    let before = handshakes(&sim);
    let second = voice_on(&sim, 0, 300_000, 22, 2);
    sim.run();
    assert!(done(&sim, second.message_id));
    assert_eq!(object(&sim, second.message_id).0, second.sha256.unwrap());
    assert_eq!(sim.connects_to(2), 1, "the same connection");
    assert_eq!(handshakes(&sim), before, "no second handshake");
    assert_eq!(
        calls(&sim, "auth.importAuthorization"),
        1,
        "no second import"
    );
}

#[test]
fn after_a_restart_the_stored_key_of_the_media_dc_is_used() {
    let mut sim = running_with_dc2();
    let first = voice_on(&sim, 0, 5000, 23, 2);
    sim.run();
    assert!(done(&sim, first.message_id));
    sim.crash(FleetSettings::default());
    let before = handshakes(&sim);
    let wanted = sim.wanted(0..1);
    sim.set_wanted(wanted);
    let second = voice_on(&sim, 0, 5000, 24, 2);
    sim.run();
    assert!(done(&sim, second.message_id));
    assert_eq!(object(&sim, second.message_id).0, second.sha256.unwrap());
    assert_eq!(
        handshakes(&sim),
        before,
        "neither the home key nor the DC-2 key is made again"
    );
    assert_eq!(
        calls(&sim, "auth.importBotAuthorization"),
        1,
        "no second login"
    );
}

#[test]
fn a_lost_media_connection_ends_its_download_for_a_retry_and_nothing_else() {
    let mut sim = running_with_dc2();
    let first = voice_on(&sim, 0, 5000, 25, 2);
    sim.run();
    assert!(done(&sim, first.message_id));
    let home = sim.open_on(1);
    let states = sim.events.len();

    // DC 2 stops answering with a chunk in flight, then drops the connection.
    sim.muted_dcs.insert(2);
    let sent = voice_on(&sim, 0, 400_000, 26, 2);
    sim.run();
    assert!(!done(&sim, sent.message_id));
    sim.drop_dc(2);
    sim.muted_dcs.clear();
    assert!(
        matches!(&row(&sim, sent.message_id).outcome, Some(VoiceOutcome::Retry { error }) if error.contains("lost")),
        "{:?}",
        row(&sim, sent.message_id)
    );
    // The updates go on on the home connection meanwhile.
    let text = sim.telegram.send_text("bot0", 5, "still here").unwrap();
    sim.run();
    assert!(sim.delivered["ws_0"].contains(&text.message_id));

    sim.advance_until(Duration::from_secs(120), |s| done(s, sent.message_id));
    assert_eq!(object(&sim, sent.message_id).0, sent.sha256.unwrap());
    assert_eq!(sim.open_on(1), home, "the home connection is untouched");
    assert_eq!(sim.connects_to(1), 1);
    assert!(
        !sim.events[states..]
            .iter()
            .any(|e| matches!(e, FleetEvent::State { .. })),
        "the bot's state never changed"
    );
    assert_eq!(
        sim.connects_to(2),
        2,
        "a new media connection for the retry"
    );
}

#[test]
fn an_idle_media_connection_is_closed() {
    let mut sim = running_with_dc2();
    let sent = voice_on(&sim, 0, 5000, 27, 2);
    sim.run();
    assert!(done(&sim, sent.message_id));
    let start = sim.now.instant;
    assert_eq!(sim.open_on(2).len(), 1);
    sim.advance_until(Duration::from_secs(180), |s| s.open_on(2).is_empty());
    let idle = sim.now.instant - start;
    assert!(
        idle >= telegram_bots_core::bot::MEDIA_IDLE && idle < Duration::from_secs(90),
        "{idle:?}"
    );
    assert_eq!(sim.open_on(1).len(), 1, "the home connection stays");
    assert_eq!(sim.state("ws_0"), BotState::Running);
}

#[test]
fn a_media_dc_that_is_down_backs_off_and_the_bot_keeps_receiving() {
    let mut sim = running_with_dc2();
    sim.refused_dcs.insert(2);
    let start = sim.now.instant;
    let sent = voice_on(&sim, 0, 5000, 28, 2);
    sim.run();
    assert!(row(&sim, sent.message_id).is_pending());
    // Ten minutes of DC 2 down: a bounded number of tries, and the bot runs on.
    sim.advance_until(Duration::from_secs(700), |s| {
        s.now.instant - start >= Duration::from_secs(600)
    });
    let tries = sim.connects_to(2);
    assert!((2..=16).contains(&tries), "{tries} connects to DC 2");
    let text = sim.telegram.send_text("bot0", 5, "still here").unwrap();
    sim.run();
    assert!(sim.delivered["ws_0"].contains(&text.message_id));
    assert_eq!(sim.state("ws_0"), BotState::Running);
    assert_eq!(
        sim.connects_to(1),
        1,
        "the home connection was never touched"
    );
    assert!(row(&sim, sent.message_id).is_pending(), "not given up");

    sim.refused_dcs.clear();
    sim.advance_until(Duration::from_secs(700), |s| done(s, sent.message_id));
    assert_eq!(object(&sim, sent.message_id).0, sent.sha256.unwrap());
}

#[test]
fn a_chunk_without_an_answer_times_out_and_is_retried() {
    let mut sim = running(1);
    let mut stall = Fault::new(FaultKind::Stall)
        .for_bot("bot0")
        .for_method("upload.getFile");
    stall.millis = 3_600_000;
    sim.telegram.add_fault(stall).unwrap();
    let start = sim.now.instant;
    let sent = voice(&sim, 0, 5000, 29);
    sim.run();
    assert!(!done(&sim, sent.message_id));
    sim.advance_until(Duration::from_secs(300), |s| done(s, sent.message_id));
    assert!(sim.now.instant - start >= telegram_bots_core::bot::REQUEST_TIMEOUT);
    assert_eq!(row(&sim, sent.message_id).retries, 1);
    assert_eq!(object(&sim, sent.message_id).0, sent.sha256.unwrap());
    assert_eq!(sim.connects_to(1), 1, "on the same connection");
}

#[test]
fn a_refused_media_key_is_dropped_and_made_again() {
    let mut sim = running_with_dc2();
    sim.telegram
        .add_fault(
            Fault::new(FaultKind::AuthKeyUnregistered).for_method("auth.importAuthorization"),
        )
        .unwrap();
    let before = handshakes(&sim);
    let sent = voice_on(&sim, 0, 5000, 30, 2);
    sim.run();
    assert!(row(&sim, sent.message_id).is_pending());
    assert!(
        !sim.durable["ws_0"].session.auth_keys.contains_key(&2),
        "the refused key is dropped"
    );
    sim.advance_until(Duration::from_secs(120), |s| done(s, sent.message_id));
    assert_eq!(handshakes(&sim) - before, 2, "a new key for DC 2");
    assert!(sim.durable["ws_0"].session.auth_keys.contains_key(&2));
    assert_eq!(calls(&sim, "auth.importBotAuthorization"), 1);
}

#[test]
fn a_file_migrate_to_the_home_dc_or_nowhere_is_no_loop() {
    let mut sim = running(1);
    let mut home = Fault::new(FaultKind::RpcError)
        .for_bot("bot0")
        .for_method("upload.getFile");
    (home.code, home.message) = (303, "FILE_MIGRATE_1".into());
    sim.telegram.add_fault(home).unwrap();
    let sent = voice(&sim, 0, 5000, 31);
    sim.run();
    assert!(row(&sim, sent.message_id).is_pending(), "transient");
    sim.advance_until(Duration::from_secs(60), |s| done(s, sent.message_id));

    let mut nowhere = Fault::new(FaultKind::RpcError)
        .for_bot("bot0")
        .for_method("upload.getFile");
    (nowhere.code, nowhere.message) = (303, "FILE_MIGRATE_0".into());
    sim.telegram.add_fault(nowhere).unwrap();
    let sent = voice(&sim, 0, 5000, 32);
    sim.run();
    assert!(
        matches!(
            row(&sim, sent.message_id).outcome,
            Some(VoiceOutcome::Failed { .. })
        ),
        "{:?}",
        row(&sim, sent.message_id)
    );
    assert_eq!(sim.connects_to(1), 1);
    assert_eq!(sim.connects.len(), 1, "no media connection was opened");
}
