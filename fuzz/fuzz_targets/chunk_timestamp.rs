//! Fuzzes `TimestampChunk::from_bytes`: arbitrary bytes give `Ok` or `Err`,
//! never a panic, a hang or a huge allocation. An accepted chunk must
//! re-serialize to the same bytes, iterate exactly `len()` strictly increasing
//! timestamps, reject an out-of-order append unchanged, and stay valid after
//! an in-order append.
//!
//! Run from the crate root: `cargo fuzz run chunk_timestamp` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run chunk_timestamp`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::tsdb::chunkenc::TimestampChunk;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = TimestampChunk::from_bytes(data) else {
        return;
    };
    assert_eq!(c.bytes(), data);
    let ts: Vec<i64> = c.iter().collect();
    assert_eq!(ts.len(), c.len());
    assert!(ts.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ts.last().copied(), c.last());
    let mut more = c.clone();
    if let Some(&last) = ts.last() {
        assert!(more.append(last).is_err());
        assert_eq!(more, c);
    }
    let next = match ts.last() {
        None => Some(0),
        Some(&last) => last.checked_add(1),
    };
    if let Some(t) = next {
        more.append(t).expect("after the last timestamp");
        let again = TimestampChunk::from_bytes(more.bytes()).expect("append keeps a chunk valid");
        assert_eq!(again, more);
    }
});
