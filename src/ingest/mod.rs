//! Ingest: the rules that turn one validated pprof into per-series appends,
//! the same for every backend ([`plan`]), and the request, summary and
//! error types of a write.
//!
//! Rules (see also `README.md`):
//! - Every sample type becomes its own profile type (`__name__`, see
//!   [`crate::model::profile_type`]).
//! - Every pprof *string* sample label becomes a series label, so samples with
//!   different string labels land in different series of one profile type and
//!   `{customer="X"}` selects them. A pprof label whose name collides with a
//!   writer label, or starts with `__`, is stored as `pprof_<name>` (repeated
//!   until unique); on output it comes back under its pprof name. A string
//!   label with an empty value is dropped (an empty value is no label, as in
//!   Prometheus); when one sample repeats a key, the first value is kept.
//! - Except the *sample labels* ([`LabelLimits::sample_labels`], by default
//!   `span_id`, `trace_id` and `profile_id`): they do not make series. A
//!   sample's value counts in its series like any other, and is also kept
//!   with its sample labels (per series, profile, label tuple and stack), so
//!   `{span_id="X"}` selects the samples that carried it, in every query,
//!   without a series per span. A matcher on such a name matches what a
//!   series label would: a sample without it has the value "".
//! - Numeric sample labels (e.g. Go heap `bytes`) stay part of the stack's
//!   identity (sorted by key, unit, value). A label with neither a string nor a
//!   numeric value nor a unit is dropped (Go's pprof reader does the same).
//! - Values are summed per (series, stack); zero sums are not stored. A
//!   sample without locations is kept as the empty stack. When no sample of a
//!   sample type is non-zero, an empty profile (total 0) is still appended to
//!   the series without pprof labels, so totals over time show the zero.
//! - Timestamp = `time_nanos` / 10^6 (ms, floored); when `time_nanos` is 0,
//!   the receive time. Duration and period are kept as given.
//! - A profile is stored in all its series or in none: [`plan`] checks every
//!   rule and limit before a backend writes anything, and each backend
//!   checks order and its series limit for every series first.

pub mod plan;
pub mod time_policy;

pub use plan::{plan, Plan, PlannedSeries, PlannedStack, ProfileSymbols};
pub use time_policy::{Clock, TimePolicy, DEFAULT_MAX_FUTURE_MS};

use crate::model::labels::{Labels, DEFAULT_SAMPLE_LABELS};
use crate::model::StorageError;
use crate::pprof::PprofError;
use crate::proto::pprof::Profile;

/// The label rules of a write: limits, each reported with a clear error
/// when hit, and which pprof labels stay with their samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelLimits {
    /// Labels per series, `__name__` included.
    pub max_labels_per_series: usize,
    /// Bytes in a label name.
    pub max_label_name_len: usize,
    /// Bytes in a label value.
    pub max_label_value_len: usize,
    /// pprof string labels kept per sample rather than as series labels
    /// (default [`DEFAULT_SAMPLE_LABELS`]; empty: every pprof label makes
    /// series, as the columnar backend keeps them).
    pub sample_labels: Vec<String>,
}

impl Default for LabelLimits {
    fn default() -> Self {
        LabelLimits {
            max_labels_per_series: 32,
            max_label_name_len: 1024,
            max_label_value_len: 2048,
            sample_labels: DEFAULT_SAMPLE_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// One profile to ingest.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The profile name (`process_cpu`, `memory`, ...); inferred per sample
    /// type when `None`.
    pub name: Option<String>,
    /// The writer's labels (no `__name__`).
    pub labels: Labels,
    /// Whether the profile is a delta profile; inferred when `None`.
    pub delta: Option<bool>,
    /// The profile, validated by [`crate::pprof::validate`].
    pub profile: Profile,
    /// Receive time in ms (used when the profile has no time).
    pub received_at_ms: i64,
}

/// What an ingest wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IngestSummary {
    /// Series written to.
    pub series: usize,
    /// (stack, value) samples written.
    pub samples: usize,
    /// The timestamp used (ms).
    pub timestamp_ms: i64,
    /// Profile types written, sorted.
    pub profile_types: Vec<String>,
    /// Series that already held this very profile at this timestamp (a
    /// retry), so nothing was added to them.
    pub duplicate_series: usize,
}

impl IngestSummary {
    /// True when every series already held the profile: the write was a
    /// retry and changed nothing.
    pub fn is_duplicate(&self) -> bool {
        self.series > 0 && self.duplicate_series == self.series
    }
}

/// Errors of the ingest layer, the same for every backend.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The pprof body is invalid or too large.
    #[error(transparent)]
    Pprof(#[from] PprofError),
    /// A label or the profile name is invalid.
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// A label limit was hit.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// A profile at or before its series' latest timestamp (a backend that
    /// accepts profiles only in time order: DuckDB's).
    #[error("out of order: series {labels} already has a profile at {max_time} ms, got {timestamp} ms (this backend takes each series' profiles in time order)")]
    OutOfOrder {
        /// The series.
        labels: String,
        /// The rejected timestamp.
        timestamp: i64,
        /// The series' latest timestamp.
        max_time: i64,
    },
    /// A profile older than the retention: it would be deleted.
    #[error("too old: {0}")]
    TooOld(String),
    /// The node only reads (a querier): writes go to an ingester.
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// A profile stamped further after the daemon's clock than the margin.
    #[error("too far in the future: {0}")]
    TooNew(String),
    /// Creating the series would exceed the series limit.
    #[error("series limit reached: the store holds {limit} series (limit max_series)")]
    SeriesLimit {
        /// The limit.
        limit: usize,
    },
    /// The backend failed; nothing was written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks one label: a non-empty name, name and value within the limits.
pub fn check_label(name: &str, value: &str, limits: &LabelLimits) -> Result<(), IngestError> {
    if name.is_empty() {
        return Err(IngestError::InvalidLabels("empty label name".into()));
    }
    if name.len() > limits.max_label_name_len {
        return Err(IngestError::Limit(format!(
            "label name {:?}… is {} bytes, limit max_label_name_len is {}",
            name.chars().take(32).collect::<String>(),
            name.len(),
            limits.max_label_name_len
        )));
    }
    if value.len() > limits.max_label_value_len {
        return Err(IngestError::Limit(format!(
            "value of label {name:?} is {} bytes, limit max_label_value_len is {}",
            value.len(),
            limits.max_label_value_len
        )));
    }
    Ok(())
}

/// Checks the writer's labels: names non-empty, not reserved, within limits.
pub fn check_writer_labels(labels: &Labels, limits: &LabelLimits) -> Result<(), IngestError> {
    for l in labels {
        if l.name.starts_with("__") {
            return Err(IngestError::InvalidLabels(format!(
                "label name {:?} is reserved (names starting with \"__\" belong to profstore)",
                l.name
            )));
        }
        check_label(&l.name, &l.value, limits)?;
    }
    Ok(())
}

/// Checks a profile name given by a writer.
pub fn check_profile_name(name: &str) -> Result<(), IngestError> {
    if name.is_empty() || name.contains(':') || name.contains(char::is_whitespace) {
        return Err(IngestError::InvalidLabels(format!(
            "profile name {name:?} must be non-empty without ':' or spaces"
        )));
    }
    Ok(())
}

/// The timestamp (ms) `req`'s profile is stored at: `time_nanos` / 10^6,
/// floored, or the receive time when `time_nanos` is 0.
pub fn profile_timestamp(req: &IngestRequest) -> i64 {
    if req.profile.time_nanos != 0 {
        req.profile.time_nanos.div_euclid(1_000_000)
    } else {
        req.received_at_ms
    }
}
