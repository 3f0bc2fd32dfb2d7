//! [`Columnar`]: a second storage backend on embedded DuckDB, implementing
//! [`Storage`](crate::engine::Storage) with the same answers as
//! [`crate::tsdb::Tsdb`] (built with the `duckdb` cargo feature).
//!
//! # Layout
//!
//! Parca's DuckDB backend keeps one wide row per (profile, stack) sample:
//! profile type, labels as `MAP(VARCHAR, VARCHAR)`, timestamp, duration,
//! period, value, and the stack inline as `LIST<STRUCT(…)>`. This backend
//! keeps the fact rows flat and puts the stacks into dimension tables keyed
//! by content hashes:
//!
//! ```text
//! series(series_id UINTEGER, labels MAP(VARCHAR, VARCHAR), origin UBIGINT, pprof_group UINTEGER)
//! series_labels(series_id UINTEGER, name VARCHAR, value VARCHAR, pprof_name VARCHAR)  -- flat source of `series`
//! profiles(series_id UINTEGER, ts BIGINT, duration BIGINT, period BIGINT, total BIGINT)
//! samples(series_id UINTEGER, ts BIGINT, stack_id UINTEGER, value BIGINT)      -- one row per (profile, stack)
//! stack_ids(stack_id UINTEGER, content_id UHUGEINT)                           -- one row per stack
//! stacks(stack_id UINTEGER, pos UINTEGER, location_id UHUGEINT)               -- one row per frame, leaf first
//! stack_num_labels(stack_id UINTEGER, pos UINTEGER, key VARCHAR, value BIGINT, unit VARCHAR)
//! locations(location_id UHUGEINT, mapping_id UHUGEINT, address UBIGINT, is_folded BOOLEAN)
//! location_lines(location_id UHUGEINT, pos UINTEGER, function_id UHUGEINT, line BIGINT, col BIGINT)
//! functions(function_id UHUGEINT, name VARCHAR, system_name VARCHAR, filename VARCHAR, start_line BIGINT)
//! mappings(mapping_id UHUGEINT, memory_start UBIGINT, memory_limit UBIGINT, file_offset UBIGINT,
//!          filename VARCHAR, build_id VARCHAR, has_functions BOOLEAN, has_filenames BOOLEAN,
//!          has_line_numbers BOOLEAN, has_inline_frames BOOLEAN)
//! ```
//!
//! Why ids instead of the inline list:
//! - DuckDB's Appender, as the `duckdb` crate exposes it, appends only
//!   scalar values: a `LIST`, `STRUCT` or `MAP` column would need the Arrow
//!   appender or `INSERT … VALUES` through the SQL parser. Flat rows keep
//!   every hot write on the Appender.
//! - A stack repeats in every profile of every series that has it; the row
//!   then carries 16 bytes instead of its frames, and a merge groups by one
//!   `UHUGEINT` instead of hashing nested lists. Measured with the ignored
//!   test `columnar::tests::layout_timing` (1 M sample rows, 10 k distinct
//!   stacks of 20 frames, DuckDB 1.5.6, 2 cores shared with a build): a
//!   merge-style `GROUP BY` over half the rows took 44 ms by the id and
//!   3.16 s by the inline list (72 times longer), and building the inline
//!   table took 7.4 s against 0.41 s for the flat one.
//! - The id a sample row carries is a dense `UINTEGER` (0, 1, 2, … in the
//!   order stacks were first stored), not the 16-byte content id: DuckDB
//!   bit-packs small integers, while a 128-bit hash does not compress at
//!   all. `stack_ids` maps it to the content id, and the backend keeps that
//!   map in memory (16 bytes per stack plus its hash map entry).
//! - The sample rows of one transaction (one profile, or one batch of
//!   them) are appended sorted by (series_id, ts, stack_id), so that a
//!   batch lays down runs of one series with its stack ids ascending.
//!
//! Parca's own layout is kept as a measured variant: [`Wide`] rewrites a
//! database's rows into it ([`Columnar::export_wide`]) and answers merges,
//! range queries and series there, for the comparison runner.
//!
//! Series labels *are* a `MAP(VARCHAR, VARCHAR)` as in Parca, in the small
//! `series` table (one row per series), built from the appended flat
//! `series_labels` rows by one `INSERT … SELECT map(…)` per ingest that
//! creates series. Matchers become SQL over that map (see [`sql`]).
//!
//! # Identities and invariants
//! - Mapping, function, location and stack ids are the content ids the
//!   time-series backend uses ([`crate::model::keys::content_id`]), as
//!   128-bit integers, so the two backends give every entity the same id;
//!   a dimension row is appended only when its id is new. Frames and
//!   stacks of a query result carry these ids as UUIDs. Dense stack ids
//!   count up from 0 without gaps (checked at open).
//! - Series ids count up from 0 in creation order (the order of
//!   [`crate::ingest`]'s plan), like the head's series refs, so "the last
//!   series" of a merge (whose period a result reports) is the same series.
//! - Timestamps strictly increase per series: the catalog keeps each series'
//!   latest timestamp and an ingest is checked against it (and against the
//!   label and series limits, and against the profiles before it in its
//!   batch) before its rows are written; the writes of one ingest, or of one
//!   batch ([`Columnar::ingest_batch`]), run in one DuckDB transaction, so a
//!   profile is stored in all its series or in none, and a batch's checked
//!   profiles all or none. The catalog takes a batch's series and ids as
//!   they are appended and is put back if the transaction fails.
//! - The normalization (series per sample type and string-label group,
//!   renamed colliding pprof labels, stack identity, numeric labels, zero
//!   sums, the empty profile, timestamps) is [`crate::ingest::plan`], the
//!   one the time-series backend uses, but for sample labels (`span_id`…),
//!   which make series here (see [`Columnar::open_with`]): a selector on
//!   them gives the same answers in both backends.
//!
//! # Concurrency
//! One connection behind a mutex: ingests and queries are serialized. (A
//! later version can give readers their own connections.)

mod dimensions;
mod sql;
#[cfg(test)]
mod tests;
mod wide;

use crate::engine::{
    check_step, IngestStats, Limits, Partial, Pick, QueryError, RefreshMetrics, SeriesPoints,
    Storage, TimeRange,
};
use crate::ingest::{IngestError, IngestRequest, IngestSummary, Plan};
use crate::model::{Labels, Matcher, ProfileType, Stack, StackId, StorageError, METRIC_NAME};
use duckdb::{params, params_from_iter, Connection};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prost::Message;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
pub use wide::{Answer, Wide};

/// Errors of the columnar layer.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    /// DuckDB failed.
    #[error("duckdb: {0}")]
    DuckDb(#[from] duckdb::Error),
    /// Stored rows contradict each other.
    #[error("columnar store corrupt: {0}")]
    Corrupt(String),
    /// The database was written with another table layout.
    #[error("columnar store: {0}")]
    Layout(String),
    /// An id space is used up.
    #[error("columnar store full: {0}")]
    Full(String),
}

impl From<ColumnarError> for QueryError {
    fn from(e: ColumnarError) -> Self {
        StorageError::new("database", e).into()
    }
}

impl From<ColumnarError> for IngestError {
    fn from(e: ColumnarError) -> Self {
        StorageError::new("database", e).into()
    }
}

impl From<duckdb::Error> for QueryError {
    fn from(e: duckdb::Error) -> Self {
        ColumnarError::from(e).into()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (series_id UINTEGER, labels MAP(VARCHAR, VARCHAR), origin UBIGINT, pprof_group UINTEGER);
CREATE TABLE IF NOT EXISTS series_labels (series_id UINTEGER, name VARCHAR, value VARCHAR, pprof_name VARCHAR);
CREATE TABLE IF NOT EXISTS profiles (series_id UINTEGER, ts BIGINT, duration BIGINT, period BIGINT, total BIGINT);
CREATE TABLE IF NOT EXISTS samples (series_id UINTEGER, ts BIGINT, stack_id UINTEGER, value BIGINT);
CREATE TABLE IF NOT EXISTS stack_ids (stack_id UINTEGER, content_id UHUGEINT);
CREATE TABLE IF NOT EXISTS stacks (stack_id UINTEGER, pos UINTEGER, location_id UHUGEINT);
CREATE TABLE IF NOT EXISTS stack_num_labels (stack_id UINTEGER, pos UINTEGER, key VARCHAR, value BIGINT, unit VARCHAR);
CREATE TABLE IF NOT EXISTS locations (location_id UHUGEINT, mapping_id UHUGEINT, address UBIGINT, is_folded BOOLEAN);
CREATE TABLE IF NOT EXISTS location_lines (location_id UHUGEINT, pos UINTEGER, function_id UHUGEINT, line BIGINT, col BIGINT);
CREATE TABLE IF NOT EXISTS functions (function_id UHUGEINT, name VARCHAR, system_name VARCHAR, filename VARCHAR, start_line BIGINT);
CREATE TABLE IF NOT EXISTS mappings (mapping_id UHUGEINT, memory_start UBIGINT, memory_limit UBIGINT, file_offset UBIGINT,
    filename VARCHAR, build_id VARCHAR, has_functions BOOLEAN, has_filenames BOOLEAN, has_line_numbers BOOLEAN, has_inline_frames BOOLEAN);
";

/// One series in the in-memory catalog (rebuilt from `series_labels` and
/// `profiles` at open).
#[derive(Debug, Clone)]
struct SeriesInfo {
    labels: Labels,
    profile_type: ProfileType,
    /// Series label name → pprof label name.
    pprof_labels: Vec<(String, String)>,
    max_time: Option<i64>,
}

/// What the mutex guards: the connection, the series catalog and the ids of
/// the dimension rows already stored.
struct Inner {
    conn: Connection,
    series: Vec<SeriesInfo>,
    by_labels: FxHashMap<Labels, u32>,
    /// pprof label values (sorted, pprof names) of each pprof group.
    groups: Vec<Vec<(String, String)>>,
    group_ids: FxHashMap<Vec<(String, String)>, u32>,
    known: Known,
}

/// Ids of the dimension rows already stored.
#[derive(Default)]
pub(crate) struct Known {
    pub(crate) mappings: FxHashSet<u128>,
    pub(crate) functions: FxHashSet<u128>,
    pub(crate) locations: FxHashSet<u128>,
    /// Stack content id → dense id.
    pub(crate) stacks: FxHashMap<u128, u32>,
    /// Dense stack id → content id.
    pub(crate) stack_list: Vec<u128>,
}

/// The DuckDB backend (see the module docs).
pub struct Columnar {
    inner: Mutex<Inner>,
    limits: Limits,
    /// What was accepted since the database was opened.
    stats: Counters,
}

/// Running totals behind [`Columnar::stats`].
#[derive(Debug, Default)]
struct Counters {
    profiles: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for Columnar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Columnar")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Columnar {
    /// Opens the database at `path` (created when missing), or an in-memory
    /// one, with default limits.
    pub fn open(path: Option<&Path>) -> Result<Columnar, ColumnarError> {
        Columnar::open_with(path, Limits::default())
    }

    /// [`Columnar::open`] with `limits`. Sample labels
    /// ([`crate::ingest::LabelLimits::sample_labels`]) are series labels
    /// here: a row per sample costs the same with one label more, so the
    /// backend keeps every pprof label in its `series` table, as Parca's
    /// columnar layout keeps them on each row.
    pub fn open_with(path: Option<&Path>, mut limits: Limits) -> Result<Columnar, ColumnarError> {
        limits.labels.sample_labels.clear();
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        check_layout(&conn)?;
        conn.execute_batch(SCHEMA)?;
        let mut inner = Inner {
            conn,
            series: Vec::new(),
            by_labels: FxHashMap::default(),
            groups: Vec::new(),
            group_ids: FxHashMap::default(),
            known: Known::default(),
        };
        inner.load()?;
        Ok(Columnar {
            inner: Mutex::new(inner),
            limits,
            stats: Counters::default(),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What was accepted since the database was opened (as
    /// [`crate::tsdb::Tsdb::stats`]).
    pub fn stats(&self) -> IngestStats {
        IngestStats {
            profiles: self.stats.profiles.load(Relaxed),
            samples: self.stats.samples.load(Relaxed),
            bytes: self.stats.bytes.load(Relaxed),
        }
    }

    /// Ingests `req`. `raw`, the pprof as received when the caller has it,
    /// is only counted in [`Columnar::stats`] (otherwise the profile's
    /// encoded size is): DuckDB keeps the decoded rows, not the bytes.
    pub fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        self.ingest_batch(&[(req, raw)])
            .pop()
            .unwrap_or_else(|| Err(StorageError::new("database", "no result").into()))
    }

    /// Ingests several profiles in one DuckDB transaction: one result per
    /// request, in order. A profile that fails its checks (bad pprof, out
    /// of order, a limit) gets its error and is left out; the others are
    /// stored together, and when storing fails none of them is. Every
    /// profile of a batch is stored, and may be acknowledged, only when the
    /// whole batch has committed: a caller that gathers profiles to batch
    /// them (one scrape round of many targets, say) trades the latency of
    /// its first profile, and the loss of the batch if the process dies
    /// before the commit, for one commit and one log sync per batch instead
    /// of per profile. Nothing is acknowledged that is not committed.
    pub fn ingest_batch(
        &self,
        reqs: &[(&IngestRequest, Option<&[u8]>)],
    ) -> Vec<Result<IngestSummary, IngestError>> {
        let planned: Vec<Result<Plan, IngestError>> = reqs
            .iter()
            .map(|(req, _)| {
                self.limits
                    .time
                    .check(crate::ingest::profile_timestamp(req))?;
                crate::ingest::plan(req, &self.limits.labels)
            })
            .collect();
        let results = self.inner.lock().write_batch(planned, &self.limits);
        for (r, (req, raw)) in results.iter().zip(reqs) {
            if let Ok(summary) = r {
                let bytes = raw.map_or_else(|| req.profile.encoded_len(), <[u8]>::len);
                self.stats.profiles.fetch_add(1, Relaxed);
                self.stats
                    .samples
                    .fetch_add(summary.samples as u64, Relaxed);
                self.stats.bytes.fetch_add(bytes as u64, Relaxed);
            }
        }
        results
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.inner.lock().series.len()
    }

    /// Bytes DuckDB's buffer manager holds (`duckdb_memory()`): the tables'
    /// blocks in memory, indexes and temporary buffers.
    pub fn memory_bytes(&self) -> Result<u64, ColumnarError> {
        let inner = self.inner.lock();
        let b: i64 = inner.conn.query_row(
            "SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory()",
            [],
            |r| r.get(0),
        )?;
        Ok(b.max(0) as u64)
    }

    /// Writes everything to the database file (`CHECKPOINT`), so that the
    /// file holds the data and DuckDB's own write-ahead log is empty.
    pub fn checkpoint(&self) -> Result<(), ColumnarError> {
        self.inner.lock().conn.execute_batch("CHECKPOINT")?;
        Ok(())
    }
}

impl Inner {
    /// Rebuilds the catalog and the known ids from the tables.
    fn load(&mut self) -> Result<(), ColumnarError> {
        let mut rows: Vec<(u32, String, String, Option<String>)> = Vec::new();
        {
            let mut st = self.conn.prepare(
                "SELECT series_id, name, value, pprof_name FROM series_labels ORDER BY series_id, name",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                rows.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
            }
        }
        let mut parts: Vec<(Labels, Vec<(String, String)>)> = Vec::new();
        for (id, name, value, pprof_name) in rows {
            let id = id as usize;
            if id > parts.len() {
                return Err(ColumnarError::Corrupt(format!(
                    "series ids not dense at {id}"
                )));
            }
            if id == parts.len() {
                parts.push((Labels::new(), Vec::new()));
            }
            let s = &mut parts[id];
            if let Some(p) = pprof_name {
                s.1.push((name.clone(), p));
            }
            s.0.set(name, value);
        }
        for (id, (labels, pprof_labels)) in parts.into_iter().enumerate() {
            let name = labels.get(METRIC_NAME).unwrap_or_default();
            let profile_type = ProfileType::parse(name).map_err(|e| {
                ColumnarError::Corrupt(format!("series {id}: bad __name__ {name:?}: {e}"))
            })?;
            self.by_labels.insert(labels.clone(), id as u32);
            self.series.push(SeriesInfo {
                labels,
                profile_type,
                pprof_labels,
                max_time: None,
            });
        }
        {
            let mut st = self
                .conn
                .prepare("SELECT series_id, max(ts) FROM profiles GROUP BY series_id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: u32 = r.get(0)?;
                if let Some(s) = self.series.get_mut(id as usize) {
                    s.max_time = Some(r.get(1)?);
                }
            }
        }
        {
            let mut st = self
                .conn
                .prepare("SELECT series_id, pprof_group FROM series ORDER BY series_id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: u32 = r.get(0)?;
                let g: u32 = r.get(1)?;
                let Some(s) = self.series.get(id as usize) else {
                    return Err(ColumnarError::Corrupt(format!("series {id} has no labels")));
                };
                let values = pprof_values(s);
                if self.groups.len() <= g as usize {
                    self.groups.resize(g as usize + 1, Vec::new());
                }
                self.group_ids.insert(values.clone(), g);
                self.groups[g as usize] = values;
            }
        }
        let known = &mut self.known;
        {
            let mut st = self
                .conn
                .prepare("SELECT stack_id, content_id FROM stack_ids ORDER BY stack_id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: u32 = r.get(0)?;
                let content: u128 = r.get(1)?;
                if id as usize != known.stack_list.len() {
                    return Err(ColumnarError::Corrupt(format!(
                        "stack ids not dense at {id}"
                    )));
                }
                if known.stacks.insert(content, id).is_some() {
                    return Err(ColumnarError::Corrupt(format!(
                        "stack {} has two ids",
                        uuid::Uuid::from_u128(content)
                    )));
                }
                known.stack_list.push(content);
            }
        }
        for (table, col, set) in [
            ("mappings", "mapping_id", &mut known.mappings),
            ("functions", "function_id", &mut known.functions),
            ("locations", "location_id", &mut known.locations),
        ] {
            let mut st = self
                .conn
                .prepare(&format!("SELECT DISTINCT {col} FROM {table}"))?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                set.insert(r.get(0)?);
            }
        }
        Ok(())
    }

    /// The content id of dense stack id `id`.
    fn content_id(&self, id: u32) -> Result<u128, ColumnarError> {
        self.known
            .stack_list
            .get(id as usize)
            .copied()
            .ok_or_else(|| ColumnarError::Corrupt(format!("stack {id} has no content id")))
    }

    /// The pprof group of a planned series, created when new.
    fn group_of(&mut self, values: Vec<(String, String)>) -> u32 {
        if let Some(g) = self.group_ids.get(&values) {
            return *g;
        }
        let g = self.groups.len() as u32;
        self.groups.push(values.clone());
        self.group_ids.insert(values, g);
        g
    }

    /// Stores the plans that pass their checks in one transaction (see
    /// [`Columnar::ingest_batch`]). The catalog and the known ids take each
    /// plan as it is appended, so that later plans of the batch see its
    /// series and stacks; if the transaction fails, `undo` puts them back.
    fn write_batch(
        &mut self,
        planned: Vec<Result<Plan, IngestError>>,
        limits: &Limits,
    ) -> Vec<Result<IngestSummary, IngestError>> {
        let n = planned.len();
        let mut results: Vec<Result<IngestSummary, IngestError>> = Vec::with_capacity(n);
        let mut undo = Undo::new(self);
        let mut rows = Vec::new();
        let stored = (|| -> Result<(), ColumnarError> {
            self.conn.execute_batch("BEGIN TRANSACTION")?;
            for p in planned {
                let plan = match p {
                    Ok(plan) => plan,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                match self.check(&plan, limits) {
                    Ok(()) => {
                        self.append(&plan, &mut undo, &mut rows)?;
                        results.push(Ok(plan.summary()));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            self.label_maps(undo.series_len as u32)?;
            // The batch's sample rows sorted by series, time and stack:
            // DuckDB's row groups then hold runs of one series (its zone
            // maps skip more) and its stack ids in order (they bit-pack).
            rows.sort_unstable();
            let mut a = self.conn.appender("samples")?;
            for &(id, ts, stack, value) in &rows {
                a.append_row(params![id, ts, stack, value])?;
            }
            a.flush()?;
            drop(a);
            self.conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        if let Err(e) = stored {
            let _ = self.conn.execute_batch("ROLLBACK");
            undo.apply(self);
            // Profiles that failed their checks keep their errors; none of
            // the others is stored.
            let e = StorageError::new("database", e);
            let mut out: Vec<Result<IngestSummary, IngestError>> = results
                .into_iter()
                .map(|r| r.and(Err(IngestError::Storage(e.clone()))))
                .collect();
            out.resize_with(n, || Err(IngestError::Storage(e.clone())));
            return out;
        }
        results
    }

    /// The checks of one plan against the catalog: order per existing
    /// series, then the series limit.
    fn check(&self, plan: &Plan, limits: &Limits) -> Result<(), IngestError> {
        let mut new_series = 0;
        for ps in &plan.series {
            match self.by_labels.get(&ps.labels) {
                Some(&id) => {
                    let s = &self.series[id as usize];
                    if let Some(max) = s.max_time {
                        if plan.timestamp <= max {
                            return Err(IngestError::OutOfOrder {
                                labels: s.labels.to_string(),
                                timestamp: plan.timestamp,
                                max_time: max,
                            });
                        }
                    }
                }
                None => new_series += 1,
            }
        }
        if new_series > 0 && self.series.len() + new_series > limits.max_series {
            return Err(IngestError::SeriesLimit {
                limit: limits.max_series,
            });
        }
        Ok(())
    }

    /// Appends the rows of one checked plan inside the open transaction
    /// (its sample rows to `rows`, appended at the end of the batch) and
    /// takes its series and ids into the catalog (recorded in `undo`).
    fn append(
        &mut self,
        plan: &Plan,
        undo: &mut Undo,
        rows: &mut Vec<(u32, i64, u32, i64)>,
    ) -> Result<(), ColumnarError> {
        let mut ids = Vec::with_capacity(plan.series.len());
        let mut created: Vec<(u32, u32)> = Vec::new();
        for ps in &plan.series {
            match self.by_labels.get(&ps.labels) {
                Some(&id) => ids.push(id),
                None => {
                    let id = self.series.len() as u32;
                    let g = self.group_of(ps.pprof_values());
                    self.by_labels.insert(ps.labels.clone(), id);
                    self.series.push(SeriesInfo {
                        labels: ps.labels.clone(),
                        profile_type: ps.profile_type.clone(),
                        pprof_labels: ps.pprof_labels.clone(),
                        max_time: None,
                    });
                    ids.push(id);
                    created.push((id, g));
                }
            }
        }
        for &id in &ids {
            let s = &mut self.series[id as usize];
            undo.max_times.push((id, s.max_time));
            s.max_time = Some(plan.timestamp);
        }
        if !created.is_empty() {
            let mut a = self.conn.appender("series_labels")?;
            for (ps, &id) in plan.series.iter().zip(&ids) {
                if !created.iter().any(|(c, _)| *c == id) {
                    continue;
                }
                for l in &ps.labels {
                    let pprof = ps
                        .pprof_labels
                        .iter()
                        .find(|(s, _)| *s == l.name)
                        .map(|(_, p)| p.as_str());
                    a.append_row(params![id, l.name, l.value, pprof])?;
                }
            }
            a.flush()?;
            drop(a);
            // The groups and origins of the new series; their label maps
            // are built once per batch (`label_maps`).
            let mut g = self.conn.appender("series")?;
            for (ps, &id) in plan.series.iter().zip(&ids) {
                if let Some((_, group)) = created.iter().find(|(c, _)| *c == id) {
                    g.append_row(params![id, duckdb::types::Null, ps.origin, group])?;
                }
            }
            g.flush()?;
        }
        let dense = dimensions::append_new(&plan.symbols, &self.conn, &self.known)?;
        dimensions::publish(&plan.symbols, &dense, &mut self.known, &mut undo.known);
        let by_content: FxHashMap<StackId, u32> = plan
            .symbols
            .stacks
            .iter()
            .zip(&dense)
            .map(|(s, &d)| (s.id, d))
            .collect();
        {
            let mut a = self.conn.appender("profiles")?;
            for (ps, &id) in plan.series.iter().zip(&ids) {
                a.append_row(params![
                    id,
                    plan.timestamp,
                    plan.duration,
                    plan.period,
                    ps.total()
                ])?;
            }
            a.flush()?;
        }
        for (ps, &id) in plan.series.iter().zip(&ids) {
            for &(stack, value) in &ps.samples {
                let dense = by_content.get(&stack).ok_or_else(|| {
                    ColumnarError::Corrupt(format!("stack {} not in its profile", stack.0))
                })?;
                rows.push((id, plan.timestamp, *dense, value));
            }
        }
        Ok(())
    }

    /// Builds the label maps of the series from `first` on (those created
    /// in this transaction) from their flat rows.
    fn label_maps(&self, first: u32) -> Result<(), ColumnarError> {
        if self.series.len() as u32 <= first {
            return Ok(());
        }
        self.conn.execute(
            "UPDATE series SET labels = m.labels FROM (
                 SELECT series_id, map(list(name ORDER BY name), list(value ORDER BY name)) AS labels
                 FROM series_labels WHERE series_id >= ? GROUP BY series_id) m
             WHERE series.series_id = m.series_id",
            params![first],
        )?;
        Ok(())
    }

    /// Ids of the series matching `matchers` with a profile in `range`,
    /// ascending.
    fn select(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<u32>, ColumnarError> {
        let (sql, args) = sql::select_series(matchers, range);
        let mut st = self.conn.prepare(&sql)?;
        let mut q = st.query(params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = q.next()? {
            out.push(r.get(0)?);
        }
        Ok(out)
    }

    /// The partial result of the profiles that `reads` (SQL yielding
    /// `series_id, ts` of the profiles to read, with `args`) selects.
    fn partial_reads(&self, reads: &str, args: &[sql::Arg]) -> Result<Partial, QueryError> {
        self.conn.execute(
            &format!("CREATE OR REPLACE TEMP TABLE q_reads AS {reads}"),
            params_from_iter(args.iter()),
        )?;
        let mut out = Partial::default();
        {
            let mut st = self.conn.prepare(
                "SELECT p.series_id, p.ts, p.duration, p.period, s.origin
                 FROM q_reads q JOIN profiles p USING (series_id, ts)
                 JOIN series s USING (series_id)",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: u32 = r.get(0)?;
                let s = &self.series[id as usize];
                out.add_read(&s.labels, r.get(4)?, r.get(1)?, r.get(2)?, r.get(3)?);
            }
        }
        // Per pprof label group and stack, the sum over the reads.
        {
            let mut st = self.conn.prepare(
                "CREATE OR REPLACE TEMP TABLE q_stacks AS
                 SELECT s.pprof_group AS g, x.stack_id, sum(x.value)::HUGEINT AS v
                 FROM samples x JOIN q_reads q USING (series_id, ts) JOIN series s USING (series_id)
                 GROUP BY ALL",
            )?;
            st.execute([])?;
            let mut st = self.conn.prepare("SELECT g, stack_id, v FROM q_stacks")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let g: u32 = r.get(0)?;
                let stack = self.content_id(r.get(1)?)?;
                let v: i128 = r.get(2)?;
                // Wrapping, as the head sums.
                let v = v as i64;
                if v != 0 {
                    out.sums
                        .entry(self.groups[g as usize].clone())
                        .or_default()
                        .insert(StackId(uuid::Uuid::from_u128(stack)), v);
                }
            }
        }
        for (id, stack) in resolve::stacks(&self.conn)? {
            out.stacks
                .insert(StackId(uuid::Uuid::from_u128(self.content_id(id)?)), stack);
        }
        // A stack without dimension rows reads as the empty stack.
        for id in out.stack_ids() {
            out.stacks.entry(id).or_insert_with(|| {
                Arc::new(Stack {
                    frames: Vec::new(),
                    num_labels: Vec::new(),
                })
            });
        }
        Ok(out)
    }
}

/// What a batch changed in the catalog and the known ids before its
/// commit, to put back when the commit fails.
struct Undo {
    series_len: usize,
    groups_len: usize,
    /// (series, its latest timestamp before), in the order changed.
    max_times: Vec<(u32, Option<i64>)>,
    known: dimensions::Added,
}

impl Undo {
    fn new(inner: &Inner) -> Undo {
        Undo {
            series_len: inner.series.len(),
            groups_len: inner.groups.len(),
            max_times: Vec::new(),
            known: dimensions::Added::new(&inner.known),
        }
    }

    fn apply(self, inner: &mut Inner) {
        for (id, t) in self.max_times.into_iter().rev() {
            if let Some(s) = inner.series.get_mut(id as usize) {
                s.max_time = t;
            }
        }
        for s in inner.series.drain(self.series_len..) {
            inner.by_labels.remove(&s.labels);
        }
        for g in inner.groups.drain(self.groups_len..) {
            inner.group_ids.remove(&g);
        }
        self.known.undo(&mut inner.known);
    }
}

/// Refuses a database whose sample rows carry 16-byte stack ids (the layout
/// before dense stack ids): its stacks cannot be read by this version.
fn check_layout(conn: &Connection) -> Result<(), ColumnarError> {
    let mut st = conn.prepare(
        "SELECT data_type FROM duckdb_columns()
         WHERE table_name = 'samples' AND column_name = 'stack_id'",
    )?;
    let mut q = st.query([])?;
    if let Some(r) = q.next()? {
        let t: String = r.get(0)?;
        if t != "UINTEGER" {
            return Err(ColumnarError::Layout(format!(
                "its sample rows carry {t} stack ids, written by an older version \
                 of the DuckDB backend; open it with that version or start from an \
                 empty database"
            )));
        }
    }
    Ok(())
}

/// The pprof label values of a series: (pprof name, value), sorted.
fn pprof_values(s: &SeriesInfo) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = s
        .pprof_labels
        .iter()
        .filter_map(|(series_name, pprof_name)| {
            s.labels
                .get(series_name)
                .map(|v| (pprof_name.clone(), v.to_string()))
        })
        .collect();
    v.sort();
    v
}

mod resolve {
    //! Reads the dimension rows of the stacks in `q_stacks` into resolved
    //! stacks.

    use super::ColumnarError;
    use crate::model::{Frame, FrameLine, Stack};
    use crate::model::{Function, Mapping, NumLabel};
    use duckdb::Connection;
    use rustc_hash::FxHashMap;
    use std::sync::Arc;
    use uuid::Uuid;

    /// The stacks by dense id.
    pub(super) fn stacks(conn: &Connection) -> Result<FxHashMap<u32, Arc<Stack>>, ColumnarError> {
        let mut mappings: FxHashMap<u128, Arc<Mapping>> = FxHashMap::default();
        {
            let mut st = conn.prepare(
                "SELECT mapping_id, memory_start, memory_limit, file_offset, filename, build_id,
                        has_functions, has_filenames, has_line_numbers, has_inline_frames
                 FROM mappings WHERE mapping_id IN (
                     SELECT mapping_id FROM locations WHERE location_id IN (
                         SELECT location_id FROM stacks WHERE stack_id IN (SELECT stack_id FROM q_stacks)))",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                mappings.insert(
                    r.get(0)?,
                    Arc::new(Mapping {
                        memory_start: r.get(1)?,
                        memory_limit: r.get(2)?,
                        file_offset: r.get(3)?,
                        filename: r.get(4)?,
                        build_id: r.get(5)?,
                        has_functions: r.get(6)?,
                        has_filenames: r.get(7)?,
                        has_line_numbers: r.get(8)?,
                        has_inline_frames: r.get(9)?,
                    }),
                );
            }
        }
        let mut functions: FxHashMap<u128, Arc<Function>> = FxHashMap::default();
        {
            let mut st = conn.prepare(
                "SELECT function_id, name, system_name, filename, start_line FROM functions
                 WHERE function_id IN (SELECT function_id FROM location_lines WHERE location_id IN (
                     SELECT location_id FROM stacks WHERE stack_id IN (SELECT stack_id FROM q_stacks)))",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                functions.insert(
                    r.get(0)?,
                    Arc::new(Function {
                        name: r.get(1)?,
                        system_name: r.get(2)?,
                        filename: r.get(3)?,
                        start_line: r.get(4)?,
                    }),
                );
            }
        }
        let mut lines: FxHashMap<u128, Vec<FrameLine>> = FxHashMap::default();
        {
            let mut st = conn.prepare(
                "SELECT location_id, function_id, line, col FROM location_lines
                 WHERE location_id IN (SELECT location_id FROM stacks WHERE stack_id IN (SELECT stack_id FROM q_stacks))
                 ORDER BY location_id, pos",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let fid: u128 = r.get(1)?;
                let function = functions.get(&fid).cloned().ok_or_else(|| {
                    ColumnarError::Corrupt(format!("function {} not found", Uuid::from_u128(fid)))
                })?;
                lines.entry(r.get(0)?).or_default().push(FrameLine {
                    function_id: Uuid::from_u128(fid),
                    function,
                    line: r.get(2)?,
                    column: r.get(3)?,
                });
            }
        }
        let mut frames: FxHashMap<u128, Arc<Frame>> = FxHashMap::default();
        {
            let mut st = conn.prepare(
                "SELECT location_id, mapping_id, address, is_folded FROM locations
                 WHERE location_id IN (SELECT location_id FROM stacks WHERE stack_id IN (SELECT stack_id FROM q_stacks))",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let id: u128 = r.get(0)?;
                let mid: Option<u128> = r.get(1)?;
                let mapping = match mid {
                    None => None,
                    Some(m) => Some((
                        Uuid::from_u128(m),
                        mappings.get(&m).cloned().ok_or_else(|| {
                            ColumnarError::Corrupt(format!(
                                "mapping {} not found",
                                Uuid::from_u128(m)
                            ))
                        })?,
                    )),
                };
                frames.insert(
                    id,
                    Arc::new(Frame {
                        id: Uuid::from_u128(id),
                        address: r.get(2)?,
                        is_folded: r.get(3)?,
                        mapping,
                        lines: lines.remove(&id).unwrap_or_default(),
                    }),
                );
            }
        }
        let mut parts: FxHashMap<u32, (Vec<Arc<Frame>>, Vec<NumLabel>)> = FxHashMap::default();
        {
            let mut st = conn.prepare(
                "SELECT stack_id, location_id FROM stacks
                 WHERE stack_id IN (SELECT stack_id FROM q_stacks) ORDER BY stack_id, pos",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                let lid: u128 = r.get(1)?;
                let frame = frames.get(&lid).cloned().ok_or_else(|| {
                    ColumnarError::Corrupt(format!("location {} not found", Uuid::from_u128(lid)))
                })?;
                parts.entry(r.get(0)?).or_default().0.push(frame);
            }
        }
        {
            let mut st = conn.prepare(
                "SELECT stack_id, key, value, unit FROM stack_num_labels
                 WHERE stack_id IN (SELECT stack_id FROM q_stacks) ORDER BY stack_id, pos",
            )?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                parts.entry(r.get(0)?).or_default().1.push(NumLabel {
                    key: r.get(1)?,
                    value: r.get(2)?,
                    unit: r.get(3)?,
                });
            }
        }
        Ok(parts
            .into_iter()
            .map(|(id, (frames, num_labels))| (id, Arc::new(Stack { frames, num_labels })))
            .collect())
    }
}

impl Storage for Columnar {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn ingest_raw(
        &self,
        req: &IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<IngestSummary, IngestError> {
        Columnar::ingest_raw(self, req, raw)
    }

    fn ingest_stats(&self) -> IngestStats {
        self.stats()
    }

    fn num_series(&self) -> usize {
        Columnar::num_series(self)
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        let inner = self.inner.lock();
        let (sel, args) = sql::select_series(matchers, range);
        let mut st = inner.conn.prepare(&format!(
            "SELECT DISTINCT unnest(map_keys(labels)) FROM series WHERE series_id IN ({sel})"
        ))?;
        let mut q = st.query(params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = q.next()? {
            out.push(r.get::<_, String>(0)?);
        }
        // Byte order, as the time-series backend sorts.
        out.sort();
        Ok(out)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<String>, QueryError> {
        let inner = self.inner.lock();
        let (sel, mut args) = sql::select_series(matchers, range);
        args.insert(0, sql::Arg::Text(name.to_string()));
        let mut st = inner.conn.prepare(&format!(
            "SELECT DISTINCT v FROM (SELECT map_extract_value(labels, ?) AS v FROM series
             WHERE series_id IN ({sel})) WHERE v IS NOT NULL"
        ))?;
        let mut q = st.query(params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = q.next()? {
            out.push(r.get::<_, String>(0)?);
        }
        out.sort();
        Ok(out)
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>, QueryError> {
        let inner = self.inner.lock();
        let mut v: Vec<Labels> = inner
            .select(matchers, range)?
            .into_iter()
            .map(|i| inner.series[i as usize].labels.clone())
            .collect();
        v.sort();
        Ok(v)
    }

    fn profile_types(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<ProfileType>, QueryError> {
        let inner = self.inner.lock();
        let types: BTreeSet<ProfileType> = inner
            .select(matchers, range)?
            .into_iter()
            .map(|i| inner.series[i as usize].profile_type.clone())
            .collect();
        Ok(types.into_iter().collect())
    }

    fn query_range(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<SeriesPoints>, QueryError> {
        check_step(step)?;
        let inner = self.inner.lock();
        let (sel, sel_args) = sql::select_series(matchers, range);
        let mut args = Vec::new();
        let bucket = match step {
            // The bucket's start, computed in 128 bits: `ts - start` overflows
            // 64 bits for ranges starting at i64::MIN.
            Some(step) => {
                args.push(sql::Arg::Int(range.start));
                args.push(sql::Arg::Int(range.start));
                args.push(sql::Arg::Int(step));
                args.push(sql::Arg::Int(step));
                "CAST(?::HUGEINT + ((ts::HUGEINT - ?::HUGEINT) // ?) * ? AS BIGINT)"
            }
            None => "ts",
        };
        args.push(sql::Arg::Int(range.start));
        args.push(sql::Arg::Int(range.end));
        args.extend(sel_args);
        let mut st = inner.conn.prepare(&format!(
            "SELECT series_id, {bucket} AS t, sum(total)::HUGEINT FROM profiles
             WHERE ts BETWEEN ? AND ? AND series_id IN ({sel})
             GROUP BY ALL ORDER BY series_id, t"
        ))?;
        let mut q = st.query(params_from_iter(args.iter()))?;
        let mut out: Vec<SeriesPoints> = Vec::new();
        let mut last: Option<u32> = None;
        while let Some(r) = q.next()? {
            let id: u32 = r.get(0)?;
            let t: i64 = r.get(1)?;
            let v: i128 = r.get(2)?;
            if last != Some(id) {
                last = Some(id);
                out.push(SeriesPoints {
                    labels: inner.series[id as usize].labels.clone(),
                    points: Vec::new(),
                });
            }
            if let Some(s) = out.last_mut() {
                // Wrapping, as the head sums.
                s.points.push((t, v as i64));
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn partial(&self, matchers: &[Matcher], pick: Pick) -> Result<Partial, QueryError> {
        let range = pick.range();
        let inner = self.inner.lock();
        let ids = inner.select(matchers, range)?;
        let types: BTreeSet<ProfileType> = ids
            .iter()
            .map(|&i| inner.series[i as usize].profile_type.clone())
            .collect();
        if types.len() > 1 {
            // The query is an error: reading more would be wasted.
            return Ok(Partial {
                types,
                ..Partial::default()
            });
        }
        let (sel, sel_args) = sql::select_series(matchers, range);
        let mut args = vec![sql::Arg::Int(range.start), sql::Arg::Int(range.end)];
        args.extend(sel_args);
        let reads = match pick {
            Pick::All(_) => format!(
                "SELECT series_id, ts FROM profiles
                 WHERE ts BETWEEN ? AND ? AND series_id IN ({sel})"
            ),
            Pick::First(_) => format!(
                "SELECT series_id, min(ts) AS ts FROM profiles
                 WHERE ts BETWEEN ? AND ? AND series_id IN ({sel}) GROUP BY series_id"
            ),
        };
        let mut p = inner.partial_reads(&reads, &args)?;
        p.types = types;
        Ok(p)
    }

    fn register_metrics(self: Arc<Self>, registry: &mut Registry) -> RefreshMetrics {
        let memory: Gauge = Gauge::default();
        registry.register(
            "duckdb_memory_bytes",
            "Bytes held by DuckDB's buffer manager (duckdb_memory())",
            memory.clone(),
        );
        Box::new(move || match self.memory_bytes() {
            Ok(b) => {
                memory.set(i64::try_from(b).unwrap_or(i64::MAX));
            }
            // The gauge keeps its last value; the scrape still answers.
            Err(e) => tracing::warn!("reading DuckDB's memory use: {e}"),
        })
    }

    fn close(&self) -> Result<(), StorageError> {
        self.checkpoint()
            .map_err(|e| StorageError::new("database", e))
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Columnar>();
}
