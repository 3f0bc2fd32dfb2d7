//! Merging blocks (and loose profiles) into one block: what a store's
//! compaction of late profiles and the bucket compactor share.
//!
//! Each input has a rank. Per series, the profiles at one timestamp are
//! taken from the lowest-ranked input that has a profile of that series
//! there (so two replicas of one stream give one copy, and a newer
//! rewrite of a range is read where it has data); within that rank, a
//! profile equal to an earlier one at its timestamp counts once. A series
//! found in one input only, with no loose profiles, keeps its chunk sets as
//! they are: only series in two or more inputs are decoded, one at a time.

use super::{write_block, Block, BlockError, BlockSeries, BlockSeriesData, WrittenBlock};
use crate::model::{Labels, SymbolChain, SymbolSource};
use crate::tsdb::chunkset::{build_sets, same_profile, AppendProfile};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Loose profiles to merge with blocks, per series: its pprof label names
/// and its profiles (of rank 0).
pub type LooseProfiles = BTreeMap<Labels, (Vec<(String, String)>, Vec<AppendProfile>)>;

/// Sorts profiles by time (stable) and drops a profile equal to an earlier
/// one at its timestamp.
pub fn sort_and_dedup(profiles: &mut Vec<AppendProfile>) {
    profiles.sort_by_key(|p| p.timestamp);
    let mut out: Vec<AppendProfile> = Vec::with_capacity(profiles.len());
    let mut run_start = 0;
    for p in profiles.drain(..) {
        if out.last().is_none_or(|q| q.timestamp != p.timestamp) {
            run_start = out.len();
        }
        if !out[run_start..].iter().any(|q| same_profile(q, &p)) {
            out.push(p);
        }
    }
    *profiles = out;
}

/// One series' profiles from several ranked inputs: per timestamp those of
/// the lowest rank that has one there, in time order, each once.
pub fn pick_by_rank(ranked: Vec<(u32, Vec<AppendProfile>)>) -> Vec<AppendProfile> {
    let mut best: BTreeMap<i64, u32> = BTreeMap::new();
    for (rank, profiles) in &ranked {
        for p in profiles {
            let r = best.entry(p.timestamp).or_insert(*rank);
            *r = (*r).min(*rank);
        }
    }
    let mut out: Vec<AppendProfile> = ranked
        .into_iter()
        .flat_map(|(rank, profiles)| {
            let best = &best;
            profiles
                .into_iter()
                .filter(move |p| best.get(&p.timestamp) == Some(&rank))
        })
        .collect();
    sort_and_dedup(&mut out);
    out
}

/// Writes to `path` one block of `[min_time, max_time)` holding `inputs`
/// (each a block and its rank) and `loose` (rank 0), merged as the module
/// docs say. Stacks resolve from the inputs' symbols, then from `extra`.
pub fn merge_blocks(
    path: &Path,
    min_time: i64,
    max_time: i64,
    inputs: &[(Arc<Block>, u32)],
    loose: LooseProfiles,
    extra: Option<&dyn SymbolSource>,
) -> Result<WrittenBlock, BlockError> {
    struct Merge {
        pprof_labels: Vec<(String, String)>,
        inputs: Vec<(u32, BlockSeries)>,
        loose: Vec<AppendProfile>,
    }
    let mut series: BTreeMap<Labels, Merge> = BTreeMap::new();
    let mut symbols = Vec::with_capacity(inputs.len());
    for (block, rank) in inputs {
        symbols.push(block.symbols()?);
        for bs in block.select(&[], i64::MIN, i64::MAX) {
            series
                .entry(bs.labels().clone())
                .or_insert_with(|| Merge {
                    pprof_labels: bs.pprof_labels().to_vec(),
                    inputs: Vec::new(),
                    loose: Vec::new(),
                })
                .inputs
                .push((*rank, bs));
        }
    }
    for (labels, (pprof_labels, profiles)) in loose {
        series
            .entry(labels)
            .or_insert_with(|| Merge {
                pprof_labels,
                inputs: Vec::new(),
                loose: Vec::new(),
            })
            .loose = profiles;
    }
    // The sets built here live until they are written.
    let table = std::sync::Arc::new(crate::tsdb::stacktable::StackTable::new());
    let data = series.into_iter().filter_map(|(labels, m)| {
        let sets = match (m.inputs.as_slice(), m.loose.is_empty()) {
            ([(_, only)], true) => only.sets().to_vec(),
            _ => {
                let mut ranked = vec![(0, m.loose)];
                for (rank, bs) in &m.inputs {
                    let mut profiles = Vec::new();
                    for set in bs.sets() {
                        profiles.extend(set.profiles(i64::MIN, i64::MAX));
                    }
                    ranked.push((*rank, profiles));
                }
                build_sets(&pick_by_rank(ranked), &table)
            }
        };
        (!sets.is_empty()).then_some(BlockSeriesData {
            labels,
            pprof_labels: m.pprof_labels,
            sets,
        })
    });
    let mut sources: Vec<&dyn SymbolSource> = symbols
        .iter()
        .map(|s| s.as_ref() as &dyn SymbolSource)
        .collect();
    sources.extend(extra);
    write_block(path, min_time, max_time, data, &SymbolChain(sources))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StackId;

    fn p(ts: i64, v: i64) -> AppendProfile {
        AppendProfile {
            timestamp: ts,
            duration: 1,
            period: 1,
            samples: vec![(StackId(uuid::Uuid::from_u128(1)), v)],
            ..Default::default()
        }
    }

    #[test]
    fn merging_keeps_time_order_and_one_copy_of_each_profile() {
        let mut v = vec![p(5, 1), p(3, 1), p(5, 2), p(5, 1), p(3, 1), p(1, 9)];
        sort_and_dedup(&mut v);
        assert_eq!(v, vec![p(1, 9), p(3, 1), p(5, 1), p(5, 2)]);
    }

    #[test]
    fn each_timestamp_comes_from_the_lowest_rank_that_has_it() {
        let got = pick_by_rank(vec![
            (1, vec![p(1, 10), p(2, 20), p(3, 30)]),
            (0, vec![p(2, 21), p(2, 22), p(4, 40)]),
            (2, vec![p(3, 31), p(5, 50), p(5, 50)]),
        ]);
        assert_eq!(
            got,
            vec![p(1, 10), p(2, 21), p(2, 22), p(3, 30), p(4, 40), p(5, 50)]
        );
    }
}
