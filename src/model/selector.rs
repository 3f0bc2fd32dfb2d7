//! Parsing series selectors (`metric{label="value", ...}`) with promql-parser.
//!
//! [`parse_range_query`] also accepts one aggregation over a selector,
//! `sum [by|without (l, …)] (selector)`, which `/api/v1/query_range` sums
//! with [`Grouping`]; [`parse_selector`] accepts the selector alone.
//!
//! Only a plain vector selector is accepted: a metric name (the profile type,
//! e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta`; colons are legal
//! in metric names) and/or `{...}` label matchers. Functions, operators,
//! aggregations, range selectors, subqueries, `offset` and `@` modifiers,
//! parentheses and literals are rejected with [`SelectorError::Unsupported`],
//! which says what was found. So is promql-parser's non-standard `or` between
//! label matchers.
//!
//! Prometheus 3's quoted UTF-8 names work: `{"otel.scope.name"="x"}` is a
//! matcher on the label `otel.scope.name`, and a lone quoted string inside the
//! braces is the metric name, `{"my.metric", job="a"}` ≡
//! `{__name__="my.metric", job="a"}`.

use super::matcher::{MatchOp, Matcher};
use crate::model::labels::{Labels, METRIC_NAME};
use promql_parser::label::MatchOp as PromOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

pub use super::error::SelectorError;

/// Parses a series selector into matchers: first `__name__="<metric>"` when a
/// metric name is given, then the `{...}` matchers in the order written.
///
/// The result always holds at least one matcher that does not match the empty
/// string ([`SelectorError::Empty`] otherwise).
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    match parse_expr(input)? {
        Expr::VectorSelector(vs) => vector_matchers(input, vs),
        other => Err(unsupported(input, describe(&other))),
    }
}

/// Which labels a `sum` keeps: Prometheus's `by`/`without` modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// `sum by (l, …)`: only these labels (`sum (…)` is `by ()`: one series
    /// without labels).
    By(Vec<String>),
    /// `sum without (l, …)`: every label but these and the metric name.
    Without(Vec<String>),
}

impl Grouping {
    /// The labels of the group `labels` falls into.
    pub fn group_of(&self, labels: &Labels) -> Labels {
        let mut out = Labels::new();
        for l in labels.iter() {
            let keep = match self {
                Grouping::By(names) => names.contains(&l.name),
                Grouping::Without(names) => l.name != METRIC_NAME && !names.contains(&l.name),
            };
            if keep {
                out.set(l.name.clone(), l.value.clone());
            }
        }
        out
    }
}

/// What `/api/v1/query_range` accepts: a series selector, optionally summed
/// (`sum [by|without (l, …)] (selector)`, with Prometheus's semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// The series selector.
    pub matchers: Vec<Matcher>,
    /// How the selected series are summed; `None` keeps every series.
    pub grouping: Option<Grouping>,
}

/// Parses a [`RangeQuery`]. Every other aggregation, function or operator is
/// [`SelectorError::Unsupported`].
pub fn parse_range_query(input: &str) -> Result<RangeQuery, SelectorError> {
    let agg = match parse_expr(input)? {
        Expr::VectorSelector(vs) => {
            return Ok(RangeQuery {
                matchers: vector_matchers(input, vs)?,
                grouping: None,
            })
        }
        Expr::Aggregate(agg) => agg,
        other => return Err(unsupported(input, describe(&other))),
    };
    let op = agg.op.to_string();
    if op != "sum" || agg.param.is_some() {
        return Err(unsupported(
            input,
            format!(
                "aggregation `{op}`; only `sum`, `sum by (…)` and `sum without (…)` over a \
                 series selector are supported"
            ),
        ));
    }
    let mut inner = *agg.expr;
    while let Expr::Paren(p) = inner {
        inner = *p.expr;
    }
    let vs = match inner {
        Expr::VectorSelector(vs) => vs,
        other => {
            return Err(unsupported(
                input,
                format!("{} inside `sum`; want a series selector", describe(&other)),
            ))
        }
    };
    let grouping = match agg.modifier {
        None => Grouping::By(Vec::new()),
        Some(LabelModifier::Include(l)) => Grouping::By(l.labels),
        Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels),
    };
    Ok(RangeQuery {
        matchers: vector_matchers(input, vs)?,
        grouping: Some(grouping),
    })
}

fn unsupported(input: &str, found: String) -> SelectorError {
    SelectorError::Unsupported {
        input: input.to_string(),
        found,
    }
}

/// Parses `input` as PromQL.
fn parse_expr(input: &str) -> Result<Expr, SelectorError> {
    if input.trim().is_empty() {
        return Err(SelectorError::Empty);
    }
    parser::parse(input).map_err(|reason| {
        // promql-parser already enforces the non-empty matcher rule; keep our
        // own variant for it.
        if reason.contains("at least one non-empty matcher") {
            SelectorError::Empty
        } else {
            SelectorError::Parse {
                input: input.to_string(),
                reason,
            }
        }
    })
}

/// The matchers of a plain vector selector (see [`parse_selector`]).
fn vector_matchers(input: &str, vs: VectorSelector) -> Result<Vec<Matcher>, SelectorError> {
    let VectorSelector {
        name,
        matchers,
        offset,
        at,
    } = vs;
    if offset.is_some() {
        return Err(unsupported(input, "an `offset` modifier".into()));
    }
    if at.is_some() {
        return Err(unsupported(input, "an `@` modifier".into()));
    }
    if !matchers.or_matchers.is_empty() {
        return Err(unsupported(input, "`or` between label matchers".into()));
    }
    let mut out = Vec::with_capacity(matchers.matchers.len() + 1);
    if let Some(name) = name {
        out.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name)?);
    }
    for m in matchers.matchers {
        let op = match m.op {
            PromOp::Equal => MatchOp::Equal,
            PromOp::NotEqual => MatchOp::NotEqual,
            PromOp::Re(_) => MatchOp::Regex,
            PromOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name, m.value)?);
    }
    if out.iter().all(Matcher::matches_empty) {
        return Err(SelectorError::Empty);
    }
    Ok(out)
}

/// Names the kind of a PromQL expression that is not a series selector.
fn describe(e: &Expr) -> String {
    match e {
        Expr::Aggregate(a) => format!("aggregation `{}`", a.op),
        Expr::Unary(_) => "unary minus".into(),
        Expr::Binary(b) => format!("binary operator `{}`", b.op),
        Expr::Paren(_) => "parentheses".into(),
        Expr::Subquery(_) => "a subquery".into(),
        Expr::NumberLiteral(n) => format!("number literal `{}`", n.val),
        Expr::StringLiteral(s) => format!("string literal {s}"),
        Expr::VectorSelector(_) => "a series selector".into(),
        Expr::MatrixSelector(m) => format!(
            "range selector `[{}]`",
            promql_parser::util::display_duration(&m.range)
        ),
        Expr::Call(c) => format!("function call `{}(...)`", c.func.name),
        Expr::Extension(_) => "an extension expression".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta";

    #[test]
    fn profile_type_with_colons() {
        let got = parse_selector(&format!("{CPU}{{job=\"api\"}}")).unwrap();
        assert_eq!(
            got,
            vec![
                m(MatchOp::Equal, METRIC_NAME, CPU),
                m(MatchOp::Equal, "job", "api")
            ]
        );
        assert_eq!(
            parse_selector(CPU).unwrap(),
            vec![m(MatchOp::Equal, METRIC_NAME, CPU)]
        );
        assert_eq!(
            parse_selector(&format!("{CPU}{{}}")).unwrap(),
            vec![m(MatchOp::Equal, METRIC_NAME, CPU)]
        );
    }

    #[test]
    fn all_ops_and_trailing_comma() {
        let got = parse_selector(r#"{a="1", b!="2", c=~"x|y", d!~"z.*",}"#).unwrap();
        assert_eq!(
            got,
            vec![
                m(MatchOp::Equal, "a", "1"),
                m(MatchOp::NotEqual, "b", "2"),
                m(MatchOp::Regex, "c", "x|y"),
                m(MatchOp::NotRegex, "d", "z.*"),
            ]
        );
        // Escapes are PromQL string escapes; the regex sees one backslash.
        let got = parse_selector(r#"{host=~"10\\.0\\.0\\.1:80|b", s='single', r=`raw`}"#).unwrap();
        assert_eq!(got[0].value, r"10\.0\.0\.1:80|b");
        assert!(got[0].matches("10.0.0.1:80"));
        assert!(!got[0].matches("10x0.0.1:80"));
        assert_eq!(got[1].value, "single");
        assert_eq!(got[2].value, "raw");
    }

    /// promql-parser 0.11 limitation: inside a backtick (raw) string it still
    /// rejects a backslash before a character that is not a string escape,
    /// where Prometheus takes raw strings verbatim. Use a double-quoted string
    /// with `\\` instead. This test fails once promql-parser fixes it.
    #[test]
    fn raw_string_backslash_limitation() {
        let e = parse_selector(r"{r=~`a\d`}").unwrap_err();
        assert!(e.to_string().contains("unknown escape sequence"), "{e}");
        let ok = parse_selector(r#"{r=~"a\\d"}"#).unwrap();
        assert_eq!(ok[0].value, r"a\d");
        assert!(ok[0].matches("a7"));
    }

    #[test]
    fn keyword_metric_names() {
        // Words that are PromQL keywords are still metric names on their own.
        for name in ["sum", "offset", "by", "start"] {
            let got = parse_selector(&format!("{name}{{job=\"a\"}}")).unwrap();
            assert_eq!(got[0], m(MatchOp::Equal, METRIC_NAME, name));
        }
    }

    #[test]
    fn quoted_utf8_names() {
        let got = parse_selector(r#"{"otel.scope.name"="x"}"#).unwrap();
        assert_eq!(got, vec![m(MatchOp::Equal, "otel.scope.name", "x")]);

        let got = parse_selector(r#"{"my.metric", job="a"}"#).unwrap();
        assert_eq!(
            got,
            vec![
                m(MatchOp::Equal, METRIC_NAME, "my.metric"),
                m(MatchOp::Equal, "job", "a")
            ]
        );

        let got = parse_selector(&format!(
            r#"{CPU}{{"service.name"=~"api|web", "k8s.pod"!="x"}}"#
        ))
        .unwrap();
        assert_eq!(
            got,
            vec![
                m(MatchOp::Equal, METRIC_NAME, CPU),
                m(MatchOp::Regex, "service.name", "api|web"),
                m(MatchOp::NotEqual, "k8s.pod", "x"),
            ]
        );
        // Non-ASCII names.
        let got = parse_selector(r#"{"größe"="1"}"#).unwrap();
        assert_eq!(got, vec![m(MatchOp::Equal, "größe", "1")]);
    }

    #[test]
    fn display_round_trips() {
        for sel in [
            r#"{job="a\"b", "otel.scope.name"=~"x|\\.y", i!~"\n", n!="c\\d"}"#,
            r#"{a="tab\there", b="ü"}"#,
        ] {
            let ms = parse_selector(sel).unwrap();
            let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
            let again = parse_selector(&format!("{{{}}}", shown.join(", "))).unwrap();
            assert_eq!(ms, again, "{sel}");
        }
    }

    fn unsupported(input: &str) -> String {
        match parse_selector(input) {
            Err(SelectorError::Unsupported { found, .. }) => found,
            other => panic!("{input}: expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn rejects_everything_else_saying_what_it_found() {
        let cases = [
            ("rate(x[5m])", "function call `rate(...)`"),
            ("sum(x)", "aggregation `sum`"),
            ("sum by (job) (x)", "aggregation `sum`"),
            ("x + y", "binary operator `+`"),
            ("x or y", "binary operator `or`"),
            ("x > 1", "binary operator `>`"),
            ("-x", "unary minus"),
            ("(x)", "parentheses"),
            ("x[5m]", "range selector `[5m]`"),
            ("x[5m:1m]", "a subquery"),
            ("x offset 5m", "an `offset` modifier"),
            ("x @ 100", "an `@` modifier"),
            ("x @ start()", "an `@` modifier"),
            ("1", "number literal `1`"),
            ("\"s\"", "string literal \"s\""),
            (r#"x{a="1" or b="2"}"#, "`or` between label matchers"),
        ];
        for (input, want) in cases {
            assert_eq!(unsupported(input), want, "{input}");
            let msg = parse_selector(input).unwrap_err().to_string();
            assert!(
                msg.contains(want) && msg.contains("only a series selector"),
                "{msg}"
            );
        }
    }

    #[test]
    fn rejects_empty_selectors() {
        for input in [
            "",
            "  ",
            "{}",
            r#"{job=~".*"}"#,
            r#"{job=""}"#,
            r#"{a!="x", b=~"y|"}"#,
        ] {
            let e = parse_selector(input).unwrap_err();
            assert_eq!(e, SelectorError::Empty, "{input}");
            assert_eq!(
                e.to_string(),
                "vector selector must contain at least one non-empty matcher"
            );
        }
        // Quoted metric name that is empty: our own check catches it.
        assert_eq!(parse_selector(r#"{""}"#), Err(SelectorError::Empty));
        // A metric name or one non-empty matcher is enough.
        assert!(parse_selector(r#"x{job=~".*"}"#).is_ok());
        assert!(parse_selector(r#"{job=~".*", a="1"}"#).is_ok());
    }

    #[test]
    fn rejects_syntax_errors() {
        for input in [
            "x{",
            r#"x{a=1}"#,
            r#"x{a}"#,
            r#"x{a=~"("}"#,
            "x y",
            r#"x{__name__="y"}"#,
        ] {
            let e = parse_selector(input).unwrap_err();
            assert!(
                matches!(
                    e,
                    SelectorError::Parse { .. } | SelectorError::InvalidRegex { .. }
                ),
                "{input}: {e:?}"
            );
            assert!(e.to_string().contains(&format!("{input:?}")), "{e}");
        }
    }

    #[test]
    fn range_queries_take_one_sum_over_a_selector() {
        let plain = parse_range_query(r#"{job="a"}"#).unwrap();
        assert_eq!(plain.grouping, None);
        assert_eq!(plain.matchers, vec![m(MatchOp::Equal, "job", "a")]);
        let by = parse_range_query(r#"sum by (instance, pod) ({job="a"})"#).unwrap();
        assert_eq!(
            by.grouping,
            Some(Grouping::By(vec!["instance".into(), "pod".into()]))
        );
        assert_eq!(by.matchers, plain.matchers);
        let without = parse_range_query(r#"sum without (pod) (x{job="a"})"#).unwrap();
        assert_eq!(
            without.grouping,
            Some(Grouping::Without(vec!["pod".into()]))
        );
        assert_eq!(without.matchers.len(), 2);
        let all = parse_range_query(r#"sum(((x)))"#).unwrap();
        assert_eq!(all.grouping, Some(Grouping::By(vec![])));
        let by_after = parse_range_query(r#"sum(x) by (job)"#).unwrap();
        assert_eq!(by_after.grouping, Some(Grouping::By(vec!["job".into()])));
        for bad in [
            "avg by (job) (x)",
            "topk(3, x)",
            "sum(rate(x[5m]))",
            "sum(x) + 1",
            "sum(sum(x))",
        ] {
            match parse_range_query(bad) {
                Err(SelectorError::Unsupported { .. }) => {}
                other => panic!("{bad}: expected Unsupported, got {other:?}"),
            }
        }
        assert!(parse_range_query("sum({})").is_err());
        // promql-parser itself refuses a range vector in `sum`.
        assert!(parse_range_query("sum(x[5m])").is_err());
    }

    #[test]
    fn grouping_keeps_what_prometheus_keeps() {
        let l = Labels::from_pairs([
            (METRIC_NAME, "cpu"),
            ("job", "a"),
            ("pod", "p1"),
            ("zone", "z"),
        ]);
        let by = Grouping::By(vec!["pod".into(), "absent".into(), METRIC_NAME.into()]);
        assert_eq!(
            by.group_of(&l),
            Labels::from_pairs([(METRIC_NAME, "cpu"), ("pod", "p1")])
        );
        let without = Grouping::Without(vec!["pod".into()]);
        assert_eq!(
            without.group_of(&l),
            Labels::from_pairs([("job", "a"), ("zone", "z")])
        );
        assert!(Grouping::By(vec![]).group_of(&l).is_empty());
    }
}
