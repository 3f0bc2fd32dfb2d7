//! The engine layer: [`Storage`], the one trait every storage backend
//! implements, and what it speaks in: [`TimeRange`], [`SeriesPoints`],
//! [`Partial`] (the mergeable partial result profile queries are built
//! from), [`Limits`], [`IngestStats`] and the backend-neutral
//! [`QueryError`].
//!
//! The daemon's edges (server, scrapes, Pyroscope routes) and the tests see
//! a backend only through [`Storage`]; only `main.rs` and `config.rs` name
//! concrete backends. [`suite`] is the conformance suite any backend runs.

pub mod group;
pub mod live;
pub mod partial;
pub mod peer;
pub mod suite;

pub use partial::{Partial, Pick};

use crate::ingest::{IngestError, IngestRequest, IngestSummary, LabelLimits, TimePolicy};
use crate::model::{
    self, Labels, MatchOp, Matcher, Profile, ProfileType, StorageError, SymbolError, METRIC_NAME,
};
use crate::pprof::DecodeLimits;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How far after `t` a [`Storage::single`] query looks for a profile: 5
/// minutes, a generous multiple of common scrape intervals (10 s – 1 min).
pub const SINGLE_WINDOW_MS: i64 = 5 * 60 * 1000;

/// An inclusive time range in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First ms included.
    pub start: i64,
    /// Last ms included.
    pub end: i64,
}

impl TimeRange {
    /// All of time.
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// `[start, end]`; an error when `end < start`.
    pub fn new(start: i64, end: i64) -> Result<TimeRange, QueryError> {
        if end < start {
            return Err(QueryError::InvalidRange(format!(
                "end {end} is before start {start}"
            )));
        }
        Ok(TimeRange { start, end })
    }
}

/// One series' points of a range query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesPoints {
    /// The series' labels.
    pub labels: Labels,
    /// `(timestamp ms, total)`, in time order.
    pub points: Vec<(i64, i64)>,
}

/// Errors of the query layer, the same for every backend.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A single/merge/diff selector matched several profile types.
    #[error("the selector matches {} profile types, want one: {}", .0.len(), .0.join(", "))]
    MultipleProfileTypes(Vec<String>),
    /// Nothing matched and the profile type is unknown.
    #[error("no profiles: {0}")]
    NoData(String),
    /// A bad time range or step.
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// The two sides of a diff are of different profile types.
    #[error("cannot diff {0} against {1}: different profile types")]
    DiffTypeMismatch(String, String),
    /// A stack could not be resolved.
    #[error("symbols: {0}")]
    Symbols(#[from] SymbolError),
    /// The backend failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// All limits of a backend: what every write is checked against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Limits on pprof bodies.
    pub decode: DecodeLimits,
    /// Limits on labels.
    pub labels: LabelLimits,
    /// Series in the backend.
    pub max_series: usize,
    /// Which timestamps are accepted.
    pub time: TimePolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            decode: DecodeLimits::default(),
            labels: LabelLimits::default(),
            max_series: 1_000_000,
            time: TimePolicy::default(),
        }
    }
}

/// Running totals of what a backend accepted since it opened (a replay of
/// its own log not included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    /// Profiles accepted.
    pub profiles: u64,
    /// (series, stack) samples appended.
    pub samples: u64,
    /// pprof bytes accepted (as received, or as encoded again when the
    /// caller passed a decoded profile).
    pub bytes: u64,
}

/// Sets a backend's own metrics from the backend; the server calls it
/// before each render of `/metrics` (on the blocking pool).
pub type RefreshMetrics = Box<dyn Fn() + Send + Sync>;

/// A storage backend: the one seam between the daemon (server, scrapes,
/// Pyroscope routes, CLI) and the data.
///
/// Contracts:
/// - Every method may block (disk, sled, DuckDB): async callers run them
///   on a blocking pool.
/// - A write is stored in all its series or in none; an error means
///   nothing of it was stored.
/// - Time ranges are inclusive at both ends, in ms since the epoch; an
///   empty matcher list selects every series.
/// - Profile queries (single, merge, diff) are built once, here, from each
///   backend's [`Partial`]s.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The limits every write is checked against.
    fn limits(&self) -> &Limits;

    /// Stores `req`; `raw` is the pprof exactly as received, when the
    /// caller has it (what [`Storage::ingest_stats`] counts as bytes; a
    /// backend may also keep it, as the time-series backend's write-ahead
    /// log does). `req.profile` is `raw` decoded, except that its
    /// `time_nanos` may have been replaced (a scrape's start time).
    /// Returns once the write is durable as the backend promises.
    fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError>;

    /// Stores `req` ([`Storage::ingest_raw`] without the raw bytes).
    fn ingest(&self, req: IngestRequest) -> Result<IngestSummary, IngestError> {
        self.ingest_raw(&req, None)
    }

    /// Decodes, validates and stores a pprof body (gzipped or not).
    fn ingest_bytes(
        &self,
        body: &[u8],
        name: Option<String>,
        labels: Labels,
        received_at_ms: i64,
    ) -> Result<IngestSummary, IngestError> {
        let profile = crate::pprof::decode(body, &self.limits().decode)?;
        let req = IngestRequest {
            name,
            labels,
            delta: None,
            profile,
            received_at_ms,
        };
        self.ingest_raw(&req, Some(body))
    }

    /// What the backend accepted since it opened.
    fn ingest_stats(&self) -> IngestStats;

    /// Series stored now (the head's, for the time-series backend).
    fn num_series(&self) -> usize;

    /// Label names of the series matching `matchers` with data in `range`,
    /// sorted.
    fn label_names(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError>;

    /// Values of label `name` over the matching series, sorted.
    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError>;

    /// Label sets of the matching series, sorted.
    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>, QueryError>;

    /// Profile types of the matching series, sorted.
    fn profile_types(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<ProfileType>, QueryError>;

    /// Per series, `(timestamp, total)` of each profile in `range`. With a
    /// step (ms, checked by [`check_step`]), the totals are summed per
    /// bucket `[start + k·step, start + (k+1)·step)`, reported at the
    /// bucket's start; empty buckets are left out. Sorted by labels.
    fn query_range(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<SeriesPoints>, QueryError>;

    /// The partial result of the profiles `pick` selects in the series
    /// matching `matchers`, with every stack it names resolved.
    fn partial(&self, matchers: &[Matcher], pick: Pick) -> Result<Partial, QueryError>;

    /// The profiles of all matching series (one profile type) at `t`: each
    /// series contributes its first profile in `[t, t + SINGLE_WINDOW_MS]`,
    /// and those are merged.
    fn single(&self, matchers: &[Matcher], t: i64) -> Result<Profile, QueryError> {
        let range = TimeRange {
            start: t,
            end: t.saturating_add(SINGLE_WINDOW_MS),
        };
        self.partial(matchers, Pick::First(range))?.finish(matchers)
    }

    /// One profile: the sum per stack (and pprof labels) over every matching
    /// profile in `range`. Its time is the earliest profile's, its duration
    /// the sum of the durations.
    fn merge(&self, matchers: &[Matcher], range: TimeRange) -> Result<Profile, QueryError> {
        self.partial(matchers, Pick::All(range))?.finish(matchers)
    }

    /// `b` compared against the base `a`, each a merge selection, as one
    /// profile (see [`crate::model::profile`] for the convention).
    fn diff(
        &self,
        a: (&[Matcher], TimeRange),
        b: (&[Matcher], TimeRange),
    ) -> Result<Profile, QueryError> {
        let base = self.merge(a.0, a.1)?;
        let compare = self.merge(b.0, b.1)?;
        if base.profile_type != compare.profile_type {
            return Err(QueryError::DiffTypeMismatch(
                base.profile_type.to_string(),
                compare.profile_type.to_string(),
            ));
        }
        Ok(model::diff(base, compare))
    }

    /// Registers the backend's own metrics in `registry` (which carries the
    /// `profstore_` prefix) and returns what refreshes them.
    fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics;

    /// Starts the backend's background work (the time-series backend's
    /// block cuts and retention); [`Storage::close`] stops it.
    fn start_background(self: Arc<Self>) -> Result<(), StorageError> {
        Ok(())
    }

    /// Stops the background work and makes everything durable for the next
    /// start (the time-series backend's head snapshot, DuckDB's
    /// checkpoint). Call it once no write is in flight.
    fn close(&self) -> Result<(), StorageError>;
}

/// Refuses a non-positive step.
pub fn check_step(step: Option<i64>) -> Result<(), QueryError> {
    match step {
        Some(step) if step <= 0 => Err(QueryError::InvalidRange(format!(
            "step {step} ms must be positive"
        ))),
        _ => Ok(()),
    }
}

/// The one profile type of a profile query over series of `types`: the
/// error for several; for none, the type a `__name__="…"` matcher names
/// (so an empty answer still has a type), else [`QueryError::NoData`].
pub fn profile_type_of(
    types: &BTreeSet<ProfileType>,
    matchers: &[Matcher],
) -> Result<ProfileType, QueryError> {
    let mut it = types.iter();
    match (it.next(), it.next()) {
        (Some(t), None) => Ok(t.clone()),
        (None, _) => matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
            .and_then(|m| ProfileType::parse(&m.value).ok())
            .ok_or_else(|| {
                QueryError::NoData(
                    "no series match the selector in the range, and it names no profile type"
                        .into(),
                )
            }),
        _ => Err(QueryError::MultipleProfileTypes(
            types.iter().map(|t| t.to_string()).collect(),
        )),
    }
}

/// Sums `(t, v)` points (in time order) into step buckets. The bucket
/// arithmetic is done in `i128`, so any range (even [`TimeRange::ALL`]) and
/// step give the bucket start without overflow (points lie in the range, so
/// the start fits in an `i64`).
pub fn bucket_points(points: &[(i64, i64)], range: TimeRange, step: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    let (start, step128) = (i128::from(range.start), i128::from(step));
    for &(t, v) in points {
        let k = (i128::from(t) - start).div_euclid(step128);
        // start ≤ bucket start ≤ t, so it fits in an i64.
        let bt = (start + k * step128) as i64;
        match out.last_mut() {
            Some(last) if last.0 == bt => last.1 = last.1.wrapping_add(v),
            _ => out.push((bt, v)),
        }
    }
    out
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn buckets_of_the_whole_range_do_not_overflow() {
        let pts = [(-5, 1), (0, 2), (9, 3), (i64::MAX, 4)];
        let b = bucket_points(&pts, TimeRange::ALL, 10);
        assert_eq!(b.iter().map(|p| p.1).sum::<i64>(), 10);
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0), "{b:?}");
        for &(t, _) in &pts {
            assert!(
                b.iter()
                    .any(|&(s, _)| s <= t && i128::from(t) - i128::from(s) < 10),
                "{t} has no bucket in {b:?}"
            );
        }
        let r = TimeRange::new(0, 100).unwrap();
        assert_eq!(
            bucket_points(&[(0, 1), (9, 1), (10, 1)], r, 10),
            vec![(0, 2), (10, 1)]
        );
    }
}
