//! The time-series append of one profile: [`append`] plans it with the
//! shared normalization ([`crate::ingest::plan`]), checks the series limit,
//! stores the entities the meta store lacks, then appends to every series
//! under their locks, each at its place in time.
//!
//! A profile is appended to all its series or to none (but those that
//! already hold it: a retry): the write-ahead log's record is written (by
//! `log`) with every target series locked, right before the appends.

use crate::ingest::{
    plan, IngestError, IngestRequest, IngestSummary, LabelLimits, Plan, ProfileSymbols,
};
use crate::model::Labels;
use crate::tsdb::chunkset::AppendProfile;
use crate::tsdb::head::{Head, HeadError, MemSeries};
use crate::tsdb::meta::{MetaError, MetaStore};
use std::sync::Arc;

/// Where else than the head a profile of a series may already be stored
/// (blocks, another head): `held(labels, profile)` is true when it is.
pub type HeldElsewhere<'a> = &'a dyn Fn(&Labels, &AppendProfile) -> bool;

/// Appends `req` to `head`, storing the entities it brings that `meta`
/// does not hold yet.
///
/// A series that already holds this very profile (in `head`, or where
/// `held` says) is not appended to again: a retry changes nothing, and
/// when every series holds it nothing is logged either.
///
/// `log` runs once every check has passed, with every target series locked,
/// right before the appends: the write-ahead log writes its record there, so
/// for every series the log's order is the order of its appends, and a
/// failed `log` leaves the head untouched.
pub fn append(
    head: &Head,
    meta: &MetaStore,
    limits: &LabelLimits,
    req: &IngestRequest,
    held: HeldElsewhere<'_>,
    log: &mut dyn FnMut() -> Result<(), IngestError>,
) -> Result<IngestSummary, IngestError> {
    let mut plan = plan(req, limits)?;
    check_series_limit(head, &plan)?;
    store_symbols(meta, &plan.symbols)?;
    let mut summary = plan.summary();
    summary.duplicate_series = append_locked(head, &mut plan, held, log)?;
    Ok(summary)
}

/// Checks the series limit before anything is written.
fn check_series_limit(head: &Head, plan: &Plan<'_>) -> Result<(), IngestError> {
    let new_series = plan
        .series
        .iter()
        .filter(|ps| head.get(&ps.labels).is_none())
        .count();
    if new_series > 0 && head.num_series() + new_series > head.max_series() {
        return Err(HeadError::SeriesLimit {
            limit: head.max_series(),
        }
        .into());
    }
    Ok(())
}

/// Creates the series of `plan`, locks them all (in ref order), finds the
/// ones that already hold the profile, runs `log` unless all do, then
/// appends to the others. Returns the number of series that held it.
fn append_locked(
    head: &Head,
    plan: &mut Plan<'_>,
    held: HeldElsewhere<'_>,
    log: &mut dyn FnMut() -> Result<(), IngestError>,
) -> Result<usize, IngestError> {
    let timestamp = plan.timestamp;
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
                tagged: std::mem::take(&mut ps.tagged),
            },
        ));
    }
    targets.sort_by_key(|(s, _)| s.sref);
    let mut guards: Vec<_> = targets.iter().map(|(s, _)| s.lock()).collect();
    let duplicate: Vec<bool> = targets
        .iter()
        .zip(guards.iter())
        .map(|((series, p), g)| series.holds_locked(g, p) || held(&series.labels, p))
        .collect();
    let duplicates = duplicate.iter().filter(|d| **d).count();
    if duplicates == targets.len() {
        return Ok(duplicates);
    }
    log()?;
    let table = head.stack_table();
    for (((series, p), g), dup) in targets.iter().zip(guards.iter_mut()).zip(duplicate) {
        if !dup {
            series.append_locked(g, p, &table);
        }
    }
    drop(guards);
    Ok(duplicates)
}

/// Stores in `meta` the entities of `sym` it does not hold yet: mappings
/// and functions, then locations, then stacks, so every id a stored value
/// refers to resolves.
fn store_symbols(meta: &MetaStore, sym: &ProfileSymbols<'_>) -> Result<(), MetaError> {
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
