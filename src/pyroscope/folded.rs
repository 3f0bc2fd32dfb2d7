//! Pyroscope's text formats → pprof.
//!
//! - `folded` (collapsed stacks, as Brendan Gregg's `stackcollapse` and
//!   Pyroscope write them): one `frame;frame;...;frame count` per line,
//!   frames root first. The count is the text after the **last** space, so
//!   frame names may contain spaces (`main;GC worker 12` is the stack
//!   `main` → `GC worker` with count 12). The count is a non-negative
//!   integer that fits in an `i64`; a line whose count is 0 adds nothing.
//! - `lines`: one stack per line (same frame syntax, no count); each line
//!   counts 1.
//!
//! In both: a trailing `\r` (CRLF files) and trailing whitespace are removed,
//! blank lines are skipped, empty frames (`a;;b`, a leading or trailing `;`)
//! are dropped, and a line whose stack is empty after that, a count that is
//! missing, not a number, negative or too large, or a total over `i64` is an
//! error naming the 1-based line number. Identical stacks are summed.
//!
//! The profile built by [`to_pprof`] has one function and one location per
//! distinct frame name (ids 1..=n in order of first appearance, function
//! `name` = `system_name` = the frame), one sample per distinct stack with
//! its locations leaf first (as pprof wants), one sample type, the period
//! type, period, time and duration given.

use crate::proto::pprof::{Function, Line, Location, Profile, Sample, ValueType};
use std::collections::HashMap;

/// A folded or lines body, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stacks {
    /// Distinct frame names, in order of first appearance.
    pub frames: Vec<String>,
    /// (frame indexes root first, total count), in order of first
    /// appearance.
    pub stacks: Vec<(Vec<usize>, i64)>,
}

/// A bad line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct FoldedError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// Parses `text` as `folded` (`with_counts`) or `lines`.
pub fn parse(text: &str, with_counts: bool) -> Result<Stacks, FoldedError> {
    let mut out = Stacks::default();
    let mut frame_ids: HashMap<&str, usize> = HashMap::new();
    let mut stack_ids: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut stack: Vec<usize> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line = n + 1;
        let err = |why: String| FoldedError { line, why };
        let l = raw.trim_end();
        if l.is_empty() {
            continue;
        }
        let (frames, count) = if with_counts {
            let Some((frames, count)) = l.rsplit_once(' ') else {
                return Err(err(
                    "want `frame;frame;... count` (no space before a count)".into(),
                ));
            };
            let count: i64 = match count.parse::<i64>() {
                Ok(c) if c >= 0 => c,
                Ok(c) => return Err(err(format!("negative count {c}"))),
                Err(e) => {
                    let shown: String = count.chars().take(32).collect();
                    return Err(err(format!("count {shown:?} is not a number: {e}")));
                }
            };
            (frames, count)
        } else {
            (l, 1)
        };
        stack.clear();
        for f in frames.split(';') {
            if f.is_empty() {
                continue;
            }
            let next = out.frames.len();
            let id = *frame_ids.entry(f).or_insert(next);
            if id == next {
                out.frames.push(f.to_string());
            }
            stack.push(id);
        }
        if stack.is_empty() {
            return Err(err("empty stack".into()));
        }
        match stack_ids.get(&stack) {
            Some(&i) => {
                let total = &mut out.stacks[i].1;
                *total = total
                    .checked_add(count)
                    .ok_or_else(|| err("the stack's total count overflows i64".into()))?;
            }
            None => {
                stack_ids.insert(stack.clone(), out.stacks.len());
                out.stacks.push((stack.clone(), count));
            }
        }
    }
    Ok(out)
}

/// What to put around the samples of [`to_pprof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileShape {
    /// Sample type and unit.
    pub sample_type: (String, String),
    /// Period type and unit (empty strings for none).
    pub period_type: (String, String),
    /// `period`.
    pub period: i64,
    /// `time_nanos`.
    pub time_nanos: i64,
    /// `duration_nanos`.
    pub duration_nanos: i64,
}

/// Builds a pprof profile from parsed stacks (see the [module docs](self)).
/// The result still has to go through [`crate::pprof::validate`] (limits).
pub fn to_pprof(stacks: &Stacks, shape: &ProfileShape) -> Profile {
    let mut strings: Vec<String> = vec![String::new()];
    let mut index: HashMap<String, i64> = HashMap::new();
    let mut intern = |s: &str| -> i64 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&i) = index.get(s) {
            return i;
        }
        let i = strings.len() as i64;
        strings.push(s.to_string());
        index.insert(s.to_string(), i);
        i
    };
    let sample_type = vec![ValueType {
        r#type: intern(&shape.sample_type.0),
        unit: intern(&shape.sample_type.1),
    }];
    let period_type = if shape.period_type.0.is_empty() && shape.period_type.1.is_empty() {
        None
    } else {
        Some(ValueType {
            r#type: intern(&shape.period_type.0),
            unit: intern(&shape.period_type.1),
        })
    };
    let mut function = Vec::with_capacity(stacks.frames.len());
    let mut location = Vec::with_capacity(stacks.frames.len());
    for (i, f) in stacks.frames.iter().enumerate() {
        let id = i as u64 + 1;
        let name = intern(f);
        function.push(Function {
            id,
            name,
            system_name: name,
            ..Default::default()
        });
        location.push(Location {
            id,
            line: vec![Line {
                function_id: id,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let sample = stacks
        .stacks
        .iter()
        .map(|(frames, count)| Sample {
            location_id: frames.iter().rev().map(|&f| f as u64 + 1).collect(),
            value: vec![*count],
            label: Vec::new(),
        })
        .collect();
    Profile {
        sample_type,
        sample,
        location,
        function,
        string_table: strings,
        time_nanos: shape.time_nanos,
        duration_nanos: shape.duration_nanos,
        period_type,
        period: shape.period,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &Stacks) -> Vec<(Vec<&str>, i64)> {
        s.stacks
            .iter()
            .map(|(f, c)| (f.iter().map(|&i| s.frames[i].as_str()).collect(), *c))
            .collect()
    }

    #[test]
    fn folded_basics() {
        let s = parse("a;b;c 12\na;b 3\n\na;b;c 1\n", true).unwrap();
        assert_eq!(
            names(&s),
            vec![(vec!["a", "b", "c"], 13), (vec!["a", "b"], 3)]
        );
        assert_eq!(s.frames, vec!["a", "b", "c"]);
    }

    #[test]
    fn folded_edge_cases() {
        // Spaces inside frame names: the count is after the last space.
        let s = parse("main;GC worker (idle) 7", true).unwrap();
        assert_eq!(names(&s), vec![(vec!["main", "GC worker (idle)"], 7)]);
        // `;;`, leading/trailing `;` drop empty frames.
        let s = parse(";a;;b; 2", true).unwrap();
        assert_eq!(names(&s), vec![(vec!["a", "b"], 2)]);
        // Trailing spaces and CRLF.
        let s = parse("a;b 5   \r\n\r\nc 1\r\n", true).unwrap();
        assert_eq!(names(&s), vec![(vec!["a", "b"], 5), (vec!["c"], 1)]);
        // Huge counts: i64::MAX is fine, one more is not, nor a sum over it.
        let s = parse(&format!("a {}", i64::MAX), true).unwrap();
        assert_eq!(s.stacks[0].1, i64::MAX);
        let e = parse("a 1\nb 9223372036854775808", true).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.why.contains("not a number"), "{e}");
        let e = parse(&format!("a {}\na 1", i64::MAX), true).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.why.contains("overflows"), "{e}");
        // Zero is accepted (adds nothing), negative is not.
        let s = parse("a 0", true).unwrap();
        assert_eq!(names(&s), vec![(vec!["a"], 0)]);
        let e = parse("a 1\n\nb -3", true).unwrap_err();
        assert_eq!((e.line, e.why.contains("negative")), (3, true));
        // No count, bad count, empty stack.
        assert_eq!(parse("abc", true).unwrap_err().line, 1);
        assert_eq!(parse("a\tb", true).unwrap_err().line, 1);
        assert_eq!(parse("x 1\na;b 1x", true).unwrap_err().line, 2);
        assert!(parse(";; 3", true).unwrap_err().why.contains("empty stack"));
        assert!(parse(" 3", true).unwrap_err().why.contains("empty stack"));
        // Empty input: no stacks.
        assert_eq!(parse("", true).unwrap(), Stacks::default());
        assert_eq!(parse("\n\r\n  \n", true).unwrap(), Stacks::default());
    }

    #[test]
    fn lines_format() {
        let s = parse("a;b\na;b\r\nc d\n", false).unwrap();
        assert_eq!(names(&s), vec![(vec!["a", "b"], 2), (vec!["c d"], 1)]);
        // A number at the end is part of the last frame name.
        let s = parse("a;b 3", false).unwrap();
        assert_eq!(names(&s), vec![(vec!["a", "b 3"], 1)]);
    }

    #[test]
    fn pprof_shape() {
        let s = parse("a;b;c 12\na;b 3\n", true).unwrap();
        let p = to_pprof(
            &s,
            &ProfileShape {
                sample_type: ("samples".into(), "count".into()),
                period_type: ("cpu".into(), "nanoseconds".into()),
                period: 10_000_000,
                time_nanos: 5,
                duration_nanos: 10,
            },
        );
        crate::pprof::validate(&p, &crate::pprof::DecodeLimits::default()).unwrap();
        assert_eq!(p.sample[0].location_id, vec![3, 2, 1], "leaf first");
        assert_eq!(p.sample[0].value, vec![12]);
        assert_eq!(p.sample[1].location_id, vec![2, 1]);
        assert_eq!(p.function.len(), 3);
        assert_eq!(p.location.len(), 3);
        let st = &p.string_table;
        assert_eq!(st[p.function[2].name as usize], "c");
        assert_eq!(st[p.sample_type[0].r#type as usize], "samples");
        let pt = p.period_type.unwrap();
        assert_eq!(st[pt.unit as usize], "nanoseconds");
        assert_eq!(
            (p.period, p.time_nanos, p.duration_nanos),
            (10_000_000, 5, 10)
        );
    }
}
