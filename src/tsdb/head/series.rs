//! One series of the head: its labels and its chunk sets.

use super::HeadError;
use crate::model::labels::Labels;
use crate::model::profile_type::ProfileType;
use crate::model::StackId;
use crate::tsdb::chunkset::{
    sets_first_in, sets_merge_into, sets_overlap, sets_totals, AppendProfile, ChunkSet, MergeStats,
    CHUNK_PROFILES,
};
use crate::tsdb::index::SeriesRef;
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;

/// A series' columns (guarded by [`MemSeries`]' mutex).
#[derive(Debug, Default)]
pub struct SeriesData {
    max_time: Option<i64>,
    min_time: Option<i64>,
    sets: Vec<ChunkSet>,
}

/// A series: its identity (never changes) and its columns.
#[derive(Debug)]
pub struct MemSeries {
    /// The series' id.
    pub sref: SeriesRef,
    /// The full label set, `__name__` included.
    pub labels: Labels,
    /// The profile type (parsed from `__name__`).
    pub profile_type: ProfileType,
    /// Series label name → pprof string label name, for the labels that came
    /// from pprof sample labels (they return as pprof labels on output).
    pub pprof_labels: Vec<(String, String)>,
    data: Mutex<SeriesData>,
}

impl MemSeries {
    pub(super) fn new(
        sref: SeriesRef,
        labels: Labels,
        profile_type: ProfileType,
        pprof_labels: Vec<(String, String)>,
    ) -> MemSeries {
        MemSeries {
            sref,
            labels,
            profile_type,
            pprof_labels,
            data: Mutex::new(SeriesData::default()),
        }
    }

    /// Locks the series' columns (for appending several series atomically).
    pub fn lock(&self) -> MutexGuard<'_, SeriesData> {
        self.data.lock()
    }

    /// Checks that a profile at `timestamp` may be appended.
    pub fn check_append(&self, data: &SeriesData, timestamp: i64) -> Result<(), HeadError> {
        match data.max_time {
            Some(max) if timestamp <= max => Err(HeadError::OutOfOrder {
                labels: self.labels.to_string(),
                timestamp,
                max_time: max,
            }),
            _ => Ok(()),
        }
    }

    /// Appends one profile (the caller holds the lock and has called
    /// [`MemSeries::check_append`]; on a failed check nothing changes).
    pub fn append_locked(&self, data: &mut SeriesData, p: &AppendProfile) -> Result<(), HeadError> {
        self.check_append(data, p.timestamp)?;
        if data.sets.last().is_none_or(|s| s.len() >= CHUNK_PROFILES) {
            data.sets.push(ChunkSet::new());
        }
        let Some(set) = data.sets.last_mut() else {
            unreachable!("a chunk set was pushed above")
        };
        set.push(p);
        data.max_time = Some(p.timestamp);
        data.min_time.get_or_insert(p.timestamp);
        Ok(())
    }

    /// Appends one profile.
    pub fn append(&self, p: &AppendProfile) -> Result<(), HeadError> {
        let mut data = self.data.lock();
        self.append_locked(&mut data, p)
    }

    /// `(min, max)` timestamps, if the series has profiles.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let d = self.data.lock();
        Some((d.min_time?, d.max_time?))
    }

    /// True when the series has a profile in `[start, end]`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        sets_overlap(&self.data.lock().sets, start, end)
    }

    /// Number of profiles stored.
    pub fn num_profiles(&self) -> usize {
        self.data.lock().sets.iter().map(ChunkSet::len).sum()
    }

    /// Bytes held by the series' chunks.
    pub fn chunk_bytes(&self) -> usize {
        self.data.lock().sets.iter().map(ChunkSet::bytes).sum()
    }

    /// `(timestamp, total)` of every profile in `[start, end]`.
    pub fn totals(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        sets_totals(&self.data.lock().sets, start, end)
    }

    /// Timestamp of the first profile in `[start, end]`.
    pub fn first_in(&self, start: i64, end: i64) -> Option<i64> {
        sets_first_in(&self.data.lock().sets, start, end)
    }

    /// Adds the value of every stack over the profiles in `[start, end]` into
    /// `acc`.
    pub fn merge_into(
        &self,
        start: i64,
        end: i64,
        acc: &mut FxHashMap<StackId, i64>,
    ) -> MergeStats {
        sets_merge_into(&self.data.lock().sets, start, end, acc)
    }

    /// The profiles in `[start, end]`, decoded (for writing a block).
    pub fn profiles(&self, start: i64, end: i64) -> Vec<AppendProfile> {
        let d = self.data.lock();
        let mut out = Vec::new();
        for s in &d.sets {
            if s.time_range().1 >= start && s.time_range().0 <= end {
                out.extend(s.profiles(start, end));
            }
        }
        out
    }

    /// The chunk sets, cloned (for writing a snapshot or a block from a
    /// series built for it).
    pub fn chunk_sets(&self) -> Vec<ChunkSet> {
        self.data.lock().sets.clone()
    }

    /// Adds the stacks the series references to `into`.
    pub fn stack_ids(&self, into: &mut rustc_hash::FxHashSet<StackId>) {
        for s in &self.data.lock().sets {
            into.extend(s.stack_ids().copied());
        }
    }

    /// Drops every profile before `t` and returns how many are left. The
    /// series keeps its latest timestamp, so an append at or before it is
    /// still out of order.
    pub fn truncate_before(&self, t: i64) -> usize {
        let mut d = self.data.lock();
        let keep_from = d.sets.iter().position(|s| s.time_range().1 >= t);
        let Some(k) = keep_from else {
            d.sets.clear();
            d.min_time = None;
            return 0;
        };
        d.sets.drain(..k);
        if d.sets[0].time_range().0 < t {
            // Rebuild the straddling set from its profiles at or after t.
            let rest = d.sets[0].profiles(t, i64::MAX);
            let mut set = ChunkSet::new();
            for p in &rest {
                set.push(p);
            }
            d.sets[0] = set;
        }
        d.min_time = d.sets.first().map(|s| s.time_range().0);
        d.sets.iter().map(ChunkSet::len).sum()
    }

    /// Appends whole chunk sets read from a snapshot; they must follow the
    /// series' profiles in time.
    pub fn load_sets(&self, sets: Vec<ChunkSet>) -> Result<(), HeadError> {
        let mut d = self.data.lock();
        for set in sets {
            if let Some(max) = d.max_time {
                if set.time_range().0 <= max {
                    return Err(HeadError::OutOfOrder {
                        labels: self.labels.to_string(),
                        timestamp: set.time_range().0,
                        max_time: max,
                    });
                }
            }
            d.min_time.get_or_insert(set.time_range().0);
            d.max_time = Some(set.time_range().1);
            d.sets.push(set);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn stack(i: u128) -> StackId {
        StackId(Uuid::from_u128(i))
    }

    fn series() -> MemSeries {
        MemSeries::new(
            SeriesRef(1),
            Labels::from_pairs([("__name__", "x:a:b:c:d")]),
            ProfileType::parse("x:a:b:c:d").unwrap(),
            vec![],
        )
    }

    /// A slow, obvious model: every profile kept as a map.
    #[test]
    fn merge_matches_a_plain_model_across_chunk_sets_and_gaps() {
        let s = series();
        let mut model: Vec<(i64, FxHashMap<StackId, i64>)> = Vec::new();
        let mut seed: u64 = 42;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for p in 0..300i64 {
            let mut samples = Vec::new();
            for st in 0..20u128 {
                if rnd() % 3 == 0 {
                    samples.push((stack(st), (rnd() % 1000) as i64 - 100));
                }
            }
            samples.retain(|x| x.1 != 0);
            let ts = 1000 + p * 10_000 + (rnd() % 100) as i64;
            s.append(&AppendProfile {
                timestamp: ts,
                duration: 10,
                period: 7,
                samples: samples.clone(),
            })
            .unwrap();
            model.push((ts, samples.into_iter().collect()));
        }
        assert_eq!(s.num_profiles(), 300);
        for (start, end) in [
            (i64::MIN, i64::MAX),
            (0, 1000 + 119 * 10_000 + 100),
            (1000 + 50 * 10_000, 1000 + 250 * 10_000),
            (1000 + 121 * 10_000, 1000 + 121 * 10_000 + 99),
            (5, 6),
        ] {
            let mut acc = FxHashMap::default();
            let stats = s.merge_into(start, end, &mut acc);
            let mut want: FxHashMap<StackId, i64> = FxHashMap::default();
            let mut n = 0;
            for (ts, m) in &model {
                if *ts >= start && *ts <= end {
                    n += 1;
                    for (k, v) in m {
                        *want.entry(*k).or_insert(0) += v;
                    }
                }
            }
            want.retain(|_, v| *v != 0);
            acc.retain(|_, v| *v != 0);
            assert_eq!(acc, want, "range {start}..{end}");
            assert_eq!(stats.profiles, n);
            assert_eq!(stats.duration, 10 * n as i64);
            let totals = s.totals(start, end);
            assert_eq!(totals.len(), n);
            for (t, v) in totals {
                let m = &model.iter().find(|x| x.0 == t).unwrap().1;
                assert_eq!(v, m.values().sum::<i64>());
            }
        }
    }

    #[test]
    fn out_of_order_is_rejected_and_changes_nothing() {
        let s = series();
        let p = |ts| AppendProfile {
            timestamp: ts,
            duration: 0,
            period: 1,
            samples: vec![(stack(1), 5)],
        };
        s.append(&p(10)).unwrap();
        assert!(matches!(
            s.append(&p(10)),
            Err(HeadError::OutOfOrder { .. })
        ));
        assert!(matches!(s.append(&p(9)), Err(HeadError::OutOfOrder { .. })));
        assert_eq!(s.num_profiles(), 1);
        assert_eq!(s.totals(i64::MIN, i64::MAX), vec![(10, 5)]);
        s.append(&p(11)).unwrap();
        assert_eq!(s.first_in(11, 100), Some(11));
    }
}
