use super::*;
use crate::model::labels::Labels;
use crate::model::{Function, Line, Location, StackId, Stacktrace, SymbolSource};
use crate::model::{MatchOp, Matcher};
use crate::tsdb::chunkset::{
    build_sets, sets_merge_into, sets_overlap, sets_totals, AppendProfile, ChunkSet,
};
use crate::tsdb::meta::MetaStore;
use rustc_hash::FxHashMap;
use std::sync::{Arc, OnceLock};

/// Stacks the synthetic series use, in a meta store the writer reads their
/// symbols from: stack `i` is one frame of function `f{i}`.
fn fixture() -> &'static (MetaStore, Vec<StackId>) {
    static F: OnceLock<(MetaStore, Vec<StackId>)> = OnceLock::new();
    F.get_or_init(|| {
        let m = MetaStore::temporary().unwrap();
        let functions = m
            .function_ids(
                (0..1000)
                    .map(|i| Function {
                        name: format!("f{i}"),
                        filename: "f.go".into(),
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        let locations = m
            .location_ids(
                functions
                    .iter()
                    .map(|f| Location {
                        lines: vec![Line {
                            function: *f,
                            line: 7,
                            column: 0,
                        }],
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        let stacks = m
            .stack_ids(
                locations
                    .iter()
                    .map(|l| Stacktrace {
                        locations: vec![*l],
                        num_labels: Vec::new(),
                    })
                    .collect(),
            )
            .unwrap();
        (m, stacks)
    })
}

fn stack(i: u128) -> StackId {
    fixture().1[i as usize]
}

fn symbols() -> &'static dyn SymbolSource {
    &fixture().0
}

/// `n` series of 300 profiles each, stacks coming and going.
fn series(n: usize) -> Vec<BlockSeriesData> {
    let mut seed: u64 = 7;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out: Vec<BlockSeriesData> = (0..n)
        .map(|i| {
            let profiles: Vec<AppendProfile> = (0..300)
                .map(|p| AppendProfile {
                    timestamp: 1_000 + p * 10_000,
                    duration: 10_000_000_000,
                    period: 100,
                    samples: (0..12u128)
                        .filter_map(|s| {
                            let r = rnd();
                            (r % 3 == 0)
                                .then(|| (stack(s + 100 * i as u128), (r / 3 % 500 + 1) as i64))
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect();
            BlockSeriesData {
                labels: Labels::from_pairs([
                    ("__name__", "memory:alloc_space:bytes:space:bytes"),
                    ("instance", &format!("host-{i}")),
                ]),
                pprof_labels: vec![],
                sets: build_sets(&profiles, &std::sync::Arc::default()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn write(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, Vec<BlockSeriesData>) {
    let path = dir.join("0_3000000.block");
    let want = series(n);
    let again = series(n);
    let w = write_block(&path, 0, 3_000_000, again, symbols()).unwrap();
    assert_eq!(w.series, n);
    assert_eq!(w.profiles, 300 * n as u64);
    (path, want)
}

fn merged(sets: &[crate::tsdb::chunkset::ChunkSet]) -> FxHashMap<StackId, i64> {
    let mut acc = FxHashMap::default();
    sets_merge_into(sets, i64::MIN, i64::MAX, &mut acc);
    acc
}

#[test]
fn a_written_block_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, want) = write(dir.path(), 5);
    let b = Arc::new(Block::open(&path).unwrap());
    assert_eq!((b.min_time(), b.max_time()), (0, 3_000_000));
    assert_eq!(b.num_series(), 5);
    let all = b.select(&[], i64::MIN, i64::MAX);
    assert_eq!(all.len(), 5);
    for (got, want) in all.iter().zip(&want) {
        assert_eq!(got.labels(), &want.labels);
        assert_eq!(
            sets_totals(got.sets(), i64::MIN, i64::MAX),
            sets_totals(&want.sets, i64::MIN, i64::MAX)
        );
        assert_eq!(merged(got.sets()), merged(&want.sets));
    }
    let m = Matcher::new(MatchOp::Equal, "instance", "host-3").unwrap();
    let one = b.select(&[m], i64::MIN, i64::MAX);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].labels().get("instance"), Some("host-3"));
    // Time pruning by the series' range.
    assert!(b.select(&[], 0, 999).is_empty());
    let mut stacks = b.stack_ids().unwrap();
    stacks.sort();
    let mut expect: Vec<StackId> = want
        .iter()
        .flat_map(|s| s.sets.iter().flat_map(|c| c.stack_ids()))
        .collect();
    expect.sort();
    expect.dedup();
    assert_eq!(stacks, expect);
    assert_eq!(b.damaged_reads(), 0);
}

/// A series overlaps a range exactly when one of its profiles is in it,
/// whether its chunks were read already or only their time ranges are.
#[test]
fn overlaps_reads_time_ranges_as_the_sets_say() {
    let dir = tempfile::tempdir().unwrap();
    let (path, want) = write(dir.path(), 2);
    let b = Arc::new(Block::open(&path).unwrap());
    // Profiles are 10 s apart from 1 s: ranges inside a gap, holding one
    // profile, across two sets (120 profiles each), and past the end.
    for start in [
        -5_000, 1_000, 1_001, 501_000, 1_190_500, 1_201_000, 2_991_000, 2_991_001,
    ] {
        for len in [0, 8_000, 9_998, 9_999, 10_000, 25_000, 4_000_000] {
            let (s, e) = (start, start + len);
            let want_overlap = sets_overlap(&want[0].sets, s, e);
            let fresh = &b.select(&[], i64::MIN, i64::MAX)[0];
            assert_eq!(fresh.overlaps(s, e), want_overlap, "[{s}, {e}]");
            let read = &b.select(&[], i64::MIN, i64::MAX)[0];
            read.sets();
            assert_eq!(read.overlaps(s, e), want_overlap, "[{s}, {e}] read");
        }
    }
    assert_eq!(b.damaged_reads(), 0);
}

#[test]
fn a_damaged_footer_or_index_or_truncation_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), 3);
    let good = std::fs::read(&path).unwrap();
    let n = good.len();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated by one byte", good[..n - 1].to_vec()),
        ("truncated to half", good[..n / 2].to_vec()),
        ("bad magic", {
            let mut b = good.clone();
            b[0] ^= 1;
            b
        }),
        ("footer offset flipped", {
            let mut b = good.clone();
            b[n - 32] ^= 0x10;
            b
        }),
        ("index byte flipped", {
            let mut b = good.clone();
            b[n - 40] ^= 0x01;
            b
        }),
        ("garbage appended", {
            let mut b = good.clone();
            b.extend_from_slice(b"garbage");
            b
        }),
    ];
    for (what, bytes) in cases {
        let p = dir.path().join("x.block");
        std::fs::write(&p, &bytes).unwrap();
        match Block::open(&p) {
            Err(BlockError::Corrupt { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_damaged_blob_is_counted_and_the_other_series_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (path, want) = write(dir.path(), 4);
    let mut bytes = std::fs::read(&path).unwrap();
    // Series blobs start right after the magic: flip a byte of the first.
    bytes[MAGIC.len() + 20] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let b = Arc::new(Block::open(&path).unwrap());
    let all = b.select(&[], i64::MIN, i64::MAX);
    assert!(all[0].sets().is_empty());
    assert_eq!(b.damaged_reads(), 1);
    for (got, want) in all.iter().zip(&want).skip(1) {
        assert_eq!(merged(got.sets()), merged(&want.sets));
    }
    assert_eq!(b.damaged_reads(), 1);
}

/// Opens `testdata/blocks/<file>`, checks its version byte, and that it
/// reads back `series(3)` exactly (labels, totals, merged values, no
/// damage) with its sets' values in `encoding`.
fn fixture_reads_back(
    file: &str,
    version: u8,
    encoding: crate::tsdb::chunkenc::Encoding,
) -> Arc<Block> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/blocks")
        .join(file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], &[b'P', b'S', b'B', b'L', b'K', 0, 0, version]);
    let b = Arc::new(Block::open(&path).unwrap());
    let want = series(3);
    let all = b.select(&[], i64::MIN, i64::MAX);
    assert_eq!(all.len(), 3);
    for (got, want) in all.iter().zip(&want) {
        assert_eq!(got.labels(), &want.labels);
        assert!(got.sets().iter().all(|s| s.values_encoding() == encoding));
        assert_eq!(
            sets_totals(got.sets(), i64::MIN, i64::MAX),
            sets_totals(&want.sets, i64::MIN, i64::MAX)
        );
        assert_eq!(merged(got.sets()), merged(&want.sets));
    }
    assert_eq!(b.damaged_reads(), 0);
    b
}

/// `testdata/blocks/v2.block` was written by the version 2 writer (XOR value
/// chunks, columns naming stacks by their 16-byte ids) from `series(3)`:
/// it reads back exactly, as every version 2 block on disk must.
#[test]
fn a_version_2_block_reads_back_exactly() {
    fixture_reads_back("v2.block", 2, crate::tsdb::chunkenc::Encoding::Xor);
}

/// `testdata/blocks/v3.block` was written by the version 3 writer (every
/// section the bare message) from `series(3)`: it reads back exactly, as
/// every version 3 block on disk must.
#[test]
fn a_version_3_block_reads_back_exactly() {
    let b = fixture_reads_back("v3.block", 3, crate::tsdb::chunkenc::Encoding::Int);
    assert_eq!(b.symbols().unwrap().num_stacks(), 36);
}

/// `testdata/blocks/v4.block` was written by the version 4 writer (sections
/// framed, every integer chunk in the delta form) from `series(3)`: it reads
/// back exactly, as every version 4 block on disk must.
#[test]
fn a_version_4_block_reads_back_exactly() {
    let b = fixture_reads_back("v4.block", 4, crate::tsdb::chunkenc::Encoding::Int);
    assert_eq!(b.symbols().unwrap().num_stacks(), 36);
}

/// `testdata/blocks/v5.block` was written by the version 5 writer (the
/// symbols section's flat form, integer columns packed where shorter)
/// from `series(3)`: it reads back exactly, as every version 5 block on
/// disk must.
#[test]
fn a_version_5_block_reads_back_exactly() {
    let b = fixture_reads_back("v5.block", 5, crate::tsdb::chunkenc::Encoding::Int);
    assert_eq!(b.symbols().unwrap().num_stacks(), 36);
}

/// `testdata/blocks/v6.block` was written by the version 6 writer (no
/// presence runs) from `series(3)`: it reads back exactly, as every
/// version 6 block on disk must.
#[test]
fn a_version_6_block_reads_back_exactly() {
    let b = fixture_reads_back("v6.block", 6, crate::tsdb::chunkenc::Encoding::Int);
    assert_eq!(b.symbols().unwrap().num_stacks(), 36);
}

/// Version 5 writes each integer column in its shorter form: `series(3)`'s
/// scattered values (1 to 500, absent from two profiles in three) are
/// packed, and the block is smaller than the same block of version 4.
#[test]
fn version_5_packs_columns_that_are_shorter_packed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0_3000000.block");
    let w = write_block(&path, 0, 3_000_000, series(3), symbols()).unwrap();
    let v4 = std::fs::metadata(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/blocks/v4.block"),
    )
    .unwrap();
    assert!(w.bytes < v4.len(), "{} vs {}", w.bytes, v4.len());
    let b = Arc::new(Block::open(&path).unwrap());
    let (mut packed, mut delta) = (0, 0);
    for s in b.select(&[], i64::MIN, i64::MAX) {
        for set in s.sets() {
            let p = set.to_proto(|_| 0);
            for c in p.stacks.iter().map(|c| &c.values).chain([&p.totals]) {
                let chunk = crate::tsdb::chunkenc::IntChunk::from_bytes(c).unwrap();
                match chunk.is_packed() {
                    true => packed += 1,
                    false => {
                        // Delta only where packing would not be shorter.
                        assert!(chunk.compact().is_none());
                        delta += 1;
                    }
                }
            }
        }
    }
    assert!(packed > delta, "{packed} packed, {delta} delta");
}

/// Version 4 stores each blob, the symbols and the index framed; these
/// compress, and the file is smaller than the same block of version 3.
#[test]
fn version_4_sections_are_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0_3000000.block");
    let w = write_block(&path, 0, 3_000_000, series(3), symbols()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let v3 = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/blocks/v3.block"),
    )
    .unwrap();
    // Random values of few stacks: little for zstd to find (9 % here;
    // 1.3–2.7× on the scenarios of BENCHMARKS.md).
    assert!(bytes.len() < v3.len(), "{} vs {}", bytes.len(), v3.len());
    assert!(w.bytes < w.plain_bytes, "{w:?}");
    // The first blob starts right after the magic; the index right before
    // the footer, where the footer says.
    assert_eq!(bytes[MAGIC.len()], section::ZSTD);
    let n = bytes.len();
    let index_at = u64::from_le_bytes(bytes[n - 32..n - 24].try_into().unwrap()) as usize;
    assert_eq!(bytes[index_at], section::ZSTD);
    let index = section::unframe(&bytes[index_at..n - 32], usize::MAX).unwrap();
    let index =
        <crate::proto::block::BlockIndex as prost::Message>::decode(index.as_ref()).unwrap();
    assert_eq!(bytes[index.symbols_offset as usize], section::ZSTD);
    assert_eq!(index.series.len(), 3);
    assert!(index
        .series
        .iter()
        .all(|e| bytes[e.chunks_offset as usize] == section::ZSTD));
}

/// A version 3 block's columns name stacks by index into the symbols
/// section, in integer chunks; an index past the table makes the blob read
/// as damaged, not as another stack.
#[test]
fn version_3_columns_index_the_symbols_table() {
    let dir = tempfile::tempdir().unwrap();
    let (path, want) = write(dir.path(), 2);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    let b = Arc::new(Block::open(&path).unwrap());
    let n = b.symbols().unwrap().num_stacks();
    let all = b.select(&[], i64::MIN, i64::MAX);
    for (got, want) in all.iter().zip(&want) {
        assert!(got
            .sets()
            .iter()
            .all(|s| s.values_encoding() == crate::tsdb::chunkenc::Encoding::Int));
        assert_eq!(merged(got.sets()), merged(&want.sets));
    }
    // Every index is in range, and the table holds exactly the stacks used.
    let used: std::collections::BTreeSet<StackId> = want
        .iter()
        .flat_map(|s| s.sets.iter().flat_map(|c| c.stack_ids()))
        .collect();
    assert_eq!(n, used.len());
    let s = b.symbols().unwrap();
    let set = want[0].sets[0].to_proto(|_| n as u32);
    assert!(ChunkSet::from_proto(&set, &std::sync::Arc::default(), |c| {
        s.stacks()
            .get(c.stack_index as usize)
            .map(|x| x.0)
            .ok_or_else(|| "out of range".to_string())
    })
    .is_err());
}

/// A block of a format version newer than this build's is refused with a
/// version error (not moved aside as damaged).
#[test]
fn a_newer_version_is_refused_not_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7] = MAGIC[7] + 1;
    std::fs::write(&path, &bytes).unwrap();
    match Block::open(&path) {
        Err(BlockError::Version { version, .. }) => assert_eq!(version, MAGIC[7] + 1),
        other => panic!("{other:?}"),
    }
}
