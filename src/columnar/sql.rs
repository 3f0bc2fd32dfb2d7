//! Label matchers as SQL over the `series` table's `labels` map.
//!
//! A missing label reads as `''` (`coalesce(map_extract_value(labels, k),
//! '')`), which gives Prometheus' empty-string semantics without special
//! cases: `l=""` matches series without `l`, `l!=""` requires `l`, and a
//! regex that matches `""` also matches series without `l`.
//!
//! Regexes are fully anchored as in Prometheus: `regexp_full_match(v,
//! '(?s:re)')` (DuckDB's regexes are RE2, Prometheus' are Go's RE2 syntax;
//! `(?s)` lets `.` match a newline, as [`crate::model::Matcher`] does). A
//! regex that [`Matcher::set_matches`] reduces to a finite set of literals
//! becomes `IN (…)`. Every value is a bound parameter, never spliced into the
//! SQL text.

use crate::engine::TimeRange;
use crate::model::{MatchOp, Matcher};
use duckdb::types::{ToSql, ToSqlOutput};

/// A bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
}

impl ToSql for Arg {
    fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::Int(i) => i.to_sql(),
        }
    }
}

/// `SELECT series_id FROM series WHERE …` for the series matching every
/// matcher with a profile in `range`, ascending, and its parameters.
pub fn select_series(matchers: &[Matcher], range: TimeRange) -> (String, Vec<Arg>) {
    let mut sql = String::from("SELECT s.series_id FROM series s WHERE ");
    let mut args = Vec::new();
    push_matchers(&mut sql, &mut args, matchers);
    sql.push_str(
        "EXISTS (SELECT 1 FROM profiles p WHERE p.series_id = s.series_id AND p.ts BETWEEN ? AND ?) \
         ORDER BY s.series_id",
    );
    args.push(Arg::Int(range.start));
    args.push(Arg::Int(range.end));
    (sql, args)
}

/// Appends `cond AND ` for each matcher: conditions on the `labels` map of
/// the table aliased `s`, with their parameters.
pub fn push_matchers(sql: &mut String, args: &mut Vec<Arg>, matchers: &[Matcher]) {
    for m in matchers {
        push_matcher(sql, args, m);
        sql.push_str(" AND ");
    }
}

fn push_matcher(sql: &mut String, args: &mut Vec<Arg>, m: &Matcher) {
    let value = "coalesce(map_extract_value(s.labels, ?), '')";
    args.push(Arg::Text(m.name.clone()));
    let positive = match m.op {
        MatchOp::Equal | MatchOp::NotEqual => {
            args.push(Arg::Text(m.value.clone()));
            format!("{value} = ?")
        }
        MatchOp::Regex | MatchOp::NotRegex => match m.set_matches() {
            Some(set) if !set.is_empty() => {
                let marks = vec!["?"; set.len()].join(", ");
                args.extend(set.iter().cloned().map(Arg::Text));
                format!("{value} IN ({marks})")
            }
            _ => {
                args.push(Arg::Text(format!("(?s:{})", m.value)));
                format!("regexp_full_match({value}, ?)")
            }
        },
    };
    if m.op.is_negated() {
        sql.push_str("NOT (");
    } else {
        sql.push('(');
    }
    sql.push_str(&positive);
    sql.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parameters() {
        let m = Matcher::new(MatchOp::NotRegex, "job", "a'b.*").unwrap();
        let (sql, args) = select_series(&[m], TimeRange::ALL);
        assert!(!sql.contains("a'b"), "{sql}");
        assert!(sql.contains("NOT (regexp_full_match("), "{sql}");
        assert_eq!(args[0], Arg::Text("job".into()));
        assert_eq!(args[1], Arg::Text("(?s:a'b.*)".into()));
    }
}
