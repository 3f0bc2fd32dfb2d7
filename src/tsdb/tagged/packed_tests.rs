//! The packed form against the growable one it was made from.

use super::*;
use crate::model::MatchOp;
use crate::proto::block as pb;
use proptest::prelude::*;

fn stack(i: u8) -> StackId {
    StackId(uuid::Uuid::from_u128(
        u128::from(i) * 0x9e37_79b9_7f4a_7c15 + 1,
    ))
}

/// Values a sample label may take: hex that packs, and what must not
/// (uppercase, odd length, other text, non-ASCII).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{16}",
        "([0-9a-f]{2}){1,4}",
        "[0-9a-fA-F]{1,5}",
        "[a-z0-9 =\\-]{1,6}",
        "[é\u{0}x]{1,3}",
    ]
}

fn tuple() -> impl Strategy<Value = SampleLabels> {
    prop::collection::btree_map(
        prop::sample::select(vec!["span_id", "trace_id", "profile_id"]),
        value(),
        1..3,
    )
    .prop_map(|m| m.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
}

/// Profiles of tagged samples: (labels, stack, value), values may be 0.
fn profiles() -> impl Strategy<Value = Vec<Vec<(SampleLabels, StackId, i64)>>> {
    let pool = prop::collection::vec(tuple(), 1..12);
    (pool, 1usize..8).prop_flat_map(|(pool, n)| {
        let row = (
            prop::sample::select(pool),
            (0u8..20).prop_map(stack),
            prop_oneof![Just(0i64), -1000i64..1000, any::<i64>()],
        );
        prop::collection::vec(prop::collection::vec(row, 0..10), n)
    })
}

fn filters() -> Vec<RowFilter> {
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    vec![
        RowFilter::new(vec![m(MatchOp::Regex, "span_id", "[0-7].*")]),
        RowFilter::new(vec![m(MatchOp::Equal, "trace_id", "")]),
        RowFilter::new(vec![
            m(MatchOp::NotEqual, "span_id", ""),
            m(MatchOp::Regex, "profile_id", ".*a.*"),
        ]),
    ]
}

/// Every reading of `a` and `b` agrees.
fn same(a: &Tagged, b: &Tagged, len: usize) {
    assert_eq!(a.rows(), b.rows());
    for lo in 0..=len {
        for hi in lo..=len + 1 {
            assert_eq!(a.rows_in(lo, hi), b.rows_in(lo, hi), "rows of {lo}..{hi}");
        }
    }
    assert_eq!(a.profiles(0, len), b.profiles(0, len));
    assert_eq!(a.tuples(), b.tuples());
    for i in 0..a.tuples().len() as u32 + 1 {
        assert_eq!(a.tuple(i), b.tuple(i));
    }
    assert_eq!(a.names(), b.names());
    let set = |t: &Tagged| t.stacks().collect::<BTreeSet<StackId>>();
    assert_eq!(set(a), set(b));
    assert_eq!(a.is_empty(), b.is_empty());
    for f in filters() {
        assert_eq!(a.matching(&f), b.matching(&f));
    }
    let msg = |t: &Tagged| {
        let mut m = pb::ChunkSet::default();
        t.to_proto(&mut |id| id.0.as_u128() as u32, &mut m);
        m
    };
    assert_eq!(msg(a), msg(b));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Sealing changes no answer, nor does taking profiles after it.
    #[test]
    fn packed_rows_read_as_the_open_ones(ps in profiles(), more in profiles()) {
        let mut open = Tagged::default();
        for (i, p) in ps.iter().enumerate() {
            open.push(i as u16, p);
        }
        let mut sealed = open.clone();
        sealed.seal();
        prop_assert!(matches!(sealed.0, Form::Sealed(_)));
        same(&open, &sealed, ps.len());
        for (i, p) in more.iter().enumerate() {
            let at = (ps.len() + i) as u16;
            open.push(at, p);
            sealed.push(at, p);
        }
        same(&open, &sealed, ps.len() + more.len());
    }
}

/// A span id per row (16 hex digits) packs to a few bytes of row and its
/// 8 bytes of id; in the growable form the row and the tuple's allocation
/// take about 80.
#[test]
fn a_span_id_per_row_packs_small() {
    let mut t = Tagged::default();
    let rows = 120 * 60;
    for p in 0..120u16 {
        let tags: Vec<(SampleLabels, StackId, i64)> = (0..60u8)
            .map(|s| {
                let span = format!("{:016x}", (u64::from(p) << 8 | u64::from(s)) * 0x9e37_79b9);
                (
                    vec![("span_id".to_string(), span)],
                    stack(s),
                    1000 + i64::from(s),
                )
            })
            .collect();
        t.push(p, &tags);
    }
    let open = t.bytes() as f64 / rows as f64;
    let copy = t.clone();
    t.seal();
    let sealed = t.bytes() as f64 / rows as f64;
    assert!(open > 70.0, "open form {open:.1} B/row");
    assert!(sealed < 16.0, "sealed form {sealed:.1} B/row");
    same(&copy, &t, 120);
}
