//! End to end with the store: integrations managed from the command line and picked up
//! by a running fleet, a fleet on PostgreSQL that restarts without a login and outlives
//! a database restart, a start while the database is down, and no secret anywhere a
//! person could look. Each runtime's `tests/e2e.rs` expands
//! [`e2e_store_suite!`](crate::e2e_store_suite) with its binary.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::e2e::{Cli, World, token};
use crate::http;
use crate::inngest::InngestReceiver;
use crate::postgres::PgCluster;
use crate::s3::TestS3;
use crate::service::Service;

/// The `ENCRYPTION_KEY` of the PostgreSQL tests.
pub const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// How soon a change of the integrations must reach a running fleet.
const LIVE: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(30);

#[macro_export]
macro_rules! e2e_store_suite {
    ($binary:expr) => {
        $crate::e2e_store_suite!(@tests $binary;
            integrations_are_managed_live_with_sqlite,
            integrations_are_managed_live_with_postgres,
            a_fleet_on_postgres_restarts_without_a_login_and_outlives_a_database_restart,
            a_start_waits_for_the_database, a_changed_bots_file_is_picked_up_live);
    };
    (@tests $binary:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::e2e_store::$name(::std::path::Path::new($binary));
            }
        )*
    };
}

/// The S3 server and the Inngest receiver a service with `DATABASE_URL` needs.
#[derive(Debug)]
pub struct VoiceSinks {
    pub s3: TestS3,
    pub inngest: InngestReceiver,
}

impl VoiceSinks {
    pub fn start() -> VoiceSinks {
        VoiceSinks {
            s3: TestS3::start("voice"),
            inngest: InngestReceiver::start("test-event-key"),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.s3.env();
        env.extend(self.inngest.env());
        env
    }
}

/// A world whose service uses PostgreSQL on a private cluster of its own, with S3 and
/// Inngest (required with `DATABASE_URL`).
pub fn on_postgres(world: World) -> (World, PgCluster, VoiceSinks) {
    let mut cluster = PgCluster::init();
    cluster.start();
    let sinks = VoiceSinks::start();
    let mut world = world;
    world.extra_env = vec![
        ("DATABASE_URL".into(), cluster.url("postgres")),
        ("ENCRYPTION_KEY".into(), ENCRYPTION_KEY.into()),
    ];
    world.extra_env.extend(sinks.env());
    (world, cluster, sinks)
}

fn until(what: &str, service: &Service, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}\n{}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The bot of `workspace` in `/readyz` details, if it is there.
fn detail(service: &Service, workspace: &str) -> Option<serde_json::Value> {
    let ready = http::get(service.health_addr, "/readyz").json();
    ready["details"]
        .as_array()?
        .iter()
        .find(|d| d["workspace_id"] == workspace)
        .cloned()
}

fn ok(cli: &Cli) -> &str {
    assert_eq!(cli.code, Some(0), "{cli:?}");
    &cli.stdout
}

fn refused(cli: &Cli, message: &str) {
    assert_eq!(cli.code, Some(1), "{cli:?}");
    assert!(cli.stderr.contains(message), "{:?} not in {cli:?}", message);
}

pub fn integrations_are_managed_live_with_sqlite(binary: &Path) {
    let world = World::bots_only(2);
    integrations_are_managed_live(binary, &world, |world| world.store_bytes());
}

pub fn integrations_are_managed_live_with_postgres(binary: &Path) {
    let (world, cluster, _sinks) = on_postgres(World::bots_only(2));
    integrations_are_managed_live(binary, &world, |_| {
        let mut client =
            postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).unwrap();
        client
            .query(
                "SELECT row_to_json(t)::text FROM telegram_bots_integrations t
                 UNION ALL SELECT row_to_json(t)::text FROM telegram_bots_auth_keys t
                 UNION ALL SELECT row_to_json(t)::text FROM telegram_bots_sessions t",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<String>()
            .into_bytes()
    });
}

/// No token, and no auth key the fake DC knows, in clear text in what the store holds.
fn assert_sealed(world: &World, stored: &[u8]) {
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"ws_1"), "the store holds the integration");
    for i in 1..=2 {
        assert!(
            !contains(token(i).as_bytes()),
            "a token in clear text in the store"
        );
    }
    let keys: Vec<[u8; 256]> = world
        .telegram
        .world()
        .keys
        .values()
        .map(|k| *k.key)
        .collect();
    assert!(!keys.is_empty());
    for key in keys {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert!(
            !contains(&key) && !contains(hex.as_bytes()) && !contains(b64.as_bytes()),
            "an auth key in clear text in the store"
        );
    }
}

/// Add, refuse, disable, enable, re-token, list and remove from the command line, each
/// change reaching the running fleet within [`LIVE`]; no token in any output.
fn integrations_are_managed_live(binary: &Path, world: &World, stored: impl Fn(&World) -> Vec<u8>) {
    let service = world.start_with(binary, &[("LOG_LEVEL", "trace")]);
    let cli = |args: &[&str], stdin: &str| world.cli(binary, args, stdin);
    let mut outputs = String::new();

    let added = cli(&["integrations", "add", "--workspace", "ws_1"], &token(1));
    outputs.push_str(ok(&added));
    let t = Instant::now();
    until("ws_1 running", &service, LIVE, || {
        detail(&service, "ws_1").is_some_and(|d| d["state"] == "running")
    });
    let picked_up = t.elapsed();

    // Mistakes are refused, clearly, and change nothing.
    let duplicate = cli(&["integrations", "add", "--workspace", "ws_1"], &token(2));
    refused(&duplicate, "workspace \"ws_1\" already has an integration");
    refused(
        &cli(&["integrations", "disable", "--workspace", "nope"], ""),
        "no integration for workspace \"nope\"",
    );
    refused(
        &cli(
            &["integrations", "add", "--workspace", "ws_x"],
            "not-a-token\n",
        ),
        "malformed token",
    );
    refused(
        &cli(&["integrations", "set-token", "--workspace", "ws_1"], ""),
        "no bot token on standard input",
    );
    outputs.push_str(&duplicate.stderr);

    // Disabled: its bot disconnects and leaves /readyz and /metrics.
    outputs.push_str(ok(&cli(
        &["integrations", "disable", "--workspace", "ws_1"],
        "",
    )));
    until("ws_1 gone", &service, LIVE, || {
        detail(&service, "ws_1").is_none()
    });
    let metrics = http::get(service.health_addr, "/metrics").text();
    assert!(!metrics.contains("ws_1"), "{metrics}");
    until("bot1's connection closed", &service, LIVE, || {
        world.stats()["live_connections"]
            .get("bot1")
            .is_none_or(|n| n == 0)
    });

    // Enabled again: back from its saved session, without a new login.
    outputs.push_str(ok(&cli(
        &["integrations", "enable", "--workspace", "ws_1"],
        "",
    )));
    until("ws_1 back", &service, LIVE, || {
        detail(&service, "ws_1").is_some_and(|d| d["state"] == "running")
    });
    assert_eq!(world.stats()["logins"]["bot1"], 1, "no new login");

    // A new token (of another bot): the workspace's bot becomes that bot.
    let set = cli(
        &["integrations", "set-token", "--workspace", "ws_1"],
        &token(2),
    );
    outputs.push_str(ok(&set));
    until("ws_1 as bot2", &service, LIVE, || {
        detail(&service, "ws_1").is_some_and(|d| d["state"] == "running" && d["username"] == "bot2")
    });

    // The store learns who the bot is once the new bot's login is committed.
    until("@bot2 in the list", &service, WAIT, || {
        let list = cli(&["integrations", "list"], "");
        outputs.push_str(ok(&list));
        list.stdout.lines().any(|l| {
            l.starts_with("ws_1 ")
                && l.contains("@bot2")
                && l.contains(" yes ")
                && l.contains(" logged in ")
        })
    });

    assert_sealed(world, &stored(world));
    outputs.push_str(ok(&cli(
        &["integrations", "remove", "--workspace", "ws_1"],
        "",
    )));
    until("ws_1 removed", &service, LIVE, || {
        detail(&service, "ws_1").is_none()
    });
    outputs.push_str(&http::get(service.health_addr, "/readyz").text());
    outputs.push_str(&http::get(service.health_addr, "/metrics").text());
    let mut service = service;
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    outputs.push_str(&service.logs());
    for i in 1..=2 {
        assert!(
            !outputs.contains(&token(i)) && !outputs.contains(&format!("AAtoken-{i}")),
            "a token in a log line, an answer or a command's output:\n{outputs}"
        );
    }
    println!("an added integration ran {picked_up:?} after the command");
}

/// Bots declared by a bots file into PostgreSQL: all run, a restart logs none in again,
/// and a database restart under the running fleet costs no Telegram connection and no
/// message (its commit waits, readiness says why, then it goes through).
pub fn a_fleet_on_postgres_restarts_without_a_login_and_outlives_a_database_restart(binary: &Path) {
    let (world, mut cluster, _sinks) = on_postgres(World::with_bots(3, false));
    let service = world.start(binary);
    assert_eq!(http::get(service.health_addr, "/readyz").json()["bots"], 3);
    stop(service);
    let before = world.stats();
    let service = world.start_logging_messages(binary);
    assert_eq!(http::get(service.health_addr, "/readyz").json()["bots"], 3);
    let after = world.stats();
    assert_eq!(after["logins"], before["logins"], "no new login");
    assert_eq!(
        after["handshakes"], before["handshakes"],
        "no new handshake"
    );

    cluster.stop();
    let sent = world
        .telegram
        .send_text("bot1", 5, "while the database is down")
        .unwrap();
    let line = format!("workspace ws_1: message {} in chat user 5", sent.message_id);
    until("readiness to say why", &service, WAIT, || {
        let ready = http::get(service.health_addr, "/readyz");
        ready.status == 503
            && ready.json()["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("cannot save the bots' state: PostgreSQL "))
    });
    let metrics = http::get(service.health_addr, "/metrics").text();
    assert!(
        metrics.lines().any(|l| l == "telegram_bots_store_up 0"),
        "{metrics}"
    );
    assert!(
        !service.logs().contains(&line),
        "handed on before it is saved"
    );

    cluster.start();
    until("the message, once saved", &service, WAIT, || {
        service.logs().contains(&line)
    });
    until("ready again", &service, WAIT, || {
        http::get(service.health_addr, "/readyz").status == 200
    });
    let metrics = http::get(service.health_addr, "/metrics").text();
    for i in 1..=3 {
        let reconnects = format!("telegram_bots_reconnects_total{{workspace_id=\"ws_{i}\"}} 0");
        assert!(metrics.lines().any(|l| l == reconnects), "{metrics}");
    }
    stop(service);
    // And the state written after the restart is there: the next start fetches nothing
    // again (the message is not logged twice).
    let service = world.start_logging_messages(binary);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!service.logs().contains(&line), "{}", service.logs());
    stop(service);
}

/// With the database down, the process starts, is alive and not ready, and says why;
/// once the database is up it becomes ready on its own.
pub fn a_start_waits_for_the_database(binary: &Path) {
    let (world, mut cluster, _sinks) = on_postgres(World::with_bots(1, false));
    cluster.stop();
    let env = world.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut service = Service::start(binary, &env);
    service.wait_healthy(WAIT);
    until("the reason", &service, WAIT, || {
        let ready = http::get(service.health_addr, "/readyz");
        ready.status == 503
            && ready.json()["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("starting: the store (PostgreSQL "))
    });
    assert_eq!(http::get(service.health_addr, "/healthz").status, 200);
    // The admin commands say so too, and fail.
    let list = world.cli(binary, &["integrations", "list"], "");
    assert_eq!(list.code, Some(1), "{list:?}");
    assert!(
        list.stderr.contains("PostgreSQL postgres://postgres")
            && list.stderr.contains("error connecting"),
        "{list:?}"
    );
    cluster.start();
    service.wait_ready(Duration::from_secs(60));
    assert_eq!(http::get(service.health_addr, "/readyz").json()["bots"], 1);
    stop(service);
}

fn stop(mut service: Service) {
    service.signal(libc::SIGTERM);
    let status = service.wait_exit(WAIT).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", service.logs());
}

/// The bots file declares the integrations: a workspace added to it starts, one taken
/// out of it stops (and is disabled in the store, not removed), while the service runs.
pub fn a_changed_bots_file_is_picked_up_live(binary: &Path) {
    let world = World::with_bots(2, false);
    let service = world.start(binary);
    assert!(detail(&service, "ws_1").is_some() && detail(&service, "ws_2").is_some());
    let declare = |workspaces: &[usize]| {
        let text: String = workspaces
            .iter()
            .map(|i| {
                format!(
                    "[[bot]]\nworkspace_id = \"ws_{i}\"\ntoken = \"{}\"\n",
                    token(*i)
                )
            })
            .collect();
        // Through a rename, as an editor or a config map update writes it.
        let tmp = world.dir.join("bots.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, world.dir.join("bots.toml")).unwrap();
    };
    world.telegram.add_bot(&token(3), "bot3").unwrap();
    declare(&[1, 3]);
    until("ws_3 running and ws_2 gone", &service, LIVE, || {
        detail(&service, "ws_3").is_some_and(|d| d["state"] == "running")
            && detail(&service, "ws_2").is_none()
    });
    let list = world.cli(binary, &["integrations", "list"], "");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("ws_2 ") && l.contains(" no ")),
        "disabled, not removed: {}",
        list.stdout
    );
    stop(service);
}
