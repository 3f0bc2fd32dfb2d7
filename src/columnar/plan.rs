//! The normalization of one profile into per-series rows, rule for rule as
//! [`crate::ingest::ingest`] does it (see that module's docs), but with
//! content-hash ids instead of meta store UUIDs and no I/O: a [`Plan`] is
//! computed and checked whole before anything is written.
//!
//! Ids: a mapping, function or location id is the XXH3-128 hash of its meta
//! store key ([`crate::meta::keys`], the location key built from the hashed
//! mapping and function ids); a stack id is [`keys::stack_key`] over the
//! hashed location ids, itself a 128-bit XXH3 hash.

use super::{ColumnarError, Known};
use crate::ingest::{
    check_label, check_profile_name, check_writer_labels, IngestError, IngestRequest,
};
use crate::ingest::{IngestSummary, LabelLimits};
use crate::labels::{Labels, METRIC_NAME};
use crate::meta::{keys, FunctionId, LocationId, MappingId, NumLabel};
use crate::meta::{Function, Mapping};
use crate::profile_type::{infer_name, ProfileType};
use duckdb::{params, Connection};
use rustc_hash::{FxHashMap, FxHashSet};
use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_128;

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
    /// ingested profile this share came from, for durations.
    pub origin: u64,
    /// (stack id, summed value), non-zero, sorted by stack id.
    pub samples: Vec<(u128, i64)>,
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

/// A location's dimension row: mapping, address, folded flag and lines as
/// (function id, line, column).
type LocationRow = (Option<u128>, u64, bool, Vec<(u128, i64, i64)>);

/// The dimension rows a profile refers to (each once).
#[derive(Debug, Default)]
pub struct Entities {
    mappings: Vec<(u128, Mapping)>,
    functions: Vec<(u128, Function)>,
    locations: Vec<(u128, LocationRow)>,
    stacks: Vec<(u128, Vec<u128>, Vec<NumLabel>)>,
}

impl Entities {
    /// Appends the rows whose ids `known` does not hold.
    pub(super) fn append_new(&self, conn: &Connection, known: &Known) -> Result<(), ColumnarError> {
        let mut a = conn.appender("mappings")?;
        for (id, m) in &self.mappings {
            if !known.mappings.contains(id) {
                a.append_row(params![
                    id,
                    m.memory_start,
                    m.memory_limit,
                    m.file_offset,
                    m.filename,
                    m.build_id,
                    m.has_functions,
                    m.has_filenames,
                    m.has_line_numbers,
                    m.has_inline_frames
                ])?;
            }
        }
        a.flush()?;
        drop(a);
        let mut a = conn.appender("functions")?;
        for (id, f) in &self.functions {
            if !known.functions.contains(id) {
                a.append_row(params![id, f.name, f.system_name, f.filename, f.start_line])?;
            }
        }
        a.flush()?;
        drop(a);
        let mut a = conn.appender("locations")?;
        let mut l = conn.appender("location_lines")?;
        for (id, (mapping, address, folded, lines)) in &self.locations {
            if known.locations.contains(id) {
                continue;
            }
            a.append_row(params![id, mapping, address, folded])?;
            for (pos, (f, line, col)) in lines.iter().enumerate() {
                l.append_row(params![id, pos as u32, f, line, col])?;
            }
        }
        a.flush()?;
        l.flush()?;
        drop((a, l));
        let mut a = conn.appender("stacks")?;
        let mut n = conn.appender("stack_num_labels")?;
        for (id, locations, num_labels) in &self.stacks {
            if known.stacks.contains(id) {
                continue;
            }
            for (pos, loc) in locations.iter().enumerate() {
                a.append_row(params![id, pos as u32, loc])?;
            }
            for (pos, nl) in num_labels.iter().enumerate() {
                n.append_row(params![id, pos as u32, nl.key, nl.value, nl.unit])?;
            }
        }
        a.flush()?;
        n.flush()?;
        Ok(())
    }

    /// Records the ids as stored (after the commit).
    pub(super) fn publish(&self, known: &mut Known) {
        known.mappings.extend(self.mappings.iter().map(|m| m.0));
        known.functions.extend(self.functions.iter().map(|f| f.0));
        known.locations.extend(self.locations.iter().map(|l| l.0));
        known.stacks.extend(self.stacks.iter().map(|s| s.0));
    }
}

/// One profile, normalized.
#[derive(Debug)]
pub struct Plan {
    /// The profile's timestamp (ms).
    pub timestamp: i64,
    /// Duration (ns) as given.
    pub duration: i64,
    /// Period as given.
    pub period: i64,
    /// The series, in the order [`crate::ingest`] plans them.
    pub series: Vec<PlannedSeries>,
    /// The dimension rows.
    pub entities: Entities,
}

impl Plan {
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
        }
    }
}

fn hash(buf: &[u8]) -> u128 {
    xxh3_128(buf)
}

/// Normalizes `req` (see the module docs).
pub fn plan(req: &IngestRequest, limits: &LabelLimits) -> Result<Plan, IngestError> {
    let p = &req.profile;
    check_writer_labels(&req.labels, limits)?;
    if let Some(n) = &req.name {
        check_profile_name(n)?;
    }
    let empty = String::new();
    // Validated: every index is in range (an empty table reads as [""]).
    let s = |i: i64| -> &str { p.string_table.get(i as usize).unwrap_or(&empty) };
    let timestamp = if p.time_nanos != 0 {
        p.time_nanos.div_euclid(1_000_000)
    } else {
        req.received_at_ms
    };
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

    // 3. Entities and their ids.
    let mut entities = Entities::default();
    let mut buf = Vec::with_capacity(256);
    let mut mapping_by_pprof: FxHashMap<u64, u128> = FxHashMap::default();
    let mut seen: FxHashSet<u128> = FxHashSet::default();
    for m in &p.mapping {
        buf.clear();
        keys::mapping_key_parts(
            &mut buf,
            m.memory_limit.saturating_sub(m.memory_start),
            m.file_offset,
            s(m.filename),
            s(m.build_id),
        );
        let id = hash(&buf);
        mapping_by_pprof.insert(m.id, id);
        if seen.insert(id) {
            entities.mappings.push((
                id,
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
                },
            ));
        }
    }
    let mut function_by_pprof: FxHashMap<u64, u128> = FxHashMap::default();
    seen.clear();
    for f in &p.function {
        buf.clear();
        keys::function_key_parts(
            &mut buf,
            f.start_line,
            s(f.name),
            s(f.system_name),
            s(f.filename),
        );
        let id = hash(&buf);
        function_by_pprof.insert(f.id, id);
        if seen.insert(id) {
            entities.functions.push((
                id,
                Function {
                    name: s(f.name).to_string(),
                    system_name: s(f.system_name).to_string(),
                    filename: s(f.filename).to_string(),
                    start_line: f.start_line,
                },
            ));
        }
    }
    let mut location_by_pprof: FxHashMap<u64, u128> = FxHashMap::default();
    seen.clear();
    for l in &p.location {
        let mapping = mapping_by_pprof.get(&l.mapping_id).copied();
        // A line without a function (id 0) carries nothing and is dropped.
        let lines: Vec<(u128, i64, i64)> = l
            .line
            .iter()
            .filter_map(|line| {
                function_by_pprof
                    .get(&line.function_id)
                    .map(|f| (*f, line.line, line.column))
            })
            .collect();
        buf.clear();
        keys::location_key_parts(
            &mut buf,
            mapping.map(|m| MappingId(Uuid::from_u128(m))),
            l.address,
            l.is_folded,
            lines
                .iter()
                .map(|(f, line, col)| (FunctionId(Uuid::from_u128(*f)), *line, *col)),
        );
        let id = hash(&buf);
        location_by_pprof.insert(l.id, id);
        if seen.insert(id) {
            entities
                .locations
                .push((id, (mapping, l.address, l.is_folded, lines)));
        }
    }

    // 4. Stacks of the samples with a non-zero value, summed per series.
    let mut sums: Vec<FxHashMap<u128, i64>> = vec![FxHashMap::default(); series.len()];
    seen.clear();
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
                .filter_map(|id| location_by_pprof.get(id))
                .map(|l| LocationId(Uuid::from_u128(*l))),
        );
        buf.clear();
        keys::stack_key(&mut buf, &locs, &num_labels);
        let mut id_bytes = [0u8; 16];
        id_bytes.copy_from_slice(&buf[..16]);
        let stack = u128::from_be_bytes(id_bytes);
        if seen.insert(stack) {
            entities.stacks.push((
                stack,
                locs.iter().map(|l| l.0.as_u128()).collect(),
                num_labels,
            ));
        }
        for (t, v) in sample.value.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            if let Some(&i) = index.get(&(t, sample_group[si])) {
                let e = sums[i].entry(stack).or_insert(0);
                *e = e.wrapping_add(*v);
            }
        }
    }
    for (ps, sum) in series.iter_mut().zip(sums) {
        let mut v: Vec<(u128, i64)> = sum.into_iter().filter(|(_, v)| *v != 0).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        ps.samples = v;
    }
    Ok(Plan {
        timestamp,
        duration: p.duration_nanos,
        period: p.period,
        series,
        entities,
    })
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
    })
}
