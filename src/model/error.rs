//! [`StorageError`]: a backend's own failure (its disk, its database), as
//! the layers above the backends see it.

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
}

impl StorageError {
    /// A failure of `part` (see [`StorageError::part`]).
    pub fn new(part: &'static str, e: impl std::fmt::Display) -> StorageError {
        StorageError {
            part,
            message: e.to_string(),
        }
    }
}
