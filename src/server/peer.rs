//! The querier's route for its peers' partial queries
//! ([`crate::engine::peer::PARTIAL_ROUTE`]): POST a request
//! (`docs/format/peer.md`), get 200 with the encoded partial result; 400
//! for a request this node cannot read, 404 on a node that is not a
//! querier. Reading a unit is a query's work: it holds a query slot.

use super::{ApiError, AppState};
use crate::engine::peer::PeerError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `POST /internal/v1/partial`.
pub async fn partial(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let Some(work) = st.peer.clone() else {
        return Err(ApiError::NotFound(
            "this node is not a querier: it reads no units for peers".into(),
        ));
    };
    let permit = st.queries.acquire().await?;
    let answer = tokio::task::spawn_blocking(move || {
        let _slot = permit;
        work.partial_bytes(&body)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
    .map_err(|e| match e {
        PeerError::BadRequest(m) => ApiError::BadData(m),
        PeerError::Query(q) => ApiError::Query(q),
    })?;
    Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], answer).into_response())
}
