//! profile_type (in progress).
