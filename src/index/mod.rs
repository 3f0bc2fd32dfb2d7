//! index (in progress).
