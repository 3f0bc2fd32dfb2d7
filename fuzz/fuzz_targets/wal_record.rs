//! Fuzzes write-ahead log replay: `profstore::tsdb::wal::read_segment` (record
//! framing, CRC checks, resynchronisation after damage) on arbitrary segment
//! bytes, then the whole replay the daemon runs at start: `Tsdb::open` on a
//! data directory whose only WAL segment holds those bytes, which decodes
//! every `ProfileRecord` payload into an ingest request and ingests it.
//!
//! Input: the first byte picks the mode. Even: the rest is the segment as
//! is. Odd: the rest is a list of records that this target frames with
//! correct CRCs (so that the fuzzer reaches the payload decoding), each
//! optionally damaged; see `build_segment`.
//!
//! Must hold: no panic, hang or huge allocation, and replay never fails to
//! open the store. Every damage offset and the torn tail lie inside the
//! segment, in order. The records read, framed again (as
//! `docs/format/wal.md` says), read back identically and without damage, and
//! give the input back when it had no damage. When the segment holds a
//! profile record that decodes, replay hands every profile record to ingest
//! (ingested, skipped or failed; a record whose `ProfileRecord` or pprof does
//! not decode fails), reports the same damage, and cuts off exactly the torn
//! tail: what is left reads the same records with no tail.
//!
//! Run from the crate root: `cargo fuzz run wal_record` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run wal_record`).

#![no_main]

#[path = "memdir.rs"]
mod memdir;

use libfuzzer_sys::fuzz_target;
use profstore::pprof::{self, DecodeLimits};
use profstore::proto::wal::ProfileRecord;
use profstore::tsdb::wal::{read_segment, SegmentRead, SyncPolicy, WalOptions, SEGMENT_MAGIC};
use profstore::tsdb::{Tsdb, TsdbConfig};
use prost::Message;

/// The only record type version 1 knows (`RecordType::Profile`).
const PROFILE: u8 = 1;

/// Frames one record per `docs/format/wal.md`: payload length (u32 LE),
/// CRC32 of the type byte and the payload (u32 LE), type, payload.
fn frame(out: &mut Vec<u8>, typ: u8, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[typ]);
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(typ);
    out.extend_from_slice(payload);
}

/// Builds a segment from `spec`: a list of `header, len (u16 LE), payload`
/// (the payload cut short at the end of the input). `header & 3` is the
/// record type (0, 2 and 3 are unknown types); `0x10` flips a CRC bit;
/// `0x20` puts `len % 16` garbage bytes (from the payload) before the
/// record instead of a record; `0x40` tears the record in half and ends the
/// segment. `bad_magic` damages the magic. Returns the segment and whether
/// it is clean (no damage asked for), with the records it holds then.
fn build_segment(spec: &[u8], bad_magic: bool) -> (Vec<u8>, Option<Vec<(u8, Vec<u8>)>>) {
    let mut seg = SEGMENT_MAGIC.to_vec();
    let mut clean = !bad_magic;
    if bad_magic {
        seg[0] ^= 0x20;
    }
    let mut records = Vec::new();
    let mut rest = spec;
    while let [h, l0, l1, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        if h & 0x20 != 0 {
            clean = false;
            seg.extend_from_slice(&payload[..len.min(usize::from(*l0 % 16))]);
            continue;
        }
        let typ = h & 3;
        let start = seg.len();
        frame(&mut seg, typ, payload);
        if h & 0x10 != 0 {
            clean = false;
            seg[start + 4] ^= 1;
        }
        if h & 0x40 != 0 {
            seg.truncate(start + (seg.len() - start) / 2);
            clean = false;
            break;
        }
        records.push((typ, payload.to_vec()));
    }
    (seg, clean.then_some(records))
}

/// Whether a record payload holds a `ProfileRecord` with a pprof that
/// decodes under the default limits, as replay needs.
fn decodes(payload: &[u8]) -> bool {
    ProfileRecord::decode(payload)
        .is_ok_and(|r| pprof::decode(&r.pprof, &DecodeLimits::default()).is_ok())
}

fn read(data: &[u8]) -> (Vec<(u8, Vec<u8>)>, SegmentRead) {
    let mut records = Vec::new();
    let r = read_segment(data, |typ, payload| records.push((typ, payload.to_vec())));
    (records, r)
}

/// A temporary data directory whose WAL is the one segment `data`; returns
/// it and the segment's path. In memory when possible: opening a store
/// syncs files and directories.
fn data_dir(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = memdir::tempdir();
    let wal = dir.path().join("wal");
    std::fs::create_dir(&wal).expect("wal dir");
    let segment = wal.join("00000001");
    std::fs::write(&segment, data).expect("segment");
    (dir, segment)
}

fn open(dir: &std::path::Path) -> Tsdb {
    Tsdb::open(TsdbConfig {
        data_dir: Some(dir.to_path_buf()),
        // No background sync thread.
        wal: WalOptions {
            sync: SyncPolicy::Always,
            ..WalOptions::default()
        },
        ..TsdbConfig::default()
    })
    .expect("replay never stops the start")
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let (built, expected);
    let data: &[u8] = if mode & 1 == 0 {
        expected = None;
        rest
    } else {
        (built, expected) = build_segment(rest, mode & 2 != 0);
        &built
    };

    let (records, found) = read(data);
    let mut last = None;
    for c in &found.corruptions {
        assert!(c.offset < data.len() as u64, "damage past the end: {c:?}");
        assert!(last < Some(c.offset), "damage out of order: {c:?}");
        last = Some(c.offset);
    }
    if let Some(t) = found.torn_tail_at {
        assert!(t <= data.len());
        assert!(last <= Some(t as u64), "torn tail before damage");
    }
    let framed: usize = records.iter().map(|(_, p)| 9 + p.len()).sum();
    assert!(framed <= data.len());

    // The records, framed again, read back identically and cleanly.
    let mut again = SEGMENT_MAGIC.to_vec();
    for (typ, payload) in &records {
        frame(&mut again, *typ, payload);
    }
    let (reread, clean) = read(&again);
    assert_eq!(reread, records, "framing the records again changed them");
    assert!(clean.corruptions.is_empty() && clean.torn_tail_at.is_none());
    if found.corruptions.is_empty() && found.torn_tail_at.is_none() {
        assert_eq!(again, data, "an undamaged segment is not its records");
    }
    if let Some(want) = expected {
        assert_eq!(records, want, "records of a clean segment");
        assert!(found.corruptions.is_empty() && found.torn_tail_at.is_none());
    }

    // The daemon's replay of the same bytes, when it has a profile to
    // ingest (opening a store costs milliseconds; the framing was checked
    // above).
    let known = records.iter().filter(|(t, _)| *t == PROFILE).count() as u64;
    let decodable = records
        .iter()
        .filter(|(t, p)| *t == PROFILE && decodes(p))
        .count() as u64;
    if decodable == 0 {
        return;
    }
    let tail = found.torn_tail_at.map_or(0, |t| data.len() - t) as u64;
    let (dir, segment) = data_dir(data);
    let store = open(dir.path());
    let r = store.recovery();
    assert_eq!(r.wal.records, known, "records replayed");
    assert_eq!(r.profiles + r.skipped + r.failed, known, "replay outcomes");
    assert!(
        r.profiles + r.skipped <= decodable,
        "replay ingested an undecodable record"
    );
    assert_eq!(r.wal.corruptions.len(), found.corruptions.len(), "damage");
    assert_eq!(r.wal.truncated_tail_bytes, tail, "torn tail cut off");
    drop(store);

    // The tail is cut off exactly: what is left reads the same records,
    // with nothing left to cut.
    let cut = std::fs::read(&segment).expect("segment");
    assert_eq!(
        cut.len() as u64,
        data.len() as u64 - tail,
        "segment after replay"
    );
    let (kept, again) = read(&cut);
    assert_eq!(kept, records, "cutting the torn tail lost records");
    assert_eq!(again.torn_tail_at.map_or(0, |t| cut.len() - t), 0);
    assert_eq!(again.corruptions.len(), found.corruptions.len());
});
