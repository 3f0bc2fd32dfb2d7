//! Shared work between queriers: the route a querier serves its peers'
//! partial queries on, and what answers them.
//!
//! A querier started with `--peers` coordinates each merge it receives:
//! it splits the blocks the merge reads into units and sends each unit to
//! one peer (see [`crate::querier::peers`]); the peer reads the unit's
//! blocks and answers with their [`super::Partial`], encoded as
//! `docs/format/peer.md` says ([`crate::querier::wire`]). This module is
//! the seam the server needs: bytes in, bytes out.

use super::QueryError;

/// The route a querier answers its peers' partial queries on (POST).
pub const PARTIAL_ROUTE: &str = "/internal/v1/partial";

/// Errors of answering a peer's request.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request is not one this node can answer (undecodable, another
    /// version, a bad block id or matcher).
    #[error("bad peer request: {0}")]
    BadRequest(String),
    /// Reading the unit failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// A node that answers peers' partial queries (a querier).
pub trait PeerWork: Send + Sync + std::fmt::Debug {
    /// The encoded partial result of the encoded request `request`.
    fn partial_bytes(&self, request: &[u8]) -> Result<Vec<u8>, PeerError>;
}
