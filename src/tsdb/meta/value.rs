//! Entity values: the `proto/meta.proto` messages of stacks, locations and
//! functions, written straight into a record's buffer and read back
//! without the intermediate messages prost would build.
//!
//! The writer thread encodes every new entity, and every open and
//! first read decodes them. Through prost's generated types a stack cost a
//! `Vec` per frame each way (its location ids are `repeated bytes`), and a
//! quarter of the writer thread's time. The bytes are exactly prost's (the
//! fields in number order, defaults left out, as proto3 encodes them);
//! the tests check that against the generated types on arbitrary values.
//!
//! Decoding takes the common shape fast (a stack's location ids, each
//! field 1 with length 16, in a run at the start) and hands whatever
//! follows to prost, which merges it as protobuf says: repeated fields
//! append, so the result is what decoding the whole value would give.

use super::{corrupt, MetaError};
use crate::model::{Function, Location, LocationId, NumLabel, Stacktrace};
use crate::proto::meta as pb;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

/// Field 1, length-delimited (`0x0a`), then a length of 16: how a
/// stack's location id and a location's mapping id start.
const ID_FIELD_1: [u8; 2] = [0x0a, 16];

/// Appends a 16-byte id as field 1.
fn id_field_1(buf: &mut Vec<u8>, id: &[u8; 16]) {
    buf.extend_from_slice(&ID_FIELD_1);
    buf.extend_from_slice(id);
}

/// Bytes of an `int64` field of number below 16 (one key byte): nothing
/// for 0, as proto3 leaves defaults out.
fn int64_len(v: i64) -> usize {
    if v == 0 {
        0
    } else {
        1 + encoded_len_varint(v as u64)
    }
}

/// Appends `meta.Stacktrace`.
pub fn encode_stack(s: &Stacktrace, buf: &mut Vec<u8>) {
    buf.reserve(s.locations.len() * 18);
    for l in &s.locations {
        id_field_1(buf, l.0.as_bytes());
    }
    for n in &s.num_labels {
        let label = pb::NumLabel {
            key: n.key.clone(),
            value: n.value,
            unit: n.unit.clone(),
        };
        prost::encoding::message::encode(2, &label, buf);
    }
}

/// Reads `meta.Stacktrace`.
pub fn decode_stack(b: &[u8]) -> Result<Stacktrace, MetaError> {
    let mut locations = Vec::with_capacity(b.len() / 18);
    let mut rest = b;
    while let Some((head, tail)) = rest.split_first_chunk::<18>() {
        if head[..2] != ID_FIELD_1 {
            break;
        }
        // 16 bytes after the 2 checked above.
        let id: [u8; 16] = head[2..].try_into().expect("16 bytes");
        locations.push(LocationId(uuid::Uuid::from_bytes(id)));
        rest = tail;
    }
    let mut num_labels = Vec::new();
    if !rest.is_empty() {
        let s = pb::Stacktrace::decode(rest).map_err(corrupt("stacktrace"))?;
        for id in &s.location_ids {
            locations.push(LocationId::from_slice(id)?);
        }
        num_labels = s
            .num_labels
            .into_iter()
            .map(|n| NumLabel {
                key: n.key,
                value: n.value,
                unit: n.unit,
            })
            .collect();
    }
    Ok(Stacktrace {
        locations,
        num_labels,
    })
}

/// Appends `meta.Location`.
pub fn encode_location(l: &Location, buf: &mut Vec<u8>) {
    if let Some(m) = l.mapping {
        id_field_1(buf, m.0.as_bytes());
    }
    if l.address != 0 {
        prost::encoding::uint64::encode(2, &l.address, buf);
    }
    if l.is_folded {
        prost::encoding::bool::encode(3, &l.is_folded, buf);
    }
    for line in &l.lines {
        let len = 18 + int64_len(line.line) + int64_len(line.column);
        encode_key(4, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
        id_field_1(buf, line.function.0.as_bytes());
        if line.line != 0 {
            prost::encoding::int64::encode(2, &line.line, buf);
        }
        if line.column != 0 {
            prost::encoding::int64::encode(3, &line.column, buf);
        }
    }
}

/// Appends `meta.Function`.
pub fn encode_function(f: &Function, buf: &mut Vec<u8>) {
    for (tag, s) in [(1, &f.name), (2, &f.system_name), (3, &f.filename)] {
        if !s.is_empty() {
            prost::encoding::string::encode(tag, s, buf);
        }
    }
    if f.start_line != 0 {
        prost::encoding::int64::encode(4, &f.start_line, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FunctionId, Line, MappingId};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn id() -> impl Strategy<Value = Uuid> {
        prop_oneof![Just(Uuid::nil()), any::<u128>().prop_map(Uuid::from_u128)]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-zé/._]{1,40}"]
    }

    fn int() -> impl Strategy<Value = i64> {
        prop_oneof![Just(0i64), Just(-1i64), Just(i64::MIN), any::<i64>()]
    }

    fn stack() -> impl Strategy<Value = Stacktrace> {
        (
            proptest::collection::vec(id().prop_map(LocationId), 0..40),
            proptest::collection::vec(
                (text(), int(), text()).prop_map(|(key, value, unit)| NumLabel {
                    key,
                    value,
                    unit,
                }),
                0..3,
            ),
        )
            .prop_map(|(locations, num_labels)| Stacktrace {
                locations,
                num_labels,
            })
    }

    fn location() -> impl Strategy<Value = Location> {
        (
            proptest::option::of(id().prop_map(MappingId)),
            prop_oneof![Just(0u64), any::<u64>()],
            any::<bool>(),
            proptest::collection::vec(
                (id().prop_map(FunctionId), int(), int()).prop_map(|(function, line, column)| {
                    Line {
                        function,
                        line,
                        column,
                    }
                }),
                0..5,
            ),
        )
            .prop_map(|(mapping, address, is_folded, lines)| Location {
                mapping,
                address,
                is_folded,
                lines,
            })
    }

    fn function() -> impl Strategy<Value = Function> {
        (text(), text(), text(), int()).prop_map(|(name, system_name, filename, start_line)| {
            Function {
                name,
                system_name,
                filename,
                start_line,
            }
        })
    }

    /// What prost's generated types encode, the slow obvious way.
    fn prost_stack(s: &Stacktrace) -> Vec<u8> {
        pb::Stacktrace {
            location_ids: s
                .locations
                .iter()
                .map(|l| l.0.as_bytes().to_vec())
                .collect(),
            num_labels: s
                .num_labels
                .iter()
                .map(|n| pb::NumLabel {
                    key: n.key.clone(),
                    value: n.value,
                    unit: n.unit.clone(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn prost_location(l: &Location) -> Vec<u8> {
        pb::Location {
            mapping_id: l
                .mapping
                .map(|m| m.0.as_bytes().to_vec())
                .unwrap_or_default(),
            address: l.address,
            is_folded: l.is_folded,
            lines: l
                .lines
                .iter()
                .map(|x| pb::Line {
                    function_id: x.function.0.as_bytes().to_vec(),
                    line: x.line,
                    column: x.column,
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn prost_function(f: &Function) -> Vec<u8> {
        pb::Function {
            name: f.name.clone(),
            system_name: f.system_name.clone(),
            filename: f.filename.clone(),
            start_line: f.start_line,
        }
        .encode_to_vec()
    }

    proptest! {
        /// The bytes are prost's, appended after what the buffer held,
        /// and a stack reads back.
        #[test]
        fn stacks_encode_as_prost_does_and_read_back(s in stack(), before in any::<u8>()) {
            let mut buf = vec![before];
            encode_stack(&s, &mut buf);
            prop_assert_eq!(&buf[1..], &prost_stack(&s)[..]);
            prop_assert_eq!(decode_stack(&buf[1..]).unwrap(), s);
        }

        #[test]
        fn locations_encode_as_prost_does(l in location()) {
            let mut buf = Vec::new();
            encode_location(&l, &mut buf);
            prop_assert_eq!(buf, prost_location(&l));
        }

        #[test]
        fn functions_encode_as_prost_does(f in function()) {
            let mut buf = Vec::new();
            encode_function(&f, &mut buf);
            prop_assert_eq!(buf, prost_function(&f));
        }

        /// A stack whose fields come in another order or split (as another
        /// encoder may write them) reads as prost reads it; any bytes read
        /// as prost reads them or are refused.
        #[test]
        fn stacks_read_as_prost_reads_them(s in stack(), t in stack(), bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut mixed = prost_stack(&Stacktrace { locations: Vec::new(), num_labels: s.num_labels.clone() });
            mixed.extend(prost_stack(&Stacktrace { locations: s.locations.clone(), num_labels: Vec::new() }));
            mixed.extend(prost_stack(&t));
            let want = pb::Stacktrace::decode(&mixed[..]).unwrap();
            let got = decode_stack(&mixed).unwrap();
            prop_assert_eq!(prost_stack(&got), want.encode_to_vec());
            let slow = pb::Stacktrace::decode(&bytes[..]);
            match decode_stack(&bytes) {
                Ok(got) => {
                    let want = slow.unwrap();
                    prop_assert_eq!(prost_stack(&got), want.encode_to_vec());
                }
                Err(_) => prop_assert!(
                    slow.is_err() || slow.unwrap().location_ids.iter().any(|i| i.len() != 16)
                ),
            }
        }
    }
}
