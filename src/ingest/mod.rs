//! Ingest: turns one validated pprof into per-series appends.
//!
//! Rules (see also `README.md`):
//! - Every sample type becomes its own profile type (`__name__`, see
//!   [`crate::profile_type`]).
//! - Every pprof *string* sample label becomes a series label, so samples with
//!   different string labels land in different series of one profile type and
//!   `{customer="X"}` selects them. A pprof label whose name collides with a
//!   writer label, or starts with `__`, is stored as `pprof_<name>` (repeated
//!   until unique); on output it comes back under its pprof name. A string
//!   label with an empty value is dropped (an empty value is no label, as in
//!   Prometheus); when one sample repeats a key, the first value is kept.
//! - Numeric sample labels (e.g. Go heap `bytes`) stay part of the stack's
//!   identity (sorted by key, unit, value). A label with neither a string nor a
//!   numeric value nor a unit is dropped (Go's pprof reader does the same).
//! - Values are summed per (series, stack); zero sums are not stored. A
//!   sample without locations is kept as the empty stack. When no sample of a
//!   sample type is non-zero, an empty profile (total 0) is still appended to
//!   the series without pprof labels, so totals over time show the zero.
//! - Timestamp = `time_nanos` / 10^6 (ms, floored); when `time_nanos` is 0,
//!   the receive time. Duration and period are kept as given.
//! - A profile is appended to all its series or to none: every series is
//!   checked (order, limits) before the meta store is touched, and the appends
//!   happen with every target series locked.

pub mod plan;

pub use plan::{plan, Plan, PlannedSeries, PlannedStack, ProfileSymbols};

use crate::head::{AppendProfile, Head, HeadError, MemSeries};
use crate::labels::Labels;
use crate::meta::{MetaError, MetaStore};
use crate::pprof::PprofError;
use crate::proto::pprof::Profile;
use std::sync::Arc;

/// Limits on labels; each is reported with a clear error when hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelLimits {
    /// Labels per series, `__name__` included.
    pub max_labels_per_series: usize,
    /// Bytes in a label name.
    pub max_label_name_len: usize,
    /// Bytes in a label value.
    pub max_label_value_len: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        LabelLimits {
            max_labels_per_series: 32,
            max_label_name_len: 1024,
            max_label_value_len: 2048,
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
}

/// Errors of the ingest layer.
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
    /// Out of order, or the series limit.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The meta store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The write-ahead log failed; nothing was written.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    /// A storage backend other than the meta store failed (the DuckDB
    /// backend's database); nothing was written.
    #[error("storage backend: {0}")]
    Backend(String),
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

/// Appends `req` to `head`, storing the entities it brings that `meta`
/// does not hold yet.
///
/// `log` runs once every check has passed, with every target series locked,
/// right before the appends: the write-ahead log writes its record there, so
/// for every series the log's order is the order of its appends, and a
/// failed `log` leaves the head untouched.
pub fn ingest(
    head: &Head,
    meta: &MetaStore,
    limits: &LabelLimits,
    req: &IngestRequest,
    log: &mut dyn FnMut() -> Result<(), IngestError>,
) -> Result<IngestSummary, IngestError> {
    // 1. Normalize: series, content ids, per-stack sums.
    let mut plan = plan::plan(req, limits)?;
    let timestamp = plan.timestamp;

    // 2. Check order and the series limit before touching the meta store.
    let mut new_series = 0;
    for ps in &plan.series {
        match head.get(&ps.labels) {
            Some(series) => {
                let data = series.lock();
                series.check_append(&data, timestamp)?;
            }
            None => new_series += 1,
        }
    }
    if new_series > 0 && head.num_series() + new_series > head.max_series() {
        return Err(HeadError::SeriesLimit {
            limit: head.max_series(),
        }
        .into());
    }

    // 3. Store the entities the meta store does not hold yet, children
    //    before the entities that refer to them.
    store_symbols(meta, &plan.symbols)?;

    // 4. Create the series, lock them all (in ref order), check, log,
    //    append.
    let summary = plan.summary();
    let mut targets: Vec<(Arc<MemSeries>, AppendProfile)> = Vec::with_capacity(plan.series.len());
    for ps in &mut plan.series {
        let series = head.get_or_create(
            ps.labels.clone(),
            ps.profile_type.clone(),
            ps.pprof_labels.clone(),
        )?;
        targets.push((
            series,
            AppendProfile {
                timestamp,
                duration: plan.duration,
                period: plan.period,
                samples: std::mem::take(&mut ps.samples),
            },
        ));
    }
    targets.sort_by_key(|(s, _)| s.sref);
    let mut guards: Vec<_> = targets.iter().map(|(s, _)| s.lock()).collect();
    for ((series, _), g) in targets.iter().zip(guards.iter()) {
        series.check_append(g, timestamp)?;
    }
    log()?;
    for ((series, append), g) in targets.iter().zip(guards.iter_mut()) {
        series.append_locked(g, append)?;
    }
    drop(guards);
    Ok(summary)
}

/// Stores in `meta` the entities of `sym` it does not hold yet: mappings
/// and functions, then locations, then stacks, so every id a stored value
/// refers to resolves.
pub fn store_symbols(meta: &MetaStore, sym: &ProfileSymbols<'_>) -> Result<(), MetaError> {
    meta.ensure_mappings(
        sym.mappings.len(),
        |k| sym.mapping_id(sym.mappings[k]),
        |k| sym.mapping(sym.mappings[k]),
    )?;
    meta.ensure_functions(
        sym.functions.len(),
        |k| sym.function_id(sym.functions[k]),
        |k| sym.function(sym.functions[k]),
    )?;
    meta.ensure_locations(
        sym.locations.len(),
        |k| sym.location_id(sym.locations[k]),
        |k| sym.location(sym.locations[k]),
    )?;
    meta.ensure_stacks(sym.stacks.len(), |k| sym.stacks[k].id, |k| sym.stack(k))?;
    Ok(())
}
