//! The Prometheus exposition of `/metrics`, rendered from the fleet and a process sample.
//!
//! Metric families are built with the `prometheus` crate's model and text encoder (which
//! escapes label values such as workspace ids correctly). One family is written by hand:
//! `telegram_bots_total` keeps the seed's name so that dashboards and alerts keep working,
//! but it is a level, not a counter, and Prometheus' linter (`promtool check metrics`)
//! rejects a gauge whose name ends in `_total`. It is therefore exposed as `untyped`,
//! which the linter accepts and every query treats like a gauge; the crate's encoder
//! cannot write untyped samples, hence the hand-written lines.

mod voice;

use std::time::Instant;

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Counter, Encoder as _, TextEncoder};

use crate::bot::Warning;
use crate::fleet::{BotState, FleetStatus};
use crate::health::Health;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Facts about the process, read by a runtime (from `/proc` on Linux).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
    /// Unix time at which the process started.
    pub start_time_seconds: f64,
}

/// The whole `/metrics` body.
pub fn render(
    health: &Health,
    ready: bool,
    process: Option<&ProcessSample>,
    now: Instant,
) -> String {
    let fleet: &FleetStatus = &health.fleet;
    let counters = &fleet.counters;
    let mut families = vec![
        gauge_family(
            "telegram_bots_info",
            "One sample per running bot, labelled with its workspace and username.",
            fleet
                .bots()
                .filter(|b| b.state == BotState::Running)
                .map(|b| {
                    let username = b.username.as_deref().unwrap_or("");
                    (
                        vec![
                            ("workspace_id", b.workspace_id.as_str()),
                            ("username", username),
                        ],
                        1.0,
                    )
                })
                .collect(),
        ),
        gauge_family(
            "telegram_bots_in_state",
            "Number of bots of this process in each state.",
            BotState::ALL
                .iter()
                .map(|s| (vec![("state", s.as_str())], fleet.count(*s) as f64))
                .collect(),
        ),
        family(
            "telegram_bots_reconnects_total",
            "Reconnections of each bot since the process started.",
            MetricType::COUNTER,
            fleet
                .bots()
                .map(|b| {
                    (
                        vec![("workspace_id", b.workspace_id.as_str())],
                        b.reconnects as f64,
                    )
                })
                .collect(),
        ),
        family(
            "telegram_bots_messages_received_total",
            "Messages each bot received since the process started.",
            MetricType::COUNTER,
            fleet
                .bots()
                .map(|b| {
                    (
                        vec![("workspace_id", b.workspace_id.as_str())],
                        b.messages as f64,
                    )
                })
                .collect(),
        ),
        family(
            "telegram_bots_warnings_total",
            "Trouble that lost nothing but must not go unseen, by kind (see the log for the bot).",
            MetricType::COUNTER,
            Warning::KINDS
                .iter()
                .map(|kind| {
                    let n = counters.warnings.get(kind).copied().unwrap_or(0);
                    (vec![("kind", *kind)], n as f64)
                })
                .collect(),
        ),
        counter(
            "telegram_bots_restarts_total",
            "Bots restarted after an internal error (a panic) in their code.",
            counters.bot_restarts,
        ),
        counter(
            "telegram_bots_commits_total",
            "Commits (update state with the messages it covers) written to the store.",
            counters.commits,
        ),
        counter(
            "telegram_bots_commit_failures_total",
            "Commits the store refused (each is retried).",
            counters.commit_failures,
        ),
        gauge_family(
            "telegram_bots_store_up",
            "1 while the store writes commits, 0 while it refuses them.",
            vec![(
                vec![],
                if health.store_error().is_some() {
                    0.0
                } else {
                    1.0
                },
            )],
        ),
        gauge_family(
            "telegram_bots_ready",
            "1 when /readyz answers 200, else 0.",
            vec![(vec![], if ready { 1.0 } else { 0.0 })],
        ),
        gauge_family(
            "telegram_bots_build_info",
            "Version of the running telegram-bots build.",
            vec![(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
        ),
    ];
    let oldest_age = health
        .voice
        .outbox_oldest
        .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
    families.extend(voice::families(&health.voice, oldest_age));
    if let Some(p) = process {
        families.extend(process_families(p));
    }
    // The encoder refuses a family without samples (no running bot yet): leave it out.
    families.retain(|f| !f.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));

    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("families are non-empty and named");
    let mut out = String::from_utf8(out).expect("the text encoder writes UTF-8");
    out.push_str(&format!(
        "# HELP telegram_bots_total Number of running bots in this process.\n\
         # TYPE telegram_bots_total untyped\n\
         telegram_bots_total {}\n",
        fleet.count(BotState::Running)
    ));
    out
}

fn process_families(p: &ProcessSample) -> Vec<MetricFamily> {
    let gauge = |name, help, value: f64| gauge_family(name, help, vec![(vec![], value)]);
    let cpu = Counter::new(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
    )
    .expect("valid metric name");
    cpu.inc_by(p.cpu_seconds.max(0.0));
    let mut families = prometheus::core::Collector::collect(&cpu);
    families.extend([
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_memory_bytes as f64,
        ),
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_memory_bytes as f64,
        ),
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds as f64,
        ),
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds as f64,
        ),
        gauge(
            "process_threads",
            "Number of OS threads in the process.",
            p.threads as f64,
        ),
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ]);
    families
}

/// One counter with no labels.
fn counter(name: &str, help: &str, value: u64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::COUNTER,
        vec![(vec![], value as f64)],
    )
}

fn gauge_family(name: &str, help: &str, samples: Vec<(Vec<(&str, &str)>, f64)>) -> MetricFamily {
    family(name, help, MetricType::GAUGE, samples)
}

/// A family of gauges or counters.
fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    samples: Vec<(Vec<(&str, &str)>, f64)>,
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    for (labels, value) in samples {
        let labels = labels
            .into_iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_owned());
                pair.set_value(value.to_owned());
                pair
            })
            .collect();
        let mut metric = Metric::from_label(labels);
        if kind == MetricType::COUNTER {
            let mut counter = prometheus::proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        family.mut_metric().push(metric);
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::BotStatus;

    fn status(ws: &str, username: &str, state: BotState) -> BotStatus {
        BotStatus {
            username: Some(username.to_owned()),
            state,
            ..BotStatus::new(ws, 0)
        }
    }

    fn health(bots: &[BotStatus]) -> Health {
        let mut health = Health::new();
        for bot in bots {
            health.fleet.upsert(bot.clone());
        }
        health
    }

    #[test]
    fn seed_metric_names_are_kept() {
        let health = health(&[
            status("ws_123", "bot1", BotState::Running),
            status("ws_456", "bot2", BotState::Running),
            status("ws_789", "bot3", BotState::Failed),
        ]);
        let text = render(&health, true, None, Instant::now());
        assert!(text.contains("\ntelegram_bots_total 2\n"), "{text}");
        assert!(text.contains("# TYPE telegram_bots_total untyped\n"));
        assert!(text.contains("telegram_bots_info{workspace_id=\"ws_123\",username=\"bot1\"} 1\n"));
        assert!(!text.contains("ws_789\",username"));
        assert!(text.contains("telegram_bots_in_state{state=\"failed\"} 1\n"));
        assert!(text.contains("telegram_bots_ready 1\n"));
    }

    #[test]
    fn empty_fleet_renders_zero_and_no_info_family() {
        let sample = ProcessSample {
            cpu_seconds: 1.5,
            resident_memory_bytes: 4096,
            ..ProcessSample::default()
        };
        let text = render(&Health::new(), false, Some(&sample), Instant::now());
        assert!(text.contains("\ntelegram_bots_total 0\n"));
        assert!(!text.contains("telegram_bots_info"));
        assert!(text.contains("process_cpu_seconds_total 1.5\n"));
        assert!(text.contains("process_resident_memory_bytes 4096\n"));
        assert!(text.contains("telegram_bots_ready 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let health = health(&[status("ws \"q\"\\\n", "b", BotState::Running)]);
        let text = render(&health, true, None, Instant::now());
        assert!(text.contains(r#"workspace_id="ws \"q\"\\\n""#), "{text}");
    }
}
