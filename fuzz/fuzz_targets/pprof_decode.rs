//! Fuzzes `profstore::pprof::decode` (gunzip, pre-scan, prost, validate) and
//! the encode/decode round trip of whatever it accepts; see
//! `profstore::pprof::fuzz_decode`.
//!
//! Run from the crate root: `cargo fuzz run pprof_decode` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run pprof_decode`). Seed the corpus
//! with real profiles for better coverage, e.g.
//! `mkdir -p fuzz/corpus/pprof_decode && cp testdata/pprof/*/* fuzz/corpus/pprof_decode/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _accepted = profstore::pprof::fuzz_decode(data);
});
