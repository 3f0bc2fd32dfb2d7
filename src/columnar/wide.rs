//! [`Wide`]: the layout of Parca's own DuckDB backend, built from a
//! [`Columnar`] database so that the comparison runner can measure it next
//! to this backend's flat layout. The daemon never uses it.
//!
//! # Layout
//!
//! One wide row per (profile, stack) sample, the labels as a map and the
//! stack inline, leaf first:
//!
//! ```text
//! samples(labels MAP(VARCHAR, VARCHAR), ts BIGINT, duration BIGINT, period BIGINT, value BIGINT,
//!         stack STRUCT(address UBIGINT, mapping VARCHAR, build_id VARCHAR,
//!                      function VARCHAR, system_name VARCHAR, filename VARCHAR, line BIGINT)[])
//! ```
//!
//! The profile type is the `__name__` entry of `labels`, as in the flat
//! layout. A location with inlined functions gives one list entry per line
//! (its address repeated), so the list is the stack's frames as a flame
//! graph shows them; a stack without frames is the empty list. Numeric
//! sample labels are left out. Rows are written
//! in the flat layout's order (series, timestamp, stack), its best case.
//!
//! # How it is built and what that measures
//!
//! [`Columnar::export_wide`] writes the whole table into a new database
//! file in one `CREATE TABLE … AS SELECT` over the flat tables, then closes
//! it (DuckDB checkpoints a database file on detach). That is a bulk load
//! of rows already decoded and deduplicated: an upper bound on how fast the
//! layout can be written, not a daemon's ingest of one request at a time.
//! The queries ([`Wide::merge`], [`Wide::range`], [`Wide::series`]) are the
//! SQL such a backend runs: a merge groups by the inline stack itself.

use super::sql::{self, Arg};
use super::{Columnar, ColumnarError};
use crate::engine::TimeRange;
use crate::model::Matcher;
use duckdb::{params_from_iter, Connection};
use std::path::{Path, PathBuf};

/// A database in Parca's layout (see the [module docs](self)).
pub struct Wide {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Wide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wide")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a query over the wide table answers, to check it against the flat
/// layout's answer: how many groups (stacks, points or series) and the sum
/// of their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Distinct stacks of a merge, points of a range query, series.
    pub groups: u64,
    /// Sum of the values (0 for [`Wide::series`]).
    pub total: i128,
}

/// The statement that fills `wide.samples` from the flat tables.
const BUILD: &str = "
CREATE TEMP TABLE wide_stacks AS
SELECT k.stack_id,
       coalesce(list({'address': l.address, 'mapping': m.filename, 'build_id': m.build_id,
                      'function': f.name, 'system_name': f.system_name,
                      'filename': f.filename, 'line': ll.line} ORDER BY st.pos, ll.pos)
                FILTER (WHERE st.stack_id IS NOT NULL), []) AS stack
FROM stack_ids k
LEFT JOIN stacks st ON st.stack_id = k.stack_id
LEFT JOIN locations l ON l.location_id = st.location_id
LEFT JOIN mappings m ON m.mapping_id = l.mapping_id
LEFT JOIN location_lines ll ON ll.location_id = st.location_id
LEFT JOIN functions f ON f.function_id = ll.function_id
GROUP BY k.stack_id;
CREATE TABLE wide.samples AS
SELECT s.labels, x.ts, p.duration, p.period, x.value, k.stack
FROM samples x
JOIN series s ON s.series_id = x.series_id
JOIN profiles p ON p.series_id = x.series_id AND p.ts = x.ts
JOIN wide_stacks k ON k.stack_id = x.stack_id
ORDER BY x.series_id, x.ts, x.stack_id;
DROP TABLE wide_stacks;
";

impl Columnar {
    /// Writes every stored sample in Parca's layout to a new database file
    /// at `path` and opens it (see [`Wide`]). Fails when `path` exists.
    pub fn export_wide(&self, path: &Path) -> Result<Wide, ColumnarError> {
        if path.exists() {
            return Err(ColumnarError::Layout(format!(
                "{} exists; the wide layout is written to a new file",
                path.display()
            )));
        }
        let name = path
            .to_str()
            .ok_or_else(|| ColumnarError::Layout(format!("{} is not UTF-8", path.display())))?;
        {
            let inner = self.inner.lock();
            // ATTACH takes no parameters: the path is a quoted literal.
            let quoted = name.replace('\'', "''");
            inner
                .conn
                .execute_batch(&format!("ATTACH '{quoted}' AS wide"))?;
            let built = inner.conn.execute_batch(BUILD);
            // Detach whatever happened, so a failed build leaves no handle
            // on the file.
            let detached = inner.conn.execute_batch("DETACH wide");
            built?;
            detached?;
        }
        Wide::open(path)
    }
}

impl Wide {
    /// Opens a database [`Columnar::export_wide`] wrote.
    pub fn open(path: &Path) -> Result<Wide, ColumnarError> {
        Ok(Wide {
            conn: Connection::open(path)?,
            path: path.to_path_buf(),
        })
    }

    /// Rows of the table: one per (profile, stack) sample.
    pub fn rows(&self) -> Result<u64, ColumnarError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Bytes DuckDB's buffer manager holds for this database
    /// (`duckdb_memory()`).
    pub fn memory_bytes(&self) -> Result<u64, ColumnarError> {
        let b: i64 = self.conn.query_row(
            "SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory()",
            [],
            |r| r.get(0),
        )?;
        Ok(b.max(0) as u64)
    }

    /// The merge of every sample matching `matchers` in `range`: one group
    /// per distinct inline stack.
    pub fn merge(&self, matchers: &[Matcher], range: TimeRange) -> Result<Answer, ColumnarError> {
        self.answer(
            "SELECT count(*), coalesce(sum(v), 0)::HUGEINT FROM (
                 SELECT stack, sum(value) AS v FROM samples s WHERE {where} GROUP BY stack)",
            matchers,
            range,
        )
    }

    /// Every series' total per profile matching `matchers` in `range`: one
    /// group per (label set, timestamp).
    pub fn range(&self, matchers: &[Matcher], range: TimeRange) -> Result<Answer, ColumnarError> {
        self.answer(
            "SELECT count(*), coalesce(sum(v), 0)::HUGEINT FROM (
                 SELECT labels, ts, sum(value) AS v FROM samples s WHERE {where} GROUP BY ALL)",
            matchers,
            range,
        )
    }

    /// The label sets matching `matchers` with a sample in `range`.
    pub fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Answer, ColumnarError> {
        self.answer(
            "SELECT count(*), 0::HUGEINT FROM (
                 SELECT DISTINCT labels FROM samples s WHERE {where})",
            matchers,
            range,
        )
    }

    /// Runs `template` with `{where}` replaced by the matchers' and the
    /// range's conditions.
    fn answer(
        &self,
        template: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Answer, ColumnarError> {
        let mut cond = String::new();
        let mut args = Vec::new();
        sql::push_matchers(&mut cond, &mut args, matchers);
        cond.push_str("s.ts BETWEEN ? AND ?");
        args.push(Arg::Int(range.start));
        args.push(Arg::Int(range.end));
        let q = template.replace("{where}", &cond);
        let (groups, total): (i64, i128) =
            self.conn
                .query_row(&q, params_from_iter(args.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok(Answer {
            groups: groups.max(0) as u64,
            total,
        })
    }
}
