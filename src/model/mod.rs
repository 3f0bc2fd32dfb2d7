//! The bottom layer: the types every other layer speaks in, with no storage
//! in them.
//!
//! - [`labels`]: label sets; [`profile_type`]: profile types and the
//!   `__name__` rule;
//! - [`matcher`] and [`selector`]: label matchers and the Prometheus
//!   selector parser;
//! - [`entities`] and [`keys`]: mappings, functions, locations and stacks,
//!   their keys and content ids, and [`SymbolSource`];
//! - [`time`]: time and duration parsing;
//! - [`profile`] and [`resolve`]: the result profile, diffs, pprof encoding,
//!   and resolving stack ids into it.
//!
//! Nothing here does I/O or imports a layer above.

pub mod entities;
pub mod error;
pub mod keys;
pub mod labels;
pub mod matcher;
pub mod profile;
pub mod profile_type;
pub mod resolve;
pub mod selector;
pub mod time;

pub use entities::{
    Function, FunctionId, Line, Location, LocationId, Mapping, MappingId, NumLabel, StackId,
    Stacktrace, SymbolChain, SymbolError, SymbolSource,
};
pub use error::{SelectorError, StorageError};
pub use labels::{sample_label, Label, Labels, SampleLabels, DEFAULT_SAMPLE_LABELS, METRIC_NAME};
pub use matcher::{MatchOp, Matcher};
pub use profile::{diff, to_pprof, Frame, FrameLine, Profile, Sample, Stack, DIFF_BASE_LABEL};
pub use profile_type::ProfileType;
pub use resolve::Resolver;
pub use selector::{parse_range_query, parse_selector, Grouping, RangeQuery};
