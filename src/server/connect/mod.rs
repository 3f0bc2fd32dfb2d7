//! Grafana Pyroscope's query API, `querier.v1.QuerierService`, over the
//! Connect protocol (unary calls): what Grafana's Pyroscope data source and
//! `profilecli` call.
//!
//! `POST /querier.v1.QuerierService/<Method>` with a `content-type:
//! application/proto` (protobuf) or `application/json` (proto3 JSON, see
//! [`json`]) body, optionally `content-encoding: gzip`; the answer has the
//! request's codec. `Connect-Protocol-Version` and `Connect-Timeout-Ms` are
//! accepted and not required. Bodies are at most 1 MiB (or
//! `--max-body-bytes`, when smaller), gzipped or not.
//!
//! # Methods
//!
//! | method | answer |
//! |---|---|
//! | `ProfileTypes` | the profile types with data in `[start, end]` |
//! | `LabelNames`, `LabelValues` | as `/api/v1/labels` and `/api/v1/label/<name>/values`, each `matchers` entry a selector (their union) |
//! | `Series` | as `/api/v1/series`, reduced to `label_names` when given |
//! | `SelectMergeStacktraces` | the merge of the selection as a flame graph ([`flamegraph`]), cut to `max_nodes` (default 2048); `format` `PROFILE_FORMAT_PPROF` answers the pprof instead |
//! | `SelectMergeSpanProfile` | the same, over the samples whose pprof label `span_id` is one of `span_selector` |
//! | `SelectMergeProfile` | the merge as a pprof profile (not cut) |
//! | `SelectSeries` | per `group_by` group, the totals per `step` (seconds): `aggregation` sum (the default) or average |
//! | `Diff` | the diff flame graph of the `left` and `right` merges |
//!
//! `SelectHeatmap`, `GetProfileStats` and `AnalyzeQuery` answer
//! `unimplemented` (501), as do `stack_trace_selector`,
//! `profile_id_selector`, `trace_id_selector` and the `TREE` and `DOT`
//! formats; exemplars are never returned (`exemplar_type` is accepted and
//! ignored). Unknown method names answer `unimplemented` with 404, as a
//! Connect server does for a procedure it does not have.
//!
//! # Profile types and selectors
//!
//! Pyroscope names a profile type `name:sample_type:sample_unit:period_type:period_unit`;
//! profstore's `__name__` may add `:delta`. A request's `profile_typeID` in
//! five parts selects the series of that type, delta or not; profstore's
//! six-part id selects exactly that type. Where a selection holds both the
//! delta and the cumulative type of one five-part id, the five-part id
//! selects the cumulative one (whose profstore id it is) and the delta one
//! needs its `:delta` id: `ProfileTypes` answers five-part ids, and the
//! `:delta` id of a delta type whose cumulative twin has data in the range.
//!
//! `label_selector` and `matchers` are series selectors (`{}` or empty:
//! every series; matchers that match the empty string are allowed here).
//! Pyroscope's `__profile_type__` label is understood in selectors (as a
//! matcher on `__name__` with or without `:delta`), added to `Series`
//! answers and to `LabelNames`, and has values in `LabelValues`, so
//! Pyroscope-style clients that list types per service work.
//!
//! # Times
//!
//! `start` and `end` are ms since the epoch, both inclusive; an `end` of 0
//! (or absent) is no end. `SelectSeries` buckets are
//! `[start + k·step, start + (k+1)·step)` reported at their start, as in
//! `/api/v1/query_range` (Pyroscope reports `(t - step, t]` at `t`), so a
//! sum equals `query_range`'s `sum by (group_by) (selector)` point for
//! point. Selections with no data answer empty results, not errors.
//!
//! # Limits and errors
//!
//! Profile and series queries (`Select*`, `Diff`) take a query slot and are
//! held to the per-query series and sample limits, as the HTTP API
//! ([`super::limits`]); metadata calls take no slot, `Series` is held to
//! the series limit. Errors are Connect errors (see [`super::pyroscope`]):
//! `invalid_argument` 400 for bad bodies, ids, selectors and ranges,
//! `resource_exhausted` 429 for bodies and queries over a limit,
//! `unavailable` 503 when every query slot stayed busy, `internal` 500.

mod flamegraph;
pub mod json;

pub use super::pyroscope::ConnectError;

use super::handlers::{bounded_profile, check_selection};
use super::limits::check_series;
use super::pyroscope::{check_declared_length, request_codec};
use super::{blocking, query as run_query, read_body, ApiError, AppState, ServerLimits};
use crate::engine::group::sum_series;
use crate::engine::{Pick, QueryError, SeriesPoints, Storage, TimeRange};
use crate::model::{
    self, parse_selector, Grouping, Labels, MatchOp, Matcher, Profile, ProfileType, METRIC_NAME,
};
use crate::proto::pprof as pb;
use crate::proto::pyroscope::querier::v1 as q;
use crate::proto::pyroscope::types::v1 as t;
use crate::pyroscope::{self as pyro, Codec};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

/// The service's path prefix.
pub const SERVICE: &str = "querier.v1.QuerierService";

/// Pyroscope's label of a series' five-part profile type.
pub const PROFILE_TYPE_LABEL: &str = "__profile_type__";

/// The pprof label (a sample label by default, see [`crate::ingest`]) that
/// `span_selector` selects on,
/// as Pyroscope's OpenTelemetry integrations write it.
pub const SPAN_ID_LABEL: &str = "span_id";

/// `max_nodes` when a request gives none (or 0): Pyroscope's default.
pub const DEFAULT_MAX_NODES: i64 = 2048;

/// Largest request body, before and after gzip.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Most points per series of `SelectSeries`, as `/api/v1/query_range`.
const MAX_POINTS: i128 = 11_000;

/// Methods of upstream's service that profstore does not serve.
const UNSUPPORTED: &[&str] = &["SelectHeatmap", "GetProfileStats", "AnalyzeQuery"];

/// The methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `ProfileTypes`.
    ProfileTypes,
    /// `LabelNames`.
    LabelNames,
    /// `LabelValues`.
    LabelValues,
    /// `Series`.
    Series,
    /// `SelectMergeStacktraces`.
    SelectMergeStacktraces,
    /// `SelectMergeSpanProfile`.
    SelectMergeSpanProfile,
    /// `SelectMergeProfile`.
    SelectMergeProfile,
    /// `SelectSeries`.
    SelectSeries,
    /// `Diff`.
    Diff,
}

impl Method {
    /// Every method served.
    pub const ALL: [Method; 9] = [
        Method::ProfileTypes,
        Method::LabelNames,
        Method::LabelValues,
        Method::Series,
        Method::SelectMergeStacktraces,
        Method::SelectMergeSpanProfile,
        Method::SelectMergeProfile,
        Method::SelectSeries,
        Method::Diff,
    ];

    /// The method's name in its path.
    pub fn name(self) -> &'static str {
        match self {
            Method::ProfileTypes => "ProfileTypes",
            Method::LabelNames => "LabelNames",
            Method::LabelValues => "LabelValues",
            Method::Series => "Series",
            Method::SelectMergeStacktraces => "SelectMergeStacktraces",
            Method::SelectMergeSpanProfile => "SelectMergeSpanProfile",
            Method::SelectMergeProfile => "SelectMergeProfile",
            Method::SelectSeries => "SelectSeries",
            Method::Diff => "Diff",
        }
    }
}

/// A decoded request.
// One per request, moved once: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `ProfileTypes`.
    ProfileTypes(q::ProfileTypesRequest),
    /// `LabelNames`.
    LabelNames(t::LabelNamesRequest),
    /// `LabelValues`.
    LabelValues(t::LabelValuesRequest),
    /// `Series`.
    Series(q::SeriesRequest),
    /// `SelectMergeStacktraces`.
    SelectMergeStacktraces(q::SelectMergeStacktracesRequest),
    /// `SelectMergeSpanProfile`.
    SelectMergeSpanProfile(q::SelectMergeSpanProfileRequest),
    /// `SelectMergeProfile`.
    SelectMergeProfile(q::SelectMergeProfileRequest),
    /// `SelectSeries`.
    SelectSeries(q::SelectSeriesRequest),
    /// `Diff`.
    Diff(q::DiffRequest),
}

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
}

fn unimplemented(message: impl Into<String>) -> ConnectError {
    ConnectError::new(StatusCode::NOT_IMPLEMENTED, "unimplemented", message)
}

/// Decodes the (decompressed) body of a call to `method`.
pub fn decode(method: Method, codec: Codec, body: &[u8]) -> Result<Call, ConnectError> {
    fn pb<M: Message + Default>(body: &[u8], name: &str) -> Result<M, ConnectError> {
        M::decode(body).map_err(|e| invalid(format!("invalid {name} protobuf: {e}")))
    }
    let name = request_name(method);
    match codec {
        Codec::Proto => Ok(match method {
            Method::ProfileTypes => Call::ProfileTypes(pb(body, name)?),
            Method::LabelNames => Call::LabelNames(pb(body, name)?),
            Method::LabelValues => Call::LabelValues(pb(body, name)?),
            Method::Series => Call::Series(pb(body, name)?),
            Method::SelectMergeStacktraces => Call::SelectMergeStacktraces(pb(body, name)?),
            Method::SelectMergeSpanProfile => Call::SelectMergeSpanProfile(pb(body, name)?),
            Method::SelectMergeProfile => Call::SelectMergeProfile(pb(body, name)?),
            Method::SelectSeries => Call::SelectSeries(pb(body, name)?),
            Method::Diff => Call::Diff(pb(body, name)?),
        }),
        Codec::Json => {
            // An empty body is the empty message, as in protobuf.
            let v: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
                serde_json::Value::Object(Default::default())
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| invalid(format!("invalid {name} JSON: {e}")))?
            };
            let o = json::Obj::root(&v, name).map_err(|e| invalid(e.to_string()))?;
            let bad = |e: json::JsonError| invalid(format!("invalid {name} JSON: {e}"));
            Ok(match method {
                Method::ProfileTypes => {
                    Call::ProfileTypes(json::profile_types_request(&o).map_err(bad)?)
                }
                Method::LabelNames => Call::LabelNames(json::label_names_request(&o).map_err(bad)?),
                Method::LabelValues => {
                    Call::LabelValues(json::label_values_request(&o).map_err(bad)?)
                }
                Method::Series => Call::Series(json::series_request(&o).map_err(bad)?),
                Method::SelectMergeStacktraces => Call::SelectMergeStacktraces(
                    json::select_merge_stacktraces_request(&o).map_err(bad)?,
                ),
                Method::SelectMergeSpanProfile => Call::SelectMergeSpanProfile(
                    json::select_merge_span_profile_request(&o).map_err(bad)?,
                ),
                Method::SelectMergeProfile => {
                    Call::SelectMergeProfile(json::select_merge_profile_request(&o).map_err(bad)?)
                }
                Method::SelectSeries => {
                    Call::SelectSeries(json::select_series_request(&o).map_err(bad)?)
                }
                Method::Diff => Call::Diff(json::diff_request(&o).map_err(bad)?),
            })
        }
    }
}

/// The request message's name, for errors.
fn request_name(m: Method) -> &'static str {
    match m {
        Method::ProfileTypes => "ProfileTypesRequest",
        Method::LabelNames => "LabelNamesRequest",
        Method::LabelValues => "LabelValuesRequest",
        Method::Series => "SeriesRequest",
        Method::SelectMergeStacktraces => "SelectMergeStacktracesRequest",
        Method::SelectMergeSpanProfile => "SelectMergeSpanProfileRequest",
        Method::SelectMergeProfile => "SelectMergeProfileRequest",
        Method::SelectSeries => "SelectSeriesRequest",
        Method::Diff => "DiffRequest",
    }
}

/// The routes of the service (merged into [`super::router`]).
pub fn routes() -> Router<super::AppState> {
    let mut r = Router::new();
    for m in Method::ALL {
        let handler = move |State(st): State<AppState>, req: Request| async move {
            match call(st, m, req).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        };
        r = r.route(
            &format!("/{SERVICE}/{}", m.name()),
            post(handler).fallback(method_not_allowed),
        );
    }
    r.route(&format!("/{SERVICE}/{{method}}"), any(unknown_method))
}

/// A served method with a method other than `POST`.
async fn method_not_allowed() -> ConnectError {
    ConnectError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "unknown",
        format!("method not allowed: {SERVICE} methods take POST"),
    )
}

/// A method this service does not serve.
async fn unknown_method(Path(method): Path<String>) -> ConnectError {
    let served: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    if UNSUPPORTED.contains(&method.as_str()) {
        unimplemented(format!(
            "{SERVICE}/{method} is not supported by profstore (supported: {})",
            served.join(", ")
        ))
    } else {
        ConnectError::new(
            StatusCode::NOT_FOUND,
            "unimplemented",
            format!(
                "no method {SERVICE}/{method} (supported: {})",
                served.join(", ")
            ),
        )
    }
}

async fn call(st: AppState, method: Method, req: Request) -> Result<Response, ConnectError> {
    let (codec, gzipped) = request_codec(req.headers())?;
    let limit = MAX_BODY_BYTES.min(st.max_body_bytes);
    check_declared_length(req.headers(), limit)?;
    let body = read_body(req.into_body(), limit).await?;
    let call = if gzipped {
        decode(method, codec, &pyro::gunzip_bounded(&body, limit)?)?
    } else {
        decode(method, codec, &body)?
    };
    let reply = serve(&st, call).await?;
    Ok(reply.into_response(codec))
}

/// A call's answer.
enum Reply {
    ProfileTypes(q::ProfileTypesResponse),
    LabelNames(t::LabelNamesResponse),
    LabelValues(t::LabelValuesResponse),
    Series(q::SeriesResponse),
    Stacktraces(q::SelectMergeStacktracesResponse),
    SpanProfile(q::SelectMergeSpanProfileResponse),
    Profile(pb::Profile),
    SelectSeries(q::SelectSeriesResponse),
    Diff(q::DiffResponse),
}

impl Reply {
    fn into_response(self, codec: Codec) -> Response {
        let (ct, body) = match codec {
            Codec::Proto => (
                "application/proto",
                match &self {
                    Reply::ProfileTypes(m) => m.encode_to_vec(),
                    Reply::LabelNames(m) => m.encode_to_vec(),
                    Reply::LabelValues(m) => m.encode_to_vec(),
                    Reply::Series(m) => m.encode_to_vec(),
                    Reply::Stacktraces(m) => m.encode_to_vec(),
                    Reply::SpanProfile(m) => m.encode_to_vec(),
                    Reply::Profile(m) => m.encode_to_vec(),
                    Reply::SelectSeries(m) => m.encode_to_vec(),
                    Reply::Diff(m) => m.encode_to_vec(),
                },
            ),
            Codec::Json => (
                "application/json",
                match &self {
                    Reply::ProfileTypes(m) => json::profile_types_json(m),
                    Reply::LabelNames(m) => json::names_json(&m.names),
                    Reply::LabelValues(m) => json::names_json(&m.names),
                    Reply::Series(m) => json::series_json(m),
                    Reply::Stacktraces(m) => json::select_merge_stacktraces_json(m),
                    Reply::SpanProfile(m) => json::select_merge_span_profile_json(m),
                    Reply::Profile(m) => json::profile_json(m),
                    Reply::SelectSeries(m) => json::select_series_json(m),
                    Reply::Diff(m) => json::diff_json(m),
                }
                .to_string()
                .into_bytes(),
            ),
        };
        (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
    }
}

async fn serve(st: &AppState, call: Call) -> Result<Reply, ConnectError> {
    match call {
        Call::ProfileTypes(r) => profile_types(st, r).await,
        Call::LabelNames(r) => label_names(st, r).await,
        Call::LabelValues(r) => label_values(st, r).await,
        Call::Series(r) => series(st, r).await,
        Call::SelectMergeStacktraces(r) => select_merge_stacktraces(st, r).await,
        Call::SelectMergeSpanProfile(r) => select_merge_span_profile(st, r).await,
        Call::SelectMergeProfile(r) => select_merge_profile(st, r).await,
        Call::SelectSeries(r) => select_series(st, r).await,
        Call::Diff(r) => diff(st, r).await,
    }
}

/// `[start, end]`, an `end` of 0 being no end.
fn time_range(start: i64, end: i64) -> Result<TimeRange, ConnectError> {
    let end = if end == 0 { i64::MAX } else { end };
    if end < start {
        return Err(invalid(format!("end {end} is before start {start}")));
    }
    Ok(TimeRange { start, end })
}

/// Pyroscope's five-part id of a profile type.
pub fn pyroscope_id(t: &ProfileType) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        t.name, t.sample_type, t.sample_unit, t.period_type, t.period_unit
    )
}

/// The `__name__` regex of the profile types whose five-part id matches
/// `re`.
fn id_regex(re: &str) -> String {
    format!("(?:{re})(?::delta)?")
}

/// A `__profile_type__` matcher as the `__name__` matcher it means; any
/// other matcher as it is.
fn translate(m: Matcher) -> Result<Matcher, ConnectError> {
    if m.name != PROFILE_TYPE_LABEL {
        return Ok(m);
    }
    let (op, re) = match m.op {
        MatchOp::Equal => (MatchOp::Regex, regex::escape(&m.value)),
        MatchOp::NotEqual => (MatchOp::NotRegex, regex::escape(&m.value)),
        MatchOp::Regex => (MatchOp::Regex, m.value.clone()),
        MatchOp::NotRegex => (MatchOp::NotRegex, m.value.clone()),
    };
    Matcher::new(op, METRIC_NAME, id_regex(&re)).map_err(|e| invalid(e.to_string()))
}

/// Parses a selector of a request; `{}` and the empty string are no
/// matchers, and matchers that all match the empty string are allowed.
pub fn parse_matchers(s: &str) -> Result<Vec<Matcher>, ConnectError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let matchers = match s.strip_prefix('{') {
        // A matcher that matches every series comes first, so that the
        // selector parses whatever its own matchers match; it is dropped.
        Some(inner) => {
            let sep = if inner.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            match parse_selector(&format!("{{__name__=~\".+\"{sep}{inner}")) {
                Ok(mut m) => {
                    m.remove(0);
                    m
                }
                // The error as the client wrote the selector.
                Err(e) => return Err(invalid(parse_selector(s).err().unwrap_or(e).to_string())),
            }
        }
        None => parse_selector(s).map_err(|e| invalid(e.to_string()))?,
    };
    matchers.into_iter().map(translate).collect()
}

/// The `__name__` matcher of a `profile_typeID`.
fn type_matcher(id: &str) -> Result<(Matcher, ProfileType), ConnectError> {
    let t = ProfileType::parse(id).map_err(|e| invalid(format!("profile_typeID: {e}")))?;
    let m = if id.split(':').count() == 6 {
        Matcher::new(MatchOp::Equal, METRIC_NAME, id)
    } else {
        Matcher::new(MatchOp::Regex, METRIC_NAME, id_regex(&regex::escape(id)))
    };
    Ok((m.map_err(|e| invalid(e.to_string()))?, t))
}

/// The matchers of a profile type and a label selector.
fn selection(type_id: &str, selector: &str) -> Result<(Vec<Matcher>, ProfileType), ConnectError> {
    let (m, t) = type_matcher(type_id)?;
    let mut matchers = vec![m];
    matchers.extend(parse_matchers(selector)?);
    Ok((matchers, t))
}

/// The matcher of `span_selector`.
fn span_matcher(ids: &[String]) -> Result<Matcher, ConnectError> {
    let re = ids
        .iter()
        .map(|s| regex::escape(s))
        .collect::<Vec<_>>()
        .join("|");
    Matcher::new(MatchOp::Regex, SPAN_ID_LABEL, re).map_err(|e| invalid(e.to_string()))
}

/// Where a five-part `profile_typeID` (the first matcher) matches both a
/// delta and a cumulative type in the selection, narrows it to the
/// cumulative one (see the [module docs](self#profile-types-and-selectors)).
fn resolve_type(
    s: &dyn Storage,
    matchers: &mut [Matcher],
    range: TimeRange,
    five_part: bool,
) -> Result<(), ApiError> {
    if !five_part || matchers.is_empty() {
        return Ok(());
    }
    let types = s.profile_types(matchers, range)?;
    if types.len() > 1 {
        if let Some(t) = types.iter().find(|t| !t.delta) {
            matchers[0] = Matcher::new(MatchOp::Equal, METRIC_NAME, t.to_string())?;
        }
    }
    Ok(())
}

/// One merge selection of a flame graph, pprof or diff request.
struct Merge {
    matchers: Vec<Matcher>,
    range: TimeRange,
    profile_type: ProfileType,
    five_part: bool,
}

impl Merge {
    fn of(r: &q::SelectMergeStacktracesRequest) -> Result<Merge, ConnectError> {
        if r.stack_trace_selector
            .as_ref()
            .is_some_and(|s| !s.call_site.is_empty() || s.go_pgo.is_some())
        {
            return Err(unimplemented("stack_trace_selector is not supported"));
        }
        if !r.profile_id_selector.is_empty() {
            return Err(unimplemented("profile_id_selector is not supported"));
        }
        if !r.trace_id_selector.is_empty() {
            return Err(unimplemented("trace_id_selector is not supported"));
        }
        let (mut matchers, profile_type) = selection(&r.profile_type_id, &r.label_selector)?;
        if !r.span_selector.is_empty() {
            matchers.push(span_matcher(&r.span_selector)?);
        }
        Ok(Merge {
            matchers,
            range: time_range(r.start, r.end)?,
            five_part: !profile_type.delta && !r.profile_type_id.ends_with(":delta"),
            profile_type,
        })
    }

    /// The merged profile; `None` when nothing matched.
    fn run(&mut self, s: &dyn Storage, limits: &ServerLimits) -> Result<Option<Profile>, ApiError> {
        resolve_type(s, &mut self.matchers, self.range, self.five_part)?;
        match bounded_profile(s, &self.matchers, Pick::All(self.range), limits) {
            Ok(p) => Ok(Some(p)),
            Err(ApiError::Query(QueryError::NoData(_))) => Ok(None),
            Err(ApiError::Query(e @ QueryError::MultipleProfileTypes(_))) => Err(
                ApiError::BadData(format!("{e}; give one of them as profile_typeID")),
            ),
            Err(e) => Err(e),
        }
    }
}

fn max_nodes(n: Option<i64>) -> i64 {
    match n {
        None | Some(0) => DEFAULT_MAX_NODES,
        Some(n) => n,
    }
}

async fn profile_types(st: &AppState, r: q::ProfileTypesRequest) -> Result<Reply, ConnectError> {
    let range = time_range(r.start, r.end)?;
    let types = blocking(&st.backend, move |s| s.profile_types(&[], range)).await?;
    let mut variants: BTreeMap<String, usize> = BTreeMap::new();
    for t in &types {
        *variants.entry(pyroscope_id(t)).or_default() += 1;
    }
    let profile_types = types
        .iter()
        .map(|t| {
            let short = pyroscope_id(t);
            t::ProfileType {
                id: if variants[&short] > 1 {
                    t.to_string()
                } else {
                    short
                },
                name: t.name.clone(),
                sample_type: t.sample_type.clone(),
                sample_unit: t.sample_unit.clone(),
                period_type: t.period_type.clone(),
                period_unit: t.period_unit.clone(),
            }
        })
        .collect();
    Ok(Reply::ProfileTypes(q::ProfileTypesResponse {
        profile_types,
    }))
}

/// The selectors of a `matchers` list: one selecting everything when empty.
fn match_sets(matchers: &[String]) -> Result<Vec<Vec<Matcher>>, ConnectError> {
    if matchers.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    matchers.iter().map(|m| parse_matchers(m)).collect()
}

/// Runs `f` once per selector on the blocking pool; the union of the
/// answers, sorted.
async fn union<T, F>(
    st: &AppState,
    sets: Vec<Vec<Matcher>>,
    f: F,
) -> Result<BTreeSet<T>, ConnectError>
where
    T: Ord + Send + 'static,
    F: Fn(&dyn Storage, &[Matcher]) -> Result<Vec<T>, QueryError> + Send + 'static,
{
    Ok(blocking(&st.backend, move |s| {
        let mut out = BTreeSet::new();
        for m in &sets {
            out.extend(f(s, m)?);
        }
        Ok::<_, QueryError>(out)
    })
    .await?)
}

async fn label_names(st: &AppState, r: t::LabelNamesRequest) -> Result<Reply, ConnectError> {
    let sets = match_sets(&r.matchers)?;
    let range = time_range(r.start, r.end)?;
    let mut names = union(st, sets, move |s, m| s.label_names(m, range)).await?;
    if names.contains(METRIC_NAME) {
        names.insert(PROFILE_TYPE_LABEL.to_string());
    }
    Ok(Reply::LabelNames(t::LabelNamesResponse {
        names: names.into_iter().collect(),
    }))
}

async fn label_values(st: &AppState, r: t::LabelValuesRequest) -> Result<Reply, ConnectError> {
    if r.name.is_empty() {
        return Err(invalid("name: a label name is required"));
    }
    let sets = match_sets(&r.matchers)?;
    let range = time_range(r.start, r.end)?;
    let names: Vec<String> = if r.name == PROFILE_TYPE_LABEL {
        let ids = union(st, sets, move |s, m| s.label_values(METRIC_NAME, m, range)).await?;
        let short: BTreeSet<String> = ids
            .iter()
            .filter_map(|id| ProfileType::parse(id).ok())
            .map(|t| pyroscope_id(&t))
            .collect();
        short.into_iter().collect()
    } else {
        let name = r.name;
        let values = union(st, sets, move |s, m| s.label_values(&name, m, range)).await?;
        values.into_iter().collect()
    };
    Ok(Reply::LabelValues(t::LabelValuesResponse { names }))
}

/// `labels` with Pyroscope's `__profile_type__` added (when `__name__` is
/// a profile type).
fn with_profile_type(mut labels: Labels) -> Labels {
    if let Some(t) = labels
        .get(METRIC_NAME)
        .and_then(|id| ProfileType::parse(id).ok())
    {
        labels.set(PROFILE_TYPE_LABEL.to_string(), pyroscope_id(&t));
    }
    labels
}

fn label_pairs(labels: &Labels) -> Vec<t::LabelPair> {
    labels
        .iter()
        .map(|l| t::LabelPair {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

async fn series(st: &AppState, r: q::SeriesRequest) -> Result<Reply, ConnectError> {
    let sets = match_sets(&r.matchers)?;
    let range = time_range(r.start, r.end)?;
    let found = union(st, sets, move |s, m| s.series(m, range)).await?;
    check_series(found.len(), st.limits.max_query_series)?;
    let keep = r.label_names;
    let sets: BTreeSet<Labels> = found
        .into_iter()
        .map(|l| {
            let l = with_profile_type(l);
            if keep.is_empty() {
                l
            } else {
                Labels::from_pairs(
                    l.iter()
                        .filter(|x| keep.contains(&x.name))
                        .map(|x| (x.name.clone(), x.value.clone())),
                )
            }
        })
        .filter(|l| !l.is_empty())
        .collect();
    Ok(Reply::Series(q::SeriesResponse {
        labels_set: sets
            .iter()
            .map(|l| t::Labels {
                labels: label_pairs(l),
            })
            .collect(),
    }))
}

/// What a flame graph request answers.
enum Rendered {
    FlameGraph(q::FlameGraph),
    Pprof(pb::Profile),
}

/// The merge of `m` as a flame graph (cut to `max_nodes`) or a pprof.
async fn render_merge(
    st: &AppState,
    m: Merge,
    pprof: bool,
    max_nodes: i64,
) -> Result<Rendered, ConnectError> {
    let limits = st.limits.clone();
    let mut m = m;
    Ok(run_query(st, move |s| -> Result<_, ApiError> {
        let p = m.run(s, &limits)?;
        Ok(if pprof {
            Rendered::Pprof(to_pprof(p, m.profile_type))
        } else {
            Rendered::FlameGraph(flamegraph::flamegraph(p.as_ref(), max_nodes))
        })
    })
    .await?)
}

/// The pprof of a merge; an empty profile of the requested type when
/// nothing matched.
fn to_pprof(p: Option<Profile>, profile_type: ProfileType) -> pb::Profile {
    match p {
        Some(p) => model::to_pprof(&p),
        None => model::to_pprof(&Profile {
            profile_type,
            time_ms: 0,
            duration_ns: 0,
            period: 0,
            samples: Vec::new(),
        }),
    }
}

/// Whether a flame graph request's `format` asks for a pprof.
fn wants_pprof(format: i32) -> Result<bool, ConnectError> {
    match format {
        0 | 1 => Ok(false),
        4 => Ok(true),
        2 | 3 => Err(unimplemented(format!(
            "format {} is not supported (supported: PROFILE_FORMAT_FLAMEGRAPH, PROFILE_FORMAT_PPROF)",
            json::PROFILE_FORMATS[format as usize]
        ))),
        n => Err(invalid(format!("unknown format {n}"))),
    }
}

async fn select_merge_stacktraces(
    st: &AppState,
    r: q::SelectMergeStacktracesRequest,
) -> Result<Reply, ConnectError> {
    let pprof = wants_pprof(r.format)?;
    let m = Merge::of(&r)?;
    Ok(Reply::Stacktraces(
        match render_merge(st, m, pprof, max_nodes(r.max_nodes)).await? {
            Rendered::FlameGraph(fg) => q::SelectMergeStacktracesResponse {
                flamegraph: Some(fg),
                ..Default::default()
            },
            Rendered::Pprof(p) => q::SelectMergeStacktracesResponse {
                pprof: Some(q::PprofProfile { profile: Some(p) }),
                ..Default::default()
            },
        },
    ))
}

async fn select_merge_span_profile(
    st: &AppState,
    r: q::SelectMergeSpanProfileRequest,
) -> Result<Reply, ConnectError> {
    if wants_pprof(r.format)? {
        return Err(unimplemented(
            "SelectMergeSpanProfile answers flame graphs only",
        ));
    }
    if r.span_selector.is_empty() {
        return Err(invalid("span_selector: at least one span id is required"));
    }
    let m = Merge::of(&q::SelectMergeStacktracesRequest {
        profile_type_id: r.profile_type_id,
        label_selector: r.label_selector,
        start: r.start,
        end: r.end,
        span_selector: r.span_selector,
        ..Default::default()
    })?;
    let fg = match render_merge(st, m, false, max_nodes(r.max_nodes)).await? {
        Rendered::FlameGraph(fg) => Some(fg),
        Rendered::Pprof(_) => None,
    };
    Ok(Reply::SpanProfile(q::SelectMergeSpanProfileResponse {
        flamegraph: fg,
        tree: Vec::new(),
    }))
}

async fn select_merge_profile(
    st: &AppState,
    r: q::SelectMergeProfileRequest,
) -> Result<Reply, ConnectError> {
    let m = Merge::of(&q::SelectMergeStacktracesRequest {
        profile_type_id: r.profile_type_id,
        label_selector: r.label_selector,
        start: r.start,
        end: r.end,
        stack_trace_selector: r.stack_trace_selector,
        profile_id_selector: r.profile_id_selector,
        trace_id_selector: r.trace_id_selector,
        ..Default::default()
    })?;
    match render_merge(st, m, true, 0).await? {
        Rendered::Pprof(p) => Ok(Reply::Profile(p)),
        Rendered::FlameGraph(_) => Err(ConnectError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a pprof query answered a flame graph",
        )),
    }
}

/// `SelectSeries` aggregations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregation {
    Sum,
    Average,
}

/// Per group, the average of the profiles' totals per step bucket.
fn average_series(
    series: Vec<SeriesPoints>,
    grouping: &Grouping,
    range: TimeRange,
    step: i64,
) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut groups: BTreeMap<Labels, BTreeMap<i64, (f64, u64)>> = BTreeMap::new();
    let (start, step) = (i128::from(range.start), i128::from(step));
    for sp in series {
        let buckets = groups.entry(grouping.group_of(&sp.labels)).or_default();
        for (t, v) in sp.points {
            // start ≤ bucket start ≤ t, so it fits an i64.
            let bt = (start + (i128::from(t) - start).div_euclid(step) * step) as i64;
            let b = buckets.entry(bt).or_insert((0.0, 0));
            b.0 += v as f64;
            b.1 += 1;
        }
    }
    groups
        .into_iter()
        .map(|(l, b)| {
            let points = b.into_iter().map(|(t, (s, n))| (t, s / n as f64)).collect();
            (l, points)
        })
        .collect()
}

async fn select_series(st: &AppState, r: q::SelectSeriesRequest) -> Result<Reply, ConnectError> {
    if r.stack_trace_selector
        .as_ref()
        .is_some_and(|s| !s.call_site.is_empty() || s.go_pgo.is_some())
    {
        return Err(unimplemented("stack_trace_selector is not supported"));
    }
    let (mut matchers, profile_type) = selection(&r.profile_type_id, &r.label_selector)?;
    let five_part = !profile_type.delta;
    let range = time_range(r.start, r.end)?;
    if !(r.step.is_finite() && r.step >= 0.001) {
        return Err(invalid(format!(
            "step {}: want at least 0.001 (seconds, so 1 ms)",
            r.step
        )));
    }
    // `as` saturates; at least 1 here.
    let step = (r.step * 1000.0) as i64;
    if (i128::from(range.end) - i128::from(range.start)) / i128::from(step) > MAX_POINTS {
        return Err(invalid(
            "exceeded maximum resolution of 11,000 points per timeseries: increase step or narrow start/end",
        ));
    }
    let aggregation = match r.aggregation {
        None | Some(0) => Aggregation::Sum,
        Some(1) => Aggregation::Average,
        Some(n) => return Err(invalid(format!("unknown aggregation {n}"))),
    };
    let add_type = r.group_by.iter().any(|g| g == PROFILE_TYPE_LABEL);
    let grouping = Grouping::By(r.group_by);
    let limit = r.limit.filter(|&n| n > 0);
    let max_series = st.limits.max_query_series;
    let groups = run_query(st, move |s| -> Result<_, ApiError> {
        resolve_type(s, &mut matchers, range, five_part)?;
        check_selection(s, &matchers, range, max_series)?;
        let step_arg = (aggregation == Aggregation::Sum).then_some(step);
        let mut found = s.query_range(&matchers, range, step_arg)?;
        if add_type {
            for sp in &mut found {
                sp.labels = with_profile_type(std::mem::take(&mut sp.labels));
            }
        }
        Ok(match aggregation {
            Aggregation::Sum => sum_series(found, &grouping)
                .into_iter()
                .map(|sp| {
                    let points = sp.points.into_iter().map(|(t, v)| (t, v as f64)).collect();
                    (sp.labels, points)
                })
                .collect::<Vec<_>>(),
            Aggregation::Average => average_series(found, &grouping, range, step),
        })
    })
    .await?;
    let groups = top(groups, limit);
    Ok(Reply::SelectSeries(q::SelectSeriesResponse {
        series: groups
            .into_iter()
            .map(|(labels, points)| t::Series {
                labels: label_pairs(&labels),
                points: points
                    .into_iter()
                    .map(|(timestamp, value)| t::Point {
                        value,
                        timestamp,
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
    }))
}

/// The `limit` groups of the largest totals (all with no limit), in label
/// order.
fn top(
    mut groups: Vec<(Labels, Vec<(i64, f64)>)>,
    limit: Option<i64>,
) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let Some(n) = limit else { return groups };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if groups.len() <= n {
        return groups;
    }
    let total = |g: &(Labels, Vec<(i64, f64)>)| g.1.iter().map(|p| p.1).sum::<f64>();
    groups.sort_by(|a, b| total(b).total_cmp(&total(a)).then_with(|| a.0.cmp(&b.0)));
    groups.truncate(n);
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
}

async fn diff(st: &AppState, r: q::DiffRequest) -> Result<Reply, ConnectError> {
    let (Some(left), Some(right)) = (&r.left, &r.right) else {
        return Err(invalid("left and right are both required"));
    };
    let (mut l, mut rt) = (Merge::of(left)?, Merge::of(right)?);
    let max_nodes = max_nodes(left.max_nodes);
    let limits = st.limits.clone();
    let fg = run_query(st, move |s| -> Result<_, ApiError> {
        let a = l.run(s, &limits)?;
        let b = rt.run(s, &limits)?;
        if let (Some(a), Some(b)) = (&a, &b) {
            if a.profile_type != b.profile_type {
                return Err(QueryError::DiffTypeMismatch(
                    a.profile_type.to_string(),
                    b.profile_type.to_string(),
                )
                .into());
            }
        }
        flamegraph::flamegraph_diff(a.as_ref(), b.as_ref(), max_nodes)
            .map_err(|e| ApiError::BadData(e.to_string()))
    })
    .await?;
    Ok(Reply::Diff(q::DiffResponse {
        flamegraph: Some(fg),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_may_be_empty_or_match_the_empty_string() {
        assert!(parse_matchers("").unwrap().is_empty());
        assert!(parse_matchers(" {} ").unwrap().is_empty());
        let m = parse_matchers(r#"{service_name="a", pod=~".*"}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].name.as_str(), m[0].value.as_str()),
            ("service_name", "a")
        );
        let m = parse_matchers(r#"cpu{a="b"}"#).unwrap();
        assert_eq!(m[0].name, METRIC_NAME);
        let e = parse_matchers(r#"{a="b""#).unwrap_err();
        assert_eq!(e.code(), "invalid_argument");
        assert!(!e.message().contains(".+"), "{}", e.message());
        assert!(parse_matchers("sum(x)").is_err());
    }

    #[test]
    fn profile_type_ids_select_delta_and_cumulative_types() {
        let (m, t) = type_matcher("process_cpu:cpu:nanoseconds:cpu:nanoseconds").unwrap();
        assert!(!t.delta);
        assert!(m.matches("process_cpu:cpu:nanoseconds:cpu:nanoseconds"));
        assert!(m.matches("process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta"));
        assert!(!m.matches("process_cpu:cpu:nanoseconds:cpu:nanosecondsX"));
        let (m, t) = type_matcher("memory:a.b:bytes:space:bytes:delta").unwrap();
        assert!(t.delta);
        assert!(m.matches("memory:a.b:bytes:space:bytes:delta"));
        assert!(!m.matches("memory:a.b:bytes:space:bytes"));
        let (m, _) = type_matcher("memory:a.b:bytes:space:bytes").unwrap();
        assert!(
            !m.matches("memory:aXb:bytes:space:bytes"),
            "dots are literal"
        );
        for bad in ["", "a:b", "a:b:c:d:e:f"] {
            assert!(type_matcher(bad).is_err(), "{bad}");
        }
        let m = parse_matchers(r#"{__profile_type__="a:b:c:d:e"}"#).unwrap();
        assert_eq!(m[0].name, METRIC_NAME);
        assert!(m[0].matches("a:b:c:d:e:delta") && !m[0].matches("a:b:c:d:f"));
        let m = parse_matchers(r#"{__profile_type__!~"a:.*"}"#).unwrap();
        assert!(!m[0].matches("a:b:c:d:e:delta") && m[0].matches("b:b:c:d:e"));
    }

    #[test]
    fn averages_per_bucket_and_top_groups() {
        let r = TimeRange { start: 0, end: 100 };
        let series = vec![
            SeriesPoints {
                labels: Labels::from_pairs([("pod", "a")]),
                points: vec![(1, 2), (5, 4), (12, 10)],
            },
            SeriesPoints {
                labels: Labels::from_pairs([("pod", "b")]),
                points: vec![(3, 6)],
            },
        ];
        let avg = average_series(series, &Grouping::By(vec![]), r, 10);
        assert_eq!(avg, vec![(Labels::new(), vec![(0, 4.0), (10, 10.0)])]);
        let g = |n: &str, v: f64| (Labels::from_pairs([("pod", n)]), vec![(0, v)]);
        let groups = vec![g("a", 1.0), g("b", 3.0), g("c", 2.0)];
        assert_eq!(top(groups.clone(), Some(2)), vec![g("b", 3.0), g("c", 2.0)]);
        assert_eq!(top(groups.clone(), None), groups);
    }
}
