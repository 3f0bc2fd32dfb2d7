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

/// Builds the symbols section of the stacks `stacks` (unique; their order is
/// the stacks table's, which version 3 block columns index),
/// reading them and what they reach from `source`. Errors when `source`
/// lacks one of them.
pub fn encode(source: &dyn SymbolSource, stacks: &[StackId]) -> Result<Vec<u8>, SymbolError> {
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
    Ok(b.out.encode_to_vec())
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
        let s = |i: u32, what: &str| -> Result<String, String> {
            strings
                .get(i as usize)
                .cloned()
                .ok_or_else(|| format!("{what}: string {i} of {}", strings.len()))
        };
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
        for (li, l) in t.locations.iter().enumerate() {
            let mapping = match l.mapping {
                0 => None,
                m => Some(
                    out.mappings
                        .get(m as usize - 1)
                        .ok_or_else(|| format!("location {li}: mapping {m} out of range"))?
                        .0,
                ),
            };
            if l.lines.len() != l.functions.len() || l.columns.len() != l.functions.len() {
                return Err(format!("location {li}: line columns of different lengths"));
            }
            let mut lines = Vec::with_capacity(l.functions.len());
            for (k, f) in l.functions.iter().enumerate() {
                let function = out
                    .functions
                    .get(*f as usize)
                    .ok_or_else(|| format!("location {li}: function {f} out of range"))?
                    .0;
                lines.push(Line {
                    function,
                    line: l.lines[k],
                    column: l.columns[k],
                });
            }
            let loc = Location {
                mapping,
                address: l.address,
                is_folded: l.is_folded,
                lines,
            };
            key.clear();
            keys::location_key(&mut key, &loc);
            let id = LocationId(keys::content_id(&key));
            out.location_index.insert(id, index(out.locations.len()));
            out.locations.push((id, Arc::new(loc)));
        }
        for (si, st) in t.stacks.iter().enumerate() {
            let mut locations = Vec::with_capacity(st.locations.len());
            for l in &st.locations {
                locations.push(
                    out.locations
                        .get(*l as usize)
                        .ok_or_else(|| format!("stack {si}: location {l} out of range"))?
                        .0,
                );
            }
            let mut num_labels = Vec::with_capacity(st.num_labels.len());
            for n in &st.num_labels {
                num_labels.push(NumLabel {
                    key: s(n.key, "numeric label key")?,
                    value: n.value,
                    unit: s(n.unit, "numeric label unit")?,
                });
            }
            key.clear();
            keys::stack_key(&mut key, &locations, &num_labels);
            let id = StackId(keys::content_id(&key));
            out.stack_index.insert(id, index(out.stacks.len()));
            out.stacks.push((
                id,
                Arc::new(Stacktrace {
                    locations,
                    num_labels,
                }),
            ));
        }
        Ok(out)
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
