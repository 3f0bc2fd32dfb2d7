//! The backend-neutral query result and its pprof encoding.
//!
//! A query result [`Profile`] holds resolved stacks (frames with their
//! mappings and functions), so it does not depend on the backend that produced
//! it; [`to_pprof`] turns it into a valid pprof `Profile`.
//!
//! Diff convention: a diff result is one profile holding the compared side's
//! samples as they are and the base side's samples negated and labelled
//! `pprof::base="true"` — what `go tool pprof -diff_base` builds, so
//! `go tool pprof` shows it as a diff and a flame graph can color each frame
//! by the sign of its total.

use crate::model::profile_type::ProfileType;
use crate::model::{Function, Mapping, NumLabel};
use crate::pprof::StringTable;
use crate::proto::pprof as pb;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The label that marks the base side's (negated) samples in a diff.
pub const DIFF_BASE_LABEL: &str = "pprof::base";

/// One line of a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameLine {
    /// Identity of the function (for deduplication on output).
    pub function_id: Uuid,
    /// The function.
    pub function: Arc<Function>,
    /// Line number.
    pub line: i64,
    /// Column number.
    pub column: i64,
}

/// A resolved location.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Identity of the location (for deduplication on output).
    pub id: Uuid,
    /// Instruction address.
    pub address: u64,
    /// Identical code folding flag.
    pub is_folded: bool,
    /// The mapping with its identity.
    pub mapping: Option<(Uuid, Arc<Mapping>)>,
    /// Lines, innermost first.
    pub lines: Vec<FrameLine>,
}

/// A resolved stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// Frames, leaf first.
    pub frames: Vec<Arc<Frame>>,
    /// Numeric pprof labels.
    pub num_labels: Vec<NumLabel>,
}

/// One sample of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The stack.
    pub stack: Arc<Stack>,
    /// pprof string labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: i64,
}

/// A query result: one profile of one profile type.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The profile type.
    pub profile_type: ProfileType,
    /// Time of the (earliest) profile, ms.
    pub time_ms: i64,
    /// Duration (sum of the merged durations), ns.
    pub duration_ns: i64,
    /// Sampling period.
    pub period: i64,
    /// Samples, one per (stack, string labels).
    pub samples: Vec<Sample>,
}

impl Profile {
    /// The sum of all sample values.
    pub fn total(&self) -> i64 {
        self.samples
            .iter()
            .fold(0i64, |a, s| a.wrapping_add(s.value))
    }
}

/// Combines a base and a compared profile into one diff profile (see the
/// [module docs](super)).
pub fn diff(base: Profile, compare: Profile) -> Profile {
    let mut out = compare;
    for mut s in base.samples {
        s.value = s.value.wrapping_neg();
        s.labels
            .push((DIFF_BASE_LABEL.to_string(), "true".to_string()));
        s.labels.sort();
        out.samples.push(s);
    }
    out
}

/// Encodes a result as a pprof profile. Mappings, functions and locations are
/// deduplicated by identity and numbered from 1.
pub fn to_pprof(p: &Profile) -> pb::Profile {
    let mut st = StringTable::new();
    let mut out = pb::Profile {
        sample_type: vec![pb::ValueType {
            r#type: st.intern(&p.profile_type.sample_type),
            unit: st.intern(&p.profile_type.sample_unit),
        }],
        period_type: Some(pb::ValueType {
            r#type: st.intern(&p.profile_type.period_type),
            unit: st.intern(&p.profile_type.period_unit),
        }),
        period: p.period,
        time_nanos: p.time_ms.saturating_mul(1_000_000),
        duration_nanos: p.duration_ns,
        ..Default::default()
    };
    let mut mappings: FxHashMap<Uuid, u64> = FxHashMap::default();
    let mut functions: FxHashMap<Uuid, u64> = FxHashMap::default();
    let mut locations: FxHashMap<Uuid, u64> = FxHashMap::default();
    for s in &p.samples {
        let mut location_ids = Vec::with_capacity(s.stack.frames.len());
        for f in &s.stack.frames {
            let next = locations.len() as u64 + 1;
            let id = *locations.entry(f.id).or_insert(next);
            if id == next {
                let mapping_id = match &f.mapping {
                    None => 0,
                    Some((mid, m)) => {
                        let next = mappings.len() as u64 + 1;
                        let id = *mappings.entry(*mid).or_insert(next);
                        if id == next {
                            out.mapping.push(pb::Mapping {
                                id,
                                memory_start: m.memory_start,
                                memory_limit: m.memory_limit,
                                file_offset: m.file_offset,
                                filename: st.intern(&m.filename),
                                build_id: st.intern(&m.build_id),
                                has_functions: m.has_functions,
                                has_filenames: m.has_filenames,
                                has_line_numbers: m.has_line_numbers,
                                has_inline_frames: m.has_inline_frames,
                            });
                        }
                        id
                    }
                };
                let mut lines = Vec::with_capacity(f.lines.len());
                for l in &f.lines {
                    let next = functions.len() as u64 + 1;
                    let fid = *functions.entry(l.function_id).or_insert(next);
                    if fid == next {
                        out.function.push(pb::Function {
                            id: fid,
                            name: st.intern(&l.function.name),
                            system_name: st.intern(&l.function.system_name),
                            filename: st.intern(&l.function.filename),
                            start_line: l.function.start_line,
                        });
                    }
                    lines.push(pb::Line {
                        function_id: fid,
                        line: l.line,
                        column: l.column,
                    });
                }
                out.location.push(pb::Location {
                    id,
                    mapping_id,
                    address: f.address,
                    line: lines,
                    is_folded: f.is_folded,
                });
            }
            location_ids.push(id);
        }
        let mut label: Vec<pb::Label> = s
            .labels
            .iter()
            .map(|(k, v)| pb::Label {
                key: st.intern(k),
                str: st.intern(v),
                ..Default::default()
            })
            .collect();
        label.extend(s.stack.num_labels.iter().map(|n| pb::Label {
            key: st.intern(&n.key),
            num: n.value,
            num_unit: st.intern(&n.unit),
            ..Default::default()
        }));
        out.sample.push(pb::Sample {
            location_id: location_ids,
            value: vec![s.value],
            label,
        });
    }
    out.string_table = st.into_vec();
    out
}
