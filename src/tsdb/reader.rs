//! The read seam of the time-series backend.
//!
//! [`BlockReader`] is a part of the store that queries select from — an
//! on-disk block or the head (through [`HeadReader`]) — as Prometheus's
//! `BlockReader` is to its querier: the store selects over its parts with
//! one loop and resolves stacks from the symbols of the parts it read.
//!
//! [`SeriesReader`]: how queries read one series, wherever it is stored.
//!
//! The head ([`MemSeries`]) and every block ([`BlockSeries`]) implement it
//! over their chunk sets with the same functions ([`crate::tsdb::chunkset::sets_totals`]
//! and friends), so a query computes the same answer whichever holds the
//! data. [`SeriesGroup`] joins the parts of one series (same labels) found in
//! several blocks and the head into one reader.
//!
//! # Invariants
//! - The parts of a [`SeriesGroup`] may overlap in time: the late head holds
//!   profiles inside the blocks' ranges, and a series may hold two different
//!   profiles at one timestamp. The group reads them as one series in time
//!   order: totals are sorted and summed per timestamp, merges add up.
//! - Parts that are replicas of one stream ([`Replica`]: a querier's blocks
//!   from ingesters that received the same writes) count each timestamp
//!   once, from one replica.

use crate::model::labels::Labels;
use crate::model::profile_type::ProfileType;
use crate::model::StackId;
use crate::model::{Matcher, SymbolError, SymbolSource};
use crate::tsdb::block::{Block, BlockSeries};
use crate::tsdb::chunkset::{
    sets_first_in, sets_merge_into, sets_merge_where, sets_totals, sets_totals_where, MergeStats,
};
use crate::tsdb::head::Head;
use crate::tsdb::head::MemSeries;
use crate::tsdb::meta::MetaStore;
use crate::tsdb::tagged::RowFilter;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A part of the store queries select from: a block or the head.
pub trait BlockReader {
    /// True when the part may hold profiles in `[start, end]`.
    fn overlaps(&self, start: i64, end: i64) -> bool;
    /// The series matching `matchers` (all when empty) with a profile in
    /// `[start, end]`, each once, sorted by labels.
    fn select_series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<Arc<dyn SeriesReader>>;
    /// Label names of the series [`BlockReader::select_series`] returns,
    /// sorted, each once (from the postings when the part can tell that
    /// every series has a profile in the range).
    fn label_names(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<String>;
    /// Values of label `name` over the series
    /// [`BlockReader::select_series`] returns, sorted, each once.
    fn label_values(&self, name: &str, matchers: &[Matcher], start: i64, end: i64) -> Vec<String>;
    /// Where the stacks of the part's series resolve.
    fn symbols(&self) -> Result<Arc<dyn SymbolSource + Send + Sync>, SymbolError>;
    /// The replica the part is a copy of, when several replicas of one
    /// stream may hold the same profiles (a querier's blocks): see
    /// [`Replica`]. `None` (the store's own parts): never deduplicated.
    fn replica(&self) -> Option<Replica> {
        None
    }
    /// The sample label names its series' rows use, sorted: a matcher on
    /// one of them applies to the rows of a series that does not have it as
    /// a label ([`crate::tsdb::query::select`]).
    fn sample_label_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Which copy of which stream a part is: parts of one `stream` with
/// different `rank`s may hold the same profiles where they overlap in time
/// (blocks of ingesters that received the same writes, or a compacted block
/// and a later rewrite of part of its range), so a [`SeriesGroup`] reads
/// each profile timestamp of a series once, from the lowest rank that has
/// it. Parts of different streams hold different data and add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Replica {
    /// The stream: the writer's external labels but the replica label.
    pub stream: u32,
    /// The part's rank within its stream (lowest is read first).
    pub rank: u32,
}

impl BlockReader for Arc<Block> {
    fn overlaps(&self, start: i64, end: i64) -> bool {
        Block::overlaps(self, start, end)
    }
    fn select_series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<Arc<dyn SeriesReader>> {
        self.select(matchers, start, end)
            .into_iter()
            .filter(|s| SeriesReader::overlaps(s, start, end))
            .map(|s| Arc::new(s) as Arc<dyn SeriesReader>)
            .collect()
    }
    fn label_names(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        Block::label_names(self, matchers, start, end)
    }
    fn label_values(&self, name: &str, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        Block::label_values(self, name, matchers, start, end)
    }
    fn sample_label_names(&self) -> Vec<String> {
        Block::sample_label_names(self).to_vec()
    }
    fn symbols(&self) -> Result<Arc<dyn SymbolSource + Send + Sync>, SymbolError> {
        match Block::symbols(self) {
            Ok(s) => Ok(s),
            Err(e) => Err(SymbolError::Unreadable(e.to_string())),
        }
    }
}

/// The head as a [`BlockReader`]: its series, and the meta store their
/// stacks resolve from.
pub struct HeadReader<'a> {
    /// The head.
    pub head: &'a Head,
    /// The meta store of the head's entities.
    pub meta: &'a Arc<MetaStore>,
}

impl BlockReader for HeadReader<'_> {
    fn overlaps(&self, _start: i64, _end: i64) -> bool {
        true
    }
    fn select_series(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Vec<Arc<dyn SeriesReader>> {
        self.head
            .select_in_range(matchers, start, end)
            .into_iter()
            .map(|s| s as Arc<dyn SeriesReader>)
            .collect()
    }
    fn label_names(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        self.head.label_names(matchers, start, end)
    }
    fn label_values(&self, name: &str, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
        self.head.label_values(name, matchers, start, end)
    }
    fn symbols(&self) -> Result<Arc<dyn SymbolSource + Send + Sync>, SymbolError> {
        Ok(self.meta.clone())
    }
    fn sample_label_names(&self) -> Vec<String> {
        self.head.sample_label_names()
    }
}

/// Read access to one series' profiles.
pub trait SeriesReader: Send + Sync {
    /// The full label set, `__name__` included.
    fn labels(&self) -> &Labels;
    /// The profile type.
    fn profile_type(&self) -> &ProfileType;
    /// Series label name → pprof label name.
    fn pprof_labels(&self) -> &[(String, String)];
    /// True when the series has a profile in `[start, end]`.
    fn overlaps(&self, start: i64, end: i64) -> bool;
    /// `(timestamp, total)` of every profile in `[start, end]`, in time order.
    fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)>;
    /// Timestamp of the first profile in `[start, end]`.
    fn first_in(&self, start: i64, end: i64) -> Option<i64>;
    /// Adds every stack's value over the profiles in `[start, end]` into
    /// `acc`.
    fn merge_into(&self, start: i64, end: i64, acc: &mut FxHashMap<StackId, i64>) -> MergeStats;

    /// [`SeriesReader::totals`] over the samples `f` selects (see
    /// [`crate::tsdb::tagged`]); profiles where it selects none are left
    /// out. By default, for a series without sample label rows: all or
    /// nothing.
    fn totals_where(&self, start: i64, end: i64, f: &RowFilter) -> Vec<(i64, i64)> {
        if f.matches_empty() {
            self.totals(start, end)
        } else {
            Vec::new()
        }
    }
    /// [`SeriesReader::merge_into`] over the samples `f` selects.
    fn merge_where(
        &self,
        start: i64,
        end: i64,
        f: &RowFilter,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        if f.matches_empty() {
            self.merge_into(start, end, acc)
        } else {
            MergeStats::empty()
        }
    }

    /// `(first, last)` timestamps of its profiles when known without
    /// reading them (`None`: not known).
    fn bounds(&self) -> Option<(i64, i64)> {
        None
    }

    /// The pprof string labels this series stands for, as (pprof name,
    /// value).
    fn pprof_label_values(&self) -> Vec<(String, String)> {
        self.pprof_labels()
            .iter()
            .filter_map(|(series_name, pprof_name)| {
                self.labels()
                    .get(series_name)
                    .map(|v| (pprof_name.clone(), v.to_string()))
            })
            .collect()
    }
}

impl SeriesReader for MemSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn profile_type(&self) -> &ProfileType {
        &self.profile_type
    }
    fn pprof_labels(&self) -> &[(String, String)] {
        &self.pprof_labels
    }
    fn overlaps(&self, start: i64, end: i64) -> bool {
        MemSeries::overlaps(self, start, end)
    }
    fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        MemSeries::totals(self, start, end)
    }
    fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        MemSeries::first_in(self, start, end)
    }
    fn merge_into(&self, start: i64, end: i64, acc: &mut FxHashMap<StackId, i64>) -> MergeStats {
        MemSeries::merge_into(self, start, end, acc)
    }
    fn totals_where(&self, start: i64, end: i64, f: &RowFilter) -> Vec<(i64, i64)> {
        MemSeries::totals_where(self, start, end, f)
    }
    fn merge_where(
        &self,
        start: i64,
        end: i64,
        f: &RowFilter,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        MemSeries::merge_where(self, start, end, f, acc)
    }
}

impl SeriesReader for BlockSeries {
    fn labels(&self) -> &Labels {
        BlockSeries::labels(self)
    }
    fn profile_type(&self) -> &ProfileType {
        BlockSeries::profile_type(self)
    }
    fn pprof_labels(&self) -> &[(String, String)] {
        BlockSeries::pprof_labels(self)
    }
    fn overlaps(&self, start: i64, end: i64) -> bool {
        BlockSeries::overlaps(self, start, end)
    }
    fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        sets_totals(self.sets(), start, end)
    }
    fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        sets_first_in(self.sets(), start, end)
    }
    fn merge_into(&self, start: i64, end: i64, acc: &mut FxHashMap<StackId, i64>) -> MergeStats {
        sets_merge_into(self.sets(), start, end, acc)
    }
    fn totals_where(&self, start: i64, end: i64, f: &RowFilter) -> Vec<(i64, i64)> {
        sets_totals_where(self.sets(), start, end, f)
    }
    fn merge_where(
        &self,
        start: i64,
        end: i64,
        f: &RowFilter,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        sets_merge_where(self.sets(), start, end, f, acc)
    }
    fn bounds(&self) -> Option<(i64, i64)> {
        Some(self.time_range())
    }
}

/// A series read through a [`RowFilter`]: only the samples whose sample
/// labels it matches count, and only profiles with such a sample exist.
pub struct Filtered {
    /// The series.
    pub inner: Arc<dyn SeriesReader>,
    /// The filter.
    pub filter: RowFilter,
}

impl SeriesReader for Filtered {
    fn labels(&self) -> &Labels {
        self.inner.labels()
    }
    fn profile_type(&self) -> &ProfileType {
        self.inner.profile_type()
    }
    fn pprof_labels(&self) -> &[(String, String)] {
        self.inner.pprof_labels()
    }
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.first_in(start, end).is_some()
    }
    fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        self.inner.totals_where(start, end, &self.filter)
    }
    fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        self.totals(start, end).first().map(|t| t.0)
    }
    fn merge_into(&self, start: i64, end: i64, acc: &mut FxHashMap<StackId, i64>) -> MergeStats {
        self.inner.merge_where(start, end, &self.filter, acc)
    }
    fn bounds(&self) -> Option<(i64, i64)> {
        self.inner.bounds()
    }
}

/// One series assembled from its parts in blocks and the heads.
///
/// With replicas (`replicas` not empty), the profiles of one stream at one
/// timestamp are read from one replica only: the lowest rank with a
/// profile there. The timestamps a replica answers form runs (maximal
/// stretches of the stream's timestamps in time order that it answers), so
/// a replica that holds every profile is read in one range per part, as
/// without replicas.
pub struct SeriesGroup {
    /// The parts (never empty); they may overlap in time.
    pub parts: Vec<Arc<dyn SeriesReader>>,
    /// Per part, the replica it belongs to; empty when no part has one.
    pub replicas: Vec<Option<Replica>>,
}

/// A piece of a series found in one part, with the part's replica.
pub type SeriesPiece = (Option<Replica>, Arc<dyn SeriesReader>);

impl SeriesGroup {
    /// A group of `parts`, with their replicas when any has one.
    pub fn new(parts: Vec<SeriesPiece>) -> SeriesGroup {
        let with = parts.iter().any(|p| p.0.is_some());
        let (replicas, parts): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        SeriesGroup {
            parts,
            replicas: if with { replicas } else { Vec::new() },
        }
    }

    /// A group of one piece: [`SeriesGroup::new`] with one allocation (a
    /// query over many short series makes one group per series).
    pub fn one((replica, part): SeriesPiece) -> SeriesGroup {
        SeriesGroup {
            parts: vec![part],
            replicas: replica.map(|r| vec![Some(r)]).unwrap_or_default(),
        }
    }

    /// For each part, the ranges of `[start, end]` whose profiles count
    /// (`None`: all of them; see the type's docs).
    fn runs(&self, start: i64, end: i64) -> Vec<Option<Vec<(i64, i64)>>> {
        let mut out: Vec<Option<Vec<(i64, i64)>>> = vec![None; self.parts.len()];
        // Streams with two or more ranks among the parts.
        let mut ranks: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for r in self.replicas.iter().flatten() {
            ranks.entry(r.stream).or_default().insert(r.rank);
        }
        for (stream, rs) in ranks {
            if rs.len() < 2 {
                continue;
            }
            let members: Vec<usize> = (0..self.parts.len())
                .filter(|&i| self.replicas[i].is_some_and(|r| r.stream == stream))
                .collect();
            if disjoint(members.iter().map(|&i| self.parts[i].bounds())) {
                // Consecutive blocks of one stream: nothing to choose.
                continue;
            }
            // Timestamp → the lowest rank with a profile there.
            let mut chosen: BTreeMap<i64, u32> = BTreeMap::new();
            for &i in &members {
                let rank = self.replicas[i].map_or(0, |r| r.rank);
                for (ts, _) in self.parts[i].totals(start, end) {
                    let c = chosen.entry(ts).or_insert(rank);
                    *c = (*c).min(rank);
                }
            }
            let mut runs_of: BTreeMap<u32, Vec<(i64, i64)>> = BTreeMap::new();
            let mut prev: Option<u32> = None;
            for (&ts, &rank) in &chosen {
                let runs = runs_of.entry(rank).or_default();
                match runs.last_mut() {
                    Some(last) if prev == Some(rank) => last.1 = ts,
                    _ => runs.push((ts, ts)),
                }
                prev = Some(rank);
            }
            for &i in &members {
                let rank = self.replicas[i].map_or(0, |r| r.rank);
                out[i] = Some(runs_of.get(&rank).cloned().unwrap_or_default());
            }
        }
        out
    }

    /// Calls `f(part, start, end)` for every range of every part whose
    /// profiles count.
    fn each_range(&self, start: i64, end: i64, f: &mut dyn FnMut(&dyn SeriesReader, i64, i64)) {
        if self.replicas.is_empty() {
            for p in &self.parts {
                f(p.as_ref(), start, end);
            }
            return;
        }
        for (p, runs) in self.parts.iter().zip(self.runs(start, end)) {
            match runs {
                None => f(p.as_ref(), start, end),
                Some(runs) => {
                    for (a, b) in runs {
                        f(p.as_ref(), a, b);
                    }
                }
            }
        }
    }
}

/// True when every part's bounds are known and no two overlap.
fn disjoint(bounds: impl Iterator<Item = Option<(i64, i64)>>) -> bool {
    let Some(mut b) = bounds.collect::<Option<Vec<(i64, i64)>>>() else {
        return false;
    };
    b.sort_unstable();
    b.windows(2).all(|w| w[0].1 < w[1].0)
}

impl std::fmt::Debug for SeriesGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesGroup")
            .field("labels", &self.labels().to_string())
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl SeriesReader for SeriesGroup {
    fn labels(&self) -> &Labels {
        self.parts[0].labels()
    }
    fn profile_type(&self) -> &ProfileType {
        self.parts[0].profile_type()
    }
    fn pprof_labels(&self) -> &[(String, String)] {
        self.parts[0].pprof_labels()
    }
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.parts.iter().any(|p| p.overlaps(start, end))
    }
    /// Sorted by timestamp; the profiles at one timestamp are summed.
    fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        let mut all = Vec::new();
        self.each_range(start, end, &mut |p, a, b| all.extend(p.totals(a, b)));
        all.sort_by_key(|t| t.0);
        let mut out: Vec<(i64, i64)> = Vec::with_capacity(all.len());
        for (ts, v) in all {
            match out.last_mut() {
                Some(last) if last.0 == ts => last.1 = last.1.wrapping_add(v),
                _ => out.push((ts, v)),
            }
        }
        out
    }
    fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        self.parts
            .iter()
            .filter_map(|p| p.first_in(start, end))
            .min()
    }
    fn merge_into(&self, start: i64, end: i64, acc: &mut FxHashMap<StackId, i64>) -> MergeStats {
        let mut stats = MergeStats::empty();
        self.each_range(start, end, &mut |p, a, b| {
            stats.add(&p.merge_into(a, b, acc));
        });
        stats
    }
}
