//! `wisp_request_duration_seconds{stage}` as per-thread shards.
//!
//! Every authenticated request observes four stages. With `prometheus`'s own
//! histogram each observation is four atomic read-modify-writes (one a
//! compare-and-swap loop on the `f64` sum) on cache lines that every worker
//! thread writes, so the lines bounce between cores on every request. Here a
//! thread writes only its own shard (two uncontended atomic adds per
//! observation), and a scrape adds the shards up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto;

/// Shards per histogram. Threads beyond this share shards (still correct,
/// only contended again); wisp runs a few worker threads.
const SHARDS: usize = 16;

/// One thread's counts for one stage: a counter per bucket (the last one is
/// `+Inf`) and the sum in nanoseconds. Aligned so that two shards never
/// share a cache line (128: adjacent-line prefetching pairs lines).
#[repr(align(128))]
struct Shard<const B: usize> {
    buckets: [AtomicU64; B],
    sum_nanos: AtomicU64,
}

impl<const B: usize> Shard<B> {
    fn new() -> Shard<B> {
        Shard {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

/// Number of finite bucket bounds + 1 (`+Inf`).
const BUCKETS: usize = super::DURATION_BUCKETS.len() + 1;

/// One stage's histogram.
struct Stage {
    label: &'static str,
    shards: Box<[Shard<BUCKETS>]>,
}

/// The index of the shard this thread writes, fixed for the thread's life.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|index| *index)
}

impl Stage {
    fn new(label: &'static str) -> Stage {
        Stage {
            label,
            shards: (0..SHARDS).map(|_| Shard::new()).collect(),
        }
    }

    fn observe(&self, seconds: f64) {
        // `shard_index() < SHARDS == shards.len()`.
        let shard = &self.shards[shard_index()];
        // The first bound `seconds` does not exceed (`le`), else `+Inf`.
        let bucket = super::DURATION_BUCKETS.partition_point(|&bound| bound < seconds);
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // `as` saturates: a negative or NaN duration adds 0, never wraps.
        let nanos = (seconds * 1e9) as u64;
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Adds up the shards: per-bucket counts (not cumulative) and the sum.
    fn totals(&self) -> ([u64; BUCKETS], u64) {
        let mut counts = [0u64; BUCKETS];
        let mut sum_nanos = 0u64;
        for shard in self.shards.iter() {
            for (total, bucket) in counts.iter_mut().zip(&shard.buckets) {
                *total = total.wrapping_add(bucket.load(Ordering::Relaxed));
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Ordering::Relaxed));
        }
        (counts, sum_nanos)
    }

    /// This stage as a Prometheus histogram metric. The count is the sum of
    /// the buckets, so `+Inf` always equals `_count` in a scrape, even one
    /// taken while other threads observe.
    fn metric(&self) -> proto::Metric {
        let (counts, sum_nanos) = self.totals();
        let mut cumulative = 0u64;
        let buckets = super::DURATION_BUCKETS
            .iter()
            .zip(counts)
            .map(|(&bound, count)| {
                cumulative = cumulative.wrapping_add(count);
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let total = counts
            .iter()
            .fold(0u64, |sum, &count| sum.wrapping_add(count));
        let mut histogram = proto::Histogram::default();
        histogram.set_sample_count(total);
        histogram.set_sample_sum(sum_nanos as f64 / 1e9);
        histogram.set_bucket(buckets);
        let mut label = proto::LabelPair::default();
        label.set_name("stage".to_owned());
        label.set_value(self.label.to_owned());
        let mut metric = proto::Metric::default();
        metric.set_label(vec![label]);
        metric.set_histogram(histogram);
        metric
    }
}

/// A handle on one stage's histogram, cheap to clone.
#[derive(Clone)]
pub struct StageTimer(Arc<Stage>);

impl std::fmt::Debug for StageTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StageTimer").field(&self.0.label).finish()
    }
}

impl StageTimer {
    /// Records one duration, in seconds.
    pub fn observe(&self, seconds: f64) {
        self.0.observe(seconds);
    }

    /// Observations so far (all shards).
    #[cfg(test)]
    fn count(&self) -> u64 {
        let (counts, _) = self.0.totals();
        counts.iter().sum()
    }
}

/// The registered collector for the family: one histogram per stage label,
/// written through the [`StageTimer`]s [`StageCollector::new`] hands out.
pub(super) struct StageCollector {
    desc: Desc,
    help: String,
    stages: Vec<Arc<Stage>>,
}

impl StageCollector {
    /// The family `name` with one histogram per label, and the timer of each
    /// label, in the same order.
    pub(super) fn new<const N: usize>(
        name: &str,
        help: &str,
        labels: [&'static str; N],
    ) -> Result<(StageCollector, [StageTimer; N]), prometheus::Error> {
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            vec!["stage".to_owned()],
            Default::default(),
        )?;
        let stages = labels.map(|label| Arc::new(Stage::new(label)));
        let collector = StageCollector {
            desc,
            help: help.to_owned(),
            stages: stages.to_vec(),
        };
        Ok((collector, stages.map(StageTimer)))
    }
}

impl Collector for StageCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let mut family = proto::MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        family.set_metric(self.stages.iter().map(|stage| stage.metric()).collect());
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, Registry, TextEncoder};

    use super::*;

    fn render(collector: StageCollector) -> String {
        let registry = Registry::new();
        registry.register(Box::new(collector)).unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_what_prometheus_own_histogram_renders() {
        let (ours, timers) = StageCollector::new("t_seconds", "Help.", ["a", "b"]).unwrap();
        let theirs = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("t_seconds", "Help.")
                .buckets(super::super::DURATION_BUCKETS.to_vec()),
            &["stage"],
        )
        .unwrap();
        // On a bound, between bounds, below the first and above the last.
        // Sums are exact in nanoseconds for these values.
        for (stage, seconds) in [
            (0, 0.00005),
            (0, 0.0003),
            (0, 0.000001),
            (0, 42.0),
            (1, 1.0),
            (1, 0.002),
        ] {
            timers[stage].observe(seconds);
            theirs
                .with_label_values(&[["a", "b"][stage]])
                .observe(seconds);
        }
        let registry = Registry::new();
        registry.register(Box::new(theirs)).unwrap();
        let mut expected = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut expected)
            .unwrap();
        assert_eq!(render(ours), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn threads_write_their_own_shards_and_a_scrape_adds_them_up() {
        let (collector, [timer]) = StageCollector::new("t_seconds", "Help.", ["a"]).unwrap();
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let timer = timer.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        timer.observe(0.001);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let expected = 1000 * (SHARDS as u64 + 3);
        assert_eq!(timer.count(), expected);
        let text = render(collector);
        assert!(
            text.contains(&format!("t_seconds_count{{stage=\"a\"}} {expected}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "t_seconds_bucket{{stage=\"a\",le=\"0.001\"}} {expected}\n"
            )),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{stage=\"a\",le=\"0.0005\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn a_negative_or_nan_duration_counts_without_corrupting_the_sum() {
        let (collector, [timer]) = StageCollector::new("t_seconds", "Help.", ["a"]).unwrap();
        timer.observe(-1.0);
        timer.observe(f64::NAN);
        timer.observe(0.5);
        assert_eq!(timer.count(), 3);
        let text = render(collector);
        assert!(text.contains("t_seconds_sum{stage=\"a\"} 0.5\n"), "{text}");
    }
}
