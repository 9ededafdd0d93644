//! The core's fleet driver against the fake DC, both sans-IO, in memory, with a fake
//! clock: admission control, a staggered start and its progress reports, reconciling the
//! wanted set, restarts after a panic, readiness that does not flap, a failing store,
//! and a clean stop.

use std::time::Duration;

use telegram_bots_core::fleet::{
    BotState, Effect, FleetEvent, FleetSettings, PROGRESS_EVERY, Progress, WantedBot,
};
use telegram_bots_core::http::{Method, Request};
use telegram_bots_tests::fake_dc::fault::{Fault, FaultKind};
use telegram_bots_tests::fleet_sim::{Sim, config, settings, token};

#[test]
fn admission_bounds_connects_and_handshakes_in_flight() {
    let mut sim = Sim::new(40, settings(8, 10_000, 1000));
    let wanted = sim.wanted(0..40);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 40, "{:?}", sim.states());
    assert_eq!(sim.peak_in_flight, 8, "the bound is used, and never passed");
    assert_eq!(sim.telegram.stats()["handshakes"], 40);
    assert_eq!(
        sim.fleet.admission_load(),
        (0, 0, 0),
        "every permit is back"
    );
    sim.ready().unwrap();
}

#[test]
fn handshakes_are_bounded_apart_and_stored_sessions_are_not_held_up_by_them() {
    let mut sim = Sim::new(30, FleetSettings::default());
    for i in 20..30 {
        sim.stored_session(i);
    }
    let wanted = sim.wanted(0..30);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 30);
    let limits = FleetSettings::default().admission;
    assert_eq!(sim.peak_handshakes, limits.max_handshakes);
    assert!(sim.peak_in_flight <= limits.max_in_flight);
    // The stored sessions (bots 21 to 30) did not wait behind the handshakes queued
    // before them: all went before the ninth handshake.
    let position = |bot: u64| {
        sim.connects
            .iter()
            .position(|(_, c)| c.bot.0 == bot)
            .unwrap()
    };
    assert!(
        (21..=30).all(|bot| position(bot) < position(9)),
        "{:?}",
        sim.connects
    );
}

#[test]
fn the_start_is_staggered_at_the_admission_rate() {
    let mut sim = Sim::new(30, settings(1000, 10, 5));
    for i in 0..30 {
        sim.stored_session(i);
    }
    let start = sim.now.instant;
    let wanted = sim.wanted(0..30);
    sim.set_wanted(wanted);
    assert_eq!(sim.connects.len(), 5, "the burst goes at once");
    sim.advance_until(Duration::from_secs(10), |s| s.running() == 30);
    let times: Vec<Duration> = sim.connects.iter().map(|(at, _)| *at - start).collect();
    for pair in times[5..].windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(100), "{times:?}");
    }
    let last = *times.last().unwrap();
    assert!(
        last >= Duration::from_millis(2500) && last <= Duration::from_millis(2600),
        "25 after the burst at 10 a second: {last:?}"
    );
    let stats = sim.telegram.stats();
    let logins: u64 = stats["logins"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|n| n.as_u64())
        .sum();
    assert_eq!(
        (stats["handshakes"].as_u64(), logins),
        (Some(0), 0),
        "stored sessions"
    );
}

#[test]
fn the_wanted_set_is_reconciled_without_a_restart() {
    let mut sim = Sim::new(4, FleetSettings::default());
    let wanted = sim.wanted(0..2);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 2);
    // ws_1 leaves, ws_2 comes.
    let mut wanted = sim.wanted(0..1);
    wanted.extend(sim.wanted(2..3));
    sim.set_wanted(wanted);
    assert_eq!(
        sim.states(),
        [
            ("ws_0".to_owned(), BotState::Running),
            ("ws_2".to_owned(), BotState::Running)
        ]
    );
    assert_eq!(sim.fleet.len(), 2);
    let live = sim.telegram.stats()["live_connections"].clone();
    assert!(
        live.get("bot1").is_none_or(|n| n == 0),
        "ws_1's connection is closed: {live}"
    );
    // ws_0's token is replaced by bot3's: the old bot stops and saves first, then the
    // new one logs in afresh (the stored login was the old bot's).
    let mut wanted = vec![WantedBot {
        config: config("ws_0", &token(3)),
        record: sim.durable.get("ws_0").cloned(),
        refused: None,
    }];
    wanted.extend(sim.wanted(2..3));
    sim.set_wanted(wanted);
    sim.advance_until(Duration::from_secs(5), |s| s.running() == 2);
    let stats = sim.telegram.stats();
    assert_eq!(stats["logins"]["bot3"], 1);
    let ws0 = sim.fleet.health().fleet.bots().next().unwrap().clone();
    assert_eq!(
        (ws0.workspace_id.as_str(), ws0.username.as_deref()),
        ("ws_0", Some("bot3"))
    );
    assert_eq!(
        sim.durable["ws_0"].session.username.as_deref(),
        Some("bot3")
    );
    // Unchanged wanted set: nothing happens.
    let connects = sim.connects.len();
    let wanted = vec![
        WantedBot {
            config: config("ws_0", &token(3)),
            record: None,
            refused: None,
        },
        sim.wanted(2..3).remove(0),
    ];
    sim.set_wanted(wanted);
    assert_eq!(sim.connects.len(), connects);
}

#[test]
fn a_panicking_bot_restarts_from_its_committed_record() {
    let mut sim = Sim::new(2, FleetSettings::default());
    let wanted = sim.wanted(0..2);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 2);
    sim.telegram
        .add_fault(
            Fault::new(FaultKind::BareFutureSalt)
                .for_bot("bot1")
                .for_method("updates.getDifference"),
        )
        .unwrap();
    sim.telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot1"))
        .unwrap();
    sim.run();
    sim.advance_until(Duration::from_secs(5), |s| {
        s.fleet.health().fleet.counters.bot_restarts == 1
    });
    let status = sim
        .fleet
        .health()
        .fleet
        .bots()
        .find(|b| b.workspace_id == "ws_1")
        .unwrap()
        .clone();
    assert_eq!(status.state, BotState::Backoff);
    assert!(status.last_error.unwrap().starts_with("internal error"));
    assert!(
        sim.events.iter().any(
            |e| matches!(e, FleetEvent::Panicked { workspace_id, .. } if workspace_id == "ws_1")
        )
    );
    sim.ready().unwrap();
    // A message while it waits arrives after the restart, which reuses the saved login.
    sim.telegram
        .send_text("bot1", 4, "after the panic")
        .unwrap();
    sim.advance_until(Duration::from_secs(400), |s| {
        s.state("ws_1") == BotState::Running
    });
    sim.run();
    assert_eq!(sim.delivered["ws_1"].len(), 1, "{:?}", sim.events);
    assert_eq!(sim.telegram.stats()["logins"]["bot1"], 1);
    assert_eq!(
        sim.state("ws_0"),
        BotState::Running,
        "the other bot never noticed"
    );
}

#[test]
fn one_bot_in_trouble_leaves_the_fleet_ready() {
    let mut sim = Sim::new(3, FleetSettings::default());
    sim.telegram
        .add_fault(Fault {
            seconds: 3000,
            times: 100,
            ..Fault::new(FaultKind::FloodWait)
                .for_bot("bot1")
                .for_method("updates.getState")
        })
        .unwrap();
    let mut wanted = sim.wanted(0..3);
    wanted.push(WantedBot {
        config: config("ws_revoked", "7199999:AAnot-a-bot"),
        record: None,
        refused: None,
    });
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 2);
    assert_eq!(sim.state("ws_1"), BotState::Backoff);
    assert_eq!(sim.state("ws_revoked"), BotState::Failed);
    sim.ready().unwrap();
    // And it stays ready while the bot keeps failing.
    for _ in 0..5 {
        sim.advance();
        sim.ready().unwrap();
    }
    let details = sim
        .fleet
        .health()
        .fleet
        .bots()
        .find(|b| b.workspace_id == "ws_1")
        .unwrap()
        .clone();
    assert!(details.last_error.unwrap().contains("FLOOD_WAIT_3000"));
}

#[test]
fn readiness_waits_for_every_bots_first_try() {
    let mut sim = Sim::new(20, settings(4, 10, 4));
    for i in 0..20 {
        sim.stored_session(i);
    }
    let wanted = sim.wanted(0..20);
    sim.set_wanted(wanted);
    assert!(
        sim.ready()
            .unwrap_err()
            .starts_with("starting bots (16 not tried yet)")
    );
    sim.advance_until(Duration::from_secs(5), |s| s.ready().is_ok());
    assert_eq!(sim.running(), 20);
}

#[test]
fn a_failing_store_shows_in_readiness_and_loses_nothing() {
    let mut sim = Sim::new(1, FleetSettings::default());
    let wanted = sim.wanted(0..1);
    sim.set_wanted(wanted);
    sim.store_error = Some("STATE_FILE /data/state.json: No space left on device".into());
    let sent: Vec<i32> = (0..3)
        .map(|_| sim.telegram.send_text("bot0", 5, "hi").unwrap().message_id)
        .collect();
    sim.run();
    assert_eq!(
        sim.ready().unwrap_err(),
        "cannot save the bots' state: STATE_FILE /data/state.json: No space left on device"
    );
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, FleetEvent::StoreFailing { .. }))
    );
    let failures = sim.fleet.health().fleet.counters.commit_failures;
    sim.advance();
    assert!(
        sim.fleet.health().fleet.counters.commit_failures > failures,
        "retried"
    );
    sim.store_error = None;
    sim.advance_until(Duration::from_secs(60), |s| s.ready().is_ok());
    assert_eq!(sim.delivered["ws_0"], sent);
    assert!(
        sim.events
            .iter()
            .any(|e| matches!(e, FleetEvent::StoreRecovered))
    );
}

#[test]
fn a_stop_finishes_once_everything_received_is_durable() {
    let mut sim = Sim::new(2, FleetSettings::default());
    let wanted = sim.wanted(0..2);
    sim.set_wanted(wanted);
    let sent = sim
        .telegram
        .send_text("bot0", 5, "just before the stop")
        .unwrap();
    // Deliver the push, but keep the commit unanswered.
    while let Some((conn, answer)) = sim.net.poll_push(&sim.telegram) {
        for frame in answer.frames {
            sim.fleet
                .handle_input(conn, &frame, sim.now, &mut sim.random);
        }
    }
    let mut pending = Vec::new();
    while let Some(effect) = sim.fleet.poll_effect() {
        match effect {
            Effect::Commit {
                bot,
                workspace_id,
                commit,
            } => pending.push((bot, workspace_id, commit)),
            other => sim.carry_out(other),
        }
    }
    assert_eq!(pending.len(), 1);
    sim.fleet.stop(sim.now);
    assert!(!sim.fleet.is_stopped(), "a commit is still being written");
    assert!(sim.ready().unwrap_err().contains("shutting down"));
    sim.handed = pending;
    sim.run();
    assert!(sim.fleet.is_stopped());
    assert_eq!(sim.delivered["ws_0"], [sent.message_id]);
    assert_eq!(
        sim.telegram.stats()["connections"],
        0,
        "every connection closed"
    );
}

/// The start's progress reports in `sim.events[from..]`.
fn progress_reports(sim: &Sim, from: usize) -> Vec<(Progress, Option<Duration>)> {
    sim.events[from..]
        .iter()
        .filter_map(|e| match e {
            FleetEvent::Progress { progress, elapsed } => Some((*progress, *elapsed)),
            _ => None,
        })
        .collect()
}

/// `/readyz` as the health surface answers it now.
fn readyz(sim: &Sim) -> serde_json::Value {
    let request = Request {
        method: Method::Get,
        path: "/readyz".into(),
    };
    let response = sim.fleet.health().respond(&request, sim.now.instant, None);
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn a_slow_start_reports_its_progress_at_the_interval_and_once_more_when_done() {
    // 31 bots at 5 connects a second after a burst of 5: just over 5 s.
    let mut sim = Sim::new(30, settings(1000, 5, 5));
    for i in 0..30 {
        sim.stored_session(i);
    }
    let mut wanted = sim.wanted(0..30);
    wanted.push(WantedBot {
        config: config("ws_revoked", "7199999:AAnot-a-bot"),
        record: None,
        refused: None,
    });
    let start = sim.now.instant;
    sim.set_wanted(wanted);
    assert!(progress_reports(&sim, 0).is_empty(), "no report at once");

    // /readyz says how far the start has come.
    let ready = readyz(&sim);
    assert_eq!(ready["status"], "not ready");
    let running = sim.running();
    assert!(running > 0 && running < 30, "{running}");
    assert_eq!(
        ready["progress"],
        format!("starting: {running}/31 bots running, 0 failed")
    );
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .starts_with("starting bots ("),
        "{ready}"
    );

    // Every report with the time it came at.
    let mut reports = Vec::new();
    let mut seen = 0;
    while sim.now.instant < start + Duration::from_secs(20) {
        sim.advance();
        for report in progress_reports(&sim, seen) {
            reports.push((sim.now.instant - start, report));
        }
        seen = sim.events.len();
    }
    let times: Vec<Duration> = reports.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        times[..2],
        [PROGRESS_EVERY, PROGRESS_EVERY * 2],
        "every {PROGRESS_EVERY:?} while starting: {reports:?}"
    );
    assert_eq!(reports.len(), 3, "two reports, then the last: {reports:?}");
    let (first, second) = (reports[0].1, reports[1].1);
    assert!(first.0.running < second.0.running && second.0.running < 30);
    for (progress, elapsed) in [first, second] {
        assert_eq!(elapsed, None);
        assert_eq!(progress.total, 31);
        assert!(progress.untried > 0);
        assert_eq!(
            progress.running + progress.failed + progress.retrying + progress.untried,
            31,
            "{progress:?}"
        );
    }
    let (at, (last, elapsed)) = reports[2];
    assert_eq!(
        last,
        Progress {
            total: 31,
            running: 30,
            failed: 1,
            retrying: 0,
            untried: 0
        }
    );
    assert_eq!(elapsed, Some(at), "the time from the first wanted set");
    assert!(
        at > Duration::from_secs(5) && at < Duration::from_secs(6),
        "{at:?}"
    );
    assert_eq!(last.to_string(), "30/31 bots running, 1 failed");
    let ready = readyz(&sim);
    assert_eq!(ready["status"], "ready");
    assert!(ready.get("progress").is_none(), "{ready}");
}

#[test]
fn a_start_over_at_once_reports_once_and_a_later_bot_does_not_report_again() {
    let mut sim = Sim::new(4, FleetSettings::default());
    let wanted = sim.wanted(0..3);
    sim.set_wanted(wanted);
    assert_eq!(sim.running(), 3);
    let reports = progress_reports(&sim, 0);
    assert_eq!(
        reports,
        [(
            Progress {
                total: 3,
                running: 3,
                ..Progress::default()
            },
            Some(Duration::ZERO)
        )]
    );
    let wanted = sim.wanted(0..4);
    sim.set_wanted(wanted);
    sim.advance_until(Duration::from_secs(10), |s| s.running() == 4);
    let end = sim.now.instant + PROGRESS_EVERY * 3;
    while sim.now.instant < end {
        sim.advance();
    }
    assert_eq!(progress_reports(&sim, 0).len(), 1, "the start is over");
}

#[test]
fn an_empty_fleet_reports_its_start_once() {
    let mut sim = Sim::new(0, FleetSettings::default());
    sim.set_wanted(Vec::new());
    let end = sim.now.instant + PROGRESS_EVERY * 3;
    while sim.now.instant < end {
        sim.advance();
    }
    assert_eq!(
        progress_reports(&sim, 0),
        [(Progress::default(), Some(Duration::ZERO))]
    );
}

#[test]
fn a_stop_while_starting_ends_the_reports() {
    let mut sim = Sim::new(20, settings(1000, 2, 2));
    for i in 0..20 {
        sim.stored_session(i);
    }
    let wanted = sim.wanted(0..20);
    sim.set_wanted(wanted);
    sim.fleet.stop(sim.now);
    sim.run();
    let end = sim.now.instant + PROGRESS_EVERY * 3;
    while sim.now.instant < end && sim.fleet.poll_timeout().is_some() {
        sim.advance();
    }
    assert!(progress_reports(&sim, 0).is_empty(), "{:?}", sim.events);
}
