//! Collapsed stacks.

use super::{is_diff, paths, Vals, NO_STACK};
use crate::model::Profile;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The profile as collapsed stacks, one line per distinct path, sorted:
///
/// ```text
/// root;child;leaf VALUE
/// ```
///
/// Frame names are sanitized (`;` becomes `:`, control characters such as CR
/// and LF become spaces, a blank name becomes `[unnamed]`; see
/// [`super::frame_names`] for naming); an empty stack is the line
/// `[no stack] VALUE`. Paths that become equal are merged. Values are summed
/// per path and may be 0 or negative; their sum is [`Profile::total`].
///
/// In a diff, each line has two columns, `stack BASE COMPARE`: the
/// differential folded format of `difffolded.pl` and inferno (base side
/// positive).
pub fn folded(p: &Profile) -> String {
    let diff = is_diff(p);
    let mut out = String::new();
    for (stack, v) in folded_stacks(p) {
        // Writing to a String cannot fail.
        let _ = if diff {
            writeln!(out, "{stack} {} {}", v.base, v.v)
        } else {
            writeln!(out, "{stack} {}", v.v)
        };
    }
    out
}

/// The folded stacks and their summed values, sorted.
pub(super) fn folded_stacks(p: &Profile) -> BTreeMap<String, Vals> {
    let mut stacks: BTreeMap<String, Vals> = BTreeMap::new();
    for (path, v) in paths(p) {
        let key = if path.is_empty() {
            NO_STACK.to_string()
        } else {
            let names: Vec<String> = path.iter().map(String::as_str).map(sanitize).collect();
            names.join(";")
        };
        stacks.entry(key).or_default().merge(v);
    }
    stacks
}

/// A frame name fit for a folded line.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if s.trim().is_empty() {
        "[unnamed]".to_string()
    } else {
        s
    }
}
