//! The fleet benchmark: `fake-telegram` and the service as separate processes, bots with
//! stored sessions (the fake DC's pre-shared keys), and what a fleet of 100 to 10,000
//! bots costs: resident memory per idle bot, threads, restart to ready, a first start
//! with a handshake per bot, idle CPU, `/metrics`, SIGTERM to exit; and the fake DC's
//! own CPU and memory beside them, so that it is never the unseen bottleneck.
//! `tests/bench-fleet` builds the release binaries and runs it.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use telegram_bots_core::record::{BotRecord, SessionRecord};
use telegram_bots_core::secret::Secret;
use telegram_bots_core::state_file;
use telegram_bots_core::updates::UpdateState;

use crate::http;
use crate::process::temp_dir;
use crate::service::Service;

/// The binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub smol: PathBuf,
    pub blocking: PathBuf,
    pub fake: PathBuf,
}

/// `/proc/PID` figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStat {
    pub rss_kib: u64,
    pub threads: u64,
    pub cpu_seconds: f64,
}

pub fn proc_stat(pid: u32) -> ProcStat {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |n: usize| -> f64 {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    ProcStat {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        cpu_seconds: (ticks(14) + ticks(15)) / 100.0,
    }
}

/// `fake-telegram` as its own process.
struct FakeDc {
    child: Child,
    control: String,
    dcs: String,
    pem: String,
    api_id: String,
    api_hash: String,
    next_bot: usize,
}

impl FakeDc {
    /// Started at a lower CPU priority: on a 2-core machine the fake DC's handshakes
    /// would otherwise take the service's CPU, which Telegram's servers never do.
    fn start(binary: &Path) -> FakeDc {
        let mut child = Command::new("nice")
            .args(["-n", "10"])
            .arg(binary)
            .args(["--dcs", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fake-telegram");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line).expect("the ready line");
        let dcs = info["dcs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, addr)| format!("{id}={}", addr.as_str().unwrap()))
            .collect::<Vec<_>>()
            .join(",");
        FakeDc {
            control: info["control"].as_str().unwrap().to_owned(),
            pem: info["rsa_public_key_pem"].as_str().unwrap().to_owned(),
            api_id: info["api_id"].as_i64().unwrap_or(12345).to_string(),
            api_hash: info["api_hash"]
                .as_str()
                .unwrap_or(crate::e2e::API_HASH)
                .to_owned(),
            dcs,
            child,
            next_bot: 0,
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        agent
            .post(format!("{}{path}", self.control))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn stats(&self) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        agent
            .get(format!("{}/stats", self.control))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// `n` new bots; with `sessions`, each also gets a key logged in as it, and its
    /// record (as a previous run would have saved it).
    fn provision(&mut self, n: usize, sessions: bool) -> Vec<(String, String, Option<BotRecord>)> {
        (0..n)
            .map(|_| {
                self.next_bot += 1;
                let i = self.next_bot;
                let token = format!("{}:AAbench-{i}", 8_000_000 + i);
                let username = format!("bench{i}");
                self.post("/bots", json!({"token": token, "username": username}));
                let record = sessions.then(|| {
                    let mut key = [0u8; 256];
                    getrandom::fill(&mut key).expect("randomness");
                    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                    self.post(
                        "/auth_keys",
                        json!({"dc": 1, "auth_key_hex": hex, "bot": username}),
                    );
                    let mut session = SessionRecord {
                        home_dc: Some(1),
                        authorized: true,
                        user_id: Some(8_000_000 + i as i64),
                        username: Some(username.clone()),
                        ..SessionRecord::default()
                    };
                    session.auth_keys.insert(1, Secret::new(key));
                    BotRecord {
                        session,
                        updates: Some(UpdateState {
                            pts: 1,
                            ..UpdateState::default()
                        }),
                        channels: Vec::new(),
                    }
                });
                (format!("ws_{i}"), token, record)
            })
            .collect()
    }
}

impl Drop for FakeDc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the service measured.
#[derive(Debug, Default, Clone)]
pub struct Case {
    pub runtime: &'static str,
    pub bots: usize,
    pub handshakes: bool,
    pub to_ready: Duration,
    pub to_all_running: Duration,
    pub rss_kib: u64,
    pub threads: u64,
    pub idle_cpu_percent: f64,
    pub metrics_millis: f64,
    pub metrics_bytes: usize,
    pub healthz_max_millis: f64,
    pub sigterm_to_exit: Duration,
    pub cpu_seconds_start: f64,
    pub idle_seconds: f64,
    pub fake_cpu_seconds_start: f64,
    pub fake_rss_kib: u64,
    pub logins: u64,
    pub new_handshakes: u64,
}

/// One run: start `binary` on `bots`, wait for all of them, measure, SIGTERM.
fn run(
    runtime: &'static str,
    binary: &Path,
    fake: &FakeDc,
    bots: &[(String, String, Option<BotRecord>)],
    idle: Duration,
) -> Case {
    let dir = temp_dir("fleet-bench");
    let bots_file: String = bots
        .iter()
        .map(|(ws, token, _)| format!("[[bot]]\nworkspace_id = \"{ws}\"\ntoken = \"{token}\"\n"))
        .collect();
    std::fs::write(dir.join("bots.toml"), bots_file).unwrap();
    let records: BTreeMap<String, BotRecord> = bots
        .iter()
        .filter_map(|(ws, _, r)| Some((ws.clone(), r.clone()?)))
        .collect();
    std::fs::write(dir.join("state.json"), state_file::encode(&records)).unwrap();
    std::fs::write(dir.join("dc.pem"), &fake.pem).unwrap();
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let env = [
        ("BOTS_FILE", path("bots.toml")),
        ("STATE_FILE", path("state.json")),
        ("TELEGRAM_RSA_PUBLIC_KEY", path("dc.pem")),
        ("TELEGRAM_DC_ADDRS", fake.dcs.clone()),
        ("TELEGRAM_API_ID", fake.api_id.clone()),
        ("TELEGRAM_API_HASH", fake.api_hash.clone()),
        ("LOG_LEVEL", "warn".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stats_before = fake.stats();
    let fake_cpu = proc_stat(fake.child.id()).cpu_seconds;

    let t0 = Instant::now();
    let mut service = Service::start(binary, &env);
    // /healthz is polled throughout the start: the executor must never stall on it.
    let polling = Arc::new(AtomicBool::new(true));
    let health_addr = service.health_addr;
    let poller = std::thread::spawn({
        let polling = polling.clone();
        move || {
            let mut worst = Duration::ZERO;
            while polling.load(Ordering::SeqCst) {
                let t = Instant::now();
                if http::request(health_addr, "GET", "/healthz").is_ok_and(|r| r.status == 200) {
                    worst = worst.max(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        }
    });
    service.wait_ready(Duration::from_secs(300));
    let to_ready = t0.elapsed();
    loop {
        let ready = http::get(service.health_addr, "/readyz").json();
        if ready["bots"].as_u64() == Some(bots.len() as u64) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "not all running: {ready}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let to_all_running = t0.elapsed();
    let cpu_start = proc_stat(service.pid()).cpu_seconds;
    polling.store(false, Ordering::SeqCst);
    let healthz_max = poller.join().unwrap();
    let fake_cpu_start = proc_stat(fake.child.id()).cpu_seconds - fake_cpu;

    // Idle: let the start settle, then measure memory and CPU over `idle`.
    std::thread::sleep(Duration::from_secs(3));
    let before = proc_stat(service.pid());
    std::thread::sleep(idle);
    let after = proc_stat(service.pid());
    let mut metrics = Vec::new();
    let mut metrics_bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let reply = http::get(service.health_addr, "/metrics");
        metrics.push(t.elapsed());
        metrics_bytes = reply.body.len();
    }
    metrics.sort();
    let stats_after = fake.stats();
    let total = |stats: &Value, key: &str| -> u64 {
        match &stats[key] {
            Value::Object(map) => map.values().filter_map(Value::as_u64).sum(),
            v => v.as_u64().unwrap_or(0),
        }
    };
    let t = Instant::now();
    service.signal(libc::SIGTERM);
    let status = service
        .wait_exit(Duration::from_secs(60))
        .expect("exits after SIGTERM");
    let sigterm_to_exit = t.elapsed();
    assert_eq!(status.code(), Some(0), "{}", service.logs());
    let _ = std::fs::remove_dir_all(&dir);
    Case {
        runtime,
        bots: bots.len(),
        handshakes: records.is_empty() && !bots.is_empty(),
        to_ready,
        to_all_running,
        rss_kib: after.rss_kib,
        threads: after.threads,
        idle_cpu_percent: (after.cpu_seconds - before.cpu_seconds) / idle.as_secs_f64() * 100.0,
        metrics_millis: metrics[metrics.len() / 2].as_secs_f64() * 1000.0,
        metrics_bytes,
        healthz_max_millis: healthz_max.as_secs_f64() * 1000.0,
        sigterm_to_exit,
        cpu_seconds_start: cpu_start,
        idle_seconds: idle.as_secs_f64(),
        fake_cpu_seconds_start: fake_cpu_start,
        fake_rss_kib: proc_stat(fake.child.id()).rss_kib,
        logins: total(&stats_after, "logins") - total(&stats_before, "logins"),
        new_handshakes: total(&stats_after, "handshakes") - total(&stats_before, "handshakes"),
    }
}

/// Runs every case, prints the table, writes the JSON to `json_out`.
pub fn main(binaries: &Binaries, json_out: &Path, quick: bool) {
    let mut fake = FakeDc::start(&binaries.fake);
    // Long enough to include every bot's keep-alive ping (one a minute) in the largest
    // runs; shorter for the others.
    let (idle, idle_long) = if quick {
        (Duration::from_secs(5), Duration::from_secs(5))
    } else {
        (Duration::from_secs(10), Duration::from_secs(65))
    };
    let sizes: &[usize] = if quick {
        &[100, 1000]
    } else {
        &[100, 1000, 10_000]
    };
    let largest = *sizes.last().unwrap();
    let stored = fake.provision(largest, true);
    let fresh = fake.provision(2000, false);
    let mut cases = Vec::new();
    for (runtime, binary) in [("smol", &binaries.smol), ("blocking", &binaries.blocking)] {
        cases.push(run(runtime, binary, &fake, &[], idle));
        // A thread per bot: the debugging runtime is not for ten thousand.
        let sizes: Vec<usize> = sizes
            .iter()
            .copied()
            .filter(|&n| runtime == "smol" || n <= 1000)
            .collect();
        for &n in &sizes {
            let window = if Some(&n) == sizes.last() {
                idle_long
            } else {
                idle
            };
            cases.push(run(runtime, binary, &fake, &stored[..n], window));
        }
        // A first start: every bot makes a key and logs in (each bot once per runtime).
        let half = if runtime == "smol" {
            &fresh[..1000]
        } else {
            &fresh[1000..]
        };
        cases.push(run(runtime, binary, &fake, half, idle));
    }
    print(&cases);
    let json: Vec<Value> = cases
        .iter()
        .map(|c| {
            let empty = cases
                .iter()
                .find(|e| e.runtime == c.runtime && e.bots == 0)
                .map_or(0, |e| e.rss_kib);
            json!({
                "runtime": c.runtime,
                "bots": c.bots,
                "first_start_with_handshakes": c.handshakes,
                "start_to_ready_ms": c.to_ready.as_millis(),
                "start_to_all_running_ms": c.to_all_running.as_millis(),
                "rss_kib": c.rss_kib,
                "rss_per_bot_kib": (c.bots > 0).then(|| (c.rss_kib.saturating_sub(empty)) as f64 / c.bots as f64),
                "threads": c.threads,
                "idle_cpu_percent_of_one_core": c.idle_cpu_percent,
                "idle_window_seconds": c.idle_seconds,
                "cpu_seconds_until_all_running": c.cpu_seconds_start,
                "metrics_render_ms": c.metrics_millis,
                "metrics_bytes": c.metrics_bytes,
                "healthz_worst_during_start_ms": c.healthz_max_millis,
                "sigterm_to_exit_ms": c.sigterm_to_exit.as_millis(),
                "logins": c.logins,
                "handshakes": c.new_handshakes,
                "fake_dc_cpu_seconds_during_start": c.fake_cpu_seconds_start,
                "fake_dc_rss_kib": c.fake_rss_kib,
            })
        })
        .collect();
    let report = json!({ "cases": json, "machine": machine() });
    std::fs::write(json_out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nJSON: {}", json_out.display());
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpu": cpu, "cores": cores })
}

fn print(cases: &[Case]) {
    println!(
        "\n{:<9} {:>6} {:>5} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9}",
        "runtime",
        "bots",
        "hs",
        "ready ms",
        "all ms",
        "CPU s",
        "RSS KiB",
        "KiB/bot",
        "threads",
        "idle %",
        "metrics",
        "metr. KB",
        "healthz",
        "stop ms",
        "logins",
        "fakeCPU s",
        "fake KiB"
    );
    for c in cases {
        let empty = cases
            .iter()
            .find(|e| e.runtime == c.runtime && e.bots == 0)
            .map_or(0, |e| e.rss_kib);
        let per_bot = if c.bots > 0 {
            format!(
                "{:.1}",
                c.rss_kib.saturating_sub(empty) as f64 / c.bots as f64
            )
        } else {
            "-".into()
        };
        println!(
            "{:<9} {:>6} {:>5} {:>9} {:>9} {:>7.2} {:>9} {:>9} {:>7} {:>8.2} {:>8.1}ms {:>9.1} {:>6.1}ms {:>8} {:>7} {:>9.2} {:>9}",
            c.runtime,
            c.bots,
            if c.handshakes { "yes" } else { "no" },
            c.to_ready.as_millis(),
            c.to_all_running.as_millis(),
            c.cpu_seconds_start,
            c.rss_kib,
            per_bot,
            c.threads,
            c.idle_cpu_percent,
            c.metrics_millis,
            c.metrics_bytes as f64 / 1000.0,
            c.healthz_max_millis,
            c.sigterm_to_exit.as_millis(),
            c.logins,
            c.fake_cpu_seconds_start,
            c.fake_rss_kib,
        );
    }
}
