//! The two traits every storage backend implements, and their shared types.
//!
//! [`Ingester`] takes validated pprof profiles; [`Querier`] answers label and
//! profile queries. The time-series backend ([`crate::store::Store`])
//! implements both; so can a second backend, and the same test suite runs
//! against each.
//!
//! Time ranges are inclusive on both ends and in milliseconds since the Unix
//! epoch. An empty matcher list selects every series.

use crate::index::Matcher;
use crate::ingest::{IngestError, IngestRequest, IngestSummary};
use crate::labels::Labels;
use crate::meta::MetaError;
use crate::profile_type::ProfileType;
use crate::query::{self, Profile};

/// How far after `t` a [`Querier::single`] query looks for a profile: 5
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

/// Errors of the query layer.
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
    /// The meta store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A storage backend other than the meta store failed (the DuckDB
    /// backend's database).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Writes profiles.
pub trait Ingester: Send + Sync {
    /// Stores one profile: all its series or none.
    fn ingest(&self, req: IngestRequest) -> Result<IngestSummary, IngestError>;
}

/// Answers queries.
pub trait Querier: Send + Sync {
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
    /// step (ms, > 0), the totals are summed per bucket
    /// `[start + k·step, start + (k+1)·step)`, reported at the bucket's start;
    /// empty buckets are left out.
    fn query_range(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<SeriesPoints>, QueryError>;

    /// The profiles of all matching series (one profile type) at `t`: each
    /// series contributes its first profile in `[t, t + SINGLE_WINDOW_MS]`,
    /// and those are merged.
    fn single(&self, matchers: &[Matcher], t: i64) -> Result<Profile, QueryError>;

    /// One profile: the sum per stack (and pprof labels) over every matching
    /// profile in `range`. Its time is the earliest profile's, its duration
    /// the sum of the durations.
    fn merge(&self, matchers: &[Matcher], range: TimeRange) -> Result<Profile, QueryError>;

    /// `b` compared against the base `a`, each a merge selection, as one
    /// profile (see [`crate::query`] for the convention).
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
        Ok(query::diff(base, compare))
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
