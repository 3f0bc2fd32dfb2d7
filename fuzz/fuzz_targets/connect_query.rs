//! Fuzzes the decoding of the Connect query API's requests
//! (`profstore::server::connect::decode`, `querier.v1.QuerierService` in
//! protobuf and proto3 JSON) and the selectors they carry
//! (`connect::parse_matchers`: `{}`, matchers that match the empty string,
//! `__profile_type__`).
//!
//! Input: the first byte picks the method (`% 9`, in `Method::ALL` order)
//! and, with `& 0x80`, JSON instead of protobuf; the rest is the body.
//!
//! Must hold: no panic, hang or huge allocation on any input. A protobuf
//! request that decodes encodes and decodes back to the same bytes; an accepted
//! JSON request is one protobuf could carry (it survives the same round
//! trip). Every selector of an accepted request parses or is refused with
//! `invalid_argument`.
//!
//! Run from the crate root: `cargo fuzz run connect_query` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run connect_query`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::pyroscope::Codec;
use profstore::server::connect::{decode, parse_matchers, Call, Method};
use prost::Message;

/// The call's messages encoded as protobuf, and its selectors.
fn parts(c: &Call) -> (Vec<u8>, Vec<String>) {
    match c {
        Call::ProfileTypes(r) => (r.encode_to_vec(), vec![]),
        Call::LabelNames(r) => (r.encode_to_vec(), r.matchers.clone()),
        Call::LabelValues(r) => (r.encode_to_vec(), r.matchers.clone()),
        Call::Series(r) => (r.encode_to_vec(), r.matchers.clone()),
        Call::SelectMergeStacktraces(r) => (r.encode_to_vec(), vec![r.label_selector.clone()]),
        Call::SelectMergeSpanProfile(r) => (r.encode_to_vec(), vec![r.label_selector.clone()]),
        Call::SelectMergeProfile(r) => (r.encode_to_vec(), vec![r.label_selector.clone()]),
        Call::SelectSeries(r) => (r.encode_to_vec(), vec![r.label_selector.clone()]),
        Call::Diff(r) => {
            let sels = [&r.left, &r.right]
                .into_iter()
                .flatten()
                .map(|s| s.label_selector.clone())
                .collect();
            (r.encode_to_vec(), sels)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let method = Method::ALL[usize::from(first & 0x7f) % Method::ALL.len()];
    let codec = if first & 0x80 != 0 {
        Codec::Json
    } else {
        Codec::Proto
    };
    let Ok(call) = decode(method, codec, body) else {
        return;
    };
    let (bytes, selectors) = parts(&call);
    let again = decode(method, Codec::Proto, &bytes).expect("a decoded request re-encodes");
    // Compared as bytes: a float field may hold NaN, which equals nothing
    // (the handler refuses such a step; the decoder keeps it as sent).
    assert_eq!(parts(&again).0, bytes);
    for s in selectors.iter().take(8) {
        if let Err(e) = parse_matchers(s) {
            assert_eq!(e.code(), "invalid_argument");
        }
    }
});
