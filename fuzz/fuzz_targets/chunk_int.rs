//! Fuzzes `IntChunk::from_bytes`: arbitrary bytes give `Ok` or `Err`, never a
//! panic, a hang or a huge allocation. An accepted chunk must re-serialize to
//! the same bytes, iterate exactly `len()` values, be the one encoding of
//! its values in its form (delta, or packed with presence as bits or as
//! runs), and stay valid after an append; `IntChunk::check_bytes` accepts
//! exactly the same bytes.
//!
//! Run from the crate root: `cargo fuzz run chunk_int` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run chunk_int`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::tsdb::chunkenc::IntChunk;

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        IntChunk::check_bytes(data).ok(),
        IntChunk::from_bytes(data).ok().map(|c| c.len())
    );
    let Ok(c) = IntChunk::from_bytes(data) else {
        return;
    };
    assert_eq!(c.bytes(), data);
    let vs: Vec<i64> = c.iter().collect();
    assert_eq!(vs.len(), c.len());
    assert_eq!(vs.last().copied(), c.last());
    if c.is_packed() {
        assert_eq!(
            IntChunk::packed_with_presence(&vs, c.has_presence_runs()).as_ref(),
            Some(&c)
        );
    } else {
        assert_eq!(IntChunk::from_values(&vs), c);
    }
    let mut more = c.clone();
    more.append(vs.first().copied().unwrap_or(0) ^ 0x5555);
    let again = IntChunk::from_bytes(more.bytes()).expect("append keeps a chunk valid");
    assert_eq!(again, more);
});
