//! The scrape metrics, registered on the daemon's `/metrics` registry
//! (prefix `profstore`) by [`crate::server::Metrics`].
//!
//! | metric | type | what |
//! |---|---|---|
//! | `profstore_scrape_up{job,instance,profile}` | gauge | 1 when the last scrape succeeded, 0 when it failed |
//! | `profstore_scrape_duration_seconds{job,instance,profile}` | gauge | how long the last scrape took (fetch and ingest) |
//! | `profstore_scrape_bytes_total{job,instance,profile}` | counter | response bytes read |
//! | `profstore_scrapes_total{job,instance,profile}` | counter | scrapes attempted |
//! | `profstore_scrape_failures_total{job,instance,profile,reason}` | counter | failed scrapes by [`ScrapeError::reason`](super::ScrapeError::reason) |
//! | `profstore_scrape_targets` | gauge | scrape loops running (targets × profiles) |
//!
//! The series of a target are removed when a reload removes the target
//! (counters included, as Prometheus's per-target series disappear).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The labels of a scrape loop.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct TargetLabels {
    /// `job_name`.
    pub job: String,
    /// The `instance` label.
    pub instance: String,
    /// The profile name.
    pub profile: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    job: String,
    instance: String,
    profile: String,
    reason: String,
}

/// The scrape metrics; clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct ScrapeMetrics {
    up: Family<TargetLabels, Gauge>,
    duration: Family<TargetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    bytes: Family<TargetLabels, Counter>,
    scrapes: Family<TargetLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    targets: Gauge,
}

/// Every reason of [`super::ScrapeError::reason`], to remove a target's
/// failure series.
const REASONS: [&str; 7] = [
    "timeout",
    "connection",
    "http_status",
    "too_large",
    "invalid_pprof",
    "ingest",
    "internal",
];

impl ScrapeMetrics {
    /// Registers the metrics on `r` (whose prefix is `profstore`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "scrape_up",
            "1 when the last scrape of the target and profile succeeded, 0 when it failed",
            self.up.clone(),
        );
        r.register(
            "scrape_duration_seconds",
            "Duration of the last scrape (fetch and ingest)",
            self.duration.clone(),
        );
        r.register(
            "scrape_bytes",
            "Response bytes read by scrapes",
            self.bytes.clone(),
        );
        r.register("scrapes", "Scrapes attempted", self.scrapes.clone());
        r.register(
            "scrape_failures",
            "Failed scrapes by reason",
            self.failures.clone(),
        );
        r.register(
            "scrape_targets",
            "Scrape loops running (targets x profiles)",
            self.targets.clone(),
        );
    }

    /// Records one scrape: `bytes` read, its duration and its outcome
    /// (`Err(reason)` on failure).
    pub fn observe(&self, t: &TargetLabels, bytes: u64, seconds: f64, result: Result<(), &str>) {
        self.scrapes.get_or_create(t).inc();
        self.bytes.get_or_create(t).inc_by(bytes);
        self.duration.get_or_create(t).set(seconds);
        match result {
            Ok(()) => {
                self.up.get_or_create(t).set(1);
            }
            Err(reason) => {
                self.up.get_or_create(t).set(0);
                self.failures
                    .get_or_create(&FailureLabels {
                        job: t.job.clone(),
                        instance: t.instance.clone(),
                        profile: t.profile.clone(),
                        reason: reason.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Removes the series of a target that is no longer scraped.
    pub fn remove(&self, t: &TargetLabels) {
        self.up.remove(t);
        self.duration.remove(t);
        self.bytes.remove(t);
        self.scrapes.remove(t);
        for reason in REASONS {
            self.failures.remove(&FailureLabels {
                job: t.job.clone(),
                instance: t.instance.clone(),
                profile: t.profile.clone(),
                reason: reason.to_string(),
            });
        }
    }

    /// Sets the number of running loops.
    pub fn set_targets(&self, n: usize) {
        self.targets.set(n as i64);
    }
}
