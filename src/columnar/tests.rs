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
