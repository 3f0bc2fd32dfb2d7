//! The time-series append of one profile: [`append`] plans it with the
//! shared normalization ([`crate::ingest::plan`]), checks order and the
//! series limit, stores the entities the meta store lacks, then appends to
//! every series under their locks.
//!
//! A profile is appended to all its series or to none: every series is
//! checked before the meta store is touched, checked again with every
//! target series locked, and the write-ahead log's record is written (by
//! `log`) under those locks, right before the appends.

use crate::ingest::{
    plan, IngestError, IngestRequest, IngestSummary, LabelLimits, Plan, ProfileSymbols,
};
use crate::tsdb::chunkset::AppendProfile;
use crate::tsdb::head::{Head, HeadError, MemSeries};
use crate::tsdb::meta::{MetaError, MetaStore};
use std::sync::Arc;

/// Appends `req` to `head`, storing the entities it brings that `meta`
/// does not hold yet.
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
    log: &mut dyn FnMut() -> Result<(), IngestError>,
) -> Result<IngestSummary, IngestError> {
    let mut plan = plan(req, limits)?;
    check_series(head, &plan)?;
    store_symbols(meta, &plan.symbols)?;
    let summary = plan.summary();
    append_locked(head, &mut plan, log)?;
    Ok(summary)
}

/// Checks order in every existing series of `plan` and the series limit,
/// before anything is written.
fn check_series(head: &Head, plan: &Plan<'_>) -> Result<(), IngestError> {
    let timestamp = plan.timestamp;
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
    Ok(())
}

/// Creates the series of `plan`, locks them all (in ref order), checks
/// order again under the locks, runs `log`, then appends.
fn append_locked(
    head: &Head,
    plan: &mut Plan<'_>,
    log: &mut dyn FnMut() -> Result<(), IngestError>,
) -> Result<(), IngestError> {
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
    Ok(())
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
