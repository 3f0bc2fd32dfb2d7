//! The API's error type and the one function that maps every error to an
//! HTTP status and a Prometheus `errorType`.

use crate::engine::QueryError;
use crate::ingest::IngestError;
use crate::model::SelectorError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed parameter (time, step, format, label set, ...).
    #[error("{0}")]
    BadData(String),
    /// A selector that does not parse.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// The request body is over its limit (`--max-body-bytes` for writes).
    #[error("request body too large: over the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// Something in the body is over a limit (the message says what).
    #[error("{0}")]
    TooLarge(String),
    /// No such route.
    #[error("not found: {0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Ingest failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A bug or an I/O failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// The request body did not arrive whole within `limits.body_timeout`.
    #[error(
        "timed out reading the request body: not complete after {} (limits.body_timeout)",
        super::limits::human(*.0)
    )]
    BodyTimeout(std::time::Duration),
    /// Every query slot stayed busy for the queue timeout.
    #[error(
        "too many concurrent queries: all {slots} query slots (limits.max_concurrent_queries) stayed busy for {} (limits.query_queue_timeout); retry later",
        super::limits::human(*.waited)
    )]
    Overloaded {
        /// The number of slots.
        slots: usize,
        /// How long the query waited.
        waited: std::time::Duration,
    },
    /// A query over a per-query limit (the message names it).
    #[error("{0}")]
    QueryTooLarge(String),
}

impl ApiError {
    /// The status and Prometheus `errorType` of an error: the only place
    /// where errors become statuses.
    ///
    /// - 400 `bad_data`: malformed parameters, selectors, pprof bodies, label
    ///   problems (including label limits), out-of-order profiles, multiple
    ///   profile types, invalid ranges, diff type mismatches.
    /// - 404 `not_found`: unknown routes and queries without data.
    /// - 405 `bad_data`: wrong method.
    /// - 408 `timeout`: a request body not received within
    ///   `limits.body_timeout`.
    /// - 413 `bad_data`: body or decompressed body or pprof counts over a
    ///   limit.
    /// - 422 `execution`: a query over `limits.max_query_series` or
    ///   `limits.max_query_samples` (as Prometheus answers a query that
    ///   would load too many samples).
    /// - 429 `unavailable`: the series limit.
    /// - 500 `internal`: the meta store, the storage backend (DuckDB) or a
    ///   bug.
    /// - 503 `unavailable`: every query slot stayed busy for
    ///   `limits.query_queue_timeout` (with a `Retry-After` header).
    pub fn status(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        let bad = (S::BAD_REQUEST, "bad_data");
        match self {
            ApiError::BadData(_) | ApiError::Selector(_) => bad,
            ApiError::BodyTooLarge(_) | ApiError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "bad_data"),
            ApiError::NotFound(_) => (S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "bad_data"),
            ApiError::Ingest(e) => match e {
                IngestError::Pprof(p) if p.is_too_large() => (S::PAYLOAD_TOO_LARGE, "bad_data"),
                IngestError::Pprof(_) | IngestError::InvalidLabels(_) | IngestError::Limit(_) => {
                    bad
                }
                IngestError::SeriesLimit { .. } => (S::TOO_MANY_REQUESTS, "unavailable"),
                IngestError::OutOfOrder { .. }
                | IngestError::TooOld(_)
                | IngestError::TooNew(_) => bad,
                IngestError::Storage(e) if e.no_space => (S::INSUFFICIENT_STORAGE, "unavailable"),
                IngestError::Storage(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
                IngestError::ReadOnly(_) => (S::NOT_IMPLEMENTED, "unavailable"),
            },
            ApiError::Query(e) => match e {
                QueryError::MultipleProfileTypes(_)
                | QueryError::InvalidRange(_)
                | QueryError::DiffTypeMismatch(..) => bad,
                QueryError::NoData(_) => (S::NOT_FOUND, "not_found"),
                QueryError::Symbols(_) | QueryError::Storage(_) => {
                    (S::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::BodyTimeout(_) => (S::REQUEST_TIMEOUT, "timeout"),
            ApiError::Overloaded { .. } => (S::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::QueryTooLarge(_) => (S::UNPROCESSABLE_ENTITY, "execution"),
        }
    }
}

impl ApiError {
    /// A short name of the error's kind, for `profstore_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadData(_) => "bad_data",
            ApiError::Selector(_) => "bad_selector",
            ApiError::BodyTooLarge(_) | ApiError::TooLarge(_) => "too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Ingest(e) => match e {
                IngestError::Pprof(p) if p.is_too_large() => "too_large",
                IngestError::Pprof(_) => "invalid_pprof",
                IngestError::InvalidLabels(_) => "invalid_labels",
                IngestError::Limit(_) => "label_limit",
                IngestError::SeriesLimit { .. } => "series_limit",
                IngestError::OutOfOrder { .. } => "out_of_order",
                IngestError::TooOld(_) => "too_old",
                IngestError::TooNew(_) => "too_new",
                IngestError::ReadOnly(_) => "read_only",
                IngestError::Storage(e) => e.part,
            },
            ApiError::Query(e) => match e {
                QueryError::NoData(_) => "no_data",
                QueryError::Symbols(_) => "symbols",
                QueryError::Storage(e) => e.part,
                _ => "bad_query",
            },
            ApiError::Internal(_) => "internal",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::QueryTooLarge(_) => "query_limit",
        }
    }
}

/// `Retry-After` of a 503 for busy query slots: the queue timeout in whole
/// seconds, at least 1.
fn retry_after(waited: std::time::Duration) -> HeaderValue {
    let secs = waited.as_secs() + u64::from(waited.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_type) = self.status();
        // A refused query under load is counted
        // (`profstore_errors_total{kind="overloaded"}`), not logged as a
        // failure: a burst of them would flood the log. A write sent to a
        // querier (501) is the sender's mistake, not this node's failure.
        let refused = matches!(
            self,
            ApiError::Overloaded { .. } | ApiError::Ingest(IngestError::ReadOnly(_))
        );
        if status.is_server_error() && !refused {
            tracing::error!(error = %self, "request failed");
        } else if matches!(self, ApiError::Ingest(IngestError::ReadOnly(_))) {
            tracing::warn!(error = %self, status = status.as_u16(), "request refused");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "bad request");
        }
        let body = serde_json::json!({
            "status": "error",
            "errorType": error_type,
            "error": self.to_string(),
        });
        let mut r = (status, Json(body)).into_response();
        r.extensions_mut().insert(super::ErrorKind(self.kind()));
        if let ApiError::Overloaded { waited, .. } = self {
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after(waited));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::PprofError;

    #[test]
    fn statuses() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::BadData("x".into()), 400),
            (ApiError::Selector(SelectorError::Empty), 400),
            (ApiError::BodyTooLarge(10), 413),
            (ApiError::TooLarge("x".into()), 413),
            (ApiError::NotFound("/x".into()), 404),
            (ApiError::MethodNotAllowed, 405),
            (IngestError::Pprof(PprofError::Empty).into(), 400),
            (
                IngestError::Pprof(PprofError::TooLarge {
                    what: "body".into(),
                    limit: 1,
                })
                .into(),
                413,
            ),
            (IngestError::InvalidLabels("x".into()).into(), 400),
            (IngestError::Limit("x".into()).into(), 400),
            (IngestError::SeriesLimit { limit: 1 }.into(), 429),
            (IngestError::TooOld("x".into()).into(), 400),
            (IngestError::TooNew("x".into()).into(), 400),
            (IngestError::ReadOnly("x".into()).into(), 501),
            (
                IngestError::Storage(crate::model::StorageError {
                    part: "disk",
                    message: "full".into(),
                    no_space: true,
                })
                .into(),
                507,
            ),
            (
                IngestError::OutOfOrder {
                    labels: "{}".into(),
                    timestamp: 1,
                    max_time: 2,
                }
                .into(),
                400,
            ),
            (QueryError::MultipleProfileTypes(vec![]).into(), 400),
            (QueryError::InvalidRange("x".into()).into(), 400),
            (
                QueryError::DiffTypeMismatch("a".into(), "b".into()).into(),
                400,
            ),
            (QueryError::NoData("x".into()).into(), 404),
            (ApiError::Internal("x".into()), 500),
            (
                ApiError::BodyTimeout(std::time::Duration::from_secs(1)),
                408,
            ),
            (
                ApiError::Overloaded {
                    slots: 2,
                    waited: std::time::Duration::from_secs(1),
                },
                503,
            ),
            (ApiError::QueryTooLarge("x".into()), 422),
        ];
        for (e, want) in cases {
            assert_eq!(e.status().0.as_u16(), want, "{e:?}");
        }
    }

    #[test]
    fn overloaded_answers_retry_after() {
        use std::time::Duration;
        let r = ApiError::Overloaded {
            slots: 2,
            waited: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(retry_after(Duration::ZERO), "1");
        assert_eq!(retry_after(Duration::from_secs(10)), "10");
    }
}
