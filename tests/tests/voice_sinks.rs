//! The sinks of voice messages against the real parts: S3 (`s3s-fs`), the Inngest
//! receiver, servers that fail in scripted ways, and the local files of the embedded
//! mode; and the worker pool carrying a batch through them, as the service does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use telegram_bots_adapters::voice_sink::{
    EventSink, InngestSink, ObjectLocation, ObjectStore, S3Settings, S3Store, SinkDone, SinkError,
    SinkPool, SinkTask, Sinks, pool,
};
use telegram_bots_core::config::{Config, DEFAULT_VOICE_SINK_THREADS};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::updates::{Peer, VoiceFile};
use telegram_bots_core::voice::{EVENT_NAME, VoiceJob, VoiceKey};
use telegram_bots_tests::inngest::{Failure, InngestReceiver};
use telegram_bots_tests::net::wait_for_port;
use telegram_bots_tests::process::{die_with_parent, kill, temp_dir};
use telegram_bots_tests::s3::{self as test_s3, TestS3};

const EVENT_KEY: &str = "test-event-key-5f2a";

fn job(workspace: &str, chat: Peer, message_id: i32, size: usize) -> VoiceJob {
    VoiceJob {
        key: VoiceKey {
            workspace_id: workspace.into(),
            chat,
            message_id,
        },
        from_user_id: Some(789),
        date: 1_795_651_200 + message_id, // 2026-11-26
        file: VoiceFile {
            kind: telegram_bots_core::updates::MediaKind::Voice,
            document_id: 1,
            access_hash: 2,
            file_reference: vec![3],
            dc_id: 2,
            size: size as i64,
            mime_type: "audio/ogg".into(),
            duration_seconds: 7,
        },
        received_at_ms: 0,
        attempts: 0,
    }
}

/// `len` bytes that differ from message to message.
fn audio(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn s3_settings(s3: &TestS3) -> S3Settings {
    S3Settings {
        bucket: s3.bucket_name().to_owned(),
        region: test_s3::REGION.to_owned(),
        endpoint: Some(s3.endpoint()),
        access_key_id: test_s3::ACCESS_KEY.to_owned(),
        secret_access_key: Secret::new(test_s3::SECRET_KEY.to_owned()),
        timeout: S3Settings::TIMEOUT,
    }
}

fn inngest(base_url: &str, key: &str) -> InngestSink {
    InngestSink::new(base_url, &Secret::new(key.to_owned()), InngestSink::TIMEOUT)
}

fn transient(result: Result<impl std::fmt::Debug, SinkError>) -> (Option<Duration>, String) {
    match result {
        Err(SinkError::Transient {
            retry_after,
            reason,
        }) => (retry_after, reason),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn permanent(result: Result<impl std::fmt::Debug, SinkError>) -> String {
    match result {
        Err(SinkError::Permanent { reason }) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- S3

#[test]
fn s3_holds_the_audio_with_its_content_type_and_metadata() {
    let s3 = TestS3::start("voice");
    let store = S3Store::new(&s3_settings(&s3)).unwrap();
    let bucket = s3.bucket();
    for (n, (chat, size)) in [(Peer::User(42), 4_000), (Peer::Channel(555), 1_500_000)]
        .into_iter()
        .enumerate()
    {
        let job = job("ws_1", chat, 456 + n as i32, size);
        let bytes = audio(n as u32, size);
        let location = store.put(&job, &bytes).unwrap();
        assert_eq!(
            location,
            ObjectLocation::of("voice".into(), job.object_key(), &bytes)
        );
        let stored = bucket.get_object(&location.key).unwrap();
        assert_eq!(stored.status_code(), 200);
        assert_eq!(sha256(stored.bytes()), sha256(&bytes), "{}", location.key);
        // (rust-s3's HEAD misreads Content-Type in its sync client: GET shows it.)
        assert_eq!(
            stored.headers().get("content-type").map(String::as_str),
            Some("audio/ogg")
        );
        let (head, _) = bucket.head_object(&location.key).unwrap();
        assert_eq!(head.content_length, Some(size as i64));
        let metadata: BTreeMap<String, String> =
            head.metadata.unwrap_or_default().into_iter().collect();
        let expected: BTreeMap<String, String> = job
            .object_metadata()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(metadata, expected);
    }
    assert_eq!(
        keys(&s3, "ws_1/"),
        [
            "ws_1/2026/11/26/channel-555/457.ogg",
            "ws_1/2026/11/26/user-42/456.ogg"
        ]
    );
}

#[test]
fn s3_a_retry_writes_the_same_object() {
    let s3 = TestS3::start("voice");
    let store = S3Store::new(&s3_settings(&s3)).unwrap();
    let job = job("ws_2", Peer::Chat(9), 1, 10_000);
    let bytes = audio(7, 10_000);
    let first = store.put(&job, &bytes).unwrap();
    let second = store.put(&job, &bytes).unwrap();
    assert_eq!(first, second);
    assert_eq!(keys(&s3, "ws_2/"), [job.object_key()]);
    let stored = s3.bucket().get_object(&first.key).unwrap();
    assert_eq!(sha256(stored.bytes()), sha256(&bytes));
}

#[test]
fn s3_down_is_transient_and_the_put_works_once_it_is_back() {
    let s3 = TestS3::start("voice");
    let store = S3Store::new(&s3_settings(&s3)).unwrap();
    let job = job("ws_3", Peer::User(1), 1, 2_000);
    let bytes = audio(3, 2_000);
    let restarted = Restarted::stop(&s3);
    let (retry_after, reason) = transient(store.put(&job, &bytes));
    assert_eq!(retry_after, None);
    assert!(
        reason.starts_with(&format!("S3 put {}: ", job.object_key())),
        "{reason}"
    );
    assert!(!reason.contains(test_s3::SECRET_KEY), "{reason}");
    let _running = restarted.start();
    let location = store.put(&job, &bytes).unwrap();
    let stored = s3.bucket().get_object(&location.key).unwrap();
    assert_eq!(sha256(stored.bytes()), sha256(&bytes));
}

#[test]
fn s3_refusals_are_permanent_and_overload_is_transient() {
    // A wrong secret: the real server refuses the signature.
    let s3 = TestS3::start("voice");
    let mut settings = s3_settings(&s3);
    settings.secret_access_key = Secret::new("wrong-secret-key-91c3".into());
    let store = S3Store::new(&settings).unwrap();
    let job = job("ws_4", Peer::User(1), 1, 100);
    let reason = permanent(store.put(&job, &audio(4, 100)));
    assert!(
        reason.starts_with(&format!("S3 put {}: 403 Forbidden", job.object_key())),
        "{reason}"
    );
    assert!(
        !reason.contains("wrong-secret-key") && !format!("{store:?}").contains("wrong-secret-key")
    );
    assert!(keys(&s3, "ws_4/").is_empty());

    // An overloaded S3 asks to slow down.
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let server = answer_every_request(format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let mut settings = s3_settings(&s3);
    settings.endpoint = Some(format!("http://{server}"));
    let (retry_after, reason) =
        transient(S3Store::new(&settings).unwrap().put(&job, &audio(4, 100)));
    assert_eq!(retry_after, Some(Duration::from_secs(3)));
    // S3's error code comes with the status.
    assert_eq!(
        reason,
        format!(
            "S3 put {}: 503 Service Unavailable SlowDown",
            job.object_key()
        )
    );
}

/// The keys under `prefix`, sorted.
fn keys(s3: &TestS3, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = s3
        .bucket()
        .list(prefix.to_owned(), None)
        .unwrap()
        .into_iter()
        .flat_map(|page| page.contents)
        .map(|object| object.key)
        .collect();
    keys.sort();
    keys
}

/// The `s3s-fs` process behind a [`TestS3`], killed, and started again on the same port
/// and directory (the same server, after an outage).
struct Restarted {
    command: Vec<String>,
    addr: SocketAddr,
}

impl Restarted {
    fn stop(s3: &TestS3) -> Restarted {
        let addr: SocketAddr = s3.endpoint()["http://".len()..].parse().unwrap();
        let port = addr.port().to_string();
        let me = std::process::id().to_string();
        let (pid, command) = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| {
                let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let parent = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<String> = String::from_utf8(cmdline)
                    .ok()?
                    .split('\0')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect();
                let ours = parent == me
                    && args.first()?.ends_with("s3s-fs")
                    && args.windows(2).any(|w| w[0] == "--port" && w[1] == port);
                ours.then_some((pid, args))
            })
            .next()
            .expect("the s3s-fs process of this test");
        kill(pid, libc::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < deadline, "s3s-fs still listens on {addr}");
            thread::sleep(Duration::from_millis(10));
        }
        Restarted { command, addr }
    }

    /// Starts it again; it stops when the returned guard is dropped.
    fn start(self) -> KillOnDrop {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command, libc::SIGKILL);
        let child = KillOnDrop(command.spawn().unwrap());
        assert!(
            wait_for_port(self.addr, Duration::from_secs(20)),
            "s3s-fs did not come back on {}",
            self.addr
        );
        child
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- Inngest

#[test]
fn inngest_accepts_the_event_and_flags_a_repeat_as_a_duplicate() {
    let receiver = InngestReceiver::start(EVENT_KEY);
    let sink = inngest(&receiver.base_url(), EVENT_KEY);
    let job = job("ws_5", Peer::Channel(555), 456, 48_211);
    let stored = ObjectLocation::of("voice".into(), job.object_key(), b"audio");
    let event = job.event(&stored, Some("bot1"));
    sink.send(&event).unwrap();
    sink.send(&event).unwrap();
    let received = receiver.events();
    assert_eq!(received.len(), 2);
    for (got, duplicate) in received.iter().zip([false, true]) {
        assert_eq!(got.name, EVENT_NAME);
        assert_eq!(got.id.as_deref(), Some("tg-voice:ws_5:channel:555:456"));
        assert_eq!(got.ts, Some(i64::from(job.date) * 1000));
        assert_eq!(got.data, event["data"]);
        assert_eq!(got.duplicate, duplicate);
    }
    assert_eq!(
        received[0].data["s3"],
        json!({"bucket": "voice", "key": "ws_5/2026/11/26/channel-555/456.ogg"})
    );
}

#[test]
fn inngest_server_errors_and_lost_answers_are_transient() {
    let receiver = InngestReceiver::start(EVENT_KEY);
    let sink = inngest(&receiver.base_url(), EVENT_KEY);
    let event = json!({"name": EVENT_NAME, "id": "tg-voice:ws:user:1:1", "data": {}});
    receiver.fail_next(Failure::Status(500));
    let (retry_after, reason) = transient(sink.send(&event));
    assert_eq!(retry_after, None);
    assert_eq!(
        reason,
        "Inngest: 500 Internal Server Error: scripted failure"
    );
    receiver.fail_next(Failure::Status(502));
    assert!(
        transient(sink.send(&event))
            .1
            .starts_with("Inngest: 502 Bad Gateway")
    );
    receiver.fail_next(Failure::Drop);
    let (_, reason) = transient(sink.send(&event));
    assert!(reason.starts_with("Inngest: "), "{reason}");
    assert!(receiver.events().is_empty());
    // Back to normal: the same event goes through, once.
    sink.send(&event).unwrap();
    assert_eq!(receiver.events().len(), 1);
    assert_eq!(receiver.requests(), 4);
}

#[test]
fn inngest_too_many_requests_waits_as_told() {
    let body = r#"{"status":429,"error":"rate limit exceeded 1/s"}"#;
    let server = answer_every_request(format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let sink = inngest(&format!("http://{server}"), EVENT_KEY);
    let (retry_after, reason) = transient(sink.send(&json!({"name": "x", "data": {}})));
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    assert_eq!(
        reason,
        "Inngest: 429 Too Many Requests: rate limit exceeded 1/s"
    );
    // An HTTP date already past: try again at once.
    let server = answer_every_request(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 0\r\n\r\n"
            .to_owned(),
    );
    let sink = inngest(&format!("http://{server}"), EVENT_KEY);
    let (retry_after, reason) = transient(sink.send(&json!({"name": "x", "data": {}})));
    assert_eq!(retry_after, Some(Duration::ZERO));
    assert_eq!(reason, "Inngest: 503 Service Unavailable");
}

#[test]
fn inngest_refusals_are_permanent_and_never_show_the_key() {
    let receiver = InngestReceiver::start(EVENT_KEY);
    let wrong_key = "wrong-event-key-77d1";
    let sink = inngest(&receiver.base_url(), wrong_key);
    let error = sink
        .send(&json!({"name": EVENT_NAME, "data": {}}))
        .unwrap_err();
    assert_eq!(
        error,
        SinkError::permanent("Inngest: 401 event key refused")
    );
    for shown in [
        error.to_string(),
        format!("{error:?}"),
        format!("{sink:?}"),
        sink.describe(),
    ] {
        assert!(!shown.contains(wrong_key), "{shown}");
    }
    assert_eq!(
        sink.describe(),
        format!("Inngest at {}/e/***", receiver.base_url())
    );

    let sink = inngest(&receiver.base_url(), EVENT_KEY);
    let reason = permanent(sink.send(&json!({"name": EVENT_NAME})));
    assert_eq!(
        reason,
        "Inngest: 400 Bad Request: event 0: `data` must be an object"
    );
    assert!(receiver.events().is_empty());
}

#[test]
fn inngest_silent_or_absent_is_transient_within_the_timeout() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink = InngestSink::new(
        &format!("http://{}", silent.local_addr().unwrap()),
        &Secret::new(EVENT_KEY.to_owned()),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let (_, reason) = transient(sink.send(&json!({"name": "x", "data": {}})));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(reason.starts_with("Inngest: timeout"), "{reason}");

    let absent = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, reason) = transient(inngest(&format!("http://{absent}"), EVENT_KEY).send(&json!({})));
    assert!(!reason.contains(EVENT_KEY), "{reason}");
}

#[test]
fn https_endpoints_are_spoken_to_in_tls() {
    // Neither client was built without TLS: each opens with a TLS ClientHello (a
    // handshake record, 0x16 0x03), then fails on this server's silence, transiently.
    let (addr, hello) = first_bytes_of_a_connection();
    let sink = inngest(&format!("https://{addr}"), EVENT_KEY);
    let (_, reason) = transient(sink.send(&json!({"name": "x", "data": {}})));
    assert!(!reason.contains(EVENT_KEY), "{reason}");
    assert_eq!(hello.join().unwrap()[..2], [0x16, 0x03]);

    let (addr, hello) = first_bytes_of_a_connection();
    let store = S3Store::new(&S3Settings {
        endpoint: Some(format!("https://{addr}")),
        ..S3Settings {
            bucket: "voice".into(),
            region: "us-east-1".into(),
            endpoint: None,
            access_key_id: "id".into(),
            secret_access_key: Secret::new("secret".into()),
            timeout: Duration::from_secs(5),
        }
    })
    .unwrap();
    let (_, reason) = transient(store.put(&job("ws", Peer::User(1), 1, 10), &[0; 10]));
    assert!(!reason.contains("TLS is disabled"), "{reason}");
    assert_eq!(hello.join().unwrap()[..2], [0x16, 0x03]);
}

/// A server that reads each request whole and answers it with `response`, for the
/// test's lifetime.
fn answer_every_request(response: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            if read_request(&mut stream) {
                let _ = stream.write_all(response.as_bytes());
            }
        }
    });
    addr
}

/// Reads one request's head and `Content-Length` body; false if the client went away.
fn read_request(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = request.parse(&buf) {
            let length: usize = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head + length {
                match stream.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return false,
                }
            }
            return true;
        }
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
}

/// A server that keeps the first five bytes a client sends on one connection, and
/// closes it.
fn first_bytes_of_a_connection() -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let first = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut bytes = [0u8; 5];
        stream.read_exact(&mut bytes).unwrap();
        bytes.to_vec()
    });
    (addr, first)
}

// ---------------------------------------------------------------- the pool, end to end

/// What the core does with the pool: every voice file stored, then its event sent with
/// the location the store reported.
fn through_the_pool(
    sinks: Sinks,
    jobs: &[(VoiceJob, Vec<u8>)],
) -> Vec<(VoiceJob, ObjectLocation, Value)> {
    let (tx, rx) = mpsc::channel();
    let pool = SinkPool::start(
        sinks,
        DEFAULT_VOICE_SINK_THREADS,
        pool::CAPACITY,
        move |done| tx.send(done).unwrap(),
    )
    .unwrap();
    for (id, (job, bytes)) in jobs.iter().enumerate() {
        pool.submit(SinkTask::Store {
            id: id as u64,
            job: job.clone(),
            bytes: bytes.clone(),
        })
        .unwrap();
    }
    let mut stored = BTreeMap::new();
    let mut published = BTreeSet::new();
    while published.len() < jobs.len() {
        match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
            SinkDone::Stored { id, result } => {
                let location = result.unwrap();
                let job = &jobs[id as usize].0;
                let event = job.event(&location, Some("bot1"));
                pool.submit(SinkTask::Publish {
                    id,
                    event: event.clone(),
                })
                .unwrap();
                assert!(stored.insert(id, (job.clone(), location, event)).is_none());
            }
            SinkDone::Published { id, result } => {
                result.unwrap();
                assert!(
                    stored.contains_key(&id),
                    "{id} published before it was stored"
                );
                assert!(published.insert(id), "{id} answered twice");
            }
        }
    }
    assert_eq!(pool.held(), 0);
    pool.stop();
    stored.into_values().collect()
}

fn batch() -> Vec<(VoiceJob, Vec<u8>)> {
    let chats = [Peer::User(42), Peer::Chat(7), Peer::Channel(555)];
    (0..12)
        .map(|n| {
            let size = [3_000, 40_000, 700_000][n % 3];
            (
                job(&format!("ws_{}", n % 2), chats[n % 3], 100 + n as i32, size),
                audio(n as u32, size),
            )
        })
        .collect()
}

#[test]
fn production_configuration_carries_a_batch_to_s3_and_inngest() {
    let s3 = TestS3::start("voice");
    let receiver = InngestReceiver::start(EVENT_KEY);
    let env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .chain(receiver.env())
        .chain([(
            "DATABASE_URL".into(),
            "postgres://app:pw@127.0.0.1:1/bots".into(),
        )])
        .collect();
    let sinks = Sinks::from_config(&Config::from_env(env).unwrap()).unwrap();
    let jobs = batch();
    let done = through_the_pool(sinks, &jobs);
    for ((job, location, _), (_, bytes)) in done.iter().zip(&jobs) {
        assert_eq!(location.key, job.object_key());
        let stored = s3.bucket().get_object(&location.key).unwrap();
        assert_eq!(sha256(stored.bytes()), sha256(bytes));
    }
    assert_eq!(keys(&s3, "").len(), jobs.len());
    let received = receiver.events();
    let ids: BTreeSet<_> = received.iter().filter_map(|e| e.id.clone()).collect();
    let expected: BTreeSet<_> = jobs.iter().map(|(j, _)| j.key.event_id()).collect();
    assert_eq!((received.len(), ids), (jobs.len(), expected));
    assert!(received.iter().all(|e| !e.duplicate));
}

#[test]
fn embedded_defaults_carry_a_batch_to_local_files() {
    let dir = temp_dir("telegram-bots-voice-sinks");
    let config = Config::from_env([("DATA_DIR", dir.display().to_string())]).unwrap();
    let sinks = Sinks::from_config(&config).unwrap();
    let jobs = batch();
    let done = through_the_pool(sinks, &jobs);
    let voice = std::fs::canonicalize(dir.join("voice")).unwrap();
    let mut sent: BTreeMap<String, Value> = BTreeMap::new();
    for ((job, location, event), (_, bytes)) in done.iter().zip(&jobs) {
        assert_eq!(location.bucket, voice.display().to_string());
        let file = Path::new(&location.bucket).join(&location.key);
        assert_eq!(sha256(&std::fs::read(&file).unwrap()), sha256(bytes));
        assert_eq!(event["data"]["s3"]["key"], job.object_key());
        sent.insert(job.key.event_id(), event.clone());
    }
    // One line per event, the very bytes Inngest would have received.
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let mut lines: BTreeMap<String, Value> = BTreeMap::new();
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(line, serde_json::to_string(&event).unwrap());
        lines.insert(event["id"].as_str().unwrap().to_owned(), event);
    }
    assert_eq!(text.lines().count(), jobs.len());
    assert_eq!(lines, sent);
    std::fs::remove_dir_all(dir).unwrap();
}
