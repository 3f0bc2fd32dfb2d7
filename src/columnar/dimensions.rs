//! The dimension rows of one planned profile ([`crate::ingest::plan`]):
//! mappings, functions, locations (with their lines) and stacks (with their
//! locations and numeric labels), appended when their content id is new.
//!
//! Mapping, function and location ids are the same content ids the
//! time-series backend's meta store uses ([`crate::model::keys::content_id`]),
//! stored as 128-bit integers. A stack gets a dense 32-bit id (the next free
//! one, in the order of first appearance) recorded with its content id in
//! `stack_ids`: that id is what each sample row carries.

use super::{ColumnarError, Known};
use crate::ingest::ProfileSymbols;
use duckdb::{params, Connection};

/// Appends the rows of `sym` whose ids `known` does not hold; the dense id
/// of each of `sym.stacks`, in order (new ones counted on from
/// `known.stack_list`, published by [`publish`] after the commit).
pub(super) fn append_new(
    sym: &ProfileSymbols<'_>,
    conn: &Connection,
    known: &Known,
) -> Result<Vec<u32>, ColumnarError> {
    let mut a = conn.appender("mappings")?;
    for &i in &sym.mappings {
        let id = sym.mapping_id(i).0.as_u128();
        if !known.mappings.contains(&id) {
            let m = sym.mapping(i);
            a.append_row(params![
                id,
                m.memory_start,
                m.memory_limit,
                m.file_offset,
                m.filename,
                m.build_id,
                m.has_functions,
                m.has_filenames,
                m.has_line_numbers,
                m.has_inline_frames
            ])?;
        }
    }
    a.flush()?;
    drop(a);
    let mut a = conn.appender("functions")?;
    for &i in &sym.functions {
        let id = sym.function_id(i).0.as_u128();
        if !known.functions.contains(&id) {
            let f = sym.function(i);
            a.append_row(params![id, f.name, f.system_name, f.filename, f.start_line])?;
        }
    }
    a.flush()?;
    drop(a);
    let mut a = conn.appender("locations")?;
    let mut l = conn.appender("location_lines")?;
    for &i in &sym.locations {
        let id = sym.location_id(i).0.as_u128();
        if known.locations.contains(&id) {
            continue;
        }
        let loc = sym.location(i);
        a.append_row(params![
            id,
            loc.mapping.map(|m| m.0.as_u128()),
            loc.address,
            loc.is_folded
        ])?;
        for (pos, line) in loc.lines.iter().enumerate() {
            l.append_row(params![
                id,
                pos as u32,
                line.function.0.as_u128(),
                line.line,
                line.column
            ])?;
        }
    }
    a.flush()?;
    l.flush()?;
    drop((a, l));
    let mut ids = conn.appender("stack_ids")?;
    let mut a = conn.appender("stacks")?;
    let mut n = conn.appender("stack_num_labels")?;
    let mut dense = Vec::with_capacity(sym.stacks.len());
    let mut next = known.stack_list.len();
    for (k, st) in sym.stacks.iter().enumerate() {
        let content = st.id.0.as_u128();
        if let Some(&id) = known.stacks.get(&content) {
            dense.push(id);
            continue;
        }
        let id = u32::try_from(next)
            .map_err(|_| ColumnarError::Full("more than 2^32 distinct stacks".into()))?;
        next += 1;
        dense.push(id);
        ids.append_row(params![id, content])?;
        let stack = sym.stack(k);
        for (pos, loc) in stack.locations.iter().enumerate() {
            a.append_row(params![id, pos as u32, loc.0.as_u128()])?;
        }
        for (pos, nl) in stack.num_labels.iter().enumerate() {
            n.append_row(params![id, pos as u32, nl.key, nl.value, nl.unit])?;
        }
    }
    ids.flush()?;
    a.flush()?;
    n.flush()?;
    Ok(dense)
}

/// The ids a batch added to [`Known`], to take back when it fails.
pub(super) struct Added {
    mappings: Vec<u128>,
    functions: Vec<u128>,
    locations: Vec<u128>,
    /// `known.stack_list`'s length before the batch.
    stacks_from: usize,
}

impl Added {
    pub(super) fn new(known: &Known) -> Added {
        Added {
            mappings: Vec::new(),
            functions: Vec::new(),
            locations: Vec::new(),
            stacks_from: known.stack_list.len(),
        }
    }

    /// Takes the added ids out of `known`.
    pub(super) fn undo(self, known: &mut Known) {
        for id in self.mappings {
            known.mappings.remove(&id);
        }
        for id in self.functions {
            known.functions.remove(&id);
        }
        for id in self.locations {
            known.locations.remove(&id);
        }
        for content in known.stack_list.drain(self.stacks_from..) {
            known.stacks.remove(&content);
        }
    }
}

/// Records the ids of `sym` as appended (inside the batch's transaction;
/// `added` takes them back if it fails); `dense` is what [`append_new`]
/// returned.
pub(super) fn publish(
    sym: &ProfileSymbols<'_>,
    dense: &[u32],
    known: &mut Known,
    added: &mut Added,
) {
    for &i in &sym.mappings {
        let id = sym.mapping_id(i).0.as_u128();
        if known.mappings.insert(id) {
            added.mappings.push(id);
        }
    }
    for &i in &sym.functions {
        let id = sym.function_id(i).0.as_u128();
        if known.functions.insert(id) {
            added.functions.push(id);
        }
    }
    for &i in &sym.locations {
        let id = sym.location_id(i).0.as_u128();
        if known.locations.insert(id) {
            added.locations.push(id);
        }
    }
    for (st, &id) in sym.stacks.iter().zip(dense) {
        if id as usize == known.stack_list.len() {
            let content = st.id.0.as_u128();
            known.stack_list.push(content);
            known.stacks.insert(content, id);
        }
    }
}
