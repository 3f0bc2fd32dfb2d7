//! Query results and their conversion to pprof.
//!
//! A query result [`Profile`] holds resolved stacks (frames with their
//! mappings and functions), so it does not depend on the backend that produced
//! it; [`to_pprof`] turns it into a valid pprof `Profile`.
//!
//! Diff convention: a diff result is one profile holding the compared side's
//! samples as they are and the base side's samples negated and labelled
//! `pprof::base="true"` — what `go tool pprof -diff_base` builds, so
//! `go tool pprof` shows it as a diff and a flame graph can color each frame
//! by the sign of its total.

pub mod profile;
pub mod resolve;

pub use profile::{diff, to_pprof, Frame, FrameLine, Profile, Sample, Stack, DIFF_BASE_LABEL};
pub use resolve::Resolver;
