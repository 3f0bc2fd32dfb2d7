//! Label matchers: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
//!
//! Regexes are fully anchored exactly as in Prometheus, `^(?s:<re>)$` (so `.`
//! also matches a newline), and compiled once, in [`Matcher::new`]. Like
//! Prometheus (Go's RE2), a `{` that does not start a valid repetition is taken
//! literally (`a{b}`), which Rust's `regex` would otherwise reject.
//!
//! At construction a regex is also classified, so that evaluating it rarely
//! needs the regex engine:
//! - a literal alternation (`a|b|c`, `(a|b)`, `^(?:a|b)$`, a plain literal
//!   `foo`, escaped punctuation such as `2\.5`) matches exactly a finite set of
//!   strings, which become direct postings lookups ([`Matcher::set_matches`]);
//! - `.*` matches everything and `.+` every non-empty string;
//! - literals joined by `.*` (`api-.*`, `.*-7f.*`, `a.*b`) become prefix,
//!   substring and suffix tests instead of a regex run.
//!
//! Known difference from Prometheus: Rust's `\d`, `\w`, `\s` and `\b` are
//! Unicode-aware where Go's are ASCII-only; `(?-u:\d)` gives the ASCII class.

use super::error::SelectorError;
use crate::model::labels::is_legacy_label_name;
use regex::Regex;
use std::fmt;

/// The operator of a [`Matcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the value equals the string.
    Equal,
    /// `!=`: the value differs from the string.
    NotEqual,
    /// `=~`: the value matches the fully anchored regex.
    Regex,
    /// `!~`: the value does not match the fully anchored regex.
    NotRegex,
}

impl MatchOp {
    /// True for `!=` and `!~`.
    pub fn is_negated(self) -> bool {
        matches!(self, MatchOp::NotEqual | MatchOp::NotRegex)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// What the positive form of a matcher (`=` or `=~`) accepts, decided once at
/// construction.
#[derive(Debug, Clone)]
enum Predicate {
    /// Exactly the matcher's value (`=` and `!=`).
    Equal,
    /// Exactly these strings: a literal alternation. Sorted, deduplicated, may
    /// contain `""`.
    Literals(Vec<String>),
    /// Every string (`.*`).
    Any,
    /// Every non-empty string (`.+`).
    AnyNonEmpty,
    /// Literals joined by `.*`: see [`Glob`].
    Glob(Glob),
    /// Anything else: ask the compiled regex.
    Regex(Regex),
}

/// A regex of literals joined by `.*`, e.g. `a.*b.*c`: the string starts with
/// `prefix`, ends with `suffix` (not overlapping it), and holds the `middle`
/// literals in order in between. With `(?s)`, `.*` matches any string, so
/// this is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    prefix: String,
    middle: Vec<String>,
    suffix: String,
}

impl Glob {
    fn matches(&self, v: &str) -> bool {
        // Empty prefix and suffix are skipped rather than compared: besides
        // saving a call, `memcmp` of zero bytes at an empty `String`'s
        // dangling pointer is measurably slow with AVX-512 masked loads.
        let mut body = v;
        if !self.prefix.is_empty() {
            let Some(rest) = body.strip_prefix(self.prefix.as_str()) else {
                return false;
            };
            body = rest;
        }
        if !self.suffix.is_empty() {
            let Some(rest) = body.strip_suffix(self.suffix.as_str()) else {
                return false;
            };
            body = rest;
        }
        for m in &self.middle {
            // Leftmost is best: it leaves the most room for what follows.
            match body.find(m.as_str()) {
                Some(i) => body = &body[i + m.len()..],
                None => return false,
            }
        }
        true
    }
}

/// One label matcher.
///
/// The fields are public for reading; do not change them after construction
/// (the regex and its classification were computed from them): build a new
/// matcher with [`Matcher::new`] instead. Two matchers are equal when name,
/// operator and value are equal.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name (`__name__` for the profile type).
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The string or regex as written, without the anchoring.
    pub value: String,
    predicate: Predicate,
    matches_empty: bool,
}

impl Matcher {
    /// A matcher of `name` against `value`; for `=~` and `!~` `value` is a
    /// regex, anchored as `^(?s:<value>)$` and compiled here.
    ///
    /// Errors: an empty label name, or a regex that does not compile.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, SelectorError> {
        let name = name.into();
        let value = value.into();
        if name.is_empty() {
            return Err(SelectorError::EmptyLabelName { value });
        }
        let predicate = match op {
            MatchOp::Equal | MatchOp::NotEqual => Predicate::Equal,
            MatchOp::Regex | MatchOp::NotRegex => {
                let re =
                    compile_anchored(&value).map_err(|reason| SelectorError::InvalidRegex {
                        name: name.clone(),
                        regex: value.clone(),
                        reason,
                    })?;
                match classify(&value) {
                    Shape::Literals(mut l) => {
                        l.sort_unstable();
                        l.dedup();
                        Predicate::Literals(l)
                    }
                    Shape::Any => Predicate::Any,
                    Shape::AnyNonEmpty => Predicate::AnyNonEmpty,
                    Shape::Glob(g) => Predicate::Glob(g),
                    Shape::General => Predicate::Regex(re),
                }
            }
        };
        let mut m = Matcher {
            name,
            op,
            value,
            predicate,
            matches_empty: false,
        };
        m.matches_empty = m.matches("");
        Ok(m)
    }

    /// True when a label value `value` satisfies the matcher. A missing label
    /// is the value `""`.
    pub fn matches(&self, value: &str) -> bool {
        let positive = match &self.predicate {
            Predicate::Equal => value == self.value,
            Predicate::Literals(l) => l.binary_search_by(|s| cmp_str(s, value)).is_ok(),
            Predicate::Any => true,
            Predicate::AnyNonEmpty => !value.is_empty(),
            Predicate::Glob(g) => g.matches(value),
            Predicate::Regex(re) => re.is_match(value),
        };
        positive != self.op.is_negated()
    }

    /// True when the matcher matches `""`, hence every series that does not
    /// have the label. Computed once at construction.
    pub fn matches_empty(&self) -> bool {
        self.matches_empty
    }

    /// The finite set of values the positive form of this matcher accepts, when
    /// there is one: for `=`/`!=` the value itself; for `=~`/`!~` the strings
    /// of a literal alternation (sorted, deduplicated, possibly with `""`).
    /// So `=` and `=~` match exactly these values and `!=` and `!~` every value
    /// but these. `None` when the regex needs the regex engine.
    pub fn set_matches(&self) -> Option<&[String]> {
        match &self.predicate {
            Predicate::Equal => Some(std::slice::from_ref(&self.value)),
            Predicate::Literals(l) => Some(l),
            _ => None,
        }
    }

    /// True when the positive form of the regex is `.*` (matches everything).
    pub(crate) fn is_any(&self) -> bool {
        matches!(self.predicate, Predicate::Any)
    }

    /// True when the positive form of the regex is `.+` (matches every
    /// non-empty string).
    pub(crate) fn is_any_non_empty(&self) -> bool {
        matches!(self.predicate, Predicate::AnyNonEmpty)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    /// Prometheus syntax: `name="value"`, the name quoted when it is outside
    /// the classic character set (`{"otel.scope.name"="x"}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_legacy_label_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            crate::model::labels::write_quoted(f, &self.name)?;
        }
        write!(f, "{}", self.op)?;
        crate::model::labels::write_quoted(f, &self.value)
    }
}

/// `a.cmp(b)`, without calling `memcmp` on an empty string: an empty `String`
/// has a dangling pointer, and a zero-byte `memcmp` there costs hundreds of
/// cycles with AVX-512 masked loads (see [`Glob::matches`]).
fn cmp_str(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

/// Compiles `^(?s:<re>)$`; if that fails, retries with every `{` that does not
/// start a repetition escaped, as Go's RE2 (and promql-parser) take it
/// literally.
fn compile_anchored(re: &str) -> Result<Regex, String> {
    match Regex::new(&format!("^(?s:{re})$")) {
        Ok(r) => Ok(r),
        Err(first) => {
            let escaped = escape_literal_braces(re);
            if escaped == re {
                return Err(first.to_string());
            }
            Regex::new(&format!("^(?s:{escaped})$")).map_err(|_| first.to_string())
        }
    }
}

/// Escapes each `{` that is not followed by a repetition `n}`, `n,}` or
/// `n,m}`.
fn escape_literal_braces(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 4);
    let mut chars = re.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '{' => {
                if !is_repetition(&re[i + 1..]) {
                    out.push('\\');
                }
                out.push('{');
            }
            c => out.push(c),
        }
    }
    out
}

/// True when `rest` (the text after a `{`) starts with `n}`, `n,}` or `n,m}`.
fn is_repetition(rest: &str) -> bool {
    let b = rest.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(0);
    if n == 0 {
        return false;
    }
    match b.get(n) {
        Some(b'}') => true,
        Some(b',') => {
            let m = digits(n + 1);
            b.get(n + 1 + m) == Some(&b'}')
        }
        _ => false,
    }
}

/// The shape of a regex as far as [`classify`] can tell.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Literals(Vec<String>),
    Any,
    AnyNonEmpty,
    Glob(Glob),
    General,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Begin,
    End,
    Alt,
    Dot,
    Star,
    Plus,
    Open,
    Close,
    Other,
}

/// Splits a regex into the few tokens [`classify`] understands; everything
/// else (classes, repetitions, flags, escapes such as `\d`) is `Other`.
fn tokenize(re: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => match chars.next() {
                // Escaped ASCII punctuation is that character (`\<` and `\>`
                // are word boundaries in Rust's regex).
                Some(n) if n.is_ascii_punctuation() && n != '<' && n != '>' => Tok::Lit(n),
                _ => Tok::Other,
            },
            '^' => Tok::Begin,
            '$' => Tok::End,
            '|' => Tok::Alt,
            '.' => Tok::Dot,
            '*' => Tok::Star,
            '+' => Tok::Plus,
            '(' => {
                if chars.peek() == Some(&'?') {
                    chars.next();
                    if chars.next() == Some(':') {
                        Tok::Open
                    } else {
                        Tok::Other
                    }
                } else {
                    Tok::Open
                }
            }
            ')' => Tok::Close,
            '?' | '[' | ']' | '{' | '}' => Tok::Other,
            c => Tok::Lit(c),
        });
    }
    out
}

/// Classifies a regex (the text inside the anchoring, already known to
/// compile) as a literal alternation, `.*`, `.+`, or general.
///
/// Sound because the match is anchored at both ends: `^` at the start and `$`
/// at the end of the whole pattern or of a top-level branch always hold, and
/// one group around the whole pattern changes nothing.
fn classify(re: &str) -> Shape {
    fn trim_anchors(mut t: &[Tok]) -> &[Tok] {
        while let [Tok::Begin, rest @ ..] = t {
            t = rest;
        }
        while let [rest @ .., Tok::End] = t {
            t = rest;
        }
        t
    }
    let toks = tokenize(re);
    let mut toks = trim_anchors(&toks);
    if let [Tok::Open, inner @ .., Tok::Close] = toks {
        toks = trim_anchors(inner);
    }
    match toks {
        [Tok::Dot, Tok::Star] => return Shape::Any,
        [Tok::Dot, Tok::Plus] => return Shape::AnyNonEmpty,
        _ => {}
    }
    if !toks.contains(&Tok::Alt) {
        if let Some(g) = glob(toks) {
            return g;
        }
    }
    let mut literals = Vec::new();
    for branch in toks.split(|t| *t == Tok::Alt) {
        let mut s = String::new();
        for t in trim_anchors(branch) {
            match t {
                Tok::Lit(c) => s.push(*c),
                _ => return Shape::General,
            }
        }
        literals.push(s);
    }
    Shape::Literals(literals)
}

/// Literals joined by at least one `.*`, as a [`Glob`]; `None` for anything
/// else.
fn glob(toks: &[Tok]) -> Option<Shape> {
    let mut segments = vec![String::new()];
    let mut i = 0;
    while i < toks.len() {
        match (toks[i], toks.get(i + 1)) {
            (Tok::Lit(c), _) => {
                segments.last_mut()?.push(c);
                i += 1;
            }
            (Tok::Dot, Some(Tok::Star)) => {
                segments.push(String::new());
                i += 2;
            }
            _ => return None,
        }
    }
    if segments.len() < 2 {
        return None; // no `.*`: a plain literal
    }
    let suffix = segments.pop()?;
    let prefix = segments.remove(0);
    segments.retain(|s| !s.is_empty());
    Some(Shape::Glob(Glob {
        prefix,
        middle: segments,
        suffix,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    fn lits(v: &[&str]) -> Shape {
        Shape::Literals(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn classify_literal_alternations() {
        assert_eq!(classify("a|b|c"), lits(&["a", "b", "c"]));
        assert_eq!(classify("(a|b)"), lits(&["a", "b"]));
        assert_eq!(classify("(?:a|b)"), lits(&["a", "b"]));
        assert_eq!(classify("^(?:a|b)$"), lits(&["a", "b"]));
        assert_eq!(classify("^a$|^b$"), lits(&["a", "b"]));
        assert_eq!(classify("foo"), lits(&["foo"]));
        assert_eq!(classify(""), lits(&[""]));
        assert_eq!(classify("a|"), lits(&["a", ""]));
        assert_eq!(classify("c||d"), lits(&["c", "", "d"]));
        assert_eq!(classify(r"2|2\.5"), lits(&["2", "2.5"]));
        assert_eq!(classify(r"10\.0\.0\.1:80"), lits(&["10.0.0.1:80"]));
        assert_eq!(classify("prod-eu/ü"), lits(&["prod-eu/ü"]));
    }

    #[test]
    fn classify_any_and_general() {
        assert_eq!(classify(".*"), Shape::Any);
        assert_eq!(classify("^.*$"), Shape::Any);
        assert_eq!(classify("(.*)"), Shape::Any);
        assert_eq!(classify(".+"), Shape::AnyNonEmpty);
        assert_eq!(classify("(?:.+)"), Shape::AnyNonEmpty);
        let glob = |p: &str, m: &[&str], s: &str| {
            Shape::Glob(Glob {
                prefix: p.into(),
                middle: m.iter().map(|x| x.to_string()).collect(),
                suffix: s.into(),
            })
        };
        assert_eq!(classify("api-.*"), glob("api-", &[], ""));
        assert_eq!(classify("^.*-7f.*$"), glob("", &["-7f"], ""));
        assert_eq!(classify(r".*\.go"), glob("", &[], ".go"));
        assert_eq!(classify("(a.*b.*.*c.*d)"), glob("a", &["b", "c"], "d"));
        for re in [
            "a.b", ".*|a", "a|.*", "a?", "[ab]", r"\d", "(?i)a", "(a)|(b)", "(a|b)*", "a{2}",
            "a^b", "a$b", ".*?", "(?P<x>a)", r"\<a", "a)|(b", "((a))", "a.*|b", "a*", "a.+b",
            ".*.+",
        ] {
            assert_eq!(classify(re), Shape::General, "{re}");
        }
    }

    #[test]
    fn anchored_like_prometheus() {
        let r = m(MatchOp::Regex, "n", "1");
        assert!(r.matches("1"));
        assert!(!r.matches("11"));
        assert!(!r.matches("x1"));
        // `.` matches a newline ((?s)).
        let r = m(MatchOp::Regex, "i", "a.c");
        assert!(r.matches("a\nc"));
        assert!(m(MatchOp::Regex, "i", ".+").matches("\n"));
        assert!(m(MatchOp::Regex, "i", "^.*$").matches("a\nb"));
        // Anchors inside the regex are harmless.
        assert!(m(MatchOp::Regex, "n", "^1$").matches("1"));
        // Not a substring search.
        assert!(!m(MatchOp::Regex, "n", "b").matches("abc"));
        assert!(m(MatchOp::NotRegex, "n", "b").matches("abc"));
    }

    #[test]
    fn matches_empty_per_op() {
        assert!(m(MatchOp::Equal, "i", "").matches_empty());
        assert!(!m(MatchOp::Equal, "i", "a").matches_empty());
        assert!(m(MatchOp::NotEqual, "i", "a").matches_empty());
        assert!(!m(MatchOp::NotEqual, "i", "").matches_empty());
        assert!(m(MatchOp::Regex, "i", "a|").matches_empty());
        assert!(m(MatchOp::Regex, "i", ".*").matches_empty());
        assert!(!m(MatchOp::Regex, "i", ".+").matches_empty());
        assert!(m(MatchOp::Regex, "i", "a?").matches_empty());
        assert!(!m(MatchOp::NotRegex, "i", "a?").matches_empty());
        assert!(m(MatchOp::NotRegex, "i", "a.*").matches_empty());
        assert!(!m(MatchOp::NotRegex, "i", ".*").matches_empty());
    }

    #[test]
    fn set_matches() {
        assert_eq!(
            m(MatchOp::Equal, "a", "x").set_matches(),
            Some(&["x".to_string()][..])
        );
        let r = m(MatchOp::Regex, "a", "b|a|b");
        assert_eq!(
            r.set_matches(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        assert!(m(MatchOp::NotRegex, "a", "x|y").set_matches().is_some());
        assert_eq!(m(MatchOp::Regex, "a", "x.*").set_matches(), None);
        assert_eq!(m(MatchOp::Regex, "a", ".*").set_matches(), None);
    }

    #[test]
    fn glob_matching() {
        let r = m(MatchOp::Regex, "a", "a.*a");
        assert!(!r.matches("a"));
        assert!(r.matches("aa"));
        assert!(r.matches("a\nxa"));
        let r = m(MatchOp::Regex, "a", ".*ab.*ba.*");
        assert!(r.matches("xabbay"));
        assert!(r.matches("aba-ba"));
        assert!(!r.matches("aba"));
        let r = m(MatchOp::NotRegex, "a", "api-.*");
        assert!(!r.matches("api-1"));
        assert!(r.matches("web-1"));
        assert!(r.matches(""));
    }

    #[test]
    fn go_style_literal_braces() {
        let r = m(MatchOp::Regex, "a", "x{y}");
        assert!(r.matches("x{y}"));
        let r = m(MatchOp::Regex, "a", "x{2}{z");
        assert!(r.matches("xx{z"));
        assert!(m(MatchOp::Regex, "a", "a{1,}").matches("aaa"));
        assert!(m(MatchOp::Regex, "a", "a{1,2}").matches("aa"));
    }

    #[test]
    fn errors() {
        let e = Matcher::new(MatchOp::Regex, "a", "(").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidRegex { .. }), "{e}");
        assert!(e.to_string().contains("\"(\""), "{e}");
        let e = Matcher::new(MatchOp::Equal, "", "x").unwrap_err();
        assert!(matches!(e, SelectorError::EmptyLabelName { .. }), "{e}");
    }

    #[test]
    fn display() {
        assert_eq!(
            m(MatchOp::Equal, "job", "a\"b").to_string(),
            r#"job="a\"b""#
        );
        assert_eq!(m(MatchOp::NotEqual, "job", "x").to_string(), r#"job!="x""#);
        assert_eq!(
            m(MatchOp::Regex, "job", r"a\.b").to_string(),
            r#"job=~"a\\.b""#
        );
        assert_eq!(
            m(MatchOp::NotRegex, "job", "a\nb").to_string(),
            r#"job!~"a\nb""#
        );
        assert_eq!(
            m(MatchOp::Equal, "otel.scope.name", "x").to_string(),
            r#""otel.scope.name"="x""#
        );
    }

    fn arb_regex() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("ab".to_string()),
            Just("".to_string()),
            Just(".".to_string()),
            Just(".*".to_string()),
            Just(".+".to_string()),
            Just("a?".to_string()),
            Just("[ab]".to_string()),
            Just(r"\.".to_string()),
            Just("^".to_string()),
            Just("$".to_string()),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}{b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}|{b}")),
                inner.clone().prop_map(|a| format!("({a})")),
                inner.prop_map(|a| format!("(?:{a})")),
            ]
        })
    }

    proptest! {
        /// The classification shortcuts agree with the regex engine.
        #[test]
        fn shortcuts_agree_with_regex(re in arb_regex(), values in prop::collection::vec("[ab.\n]{0,5}", 1..12)) {
            let compiled = compile_anchored(&re).unwrap();
            let pos = m(MatchOp::Regex, "l", &re);
            let neg = m(MatchOp::NotRegex, "l", &re);
            for v in values.iter().map(String::as_str).chain(["", "a", "b", "ab", "."]) {
                prop_assert_eq!(pos.matches(v), compiled.is_match(v), "{:?} on {:?}", re, v);
                prop_assert_eq!(neg.matches(v), !compiled.is_match(v), "{:?} on {:?}", re, v);
            }
        }
    }
}
