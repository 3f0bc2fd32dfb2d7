//! The JSON call tree.

use super::{is_diff, paths, Vals};
use crate::model::Profile;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Default)]
struct Node {
    self_: Vals,
    total: Vals,
    children: BTreeMap<String, Node>,
}

/// The profile as a call tree:
///
/// ```text
/// {"profile_type": "<id>", "unit": "<sample unit>", "diff": bool,
///  "root": NODE}
/// NODE = {"name": str, "self": i64, "total": i64, "children": [NODE…]}
/// ```
///
/// The root is named `total`; children are sorted by name, identical root →
/// leaf paths are merged. `self` is the value of the samples whose path ends
/// at the node, `total` that of the samples whose path passes through it. In
/// a diff, every node also has `base_self` and `base_total` (the base side,
/// positive), while `self` and `total` are the compared side's.
pub fn flamegraph(p: &Profile) -> Value {
    let diff = is_diff(p);
    let mut root = Node::default();
    for (path, v) in paths(p) {
        let mut node = &mut root;
        node.total.merge(v);
        for name in path {
            node = node.children.entry(name).or_default();
            node.total.merge(v);
        }
        node.self_.merge(v);
    }
    json!({
        "profile_type": p.profile_type.to_string(),
        "unit": p.profile_type.sample_unit,
        "diff": diff,
        "root": to_json("total", &root, diff),
    })
}

/// Recursion depth is the stack depth, which decoding bounds.
fn to_json(name: &str, n: &Node, diff: bool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), name.into());
    m.insert("self".into(), n.self_.v.into());
    m.insert("total".into(), n.total.v.into());
    if diff {
        m.insert("base_self".into(), n.self_.base.into());
        m.insert("base_total".into(), n.total.base.into());
    }
    let children = n.children.iter().map(|(k, c)| to_json(k, c, diff));
    m.insert("children".into(), Value::Array(children.collect()));
    Value::Object(m)
}
