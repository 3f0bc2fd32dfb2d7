//! Fuzzes block files, the decoder of bytes from disk that a start or a
//! query reads: `Block::open` (magic, footer, index), every series' chunk
//! blob, and the symbols section (`BlockSymbols::decode`). Arbitrary bytes
//! give an error (or a block whose damaged parts read as empty), never a
//! panic, a hang or a huge allocation.
//!
//! The first input byte picks what the rest is:
//! - 0: a whole file;
//! - 1: a change to a valid block written once per process (two bytes of
//!   offset, then bytes XORed in there), so the fuzzer reaches the index,
//!   the blobs and the symbols behind a valid footer;
//! - 2: a symbols section alone;
//! - 3: a block descriptor as a querier reads it from a bucket
//!   (`Descriptor::parse`: JSON, then its checks);
//! - 4: an ingester's live data as a querier opens it, from memory
//!   (`querier::live::live_block`), the rest as in 1 (a change to the
//!   valid block);
//! - 5: one stored section of a version 4 block (`section::unframe`: an
//!   encoding byte, then the message or its length and a zstd frame),
//!   which a file reaches only behind a matching CRC32;
//! - 6: a change (as in 1) to the valid block's first series blob as a
//!   message (`SeriesChunks`: chunk sets with columns and, since format 6,
//!   rows), decoded set by set (`ChunkSet::from_proto`) as a reader does
//!   once the blob's CRC32 matched, which a changed file rarely does.
//!
//! Run from the crate root: `RUSTC_BOOTSTRAP=1 cargo fuzz run block_file`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::engine::live::LiveData;
use profstore::model::StackId;
use profstore::model::{Function, Labels, Line, Location, Stacktrace};
use profstore::proto::block as pb;
use profstore::querier::live::live_block;
use profstore::tsdb::block::{section, write_block, Block, BlockSeriesData, BlockSymbols};
use profstore::tsdb::chunkset::{build_sets, AppendProfile, ChunkSet};
use profstore::tsdb::meta::MetaStore;
use profstore::tsdb::ship::Descriptor;
use prost::Message;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A directory of this process for the files under test.
fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("profstore-fuzz-block-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// The valid block's first series blob as a message, and the stacks its
/// columns index (set by [`valid`]).
static SETS: OnceLock<(Vec<u8>, Vec<StackId>)> = OnceLock::new();

/// A small valid block: two series, three stacks.
fn valid() -> &'static Vec<u8> {
    static V: OnceLock<Vec<u8>> = OnceLock::new();
    V.get_or_init(|| {
        let meta = MetaStore::temporary().unwrap();
        let f = meta
            .function_ids(
                ["main", "work", "idle"]
                    .iter()
                    .map(|n| Function {
                        name: n.to_string(),
                        filename: "main.go".into(),
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        let l = meta
            .location_ids(
                f.iter()
                    .map(|f| Location {
                        address: 0x1000,
                        lines: vec![Line {
                            function: *f,
                            line: 3,
                            column: 0,
                        }],
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        let s = meta
            .stack_ids(
                (0..3)
                    .map(|i| Stacktrace {
                        locations: l[..=i].to_vec(),
                        num_labels: Vec::new(),
                    })
                    .collect(),
            )
            .unwrap();
        let series = (0..2)
            .map(|i| {
                let profiles: Vec<AppendProfile> = (0..5)
                    .map(|p| AppendProfile {
                        timestamp: 1_000 + p * 10_000,
                        duration: 10,
                        period: 1,
                        samples: vec![(s[i], p + 1), (s[2], 7)],
                        // Rows of sample labels, so their decoder is fuzzed.
                        tagged: vec![(
                            vec![("span_id".to_string(), format!("{:x}", p % 3))],
                            s[i],
                            p + 1,
                        )],
                    })
                    .collect();
                BlockSeriesData {
                    labels: Labels::from_pairs([
                        ("__name__", "memory:alloc_space:bytes:space:bytes"),
                        ("instance", if i == 0 { "a" } else { "b" }),
                    ]),
                    pprof_labels: Vec::new(),
                    sets: build_sets(&profiles, &std::sync::Arc::default()),
                }
            })
            .collect::<Vec<_>>();
        let first = pb::SeriesChunks {
            sets: series[0]
                .sets
                .iter()
                .map(|set| set.to_proto(|id| s.iter().position(|x| *x == id).unwrap() as u32))
                .collect(),
        };
        let _ = SETS.set((first.encode_to_vec(), s.clone()));
        let path = dir().join("valid.block");
        write_block(&path, 0, 100_000, series, &meta).unwrap();
        std::fs::read(&path).unwrap()
    })
}

fn read_all(bytes: &[u8]) {
    let path = dir().join("input.block");
    std::fs::write(&path, bytes).unwrap();
    if let Ok(b) = Block::open(&path) {
        read_block(b);
    }
}

fn read_block(b: Block) {
    let b = std::sync::Arc::new(b);
    for s in b.select(&[], i64::MIN, i64::MAX) {
        let _ = s.sets().len();
    }
    if let Ok(sym) = b.symbols() {
        let _ = sym.num_stacks();
    }
}

/// The valid block with `rest` applied (see mode 1).
fn changed(rest: &[u8]) -> Vec<u8> {
    change(valid().clone(), rest)
}

/// `b` with `rest` applied: two bytes of offset, then bytes XORed in there.
fn change(mut b: Vec<u8>, rest: &[u8]) -> Vec<u8> {
    if rest.len() >= 2 {
        let at = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % b.len();
        for (i, x) in rest[2..].iter().enumerate() {
            if let Some(y) = b.get_mut(at + i) {
                *y ^= x;
            }
        }
    }
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 7 {
        0 => read_all(rest),
        5 => {
            if let Ok(m) = section::unframe(rest, 1 << 16) {
                assert!(m.len() <= (1 << 16).max(rest.len()));
            }
        }
        1 => read_all(&changed(rest)),
        4 => {
            let data = LiveData {
                external_labels: [("replica".to_string(), "a".to_string())].into(),
                block: changed(rest),
            };
            if let Ok((d, b)) = live_block("http://ingester", data) {
                assert_eq!((d.min_time, d.max_time), (b.min_time(), b.max_time()));
                read_block(b);
            }
        }
        6 => {
            valid();
            let (blob, stacks) = SETS.get().expect("set by valid()");
            let blob = change(blob.clone(), rest);
            if let Ok(m) = pb::SeriesChunks::decode(&blob[..]) {
                let table = std::sync::Arc::default();
                for set in &m.sets {
                    let id = |c: &pb::StackColumn| {
                        stacks
                            .get(c.stack_index as usize)
                            .copied()
                            .ok_or_else(|| format!("stack index {}", c.stack_index))
                    };
                    if let Ok(s) = ChunkSet::from_proto(set, &table, id) {
                        assert!(!s.profiles(i64::MIN, i64::MAX).is_empty());
                    }
                }
            }
        }
        3 => {
            if let Ok(d) = Descriptor::parse(rest) {
                assert!(d.sources.contains(&d.id) && d.min_time < d.max_time);
            }
        }
        _ => {
            if let Ok(s) = BlockSymbols::decode(rest) {
                // Every stack's locations resolve within the table.
                for (_, st) in s.stacks() {
                    for l in &st.locations {
                        assert!(s.locations().iter().any(|(id, _)| id == l));
                    }
                }
            }
        }
    }
});
