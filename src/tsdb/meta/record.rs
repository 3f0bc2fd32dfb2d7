//! Records: how the meta store packs entities into sled values.
//!
//! sled's cost is per entry it writes, not per byte: each insert is a page
//! fragment of its own in sled's log, compressed on its own (a zstd context
//! each time) and kept as a node in sled's in-memory tree. One entry per
//! entity cost about 30 µs and 1.2 KB of RSS per new entity. So the entities
//! that one creation stores (one kind, one profile) go into sled as a few
//! records of up to [`RECORD_BYTES`] each: the writer does one insert per
//! record, and zstd sees the repeats between the entities of one profile
//! (the 16-byte location ids its stacks share, its file names).
//!
//! # Format
//! Key: the kind's prefix ([`crate::model::keys`], `…/records/`) + the
//! record's number (u64 BE), given in creation order per kind and never
//! reused. Value: entries back to back, each
//!
//! | bytes | field |
//! |---|---|
//! | 16 | the entity's id (its content id) |
//! | 4 | length of the value, u32 BE |
//! | length | the value (`proto/meta.proto`) |
//!
//! A record holds at least one entry and every id once. Garbage collection
//! rewrites a record without its dead entries under the same number, or
//! removes it when none is left; an entity's record number therefore never
//! changes while it lives.

use super::MetaError;
use uuid::Uuid;

/// Records are closed once they hold this many bytes: below a quarter of
/// [`super::store::SEGMENT_SIZE`] even incompressible, so that sled keeps
/// them in its log segments rather than in a file each (an entity larger
/// than this gets a record of its own).
pub const RECORD_BYTES: usize = 12 << 10;

/// Bytes of an entry's header: the id and the length.
const HEADER: usize = 16 + 4;

/// The sled key of record `number` of the kind with key prefix `prefix`.
pub fn key(prefix: &[u8], number: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

/// The record number in `key`, a key under `prefix`.
pub fn number(prefix: &[u8], key: &[u8]) -> Result<u64, MetaError> {
    key.strip_prefix(prefix)
        .and_then(|n| <[u8; 8]>::try_from(n).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| MetaError::Corrupt(format!("record key {key:?} is not a prefix and a u64")))
}

/// Appends one entry to the record `buf`.
pub fn push(buf: &mut Vec<u8>, id: Uuid, value: &[u8]) {
    buf.extend_from_slice(id.as_bytes());
    // A value is one entity's protobuf, bounded by the ingest limits
    // (strings of at most a few KB, stacks of at most a few thousand
    // frames), far below u32::MAX.
    buf.extend_from_slice(&(value.len() as u32).to_be_bytes());
    buf.extend_from_slice(value);
}

/// The entries of `record`, in order, each checked to lie inside it; an
/// empty record or one that ends inside an entry is corrupt.
pub fn entries(record: &[u8]) -> Entries<'_> {
    Entries {
        rest: record,
        first: true,
    }
}

/// Iterator over a record's entries: see [`entries`].
pub struct Entries<'a> {
    rest: &'a [u8],
    first: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(Uuid, &'a [u8]), MetaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() && !self.first {
            return None;
        }
        self.first = false;
        let Some((head, rest)) = self.rest.split_first_chunk::<HEADER>() else {
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(MetaError::Corrupt(format!(
                "record: {n} bytes left where an entry of at least {HEADER} starts"
            ))));
        };
        let (id, len) = head.split_at(16);
        // Both slices have the lengths split off above.
        let id = Uuid::from_slice(id).expect("16 bytes");
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        if len > rest.len() {
            self.rest = &[];
            return Some(Err(MetaError::Corrupt(format!(
                "record: entry {id} says {len} bytes but {} are left",
                rest.len()
            ))));
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Ok((id, value)))
    }
}

/// The value of entry `id` in `record`, if it holds one.
pub fn find(record: &[u8], id: Uuid) -> Result<Option<&[u8]>, MetaError> {
    for e in entries(record) {
        let (i, v) = e?;
        if i == id {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Splits encoded entities into records of at most [`RECORD_BYTES`] (or
/// one entity, if it is larger).
#[derive(Default)]
pub struct Packer {
    current: Packed,
    done: Vec<Packed>,
}

/// One record a [`Packer`] made.
#[derive(Debug, Default)]
pub struct Packed {
    /// The record.
    pub bytes: Vec<u8>,
    /// How many entities it holds (the next ones in the order they were
    /// added).
    pub entities: usize,
}

impl Packer {
    /// Adds an entity.
    pub fn push(&mut self, id: Uuid, value: &[u8]) {
        if self.current.entities > 0
            && self.current.bytes.len() + HEADER + value.len() > RECORD_BYTES
        {
            self.done.push(std::mem::take(&mut self.current));
        }
        push(&mut self.current.bytes, id, value);
        self.current.entities += 1;
    }

    /// The records, in the order their entities were added.
    pub fn finish(mut self) -> Vec<Packed> {
        if self.current.entities > 0 {
            self.done.push(self.current);
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Packing then reading gives the entities back in order, every
        /// record within its bound unless it holds one entity.
        #[test]
        fn packed_entities_read_back(values in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..6000), 0..20)
        ) {
            let mut p = Packer::default();
            let items: Vec<(Uuid, Vec<u8>)> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Uuid::from_u128(i as u128 + 1), v))
                .collect();
            for (id, v) in &items {
                p.push(*id, v);
            }
            let records = p.finish();
            let mut back = Vec::new();
            for Packed { bytes: r, entities } in &records {
                let n = entries(r).count();
                prop_assert!(n >= 1);
                prop_assert_eq!(n, *entities);
                prop_assert!(r.len() <= RECORD_BYTES || n == 1);
                for e in entries(r) {
                    let (id, v) = e.unwrap();
                    back.push((id, v.to_vec()));
                    prop_assert_eq!(find(r, id).unwrap(), Some(v));
                }
            }
            prop_assert_eq!(back, items);
        }

        /// Any bytes: entries are read or refused, never past the end,
        /// and the iteration ends.
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut total = 0;
            let mut n = 0;
            for e in entries(&bytes) {
                n += 1;
                prop_assert!(n <= bytes.len() / HEADER + 1);
                match e {
                    Ok((_, v)) => total += HEADER + v.len(),
                    Err(_) => break,
                }
            }
            prop_assert!(total <= bytes.len());
        }
    }

    #[test]
    fn empty_and_cut_records_are_corrupt() {
        assert!(entries(&[]).next().unwrap().is_err());
        let mut r = Vec::new();
        push(&mut r, Uuid::from_u128(7), b"value");
        assert!(entries(&r).all(|e| e.is_ok()));
        assert!(entries(&r[..r.len() - 1]).any(|e| e.is_err()));
        assert!(entries(&r[..10]).any(|e| e.is_err()));
        assert_eq!(find(&r, Uuid::from_u128(7)).unwrap(), Some(&b"value"[..]));
        assert_eq!(find(&r, Uuid::from_u128(8)).unwrap(), None);
    }

    #[test]
    fn keys_hold_their_numbers() {
        let k = key(b"functions/records/", 258);
        assert_eq!(number(b"functions/records/", &k).unwrap(), 258);
        assert!(number(b"functions/records/", b"functions/records/x").is_err());
        assert!(number(b"mappings/records/", &k).is_err());
    }
}
