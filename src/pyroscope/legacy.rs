//! Pyroscope's legacy ingest API:
//! `POST /ingest?name=<app>.<kind>{k=v,...}&from=&until=&format=&sampleRate=&spyName=&units=&aggregationType=`.
//!
//! # Name
//!
//! `name` is `<app>[.<kind>][{tags}]`, e.g. `myapp.cpu{env=prod,region=eu}`:
//!
//! - The text after the **last** `.` before `{` is the kind when it is one of
//!   the kinds of the table below; the text before it is the application
//!   name. Otherwise the whole text before `{` is the application name and
//!   the kind is unknown (`my.app` is the application `my.app`).
//! - The application name becomes the label `service_name` (it must not be
//!   empty).
//! - Tags `{k=v,...}` become labels. Keys are kept as-is (dots allowed, e.g.
//!   `{k8s.pod=x}`), must be non-empty, must not start with `__` and must not
//!   be `service_name`; values are percent-decoded (`%2C` for a comma);
//!   spaces around keys and values are trimmed; an empty value is no label;
//!   a key given twice is an error; `{}` and a trailing `,` are allowed.
//!
//! # Kinds
//!
//! | kind | profile name | sample type/unit | period type/unit | period | delta |
//! |---|---|---|---|---|---|
//! | `cpu`, `itimer` | `process_cpu` | `samples`/`count` | `cpu`/`nanoseconds` | 10⁹/sampleRate | yes |
//! | `wall` | `wall` | `samples`/`count` | `wall`/`nanoseconds` | 10⁹/sampleRate | yes |
//! | `alloc_objects` | `memory` | `alloc_objects`/`count` | `space`/`bytes` | 0 | yes |
//! | `alloc_space` | `memory` | `alloc_space`/`bytes` | `space`/`bytes` | 0 | yes |
//! | `inuse_objects` | `memory` | `inuse_objects`/`count` | `space`/`bytes` | 0 | no |
//! | `inuse_space` | `memory` | `inuse_space`/`bytes` | `space`/`bytes` | 0 | no |
//! | `goroutines` | `goroutine` | `goroutine`/`count` | `goroutine`/`count` | 0 | no |
//! | `mutex_count` | `mutex` | `contentions`/`count` | `contentions`/`count` | 0 | yes |
//! | `mutex_duration` | `mutex` | `delay`/`nanoseconds` | `contentions`/`count` | 0 | yes |
//! | `block_count` | `block` | `contentions`/`count` | `contentions`/`count` | 0 | yes |
//! | `block_duration` | `block` | `delay`/`nanoseconds` | `contentions`/`count` | 0 | yes |
//! | `lock_count` | `mutex` | `lock_count`/`count` | `contentions`/`count` | 0 | yes |
//! | `lock_duration` | `mutex` | `lock_time`/`nanoseconds` | `contentions`/`count` | 0 | yes |
//! | `alloc_in_new_tlab_objects` | `memory` | `alloc_in_new_tlab_objects`/`count` | `space`/`bytes` | 0 | yes |
//! | `alloc_in_new_tlab_bytes` | `memory` | `alloc_in_new_tlab_bytes`/`bytes` | `space`/`bytes` | 0 | yes |
//! | `exceptions` | `exceptions` | `exceptions`/`count` | `exceptions`/`count` | 0 | yes |
//!
//! So `myapp.cpu` in `folded` format is stored as
//! `process_cpu:samples:count:cpu:nanoseconds:delta{service_name="myapp"}`.
//! Pyroscope's CPU counts are samples taken at `sampleRate` Hz: they are
//! kept as counts (exact; no rounding when 10⁹ is not a multiple of the
//! rate), and the period (default `sampleRate` 100 → 10 000 000 ns) says how
//! much CPU time one sample stands for.
//!
//! - `folded`/`lines` bodies (see [`super::folded`]) take the sample type,
//!   period and delta-ness of the kind; an unknown kind is `cpu`.
//! - `pprof` bodies keep their own sample types, period and delta inference;
//!   the profile name is the kind's (e.g. `cpu` → `process_cpu`, so every
//!   sample type of the pprof gets it), inferred per sample type when the
//!   kind is unknown.
//!
//! # Other parameters
//!
//! - `format`: `pprof`, `folded` or `lines`; others (`trie`, `tree`, `jfr`,
//!   `speedscope`) are refused. Absent: a `multipart/form-data` body, a
//!   gzipped body or a body that is not UTF-8 is `pprof`, anything else is
//!   `folded`.
//! - `pprof` bodies: the raw pprof (gzipped or not), or `multipart/form-data`
//!   with a `profile` part (required), an optional `previous_profile` part
//!   (ignored: no cumulative-to-delta conversion is done) and an optional
//!   `sample_type_config` part (accepted and ignored: the pprof's own sample
//!   types are stored).
//! - `from`/`until`: integer unix times in seconds, or milliseconds when over
//!   10¹², or nanoseconds when over 10¹⁵; absent or 0 is not given. The
//!   profile's time is `from` (default: now; a pprof keeps its own
//!   `time_nanos` when it has one) and its duration `until − from` (default
//!   10 s; a pprof keeps its own `duration_nanos` when non-zero).
//!   `until < from` is an error.
//! - `sampleRate`: positive integer, default 100 (folded/lines only).
//! - `spyName`, `units`, `aggregationType`: accepted and ignored (the kind
//!   decides units and delta-ness).

use super::folded::{self, ProfileShape};
use super::PyroscopeError;
use crate::ingest::{check_writer_labels, IngestRequest, LabelLimits};
use crate::model::labels::Labels;
use crate::pprof::DecodeLimits;

/// One row of the kind table (see the [module docs](self#kinds)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The kind as it appears in the name (`cpu`, `alloc_objects`, ...).
    pub kind: &'static str,
    /// The profile name.
    pub name: &'static str,
    /// Sample type and unit of folded/lines bodies.
    pub sample_type: (&'static str, &'static str),
    /// Period type and unit of folded/lines bodies.
    pub period_type: (&'static str, &'static str),
    /// Whether the period is 10⁹/sampleRate ns (else 0).
    pub sampled: bool,
    /// Whether folded/lines profiles of this kind are deltas.
    pub delta: bool,
}

const fn k(
    kind: &'static str,
    name: &'static str,
    sample_type: (&'static str, &'static str),
    period_type: (&'static str, &'static str),
    sampled: bool,
    delta: bool,
) -> Kind {
    Kind {
        kind,
        name,
        sample_type,
        period_type,
        sampled,
        delta,
    }
}

const SPACE: (&str, &str) = ("space", "bytes");
const CONTENTIONS: (&str, &str) = ("contentions", "count");

/// The kind table; the first row (`cpu`) is the default of folded bodies.
pub const KINDS: &[Kind] = &[
    k(
        "cpu",
        "process_cpu",
        ("samples", "count"),
        ("cpu", "nanoseconds"),
        true,
        true,
    ),
    k(
        "itimer",
        "process_cpu",
        ("samples", "count"),
        ("cpu", "nanoseconds"),
        true,
        true,
    ),
    k(
        "wall",
        "wall",
        ("samples", "count"),
        ("wall", "nanoseconds"),
        true,
        true,
    ),
    k(
        "alloc_objects",
        "memory",
        ("alloc_objects", "count"),
        SPACE,
        false,
        true,
    ),
    k(
        "alloc_space",
        "memory",
        ("alloc_space", "bytes"),
        SPACE,
        false,
        true,
    ),
    k(
        "inuse_objects",
        "memory",
        ("inuse_objects", "count"),
        SPACE,
        false,
        false,
    ),
    k(
        "inuse_space",
        "memory",
        ("inuse_space", "bytes"),
        SPACE,
        false,
        false,
    ),
    k(
        "goroutines",
        "goroutine",
        ("goroutine", "count"),
        ("goroutine", "count"),
        false,
        false,
    ),
    k(
        "mutex_count",
        "mutex",
        ("contentions", "count"),
        CONTENTIONS,
        false,
        true,
    ),
    k(
        "mutex_duration",
        "mutex",
        ("delay", "nanoseconds"),
        CONTENTIONS,
        false,
        true,
    ),
    k(
        "block_count",
        "block",
        ("contentions", "count"),
        CONTENTIONS,
        false,
        true,
    ),
    k(
        "block_duration",
        "block",
        ("delay", "nanoseconds"),
        CONTENTIONS,
        false,
        true,
    ),
    k(
        "lock_count",
        "mutex",
        ("lock_count", "count"),
        CONTENTIONS,
        false,
        true,
    ),
    k(
        "lock_duration",
        "mutex",
        ("lock_time", "nanoseconds"),
        CONTENTIONS,
        false,
        true,
    ),
    k(
        "alloc_in_new_tlab_objects",
        "memory",
        ("alloc_in_new_tlab_objects", "count"),
        SPACE,
        false,
        true,
    ),
    k(
        "alloc_in_new_tlab_bytes",
        "memory",
        ("alloc_in_new_tlab_bytes", "bytes"),
        SPACE,
        false,
        true,
    ),
    k(
        "exceptions",
        "exceptions",
        ("exceptions", "count"),
        ("exceptions", "count"),
        false,
        true,
    ),
];

/// The kind named `s`.
pub fn kind(s: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == s)
}

/// A parsed `name` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName {
    /// The application name (`service_name`).
    pub app: String,
    /// The kind, when the name ends with a known one.
    pub kind: Option<&'static Kind>,
    /// `service_name` plus the tags.
    pub labels: Labels,
}

/// Decodes `%XX` escapes (only those; `+` stays `+`). Invalid escapes are
/// kept as they are; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("tag value {s:?} is not UTF-8 once decoded"))
}

/// Parses the `name` parameter (see the [module docs](self#name)).
pub fn parse_name(name: &str, limits: &LabelLimits) -> Result<AppName, PyroscopeError> {
    let bad = |why: String| PyroscopeError::Invalid(format!("invalid name {name:?}: {why}"));
    let (base, tags) = match name.split_once('{') {
        Some((base, rest)) => {
            let Some(inner) = rest.strip_suffix('}') else {
                return Err(bad("tags must end with `}`".into()));
            };
            (base, Some(inner))
        }
        None => (name, None),
    };
    let base = base.trim();
    if base.contains(['}', '=', ',']) {
        return Err(bad(
            "the application name may not contain `}`, `=` or `,`".into()
        ));
    }
    let (app, kind) = match base.rsplit_once('.').and_then(|(a, s)| Some((a, kind(s)?))) {
        Some((app, k)) => (app, Some(k)),
        None => (base, None),
    };
    if app.is_empty() {
        return Err(bad("empty application name".into()));
    }
    let mut labels = Labels::new();
    labels.set("service_name".into(), app.to_string());
    for part in tags.unwrap_or("").split(',') {
        if part.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(bad(format!("tag {part:?} is not key=value")));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(bad(format!("tag {part:?} has an empty key")));
        }
        if k.contains(['{', '}']) {
            return Err(bad(format!("tag key {k:?} may not contain braces")));
        }
        if k == "service_name" {
            return Err(bad(
                "tag service_name conflicts with the application name".into()
            ));
        }
        if k.starts_with("__") {
            return Err(bad(format!(
                "tag {k:?} is reserved (names starting with \"__\" belong to profstore)"
            )));
        }
        if labels.get(k).is_some() {
            return Err(bad(format!("tag {k:?} given twice")));
        }
        labels.set(k.to_string(), percent_decode(v).map_err(bad)?);
    }
    check_writer_labels(&labels, limits).map_err(|e| bad(e.to_string()))?;
    if labels.len() + 1 > limits.max_labels_per_series {
        return Err(bad(format!(
            "{} labels with __name__, limit max_labels_per_series is {}",
            labels.len() + 1,
            limits.max_labels_per_series
        )));
    }
    Ok(AppName {
        app: app.to_string(),
        kind,
        labels,
    })
}

/// Parses a `from`/`until` value into unix nanoseconds (see the
/// [module docs](self#other-parameters)); `None` when absent or 0.
pub fn parse_time(param: &str, v: &str) -> Result<Option<i64>, PyroscopeError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || {
        PyroscopeError::Invalid(format!(
            "invalid parameter {param:?}: {v:?} is not a unix time (integer seconds, ms or ns)"
        ))
    };
    let n: i64 = v.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    let ns = if n == 0 {
        return Ok(None);
    } else if n > 1_000_000_000_000_000 {
        Some(n)
    } else if n > 1_000_000_000_000 {
        n.checked_mul(1_000_000)
    } else {
        n.checked_mul(1_000_000_000)
    };
    ns.map(Some).ok_or_else(bad)
}

/// The body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pprof, gzipped or not.
    Pprof,
    /// Collapsed stacks with counts.
    Folded,
    /// One stack per line.
    Lines,
}

impl Format {
    /// The `format` parameter; `None` when absent or empty.
    pub fn parse(v: Option<&str>) -> Result<Option<Format>, PyroscopeError> {
        match v.map(str::trim) {
            None | Some("") => Ok(None),
            Some("pprof") => Ok(Some(Format::Pprof)),
            Some("folded") => Ok(Some(Format::Folded)),
            Some("lines") => Ok(Some(Format::Lines)),
            Some(f) => Err(PyroscopeError::Invalid(format!(
                "unsupported format {f:?} (supported: pprof, folded, lines)"
            ))),
        }
    }

    /// The format of a body sent without `format` (not multipart).
    pub fn detect(body: &[u8]) -> Format {
        if body.starts_with(&[0x1f, 0x8b]) || std::str::from_utf8(body).is_err() {
            Format::Pprof
        } else {
            Format::Folded
        }
    }
}

/// The query parameters of `/ingest`.
#[derive(Debug, Clone, Default)]
pub struct IngestParams<'a> {
    /// `name`.
    pub name: Option<&'a str>,
    /// `from`.
    pub from: Option<&'a str>,
    /// `until`.
    pub until: Option<&'a str>,
    /// `sampleRate`.
    pub sample_rate: Option<&'a str>,
}

/// Default duration of a profile without `from`/`until`: 10 s, Pyroscope
/// SDKs' upload interval.
pub const DEFAULT_DURATION_NS: i64 = 10_000_000_000;

/// Builds the ingest request of one `/ingest` upload: `body` is the pprof
/// (the multipart `profile` part, or the whole body) or the text of a
/// folded/lines body, in `format`.
pub fn ingest_request(
    params: &IngestParams<'_>,
    format: Format,
    body: &[u8],
    decode: &DecodeLimits,
    labels: &LabelLimits,
    now_ms: i64,
) -> Result<IngestRequest, PyroscopeError> {
    let name = params
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| PyroscopeError::Invalid("missing parameter \"name\"".into()))?;
    let app = parse_name(name, labels)?;
    let from = parse_time("from", params.from.unwrap_or(""))?;
    let until = parse_time("until", params.until.unwrap_or(""))?;
    let duration = match (from, until) {
        (Some(f), Some(u)) if u < f => {
            return Err(PyroscopeError::Invalid(
                "invalid parameter \"until\": before \"from\"".into(),
            ))
        }
        (Some(f), Some(u)) => u - f,
        _ => DEFAULT_DURATION_NS,
    };
    match format {
        Format::Pprof => {
            let mut profile = crate::pprof::decode(body, decode)
                .map_err(|e| PyroscopeError::from_pprof("profile", e))?;
            if profile.time_nanos == 0 {
                profile.time_nanos = from.unwrap_or(0);
            }
            if profile.duration_nanos == 0 && from.is_some() && until.is_some() {
                profile.duration_nanos = duration;
            }
            Ok(IngestRequest {
                name: app.kind.map(|k| k.name.to_string()),
                labels: app.labels,
                delta: None,
                profile,
                received_at_ms: now_ms,
            })
        }
        Format::Folded | Format::Lines => {
            let kind = app.kind.unwrap_or(&KINDS[0]);
            let rate: i64 = match params.sample_rate.map(str::trim) {
                None | Some("") => 100,
                Some(r) => match r.parse::<i64>() {
                    Ok(r) if r > 0 => r,
                    _ => {
                        return Err(PyroscopeError::Invalid(format!(
                            "invalid parameter \"sampleRate\": {r:?} is not a positive integer"
                        )))
                    }
                },
            };
            let text = std::str::from_utf8(body)
                .map_err(|e| PyroscopeError::Invalid(format!("body is not UTF-8 text: {e}")))?;
            let stacks = folded::parse(text, format == Format::Folded)
                .map_err(|e| PyroscopeError::Invalid(format!("invalid {format:?} body: {e}")))?;
            let shape = ProfileShape {
                sample_type: (kind.sample_type.0.into(), kind.sample_type.1.into()),
                period_type: (kind.period_type.0.into(), kind.period_type.1.into()),
                period: if kind.sampled {
                    1_000_000_000 / rate
                } else {
                    0
                },
                time_nanos: from.unwrap_or_else(|| now_ms.saturating_mul(1_000_000)),
                duration_nanos: duration,
            };
            let profile = folded::to_pprof(&stacks, &shape);
            crate::pprof::validate(&profile, decode)
                .map_err(|e| PyroscopeError::from_pprof("profile", e))?;
            Ok(IngestRequest {
                name: Some(kind.name.to_string()),
                labels: app.labels,
                delta: Some(kind.delta),
                profile,
                received_at_ms: now_ms,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AppName, PyroscopeError> {
        parse_name(s, &LabelLimits::default())
    }

    #[test]
    fn names() {
        let a = parse("myapp.cpu{env=prod,region=eu}").unwrap();
        assert_eq!(a.app, "myapp");
        assert_eq!(a.kind.unwrap().name, "process_cpu");
        assert_eq!(
            a.labels,
            Labels::from_pairs([("env", "prod"), ("region", "eu"), ("service_name", "myapp")])
        );
        // The last dot decides; unknown suffixes are part of the app name.
        let a = parse("my.app.alloc_objects").unwrap();
        assert_eq!(
            (a.app.as_str(), a.kind.unwrap().kind),
            ("my.app", "alloc_objects")
        );
        let a = parse("my.app").unwrap();
        assert_eq!((a.app.as_str(), a.kind), ("my.app", None));
        let a = parse("myapp{}").unwrap();
        assert_eq!((a.app.as_str(), a.labels.len()), ("myapp", 1));
        // Dotted keys, percent-encoded values, spaces, trailing comma.
        let a = parse("svc.wall{k8s.pod = p-1 , v=a%2Cb%7Dc,}").unwrap();
        assert_eq!(a.labels.get("k8s.pod"), Some("p-1"));
        assert_eq!(a.labels.get("v"), Some("a,b}c"));
        assert_eq!(a.kind.unwrap().name, "wall");
        // Every kind parses.
        for k in KINDS {
            assert_eq!(parse(&format!("x.{}", k.kind)).unwrap().kind, Some(k));
        }
    }

    #[test]
    fn bad_names() {
        for bad in [
            "",
            ".cpu",
            "{a=b}",
            "app{a=b",
            "app{a}",
            "app{=b}",
            "app{a=1,a=2}",
            "app{__x=1}",
            "app{service_name=x}",
            "a,b.cpu",
            "app{a=%FF}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%20b").unwrap(), "a b");
        assert_eq!(percent_decode("100%").unwrap(), "100%");
        assert_eq!(percent_decode("%zz%4").unwrap(), "%zz%4");
        assert_eq!(percent_decode("a+b").unwrap(), "a+b");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("from", "").unwrap(), None);
        assert_eq!(parse_time("from", "0").unwrap(), None);
        assert_eq!(
            parse_time("from", "1700000000").unwrap(),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time("from", "1700000000123").unwrap(),
            Some(1_700_000_000_123_000_000)
        );
        assert_eq!(
            parse_time("from", "1700000000123456789").unwrap(),
            Some(1_700_000_000_123_456_789)
        );
        assert!(parse_time("from", "-1").is_err());
        assert!(parse_time("from", "now").is_err());
        assert!(parse_time("from", "1.5").is_err());
    }

    #[test]
    fn folded_requests() {
        let dl = DecodeLimits::default();
        let ll = LabelLimits::default();
        let params = IngestParams {
            name: Some("app.cpu{env=x}"),
            from: Some("1700000000"),
            until: Some("1700000010"),
            sample_rate: Some("50"),
        };
        let r = ingest_request(&params, Format::Folded, b"a;b 3\na 1\n", &dl, &ll, 0).unwrap();
        assert_eq!(r.name.as_deref(), Some("process_cpu"));
        assert_eq!(r.delta, Some(true));
        assert_eq!(r.profile.period, 20_000_000);
        assert_eq!(r.profile.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(r.profile.duration_nanos, 10_000_000_000);
        assert_eq!(r.labels.get("service_name"), Some("app"));
        // Unknown kind: cpu; no times: now and 10 s.
        let params = IngestParams {
            name: Some("app"),
            ..Default::default()
        };
        let r = ingest_request(&params, Format::Lines, b"a;b\n", &dl, &ll, 5).unwrap();
        assert_eq!(r.name.as_deref(), Some("process_cpu"));
        assert_eq!(r.profile.period, 10_000_000);
        assert_eq!(r.profile.time_nanos, 5_000_000);
        assert_eq!(r.profile.duration_nanos, DEFAULT_DURATION_NS);
        // Errors.
        let bad = |p: IngestParams<'_>, body: &[u8]| {
            ingest_request(&p, Format::Folded, body, &dl, &ll, 0).is_err()
        };
        assert!(bad(IngestParams::default(), b"a 1"));
        assert!(bad(
            IngestParams {
                name: Some("a"),
                sample_rate: Some("0"),
                ..Default::default()
            },
            b"a 1"
        ));
        assert!(bad(
            IngestParams {
                name: Some("a"),
                from: Some("20"),
                until: Some("10"),
                ..Default::default()
            },
            b"a 1"
        ));
        assert!(bad(
            IngestParams {
                name: Some("a"),
                ..Default::default()
            },
            b"a x"
        ));
        assert!(bad(
            IngestParams {
                name: Some("a"),
                ..Default::default()
            },
            &[0xff, 0xfe]
        ));
    }

    #[test]
    fn formats() {
        assert_eq!(Format::parse(None).unwrap(), None);
        assert_eq!(Format::parse(Some("pprof")).unwrap(), Some(Format::Pprof));
        assert!(Format::parse(Some("jfr")).is_err());
        assert_eq!(Format::detect(b"a;b 1"), Format::Folded);
        assert_eq!(Format::detect(&[0x1f, 0x8b, 0]), Format::Pprof);
        assert_eq!(Format::detect(&[0x0a, 0xff]), Format::Pprof);
    }
}
