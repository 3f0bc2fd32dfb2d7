//! Queries over a list of parts: the one implementation of the engine's
//! read methods, shared by [`crate::tsdb::Tsdb`] (its blocks, late heads
//! and head) and a querier (the blocks of a bucket).
//!
//! Each function takes the parts a query may read, in the order their
//! stacks should resolve (blocks first: their own symbols; the head last:
//! the meta store), selects with [`BlockReader::select_series`], and joins
//! the pieces of one series (same labels) into a [`SeriesGroup`].
//!
//! # Invariants
//! - A function reads only the parts that overlap its range.
//! - Answers are sorted as the engine's contracts say (labels, names,
//!   values, profile types), whatever the order of the parts.

use crate::engine::{
    bucket_points, check_step, Partial, Pick, QueryError, SeriesPoints, TimeRange,
};
use crate::model::{Labels, Matcher, ProfileType, Resolver, SymbolSource};
use crate::tsdb::index::labels::merge_sorted;
use crate::tsdb::reader::{BlockReader, Filtered, SeriesGroup, SeriesPiece, SeriesReader};
use crate::tsdb::tagged::RowFilter;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The series matching `matchers` with a profile in `range`, each
/// assembled from its pieces in `parts`, sorted by labels; `used` is
/// called with each part that holds a piece of a selected series.
pub fn select(
    parts: &[&dyn BlockReader],
    matchers: &[Matcher],
    range: TimeRange,
    used: &mut dyn FnMut(&dyn BlockReader),
) -> Vec<SeriesGroup> {
    // The pieces of every part, sorted by labels (a stable sort: one
    // series' pieces stay in part order), then grouped where the labels are
    // equal. No label set is copied: under churn a query selects tens of
    // thousands of series.
    let mut pieces: Vec<SeriesPiece> = Vec::new();
    let mut contributing = 0;
    for part in parts.iter().filter(|p| p.overlaps(range.start, range.end)) {
        let series = select_part(*part, matchers, range);
        if !series.is_empty() {
            used(*part);
            contributing += 1;
        }
        let replica = part.replica();
        pieces.extend(series.into_iter().map(|s| (replica, s)));
    }
    if contributing <= 1 {
        // One part holds each series once, in label order
        // ([`BlockReader::select_series`]): every piece is a group.
        return pieces.into_iter().map(SeriesGroup::one).collect();
    }
    // Each part's pieces are in label order: the stable sort merges these
    // runs.
    if !pieces.is_sorted_by(|a, b| a.1.labels() <= b.1.labels()) {
        pieces.sort_by(|a, b| a.1.labels().cmp(b.1.labels()));
    }
    let mut groups = Vec::new();
    let mut pieces = pieces.into_iter().peekable();
    while let Some(first) = pieces.next() {
        let mut group = vec![first];
        while let Some(next) = pieces.next_if(|p| p.1.labels() == group[0].1.labels()) {
            group.push(next);
        }
        groups.push(SeriesGroup::new(group));
    }
    groups
}

/// The series of one part matching `matchers` with a profile in `range`.
///
/// A matcher on one of the part's sample label names
/// ([`BlockReader::sample_label_names`]) is not used to select: for a
/// series that has that label it is checked against the label, and for the
/// others it joins the [`RowFilter`] the series is then read through
/// ([`Filtered`]), which keeps only the samples that carried a matching
/// value (see [`crate::tsdb::tagged`]).
pub fn select_part(
    part: &dyn BlockReader,
    matchers: &[Matcher],
    range: TimeRange,
) -> Vec<Arc<dyn SeriesReader>> {
    let names = part.sample_label_names();
    if names.is_empty() || !matchers.iter().any(|m| names.contains(&m.name)) {
        return part.select_series(matchers, range.start, range.end);
    }
    let (tags, by_series): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| names.contains(&m.name));
    let by_series: Vec<Matcher> = by_series.into_iter().cloned().collect();
    let mut out = Vec::new();
    for s in part.select_series(&by_series, range.start, range.end) {
        let mut rows = Vec::new();
        let mut keep = true;
        for m in &tags {
            match s.labels().get(&m.name) {
                Some(v) => keep &= m.matches(v),
                None => rows.push((*m).clone()),
            }
        }
        if !keep {
            continue;
        }
        if rows.is_empty() {
            out.push(s);
            continue;
        }
        let f = Filtered {
            inner: s,
            filter: RowFilter::new(rows),
        };
        if f.overlaps(range.start, range.end) {
            out.push(Arc::new(f) as Arc<dyn SeriesReader>);
        }
    }
    out
}

/// True when a matcher of `matchers` is on a sample label name of `part`:
/// its label queries then go through [`select_part`].
fn on_sample_labels(part: &dyn BlockReader, matchers: &[Matcher]) -> bool {
    let names = part.sample_label_names();
    !names.is_empty() && matchers.iter().any(|m| names.contains(&m.name))
}

/// [`crate::engine::Storage::partial`]: the partial result of `pick` over
/// the series matching `matchers`. Stacks resolve from the symbols of the
/// parts the series were read from, in the parts' order.
pub fn partial(
    parts: &[&dyn BlockReader],
    matchers: &[Matcher],
    pick: Pick,
) -> Result<Partial, QueryError> {
    let (mut out, symbols) = partial_sums(parts, matchers, pick)?;
    let sources: Vec<&dyn SymbolSource> = symbols
        .iter()
        .map(|s| s.as_ref() as &dyn SymbolSource)
        .collect();
    let mut resolver = Resolver::new(sources);
    for id in out.stack_ids() {
        out.stacks.insert(id, resolver.stack(id)?);
    }
    Ok(out)
}

/// The symbols of the parts a partial read, in the parts' order.
pub type PartSymbols = Vec<Arc<dyn SymbolSource + Send + Sync>>;

/// [`partial`] with its stacks not resolved (`stacks` empty): the partial
/// and the symbols its stack ids resolve from, as a peer querier sends
/// them on ([`crate::querier::wire`]).
pub fn partial_sums(
    parts: &[&dyn BlockReader],
    matchers: &[Matcher],
    pick: Pick,
) -> Result<(Partial, PartSymbols), QueryError> {
    let mut symbols = Vec::new();
    let mut failed = None;
    let series = select(
        parts,
        matchers,
        pick.range(),
        &mut |part| match part.symbols() {
            Ok(s) => symbols.push(s),
            Err(e) => failed = Some(e),
        },
    );
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut out = Partial::default();
    for s in &series {
        // One copy of each type, not one per series.
        if !out.types.contains(s.profile_type()) {
            out.types.insert(s.profile_type().clone());
        }
    }
    if out.types.len() > 1 {
        // The query is an error: reading more would be wasted.
        return Ok((out, symbols));
    }
    for s in &series {
        let (start, end) = match pick {
            Pick::All(r) => (r.start, r.end),
            Pick::First(r) => match s.first_in(r.start, r.end) {
                Some(ts) => (ts, ts),
                None => continue,
            },
        };
        let mut pprof = s.pprof_label_values();
        pprof.sort();
        let st = out.add_sums_with(pprof, |acc| s.merge_into(start, end, acc));
        let mut origin = s.labels().clone();
        for (name, _) in s.pprof_labels() {
            origin.remove(name);
        }
        let latest = st.reads.iter().map(|r| r.0).max().map(|ts| (ts, st.period));
        out.add_series(s.labels(), origin.stable_hash(), &st.reads, latest);
    }
    Ok((out, symbols))
}

/// [`crate::engine::Storage::label_names`]: the union of each part's
/// answer ([`BlockReader::label_names`]).
pub fn label_names(
    parts: &[&dyn BlockReader],
    matchers: &[Matcher],
    range: TimeRange,
) -> Vec<String> {
    let lists = parts
        .iter()
        .filter(|p| p.overlaps(range.start, range.end))
        .map(|p| {
            if !on_sample_labels(*p, matchers) {
                return p.label_names(matchers, range.start, range.end);
            }
            let names: BTreeSet<String> = select_part(*p, matchers, range)
                .iter()
                .flat_map(|s| {
                    s.labels()
                        .iter()
                        .map(|l| l.name.clone())
                        .collect::<Vec<_>>()
                })
                .collect();
            names.into_iter().collect()
        })
        .collect();
    merge_sorted(lists)
}

/// [`crate::engine::Storage::label_values`], part by part as
/// [`label_names`].
pub fn label_values(
    parts: &[&dyn BlockReader],
    name: &str,
    matchers: &[Matcher],
    range: TimeRange,
) -> Vec<String> {
    let lists = parts
        .iter()
        .filter(|p| p.overlaps(range.start, range.end))
        .map(|p| {
            if !on_sample_labels(*p, matchers) {
                return p.label_values(name, matchers, range.start, range.end);
            }
            let values: BTreeSet<String> = select_part(*p, matchers, range)
                .iter()
                .filter_map(|s| s.labels().get(name).map(str::to_string))
                .collect();
            values.into_iter().collect()
        })
        .collect();
    merge_sorted(lists)
}

/// [`crate::engine::Storage::series`].
pub fn series(parts: &[&dyn BlockReader], matchers: &[Matcher], range: TimeRange) -> Vec<Labels> {
    // `select` returns them sorted by labels, each once.
    select(parts, matchers, range, &mut |_| {})
        .iter()
        .map(|s| s.labels().clone())
        .collect()
}

/// [`crate::engine::Storage::profile_types`].
pub fn profile_types(
    parts: &[&dyn BlockReader],
    matchers: &[Matcher],
    range: TimeRange,
) -> Vec<ProfileType> {
    // A series has a profile in the range when any of its pieces has one:
    // no need to group the pieces, nor to copy a type per series.
    let mut types: BTreeSet<ProfileType> = BTreeSet::new();
    for part in parts.iter().filter(|p| p.overlaps(range.start, range.end)) {
        for s in select_part(*part, matchers, range) {
            if !types.contains(s.profile_type()) {
                types.insert(s.profile_type().clone());
            }
        }
    }
    types.into_iter().collect()
}

/// [`crate::engine::Storage::query_range`].
pub fn query_range(
    parts: &[&dyn BlockReader],
    matchers: &[Matcher],
    range: TimeRange,
    step: Option<i64>,
) -> Result<Vec<SeriesPoints>, QueryError> {
    check_step(step)?;
    let mut out = Vec::new();
    for s in select(parts, matchers, range, &mut |_| {}) {
        let points = s.totals(range.start, range.end);
        let points = match step {
            Some(step) => bucket_points(&points, range, step),
            None => points,
        };
        if !points.is_empty() {
            out.push(SeriesPoints {
                labels: s.labels().clone(),
                points,
            });
        }
    }
    // `select`'s groups are in label order already.
    Ok(out)
}
