//! Pyroscope-compatible push: `POST /push.v1.PusherService/Push` (Connect
//! unary) and the legacy `POST /ingest`. The conversions and their rules are
//! in [`crate::pyroscope`]; this module only speaks HTTP.
//!
//! # Connect errors
//!
//! `/push.v1.PusherService/Push` answers errors as the Connect protocol
//! does: an HTTP status and a `content-type: application/json` body
//! `{"code": "...", "message": "..."}`:
//!
//! | problem | code | HTTP |
//! |---|---|---|
//! | malformed body (protobuf, JSON, base64, gzip), invalid pprof, bad labels, out-of-order profile, label limits | `invalid_argument` | 400 |
//! | body over `--max-body-bytes`, decompressed body over `--max-decompressed-bytes`, a pprof over a decode limit, the series limit | `resource_exhausted` | 429 (Connect has no 413) |
//! | `content-type` other than `application/proto` or `application/json` | `unknown` | 415 (as connect-go) |
//! | `content-encoding` other than `gzip`/`identity` | `unimplemented` | 501 |
//! | body not received whole within `limits.body_timeout` | `deadline_exceeded` | 408 |
//! | a method other than `POST` | `unknown` | 405 (with `Allow: POST`) |
//! | the meta store failed, a bug | `internal` | 500 |
//!
//! Success: 200 with an empty `PushResponse`: zero bytes of
//! `application/proto` for protobuf requests, `{}` for JSON requests.
//!
//! `/ingest` answers 200 with an empty body, and errors with the daemon's
//! usual Prometheus-style JSON ([`ApiError`]): 400 `bad_data` for bad
//! parameters and bodies, 413 for bodies over a limit, and so on.

use super::params::Params;
use super::{blocking, read_body, ApiError, AppState};
use crate::pyroscope::legacy::{self, Format, IngestParams};
use crate::pyroscope::{self as pyro, Codec, PyroscopeError};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

/// A Connect error (see the [module docs](self#connect-errors)).
#[derive(Debug)]
pub struct ConnectError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ConnectError {
    /// An error with an HTTP status and a Connect code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ConnectError {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        ConnectError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The Connect code (`invalid_argument`, `unimplemented`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn with_context(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<PyroscopeError> for ConnectError {
    fn from(e: PyroscopeError) -> Self {
        match e {
            PyroscopeError::Invalid(m) => {
                ConnectError::new(StatusCode::BAD_REQUEST, "invalid_argument", m)
            }
            PyroscopeError::TooLarge(m) => {
                ConnectError::new(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", m)
            }
        }
    }
}

impl From<ApiError> for ConnectError {
    fn from(e: ApiError) -> Self {
        let (status, _) = e.status();
        let message = e.to_string();
        match status.as_u16() {
            400 => ConnectError::new(status, "invalid_argument", message),
            // 422: a query over a per-query limit.
            413 | 422 | 429 => {
                ConnectError::new(StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", message)
            }
            404 => ConnectError::new(status, "not_found", message),
            408 => ConnectError::new(status, "deadline_exceeded", message),
            500 => ConnectError::internal(message),
            503 => ConnectError::new(status, "unavailable", message),
            _ => ConnectError::new(status, "unknown", message),
        }
    }
}

impl From<PyroscopeError> for ApiError {
    fn from(e: PyroscopeError) -> Self {
        match e {
            PyroscopeError::Invalid(m) => ApiError::BadData(m),
            PyroscopeError::TooLarge(m) => ApiError::TooLarge(m),
        }
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        // `unimplemented` (an unsupported content-encoding) is the client's
        // problem, though Connect answers it with a 5xx status.
        if self.status.is_server_error() && self.code != "unimplemented" {
            tracing::error!(error = %self.message, code = self.code, "connect call failed");
        } else {
            tracing::debug!(error = %self.message, code = self.code, "bad connect call");
        }
        let body = serde_json::json!({"code": self.code, "message": self.message});
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        r.extensions_mut().insert(super::ErrorKind(self.code));
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        r
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The codec and compression of a Connect request, from its headers.
pub(super) fn request_codec(headers: &HeaderMap) -> Result<(Codec, bool), ConnectError> {
    let ct = header_str(headers, header::CONTENT_TYPE);
    let codec = Codec::from_content_type(ct).ok_or_else(|| {
        ConnectError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unknown",
            format!(
                "unsupported content-type {ct:?} (supported: application/proto, application/json)"
            ),
        )
    })?;
    let gzipped = match header_str(headers, header::CONTENT_ENCODING).trim() {
        "" => false,
        e if e.eq_ignore_ascii_case("identity") => false,
        e if e.eq_ignore_ascii_case("gzip") => true,
        e => {
            return Err(ConnectError::new(
                StatusCode::NOT_IMPLEMENTED,
                "unimplemented",
                format!("unsupported content-encoding {e:?} (supported: gzip, identity)"),
            ))
        }
    };
    Ok((codec, gzipped))
}

pub(super) fn header_str(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Fails early when `content-length` already says the body is over `limit`.
pub(super) fn check_declared_length(h: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = header_str(h, header::CONTENT_LENGTH).parse::<u64>().ok();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge(limit));
    }
    Ok(())
}

/// `POST /push.v1.PusherService/Push`.
pub async fn push(State(st): State<AppState>, req: Request) -> Response {
    match push_inner(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Any other method on the push route.
pub async fn push_method_not_allowed() -> ConnectError {
    ConnectError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "unknown",
        "method not allowed: push.v1.PusherService/Push takes POST",
    )
}

async fn push_inner(st: AppState, req: Request) -> Result<Response, ConnectError> {
    let headers = req.headers();
    let (codec, gzipped) = request_codec(headers)?;
    check_declared_length(headers, st.max_body_bytes)?;
    let body = read_body(req.into_body(), st.max_body_bytes).await?;
    let backend = std::sync::Arc::clone(&st.backend);
    let now = now_ms();
    let task = tokio::task::spawn_blocking(move || -> Result<(), ConnectError> {
        let limits = backend.limits();
        let decode = &limits.decode;
        let raw: Cow<'_, [u8]> = if gzipped {
            Cow::Owned(pyro::gunzip_bounded(&body, decode.max_decompressed_bytes)?)
        } else if body.len() > decode.max_decompressed_bytes {
            return Err(PyroscopeError::TooLarge(format!(
                "body of {} bytes over the limit of {} bytes",
                body.len(),
                decode.max_decompressed_bytes
            ))
            .into());
        } else {
            Cow::Borrowed(&body[..])
        };
        let push = pyro::decode_push(&raw, codec, decode)?;
        drop(raw);
        drop(body);
        let plan = pyro::plan_push(push, decode, &limits.labels)?;
        for p in plan {
            let context = p.context.clone();
            let req = p.into_request(decode, now)?;
            backend
                .ingest(req)
                .map_err(|e| ConnectError::from(ApiError::from(e)).with_context(&context))?;
        }
        Ok(())
    });
    match task.await {
        Ok(r) => r?,
        Err(e) => return Err(ConnectError::internal(format!("task failed: {e}"))),
    }
    Ok(match codec {
        Codec::Proto => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/proto")],
            Vec::new(),
        )
            .into_response(),
        Codec::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
    })
}

/// `POST /ingest`: Pyroscope's legacy ingest (see
/// [`crate::pyroscope::legacy`]).
pub async fn ingest(State(st): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let params = Params::from_query(req.uri().query());
    let format = Format::parse(params.get("format"))?;
    let multipart = header_str(req.headers(), header::CONTENT_TYPE)
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");
    check_declared_length(req.headers(), st.max_body_bytes)?;
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, st.max_body_bytes).await?;
    let (format, payload) = if multipart {
        if format.is_some_and(|f| f != Format::Pprof) {
            return Err(ApiError::BadData(
                "a multipart/form-data body is a pprof upload: use format=pprof".into(),
            ));
        }
        (
            Format::Pprof,
            multipart_profile(Request::from_parts(parts, Body::from(bytes))).await?,
        )
    } else {
        (format.unwrap_or_else(|| Format::detect(&bytes)), bytes)
    };
    let owned = |k: &str| params.get(k).map(str::to_string);
    let (name, from, until, rate) = (
        owned("name"),
        owned("from"),
        owned("until"),
        owned("sampleRate"),
    );
    let now = now_ms();
    blocking(&st.backend, move |s| -> Result<(), ApiError> {
        let p = IngestParams {
            name: name.as_deref(),
            from: from.as_deref(),
            until: until.as_deref(),
            sample_rate: rate.as_deref(),
        };
        let limits = s.limits();
        let req =
            legacy::ingest_request(&p, format, &payload, &limits.decode, &limits.labels, now)?;
        s.ingest(req)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// The `profile` part of a multipart upload; `previous_profile`,
/// `sample_type_config` and any other part are ignored.
async fn multipart_profile(req: Request) -> Result<Bytes, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::BadData(format!("invalid multipart body: {}", e.body_text()))
    };
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::BadData(format!("invalid multipart body: {}", e.body_text())))?;
    let mut profile = None;
    while let Some(field) = mp.next_field().await.map_err(bad)? {
        if field.name() == Some("profile") {
            if profile.is_some() {
                return Err(ApiError::BadData(
                    "multipart body has two \"profile\" parts".into(),
                ));
            }
            profile = Some(field.bytes().await.map_err(bad)?);
        }
    }
    profile.ok_or_else(|| ApiError::BadData("multipart body has no \"profile\" part".into()))
}
