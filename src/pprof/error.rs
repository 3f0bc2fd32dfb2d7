//! [`PprofError`]: everything that can go wrong between untrusted bytes and a
//! validated profile.

/// Why a pprof body was rejected.
///
/// The variants split into two classes, so a server can answer with the right
/// status without parsing messages:
///
/// - [`PprofError::TooLarge`]: the body, or something in it, is over a
///   [`DecodeLimits`](super::DecodeLimits) bound (HTTP 413). The same body may
///   be accepted with larger limits.
/// - every other variant: the body is malformed (HTTP 400). No limit makes it
///   acceptable.
///
/// [`PprofError::is_too_large`] tells the two apart. Messages say what is
/// wrong and where; positions (`sample 12`, `function 3`) are 0-based indexes
/// into the profile's repeated fields, ids are the profile's own ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PprofError {
    /// The body (or the gunzipped body) has no bytes at all.
    #[error("empty profile body")]
    Empty,
    /// A size or count is over its limit. `what` names it (and where, e.g.
    /// `sample 12: stack depth 2000`); `limit` is the configured bound.
    #[error("too large: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// What is too large, with its size when it is known.
        what: String,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The body starts with the gzip magic bytes but is not a valid gzip
    /// stream (truncated, corrupt, bad checksum, trailing garbage).
    #[error("gzip: {0}")]
    Gzip(String),
    /// The (gunzipped) body is not a well-formed `perftools.profiles.Profile`
    /// protobuf message (bad wire format, truncated field, invalid UTF-8 in a
    /// string).
    #[error("protobuf: {0}")]
    Protobuf(String),
    /// The message decodes but breaks a pprof invariant: a string index out
    /// of range, a reference to a missing location/function/mapping, a zero or
    /// duplicate id, a sample with the wrong number of values.
    #[error("invalid profile: {0}")]
    Invalid(String),
}

impl PprofError {
    /// True for [`PprofError::TooLarge`] (an HTTP server answers 413), false
    /// for a malformed body (400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, PprofError::TooLarge { .. })
    }

    #[cold]
    pub(crate) fn too_large(what: impl Into<String>, limit: usize) -> Self {
        PprofError::TooLarge {
            what: what.into(),
            limit,
        }
    }
}
