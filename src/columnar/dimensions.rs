//! The dimension rows of one planned profile ([`crate::ingest::plan`]):
//! mappings, functions, locations (with their lines) and stacks (with their
//! locations and numeric labels), appended when their content id is new.
//!
//! Ids are the same content ids the time-series backend's meta store uses
//! ([`crate::model::keys::content_id`]), stored as 128-bit integers.

use super::{ColumnarError, Known};
use crate::ingest::ProfileSymbols;
use duckdb::{params, Connection};

/// Appends the rows of `sym` whose ids `known` does not hold.
pub(super) fn append_new(
    sym: &ProfileSymbols<'_>,
    conn: &Connection,
    known: &Known,
) -> Result<(), ColumnarError> {
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
    let mut a = conn.appender("stacks")?;
    let mut n = conn.appender("stack_num_labels")?;
    for (k, st) in sym.stacks.iter().enumerate() {
        let id = st.id.0.as_u128();
        if known.stacks.contains(&id) {
            continue;
        }
        for (pos, loc) in sym.stack(k).locations.iter().enumerate() {
            a.append_row(params![id, pos as u32, loc.0.as_u128()])?;
        }
        for (pos, nl) in st.num_labels.iter().enumerate() {
            n.append_row(params![id, pos as u32, nl.key, nl.value, nl.unit])?;
        }
    }
    a.flush()?;
    n.flush()?;
    Ok(())
}

/// Records the ids of `sym` as stored (after the commit).
pub(super) fn publish(sym: &ProfileSymbols<'_>, known: &mut Known) {
    known
        .mappings
        .extend(sym.mappings.iter().map(|&i| sym.mapping_id(i).0.as_u128()));
    known.functions.extend(
        sym.functions
            .iter()
            .map(|&i| sym.function_id(i).0.as_u128()),
    );
    known.locations.extend(
        sym.locations
            .iter()
            .map(|&i| sym.location_id(i).0.as_u128()),
    );
    known
        .stacks
        .extend(sym.stacks.iter().map(|s| s.id.0.as_u128()));
}
