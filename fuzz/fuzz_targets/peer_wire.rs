//! Fuzzes the peer protocol's decoders (`profstore::querier::wire`,
//! `docs/format/peer.md`): a querier decodes requests from the network
//! (`decode_request`) and answers from its peers (`decode_partial`).
//!
//! Input: the first byte picks the mode. Even: the rest is a
//! `PartialRequest`. Odd: the rest is a `PartialResponse`.
//!
//! Must hold: no panic, hang or huge allocation. A request that decodes
//! names only valid block ids and a range whose start is not after its
//! end, and encoded again decodes to the same request. An answer that
//! decodes has every stack its sums name resolved, and encoded again with
//! its own symbols section decodes to the same partial.

#![no_main]

use libfuzzer_sys::fuzz_target;
use profstore::proto::peer::PartialResponse;
use profstore::querier::wire::{
    decode_partial, decode_request, encode_partial, encode_request, valid_block_id,
};
use profstore::tsdb::block::BlockSymbols;
use prost::Message;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(r) = decode_request(rest) else {
            return;
        };
        assert!(r.range.start <= r.range.end);
        assert!(r.blocks.iter().all(|(id, _)| valid_block_id(id)));
        let again = decode_request(&encode_request(&r)).expect("a request encoded again decodes");
        assert_eq!(again.matchers, r.matchers);
        assert_eq!(again.range, r.range);
        assert_eq!(again.blocks, r.blocks);
        return;
    }
    let Ok(p) = decode_partial(rest) else {
        return;
    };
    for id in p.stack_ids() {
        assert!(p.stacks.contains_key(&id), "stack {id:?} not resolved");
    }
    let table = PartialResponse::decode(rest).expect("it decoded once").symbols;
    let table = BlockSymbols::decode(&table).expect("its symbols decoded once");
    let bytes = encode_partial(&p, &table).expect("its own symbols hold every stack");
    let again = decode_partial(&bytes).expect("an answer encoded again decodes");
    assert_eq!(again, p, "the answer changed on the way back");
});
