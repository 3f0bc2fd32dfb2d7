//! The time-series backend: profiles as compressed columns per series and
//! stack, in the design of Prometheus's TSDB.
//!
//! - [`chunkenc`]: pure codecs (bit stream, XOR, delta-of-delta, run-length);
//! - [`head`]: the in-memory series and their chunk sets;
//! - [`block`]: immutable, self-contained block files;
//! - [`wal`]: the write-ahead log;
//! - [`index`]: series refs, postings and selection over them;
//! - [`meta`]: the sled meta store of the head's entities;
//! - [`reader`]: one series read across blocks and the head;
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
pub mod reader;
pub mod store;
pub mod wal;

pub use store::{
    free_bytes, MaintenanceError, MaintenanceStats, OpenError, Recovery, Tsdb, TsdbConfig,
    DEFAULT_BLOCK_DURATION_MS, DEFAULT_MIN_FREE_BYTES,
};
