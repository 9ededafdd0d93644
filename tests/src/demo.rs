//! `demo`, as a newcomer runs it: a process with nothing configured that must be ready
//! with three bots at once, land playable Ogg/Opus files with one matching event each,
//! stop on Ctrl-C with exit code 0, and resume the next time without a login.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use telegram_bots_adapters::voice_sink::local_dir::stored_keys;

use crate::service::{Service, scratch_data_dir};

#[macro_export]
macro_rules! demo_suite {
    ($binary:expr) => {
        #[test]
        fn the_demo_lands_voice_files_with_their_events_and_resumes_without_a_login() {
            $crate::demo::lands_voice_files_and_resumes(::std::path::Path::new($binary));
        }
    };
}

/// The demo bots' made-up tokens share this part; no output may show it.
const TOKEN_PART: &str = "NotARealTelegramToken";

pub fn lands_voice_files_and_resumes(binary: &Path) {
    let dir = scratch_data_dir();
    let data = dir.join("demo-data");
    let args = ["demo", "--dir", data.to_str().expect("a UTF-8 path")];

    // First run: a new fake Telegram, three new bots.
    let started = Instant::now();
    let mut demo = Service::start_with_args(binary, &args, &[("LOG_LEVEL", "debug")]);
    demo.wait_ready(Duration::from_secs(5));
    let ready = crate::http::get(demo.health_addr, "/readyz").json();
    assert_eq!(ready["bots"], 3, "{ready}");
    let states: Vec<&Value> = ready["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| &d["state"])
        .collect();
    assert!(states.iter().all(|s| *s == "running"), "{ready}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ready in {:?}",
        started.elapsed()
    );
    wait_for_files(&data, 1, started + Duration::from_secs(20), &demo);
    let control = control_url(&demo.logs());
    assert!(
        logins(&control) >= 3,
        "the first run's bots log in: {}",
        demo.logs()
    );
    stop(&mut demo);
    let first_logs = demo.logs();
    assert!(
        first_logs.contains(&data.display().to_string()),
        "the banner names the directory"
    );
    assert!(
        !first_logs.contains(TOKEN_PART),
        "a token in the output:\n{first_logs}"
    );

    // Second run: the same directory resumes every stored session.
    let before = all_files(&data.join("voice")).len();
    let mut demo = Service::start_with_args(binary, &args, &[("LOG_LEVEL", "debug")]);
    demo.wait_ready(Duration::from_secs(5));
    wait_for_files(
        &data,
        before + 1,
        Instant::now() + Duration::from_secs(20),
        &demo,
    );
    let control = control_url(&demo.logs());
    let stats = stats(&control);
    assert_eq!(logins(&control), 0, "the second run logged in: {stats}");
    assert_eq!(stats["handshakes"], 0, "the second run made keys: {stats}");
    stop(&mut demo);
    assert!(
        demo.logs().contains("logged in 0 times (handshakes: 0)"),
        "{}",
        demo.logs()
    );
    assert!(!demo.logs().contains(TOKEN_PART));
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGINT, as Ctrl-C sends it: a clean stop with exit code 0.
fn stop(demo: &mut Service) {
    demo.signal(libc::SIGINT);
    let status = demo
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the demo did not stop on SIGINT:\n{}", demo.logs()));
    assert_eq!(status.code(), Some(0), "{}", demo.logs());
}

/// The fake Telegram's statistics URL, from the banner.
fn control_url(logs: &str) -> String {
    let line = logs
        .lines()
        .find(|l| l.contains("the fake Telegram:"))
        .unwrap_or_else(|| panic!("no control API in the banner:\n{logs}"));
    line.split_whitespace().last().expect("a URL").to_owned()
}

/// What the fake Telegram counted (its control API keeps connections alive: ureq).
fn stats(url: &str) -> Value {
    ureq::get(url)
        .call()
        .and_then(|mut r| r.body_mut().read_json())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn logins(url: &str) -> u64 {
    stats(url)["logins"]
        .as_object()
        .expect("logins by bot")
        .values()
        .filter_map(Value::as_u64)
        .sum()
}

/// Waits until `DIR/voice` holds at least `n` files, each with its event (a file is
/// stored before its event is sent); checks them all and returns their paths.
fn wait_for_files(data: &Path, n: usize, deadline: Instant, demo: &Service) -> Vec<PathBuf> {
    loop {
        let files = all_files(&data.join("voice"));
        let checked = match files.len() {
            have if have < n => Err(format!("{have} voice files, wanted {n}")),
            _ => check_events(data, &files),
        };
        match checked {
            Ok(()) => {
                files.iter().for_each(|f| check_ogg_opus(f));
                return files;
            }
            Err(e) => assert!(Instant::now() < deadline, "{e}:\n{}", demo.logs()),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Every file has exactly one event (by id) whose key, sha256 and size are the file's.
fn check_events(data: &Path, files: &[PathBuf]) -> Result<(), String> {
    let voice = data.join("voice");
    let text = std::fs::read_to_string(data.join("events.jsonl")).unwrap_or_default();
    let mut events: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut seen_ids = std::collections::BTreeSet::new();
    for line in text.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("event line {line:?}: {e}"));
        assert_eq!(event["name"], "telegram/voice.received");
        // Like Inngest, a reader keeps the first line of each id.
        if seen_ids.insert(event["id"].to_string()) {
            let key = event["data"]["s3"]["key"].as_str().expect("key").to_owned();
            events.entry(key).or_default().push(event);
        }
    }
    for file in files {
        let bytes = std::fs::read(file).expect("read a voice file");
        let key = file
            .strip_prefix(&voice)
            .expect("under voice/")
            .to_str()
            .expect("UTF-8");
        let matching = events.get(key).map_or(&[][..], Vec::as_slice);
        if matching.len() != 1 {
            return Err(format!("events for {key}: {matching:?}"));
        }
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(matching[0]["data"]["sha256"], sha, "{key}");
        assert_eq!(matching[0]["data"]["size"], bytes.len(), "{key}");
    }
    Ok(())
}

/// Ogg pages of an Opus stream, which `opusdec` decodes.
fn check_ogg_opus(file: &Path) {
    let bytes = std::fs::read(file).expect("read a voice file");
    assert!(
        bytes.starts_with(b"OggS") && bytes.windows(8).any(|w| w == b"OpusHead"),
        "{} is not Ogg/Opus",
        file.display()
    );
    let decoded = Command::new("opusdec")
        .args(["--quiet"])
        .arg(file)
        .arg("/dev/null")
        .status()
        .unwrap_or_else(|e| panic!("run opusdec (opus-tools; tests/run installs it): {e}"));
    assert!(decoded.success(), "opusdec refuses {}", file.display());
}

/// The stored voice files under `voice`.
fn all_files(voice: &Path) -> Vec<PathBuf> {
    stored_keys(voice)
        .expect("list the voice directory")
        .into_iter()
        .map(|key| voice.join(key))
        .collect()
}
