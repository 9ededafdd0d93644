//! The `fake-telegram` binary and its JSON control API, as another process uses them.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Running, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-telegram"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start fake-telegram");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (
        Running(child),
        serde_json::from_str(&line).expect("one JSON line when ready"),
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let mut r = agent()
        .post(format!("{base}{path}"))
        .send_json(&body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap())
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let mut r = agent().get(format!("{base}{path}")).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap())
}

#[test]
fn ready_line_and_control_api() {
    // Two consecutive free ports: DC 2 listens on the port after DC 1's.
    let port = (0..100)
        .find_map(|_| {
            let first = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let port = first.local_addr().ok()?.port();
            std::net::TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
            Some(port)
        })
        .expect("two consecutive free ports");
    let (_dc, info) = start(&["--listen", &format!("127.0.0.1:{port}"), "--dcs", "2"]);
    assert_eq!(info["dcs"]["1"], format!("127.0.0.1:{port}"));
    assert_eq!(info["dcs"]["2"], format!("127.0.0.1:{}", port + 1));
    assert!(
        info["rsa_public_key_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN RSA PUBLIC KEY-----\n")
    );
    assert_eq!(
        (info["api_id"].as_i64(), info["api_hash"].as_str()),
        (Some(12345), Some("0123456789abcdef0123456789abcdef")),
        "the test app"
    );
    let base = info["control"].as_str().unwrap().to_owned();
    assert_eq!(get(&base, "/info").1, info);

    let (status, bot) = post(
        &base,
        "/bots",
        json!({"token": "5000001:AAa", "username": "bot1"}),
    );
    assert_eq!((status, bot["user_id"].as_i64()), (200, Some(5_000_001)));
    let (status, err) = post(
        &base,
        "/bots",
        json!({"token": "5000001:AAa", "username": "bot1"}),
    );
    assert_eq!(status, 400, "duplicate bot: {err}");
    let (status, err) = post(
        &base,
        "/bots",
        json!({"token": "5000001:AAother", "username": "bot9"}),
    );
    assert_eq!(status, 400, "a taken user id: {err}");
    assert!(err["error"].as_str().unwrap().contains("5000001"), "{err}");

    let (status, sent) = post(
        &base,
        "/messages",
        json!({"bot": "bot1", "chat_id": 77, "from_user_id": 77, "voice": {"size": 10000, "duration": 2, "mime_type": "audio/ogg"}}),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (sent["message_id"].as_i64(), sent["pts"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(sent["sha256"].as_str().unwrap().len(), 64);
    let (_, text) = post(
        &base,
        "/messages",
        json!({"bot": "bot1", "chat_id": 5, "from_user_id": 77, "text": "hi"}),
    );
    assert_eq!(
        (text["pts"].as_i64(), text["sha256"].is_null()),
        (Some(3), true)
    );

    for (path, body) in [
        (
            "/messages",
            json!({"bot": "nobody", "from_user_id": 1, "text": "x"}),
        ),
        ("/messages", json!({"bot": "bot1", "from_user_id": 1})),
        (
            "/messages",
            json!({"bot": "bot1", "from_user_id": 1, "text": "x", "voice": {"size": 1}}),
        ),
        (
            "/messages",
            json!({"bot": "bot1", "chat_id": -5, "from_user_id": 1, "text": "x"}),
        ),
        ("/faults", json!({"kind": "earthquake"})),
        (
            "/faults",
            json!({"kind": "too_many_connections", "bot": "bot1"}),
        ),
        ("/faults", json!({"kind": "flood_wait", "seconds": -1})),
        (
            "/bots",
            json!({"token": "1:x", "username": "b", "dc": 9_000_000_000i64}),
        ),
        ("/faults", json!({"kind": "flood_wait", "bot": "nobody"})),
        ("/auth_keys", json!({"auth_key_hex": "abcd"})),
    ] {
        let (status, body) = post(&base, path, body);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, _) = post(
        &base,
        "/faults",
        json!({"kind": "flood_wait", "bot": "bot1", "seconds": 5}),
    );
    assert_eq!(status, 200);
    let (status, key) = post(
        &base,
        "/auth_keys",
        json!({"dc": 2, "auth_key_hex": "ab".repeat(256), "bot": "bot1"}),
    );
    assert_eq!(status, 200);
    assert!(key["key_id"].is_i64());

    // Messages sent together, deletions, supergroups and channels.
    let (status, batch) = post(
        &base,
        "/messages",
        json!([{"bot": "bot1", "from_user_id": 77, "text": "a"}, {"bot": "bot1", "from_user_id": 77, "text": "b"}]),
    );
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch[1]["pts"].as_i64(), Some(5));
    let (status, deleted) = post(
        &base,
        "/deletions",
        json!({"bot": "bot1", "message_ids": [3, 4]}),
    );
    assert_eq!((status, deleted["pts"].as_i64()), (200, Some(7)));
    let (status, group) = post(
        &base,
        "/channels",
        json!({"title": "group", "bots": ["bot1"]}),
    );
    assert_eq!(status, 200, "{group}");
    let (status, sent) = post(
        &base,
        "/messages",
        json!({"channel_id": group["channel_id"], "from_user_id": 77, "text": "hi"}),
    );
    assert_eq!((status, sent["pts"].as_i64()), (200, Some(2)), "{sent}");
    let (status, channel) = post(
        &base,
        "/channels",
        json!({"title": "news", "megagroup": false, "bots": ["bot1"]}),
    );
    assert_eq!(status, 200);
    for (path, body) in [
        (
            "/messages",
            json!({"channel_id": channel["channel_id"], "from_user_id": 77, "text": "a post has no sender"}),
        ),
        (
            "/messages",
            json!({"channel_id": group["channel_id"], "bot": "bot1", "from_user_id": 77, "text": "x"}),
        ),
        ("/channels", json!({"title": "x", "bots": ["nobody"]})),
        ("/deletions", json!({"bot": "bot1", "message_ids": []})),
        ("/apps", json!({"api_id": 1, "api_hash": "short"})),
        ("/settings", json!({"idle_timeout_ms": 0})),
        ("/settings", json!({"no_such_setting": 1})),
    ] {
        let (status, body) = post(&base, path, body);
        assert_eq!(status, 400, "{path}: {body}");
    }

    // Applications and settings.
    let (status, _) = post(
        &base,
        "/apps",
        json!({"api_id": 777, "api_hash": "fedcba9876543210fedcba9876543210"}),
    );
    assert_eq!(status, 200);
    let (status, settings) = post(&base, "/settings", json!({"idle_timeout_ms": 750}));
    assert_eq!(
        (status, settings["idle_timeout_ms"].as_i64()),
        (200, Some(750))
    );
    assert_eq!(get(&base, "/settings").1, settings);

    let (status, stats) = get(&base, "/stats");
    assert_eq!(status, 200);
    for field in [
        "logins",
        "handshakes",
        "connections",
        "auth_key_conflicts",
        "files_served",
    ] {
        assert!(!stats[field].is_null(), "no {field} in {stats}");
    }
    assert_eq!(stats["logins"]["bot1"], 0);
    assert_eq!(get(&base, "/nope").0, 404);
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-telegram"))
        .args(["--dcs", "9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dcs"));
}
