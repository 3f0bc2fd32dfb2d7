//! profstore: a continuous-profiling store on a Prometheus-style time-series
//! engine.
//!
//! See `ARCHITECTURE.md` for a walk through the modules. In one line each:
//!
//! - write path: pprof bytes → [`pprof`] (decode, validate) → [`ingest`]
//!   (split per sample type, labels, meta ids) → [`meta`] (dedupe) → [`head`]
//!   (compressed columns via [`chunkenc`]) + [`index`] (postings).
//! - read path: selector → [`index`] (postings) → [`head`] (decode columns,
//!   sum per stack) → [`query`] (resolve stacks through [`meta`]) → pprof.

#![warn(missing_docs)]

pub mod block;
pub mod chunkenc;
pub mod cli;
#[cfg(feature = "duckdb")]
pub mod columnar;
pub mod config;
pub mod engine;
pub mod head;
pub mod index;
pub mod ingest;
pub mod labels;
pub mod meta;
pub mod pprof;
pub mod profile_type;
pub mod proto;
pub mod pyroscope;
pub mod query;
pub mod reader;
pub mod render;
pub mod scrape;
pub mod server;
pub mod store;
pub mod wal;
pub mod workload;
