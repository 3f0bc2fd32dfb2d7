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

use crate::head::{AppendProfile, Head, HeadError, MemSeries};
use crate::labels::{Labels, METRIC_NAME};
use crate::meta::{
    keys, Function, Line, Location, Mapping, MetaError, MetaStore, NumLabel, Stacktrace,
};
use crate::pprof::PprofError;
use crate::profile_type::{infer_name, ProfileType};
use crate::proto::pprof::Profile;
use rustc_hash::FxHashMap;
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

/// One series' share of a profile, before meta resolution.
struct PlannedSeries {
    labels: Labels,
    profile_type: ProfileType,
    pprof_labels: Vec<(String, String)>,
    type_idx: usize,
    group: usize,
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

/// Appends `req` to `head`, resolving stacks through `meta`.
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
    let p = &req.profile;
    check_writer_labels(&req.labels, limits)?;
    if let Some(n) = &req.name {
        check_profile_name(n)?;
    }
    let empty = String::new();
    let s = |i: i64| -> &str {
        // Validated: every index is in range (an empty table reads as [""]).
        p.string_table.get(i as usize).unwrap_or(&empty)
    };
    let timestamp = profile_timestamp(req);
    let (period_type, period_unit) = p
        .period_type
        .as_ref()
        .map(|v| (s(v.r#type), s(v.unit)))
        .unwrap_or(("", ""));

    // 1. Group samples by their string labels.
    let mut groups: FxHashMap<Vec<(i64, i64)>, usize> = FxHashMap::default();
    let mut group_labels: Vec<Vec<(i64, i64)>> = Vec::new();
    let mut sample_group: Vec<usize> = Vec::with_capacity(p.sample.len());
    let mut key: Vec<(i64, i64)> = Vec::new();
    for sample in &p.sample {
        key.clear();
        for l in &sample.label {
            if l.str != 0 && !key.iter().any(|(k, _)| *k == l.key) {
                key.push((l.key, l.str));
            }
        }
        key.sort_unstable();
        let g = match groups.get(&key) {
            Some(g) => *g,
            None => {
                let g = group_labels.len();
                groups.insert(key.clone(), g);
                group_labels.push(key.clone());
                g
            }
        };
        sample_group.push(g);
    }
    let no_label_group = groups.get(&Vec::new()).copied();

    // 2. Plan the series: one per (sample type, label group) with a non-zero
    //    sample, plus the empty profile rule.
    let mut used = vec![vec![false; group_labels.len()]; p.sample_type.len()];
    for (si, sample) in p.sample.iter().enumerate() {
        for (t, v) in sample.value.iter().enumerate() {
            if *v != 0 {
                used[t][sample_group[si]] = true;
            }
        }
    }
    let mut planned: Vec<PlannedSeries> = Vec::new();
    for (t, vt) in p.sample_type.iter().enumerate() {
        let (st, su) = (s(vt.r#type), s(vt.unit));
        let name = match &req.name {
            Some(n) => n.clone(),
            None => infer_name(st, period_type).to_string(),
        };
        let delta = req
            .delta
            .unwrap_or(p.duration_nanos > 0 || name == "process_cpu");
        let pt = ProfileType {
            name,
            sample_type: st.to_string(),
            sample_unit: su.to_string(),
            period_type: period_type.to_string(),
            period_unit: period_unit.to_string(),
            delta,
        };
        let mut any = false;
        for (g, gl) in group_labels.iter().enumerate() {
            if !used[t][g] {
                continue;
            }
            any = true;
            planned.push(plan_series(&req.labels, &pt, gl, &s, limits, t, g)?);
        }
        if !any {
            let g = no_label_group.unwrap_or(usize::MAX);
            planned.push(plan_series(&req.labels, &pt, &[], &s, limits, t, g)?);
        }
    }

    // 3. Check order and the series limit before touching the meta store.
    let mut new_series = 0;
    for ps in &planned {
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

    // 4. Resolve mappings, functions, locations and stacks. Keys are built
    //    from the pprof fields; an entity is only materialized when new.
    let mapping_ids = meta.mapping_ids_with(
        p.mapping.len(),
        |i, buf| {
            let m = &p.mapping[i];
            keys::mapping_key_parts(
                buf,
                m.memory_limit.saturating_sub(m.memory_start),
                m.file_offset,
                s(m.filename),
                s(m.build_id),
            )
        },
        |i| {
            let m = &p.mapping[i];
            Mapping {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: s(m.filename).to_string(),
                build_id: s(m.build_id).to_string(),
                has_functions: m.has_functions,
                has_filenames: m.has_filenames,
                has_line_numbers: m.has_line_numbers,
                has_inline_frames: m.has_inline_frames,
            }
        },
    )?;
    let mapping_by_pprof = IdMap::new(p.mapping.iter().map(|m| m.id).zip(mapping_ids));
    let function_ids = meta.function_ids_with(
        p.function.len(),
        |i, buf| {
            let f = &p.function[i];
            keys::function_key_parts(
                buf,
                f.start_line,
                s(f.name),
                s(f.system_name),
                s(f.filename),
            )
        },
        |i| {
            let f = &p.function[i];
            Function {
                name: s(f.name).to_string(),
                system_name: s(f.system_name).to_string(),
                filename: s(f.filename).to_string(),
                start_line: f.start_line,
            }
        },
    )?;
    let function_by_pprof = IdMap::new(p.function.iter().map(|f| f.id).zip(function_ids));
    let lines_of = |l| lines_of(l, &function_by_pprof);
    let location_ids = meta.location_ids_with(
        p.location.len(),
        |i, buf| {
            let l = &p.location[i];
            keys::location_key_parts(
                buf,
                mapping_by_pprof.get(l.mapping_id),
                l.address,
                l.is_folded,
                lines_of(l),
            )
        },
        |i| {
            let l = &p.location[i];
            Location {
                mapping: mapping_by_pprof.get(l.mapping_id),
                address: l.address,
                is_folded: l.is_folded,
                lines: lines_of(l)
                    .map(|(function, line, column)| Line {
                        function,
                        line,
                        column,
                    })
                    .collect(),
            }
        },
    )?;
    let location_by_pprof = IdMap::new(p.location.iter().map(|l| l.id).zip(location_ids));
    // Samples with a non-zero value, and their numeric labels (sorted).
    let mut stack_samples: Vec<usize> = Vec::with_capacity(p.sample.len());
    let mut stack_num_labels: Vec<Vec<NumLabel>> = Vec::with_capacity(p.sample.len());
    let mut stack_of_sample: Vec<usize> = vec![usize::MAX; p.sample.len()];
    for (si, sample) in p.sample.iter().enumerate() {
        if sample.value.iter().all(|v| *v == 0) {
            continue;
        }
        let mut num_labels: Vec<NumLabel> = sample
            .label
            .iter()
            .filter(|l| l.str == 0 && (l.num != 0 || l.num_unit != 0))
            .map(|l| NumLabel {
                key: s(l.key).to_string(),
                value: l.num,
                unit: s(l.num_unit).to_string(),
            })
            .collect();
        num_labels.sort();
        stack_of_sample[si] = stack_samples.len();
        stack_samples.push(si);
        stack_num_labels.push(num_labels);
    }
    // Validated: every location id of a sample exists.
    let locations_of = |si: usize| {
        p.sample[si]
            .location_id
            .iter()
            .filter_map(|id| location_by_pprof.get(*id))
    };
    let mut scratch: Vec<crate::meta::LocationId> = Vec::with_capacity(64);
    let stack_ids = meta.stack_ids_with(
        stack_samples.len(),
        |i, buf| {
            scratch.clear();
            scratch.extend(locations_of(stack_samples[i]));
            keys::stack_key(buf, &scratch, &stack_num_labels[i])
        },
        |i| Stacktrace {
            locations: locations_of(stack_samples[i]).collect(),
            num_labels: stack_num_labels[i].clone(),
        },
    )?;

    // 5. Sum per (series, stack).
    let mut appends: Vec<AppendProfile> = Vec::with_capacity(planned.len());
    let mut index: FxHashMap<(usize, usize), usize> = FxHashMap::default();
    for (i, ps) in planned.iter().enumerate() {
        index.insert((ps.type_idx, ps.group), i);
        appends.push(AppendProfile {
            timestamp,
            duration: p.duration_nanos,
            period: p.period,
            samples: Vec::new(),
        });
    }
    let mut sums: Vec<FxHashMap<crate::meta::StackId, i64>> =
        vec![FxHashMap::default(); planned.len()];
    for (si, sample) in p.sample.iter().enumerate() {
        let st = stack_of_sample[si];
        if st == usize::MAX {
            continue;
        }
        for (t, v) in sample.value.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            if let Some(&i) = index.get(&(t, sample_group[si])) {
                let e = sums[i].entry(stack_ids[st]).or_insert(0);
                *e = e.wrapping_add(*v);
            }
        }
    }
    let mut samples = 0;
    for (i, sum) in sums.into_iter().enumerate() {
        let mut v: Vec<_> = sum.into_iter().filter(|(_, v)| *v != 0).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        samples += v.len();
        appends[i].samples = v;
    }

    // 6. Create the series, lock them all (in ref order), check, append.
    let mut targets: Vec<(Arc<MemSeries>, usize)> = Vec::with_capacity(planned.len());
    for (i, ps) in planned.iter().enumerate() {
        let series = head.get_or_create(
            ps.labels.clone(),
            ps.profile_type.clone(),
            ps.pprof_labels.clone(),
        )?;
        targets.push((series, i));
    }
    targets.sort_by_key(|(s, _)| s.sref);
    let mut guards: Vec<_> = targets.iter().map(|(s, _)| s.lock()).collect();
    for ((series, _), g) in targets.iter().zip(guards.iter()) {
        series.check_append(g, timestamp)?;
    }
    log()?;
    for ((series, i), g) in targets.iter().zip(guards.iter_mut()) {
        series.append_locked(g, &appends[*i])?;
    }
    drop(guards);

    let mut profile_types: Vec<String> =
        planned.iter().map(|p| p.profile_type.to_string()).collect();
    profile_types.sort();
    profile_types.dedup();
    Ok(IngestSummary {
        series: planned.len(),
        samples,
        timestamp_ms: timestamp,
        profile_types,
    })
}

fn plan_series<'a>(
    writer: &Labels,
    pt: &ProfileType,
    group: &[(i64, i64)],
    s: &impl Fn(i64) -> &'a str,
    limits: &LabelLimits,
    type_idx: usize,
    group_idx: usize,
) -> Result<PlannedSeries, IngestError> {
    let mut labels = writer.clone();
    labels.set(METRIC_NAME.to_string(), pt.to_string());
    let mut pprof_labels = Vec::with_capacity(group.len());
    for &(k, v) in group {
        let (name, value) = (s(k), s(v));
        let mut series_name = name.to_string();
        while series_name.starts_with("__") || labels.get(&series_name).is_some() {
            series_name = format!("pprof_{series_name}");
        }
        check_label(&series_name, value, limits)?;
        labels.set(series_name.clone(), value.to_string());
        pprof_labels.push((series_name, name.to_string()));
    }
    if labels.len() > limits.max_labels_per_series {
        return Err(IngestError::Limit(format!(
            "series {labels} has {} labels, limit max_labels_per_series is {}",
            labels.len(),
            limits.max_labels_per_series
        )));
    }
    Ok(PlannedSeries {
        labels,
        profile_type: pt.clone(),
        pprof_labels,
        type_idx,
        group: group_idx,
    })
}

/// pprof id → profstore id. pprof writers usually number ids 1..=n, so a
/// dense vector answers most lookups; anything else falls back to a map.
struct IdMap<T: Copy> {
    dense: Vec<Option<T>>,
    sparse: FxHashMap<u64, T>,
}

impl<T: Copy> IdMap<T> {
    fn new(pairs: impl Iterator<Item = (u64, T)>) -> Self {
        let pairs: Vec<(u64, T)> = pairs.collect();
        let n = pairs.len() as u64;
        let mut m = IdMap {
            dense: Vec::new(),
            sparse: FxHashMap::default(),
        };
        if pairs.iter().all(|(id, _)| *id <= n) {
            m.dense = vec![None; n as usize + 1];
            for (id, v) in pairs {
                m.dense[id as usize] = Some(v);
            }
        } else {
            m.sparse = pairs.into_iter().collect();
        }
        m
    }

    #[inline]
    fn get(&self, id: u64) -> Option<T> {
        if self.dense.is_empty() {
            self.sparse.get(&id).copied()
        } else {
            self.dense.get(id as usize).copied().flatten()
        }
    }
}

/// A location's lines as (function, line, column). Validated: a non-zero
/// function id exists; a line without a function (id 0) carries nothing to
/// keep and is dropped.
fn lines_of<'a>(
    l: &'a crate::proto::pprof::Location,
    functions: &'a IdMap<crate::meta::FunctionId>,
) -> impl Iterator<Item = (crate::meta::FunctionId, i64, i64)> + 'a {
    l.line.iter().filter_map(|line| {
        functions
            .get(line.function_id)
            .map(|f| (f, line.line, line.column))
    })
}
