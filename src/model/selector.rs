//! Parsing series selectors (`metric{label="value", ...}`) with promql-parser.
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
use crate::model::labels::METRIC_NAME;
use promql_parser::label::MatchOp as PromOp;
use promql_parser::parser::{self, Expr, VectorSelector};

pub use super::error::SelectorError;

/// Parses a series selector into matchers: first `__name__="<metric>"` when a
/// metric name is given, then the `{...}` matchers in the order written.
///
/// The result always holds at least one matcher that does not match the empty
/// string ([`SelectorError::Empty`] otherwise).
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    if input.trim().is_empty() {
        return Err(SelectorError::Empty);
    }
    let expr = parser::parse(input).map_err(|reason| {
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
    })?;
    let unsupported = |found: String| SelectorError::Unsupported {
        input: input.to_string(),
        found,
    };
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        other => return Err(unsupported(describe(&other))),
    };
    let VectorSelector {
        name,
        matchers,
        offset,
        at,
    } = vs;
    if offset.is_some() {
        return Err(unsupported("an `offset` modifier".into()));
    }
    if at.is_some() {
        return Err(unsupported("an `@` modifier".into()));
    }
    if !matchers.or_matchers.is_empty() {
        return Err(unsupported("`or` between label matchers".into()));
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
}
