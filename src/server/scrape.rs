//! `GET /api/v1/targets` (the scrape targets' health, in Prometheus's
//! shape) and `POST /-/reload` (re-read the config file's
//! `scrape_configs`).

use super::{ApiError, AppState};
use crate::model::time::civil_from_days;
use crate::scrape::{TargetSpec, TargetStatus};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::SystemTime;

/// `GET /api/v1/targets`: one active target per target × profile, as
/// Prometheus answers (`droppedTargets` is always empty: there is no
/// relabeling to drop targets).
pub async fn targets(State(st): State<AppState>) -> Response {
    let active: Vec<Value> = st
        .scrape
        .targets()
        .iter()
        .map(|(spec, status)| target_json(spec, status))
        .collect();
    Json(json!({
        "status": "success",
        "data": {"activeTargets": active, "droppedTargets": []},
    }))
    .into_response()
}

pub(super) fn target_json(spec: &TargetSpec, status: &TargetStatus) -> Value {
    json!({
        "discoveredLabels": spec.discovered_labels(),
        "labels": spec.labels,
        "scrapePool": spec.job,
        "scrapeUrl": spec.url,
        "globalUrl": spec.url,
        "lastError": status.last_error,
        "lastScrape": status.last_scrape.map_or_else(|| GO_ZERO_TIME.to_string(), rfc3339),
        "lastScrapeDuration": status.last_duration.as_secs_f64(),
        "health": status.health.as_str(),
        "scrapeInterval": prometheus_duration(spec.interval),
        "scrapeTimeout": prometheus_duration(spec.timeout),
    })
}

/// What Prometheus answers for a target never scraped (Go's zero time).
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `2026-11-22T01:02:03.456789012Z`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// A duration as Prometheus prints it in the targets API (`10s`, `1m30s`,
/// `500ms`).
fn prometheus_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// `POST /-/reload`: re-reads the config file and applies its
/// `scrape_configs` (loops of unchanged targets keep running). A bad file
/// changes nothing and answers 400 with the reason (file and line).
pub async fn reload(State(st): State<AppState>) -> Result<Response, ApiError> {
    match st.scrape.reload().await {
        Ok(s) => {
            tracing::info!(
                added = s.added,
                removed = s.removed,
                unchanged = s.unchanged,
                "scrape configuration reloaded"
            );
            Ok(Json(json!({
                "status": "success",
                "data": {"added": s.added, "removed": s.removed, "unchanged": s.unchanged},
            }))
            .into_response())
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the previous configuration: {e}");
            Err(ApiError::BadData(format!(
                "reload failed, keeping the previous configuration: {e}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_and_durations() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_644_509_272_337);
        assert_eq!(rfc3339(t), "2022-02-10T16:07:52.337000000Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(prometheus_duration(Duration::from_secs(10)), "10s");
        assert_eq!(
            prometheus_duration(Duration::from_millis(90_500)),
            "1m30s500ms"
        );
    }
}
