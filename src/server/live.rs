//! The ingester's live-data route for queriers
//! ([`crate::engine::live::LIVE_ROUTE`]): GET answers 200 with the block
//! file of the profiles not yet shipped and the node's external labels in
//! [`EXTERNAL_LABELS_HEADER`] (a JSON object), 204 when there are none,
//! and 404 on a node that ships no blocks. Writing the block is a query's
//! work: it holds a query slot.

use super::{ApiError, AppState};
use crate::engine::live::EXTERNAL_LABELS_HEADER;
use crate::engine::QueryError;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// `GET /internal/v1/live`.
pub async fn live(State(st): State<AppState>) -> Result<Response, ApiError> {
    let Some(source) = st.live.clone() else {
        return Err(ApiError::NotFound(
            "this node ships no blocks (start it with --bucket): it has no live data for queriers"
                .into(),
        ));
    };
    let permit = st.queries.acquire().await?;
    let data = tokio::task::spawn_blocking(move || {
        let _slot = permit;
        source.live()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
    .map_err(QueryError::Storage)?;
    let Some(data) = data else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    // A map of strings always serializes.
    let labels = serde_json::to_string(&data.external_labels).expect("labels serialize");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static(EXTERNAL_LABELS_HEADER),
                labels,
            ),
        ],
        data.block,
    )
        .into_response())
}
