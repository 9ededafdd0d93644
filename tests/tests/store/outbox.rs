//! The voice outbox, on both back ends: a row per voice message, written with the state
//! that covers it or not at all; the first row of a message wins; pending rows oldest
//! first; what each outcome does; `outbox list` and `outbox retry`; the upgrade from
//! schema version 1; and rows that go with their integration.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use telegram_bots_adapters::store::{Migrated, Store, StoreError, VoiceOutcome, VoiceRow};
use telegram_bots_core::record::{BotRecord, Commit};
use telegram_bots_core::updates::{IncomingMessage, Peer, VoiceFile};
use telegram_bots_core::voice::{VoiceJob, VoiceKey};
use telegram_bots_tests::store::StoreDb;

use super::{
    KEY_A, VERSION, by_workspace, channels, commit, migrated, ring, session, state, token,
};

on_both_back_ends!(
    a_commit_makes_rows_for_its_voice_messages_only_and_with_its_state,
    a_batch_that_fails_writes_neither_state_nor_rows,
    a_message_handed_on_twice_keeps_its_first_row_and_a_done_row_stays_done,
    pending_rows_come_oldest_first_up_to_the_limit,
    every_outcome_is_recorded,
    failed_rows_are_listed_and_requeued,
    the_upgrade_from_version_1_keeps_integrations_and_state,
    removing_an_integration_removes_its_rows,
);

/// The file of voice message `n`: every field its own, the reference bytes not text.
fn file(n: i32) -> VoiceFile {
    VoiceFile {
        kind: telegram_bots_core::updates::MediaKind::ALL[n as usize % 3],
        document_id: 5_000_000_000 + i64::from(n),
        access_hash: -7_000_000_000 * i64::from(n),
        file_reference: vec![0, 0xff, n as u8, 0x80, 0x7f],
        dc_id: 1 + n % 5,
        size: 4_096 * i64::from(n) + 17,
        mime_type: "audio/ogg".into(),
        duration_seconds: n % 600,
    }
}

fn message(chat: Peer, message_id: i32, voice: Option<VoiceFile>) -> IncomingMessage {
    IncomingMessage {
        chat,
        message_id,
        from_user_id: match chat {
            Peer::Channel(_) => None,
            _ => Some(9_000 + i64::from(message_id)),
        },
        date: 1_795_651_200 + message_id,
        text: if voice.is_some() { "" } else { "hello" }.into(),
        voice,
    }
}

fn voice(chat: Peer, message_id: i32) -> IncomingMessage {
    message(chat, message_id, Some(file(message_id)))
}

fn text(chat: Peer, message_id: i32) -> IncomingMessage {
    message(chat, message_id, None)
}

/// A commit that moves the state to `pts` and carries `messages`.
fn with_messages(id: u64, pts: i32, messages: Vec<IncomingMessage>) -> Commit {
    Commit {
        messages,
        ..commit(id, None, Some(state(pts)), None)
    }
}

fn key(ws: &str, chat: Peer, message_id: i32) -> VoiceKey {
    VoiceKey {
        workspace_id: ws.into(),
        chat,
        message_id,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `batch` and returns when it did (Unix milliseconds, before and after).
fn write(store: &mut dyn Store, batch: &[(String, Commit)]) -> (i64, i64) {
    let before = now_ms();
    store.write(batch).unwrap();
    (before, now_ms())
}

/// The job for `msg` of `ws` as the outbox should hold it, received at `received`.
fn job(ws: &str, msg: &IncomingMessage, received: i64) -> VoiceJob {
    VoiceJob::from_message(ws, msg, received).expect("a voice message")
}

fn keys(jobs: &[VoiceJob]) -> Vec<VoiceKey> {
    jobs.iter().map(|j| j.key.clone()).collect()
}

fn row<'a>(rows: &'a [VoiceRow], key: &VoiceKey) -> &'a VoiceRow {
    rows.iter()
        .find(|r| &r.job.key == key)
        .unwrap_or_else(|| panic!("no row for {key:?} in {rows:?}"))
}

fn a_commit_makes_rows_for_its_voice_messages_only_and_with_its_state(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    store.add("ws-2", &token(2)).unwrap();
    let ws1 = vec![
        voice(Peer::User(42), 10),
        text(Peer::User(42), 11),
        voice(Peer::Chat(77), 12),
        text(Peer::Channel(1_000_000_001), 13),
        voice(Peer::Channel(1_000_000_001), 14),
    ];
    // The same chat and message id in another workspace is another message.
    let ws2 = vec![voice(Peer::User(42), 10)];
    let (before, after) = write(
        store.as_mut(),
        &[
            ("ws-1".into(), with_messages(1, 5, ws1.clone())),
            ("ws-2".into(), with_messages(1, 3, ws2.clone())),
        ],
    );

    let pending = db.open(ring(KEY_A)).voice_pending(100).unwrap();
    assert_eq!(pending.len(), 4, "{}: one row per voice message", db.name());
    let received = pending[0].received_at_ms;
    assert!(
        (before..=after).contains(&received),
        "{}: received at {received}, written between {before} and {after}",
        db.name()
    );
    let expected: Vec<VoiceJob> = [
        ("ws-1", &ws1[0]),
        ("ws-1", &ws1[2]),
        ("ws-1", &ws1[4]),
        ("ws-2", &ws2[0]),
    ]
    .into_iter()
    .map(|(ws, m)| job(ws, m, received))
    .collect();
    assert_eq!(pending, expected, "{}: every field read back", db.name());
    let list = store.voice_list(false).unwrap();
    assert!(
        list.iter()
            .all(|r| r.status == "pending" && r.last_error.is_none() && r.object_key.is_none()),
        "{list:?}"
    );
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(list["ws-1"].record.updates, Some(state(5)));
    assert_eq!(list["ws-2"].record.updates, Some(state(3)));

    // A large batch: many workspaces and messages, still every row.
    let mut batch = Vec::new();
    for w in 0..40 {
        let ws = format!("ws-many-{w:02}");
        store.add(&ws, &token(100 + w)).unwrap();
        let messages = (0..6)
            .map(|m| voice(Peer::User(i64::from(w)), 1_000 + m))
            .collect();
        batch.push((ws, with_messages(1, 7, messages)));
    }
    store.write(&batch).unwrap();
    assert_eq!(store.voice_pending(1_000).unwrap().len(), 4 + 40 * 6);
}

fn a_batch_that_fails_writes_neither_state_nor_rows(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    store.add("ws-2", &token(2)).unwrap();
    store
        .write(&[("ws-1".into(), with_messages(1, 1, vec![]))])
        .unwrap();

    // An outbox row that cannot be written fails the state with it...
    db.refuse_inserts("telegram_bots_voice_outbox", "NEW.message_id = 666");
    let refused = store.write(&[
        (
            "ws-2".into(),
            with_messages(1, 2, vec![voice(Peer::User(5), 1)]),
        ),
        (
            "ws-1".into(),
            with_messages(
                2,
                9,
                vec![voice(Peer::User(5), 2), voice(Peer::User(5), 666)],
            ),
        ),
    ]);
    refused_by_the_test(db, refused);
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(
        list["ws-1"].record.updates,
        Some(state(1)),
        "{}: the state stays where it was",
        db.name()
    );
    assert_eq!(list["ws-2"].record.updates, None);
    assert_eq!(store.voice_list(false).unwrap(), vec![]);

    // ...and a state that cannot be written fails the rows with it.
    db.refuse_inserts("telegram_bots_update_state", "NEW.pts = 777");
    let refused = store.write(&[(
        "ws-2".into(),
        with_messages(1, 777, vec![voice(Peer::User(5), 3)]),
    )]);
    refused_by_the_test(db, refused);
    assert_eq!(store.voice_list(false).unwrap(), vec![]);

    // The core hands the messages on again: written with their state this time.
    store
        .write(&[(
            "ws-1".into(),
            with_messages(2, 9, vec![voice(Peer::User(5), 2)]),
        )])
        .unwrap();
    assert_eq!(
        keys(&store.voice_pending(10).unwrap()),
        [key("ws-1", Peer::User(5), 2)]
    );
    assert_eq!(
        by_workspace(store.integrations().unwrap())["ws-1"]
            .record
            .updates,
        Some(state(9))
    );
}

/// A write that failed because of [`StoreDb::refuse_inserts`], not for another reason.
fn refused_by_the_test(db: &dyn StoreDb, result: Result<(), StoreError>) {
    match result {
        Err(StoreError::Unavailable(e)) if e.contains("refused by the test") => {}
        other => panic!("{}: {other:?}", db.name()),
    }
}

fn a_message_handed_on_twice_keeps_its_first_row_and_a_done_row_stays_done(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    let first = voice(Peer::User(5), 1);
    // After a crash the same message comes again, with a fresh file reference.
    let mut again = first.clone();
    again.voice.as_mut().unwrap().file_reference = vec![9, 9, 9];
    store
        .write(&[("ws-1".into(), with_messages(1, 1, vec![first.clone()]))])
        .unwrap();
    let original = store.voice_pending(10).unwrap();
    // Twice more: in a later batch, and twice within one batch.
    store
        .write(&[("ws-1".into(), with_messages(2, 2, vec![again.clone()]))])
        .unwrap();
    store
        .write(&[
            ("ws-1".into(), with_messages(3, 3, vec![again.clone()])),
            ("ws-1".into(), with_messages(4, 4, vec![again.clone()])),
        ])
        .unwrap();
    assert_eq!(
        store.voice_pending(10).unwrap(),
        original,
        "{}: one row, the first",
        db.name()
    );
    assert_eq!(
        original[0].file.file_reference,
        first.voice.unwrap().file_reference
    );

    // Within one batch the first sighting wins too.
    let later = voice(Peer::User(5), 2);
    let mut later_again = later.clone();
    later_again.voice.as_mut().unwrap().file_reference = vec![8];
    store
        .write(&[(
            "ws-1".into(),
            with_messages(5, 5, vec![later.clone(), later_again]),
        )])
        .unwrap();
    let pending = store.voice_pending(10).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(Some(&pending[1].file), later.voice.as_ref());

    let done = key("ws-1", Peer::User(5), 1);
    store
        .voice_finish(&[(
            done.clone(),
            VoiceOutcome::Done {
                object_key: "ws-1/a.ogg".into(),
            },
        )])
        .unwrap();
    store
        .write(&[("ws-1".into(), with_messages(6, 6, vec![again]))])
        .unwrap();
    let list = store.voice_list(false).unwrap();
    assert_eq!(list.len(), 2);
    let row = row(&list, &done);
    assert_eq!(
        (row.status.as_str(), row.object_key.as_deref()),
        ("done", Some("ws-1/a.ogg")),
        "{}: a done row is never reset",
        db.name()
    );
    assert_eq!(
        keys(&store.voice_pending(10).unwrap()),
        [key("ws-1", Peer::User(5), 2)]
    );
}

fn pending_rows_come_oldest_first_up_to_the_limit(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-a", &token(1)).unwrap();
    store.add("ws-b", &token(2)).unwrap();
    // Within a batch, the batch's order (not the keys'): a channel's message before a
    // private chat's, a later workspace before an earlier one.
    let first = [
        ("ws-b", voice(Peer::Channel(9), 30)),
        ("ws-a", voice(Peer::User(1), 20)),
        ("ws-a", voice(Peer::Chat(5), 10)),
    ];
    let second = [("ws-a", voice(Peer::User(1), 5))];
    let third = [
        ("ws-a", voice(Peer::User(1), 21)),
        ("ws-b", voice(Peer::User(1), 1)),
    ];
    let mut expected = Vec::new();
    for (n, part) in [&first[..], &second[..], &third[..]]
        .into_iter()
        .enumerate()
    {
        let batch: Vec<(String, Commit)> = part
            .iter()
            .map(|(ws, m)| {
                (
                    (*ws).into(),
                    with_messages(n as u64, n as i32, vec![m.clone()]),
                )
            })
            .collect();
        store.write(&batch).unwrap();
        expected.extend(part.iter().map(|(ws, m)| key(ws, m.chat, m.message_id)));
        // Each batch received a little later than the one before.
        std::thread::sleep(Duration::from_millis(5));
    }

    let all = store.voice_pending(100).unwrap();
    assert_eq!(keys(&all), expected, "{}: oldest first", db.name());
    assert!(
        all.windows(2)
            .all(|w| w[0].received_at_ms <= w[1].received_at_ms)
    );
    assert!(all[2].received_at_ms < all[3].received_at_ms);
    assert_eq!(keys(&store.voice_pending(4).unwrap()), expected[..4]);
    assert_eq!(store.voice_pending(0).unwrap(), vec![]);
    let backlog = store.voice_backlog().unwrap();
    assert_eq!(backlog.pending, 6, "{}", db.name());
    assert_eq!(backlog.oldest_ms, Some(all[0].received_at_ms));

    // Neither done nor failed rows are pending.
    store
        .voice_finish(&[
            (
                expected[0].clone(),
                VoiceOutcome::Done {
                    object_key: "k".into(),
                },
            ),
            (
                expected[2].clone(),
                VoiceOutcome::Failed {
                    reason: "404".into(),
                },
            ),
        ])
        .unwrap();
    assert_eq!(
        keys(&store.voice_pending(2).unwrap()),
        [expected[1].clone(), expected[3].clone()]
    );
    // A retried row keeps its place: by when it was received, not by when it was tried.
    store
        .voice_finish(&[(
            expected[1].clone(),
            VoiceOutcome::Retry {
                error: "S3: 503".into(),
            },
        )])
        .unwrap();
    assert_eq!(
        keys(&store.voice_pending(1).unwrap()),
        [expected[1].clone()]
    );

    // A disabled integration's rows wait for it without crowding out the others'.
    store.set_enabled("ws-a", false).unwrap();
    assert_eq!(
        keys(&store.voice_pending(1).unwrap()),
        [expected[5].clone()],
        "{}: ws-b's row, past ws-a's older ones",
        db.name()
    );
    store.set_enabled("ws-a", true).unwrap();
    assert_eq!(
        keys(&store.voice_pending(1).unwrap()),
        [expected[1].clone()]
    );
}

fn every_outcome_is_recorded(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    let messages: Vec<IncomingMessage> = (1..=6).map(|n| voice(Peer::User(5), n)).collect();
    store
        .write(&[("ws-1".into(), with_messages(1, 1, messages))])
        .unwrap();
    let k = |n: i32| key("ws-1", Peer::User(5), n);
    let retry = |error: &str| VoiceOutcome::Retry {
        error: error.into(),
    };
    let done = |object_key: &str| VoiceOutcome::Done {
        object_key: object_key.into(),
    };
    let failed = |reason: &str| VoiceOutcome::Failed {
        reason: reason.into(),
    };

    store
        .voice_finish(&[(k(1), retry("S3: 503 Slow Down")), (k(2), retry("timeout"))])
        .unwrap();
    store
        .voice_finish(&[
            (k(1), retry("Inngest: 500")),
            (k(2), done("ws-1/2026/11/26/user-5/2.ogg")),
            (k(3), failed("S3: 403 AccessDenied")),
            // Given twice in one call: the last outcome counts.
            (k(4), retry("first")),
            (k(4), done("ws-1/4.ogg")),
            // No such message (its integration removed, say): nothing to do.
            (key("ws-gone", Peer::User(5), 1), done("x")),
        ])
        .unwrap();
    let list = store.voice_list(false).unwrap();
    let summary = |n: i32| {
        let r = row(&list, &k(n));
        (
            r.status.as_str(),
            r.job.attempts,
            r.last_error.as_deref(),
            r.object_key.as_deref(),
        )
    };
    assert_eq!(
        summary(1),
        ("pending", 2, Some("Inngest: 500"), None),
        "{}: a retry counts the attempt and keeps the last error",
        db.name()
    );
    assert_eq!(
        summary(2),
        ("done", 1, None, Some("ws-1/2026/11/26/user-5/2.ogg")),
        "{}: done clears the error and keeps the count",
        db.name()
    );
    assert_eq!(
        summary(3),
        ("failed", 0, Some("S3: 403 AccessDenied"), None)
    );
    assert_eq!(summary(4), ("done", 0, None, Some("ws-1/4.ogg")));
    assert_eq!(summary(5), ("pending", 0, None, None));

    // A done row stays done whatever comes after; a failed row is not retried by an
    // outcome (only by `outbox retry`).
    store
        .voice_finish(&[
            (k(2), failed("late")),
            (k(4), retry("late")),
            (k(3), retry("late")),
        ])
        .unwrap();
    let list = store.voice_list(false).unwrap();
    let summary = |n: i32| {
        let r = row(&list, &k(n));
        (r.status.clone(), r.job.attempts, r.last_error.clone())
    };
    assert_eq!(summary(2), ("done".into(), 1, None));
    assert_eq!(summary(4), ("done".into(), 0, None));
    assert_eq!(
        summary(3),
        ("failed".into(), 0, Some("S3: 403 AccessDenied".into()))
    );
    // A done outcome is the truth, whatever the row said.
    store.voice_finish(&[(k(3), done("ws-1/3.ogg"))]).unwrap();
    assert_eq!(row(&store.voice_list(false).unwrap(), &k(3)).status, "done");
    store.voice_finish(&[]).unwrap();

    // Seen from another process, pending rows carry their attempts.
    let pending = db.open(ring(KEY_A)).voice_pending(10).unwrap();
    let attempts: Vec<(i32, u32)> = pending
        .iter()
        .map(|j| (j.key.message_id, j.attempts))
        .collect();
    assert_eq!(attempts, [(1, 2), (5, 0), (6, 0)]);
}

fn failed_rows_are_listed_and_requeued(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    store.add("ws-2", &token(2)).unwrap();
    store
        .write(&[
            (
                "ws-1".into(),
                with_messages(1, 1, vec![voice(Peer::User(5), 1), voice(Peer::User(5), 2)]),
            ),
            (
                "ws-2".into(),
                with_messages(
                    1,
                    1,
                    vec![voice(Peer::Channel(8), 3), voice(Peer::Chat(6), 4)],
                ),
            ),
        ])
        .unwrap();
    let order: Vec<VoiceKey> = vec![
        key("ws-1", Peer::User(5), 1),
        key("ws-1", Peer::User(5), 2),
        key("ws-2", Peer::Channel(8), 3),
        key("ws-2", Peer::Chat(6), 4),
    ];
    assert_eq!(store.voice_retry_failed(), Ok(0), "nothing failed yet");
    store
        .voice_finish(&[
            (
                order[0].clone(),
                VoiceOutcome::Retry {
                    error: "S3: 503".into(),
                },
            ),
            (
                order[1].clone(),
                VoiceOutcome::Done {
                    object_key: "ws-1/2.ogg".into(),
                },
            ),
        ])
        .unwrap();
    store
        .voice_finish(&[
            (
                order[0].clone(),
                VoiceOutcome::Failed {
                    reason: "S3: 403".into(),
                },
            ),
            (
                order[3].clone(),
                VoiceOutcome::Failed {
                    reason: "Inngest: 401".into(),
                },
            ),
        ])
        .unwrap();

    let all = store.voice_list(false).unwrap();
    let statuses: Vec<(VoiceKey, &str)> = all
        .iter()
        .map(|r| (r.job.key.clone(), r.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            (order[0].clone(), "failed"),
            (order[1].clone(), "done"),
            (order[2].clone(), "pending"),
            (order[3].clone(), "failed"),
        ],
        "{}: every row, oldest first",
        db.name()
    );
    let failed = store.voice_list(true).unwrap();
    assert_eq!(
        failed.iter().map(|r| r.job.key.clone()).collect::<Vec<_>>(),
        [order[0].clone(), order[3].clone()]
    );
    assert_eq!(failed[0].job.attempts, 1);
    assert_eq!(failed[1].last_error.as_deref(), Some("Inngest: 401"));

    assert_eq!(store.voice_retry_failed(), Ok(2));
    assert_eq!(store.voice_list(true).unwrap(), vec![]);
    let pending = store.voice_list(false).unwrap();
    let requeued = row(&pending, &order[0]);
    assert_eq!(
        (
            requeued.status.as_str(),
            requeued.job.attempts,
            requeued.last_error.as_deref()
        ),
        ("pending", 0, Some("S3: 403")),
        "{}: pending again, attempts from zero, the error kept for the record",
        db.name()
    );
    assert_eq!(
        row(&pending, &order[1]).status,
        "done",
        "done rows stay done"
    );
    assert_eq!(
        keys(&store.voice_pending(10).unwrap()),
        [order[0].clone(), order[2].clone(), order[3].clone()]
    );
    assert_eq!(store.voice_retry_failed(), Ok(0));
}

fn the_upgrade_from_version_1_keeps_integrations_and_state(db: &dyn StoreDb) {
    // The database as a build of schema version 1 left it.
    db.execute(&format!(
        "CREATE TABLE telegram_bots_schema (version bigint NOT NULL);
         INSERT INTO telegram_bots_schema VALUES (1);
         {}",
        db.migrations()[0]
    ));
    let mut old = db.open(ring(KEY_A));
    old.add("ws-1", &token(1)).unwrap();
    old.add("ws-2", &token(2)).unwrap();
    old.set_enabled("ws-2", false).unwrap();
    let mut expected = BotRecord::default();
    let c = commit(
        1,
        Some(session(1, 2, &[2, 4])),
        Some(state(40)),
        Some(channels(1, 2)),
    );
    expected.apply(&c);
    old.write(&[("ws-1".into(), c)]).unwrap();
    assert_eq!(
        old.check_schema(),
        Err(StoreError::NotMigrated {
            found: 1,
            known: VERSION
        })
    );

    let mut store = db.open(ring(KEY_A));
    assert_eq!(
        store.migrate(),
        Ok(Migrated {
            from: 1,
            to: VERSION
        })
    );
    store.check_schema().unwrap();
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(list.len(), 2);
    assert_eq!(list["ws-1"].record, expected, "{}: state kept", db.name());
    assert_eq!(
        list["ws-1"].token.as_ref().map(|t| t.expose().clone()),
        Ok(token(1).expose().clone())
    );
    assert!(!list["ws-2"].enabled);
    assert_eq!(store.voice_list(false).unwrap(), vec![]);
    store
        .write(&[(
            "ws-1".into(),
            with_messages(2, 41, vec![voice(Peer::User(5), 1)]),
        )])
        .unwrap();
    assert_eq!(store.voice_pending(10).unwrap().len(), 1);
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM telegram_bots_schema"),
        VERSION
    );
}

fn removing_an_integration_removes_its_rows(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    store.add("ws-2", &token(2)).unwrap();
    store
        .write(&[
            (
                "ws-1".into(),
                with_messages(1, 1, vec![voice(Peer::User(5), 1), voice(Peer::User(5), 2)]),
            ),
            (
                "ws-2".into(),
                with_messages(1, 1, vec![voice(Peer::User(5), 1)]),
            ),
        ])
        .unwrap();
    store
        .voice_finish(&[(
            key("ws-1", Peer::User(5), 1),
            VoiceOutcome::Failed {
                reason: "S3: 403".into(),
            },
        )])
        .unwrap();
    store.remove("ws-1").unwrap();
    let left = store.voice_list(false).unwrap();
    assert_eq!(
        left.iter().map(|r| r.job.key.clone()).collect::<Vec<_>>(),
        [key("ws-2", Peer::User(5), 1)],
        "{}",
        db.name()
    );
    assert_eq!(store.voice_retry_failed(), Ok(0));

    // A commit of its bot still in flight adds no row; an outcome for its message is
    // no error; added again, it starts with an empty outbox.
    store
        .write(&[(
            "ws-1".into(),
            with_messages(2, 2, vec![voice(Peer::User(5), 3)]),
        )])
        .unwrap();
    store
        .voice_finish(&[(
            key("ws-1", Peer::User(5), 2),
            VoiceOutcome::Done {
                object_key: "x".into(),
            },
        )])
        .unwrap();
    store.add("ws-1", &token(1)).unwrap();
    assert_eq!(
        keys(&store.voice_pending(10).unwrap()),
        [key("ws-2", Peer::User(5), 1)]
    );
}
