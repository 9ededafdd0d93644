//! The voice pipeline's promise under fire: 10 bots receive 1,000 voice messages of
//! varied sizes (a few KB to several MB; in private chats and in supergroups; some while
//! the service is down) while connections are dropped at random, S3 goes away for a
//! while, Inngest answers 500 for a while, and the service is killed with SIGKILL
//! mid-stream and started again. About one file in twenty is kept on DC 2, which the
//! bots fetch over media connections (which the drops hit too). At the end every message
//! is exactly one stored object with the fake DC's sha256 and exactly one distinct event
//! id, nothing else; no row is pending or failed; no auth key was ever used twice at once.
//!
//! Two settings: PostgreSQL with S3 (`s3s-fs`) and the Inngest receiver, and the embedded
//! store with its local defaults (a directory and a JSON-lines file; the outages are
//! S3's and Inngest's, so only the drops and the kill apply there).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use telegram_bots_adapters::voice_sink::local_dir::stored_keys;

use crate::e2e::World;
use crate::e2e_store::{VoiceSinks, on_postgres};
use crate::fake_dc::channels::ChannelPost;
use crate::fake_dc::crypto::sha256;
use crate::fake_dc::fault::{Fault, FaultKind};
use crate::fake_dc::messages::{Content, NewMessage, VoiceForm, hex};
use crate::inngest::Failure;
use crate::postgres::PgCluster;
use crate::service::Service;

/// Bots, messages, and how long everything may take once the last one is sent.
const BOTS: usize = 10;
const MESSAGES: usize = 1000;
const SETTLE: Duration = Duration::from_secs(300);

/// Which store and sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// PostgreSQL, S3, Inngest.
    Production,
    /// The embedded store, `DATA_DIR/voice` and `DATA_DIR/events.jsonl`.
    Embedded,
}

/// A voice message as the test expects to find it: its event id and its bytes' sha256.
#[derive(Debug)]
struct Expected {
    event_id: String,
    sha256: String,
}

/// A small deterministic generator (splitmix64): the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A voice file's size: mostly a few KB, some hundreds of KB, a few several MB.
    fn size(&mut self) -> usize {
        (match self.below(100) {
            0..=2 => 2_000_000 + self.below(3_000_000),
            3..=22 => 40_000 + self.below(400_000),
            _ => 2_000 + self.below(40_000),
        }) as usize
    }
}

/// The world, the service and what was sent.
struct Run<'a> {
    binary: &'a Path,
    world: World,
    sinks: Option<VoiceSinks>,
    _cluster: Option<PgCluster>,
    service: Option<Service>,
    rng: Rng,
    /// Supergroups and their member bots.
    groups: Vec<(i64, Vec<usize>)>,
    expected: Vec<Expected>,
    seed: u64,
}

impl Run<'_> {
    fn start_service(&mut self) {
        self.service = Some(self.world.start(self.binary));
    }

    /// Sends one voice message: to a bot in a private chat, or into a supergroup (one
    /// message for each of its bots).
    fn send_one(&mut self) {
        self.seed += 1;
        let size = self.rng.size();
        // About 5 %: a file on another DC (FILE_MIGRATE, a media connection).
        let dc = (self.rng.below(20) == 0).then_some(2);
        let content = Content::Voice {
            size,
            duration: 1 + (size / 4000) as i32,
            mime_type: "audio/ogg".into(),
            seed: self.seed,
            bytes: None,
            dc,
            form: VoiceForm::Voice,
        };
        let user = 1000 + self.rng.below(50) as i64;
        if self.rng.below(10) == 0 {
            let (channel, members) =
                self.groups[self.rng.below(self.groups.len() as u64) as usize].clone();
            let sent = self
                .world
                .telegram
                .send_channel_message(ChannelPost {
                    channel_id: channel,
                    from_user_id: Some(user),
                    content,
                })
                .unwrap();
            for bot in members {
                self.expected.push(Expected {
                    event_id: format!("tg-voice:ws_{bot}:channel:{channel}:{}", sent.message_id),
                    sha256: sent.sha256.clone().unwrap(),
                });
            }
        } else {
            let bot = 1 + self.rng.below(BOTS as u64) as usize;
            let sent = self
                .world
                .telegram
                .send_message(NewMessage {
                    bot: format!("bot{bot}"),
                    chat_id: user,
                    from_user_id: user,
                    content,
                })
                .unwrap();
            self.expected.push(Expected {
                event_id: format!("tg-voice:ws_{bot}:user:{user}:{}", sent.message_id),
                sha256: sent.sha256.unwrap(),
            });
        }
    }

    /// Sends `n` messages at about 200 a second, dropping a random bot's connections
    /// now and then.
    fn send(&mut self, n: usize) {
        for i in 0..n {
            self.send_one();
            if i % 40 == 39 {
                let bot = 1 + self.rng.below(BOTS as u64);
                self.world
                    .telegram
                    .add_fault(Fault::new(FaultKind::DropConnections).for_bot(&format!("bot{bot}")))
                    .unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Messages sent so far (a supergroup message counts once).
    fn sent_messages(&self) -> usize {
        self.seed as usize
    }

    fn service(&self) -> &Service {
        self.service.as_ref().expect("the service runs")
    }

    fn data_dir(&self) -> PathBuf {
        self.world.dir.join("data")
    }

    /// Events delivered so far (retries included), in order.
    fn events(&self) -> Vec<Value> {
        match &self.sinks {
            Some(sinks) => sinks
                .inngest
                .events()
                .into_iter()
                .map(|e| serde_json::json!({"id": e.id, "data": e.data}))
                .collect(),
            None => std::fs::read_to_string(self.data_dir().join("events.jsonl"))
                .unwrap_or_default()
                .lines()
                // A line cut by the SIGKILL is not an event (the message is sent again).
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        }
    }

    /// Every stored object: key and sha256.
    fn objects(&self) -> BTreeMap<String, String> {
        match &self.sinks {
            Some(sinks) => {
                let bucket = sinks.s3.bucket();
                let mut keys = Vec::new();
                for page in bucket.list(String::new(), None).unwrap() {
                    keys.extend(page.contents.into_iter().map(|o| o.key));
                }
                keys.into_iter()
                    .map(|key| {
                        let object = bucket.get_object(&key).unwrap();
                        (key, hex(&sha256(&[object.as_slice()])))
                    })
                    .collect()
            }
            None => {
                // A write the SIGKILL cut short leaves at worst a hidden `.*.part` file
                // (README), never an object under its final name.
                let root = self.data_dir().join("voice");
                let mut out = BTreeMap::new();
                for key in stored_keys(&root).expect("list the voice directory") {
                    let bytes = std::fs::read(root.join(&key)).unwrap();
                    out.insert(key, hex(&sha256(&[&bytes])));
                }
                out
            }
        }
    }
}

/// The scenario for `binary` in `setting`.
pub fn voice_messages_survive_chaos(binary: &Path, setting: Setting) {
    let world = World::with_bots(BOTS, false);
    let (world, cluster, sinks) = match setting {
        Setting::Production => {
            let (world, cluster, sinks) = on_postgres(world);
            (world, Some(cluster), Some(sinks))
        }
        Setting::Embedded => (world, None, None),
    };
    let mut groups = Vec::new();
    for (name, members) in [
        ("chaos group 1", vec![1, 2, 3]),
        ("chaos group 2", vec![4, 5]),
    ] {
        let bots: Vec<String> = members.iter().map(|i| format!("bot{i}")).collect();
        let bots: Vec<&str> = bots.iter().map(String::as_str).collect();
        let id = world.telegram.add_channel(name, true, &bots).unwrap();
        groups.push((id, members));
    }
    let mut run = Run {
        binary,
        world,
        sinks,
        _cluster: cluster,
        service: None,
        rng: Rng(0x5eed),
        groups,
        expected: Vec::new(),
        seed: 0,
    };
    run.start_service();
    let per_phase = MESSAGES / 5;

    // Drops only.
    run.send(per_phase);
    // S3 goes away for a while.
    if let Some(sinks) = &mut run.sinks {
        sinks.s3.pause();
    }
    run.send(per_phase);
    std::thread::sleep(Duration::from_secs(3));
    if run.sinks.is_some() {
        assert!(
            run.service().wait_for_log("s3: ", Duration::from_secs(60)),
            "no object was attempted during the S3 outage:\n{}",
            tail(&run.service().logs(), 30)
        );
    }
    if let Some(sinks) = &mut run.sinks {
        sinks.s3.resume();
    }
    // Inngest answers 500 for a while, and the service is killed in the middle of it.
    if let Some(sinks) = &run.sinks {
        sinks.inngest.set_failing(Some(Failure::Status(500)));
    }
    run.send(per_phase / 2);
    if run.sinks.is_some() {
        // S3's backlog drains first, so the outage is seen once an event is attempted.
        assert!(
            run.service()
                .wait_for_log("inngest: ", Duration::from_secs(60)),
            "no event was attempted during the Inngest outage:\n{}",
            tail(&run.service().logs(), 30)
        );
    }
    let mut killed = run.service.take().unwrap();
    killed.signal(libc::SIGKILL);
    killed.wait_exit(Duration::from_secs(10));
    // The chaos bit: the first life saw the drops and (in production) both outages.
    let first_life = killed.logs();
    assert!(
        first_life.contains("reconnecting"),
        "{}",
        tail(&first_life, 30)
    );
    if setting == Setting::Production {
        for step in ["s3: ", "inngest: "] {
            assert!(
                first_life.contains(step) && first_life.contains("; retrying"),
                "no {step}retry in the first life:\n{}",
                tail(&first_life, 30)
            );
        }
    }
    // While it is down.
    run.send(per_phase);
    if let Some(sinks) = &run.sinks {
        sinks.inngest.set_failing(None);
    }
    run.start_service();
    run.send(MESSAGES - run.sent_messages());

    // Everything arrives.
    let want: BTreeMap<&str, &str> = run
        .expected
        .iter()
        .map(|e| (e.event_id.as_str(), e.sha256.as_str()))
        .collect();
    assert_eq!(
        want.len(),
        run.expected.len(),
        "event ids are unique per message"
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let ids: BTreeSet<String> = run
            .events()
            .iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= want.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} voice messages announced within {SETTLE:?}\n{}",
            ids.len(),
            want.len(),
            tail(&run.service().logs(), 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    verify(&run, &want);
}

fn verify(run: &Run<'_>, want: &BTreeMap<&str, &str>) {
    let events = run.events();
    // Each event id once or more (a retry after a crash may repeat it), each a message.
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for event in &events {
        let id = event["id"]
            .as_str()
            .expect("every event has an id")
            .to_owned();
        assert!(
            want.contains_key(id.as_str()),
            "an event for no message sent: {event}"
        );
        let key = event["data"]["s3"]["key"].as_str().unwrap().to_owned();
        if let Some(earlier) = keys.insert(id.clone(), key.clone()) {
            assert_eq!(earlier, key, "a repeated event names the same object");
        }
    }
    assert_eq!(keys.len(), want.len(), "one distinct event id per message");
    // Exactly one object per message, with the fake DC's bytes, and nothing else.
    let objects = run.objects();
    let named: BTreeSet<&String> = keys.values().collect();
    let extra: Vec<&String> = objects.keys().filter(|k| !named.contains(k)).collect();
    assert_eq!(
        objects.len(),
        want.len(),
        "one object per message, nothing else; not named by an event: {extra:?}"
    );
    for (id, key) in &keys {
        assert_eq!(
            objects.get(key).map(String::as_str),
            Some(want[id.as_str()]),
            "{id}: the object {key} holds the very bytes Telegram holds"
        );
    }
    // The outbox is empty: nothing pending, nothing failed.
    let out = run.world.cli(run.binary, &["outbox", "list"], "");
    assert_eq!(out.code, Some(0), "{out:?}");
    for line in out.stdout.lines().skip(1) {
        assert!(line.contains(" done "), "a row not done: {line}");
    }
    assert_eq!(
        out.stdout.lines().count(),
        want.len() + 1,
        "{}",
        tail(&out.stdout, 5)
    );
    assert_eq!(
        run.world.telegram.stats()["auth_key_conflicts"],
        0,
        "an auth key was used from two places at once"
    );
    // The files on DC 2 came over media connections, with the login copied there.
    let stats = run.world.telegram.stats();
    assert!(
        stats["calls"]["auth.importAuthorization"].as_u64() >= Some(1),
        "no media connection was authorized: {}",
        stats["calls"]
    );
    let metrics = crate::http::get(run.service().health_addr, "/metrics").text();
    assert!(
        metrics.contains("telegram_bots_voice_in_flight 0"),
        "{}",
        tail(&metrics, 30)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
