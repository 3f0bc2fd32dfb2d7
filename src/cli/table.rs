//! The top-functions table, computed client-side from a decoded pprof (so
//! it works whatever output formats the server offers).
//!
//! Per function name: *flat* is the value of the samples whose leaf is the
//! function; *cum* is the value of the samples with the function anywhere
//! in the stack, counted once per sample (recursion does not double-count).
//! Each line of a location is a function, inlined callees included (the
//! first line of the leaf location is the leaf). A location without lines
//! reads as its address. In a diff (base samples negated, see
//! [`crate::model::DIFF_BASE_LABEL`]) both are net changes.

use crate::model::DIFF_BASE_LABEL;
use crate::proto::pprof::{Location, Profile};
use std::collections::{HashMap, HashSet};

/// One function's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Function name.
    pub name: String,
    /// Value where the function is the leaf.
    pub flat: i64,
    /// Value where the function is on the stack (once per sample).
    pub cum: i64,
}

/// The table of a profile's sample type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    /// Sample type and unit, e.g. `cpu nanoseconds`.
    pub unit: String,
    /// Sum of all sample values (the net change in a diff).
    pub total: i64,
    /// Sum over the base side's samples, negated back to positive (0 when
    /// the profile is no diff).
    pub base_total: i64,
    /// Whether this is a diff's table.
    pub diff: bool,
    /// Every function, by flat descending (by |flat| in a diff), then cum,
    /// then name.
    pub rows: Vec<Row>,
}

/// The names of a location's lines, leaf (innermost inlined) first.
fn frame_names(loc: &Location, name_of: &HashMap<u64, &str>) -> Vec<String> {
    if loc.line.is_empty() {
        return vec![format!("0x{:x}", loc.address)];
    }
    loc.line
        .iter()
        .map(|l| {
            name_of
                .get(&l.function_id)
                .copied()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// Computes the table over the profile's default sample type (the last one
/// when none is set); `diff` when `p` is a diff profile.
pub fn top(p: &Profile, diff: bool) -> Top {
    let s = |i: i64| p.string_table.get(i as usize).map_or("", String::as_str);
    let index = p
        .sample_type
        .iter()
        .position(|vt| p.default_sample_type != 0 && vt.r#type == p.default_sample_type)
        .unwrap_or(p.sample_type.len().saturating_sub(1));
    let unit = p.sample_type.get(index).map_or(String::new(), |vt| {
        format!("{} {}", s(vt.r#type), s(vt.unit))
    });
    let name_of: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    let locations: HashMap<u64, Vec<String>> = p
        .location
        .iter()
        .map(|l| (l.id, frame_names(l, &name_of)))
        .collect();
    let mut rows: HashMap<&str, (i64, i64)> = HashMap::new();
    let (mut total, mut base_total) = (0i64, 0i64);
    let mut seen = HashSet::new();
    for sample in &p.sample {
        let v = sample.value.get(index).copied().unwrap_or(0);
        total += v;
        if sample.label.iter().any(|l| s(l.key) == DIFF_BASE_LABEL) {
            base_total -= v;
        }
        seen.clear();
        let frames = sample
            .location_id
            .iter()
            .filter_map(|id| locations.get(id))
            .flatten();
        for (depth, name) in frames.enumerate() {
            let e = rows.entry(name).or_default();
            if depth == 0 {
                e.0 += v;
            }
            if seen.insert(name.as_str()) {
                e.1 += v;
            }
        }
    }
    let mut rows: Vec<Row> = rows
        .into_iter()
        .map(|(name, (flat, cum))| Row {
            name: name.to_string(),
            flat,
            cum,
        })
        .collect();
    let key = |x: i64| if diff { x.abs() } else { x };
    rows.sort_by(|a, b| {
        key(b.flat)
            .cmp(&key(a.flat))
            .then(key(b.cum).cmp(&key(a.cum)))
            .then_with(|| a.name.cmp(&b.name))
    });
    Top {
        unit,
        total,
        base_total,
        diff,
        rows,
    }
}

fn percent(x: i64, of: i64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.2}%", x as f64 * 100.0 / of as f64)
    }
}

/// Renders the header and the first `n` rows.
pub fn render(t: &Top, n: usize) -> String {
    let diff = t.diff;
    let mut out = if diff {
        format!(
            "diff ({}): net change {:+} (base {}, compared {}); flat and cum are net changes, \
             percentages of the base total\n",
            t.unit,
            t.total,
            t.base_total,
            t.total + t.base_total
        )
    } else {
        format!(
            "total: {} ({}), {} functions\n",
            t.total,
            t.unit,
            t.rows.len()
        )
    };
    let of = if diff { t.base_total } else { t.total };
    let num = |x: i64| {
        if diff {
            format!("{x:+}")
        } else {
            x.to_string()
        }
    };
    let cells: Vec<[String; 4]> = t
        .rows
        .iter()
        .take(n)
        .map(|r| {
            [
                num(r.flat),
                percent(r.flat, of),
                num(r.cum),
                percent(r.cum, of),
            ]
        })
        .collect();
    let heads = ["flat", "flat%", "cum", "cum%"];
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].len())
            .chain([heads[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2), width(3)];
    let line = |c: [&str; 4], name: &str| {
        let mut l = String::new();
        for (cell, width) in c.iter().zip(w) {
            l.push_str(&format!("{cell:>width$}  "));
        }
        l + name + "\n"
    };
    out.push_str(&line(heads, "name"));
    for (r, c) in t.rows.iter().zip(&cells) {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3]], &r.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pprof::{Function, Label, Line, Sample, ValueType};
    use std::collections::BTreeMap;

    /// Functions 1..=4 named a..d; location 10 = `c` inlined into `b`,
    /// 11 = `a`, 12 = `d`, 13 = no lines (address 0x2a).
    fn profile(samples: Vec<(Vec<u64>, i64, bool)>) -> Profile {
        let strings = [
            "",
            "cpu",
            "nanoseconds",
            "a",
            "b",
            "c",
            "d",
            DIFF_BASE_LABEL,
            "true",
        ];
        let line = |f: u64| Line {
            function_id: f,
            ..Default::default()
        };
        let loc = |id: u64, lines: Vec<Line>| Location {
            id,
            address: 0x2a,
            line: lines,
            ..Default::default()
        };
        Profile {
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            function: (1..=4)
                .map(|id| Function {
                    id,
                    name: 2 + id as i64,
                    ..Default::default()
                })
                .collect(),
            location: vec![
                loc(10, vec![line(3), line(2)]),
                loc(11, vec![line(1)]),
                loc(12, vec![line(4)]),
                loc(13, vec![]),
            ],
            sample: samples
                .into_iter()
                .map(|(location_id, v, base)| Sample {
                    location_id,
                    value: vec![v],
                    label: if base {
                        vec![Label {
                            key: 7,
                            str: 8,
                            ..Default::default()
                        }]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The slow, obvious version: full stacks as name lists.
    fn obvious(p: &Profile) -> BTreeMap<String, (i64, i64)> {
        let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for s in &p.sample {
            let mut stack: Vec<String> = Vec::new();
            for id in &s.location_id {
                let loc = p.location.iter().find(|l| l.id == *id).unwrap();
                if loc.line.is_empty() {
                    stack.push(format!("0x{:x}", loc.address));
                }
                for l in &loc.line {
                    let f = p.function.iter().find(|f| f.id == l.function_id).unwrap();
                    stack.push(p.string_table[f.name as usize].clone());
                }
            }
            out.entry(stack[0].clone()).or_default().0 += s.value[0];
            let mut uniq = stack.clone();
            uniq.sort();
            uniq.dedup();
            for n in uniq {
                out.entry(n).or_default().1 += s.value[0];
            }
        }
        out
    }

    #[test]
    fn matches_the_obvious_version() {
        // Leaf first: c (inlined in b) ← a ← b/c again (recursion) ← d.
        let p = profile(vec![
            (vec![10, 11, 10, 12], 5, false),
            (vec![11, 11, 11], 7, false),
            (vec![12, 10], 3, false),
            (vec![13, 11], 2, false),
            (vec![11, 12], 1, false),
        ]);
        let t = top(&p, false);
        assert_eq!((t.total, t.base_total), (18, 0));
        assert_eq!(t.unit, "cpu nanoseconds");
        let got: BTreeMap<String, (i64, i64)> = t
            .rows
            .iter()
            .map(|r| (r.name.clone(), (r.flat, r.cum)))
            .collect();
        assert_eq!(got, obvious(&p));
        assert_eq!(got["a"], (8, 15));
        assert_eq!(got["c"], (5, 8));
        assert_eq!(got["b"], (0, 8));
        let order: Vec<&str> = t.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["a", "c", "d", "0x2a", "b"]);
        let text = render(&t, 2);
        assert!(
            text.starts_with("total: 18 (cpu nanoseconds), 5 functions\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
        let row = |name: &str| {
            text.lines()
                .find(|l| l.ends_with(&format!("  {name}")))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
        };
        assert_eq!(
            row("a").unwrap(),
            ["8", "44.44%", "15", "83.33%", "a"],
            "{text}"
        );
    }

    #[test]
    fn diff_is_net() {
        let p = profile(vec![
            (vec![11, 12], 10, false),
            (vec![11, 12], -4, true),
            (vec![12], -6, true),
        ]);
        let t = top(&p, true);
        assert_eq!((t.total, t.base_total), (0, 10));
        let a = t.rows.iter().find(|r| r.name == "a").unwrap();
        assert_eq!((a.flat, a.cum), (6, 6));
        let d = t.rows.iter().find(|r| r.name == "d").unwrap();
        assert_eq!((d.flat, d.cum), (-6, 0));
        let text = render(&t, 10);
        assert!(
            text.starts_with("diff (cpu nanoseconds): net change +0 (base 10, compared 10)"),
            "{text}"
        );
        let a_row: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!(a_row, ["+6", "60.00%", "+6", "60.00%", "a"], "{text}");
    }
}
