//! The shared store suite: every test below runs against both back ends, the embedded
//! SQLite file and a real PostgreSQL, and expects the same of each (`sqlite::` and
//! `postgres::` in the test names). PostgreSQL alone is asked to wake a waiting
//! process on a change and to survive a database restart (`postgres_only::`). The voice
//! outbox has its own part ([`outbox`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use telegram_bots_adapters::store::postgres::PostgresStore;
use telegram_bots_adapters::store::schema::VERSION;
use telegram_bots_adapters::store::{Integration, Migrated, Sealer, Store, StoreError};
use telegram_bots_core::record::{BotRecord, ChannelState, Commit, SessionRecord};
use telegram_bots_core::seal::Keyring;
use telegram_bots_core::secret::{Secret, SecretUrl};
use telegram_bots_core::updates::UpdateState;
use telegram_bots_tests::postgres::PgCluster;
use telegram_bots_tests::store::{PostgresDb, StoreDb};

/// Instantiates each test function for both back ends.
macro_rules! on_both_back_ends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test(&telegram_bots_tests::store::SqliteDb::new());
            })*
        }
        mod postgres {
            $(#[test]
            fn $test() {
                super::$test(&telegram_bots_tests::store::PostgresDb::new());
            })*
        }
    };
}

on_both_back_ends!(
    migrations_run_from_empty_and_again_without_change,
    two_concurrent_migrations_both_succeed,
    a_newer_schema_is_refused_with_a_clear_message,
    tokens_and_auth_keys_round_trip,
    a_wrong_key_fails_only_the_integrations_it_does_not_open,
    rotation_reads_with_the_previous_key_and_reseals_under_the_current_one,
    admin_operations_and_their_errors,
    a_batch_of_many_bots_commits_round_trips,
    a_commit_for_a_removed_workspace_is_skipped,
    the_change_counter_moves_with_integration_changes_only,
    nothing_is_stored_in_clear_text,
);

// Not a test target of its own: in a folder, where cargo does not look for them.
#[path = "store/outbox.rs"]
mod outbox;

const KEY_A: [u8; 32] = [0xa1; 32];
const KEY_B: [u8; 32] = [0xb2; 32];
const KEY_C: [u8; 32] = [0xc3; 32];

fn ring(key: [u8; 32]) -> Keyring {
    Keyring::new(key, None)
}

/// Bot `n`'s token, shaped like Telegram's.
fn token(n: u32) -> Secret<String> {
    Secret::new(format!(
        "{}:AAsecretTokenOfBot{n:05}-zyxwvutsrqponml",
        7_000_000 + n
    ))
}

/// An auth key of its own for each `seed` (xorshift bytes).
fn auth_key(seed: u32) -> [u8; 256] {
    let mut x = 0x9e37_79b9u32 ^ seed.wrapping_mul(0x85eb_ca6b);
    std::array::from_fn(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    })
}

/// A logged-in session on `home_dc` with a key for each of `dcs` (seeded by `seed`).
fn session(seed: u32, home_dc: i32, dcs: &[i32]) -> SessionRecord {
    let mut session = SessionRecord {
        home_dc: Some(home_dc),
        authorized: true,
        user_id: Some(7_000_000 + i64::from(seed)),
        username: Some(format!("bot_{seed}")),
        ..SessionRecord::default()
    };
    for &dc in dcs {
        session
            .auth_keys
            .insert(dc, Secret::new(auth_key(seed * 10 + dc as u32)));
    }
    session
}

fn state(pts: i32) -> UpdateState {
    UpdateState {
        pts,
        qts: pts / 2,
        date: 1_700_000_000 + pts,
        seq: pts / 3,
    }
}

fn channels(seed: i64, n: i64) -> Vec<ChannelState> {
    (0..n)
        .map(|i| ChannelState {
            id: 1_000_000 + seed * 10 + i,
            access_hash: -seed * 1_000 - i,
            pts: (seed * 100 + i) as i32,
        })
        .collect()
}

fn commit(
    id: u64,
    session: Option<SessionRecord>,
    updates: Option<UpdateState>,
    channels: Option<Vec<ChannelState>>,
) -> Commit {
    Commit {
        id,
        session,
        updates,
        channels,
        messages: vec![],
    }
}

/// A store on `db`, migrated, sealing with `KEY_A`.
fn migrated(db: &dyn StoreDb) -> Box<dyn Store> {
    let mut store = db.open(ring(KEY_A));
    store.migrate().unwrap();
    store
}

fn by_workspace(list: Vec<Integration>) -> BTreeMap<String, Integration> {
    list.into_iter()
        .map(|i| (i.workspace_id.clone(), i))
        .collect()
}

fn token_of(integration: &Integration) -> &str {
    match &integration.token {
        Ok(token) => token.expose(),
        Err(e) => panic!("{}: {e}", integration.workspace_id),
    }
}

fn migrations_run_from_empty_and_again_without_change(db: &dyn StoreDb) {
    let mut store = db.open(ring(KEY_A));
    let not_migrated = store.check_schema().unwrap_err();
    assert_eq!(
        not_migrated,
        StoreError::NotMigrated {
            found: 0,
            known: VERSION
        }
    );
    assert!(
        not_migrated
            .to_string()
            .contains("run `telegram-bots migrate`"),
        "{not_migrated}"
    );

    assert_eq!(
        store.migrate(),
        Ok(Migrated {
            from: 0,
            to: VERSION
        })
    );
    store.check_schema().unwrap();
    assert_eq!(store.integrations().unwrap().len(), 0);
    store.add("ws-1", &token(1)).unwrap();

    // Again, here and from another process: nothing to do, nothing lost.
    let again = Ok(Migrated {
        from: VERSION,
        to: VERSION,
    });
    assert_eq!(store.migrate(), again);
    let mut other = db.open(ring(KEY_A));
    assert_eq!(other.migrate(), again);
    other.check_schema().unwrap();
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM telegram_bots_schema"),
        VERSION,
        "{}: one row per version",
        db.name()
    );
    let list = other.integrations().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(token_of(&list[0]), token(1).expose());
}

fn two_concurrent_migrations_both_succeed(db: &dyn StoreDb) {
    let barrier = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let mut store = db.open(ring(KEY_A));
            // Connected before the race starts.
            let _ = store.check_schema();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                store.migrate()
            })
        })
        .collect();
    let mut froms: Vec<i64> = runs
        .into_iter()
        .map(|run| {
            run.join()
                .expect("migrate does not panic")
                .unwrap_or_else(|e| panic!("{}: a concurrent migrate failed: {e}", db.name()))
                .from
        })
        .collect();
    froms.sort();
    assert_eq!(froms, [0, VERSION], "one migrates, the other finds it done");
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM telegram_bots_schema"),
        VERSION
    );
    let mut store = migrated(db);
    store.check_schema().unwrap();
    store.add("ws-1", &token(1)).unwrap();
}

fn a_newer_schema_is_refused_with_a_clear_message(db: &dyn StoreDb) {
    let store = migrated(db);
    db.execute(&format!(
        "INSERT INTO telegram_bots_schema (version) VALUES ({})",
        VERSION + 1
    ));
    let newer = StoreError::SchemaTooNew {
        found: VERSION + 1,
        known: VERSION,
    };
    for mut store in [store, db.open(ring(KEY_A))] {
        assert_eq!(store.migrate(), Err(newer.clone()));
        assert_eq!(store.check_schema(), Err(newer.clone()));
    }
    let message = newer.to_string();
    assert!(
        message.contains(&format!(
            "version {}, newer than this build knows ({VERSION})",
            VERSION + 1
        )) && message.contains("run a newer telegram-bots"),
        "{message}"
    );
    assert_eq!(
        db.query_i64("SELECT MAX(version) FROM telegram_bots_schema"),
        VERSION + 1,
        "a refused migration changes nothing"
    );
}

fn tokens_and_auth_keys_round_trip(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    let mut record = BotRecord::default();
    let first = commit(
        1,
        Some(session(1, 2, &[2, 4])),
        Some(state(10)),
        Some(channels(1, 2)),
    );
    record.apply(&first);
    store.write(&[("ws-1".into(), first)]).unwrap();

    // A restart: another store on the same database, with the same key.
    let list = db.open(ring(KEY_A)).integrations().unwrap();
    assert_eq!(list.len(), 1);
    let ws = &list[0];
    assert_eq!(ws.workspace_id, "ws-1");
    assert_eq!(token_of(ws), token(1).expose());
    assert!(ws.enabled);
    assert_eq!(ws.last_error, None);
    assert_eq!(ws.record, record);
    assert_eq!(ws.record.session.auth_keys[&4].expose(), &auth_key(14));
}

fn a_wrong_key_fails_only_the_integrations_it_does_not_open(db: &dyn StoreDb) {
    let mut under_a = migrated(db);
    let mut under_b = db.open(ring(KEY_B));
    under_a.add("ws-a", &token(1)).unwrap();
    under_b.add("ws-b", &token(2)).unwrap();
    under_a.add("ws-c", &token(3)).unwrap();
    under_a
        .write(&[
            (
                "ws-a".into(),
                commit(1, Some(session(1, 2, &[2])), Some(state(5)), None),
            ),
            (
                "ws-c".into(),
                commit(1, Some(session(3, 2, &[2])), Some(state(7)), None),
            ),
        ])
        .unwrap();
    under_b
        .write(&[(
            "ws-b".into(),
            commit(1, Some(session(2, 2, &[2])), Some(state(6)), None),
        )])
        .unwrap();

    let list = by_workspace(db.open(ring(KEY_A)).integrations().unwrap());
    assert_eq!(
        list.len(),
        3,
        "a value that does not open hides no integration"
    );
    assert_eq!(token_of(&list["ws-a"]), token(1).expose());
    assert_eq!(token_of(&list["ws-c"]), token(3).expose());
    assert_eq!(list["ws-a"].record.session, session(1, 2, &[2]));
    let failed = &list["ws-b"];
    let reason = failed.token.as_ref().unwrap_err();
    assert!(
        reason.contains("ws-b") && reason.contains("wrong ENCRYPTION_KEY?"),
        "{reason}"
    );
    assert!(!reason.contains("secretToken"), "{reason}");
    // Its auth key does not open either: no key, so no login; its state is no secret.
    assert!(failed.record.session.auth_keys.is_empty());
    assert!(!failed.record.session.authorized);
    assert_eq!(failed.record.updates, Some(state(6)));

    // And the other way round.
    let list = by_workspace(db.open(ring(KEY_B)).integrations().unwrap());
    assert_eq!(token_of(&list["ws-b"]), token(2).expose());
    assert_eq!(list["ws-b"].record.session, session(2, 2, &[2]));
    for ws in ["ws-a", "ws-c"] {
        let reason = list[ws].token.as_ref().unwrap_err();
        assert!(reason.contains(ws) && reason.contains("wrong ENCRYPTION_KEY?"));
    }
}

fn rotation_reads_with_the_previous_key_and_reseals_under_the_current_one(db: &dyn StoreDb) {
    let mut old = migrated(db);
    old.add("ws-1", &token(1)).unwrap();
    old.add("ws-2", &token(2)).unwrap();
    let mut expected = BTreeMap::new();
    for (ws, c) in [
        (
            "ws-1",
            commit(
                1,
                Some(session(1, 2, &[2, 4])),
                Some(state(1)),
                Some(channels(1, 1)),
            ),
        ),
        (
            "ws-2",
            commit(1, Some(session(2, 4, &[4])), Some(state(2)), None),
        ),
    ] {
        expected
            .entry(ws)
            .or_insert_with(BotRecord::default)
            .apply(&c);
        old.write(&[(ws.into(), c)]).unwrap();
    }
    // Sealed under a key the rotation knows nothing of: left as it is.
    db.open(ring(KEY_C)).add("ws-3", &token(3)).unwrap();

    let mut rotating = db.open(Keyring::new(KEY_B, Some(KEY_A)));
    let during = by_workspace(rotating.integrations().unwrap());
    for ws in ["ws-1", "ws-2"] {
        assert!(during[ws].token.is_ok(), "the previous key reads {ws}");
        assert_eq!(during[ws].record, expected[ws]);
    }
    assert_eq!(
        rotating.rotate_key(),
        Ok(5),
        "two tokens and three auth keys resealed"
    );
    assert_eq!(rotating.rotate_key(), Ok(0), "nothing left to reseal");

    let new_only = by_workspace(db.open(ring(KEY_B)).integrations().unwrap());
    assert_eq!(token_of(&new_only["ws-1"]), token(1).expose());
    assert_eq!(token_of(&new_only["ws-2"]), token(2).expose());
    for ws in ["ws-1", "ws-2"] {
        assert_eq!(new_only[ws].record, expected[ws], "{ws} under the new key");
    }
    let old_only = by_workspace(db.open(ring(KEY_A)).integrations().unwrap());
    for ws in ["ws-1", "ws-2"] {
        let reason = old_only[ws].token.as_ref().unwrap_err();
        assert!(reason.contains("wrong ENCRYPTION_KEY?"), "{reason}");
        assert!(
            old_only[ws].record.session.auth_keys.is_empty(),
            "the old key opens no auth key of {ws}"
        );
    }
    let untouched = by_workspace(db.open(ring(KEY_C)).integrations().unwrap());
    assert_eq!(token_of(&untouched["ws-3"]), token(3).expose());
}

fn admin_operations_and_their_errors(db: &dyn StoreDb) {
    let mut store = migrated(db);
    for (ws, n) in [("ws-b", 2), ("ws-a", 1), ("ws-c", 3)] {
        store.add(ws, &token(n)).unwrap();
    }
    let duplicate = store.add("ws-a", &token(9)).unwrap_err();
    assert_eq!(duplicate, StoreError::Duplicate("ws-a".into()));
    assert_eq!(
        duplicate.to_string(),
        "workspace \"ws-a\" already has an integration"
    );
    let list = store.integrations().unwrap();
    let order: Vec<&str> = list.iter().map(|i| i.workspace_id.as_str()).collect();
    assert_eq!(order, ["ws-a", "ws-b", "ws-c"], "in workspace order");
    assert_eq!(
        token_of(&list[0]),
        token(1).expose(),
        "the first token stays"
    );
    assert!(list.iter().all(|i| i.enabled && i.last_error.is_none()));

    store.set_enabled("ws-b", false).unwrap();
    let list = by_workspace(store.integrations().unwrap());
    assert!(!list["ws-b"].enabled);
    assert!(list["ws-a"].enabled && list["ws-c"].enabled);
    store.set_enabled("ws-b", true).unwrap();
    assert!(by_workspace(store.integrations().unwrap())["ws-b"].enabled);

    let unknown = StoreError::UnknownWorkspace("ws-x".into());
    assert_eq!(store.set_enabled("ws-x", true), Err(unknown.clone()));
    assert_eq!(store.set_enabled("ws-x", false), Err(unknown.clone()));
    assert_eq!(store.remove("ws-x"), Err(unknown.clone()));
    assert_eq!(store.set_token("ws-x", &token(9)), Err(unknown.clone()));
    assert_eq!(unknown.to_string(), "no integration for workspace \"ws-x\"");

    // Last errors: set, replaced, cleared; a note for a workspace without one is no error.
    store
        .note_error(&[
            ("ws-a".into(), Some("first".into())),
            ("ws-c".into(), Some("the token was rejected".into())),
            ("ws-a".into(), Some("Telegram refused the token".into())),
            ("ws-x".into(), Some("gone".into())),
        ])
        .unwrap();
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(
        list["ws-a"].last_error.as_deref(),
        Some("Telegram refused the token"),
        "the last note wins"
    );
    assert_eq!(
        list["ws-c"].last_error.as_deref(),
        Some("the token was rejected")
    );
    assert_eq!(list["ws-b"].last_error, None);
    store.note_error(&[("ws-c".into(), None)]).unwrap();
    assert_eq!(
        by_workspace(store.integrations().unwrap())["ws-c"].last_error,
        None
    );

    // A new token clears the last error and keeps the session.
    let mut record = BotRecord::default();
    let c = commit(
        1,
        Some(session(1, 2, &[2])),
        Some(state(3)),
        Some(channels(1, 2)),
    );
    record.apply(&c);
    store.write(&[("ws-a".into(), c)]).unwrap();
    store.set_token("ws-a", &token(11)).unwrap();
    let list = by_workspace(db.open(ring(KEY_A)).integrations().unwrap());
    assert_eq!(token_of(&list["ws-a"]), token(11).expose());
    assert_eq!(list["ws-a"].last_error, None);
    assert_eq!(list["ws-a"].record, record);

    // Removed with its session and state: added again, it starts afresh.
    store.remove("ws-a").unwrap();
    let order: Vec<String> = store
        .integrations()
        .unwrap()
        .into_iter()
        .map(|i| i.workspace_id)
        .collect();
    assert_eq!(order, ["ws-b", "ws-c"]);
    assert_eq!(
        store.remove("ws-a"),
        Err(StoreError::UnknownWorkspace("ws-a".into()))
    );
    store.add("ws-a", &token(1)).unwrap();
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(list["ws-a"].record, BotRecord::default());
    assert_eq!(token_of(&list["ws-a"]), token(1).expose());
}

fn a_batch_of_many_bots_commits_round_trips(db: &dyn StoreDb) {
    const BOTS: u32 = 300;
    const MISSING: &str = "ws-without-integration";
    let mut store = migrated(db);
    let ws = |i: u32| format!("ws-{i:04}");
    for i in 0..BOTS {
        store.add(&ws(i), &token(i)).unwrap();
    }
    let mut batch = Vec::new();
    for i in 0..BOTS {
        let dcs: &[i32] = if i % 3 == 0 { &[2, 4] } else { &[2] };
        batch.push((
            ws(i),
            commit(
                1,
                Some(session(i, 2, dcs)),
                Some(state(i as i32)),
                Some(channels(i64::from(i), i64::from(i % 4))),
            ),
        ));
    }
    // Later commits of the same bots in the same batch: each replaces what it carries.
    for i in (0..BOTS).step_by(5) {
        batch.push((ws(i), commit(2, None, Some(state(i as i32 + 1_000)), None)));
    }
    for i in (0..BOTS).step_by(7) {
        batch.push((
            ws(i),
            commit(3, Some(session(i + 5_000, 1, &[1])), None, Some(vec![])),
        ));
    }
    batch.push((MISSING.into(), commit(1, None, Some(state(1)), None)));
    let mut expected: BTreeMap<String, BotRecord> = BTreeMap::new();
    let apply_all = |expected: &mut BTreeMap<String, BotRecord>, batch: &[(String, Commit)]| {
        for (ws, c) in batch {
            if ws != MISSING {
                expected.entry(ws.clone()).or_default().apply(c);
            }
        }
    };
    apply_all(&mut expected, &batch);
    store.write(&batch).unwrap();

    let check = |expected: &BTreeMap<String, BotRecord>| {
        let list = db.open(ring(KEY_A)).integrations().unwrap();
        assert_eq!(list.len(), BOTS as usize);
        for integration in &list {
            assert_eq!(
                &integration.record,
                &expected[&integration.workspace_id],
                "{}: {}",
                db.name(),
                integration.workspace_id
            );
        }
    };
    check(&expected);

    // The next batch moves every bot's state and touches nothing else.
    let next: Vec<(String, Commit)> = (0..BOTS)
        .map(|i| (ws(i), commit(4, None, Some(state(i as i32 + 2_000)), None)))
        .collect();
    apply_all(&mut expected, &next);
    store.write(&next).unwrap();
    check(&expected);
    store.write(&[]).unwrap();
}

fn a_commit_for_a_removed_workspace_is_skipped(db: &dyn StoreDb) {
    let mut store = migrated(db);
    store.add("ws-1", &token(1)).unwrap();
    store.add("ws-2", &token(2)).unwrap();
    let first = |n: u32| {
        commit(
            1,
            Some(session(n, 2, &[2])),
            Some(state(1)),
            Some(channels(1, 1)),
        )
    };
    store
        .write(&[("ws-1".into(), first(1)), ("ws-2".into(), first(2))])
        .unwrap();
    store.remove("ws-1").unwrap();

    // Its bot had a commit in flight: the batch is written without it.
    store
        .write(&[
            (
                "ws-1".into(),
                commit(2, Some(session(11, 2, &[2])), Some(state(2)), None),
            ),
            ("ws-2".into(), commit(2, None, Some(state(2)), None)),
        ])
        .unwrap();
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(list.len(), 1);
    assert_eq!(list["ws-2"].record.updates, Some(state(2)));

    store.add("ws-1", &token(1)).unwrap();
    let list = by_workspace(store.integrations().unwrap());
    assert_eq!(
        list["ws-1"].record,
        BotRecord::default(),
        "neither the removed state nor the skipped commit is there"
    );
}

fn the_change_counter_moves_with_integration_changes_only(db: &dyn StoreDb) {
    let mut store = migrated(db);
    // Another process watches.
    let mut watcher = db.open(ring(KEY_A));
    let mut seen = watcher.integrations_version().unwrap();
    let mut check = |what: &str, changed: bool| {
        let now = watcher.integrations_version().unwrap();
        assert_eq!(now != seen, changed, "{}: {what}", db.name());
        seen = now;
    };
    store.add("ws-1", &token(1)).unwrap();
    check("add", true);
    let c = commit(
        1,
        Some(session(1, 2, &[2])),
        Some(state(1)),
        Some(channels(1, 1)),
    );
    store.write(&[("ws-1".into(), c)]).unwrap();
    check("a commit", false);
    store
        .note_error(&[("ws-1".into(), Some("trouble".into()))])
        .unwrap();
    check("a last error", false);
    store.set_enabled("ws-1", false).unwrap();
    check("disable", true);
    store.set_enabled("ws-1", true).unwrap();
    check("enable", true);
    store.set_token("ws-1", &token(2)).unwrap();
    check("a new token", true);
    assert!(store.add("ws-1", &token(1)).is_err());
    check("a duplicate add", false);
    assert!(store.set_enabled("ws-x", true).is_err());
    check("enable of an unknown", false);
    assert!(store.set_enabled("ws-x", false).is_err());
    check("disable of an unknown", false);
    assert!(store.set_token("ws-x", &token(3)).is_err());
    check("a token for an unknown", false);
    assert!(store.remove("ws-x").is_err());
    check("remove of an unknown", false);
    store.remove("ws-1").unwrap();
    check("remove", true);
}

fn nothing_is_stored_in_clear_text(db: &dyn StoreDb) {
    let mut store = migrated(db);
    let tokens = [token(1), token(2), token(22)];
    store.add("ws-1", &tokens[0]).unwrap();
    store.add("ws-2", &tokens[1]).unwrap();
    store.set_token("ws-2", &tokens[2]).unwrap();
    let sessions = [
        session(1, 2, &[2, 4]),
        session(2, 4, &[4]),
        session(3, 2, &[2]),
    ];
    store
        .write(&[
            (
                "ws-1".into(),
                commit(1, Some(sessions[0].clone()), Some(state(1)), None),
            ),
            (
                "ws-2".into(),
                commit(1, Some(sessions[1].clone()), Some(state(1)), None),
            ),
        ])
        .unwrap();
    db.open(Keyring::new(KEY_B, Some(KEY_A)))
        .rotate_key()
        .unwrap();
    db.open(ring(KEY_B))
        .write(&[(
            "ws-2".into(),
            commit(2, Some(sessions[2].clone()), None, None),
        )])
        .unwrap();

    let at_rest = db.at_rest();
    let holds = |needle: &[u8]| at_rest.windows(needle.len()).any(|w| w == needle);
    assert!(
        holds(b"ws-1") && holds(b"bot_1"),
        "{}: the dump shows what is stored in the clear",
        db.name()
    );
    for (n, token) in tokens.iter().enumerate() {
        let secret_part = token.expose().split_once(':').unwrap().1;
        assert!(
            !holds(token.expose().as_bytes()) && !holds(secret_part.as_bytes()),
            "{} holds token {n} in clear text",
            db.name()
        );
    }
    for session in &sessions {
        for (dc, key) in session.auth_keys.iter() {
            let key = key.expose();
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let base64 = base64::engine::general_purpose::STANDARD.encode(key);
            for (form, bytes) in [
                ("raw", &key[..]),
                ("hex", hex.as_bytes()),
                ("base64", base64.as_bytes()),
            ] {
                assert!(
                    !holds(bytes),
                    "{} holds the auth key for DC {dc} in clear text ({form})",
                    db.name()
                );
            }
        }
    }
}

mod postgres_only {
    use super::*;

    #[test]
    fn a_waiting_process_wakes_on_an_integration_change_and_not_on_a_commit() {
        let db = PostgresDb::new();
        let mut store = migrated(&db);
        let mut watcher = db.open(ring(KEY_A));

        let started = Instant::now();
        watcher.wait_for_change(Duration::from_secs(20)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the first wait starts listening and returns, for the caller to compare versions"
        );

        let started = Instant::now();
        watcher.wait_for_change(Duration::from_millis(300)).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "nothing changed: the wait runs out"
        );

        let adding = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            store.add("ws-1", &token(1)).unwrap();
            store
        });
        let started = Instant::now();
        watcher.wait_for_change(Duration::from_secs(20)).unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
            "woken by the add after {waited:?}"
        );
        let mut store = adding.join().unwrap();

        store
            .write(&[("ws-1".into(), commit(1, None, Some(state(1)), None))])
            .unwrap();
        store
            .note_error(&[("ws-1".into(), Some("trouble".into()))])
            .unwrap();
        let started = Instant::now();
        watcher.wait_for_change(Duration::from_millis(500)).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "a commit and a last error are no integration change"
        );
        store.set_enabled("ws-1", false).unwrap();
        let started = Instant::now();
        watcher.wait_for_change(Duration::from_secs(20)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken by disable"
        );
    }

    #[test]
    fn a_database_restart_costs_only_the_calls_made_while_it_was_down() {
        const PASSWORD: &str = "Pa55-w0rd-not-for-logs";
        let mut cluster = PgCluster::init();
        cluster.start();
        // The cluster trusts loopback connections: the password goes unused, and must
        // appear in no error.
        let url = format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres",
            cluster.port()
        );
        let shown = format!(
            "postgres://postgres:***@127.0.0.1:{}/postgres",
            cluster.port()
        );
        let open = || PostgresStore::new(SecretUrl::new(url.clone()), Sealer::new(ring(KEY_A)));
        let mut store = open();
        let mut watcher = open();
        store.migrate().unwrap();
        store.add("ws-1", &token(1)).unwrap();
        store.add("ws-2", &token(2)).unwrap();
        let mut expected: BTreeMap<String, BotRecord> = BTreeMap::new();
        /// Writes `batch`, and notes what it wrote when it did.
        fn write(
            store: &mut PostgresStore,
            expected: &mut BTreeMap<String, BotRecord>,
            batch: Vec<(String, Commit)>,
        ) -> Result<(), StoreError> {
            store.write(&batch)?;
            for (ws, c) in &batch {
                expected.entry(ws.clone()).or_default().apply(c);
            }
            Ok(())
        }
        write(
            &mut store,
            &mut expected,
            vec![
                (
                    "ws-1".into(),
                    commit(1, Some(session(1, 2, &[2])), Some(state(10)), None),
                ),
                (
                    "ws-2".into(),
                    commit(
                        1,
                        Some(session(2, 4, &[4])),
                        Some(state(20)),
                        Some(channels(2, 2)),
                    ),
                ),
            ],
        )
        .unwrap();
        watcher.wait_for_change(Duration::from_secs(5)).unwrap();

        cluster.stop();
        let second = || {
            vec![
                ("ws-1".into(), commit(2, None, Some(state(11)), None)),
                ("ws-2".into(), commit(2, None, Some(state(21)), None)),
            ]
        };
        let down = write(&mut store, &mut expected, second()).unwrap_err();
        let StoreError::Unavailable(message) = &down else {
            panic!("a write to a stopped database: {down:?}");
        };
        assert!(message.contains(&shown), "{message}");
        assert!(
            !message.contains(PASSWORD),
            "the password leaked: {message}"
        );
        for (what, result) in [
            ("integrations", store.integrations().map(|_| ())),
            ("the version", store.integrations_version().map(|_| ())),
            ("add", store.add("ws-3", &token(3))),
            ("another write", write(&mut store, &mut expected, second())),
        ] {
            match result {
                Err(StoreError::Unavailable(m)) => {
                    assert!(m.contains(&shown) && !m.contains(PASSWORD), "{what}: {m}")
                }
                other => panic!("{what} while the database is down: {other:?}"),
            }
        }
        let started = Instant::now();
        watcher.wait_for_change(Duration::from_millis(300)).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waiting while the database is down neither fails nor spins"
        );
        assert!(!format!("{store:?}").contains(PASSWORD));

        cluster.start();
        write(&mut store, &mut expected, second()).expect("the first write after the restart");
        let list = by_workspace(store.integrations().unwrap());
        assert_eq!(list.len(), 2);
        for (ws, record) in &expected {
            assert_eq!(
                &list[ws].record, record,
                "{ws}: nothing written before is lost"
            );
        }

        // The watcher listens again, returning at once to have versions compared.
        let started = Instant::now();
        watcher.wait_for_change(Duration::from_secs(20)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));

        // Stopped and started between two calls: the connections kept idle are found
        // broken and made again, and the calls work.
        cluster.stop();
        cluster.start();
        write(
            &mut store,
            &mut expected,
            vec![("ws-1".into(), commit(3, None, Some(state(12)), None))],
        )
        .expect("the first write after a restart the store did not see");
        let list = by_workspace(open().integrations().unwrap());
        for (ws, record) in &expected {
            assert_eq!(&list[ws].record, record, "{ws}");
        }

        let started = Instant::now();
        watcher.wait_for_change(Duration::from_secs(20)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a broken LISTEN is made again at once, not after the timeout"
        );
        store.set_enabled("ws-2", false).unwrap();
        let started = Instant::now();
        watcher.wait_for_change(Duration::from_secs(20)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a change after the restart wakes the watcher"
        );
    }
}
