//! The time-series backend: profiles as compressed columns per series and
//! stack, in the design of Prometheus's TSDB.
//!
//! - [`chunkenc`]: pure codecs (bit stream, XOR, delta-of-delta, run-length);
//! - [`chunkset`]: a series' profiles as aligned columns, and
//!   [`tagged`]: the rows of its samples that carried sample labels;
//! - [`stacktable`]: the dense stack numbers sealed chunk sets share;
//! - [`head`]: the in-memory series and their chunk sets;
//! - [`block`]: immutable, self-contained block files;
//! - [`wal`]: the write-ahead log;
//! - [`index`]: series refs, postings and selection over them;
//! - [`meta`]: the sled meta store of the head's entities;
//! - [`reader`]: one series read across blocks and the head;
//! - [`query`]: the engine's read methods over a list of parts (the
//!   store's, or a querier's blocks);
//! - [`ship`]: an ingester's uploads of its blocks to a bucket;
//! - [`store`]: [`Tsdb`], all of the above behind the engine's traits, and
//!   its maintenance (block cuts, retention, garbage collection, the
//!   shutdown snapshot).

pub mod append;
pub mod block;
pub mod chunkenc;
pub mod chunkset;
pub mod head;
pub mod index;
pub mod meta;
pub mod metrics;
pub mod query;
pub mod reader;
pub mod ship;
pub mod stacktable;
pub mod store;
pub mod tagged;
pub mod wal;

pub use store::{
    free_bytes, MaintenanceError, MaintenanceStats, OpenError, Recovery, ShipTo, Tsdb, TsdbConfig,
    DEFAULT_BLOCK_DURATION_MS, DEFAULT_MIN_FREE_BYTES,
};
