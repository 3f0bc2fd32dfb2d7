//! The web UI at `/ui/`: one page, served from files embedded in the binary
//! (`app.js`, `style.css`; hand-written, no build step, no third-party
//! code).
//!
//! The page is rendered on the server first: the selection form, the top
//! table and the SVG flame graph of the URL's selection, so the same URL
//! works without JavaScript. `app.js` then hides that and draws the
//! interactive page from the public HTTP API only (`/api/v1/…`).
//!
//! URL parameters (all optional; every view is a URL):
//!
//! | name | meaning |
//! |---|---|
//! | `query` | series selector, profile type as its metric name |
//! | `from`, `to` | range: `now`, `now-1h`, RFC 3339 or unix seconds (default `now-1h` → `now`) |
//! | `a_from`, `a_to` | selection A (merged, or the base of a diff) |
//! | `b_from`, `b_to`, `query_b` | selection B: a diff of B against A, B's selector defaulting to `query` |
//! | `group_by` | label names the totals chart sums by, comma-separated |
//! | `view`, `mode`, `focus`, `search`, `fn`, `sort`, `diff`, `palette`, `brush` | the page's view (used by `app.js` only) |
//!
//! Safety: function, file and label names are written by whoever pushes a
//! profile. The server escapes every string it puts into a page
//! ([`html::escape`]); `app.js` sets them only as text. Every response
//! here carries a Content-Security-Policy ([`CSP`]) that allows scripts and
//! styles from this origin only, so even an injected tag could not run.

mod html;

use super::handlers::{bounded_diff, bounded_profile, now_ms};
use super::params::Params;
use super::{query as run_query, AppState};
use crate::engine::{Pick, TimeRange};
use crate::model::{self, parse_selector, time::parse_duration};
use crate::render;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use html::{escape, push_elem, push_error, query_attr};
use serde_json::Value;
use std::fmt::Write;

/// The policy every UI response carries: nothing but this origin's script,
/// style, images and API; no inline script, no frames, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// Rows of the server-rendered top table.
const SSR_TOP_ROWS: usize = 100;

/// `body` as a UI response of `content_type`, with the security headers.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /ui`: to `/ui/`.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/app.js`.
pub async fn app_js() -> Response {
    respond(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        APP_JS.to_string(),
    )
}

/// `GET /ui/style.css`.
pub async fn style_css() -> Response {
    respond(
        StatusCode::OK,
        "text/css; charset=utf-8",
        STYLE_CSS.to_string(),
    )
}

/// The page around `content` (the server-rendered part).
fn page(title: &str, content: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/ui/style.css\">\
         <script src=\"/ui/app.js\" defer></script></head>\n<body>\
         <header><h1>profstore</h1><nav><a href=\"/ui/\">Profiles</a>\
         <a href=\"/ui/targets\">Targets</a></nav></header>\n<main>\
         <div id=\"app\" class=\"hidden\"></div>\n<div id=\"ssr\">{content}</div>\
         </main></body></html>\n",
        title = escape(title),
    )
}

/// A time of the page's URL: `now`, `now-<duration>`, or what the API
/// accepts (unix seconds, RFC 3339); numbers above 10¹¹ are taken as
/// milliseconds, as `app.js` does.
fn parse_ui_time(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(d) = s.strip_prefix("now-") {
        return Ok(now.saturating_sub(parse_duration(d)?));
    }
    if let Ok(n) = s.parse::<f64>() {
        if n > 1e11 && n.fract() == 0.0 && n < 9e15 {
            return Ok(n as i64);
        }
    }
    model::time::parse_time(s)
}

/// Seconds with milliseconds, as the API's time parameters take them.
fn api_time(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// What the page's URL selects.
struct Selection {
    query: String,
    /// Merged, or the base of a diff.
    a: TimeRange,
    /// The compared side of a diff, with its selector.
    b: Option<(String, TimeRange)>,
}

impl Selection {
    /// The API path and parameters that give this selection's profile.
    fn api(&self) -> (&'static str, Vec<(&'static str, String)>) {
        match &self.b {
            None => (
                "/api/v1/profile/merge",
                vec![
                    ("query", self.query.clone()),
                    ("start", api_time(self.a.start)),
                    ("end", api_time(self.a.end)),
                ],
            ),
            Some((qb, b)) => (
                "/api/v1/profile/diff",
                vec![
                    ("query_a", self.query.clone()),
                    ("start_a", api_time(self.a.start)),
                    ("end_a", api_time(self.a.end)),
                    ("query_b", qb.clone()),
                    ("start_b", api_time(b.start)),
                    ("end_b", api_time(b.end)),
                ],
            ),
        }
    }
}

/// Reads the selection of the page's URL; `Ok(None)` without `query`.
fn selection(params: &Params, now: i64) -> Result<Option<Selection>, String> {
    let query = params.get("query").unwrap_or("").trim().to_string();
    if query.is_empty() {
        return Ok(None);
    }
    parse_selector(&query).map_err(|e| e.to_string())?;
    let time = |name: &str, default: &str| -> Result<i64, String> {
        let v = params
            .get(name)
            .filter(|v| !v.is_empty())
            .unwrap_or(default);
        parse_ui_time(v, now).map_err(|e| format!("{name}: {e}"))
    };
    let range = |from: &str, to: &str, df: &str, dt: &str| -> Result<TimeRange, String> {
        TimeRange::new(time(from, df)?, time(to, dt)?).map_err(|e| e.to_string())
    };
    let whole = range("from", "to", "now-1h", "now")?;
    let has = |a: &str, b: &str| {
        params.get(a).is_some_and(|v| !v.is_empty()) && params.get(b).is_some_and(|v| !v.is_empty())
    };
    let a = if has("a_from", "a_to") {
        range("a_from", "a_to", "", "")?
    } else {
        whole
    };
    let b = if has("b_from", "b_to") {
        let qb = params
            .get("query_b")
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .unwrap_or(&query)
            .to_string();
        parse_selector(&qb).map_err(|e| format!("query_b: {e}"))?;
        Some((qb, range("b_from", "b_to", "", "")?))
    } else {
        None
    };
    Ok(Some(Selection { query, a, b }))
}

/// The selection form (plain GET, works without JavaScript); the view
/// parameters the form has no field for ride along as hidden fields.
fn form(params: &Params, out: &mut String) {
    let val = |n: &str| escape(params.get(n).unwrap_or(""));
    let _ = write!(
        out,
        "<form method=\"get\" action=\"/ui/\" class=\"bar\" id=\"ssr-form\">\
         <label for=\"ssr-query\">Selector</label>\
         <input id=\"ssr-query\" name=\"query\" class=\"grow\" value=\"{}\">\
         <label for=\"ssr-from\">from</label><input id=\"ssr-from\" name=\"from\" value=\"{}\" placeholder=\"now-1h\">\
         <label for=\"ssr-to\">to</label><input id=\"ssr-to\" name=\"to\" value=\"{}\" placeholder=\"now\">",
        val("query"),
        val("from"),
        val("to"),
    );
    for (k, v) in &params.0 {
        if !matches!(k.as_str(), "query" | "from" | "to") {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            );
        }
    }
    out.push_str("<button type=\"submit\">Run</button></form>");
}

/// The top table of a `render::top` answer.
fn top_table(top: &Value, out: &mut String) {
    let diff = top.get("base_total").is_some();
    out.push_str("<table class=\"top\" id=\"ssr-top\"><thead><tr><th class=\"name\">name</th><th>flat</th><th>flat %</th><th>cum</th><th>cum %</th>");
    if diff {
        out.push_str("<th>base flat</th><th>base cum</th>");
    }
    out.push_str("</tr></thead><tbody>");
    let empty = Vec::new();
    let funcs = top["functions"].as_array().unwrap_or(&empty);
    for f in funcs.iter().take(SSR_TOP_ROWS) {
        let n = |k: &str| f[k].as_i64().unwrap_or(0);
        let p = |k: &str| f[k].as_f64().unwrap_or(0.0);
        out.push_str("<tr><td class=\"name\">");
        out.push_str(&escape(f["name"].as_str().unwrap_or("")));
        let _ = write!(
            out,
            "</td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{:.2}%</td>",
            n("flat"),
            p("flat_percent"),
            n("cum"),
            p("cum_percent")
        );
        if diff {
            let _ = write!(out, "<td>{}</td><td>{}</td>", n("base_flat"), n("base_cum"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if funcs.len() > SSR_TOP_ROWS {
        let _ = write!(
            out,
            "<p class=\"note\">{} more functions not shown.</p>",
            funcs.len() - SSR_TOP_ROWS
        );
    }
}

/// `GET /ui/`: the page, with the URL's selection rendered on the server.
pub async fn index(State(st): State<AppState>, params: Params) -> Response {
    let now = now_ms();
    let mut out = String::new();
    form(&params, &mut out);
    out.push_str("<noscript><p class=\"note\">JavaScript is off: this is the static view (top table and flame graph). Edit the form to change the selection.</p></noscript>");
    let status = match selection(&params, now) {
        Err(e) => {
            push_error(&mut out, &e);
            StatusCode::BAD_REQUEST
        }
        Ok(None) => {
            out.push_str("<p class=\"note\">Enter a selector, for example <code>process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta{job=\"api\"}</code>; <a href=\"/api/v1/profile_types\">/api/v1/profile_types</a> lists the profile types.</p>");
            StatusCode::OK
        }
        Ok(Some(sel)) => ssr_profile(&st, sel, &mut out).await,
    };
    respond(status, "text/html; charset=utf-8", page("profstore", &out))
}

/// Renders the selection's top table and flame graph into `out`.
async fn ssr_profile(st: &AppState, sel: Selection, out: &mut String) -> StatusCode {
    let (path, api_params) = sel.api();
    let caption = match &sel.b {
        None => format!(
            "Merge of {} from {} to {}",
            sel.query,
            model::time::format_time(sel.a.start),
            model::time::format_time(sel.a.end)
        ),
        Some((qb, b)) => format!(
            "Diff of {qb} from {} to {} against {} from {} to {}",
            model::time::format_time(b.start),
            model::time::format_time(b.end),
            sel.query,
            model::time::format_time(sel.a.start),
            model::time::format_time(sel.a.end)
        ),
    };
    push_elem(out, "h2", &caption);
    let limits = st.limits.clone();
    let result = run_query(st, move |s| {
        let a_m = parse_selector(&sel.query)?;
        let p = match &sel.b {
            None => bounded_profile(s, &a_m, Pick::All(sel.a), &limits)?,
            Some((qb, b)) => bounded_diff(s, (&a_m, sel.a), (&parse_selector(qb)?, *b), &limits)?,
        };
        Ok::<_, super::ApiError>(render::top(&p))
    })
    .await;
    let top = match result {
        Ok(t) => t,
        Err(e) => {
            push_error(out, &e.to_string());
            return e.status().0;
        }
    };
    let unit = top["unit"].as_str().unwrap_or("").to_string();
    let _ = write!(
        out,
        "<p>Total: {} {}</p>",
        top["total"].as_i64().unwrap_or(0),
        escape(&unit)
    );
    let pairs = |format: &'static str| {
        let mut v: Vec<(&str, &str)> = api_params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        v.push(("format", format));
        query_attr(v)
    };
    let _ = write!(
        out,
        "<p class=\"downloads\"><a href=\"{path}?{}\">pprof</a> <a href=\"{path}?{}\">folded</a> \
         <a href=\"{path}?{}\">SVG</a></p>\
         <noscript><img id=\"ssr-flame\" alt=\"flame graph\" src=\"{path}?{}\" width=\"1200\"></noscript>",
        pairs("pprof"),
        pairs("folded"),
        pairs("svg"),
        pairs("svg"),
    );
    push_elem(out, "h2", "Top functions");
    top_table(&top, out);
    StatusCode::OK
}

/// `GET /ui/targets`: the scrape targets (server-rendered; `app.js` draws
/// the same from `/api/v1/targets`).
pub async fn targets(State(st): State<AppState>) -> Response {
    let mut out = String::from("<h2>Scrape targets</h2>");
    let targets = st.scrape.targets();
    if targets.is_empty() {
        out.push_str("<p class=\"note\">No scrape targets (see <code>--scrape-config</code>).</p>");
    } else {
        out.push_str("<table class=\"targets\"><thead><tr><th>job</th><th>URL</th><th>health</th><th>last scrape</th><th>last error</th></tr></thead><tbody>");
        for (spec, status) in &targets {
            let t = super::scrape::target_json(spec, status);
            out.push_str("<tr>");
            for k in [
                "scrapePool",
                "scrapeUrl",
                "health",
                "lastScrape",
                "lastError",
            ] {
                push_elem(&mut out, "td", t[k].as_str().unwrap_or(""));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        page("profstore · targets", &out),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_times() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_ui_time("now", now), Ok(now));
        assert_eq!(parse_ui_time("now-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_ui_time("1700000000", now), Ok(now));
        assert_eq!(parse_ui_time("1700000000000", now), Ok(now));
        assert_eq!(parse_ui_time("2023-11-14T22:13:20Z", now), Ok(now));
        assert!(parse_ui_time("now-1x", now).is_err());
        assert!(parse_ui_time("yesterday", now).is_err());
        assert_eq!(api_time(-1), "-0.001");
        assert_eq!(api_time(1_500), "1.500");
    }
}
