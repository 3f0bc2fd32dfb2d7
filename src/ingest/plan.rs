//! [`plan`]: the one normalization of a profile into per-series appends,
//! shared by every backend.
//!
//! A [`Plan`] is pure (no I/O, no locks) and computed whole before a backend
//! writes anything, so a request that breaks a rule or a limit changes
//! nothing. It holds:
//! - the series the profile is appended to, one per sample type and group
//!   of pprof string labels (the rules are in the [`super`] module docs),
//!   each with its per-stack sums;
//! - the entities those sums refer to ([`ProfileSymbols`]): the stacks, and
//!   the locations, functions and mappings the stacks reach, each once, with
//!   their content ids ([`keys::content_id`]). Entities are kept as indexes
//!   into the pprof and materialized only when a backend needs the value (a
//!   new entity), so a profile whose entities are all known allocates no
//!   strings for them.
//!
//! Invariants: every id in a series' samples is the id of one of
//! [`ProfileSymbols::stacks`]; every location of those stacks is in
//! [`ProfileSymbols::locations`], and every mapping and function of those
//! locations in `mappings` and `functions`; each list holds an id once; the
//! id of every entity is [`keys::content_id`] of its key, so it is the same in
//! every store and every backend.

use super::{
    check_label, check_profile_name, check_writer_labels, profile_timestamp, IngestError,
    IngestRequest, IngestSummary, LabelLimits,
};
use crate::model::labels::{Labels, SampleLabels, METRIC_NAME};
use crate::model::profile_type::{infer_name, ProfileType};
use crate::model::{
    keys, Function, FunctionId, Line, Location, LocationId, Mapping, MappingId, NumLabel, StackId,
    Stacktrace,
};
use crate::proto::pprof::Profile;
use rustc_hash::{FxHashMap, FxHashSet};
use uuid::Uuid;

/// One series' share of a profile.
#[derive(Debug, Clone)]
pub struct PlannedSeries {
    /// The full label set, `__name__` included.
    pub labels: Labels,
    /// The profile type.
    pub profile_type: ProfileType,
    /// Series label name → pprof label name, for labels from pprof.
    pub pprof_labels: Vec<(String, String)>,
    /// [`Labels::stable_hash`] of the labels without the pprof ones: the
    /// ingested profile this share came from (a merge counts each origin's
    /// duration once).
    pub origin: u64,
    /// (stack, summed value): non-zero, stacks unique, sorted by id.
    pub samples: Vec<(StackId, i64)>,
    /// The samples that carried sample labels, summed per (labels, stack):
    /// non-zero, each pair once, sorted. Their values are in `samples` too.
    pub tagged: Vec<(SampleLabels, StackId, i64)>,
}

impl PlannedSeries {
    /// (pprof name, value) of the pprof labels, sorted.
    pub fn pprof_values(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .pprof_labels
            .iter()
            .filter_map(|(s, p)| self.labels.get(s).map(|v| (p.clone(), v.to_string())))
            .collect();
        v.sort();
        v
    }

    /// The profile's total, summed wrapping as the head sums.
    pub fn total(&self) -> i64 {
        self.samples
            .iter()
            .fold(0i64, |a, (_, v)| a.wrapping_add(*v))
    }
}

/// One distinct stack of a profile.
#[derive(Debug, Clone)]
pub struct PlannedStack {
    /// Its content id.
    pub id: StackId,
    /// The first sample (index into the pprof's samples) with this stack.
    pub sample: usize,
    /// Its numeric labels, sorted.
    pub num_labels: Vec<NumLabel>,
}

/// The entities of one profile that its planned samples reach (see the
/// module docs), as indexes into the pprof with their content ids.
#[derive(Debug)]
pub struct ProfileSymbols<'a> {
    profile: &'a Profile,
    /// Content id per pprof mapping, function and location (by index).
    mapping_ids: Vec<MappingId>,
    function_ids: Vec<FunctionId>,
    location_ids: Vec<LocationId>,
    /// pprof id → index, per kind.
    mapping_index: IdMap,
    function_index: IdMap,
    location_index: IdMap,
    /// pprof indexes of the distinct mappings reached.
    pub mappings: Vec<usize>,
    /// pprof indexes of the distinct functions reached.
    pub functions: Vec<usize>,
    /// pprof indexes of the distinct locations reached.
    pub locations: Vec<usize>,
    /// The distinct stacks, in order of first appearance.
    pub stacks: Vec<PlannedStack>,
}

impl ProfileSymbols<'_> {
    fn s(&self, i: i64) -> &str {
        // Validated: every string index is in range.
        self.profile
            .string_table
            .get(i as usize)
            .map_or("", String::as_str)
    }

    /// The id of pprof mapping `i`.
    pub fn mapping_id(&self, i: usize) -> MappingId {
        self.mapping_ids[i]
    }

    /// pprof mapping `i`.
    pub fn mapping(&self, i: usize) -> Mapping {
        let m = &self.profile.mapping[i];
        Mapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.s(m.filename).to_string(),
            build_id: self.s(m.build_id).to_string(),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        }
    }

    /// The id of pprof function `i`.
    pub fn function_id(&self, i: usize) -> FunctionId {
        self.function_ids[i]
    }

    /// pprof function `i`.
    pub fn function(&self, i: usize) -> Function {
        let f = &self.profile.function[i];
        Function {
            name: self.s(f.name).to_string(),
            system_name: self.s(f.system_name).to_string(),
            filename: self.s(f.filename).to_string(),
            start_line: f.start_line,
        }
    }

    /// The id of pprof location `i`.
    pub fn location_id(&self, i: usize) -> LocationId {
        self.location_ids[i]
    }

    /// pprof location `i`, its mapping and functions as content ids.
    pub fn location(&self, i: usize) -> Location {
        let l = &self.profile.location[i];
        Location {
            mapping: self.mapping_of(l),
            address: l.address,
            is_folded: l.is_folded,
            lines: lines_of(l, &self.function_index, &self.function_ids)
                .map(|(function, line, column)| Line {
                    function,
                    line,
                    column,
                })
                .collect(),
        }
    }

    /// Stack `k` of [`ProfileSymbols::stacks`].
    pub fn stack(&self, k: usize) -> Stacktrace {
        let st = &self.stacks[k];
        Stacktrace {
            locations: self.locations_of(st.sample).collect(),
            num_labels: st.num_labels.clone(),
        }
    }

    fn mapping_of(&self, l: &crate::proto::pprof::Location) -> Option<MappingId> {
        self.mapping_index
            .get(l.mapping_id)
            .map(|i| self.mapping_ids[i])
    }

    /// The location ids of sample `si`, leaf first. Validated: every
    /// location id of a sample exists.
    fn locations_of(&self, si: usize) -> impl Iterator<Item = LocationId> + '_ {
        self.profile.sample[si]
            .location_id
            .iter()
            .filter_map(|id| self.location_index.get(*id))
            .map(|i| self.location_ids[i])
    }
}

/// One profile, normalized (see the module docs).
#[derive(Debug)]
pub struct Plan<'a> {
    /// The profile's timestamp (ms): see [`profile_timestamp`].
    pub timestamp: i64,
    /// Duration (ns) as given.
    pub duration: i64,
    /// Period as given.
    pub period: i64,
    /// The series, per sample type in pprof order, then per label group in
    /// order of first appearance.
    pub series: Vec<PlannedSeries>,
    /// The entities the series' samples reach.
    pub symbols: ProfileSymbols<'a>,
}

impl Plan<'_> {
    /// What the ingest of this plan reports.
    pub fn summary(&self) -> IngestSummary {
        let mut profile_types: Vec<String> = self
            .series
            .iter()
            .map(|p| p.profile_type.to_string())
            .collect();
        profile_types.sort();
        profile_types.dedup();
        IngestSummary {
            series: self.series.len(),
            samples: self.series.iter().map(|s| s.samples.len()).sum(),
            timestamp_ms: self.timestamp,
            profile_types,
            duplicate_series: 0,
        }
    }
}

/// Normalizes `req` (see the module docs): checks the writer's labels and
/// name, plans the series, derives every entity's id and sums per stack.
pub fn plan<'a>(req: &'a IngestRequest, limits: &LabelLimits) -> Result<Plan<'a>, IngestError> {
    let p = &req.profile;
    check_writer_labels(&req.labels, limits)?;
    if let Some(n) = &req.name {
        check_profile_name(n)?;
    }
    // Validated: every index is in range (an empty table reads as [""]).
    let s = |i: i64| -> &str { p.string_table.get(i as usize).map_or("", String::as_str) };
    let (period_type, period_unit) = p
        .period_type
        .as_ref()
        .map(|v| (s(v.r#type), s(v.unit)))
        .unwrap_or(("", ""));

    // 1. Group samples by their string labels, and by their sample labels
    //    (kept out of the groups).
    let mut is_sample_key: FxHashMap<i64, bool> = FxHashMap::default();
    let mut groups: FxHashMap<Vec<(i64, i64)>, usize> = FxHashMap::default();
    let mut group_labels: Vec<Vec<(i64, i64)>> = Vec::new();
    let mut sample_group: Vec<usize> = Vec::with_capacity(p.sample.len());
    let mut tag_groups: FxHashMap<Vec<(i64, i64)>, usize> = FxHashMap::default();
    let mut tag_labels: Vec<SampleLabels> = Vec::new();
    // Per sample, its sample labels' index in `tag_labels`.
    let mut sample_tags: Vec<Option<usize>> = Vec::new();
    let mut key: Vec<(i64, i64)> = Vec::new();
    let mut tag_key: Vec<(i64, i64)> = Vec::new();
    for sample in &p.sample {
        key.clear();
        tag_key.clear();
        for l in &sample.label {
            if l.str == 0 || key.iter().chain(&tag_key).any(|(k, _)| *k == l.key) {
                continue;
            }
            let tag = !limits.sample_labels.is_empty()
                && *is_sample_key
                    .entry(l.key)
                    .or_insert_with(|| limits.sample_labels.iter().any(|n| n == s(l.key)));
            if tag {
                tag_key.push((l.key, l.str));
            } else {
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
        if !tag_key.is_empty() {
            sample_tags.resize(sample_group.len() - 1, None);
            let t = match tag_groups.get(&tag_key) {
                Some(t) => *t,
                None => {
                    let mut labels: SampleLabels = tag_key
                        .iter()
                        .map(|&(k, v)| (s(k).to_string(), s(v).to_string()))
                        .collect();
                    labels.sort();
                    for (n, v) in &labels {
                        check_label(n, v, limits)?;
                    }
                    let t = tag_labels.len();
                    tag_groups.insert(tag_key.clone(), t);
                    tag_labels.push(labels);
                    t
                }
            };
            sample_tags.push(Some(t));
        }
    }

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
    let mut series: Vec<PlannedSeries> = Vec::new();
    // (type index, group) → index in `series`.
    let mut index: FxHashMap<(usize, usize), usize> = FxHashMap::default();
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
            index.insert((t, g), series.len());
            series.push(plan_series(&req.labels, &pt, gl, &s, limits)?);
        }
        if !any {
            series.push(plan_series(&req.labels, &pt, &[], &s, limits)?);
        }
    }

    // 3. Content ids of every mapping, function and location, children
    //    first (a location's key holds its mapping's and functions' ids).
    let mut buf = Vec::with_capacity(256);
    let mapping_index = IdMap::new(p.mapping.iter().map(|m| m.id));
    let mapping_ids: Vec<MappingId> = p
        .mapping
        .iter()
        .map(|m| {
            buf.clear();
            keys::mapping_key_parts(
                &mut buf,
                m.memory_limit.saturating_sub(m.memory_start),
                m.file_offset,
                s(m.filename),
                s(m.build_id),
            );
            MappingId(keys::content_id(&buf))
        })
        .collect();
    let function_index = IdMap::new(p.function.iter().map(|f| f.id));
    let function_ids: Vec<FunctionId> = p
        .function
        .iter()
        .map(|f| {
            buf.clear();
            keys::function_key_parts(
                &mut buf,
                f.start_line,
                s(f.name),
                s(f.system_name),
                s(f.filename),
            );
            FunctionId(keys::content_id(&buf))
        })
        .collect();
    let location_index = IdMap::new(p.location.iter().map(|l| l.id));
    let location_ids: Vec<LocationId> = p
        .location
        .iter()
        .map(|l| {
            buf.clear();
            keys::location_key_parts(
                &mut buf,
                mapping_index.get(l.mapping_id).map(|i| mapping_ids[i]),
                l.address,
                l.is_folded,
                lines_of(l, &function_index, &function_ids),
            );
            LocationId(keys::content_id(&buf))
        })
        .collect();

    // 4. Stacks of the samples with a non-zero value, summed per series.
    // Sized for the samples up front: growing these maps was a large part
    // of a small profile's plan.
    let mut stacks: Vec<PlannedStack> = Vec::with_capacity(p.sample.len());
    let mut seen_stacks: FxHashSet<StackId> =
        FxHashSet::with_capacity_and_hasher(p.sample.len(), Default::default());
    let per_series = if series.len() == 1 {
        p.sample.len()
    } else {
        p.sample.len() / 2
    };
    let mut sums: Vec<FxHashMap<StackId, i64>> = (0..series.len())
        .map(|_| FxHashMap::with_capacity_and_hasher(per_series, Default::default()))
        .collect();
    // Per series, (sample labels, stack) → sum, for samples with sample labels.
    let mut tag_sums: Vec<FxHashMap<(usize, StackId), i64>> =
        (0..series.len()).map(|_| FxHashMap::default()).collect();
    let mut locs: Vec<LocationId> = Vec::with_capacity(64);
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
        locs.clear();
        // Validated: every location id of a sample exists.
        locs.extend(
            sample
                .location_id
                .iter()
                .filter_map(|id| location_index.get(*id))
                .map(|i| location_ids[i]),
        );
        buf.clear();
        keys::stack_key(&mut buf, &locs, &num_labels);
        let stack = StackId(keys::content_id(&buf));
        if seen_stacks.insert(stack) {
            stacks.push(PlannedStack {
                id: stack,
                sample: si,
                num_labels,
            });
        }
        for (t, v) in sample.value.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            if let Some(&i) = index.get(&(t, sample_group[si])) {
                let e = sums[i].entry(stack).or_insert(0);
                *e = e.wrapping_add(*v);
                if let Some(Some(tag)) = sample_tags.get(si) {
                    let e = tag_sums[i].entry((*tag, stack)).or_insert(0);
                    *e = e.wrapping_add(*v);
                }
            }
        }
    }
    for ((ps, sum), tags) in series.iter_mut().zip(sums).zip(tag_sums) {
        let mut v: Vec<(StackId, i64)> = sum.into_iter().filter(|(_, v)| *v != 0).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        ps.samples = v;
        let mut t: Vec<(SampleLabels, StackId, i64)> = tags
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|((tag, stack), v)| (tag_labels[tag].clone(), stack, v))
            .collect();
        t.sort_unstable();
        ps.tagged = t;
    }

    // 5. The entities the stacks reach, each id once.
    let mut symbols = ProfileSymbols {
        profile: p,
        mapping_ids,
        function_ids,
        location_ids,
        mapping_index,
        function_index,
        location_index,
        mappings: Vec::new(),
        functions: Vec::new(),
        locations: Vec::new(),
        stacks,
    };
    reach(&mut symbols);

    Ok(Plan {
        timestamp: profile_timestamp(req),
        duration: p.duration_nanos,
        period: p.period,
        series,
        symbols,
    })
}

/// Fills the mappings, functions and locations the stacks of `sym` reach,
/// in pprof order, each id once.
fn reach(sym: &mut ProfileSymbols<'_>) {
    let p = sym.profile;
    let mut location_used = vec![false; p.location.len()];
    for st in &sym.stacks {
        for id in &p.sample[st.sample].location_id {
            if let Some(i) = sym.location_index.get(*id) {
                location_used[i] = true;
            }
        }
    }
    let mut mapping_used = vec![false; p.mapping.len()];
    let mut function_used = vec![false; p.function.len()];
    let mut seen: FxHashSet<Uuid> = FxHashSet::default();
    for (i, l) in p.location.iter().enumerate() {
        if !location_used[i] || !seen.insert(sym.location_ids[i].0) {
            continue;
        }
        sym.locations.push(i);
        if let Some(m) = sym.mapping_index.get(l.mapping_id) {
            mapping_used[m] = true;
        }
        for line in &l.line {
            if let Some(f) = sym.function_index.get(line.function_id) {
                function_used[f] = true;
            }
        }
    }
    seen.clear();
    for (i, used) in mapping_used.into_iter().enumerate() {
        if used && seen.insert(sym.mapping_ids[i].0) {
            sym.mappings.push(i);
        }
    }
    seen.clear();
    for (i, used) in function_used.into_iter().enumerate() {
        if used && seen.insert(sym.function_ids[i].0) {
            sym.functions.push(i);
        }
    }
}

fn plan_series<'a>(
    writer: &Labels,
    pt: &ProfileType,
    group: &[(i64, i64)],
    s: &impl Fn(i64) -> &'a str,
    limits: &LabelLimits,
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
    let mut origin = labels.clone();
    for (name, _) in &pprof_labels {
        origin.remove(name);
    }
    Ok(PlannedSeries {
        origin: origin.stable_hash(),
        labels,
        profile_type: pt.clone(),
        pprof_labels,
        samples: Vec::new(),
        tagged: Vec::new(),
    })
}

/// pprof id → index in its table. pprof writers usually number ids 1..=n,
/// so a dense vector answers most lookups; anything else falls back to a
/// map.
#[derive(Debug)]
struct IdMap {
    dense: Vec<Option<u32>>,
    sparse: FxHashMap<u64, usize>,
}

impl IdMap {
    fn new(ids: impl ExactSizeIterator<Item = u64> + Clone) -> Self {
        let n = ids.len() as u64;
        let mut m = IdMap {
            dense: Vec::new(),
            sparse: FxHashMap::default(),
        };
        // Tables are bounded by the decode limits, far below u32::MAX.
        if ids.clone().all(|id| id <= n) && n < u64::from(u32::MAX) {
            m.dense = vec![None; n as usize + 1];
            for (i, id) in ids.enumerate() {
                m.dense[id as usize] = Some(i as u32);
            }
        } else {
            m.sparse = ids.enumerate().map(|(i, id)| (id, i)).collect();
        }
        m
    }

    #[inline]
    fn get(&self, id: u64) -> Option<usize> {
        if self.dense.is_empty() {
            self.sparse.get(&id).copied()
        } else {
            self.dense
                .get(id as usize)
                .copied()
                .flatten()
                .map(|i| i as usize)
        }
    }
}

/// A location's lines as (function id, line, column). Validated: a non-zero
/// function id exists; a line without a function (id 0) carries nothing to
/// keep and is dropped.
fn lines_of<'a>(
    l: &'a crate::proto::pprof::Location,
    index: &'a IdMap,
    ids: &'a [FunctionId],
) -> impl Iterator<Item = (FunctionId, i64, i64)> + 'a {
    l.line.iter().filter_map(move |line| {
        index
            .get(line.function_id)
            .map(|f| (ids[f], line.line, line.column))
    })
}
