//! Benchmarks of a service binary as a real process: start-up, health latency, memory
//! and the stop on SIGTERM. Figures are printed; docs/benchmarks.md records them.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::http;
use crate::service::Service;

/// The `p`-quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<34} n={:<5} p50={:>9.3?} p95={:>9.3?} max={:>9.3?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        samples[samples.len() - 1]
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Runs the benchmark `runs` times (start, requests, SIGTERM) and prints the figures.
pub fn health_and_lifecycle(binary: &Path, runs: usize, requests: usize) {
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    println!("== {name}: {runs} runs, {requests} sequential requests per endpoint and run");
    let (mut start, mut stop, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    let mut latency: Vec<(&str, Vec<Duration>)> = ["/healthz", "/readyz", "/metrics"]
        .map(|p| (p, Vec::new()))
        .into();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut service = Service::start(binary, &[("LOG_LEVEL", "warn")]);
        service.wait_ready(Duration::from_secs(20));
        start.push(t0.elapsed());
        for (path, samples) in &mut latency {
            for _ in 0..requests {
                let t = Instant::now();
                let reply = http::get(service.health_addr, path);
                samples.push(t.elapsed());
                assert_eq!(reply.status, 200);
            }
        }
        rss.push(rss_kib(service.pid()));
        let t = Instant::now();
        service.signal(libc::SIGTERM);
        let status = service.wait_exit(Duration::from_secs(30)).expect("exits");
        stop.push(t.elapsed());
        assert_eq!(status.code(), Some(0));
    }
    summary("start to ready (process spawn incl.)", start);
    for (path, samples) in latency {
        summary(&format!("GET {path} (new connection each)"), samples);
    }
    summary("SIGTERM to exit (idle, 0 bots)", stop);
    rss.sort();
    println!("{:<34} median={} KiB", "RSS when ready", rss[rss.len() / 2]);
}
