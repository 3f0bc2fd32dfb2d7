//! The comparison runner: the time-series backend (`Tsdb`) against the DuckDB
//! columnar backend (`Columnar`), on the same generated workload, through the
//! same `Ingester` / `Querier` traits, in one run of this process.
//!
//! Run with (release build; the `duckdb` feature needs the library fetched
//! by `scripts/setup-duckdb`):
//!
//! ```text
//! eval "$(bash scripts/setup-duckdb)"
//! cargo bench --features duckdb --bench compare -- --quick          # < 2 min
//! cargo bench --features duckdb --bench compare -- --out docs/bench # full
//! ```
//!
//! Options: `--quick` (smaller scenarios, fewer query repetitions),
//! `--out DIR` (default `target/compare`), `--only NAME` (a scenario; may be
//! repeated), `--testdata DIR` (default `testdata/pprof`).
//!
//! # Scenarios
//! Each is a [`WorkloadSpec`] over the real profiles of
//! [`profstore::workload::SMALL_KINDS`] (a CPU profile with pprof labels,
//! a small service's heap profile and an fgprof profile: 121, 54 and 175
//! samples per profile; full size, `--quick` in brackets):
//! - `steady`: 100 targets × 3 kinds × 360 scrapes at 10 s (10 × 3 × 36);
//! - `cardinality`: a pprof string label with 10, 100, 1k, 10k and 100k
//!   distinct values (10, 1k, 100k), 10 targets × 1 kind × 60 scrapes
//!   (5 × 1 × 12), one run per value;
//! - `churn`: 100 targets × 1 kind × 360 scrapes, each target replaced
//!   after 5 scrapes (10 × 1 × 36);
//! - `long_range`: one target × 1 kind × 8,640 scrapes (one day at 10 s)
//!   (720: two hours);
//! - `spans`: 10 targets × 1 kind × 360 scrapes (5 × 1 × 36), a fresh
//!   `span_id` pprof label on 90 % of the samples, as a tracing
//!   integration attaches each request's span. The store keeps it per
//!   sample; the DuckDB backend makes it a series label. Both answer the
//!   same totals of merges, ranges and diffs (checked), but their results,
//!   sample counts and series differ: the store's results do not carry the
//!   span, a DuckDB "sample" and series are per span, and its single
//!   profile is each span series' first. One more query, `merge_spans_1h`, merges the CPU samples of
//!   the spans whose id starts with `0` over the hour;
//! - `real` (when `--real DIR` or `PROFSTORE_REAL_DATA` names a recorded
//!   data set): a real Go service profiled continuously, as
//!   `scripts/record-realdata` records it (CPU over each 10 s, and heap,
//!   allocs, goroutine, mutex and block snapshots every 10 s, the bytes as
//!   the service sent them), one run per profile kind over every recorded
//!   scrape (`--quick`: the first 36). Timestamps are moved onto the
//!   workload's grid (the recording's own are 10 s apart too). The
//!   report adds the kinds up ("all kinds together": bytes of every kind's
//!   store over every kind's samples, next to the gzipped bodies as sent).
//!
//! `steady`, `churn` and `long_range` are measured at a quarter, half and
//! all of their scrapes, so the figures show growth with data size.
//!
//! # Setup (what makes the comparison fair)
//! - Both backends persist to a fresh directory on the same disk and sync
//!   every acknowledged write: the store's write-ahead log with
//!   [`SyncPolicy::Always`] (its default is a 1 s group commit), DuckDB's
//!   own log at each transaction's commit.
//! - Both acknowledge a scrape round (every target's profiles of that
//!   round) at one sync: DuckDB in one transaction
//!   ([`Columnar::ingest_batch`], its strongest write pattern), the store
//!   with one commit of its log ([`Tsdb::ingest_batch`]). DuckDB also gets
//!   its strongest layout: dense 32-bit stack ids on the sample rows.
//! - The store cuts blocks as the daemon's maintenance thread would
//!   (`compact()` when the head spans 1.5 blocks), inside the timed ingest;
//!   its clock follows the workload's time (each request's receive time),
//!   so "now" is the newest scrape, as for a daemon receiving it live.
//! - Requests are generated before the clock starts, each with its pprof
//!   gzipped at level 1 as Go's `runtime/pprof` sends it; only the ingest
//!   call is timed. It is the daemon's path after decoding: the store's WAL
//!   logs those bytes as received, DuckDB keeps only the rows.
//! - After each checkpoint every query kind runs `reps` times (7; quick 5)
//!   over windows stepping back from the newest data, and the two backends'
//!   answers are checked to agree (totals of every merge and range query).
//!
//! # Figures
//! - ingest profiles/s and samples/s (a sample = one (stack, value) row of
//!   one series; both backends count them the same way);
//! - memory: bytes per sample in the backend's own structures (store: head
//!   chunks + postings + block indexes; DuckDB: `duckdb_memory()`), and the
//!   peak RSS growth of the process during the run (`VmHWM`, reset through
//!   `/proc/self/clear_refs` before each backend; freed memory is returned
//!   with `malloc_trim` in between);
//! - disk: bytes per sample after everything is in its final on-disk form
//!   (store: every head series cut into blocks, then the meta store's
//!   garbage collected as the daemon's maintenance does after a cut;
//!   DuckDB: after `CHECKPOINT`), at the last checkpoint of each run;
//! - latency p50 / p99 per query kind (nearest rank: with 5 or 7
//!   repetitions, p99 is the slowest one).
//!
//! # Parca's layout
//! At the last checkpoint of each run of at most [`LAYOUT_MAX_SAMPLES`]
//! samples, the DuckDB backend's rows are rewritten in Parca's own layout
//! (`profstore::columnar::Wide`: labels as a `MAP`, the stack inline as
//! `LIST<STRUCT>`) by one bulk load, and merges, range queries and series
//! over the newest hour are timed in both layouts, answers checked to
//! agree: rows/s of the build, bytes on disk and in memory, p50s.
//!
//! Output: `compare.md` (the tables, also printed), `compare.json` (every
//! figure) and one SVG per scenario in `--out`.

use clap::Parser;
use flate2::write::GzEncoder;
use flate2::Compression;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use profstore::columnar::Columnar;
use profstore::engine::Limits;
use profstore::engine::{Storage, TimeRange};
use profstore::ingest::{Clock, IngestError, IngestRequest, IngestSummary};
use profstore::model::{parse_selector, Matcher};
use profstore::proto::pprof::Profile;
use profstore::tsdb::wal::{SyncPolicy, WalOptions};
use profstore::tsdb::{Tsdb, TsdbConfig};
use profstore::workload::{Kind, Workload, WorkloadSpec, SMALL_KINDS};
use prost::Message;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Compare the time-series backend and the DuckDB backend")]
struct Args {
    /// Smaller scenarios (under 2 minutes on 2 cores).
    #[arg(long)]
    quick: bool,
    /// Where to write compare.md, compare.json and the plots.
    #[arg(long, default_value = "target/compare")]
    out: PathBuf,
    /// Run only these scenarios.
    #[arg(long)]
    only: Vec<String>,
    /// The profiles the workload is made of.
    #[arg(long, default_value = "testdata/pprof")]
    testdata: PathBuf,
    /// A data set recorded by `scripts/record-realdata`: adds the `real`
    /// scenario.
    #[arg(long, env = "PROFSTORE_REAL_DATA")]
    real: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the runner needs from a backend beyond the traits.
trait Subject: Storage + Sized {
    const NAME: &'static str;
    /// A fresh backend persisting into `dir`.
    fn open(dir: &Path) -> Self;
    /// Stores one scrape round's requests (each with its pprof as sent) at
    /// one sync, calling `each` with what each stored profile wrote.
    fn ingest_round(
        &self,
        reqs: &[(IngestRequest, Vec<u8>)],
        each: &mut dyn FnMut(&IngestSummary),
    ) -> Result<(), IngestError>;
    /// Bytes held in the backend's own in-memory structures.
    fn memory_bytes(&self) -> u64;
    /// Puts everything into its final on-disk form; returns the bytes on
    /// disk under `dir`.
    fn settle_on_disk(&self, dir: &Path) -> u64;
    /// The figures of Parca's layout built from this backend's data (see
    /// [`parca_layout`]), for the DuckDB backend.
    fn parca_layout(
        &self,
        _q: &LayoutQueries,
        _reps: usize,
    ) -> Result<Option<Layout>, Box<dyn std::error::Error>> {
        Ok(None)
    }
}

/// The store's clock in the runner: moved to each request's receive time
/// before it is ingested, so the store cuts its head as a daemon receiving
/// the workload live would. (The workload's timestamps are in the past:
/// with the system clock every range would be due for a cut as soon as it
/// had data, and later profiles of the range would go to the late head.)
fn store_clock() -> &'static Arc<AtomicI64> {
    static NOW: OnceLock<Arc<AtomicI64>> = OnceLock::new();
    NOW.get_or_init(|| Arc::new(AtomicI64::new(0)))
}

impl Subject for Tsdb {
    const NAME: &'static str = "time-series";
    fn open(dir: &Path) -> Self {
        let mut limits = Limits::default();
        store_clock().store(0, Ordering::SeqCst);
        limits.time.clock = Clock::manual(store_clock().clone());
        Tsdb::open(TsdbConfig {
            data_dir: Some(dir.to_path_buf()),
            limits,
            wal: WalOptions {
                sync: SyncPolicy::Always,
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("open the store")
    }
    /// One log commit (one sync) per scrape round ([`Tsdb::ingest_batch`]),
    /// as DuckDB commits one transaction per round; then the maintenance
    /// the daemon's thread would run. The clock is the round's newest
    /// receive time.
    fn ingest_round(
        &self,
        reqs: &[(IngestRequest, Vec<u8>)],
        each: &mut dyn FnMut(&IngestSummary),
    ) -> Result<(), IngestError> {
        for (req, _) in reqs {
            store_clock().fetch_max(req.received_at_ms, Ordering::SeqCst);
        }
        each_stored(self.ingest_batch(&as_batch(reqs)), each)?;
        if self.needs_maintenance() {
            self.maintain().expect("maintain");
        }
        Ok(())
    }
    fn memory_bytes(&self) -> u64 {
        let head = self.head();
        (head.chunk_bytes() + head.postings_bytes()) as u64
            + self.maintenance_stats().block_memory_bytes as u64
    }
    fn settle_on_disk(&self, dir: &Path) -> u64 {
        self.cut_all().expect("cut the head into blocks");
        // As the daemon's maintenance does once blocks are written: the
        // blocks carry their own symbols, so the meta store keeps only what
        // the (now empty) head still refers to.
        self.collect_garbage()
            .expect("collect the meta store's garbage");
        self.flush().expect("flush");
        dir_bytes(dir)
    }
}

impl Subject for Columnar {
    const NAME: &'static str = "columnar";
    fn open(dir: &Path) -> Self {
        Columnar::open(Some(&dir.join("profiles.duckdb"))).expect("open the DuckDB backend")
    }
    /// One transaction per scrape round ([`Columnar::ingest_batch`]): the
    /// strongest use of DuckDB's appender, acknowledging the round's
    /// profiles when it commits.
    fn ingest_round(
        &self,
        reqs: &[(IngestRequest, Vec<u8>)],
        each: &mut dyn FnMut(&IngestSummary),
    ) -> Result<(), IngestError> {
        each_stored(self.ingest_batch(&as_batch(reqs)), each)
    }
    fn memory_bytes(&self) -> u64 {
        Columnar::memory_bytes(self).expect("duckdb_memory()")
    }
    fn parca_layout(
        &self,
        q: &LayoutQueries,
        reps: usize,
    ) -> Result<Option<Layout>, Box<dyn std::error::Error>> {
        parca_layout(self, q, reps).map(Some)
    }
    fn settle_on_disk(&self, dir: &Path) -> u64 {
        self.checkpoint().expect("CHECKPOINT");
        dir_bytes(dir)
    }
}

/// A round's requests as a batch for `ingest_batch`, each with its bytes.
fn as_batch(reqs: &[(IngestRequest, Vec<u8>)]) -> Vec<(&IngestRequest, Option<&[u8]>)> {
    reqs.iter()
        .map(|(r, raw)| (r, Some(raw.as_slice())))
        .collect()
}

/// Calls `each` with every stored profile's summary; the first error ends
/// the run.
fn each_stored(
    results: Vec<Result<IngestSummary, IngestError>>,
    each: &mut dyn FnMut(&IngestSummary),
) -> Result<(), IngestError> {
    for r in results {
        each(&r?);
    }
    Ok(())
}

/// A profile's bytes as a Go program sends them: `runtime/pprof` gzips at
/// level 1 (`gzip.BestSpeed`).
fn as_sent(p: &Profile) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing into a Vec cannot fail (it only allocates).
    gz.write_all(&p.encode_to_vec())
        .expect("gzip into a Vec cannot fail");
    gz.finish().expect("gzip into a Vec cannot fail")
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

/// Bytes of each top-level entry of `dir`, by name.
fn dir_parts(dir: &Path) -> Vec<(String, u64)> {
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            };
            (name, bytes)
        })
        .collect();
    parts.sort();
    parts
}

/// One run of a workload: an x value on the scenario's plots, the spec, how
/// many kinds, and after how many scrapes to measure.
struct Run {
    x: f64,
    spec: WorkloadSpec,
    kinds: usize,
    checkpoints: Vec<usize>,
    /// Recorded profiles replayed instead of the generated ones (the `real`
    /// scenario): one kind, one target.
    recorded: Option<std::sync::Arc<Recorded>>,
}

/// One kind of a recorded data set: its name and each scrape's profile as
/// the service sent it.
struct Recorded {
    kind: String,
    bodies: Vec<Vec<u8>>,
}

impl Recorded {
    /// The kinds of the data set in `dir` (`<kind>/<ms>.pb.gz`), each with its
    /// first `limit` scrapes in time order.
    fn load(dir: &Path, limit: usize) -> Result<Vec<Recorded>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        for kind in ["cpu", "heap", "allocs", "goroutine", "mutex", "block"] {
            let d = dir.join(kind);
            let mut files: Vec<(i64, PathBuf)> = std::fs::read_dir(&d)
                .map_err(|e| format!("{}: {e}", d.display()))?
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let ms = name.strip_suffix(".pb.gz")?.parse().ok()?;
                    Some((ms, e.path()))
                })
                .collect();
            files.sort();
            files.truncate(limit);
            let bodies = files
                .iter()
                .map(|(_, p)| std::fs::read(p))
                .collect::<Result<Vec<_>, _>>()?;
            if bodies.is_empty() {
                return Err(format!("{}: no profiles", d.display()).into());
            }
            out.push(Recorded {
                kind: kind.to_string(),
                bodies,
            });
        }
        Ok(out)
    }

    /// Scrape `s` as a request of the workload's target 0 (labels and
    /// timestamp as `spec` gives them), with the bytes as sent.
    fn request(
        &self,
        spec: &WorkloadSpec,
        s: usize,
    ) -> Result<(IngestRequest, Vec<u8>), Box<dyn std::error::Error>> {
        let raw = self.bodies[s].clone();
        let mut profile = profstore::pprof::decode(&raw, &Default::default())?;
        let ts = spec.timestamp(0, s);
        profile.time_nanos = ts.saturating_mul(1_000_000);
        let req = IngestRequest {
            name: None,
            labels: profstore::model::labels::Labels::from_pairs([
                ("job", "workload".to_string()),
                ("kind", self.kind.clone()),
                ("instance", spec.instance(0, s)),
            ]),
            delta: None,
            profile,
            received_at_ms: ts,
        };
        Ok((req, raw))
    }
}

struct Scenario {
    /// Per-sample span ids: the backends' sample counts and result samples
    /// differ, only totals are compared.
    spans: bool,
    name: &'static str,
    what: String,
    x_name: &'static str,
    runs: Vec<Run>,
}

/// The `real` scenario over a recorded data set: one run per kind.
fn real_scenario(dir: &Path, quick: bool) -> Result<Scenario, Box<dyn std::error::Error>> {
    let limit = if quick { 36 } else { usize::MAX };
    let kinds = Recorded::load(dir, limit)?;
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap_or_default();
    let service = serde_json::from_str::<serde_json::Value>(&meta)
        .ok()
        .and_then(|m| Some(format!("{}, {}", m["service"].as_str()?, m["go"].as_str()?)))
        .unwrap_or_else(|| "a recorded service".into());
    let runs: Vec<Run> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let spec = WorkloadSpec {
                targets: 1,
                scrapes: k.bodies.len(),
                lifetime_scrapes: None,
                label_cardinality: 0,
                ..Default::default()
            };
            Run {
                x: (i + 1) as f64,
                checkpoints: vec![spec.scrapes],
                spec,
                kinds: 1,
                recorded: Some(std::sync::Arc::new(k)),
            }
        })
        .collect();
    let scrapes: Vec<String> = runs
        .iter()
        .map(|r| {
            let k = r.recorded.as_ref().map_or("", |k| k.kind.as_str());
            format!("{k} {}", r.spec.scrapes)
        })
        .collect();
    Ok(Scenario {
        spans: false,
        name: "real",
        what: format!(
            "{service}; scraped every 10 s (scrapes per kind: {}); one run per kind",
            scrapes.join(", ")
        ),
        x_name: "profile kind (1 cpu, 2 heap, 3 allocs, 4 goroutine, 5 mutex, 6 block)",
        runs,
    })
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    let checkpoints = |n: usize| vec![n / 4, n / 2, n];
    let base = WorkloadSpec {
        lifetime_scrapes: None,
        label_cardinality: 0,
        ..Default::default()
    };
    let steady = WorkloadSpec {
        targets: q(100, 10),
        scrapes: q(360, 36),
        ..base.clone()
    };
    let churn = WorkloadSpec {
        targets: q(100, 10),
        scrapes: q(360, 36),
        lifetime_scrapes: Some(5),
        ..base.clone()
    };
    let long = WorkloadSpec {
        targets: 1,
        scrapes: q(8640, 720),
        ..base.clone()
    };
    let spans = WorkloadSpec {
        targets: q(10, 5),
        scrapes: q(360, 36),
        span_percent: 90,
        ..base.clone()
    };
    let cardinalities: &[usize] = if quick {
        &[10, 1_000, 100_000]
    } else {
        &[10, 100, 1_000, 10_000, 100_000]
    };
    let card_runs = cardinalities
        .iter()
        .map(|&c| {
            let spec = WorkloadSpec {
                targets: q(10, 5),
                scrapes: q(60, 12),
                label_cardinality: c,
                ..base.clone()
            };
            Run {
                x: c as f64,
                checkpoints: vec![spec.scrapes],
                spec,
                kinds: 1,
                recorded: None,
            }
        })
        .collect();
    let one = |spec: WorkloadSpec, kinds: usize| Run {
        x: 0.0,
        checkpoints: checkpoints(spec.scrapes),
        spec,
        kinds,
        recorded: None,
    };
    let describe = |s: &WorkloadSpec, k: usize| {
        format!(
            "{} targets × {k} kinds × {} scrapes at {} s",
            s.targets,
            s.scrapes,
            s.interval_ms / 1000
        )
    };
    vec![
        Scenario {
            spans: false,
            name: "steady",
            what: describe(&steady, 3),
            x_name: "samples stored",
            runs: vec![one(steady, 3)],
        },
        Scenario {
            spans: false,
            name: "cardinality",
            what: format!(
                "pprof label `endpoint` with {cardinalities:?} distinct values; {} targets × 1 kind × {} scrapes",
                q(10, 5),
                q(60, 12)
            ),
            x_name: "distinct pprof label values",
            runs: card_runs,
        },
        Scenario {
            spans: false,
            name: "churn",
            what: format!("{}; every target lives 5 scrapes", describe(&churn, 1)),
            x_name: "samples stored",
            runs: vec![one(churn, 1)],
        },
        Scenario {
            spans: false,
            name: "long_range",
            what: describe(&long, 1),
            x_name: "samples stored",
            runs: vec![one(long, 1)],
        },
        Scenario {
            spans: true,
            name: "spans",
            what: format!(
                "{}; a fresh `span_id` on 90 % of the samples",
                describe(&spans, 1)
            ),
            x_name: "samples stored",
            runs: vec![one(spans, 1)],
        },
    ]
}

/// The query kinds, in table order.
const QUERIES: &[&str] = &[
    "labels",
    "label_values",
    "series",
    "profile_types",
    "range_one_1h",
    "range_all_1h",
    "single_one",
    "merge_one_1h",
    "merge_all_1h",
    "merge_one_all_time",
    "diff_all_1h",
    "merge_spans_1h",
];

/// Every figure of one backend at one checkpoint.
#[derive(Debug, Clone, Serialize)]
struct Point {
    scenario: String,
    backend: String,
    x: f64,
    scrapes: usize,
    profiles: u64,
    samples: u64,
    /// Ingest time of the profiles since the previous checkpoint (s).
    ingest_secs: f64,
    /// Profiles and samples since the previous checkpoint.
    segment_profiles: u64,
    segment_samples: u64,
    memory_bytes: u64,
    peak_rss_growth_bytes: u64,
    disk_bytes: Option<u64>,
    /// Bytes of each top-level entry of the data directory (the store's
    /// `blocks`, `meta`, `wal`, …; DuckDB's database and its WAL), with
    /// `disk_bytes`.
    disk_parts: Vec<(String, u64)>,
    /// Query kind → (p50, p99) in ms.
    latency_ms: BTreeMap<String, (f64, f64)>,
    /// Query kind → a checksum of the answers (sum of totals), to compare
    /// the backends.
    #[serde(skip)]
    answers: BTreeMap<String, i128>,
    /// Parca's layout built from the DuckDB backend's rows, at the last
    /// checkpoint of a run of at most [`LAYOUT_MAX_SAMPLES`].
    parca_layout: Option<Layout>,
}

impl Point {
    fn samples_per_s(&self) -> f64 {
        self.segment_samples as f64 / self.ingest_secs
    }
    fn memory_per_sample(&self) -> f64 {
        self.memory_bytes as f64 / self.samples as f64
    }
    fn disk_per_sample(&self) -> Option<f64> {
        self.disk_bytes.map(|d| d as f64 / self.samples as f64)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let kinds = Kind::load(&args.testdata, SMALL_KINDS, 3)?;
    let mut scenarios = scenarios(args.quick);
    if let Some(dir) = &args.real {
        scenarios.push(real_scenario(dir, args.quick)?);
    }
    if !args.only.is_empty() {
        scenarios.retain(|s| args.only.iter().any(|o| o == s.name));
        if scenarios.is_empty() {
            return Err(format!("no scenario named {:?}", args.only).into());
        }
    }
    let reps = if args.quick { 5 } else { 7 };
    std::fs::create_dir_all(&args.out)?;
    let total: u64 = scenarios
        .iter()
        .flat_map(|s| &s.runs)
        .map(|r| 2 * r.spec.requests(r.kinds) as u64)
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} profiles  eta {eta}  {msg}",
        )?
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut points: Vec<Point> = Vec::new();
    for sc in &scenarios {
        for run in &sc.runs {
            let kinds = kinds[..run.kinds].to_vec();
            let ts = measure::<Tsdb>(sc, run, &kinds, reps, &bar)?;
            let col = measure::<Columnar>(sc, run, &kinds, reps, &bar)?;
            for (a, b) in ts.iter().zip(&col) {
                check_agreement(a, b, sc.spans)?;
            }
            points.extend(ts);
            points.extend(col);
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let md = report(&scenarios, &points, args.quick, reps, elapsed);
    println!("{md}");
    std::fs::write(args.out.join("compare.md"), &md)?;
    std::fs::write(
        args.out.join("compare.json"),
        serde_json::to_string_pretty(&points)?,
    )?;
    for sc in &scenarios {
        let path = args.out.join(format!("{}.svg", sc.name));
        plot(sc, &points, &path)?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!(
        "compare: {} scenarios in {:.1} s; tables in {}",
        scenarios.len(),
        elapsed.as_secs_f64(),
        args.out.join("compare.md").display()
    );
    Ok(())
}

/// The two backends must have stored the same samples and answered every
/// query alike.
fn check_agreement(a: &Point, b: &Point, spans: bool) -> Result<(), String> {
    if a.samples != b.samples && !spans {
        return Err(format!(
            "{} at {} scrapes: {} stored {} samples, {} stored {}",
            a.scenario, a.scrapes, a.backend, a.samples, b.backend, b.samples
        ));
    }
    // With spans the DuckDB backend has a series per span: its label names
    // include `span_id`, its series are per span, and its "single profile"
    // is each span series' first profile. Totals of merges, ranges and
    // diffs must still agree.
    let kept = |p: &Point| -> BTreeMap<String, i128> {
        p.answers
            .iter()
            .filter(|(k, _)| {
                !spans
                    || k.starts_with("merge_")
                    || k.starts_with("range_")
                    || k.starts_with("diff_")
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    if kept(a) != kept(b) {
        return Err(format!(
            "{} at {} scrapes: the answers differ:\n  {}: {:?}\n  {}: {:?}",
            a.scenario, a.scrapes, a.backend, a.answers, b.backend, b.answers
        ));
    }
    Ok(())
}

/// Ingests `run` into a fresh `B`, measuring at each checkpoint.
fn measure<B: Subject>(
    sc: &Scenario,
    run: &Run,
    kinds: &[Kind],
    reps: usize,
    bar: &ProgressBar,
) -> Result<Vec<Point>, Box<dyn std::error::Error>> {
    trim_and_reset_peak();
    let rss0 = rss_bytes();
    let dir = tempfile::tempdir()?;
    let backend = B::open(dir.path());
    let workload = Workload::new(run.spec.clone(), kinds.to_vec());
    let per_scrape = run.spec.targets * kinds.len();
    let mut points = Vec::new();
    let (mut profiles, mut samples) = (0u64, 0u64);
    let mut done_scrapes = 0;
    let mut cpu_type: Option<String> = None;
    for (i, &upto) in run.checkpoints.iter().enumerate() {
        bar.set_message(format!("{} x={} {}: ingest", sc.name, run.x, B::NAME));
        let (mut secs, mut seg_p, mut seg_s) = (0.0, 0u64, 0u64);
        for s in done_scrapes..upto {
            // One scrape's requests, generated (and gzipped as a client
            // sends them) before the clock starts.
            let reqs: Vec<(IngestRequest, Vec<u8>)> = match &run.recorded {
                Some(rec) => vec![rec.request(&run.spec, s)?],
                None => (0..run.spec.targets)
                    .flat_map(|n| (0..kinds.len()).map(move |k| (n, k)))
                    .map(|(n, k)| {
                        let req = workload.request(s, n, k);
                        let raw = as_sent(&req.profile);
                        (req, raw)
                    })
                    .collect(),
            };
            let t = Instant::now();
            backend.ingest_round(&reqs, &mut |summary| {
                seg_p += 1;
                seg_s += summary.samples as u64;
                if cpu_type.is_none() {
                    cpu_type = summary
                        .profile_types
                        .iter()
                        .find(|t| t.contains(":cpu:nanoseconds:"))
                        .or(summary.profile_types.first())
                        .cloned();
                }
            })?;
            secs += t.elapsed().as_secs_f64();
            bar.inc(per_scrape as u64);
        }
        done_scrapes = upto;
        profiles += seg_p;
        samples += seg_s;
        bar.set_message(format!("{} x={} {}: queries", sc.name, run.x, B::NAME));
        let cpu = cpu_type.clone().ok_or("the workload stored no profile")?;
        let newest = run.spec.timestamp(run.spec.targets - 1, upto - 1);
        let (latency_ms, answers) =
            queries(&backend, &run.spec, upto, newest, &cpu, reps, sc.spans)?;
        let last = i + 1 == run.checkpoints.len();
        // Memory before the store moves its head into blocks.
        let memory_bytes = backend.memory_bytes();
        let disk_bytes = last.then(|| backend.settle_on_disk(dir.path()));
        let disk_parts = if last {
            dir_parts(dir.path())
        } else {
            Vec::new()
        };
        // Before Parca's layout is built in this process.
        let peak_rss_growth_bytes = peak_rss_bytes().saturating_sub(rss0);
        let parca_layout = if last && samples <= LAYOUT_MAX_SAMPLES {
            bar.set_message(format!(
                "{} x={} {}: Parca's layout",
                sc.name,
                run.x,
                B::NAME
            ));
            let q = LayoutQueries::new(&run.spec, upto, newest, &cpu, dir.path())?;
            backend.parca_layout(&q, reps)?
        } else {
            None
        };
        points.push(Point {
            scenario: sc.name.to_string(),
            backend: B::NAME.to_string(),
            x: if run.x > 0.0 { run.x } else { samples as f64 },
            scrapes: upto,
            profiles,
            samples,
            ingest_secs: secs,
            segment_profiles: seg_p,
            segment_samples: seg_s,
            memory_bytes,
            peak_rss_growth_bytes,
            disk_bytes,
            disk_parts,
            latency_ms,
            answers,
            parca_layout,
        });
    }
    drop(backend);
    Ok(points)
}

/// Runs up to this many samples also get Parca's layout measured (its
/// bulk build and its merges take seconds per million rows).
const LAYOUT_MAX_SAMPLES: u64 = 2_000_000;

/// The queries both DuckDB layouts answer, over the newest hour.
struct LayoutQueries {
    hour: TimeRange,
    all: Vec<Matcher>,
    one: Vec<Matcher>,
    path: PathBuf,
}

impl LayoutQueries {
    fn new(
        spec: &WorkloadSpec,
        scrapes: usize,
        newest: i64,
        cpu: &str,
        dir: &Path,
    ) -> Result<LayoutQueries, Box<dyn std::error::Error>> {
        const HOUR: i64 = 3600 * 1000;
        Ok(LayoutQueries {
            hour: TimeRange::new((newest - HOUR).max(spec.start_ms), newest)?,
            all: parse_selector(&format!(r#"{{__name__="{cpu}"}}"#))?,
            one: parse_selector(&format!(
                r#"{{__name__="{cpu}", instance="{}"}}"#,
                spec.instance(0, scrapes - 1)
            ))?,
            path: dir.join("parca-layout.duckdb"),
        })
    }
}

/// Parca's layout next to the flat one, on the same rows (see
/// `profstore::columnar::Wide`).
#[derive(Debug, Clone, Serialize)]
struct Layout {
    rows: u64,
    /// The bulk `CREATE TABLE … AS SELECT` from the flat tables (s).
    build_secs: f64,
    disk_bytes: u64,
    /// `duckdb_memory()` of the wide database after its queries.
    memory_bytes: u64,
    /// Query kind → (wide p50, flat p50) in ms, the same windows.
    latency_ms: BTreeMap<String, (f64, f64)>,
}

/// Builds Parca's layout from `c`'s rows, then times merges, range queries
/// and series over the newest hour in both layouts and checks that they
/// agree.
fn parca_layout(
    c: &Columnar,
    q: &LayoutQueries,
    reps: usize,
) -> Result<Layout, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let w = c.export_wide(&q.path)?;
    let build_secs = t.elapsed().as_secs_f64();
    let disk_bytes = std::fs::metadata(&q.path)?.len();
    let mut latency_ms = BTreeMap::new();
    type Run<'a> = Box<dyn Fn() -> Result<(u64, i128), Box<dyn std::error::Error>> + 'a>;
    let kinds: Vec<(&str, Run, Run)> = vec![
        (
            "merge_one_1h",
            Box::new(|| Ok(w.merge(&q.one, q.hour).map(|a| (0, a.total))?)),
            Box::new(|| Ok((0, i128::from(c.merge(&q.one, q.hour)?.total())))),
        ),
        (
            "merge_all_1h",
            Box::new(|| Ok(w.merge(&q.all, q.hour).map(|a| (0, a.total))?)),
            Box::new(|| Ok((0, i128::from(c.merge(&q.all, q.hour)?.total())))),
        ),
        (
            "range_all_1h",
            Box::new(|| Ok(w.range(&q.all, q.hour).map(|a| (a.groups, a.total))?)),
            Box::new(|| {
                let pts = c.query_range(&q.all, q.hour, None)?;
                let n = pts.iter().map(|p| p.points.len() as u64).sum();
                let sum = pts
                    .iter()
                    .flat_map(|p| p.points.iter().map(|&(_, v)| i128::from(v)))
                    .sum();
                Ok((n, sum))
            }),
        ),
        (
            "series",
            Box::new(|| Ok(w.series(&q.all, q.hour).map(|a| (a.groups, 0))?)),
            Box::new(|| Ok((c.series(&q.all, q.hour)?.len() as u64, 0))),
        ),
    ];
    for (name, wide, flat) in &kinds {
        let (mut tw, mut tf) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            let a = wide()?;
            tw.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let b = flat()?;
            tf.push(t.elapsed().as_secs_f64() * 1e3);
            if a != b {
                return Err(format!(
                    "Parca's layout answers {name} with {a:?}, the flat one {b:?}"
                )
                .into());
            }
        }
        tw.sort_by(f64::total_cmp);
        tf.sort_by(f64::total_cmp);
        latency_ms.insert(name.to_string(), (percentile(&tw, 50), percentile(&tf, 50)));
    }
    let layout = Layout {
        rows: w.rows()?,
        build_secs,
        disk_bytes,
        memory_bytes: w.memory_bytes()?,
        latency_ms,
    };
    drop(kinds);
    drop(w);
    std::fs::remove_file(&q.path)?;
    // DuckDB's log of the file, when one is left.
    let _ = std::fs::remove_file(q.path.with_extension("duckdb.wal"));
    Ok(layout)
}

type QueryFigures = (BTreeMap<String, (f64, f64)>, BTreeMap<String, i128>);

/// Runs every query kind `reps` times; returns (p50, p99) in ms and a
/// checksum of the answers per kind.
fn queries<B: Subject>(
    b: &B,
    spec: &WorkloadSpec,
    scrapes: usize,
    newest: i64,
    cpu: &str,
    reps: usize,
    spans: bool,
) -> Result<QueryFigures, Box<dyn std::error::Error>> {
    const HOUR: i64 = 3600 * 1000;
    let oldest = spec.start_ms;
    let sel =
        |s: &str| -> Result<Vec<Matcher>, Box<dyn std::error::Error>> { Ok(parse_selector(s)?) };
    let all = sel(&format!(r#"{{__name__="{cpu}"}}"#))?;
    let job = sel(r#"{job="workload"}"#)?;
    let whole = TimeRange::new(oldest, newest)?;
    let mut lat: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    let mut time = |name: &str, f: &mut dyn FnMut() -> Result<i128, Box<dyn std::error::Error>>| {
        let t = Instant::now();
        let r = f();
        lat.entry(name.to_string())
            .or_default()
            .push(t.elapsed().as_secs_f64() * 1e3);
        r.map(|v| *sums.entry(name.to_string()).or_default() += v)
    };
    // A checksum of a profile: its total and its number of samples (with
    // spans, the DuckDB backend's samples are per span: the total only).
    let total = |p: &profstore::model::Profile| -> i128 {
        let n = if spans { 0 } else { p.samples.len() as i128 };
        i128::from(p.total()) * 1_000_003 + n
    };
    let span_sel = sel(&format!(r#"{{__name__="{cpu}", span_id=~"0.*"}}"#))?;
    for r in 0..reps {
        // Windows step back from the newest data, 1/reps of the span each.
        let span = (newest - oldest).max(1);
        let end = newest - (span * r as i64) / (reps as i64 * 2);
        let hour = TimeRange::new((end - HOUR).max(oldest), end)?;
        let half = TimeRange::new((end - HOUR / 2).max(oldest), end)?;
        let first_half = TimeRange::new(hour.start, half.start.max(hour.start))?;
        // One target: slot r's instance at the checkpoint's last scrape.
        let n = r % spec.targets;
        let one = sel(&format!(
            r#"{{__name__="{cpu}", instance="{}"}}"#,
            spec.instance(n, scrapes - 1)
        ))?;
        time("labels", &mut || {
            Ok(b.label_names(&job, whole)?.len() as i128)
        })?;
        time("label_values", &mut || {
            Ok(b.label_values("instance", &job, whole)?.len() as i128)
        })?;
        time("series", &mut || {
            Ok(b.series(&sel(r#"{kind="cpu"}"#)?, hour)?.len() as i128)
        })?;
        time("profile_types", &mut || {
            Ok(b.profile_types(&job, whole)?.len() as i128)
        })?;
        let range_sum = |pts: Vec<profstore::engine::SeriesPoints>| -> i128 {
            pts.iter()
                .flat_map(|s| s.points.iter().map(|&(_, v)| i128::from(v)))
                .sum()
        };
        time("range_one_1h", &mut || {
            Ok(range_sum(b.query_range(&one, hour, Some(60_000))?))
        })?;
        time("range_all_1h", &mut || {
            Ok(range_sum(b.query_range(&all, hour, Some(60_000))?))
        })?;
        // A scrape time of the target inside the hour.
        // (Under churn, only while the newest generation lives.)
        let mut s = scrapes.saturating_sub(1 + r * scrapes / (reps * 2));
        if spec.generation(n, s) != spec.generation(n, scrapes - 1) {
            s = scrapes - 1;
        }
        let at = spec.timestamp(n, s);
        time("single_one", &mut || Ok(total(&b.single(&one, at)?)))?;
        time("merge_one_1h", &mut || Ok(total(&b.merge(&one, hour)?)))?;
        time("merge_all_1h", &mut || Ok(total(&b.merge(&all, hour)?)))?;
        time("merge_one_all_time", &mut || {
            Ok(total(&b.merge(&one, whole)?))
        })?;
        time("diff_all_1h", &mut || {
            Ok(total(&b.diff((&all, first_half), (&all, half))?))
        })?;
        if spans {
            time("merge_spans_1h", &mut || {
                Ok(total(&b.merge(&span_sel, hour)?))
            })?;
        }
    }
    let figures = lat
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k, (percentile(&v, 50), percentile(&v, 99)))
        })
        .collect();
    Ok((figures, sums))
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], p: usize) -> f64 {
    let rank = (p * v.len()).div_ceil(100).max(1);
    v[rank - 1]
}

/// Returns freed heap to the system and resets the peak RSS mark.
fn trim_and_reset_peak() {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    // "5" resets VmHWM to the current RSS (Linux ≥ 4.0); without it the peak
    // is the process's since start.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_bytes() -> u64 {
    status_kb("VmRSS:") * 1024
}

fn peak_rss_bytes() -> u64 {
    status_kb("VmHWM:") * 1024
}

// ---- the report ----

fn ratio(ts: f64, col: f64) -> String {
    if col > 0.0 && ts.is_finite() && col.is_finite() {
        format!("{:.2}", ts / col)
    } else {
        "–".into()
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn report(
    scenarios: &[Scenario],
    points: &[Point],
    quick: bool,
    reps: usize,
    elapsed: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Mode: {}; {reps} repetitions per query kind; {:.0} s in all. \
         Ratio = time-series / columnar (above 1: the time-series backend has more of it).\n",
        if quick { "quick" } else { "full" },
        elapsed.as_secs_f64()
    );
    for sc in scenarios {
        let _ = writeln!(md, "### {}\n\n{}\n", sc.name, sc.what);
        let mine: Vec<&Point> = points.iter().filter(|p| p.scenario == sc.name).collect();
        // The summary: each run's last checkpoint.
        let finals: Vec<(&Run, &Point, &Point)> = sc
            .runs
            .iter()
            .filter_map(|r| {
                let last = |b: &str| {
                    mine.iter()
                        .rev()
                        .find(|p| p.backend == b && (r.x == 0.0 || p.x == r.x))
                        .copied()
                };
                Some((r, last(Tsdb::NAME)?, last(Columnar::NAME)?))
            })
            .collect();
        for (run, ts, col) in finals {
            if let Some(rec) = &run.recorded {
                let _ = writeln!(md, "**kind = {}**\n", rec.kind);
            } else if sc.runs.len() > 1 {
                let _ = writeln!(md, "**{} = {}**\n", sc.x_name, ts.x);
            }
            let _ = writeln!(
                md,
                "| figure ({} profiles, {} samples) | time-series | columnar | ratio |",
                ts.profiles, ts.samples
            );
            let _ = writeln!(md, "|---|---:|---:|---:|");
            let mut row = |name: &str, a: f64, b: f64| {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} |",
                    fmt_num(a),
                    fmt_num(b),
                    ratio(a, b)
                );
            };
            let all_secs = |p: &Point| -> f64 {
                mine.iter()
                    .filter(|q| q.backend == p.backend && q.scrapes <= p.scrapes)
                    .filter(|q| sc.runs.len() == 1 || q.x == p.x)
                    .map(|q| q.ingest_secs)
                    .sum()
            };
            row(
                "ingest profiles/s",
                ts.profiles as f64 / all_secs(ts),
                col.profiles as f64 / all_secs(col),
            );
            row(
                "ingest samples/s",
                ts.samples as f64 / all_secs(ts),
                col.samples as f64 / all_secs(col),
            );
            row(
                "memory B/sample (structures)",
                ts.memory_per_sample(),
                col.memory_per_sample(),
            );
            row(
                "peak RSS growth MB",
                ts.peak_rss_growth_bytes as f64 / 1e6,
                col.peak_rss_growth_bytes as f64 / 1e6,
            );
            row(
                "disk B/sample",
                ts.disk_per_sample().unwrap_or(f64::NAN),
                col.disk_per_sample().unwrap_or(f64::NAN),
            );
            for q in QUERIES {
                if let (Some(a), Some(b)) = (ts.latency_ms.get(*q), col.latency_ms.get(*q)) {
                    row(&format!("{q} p50 ms"), a.0, b.0);
                    row(&format!("{q} p99 ms"), a.1, b.1);
                }
            }
            let parts = |p: &Point| -> String {
                p.disk_parts
                    .iter()
                    .filter(|(_, b)| *b > 0)
                    .map(|(n, b)| format!("`{n}` {}", fmt_num(*b as f64 / p.samples as f64)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !ts.disk_parts.is_empty() {
                let _ = writeln!(
                    md,
                    "\nDisk B/sample by part: {}: {}; {}: {}.",
                    Tsdb::NAME,
                    parts(ts),
                    Columnar::NAME,
                    parts(col)
                );
            }
            md.push('\n');
        }
        recorded_totals(&mut md, sc, &mine);
        // Growth over the checkpoints.
        if sc.runs.len() == 1 && sc.runs[0].checkpoints.len() > 1 {
            let _ = writeln!(
                md,
                "Growth (time-series / columnar at each checkpoint):\n\n\
                 | scrapes | samples | ingest samples/s | memory B/sample | merge_all_1h p50 ms | range_all_1h p50 ms |\n\
                 |---:|---:|---:|---:|---:|---:|"
            );
            let ts: Vec<&&Point> = mine.iter().filter(|p| p.backend == Tsdb::NAME).collect();
            let col: Vec<&&Point> = mine
                .iter()
                .filter(|p| p.backend == Columnar::NAME)
                .collect();
            for (a, b) in ts.iter().zip(&col) {
                let lat = |p: &Point, q: &str| p.latency_ms.get(q).map_or(f64::NAN, |l| l.0);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} / {} | {} / {} | {} / {} | {} / {} |",
                    a.scrapes,
                    a.samples,
                    fmt_num(a.samples_per_s()),
                    fmt_num(b.samples_per_s()),
                    fmt_num(a.memory_per_sample()),
                    fmt_num(b.memory_per_sample()),
                    fmt_num(lat(a, "merge_all_1h")),
                    fmt_num(lat(b, "merge_all_1h")),
                    fmt_num(lat(a, "range_all_1h")),
                    fmt_num(lat(b, "range_all_1h")),
                );
            }
            md.push('\n');
        }
    }
    parca_layout_table(&mut md, scenarios, points, reps);
    md
}

/// For a recorded data set, the whole of it: every kind's bytes added up
/// (each run has its own store, so fixed costs such as the meta store's file
/// count once per kind) over every kind's samples, next to the gzipped
/// bodies as the service sent them.
fn recorded_totals(md: &mut String, sc: &Scenario, mine: &[&Point]) {
    let recorded: Vec<&Recorded> = sc
        .runs
        .iter()
        .filter_map(|r| r.recorded.as_deref())
        .collect();
    if recorded.len() < 2 {
        return;
    }
    let sent: usize = recorded.iter().flat_map(|k| &k.bodies).map(Vec::len).sum();
    // Each run's last point per backend.
    let last = |b: &str| -> Vec<&Point> {
        sc.runs
            .iter()
            .filter_map(|r| {
                mine.iter()
                    .rev()
                    .find(|p| p.backend == b && p.x == r.x)
                    .copied()
            })
            .collect()
    };
    let (ts, col) = (last(Tsdb::NAME), last(Columnar::NAME));
    let samples: u64 = ts.iter().map(|p| p.samples).sum();
    if samples == 0 || ts.len() != recorded.len() || col.len() != recorded.len() {
        return;
    }
    let per = |b: u64| fmt_num(b as f64 / samples as f64);
    let sum = |ps: &[&Point], f: fn(&Point) -> u64| ps.iter().map(|p| f(p)).sum::<u64>();
    let mut parts: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &ts {
        for (n, b) in &p.disk_parts {
            *parts.entry(n.as_str()).or_default() += b;
        }
    }
    let parts: Vec<String> = parts
        .iter()
        .filter(|(_, b)| **b > 0)
        .map(|(n, b)| format!("`{n}` {}", per(*b)))
        .collect();
    let (mem_ts, mem_col) = (sum(&ts, |p| p.memory_bytes), sum(&col, |p| p.memory_bytes));
    let disk = |p: &Point| p.disk_bytes.unwrap_or(0);
    let (disk_ts, disk_col) = (sum(&ts, disk), sum(&col, disk));
    let _ = writeln!(
        md,
        "**all kinds together** ({} kinds, {samples} samples; each kind in its own store)\n\n\
         | figure | time-series | columnar | ratio |\n|---|---:|---:|---:|\n\
         | memory B/sample (structures) | {} | {} | {} |\n\
         | disk B/sample | {} | {} | {} |\n\n\
         Disk B/sample by part: {}: {}. The gzipped pprof bodies as sent: {} B/sample.\n",
        recorded.len(),
        per(mem_ts),
        per(mem_col),
        ratio(mem_ts as f64, mem_col as f64),
        per(disk_ts),
        per(disk_col),
        ratio(disk_ts as f64, disk_col as f64),
        Tsdb::NAME,
        parts.join(", "),
        per(sent as u64),
    );
}

/// The table of Parca's layout next to the flat one, for the runs that
/// measured it.
fn parca_layout_table(md: &mut String, scenarios: &[Scenario], points: &[Point], reps: usize) {
    let rows: Vec<(&Point, &Layout)> = points
        .iter()
        .filter_map(|p| Some((p, p.parca_layout.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "### Parca's DuckDB layout\n\n\
         The DuckDB backend's rows rewritten as Parca's backend keeps them (labels as a \
         `MAP`, the stack inline as `LIST<STRUCT>`, one wide row per sample; \
         `profstore::columnar::Wide`) by one bulk `CREATE TABLE … AS SELECT`, at the last \
         checkpoint of each run of at most {LAYOUT_MAX_SAMPLES} samples. Build: rows/s of that \
         bulk load (an upper bound on the layout's ingest). Queries over the newest hour, \
         p50 of {reps} runs in ms as Parca's layout / the flat layout, answers checked to agree.\n\n\
         | scenario | samples | build rows/s | disk B/sample (Parca / flat) | memory B/sample | \
         merge_one_1h | merge_all_1h | range_all_1h | series |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (p, l) in rows {
        // The run: a real kind's name, or the scenario's x.
        let sc = scenarios.iter().find(|s| s.name == p.scenario);
        let run = sc.and_then(|s| s.runs.iter().find(|r| r.x == p.x));
        let name = match (sc, run.and_then(|r| r.recorded.as_ref())) {
            (_, Some(rec)) => format!("{} {}", p.scenario, rec.kind),
            (Some(s), None) if s.runs.len() > 1 => format!("{} {}", p.scenario, p.x),
            _ => p.scenario.clone(),
        };
        let lat = |q: &str| {
            l.latency_ms.get(q).map_or("–".to_string(), |(w, f)| {
                format!("{} / {}", fmt_num(*w), fmt_num(*f))
            })
        };
        let per = |b: u64| fmt_num(b as f64 / p.samples.max(1) as f64);
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            p.samples,
            fmt_num(l.rows as f64 / l.build_secs),
            per(l.disk_bytes),
            p.disk_per_sample().map_or("–".into(), fmt_num),
            per(l.memory_bytes),
            lat("merge_one_1h"),
            lat("merge_all_1h"),
            lat("range_all_1h"),
            lat("series"),
        );
    }
    md.push('\n');
}

// ---- the plots ----

type Figure = (&'static str, fn(&Point) -> Option<f64>);

const PANELS: &[Figure] = &[
    ("ingest samples/s", |p| Some(p.samples_per_s())),
    ("memory B/sample (structures)", |p| {
        Some(p.memory_per_sample())
    }),
    ("disk B/sample", |p| p.disk_per_sample()),
    ("peak RSS growth (MB)", |p| {
        Some(p.peak_rss_growth_bytes as f64 / 1e6)
    }),
    ("merge_all_1h p50 (ms)", |p| {
        p.latency_ms.get("merge_all_1h").map(|l| l.0)
    }),
    ("range_all_1h p50 (ms)", |p| {
        p.latency_ms.get("range_all_1h").map(|l| l.0)
    }),
];

const COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(230, 100, 20)];

/// One SVG per scenario: a panel per figure, both backends, log-log.
fn plot(sc: &Scenario, points: &[Point], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1200, 1100)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{}: time-series vs columnar ({})", sc.name, sc.what),
        ("sans-serif", 18),
    )?;
    for (area, (title, get)) in root.split_evenly((3, 2)).iter().zip(PANELS) {
        let lines: Vec<(&str, Vec<(f64, f64)>)> = [Tsdb::NAME, Columnar::NAME]
            .iter()
            .map(|b| {
                let pts = points
                    .iter()
                    .filter(|p| p.scenario == sc.name && p.backend == *b)
                    .filter_map(|p| Some((p.x, get(p)?)))
                    .filter(|&(x, y)| x > 0.0 && y > 0.0 && y.is_finite())
                    .collect();
                (*b, pts)
            })
            .collect();
        let all: Vec<(f64, f64)> = lines.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        if all.is_empty() {
            continue;
        }
        let (x0, x1) = bounds(all.iter().map(|p| p.0));
        let (y0, y1) = bounds(all.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .caption(*title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(sc.x_name)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .draw()?;
        for (i, (name, pts)) in lines.into_iter().enumerate() {
            let color = COLORS[i];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A log axis' range around `v`, with a margin.
fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    (lo / 1.5, hi * 1.5)
}

/// 1234567 → "1.2M".
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
