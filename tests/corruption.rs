//! Damage over the real binary. WAL: bytes flipped in the middle of a
//! segment and a torn tail. Blocks: a byte flipped in a series' chunks and a
//! truncated block file. Start-up succeeds, the damage is reported (log and
//! the `profstore_wal_corruptions`, `profstore_damaged_blocks` and
//! `profstore_block_damaged_reads_total` metrics), everything undamaged is
//! served with its exact totals, and nothing panics.
//!
//! The WAL test restarts with SIGKILL: a clean shutdown writes the head
//! snapshot and deletes the WAL.

mod common;

use common::daemon::*;
use std::path::{Path, PathBuf};

const FILE: &str = "parca/fib.pb.gz";

fn metric(srv: &Server, name: &str) -> f64 {
    let text = srv.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

fn push(srv: &Server, body: &[u8], instance: &str) {
    let target = format!(
        "/api/v1/write?{}",
        qs(&[("labels", &format!(r#"{{job="wal",instance="{instance}"}}"#))])
    );
    let r = srv.call("POST", &target, None, body);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The first WAL segment, and the byte ranges of its records' payloads.
fn first_segment(data_dir: &Path) -> (PathBuf, Vec<std::ops::Range<usize>>) {
    let path = data_dir.join("wal").join("00000001");
    let bytes = std::fs::read(&path).unwrap();
    let mut at = 8;
    let mut payloads = Vec::new();
    while at + 9 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        payloads.push(at + 9..at + 9 + len);
        at += 9 + len;
    }
    assert_eq!(at, bytes.len(), "well-formed before the damage");
    (path, payloads)
}

#[test]
fn damaged_wal_segments_are_reported_and_the_rest_served() {
    let body = std::fs::read(common::testdata_dir().join(FILE)).unwrap();
    let expected = file_total(FILE);
    let mut srv = Server::start(&[]);
    for i in 0..10 {
        push(&srv, &body, &format!("i{i}"));
    }
    srv.kill_and_restart(&[]);
    assert_eq!(totals_by_instance(&srv, r#"{job="wal"}"#).len(), 10);
    assert_eq!(metric(&srv, "profstore_wal_corruptions"), 0.0);

    // Flip one byte in the middle of record 4's payload: it is skipped and
    // reported; the 9 others come back.
    let data_dir = srv.dir.path().join("data");
    let (seg, payloads) = first_segment(&data_dir);
    assert_eq!(payloads.len(), 10);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = (payloads[4].start + payloads[4].end) / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    srv.kill_and_restart(&[]);
    let got = totals_by_instance(&srv, r#"{job="wal"}"#);
    assert_eq!(got.len(), 9, "{got:?}");
    assert!(!got.contains_key("i4"));
    assert!(got.values().all(|v| *v == expected));
    assert_eq!(metric(&srv, "profstore_wal_corruptions"), 1.0);
    assert_eq!(metric(&srv, "profstore_wal_replayed_records"), 9.0);

    // New writes land in a new segment; then tear the newest segment's tail
    // (a write cut short by a crash): its whole records come back.
    push(&srv, &body, "j0");
    push(&srv, &body, "j1");
    srv.kill_and_restart(&[]);
    let wal = data_dir.join("wal");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 8)
        .collect();
    segs.sort();
    let last = segs.last().unwrap().clone();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    srv.kill_and_restart(&[]);
    let got = totals_by_instance(&srv, r#"{job="wal"}"#);
    assert!(got.contains_key("j0"), "{got:?}");
    assert!(!got.contains_key("j1"), "torn record dropped: {got:?}");
    assert_eq!(got.len(), 10);
    assert!(got.values().all(|v| *v == expected));

    // Garbage appended to a closed segment and a stray file: still starts.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::write(wal.join("notes.txt"), b"not a segment").unwrap();
    srv.kill_and_restart(&[]);
    assert_eq!(totals_by_instance(&srv, r#"{job="wal"}"#).len(), 10);
    assert!(metric(&srv, "profstore_wal_corruptions") >= 2.0);
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn damaged_blocks_are_reported_and_the_rest_served() {
    let profile = common::load(&common::testdata_dir().join(FILE));
    let expected = file_total(FILE);
    let args = ["--block-duration", "1m"];
    let mut srv = Server::start(&args);
    // One profile per instance, 5 s apart: 8 minutes of data, so the
    // maintenance thread cuts several 1-minute blocks.
    let n = 96;
    for i in 0..n {
        let mut p = profile.clone();
        p.time_nanos = (1_700_000_000_000 + i * 5_000) * 1_000_000;
        push(&srv, &profstore::pprof::encode(&p), &format!("i{i}"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&srv, "profstore_blocks") < 4.0 {
        assert!(std::time::Instant::now() < deadline, "no blocks were cut");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    srv.restart(&args);
    let before = totals_by_instance(&srv, r#"{job="wal"}"#);
    assert_eq!(before.len(), n as usize);
    assert_eq!(metric(&srv, "profstore_wal_replayed_records"), 0.0);

    let dir = srv.dir.path().join("data").join("blocks");
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    blocks.sort();
    assert!(blocks.len() >= 4, "{blocks:?}");
    // Truncate the first block; flip a byte inside the second's first
    // series' chunks (they start right after the 8-byte magic).
    let len = std::fs::metadata(&blocks[0]).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&blocks[0])
        .unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    let mut bytes = std::fs::read(&blocks[1]).unwrap();
    bytes[8 + 30] ^= 0x5a;
    std::fs::write(&blocks[1], &bytes).unwrap();
    std::fs::write(dir.join("README"), b"a stray file").unwrap();

    srv.restart(&args);
    assert_eq!(metric(&srv, "profstore_damaged_blocks"), 1.0);
    let got = totals_by_instance(&srv, r#"{job="wal"}"#);
    assert!(metric(&srv, "profstore_block_damaged_reads_total") >= 1.0);
    // Every instance served is exact but at most one: each instance is two
    // series (two sample types), and the damaged blob is one series of one
    // instance. The instances lost whole are those of the truncated block
    // (at most 12 profiles a minute).
    assert!(got.keys().all(|k| before.contains_key(k)));
    let partial: Vec<_> = got.iter().filter(|(_, v)| **v != expected).collect();
    assert!(partial.len() <= 1, "{partial:?}");
    let lost = n as usize - got.len();
    assert!((1..=12).contains(&lost), "{lost} instances lost");
    assert!(partial.len() + lost >= 2, "both damages show");
    assert!(dir
        .join(blocks[0].with_extension("damaged").file_name().unwrap())
        .exists());
    assert_eq!(srv.terminate(), Some(0));
}
