//! The table of functions.

use super::{is_diff, paths, Vals};
use crate::model::Profile;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{json, Map, Value};

/// The functions of the profile, by flat value:
///
/// ```text
/// {"profile_type": "<id>", "unit": "<sample unit>", "total": i64,
///  "functions": [{"name": str, "flat": i64, "flat_percent": f64,
///                 "cum": i64, "cum_percent": f64}…]}
/// ```
///
/// `flat` is the value of the samples whose leaf node (the innermost line of
/// the leaf frame) is the function, `cum` that of the samples whose path holds
/// the function at least once (recursion counts once). Percentages are of
/// `total` (0 when `total` is 0). Sorted by `flat` descending, then name.
/// Functions are nodes as named by [`super::frame_names`], so unsymbolized
/// frames appear under their address.
///
/// In a diff, the top level also has `base_total` and every function
/// `base_flat` and `base_cum` (the base side, positive); `total`, `flat`,
/// `cum` and the percentages are the compared side's.
pub fn top(p: &Profile) -> Value {
    let diff = is_diff(p);
    let mut total = Vals::default();
    // name -> (flat, cum)
    let mut funcs: FxHashMap<String, (Vals, Vals)> = FxHashMap::default();
    for (path, v) in paths(p) {
        total.merge(v);
        if let Some(leaf) = path.last() {
            funcs.entry(leaf.clone()).or_default().0.merge(v);
        }
        let mut seen = FxHashSet::default();
        for name in path {
            if seen.insert(name.clone()) {
                funcs.entry(name).or_default().1.merge(v);
            }
        }
    }
    let mut rows: Vec<(String, (Vals, Vals))> = funcs.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.v.cmp(&a.1 .0.v).then_with(|| a.0.cmp(&b.0)));
    let pct = |x: i64| {
        if total.v == 0 {
            0.0
        } else {
            x as f64 * 100.0 / total.v as f64
        }
    };
    let functions: Vec<Value> = rows
        .into_iter()
        .map(|(name, (flat, cum))| {
            let mut m = Map::new();
            m.insert("name".into(), name.into());
            m.insert("flat".into(), flat.v.into());
            m.insert("flat_percent".into(), pct(flat.v).into());
            m.insert("cum".into(), cum.v.into());
            m.insert("cum_percent".into(), pct(cum.v).into());
            if diff {
                m.insert("base_flat".into(), flat.base.into());
                m.insert("base_cum".into(), cum.base.into());
            }
            Value::Object(m)
        })
        .collect();
    let mut out = json!({
        "profile_type": p.profile_type.to_string(),
        "unit": p.profile_type.sample_unit,
        "total": total.v,
        "functions": functions,
    });
    if diff {
        out["base_total"] = total.base.into();
    }
    out
}
