//! The route handlers.
//!
//! The handlers that read profiles or their totals (`query_range`, `query`,
//! `profile`, `profile/merge`, `profile/diff`) run in a query slot
//! ([`super::query`]) and within the per-query limits (see
//! [`super::limits`]): they count the series a selector picks before
//! reading, and a profile query builds its answer from
//! [`Storage::partial`] itself, as `Storage::single`/`merge`/`diff` do, so
//! that its samples are counted before the profile is finished and
//! rendered.

use super::limits::{check_samples, check_series, partial_samples};
use super::params::Params;
use super::ServerLimits;
use super::{blocking, query as run_query, read_body, ApiError, AppState};
use crate::engine::group::sum_series;
use crate::engine::Storage;
use crate::engine::{Pick, QueryError, TimeRange, SINGLE_WINDOW_MS};
use crate::model::labels::{Labels, METRIC_NAME};
use crate::model::time::parse_duration;
use crate::model::{self, Profile};
use crate::model::{parse_range_query, parse_selector, MatchOp, Matcher, RangeQuery};
use crate::render;
use axum::extract::{Path, Request, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// How far before its evaluation time an instant query (`/api/v1/query`)
/// looks for each series' latest profile: 5 minutes, as Prometheus's default
/// lookback delta.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most points per series of a range query, as in Prometheus.
const MAX_POINTS: i64 = 11_000;

type ApiResult = Result<Response, ApiError>;

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn metric(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|l| (l.name.clone(), Value::String(l.value.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// Prometheus's JSON sample time: unix seconds as a float.
fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Parses the `labels` parameter of `/api/v1/write`: a label set such as
/// `{job="api",instance="x"}` (only `=`, no metric name); empty or `{}` is no
/// labels.
fn parse_label_set(input: &str) -> Result<Labels, ApiError> {
    let trimmed = input.trim();
    let mut labels = Labels::new();
    if trimmed.is_empty() || trimmed == "{}" {
        return Ok(labels);
    }
    let bad = |why: &str| {
        ApiError::BadData(format!(
            "invalid parameter \"labels\": {why}; want a label set such as {{job=\"api\"}}"
        ))
    };
    if !trimmed.starts_with('{') {
        return Err(bad("a label set starts with `{`"));
    }
    let matchers = parse_selector(trimmed)
        .map_err(|e| ApiError::BadData(format!("invalid parameter \"labels\": {e}")))?;
    for m in matchers {
        if m.op != MatchOp::Equal {
            return Err(bad(&format!("only `=` is allowed, got {m}")));
        }
        if m.name == METRIC_NAME {
            return Err(bad("no metric name; use the `name` parameter"));
        }
        if labels.get(&m.name).is_some() {
            return Err(bad(&format!("label {:?} given twice", m.name)));
        }
        labels.set(m.name, m.value);
    }
    Ok(labels)
}

/// `POST /api/v1/write?name=&labels=`: ingests one pprof body.
pub async fn write(State(st): State<AppState>, req: Request) -> ApiResult {
    let params = Params::from_query(req.uri().query());
    let name = params
        .get("name")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let labels = parse_label_set(params.get("labels").unwrap_or(""))?;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body_bytes as u64) {
        return Err(ApiError::BodyTooLarge(st.max_body_bytes));
    }
    let body = read_body(req.into_body(), st.max_body_bytes).await?;
    let now = now_ms();
    let summary = blocking(&st.backend, move |s| {
        s.ingest_bytes(&body, name, labels, now)
    })
    .await?;
    tracing::debug!(
        series = summary.series,
        samples = summary.samples,
        "ingested"
    );
    Ok(Json(json!({
        "series": summary.series,
        "samples": summary.samples,
        "timestamp_ms": summary.timestamp_ms,
        "profile_types": summary.profile_types,
        "duplicate": summary.is_duplicate(),
    }))
    .into_response())
}

fn selector(params: &Params, name: &str) -> Result<Vec<Matcher>, ApiError> {
    Ok(parse_selector(params.required(name)?)?)
}

/// The `match[]` selectors; one empty selector (all series) when none is
/// given and `required` is false.
fn match_sets(params: &Params, required: bool) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let sets = params
        .get_all("match[]")
        .map(parse_selector)
        .collect::<Result<Vec<_>, _>>()?;
    if sets.is_empty() {
        if required {
            return Err(ApiError::BadData("no match[] parameter provided".into()));
        }
        return Ok(vec![Vec::new()]);
    }
    Ok(sets)
}

/// `start`/`end` of a metadata query; all of time by default.
fn optional_range(params: &Params) -> Result<TimeRange, ApiError> {
    let start = params.time_or("start", i64::MIN)?;
    let end = params.time_or("end", i64::MAX)?;
    Ok(TimeRange::new(start, end)?)
}

fn required_range(params: &Params, start: &str, end: &str) -> Result<TimeRange, ApiError> {
    let (s, e) = (params.time(start)?, params.time(end)?);
    if e < s {
        return Err(ApiError::BadData(format!(
            "invalid parameter {end:?}: end timestamp must not be before start time"
        )));
    }
    Ok(TimeRange::new(s, e)?)
}

/// `/api/v1/query_range`: per series, the total of each step bucket; with
/// `sum by (…)`/`sum without (…)` around the selector, per group of series.
pub async fn query_range(State(st): State<AppState>, params: Params) -> ApiResult {
    let RangeQuery { matchers, grouping } = parse_range_query(params.required("query")?)?;
    let range = required_range(&params, "start", "end")?;
    let step_s = params.required("step")?;
    let step = parse_duration(step_s)
        .map_err(|e| ApiError::BadData(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(ApiError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if (range.end - range.start) / step > MAX_POINTS {
        return Err(ApiError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let max_series = st.limits.max_query_series;
    let series = run_query(&st, move |s| -> Result<_, ApiError> {
        check_selection(s, &matchers, range, max_series)?;
        let series = s.query_range(&matchers, range, Some(step))?;
        Ok(match &grouping {
            Some(g) => sum_series(series, g),
            None => series,
        })
    })
    .await?;
    let result: Vec<Value> = series
        .iter()
        .map(|sp| {
            let values: Vec<Value> = sp
                .points
                .iter()
                .map(|&(t, v)| json!([seconds(t), v.to_string()]))
                .collect();
            json!({"metric": metric(&sp.labels), "values": values})
        })
        .collect();
    Ok(success(json!({"resultType": "matrix", "result": result})))
}

/// `/api/v1/query`: per series, the total of its latest profile in
/// `[time - LOOKBACK_MS, time]`, reported at `time`.
pub async fn query(State(st): State<AppState>, params: Params) -> ApiResult {
    let matchers = selector(&params, "query")?;
    let t = params.time_or("time", now_ms())?;
    let range = TimeRange::new(t.saturating_sub(LOOKBACK_MS), t)?;
    let max_series = st.limits.max_query_series;
    let series = run_query(&st, move |s| -> Result<_, ApiError> {
        check_selection(s, &matchers, range, max_series)?;
        Ok(s.query_range(&matchers, range, None)?)
    })
    .await?;
    let result: Vec<Value> = series
        .iter()
        .filter_map(|sp| {
            let &(_, v) = sp.points.last()?;
            Some(json!({"metric": metric(&sp.labels), "value": [seconds(t), v.to_string()]}))
        })
        .collect();
    Ok(success(json!({"resultType": "vector", "result": result})))
}

/// Runs `query` once per `match[]` set on the blocking pool and unions the
/// answers, sorted (a series matched by several sets counts once, as in
/// Prometheus).
async fn union<T, F>(
    st: &AppState,
    sets: Vec<Vec<Matcher>>,
    query: F,
) -> Result<BTreeSet<T>, ApiError>
where
    T: Ord + Send + 'static,
    F: Fn(&dyn Storage, &[Matcher]) -> Result<Vec<T>, QueryError> + Send + 'static,
{
    blocking(&st.backend, move |s| {
        let mut out = BTreeSet::new();
        for m in &sets {
            out.extend(query(s, m)?);
        }
        Ok::<_, QueryError>(out)
    })
    .await
}

/// `/api/v1/labels`: label names of the series matching any `match[]`.
pub async fn labels(State(st): State<AppState>, params: Params) -> ApiResult {
    let sets = match_sets(&params, false)?;
    let range = optional_range(&params)?;
    let names = union(&st, sets, move |s, m| s.label_names(m, range)).await?;
    Ok(success(json!(names)))
}

/// `/api/v1/label/{name}/values`.
pub async fn label_values(
    State(st): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> ApiResult {
    let sets = match_sets(&params, false)?;
    let range = optional_range(&params)?;
    let values = union(&st, sets, move |s, m| s.label_values(&name, m, range)).await?;
    Ok(success(json!(values)))
}

/// `/api/v1/series`: label sets of the series matching any `match[]`.
pub async fn series(State(st): State<AppState>, params: Params) -> ApiResult {
    let sets = match_sets(&params, true)?;
    let range = optional_range(&params)?;
    let series = union(&st, sets, move |s, m| s.series(m, range)).await?;
    check_series(series.len(), st.limits.max_query_series)?;
    Ok(success(Value::Array(series.iter().map(metric).collect())))
}

/// `/api/v1/profile_types`: the profile types of the matching series.
pub async fn profile_types(State(st): State<AppState>, params: Params) -> ApiResult {
    let sets = match_sets(&params, false)?;
    let range = optional_range(&params)?;
    let types = union(&st, sets, move |s, m| s.profile_types(m, range)).await?;
    let list: Vec<Value> = types
        .iter()
        .map(|t| {
            json!({
                "id": t.to_string(),
                "name": t.name,
                "sample_type": t.sample_type,
                "sample_unit": t.sample_unit,
                "period_type": t.period_type,
                "period_unit": t.period_unit,
                "delta": t.delta,
            })
        })
        .collect();
    Ok(success(Value::Array(list)))
}

/// The output formats of the profile endpoints (`format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Gzipped pprof protobuf (the default).
    Pprof,
    /// Flame graph tree as JSON, trimmed to at most this many nodes.
    Flamegraph(usize),
    /// Top functions as JSON.
    Top,
    /// Both of one merge, for the web UI: `{"flamegraph": …, "top": …}`,
    /// the flame graph trimmed to at most this many nodes.
    View(usize),
    /// Collapsed stacks, text.
    Folded,
    /// Interactive flame graph, SVG.
    Svg,
}

/// The node budget of a flame graph without `max_nodes`.
pub const DEFAULT_MAX_NODES: usize = 8192;

/// The node budget `max_nodes` of a flame graph (default
/// [`DEFAULT_MAX_NODES`], 0 for no limit).
fn max_nodes(params: &Params) -> Result<usize, ApiError> {
    match params.get("max_nodes") {
        None | Some("") => Ok(DEFAULT_MAX_NODES),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Ok(usize::MAX),
            Ok(n) => Ok(n),
            Err(_) => Err(ApiError::BadData(format!(
                "invalid parameter \"max_nodes\": {v:?} is not a non-negative integer"
            ))),
        },
    }
}

/// Parses `format` (default `pprof`), and for `flamegraph` and `view` the
/// node budget ([`max_nodes`]).
fn format(params: &Params) -> Result<Format, ApiError> {
    Ok(match params.get("format").unwrap_or("pprof") {
        "" | "pprof" => Format::Pprof,
        "flamegraph" => Format::Flamegraph(max_nodes(params)?),
        "view" => Format::View(max_nodes(params)?),
        "top" => Format::Top,
        "folded" => Format::Folded,
        "svg" => Format::Svg,
        other => {
            return Err(ApiError::BadData(format!(
            "unsupported format {other:?} (supported: pprof, flamegraph, top, view, folded, svg)"
        )))
        }
    })
}

/// A query result rendered in a [`Format`], ready to send.
enum Rendered {
    Pprof(Vec<u8>),
    Json(Value),
    Text(String),
    Svg(Vec<u8>),
}

/// Renders `p` (on the blocking pool, where the query ran).
fn render(p: &Profile, format: Format, title: &str) -> Result<Rendered, ApiError> {
    Ok(match format {
        Format::Pprof => Rendered::Pprof(crate::pprof::encode_gzip(&model::to_pprof(p))),
        Format::Flamegraph(max_nodes) => Rendered::Json(render::flamegraph(p, max_nodes)),
        Format::Top => Rendered::Json(render::top(p)),
        Format::View(max_nodes) => Rendered::Json(json!({
            "flamegraph": render::flamegraph(p, max_nodes),
            "top": render::top(p),
        })),
        Format::Folded => Rendered::Text(render::folded(p)),
        Format::Svg => Rendered::Svg(
            render::svg(p, title).map_err(|e| ApiError::Internal(format!("rendering: {e}")))?,
        ),
    })
}

fn respond(r: Rendered) -> Response {
    match r {
        Rendered::Pprof(gz) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile.pb.gz\"",
                ),
            ],
            gz,
        )
            .into_response(),
        Rendered::Json(v) => success(v),
        Rendered::Text(t) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response()
        }
        Rendered::Svg(b) => ([(header::CONTENT_TYPE, "image/svg+xml")], b).into_response(),
    }
}

/// `/api/v1/profile?query=&time=&format=`: the matching series' profiles in
/// `[time, time + 5m]` (see [`SINGLE_WINDOW_MS`]), merged.
pub async fn profile(State(st): State<AppState>, params: Params) -> ApiResult {
    let format = format(&params)?;
    let query = params.required("query")?.to_string();
    let matchers = selector(&params, "query")?;
    let t = params.time_or("time", now_ms().saturating_sub(SINGLE_WINDOW_MS))?;
    let limits = st.limits.clone();
    let r = run_query(&st, move |s| {
        let window = TimeRange {
            start: t,
            end: t.saturating_add(SINGLE_WINDOW_MS),
        };
        let p = bounded_profile(s, &matchers, Pick::First(window), &limits)?;
        render(&p, format, &query)
    })
    .await?;
    Ok(respond(r))
}

/// `/api/v1/profile/merge?query=&start=&end=&format=`.
pub async fn merge(State(st): State<AppState>, params: Params) -> ApiResult {
    let format = format(&params)?;
    let query = params.required("query")?.to_string();
    let matchers = selector(&params, "query")?;
    let range = required_range(&params, "start", "end")?;
    let limits = st.limits.clone();
    let r = run_query(&st, move |s| {
        let p = bounded_profile(s, &matchers, Pick::All(range), &limits)?;
        render(&p, format, &query)
    })
    .await?;
    Ok(respond(r))
}

/// `/api/v1/profile/diff?query_a=&start_a=&end_a=&query_b=&start_b=&end_b=&format=`.
pub async fn diff(State(st): State<AppState>, params: Params) -> ApiResult {
    let format = format(&params)?;
    let ma = selector(&params, "query_a")?;
    let ra = required_range(&params, "start_a", "end_a")?;
    let mb = selector(&params, "query_b")?;
    let rb = required_range(&params, "start_b", "end_b")?;
    let title = format!(
        "{} vs {}",
        params.required("query_b")?,
        params.required("query_a")?
    );
    let limits = st.limits.clone();
    let r = run_query(&st, move |s| {
        let p = bounded_diff(s, (&ma, ra), (&mb, rb), &limits)?;
        render(&p, format, &title)
    })
    .await?;
    Ok(respond(r))
}

/// The diff of the merge `b` against the base merge `a`, each a selector and
/// range, within the per-query limits ([`bounded_profile`]); an error when
/// the two sides are of different profile types.
pub(super) fn bounded_diff(
    s: &dyn Storage,
    a: (&[Matcher], TimeRange),
    b: (&[Matcher], TimeRange),
    limits: &ServerLimits,
) -> Result<Profile, ApiError> {
    let base = bounded_profile(s, a.0, Pick::All(a.1), limits)?;
    let compare = bounded_profile(s, b.0, Pick::All(b.1), limits)?;
    if base.profile_type != compare.profile_type {
        return Err(QueryError::DiffTypeMismatch(
            base.profile_type.to_string(),
            compare.profile_type.to_string(),
        )
        .into());
    }
    Ok(model::diff(base, compare))
}

/// Refuses a selector that picks more than `limit` series in `range`
/// (counted before anything is read).
pub(super) fn check_selection(
    s: &dyn Storage,
    matchers: &[Matcher],
    range: TimeRange,
    limit: usize,
) -> Result<(), ApiError> {
    check_series(s.series(matchers, range)?.len(), limit)
}

/// The profile of `pick` over the series matching `matchers`, as
/// `Storage::single` and `Storage::merge` build it, within the per-query
/// limits: the series are counted before reading, the samples before the
/// profile is finished.
pub(super) fn bounded_profile(
    s: &dyn Storage,
    matchers: &[Matcher],
    pick: Pick,
    limits: &ServerLimits,
) -> Result<Profile, ApiError> {
    check_selection(s, matchers, pick.range(), limits.max_query_series)?;
    let partial = s.partial(matchers, pick)?;
    check_samples(partial_samples(&partial), limits.max_query_samples)?;
    Ok(partial.finish(matchers)?)
}

/// `/-/healthy`.
pub async fn healthy() -> &'static str {
    "profstore is Healthy.\n"
}

/// `/-/ready`.
pub async fn ready() -> &'static str {
    "profstore is Ready.\n"
}

/// Unknown routes.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

/// Known routes, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets() {
        let l = parse_label_set(r#"{job="api",instance="x:1"}"#).unwrap();
        assert_eq!(l.get("job"), Some("api"));
        assert_eq!(l.get("instance"), Some("x:1"));
        assert!(parse_label_set("").unwrap().is_empty());
        assert!(parse_label_set("{}").unwrap().is_empty());
        for bad in [
            r#"{job=~"a"}"#,
            r#"{job!="a"}"#,
            r#"cpu{job="a"}"#,
            r#"{job="a",job="b"}"#,
            "job=a",
            "{job=",
        ] {
            assert!(parse_label_set(bad).is_err(), "{bad}");
        }
    }
}
