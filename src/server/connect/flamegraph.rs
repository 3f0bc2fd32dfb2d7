//! Pyroscope's flame graph messages (`querier.v1.FlameGraph` and
//! `FlameGraphDiff`) from query results.
//!
//! # The layout
//!
//! A flame graph is a table of `names` and one `Level` per depth (the root,
//! named `total`, alone on level 0). A level is a flat array of nodes, left
//! to right, each four numbers:
//!
//! ```text
//! [x gap, total, self, name index]
//! ```
//!
//! where `x` is the node's left edge in value units: a node's own `self`
//! comes first at its left edge, then its children one after the other in
//! name order (bytes), so a child's `x` is its parent's `x` plus the
//! parent's `self` plus its left siblings' totals. Each level stores `x` as
//! the gap since the end (`x + total`) of the node before it on the level
//! (the first node: since 0). A diff node is seven numbers,
//! `[x gap, total, self]` of the left side, the same of the right side,
//! then the name index; each side's `x` is laid out and gap-encoded on its
//! own.
//!
//! `max_nodes` (when at least 1 and smaller than the number of nodes
//! below the root) keeps the nodes whose total is at least the
//! `max_nodes`-th largest total (in a diff: the larger of the two sides'
//! totals, root included); the others of each parent are summed into one
//! leaf named `other` placed after its kept siblings. `max_self` is the
//! largest `self` of the nodes written. This is Grafana Pyroscope's format
//! as its data source and UI read it.
//!
//! # profstore's choices
//!
//! Frames are named as every other output names them
//! ([`render::frame_names`]): inlined functions are their own nodes and
//! pprof labels are ignored. Samples without a stack add their value to the
//! root's `self`, so the root's total is the profile's total (Pyroscope has
//! no such samples). Sums wrap, as profile totals do. A diff refuses
//! negative values, as upstream's does.

use crate::model::{Profile, Sample};
use crate::proto::pyroscope::querier::v1::{FlameGraph, FlameGraphDiff, Level};
use crate::render;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// The name of the root node.
const ROOT: &str = "total";
/// The name of a node that sums the children below the `max_nodes` cut.
const OTHER: &str = "other";

/// A call tree of one or two sides (`v[0]` left/only, `v[1]` right).
#[derive(Default)]
struct Node {
    self_: [i64; 2],
    total: [i64; 2],
    children: BTreeMap<String, Node>,
}

/// A sample's path, root first.
fn path(s: &Sample) -> impl Iterator<Item = String> + '_ {
    s.stack
        .frames
        .iter()
        .rev()
        .flat_map(|f| render::frame_names(f))
}

impl Node {
    fn add(&mut self, p: &Profile, side: usize) {
        for s in &p.samples {
            let v = s.value;
            let mut node = &mut *self;
            node.total[side] = node.total[side].wrapping_add(v);
            for name in path(s) {
                node = node.children.entry(name).or_default();
                node.total[side] = node.total[side].wrapping_add(v);
            }
            node.self_[side] = node.self_[side].wrapping_add(v);
        }
    }

    /// Visits every node below `self` (not `self`), depth first.
    fn for_each_below(&self, mut f: impl FnMut(&Node)) {
        let mut stack: Vec<&Node> = self.children.values().collect();
        while let Some(n) = stack.pop() {
            f(n);
            stack.extend(n.children.values());
        }
    }
}

/// The `k`-th largest of `values` (`k` ≥ 1, at most `values.len()`).
fn kth_largest(mut values: Vec<i64>, k: usize) -> i64 {
    let i = k - 1;
    let (_, v, _) = values.select_nth_unstable_by(i, |a, b| b.cmp(a));
    *v
}

/// The smallest total a node must have to be kept, over the node values
/// `values` (one per node the cut applies to); 0 keeps everything.
fn min_value(values: Vec<i64>, max_nodes: i64) -> i64 {
    if max_nodes < 1 || values.len() as u64 <= max_nodes as u64 {
        return 0;
    }
    // max_nodes < values.len() here, so it fits a usize.
    kth_largest(values, max_nodes as usize)
}

/// Interns names; index 0 is the root's `total`.
struct Names {
    names: Vec<String>,
    index: FxHashMap<String, i64>,
}

impl Names {
    fn new() -> Names {
        let mut n = Names {
            names: Vec::new(),
            index: FxHashMap::default(),
        };
        n.get(ROOT);
        n
    }

    fn get(&mut self, name: &str) -> i64 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as i64;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }
}

/// One node to write: a tree node or a synthetic `other` leaf.
struct Item<'a> {
    name: &'a str,
    self_: [i64; 2],
    total: [i64; 2],
    children: Option<&'a BTreeMap<String, Node>>,
    level: usize,
    x: [i64; 2],
}

fn add(a: [i64; 2], b: [i64; 2]) -> [i64; 2] {
    [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])]
}

/// Walks the tree under the `max_nodes` cut left to right (pre-order, so
/// each level is filled left to right) and calls `emit` per written node.
/// `keep(total)` says whether a child is kept.
fn walk<'a>(root: &'a Node, keep: impl Fn(&[i64; 2]) -> bool, mut emit: impl FnMut(&Item<'a>)) {
    let mut stack = vec![Item {
        name: ROOT,
        self_: root.self_,
        total: root.total,
        children: Some(&root.children),
        level: 0,
        x: [0, 0],
    }];
    while let Some(it) = stack.pop() {
        emit(&it);
        let Some(children) = it.children else {
            continue;
        };
        let mut x = add(it.x, it.self_);
        let mut next = Vec::with_capacity(children.len() + 1);
        let mut other = [0i64; 2];
        for (name, c) in children {
            if name != OTHER && keep(&c.total) {
                next.push(Item {
                    name,
                    self_: c.self_,
                    total: c.total,
                    children: Some(&c.children),
                    level: it.level + 1,
                    x,
                });
                x = add(x, c.total);
            } else {
                other = add(other, c.total);
            }
        }
        if other != [0, 0] {
            next.push(Item {
                name: OTHER,
                self_: other,
                total: other,
                children: None,
                level: it.level + 1,
                x,
            });
        }
        // Popped leftmost first.
        stack.extend(next.into_iter().rev());
    }
}

/// Turns each level's absolute `x` at `offset` (in items of `width`
/// numbers, the total right after it) into gaps.
fn gap_encode(levels: &mut [Vec<i64>], offset: usize, width: usize) {
    for l in levels {
        let mut end = 0i64;
        for item in l.chunks_exact_mut(width) {
            let x = item[offset];
            item[offset] = x.wrapping_sub(end);
            end = x.wrapping_add(item[offset + 1]);
        }
    }
}

fn level_of(levels: &mut Vec<Vec<i64>>, level: usize) -> &mut Vec<i64> {
    if levels.len() <= level {
        levels.resize_with(level + 1, Vec::new);
    }
    &mut levels[level]
}

/// The flame graph of `p` (an empty one for `None`), cut to `max_nodes`
/// (see the [module docs](self)).
pub fn flamegraph(p: Option<&Profile>, max_nodes: i64) -> FlameGraph {
    let mut root = Node::default();
    if let Some(p) = p {
        root.add(p, 0);
    }
    let mut totals = Vec::new();
    root.for_each_below(|n| totals.push(n.total[0]));
    let min = min_value(totals, max_nodes);
    let mut names = Names::new();
    let mut levels: Vec<Vec<i64>> = Vec::new();
    let mut max_self = 0i64;
    walk(
        &root,
        |t| t[0] >= min,
        |it| {
            max_self = max_self.max(it.self_[0]);
            let i = names.get(it.name);
            level_of(&mut levels, it.level).extend([it.x[0], it.total[0], it.self_[0], i]);
        },
    );
    gap_encode(&mut levels, 0, 4);
    FlameGraph {
        names: names.names,
        levels: levels.into_iter().map(|values| Level { values }).collect(),
        total: root.total[0],
        max_self,
    }
}

/// Why a diff flame graph cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("the {0} profile has negative values; a diff flame graph needs non-negative ones")]
pub struct NegativeValues(&'static str);

/// The diff flame graph of `left` against `right` (`None`: an empty side),
/// cut to `max_nodes` (see the [module docs](self)).
pub fn flamegraph_diff(
    left: Option<&Profile>,
    right: Option<&Profile>,
    max_nodes: i64,
) -> Result<FlameGraphDiff, NegativeValues> {
    let mut root = Node::default();
    for (side, p) in [left, right].into_iter().enumerate() {
        if let Some(p) = p {
            root.add(p, side);
        }
    }
    let mut negative = [root.self_[0] < 0, root.self_[1] < 0];
    let mut maxes = vec![root.total[0].max(root.total[1])];
    root.for_each_below(|n| {
        negative[0] |= n.self_[0] < 0;
        negative[1] |= n.self_[1] < 0;
        maxes.push(n.total[0].max(n.total[1]));
    });
    if negative[0] {
        return Err(NegativeValues("left"));
    }
    if negative[1] {
        return Err(NegativeValues("right"));
    }
    let min = min_value(maxes, max_nodes);
    let mut names = Names::new();
    let mut levels: Vec<Vec<i64>> = Vec::new();
    let mut max_self = 0i64;
    walk(
        &root,
        |t| t[0] >= min || t[1] >= min,
        |it| {
            max_self = max_self.max(it.self_[0]).max(it.self_[1]);
            let i = names.get(it.name);
            level_of(&mut levels, it.level).extend([
                it.x[0],
                it.total[0],
                it.self_[0],
                it.x[1],
                it.total[1],
                it.self_[1],
                i,
            ]);
        },
    );
    gap_encode(&mut levels, 0, 7);
    gap_encode(&mut levels, 3, 7);
    Ok(FlameGraphDiff {
        names: names.names,
        levels: levels.into_iter().map(|values| Level { values }).collect(),
        total: root.total[0].wrapping_add(root.total[1]),
        max_self,
        left_ticks: root.total[0],
        right_ticks: root.total[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Frame, FrameLine, Function, ProfileType, Stack};
    use std::sync::Arc;

    fn frame(name: &str) -> Arc<Frame> {
        let f = Function {
            name: name.to_string(),
            ..Default::default()
        };
        Arc::new(Frame {
            id: uuid::Uuid::nil(),
            address: 0,
            is_folded: false,
            mapping: None,
            lines: vec![FrameLine {
                function_id: uuid::Uuid::nil(),
                function: Arc::new(f),
                line: 0,
                column: 0,
            }],
        })
    }

    /// A profile of `(root-first path, value)` samples.
    fn profile(samples: &[(&[&str], i64)]) -> Profile {
        Profile {
            profile_type: ProfileType::parse("cpu:cpu:ns:cpu:ns").unwrap(),
            time_ms: 0,
            duration_ns: 0,
            period: 0,
            samples: samples
                .iter()
                .map(|(path, value)| Sample {
                    stack: Arc::new(Stack {
                        frames: path.iter().rev().map(|n| frame(n)).collect(),
                        num_labels: vec![],
                    }),
                    labels: vec![],
                    value: *value,
                })
                .collect(),
        }
    }

    /// Decodes levels back into `(level, absolute x, total, self, name)`.
    fn decode(fg: &FlameGraph) -> Vec<(usize, i64, i64, i64, String)> {
        let mut out = Vec::new();
        for (d, l) in fg.levels.iter().enumerate() {
            let mut end = 0;
            for v in l.values.chunks(4) {
                let x = end + v[0];
                end = x + v[1];
                out.push((d, x, v[1], v[2], fg.names[v[3] as usize].clone()));
            }
        }
        out
    }

    #[test]
    fn levels_are_laid_out_as_pyroscope_reads_them() {
        let p = profile(&[
            (&["main", "b"], 3),
            (&["main", "a"], 2),
            (&["main"], 1),
            (&[], 4),
        ]);
        let fg = flamegraph(Some(&p), 0);
        assert_eq!(fg.names, ["total", "main", "a", "b"]);
        assert_eq!(fg.total, 10);
        assert_eq!(fg.max_self, 4);
        // Root: self 4 first, then main at 4; main's self 1, then a, b.
        assert_eq!(
            fg.levels
                .iter()
                .map(|l| l.values.clone())
                .collect::<Vec<_>>(),
            vec![
                vec![0, 10, 4, 0],
                vec![4, 6, 1, 1],
                vec![5, 2, 2, 2, 0, 3, 3, 3]
            ]
        );
        assert_eq!(
            decode(&fg),
            vec![
                (0, 0, 10, 4, "total".into()),
                (1, 4, 6, 1, "main".into()),
                (2, 5, 2, 2, "a".into()),
                (2, 7, 3, 3, "b".into()),
            ]
        );
    }

    #[test]
    fn gaps_count_from_the_previous_node_of_the_level() {
        let p = profile(&[(&["a", "x"], 1), (&["a"], 5), (&["b", "y"], 2)]);
        let d = decode(&flamegraph(Some(&p), 0));
        // b starts after a (6); y under b at 6, x under a at 5 (after a's self).
        assert!(d.contains(&(2, 5, 1, 1, "x".into())), "{d:?}");
        assert!(d.contains(&(2, 6, 2, 2, "y".into())), "{d:?}");
    }

    #[test]
    fn max_nodes_folds_small_children_into_other() {
        let p = profile(&[
            (&["main", "big"], 100),
            (&["main", "small1"], 1),
            (&["main", "small2"], 2),
            (&["main", "big", "leaf"], 50),
        ]);
        // Nodes below the root: main 153, big 150, leaf 50, small2 2, small1 1.
        let fg = flamegraph(Some(&p), 3);
        let d = decode(&fg);
        assert_eq!(fg.total, 153);
        assert_eq!(
            d,
            vec![
                (0, 0, 153, 0, "total".into()),
                (1, 0, 153, 0, "main".into()),
                (2, 0, 150, 100, "big".into()),
                (2, 150, 3, 3, "other".into()),
                (3, 100, 50, 50, "leaf".into()),
            ]
        );
        assert_eq!(fg.max_self, 100);
        // No cut when max_nodes covers the tree, or is 0 or negative.
        for n in [5, 0, -1] {
            assert_eq!(decode(&flamegraph(Some(&p), n)).len(), 6, "{n}");
        }
    }

    #[test]
    fn an_empty_profile_is_a_lone_root() {
        let fg = flamegraph(None, 10);
        assert_eq!(fg.names, ["total"]);
        assert_eq!(fg.levels.len(), 1);
        assert_eq!(fg.levels[0].values, vec![0, 0, 0, 0]);
        assert_eq!(fg.total, 0);
    }

    #[test]
    fn diff_aligns_both_sides() {
        let l = profile(&[(&["main", "a"], 3), (&["main", "b"], 1)]);
        let r = profile(&[(&["main", "b"], 5), (&["main", "c"], 2)]);
        let fg = flamegraph_diff(Some(&l), Some(&r), 0).unwrap();
        assert_eq!((fg.left_ticks, fg.right_ticks, fg.total), (4, 7, 11));
        assert_eq!(fg.max_self, 5);
        assert_eq!(fg.names, ["total", "main", "a", "b", "c"]);
        assert_eq!(fg.levels[0].values, vec![0, 4, 0, 0, 7, 0, 0]);
        assert_eq!(fg.levels[1].values, vec![0, 4, 0, 0, 7, 0, 1]);
        assert_eq!(
            fg.levels[2].values,
            vec![0, 3, 3, 0, 0, 0, 2, 0, 1, 1, 0, 5, 5, 3, 0, 0, 0, 0, 2, 2, 4]
        );
        let neg = profile(&[(&["a"], -1)]);
        assert!(flamegraph_diff(Some(&neg), None, 0).is_err());
        assert!(flamegraph_diff(None, Some(&neg), 0).is_err());
    }
}
