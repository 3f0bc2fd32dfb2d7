use super::*;

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| (0..(i * 37) % 300).map(|j| (i * 7 + j) as u8).collect())
        .collect()
}

fn replay(dir: &Path) -> (Vec<Vec<u8>>, ReplayStats) {
    let mut got = Vec::new();
    let (wal, stats) = Wal::open(dir, WalOptions::default(), |t, p| {
        assert_eq!(t, RecordType::Profile);
        got.push(p.to_vec());
        None
    })
    .unwrap();
    drop(wal);
    (got, stats)
}

fn write_all(dir: &Path, options: WalOptions, records: &[Vec<u8>]) {
    let (wal, _) = Wal::open(dir, options, |_, _| -> Option<i64> { panic!("empty log") }).unwrap();
    for r in records {
        wal.append(RecordType::Profile, r).unwrap();
        wal.commit().unwrap();
    }
}

#[test]
fn round_trip_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let records = payloads(200);
    let options = WalOptions {
        sync: SyncPolicy::Always,
        segment_bytes: 4096,
    };
    write_all(dir.path(), options, &records[..100]);
    let (got, stats) = replay(dir.path());
    assert_eq!(got, records[..100]);
    assert!(stats.segments > 3, "{stats:?}");
    assert!(stats.corruptions.is_empty());
    // Appends after a reopen go to a new segment and replay after the old.
    let (wal, _) = Wal::open(dir.path(), options, |_, _| None).unwrap();
    for r in &records[100..] {
        wal.append(RecordType::Profile, r).unwrap();
    }
    drop(wal);
    let (got, stats) = replay(dir.path());
    assert_eq!(got, records);
    assert_eq!(stats.records, 200);
}

fn last_segment(dir: &Path) -> PathBuf {
    list_segments(dir).unwrap().last().unwrap().1.clone()
}

fn segments_with_data(dir: &Path) -> Vec<PathBuf> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| std::fs::metadata(p).unwrap().len() > SEGMENT_MAGIC.len() as u64)
        .collect()
}

#[test]
fn every_torn_tail_is_cut_and_the_prefix_replayed() {
    let records = payloads(6);
    let base = tempfile::tempdir().unwrap();
    write_all(base.path(), WalOptions::default(), &records);
    let seg = segments_with_data(base.path()).pop().unwrap();
    let full = std::fs::read(&seg).unwrap();
    // Record boundaries, to know how many records a cut keeps.
    let mut ends = vec![SEGMENT_MAGIC.len()];
    for r in &records {
        ends.push(ends.last().unwrap() + FRAME_HEADER_LEN + r.len());
    }
    // Every cut inside the magic and the first record, then every 3rd byte.
    for cut in (0..full.len()).filter(|&c| c < ends[1] + 2 || c % 3 == 0) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000001"), &full[..cut]).unwrap();
        let (got, stats) = replay(dir.path());
        let kept = ends.iter().filter(|&&e| e <= cut).count().saturating_sub(1);
        assert_eq!(got, records[..kept], "cut at {cut}");
        assert!(stats.corruptions.is_empty(), "cut at {cut}: {stats:?}");
        // The tail was cut off: a second replay finds nothing to cut.
        let (got2, stats2) = replay(dir.path());
        assert_eq!(got2, got);
        assert_eq!(stats2.truncated_tail_bytes, 0, "cut at {cut}");
    }
}

#[test]
fn damage_in_the_middle_is_reported_and_the_rest_replayed() {
    let records = payloads(40);
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), WalOptions::default(), &records);
    let seg = segments_with_data(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    // Flip a byte inside record 10's payload.
    let off: usize = SEGMENT_MAGIC.len()
        + records[..10]
            .iter()
            .map(|r| FRAME_HEADER_LEN + r.len())
            .sum::<usize>()
        + FRAME_HEADER_LEN
        + 3;
    data[off] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    let (got, stats) = replay(dir.path());
    let mut want = records.clone();
    want.remove(10);
    assert_eq!(got, want);
    assert_eq!(stats.corruptions.len(), 1, "{stats:?}");
    assert_eq!(stats.corruptions[0].segment, 1);
    assert!(stats.corruptions[0].reason.contains("CRC32"));
}

#[test]
fn a_damaged_closed_segment_does_not_stop_later_ones() {
    let records = payloads(60);
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(10)),
        segment_bytes: 2048,
    };
    write_all(dir.path(), options, &records);
    let segs = segments_with_data(dir.path());
    assert!(segs.len() >= 3);
    // Truncate the first segment mid-record and zero the magic of the second.
    let first = std::fs::read(&segs[0]).unwrap();
    std::fs::write(&segs[0], &first[..first.len() - 5]).unwrap();
    let mut second = std::fs::read(&segs[1]).unwrap();
    second[..8].fill(0);
    std::fs::write(&segs[1], &second).unwrap();
    let (got, stats) = replay(dir.path());
    assert_eq!(got.len(), 60 - 1, "one torn record lost, {stats:?}");
    assert_eq!(got.last(), records.last());
    assert_eq!(stats.corruptions.len(), 2, "{stats:?}");
    assert_eq!(stats.truncated_tail_bytes, 0);
}

#[test]
fn garbage_segments_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x2545f4914f6cdd1du64;
    for i in 0..200u64 {
        let len = (i * 13 % 500) as usize;
        let mut data: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        if i % 2 == 0 && data.len() >= 8 {
            data[..8].copy_from_slice(SEGMENT_MAGIC);
        }
        let _ = read_segment(&data, |_, _| {});
    }
    // A directory with a stray file and an empty segment opens fine.
    std::fs::write(dir.path().join("README"), b"x").unwrap();
    std::fs::write(dir.path().join("00000007"), b"").unwrap();
    let (got, _) = replay(dir.path());
    assert!(got.is_empty());
    assert!(last_segment(dir.path()).ends_with("00000008"));
}

#[test]
fn sync_policy_parses() {
    assert_eq!("always".parse::<SyncPolicy>(), Ok(SyncPolicy::Always));
    assert_eq!(
        "200ms".parse::<SyncPolicy>(),
        Ok(SyncPolicy::Interval(Duration::from_millis(200)))
    );
    assert!("0s".parse::<SyncPolicy>().is_err());
    assert!("often".parse::<SyncPolicy>().is_err());
}

#[test]
fn segments_are_removed_only_when_closed_and_older_than_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        sync: SyncPolicy::Always,
        segment_bytes: 1 << 20,
    };
    let (wal, _) = Wal::open(dir.path(), options, |_, _| None).unwrap();
    // Segment 1: profiles at 10 and 20; segment 2: 15 and 40; segment 3
    // (current): 5.
    wal.append_at(RecordType::Profile, b"a", 10).unwrap();
    wal.append_at(RecordType::Profile, b"b", 20).unwrap();
    let s2 = wal.cut().unwrap();
    wal.append_at(RecordType::Profile, b"c", 15).unwrap();
    wal.append_at(RecordType::Profile, b"d", 40).unwrap();
    let s3 = wal.cut().unwrap();
    assert_eq!((s2, s3), (2, 3));
    wal.append_at(RecordType::Profile, b"e", 5).unwrap();
    assert_eq!(wal.num_segments(), 3);
    // Nothing before 20 is durable elsewhere: segment 1 holds 20.
    assert_eq!(wal.remove_before(s3, 20).unwrap(), 0);
    assert_eq!(wal.remove_before(s3, 21).unwrap(), 1);
    // The current segment is never removed, whatever its timestamps.
    assert_eq!(wal.remove_before(s3, i64::MAX).unwrap(), 1);
    assert_eq!(wal.num_segments(), 1);
    drop(wal);
    // Reopen: timestamps come back from replay, per segment.
    let mut seen = Vec::new();
    let (wal, stats) = Wal::open(dir.path(), options, |_, p| {
        seen.push(p.to_vec());
        Some(if p == b"e" { 5 } else { 99 })
    })
    .unwrap();
    assert_eq!(seen, vec![b"e".to_vec()]);
    assert_eq!(stats.segments, 1);
    let s5 = wal.cut().unwrap();
    assert_eq!(
        wal.remove_before(s5, 6).unwrap(),
        2,
        "segment 3 and the empty 4"
    );
    drop(wal);
    let (_, stats) = Wal::open(dir.path(), options, |_, _| None).unwrap();
    assert_eq!(stats.records, 0);
}
