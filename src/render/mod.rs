//! Rendering a query result ([`Profile`]) into the daemon's output formats.
//!
//! Every format walks the same paths: a sample's stack read root → leaf, where
//! each line of a frame is its own node (inlined functions expand, outermost
//! first). [`frame_names`] names the nodes, so all formats agree:
//! `function.name`, else `function.system_name`, else (a frame without lines,
//! or a line whose function has no name) the address as `0x{:x}`, followed by
//! ` (<mapping file basename>)` when the frame has a mapping. Names are never
//! empty. pprof labels are ignored: samples with the same path are merged.
//!
//! Formats:
//!
//! - [`flamegraph`]: a JSON call tree (see there for the shape). Invariant:
//!   the root's `total` is the sum of all sample values; a node's `total` is
//!   its `self` plus its children's totals.
//! - [`top`]: a JSON table of functions with flat and cumulative values.
//! - [`folded`]: collapsed stacks (`root;child;leaf VALUE`), as read by
//!   `flamegraph.pl` and inferno. The values sum to [`Profile::total`].
//! - [`svg`]: an interactive flame graph drawn by inferno.
//!
//! Empty stacks (a sample without frames) add their value to the root only:
//! the root's `self` in [`flamegraph`], `total` in [`top`], and a line with
//! the single frame [`NO_STACK`] in [`folded`] and [`svg`].
//!
//! Diffs: a profile holding any sample labelled
//! [`DIFF_BASE_LABEL`](crate::model::DIFF_BASE_LABEL) is a diff
//! ([`is_diff`]; see [`crate::query`] for the convention). Every format then
//! shows both sides: the compared side as usual and the base side made
//! positive again (`base_*` fields in JSON, the `BASE COMPARE` columns of the
//! differential folded format, a differential flame graph in SVG).
//!
//! Arithmetic wraps, as in [`Profile::total`], so no input panics.

mod flamegraph;
mod folded;
mod svg;
#[cfg(test)]
mod tests;
mod top;

pub use flamegraph::{flamegraph, OTHER};
pub use folded::folded;
pub use svg::svg;
pub use top::top;

use crate::model::{Frame, Profile, Sample, DIFF_BASE_LABEL};

/// The single frame name that [`folded`] and [`svg`] give empty stacks.
pub const NO_STACK: &str = "[no stack]";

/// Why a profile could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// inferno failed to draw the flame graph.
    #[error("flame graph: {0}")]
    FlameGraph(#[from] std::io::Error),
}

/// True if `p` is a diff: any of its samples carries the base label.
pub fn is_diff(p: &Profile) -> bool {
    p.samples.iter().any(is_base)
}

/// True if `s` belongs to the base side of a diff.
fn is_base(s: &Sample) -> bool {
    s.labels.iter().any(|(k, _)| k == DIFF_BASE_LABEL)
}

/// The node names of one frame, outermost (caller) first.
pub fn frame_names(f: &Frame) -> impl Iterator<Item = String> + '_ {
    let addr = || {
        let mut s = format!("0x{:x}", f.address);
        if let Some((_, m)) = &f.mapping {
            let base = m.filename.rsplit(['/', '\\']).next().unwrap_or_default();
            if !base.is_empty() {
                s.push_str(&format!(" ({base})"));
            }
        }
        s
    };
    let lines = f.lines.iter().rev().map(move |l| {
        let func = &l.function;
        if !func.name.is_empty() {
            func.name.clone()
        } else if !func.system_name.is_empty() {
            func.system_name.clone()
        } else {
            addr()
        }
    });
    let bare = f.lines.is_empty().then(addr);
    bare.into_iter().chain(lines)
}

/// A sample's path, root first, leaf last; empty for an empty stack.
fn path(s: &Sample) -> Vec<String> {
    s.stack
        .frames
        .iter()
        .rev()
        .flat_map(|f| frame_names(f))
        .collect()
}

/// A value on both sides of a (possible) diff: `v` is the compared side (or
/// the whole profile), `base` the base side made positive again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Vals {
    v: i64,
    base: i64,
}

impl Vals {
    /// The value of one sample.
    fn of(s: &Sample) -> Vals {
        if is_base(s) {
            Vals {
                v: 0,
                base: s.value.wrapping_neg(),
            }
        } else {
            Vals {
                v: s.value,
                base: 0,
            }
        }
    }

    fn merge(&mut self, o: Vals) {
        self.v = self.v.wrapping_add(o.v);
        self.base = self.base.wrapping_add(o.base);
    }
}

/// Each sample as (path, value), the input of every format.
fn paths(p: &Profile) -> impl Iterator<Item = (Vec<String>, Vals)> + '_ {
    p.samples.iter().map(|s| (path(s), Vals::of(s)))
}
