//! End-to-end: a service binary running real bots against the fake DC, over real sockets.
//! Each runtime's `tests/e2e.rs` expands [`e2e_suite!`](crate::e2e_suite) with its binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fake_dc::FakeTelegram;
use crate::fake_dc::fault::{Fault, FaultKind};
use crate::fake_dc::world::{Content, NewMessage, VoiceForm};
use crate::http;
use crate::process::temp_dir;
use crate::service::Service;

pub const API_HASH: &str = "0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);
/// The level at which each message handed on is logged.
pub const MESSAGE_LINES: (&str, &str) = ("LOG_LEVEL", "debug");

#[macro_export]
macro_rules! e2e_suite {
    ($binary:expr) => {
        $crate::e2e_suite!(@tests $binary;
            three_bots_run_and_a_rejected_token_fails, messages_reach_the_right_bot,
            dropped_connections_come_back, a_restart_reuses_keys_and_logins,
            a_panicking_bot_restarts_alone, a_fleet_of_300_restarts_without_a_login,
            supergroup_messages_arrive_once_and_after_a_restart,
            json_logs_carry_fields_and_no_message_at_info, the_start_logs_its_progress);
    };
    (@tests $binary:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::e2e::$name(::std::path::Path::new($binary));
            }
        )*
    };
}

/// The token of bot`i` of a [`World`].
pub fn token(i: usize) -> String {
    format!("{}:AAtoken-{i}", 7_000_000 + i)
}

/// What an admin command printed, and its exit code.
#[derive(Debug)]
pub struct Cli {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A fake DC set with bots bot1..bot3, and the files a service needs to use it.
#[derive(Debug)]
pub struct World {
    pub telegram: FakeTelegram,
    pub dir: PathBuf,
    /// Variables added to the service's environment (a PostgreSQL store, say).
    pub extra_env: Vec<(String, String)>,
}

impl World {
    /// bot1..bot3, and a token Telegram rejects.
    pub fn new() -> World {
        World::with_bots(3, true)
    }

    /// bot1..bot`n` (workspaces ws_1..), and `ws_revoked` when `revoked`.
    pub fn with_bots(n: usize, revoked: bool) -> World {
        let world = World::bots_only(n);
        let mut bots: String = (1..=n)
            .map(|i| {
                format!(
                    "[[bot]]\nworkspace_id = \"ws_{i}\"\ntoken = \"{}\"\n\n",
                    token(i)
                )
            })
            .collect();
        if revoked {
            bots.push_str(
                "[[bot]]\nworkspace_id = \"ws_revoked\"\ntoken = \"6999999:AAnot-a-bot\"\n",
            );
        }
        std::fs::write(world.dir.join("bots.toml"), bots).unwrap();
        world
    }

    /// bot1..bot`n` known to Telegram, and no bots file: the store alone says which bots
    /// run.
    pub fn bots_only(n: usize) -> World {
        let telegram = FakeTelegram::start(2).expect("start the fake DCs");
        for i in 1..=n {
            telegram.add_bot(&token(i), &format!("bot{i}")).unwrap();
        }
        let dir = temp_dir("telegram-bots-e2e");
        std::fs::write(dir.join("dc.pem"), telegram.rsa_public_key_pem()).unwrap();
        World {
            telegram,
            dir,
            extra_env: Vec::new(),
        }
    }

    /// The service's environment on this world: the bots file, the embedded store in
    /// `data/`, the fake DC.
    pub fn env(&self) -> Vec<(String, String)> {
        let dcs: Vec<String> = self
            .telegram
            .dcs()
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect();
        let dir = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        let mut env = vec![
            ("DATA_DIR", dir("data")),
            ("TELEGRAM_RSA_PUBLIC_KEY", dir("dc.pem")),
            ("TELEGRAM_DC_ADDRS", dcs.join(",")),
            ("TELEGRAM_API_ID", "12345".into()),
            ("TELEGRAM_API_HASH", API_HASH.into()),
        ];
        if self.dir.join("bots.toml").exists() {
            env.push(("BOTS_FILE", dir("bots.toml")));
        }
        let mut env: Vec<(String, String)> =
            env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts `binary` on this world, with `extra` variables, and waits until it is ready.
    pub fn start_with(&self, binary: &Path, extra: &[(&str, &str)]) -> Service {
        let env = self.env();
        let mut env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend_from_slice(extra);
        let mut service = Service::start(binary, &env);
        service.wait_ready(WAIT);
        service
    }

    /// Starts `binary` on this world and waits until it is ready.
    pub fn start(&self, binary: &Path) -> Service {
        self.start_with(binary, &[])
    }

    /// The same at debug level, where each message handed on has its log line ("workspace
    /// ws_1: message 5 in chat user 42"): info has a line per state change, never one per
    /// message.
    pub fn start_logging_messages(&self, binary: &Path) -> Service {
        self.start_with(binary, &[MESSAGE_LINES])
    }

    /// Runs an admin command of `binary` on this world's store, with `stdin`.
    pub fn cli(&self, binary: &Path, args: &[&str], stdin: &str) -> Cli {
        use std::io::Write as _;
        let mut child = std::process::Command::new(binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the admin command");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Cli {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The embedded store's file, as bytes (to look for secrets in clear text).
    pub fn store_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("data"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("telegram-bots.sqlite3")
            {
                bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
            }
        }
        bytes
    }

    pub fn stats(&self) -> serde_json::Value {
        self.telegram.stats()
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn until(what: &str, service: &Service, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            service.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a text from user `chat` to `bot` and waits for `ws` to log it.
fn message_arrives(world: &World, service: &Service, bot: &str, ws: &str, chat: i64) {
    let sent = world.telegram.send_text(bot, chat, "hello").unwrap();
    let line = format!(
        "workspace {ws}: message {} in chat user {chat}",
        sent.message_id
    );
    until(&format!("{line:?} in the log"), service, || {
        service.logs().contains(&line)
    });
}

/// Telegram saw no login and no handshake since `before` (its stats then), nor a key used
/// from two places.
fn no_new_logins(world: &World, before: &serde_json::Value) {
    let stats = world.stats();
    assert_eq!(stats["logins"], before["logins"], "no new login");
    assert_eq!(
        stats["handshakes"], before["handshakes"],
        "no new handshake"
    );
    assert_eq!(stats["auth_key_conflicts"], 0);
}

fn stop(mut service: Service) {
    service.signal(libc::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", service.logs());
}

pub fn three_bots_run_and_a_rejected_token_fails(binary: &Path) {
    let world = World::new();
    let service = world.start(binary);
    let ready = http::get(service.health_addr, "/readyz").json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["bots"], 3);
    let details = ready["details"].as_array().unwrap();
    let by_ws = |ws: &str| {
        details
            .iter()
            .find(|d| d["workspace_id"] == ws)
            .unwrap()
            .clone()
    };
    for i in 1..=3 {
        let bot = by_ws(&format!("ws_{i}"));
        assert_eq!(
            (bot["state"].as_str(), bot["username"].as_str()),
            (Some("running"), Some(format!("bot{i}").as_str()))
        );
    }
    let revoked = by_ws("ws_revoked");
    assert_eq!(revoked["state"], "failed");
    assert!(
        revoked["last_error"]
            .as_str()
            .unwrap()
            .contains("ACCESS_TOKEN_INVALID")
    );

    let metrics = http::get(service.health_addr, "/metrics").text();
    for line in [
        "telegram_bots_total 3",
        "telegram_bots_in_state{state=\"failed\"} 1",
        "telegram_bots_info{workspace_id=\"ws_2\",username=\"bot2\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    crate::conformance::promtool_check(&metrics);
    let logs = service.logs();
    assert!(
        !logs.contains("AAtoken") && !logs.contains("AAnot-a-bot"),
        "a token in the log:\n{logs}"
    );
    assert_eq!(world.stats()["auth_key_conflicts"], 0);
    stop(service);
}

pub fn messages_reach_the_right_bot(binary: &Path) {
    let world = World::new();
    let service = world.start_logging_messages(binary);
    let sent = world
        .telegram
        .send_message(NewMessage {
            bot: "bot2".into(),
            chat_id: 42,
            from_user_id: 42,
            content: Content::Voice {
                size: 9000,
                duration: 4,
                mime_type: "audio/ogg".into(),
                seed: 5,
                bytes: None,
                dc: None,
                form: VoiceForm::Voice,
            },
        })
        .unwrap();
    let line = format!(
        "workspace ws_2: voice message {} in chat user 42 (9000 bytes, 4 s)",
        sent.message_id
    );
    until("the voice message in the log", &service, || {
        service.logs().contains(&line)
    });
    world.telegram.send_text("bot3", 7, "hi").unwrap();
    until("the text message in the log", &service, || {
        service
            .logs()
            .contains("workspace ws_3: message 1 in chat user 7")
    });
    // The text message came after the voice one: by now a copy would have shown too.
    let voices = service.logs().matches("(9000 bytes, 4 s)").count();
    assert_eq!(
        voices,
        1,
        "only bot2 got the voice message:\n{}",
        service.logs()
    );
    // The embedded store's defaults: the audio in DATA_DIR/voice under its object key,
    // the event in DATA_DIR/events.jsonl exactly as it would be sent.
    until("the voice message stored and announced", &service, || {
        service.logs().contains("and announced")
    });
    let data = world.dir.join("data");
    let events = std::fs::read_to_string(data.join("events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["name"], "telegram/voice.received");
    assert_eq!(
        event["id"],
        format!("tg-voice:ws_2:user:42:{}", sent.message_id)
    );
    assert_eq!(event["data"]["size"], 9000);
    let key = event["data"]["s3"]["key"].as_str().unwrap();
    assert!(
        key.starts_with("ws_2/") && key.ends_with(&format!("/user-42/{}.ogg", sent.message_id))
    );
    let audio = std::fs::read(data.join("voice").join(key)).unwrap();
    assert_eq!(
        Some(crate::fake_dc::messages::hex(
            &crate::fake_dc::crypto::sha256(&[&audio])
        )),
        sent.sha256,
        "the very bytes Telegram holds"
    );
    let metrics = http::get(service.health_addr, "/metrics").text();
    assert!(
        metrics.contains("telegram_bots_messages_received_total{workspace_id=\"ws_2\"} 1"),
        "{metrics}"
    );
    for line in [
        "telegram_bots_voice_messages_total{outcome=\"done\"} 1",
        "telegram_bots_voice_downloaded_bytes_total 9000",
        "telegram_bots_voice_latency_seconds_count 1",
        "telegram_bots_voice_in_flight 0",
        "# TYPE telegram_bots_voice_outbox_pending gauge",
        "# TYPE telegram_bots_voice_latency_seconds histogram",
    ] {
        assert!(metrics.contains(line), "no {line}:\n{metrics}");
    }
    stop(service);
}

pub fn dropped_connections_come_back(binary: &Path) {
    let world = World::new();
    let service = world.start_logging_messages(binary);
    world
        .telegram
        .add_fault(Fault::new(FaultKind::DropConnections))
        .unwrap();
    until("three reconnects", &service, || {
        let metrics = http::get(service.health_addr, "/metrics").text();
        (1..=3).all(|i| {
            metrics.contains(&format!(
                "telegram_bots_reconnects_total{{workspace_id=\"ws_{i}\"}} 1"
            ))
        })
    });
    until("all bots running again", &service, || {
        let ready = http::get(service.health_addr, "/readyz").json();
        ready["bots"] == 3
            && world.stats()["live_connections"]
                .as_object()
                .unwrap()
                .values()
                .all(|n| n == 1)
    });
    // And they still receive messages.
    message_arrives(&world, &service, "bot1", "ws_1", 8);
    assert_eq!(
        world.stats()["logins"]["bot1"],
        1,
        "a reconnect is no new login"
    );
    assert_eq!(world.stats()["auth_key_conflicts"], 0);
    stop(service);
}

pub fn a_restart_reuses_keys_and_logins(binary: &Path) {
    let world = World::new();
    let service = world.start(binary);
    stop(service);
    let before = world.stats();
    // bot1..bot3 each logged in once; the rejected token made a handshake and no login.
    assert_eq!(before["handshakes"], 4);
    let list = world.cli(binary, &["integrations", "list"], "");
    assert_eq!(list.code, Some(0), "{list:?}");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("ws_1 ") && l.contains("@bot1") && l.contains("logged in")),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("AAtoken"), "{}", list.stdout);

    // A message while the service is down arrives after the restart (getDifference).
    world.telegram.send_text("bot1", 9, "while away").unwrap();
    let service = world.start_logging_messages(binary);
    until("the missed message", &service, || {
        service
            .logs()
            .contains("workspace ws_1: message 1 in chat user 9")
    });
    no_new_logins(&world, &before);
    stop(service);
}

/// grammers panics on some hostile input (here a bare `future_salt`): the bot it happens
/// in restarts from its last saved state after a backoff, with its own reason; the
/// process and the other bots go on.
pub fn a_panicking_bot_restarts_alone(binary: &Path) {
    let world = World::new();
    let service = world.start_logging_messages(binary);
    // What the restart starts from: the login saved in the store.
    until("bot2's login saved", &service, || {
        let list = world.cli(binary, &["integrations", "list"], "");
        list.stdout
            .lines()
            .any(|l| l.starts_with("ws_2 ") && l.contains("logged in"))
    });
    world
        .telegram
        .add_fault(
            Fault::new(FaultKind::BareFutureSalt)
                .for_bot("bot2")
                .for_method("users.getUsers"),
        )
        .unwrap();
    world
        .telegram
        .add_fault(Fault::new(FaultKind::DropConnections).for_bot("bot2"))
        .unwrap();
    until("bot2's restart", &service, || {
        let metrics = http::get(service.health_addr, "/metrics").text();
        metrics
            .lines()
            .any(|l| l == "telegram_bots_restarts_total 1")
    });
    let ready = http::get(service.health_addr, "/readyz");
    assert_eq!(
        ready.status, 200,
        "one bot's trouble leaves the process ready"
    );
    assert_eq!(http::get(service.health_addr, "/healthz").status, 200);
    assert!(
        service
            .logs()
            .contains("workspace ws_2: internal error (a panic")
    );
    message_arrives(&world, &service, "bot1", "ws_1", 3);
    // The fault was one-off: bot2 comes back, from its saved session (no new login).
    until("bot2 running again", &service, || {
        let ready = http::get(service.health_addr, "/readyz").json();
        ready["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["workspace_id"] == "ws_2" && d["state"] == "running")
    });
    message_arrives(&world, &service, "bot2", "ws_2", 4);
    assert_eq!(
        world.stats()["logins"]["bot2"],
        1,
        "a restart is no new login:\n{}",
        service.logs()
    );
    stop(service);
}

/// Three hundred bots: all run; after a restart every one is back without a login or a
/// handshake; one that Telegram keeps refusing leaves the process ready and shows in its
/// details.
pub fn a_fleet_of_300_restarts_without_a_login(binary: &Path) {
    let world = World::with_bots(300, false);
    let service = world.start(binary);
    let ready = http::get(service.health_addr, "/readyz").json();
    assert_eq!(ready["bots"], 300, "all running once ready");
    stop(service);
    let before = world.stats();
    assert_eq!(before["handshakes"], 300);

    world
        .telegram
        .add_fault(Fault {
            seconds: 3600,
            times: 1000,
            ..Fault::new(FaultKind::FloodWait)
                .for_bot("bot7")
                .for_method("updates.getDifference")
        })
        .unwrap();
    let service = world.start(binary);
    let ready = http::get(service.health_addr, "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let ready = ready.json();
    assert_eq!(ready["bots"], 299);
    let ws_7 = ready["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["workspace_id"] == "ws_7")
        .unwrap()
        .clone();
    assert_eq!(ws_7["state"], "backoff", "{ws_7}");
    assert!(
        ws_7["last_error"]
            .as_str()
            .unwrap()
            .contains("FLOOD_WAIT_3600"),
        "{ws_7}"
    );
    no_new_logins(&world, &before);
    stop(service);
}

/// A supergroup has its own pts: a message Telegram pushes twice is handed on once, and
/// one sent while the service is down arrives after the restart
/// (`updates.getChannelDifference`).
pub fn supergroup_messages_arrive_once_and_after_a_restart(binary: &Path) {
    let world = World::with_bots(1, false);
    let group = world.telegram.add_channel("team", true, &["bot1"]).unwrap();
    let service = world.start_logging_messages(binary);
    world
        .telegram
        .add_fault(Fault::new(FaultKind::DuplicateUpdate).for_bot("bot1"))
        .unwrap();
    let sent = world.telegram.send_group_text(group, 42, "once").unwrap();
    let line = |id: i32| format!("workspace ws_1: message {id} in chat channel {group}");
    until("the group message", &service, || {
        service.logs().contains(&line(sent.message_id))
    });
    // A private text after it: by the time it is in, a copy of the group one would be.
    message_arrives(&world, &service, "bot1", "ws_1", 7);
    assert_eq!(
        service.logs().matches(&line(sent.message_id)).count(),
        1,
        "{}",
        service.logs()
    );
    stop(service);
    let away = world
        .telegram
        .send_group_text(group, 43, "while away")
        .unwrap();
    let service = world.start_logging_messages(binary);
    until("the group message sent while away", &service, || {
        service.logs().contains(&line(away.message_id))
    });
    stop(service);
}

/// Every line of `logs` as a JSON object; a line that is not one fails the test.
fn json_lines(logs: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    logs.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(object)) => object,
            other => panic!("a log line that is no JSON object ({other:?}): {line:?}\n{logs}"),
        })
        .collect()
}

/// `LOG_FORMAT=json`: every line is one JSON object with `timestamp`, `level` and
/// `message`; a bot's state change carries `workspace_id` and `state` as keys; each
/// message handed on has a line at debug with its id as a field, and none at info; no
/// token and no API hash anywhere.
pub fn json_logs_carry_fields_and_no_message_at_info(binary: &Path) {
    let world = World::new();
    let mut service = world.start_with(binary, &[("LOG_FORMAT", "json"), ("LOG_LEVEL", "debug")]);
    let mut sent: Vec<(&str, i32)> = Vec::new();
    for (bot, ws, chat) in [
        ("bot1", "ws_1", 11),
        ("bot1", "ws_1", 12),
        ("bot2", "ws_2", 13),
    ] {
        let id = world
            .telegram
            .send_text(bot, chat, "hello")
            .unwrap()
            .message_id;
        sent.push((ws, id));
    }
    let voice = world
        .telegram
        .send_message(NewMessage {
            bot: "bot3".into(),
            chat_id: 14,
            from_user_id: 14,
            content: Content::Voice {
                size: 5000,
                duration: 2,
                mime_type: "audio/ogg".into(),
                seed: 9,
                bytes: None,
                dc: None,
                form: VoiceForm::Voice,
            },
        })
        .unwrap();
    sent.push(("ws_3", voice.message_id));
    let has = |lines: &[serde_json::Map<String, serde_json::Value>], ws: &str, id: i32| {
        lines.iter().any(|l| {
            l.get("level").is_some_and(|v| v == "DEBUG")
                && l.get("workspace_id").is_some_and(|v| v == ws)
                && l.get("message_id").is_some_and(|v| v == id)
        })
    };
    until(
        "every message and the voice message stored, at debug",
        &service,
        || {
            let lines = json_lines(&service.logs());
            sent.iter().all(|(ws, id)| has(&lines, ws, *id))
                && lines.iter().any(|l| {
                    l.get("object_key").is_some()
                        && l.get("message_id").is_some_and(|v| v == voice.message_id)
                })
        },
    );
    // A bot whose code panics (grammers on a bare future_salt): the panic is a JSON line
    // too, not the default hook's text.
    for fault in [
        Fault::new(FaultKind::BareFutureSalt)
            .for_bot("bot2")
            .for_method("users.getUsers"),
        Fault::new(FaultKind::DropConnections).for_bot("bot2"),
    ] {
        world.telegram.add_fault(fault).unwrap();
    }
    until("bot2's panic logged", &service, || {
        let lines = json_lines(&service.logs());
        let panicked = |l: &serde_json::Map<String, serde_json::Value>| {
            l["level"] == "ERROR" && l.get("workspace_id").is_some_and(|v| v == "ws_2")
        };
        lines.iter().any(|l| l.contains_key("panic")) && lines.iter().any(panicked)
    });
    service.signal(libc::SIGTERM);
    let status = service.wait_exit(Duration::from_secs(10));
    let logs = service.logs();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{logs}");

    let lines = json_lines(&logs);
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(
                line.get(key).is_some_and(serde_json::Value::is_string),
                "no {key} in {line:?}"
            );
        }
        assert!(
            !line.contains_key("target") && !line.contains_key("spans"),
            "{line:?}"
        );
    }
    let with = |level: &str, fields: &[(&str, &str)]| {
        lines.iter().any(|l| {
            l["level"] == level
                && fields
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
    };
    assert!(
        with(
            "INFO",
            &[
                ("workspace_id", "ws_1"),
                ("state", "running"),
                ("message", "workspace ws_1: running")
            ]
        ),
        "{logs}"
    );
    assert!(
        with(
            "WARN",
            &[("workspace_id", "ws_revoked"), ("state", "failed")]
        ),
        "{logs}"
    );
    let revoked = lines
        .iter()
        .find(|l| l.get("workspace_id").is_some_and(|v| v == "ws_revoked") && l["level"] == "WARN")
        .unwrap();
    assert!(
        revoked["reason"]
            .as_str()
            .unwrap()
            .contains("ACCESS_TOKEN_INVALID"),
        "{revoked:?}"
    );
    // The start's last progress report, its counts as fields.
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l.get("total").is_some_and(|v| v == 4)
            && l.get("running").is_some_and(|v| v == 3)
            && l.get("failed").is_some_and(|v| v == 1)
            && l.get("elapsed_ms").is_some_and(serde_json::Value::is_u64)),
        "{logs}"
    );
    // A line per state change at info, never one per message.
    let per_message: Vec<_> = lines
        .iter()
        .filter(|l| l["level"] == "INFO")
        .filter(|l| {
            l.contains_key("message_id") || l["message"].as_str().unwrap().contains(" message ")
        })
        .collect();
    assert!(
        per_message.is_empty(),
        "per-message lines at info: {per_message:?}"
    );
    for secret in ["AAtoken", "AAnot-a-bot", API_HASH] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
}

/// While bots start, the log says how far they got; when every bot has had its first
/// try, one last line with the time it took. The text format keeps fields out of its
/// lines.
pub fn the_start_logs_its_progress(binary: &Path) {
    let world = World::new();
    let service = world.start(binary);
    let last = "started: 3/4 bots running, 1 failed, in ";
    until("the start's last progress line", &service, || {
        service.logs().contains(last)
    });
    let ready = http::get(service.health_addr, "/readyz").json();
    assert!(ready.get("progress").is_none(), "started: {ready}");
    let logs = service.logs();
    assert_eq!(logs.matches(last).count(), 1, "{logs}");
    let line = logs.lines().find(|l| l.contains(last)).unwrap();
    assert!(
        line.contains(" INFO started: ") && line.ends_with(" s"),
        "{line}"
    );
    assert!(
        logs.lines()
            .any(|l| l.ends_with(" INFO workspace ws_1: running")),
        "{logs}"
    );
    assert!(
        !logs.contains("workspace_id="),
        "fields in the text format:\n{logs}"
    );
    stop(service);
}
