//! [`Partial`]: the mergeable partial result every profile query (single,
//! merge, diff) is built from.
//!
//! A backend answers [`super::Storage::partial`] with the per-stack sums of
//! the profiles it read, keyed by content id, plus what the final profile
//! keeps of their metadata. Partials of disjoint parts of the data (blocks,
//! the head, other nodes) combine with [`Partial::merge`], which is
//! associative and commutative, so the answer does not depend on how the
//! data was split or in which order the parts arrive; [`Partial::finish`]
//! turns the whole into the result [`Profile`].
//!
//! Semantics kept from the profiles read:
//! - values: summed per (pprof string labels, stack), wrapping as the head
//!   sums; zero sums are left out of the result;
//! - time: the earliest profile's (0 when none was read);
//! - duration: each ingested profile once, although a profile with pprof
//!   string labels is split over several series: reads are keyed by their
//!   origin (the series labels without the pprof ones) and timestamp;
//! - period: that of the latest profile of the last series in label order.

use super::{profile_type_of, QueryError};
use crate::model::{Labels, Matcher, Profile, ProfileType, Sample, Stack, StackId, SymbolError};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Which profiles of each selected series a partial reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Every profile in the range (a merge).
    All(super::TimeRange),
    /// Each series' first profile in the range (a single).
    First(super::TimeRange),
}

impl Pick {
    /// The range the pick reads from.
    pub fn range(&self) -> super::TimeRange {
        match self {
            Pick::All(r) | Pick::First(r) => *r,
        }
    }
}

/// The per-stack sums of some profiles and the metadata a merge keeps (see
/// the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partial {
    /// Profile types of the series selected. More than one makes the query
    /// an error, so a backend may stop reading once it sees two.
    pub types: BTreeSet<ProfileType>,
    /// Per pprof string label values ((pprof name, value), sorted), the sum
    /// per stack.
    pub sums: BTreeMap<Vec<(String, String)>, FxHashMap<StackId, i64>>,
    /// The resolved stacks of every id in `sums`.
    pub stacks: FxHashMap<StackId, Arc<Stack>>,
    /// Every profile read: (origin, timestamp) → duration (ns).
    pub reads: FxHashMap<(u64, i64), i64>,
    /// The latest profile read of the last series in label order: (series
    /// labels, timestamp, period).
    pub last: Option<(Labels, i64, i64)>,
}

impl Partial {
    /// Adds one series' metadata: the profiles `reads` ((timestamp,
    /// duration) each) of the series `labels` with origin hash `origin`;
    /// `latest` is the (timestamp, period) of the latest profile read. Its
    /// sums go in through [`Partial::add_sums_with`].
    pub fn add_series(
        &mut self,
        labels: &Labels,
        origin: u64,
        reads: &[(i64, i64)],
        latest: Option<(i64, i64)>,
    ) {
        for &(ts, duration) in reads {
            let d = self.reads.entry((origin, ts)).or_insert(duration);
            *d = (*d).max(duration);
        }
        if let Some((ts, period)) = latest {
            self.note_last(labels, ts, period);
        }
    }

    /// Runs `add` on the sums of the pprof label values `pprof` (sorted),
    /// for it to add one series' values into (wrapping): one map per label
    /// values, not one per series. A map left empty is not kept.
    pub fn add_sums_with<T>(
        &mut self,
        pprof: Vec<(String, String)>,
        add: impl FnOnce(&mut FxHashMap<StackId, i64>) -> T,
    ) -> T {
        if let Some(acc) = self.sums.get_mut(&pprof) {
            return add(acc);
        }
        let mut acc = FxHashMap::default();
        let out = add(&mut acc);
        if !acc.is_empty() {
            self.sums.insert(pprof, acc);
        }
        out
    }

    /// Adds one profile read of the series `labels` (origin hash `origin`)
    /// to the metadata (its values go to `sums` separately).
    pub fn add_read(&mut self, labels: &Labels, origin: u64, ts: i64, duration: i64, period: i64) {
        let d = self.reads.entry((origin, ts)).or_insert(duration);
        *d = (*d).max(duration);
        self.note_last(labels, ts, period);
    }

    fn note_last(&mut self, labels: &Labels, ts: i64, period: i64) {
        let later = match &self.last {
            None => true,
            Some((l, t, _)) => (labels, ts) > (l, *t),
        };
        if later {
            self.last = Some((labels.clone(), ts, period));
        }
    }

    /// Merges `o` into `self` (associative and commutative).
    pub fn merge(&mut self, o: Partial) {
        self.types.extend(o.types);
        for (pprof, sums) in o.sums {
            add_sums(self.sums.entry(pprof).or_default(), sums);
        }
        for (id, s) in o.stacks {
            self.stacks.entry(id).or_insert(s);
        }
        for (k, d) in o.reads {
            let e = self.reads.entry(k).or_insert(d);
            *e = (*e).max(d);
        }
        if let Some((labels, ts, period)) = o.last {
            self.note_last(&labels, ts, period);
        }
    }

    /// The stack ids the sums name, each once.
    pub fn stack_ids(&self) -> BTreeSet<StackId> {
        self.sums.values().flat_map(|s| s.keys().copied()).collect()
    }

    /// The result profile: the one profile type (see
    /// [`super::profile_type_of`]) and the samples sorted by pprof labels,
    /// then stack id. Errors when a stack was not resolved.
    pub fn finish(self, matchers: &[Matcher]) -> Result<Profile, QueryError> {
        let profile_type = profile_type_of(&self.types, matchers)?;
        let mut samples = Vec::new();
        for (labels, acc) in self.sums {
            let mut stacks: Vec<(StackId, i64)> =
                acc.into_iter().filter(|(_, v)| *v != 0).collect();
            stacks.sort_unstable_by_key(|(k, _)| *k);
            for (id, value) in stacks {
                let stack = self.stacks.get(&id).cloned().ok_or(SymbolError::NotFound {
                    kind: "stacktrace",
                    id: id.0,
                })?;
                samples.push(Sample {
                    stack,
                    labels: labels.clone(),
                    value,
                });
            }
        }
        let duration = self.reads.values().fold(0i64, |a, d| a.saturating_add(*d));
        Ok(Profile {
            profile_type,
            time_ms: self.reads.keys().map(|k| k.1).min().unwrap_or(0),
            duration_ns: duration,
            period: self.last.map_or(0, |l| l.2),
            samples,
        })
    }
}

fn add_sums(into: &mut FxHashMap<StackId, i64>, from: FxHashMap<StackId, i64>) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (k, v) in from {
        let x = into.entry(k).or_insert(0);
        *x = x.wrapping_add(v);
    }
}
