//! [`validate`]: the semantic checks that make a decoded profile safe to
//! index without checks.

use rustc_hash::FxHashMap;

use crate::proto::pprof::Profile;

use super::{DecodeLimits, PprofError};

/// Checks that `p` is a well-formed pprof profile within `limits`; see the
/// [module documentation](super) for exactly what that guarantees.
///
/// Checks (the first failure found is returned):
///
/// 1. counts: sample types, samples, locations, functions, mappings, strings
///    (and each string's length) within `limits` ([`PprofError::TooLarge`]);
/// 2. `string_table[0]` is `""` (an empty table counts as `[""]`);
/// 3. every string index is in `0..max(1, string_table.len())`: sample and
///    period types, `drop_frames`, `keep_frames`, `comment`,
///    `default_sample_type`, mapping filename and build id, function name,
///    system name and filename, label key, string value and unit;
/// 4. mapping, function and location ids are non-zero and unique;
/// 5. each location's `mapping_id` is 0 or an existing mapping, it has at
///    most `max_lines_per_location` lines, and each line's `function_id` is 0
///    ("no function", see the module docs) or an existing function;
/// 6. each sample has exactly one value per sample type, at most
///    `max_stack_depth` location ids, each an existing location, and at most
///    `max_labels_per_sample` labels.
///
/// It does not check what pprof leaves open: values may be any `i64`, labels
/// may repeat keys or set both `str` and `num`, strings may repeat, and a
/// sample may have no locations.
pub fn validate(p: &Profile, limits: &DecodeLimits) -> Result<(), PprofError> {
    count(
        "sample type count",
        p.sample_type.len(),
        limits.max_sample_types,
    )?;
    count("sample count", p.sample.len(), limits.max_samples)?;
    count("location count", p.location.len(), limits.max_locations)?;
    count("function count", p.function.len(), limits.max_functions)?;
    count("mapping count", p.mapping.len(), limits.max_mappings)?;
    count(
        "string table size",
        p.string_table.len(),
        limits.max_strings,
    )?;
    for (i, s) in p.string_table.iter().enumerate() {
        if s.len() > limits.max_string_bytes {
            return Err(PprofError::too_large(
                format!("string {i}: length {} bytes", s.len()),
                limits.max_string_bytes,
            ));
        }
    }

    if let Some(first) = p.string_table.first() {
        if !first.is_empty() {
            let shown: String = first.chars().take(64).collect();
            return Err(invalid(format!(
                "string_table[0] must be the empty string, found {shown:?}"
            )));
        }
    }
    let st = Strings {
        n: p.string_table.len().max(1),
    };

    for (i, vt) in p.sample_type.iter().enumerate() {
        st.check(vt.r#type, || format!("sample_type {i}: type"))?;
        st.check(vt.unit, || format!("sample_type {i}: unit"))?;
    }
    if let Some(vt) = &p.period_type {
        st.check(vt.r#type, || "period_type: type".to_string())?;
        st.check(vt.unit, || "period_type: unit".to_string())?;
    }
    st.check(p.drop_frames, || "drop_frames".to_string())?;
    st.check(p.keep_frames, || "keep_frames".to_string())?;
    st.check(p.default_sample_type, || "default_sample_type".to_string())?;
    for (i, c) in p.comment.iter().enumerate() {
        st.check(*c, || format!("comment {i}"))?;
    }

    let mappings = IdIndex::build(p.mapping.iter().map(|m| m.id), "mapping")?;
    for (i, m) in p.mapping.iter().enumerate() {
        st.check(m.filename, || {
            format!("mapping {i} (id {}): filename", m.id)
        })?;
        st.check(m.build_id, || {
            format!("mapping {i} (id {}): build_id", m.id)
        })?;
    }

    let functions = IdIndex::build(p.function.iter().map(|f| f.id), "function")?;
    for (i, f) in p.function.iter().enumerate() {
        st.check(f.name, || format!("function {i} (id {}): name", f.id))?;
        st.check(f.system_name, || {
            format!("function {i} (id {}): system_name", f.id)
        })?;
        st.check(f.filename, || {
            format!("function {i} (id {}): filename", f.id)
        })?;
    }

    let locations = IdIndex::build(p.location.iter().map(|l| l.id), "location")?;
    for (i, l) in p.location.iter().enumerate() {
        if l.mapping_id != 0 && !mappings.contains(l.mapping_id) {
            return Err(invalid(format!(
                "location {i} (id {}): mapping id {} does not exist",
                l.id, l.mapping_id
            )));
        }
        if l.line.len() > limits.max_lines_per_location {
            return Err(PprofError::too_large(
                format!("location {i} (id {}): line count {}", l.id, l.line.len()),
                limits.max_lines_per_location,
            ));
        }
        for (j, line) in l.line.iter().enumerate() {
            if line.function_id != 0 && !functions.contains(line.function_id) {
                return Err(invalid(format!(
                    "location {i} (id {}): line {j}: function id {} does not exist",
                    l.id, line.function_id
                )));
            }
        }
    }

    let n_types = p.sample_type.len();
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != n_types {
            return Err(invalid(format!(
                "sample {i}: {} values, but the profile has {n_types} sample types",
                s.value.len()
            )));
        }
        if s.location_id.len() > limits.max_stack_depth {
            return Err(PprofError::too_large(
                format!("sample {i}: stack depth {}", s.location_id.len()),
                limits.max_stack_depth,
            ));
        }
        if s.label.len() > limits.max_labels_per_sample {
            return Err(PprofError::too_large(
                format!("sample {i}: label count {}", s.label.len()),
                limits.max_labels_per_sample,
            ));
        }
        // Fast paths without error bookkeeping; find the culprit only on
        // failure.
        if !s.location_id.iter().all(|&id| locations.contains(id)) {
            let id = s
                .location_id
                .iter()
                .find(|&&id| !locations.contains(id))
                .copied()
                .unwrap_or_default();
            return Err(invalid(format!(
                "sample {i}: location id {id} does not exist"
            )));
        }
        if !s
            .label
            .iter()
            .all(|l| st.ok(l.key) && st.ok(l.str) && st.ok(l.num_unit))
        {
            for (j, l) in s.label.iter().enumerate() {
                st.check(l.key, || format!("sample {i}: label {j}: key"))?;
                st.check(l.str, || format!("sample {i}: label {j}: str"))?;
                st.check(l.num_unit, || format!("sample {i}: label {j}: num_unit"))?;
            }
        }
    }
    Ok(())
}

#[cold]
fn invalid(msg: String) -> PprofError {
    PprofError::Invalid(msg)
}

fn count(what: &str, n: usize, limit: usize) -> Result<(), PprofError> {
    if n > limit {
        Err(PprofError::too_large(format!("{what} {n}"), limit))
    } else {
        Ok(())
    }
}

/// Valid string indexes are `0..n`.
struct Strings {
    n: usize,
}

impl Strings {
    /// Whether `idx` is a valid index (a negative one wraps to a huge `u64`).
    #[inline(always)]
    fn ok(&self, idx: i64) -> bool {
        (idx as u64) < self.n as u64
    }

    /// `what` names the field for the error message; it runs only on error.
    #[inline(always)]
    fn check(&self, idx: i64, what: impl FnOnce() -> String) -> Result<(), PprofError> {
        if self.ok(idx) {
            Ok(())
        } else {
            Err(self.out_of_range(idx, what()))
        }
    }

    #[cold]
    #[inline(never)]
    fn out_of_range(&self, idx: i64, what: String) -> PprofError {
        invalid(format!(
            "{what}: string index {idx} out of range (table has {} strings)",
            self.n
        ))
    }
}

/// The set of ids of one kind of entity.
enum IdIndex {
    /// Ids are exactly `1..=n` in order — what Go and most writers produce —
    /// so membership is a range check and no map is built.
    Dense(u64),
    /// Anything else (still non-zero and unique).
    Map(FxHashMap<u64, usize>),
}

impl IdIndex {
    /// Checks that ids are non-zero and unique and indexes them.
    fn build<I>(ids: I, kind: &str) -> Result<Self, PprofError>
    where
        I: Iterator<Item = u64> + Clone,
    {
        let mut n = 0u64;
        let mut dense = true;
        for id in ids.clone() {
            n += 1;
            if id != n {
                dense = false;
                break;
            }
        }
        if dense {
            return Ok(IdIndex::Dense(n));
        }
        let mut map = FxHashMap::default();
        map.reserve(ids.size_hint().0);
        for (i, id) in ids.enumerate() {
            if id == 0 {
                return Err(invalid(format!("{kind} {i}: id 0 (ids must be non-zero)")));
            }
            if let Some(prev) = map.insert(id, i) {
                return Err(invalid(format!(
                    "{kind} {i}: duplicate id {id} (also {kind} {prev})"
                )));
            }
        }
        Ok(IdIndex::Map(map))
    }

    #[inline(always)]
    fn contains(&self, id: u64) -> bool {
        match self {
            // 0 wraps to u64::MAX, which is never below n.
            IdIndex::Dense(n) => id.wrapping_sub(1) < *n,
            IdIndex::Map(m) => m.contains_key(&id),
        }
    }
}
