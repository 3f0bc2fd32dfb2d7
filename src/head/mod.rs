//! head (in progress).
