//! Request parameters: the query string plus, for `POST`, a
//! `application/x-www-form-urlencoded` body (as Prometheus accepts), and the
//! parsers for times and durations in Prometheus's formats.

use super::error::ApiError;
use crate::model::time::parse_time;
use axum::extract::FromRequest;
use axum::http::{header, Method};

/// Largest form body accepted by the query endpoints.
const MAX_FORM_BYTES: usize = 1 << 20;

/// Decoded `name=value` pairs, in request order (query string first).
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses a query string.
    pub fn from_query(query: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (for repeatable parameters like `match[]`).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required parameter.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::BadData(format!("missing parameter {name:?}"))),
        }
    }

    /// A required time parameter.
    pub fn time(&self, name: &str) -> Result<i64, ApiError> {
        parse_time_param(name, self.required(name)?)
    }

    /// An optional time parameter; `default` when absent or empty.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => parse_time_param(name, v),
            _ => Ok(default),
        }
    }
}

fn parse_time_param(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_time(v).map_err(|e| ApiError::BadData(format!("invalid parameter {name:?}: {e}")))
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        let mut params = Params::from_query(req.uri().query());
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let body = super::read_body(req.into_body(), MAX_FORM_BYTES).await?;
            params.0.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(params)
    }
}
