//! The model's errors: [`SelectorError`] (an invalid selector or matcher,
//! always the request's fault) and [`StorageError`] (a backend's own
//! failure — its disk, its database — as the layers above the backends see
//! it).

/// A storage backend failed (I/O, its meta store, its log, its database);
/// not the request's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// The part that failed, as a metric label: `meta_store`, `wal`,
    /// `blocks` or `database`.
    pub part: &'static str,
    /// What failed, for people.
    pub message: String,
    /// The failure is a full disk: the write may succeed once space is
    /// freed (HTTP 507).
    pub no_space: bool,
}

impl StorageError {
    /// A failure of `part` (see [`StorageError::part`]).
    pub fn new(part: &'static str, e: impl std::fmt::Display) -> StorageError {
        StorageError {
            part,
            message: e.to_string(),
            no_space: false,
        }
    }

    /// A failure of `part` caused by the I/O error `io` (a full disk is
    /// told apart).
    pub fn io(part: &'static str, e: impl std::fmt::Display, io: &std::io::Error) -> StorageError {
        StorageError {
            no_space: io.kind() == std::io::ErrorKind::StorageFull,
            ..StorageError::new(part, e)
        }
    }
}

/// Errors of selector parsing and matcher construction (all invalid input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The input is not valid PromQL.
    #[error("invalid selector {input:?}: {reason}")]
    Parse {
        /// The selector as given.
        input: String,
        /// What promql-parser reported.
        reason: String,
    },
    /// Valid PromQL, but not a plain series selector.
    #[error(
        "unsupported selector {input:?}: found {found}; only a series selector such as \
         `profile_type{{label=\"value\"}}` is accepted"
    )]
    Unsupported {
        /// The selector as given.
        input: String,
        /// What was found instead, e.g. "function call `rate(...)`".
        found: String,
    },
    /// No metric name and every matcher matches the empty string (`{}`,
    /// `{job=~".*"}`, or empty input): it would select everything.
    #[error("vector selector must contain at least one non-empty matcher")]
    Empty,
    /// A regex that does not compile.
    #[error("invalid regex {regex:?} for label {name:?}: {reason}")]
    InvalidRegex {
        /// The label name.
        name: String,
        /// The regex as written.
        regex: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A matcher with an empty label name.
    #[error("empty label name in matcher (value {value:?})")]
    EmptyLabelName {
        /// The matcher's value.
        value: String,
    },
}
