//! meta (in progress).
