//! Selector evaluation: matchers → bitmap of matching series, with the
//! semantics of Prometheus's `PostingsForMatchers`.
//!
//! A series matches when it matches every matcher, a missing label counting
//! as `""`. Each matcher is planned once per call from what it was compiled to
//! ([`Matcher::set_matches`], `.*`, `.+`, general regex):
//!
//! - A matcher that does not match `""` is *positive*: it selects the union of
//!   the posting lists of the values it accepts. Literal values (`=`, `=~"a|b"`)
//!   are direct lookups; `=~".+"` and `!=""` take every value of the label; any
//!   other regex scans the label's values.
//! - A matcher that matches `""` is *negative*: it selects every series except
//!   those whose value it rejects, so that union is subtracted (`!="a"`
//!   subtracts `a`; `=""` subtracts every value; `=~"a|"` every value but `a`).
//!   `=~".*"` subtracts nothing and is skipped.
//!
//! Positive sets are intersected first: direct lookups smallest first, then
//! the ones that need every value or a scan, labels with fewer values first.
//! The all-series bitmap is the starting point only when no matcher is
//! positive. Negative sets are subtracted last. Evaluation stops at the first
//! empty intersection or difference.
//!
//! A scan tests every value of the label, even values whose series are no
//! longer candidates: checking a value's bitmap against the candidates first
//! was measured slower (`benches/postings.rs`), as it chases more pointers
//! than a regex run on a short value.

use super::postings::MemPostings;
use crate::model::Matcher;
use croaring::Bitmap;
use std::borrow::Cow;

/// The series matching every matcher in `matchers` (every series for an empty
/// slice), with Prometheus's `PostingsForMatchers` semantics: a matcher that
/// matches `""` also matches the series that lack its label.
pub fn select(postings: &MemPostings, matchers: &[Matcher]) -> Bitmap {
    if matchers.is_empty() {
        return postings.all().clone();
    }
    let mut intersect = Vec::new();
    let mut subtract = Vec::new();
    for m in matchers {
        let positive = !m.matches_empty();
        match (positive, plan(m, positive)) {
            (true, Values::Nothing) => return Bitmap::new(),
            (false, Values::Nothing) => {}
            (true, values) => intersect.push(Step { m, values }),
            (false, values) => subtract.push(Step { m, values }),
        }
    }

    // Direct lookups first, intersected smallest first.
    let mut looked_up: Vec<Cow<'_, Bitmap>> = Vec::new();
    for s in &intersect {
        if let Values::Exact(values) = s.values {
            let lists: Vec<&Bitmap> = values
                .iter()
                .filter_map(|v| postings.get(&s.m.name, v))
                .collect();
            looked_up.push(match lists.as_slice() {
                [] => return Bitmap::new(),
                [one] => Cow::Borrowed(*one),
                many => Cow::Owned(Bitmap::fast_or(many)),
            });
        }
    }
    looked_up.sort_by_cached_key(|b| b.cardinality());
    let mut cur: Option<Bitmap> = None;
    for b in looked_up {
        match &mut cur {
            None => cur = Some(b.into_owned()),
            Some(c) => c.and_inplace(&b),
        }
        if cur.as_ref().is_some_and(Bitmap::is_empty) {
            return Bitmap::new();
        }
    }

    // Then the positives that need every value of a label or a scan.
    let mut rest: Vec<&Step<'_>> = intersect
        .iter()
        .filter(|s| !matches!(s.values, Values::Exact(_)))
        .collect();
    rest.sort_by_cached_key(|s| num_values(postings, s.m));
    for s in rest {
        let u = union_of(postings, s, true);
        match &mut cur {
            None => cur = Some(u),
            Some(c) => c.and_inplace(&u),
        }
        if cur.as_ref().is_some_and(Bitmap::is_empty) {
            return Bitmap::new();
        }
    }

    // Start from all series only when no matcher is positive.
    let mut cur = cur.unwrap_or_else(|| postings.all().clone());

    // Subtract: direct lookups first, then the rest.
    subtract.sort_by_cached_key(|s| match s.values {
        Values::Exact(_) => 0,
        _ => 1 + num_values(postings, s.m),
    });
    for s in &subtract {
        if cur.is_empty() {
            break;
        }
        match s.values {
            Values::Exact(values) => {
                for b in values.iter().filter_map(|v| postings.get(&s.m.name, v)) {
                    cur.andnot_inplace(b);
                }
            }
            _ => {
                let u = union_of(postings, s, false);
                cur.andnot_inplace(&u);
            }
        }
    }
    cur
}

/// Which values of a matcher's label make up its set: the values it accepts
/// for a positive matcher, the values it rejects for a negative one. Never
/// includes `""` (there is no posting list for it).
#[derive(Debug, Clone, Copy)]
enum Values<'a> {
    /// No value.
    Nothing,
    /// Exactly these (direct lookups; `""` among them finds nothing).
    Exact(&'a [String]),
    /// Every value of the label.
    All,
    /// The values `v` with `m.matches(v)` equal to "the matcher is positive".
    Scan,
}

/// One planned matcher.
struct Step<'a> {
    m: &'a Matcher,
    values: Values<'a>,
}

/// Plans matcher `m`, positive when it does not match `""`.
fn plan(m: &Matcher, positive: bool) -> Values<'_> {
    // In terms of the positive form of `m` (`=` or `=~`): does the set consist
    // of the values that form accepts, or of those it rejects?
    let accepted = positive != m.op.is_negated();
    if m.is_any() || m.is_any_non_empty() {
        // `.*` and `.+` accept every non-empty value and reject none.
        return if accepted {
            Values::All
        } else {
            Values::Nothing
        };
    }
    match m.set_matches() {
        Some(set) if accepted => Values::Exact(set),
        // Rejecting only "" (`!=""`, `=""`, `!~""`): every value.
        Some(set) if set.iter().all(String::is_empty) => Values::All,
        _ => Values::Scan,
    }
}

/// Number of values of `m`'s label.
fn num_values(postings: &MemPostings, m: &Matcher) -> usize {
    postings.values(&m.name).map_or(0, |v| v.len())
}

/// The union of the posting lists of the values of `s`, planned for a
/// positive matcher when `positive`.
fn union_of(postings: &MemPostings, s: &Step<'_>, positive: bool) -> Bitmap {
    let Some(values) = postings.values(&s.m.name) else {
        return Bitmap::new();
    };
    let lists: Vec<&Bitmap> = match s.values {
        Values::Nothing => Vec::new(),
        Values::Exact(set) => set.iter().filter_map(|v| values.get(v)).collect(),
        Values::All => values.values().collect(),
        Values::Scan => values
            .iter()
            .filter(|(v, _)| s.m.matches(v) == positive)
            .map(|(_, b)| b)
            .collect(),
    };
    Bitmap::fast_or(&lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Labels;
    use crate::model::MatchOp;
    use crate::tsdb::index::SeriesRef;
    use proptest::prelude::*;

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }
    fn eq(n: &str, v: &str) -> Matcher {
        m(MatchOp::Equal, n, v)
    }
    fn ne(n: &str, v: &str) -> Matcher {
        m(MatchOp::NotEqual, n, v)
    }
    fn re(n: &str, v: &str) -> Matcher {
        m(MatchOp::Regex, n, v)
    }
    fn nre(n: &str, v: &str) -> Matcher {
        m(MatchOp::NotRegex, n, v)
    }

    /// Prometheus's `TestPostingsForMatchers` corpus, series 1..=6.
    fn corpus() -> (MemPostings, Vec<Labels>) {
        let series = vec![
            Labels::from_pairs([("n", "1")]),
            Labels::from_pairs([("n", "1"), ("i", "a")]),
            Labels::from_pairs([("n", "1"), ("i", "b")]),
            Labels::from_pairs([("n", "1"), ("i", "\n")]),
            Labels::from_pairs([("n", "2")]),
            Labels::from_pairs([("n", "2.5")]),
        ];
        let mut p = MemPostings::new();
        for (i, l) in series.iter().enumerate() {
            p.add(SeriesRef(i as u32 + 1), l);
        }
        (p, series)
    }

    /// The label sets selected by `ms`, as strings, sorted.
    fn run(p: &MemPostings, series: &[Labels], ms: &[Matcher]) -> Vec<String> {
        let mut v: Vec<String> = select(p, ms)
            .iter()
            .map(|r| series[r as usize - 1].to_string())
            .collect();
        v.sort();
        v
    }

    fn want(pairs: &[&[(&str, &str)]]) -> Vec<String> {
        let mut v: Vec<String> = pairs
            .iter()
            .map(|p| Labels::from_pairs(p.iter().copied()).to_string())
            .collect();
        v.sort();
        v
    }

    /// One expected label set.
    type Series = &'static [(&'static str, &'static str)];

    const N1: &[(&str, &str)] = &[("n", "1")];
    const N1A: &[(&str, &str)] = &[("n", "1"), ("i", "a")];
    const N1B: &[(&str, &str)] = &[("n", "1"), ("i", "b")];
    const N1NL: &[(&str, &str)] = &[("n", "1"), ("i", "\n")];
    const N2: &[(&str, &str)] = &[("n", "2")];
    const N25: &[(&str, &str)] = &[("n", "2.5")];
    const ALL: &[&[(&str, &str)]] = &[N1, N1A, N1B, N1NL, N2, N25];

    /// Every case of Prometheus's `TestPostingsForMatchers` (tsdb/querier_test.go).
    #[test]
    fn prometheus_postings_for_matchers() {
        let (p, s) = corpus();
        let cases: Vec<(Vec<Matcher>, &[Series])> = vec![
            // Simple equals.
            (vec![eq("n", "1")], &[N1, N1A, N1B, N1NL]),
            (vec![eq("n", "1"), eq("i", "a")], &[N1A]),
            (vec![eq("n", "1"), eq("i", "missing")], &[]),
            (vec![eq("missing", "")], ALL),
            // Not equals.
            (vec![ne("n", "1")], &[N2, N25]),
            (vec![ne("i", "")], &[N1A, N1B, N1NL]),
            (vec![ne("missing", "")], &[]),
            (vec![eq("n", "1"), ne("i", "a")], &[N1, N1B, N1NL]),
            (vec![eq("n", "1"), ne("i", "")], &[N1A, N1B, N1NL]),
            // Regex.
            (vec![re("n", "^1$")], &[N1, N1A, N1B, N1NL]),
            (vec![eq("n", "1"), re("i", "^a$")], &[N1A]),
            (vec![eq("n", "1"), re("i", "^a?$")], &[N1, N1A]),
            (vec![re("i", "^$")], &[N1, N2, N25]),
            (vec![eq("n", "1"), re("i", "^$")], &[N1]),
            (vec![eq("n", "1"), re("i", "^.*$")], &[N1, N1A, N1B, N1NL]),
            (vec![eq("n", "1"), re("i", "^.+$")], &[N1A, N1B, N1NL]),
            // Not regex.
            (vec![nre("i", "")], &[N1A, N1B, N1NL]),
            (vec![nre("n", "^1$")], &[N2, N25]),
            (vec![nre("n", "1")], &[N2, N25]),
            (vec![nre("n", "1|2.5")], &[N2]),
            (vec![nre("n", "(1|2.5)")], &[N2]),
            (vec![eq("n", "1"), nre("i", "^a$")], &[N1, N1B, N1NL]),
            (vec![eq("n", "1"), nre("i", "^a?$")], &[N1B, N1NL]),
            (vec![eq("n", "1"), nre("i", "^$")], &[N1A, N1B, N1NL]),
            (vec![eq("n", "1"), nre("i", "^.*$")], &[]),
            (vec![eq("n", "1"), nre("i", "^.+$")], &[N1]),
            // Combinations.
            (vec![eq("n", "1"), ne("i", ""), eq("i", "a")], &[N1A]),
            (
                vec![eq("n", "1"), ne("i", "b"), re("i", "^(b|a).*$")],
                &[N1A],
            ),
            // Set optimization for regex.
            (vec![re("n", "1|2")], &[N1, N1A, N1B, N1NL, N2]),
            (vec![re("i", "a|b")], &[N1A, N1B]),
            (vec![re("i", "(a|b)")], &[N1A, N1B]),
            (vec![re("n", "x1|2")], &[N2]),
            (vec![re("n", "2|2\\.5")], &[N2, N25]),
            // Empty value.
            (vec![re("i", "c||d")], &[N1, N2, N25]),
            (vec![re("i", "(c||d)")], &[N1, N2, N25]),
            // Shortcuts for .* and .+.
            (vec![re("i", ".*")], ALL),
            (vec![re("n", ".*"), re("i", "^.*$")], ALL),
            (vec![re("n", "^.*$"), eq("i", "a")], &[N1A]),
            (vec![nre("i", ".*")], &[]),
            (vec![nre("n", "^.*$"), nre("i", ".*")], &[]),
            (vec![re("n", ".*"), nre("i", ".*")], &[]),
            (vec![eq("n", "1"), nre("i", "^.*$")], &[]),
            (vec![re("n", ".*"), nre("i", ".+")], &[N1, N2, N25]),
        ];
        for (ms, exp) in cases {
            let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
            assert_eq!(run(&p, &s, &ms), want(exp), "{{{}}}", shown.join(", "));
        }
    }

    #[test]
    fn more_cases() {
        let (p, s) = corpus();
        // Unknown label names.
        assert_eq!(run(&p, &s, &[eq("nope", "x")]), want(&[]));
        assert_eq!(run(&p, &s, &[re("nope", "x|y")]), want(&[]));
        assert_eq!(run(&p, &s, &[re("nope", "x.*")]), want(&[]));
        assert_eq!(run(&p, &s, &[ne("nope", "x")]), want(ALL));
        assert_eq!(run(&p, &s, &[nre("nope", "x.*")]), want(ALL));
        assert_eq!(run(&p, &s, &[re("nope", "x|")]), want(ALL));
        // Label present with an alternation including the empty string.
        assert_eq!(run(&p, &s, &[re("i", "a|")]), want(&[N1, N1A, N2, N25]));
        assert_eq!(run(&p, &s, &[nre("i", "a|")]), want(&[N1B, N1NL]));
        assert_eq!(
            run(&p, &s, &[nre("i", "a.*")]),
            want(&[N1, N1B, N1NL, N2, N25])
        );
        // Regex that needs a scan, positive and negative.
        assert_eq!(run(&p, &s, &[re("n", "2.*")]), want(&[N2, N25]));
        assert_eq!(
            run(&p, &s, &[re("n", "[12]"), nre("i", "[ab]")]),
            want(&[N1, N1NL, N2])
        );
        // `.` matches a newline.
        assert_eq!(run(&p, &s, &[re("i", ".")]), want(&[N1A, N1B, N1NL]));
        // An empty matcher list selects everything.
        assert_eq!(run(&p, &s, &[]), want(ALL));
        // Same label twice.
        assert_eq!(run(&p, &s, &[re("n", "1|2"), ne("n", "1")]), want(&[N2]));
        assert_eq!(run(&p, &s, &[eq("n", "1"), eq("n", "2")]), want(&[]));
    }

    #[test]
    fn quoted_utf8_names_end_to_end() {
        use crate::model::parse_selector;
        let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";
        let series = [
            Labels::from_pairs([("__name__", cpu), ("otel.scope.name", "x")]),
            Labels::from_pairs([("__name__", cpu), ("otel.scope.name", "y")]),
            Labels::from_pairs([("__name__", "my.metric"), ("job", "a")]),
        ];
        let mut p = MemPostings::new();
        for (i, l) in series.iter().enumerate() {
            p.add(SeriesRef(i as u32), l);
        }
        let sel = |s: &str| select(&p, &parse_selector(s).unwrap()).to_vec();
        assert_eq!(sel(r#"{"otel.scope.name"="x"}"#), vec![0]);
        assert_eq!(sel(&format!(r#"{cpu}{{"otel.scope.name"!="x"}}"#)), vec![1]);
        assert_eq!(sel(r#"{"my.metric", job="a"}"#), vec![2]);
        assert_eq!(sel(r#"{"my.metric", job="b"}"#), Vec::<u32>::new());
    }

    #[test]
    fn plans() {
        let kind = |m: &Matcher| match plan(m, !m.matches_empty()) {
            Values::Nothing => "nothing".to_string(),
            Values::Exact(v) => format!("exact {v:?}"),
            Values::All => "all".into(),
            Values::Scan => "scan".into(),
        };
        assert_eq!(kind(&eq("a", "x")), r#"exact ["x"]"#);
        assert_eq!(kind(&re("a", "x|y")), r#"exact ["x", "y"]"#);
        assert_eq!(kind(&ne("a", "x")), r#"exact ["x"]"#);
        assert_eq!(kind(&nre("a", "x|y")), r#"exact ["x", "y"]"#);
        assert_eq!(kind(&eq("a", "")), "all");
        assert_eq!(kind(&ne("a", "")), "all");
        assert_eq!(kind(&re("a", ".+")), "all");
        assert_eq!(kind(&nre("a", ".+")), "all");
        assert_eq!(kind(&nre("a", "")), "all");
        assert_eq!(kind(&re("a", ".*")), "nothing");
        assert_eq!(kind(&nre("a", ".*")), "nothing");
        assert_eq!(kind(&re("a", "x|")), "scan");
        assert_eq!(kind(&nre("a", "x|")), "scan");
        assert_eq!(kind(&re("a", "x.*")), "scan");
        assert_eq!(kind(&nre("a", "x.*")), "scan");
    }

    /// A small regex grammar: literals, `.`, `.*`, `.+`, `?`, classes,
    /// anchors, empty, and concatenation, alternation and groups of those.
    fn arb_regex() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "x", "y", "xy", "", ".", ".*", ".+", "x?", "[xy]", "^", "$", "\\n",
        ])
        .prop_map(String::from);
        leaf.prop_recursive(3, 10, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}{b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}|{b}")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("{a}|{b}|{c}")),
                inner.prop_map(|a| format!("({a})")),
            ]
        })
    }

    fn arb_matcher() -> impl Strategy<Value = Matcher> {
        let name = prop::sample::select(vec!["a", "b", "c", "d"]);
        let literal =
            prop::sample::select(vec!["", "x", "y", "xy", "z", "\n"]).prop_map(String::from);
        let op = prop::sample::select(vec![
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex,
        ]);
        (op, name, literal, arb_regex()).prop_map(|(op, name, lit, re)| match op {
            MatchOp::Equal | MatchOp::NotEqual => Matcher::new(op, name, lit).unwrap(),
            _ => Matcher::new(op, name, re).unwrap(),
        })
    }

    /// Label sets over names a, b, c (d never occurs); a missing or empty
    /// value means the series lacks the label.
    fn arb_series() -> impl Strategy<Value = Vec<Labels>> {
        let value = prop::sample::select(vec!["", "", "x", "y", "xy", "\n", "yx"]);
        prop::collection::vec((value.clone(), value.clone(), value), 0..40).prop_map(|v| {
            v.into_iter()
                .map(|(a, b, c)| Labels::from_pairs([("a", a), ("b", b), ("c", c)]))
                .collect()
        })
    }

    fn brute_force(series: &[(u32, &Labels)], ms: &[Matcher]) -> Vec<u32> {
        series
            .iter()
            .filter(|(_, l)| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .map(|(r, _)| *r)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// `select` equals a scan applying `Matcher::matches` to each series.
        #[test]
        fn select_equals_brute_force(
            series in arb_series(),
            ms in prop::collection::vec(arb_matcher(), 0..4),
            removed in prop::collection::vec(any::<bool>(), 40),
        ) {
            let mut p = MemPostings::new();
            for (i, l) in series.iter().enumerate() {
                p.add(SeriesRef(i as u32), l);
            }
            let all: Vec<(u32, &Labels)> =
                series.iter().enumerate().map(|(i, l)| (i as u32, l)).collect();
            prop_assert_eq!(select(&p, &ms).to_vec(), brute_force(&all, &ms));

            // Again after removing some series.
            for (i, l) in series.iter().enumerate() {
                if removed[i] {
                    p.remove(SeriesRef(i as u32), l);
                }
            }
            let kept: Vec<(u32, &Labels)> =
                all.iter().copied().filter(|(i, _)| !removed[*i as usize]).collect();
            prop_assert_eq!(select(&p, &ms).to_vec(), brute_force(&kept, &ms));
            prop_assert_eq!(p.num_series(), kept.len());
        }
    }
}
