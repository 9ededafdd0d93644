//! Smoke tests of the real parts every later test leans on.

use std::time::Duration;

use serde_json::json;
use telegram_bots_tests::inngest::{Failure, InngestReceiver};
use telegram_bots_tests::postgres::TestDb;
use telegram_bots_tests::s3::TestS3;

#[test]
fn postgres_gives_each_test_its_own_database() {
    let a = TestDb::new();
    let b = TestDb::new();
    assert_ne!(a.name(), b.name());
    let mut ca = a.connect();
    ca.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)")
        .unwrap();
    let v: i32 = ca.query_one("SELECT v FROM t", &[]).unwrap().get(0);
    assert_eq!(v, 42);
    let mut cb = b.connect();
    let err = cb.query_one("SELECT v FROM t", &[]).unwrap_err();
    let message = telegram_bots_tests::postgres::describe(&err);
    assert!(message.contains("does not exist"), "{message}");
    let version: String = cb.query_one("SHOW server_version", &[]).unwrap().get(0);
    assert!(!version.is_empty());

    let name = a.name().to_owned();
    drop(ca);
    drop(a);
    let exists: bool = cb
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert!(!exists, "database {name} outlived its test");
}

#[test]
fn s3_stores_and_returns_objects_in_a_bucket_of_its_own() {
    let s3 = TestS3::start("voice-test");
    let bucket = s3.bucket();
    let audio: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let put = bucket
        .put_object("ws_1/2026/11/26/1-2.ogg", &audio)
        .unwrap();
    assert_eq!(put.status_code(), 200);
    let got = bucket.get_object("ws_1/2026/11/26/1-2.ogg").unwrap();
    assert_eq!(got.status_code(), 200);
    assert_eq!(got.as_slice(), audio.as_slice());
    let missing = bucket.get_object("nope.ogg");
    assert!(
        matches!(&missing, Err(e) if e.to_string().contains("404"))
            || matches!(&missing, Ok(r) if r.status_code() == 404),
        "{missing:?}"
    );

    let other = TestS3::start("voice-test");
    assert_ne!(other.endpoint(), s3.endpoint());
    let listed = other.bucket().list(String::new(), None).unwrap();
    assert!(
        listed.iter().all(|page| page.contents.is_empty()),
        "{listed:?}"
    );
}

fn send(receiver: &InngestReceiver, key: &str, body: &str) -> (u16, serde_json::Value) {
    let url = format!("{}/e/{key}", receiver.base_url());
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut response = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

#[test]
fn inngest_receiver_follows_the_event_api() {
    let receiver = InngestReceiver::start("test-key");
    let event = json!({
        "name": "telegram/voice.received",
        "id": "tg-voice:int_1:100:7",
        "ts": 1_764_132_000_000i64,
        "data": {"workspace_id": "ws_1", "s3": {"bucket": "voice", "key": "k"}},
    });
    let (status, body) = send(&receiver, "test-key", &event.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["ids"].as_array().unwrap().len(), 1);

    // A batch, with the first event's id again: stored, flagged as a duplicate.
    let batch = json!([event, {"name": "x/other", "data": {}}]);
    let (status, body) = send(&receiver, "test-key", &batch.to_string());
    assert_eq!((status, body["ids"].as_array().unwrap().len()), (200, 2));
    let events = receiver.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].name, "telegram/voice.received");
    assert_eq!(events[0].ts, Some(1_764_132_000_000));
    assert_eq!(events[0].data["s3"]["bucket"], "voice");
    assert_eq!(
        events.iter().map(|e| e.duplicate).collect::<Vec<_>>(),
        [false, true, false]
    );

    assert_eq!(send(&receiver, "wrong-key", &event.to_string()).0, 401);
    for bad in [
        "not json",
        "42",
        r#"{"data": {}}"#,
        r#"{"name": "", "data": {}}"#,
        r#"{"name": "a"}"#,
        r#"{"name": "a", "data": [1]}"#,
        r#"{"name": "a", "data": {}, "ts": "yesterday"}"#,
        r#"[{"name": "a", "data": {}}, {"name": 5, "data": {}}]"#,
    ] {
        let (status, body) = send(&receiver, "test-key", bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["status"], 400);
        assert!(body["error"].is_string());
    }
    let huge = json!({"name": "a", "data": {"blob": "x".repeat(600 * 1024)}});
    assert_eq!(send(&receiver, "test-key", &huge.to_string()).0, 400);
    assert_eq!(receiver.events().len(), 3, "refused bodies record nothing");

    receiver.fail_next(Failure::Status(503));
    assert_eq!(send(&receiver, "test-key", &event.to_string()).0, 503);
    receiver.fail_next(Failure::Drop);
    let url = format!("{}/e/test-key", receiver.base_url());
    assert!(ureq::post(&url).send(event.to_string()).is_err());
    assert_eq!(send(&receiver, "test-key", &event.to_string()).0, 200);
    assert_eq!(receiver.events().len(), 4);
    assert_eq!(receiver.requests(), 15);

    let health = ureq::get(format!("{}/health", receiver.base_url()))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
