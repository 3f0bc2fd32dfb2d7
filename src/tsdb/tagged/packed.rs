//! [`Packed`]: a sealed set's tagged samples as bytes (memory only).
//!
//! A set stops taking profiles once it holds 120 of them (or its series
//! went idle), and from then on its rows are only read. In the open form
//! a row is a 32-byte struct and each tuple its own allocation (about 80
//! bytes per row where every sample carries a fresh span id); packed, a
//! row takes a few bytes and a span id its 8 bytes of hex digits.
//!
//! # Layout
//! ```text
//! names   the names the tuples use, sorted and unique
//! stacks  the stacks the rows name, sorted and unique
//! tuples  := tuple*                      in tuple index order
//! tuple   := uvarint(n) label{n}         labels in the tuple's order
//! label   := uvarint(name) value         name: index into `names`
//! value   := uvarint(len << 1) byte{len} the value as it is
//!          | uvarint(k << 1 | 1) byte{k} a value of 2k lowercase hex
//!                                        digits, as the k bytes they spell
//! rows    := row*                        profile by profile, in row order;
//!                                        profile i's are starts[i]..starts[i+1]
//! row     := zigzag(tuple - t) uvarint(stack) zigzag(value)
//!                                        t: the previous row's tuple in the
//!                                        same profile, 0 for its first row;
//!                                        stack: index into `stacks`
//! ```
//! Varints are the chunks' ([`crate::tsdb::chunkenc`]).
//!
//! # Invariants
//! - Only [`Packed::new`] makes one, from rows and tuples that keep the
//!   invariants of [`super::Tagged`]; the readers decode what it wrote
//!   (they stop at a malformed byte rather than panic, which would be a
//!   bug of this module).
//! - Reading gives back exactly the tuples (labels, order) and rows
//!   (profile, tuple, stack, value, order) it was made from.

use super::{Row, Tuple};
use crate::model::{SampleLabels, StackId};
use crate::tsdb::chunkenc::varint;

/// The sealed form of [`super::Tagged`] (see the [module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Packed {
    names: Box<[String]>,
    stacks: Box<[StackId]>,
    tuple_count: u32,
    tuples: Box<[u8]>,
    rows: Box<[u8]>,
    /// Per profile `i`, where its rows start in `rows`; one more entry
    /// than profiles (the end).
    starts: Box<[u32]>,
}

/// Whether `v` is an even number of lowercase hex digits (at least two).
fn is_hex(v: &str) -> bool {
    !v.is_empty()
        && v.len() % 2 == 0
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn nibble(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One tuple of a [`Packed`] set, as [`Packed::each_tuple`] reads it.
pub(super) struct TupleView<'a> {
    /// The tuple's values, one after the other.
    text: &'a str,
    /// Per label: name index, and its value's range in `text`.
    spans: &'a [(u32, usize, usize)],
}

impl<'a> TupleView<'a> {
    /// The labels as (name index, value), in the tuple's order.
    pub(super) fn labels(&self) -> impl Iterator<Item = (u32, &'a str)> + '_ {
        self.spans.iter().map(|&(n, a, z)| (n, &self.text[a..z]))
    }
}

impl Packed {
    /// Packs `rows` (in profile order) of `tuples`.
    pub(super) fn new(tuples: &[Tuple], rows: &[Row]) -> Packed {
        let mut names: Vec<&str> = tuples
            .iter()
            .flat_map(|t| t.pairs().map(|(n, _)| n))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut stacks: Vec<StackId> = rows.iter().map(|r| r.stack).collect();
        stacks.sort_unstable();
        stacks.dedup();

        let mut tb = Vec::new();
        for t in tuples {
            varint::put(&mut tb, t.pairs().count() as u64);
            for (n, v) in t.pairs() {
                // Every name of a tuple is in `names`.
                varint::put(&mut tb, names.binary_search(&n).unwrap_or(0) as u64);
                if is_hex(v) {
                    let b = v.as_bytes();
                    varint::put(&mut tb, ((b.len() / 2) as u64) << 1 | 1);
                    tb.extend(b.chunks(2).map(|p| nibble(p[0]) << 4 | nibble(p[1])));
                } else {
                    varint::put(&mut tb, (v.len() as u64) << 1);
                    tb.extend_from_slice(v.as_bytes());
                }
            }
        }

        let profiles = rows.last().map_or(0, |r| usize::from(r.profile) + 1);
        let mut starts = Vec::with_capacity(profiles + 1);
        let mut rb = Vec::with_capacity(rows.len() * 5);
        let mut prev: Option<(u16, u32)> = None;
        for r in rows {
            while starts.len() <= usize::from(r.profile) {
                starts.push(rb.len() as u32);
            }
            let t = match prev {
                Some((p, t)) if p == r.profile => t,
                _ => 0,
            };
            varint::put(&mut rb, varint::zigzag(i64::from(r.tuple) - i64::from(t)));
            // Every row's stack is in `stacks`.
            varint::put(&mut rb, stacks.binary_search(&r.stack).unwrap_or(0) as u64);
            varint::put(&mut rb, varint::zigzag(r.value));
            prev = Some((r.profile, r.tuple));
        }
        starts.push(rb.len() as u32);
        Packed {
            names: names.into_iter().map(str::to_string).collect(),
            stacks: stacks.into(),
            tuple_count: tuples.len() as u32,
            tuples: tb.into(),
            rows: rb.into(),
            starts: starts.into(),
        }
    }

    /// The names the tuples use, sorted.
    pub(super) fn names(&self) -> &[String] {
        &self.names
    }

    /// The stacks the rows name, sorted.
    pub(super) fn stacks(&self) -> &[StackId] {
        &self.stacks
    }

    /// Bytes held in memory, about.
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Packed>()
            + self.names.iter().map(|n| 24 + n.len()).sum::<usize>()
            + std::mem::size_of_val(&*self.stacks)
            + self.tuples.len()
            + self.rows.len()
            + std::mem::size_of_val(&*self.starts)
    }

    /// The rows of profiles `[lo, hi)`, in order.
    pub(super) fn rows_in(&self, lo: usize, hi: usize) -> Vec<Row> {
        let last = self.starts.len().saturating_sub(1);
        let (lo, hi) = (lo.min(last), hi.min(last));
        let mut out = Vec::new();
        for p in lo..hi.max(lo) {
            let (a, b) = (self.starts[p] as usize, self.starts[p + 1] as usize);
            let b = &self.rows[a..b];
            let mut pos = 0;
            let mut tuple: i64 = 0;
            while pos < b.len() {
                let (Ok(d), Ok(s), Ok(v)) = (
                    varint::read(b, &mut pos),
                    varint::read(b, &mut pos),
                    varint::read(b, &mut pos),
                ) else {
                    debug_assert!(false, "a packed row this module wrote does not read");
                    break;
                };
                tuple += varint::unzigzag(d);
                let Some(&stack) = self.stacks.get(s as usize) else {
                    debug_assert!(
                        false,
                        "a packed row names stack {s} of {}",
                        self.stacks.len()
                    );
                    break;
                };
                out.push(Row {
                    // Profile indexes are below CHUNK_PROFILES, tuples
                    // below u32::MAX (see `new`).
                    profile: p as u16,
                    tuple: tuple as u32,
                    stack,
                    value: varint::unzigzag(v),
                });
            }
        }
        out
    }

    /// Calls `f` with each tuple, in tuple order; the values live in a
    /// buffer reused from tuple to tuple (no allocation per tuple).
    pub(super) fn each_tuple(&self, mut f: impl FnMut(TupleView<'_>)) {
        let b: &[u8] = &self.tuples;
        let mut pos = 0;
        let mut text = String::new();
        let mut spans: Vec<(u32, usize, usize)> = Vec::new();
        for _ in 0..self.tuple_count {
            text.clear();
            spans.clear();
            let Ok(n) = varint::read(b, &mut pos) else {
                debug_assert!(false, "a packed tuple this module wrote does not read");
                return;
            };
            for _ in 0..n {
                let (Ok(name), Ok(len)) = (varint::read(b, &mut pos), varint::read(b, &mut pos))
                else {
                    debug_assert!(false, "a packed label this module wrote does not read");
                    return;
                };
                let k = (len >> 1) as usize;
                let Some(bytes) = b.get(pos..pos + k) else {
                    debug_assert!(false, "a packed value runs past its tuples");
                    return;
                };
                pos += k;
                let start = text.len();
                if len & 1 == 1 {
                    for &x in bytes {
                        text.push(HEX[usize::from(x >> 4)] as char);
                        text.push(HEX[usize::from(x & 15)] as char);
                    }
                } else {
                    // The bytes are a value's, which was a `str`.
                    text.push_str(std::str::from_utf8(bytes).unwrap_or(""));
                }
                spans.push((name as u32, start, text.len()));
            }
            f(TupleView {
                text: &text,
                spans: &spans,
            });
        }
    }

    /// Every tuple's labels, in tuple order.
    pub(super) fn tuple_labels(&self) -> Vec<SampleLabels> {
        let mut out = Vec::with_capacity(self.tuple_count as usize);
        self.each_tuple(|tuple| {
            out.push(
                tuple
                    .labels()
                    .map(|(n, v)| {
                        let name = self.names.get(n as usize).map_or("", String::as_str);
                        (name.to_string(), v.to_string())
                    })
                    .collect(),
            )
        });
        out
    }
}
