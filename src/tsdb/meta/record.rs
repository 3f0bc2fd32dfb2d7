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
//!
//! # Framing
//! How the sled value holds the record depends on the store's format
//! marker ([`Framing`]). A `content-ids/3` store keeps the record bare (the
//! value is the record; sled compresses its pages with zstd). A
//! `content-ids/4` store, which turns sled's compression off, starts every
//! value with an encoding byte:
//!
//! | byte | then |
//! |---|---|
//! | 0 | the record as is |
//! | 1 | the record's length (u32 BE, at most [`MAX_PLAIN`]), then one zstd frame that decompresses to exactly that many bytes |
//!
//! The writer compresses with one zstd context that it keeps (sled made a
//! new context for every page fragment it wrote, about a fifth of the
//! writer thread's time), and stores a record as is when compression does
//! not make it smaller. Reading an entity decompresses its whole record,
//! so the store caches every entity of a record it reads
//! ([`super::store`]).

use super::MetaError;
use uuid::Uuid;

/// Records are closed once they hold this many bytes: below a quarter of
/// [`super::store::SEGMENT_SIZE`] even incompressible, so that sled keeps
/// them in its log segments rather than in a file each (an entity larger
/// than this gets a record of its own).
pub const RECORD_BYTES: usize = 12 << 10;

/// Bytes of an entry's header: the id and the length.
const HEADER: usize = 16 + 4;

/// The largest record a framed value may decompress to. Records close at
/// [`RECORD_BYTES`] unless one entity is larger, and an entity is bounded
/// by the ingest limits (strings of a few KB, stacks of a few thousand
/// frames) far below this; the bound keeps a damaged length from
/// allocating more.
pub const MAX_PLAIN: usize = 64 << 20;

/// Encoding byte: the record follows as is.
const PLAIN: u8 = 0;
/// Encoding byte: the record's length and a zstd frame follow.
const ZSTD: u8 = 1;

/// zstd's level for records: its fastest regular level. Level −1 gave the
/// same writer time and bytes on disk (`benches/ingest.rs`,
/// `benches/meta_burst.rs`).
const ZSTD_LEVEL: i32 = 1;

/// How a store's sled values hold its records (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The value is the record (`content-ids/3`).
    Bare,
    /// An encoding byte, then the record or its zstd frame (`content-ids/4`).
    Tagged,
}

/// Turns records into sled values for one store, keeping a zstd context
/// between records. One per thread that writes records.
pub struct Encoder {
    framing: Framing,
    zstd: zstd::block::Compressor,
    frame: Vec<u8>,
}

impl Encoder {
    /// An encoder for a store with `framing`.
    pub fn new(framing: Framing) -> Encoder {
        Encoder {
            framing,
            zstd: zstd::block::Compressor::new(),
            frame: Vec::new(),
        }
    }

    /// The sled value of `record`.
    pub fn encode(&mut self, record: Vec<u8>) -> Vec<u8> {
        if self.framing == Framing::Bare {
            return record;
        }
        self.frame.clear();
        self.frame
            .reserve(zstd::zstd_safe::compress_bound(record.len()));
        match self
            .zstd
            .compress_to_buffer(&record, &mut self.frame, ZSTD_LEVEL)
        {
            // Compressed only when that value (byte, length, frame) is
            // smaller than the plain one (byte, record).
            Ok(n) if 4 + n < record.len() => {
                let mut out = Vec::with_capacity(5 + n);
                out.push(ZSTD);
                // Records are far below u32::MAX (see MAX_PLAIN).
                out.extend_from_slice(&(record.len() as u32).to_be_bytes());
                out.extend_from_slice(&self.frame[..n]);
                out
            }
            // Incompressible (or zstd refused, which it does only for a
            // destination too small, and compress_bound rules that out):
            // stored as is.
            _ => {
                let mut out = Vec::with_capacity(1 + record.len());
                out.push(PLAIN);
                out.extend_from_slice(&record);
                out
            }
        }
    }
}

/// Reads sled values back into records, keeping a zstd context and a
/// buffer between them.
#[derive(Default)]
pub struct Decoder {
    zstd: zstd::block::Decompressor,
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The record that the sled value `value` of a store with `framing`
    /// holds: corrupt if the encoding byte is unknown, the length above
    /// [`MAX_PLAIN`], or the frame does not decompress to exactly that
    /// length.
    pub fn decode<'a>(
        &'a mut self,
        framing: Framing,
        value: &'a [u8],
    ) -> Result<&'a [u8], MetaError> {
        if framing == Framing::Bare {
            return Ok(value);
        }
        match value.split_first() {
            Some((&PLAIN, record)) => Ok(record),
            Some((&ZSTD, rest)) => {
                let Some((len, frame)) = rest.split_first_chunk::<4>() else {
                    return Err(MetaError::Corrupt(
                        "record: a compressed record without its length".into(),
                    ));
                };
                let len = u32::from_be_bytes(*len) as usize;
                if len > MAX_PLAIN {
                    return Err(MetaError::Corrupt(format!(
                        "record: {len} bytes compressed, above the bound of {MAX_PLAIN}"
                    )));
                }
                self.buf.clear();
                self.buf.reserve_exact(len);
                // The Vec takes at most its capacity: len bytes or a little
                // more, never what the frame claims beyond it.
                let n = self
                    .zstd
                    .decompress_to_buffer(frame, &mut self.buf)
                    .map_err(|e| MetaError::Corrupt(format!("record: zstd: {e}")))?;
                if n != len {
                    return Err(MetaError::Corrupt(format!(
                        "record: {n} bytes decompressed where the length says {len}"
                    )));
                }
                Ok(&self.buf)
            }
            Some((b, _)) => Err(MetaError::Corrupt(format!(
                "record: unknown encoding byte {b}"
            ))),
            None => Err(MetaError::Corrupt("record: an empty value".into())),
        }
    }
}

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
        self.push_with(id, |buf| buf.extend_from_slice(value))
    }

    /// Adds an entity whose value `encode` appends to the buffer it is
    /// given (so the value is written once, in place).
    pub fn push_with(&mut self, id: Uuid, encode: impl FnOnce(&mut Vec<u8>)) {
        let buf = &mut self.current.bytes;
        if buf.capacity() == 0 {
            buf.reserve(RECORD_BYTES);
        }
        let start = buf.len();
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(&[0; 4]);
        encode(buf);
        // A value is one entity's protobuf, bounded by the ingest limits
        // (strings of at most a few KB, stacks of at most a few thousand
        // frames), far below u32::MAX.
        let len = (buf.len() - start - HEADER) as u32;
        buf[start + 16..start + HEADER].copy_from_slice(&len.to_be_bytes());
        if self.current.entities > 0 && buf.len() > RECORD_BYTES {
            // The record is full without this entity: it starts the next.
            let entry = buf.split_off(start);
            self.done.push(std::mem::take(&mut self.current));
            self.current.bytes = entry;
        }
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

    /// The value of entry `id` in `record`, if it holds one.
    fn find(record: &[u8], id: Uuid) -> Result<Option<&[u8]>, MetaError> {
        for e in entries(record) {
            let (i, v) = e?;
            if i == id {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

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

    proptest! {
        /// Framing round trips: a record comes back as it went in, under
        /// both framings; a tagged value is never more than one byte
        /// larger than its record, and a record that compresses is stored
        /// compressed.
        #[test]
        fn framed_records_read_back(
            random in proptest::collection::vec(any::<u8>(), 0..3000),
            repeats in 0usize..200,
        ) {
            let mut encoder = Encoder::new(Framing::Tagged);
            let mut bare = Encoder::new(Framing::Bare);
            let mut decoder = Decoder::new();
            let mut repetitive = Vec::new();
            for i in 0..repeats {
                push(&mut repetitive, Uuid::from_u128(i as u128 % 7), b"/src/main.rs");
            }
            for (record, shrinks) in [(random, false), (repetitive, repeats >= 10)] {
                let value = encoder.encode(record.clone());
                prop_assert!(value.len() <= record.len() + 1);
                if shrinks {
                    prop_assert_eq!(value[0], ZSTD);
                    prop_assert!(value.len() < record.len());
                }
                prop_assert_eq!(decoder.decode(Framing::Tagged, &value).unwrap(), &record[..]);
                let v = bare.encode(record.clone());
                prop_assert_eq!(&v, &record);
                prop_assert_eq!(decoder.decode(Framing::Bare, &v).unwrap(), &record[..]);
            }
        }

        /// Any bytes as a tagged value: a record or an error, never a
        /// panic, and never more than the bound allocated.
        #[test]
        fn any_framed_bytes_are_read_or_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut decoder = Decoder::new();
            if let Ok(r) = decoder.decode(Framing::Tagged, &bytes) {
                prop_assert!(r.len() <= MAX_PLAIN);
            }
        }
    }

    /// A repetitive record is compressed; a damaged frame, a wrong length,
    /// a length above the bound and an unknown encoding byte are corrupt.
    #[test]
    fn compressed_records_and_their_damage() {
        let mut record = Vec::new();
        for i in 0..100u128 {
            push(
                &mut record,
                Uuid::from_u128(i % 5),
                b"runtime.mallocgc /usr/lib/go/src/runtime/malloc.go",
            );
        }
        let mut encoder = Encoder::new(Framing::Tagged);
        let value = encoder.encode(record.clone());
        assert_eq!(value[0], ZSTD);
        assert!(
            value.len() * 4 < record.len(),
            "{} of {}",
            value.len(),
            record.len()
        );
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.decode(Framing::Tagged, &value).unwrap(),
            &record[..]
        );
        // The context is reused: the same again, then another record.
        assert_eq!(encoder.encode(record.clone()), value);
        assert_eq!(
            decoder.decode(Framing::Tagged, &value).unwrap(),
            &record[..]
        );

        let corrupt = |v: &[u8]| {
            let mut d = Decoder::new();
            matches!(d.decode(Framing::Tagged, v), Err(MetaError::Corrupt(_)))
        };
        assert!(corrupt(&value[..value.len() - 1]));
        let mut longer = value.clone();
        longer[1..5].copy_from_slice(&(record.len() as u32 + 1).to_be_bytes());
        assert!(corrupt(&longer));
        let mut shorter = value.clone();
        shorter[1..5].copy_from_slice(&(record.len() as u32 - 1).to_be_bytes());
        assert!(corrupt(&shorter));
        let mut huge = value.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(corrupt(&huge));
        assert!(corrupt(&[]));
        assert!(corrupt(&[ZSTD, 0, 0]));
        assert!(corrupt(&[7, 1, 2, 3]));
        // A plain value is the record after its byte.
        assert_eq!(
            decoder.decode(Framing::Tagged, &[PLAIN, 1, 2]).unwrap(),
            &[1, 2]
        );
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
