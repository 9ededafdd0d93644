//! 10,000 concurrent idle MTProto sessions held by `fake-telegram` on this machine: its
//! memory and CPU per session. `cargo bench -p telegram-bots-tests --bench fake_dc_sessions`
//! (SESSIONS=N to change the count). Figures go to docs/benchmarks.md.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grammers_tl_types::functions;
use telegram_bots_tests::fake_dc::client::{Framing, TestClient};
use telegram_bots_tests::fake_dc::crypto::sha256;

/// (resident KiB, CPU seconds) of a process, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    (rss, ticks / 100.0)
}

fn main() {
    let sessions: usize = std::env::var("SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-telegram"))
        .args(["--dcs", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let control = info["control"].as_str().unwrap().to_owned();
    let addr = info["dcs"]["1"].as_str().unwrap().parse().unwrap();
    let agent = ureq::Agent::new_with_defaults();
    agent
        .post(format!("{control}/bots"))
        .send_json(serde_json::json!({"token": "9000001:AAbench", "username": "bench_bot"}))
        .unwrap();
    // Distinct keys: 8 SHA-256 blocks of (session, block).
    let keys: Vec<[u8; 256]> = (0..sessions as u64)
        .map(|i| {
            let blocks: Vec<[u8; 32]> = (0..8u64)
                .map(|b| sha256(&[&i.to_le_bytes(), &b.to_le_bytes()]))
                .collect();
            std::array::from_fn(|j| blocks[j / 32][j % 32])
        })
        .collect();
    for key in &keys {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        agent
            .post(format!("{control}/auth_keys"))
            .send_json(serde_json::json!({"dc": 1, "auth_key_hex": hex, "bot": "bench_bot"}))
            .unwrap();
    }

    let pid = child.id();
    let (rss0, cpu0) = usage(pid);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(sessions);
    for key in &keys {
        let mut client = TestClient::with_key(addr, *key, Framing::Intermediate).unwrap();
        client.call(&functions::updates::GetState {}).unwrap();
        clients.push(client);
    }
    let setup = started.elapsed();
    let (rss1, cpu1) = usage(pid);
    std::thread::sleep(Duration::from_secs(10));
    let (rss2, cpu2) = usage(pid);
    let stats: serde_json::Value = agent
        .get(format!("{control}/stats"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(
        stats["connections"].as_u64(),
        Some(sessions as u64),
        "{stats}"
    );

    println!(
        "== fake-telegram, {sessions} concurrent sessions (stored keys, one getState each, then idle)"
    );
    println!(
        "set-up (connect + first call, sequential client): {setup:.2?} ({:.0} sessions/s)",
        sessions as f64 / setup.as_secs_f64()
    );
    println!(
        "server CPU during set-up:   {:.2} s ({:.0} µs per session)",
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1e6 / sessions as f64
    );
    println!(
        "server RSS before / after:  {rss0} KiB / {rss1} KiB ({:.1} KiB per session)",
        (rss1 - rss0) as f64 / sessions as f64
    );
    println!(
        "server CPU while idle 10 s: {:.3} s ({:.2} % of one core)",
        cpu2 - cpu1,
        (cpu2 - cpu1) * 10.0
    );
    println!("server RSS after idling:    {rss2} KiB");
    drop(clients);
    let _ = child.kill();
    let _ = child.wait();
}
