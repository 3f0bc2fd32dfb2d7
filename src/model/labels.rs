//! Label sets: the identity of a series.
//!
//! A [`Labels`] value is a set of (name, value) pairs kept sorted by name, with
//! unique names and no empty values (Prometheus semantics: a label with an
//! empty value is the same as no label). The profile type is the reserved
//! label `__name__` (see [`crate::model::profile_type`]).
//!
//! Reserved names: every name that starts with `__` belongs to profstore
//! (`__name__` today); writers may not set them, except through the profile
//! type.

use std::fmt;
use std::sync::Arc;

/// The reserved label that holds the profile type of a series.
pub const METRIC_NAME: &str = "__name__";

/// One label: a name and a non-empty value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The label name.
    pub name: String,
    /// The label value (never empty inside a [`Labels`]).
    pub value: String,
}

/// A sorted set of labels with unique names.
///
/// The pairs are shared: a clone is a reference count, and a change
/// ([`Labels::set`], [`Labels::remove`]) copies them first when another
/// clone holds them (copy on write). Queries hand out a label set per
/// series they answer; under churn that is tens of thousands of clones,
/// which copying would turn into a dozen allocations each.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<Vec<Label>>);

impl Labels {
    /// The empty label set.
    pub fn new() -> Self {
        Labels::default()
    }

    /// Builds a label set from pairs. Later pairs win over earlier ones with
    /// the same name; pairs with an empty value are dropped.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut l = Labels::new();
        for (n, v) in pairs {
            l.set(n.into(), v.into());
        }
        l
    }

    /// Sets `name` to `value` (removing it when `value` is empty).
    pub fn set(&mut self, name: String, value: String) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                Arc::make_mut(&mut self.0).remove(i);
            }
            Ok(i) if self.0[i].value == value => {}
            Ok(i) => Arc::make_mut(&mut self.0)[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => Arc::make_mut(&mut self.0).insert(i, Label { name, value }),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self
            .0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()?;
        Some(Arc::make_mut(&mut self.0).remove(i).value)
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A stable 64-bit hash of the label set (FNV-1a over names and values),
    /// used to stripe the series map.
    pub fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for l in self.0.iter() {
            for b in l
                .name
                .bytes()
                .chain([0xff])
                .chain(l.value.bytes())
                .chain([0xfe])
            {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// True when `name` is a valid Prometheus label name in the classic character
/// set `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Writes `s` as a PromQL double-quoted string that parses back to `s`.
pub(crate) fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Labels {
    /// Formats as a Prometheus label set, `{a="1", b="2"}`; names outside the
    /// classic character set are quoted (Prometheus 3 syntax).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_legacy_label_name(&l.name) {
                f.write_str(&l.name)?;
            } else {
                write_quoted(f, &l.name)?;
            }
            f.write_str("=")?;
            write_quoted(f, &l.value)?;
        }
        f.write_str("}")
    }
}

/// The names of pprof string labels that are kept with each sample instead
/// of in the series' label set (see [`crate::ingest`]): a fresh value per
/// request (a span, a trace) would otherwise make a series per request.
pub const DEFAULT_SAMPLE_LABELS: [&str; 3] = ["span_id", "trace_id", "profile_id"];

/// The sample labels of one sample: (name, value) pairs sorted by name,
/// each name once, no empty value.
pub type SampleLabels = Vec<(String, String)>;

/// The value of `name` in `tags` ("" when absent, as for a series label).
pub fn sample_label<'a>(tags: &'a [(String, String)], name: &str) -> &'a str {
    tags.iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_sorted_unique_and_drops_empty() {
        let mut l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("b"), Some("3"));
        l.set("a".into(), String::new());
        assert_eq!(l.get("a"), None);
        assert_eq!(l.to_string(), "{b=\"3\"}");
    }

    #[test]
    fn display_quotes_utf8_names() {
        let l = Labels::from_pairs([("otel.scope.name", "x\"y")]);
        assert_eq!(l.to_string(), "{\"otel.scope.name\"=\"x\\\"y\"}");
    }
}
