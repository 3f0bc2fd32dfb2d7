//! Live data: what an ingester holds that is not in the bucket yet, for
//! the queriers that read the bucket.
//!
//! An ingester ships a block once it is cut; until then (and while an
//! upload is pending or a rewrite with late profiles waits for its turn)
//! its profiles are only on the ingester. A querier started with
//! `--ingesters` asks each of them for a [`LiveData`] at every sync and
//! reads it as one more block of the ingester's stream, ranked before
//! that stream's bucket blocks, so that a profile in both counts once.
//!
//! The contract of [`LiveSource::live`]: the block holds every profile the
//! node has acknowledged that is not in a block it has shipped (it may
//! also hold some that are: readers count a stream's profile at one
//! timestamp once); it is a whole block file (`docs/format/block.md`),
//! self-contained, its range the times of its profiles.

use crate::model::StorageError;
use std::collections::BTreeMap;

/// The route an ingester serves its live data on (GET).
pub const LIVE_ROUTE: &str = "/internal/v1/live";
/// The response header that carries the ingester's external labels (a
/// JSON object).
pub const EXTERNAL_LABELS_HEADER: &str = "x-profstore-external-labels";

/// A node's live data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveData {
    /// The node's external labels (its stream and replica).
    pub external_labels: BTreeMap<String, String>,
    /// A block file's bytes.
    pub block: Vec<u8>,
}

/// A node whose live data a querier reads: an ingester in process, or one
/// over HTTP.
pub trait LiveSource: Send + Sync + std::fmt::Debug {
    /// Who it is, for logs, metrics and block ids (a URL).
    fn name(&self) -> String;
    /// Its live data now (see the module docs); `None` when it holds none.
    fn live(&self) -> Result<Option<LiveData>, StorageError>;
}
