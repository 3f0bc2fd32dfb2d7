//! The conformance suite of `Storage` ([`profstore::engine::suite`]) on
//! every backend: the time-series [`Tsdb`] (`store::*`) and, with the
//! `duckdb` feature, the DuckDB [`Columnar`] backend (`columnar::*`). With
//! the feature, `backends_agree_on_a_workload` also checks that both give
//! equal answers to every query kind over a generated workload, and
//! `backends_give_every_entity_the_same_id` that they give every entity the
//! same content id. `querier::*` runs the suite through a querier over a
//! bucket that an ingester ships its blocks to (`Shipped`);
//! `compacted::*` through a deduplicating querier over a bucket that two
//! replica ingesters ship to and the compactor rewrites before every read;
//! `live::*` through a deduplicating querier that reads replica `a`'s
//! shipped blocks and both replicas' live data (`b` never ships);
//! `shared::*` through a deduplicating querier over both replicas' blocks
//! that shares merges with two peers: another querier (through the wire
//! format) and one that always fails.

mod common;

use profstore::engine::Limits;
use profstore::tsdb::{Tsdb, TsdbConfig};
use std::sync::Arc;

#[cfg(feature = "duckdb")]
use profstore::{
    columnar::Columnar,
    engine::{QueryError, Storage, TimeRange},
    model::parse_selector,
};

/// An empty time-series backend with `limits`.
fn store(limits: Limits) -> Tsdb {
    Tsdb::open(TsdbConfig {
        limits,
        ..Default::default()
    })
    .unwrap()
}

/// A querier over a bucket, fed by an ingester: writes go to the
/// ingester, and before every read the ingester cuts everything into
/// blocks and ships them, and the querier lists the bucket again. So every
/// answer comes from blocks read out of the bucket (late profiles too:
/// their rewritten blocks replace the shipped ones).
#[derive(Debug)]
struct Shipped {
    ingester: Arc<Tsdb>,
    /// A second ingester (replica b) given every write, with the compactor
    /// (none: `b` never ships, the querier reads its live data).
    replica: Option<(Arc<Tsdb>, Option<profstore::compactor::Compactor>)>,
    querier: profstore::querier::Querier,
    mode: Mode,
    refreshes: std::sync::atomic::AtomicUsize,
    _dir: tempfile::TempDir,
}

impl Shipped {
    fn refresh(&self) {
        // With live reads, replica a ships at every other read only: the
        // reads between need the ingesters' live data.
        let n = self
            .refreshes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.mode != Mode::Live || n % 2 == 1 {
            self.ingester.cut_all().unwrap();
            self.ingester.shipper().unwrap().ship_pending().unwrap();
        }
        if let Some((b, compactor)) = &self.replica {
            if self.mode != Mode::Live {
                b.cut_all().unwrap();
                b.shipper().unwrap().ship_pending().unwrap();
            }
            if let Some(compactor) = compactor {
                let stats = compactor.run_once().unwrap();
                assert_eq!(stats.failed, 0);
            }
        }
        self.querier.sync().unwrap();
    }
}

/// An ingester of `replica` shipping to `bucket`, in `dir`.
fn ingester(
    dir: &std::path::Path,
    limits: &Limits,
    bucket: &std::sync::Arc<profstore::bucket::Bucket>,
    replica: &str,
) -> Tsdb {
    Tsdb::open(TsdbConfig {
        data_dir: Some(dir.join(replica)),
        limits: limits.clone(),
        min_free_bytes: 0,
        ship: Some(profstore::tsdb::ShipTo {
            bucket: std::sync::Arc::clone(bucket),
            external_labels: [("replica".to_string(), replica.to_string())].into(),
        }),
        ..Default::default()
    })
    .unwrap()
}

/// An empty [`Shipped`] with `limits`, over an in-memory bucket.
fn shipped(limits: Limits) -> Shipped {
    shipped_with(limits, Mode::Shipped)
}

/// An empty [`Shipped`] with two replicas, the compactor and a
/// deduplicating querier.
fn compacted(limits: Limits) -> Shipped {
    shipped_with(limits, Mode::Compacted)
}

/// An empty [`Shipped`] with two replicas and a deduplicating querier that
/// reads both replicas' live data; `b` never ships.
fn live(limits: Limits) -> Shipped {
    shipped_with(limits, Mode::Live)
}

/// An empty [`Shipped`] with two replicas that both ship, and a
/// deduplicating querier sharing merges with its peers.
fn shared(limits: Limits) -> Shipped {
    shipped_with(limits, Mode::Shared)
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Mode {
    Shipped,
    Compacted,
    Live,
    Shared,
}

/// The peers of the `shared` querier `x`: itself, querier `y` over the
/// same bucket (in process, through the wire format; it never lists the
/// bucket, so it opens each block a request names), and a peer that is
/// down.
fn peers_of_x(
    bucket: &Arc<profstore::bucket::Bucket>,
    dir: &std::path::Path,
    limits: &Limits,
) -> profstore::querier::peers::Peers {
    use profstore::querier::peers::{InProcessPeer, Peers};
    use profstore::querier::{Querier, QuerierConfig};
    let y = Querier::open(QuerierConfig {
        bucket: Arc::clone(bucket),
        cache_dir: Some(dir.join("cache-y")),
        cache_bytes: 1 << 20,
        limits: limits.clone(),
        sync_interval: std::time::Duration::from_secs(3600),
        dedup_label: Some("replica".into()),
        ingesters: Vec::new(),
        peers: Default::default(),
    })
    .unwrap();
    Peers {
        peers: vec![
            Arc::new(common::DownPeer("http://down")),
            Arc::new(InProcessPeer {
                name: "http://y".into(),
                work: Arc::new(y),
            }),
            Arc::new(common::DownPeer("http://x")),
        ],
        own_name: Some("http://x".into()),
        ..Peers::default()
    }
}

fn shipped_with(limits: Limits, mode: Mode) -> Shipped {
    use profstore::bucket::Bucket;
    use profstore::compactor::{Compactor, CompactorConfig};
    use profstore::querier::{Querier, QuerierConfig};
    let dir = tempfile::tempdir().unwrap();
    let bucket = Arc::new(Bucket::memory());
    let replicas = mode != Mode::Shipped;
    let a = Arc::new(ingester(dir.path(), &limits, &bucket, "a"));
    let replica = replicas.then(|| {
        let b = Arc::new(ingester(dir.path(), &limits, &bucket, "b"));
        if matches!(mode, Mode::Live | Mode::Shared) {
            return (b, None);
        }
        let compactor = Compactor::open(CompactorConfig {
            bucket: Arc::clone(&bucket),
            work_dir: dir.path().join("work"),
            dedup_label: Some("replica".into()),
            ranges_ms: vec![2 * 3_600_000, 24 * 3_600_000, 400 * 24 * 3_600_000],
            retention_ms: None,
            delete_delay: std::time::Duration::ZERO,
            orphan_age: std::time::Duration::from_secs(3600),
            clock: profstore::ingest::Clock::system(),
        })
        .unwrap();
        (b, Some(compactor))
    });
    let ingesters: Vec<Arc<dyn profstore::engine::live::LiveSource>> = match &replica {
        Some((b, None)) if mode == Mode::Live => vec![
            Arc::clone(&a) as Arc<dyn profstore::engine::live::LiveSource>,
            Arc::clone(b) as Arc<dyn profstore::engine::live::LiveSource>,
        ],
        _ => Vec::new(),
    };
    let querier = Querier::open(QuerierConfig {
        bucket: Arc::clone(&bucket),
        cache_dir: Some(dir.path().join("cache")),
        cache_bytes: 1 << 20,
        limits: limits.clone(),
        sync_interval: std::time::Duration::from_secs(3600),
        dedup_label: replicas.then(|| "replica".to_string()),
        ingesters,
        peers: if mode == Mode::Shared {
            peers_of_x(&bucket, dir.path(), &limits)
        } else {
            Default::default()
        },
    })
    .unwrap();
    Shipped {
        ingester: a,
        replica,
        querier,
        mode,
        refreshes: Default::default(),
        _dir: dir,
    }
}

impl profstore::engine::Storage for Shipped {
    fn limits(&self) -> &Limits {
        self.ingester.limits()
    }
    fn ingest_raw(
        &self,
        req: &profstore::ingest::IngestRequest,
        raw: Option<&[u8]>,
    ) -> Result<profstore::ingest::IngestSummary, profstore::ingest::IngestError> {
        if let Some((b, _)) = &self.replica {
            let _ = b.ingest_raw(req, raw);
        }
        self.ingester.ingest_raw(req, raw)
    }
    fn ingest_stats(&self) -> profstore::engine::IngestStats {
        self.ingester.stats()
    }
    fn num_series(&self) -> usize {
        profstore::engine::Storage::num_series(&*self.ingester)
    }
    fn label_names(
        &self,
        m: &[profstore::model::Matcher],
        r: profstore::engine::TimeRange,
    ) -> Result<Vec<String>, profstore::engine::QueryError> {
        self.refresh();
        self.querier.label_names(m, r)
    }
    fn label_values(
        &self,
        name: &str,
        m: &[profstore::model::Matcher],
        r: profstore::engine::TimeRange,
    ) -> Result<Vec<String>, profstore::engine::QueryError> {
        self.refresh();
        self.querier.label_values(name, m, r)
    }
    fn series(
        &self,
        m: &[profstore::model::Matcher],
        r: profstore::engine::TimeRange,
    ) -> Result<Vec<profstore::model::Labels>, profstore::engine::QueryError> {
        self.refresh();
        self.querier.series(m, r)
    }
    fn profile_types(
        &self,
        m: &[profstore::model::Matcher],
        r: profstore::engine::TimeRange,
    ) -> Result<Vec<profstore::model::ProfileType>, profstore::engine::QueryError> {
        self.refresh();
        self.querier.profile_types(m, r)
    }
    fn query_range(
        &self,
        m: &[profstore::model::Matcher],
        r: profstore::engine::TimeRange,
        step: Option<i64>,
    ) -> Result<Vec<profstore::engine::SeriesPoints>, profstore::engine::QueryError> {
        self.refresh();
        self.querier.query_range(m, r, step)
    }
    fn partial(
        &self,
        m: &[profstore::model::Matcher],
        pick: profstore::engine::Pick,
    ) -> Result<profstore::engine::Partial, profstore::engine::QueryError> {
        self.refresh();
        self.querier.partial(m, pick)
    }
    fn register_metrics(
        self: std::sync::Arc<Self>,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> profstore::engine::RefreshMetrics {
        Box::new(|| {})
    }
    fn close(&self) -> Result<(), profstore::model::StorageError> {
        Ok(())
    }
}

/// An empty in-memory DuckDB backend with `limits`.
#[cfg(feature = "duckdb")]
fn columnar(limits: Limits) -> Columnar {
    Columnar::open_with(None, limits).unwrap()
}

#[cfg(feature = "duckdb")]
fn sel(s: &str) -> Vec<profstore::model::Matcher> {
    parse_selector(s).unwrap()
}

/// A `#[test]` per backend for each check of the suite.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod store {
            $(#[test]
            fn $name() {
                profstore::engine::suite::$name(super::store)
            })*
        }
        mod querier {
            $(#[test]
            fn $name() {
                profstore::engine::suite::$name(super::shipped)
            })*
        }
        mod compacted {
            $(#[test]
            fn $name() {
                profstore::engine::suite::$name(super::compacted)
            })*
        }
        mod live {
            $(#[test]
            fn $name() {
                profstore::engine::suite::$name(super::live)
            })*
        }
        mod shared {
            $(#[test]
            fn $name() {
                profstore::engine::suite::$name(super::shared)
            })*
        }
        #[cfg(feature = "duckdb")]
        mod columnar {
            $(#[test]
            fn $name() {
                profstore::engine::suite::$name(super::columnar)
            })*
        }
    };
}

on_every_backend!(
    engine_suite,
    limits_give_clear_errors_and_change_nothing,
    colliding_and_reserved_pprof_label_names_round_trip,
    a_profile_with_only_zero_samples_still_records_a_zero_total,
    documented_label_differences_on_the_way_back,
    empty_string_matchers_follow_prometheus,
    sample_labels_select_their_samples,
);

#[test]
fn tsdb_late_profiles_count_once_and_retries_change_nothing() {
    profstore::engine::suite::late_profiles_count_once_and_retries_change_nothing(store)
}

/// Late profiles rewrite shipped blocks: the querier reads each profile
/// once, from the replacement.
#[test]
fn querier_late_profiles_count_once_and_retries_change_nothing() {
    profstore::engine::suite::late_profiles_count_once_and_retries_change_nothing(shipped)
}

/// Late profiles rewrite shipped blocks of both replicas while merges are
/// shared: each profile still counts once.
#[test]
fn shared_late_profiles_count_once_and_retries_change_nothing() {
    profstore::engine::suite::late_profiles_count_once_and_retries_change_nothing(shared)
}

/// Late profiles rewrite blocks the compactor already merged: each
/// profile still counts once.
#[test]
fn compacted_late_profiles_count_once_and_retries_change_nothing() {
    profstore::engine::suite::late_profiles_count_once_and_retries_change_nothing(compacted)
}

/// The DuckDB backend takes each series' profiles in time order.
#[cfg(feature = "duckdb")]
#[test]
fn columnar_out_of_order_in_one_series_rejects_the_whole_profile() {
    profstore::engine::suite::out_of_order_in_one_series_rejects_the_whole_profile(columnar)
}

/// Both backends fed the identical generated stream answer every query
/// kind identically (frames compared by content: their ids are the
/// backends' own).
#[cfg(feature = "duckdb")]
#[test]
fn backends_agree_on_a_workload() {
    use profstore::engine::SINGLE_WINDOW_MS;
    use profstore::workload::{Kind, Workload, WorkloadSpec};

    let spec = WorkloadSpec {
        targets: 3,
        scrapes: 8,
        lifetime_scrapes: Some(4),
        label_cardinality: 3,
        ..Default::default()
    };
    let kinds = Kind::testdata(&common::testdata_dir(), 2).unwrap();
    let store = Tsdb::temporary().unwrap();
    let duck = Columnar::open(None).unwrap();
    for r in Workload::new(spec.clone(), kinds) {
        let a = store.ingest(r.clone()).unwrap();
        let b = duck.ingest(r).unwrap();
        assert_eq!(a, b);
    }
    let all = TimeRange::ALL;
    let mid = TimeRange::new(spec.timestamp(0, 2), spec.timestamp(1, 5)).unwrap();
    let types = store.profile_types(&[], all).unwrap();
    assert_eq!(types, duck.profile_types(&[], all).unwrap());
    assert!(types.len() >= 5, "{types:?}");
    assert_eq!(
        store.label_names(&[], all).unwrap(),
        duck.label_names(&[], all).unwrap()
    );
    let norm = |p: profstore::model::Profile| {
        let mut samples: Vec<(String, i64)> = p
            .samples
            .iter()
            .map(|s| {
                let frames: Vec<String> = s
                    .stack
                    .frames
                    .iter()
                    .map(|f| {
                        let lines: Vec<_> = f
                            .lines
                            .iter()
                            .map(|l| (&*l.function, l.line, l.column))
                            .collect();
                        format!(
                            "{:x} {} {:?} {:?}",
                            f.address,
                            f.is_folded,
                            f.mapping.as_ref().map(|m| &*m.1),
                            lines
                        )
                    })
                    .collect();
                (
                    format!("{frames:?} {:?} {:?}", s.stack.num_labels, s.labels),
                    s.value,
                )
            })
            .collect();
        samples.sort();
        (
            p.profile_type.to_string(),
            p.time_ms,
            p.duration_ns,
            p.period,
            samples,
        )
    };
    let mut checked = 0;
    for t in &types {
        for extra in [
            "",
            r#"instance=~"t1-.*""#,
            r#"endpoint="v1""#,
            r#"endpoint="""#,
            r#"kind!="cpu",instance!~"t0-g0|t2-g1""#,
        ] {
            let m = sel(&format!("{t}{{{extra}}}"));
            for range in [all, mid] {
                assert_eq!(
                    store.series(&m, range).unwrap(),
                    duck.series(&m, range).unwrap()
                );
                assert_eq!(
                    store.label_values("instance", &m, range).unwrap(),
                    duck.label_values("instance", &m, range).unwrap()
                );
                assert_eq!(
                    store.label_names(&m, range).unwrap(),
                    duck.label_names(&m, range).unwrap()
                );
                // (Steps only on a bounded range: the time-series backend
                // computes `t - start` in 64 bits.)
                let steps: &[Option<i64>] = if range == all {
                    &[None]
                } else {
                    &[None, Some(25_000), Some(SINGLE_WINDOW_MS)]
                };
                for &step in steps {
                    assert_eq!(
                        store.query_range(&m, range, step).unwrap(),
                        duck.query_range(&m, range, step).unwrap(),
                        "{t}{{{extra}}} {step:?}"
                    );
                }
                assert_eq!(
                    norm(store.merge(&m, range).unwrap()),
                    norm(duck.merge(&m, range).unwrap()),
                    "merge {t}{{{extra}}}"
                );
                checked += 1;
            }
            for at in [spec.timestamp(0, 0) - 1, spec.timestamp(2, 3), 0] {
                assert_eq!(
                    norm(store.single(&m, at).unwrap()),
                    norm(duck.single(&m, at).unwrap()),
                    "single {t}{{{extra}}} at {at}"
                );
            }
            assert_eq!(
                norm(store.diff((&m, mid), (&m, all)).unwrap()),
                norm(duck.diff((&m, mid), (&m, all)).unwrap())
            );
        }
    }
    assert!(checked > 40);
    // Errors are the same kind.
    let both = sel(r#"{job="workload"}"#);
    assert!(matches!(
        (store.merge(&both, all), duck.merge(&both, all)),
        (
            Err(QueryError::MultipleProfileTypes(a)),
            Err(QueryError::MultipleProfileTypes(b))
        ) if a == b
    ));
}

/// Both backends give every location, function and mapping the same
/// content id (frames compared by id, not by content).
#[cfg(feature = "duckdb")]
#[test]
fn backends_give_every_entity_the_same_id() {
    use profstore::workload::{Kind, Workload, WorkloadSpec};

    let spec = WorkloadSpec {
        targets: 2,
        scrapes: 3,
        ..Default::default()
    };
    let kinds = Kind::testdata(&common::testdata_dir(), 2).unwrap();
    let store = Tsdb::temporary().unwrap();
    let duck = Columnar::open(None).unwrap();
    for r in Workload::new(spec, kinds) {
        store.ingest(r.clone()).unwrap();
        duck.ingest(r).unwrap();
    }
    let ids = |p: profstore::model::Profile| {
        let mut v: Vec<String> = p
            .samples
            .iter()
            .map(|s| {
                let frames: Vec<_> = s
                    .stack
                    .frames
                    .iter()
                    .map(|f| {
                        (
                            f.id,
                            f.mapping.as_ref().map(|m| m.0),
                            f.lines.iter().map(|l| l.function_id).collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                format!("{frames:?} {:?} {}", s.labels, s.value)
            })
            .collect();
        v.sort();
        v
    };
    let types = store.profile_types(&[], TimeRange::ALL).unwrap();
    assert!(types.len() >= 3);
    for t in types {
        let m = sel(&format!("{t}"));
        let a = ids(store.merge(&m, TimeRange::ALL).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, ids(duck.merge(&m, TimeRange::ALL).unwrap()), "{t}");
    }
}
