//! Fuzzes the meta store's records (`profstore::tsdb::meta::record`): the
//! framing and entries of arbitrary sled values, then opening a meta store
//! whose sled database holds those bytes as one record of a kind, as a
//! damaged or hostile data directory would.
//!
//! Input: the first byte picks the kind (`& 3`: mappings, functions,
//! locations, stacks) and the mode. `0x20` makes the store one of tagged
//! records (`content-ids/4`: an encoding byte, then the record or its zstd
//! frame); without it the store holds bare records (`content-ids/3`).
//! Without `0x04`, the rest is the sled value. With it, the kind is
//! functions and the rest is a list of function names separated by NUL
//! bytes, which this target packs into a valid record (content ids,
//! `proto/meta.proto` values) and frames as the store does (compressed
//! when tagged) so that the fuzzer reaches a store that opens; `0x10` puts
//! the first entry's value under the second's id, and `0x08` then drops the
//! value's last byte.
//!
//! Must hold: no panic, hang or huge allocation. A framed value decodes to
//! at most the bound; every entry read lies inside the record, and when
//! all are read without error, pushing them again gives the record back.
//! Opening the store either fails with an error or succeeds with exactly
//! the record's entries counted, each one readable (a record that opens
//! holds valid, content-addressed values).
//!
//! Run from the crate root: `cargo fuzz run meta_record` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run meta_record`).

#![no_main]

#[path = "memdir.rs"]
mod memdir;

use libfuzzer_sys::fuzz_target;
use profstore::model::keys::{content_id, function_key};
use profstore::model::keys::{FUNCTION_RECORDS, LOCATION_RECORDS, MAPPING_RECORDS, STACK_RECORDS};
use profstore::model::{Function, FunctionId, LocationId, MappingId, StackId};
use profstore::proto::meta as pb;
use profstore::tsdb::meta::record::{self, Decoder, Encoder, Framing};
use profstore::tsdb::meta::store::{FORMAT_KEY, FORMAT_PLAIN_RECORDS, FORMAT_RECORDS};
use profstore::tsdb::meta::MetaStore;
use prost::Message;

const KINDS: [(&[u8], &[u8]); 4] = [
    (MAPPING_RECORDS, b"counts/mappings"),
    (FUNCTION_RECORDS, b"counts/functions"),
    (LOCATION_RECORDS, b"counts/locations"),
    (STACK_RECORDS, b"counts/stacktraces"),
];

/// A valid record of the functions named in `names` (NUL-separated; a
/// name repeated is stored once, as the store does), with the swap of
/// `0x10` if `mode` asks for it (see the module docs).
fn build(names: &[u8], mode: u8) -> Vec<u8> {
    let mut entries = Vec::new();
    for name in names.split(|&b| b == 0) {
        let f = Function {
            name: String::from_utf8_lossy(name).into_owned(),
            ..Default::default()
        };
        let mut key = Vec::new();
        function_key(&mut key, &f);
        let id = content_id(&key);
        if entries.iter().any(|(i, _)| *i == id) {
            continue;
        }
        let value = pb::Function {
            name: f.name,
            system_name: f.system_name,
            filename: f.filename,
            start_line: f.start_line,
        }
        .encode_to_vec();
        entries.push((id, value));
    }
    if mode & 0x10 != 0 && entries.len() >= 2 {
        entries[1].1 = entries[0].1.clone();
    }
    let mut r = Vec::new();
    for (id, v) in &entries {
        record::push(&mut r, *id, v);
    }
    r
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let framing = if mode & 0x20 != 0 {
        Framing::Tagged
    } else {
        Framing::Bare
    };
    let built;
    let (kind, value) = if mode & 0x04 != 0 {
        let mut v = Encoder::new(framing).encode(build(rest, mode));
        if mode & 0x08 != 0 {
            v.pop();
        }
        built = v;
        (1, &built[..])
    } else {
        (mode, rest)
    };
    let mut decoder = Decoder::new();
    let (bytes, mut clean) = match decoder.decode(framing, value) {
        Ok(r) => {
            assert!(r.len() <= record::MAX_PLAIN, "a record above the bound");
            (r.to_vec(), true)
        }
        Err(_) => (Vec::new(), false),
    };
    let bytes = &bytes[..];
    let mut entries = Vec::new();
    for e in record::entries(bytes) {
        match e {
            Ok((id, value)) => entries.push((id, value)),
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    let read: usize = entries.iter().map(|(_, v)| 20 + v.len()).sum();
    assert!(read <= bytes.len(), "entries past the end");
    if clean {
        let mut again = Vec::new();
        for (id, v) in &entries {
            record::push(&mut again, *id, v);
        }
        assert_eq!(again, bytes, "a record that reads is not its entries");
    }

    // The same bytes as a stored record, at open.
    let dir = memdir::tempdir();
    let (prefix, count_key) = KINDS[usize::from(kind & 3)];
    {
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        db.insert(record::key(prefix, 0), value).expect("insert");
        db.insert(count_key, (entries.len() as u64).to_be_bytes().as_slice())
            .expect("insert");
        let marker = match framing {
            Framing::Tagged => FORMAT_RECORDS,
            Framing::Bare => FORMAT_PLAIN_RECORDS,
        };
        db.insert(FORMAT_KEY, marker).expect("insert");
        db.flush().expect("flush");
    }
    let Ok(store) = MetaStore::open(dir.path()) else {
        return;
    };
    assert!(clean, "a damaged record opened");
    let c = store.counts();
    let n = [c.mappings, c.functions, c.locations, c.stacks][usize::from(kind & 3)];
    assert_eq!(n, entries.len() as u64);
    // Values refer to entities that need not exist; only the entry itself
    // must read back.
    for (id, _) in &entries {
        let found = match kind & 3 {
            0 => store.mapping(MappingId(*id)).is_ok(),
            1 => store.function(FunctionId(*id)).is_ok(),
            2 => store.location(LocationId(*id)).is_ok(),
            _ => store.stack(StackId(*id)).is_ok(),
        };
        assert!(found, "entry {id} of an opened store is not readable");
    }
});
