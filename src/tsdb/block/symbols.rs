//! A block's symbols section: the stacks its chunks refer to and everything
//! they reach, so the block answers queries without the meta store that
//! wrote it.
//!
//! Format: one `Symbols` message (`proto/block.proto`): a string table and
//! tables of mappings, functions, locations and stacks that refer to each
//! other by index, each entity once. No ids are stored; [`BlockSymbols::decode`]
//! derives every entity's content id from its fields with the meta store's
//! key functions ([`crate::model::keys`]), so a block cannot carry an id that
//! does not match its entity.
//!
//! Two forms of the location and stack tables exist; a section holds one:
//! - **flat** (block versions 2–5, and the peer protocol's partials: see
//!   [`encode_flat`]): one message per location and per stack, a stack
//!   listing all its location indexes;
//! - **tree** (block version 6, [`encode`]): locations as aligned columns
//!   ordered by mapping and address (addresses as differences), and stacks
//!   as nodes of a tree of call paths (node: parent, location; stack: its
//!   node), so the callers two stacks share are stored once. Real CPU
//!   profiles have many stacks that differ only near the leaf: the tree
//!   holds 20,926 nodes for 11,559 stacks of 132,703 frames.
//!
//! A tree expands: a stack of depth d costs one node reference however
//! deep it is. So that decoding stays bounded by its input, a tree section
//! may name at most [`MAX_EXPANSION`] stack frames per byte of the message;
//! the writer falls back to the flat form for a table that would name more
//! (deep recursion with many distinct leaves), which names at most one per
//! byte.
//!
//! Invariants of a decoded table: every index in range (checked, an error
//! otherwise); every stack's locations, every location's mapping and
//! functions resolve within the table.

use crate::model::{
    keys, Function, FunctionId, Line, Location, LocationId, Mapping, MappingId, NumLabel, StackId,
    Stacktrace, SymbolError, SymbolSource,
};
use crate::proto::block as pb;
use prost::Message;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The most stack frames (summed over the stacks' depths) a tree-form
/// section may name per byte of its message.
pub const MAX_EXPANSION: u64 = 16;

/// Builds the symbols section (tree form, block version 6) of the stacks
/// `stacks` (unique; their order is the stacks table's, which the block's
/// columns index), reading them and what they reach from `source`. Errors
/// when `source` lacks one of them. Falls back to the flat form when the
/// tree would exceed [`MAX_EXPANSION`].
pub fn encode(source: &dyn SymbolSource, stacks: &[StackId]) -> Result<Vec<u8>, SymbolError> {
    let flat = build(source, stacks)?;
    let frames: u64 = flat.stacks.iter().map(|s| s.locations.len() as u64).sum();
    let tree = to_tree(flat.clone()).encode_to_vec();
    if frames > MAX_EXPANSION.saturating_mul(tree.len() as u64) {
        return Ok(flat.encode_to_vec());
    }
    Ok(tree)
}

/// [`encode`] in the flat form (every block version reads it; the peer
/// protocol's partials carry it).
pub fn encode_flat(source: &dyn SymbolSource, stacks: &[StackId]) -> Result<Vec<u8>, SymbolError> {
    Ok(build(source, stacks)?.encode_to_vec())
}

/// The flat tables of `stacks` and what they reach.
fn build(source: &dyn SymbolSource, stacks: &[StackId]) -> Result<pb::Symbols, SymbolError> {
    let mut b = Builder::default();
    b.strings.insert(String::new(), 0);
    b.out.strings.push(String::new());
    for id in stacks {
        let st = source.stack(*id)?.ok_or(SymbolError::NotFound {
            kind: "stacktrace",
            id: id.0,
        })?;
        let mut locations = Vec::with_capacity(st.locations.len());
        for l in &st.locations {
            locations.push(b.location(source, *l)?);
        }
        let num_labels = st
            .num_labels
            .iter()
            .map(|n| pb::SymbolNumLabel {
                key: b.string(&n.key),
                value: n.value,
                unit: b.string(&n.unit),
            })
            .collect();
        b.out.stacks.push(pb::SymbolStack {
            locations,
            num_labels,
        });
    }
    Ok(b.out)
}

/// The flat tables `t` in the tree form: locations ordered by mapping and
/// address, stacks as nodes numbered in depth-first order of their paths
/// from the root (so a node's parent is usually the node just before it).
fn to_tree(mut t: pb::Symbols) -> pb::Symbols {
    // Locations by (mapping, address), ties in table order.
    let mut order: Vec<u32> = (0..index(t.locations.len())).collect();
    order.sort_by_key(|&i| {
        (
            t.locations[i as usize].mapping,
            t.locations[i as usize].address,
        )
    });
    let mut renumber = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        renumber[old as usize] = index(new);
    }
    let mut lt = pb::SymbolLocationTable::default();
    let mut previous = 0u64;
    for &old in &order {
        let l = &t.locations[old as usize];
        lt.mapping.push(l.mapping);
        // Two's complement: the difference as a signed number.
        lt.address.push(l.address.wrapping_sub(previous) as i64);
        previous = l.address;
        lt.shape
            .push(index(l.functions.len()) * 2 + u32::from(l.is_folded));
        lt.function.extend_from_slice(&l.functions);
        lt.line.extend_from_slice(&l.lines);
        lt.column.extend_from_slice(&l.columns);
    }
    // Each stack's path from the root, in new location numbers.
    let paths: Vec<Vec<u32>> = t
        .stacks
        .iter()
        .map(|s| {
            s.locations
                .iter()
                .rev()
                .map(|l| renumber[*l as usize])
                .collect()
        })
        .collect();
    let mut by_path: Vec<u32> = (0..index(paths.len())).collect();
    by_path.sort_by(|a, b| paths[*a as usize].cmp(&paths[*b as usize]));
    let mut st = pb::SymbolStackTable {
        node: vec![0; paths.len()],
        ..Default::default()
    };
    // In sorted order a path shares its longest known prefix with the path
    // before it, so the nodes of that path are the only ones to look in.
    let mut last: &[u32] = &[];
    let mut nodes: Vec<u32> = Vec::new();
    for &s in &by_path {
        let path = &paths[s as usize];
        let shared = last.iter().zip(path).take_while(|(a, b)| a == b).count();
        nodes.truncate(shared);
        for &loc in &path[shared..] {
            let i = index(st.location.len());
            st.parent.push(nodes.last().map_or(0, |p| i - p));
            st.location.push(loc);
            nodes.push(i);
        }
        st.node[s as usize] = nodes.last().map_or(0, |n| n + 1);
        last = path;
    }
    if t.stacks.iter().any(|s| !s.num_labels.is_empty()) {
        for s in &mut t.stacks {
            st.num_label_count.push(index(s.num_labels.len()));
            st.num_labels.append(&mut s.num_labels);
        }
    }
    t.locations.clear();
    t.stacks.clear();
    t.location_table = Some(lt);
    t.stack_table = Some(st);
    t
}

#[derive(Default)]
struct Builder {
    out: pb::Symbols,
    strings: FxHashMap<String, u32>,
    mappings: FxHashMap<Uuid, u32>,
    functions: FxHashMap<Uuid, u32>,
    locations: FxHashMap<Uuid, u32>,
}

fn index(n: usize) -> u32 {
    // Tables are bounded by what a block holds, far below u32::MAX entries.
    n as u32
}

impl Builder {
    fn string(&mut self, s: &str) -> u32 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = index(self.out.strings.len());
        self.out.strings.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn mapping(&mut self, source: &dyn SymbolSource, id: MappingId) -> Result<u32, SymbolError> {
        if let Some(i) = self.mappings.get(&id.0) {
            return Ok(*i);
        }
        let m = source.mapping(id)?.ok_or(SymbolError::NotFound {
            kind: "mapping",
            id: id.0,
        })?;
        let flags = u32::from(m.has_functions)
            | u32::from(m.has_filenames) << 1
            | u32::from(m.has_line_numbers) << 2
            | u32::from(m.has_inline_frames) << 3;
        let row = pb::SymbolMapping {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: self.string(&m.filename),
            build_id: self.string(&m.build_id),
            flags,
        };
        let i = index(self.out.mappings.len());
        self.out.mappings.push(row);
        self.mappings.insert(id.0, i);
        Ok(i)
    }

    fn function(&mut self, source: &dyn SymbolSource, id: FunctionId) -> Result<u32, SymbolError> {
        if let Some(i) = self.functions.get(&id.0) {
            return Ok(*i);
        }
        let f = source.function(id)?.ok_or(SymbolError::NotFound {
            kind: "function",
            id: id.0,
        })?;
        let row = pb::SymbolFunction {
            name: self.string(&f.name),
            system_name: self.string(&f.system_name),
            filename: self.string(&f.filename),
            start_line: f.start_line,
        };
        let i = index(self.out.functions.len());
        self.out.functions.push(row);
        self.functions.insert(id.0, i);
        Ok(i)
    }

    fn location(&mut self, source: &dyn SymbolSource, id: LocationId) -> Result<u32, SymbolError> {
        if let Some(i) = self.locations.get(&id.0) {
            return Ok(*i);
        }
        let l = source.location(id)?.ok_or(SymbolError::NotFound {
            kind: "location",
            id: id.0,
        })?;
        let mapping = match l.mapping {
            Some(m) => self.mapping(source, m)? + 1,
            None => 0,
        };
        let mut row = pb::SymbolLocation {
            mapping,
            address: l.address,
            is_folded: l.is_folded,
            ..Default::default()
        };
        for line in &l.lines {
            row.functions.push(self.function(source, line.function)?);
            row.lines.push(line.line);
            row.columns.push(line.column);
        }
        let i = index(self.out.locations.len());
        self.out.locations.push(row);
        self.locations.insert(id.0, i);
        Ok(i)
    }
}

/// String `i` of the table, or an error naming `what` refers to it.
fn string_at(strings: &[String], i: u32, what: &str) -> Result<String, String> {
    strings
        .get(i as usize)
        .cloned()
        .ok_or_else(|| format!("{what}: string {i} of {}", strings.len()))
}

/// A decoded symbols section, with every entity's content id.
#[derive(Debug, Default)]
pub struct BlockSymbols {
    mappings: Vec<(MappingId, Arc<Mapping>)>,
    functions: Vec<(FunctionId, Arc<Function>)>,
    locations: Vec<(LocationId, Arc<Location>)>,
    stacks: Vec<(StackId, Arc<Stacktrace>)>,
    mapping_index: FxHashMap<MappingId, u32>,
    function_index: FxHashMap<FunctionId, u32>,
    location_index: FxHashMap<LocationId, u32>,
    stack_index: FxHashMap<StackId, u32>,
    /// Approximate heap bytes held.
    bytes: usize,
}

impl BlockSymbols {
    /// Decodes and checks a symbols section; every error names what is
    /// wrong. Allocation is bounded by the input's size.
    pub fn decode(b: &[u8]) -> Result<BlockSymbols, String> {
        let t = pb::Symbols::decode(b).map_err(|e| format!("undecodable symbols: {e}"))?;
        let strings = &t.strings;
        let s = |i: u32, what: &str| string_at(strings, i, what);
        let mut out = BlockSymbols {
            bytes: b.len() * 3,
            ..Default::default()
        };
        let mut key = Vec::with_capacity(256);
        for m in &t.mappings {
            let m = Mapping {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: s(m.filename, "mapping file name")?,
                build_id: s(m.build_id, "mapping build id")?,
                has_functions: m.flags & 1 != 0,
                has_filenames: m.flags & 2 != 0,
                has_line_numbers: m.flags & 4 != 0,
                has_inline_frames: m.flags & 8 != 0,
            };
            key.clear();
            keys::mapping_key(&mut key, &m);
            let id = MappingId(keys::content_id(&key));
            out.mapping_index.insert(id, index(out.mappings.len()));
            out.mappings.push((id, Arc::new(m)));
        }
        for f in &t.functions {
            let f = Function {
                name: s(f.name, "function name")?,
                system_name: s(f.system_name, "function system name")?,
                filename: s(f.filename, "function file name")?,
                start_line: f.start_line,
            };
            key.clear();
            keys::function_key(&mut key, &f);
            let id = FunctionId(keys::content_id(&key));
            out.function_index.insert(id, index(out.functions.len()));
            out.functions.push((id, Arc::new(f)));
        }
        let tree = t.location_table.is_some() || t.stack_table.is_some();
        if tree && !(t.locations.is_empty() && t.stacks.is_empty()) {
            return Err("symbols in both the flat and the tree form".to_string());
        }
        if let Some(lt) = &t.location_table {
            let n = lt.mapping.len();
            if lt.address.len() != n || lt.shape.len() != n {
                return Err("location table: columns of different lengths".to_string());
            }
            let lines: u64 = lt.shape.iter().map(|s| u64::from(s / 2)).sum();
            if [lt.function.len(), lt.line.len(), lt.column.len()]
                .iter()
                .any(|l| *l as u64 != lines)
            {
                return Err(format!(
                    "location table: {lines} lines, line columns of other lengths"
                ));
            }
            let (mut address, mut line) = (0u64, 0usize);
            for li in 0..n {
                address = address.wrapping_add(lt.address[li] as u64);
                let k = (lt.shape[li] / 2) as usize;
                let range = line..line + k;
                line += k;
                out.push_location(
                    li,
                    lt.mapping[li],
                    address,
                    lt.shape[li] & 1 != 0,
                    (
                        &lt.function[range.clone()],
                        &lt.line[range.clone()],
                        &lt.column[range],
                    ),
                    &mut key,
                )?;
            }
        }
        for (li, l) in t.locations.iter().enumerate() {
            if l.lines.len() != l.functions.len() || l.columns.len() != l.functions.len() {
                return Err(format!("location {li}: line columns of different lengths"));
            }
            out.push_location(
                li,
                l.mapping,
                l.address,
                l.is_folded,
                (&l.functions, &l.lines, &l.columns),
                &mut key,
            )?;
        }
        let mut locations = Vec::new();
        if let Some(st) = &t.stack_table {
            let n = st.parent.len();
            if st.location.len() != n {
                return Err("stack table: node columns of different lengths".to_string());
            }
            let counts = &st.num_label_count;
            if !counts.is_empty() && counts.len() != st.node.len() {
                return Err("stack table: numeric label counts for other stacks".to_string());
            }
            if counts.iter().map(|c| u64::from(*c)).sum::<u64>() != st.num_labels.len() as u64 {
                return Err("stack table: numeric label counts do not add up".to_string());
            }
            // Each node's parent (as index + 1, 0 for a root) and depth.
            let mut up = Vec::with_capacity(n);
            let mut depth: Vec<u64> = Vec::with_capacity(n);
            for (i, (p, l)) in st.parent.iter().zip(&st.location).enumerate() {
                if *l as usize >= out.locations.len() {
                    return Err(format!("stack node {i}: location {l} out of range"));
                }
                let parent = match *p as usize {
                    0 => 0,
                    d if d <= i => i - d + 1,
                    d => return Err(format!("stack node {i}: parent {d} back")),
                };
                up.push(parent);
                depth.push(if parent == 0 {
                    1
                } else {
                    depth[parent - 1] + 1
                });
            }
            let mut frames = 0u64;
            for (si, node) in st.node.iter().enumerate() {
                frames += match *node as usize {
                    0 => 0,
                    v if v <= n => depth[v - 1],
                    v => return Err(format!("stack {si}: node {v} out of range")),
                };
            }
            if frames > MAX_EXPANSION.saturating_mul(b.len() as u64) {
                return Err(format!(
                    "stack table: {frames} frames from {} bytes",
                    b.len()
                ));
            }
            // The stacks' location ids, beyond what the message's size
            // accounts for.
            out.bytes += frames as usize * std::mem::size_of::<LocationId>();
            let mut next_label = 0;
            for (si, node) in st.node.iter().enumerate() {
                locations.clear();
                let mut v = *node as usize;
                while v != 0 {
                    locations.push(st.location[v - 1]);
                    v = up[v - 1];
                }
                let k = counts.get(si).map_or(0, |c| *c as usize);
                let labels = &st.num_labels[next_label..next_label + k];
                next_label += k;
                out.push_stack(si, &locations, labels, strings, &mut key)?;
            }
        }
        for (si, st) in t.stacks.iter().enumerate() {
            out.push_stack(si, &st.locations, &st.num_labels, strings, &mut key)?;
        }
        Ok(out)
    }

    /// Appends location `li` of the table, checking its indexes.
    fn push_location(
        &mut self,
        li: usize,
        mapping: u32,
        address: u64,
        is_folded: bool,
        (functions, lines, columns): (&[u32], &[i64], &[i64]),
        key: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mapping = match mapping {
            0 => None,
            m => Some(
                self.mappings
                    .get(m as usize - 1)
                    .ok_or_else(|| format!("location {li}: mapping {m} out of range"))?
                    .0,
            ),
        };
        let mut out = Vec::with_capacity(functions.len());
        for (k, f) in functions.iter().enumerate() {
            let function = self
                .functions
                .get(*f as usize)
                .ok_or_else(|| format!("location {li}: function {f} out of range"))?
                .0;
            out.push(Line {
                function,
                line: lines[k],
                column: columns[k],
            });
        }
        let loc = Location {
            mapping,
            address,
            is_folded,
            lines: out,
        };
        key.clear();
        keys::location_key(key, &loc);
        let id = LocationId(keys::content_id(key));
        self.location_index.insert(id, index(self.locations.len()));
        self.locations.push((id, Arc::new(loc)));
        Ok(())
    }

    /// Appends stack `si` of the table (its locations as indexes, leaf
    /// first), checking its indexes.
    fn push_stack(
        &mut self,
        si: usize,
        locations: &[u32],
        num_labels: &[pb::SymbolNumLabel],
        strings: &[String],
        key: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut ids = Vec::with_capacity(locations.len());
        for l in locations {
            ids.push(
                self.locations
                    .get(*l as usize)
                    .ok_or_else(|| format!("stack {si}: location {l} out of range"))?
                    .0,
            );
        }
        let s = |i: u32, what: &str| string_at(strings, i, what);
        let mut labels = Vec::with_capacity(num_labels.len());
        for n in num_labels {
            labels.push(NumLabel {
                key: s(n.key, "numeric label key")?,
                value: n.value,
                unit: s(n.unit, "numeric label unit")?,
            });
        }
        key.clear();
        keys::stack_key(key, &ids, &labels);
        let id = StackId(keys::content_id(key));
        self.stack_index.insert(id, index(self.stacks.len()));
        self.stacks.push((
            id,
            Arc::new(Stacktrace {
                locations: ids,
                num_labels: labels,
            }),
        ));
        Ok(())
    }

    /// The mappings, with their ids.
    pub fn mappings(&self) -> &[(MappingId, Arc<Mapping>)] {
        &self.mappings
    }

    /// The functions, with their ids.
    pub fn functions(&self) -> &[(FunctionId, Arc<Function>)] {
        &self.functions
    }

    /// The locations, with their ids.
    pub fn locations(&self) -> &[(LocationId, Arc<Location>)] {
        &self.locations
    }

    /// The stacks, with their ids.
    pub fn stacks(&self) -> &[(StackId, Arc<Stacktrace>)] {
        &self.stacks
    }

    /// The ids of every stack in the table, in table order.
    pub fn stack_ids(&self) -> impl Iterator<Item = StackId> + '_ {
        self.stacks.iter().map(|(id, _)| *id)
    }

    /// Number of stacks.
    pub fn num_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Approximate heap bytes held by the decoded table.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }
}

impl SymbolSource for BlockSymbols {
    fn mapping(&self, id: MappingId) -> Result<Option<Arc<Mapping>>, SymbolError> {
        Ok(self
            .mapping_index
            .get(&id)
            .map(|i| self.mappings[*i as usize].1.clone()))
    }
    fn function(&self, id: FunctionId) -> Result<Option<Arc<Function>>, SymbolError> {
        Ok(self
            .function_index
            .get(&id)
            .map(|i| self.functions[*i as usize].1.clone()))
    }
    fn location(&self, id: LocationId) -> Result<Option<Arc<Location>>, SymbolError> {
        Ok(self
            .location_index
            .get(&id)
            .map(|i| self.locations[*i as usize].1.clone()))
    }
    fn stack(&self, id: StackId) -> Result<Option<Arc<Stacktrace>>, SymbolError> {
        Ok(self
            .stack_index
            .get(&id)
            .map(|i| self.stacks[*i as usize].1.clone()))
    }
}
