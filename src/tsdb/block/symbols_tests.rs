//! The symbols section's two forms: each reads back exactly what was
//! written, the tree form is the smaller one and bounded, and a damaged
//! table is refused with an error.

use super::symbols::{encode, encode_flat, BlockSymbols, MAX_EXPANSION};
use crate::model::{
    Function, Line, Location, Mapping, NumLabel, StackId, Stacktrace, SymbolSource,
};
use crate::proto::block as pb;
use crate::tsdb::meta::MetaStore;
use prost::Message;

/// A store with stacks that share callers, as a real profile's do: every
/// stack extends a random earlier one by 1–4 frames. Locations with and
/// without a mapping, with inlined lines, folded; the empty stack; two
/// stacks on one path told apart by a numeric label.
fn store() -> (MetaStore, Vec<StackId>) {
    let m = MetaStore::temporary().unwrap();
    let maps = m
        .mapping_ids(vec![
            Mapping {
                memory_start: 0x400000,
                memory_limit: 0x800000,
                filename: "/bin/server".into(),
                build_id: "abc123".into(),
                has_functions: true,
                ..Default::default()
            },
            Mapping {
                memory_start: 0x7f0000000000,
                memory_limit: 0x7f0000100000,
                filename: "libc.so.6".into(),
                ..Default::default()
            },
        ])
        .unwrap();
    let funcs = m
        .function_ids(
            (0..60)
                .map(|i| Function {
                    name: format!("pkg{}.f{i}", i % 7),
                    filename: format!("pkg{}/f.go", i % 7),
                    start_line: i,
                    ..Default::default()
                })
                .collect(),
        )
        .unwrap();
    let mut seed: u64 = 11;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let locs = m
        .location_ids(
            (0..200u64)
                .map(|i| {
                    let r = rnd();
                    let line = |k: u64| Line {
                        function: funcs[((i + k) % 60) as usize],
                        line: (r % 500) as i64 + k as i64,
                        column: (k % 2) as i64,
                    };
                    Location {
                        mapping: (i % 5 != 0).then(|| maps[(i % 2) as usize]),
                        address: if i % 5 == 0 {
                            0
                        } else {
                            0x400000 + (r % 0x10000)
                        },
                        is_folded: i % 17 == 0,
                        lines: (0..1 + (i % 3 == 0) as u64).map(line).collect(),
                    }
                })
                .collect(),
        )
        .unwrap();
    let mut paths: Vec<Vec<usize>> = vec![Vec::new()];
    for _ in 0..400 {
        let base = paths[(rnd() % paths.len() as u64) as usize].clone();
        let mut p = base;
        for _ in 0..1 + rnd() % 4 {
            p.push((rnd() % 200) as usize);
        }
        paths.push(p);
    }
    // Leaf first, as stacks are stored; no two alike.
    let mut stacks: Vec<Stacktrace> = Vec::new();
    for p in &paths {
        let s = Stacktrace {
            locations: p.iter().rev().map(|i| locs[*i]).collect(),
            num_labels: Vec::new(),
        };
        if !stacks.contains(&s) {
            stacks.push(s);
        }
    }
    let mut labelled = stacks[5].clone();
    labelled.num_labels.push(NumLabel {
        key: "bytes".into(),
        value: 4096,
        unit: "bytes".into(),
    });
    stacks.push(labelled);
    let ids = m.stack_ids(stacks).unwrap();
    (m, ids)
}

/// Every stack of `got` in `ids`' order, each as `source` has it (so with
/// the same locations, functions and mappings, which the ids name).
fn assert_same(got: &BlockSymbols, ids: &[StackId], source: &dyn SymbolSource) {
    assert_eq!(got.stack_ids().collect::<Vec<_>>(), ids);
    for id in ids {
        let s = got.stack(*id).unwrap().unwrap();
        assert_eq!(*s, *source.stack(*id).unwrap().unwrap());
        for l in &s.locations {
            let loc = got.location(*l).unwrap().unwrap();
            assert_eq!(*loc, *source.location(*l).unwrap().unwrap());
            for line in &loc.lines {
                let f = got.function(line.function).unwrap().unwrap();
                assert_eq!(*f, *source.function(line.function).unwrap().unwrap());
            }
            if let Some(m) = loc.mapping {
                assert_eq!(
                    *got.mapping(m).unwrap().unwrap(),
                    *source.mapping(m).unwrap().unwrap()
                );
            }
        }
    }
}

#[test]
fn both_forms_read_back_every_stack_and_the_tree_is_smaller() {
    let (m, ids) = store();
    let tree = encode(&m, &ids).unwrap();
    let flat = encode_flat(&m, &ids).unwrap();
    let t = pb::Symbols::decode(&tree[..]).unwrap();
    assert!(t.stack_table.is_some() && t.location_table.is_some());
    assert!(t.stacks.is_empty() && t.locations.is_empty());
    let f = pb::Symbols::decode(&flat[..]).unwrap();
    assert!(f.stack_table.is_none() && f.stacks.len() == ids.len());
    // The tree's nodes: fewer than the frames the stacks list.
    let st = t.stack_table.as_ref().unwrap();
    let frames: usize = f.stacks.iter().map(|s| s.locations.len()).sum();
    assert!(
        st.location.len() * 2 < frames,
        "{} nodes, {frames} frames",
        st.location.len()
    );
    assert!(tree.len() < flat.len(), "{} vs {}", tree.len(), flat.len());
    assert_same(&BlockSymbols::decode(&tree).unwrap(), &ids, &m);
    assert_same(&BlockSymbols::decode(&flat).unwrap(), &ids, &m);
    // Any subset, in any order, reads back too.
    let some: Vec<StackId> = ids.iter().rev().step_by(3).copied().collect();
    assert_same(
        &BlockSymbols::decode(&encode(&m, &some).unwrap()).unwrap(),
        &some,
        &m,
    );
    assert_same(
        &BlockSymbols::decode(&encode(&m, &[]).unwrap()).unwrap(),
        &[],
        &m,
    );
}

/// Deep recursion with many leaves names more frames per byte than a tree
/// section may: the writer stores it flat, and it reads back.
#[test]
fn a_table_that_would_expand_too_far_is_written_flat() {
    let m = MetaStore::temporary().unwrap();
    let f = m
        .function_ids(vec![Function {
            name: "recurse".into(),
            ..Default::default()
        }])
        .unwrap()[0];
    let l = m
        .location_ids(
            (0..301)
                .map(|i| Location {
                    lines: vec![Line {
                        function: f,
                        line: i,
                        column: 0,
                    }],
                    ..Default::default()
                })
                .collect(),
        )
        .unwrap();
    let ids = m
        .stack_ids(
            (1..301)
                .map(|leaf| Stacktrace {
                    locations: std::iter::once(l[leaf])
                        .chain(std::iter::repeat_n(l[0], 2000))
                        .collect(),
                    num_labels: Vec::new(),
                })
                .collect(),
        )
        .unwrap();
    let bytes = encode(&m, &ids).unwrap();
    let t = pb::Symbols::decode(&bytes[..]).unwrap();
    assert!(t.stack_table.is_none() && t.stacks.len() == 300);
    assert_same(&BlockSymbols::decode(&bytes).unwrap(), &ids, &m);
}

/// A change to a decoded section.
type Damage = Box<dyn Fn(&mut pb::Symbols)>;

/// Each damage to a tree section is an error naming it, never a panic.
#[test]
fn a_damaged_tree_is_refused() {
    let (m, ids) = store();
    let good = pb::Symbols::decode(&encode(&m, &ids).unwrap()[..]).unwrap();
    let cases: Vec<(&str, Damage)> = vec![
        (
            "back",
            Box::new(|t| {
                let st = t.stack_table.as_mut().unwrap();
                st.parent[3] = 4;
            }),
        ),
        (
            "location",
            Box::new(|t| t.stack_table.as_mut().unwrap().location[7] = 1 << 30),
        ),
        (
            "node",
            Box::new(|t| {
                let st = t.stack_table.as_mut().unwrap();
                st.node[1] = st.parent.len() as u32 + 1;
            }),
        ),
        (
            "node columns",
            Box::new(|t| {
                t.stack_table.as_mut().unwrap().location.pop();
            }),
        ),
        (
            "both",
            Box::new(|t| t.stacks.push(pb::SymbolStack::default())),
        ),
        (
            "numeric label counts",
            Box::new(|t| t.stack_table.as_mut().unwrap().num_label_count.push(1)),
        ),
        (
            "add up",
            Box::new(|t| {
                let st = t.stack_table.as_mut().unwrap();
                let last = st.num_label_count.len() - 1;
                st.num_label_count[last] += 1;
            }),
        ),
        (
            "columns of different lengths",
            Box::new(|t| {
                t.location_table.as_mut().unwrap().address.pop();
            }),
        ),
        (
            "line columns",
            Box::new(|t| t.location_table.as_mut().unwrap().shape[0] += 2),
        ),
        (
            "mapping",
            Box::new(|t| t.location_table.as_mut().unwrap().mapping[1] = 99),
        ),
        (
            "function",
            Box::new(|t| t.location_table.as_mut().unwrap().function[0] = 1 << 20),
        ),
        (
            "string",
            Box::new(|t| t.stack_table.as_mut().unwrap().num_labels[0].key = 1 << 20),
        ),
    ];
    for (want, damage) in cases {
        let mut t = good.clone();
        damage(&mut t);
        match BlockSymbols::decode(&t.encode_to_vec()) {
            Err(e) => assert!(e.contains(want), "{want}: {e}"),
            Ok(_) => panic!("{want}: read"),
        }
    }
}

/// A chain of nodes that many stacks end at names far more frames than
/// the message has bytes: refused before any stack is built.
#[test]
fn a_tree_past_the_expansion_bound_is_refused() {
    let mut t =
        pb::Symbols::decode(&encode(&MetaStore::temporary().unwrap(), &[]).unwrap()[..]).unwrap();
    t.location_table = Some(pb::SymbolLocationTable {
        mapping: vec![0],
        address: vec![0],
        shape: vec![0],
        ..Default::default()
    });
    let depth = 1000;
    let st = pb::SymbolStackTable {
        parent: std::iter::once(0)
            .chain(std::iter::repeat_n(1, depth - 1))
            .collect(),
        location: vec![0; depth],
        node: vec![depth as u32; 100],
        ..Default::default()
    };
    t.stack_table = Some(st);
    let bytes = t.encode_to_vec();
    assert!((depth * 100) as u64 > MAX_EXPANSION * bytes.len() as u64);
    let e = BlockSymbols::decode(&bytes).unwrap_err();
    assert!(e.contains("frames from"), "{e}");
}
