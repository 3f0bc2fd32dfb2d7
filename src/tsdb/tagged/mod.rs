//! [`Tagged`]: the samples of one chunk set that carried *sample labels*
//! (`span_id` and the like, see [`crate::ingest`]), kept beside the set's
//! columns as rows, and [`RowFilter`]: the matchers a query applies to them.
//!
//! A sample label does not make a series: the sample's value is counted in
//! its stack's column like any other, and the set also keeps one row per
//! (profile, label tuple, stack) with the summed value of the samples that
//! carried that tuple. A selector on a sample label then reads the rows: a
//! filter that does not match the empty tuple sums the matching rows; one
//! that does (`span_id=""`, `span_id!="x"`) takes the columns and subtracts
//! the rows that do not match. Either way the answer is what the series
//! design gives when the label is a series label, without a series per
//! value.
//!
//! # In memory
//! While its set takes profiles, a `Tagged` keeps rows as structs and each
//! tuple as its own allocation, with a hash lookup to find a tuple again.
//! When the head seals the set the rows and tuples are packed into bytes
//! ([`packed`]: a few bytes per row, a span id as its 8 bytes); reading
//! them decodes, and a later push unpacks them first. A set read from a
//! block keeps them as read (a query drops it soon after), with no lookup
//! until a push builds one.
//!
//! # Format in a block
//! Three fields of the `ChunkSet` message (`docs/format/block.md`):
//! `tag_names` (the names the set's tuples use, sorted), `tag_tuples` (per
//! tuple: indexes into `tag_names`, and the values) and `tag_rows`: per row,
//! uvarint profile index, uvarint tuple index, uvarint stack index (into
//! the block's symbols, as a column's `stack_index`), zigzag varint value;
//! varints as the chunks' ([`crate::tsdb::chunkenc`]), shortest form only.
//!
//! # Invariants
//! - Rows are in profile order (the index never decreases) and each row's
//!   profile index is below the set's length; a (profile, tuple, stack)
//!   appears once; values are non-zero.
//! - A tuple's names are sorted and unique, its values non-empty; tuples
//!   are unique within a set.
//! - A row's value is also in its stack's column.

use crate::model::{sample_label, Matcher, SampleLabels, StackId};
use crate::tsdb::chunkenc::varint;
use packed::Packed;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::BTreeSet;

mod packed;

/// One row: the summed value of the samples of `stack` in profile
/// `profile` (index within the set) that carried tuple `tuple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Profile index within the set.
    pub profile: u16,
    /// Index into the set's tuples.
    pub tuple: u32,
    /// The stack.
    pub stack: StackId,
    /// The summed value (non-zero).
    pub value: i64,
}

/// One tuple of sample labels, packed in one allocation: per label, the
/// name's and the value's lengths (uvarint) and bytes. A span id costs its
/// 16 bytes and a few more, where a `Vec` of `String` pairs costs about 100.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Tuple(Box<[u8]>);

impl Tuple {
    fn new(labels: &[(String, String)]) -> Tuple {
        let mut b = Vec::with_capacity(labels.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
        for (n, v) in labels {
            for x in [n, v] {
                varint::put(&mut b, x.len() as u64);
                b.extend_from_slice(x.as_bytes());
            }
        }
        Tuple(b.into_boxed_slice())
    }

    /// The (name, value) pairs, in order.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let b: &[u8] = &self.0;
        let mut pos = 0;
        let mut next = move || -> Option<&str> {
            // The bytes were written by `Tuple::new` from strings.
            let n = usize::try_from(varint::read(b, &mut pos).ok()?).ok()?;
            let x = b.get(pos..pos.checked_add(n)?)?;
            pos += n;
            std::str::from_utf8(x).ok()
        };
        std::iter::from_fn(move || Some((next()?, next()?)))
    }

    /// The value of `name` ("" when absent).
    fn get(&self, name: &str) -> &str {
        self.pairs()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v)
    }

    fn labels(&self) -> SampleLabels {
        self.pairs()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn hash(&self) -> u64 {
        use std::hash::BuildHasher;
        rustc_hash::FxBuildHasher.hash_one(&self.0)
    }
}

/// The tagged samples of one chunk set (see the [module docs](self)):
/// growable while the set takes profiles, packed once it is sealed.
#[derive(Debug, Clone)]
pub struct Tagged(Form);

#[derive(Debug, Clone)]
enum Form {
    Open(Open),
    Sealed(Packed),
}

impl Default for Tagged {
    fn default() -> Tagged {
        Tagged(Form::Open(Open::default()))
    }
}

/// The growable form.
#[derive(Debug, Clone, Default)]
struct Open {
    tuples: Vec<Tuple>,
    /// Hash of a tuple → the first tuple with that hash; a collision falls
    /// back to a scan. Empty for rows read from a block (built at the first
    /// push: most such sets are read once and dropped).
    lookup: FxHashMap<u64, u32>,
    rows: Vec<Row>,
}

impl Open {
    /// The index of `t`, added when new.
    fn intern(&mut self, t: Tuple) -> u32 {
        if self.lookup.is_empty() {
            for (i, x) in self.tuples.iter().enumerate() {
                self.lookup.entry(x.hash()).or_insert(i as u32);
            }
        }
        let h = t.hash();
        // A set holds at most 120 profiles of bounded size.
        let next = self.tuples.len() as u32;
        match self.lookup.get(&h) {
            Some(&i) if self.tuples[i as usize] == t => i,
            Some(_) => match self.tuples.iter().position(|x| *x == t) {
                Some(i) => i as u32,
                None => {
                    self.tuples.push(t);
                    next
                }
            },
            None => {
                self.lookup.insert(h, next);
                self.tuples.push(t);
                next
            }
        }
    }

    fn rows_in(&self, lo: usize, hi: usize) -> &[Row] {
        let a = self.rows.partition_point(|r| usize::from(r.profile) < lo);
        let b = self.rows.partition_point(|r| usize::from(r.profile) < hi);
        &self.rows[a..b.max(a)]
    }
}

impl Tagged {
    /// Adds the rows of profile `profile` (the set's next profile).
    pub fn push(&mut self, profile: u16, tags: &[(SampleLabels, StackId, i64)]) {
        let open = self.open_mut();
        for (labels, stack, value) in tags {
            if *value == 0 {
                continue;
            }
            let tuple = open.intern(Tuple::new(labels));
            open.rows.push(Row {
                profile,
                tuple,
                stack: *stack,
                value: *value,
            });
        }
    }

    /// The growable form, unpacked first if the set was sealed.
    fn open_mut(&mut self) -> &mut Open {
        if let Form::Sealed(p) = &self.0 {
            self.0 = Form::Open(Self::unpack(p));
        }
        match &mut self.0 {
            Form::Open(o) => o,
            Form::Sealed(_) => unreachable!("unpacked above"),
        }
    }

    fn unpack(p: &Packed) -> Open {
        let mut open = Open::default();
        for labels in p.tuple_labels() {
            // Tuples of a set are unique, so each gets its own index again.
            open.intern(Tuple::new(&labels));
        }
        open.rows = p.rows_in(0, usize::MAX);
        open
    }

    /// Packs the rows of a set that takes no more profiles (see
    /// [`packed`]); a later [`Tagged::push`] unpacks them.
    pub fn seal(&mut self) {
        if let Form::Open(o) = &self.0 {
            self.0 = Form::Sealed(Packed::new(&o.tuples, &o.rows));
        }
    }

    /// True when the set has no tagged sample.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Form::Open(o) => o.rows.is_empty(),
            Form::Sealed(p) => p.stacks().is_empty(),
        }
    }

    /// The rows, in profile order.
    pub fn rows(&self) -> Cow<'_, [Row]> {
        self.rows_in(0, usize::MAX)
    }

    /// The rows of profiles `[lo, hi)`.
    pub fn rows_in(&self, lo: usize, hi: usize) -> Cow<'_, [Row]> {
        match &self.0 {
            Form::Open(o) => Cow::Borrowed(o.rows_in(lo, hi)),
            Form::Sealed(p) => Cow::Owned(p.rows_in(lo, hi)),
        }
    }

    /// Every tuple's labels, in tuple order.
    fn tuples(&self) -> Vec<SampleLabels> {
        match &self.0 {
            Form::Open(o) => o.tuples.iter().map(Tuple::labels).collect(),
            Form::Sealed(p) => p.tuple_labels(),
        }
    }

    /// Tuple `i` (empty when out of range).
    pub fn tuple(&self, i: u32) -> SampleLabels {
        match &self.0 {
            Form::Open(o) => o
                .tuples
                .get(i as usize)
                .map(Tuple::labels)
                .unwrap_or_default(),
            Form::Sealed(p) => p
                .tuple_labels()
                .into_iter()
                .nth(i as usize)
                .unwrap_or_default(),
        }
    }

    /// Per profile of `[lo, hi)`, its rows as (labels, stack, value),
    /// sorted.
    pub fn profiles(&self, lo: usize, hi: usize) -> Vec<Vec<(SampleLabels, StackId, i64)>> {
        let tuples = self.tuples();
        let mut out = vec![Vec::new(); hi.saturating_sub(lo)];
        for r in self.rows_in(lo, hi).iter() {
            let labels = tuples.get(r.tuple as usize).cloned().unwrap_or_default();
            out[usize::from(r.profile) - lo].push((labels, r.stack, r.value));
        }
        for v in &mut out {
            v.sort_unstable();
        }
        out
    }

    /// The rows of profile `i` as (labels, stack, value), sorted.
    pub fn profile(&self, i: usize) -> Vec<(SampleLabels, StackId, i64)> {
        self.profiles(i, i + 1).pop().unwrap_or_default()
    }

    /// The names the tuples use.
    pub fn names(&self) -> BTreeSet<&str> {
        match &self.0 {
            Form::Open(o) => o
                .tuples
                .iter()
                .flat_map(|t| t.pairs().map(|(n, _)| n))
                .collect(),
            Form::Sealed(p) => p.names().iter().map(String::as_str).collect(),
        }
    }

    /// The stacks the rows name (a stack may come more than once).
    pub fn stacks(&self) -> Box<dyn Iterator<Item = StackId> + '_> {
        match &self.0 {
            Form::Open(o) => Box::new(o.rows.iter().map(|r| r.stack)),
            Form::Sealed(p) => Box::new(p.stacks().iter().copied()),
        }
    }

    /// Bytes held in memory, about.
    pub fn bytes(&self) -> usize {
        match &self.0 {
            Form::Open(o) => {
                // A tuple: its box, its bytes and the allocator's rounding.
                let tuples: usize = o
                    .tuples
                    .iter()
                    .map(|t| std::mem::size_of::<Tuple>() + t.0.len().next_multiple_of(16))
                    .sum::<usize>()
                    + (o.tuples.capacity() - o.tuples.len()) * std::mem::size_of::<Tuple>();
                // Hash map slots (key, value, control byte).
                let lookup = o.lookup.capacity() * 13;
                o.rows.capacity() * std::mem::size_of::<Row>() + tuples + lookup
            }
            Form::Sealed(p) => p.bytes(),
        }
    }

    /// Per tuple, whether `f` matches it.
    pub fn matching(&self, f: &RowFilter) -> Vec<bool> {
        match &self.0 {
            Form::Open(o) => o
                .tuples
                .iter()
                .map(|t| f.matches_by(|name| t.get(name)))
                .collect(),
            Form::Sealed(p) => {
                let mut out = Vec::new();
                let names = p.names();
                p.each_tuple(|tuple| {
                    out.push(f.matches_by(|name| {
                        tuple
                            .labels()
                            .find(|(n, _)| names.get(*n as usize).is_some_and(|x| x == name))
                            .map_or("", |(_, v)| v)
                    }))
                });
                out
            }
        }
    }

    /// Writes the rows into a block's `ChunkSet` message; `index` names a
    /// stack as the columns do.
    pub fn to_proto(
        &self,
        index: &mut impl FnMut(StackId) -> u32,
        msg: &mut crate::proto::block::ChunkSet,
    ) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let names: Vec<&str> = self.names().into_iter().collect();
        msg.tag_names = names.iter().map(|n| n.to_string()).collect();
        msg.tag_tuples = self
            .tuples()
            .into_iter()
            .map(|t| crate::proto::block::TagTuple {
                // Every name of a tuple is in `names`.
                names: t
                    .iter()
                    .map(|(n, _)| names.binary_search(&n.as_str()).unwrap_or(0) as u32)
                    .collect(),
                values: t.into_iter().map(|(_, v)| v).collect(),
            })
            .collect();
        let mut b = Vec::with_capacity(rows.len() * 6);
        for r in rows.iter() {
            varint::put(&mut b, u64::from(r.profile));
            varint::put(&mut b, u64::from(r.tuple));
            varint::put(&mut b, u64::from(index(r.stack)));
            varint::put(&mut b, varint::zigzag(r.value));
        }
        msg.tag_rows = b;
    }

    /// Reads and checks the rows of a set of `len` profiles from a block's
    /// message (`None` when it has none); `stack` names a stack index.
    pub fn from_proto(
        msg: &crate::proto::block::ChunkSet,
        len: usize,
        stack: impl Fn(u32) -> Result<StackId, String>,
    ) -> Result<Option<Tagged>, String> {
        if msg.tag_rows.is_empty() {
            if !msg.tag_tuples.is_empty() {
                return Err("sample label tuples without rows".into());
            }
            return Ok(None);
        }
        let names = &msg.tag_names;
        if names.windows(2).any(|w| w[0] >= w[1]) || names.iter().any(|n| n.is_empty()) {
            return Err("sample label names not sorted, unique and non-empty".into());
        }
        let mut tuples: Vec<Tuple> = Vec::with_capacity(msg.tag_tuples.len());
        let mut seen: std::collections::HashSet<SampleLabels> = Default::default();
        for t in &msg.tag_tuples {
            if t.names.len() != t.values.len() || t.names.is_empty() {
                return Err("a sample label tuple's names and values disagree".into());
            }
            if t.names.windows(2).any(|w| w[0] >= w[1]) {
                return Err("a sample label tuple's names are not sorted".into());
            }
            let mut labels = SampleLabels::with_capacity(t.names.len());
            for (n, v) in t.names.iter().zip(&t.values) {
                let name = names
                    .get(*n as usize)
                    .ok_or_else(|| format!("sample label name {n} out of range"))?;
                if v.is_empty() {
                    return Err("empty sample label value".into());
                }
                labels.push((name.clone(), v.clone()));
            }
            let tuple = Tuple::new(&labels);
            if !seen.insert(labels) {
                return Err("a sample label tuple appears twice".into());
            }
            tuples.push(tuple);
        }
        let mut rows = Vec::new();
        let buf: &[u8] = &msg.tag_rows;
        let mut pos = 0;
        let mut keys: std::collections::HashSet<(u16, u32, StackId)> = Default::default();
        let next =
            |pos: &mut usize| varint::read(buf, pos).map_err(|e| format!("sample label rows: {e}"));
        while pos < buf.len() {
            let profile = next(&mut pos)?;
            let tuple = next(&mut pos)?;
            let index = next(&mut pos)?;
            let value = varint::unzigzag(next(&mut pos)?);
            if profile >= len as u64 {
                return Err(format!(
                    "sample label row of profile {profile} in a set of {len}"
                ));
            }
            if tuple >= tuples.len() as u64 {
                return Err(format!("sample label row of tuple {tuple} out of range"));
            }
            if value == 0 {
                return Err("sample label row of value 0".into());
            }
            let index = u32::try_from(index).map_err(|_| "stack index out of range".to_string())?;
            let row = Row {
                profile: profile as u16,
                tuple: tuple as u32,
                stack: stack(index)?,
                value,
            };
            if rows.last().is_some_and(|l: &Row| l.profile > row.profile) {
                return Err("sample label rows out of profile order".into());
            }
            if !keys.insert((row.profile, row.tuple, row.stack)) {
                return Err("a sample label row appears twice".into());
            }
            rows.push(row);
        }
        Ok(Some(Tagged(Form::Open(Open {
            tuples,
            lookup: FxHashMap::default(),
            rows,
        }))))
    }
}

/// Matchers on sample labels, applied to a series' rows. A tuple matches
/// when every matcher matches its value of the matcher's name ("" when the
/// tuple lacks it), as a series' labels match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilter {
    matchers: Vec<Matcher>,
    empty: bool,
}

impl RowFilter {
    /// A filter of `matchers` (not empty).
    pub fn new(matchers: Vec<Matcher>) -> RowFilter {
        let empty = matchers.iter().all(Matcher::matches_empty);
        RowFilter { matchers, empty }
    }

    /// True when a tuple matches.
    pub fn matches(&self, tags: &[(String, String)]) -> bool {
        self.matches_by(|name| sample_label(tags, name))
    }

    /// True when every matcher matches `value(name)` of its name.
    fn matches_by<'a>(&self, value: impl Fn(&str) -> &'a str) -> bool {
        self.matchers.iter().all(|m| m.matches(value(&m.name)))
    }

    /// True when samples without sample labels match: the filter then keeps
    /// the columns and takes out the rows that do not match.
    pub fn matches_empty(&self) -> bool {
        self.empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::block as pb;

    fn stack(i: u32) -> Result<StackId, String> {
        Ok(StackId(uuid::Uuid::from_u128(u128::from(i) + 1)))
    }

    fn labels(v: &[(&str, &str)]) -> SampleLabels {
        v.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Rows of two profiles, through a block message and back.
    fn message() -> (Tagged, pb::ChunkSet) {
        let mut t = Tagged::default();
        let a = labels(&[("span_id", "a")]);
        let ab = labels(&[("span_id", "a"), ("trace_id", "t\u{0}x")]);
        t.push(
            0,
            &[
                (a.clone(), stack(0).unwrap(), 5),
                (ab.clone(), stack(1).unwrap(), -3),
            ],
        );
        t.push(1, &[(a.clone(), stack(1).unwrap(), 7)]);
        let mut msg = pb::ChunkSet::default();
        t.to_proto(&mut |id| id.0.as_u128() as u32 - 1, &mut msg);
        (t, msg)
    }

    #[test]
    fn rows_survive_their_block_message() {
        let (t, msg) = message();
        assert_eq!(msg.tag_names, ["span_id", "trace_id"]);
        let back = Tagged::from_proto(&msg, 2, stack).unwrap().unwrap();
        assert_eq!(back.rows(), t.rows());
        assert_eq!(back.profile(0), t.profile(0));
        assert_eq!(back.profile(1).len(), 1);
        assert_eq!(
            back.tuple(1),
            labels(&[("span_id", "a"), ("trace_id", "t\u{0}x")])
        );
        assert_eq!(back.rows_in(1, 2).len(), 1);
        let f = RowFilter::new(vec![Matcher::new(
            crate::model::MatchOp::Equal,
            "trace_id",
            "t\u{0}x",
        )
        .unwrap()]);
        assert_eq!(back.matching(&f), [false, true]);
    }

    /// Rows read from a block find their tuples again when the set takes
    /// more profiles (the lookup is built at that first push).
    #[test]
    fn rows_read_from_a_block_take_more_profiles() {
        let (t, msg) = message();
        let mut back = Tagged::from_proto(&msg, 2, stack).unwrap().unwrap();
        let mut want = t.clone();
        let a = labels(&[("span_id", "a")]);
        for x in [&mut back, &mut want] {
            x.push(2, &[(a.clone(), stack(0).unwrap(), 4)]);
        }
        assert_eq!(back.tuples().len(), 2);
        assert_eq!(back.tuples(), want.tuples());
        assert_eq!(back.rows(), want.rows());
    }

    #[test]
    fn damaged_rows_are_refused() {
        let (_, good) = message();
        let mut bad: Vec<(&str, pb::ChunkSet)> = Vec::new();
        let mut m = good.clone();
        m.tag_rows.truncate(m.tag_rows.len() - 1);
        bad.push(("truncated rows", m));
        let mut m = good.clone();
        m.tag_rows[0] = 9;
        bad.push(("profile out of range", m));
        let mut m = good.clone();
        m.tag_rows[1] = 7;
        bad.push(("tuple out of range", m));
        let mut m = good.clone();
        m.tag_rows[3] = 0;
        bad.push(("zero value", m));
        let mut m = good.clone();
        m.tag_names.reverse();
        bad.push(("unsorted names", m));
        let mut m = good.clone();
        m.tag_tuples[1] = m.tag_tuples[0].clone();
        bad.push(("a tuple twice", m));
        let mut m = good.clone();
        m.tag_tuples[0].values[0].clear();
        bad.push(("empty value", m));
        let mut m = good.clone();
        let first: Vec<u8> = m.tag_rows[..4].to_vec();
        m.tag_rows.extend_from_slice(&first);
        bad.push(("rows out of order or twice", m));
        for (what, m) in bad {
            assert!(Tagged::from_proto(&m, 2, stack).is_err(), "{what} was read");
        }
        assert!(
            Tagged::from_proto(&good, 1, stack).is_err(),
            "a set too short"
        );
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod packed_tests;
