//! Unit tests of the columnar backend; the trait behaviour is checked by
//! the conformance suite (`crate::engine::suite`, run by `tests/engine.rs`).

use super::*;
use crate::model::{parse_selector, MatchOp};

#[test]
fn reopen_keeps_series_and_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let body = std::fs::read("testdata/pprof/parca/alloc_objects.pb.gz").unwrap();
    let (series, merged) = {
        let c = Columnar::open(Some(&path)).unwrap();
        c.ingest_bytes(&body, None, Labels::from_pairs([("job", "a")]), 1000)
            .unwrap();
        let sel = parse_selector(r#"{job="a"}"#).unwrap();
        let types = c.profile_types(&sel, TimeRange::ALL).unwrap();
        let mut sel = sel;
        sel.push(Matcher::new(MatchOp::Equal, METRIC_NAME, types[0].to_string()).unwrap());
        (
            c.series(&[], TimeRange::ALL).unwrap(),
            c.merge(&sel, TimeRange::ALL).unwrap(),
        )
    };
    let c = Columnar::open(Some(&path)).unwrap();
    assert_eq!(c.series(&[], TimeRange::ALL).unwrap(), series);
    let mut sel = parse_selector(r#"{job="a"}"#).unwrap();
    sel.push(Matcher::new(MatchOp::Equal, METRIC_NAME, merged.profile_type.to_string()).unwrap());
    let again = c.merge(&sel, TimeRange::ALL).unwrap();
    assert_eq!(again.total(), merged.total());
    assert_eq!(again.samples.len(), merged.samples.len());
    // Same profile again at the same time: out of order after reopening too.
    let err = c
        .ingest_bytes(&body, None, Labels::from_pairs([("job", "a")]), 1000)
        .unwrap_err();
    assert!(err.to_string().contains("out of order"), "{err}");
    // A new series after reopening gets the next id and the same stacks.
    c.ingest_bytes(&body, None, Labels::from_pairs([("job", "b")]), 1000)
        .unwrap();
    assert_eq!(c.num_series(), series.len() * 2);
}

/// A database whose sample rows carry 16-byte stack ids (the layout before
/// dense ids) is refused with a clear error, and left as it was.
#[test]
fn a_database_with_the_old_stack_ids_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.duckdb");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE samples (series_id UINTEGER, ts BIGINT, stack_id UHUGEINT, value BIGINT);
             INSERT INTO samples VALUES (0, 1, 7, 3);",
        )
        .unwrap();
    }
    let err = Columnar::open(Some(&path)).unwrap_err();
    assert!(matches!(err, ColumnarError::Layout(_)), "{err}");
    assert!(err.to_string().contains("UHUGEINT stack ids"), "{err}");
    let conn = Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM duckdb_tables()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "nothing created");
}

/// Dense stack ids count up across ingests and reopenings: every stack has
/// one id, and the sample rows carry them.
#[test]
fn stack_ids_are_dense_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let heap = std::fs::read("testdata/pprof/parca/alloc_objects.pb.gz").unwrap();
    let cpu = std::fs::read("testdata/pprof/parca/cpu_labels.pb.gz").unwrap();
    let count = |c: &Columnar, sql: &str| -> i64 {
        c.inner
            .lock()
            .conn
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let n = {
        let c = Columnar::open(Some(&path)).unwrap();
        c.ingest_bytes(&heap, None, Labels::from_pairs([("job", "a")]), 1000)
            .unwrap();
        // Same stacks in another series: no new ids.
        let before = count(&c, "SELECT count(*) FROM stack_ids");
        c.ingest_bytes(&heap, None, Labels::from_pairs([("job", "a2")]), 1000)
            .unwrap();
        assert_eq!(count(&c, "SELECT count(*) FROM stack_ids"), before);
        count(&c, "SELECT count(*) FROM stack_ids")
    };
    let c = Columnar::open(Some(&path)).unwrap();
    c.ingest_bytes(&cpu, None, Labels::from_pairs([("job", "b")]), 1000)
        .unwrap();
    let total = count(&c, "SELECT count(*) FROM stack_ids");
    assert!(n > 0 && total > n, "{n} {total}");
    assert_eq!(
        count(&c, "SELECT count(DISTINCT stack_id) FROM stack_ids"),
        total
    );
    assert_eq!(
        count(&c, "SELECT count(DISTINCT content_id) FROM stack_ids"),
        total
    );
    assert_eq!(count(&c, "SELECT max(stack_id) FROM stack_ids"), total - 1);
    assert_eq!(
        count(
            &c,
            "SELECT count(*) FROM samples WHERE stack_id NOT IN (SELECT stack_id FROM stack_ids)"
        ),
        0
    );
    assert_eq!(c.inner.lock().known.stack_list.len() as i64, total);
}

/// A batch stores what storing its profiles one by one would, each failed
/// profile with its own error; a batch whose transaction fails stores
/// nothing and leaves the catalog as it was.
#[test]
fn a_batch_stores_what_single_ingests_would() {
    let heap = std::fs::read("testdata/pprof/parca/alloc_objects.pb.gz").unwrap();
    let cpu = std::fs::read("testdata/pprof/parca/cpu_labels.pb.gz").unwrap();
    let req = |body: &[u8], job: &str| crate::ingest::IngestRequest {
        name: None,
        labels: Labels::from_pairs([("job", job)]),
        delta: None,
        profile: crate::pprof::decode(body, &Default::default()).unwrap(),
        received_at_ms: 1000,
    };
    let a1 = req(&heap, "a");
    let b1 = req(&cpu, "b");
    let a2 = req(&heap, "a2");
    // The same profile again: out of order after the first.
    let a1_late = a1.clone();
    let batch = Columnar::open(None).unwrap();
    let got = batch.ingest_batch(&[(&a1, None), (&b1, None), (&a1_late, None), (&a2, None)]);
    assert!(
        got[0].is_ok() && got[1].is_ok() && got[3].is_ok(),
        "{got:?}"
    );
    let e = got[2].as_ref().unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
    let single = Columnar::open(None).unwrap();
    for r in [&a1, &b1, &a2] {
        single.ingest(r.clone()).unwrap();
    }
    assert_eq!(batch.stats(), single.stats());
    assert_eq!(
        batch.series(&[], TimeRange::ALL).unwrap(),
        single.series(&[], TimeRange::ALL).unwrap()
    );
    for t in batch.profile_types(&[], TimeRange::ALL).unwrap() {
        let sel = vec![Matcher::new(MatchOp::Equal, METRIC_NAME, t.to_string()).unwrap()];
        let (x, y) = (
            batch.merge(&sel, TimeRange::ALL).unwrap(),
            single.merge(&sel, TimeRange::ALL).unwrap(),
        );
        assert_eq!((x.total(), x.samples.len()), (y.total(), y.samples.len()));
    }
    let stacks = |c: &Columnar| c.inner.lock().known.stack_list.clone();
    assert_eq!(stacks(&batch), stacks(&single));

    // The transaction fails (a table is gone): nothing of the batch stays.
    let (series, known) = (batch.num_series(), stacks(&batch).len());
    batch
        .inner
        .lock()
        .conn
        .execute_batch("DROP TABLE samples")
        .unwrap();
    let c1 = req(&cpu, "c");
    let got = batch.ingest_batch(&[(&a1, None), (&c1, None)]);
    assert!(got.iter().all(Result::is_err), "{got:?}");
    assert!(got[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("out of order"));
    assert!(got[1].as_ref().unwrap_err().to_string().contains("samples"));
    assert_eq!(batch.num_series(), series);
    assert_eq!(stacks(&batch).len(), known);
    let inner = batch.inner.lock();
    assert_eq!(inner.by_labels.len(), series);
    assert!(inner.series.iter().all(
        |s| s.max_time == Some(crate::ingest::profile_timestamp(&a1))
            || s.labels.get("job") == Some("b")
    ));
}

/// The layout measurement quoted in the module docs: merge-style grouping
/// over 1 M sample rows with the stack inline (`LIST<STRUCT>`) against the
/// stack as an id. Run with
/// `cargo test --release --features duckdb --lib columnar::tests::layout_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn layout_timing() {
    let conn = Connection::open_in_memory().unwrap();
    let time = |what: &str, sql: &str| {
        let t = std::time::Instant::now();
        conn.execute_batch(sql).unwrap();
        eprintln!("{what}: {:?}", t.elapsed());
    };
    time(
        "flat: append-equivalent build of 1M rows",
        "CREATE TABLE flat AS SELECT (i % 100)::UINTEGER AS series_id, i // 100 AS ts,
                (hash(i % 10000)::UHUGEINT) AS stack_id, i AS value FROM range(1000000) t(i)",
    );
    time(
        "frames dimension: 10k stacks x 20 frames",
        "CREATE TABLE frames AS SELECT hash(s)::UHUGEINT AS stack_id, f AS pos,
                hash(s * 31 + f)::UHUGEINT AS location_id FROM range(10000) a(s), range(20) b(f)",
    );
    time(
        "nested: build 1M rows with LIST<STRUCT> stacks",
        "CREATE TABLE nested AS SELECT x.series_id, x.ts, x.value,
                s.stack FROM flat x JOIN (SELECT stack_id, list({'address': location_id::UBIGINT,
                'function': 'fn_' || (location_id % 1000)::VARCHAR, 'line': pos} ORDER BY pos) AS stack
                FROM frames GROUP BY stack_id) s USING (stack_id)",
    );
    time(
        "merge by id",
        "CREATE TEMP TABLE m1 AS SELECT stack_id, sum(value) FROM flat WHERE series_id < 50 GROUP BY ALL",
    );
    time(
        "merge by inline stack",
        "CREATE TEMP TABLE m2 AS SELECT stack, sum(value) FROM nested WHERE series_id < 50 GROUP BY ALL",
    );
}

/// Parca's layout ([`Wide`]) built from the flat tables answers merges,
/// range queries and series with the flat layout's totals; it is written
/// only to a new file.
#[test]
fn the_wide_layout_answers_as_the_flat_one() {
    let dir = tempfile::tempdir().unwrap();
    let c = Columnar::open(Some(&dir.path().join("flat.duckdb"))).unwrap();
    let heap = std::fs::read("testdata/pprof/parca/alloc_objects.pb.gz").unwrap();
    let cpu = std::fs::read("testdata/pprof/parca/cpu_labels.pb.gz").unwrap();
    let decode = crate::engine::Limits::default().decode;
    for (i, job) in ["a", "b"].into_iter().enumerate() {
        for t in 0..3 {
            let ts = 1000 + t * 10_000 + i as i64;
            for body in [&heap, &cpu] {
                let mut profile = crate::pprof::decode(body, &decode).unwrap();
                profile.time_nanos = ts * 1_000_000;
                // A sample without frames: an empty stack, kept by both.
                profile.sample.push(crate::proto::pprof::Sample {
                    value: vec![7; profile.sample_type.len()],
                    ..Default::default()
                });
                let req = IngestRequest {
                    name: None,
                    labels: Labels::from_pairs([("job", job)]),
                    delta: None,
                    profile,
                    received_at_ms: ts,
                };
                c.ingest_raw(&req, None).unwrap();
            }
        }
    }
    let path = dir.path().join("wide.duckdb");
    let w = c.export_wide(&path).unwrap();
    assert_eq!(
        w.rows().unwrap(),
        c.stats().samples,
        "one row per (profile, stack) sample"
    );
    let window = TimeRange::new(1000, 11_000).unwrap();
    let mut checked = 0;
    for ty in c.profile_types(&[], TimeRange::ALL).unwrap() {
        for job in [None, Some("a")] {
            let mut sel = vec![Matcher::new(MatchOp::Equal, METRIC_NAME, ty.to_string()).unwrap()];
            if let Some(job) = job {
                sel.push(Matcher::new(MatchOp::Equal, "job", job).unwrap());
            }
            for range in [TimeRange::ALL, window] {
                let flat = c.merge(&sel, range).unwrap();
                let wide = w.merge(&sel, range).unwrap();
                assert_eq!(
                    wide.total,
                    i128::from(flat.total()),
                    "{ty} {job:?} {range:?}"
                );
                // Numeric labels and pprof label groups split the flat
                // merge's samples further than the inline stack does.
                assert!(wide.groups > 0 && wide.groups <= flat.samples.len() as u64);
                let points = c.query_range(&sel, range, None).unwrap();
                let wide = w.range(&sel, range).unwrap();
                let n: usize = points.iter().map(|p| p.points.len()).sum();
                let sum: i128 = points
                    .iter()
                    .flat_map(|p| p.points.iter().map(|&(_, v)| i128::from(v)))
                    .sum();
                assert_eq!((wide.groups, wide.total), (n as u64, sum), "{ty} {job:?}");
                let series = c.series(&sel, range).unwrap();
                assert_eq!(w.series(&sel, range).unwrap().groups, series.len() as u64);
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "both profiles' types were checked");
    // A second export to the same file is refused and leaves it as it is.
    drop(w);
    let before = std::fs::read(&path).unwrap();
    let err = c.export_wide(&path).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
