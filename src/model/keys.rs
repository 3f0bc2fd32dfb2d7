//! Key encoding for the meta store (layout in the [`super`] module docs).
//!
//! Every encoder appends to a caller-provided buffer so the hot path can reuse
//! one allocation. Variable-length fields carry a u32 BE length prefix, so no
//! two different entities share a key.

use super::{Function, Location, Mapping, NumLabel};
use uuid::Uuid;

/// Prefix of the mapping by-key index of the previous meta store layout
/// (deleted when a store of that layout is opened).
pub const MAPPING_BY_KEY: &[u8] = b"mappings/by-key/";
/// Prefix of mapping values, one per entity, of the previous meta store
/// layout (moved into records when a store of that layout is opened).
pub const MAPPING_BY_ID: &[u8] = b"mappings/by-id/";
/// Prefix of mapping records (`tsdb::meta::record`).
pub const MAPPING_RECORDS: &[u8] = b"mappings/records/";
/// Prefix of the function by-key index of the previous meta store layout
/// (deleted when a store of that layout is opened).
pub const FUNCTION_BY_KEY: &[u8] = b"functions/by-key/";
/// Prefix of function values, one per entity, of the previous meta store
/// layout (moved into records when a store of that layout is opened).
pub const FUNCTION_BY_ID: &[u8] = b"functions/by-id/";
/// Prefix of function records (`tsdb::meta::record`).
pub const FUNCTION_RECORDS: &[u8] = b"functions/records/";
/// Prefix of the location by-key index of the previous meta store layout
/// (deleted when a store of that layout is opened).
pub const LOCATION_BY_KEY: &[u8] = b"locations/by-key/";
/// Prefix of location values, one per entity, of the previous meta store
/// layout (moved into records when a store of that layout is opened).
pub const LOCATION_BY_ID: &[u8] = b"locations/by-id/";
/// Prefix of location records (`tsdb::meta::record`).
pub const LOCATION_RECORDS: &[u8] = b"locations/records/";
/// Prefix of the stack by-key index of the previous meta store layout
/// (deleted when a store of that layout is opened).
pub const STACK_BY_KEY: &[u8] = b"stacktraces/by-key/";
/// Prefix of stack values, one per entity, of the previous meta store
/// layout (moved into records when a store of that layout is opened).
pub const STACK_BY_ID: &[u8] = b"stacktraces/by-id/";
/// Prefix of stack records (`tsdb::meta::record`).
pub const STACK_RECORDS: &[u8] = b"stacktraces/records/";

/// Mapping sizes are rounded up to this many bytes, so that the same object
/// mapped with a slightly different length is one mapping.
pub const MAPPING_SIZE_ROUNDING: u64 = 4096;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Strings in keys are bounded by the ingest limits, far below u32::MAX.
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The content id of the entity whose by-key suffix is `key`: a UUIDv8
/// (RFC 9562) whose 122 free bits are the first bits of XXH3-128(`key`).
///
/// Every node, every block and both backends derive the same id from the
/// same entity, so ids can be compared and merged anywhere. The key of a
/// location holds its mapping's and functions' ids, and a stack's key is a
/// hash over its locations' ids, so an id names the whole entity down to its
/// strings.
///
/// Collisions: with n entities of one kind the chance that any two share an
/// id is about n²/2^123 (10^-19 for a billion). A collision would make the
/// second entity read as the first (its samples attributed to the first's
/// frames); nothing else breaks. XXH3 is fast but not a cryptographic hash:
/// a writer who can push profiles and wants to could search for a key that
/// collides with another writer's entity. Deployments that accept profiles
/// from mutually distrusting writers should keep them in separate stores.
pub fn content_id(key: &[u8]) -> Uuid {
    Uuid::new_v8(xxhash_rust::xxh3::xxh3_128(key).to_be_bytes())
}

/// The by-key suffix of a mapping (without the prefix).
pub fn mapping_key(buf: &mut Vec<u8>, m: &Mapping) {
    mapping_key_parts(
        buf,
        m.memory_limit.saturating_sub(m.memory_start),
        m.file_offset,
        &m.filename,
        &m.build_id,
    )
}

/// [`mapping_key`] from its parts (`size` = limit − start, before rounding).
pub fn mapping_key_parts(
    buf: &mut Vec<u8>,
    size: u64,
    file_offset: u64,
    filename: &str,
    build_id: &str,
) {
    let size = size
        .div_ceil(MAPPING_SIZE_ROUNDING)
        .saturating_mul(MAPPING_SIZE_ROUNDING);
    buf.extend_from_slice(&size.to_be_bytes());
    buf.extend_from_slice(&file_offset.to_be_bytes());
    if build_id.is_empty() {
        buf.push(b'f');
        put_str(buf, filename);
    } else {
        buf.push(b'b');
        put_str(buf, build_id);
    }
}

/// The by-key suffix of a function.
pub fn function_key(buf: &mut Vec<u8>, f: &Function) {
    function_key_parts(buf, f.start_line, &f.name, &f.system_name, &f.filename)
}

/// [`function_key`] from its parts.
pub fn function_key_parts(
    buf: &mut Vec<u8>,
    start_line: i64,
    name: &str,
    system_name: &str,
    filename: &str,
) {
    buf.extend_from_slice(&start_line.to_be_bytes());
    put_str(buf, name);
    put_str(buf, system_name);
    put_str(buf, filename);
}

/// The by-key suffix of a location (its mapping and functions already have
/// ids).
pub fn location_key(buf: &mut Vec<u8>, l: &Location) {
    location_key_parts(
        buf,
        l.mapping,
        l.address,
        l.is_folded,
        l.lines.iter().map(|x| (x.function, x.line, x.column)),
    )
}

/// [`location_key`] from its parts; `lines` gives (function, line, column).
pub fn location_key_parts(
    buf: &mut Vec<u8>,
    mapping: Option<super::MappingId>,
    address: u64,
    is_folded: bool,
    lines: impl Iterator<Item = (super::FunctionId, i64, i64)>,
) {
    match mapping {
        Some(m) => buf.extend_from_slice(m.as_bytes()),
        None => buf.extend_from_slice(&[0u8; 16]),
    }
    buf.extend_from_slice(&address.to_be_bytes());
    buf.push(u8::from(is_folded));
    for (function, line, column) in lines {
        buf.extend_from_slice(function.as_bytes());
        buf.extend_from_slice(&line.to_be_bytes());
        buf.extend_from_slice(&column.to_be_bytes());
    }
}

/// The by-key suffix of a stack: the 128-bit XXH3 hash of its location ids
/// (leaf first) and numeric labels (key, unit, value, each length-prefixed).
///
/// Stacks are the most numerous entity (a large profile has ~10^5) and their
/// full key is 16 bytes per frame, so the index keeps a 16-byte hash instead:
/// it halves what sled writes for a new stack and what the cache holds. Two
/// different stacks collide with probability ~n²/2^129 (n stacks), below the
/// bound of the id itself ([`content_id`], which hashes this key again).
pub fn stack_key<'a>(
    buf: &mut Vec<u8>,
    locations: impl IntoIterator<Item = &'a super::LocationId>,
    num_labels: &[NumLabel],
) {
    stack_key_parts(
        buf,
        locations,
        num_labels
            .iter()
            .map(|n| (n.key.as_str(), n.value, n.unit.as_str())),
    )
}

/// [`stack_key`] of a stack's parts as borrowed: the numeric labels as
/// (key, value, unit), in [`NumLabel`]'s order (ingest reads them from the
/// pprof's string table without making a `NumLabel` per sample).
pub fn stack_key_parts<'a, 's>(
    buf: &mut Vec<u8>,
    locations: impl IntoIterator<Item = &'a super::LocationId>,
    num_labels: impl IntoIterator<Item = (&'s str, i64, &'s str)>,
) {
    let start = buf.len();
    for l in locations {
        buf.extend_from_slice(l.as_bytes());
    }
    stack_key_finish(buf, start, num_labels)
}

/// Completes a [`stack_key`] whose location ids (16 bytes each, leaf
/// first) are `buf[start..]`: appends the numeric labels, then replaces
/// `buf[start..]` by the digest. (A caller that writes the ids itself, into
/// a slice, saves a capacity check per frame.)
pub fn stack_key_finish<'s>(
    buf: &mut Vec<u8>,
    start: usize,
    num_labels: impl IntoIterator<Item = (&'s str, i64, &'s str)>,
) {
    // The hashed bytes are laid out after `buf`'s contents and hashed in
    // one call (XXH3's one-shot form gives the streaming form's digest of
    // the same bytes, several times faster for 16-byte pieces), then
    // replaced by the digest.
    let mut num_labels = num_labels.into_iter().peekable();
    if num_labels.peek().is_some() {
        buf.push(0xff);
        for (key, value, unit) in num_labels {
            buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            buf.extend_from_slice(unit.as_bytes());
            buf.extend_from_slice(&value.to_be_bytes());
        }
    }
    let digest = xxhash_rust::xxh3::xxh3_128(&buf[start..]);
    buf.truncate(start);
    buf.extend_from_slice(&digest.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::{FunctionId, Line};
    use super::*;
    use uuid::Uuid;

    fn key_of(l: &Location) -> Vec<u8> {
        let mut b = Vec::new();
        location_key(&mut b, l);
        b
    }

    #[test]
    fn line_number_does_not_overwrite_function_id() {
        // Parca's bug: the line number was written over the last 8 bytes of
        // the function id, so these two locations collided.
        let f1 = FunctionId(Uuid::from_u128(0x1111_0000_0000_0000_0000_0000_0000_0001));
        let f2 = FunctionId(Uuid::from_u128(0x1111_0000_0000_0000_0000_0000_0000_0002));
        let a = Location {
            lines: vec![Line {
                function: f1,
                line: 7,
                column: 0,
            }],
            ..Default::default()
        };
        let b = Location {
            lines: vec![Line {
                function: f2,
                line: 7,
                column: 0,
            }],
            ..Default::default()
        };
        let c = Location {
            lines: vec![Line {
                function: f1,
                line: 8,
                column: 0,
            }],
            ..Default::default()
        };
        assert_ne!(key_of(&a), key_of(&b));
        assert_ne!(key_of(&a), key_of(&c));
        assert_eq!(key_of(&a), key_of(&a.clone()));
    }

    #[test]
    fn mapping_size_is_rounded_and_build_id_preferred() {
        let m = |start, limit, file: &str, build: &str| Mapping {
            memory_start: start,
            memory_limit: limit,
            filename: file.into(),
            build_id: build.into(),
            ..Default::default()
        };
        let k = |m: &Mapping| {
            let mut b = Vec::new();
            mapping_key(&mut b, m);
            b
        };
        assert_eq!(
            k(&m(0, 4000, "/bin/a", "")),
            k(&m(0x1000, 0x1000 + 4096, "/bin/a", ""))
        );
        assert_ne!(k(&m(0, 4000, "/bin/a", "")), k(&m(0, 5000, "/bin/a", "")));
        assert_eq!(k(&m(0, 4000, "/bin/a", "x")), k(&m(0, 4000, "/bin/b", "x")));
        // A build id never collides with a file name of the same bytes.
        assert_ne!(k(&m(0, 4000, "x", "")), k(&m(0, 4000, "", "x")));
    }

    #[test]
    fn function_fields_are_length_prefixed() {
        let f = |n: &str, s: &str| Function {
            name: n.into(),
            system_name: s.into(),
            ..Default::default()
        };
        let k = |f: &Function| {
            let mut b = Vec::new();
            function_key(&mut b, f);
            b
        };
        assert_ne!(k(&f("ab", "c")), k(&f("a", "bc")));
    }

    /// The digest as the first versions computed it, with XXH3's streaming
    /// form: stack ids are stored in blocks and meta stores, so the key
    /// must never change.
    fn streamed_stack_key(
        locations: &[super::super::LocationId],
        num_labels: &[NumLabel],
    ) -> Vec<u8> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for l in locations {
            h.update(l.as_bytes());
        }
        if !num_labels.is_empty() {
            h.update(&[0xff]);
            for n in num_labels {
                h.update(&(n.key.len() as u32).to_be_bytes());
                h.update(n.key.as_bytes());
                h.update(&(n.unit.len() as u32).to_be_bytes());
                h.update(n.unit.as_bytes());
                h.update(&n.value.to_be_bytes());
            }
        }
        h.digest128().to_be_bytes().to_vec()
    }

    proptest::proptest! {
        #[test]
        fn stack_key_is_the_streamed_digest(
            prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            locs in proptest::collection::vec(proptest::num::u128::ANY, 0..300),
            labels in proptest::collection::vec(("[a-z]{0,12}", "[a-z]{0,6}", proptest::num::i64::ANY), 0..4),
        ) {
            let locs: Vec<super::super::LocationId> =
                locs.into_iter().map(|l| super::super::LocationId(Uuid::from_u128(l))).collect();
            let labels: Vec<NumLabel> = labels
                .into_iter()
                .map(|(key, unit, value)| NumLabel { key, unit, value })
                .collect();
            let mut buf = prefix.clone();
            stack_key(&mut buf, &locs, &labels);
            let mut want = prefix;
            want.extend(streamed_stack_key(&locs, &labels));
            proptest::prop_assert_eq!(buf, want);
        }
    }

    #[test]
    fn stack_key_is_pinned() {
        let locs: Vec<super::super::LocationId> = (1..=3u128)
            .map(|l| super::super::LocationId(Uuid::from_u128(l)))
            .collect();
        let labels = [NumLabel {
            key: "bytes".into(),
            unit: "B".into(),
            value: 4096,
        }];
        let mut buf = Vec::new();
        stack_key(&mut buf, &locs, &labels);
        assert_eq!(
            u128::from_be_bytes(buf[..].try_into().unwrap()),
            PINNED_STACK_KEY
        );
        buf.clear();
        stack_key(&mut buf, &locs, &[]);
        assert_eq!(
            u128::from_be_bytes(buf[..].try_into().unwrap()),
            PINNED_STACK_KEY_NO_LABELS
        );
    }
    const PINNED_STACK_KEY: u128 = 0x1541_7a0b_de13_6ace_b9c1_9722_72fc_b6fe;
    const PINNED_STACK_KEY_NO_LABELS: u128 = 0xeeb5_56fa_1064_c942_847d_72e1_a479_9047;
}
