//! The voice pipeline's families: outcomes, retries and errors by step, bytes
//! downloaded, the latency from a message's arrival to its event's acceptance, and the
//! backlog (jobs in memory, the age of the oldest).

use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};

use super::{counter, family, gauge_family};
use crate::fleet::VoiceStatus;

pub(super) fn families(voice: &VoiceStatus, oldest_age_seconds: f64) -> Vec<MetricFamily> {
    let stats = &voice.stats;
    vec![
        family(
            "telegram_bots_voice_messages_total",
            "Voice messages stored and announced (done), or given up on (failed: see `outbox list --failed`).",
            MetricType::COUNTER,
            vec![
                (vec![("outcome", "done")], stats.done as f64),
                (vec![("outcome", "failed")], stats.failed as f64),
            ],
        ),
        counter(
            "telegram_bots_voice_retries_total",
            "Voice message steps that failed for now and are retried after a backoff.",
            stats.retried,
        ),
        family(
            "telegram_bots_voice_errors_total",
            "Voice message errors by step (download, s3, inngest, outbox) and kind (transient, permanent).",
            MetricType::COUNTER,
            ["download", "s3", "inngest", "outbox"]
                .into_iter()
                .flat_map(|step| {
                    ["transient", "permanent"].into_iter().map(move |kind| {
                        let n = stats.errors.get(&(step, kind)).copied().unwrap_or(0);
                        (vec![("step", step), ("kind", kind)], n as f64)
                    })
                })
                .collect(),
        ),
        counter(
            "telegram_bots_voice_downloaded_bytes_total",
            "Bytes of voice files downloaded from Telegram.",
            stats.bytes_downloaded,
        ),
        latency(voice),
        gauge_family(
            "telegram_bots_voice_in_flight",
            "Voice messages this process is working on (more may wait in the outbox).",
            vec![(vec![], voice.in_memory as f64)],
        ),
        gauge_family(
            "telegram_bots_voice_outbox_pending",
            "Voice messages pending in the outbox (all replicas'), as last counted.",
            voice
                .outbox_pending
                .map(|n| (vec![], n as f64))
                .into_iter()
                .collect(),
        ),
        gauge_family(
            "telegram_bots_voice_outbox_oldest_pending_age_seconds",
            "Age of the oldest voice message pending in the outbox (0 when none).",
            vec![(vec![], oldest_age_seconds)],
        ),
    ]
}

fn latency(voice: &VoiceStatus) -> MetricFamily {
    let h = &voice.stats.latency;
    let mut histogram = Histogram::default();
    histogram.set_sample_count(h.count);
    histogram.set_sample_sum(h.sum);
    let buckets = h.bounds.iter().zip(&h.counts).map(|(bound, count)| {
        let mut bucket = Bucket::default();
        bucket.set_upper_bound(*bound);
        bucket.set_cumulative_count(*count);
        bucket
    });
    histogram.set_bucket(buckets.collect());
    let mut metric = Metric::default();
    metric.set_histogram(histogram);
    let mut family = MetricFamily::default();
    family.set_name("telegram_bots_voice_latency_seconds".to_owned());
    family.set_help(
        "Seconds from a voice message's arrival to its event's acceptance by Inngest.".to_owned(),
    );
    family.set_field_type(MetricType::HISTOGRAM);
    family.mut_metric().push(metric);
    family
}
