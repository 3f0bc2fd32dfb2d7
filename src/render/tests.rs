use super::*;
use crate::model::profile_type::ProfileType;
use crate::model::{diff, FrameLine, Stack};
use crate::model::{Function, Mapping};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// A fresh id for a test frame, function or mapping.
fn new_id() -> Uuid {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Uuid::from_u128(u128::from(
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    ))
}

/// A frame with the given function names, innermost first.
fn frame(lines: &[&str]) -> Arc<Frame> {
    let lines = lines
        .iter()
        .map(|n| FrameLine {
            function_id: new_id(),
            function: Arc::new(Function {
                name: n.to_string(),
                ..Default::default()
            }),
            line: 1,
            column: 0,
        })
        .collect();
    Arc::new(Frame {
        id: new_id(),
        address: 0x1000,
        is_folded: false,
        mapping: None,
        lines,
    })
}

fn addr_frame(address: u64, mapping: &str) -> Arc<Frame> {
    let m = Mapping {
        filename: mapping.to_string(),
        ..Default::default()
    };
    Arc::new(Frame {
        id: new_id(),
        address,
        is_folded: false,
        mapping: Some((new_id(), Arc::new(m))),
        lines: vec![],
    })
}

/// A sample; frames leaf first.
fn sample(frames: Vec<Arc<Frame>>, labels: &[(&str, &str)], value: i64) -> Sample {
    Sample {
        stack: Arc::new(Stack {
            frames,
            num_labels: vec![],
        }),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

fn profile(samples: Vec<Sample>) -> Profile {
    Profile {
        profile_type: ProfileType::parse("memory:alloc_space:bytes:space:bytes").unwrap(),
        time_ms: 0,
        duration_ns: 0,
        period: 1,
        samples,
    }
}

fn sys_frame() -> Arc<Frame> {
    let f = frame(&["x"]);
    let mut f = (*f).clone();
    f.lines[0].function = Arc::new(Function {
        system_name: "sys_fn".into(),
        ..Default::default()
    });
    Arc::new(f)
}

/// Inlined frames, pprof labels to merge, recursion, an empty stack, an
/// unsymbolized frame, a name to sanitize, a system name.
fn sample_profile() -> Profile {
    let main = frame(&["main"]);
    let inl = frame(&["inl_inner", "inl_outer"]);
    let fib = frame(&["fib"]);
    profile(vec![
        sample(vec![inl.clone(), main.clone()], &[("k", "a")], 10),
        sample(vec![inl, main.clone()], &[("k", "b")], 5),
        sample(vec![fib.clone(), fib.clone(), fib, main.clone()], &[], 7),
        sample(vec![], &[], 3),
        sample(
            vec![addr_frame(0x1234, "/lib/libc.so.6"), main.clone()],
            &[],
            2,
        ),
        sample(vec![frame(&["a;b\nc"]), main.clone()], &[], 1),
        sample(vec![sys_frame(), main], &[], 4),
    ])
}

/// The diff of two profiles built from the sample profile.
fn diff_profile() -> Profile {
    let base = sample_profile();
    let mut compare = sample_profile();
    compare.samples.truncate(3);
    compare.samples[0].value = 100;
    diff(base, compare)
}

/// The sample paths and values, (compare, base), by brute force.
fn brute(p: &Profile) -> Vec<(Vec<String>, i64, i64)> {
    p.samples
        .iter()
        .map(|s| {
            let base = is_base(s);
            let (v, b) = if base { (0, -s.value) } else { (s.value, 0) };
            (path(s), v, b)
        })
        .collect()
}

fn check_flamegraph(p: &Profile) {
    let fg = flamegraph(p, usize::MAX);
    let diff = is_diff(p);
    assert_eq!(fg["diff"], diff);
    let all = brute(p);
    fn walk(n: &Value, prefix: Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        let kids = n["children"].as_array().unwrap();
        let names: Vec<&str> = kids.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        out.push((prefix.clone(), n.clone()));
        for c in kids {
            let mut p = prefix.clone();
            p.push(c["name"].as_str().unwrap().to_string());
            walk(c, p, out);
        }
    }
    let mut out = Vec::new();
    walk(&fg["root"], vec![], &mut out);
    assert_eq!(fg["root"]["name"], "total");
    for (prefix, n) in &out {
        let sum = |f: &dyn Fn(&Vec<String>) -> bool, base: bool| -> i64 {
            all.iter()
                .filter(|(p, _, _)| f(p))
                .map(|(_, v, b)| if base { *b } else { *v })
                .sum()
        };
        let under = |p: &Vec<String>| p.starts_with(prefix);
        let at = |p: &Vec<String>| p == prefix;
        assert_eq!(n["total"], sum(&under, false), "{prefix:?}");
        assert_eq!(n["self"], sum(&at, false), "{prefix:?}");
        if diff {
            assert_eq!(n["base_total"], sum(&under, true), "{prefix:?}");
            assert_eq!(n["base_self"], sum(&at, true), "{prefix:?}");
        } else {
            assert!(n.get("base_total").is_none());
        }
    }
    let mut prefixes: BTreeSet<&[String]> = all
        .iter()
        .flat_map(|(p, _, _)| (0..=p.len()).map(move |i| &p[..i]))
        .collect();
    prefixes.insert(&[]);
    assert_eq!(out.len(), prefixes.len());
    if !diff {
        assert_eq!(fg["root"]["total"], p.total());
    }
}

fn check_top(p: &Profile) {
    let t = top(p);
    let diff = is_diff(p);
    let all = brute(p);
    let names: BTreeSet<&String> = all.iter().flat_map(|(p, _, _)| p).collect();
    let rows = t["functions"].as_array().unwrap();
    assert_eq!(rows.len(), names.len());
    let total: i64 = all.iter().map(|x| x.1).sum();
    assert_eq!(t["total"], total);
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (fa, fb) = (a["flat"].as_i64().unwrap(), b["flat"].as_i64().unwrap());
        assert!(fa > fb || (fa == fb && a["name"].as_str() < b["name"].as_str()));
    }
    for r in rows {
        let name = r["name"].as_str().unwrap();
        let flat = |i: fn(&(Vec<String>, i64, i64)) -> i64| -> i64 {
            all.iter()
                .filter(|x| x.0.last().map(String::as_str) == Some(name))
                .map(i)
                .sum()
        };
        let cum = |i: fn(&(Vec<String>, i64, i64)) -> i64| -> i64 {
            all.iter()
                .filter(|x| x.0.iter().any(|n| n == name))
                .map(i)
                .sum()
        };
        assert_eq!(r["flat"], flat(|x| x.1), "{name}");
        assert_eq!(r["cum"], cum(|x| x.1), "{name}");
        if total != 0 {
            let pct = r["cum_percent"].as_f64().unwrap();
            assert!((pct - cum(|x| x.1) as f64 * 100.0 / total as f64).abs() < 1e-9);
        }
        if diff {
            assert_eq!(r["base_flat"], flat(|x| x.2), "{name}");
            assert_eq!(r["base_cum"], cum(|x| x.2), "{name}");
        }
    }
    if diff {
        assert_eq!(t["base_total"], all.iter().map(|x| x.2).sum::<i64>());
    }
}

/// Checks the folded output and returns its lines as stack -> columns.
fn check_folded(p: &Profile) -> BTreeMap<String, Vec<i64>> {
    let f = folded(p);
    let lines: Vec<&str> = f.lines().collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]));
    let mut out = BTreeMap::new();
    let mut sum = 0i64;
    for l in lines {
        let mut parts: Vec<&str> = l.rsplitn(3, ' ').collect();
        parts.reverse();
        let cols = if is_diff(p) { 2 } else { 1 };
        let stack = parts[..parts.len() - cols].join(" ");
        let vals: Vec<i64> = parts[parts.len() - cols..]
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        let v = vals[cols - 1].wrapping_sub(if cols == 2 { vals[0] } else { 0 });
        sum = sum.wrapping_add(v);
        assert!(!stack.is_empty() && !stack.split(';').any(str::is_empty));
        out.insert(stack, vals);
    }
    assert_eq!(sum, p.total());
    out
}

/// Checks that the SVG is well-formed XML and returns it as text.
fn check_svg(p: &Profile) -> String {
    let bytes = svg(p, "a <title> & more").unwrap();
    let mut r = quick_xml::Reader::from_reader(&bytes[..]);
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => buf.clear(),
            Err(e) => panic!("bad XML at {}: {e}", r.buffer_position()),
        }
    }
    String::from_utf8(bytes).unwrap()
}

#[test]
fn frame_naming() {
    let names: Vec<String> = path(&sample_profile().samples[0]);
    assert_eq!(names, ["main", "inl_outer", "inl_inner"]);
    let f = addr_frame(0xbeef, "/usr/lib/libc.so.6");
    assert_eq!(frame_names(&f).collect::<Vec<_>>(), ["0xbeef (libc.so.6)"]);
    let f = addr_frame(0xbeef, "");
    assert_eq!(frame_names(&f).collect::<Vec<_>>(), ["0xbeef"]);
    assert_eq!(frame_names(&sys_frame()).collect::<Vec<_>>(), ["sys_fn"]);
}

#[test]
fn formats_agree_with_brute_force() {
    let p = sample_profile();
    assert!(!is_diff(&p));
    check_flamegraph(&p);
    check_top(&p);
    let f = check_folded(&p);
    assert_eq!(f["main;inl_outer;inl_inner"], [15]);
    assert_eq!(f["main;fib;fib;fib"], [7]);
    assert_eq!(f[NO_STACK], [3]);
    assert_eq!(f["main;0x1234 (libc.so.6)"], [2]);
    assert_eq!(f["main;a:b c"], [1]);
    assert_eq!(f.len(), 6);
    let t = top(&p);
    let fib = t["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "fib")
        .unwrap();
    assert_eq!(
        (fib["flat"].as_i64(), fib["cum"].as_i64()),
        (Some(7), Some(7))
    );
    assert_eq!(t["functions"][0]["name"], "inl_inner");
    assert_eq!(flamegraph(&p, usize::MAX)["root"]["self"], 3);
    let s = check_svg(&p);
    for name in [
        "inl_inner",
        "inl_outer",
        "fib",
        "main",
        "sys_fn",
        "libc.so.6",
    ] {
        assert!(s.contains(name), "{name}");
    }
}

#[test]
fn diff_formats() {
    let p = diff_profile();
    assert!(is_diff(&p));
    check_flamegraph(&p);
    check_top(&p);
    let fg = flamegraph(&p, usize::MAX);
    assert_eq!(fg["root"]["total"], 112);
    assert_eq!(fg["root"]["base_total"], 32);
    let f = check_folded(&p);
    assert_eq!(f["main;inl_outer;inl_inner"], [15, 105]);
    assert_eq!(f[NO_STACK], [3, 0]);
    let s = check_svg(&p);
    assert!(s.contains("inl_inner") && s.contains("Differential"));
}

#[test]
fn empty_and_negative_profiles() {
    let p = profile(vec![]);
    assert!(!is_diff(&p));
    check_flamegraph(&p);
    check_top(&p);
    assert_eq!(folded(&p), "");
    assert!(check_svg(&p).contains("no samples"));

    // Negative values only: nothing to draw.
    let main = frame(&["main"]);
    let p = profile(vec![sample(vec![main.clone()], &[], -5)]);
    check_flamegraph(&p);
    check_top(&p);
    check_folded(&p);
    assert!(check_svg(&p).contains("no samples"));

    // Mixed: the negative path is left out, extreme values do not panic.
    let p = profile(vec![
        sample(vec![frame(&["neg"]), main.clone()], &[], -5),
        sample(vec![frame(&["pos 12"]), main.clone()], &[], 9),
        sample(vec![frame(&["# hash"])], &[], 4),
    ]);
    check_top(&p);
    check_folded(&p);
    let s = check_svg(&p);
    assert!(s.contains("left out") && s.contains("pos\u{a0}12") && !s.contains(">neg"));
    assert!(s.contains("#\u{a0}hash"));

    // Extreme values wrap, as in `Profile::total`, and do not panic.
    let p = profile(vec![
        sample(vec![frame(&["big"])], &[], i64::MAX),
        sample(vec![frame(&["big2"])], &[], i64::MAX),
        sample(vec![frame(&["min"])], &[], i64::MIN),
    ]);
    assert_eq!(top(&p)["total"], p.total());
    assert_eq!(flamegraph(&p, usize::MAX)["root"]["total"], p.total());
    check_folded(&p);
    check_svg(&p);

    // A diff with an empty compared side.
    let p = diff(profile(vec![sample(vec![main], &[], 5)]), profile(vec![]));
    check_folded(&p);
    assert!(check_svg(&p).contains("no samples"));
}

/// Every node of a flame graph JSON by path (an `other` node under its
/// parent's path plus `other`).
fn nodes_by_path(fg: &Value) -> BTreeMap<Vec<String>, Value> {
    fn walk(n: &Value, prefix: Vec<String>, out: &mut BTreeMap<Vec<String>, Value>) {
        out.insert(prefix.clone(), n.clone());
        for c in n["children"].as_array().unwrap() {
            let mut p = prefix.clone();
            p.push(c["name"].as_str().unwrap().to_string());
            walk(c, p, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(&fg["root"], vec![], &mut out);
    out
}

#[test]
fn trimmed_flame_graphs_keep_the_heaviest_nodes_and_every_total() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let names: Vec<Arc<Frame>> = (0..12).map(|i| frame(&[&format!("f{i}")])).collect();
    let samples: Vec<Sample> = (0..400)
        .map(|_| {
            let depth = rng.random_range(0..7);
            let frames = (0..depth)
                .map(|_| names[rng.random_range(0..names.len())].clone())
                .collect();
            sample(frames, &[], rng.random_range(1..1000))
        })
        .collect();
    for p in [
        profile(samples.clone()),
        diff(
            profile(samples[..200].to_vec()),
            profile(samples[200..].to_vec()),
        ),
    ] {
        let full = flamegraph(&p, usize::MAX);
        assert_eq!(full["trimmed"], false);
        let all = nodes_by_path(&full);
        assert_eq!(full["nodes"], all.len());
        let diff = full["diff"].as_bool().unwrap();
        for budget in [1, 2, 10, 100, 1000, all.len()] {
            let fg = flamegraph(&p, budget);
            let kept = nodes_by_path(&fg);
            assert_eq!(fg["nodes"], kept.len());
            assert_eq!(fg["trimmed"], budget < all.len(), "budget {budget}");
            assert!(
                kept.len() <= budget.max(2),
                "{} nodes for a budget of {budget}",
                kept.len()
            );
            let keys: &[&str] = if diff {
                &["total", "base_total"]
            } else {
                &["total"]
            };
            for (path, n) in &kept {
                // Totals add up in every node, `other` included.
                for key in keys {
                    let self_key = if *key == "total" { "self" } else { "base_self" };
                    let kids: i64 = n["children"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c[*key].as_i64().unwrap())
                        .sum();
                    assert_eq!(
                        n[*key].as_i64().unwrap(),
                        n[self_key].as_i64().unwrap() + kids
                    );
                }
                if n.get("other").is_some() {
                    assert_eq!(path.last().map(String::as_str), Some(OTHER));
                    assert!(n["children"].as_array().unwrap().is_empty());
                    continue;
                }
                // A kept node is the untrimmed node, children aside.
                let orig = &all[path];
                for key in ["self", "total", "base_self", "base_total"] {
                    assert_eq!(n.get(key), orig.get(key), "{path:?} {key}");
                }
            }
            // Nothing dropped outweighs what was kept (the root aside).
            let weight = |n: &Value| {
                n["total"].as_i64().unwrap().abs()
                    + n.get("base_total").map_or(0, |b| b.as_i64().unwrap().abs())
            };
            let lightest_kept = kept
                .iter()
                .filter(|(p, n)| !p.is_empty() && n.get("other").is_none())
                .map(|(_, n)| weight(n))
                .min();
            if let Some(lightest) = lightest_kept {
                for (path, n) in &all {
                    if !kept.contains_key(path) {
                        assert!(weight(n) <= lightest, "{path:?} dropped");
                    }
                }
            }
        }
    }
}
