//! The JSON call tree, optionally trimmed to a node budget.

use super::{is_diff, paths, Vals};
use crate::model::Profile;
use rustc_hash::FxHashMap;
use serde_json::{json, Map, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The name of the node that stands for the children a trimmed tree left
/// out (one per parent; it has no children).
pub const OTHER: &str = "other";

/// One node of the tree, in an arena: its children are indexes.
#[derive(Default)]
struct Node {
    name: String,
    self_: Vals,
    total: Vals,
    children: Vec<usize>,
}

/// The call tree of `p` in an arena; node 0 is the root.
fn build(p: &Profile) -> Vec<Node> {
    let mut nodes = vec![Node {
        name: "total".into(),
        ..Node::default()
    }];
    let mut index: FxHashMap<(usize, String), usize> = FxHashMap::default();
    for (path, v) in paths(p) {
        let mut at = 0;
        nodes[0].total.merge(v);
        for name in path {
            at = match index.get(&(at, name.clone())) {
                Some(&c) => c,
                None => {
                    let c = nodes.len();
                    nodes.push(Node {
                        name: name.clone(),
                        ..Node::default()
                    });
                    nodes[at].children.push(c);
                    index.insert((at, name), c);
                    c
                }
            };
            nodes[at].total.merge(v);
        }
        nodes[at].self_.merge(v);
    }
    for i in 0..nodes.len() {
        let mut kids = std::mem::take(&mut nodes[i].children);
        kids.sort_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name));
        nodes[i].children = kids;
    }
    nodes
}

/// The weight a node is kept by: both sides of a diff, as magnitudes.
fn weight(n: &Node) -> u64 {
    n.total
        .v
        .unsigned_abs()
        .saturating_add(n.total.base.unsigned_abs())
}

/// Which nodes a tree trimmed to `max_nodes` keeps: the heaviest first (a
/// child never outweighs its parent when values are non-negative, so this
/// is a walk from the root that always takes the heaviest node in reach),
/// while the kept nodes plus one [`OTHER`] node per kept parent with
/// children left out fit the budget. `None` when the whole tree fits.
fn keep(nodes: &[Node], max_nodes: usize) -> Option<Vec<bool>> {
    if nodes.len() <= max_nodes {
        return None;
    }
    let mut kept = vec![false; nodes.len()];
    // Kept children per node, to know whether a kept node still needs an
    // `other` node.
    let mut kept_kids = vec![0usize; nodes.len()];
    let mut parent = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for &c in &n.children {
            parent[c] = i;
        }
    }
    let needs_other = |i: usize, kept_kids: &[usize]| nodes[i].children.len() > kept_kids[i];
    kept[0] = true;
    let mut count = 1;
    let mut others = usize::from(needs_other(0, &kept_kids));
    let mut heap: BinaryHeap<(u64, Reverse<usize>)> = nodes[0]
        .children
        .iter()
        .map(|&c| (weight(&nodes[c]), Reverse(c)))
        .collect();
    while let Some((_, Reverse(c))) = heap.pop() {
        let p = parent[c];
        let p_before = usize::from(needs_other(p, &kept_kids));
        kept_kids[p] += 1;
        let p_after = usize::from(needs_other(p, &kept_kids));
        let c_other = usize::from(!nodes[c].children.is_empty());
        let next_others = others - p_before + p_after + c_other;
        if count + 1 + next_others > max_nodes {
            kept_kids[p] -= 1;
            break;
        }
        kept[c] = true;
        count += 1;
        others = next_others;
        heap.extend(
            nodes[c]
                .children
                .iter()
                .map(|&k| (weight(&nodes[k]), Reverse(k))),
        );
    }
    Some(kept)
}

/// The profile as a call tree:
///
/// ```text
/// {"profile_type": "<id>", "unit": "<sample unit>", "diff": bool,
///  "trimmed": bool, "nodes": n, "root": NODE}
/// NODE = {"name": str, "self": i64, "total": i64, "children": [NODE…]}
/// ```
///
/// The root is named `total`; children are sorted by name, identical root →
/// leaf paths are merged. `self` is the value of the samples whose path ends
/// at the node, `total` that of the samples whose path passes through it. In
/// a diff, every node also has `base_self` and `base_total` (the base side,
/// positive), while `self` and `total` are the compared side's.
///
/// With more than `max_nodes` nodes the tree is trimmed: the heaviest nodes
/// are kept and the children a kept node loses are folded into one last
/// child named [`OTHER`] with `"other": true`, no children, and `self` =
/// `total` = their sum, so every total is still the sum of what it holds.
/// `trimmed` says so and `nodes` counts the nodes sent: at most
/// `max_nodes`, but never fewer than the root and its `other` node.
pub fn flamegraph(p: &Profile, max_nodes: usize) -> Value {
    let diff = is_diff(p);
    let nodes = build(p);
    let kept = keep(&nodes, max_nodes);
    let mut count = 0;
    let root = to_json(&nodes, 0, kept.as_deref(), diff, &mut count);
    json!({
        "profile_type": p.profile_type.to_string(),
        "unit": p.profile_type.sample_unit,
        "diff": diff,
        "trimmed": kept.is_some(),
        "nodes": count,
        "root": root,
    })
}

fn node_json(name: &str, self_: Vals, total: Vals, diff: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    m.insert("self".into(), self_.v.into());
    m.insert("total".into(), total.v.into());
    if diff {
        m.insert("base_self".into(), self_.base.into());
        m.insert("base_total".into(), total.base.into());
    }
    m
}

/// Recursion depth is the stack depth, which decoding bounds.
fn to_json(
    nodes: &[Node],
    i: usize,
    kept: Option<&[bool]>,
    diff: bool,
    count: &mut usize,
) -> Value {
    let n = &nodes[i];
    *count += 1;
    let mut m = node_json(&n.name, n.self_, n.total, diff);
    let mut children = Vec::with_capacity(n.children.len());
    let mut other = Vals::default();
    let mut folded = 0usize;
    for &c in &n.children {
        if kept.is_none_or(|k| k[c]) {
            children.push(to_json(nodes, c, kept, diff, count));
        } else {
            other.merge(nodes[c].total);
            folded += 1;
        }
    }
    if folded > 0 {
        *count += 1;
        let mut o = node_json(OTHER, other, other, diff);
        o.insert("other".into(), true.into());
        o.insert("children".into(), Value::Array(Vec::new()));
        children.push(Value::Object(o));
    }
    m.insert("children".into(), Value::Array(children));
    Value::Object(m)
}
