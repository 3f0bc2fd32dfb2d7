//! profstore: a continuous-profiling store on a Prometheus-style time-series
//! engine.
//!
//! `ARCHITECTURE.md` walks the layers and modules and gives the write and
//! read paths of each backend.

#![warn(missing_docs)]

pub mod bucket;
pub mod cli;
#[cfg(feature = "duckdb")]
pub mod columnar;
pub mod compactor;
pub mod config;
pub mod engine;
pub mod ingest;
pub mod model;
pub mod pprof;
pub mod proto;
pub mod pyroscope;
pub mod querier;
pub mod render;
pub mod scrape;
pub mod server;
pub mod tsdb;
pub mod workload;
