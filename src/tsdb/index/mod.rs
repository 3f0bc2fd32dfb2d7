//! The inverted label index and selector evaluation.
//!
//! - [`MemPostings`] (`postings.rs`): label name → label value → roaring
//!   bitmap of [`SeriesRef`]s, plus a bitmap of every series.
//! - Matchers and selectors live in [`crate::model`]:
//!   [`crate::model::Matcher`] (one label matcher, `=`, `!=`, `=~`, `!~`,
//!   its regex compiled once, fully anchored like Prometheus) and
//!   [`crate::model::parse_selector`] (a Prometheus series selector such as
//!   `process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta{job="api"}` →
//!   matchers).
//! - [`select`] (`select.rs`): matchers → bitmap of matching series, with
//!   Prometheus's `PostingsForMatchers` semantics.
//! - [`labels`] (`labels.rs`): label names and values of a selection from
//!   the posting lists (or from the selected series' labels when fewer),
//!   and the union of sorted answers.
//!
//! # Invariants
//! - A series id ([`SeriesRef`]) comes from the head's counter and is never
//!   reused within one process, so a bitmap never confuses an old series with
//!   a new one.
//! - A posting list is never empty: [`MemPostings::remove`] drops a value when
//!   its last series goes, and a name when its last value goes.
//! - There is no posting list for the empty value: a label with an empty value
//!   is the same as no label ([`crate::model::labels::Labels`] drops them). So a
//!   matcher that matches `""` also matches every series without the label
//!   (`{foo=""}`, `{foo=~"|x"}`, `{foo!="bar"}`).
//! - Every series in any posting list is in the all-series bitmap, and every
//!   series in the all-series bitmap is in the posting list of each of its
//!   labels.
//! - Label names, and each name's values, are kept sorted, so label queries
//!   read them in order.
//!
//! # Semantics of a selector
//! A series matches a list of matchers when it matches each of them, a missing
//! label counting as the value `""`. An empty list matches every series (the
//! engine's contract; [`crate::model::parse_selector`] never yields one).

pub mod labels;
mod postings;
mod select;

pub use postings::{MemPostings, Values};
pub use select::select;

use std::fmt;

/// The id of a series in the head.
///
/// Ids come from a counter and are never reused within one process; they are
/// the elements of the postings bitmaps (hence 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesRef(pub u32);

impl fmt::Display for SeriesRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
