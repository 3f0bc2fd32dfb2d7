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
use crate::proto::pprof::{Profile, Sample};
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
    /// The first sample (index into the pprof's samples) with this stack,
    /// whose locations and numeric labels it is.
    pub sample: usize,
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
        let mut nums = Vec::new();
        num_labels_of(self.profile, &self.profile.sample[st.sample], &mut nums);
        Stacktrace {
            locations: self.locations_of(st.sample).collect(),
            num_labels: nums
                .into_iter()
                .map(|(key, value, unit)| NumLabel {
                    key: key.to_string(),
                    value,
                    unit: unit.to_string(),
                })
                .collect(),
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
    // `series_of[t * groups + g]`: the index in `series` of (type t, group
    // g), `u32::MAX` for none.
    let groups = group_labels.len();
    let mut series_of: Vec<u32> = vec![u32::MAX; p.sample_type.len() * groups];
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
            // Series are far fewer than 2^32: one per sample type and group.
            series_of[t * groups + g] = series.len() as u32;
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
    // Each distinct stack gets a number (its index in `stacks`), and each
    // distinct (stack, group) a row of sums, one per sample type, added up
    // in one pass over the samples in pprof order. One sort of the stack
    // ids then gives the order in which the rows are handed to the series,
    // so every series' sums come out in id order with no sort of their own.
    // (Hash maps keyed by 16-byte ids and sorts comparing them were most of
    // a large profile's plan; visiting the samples again in id order was a
    // cache miss per sample.)
    let types = p.sample_type.len();
    let mut stacks: Vec<PlannedStack> = Vec::with_capacity(p.sample.len());
    let mut stack_numbers: FxHashMap<StackId, u32> =
        FxHashMap::with_capacity_and_hasher(p.sample.len(), Default::default());
    // Per stack number, its first row; per row, its group and the next row
    // of the same stack (`u32::MAX`: none); `row_sums` holds `types` values
    // per row. A stack is nearly always in one group, so the chains are short.
    let mut first_row: Vec<u32> = Vec::with_capacity(p.sample.len());
    let mut rows: Vec<(u32, u32)> = Vec::with_capacity(p.sample.len());
    let mut row_sums: Vec<i64> = Vec::with_capacity(p.sample.len() * types);
    // Per series, (sample labels, stack) → sum, for samples with sample labels.
    let mut tag_sums: Vec<FxHashMap<(usize, StackId), i64>> =
        (0..series.len()).map(|_| FxHashMap::default()).collect();
    // The locations the planned samples reach (step 5).
    let mut location_used = vec![false; p.location.len()];
    let used = location_used.as_mut_slice();
    let location_table = location_ids.as_slice();
    // The sample's numeric labels (reused: no allocation per sample).
    let mut nums = Vec::new();
    for (si, sample) in p.sample.iter().enumerate() {
        if sample.value.iter().all(|v| *v == 0) {
            continue;
        }
        num_labels_of(p, sample, &mut nums);
        // The location ids, written into a slice of `buf` sized for them
        // (a push per frame checked the capacity and, after the store into
        // `location_used`, reloaded every length it read).
        buf.clear();
        buf.resize(16 * sample.location_id.len(), 0);
        let mut frames = 0;
        for id in &sample.location_id {
            // Validated: every location id of a sample exists (a missing
            // one would be skipped).
            if let Some(i) = location_index.get(*id) {
                used[i] = true;
                buf[16 * frames..16 * frames + 16].copy_from_slice(location_table[i].as_bytes());
                frames += 1;
            }
        }
        buf.truncate(16 * frames);
        keys::stack_key_finish(&mut buf, 0, nums.iter().copied());
        let stack = StackId(keys::content_id(&buf));
        // Stacks and rows are at most one per sample, and samples are
        // bounded by the decode limits, far below 2^32.
        let next = stacks.len() as u32;
        let number = *stack_numbers.entry(stack).or_insert(next);
        if number == next {
            stacks.push(PlannedStack {
                id: stack,
                sample: si,
            });
            first_row.push(u32::MAX);
        }
        let g = sample_group[si] as u32;
        let mut row = first_row[number as usize];
        while row != u32::MAX && rows[row as usize].0 != g {
            row = rows[row as usize].1;
        }
        if row == u32::MAX {
            row = rows.len() as u32;
            rows.push((g, first_row[number as usize]));
            first_row[number as usize] = row;
            row_sums.resize(row_sums.len() + types, 0);
        }
        let at = row as usize * types;
        for (sum, v) in row_sums[at..at + types].iter_mut().zip(&sample.value) {
            *sum = sum.wrapping_add(*v);
        }
        if let Some(Some(tag)) = sample_tags.get(si) {
            for (t, v) in sample.value.iter().enumerate() {
                let i = series_of[t * groups + g as usize];
                if *v != 0 && i != u32::MAX {
                    let e = tag_sums[i as usize].entry((*tag, stack)).or_insert(0);
                    *e = e.wrapping_add(*v);
                }
            }
        }
    }
    drop(stack_numbers);
    // (id, number) sorted: the ids beside the numbers, so the sort reads
    // no other array. Ids are unique, so numbers never decide.
    let mut by_id: Vec<(u128, u32)> = (stacks.iter().enumerate())
        .map(|(k, s)| (s.id.0.as_u128(), k as u32))
        .collect();
    by_id.sort_unstable();
    let per_series = if series.len() == 1 {
        stacks.len()
    } else {
        stacks.len() / 2
    };
    let mut sums: Vec<Vec<(StackId, i64)>> = (0..series.len())
        .map(|_| Vec::with_capacity(per_series))
        .collect();
    for &(_, k) in &by_id {
        let stack = stacks[k as usize].id;
        let mut row = first_row[k as usize];
        while row != u32::MAX {
            let (g, next) = rows[row as usize];
            let at = row as usize * types;
            for (t, &v) in row_sums[at..at + types].iter().enumerate() {
                // A type of the group with a non-zero sum has a series: some
                // sample of the group has a non-zero value of that type.
                let i = series_of[t * groups + g as usize];
                if v != 0 && i != u32::MAX {
                    sums[i as usize].push((stack, v));
                }
            }
            row = next;
        }
    }
    for ((ps, sum), tags) in series.iter_mut().zip(sums).zip(tag_sums) {
        ps.samples = sum;
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
    reach(&mut symbols, location_used);

    Ok(Plan {
        timestamp: profile_timestamp(req),
        duration: p.duration_nanos,
        period: p.period,
        series,
        symbols,
    })
}

/// The numeric labels of `sample` (part of its stack's identity) as
/// (key, value, unit) into `out`, sorted as [`NumLabel`] sorts. A label
/// with a string value, or with neither a number nor a unit, is not one.
fn num_labels_of<'p>(p: &'p Profile, sample: &Sample, out: &mut Vec<(&'p str, i64, &'p str)>) {
    // Validated: every index is in range (an empty table reads as [""]).
    let s = |i: i64| -> &'p str { p.string_table.get(i as usize).map_or("", String::as_str) };
    out.clear();
    out.extend(
        sample
            .label
            .iter()
            .filter(|l| l.str == 0 && (l.num != 0 || l.num_unit != 0))
            .map(|l| (s(l.key), l.num, s(l.num_unit))),
    );
    out.sort_unstable();
}

/// Fills the mappings, functions and locations the stacks of `sym` reach,
/// in pprof order, each id once; `location_used` marks (by pprof index) the
/// locations of those stacks.
fn reach(sym: &mut ProfileSymbols<'_>, location_used: Vec<bool>) {
    let p = sym.profile;
    let mut mapping_used = vec![false; p.mapping.len()];
    let mut function_used = vec![false; p.function.len()];
    let mut seen: FxHashSet<Uuid> =
        FxHashSet::with_capacity_and_hasher(sym.location_ids.len(), Default::default());
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

#[cfg(test)]
mod tests {
    //! [`plan`] checked against a slow, obvious version: every stack id
    //! derived from the model entities' keys, sums in a `BTreeMap`, per
    //! (sample type, pprof label group), over the real corpus and a
    //! profile with repeated stacks, sums that cancel and labels.

    use super::*;
    use crate::model::labels::Labels;
    use crate::pprof::{decode, DecodeLimits};
    use crate::proto::pprof as pb;
    use std::collections::{BTreeMap, BTreeSet};

    /// (sample type, unit, pprof label group) → stack id → sum, with the
    /// zero sums left out; and the location ids the summed samples reach.
    #[allow(clippy::type_complexity)]
    /// A series' key in [`naive`]'s answer: sample type, unit and pprof
    /// string labels.
    type SeriesKey = (String, String, Vec<(String, String)>);

    /// Per series: the sums per stack; the sums per (sample labels, stack)
    /// of the samples with sample labels; and the locations reached.
    #[allow(clippy::type_complexity)]
    fn naive(
        p: &Profile,
        limits: &LabelLimits,
    ) -> (
        BTreeMap<SeriesKey, BTreeMap<StackId, i64>>,
        BTreeMap<SeriesKey, BTreeMap<(SampleLabels, StackId), i64>>,
        BTreeSet<LocationId>,
    ) {
        let s = |i: i64| p.string_table.get(i as usize).cloned().unwrap_or_default();
        let mapping = |id: u64| -> Option<MappingId> {
            let m = p.mapping.iter().find(|m| m.id == id)?;
            let mut b = Vec::new();
            keys::mapping_key(
                &mut b,
                &Mapping {
                    memory_start: m.memory_start,
                    memory_limit: m.memory_limit,
                    file_offset: m.file_offset,
                    filename: s(m.filename),
                    build_id: s(m.build_id),
                    ..Default::default()
                },
            );
            Some(MappingId(keys::content_id(&b)))
        };
        let function = |id: u64| -> Option<FunctionId> {
            let f = p.function.iter().find(|f| f.id == id)?;
            let mut b = Vec::new();
            keys::function_key(
                &mut b,
                &Function {
                    name: s(f.name),
                    system_name: s(f.system_name),
                    filename: s(f.filename),
                    start_line: f.start_line,
                },
            );
            Some(FunctionId(keys::content_id(&b)))
        };
        let location = |id: u64| -> LocationId {
            let l = p.location.iter().find(|l| l.id == id).unwrap();
            let mut b = Vec::new();
            keys::location_key(
                &mut b,
                &Location {
                    mapping: mapping(l.mapping_id),
                    address: l.address,
                    is_folded: l.is_folded,
                    lines: l
                        .line
                        .iter()
                        .filter_map(|x| {
                            Some(Line {
                                function: function(x.function_id)?,
                                line: x.line,
                                column: x.column,
                            })
                        })
                        .collect(),
                },
            );
            LocationId(keys::content_id(&b))
        };
        let location_ids: BTreeMap<u64, LocationId> =
            p.location.iter().map(|l| (l.id, location(l.id))).collect();
        let mut sums: BTreeMap<_, BTreeMap<StackId, i64>> = BTreeMap::new();
        let mut tagged: BTreeMap<_, BTreeMap<(SampleLabels, StackId), i64>> = BTreeMap::new();
        let mut reached = BTreeSet::new();
        for sample in &p.sample {
            if sample.value.iter().all(|v| *v == 0) {
                continue;
            }
            let locs: Vec<LocationId> = sample
                .location_id
                .iter()
                .map(|id| location_ids[id])
                .collect();
            reached.extend(locs.iter().copied());
            let mut num: Vec<NumLabel> = sample
                .label
                .iter()
                .filter(|l| l.str == 0 && (l.num != 0 || l.num_unit != 0))
                .map(|l| NumLabel {
                    key: s(l.key),
                    value: l.num,
                    unit: s(l.num_unit),
                })
                .collect();
            num.sort();
            let mut b = Vec::new();
            keys::stack_key(&mut b, &locs, &num);
            let stack = StackId(keys::content_id(&b));
            // The first value of each string label; sample labels apart.
            let mut group: Vec<(String, String)> = Vec::new();
            let mut tags: SampleLabels = Vec::new();
            for l in &sample.label {
                let name = s(l.key);
                if l.str == 0 || group.iter().chain(&tags).any(|(n, _)| *n == name) {
                    continue;
                }
                if limits.sample_labels.contains(&name) {
                    tags.push((name, s(l.str)));
                } else {
                    group.push((name, s(l.str)));
                }
            }
            group.sort();
            tags.sort();
            for (t, v) in sample.value.iter().enumerate() {
                let vt = &p.sample_type[t];
                let key = (s(vt.r#type), s(vt.unit), group.clone());
                let e = sums
                    .entry(key.clone())
                    .or_default()
                    .entry(stack)
                    .or_insert(0);
                *e = e.wrapping_add(*v);
                if !tags.is_empty() {
                    let e = tagged
                        .entry(key)
                        .or_default()
                        .entry((tags.clone(), stack))
                        .or_insert(0);
                    *e = e.wrapping_add(*v);
                }
            }
        }
        for m in sums.values_mut() {
            m.retain(|_, v| *v != 0);
        }
        sums.retain(|_, m| !m.is_empty());
        for m in tagged.values_mut() {
            m.retain(|_, v| *v != 0);
        }
        tagged.retain(|_, m| !m.is_empty());
        (sums, tagged, reached)
    }

    fn check(what: &str, p: Profile) {
        let types: BTreeSet<(i64, i64)> =
            p.sample_type.iter().map(|t| (t.r#type, t.unit)).collect();
        if types.len() < p.sample_type.len() {
            // Two sample types of one name: the naive version cannot tell
            // their series apart.
            return;
        }
        let limits = LabelLimits::default();
        let (want, want_tagged, reached) = naive(&p, &limits);
        let req = IngestRequest {
            name: None,
            labels: Labels::from_pairs([("job", "t")]),
            delta: None,
            profile: p,
            received_at_ms: 1,
        };
        let plan = plan(&req, &limits).unwrap();
        let mut got = BTreeMap::new();
        let mut got_tagged = BTreeMap::new();
        for ps in &plan.series {
            assert!(
                ps.samples.windows(2).all(|w| w[0].0 < w[1].0),
                "{what}: samples not sorted by stack id"
            );
            assert!(
                ps.tagged
                    .windows(2)
                    .all(|w| (&w[0].0, w[0].1) < (&w[1].0, w[1].1)),
                "{what}: tagged sums not sorted, or a pair twice"
            );
            let key = (
                ps.profile_type.sample_type.clone(),
                ps.profile_type.sample_unit.clone(),
                ps.pprof_values(),
            );
            if !ps.tagged.is_empty() {
                let sums = ps.tagged.iter().map(|(l, s, v)| ((l.clone(), *s), *v));
                got_tagged.insert(key.clone(), sums.collect::<BTreeMap<_, _>>());
            }
            if ps.samples.is_empty() {
                continue;
            }
            assert!(
                got.insert(key, ps.samples.iter().copied().collect::<BTreeMap<_, _>>())
                    .is_none(),
                "{what}: two series of one group"
            );
        }
        assert_eq!(got, want, "{what}: sums per series");
        assert_eq!(got_tagged, want_tagged, "{what}: sums per sample labels");
        let stacks: BTreeSet<StackId> = want.values().flat_map(|m| m.keys().copied()).collect();
        let planned: BTreeSet<StackId> = plan.symbols.stacks.iter().map(|s| s.id).collect();
        assert!(
            stacks.is_subset(&planned),
            "{what}: a summed stack not planned"
        );
        let locations: BTreeSet<LocationId> = plan
            .symbols
            .locations
            .iter()
            .map(|&i| plan.symbols.location_id(i))
            .collect();
        assert_eq!(
            locations.len(),
            plan.symbols.locations.len(),
            "{what}: a location twice"
        );
        assert_eq!(locations, reached, "{what}: locations reached");
        // The entity made of each planned stack has the planned id.
        let mut key = Vec::new();
        for (k, st) in plan.symbols.stacks.iter().enumerate() {
            let made = plan.symbols.stack(k);
            key.clear();
            keys::stack_key(&mut key, &made.locations, &made.num_labels);
            assert_eq!(StackId(keys::content_id(&key)), st.id, "{what}: stack {k}");
        }
    }

    #[test]
    fn sums_match_a_slow_version_on_the_corpus() {
        let Some(dir) = crate::pprof::tests::corpus_dir() else {
            return;
        };
        let mut checked = 0;
        for (name, path) in crate::pprof::tests::corpus_files(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            if let Ok(p) = decode(&bytes, &DecodeLimits::default()) {
                check(&name, p);
                checked += 1;
            }
        }
        assert!(checked > 10, "only {checked} corpus files decoded");
    }

    #[test]
    fn sums_match_a_slow_version_with_repeats_labels_and_cancelling_values() {
        let strings = ["", "cpu", "ns", "a", "b", "span_id", "x", "y", "bytes", "B"];
        let label = |key: i64, str: i64, num: i64| pb::Label {
            key,
            str,
            num,
            num_unit: if num != 0 { 9 } else { 0 },
        };
        let sample = |locs: &[u64], values: [i64; 2], labels: Vec<pb::Label>| pb::Sample {
            location_id: locs.to_vec(),
            value: values.to_vec(),
            label: labels,
        };
        let p = Profile {
            sample_type: vec![
                pb::ValueType { r#type: 1, unit: 2 },
                pb::ValueType { r#type: 8, unit: 9 },
            ],
            sample: vec![
                sample(&[1, 2], [5, 0], vec![]),
                sample(&[1, 2], [7, 3], vec![]),
                sample(&[2, 1], [1, -3], vec![]),
                sample(&[2, 1], [0, 3], vec![]),
                sample(&[1, 2], [4, 1], vec![label(3, 6, 0)]),
                sample(&[1, 2], [4, 1], vec![label(3, 7, 0), label(3, 6, 0)]),
                sample(&[1, 2], [2, 2], vec![label(5, 6, 0), label(4, 7, 0)]),
                // Sample labels whose sums cancel in one type, and one
                // span on two stacks.
                sample(&[3], [1, 4], vec![label(5, 7, 0)]),
                sample(&[3], [-1, 4], vec![label(5, 7, 0)]),
                sample(&[2], [6, 0], vec![label(5, 7, 0), label(3, 6, 0)]),
                sample(&[3], [9, 9], vec![label(8, 0, 64)]),
                sample(&[3], [1, 1], vec![label(8, 0, 128)]),
                sample(&[3], [-9, 0], vec![label(8, 0, 64)]),
                // Two numeric labels, in either order: one stack.
                sample(&[3], [2, 2], vec![label(8, 0, 32), label(3, 0, 7)]),
                sample(&[3], [3, 3], vec![label(3, 0, 7), label(8, 0, 32)]),
                sample(&[1], [i64::MAX, 0], vec![]),
                sample(&[1], [i64::MAX, 0], vec![]),
                sample(&[], [0, 0], vec![]),
            ],
            location: (1..=3)
                .map(|id| pb::Location {
                    id,
                    address: 0x1000 * id,
                    ..Default::default()
                })
                .collect(),
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        check("synthetic", p);
    }
}
