//! Fuzzes `profstore::model::parse_selector` (promql-parser, then matcher
//! construction: regex compilation and classification) on arbitrary strings
//! (the input as lossy UTF-8), and evaluates what it accepts.
//!
//! Must hold: no panic, hang or huge allocation on any input. An accepted
//! selector has at least one matcher that does not match the empty string;
//! its matchers, displayed and parsed again, are the same. Each matcher
//! agrees with a plain evaluation of its operator (for regexes: the
//! `^(?s:<re>)$` regex compiled independently, which bypasses the matcher's
//! literal/prefix/suffix fast paths) on fixed values and on values derived
//! from the matcher. `index::select` over a postings index of fixed and
//! derived label sets gives exactly the series that match every matcher.
//!
//! Run from the crate root: `cargo fuzz run selector` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run selector`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::model::labels::Labels;
use profstore::model::{parse_selector, MatchOp, Matcher};
use profstore::tsdb::index::{select, MemPostings, SeriesRef};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";

/// Label values every matcher is tried on.
const VALUES: &[&str] = &[
    "",
    "a",
    "ab",
    "api",
    "x",
    "\n",
    " ",
    "10.0.0.1:80",
    "ü",
    "a.b",
    "{}",
    CPU,
];

/// Values close to what `m` accepts: its value, its pieces between `|`,
/// with `.*`/`.+` filled in, escapes and anchors dropped.
fn derived(m: &Matcher, out: &mut Vec<String>) {
    let v = m.value.as_str();
    let unescaped = |s: &str| {
        let mut o = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => o.extend(chars.next()),
                '^' | '$' | '(' | ')' => {}
                c => o.push(c),
            }
        }
        o.replace("?:", "")
    };
    let mut add = |s: String| {
        if out.len() < 96 && !out.contains(&s) {
            out.push(s);
        }
    };
    add(v.to_string());
    add(unescaped(v));
    for fill in ["", "x", "xy\nz"] {
        let filled = v
            .replace(".*", fill)
            .replace(".+", if fill.is_empty() { "q" } else { fill });
        add(unescaped(&filled));
    }
    for piece in v.split('|').take(8) {
        add(piece.to_string());
        add(unescaped(piece));
    }
    for s in m.set_matches().unwrap_or_default().iter().take(8) {
        add(s.clone());
        add(format!("{s}x"));
    }
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let Ok(ms) = parse_selector(&input) else {
        return;
    };
    assert!(
        ms.iter().any(|m| !m.matches_empty()),
        "every matcher matches \"\""
    );

    let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
    let again = format!("{{{}}}", shown.join(", "));
    assert_eq!(
        parse_selector(&again).as_ref(),
        Ok(&ms),
        "matchers displayed as {again}"
    );

    let mut values: Vec<String> = VALUES.iter().map(|s| s.to_string()).collect();
    for m in ms.iter().take(8) {
        derived(m, &mut values);
    }
    for m in &ms {
        assert_eq!(m.matches_empty(), m.matches(""));
        let re = match m.op {
            MatchOp::Regex | MatchOp::NotRegex => {
                // `None` when only the matcher's own brace escaping makes
                // it compile (RE2 takes `a{b}` literally): nothing to
                // compare with.
                regex::Regex::new(&format!("^(?s:{})$", m.value)).ok()
            }
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        for v in &values {
            let want = match m.op {
                MatchOp::Equal => Some(*v == m.value),
                MatchOp::NotEqual => Some(*v != m.value),
                MatchOp::Regex => re.as_ref().map(|r| r.is_match(v)),
                MatchOp::NotRegex => re.as_ref().map(|r| !r.is_match(v)),
            };
            if let Some(want) = want {
                assert_eq!(m.matches(v), want, "{m} on {v:?}");
            }
        }
        if let Some(set) = m.set_matches() {
            for v in set {
                assert_eq!(m.matches(v), !m.op.is_negated(), "{m} on its own {v:?}");
            }
        }
    }

    // Series: a few fixed ones, then one per matcher and derived value.
    let mut series = vec![
        Labels::new(),
        Labels::from_pairs([("__name__", CPU), ("job", "api")]),
        Labels::from_pairs([("__name__", "memory"), ("job", "x"), ("a", "ab")]),
    ];
    'outer: for m in ms.iter().take(8) {
        for v in values.iter().take(16) {
            if series.len() >= 64 {
                break 'outer;
            }
            let mut l = series[series.len() % 3].clone();
            l.set(m.name.clone(), v.clone());
            series.push(l);
        }
    }
    let mut postings = MemPostings::new();
    for (i, l) in series.iter().enumerate() {
        postings.add(SeriesRef(i as u32), l);
    }
    let got = select(&postings, &ms);
    let mut n = 0;
    for (i, l) in series.iter().enumerate() {
        let want = ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")));
        assert_eq!(got.contains(i as u32), want, "series {l}");
        n += u64::from(want);
    }
    assert_eq!(got.cardinality(), n);
});
