//! `outbox list [--failed]` and `outbox retry` end to end: each binary on each store, the
//! table an operator reads, the exit codes, and no token or file reference in any output.
//!
//! The binaries are the workspace's own, found next to this test's executable: the
//! README's test command (`cargo test --workspace`) builds them before any test runs. Run
//! alone, build them first (`cargo build -p telegram-bots-smol -p telegram-bots-blocking`);
//! a missing binary fails the test, it never skips it.

use std::path::{Path, PathBuf};

use telegram_bots_adapters::store::{Store, StorePlace, VoiceOutcome};
use telegram_bots_core::config::Config;
use telegram_bots_core::record::Commit;
use telegram_bots_core::updates::{IncomingMessage, Peer, VoiceFile};
use telegram_bots_core::voice::VoiceKey;
use telegram_bots_tests::e2e::{Cli, World, token};
use telegram_bots_tests::e2e_store::ENCRYPTION_KEY;
use telegram_bots_tests::postgres::TestDb;

const HEADER: [&str; 8] = [
    "WORKSPACE",
    "CHAT",
    "MESSAGE",
    "STATUS",
    "ATTEMPTS",
    "AGE",
    "OBJECT KEY",
    "LAST ERROR",
];
/// The file reference of every voice message here: no secret, but never shown.
const FILE_REFERENCE: [u8; 8] = [0x02, 0xfe, 0x01, 0x7a, 0x33, 0x91, 0x00, 0x5c];

/// `telegram-bots` and `telegram-bots-blocking`.
fn binaries() -> Vec<PathBuf> {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<this test> -> target/<profile>/<binary>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("in target/<profile>/deps");
    ["telegram-bots", "telegram-bots-blocking"]
        .into_iter()
        .map(|name| {
            let binary = dir.join(name);
            assert!(
                binary.is_file(),
                "{} is not built: cargo build -p telegram-bots-smol -p telegram-bots-blocking \
                 (cargo test --workspace builds it)",
                binary.display()
            );
            binary
        })
        .collect()
}

#[test]
fn outbox_commands_on_sqlite() {
    for binary in binaries() {
        outbox_commands(&binary, &World::bots_only(0));
    }
}

#[test]
fn outbox_commands_on_postgres() {
    for binary in binaries() {
        let db = TestDb::new();
        let mut world = World::bots_only(0);
        world.extra_env = vec![
            ("DATABASE_URL".into(), db.url().into()),
            ("ENCRYPTION_KEY".into(), ENCRYPTION_KEY.into()),
        ];
        outbox_commands(&binary, &world);
    }
}

#[test]
fn a_bad_command_line_exits_2_and_an_unreachable_database_1() {
    for binary in binaries() {
        let mut world = World::bots_only(0);
        for args in [
            &["outbox"][..],
            &["outbox", "list", "--bogus"],
            &["outbox", "retry", "now"],
            &["outbox", "requeue"],
        ] {
            let cli = world.cli(&binary, args, "");
            assert_eq!(cli.code, Some(2), "{args:?}: {cli:?}");
        }
        // Nothing listens on port 1: refused, saying where, without the password.
        world.extra_env = vec![
            (
                "DATABASE_URL".into(),
                "postgres://tb:Pa55-not-for-output@127.0.0.1:1/telegram_bots".into(),
            ),
            ("ENCRYPTION_KEY".into(), ENCRYPTION_KEY.into()),
        ];
        for args in [&["outbox", "list"][..], &["outbox", "retry"]] {
            let cli = world.cli(&binary, args, "");
            assert_eq!(cli.code, Some(1), "{args:?}: {cli:?}");
            assert!(
                cli.stderr
                    .contains("PostgreSQL postgres://tb:***@127.0.0.1:1/telegram_bots"),
                "{cli:?}"
            );
            assert!(!format!("{cli:?}").contains("Pa55"), "{cli:?}");
        }
    }
}

/// The cells of each line of a table (columns are two or more spaces apart).
fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

fn ok(cli: &Cli) -> &str {
    assert_eq!(cli.code, Some(0), "{cli:?}");
    &cli.stdout
}

/// The rows of `outbox list` (with `--failed` when `failed`), the header checked.
fn list(binary: &Path, world: &World, failed: bool) -> Vec<Vec<String>> {
    let args: &[&str] = if failed {
        &["outbox", "list", "--failed"]
    } else {
        &["outbox", "list"]
    };
    let mut lines = table(ok(&world.cli(binary, args, "")));
    assert_eq!(lines.remove(0), HEADER, "{args:?}");
    lines
}

fn voice(chat: Peer, message_id: i32) -> IncomingMessage {
    IncomingMessage {
        chat,
        message_id,
        from_user_id: Some(42),
        date: 1_795_651_200,
        text: String::new(),
        voice: Some(VoiceFile {
            kind: telegram_bots_core::updates::MediaKind::Voice,
            document_id: 5_551_234_567,
            access_hash: -8_765_432_101,
            file_reference: FILE_REFERENCE.to_vec(),
            dc_id: 2,
            size: 48_211,
            mime_type: "audio/ogg".into(),
            duration_seconds: 7,
        }),
    }
}

fn outbox_commands(binary: &Path, world: &World) {
    let cli = |args: &[&str], stdin: &str| world.cli(binary, args, stdin);
    let mut outputs = String::new();
    let before_migrate = cli(&["outbox", "list"], "");
    if world.extra_env.iter().any(|(k, _)| k == "DATABASE_URL") {
        // A shared database is migrated on purpose: the command says how.
        assert_eq!(before_migrate.code, Some(1), "{before_migrate:?}");
        assert!(
            before_migrate
                .stderr
                .contains("run `telegram-bots migrate`"),
            "{before_migrate:?}"
        );
    } else {
        // The embedded store is the process's own file: its schema is made on first use.
        assert_eq!(before_migrate.code, Some(0), "{before_migrate:?}");
    }
    outputs.push_str(ok(&cli(&["migrate"], "")));
    outputs.push_str(ok(&cli(
        &["integrations", "add", "--workspace", "ws_1"],
        &token(1),
    )));
    assert_eq!(list(binary, world, false), Vec::<Vec<String>>::new());

    // What a running service would have written and done: three voice messages, one
    // stored and announced, one retried, one failed for good.
    let config = Config::from_env(world.env()).expect("the world's configuration");
    let mut store = StorePlace::from_config(&config)
        .and_then(|place| place.connect().map_err(|e| e.to_string()))
        .unwrap();
    let (user, channel, chat) = (Peer::User(42), Peer::Channel(1_000_000_001), Peer::Chat(77));
    store
        .write(&[(
            "ws_1".into(),
            Commit {
                id: 1,
                session: None,
                updates: None,
                channels: None,
                messages: vec![voice(user, 10), voice(channel, 11), voice(chat, 12)],
            },
        )])
        .unwrap();
    let key = |chat, message_id| VoiceKey {
        workspace_id: "ws_1".into(),
        chat,
        message_id,
    };
    let object_key = "ws_1/2026/11/26/user-42/10.ogg";
    store
        .voice_finish(&[
            (
                key(user, 10),
                VoiceOutcome::Done {
                    object_key: object_key.into(),
                },
            ),
            (
                key(channel, 11),
                VoiceOutcome::Retry {
                    error: "Inngest: 500 Internal Server Error".into(),
                },
            ),
            (
                key(chat, 12),
                VoiceOutcome::Failed {
                    reason: "S3: 403 AccessDenied\nrequest id 4442587FB7D0A2F9".into(),
                },
            ),
        ])
        .unwrap();

    let rows = list(binary, world, false);
    let ages: Vec<&String> = rows.iter().map(|r| &r[5]).collect();
    assert!(
        ages.iter()
            .all(|a| a.ends_with('s') && a[..a.len() - 1].parse::<u32>().is_ok()),
        "received moments ago: {ages:?}"
    );
    let without_age = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r.remove(5);
                r
            })
            .collect()
    };
    let row = |cells: [&str; 7]| cells.map(String::from).to_vec();
    let failed = row([
        "ws_1",
        "chat 77",
        "12",
        "failed",
        "0",
        "-",
        // On one line, whatever the error said.
        "S3: 403 AccessDenied request id 4442587FB7D0A2F9",
    ]);
    assert_eq!(
        without_age(&rows),
        [
            row(["ws_1", "user 42", "10", "done", "0", object_key, "-"]),
            row([
                "ws_1",
                "channel 1000000001",
                "11",
                "pending",
                "1",
                "-",
                "Inngest: 500 Internal Server Error"
            ]),
            failed.clone(),
        ],
        "{binary:?}"
    );
    assert_eq!(without_age(&list(binary, world, true)), [failed]);

    let retried = cli(&["outbox", "retry"], "");
    assert_eq!(ok(&retried).trim(), "requeued 1 failed voice messages");
    outputs.push_str(&retried.stdout);
    assert_eq!(list(binary, world, true), Vec::<Vec<String>>::new());
    let rows = without_age(&list(binary, world, false));
    assert_eq!(
        rows[2],
        row([
            "ws_1",
            "chat 77",
            "12",
            "pending",
            "0",
            "-",
            "S3: 403 AccessDenied request id 4442587FB7D0A2F9"
        ]),
        "pending again, the error kept for the record"
    );
    assert_eq!(
        ok(&cli(&["outbox", "retry"], "")).trim(),
        "requeued 0 failed voice messages"
    );

    for failed in [false, true] {
        let args: &[&str] = if failed {
            &["outbox", "list", "--failed"]
        } else {
            &["outbox", "list"]
        };
        let cli = cli(args, "");
        outputs.push_str(&cli.stdout);
        outputs.push_str(&cli.stderr);
    }
    assert_secret_free(&outputs);
}

/// Neither the token nor the file reference, in any form.
fn assert_secret_free(outputs: &str) {
    use base64::Engine as _;
    let hex: String = FILE_REFERENCE.iter().map(|b| format!("{b:02x}")).collect();
    let forms = [
        token(1),
        "AAtoken-1".into(),
        hex.clone(),
        hex.to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(FILE_REFERENCE),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(FILE_REFERENCE),
        format!("{:?}", FILE_REFERENCE.to_vec()),
        String::from_utf8_lossy(&FILE_REFERENCE).into_owned(),
    ];
    for form in forms {
        assert!(!outputs.contains(&form), "{form:?} in:\n{outputs}");
    }
}
