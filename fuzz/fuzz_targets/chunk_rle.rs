//! Fuzzes `RleChunk::from_bytes`: arbitrary bytes give `Ok` or `Err`, never a
//! panic, a hang or a huge allocation. An accepted chunk must re-serialize to
//! the same bytes, agree between `iter`, `get` and `last`, and stay valid
//! after an append (when it has room: a chunk holds at most `MAX_SAMPLES`
//! values, and a few long runs can claim that many).
//!
//! Run from the crate root: `cargo fuzz run chunk_rle` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run chunk_rle`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::tsdb::chunkenc::{RleChunk, RLE_MAX_SAMPLES as MAX_SAMPLES};

fuzz_target!(|data: &[u8]| {
    let Ok(c) = RleChunk::from_bytes(data) else {
        return;
    };
    assert_eq!(c.bytes(), data);
    // A valid chunk may claim a huge count in a few long runs: look at a
    // bounded prefix only.
    let n = c.len().min(1 << 12);
    for (i, v) in c.iter().take(n).enumerate() {
        assert_eq!(c.get(i), Some(v));
    }
    if let Some(i) = c.len().checked_sub(1) {
        assert_eq!(c.get(i), c.last());
    }
    assert_eq!(c.get(c.len()), None);
    if c.len() as u64 + 2 > MAX_SAMPLES {
        return;
    }
    let mut more = c.clone();
    more.append(c.last().unwrap_or(0) ^ 1);
    more.append(c.last().unwrap_or(0) ^ 1);
    let again = RleChunk::from_bytes(more.bytes()).expect("append keeps a chunk valid");
    assert_eq!(again, more);
});
