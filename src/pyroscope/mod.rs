//! Pyroscope compatibility: what existing Pyroscope SDKs and Grafana Alloy
//! send, turned into [`IngestRequest`]s. Independent of HTTP; the handlers
//! are in `server/pyroscope.rs`.
//!
//! Two APIs are accepted:
//!
//! 1. `POST /push.v1.PusherService/Push`, Pyroscope's Connect (unary) push
//!    API (Grafana Alloy, the Pyroscope Java/.NET/Python/Ruby SDKs). The
//!    body is a `push.v1.PushRequest` ([`crate::proto::pyroscope`]) as
//!    protobuf (`application/proto`) or protobuf-JSON (`application/json`),
//!    optionally compressed as a whole (`content-encoding: gzip`). Each
//!    `raw_profile` is a pprof, gzipped or not. See [`push_series`] for the
//!    label rules and [`decode_push`] for the body rules.
//! 2. `POST /ingest?name=app.kind{tags}&...`, Pyroscope's legacy ingest API
//!    (pyroscope-go, older SDKs): see [`legacy`] for the name and parameter
//!    rules and [`folded`] for the `folded`/`lines` formats.
//!
//! # Push labels
//!
//! For each series of a `PushRequest`:
//!
//! - `__name__` is the profile name ([`IngestRequest::name`], e.g.
//!   `process_cpu`, `memory`, `goroutine`, `block`, `mutex`); absent or
//!   empty: inferred per sample type as for `/api/v1/write`.
//! - `__delta__` (`"true"`/`"false"`, case-insensitive) sets
//!   [`IngestRequest::delta`]; any other value is an error; absent:
//!   inferred.
//! - Every other label starting with `__` (e.g. `__session_id__`, Alloy's
//!   `__meta_*`) is dropped: such names belong to profstore.
//! - Every other label (`service_name`, user tags, dotted OpenTelemetry-style
//!   names such as `otel.scope.name`) is kept unchanged as a series label;
//!   names outside the Prometheus charset are selectable with Prometheus 3's
//!   quoted form, `{"otel.scope.name"="x"}`. A label with an empty value is
//!   no label. A name given twice is an error.
//! - pprof string sample labels (e.g. `endpoint`) become series labels as
//!   for `/api/v1/write` (see [`crate::ingest`]).
//!
//! Each sample (`raw_profile`) of a series is ingested as one profile with
//! the series' labels; its `ID` is ignored.
//!
//! # All or nothing
//!
//! Every label set is checked and every `raw_profile` decoded and validated
//! before anything is ingested, so a bad label, a bad pprof or a pprof over a
//! limit anywhere in the request stores nothing. The profiles are then
//! ingested one by one; each is all-or-nothing by itself, but a store-level
//! failure of a later profile (out of order, series limit, label count limit
//! once pprof labels are added, a meta store error) leaves the earlier ones
//! stored.

pub mod folded;
pub mod legacy;

use crate::ingest::{check_profile_name, check_writer_labels, IngestRequest, LabelLimits};
use crate::model::labels::{Labels, METRIC_NAME};
use crate::pprof::{DecodeLimits, PprofError};
use crate::proto::pprof::Profile;
use crate::proto::pyroscope::push::v1::{PushRequest, RawProfileSeries, RawSample};
use crate::proto::pyroscope::types::v1::LabelPair;
use base64::Engine;
use prost::Message;
use std::io::Read;

/// Errors of the conversions: each says which HTTP/Connect class it is.
#[derive(Debug, thiserror::Error)]
pub enum PyroscopeError {
    /// A malformed body, label, name or parameter (Connect
    /// `invalid_argument`, HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// A body, or a profile in it, over a limit (Connect
    /// `resource_exhausted`).
    #[error("{0}")]
    TooLarge(String),
}

impl PyroscopeError {
    fn from_pprof(context: &str, e: PprofError) -> PyroscopeError {
        if e.is_too_large() {
            PyroscopeError::TooLarge(format!("{context}: {e}"))
        } else {
            PyroscopeError::Invalid(format!("{context}: {e}"))
        }
    }
}

/// The body codecs of the Connect push API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `application/proto`: protobuf.
    Proto,
    /// `application/json`: protobuf-JSON.
    Json,
}

impl Codec {
    /// The codec of a `content-type` (parameters such as `charset` are
    /// ignored); `None` for anything else.
    pub fn from_content_type(ct: &str) -> Option<Codec> {
        let base = ct.split(';').next().unwrap_or("").trim();
        if base.eq_ignore_ascii_case("application/proto")
            || base.eq_ignore_ascii_case("application/protobuf")
            || base.eq_ignore_ascii_case("application/x-protobuf")
        {
            Some(Codec::Proto)
        } else if base.eq_ignore_ascii_case("application/json") {
            Some(Codec::Json)
        } else {
            None
        }
    }
}

/// Upper bound on the heap bytes one decoded push message element
/// (`RawProfileSeries`, `LabelPair`, `RawSample`) takes beyond the bytes it
/// copies from the body: its struct (at most 48 bytes) plus vector growth
/// slack, rounded up.
const ELEMENT_HEAP_BYTES: usize = 128;

/// Gunzips a Connect body (`content-encoding: gzip`) producing at most
/// `limit` bytes: a gzip bomb fails with [`PyroscopeError::TooLarge`] once
/// `limit + 1` bytes were inflated (the buffer never grows past about twice
/// that).
pub fn gunzip_bounded(body: &[u8], limit: usize) -> Result<Vec<u8>, PyroscopeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit).min(1 << 20));
    let mut dec = flate2::read::MultiGzDecoder::new(body).take((limit as u64).saturating_add(1));
    dec.read_to_end(&mut out)
        .map_err(|e| PyroscopeError::Invalid(format!("gzip body: {e}")))?;
    if out.len() > limit {
        return Err(PyroscopeError::TooLarge(format!(
            "decompressed body over the limit of {limit} bytes"
        )));
    }
    Ok(out)
}

/// Counts the elements of a protobuf `PushRequest` without decoding it, to
/// bound the memory prost will take. Malformed bytes give `None` (prost then
/// reports the error).
fn count_proto_elements(buf: &[u8]) -> Option<usize> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    // Calls `f(field, payload)` for each length-delimited field; skips others.
    fn fields(mut b: &[u8], mut f: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
        while !b.is_empty() {
            let key = varint(&mut b)?;
            match key & 7 {
                0 => {
                    varint(&mut b)?;
                }
                1 => b = b.get(8..)?,
                5 => b = b.get(4..)?,
                2 => {
                    let n = usize::try_from(varint(&mut b)?).ok()?;
                    let payload = b.get(..n)?;
                    b = &b[n..];
                    f(key >> 3, payload)?;
                }
                _ => return None,
            }
        }
        Some(())
    }
    let mut n = 0usize;
    fields(buf, |field, series| {
        if field == 1 {
            n += 1;
            fields(series, |field, _| {
                if field == 1 || field == 2 {
                    n += 1;
                }
                Some(())
            })?;
        }
        Some(())
    })?;
    Some(n)
}

/// The JSON form of a `PushRequest` (protobuf-JSON: lowerCamel names, and
/// the original names, as protobuf-JSON parsers accept both; `null` is the
/// default value; unknown fields are ignored).
mod json {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct PushRequest {
        #[serde(default)]
        pub series: Option<Vec<Series>>,
    }

    #[derive(Deserialize)]
    pub struct Series {
        #[serde(default)]
        pub labels: Option<Vec<LabelPair>>,
        #[serde(default)]
        pub samples: Option<Vec<RawSample>>,
    }

    #[derive(Deserialize)]
    pub struct LabelPair {
        #[serde(default)]
        pub name: Option<String>,
        #[serde(default)]
        pub value: Option<String>,
    }

    #[derive(Deserialize)]
    pub struct RawSample {
        #[serde(default, rename = "rawProfile", alias = "raw_profile")]
        pub raw_profile: Option<String>,
        #[serde(default, rename = "ID", alias = "id")]
        pub id: Option<String>,
    }
}

/// Decodes protobuf-JSON `bytes`: standard or URL-safe base64, padded or
/// not (as protobuf-JSON parsers accept).
fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    if s.contains(['-', '_']) {
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg).decode(s)
    } else {
        GeneralPurpose::new(&base64::alphabet::STANDARD, cfg).decode(s)
    }
}

/// Decodes a (decompressed) Connect push body.
///
/// Memory: before decoding, the number of message elements is counted
/// (protobuf: a wire scan; JSON: the `{` bytes, an upper bound on its
/// objects) and the body is refused with [`PyroscopeError::TooLarge`] when
/// `elements × 128 + 2 × body` could exceed `limits.max_heap_bytes`; the
/// decoded `raw_profile` bytes are at most the body's size.
pub fn decode_push(
    body: &[u8],
    codec: Codec,
    limits: &DecodeLimits,
) -> Result<PushRequest, PyroscopeError> {
    let elements = match codec {
        Codec::Proto => count_proto_elements(body).unwrap_or(0),
        Codec::Json => body.iter().filter(|&&b| b == b'{').count(),
    };
    let estimate = elements
        .saturating_mul(ELEMENT_HEAP_BYTES)
        .saturating_add(body.len().saturating_mul(2));
    if estimate > limits.max_heap_bytes {
        return Err(PyroscopeError::TooLarge(format!(
            "push request with {elements} messages in {} bytes could take over max_heap_bytes ({})",
            body.len(),
            limits.max_heap_bytes
        )));
    }
    match codec {
        Codec::Proto => PushRequest::decode(body)
            .map_err(|e| PyroscopeError::Invalid(format!("invalid PushRequest protobuf: {e}"))),
        Codec::Json => {
            let req: json::PushRequest = serde_json::from_slice(body)
                .map_err(|e| PyroscopeError::Invalid(format!("invalid PushRequest JSON: {e}")))?;
            let mut out = PushRequest::default();
            for (i, s) in req.series.unwrap_or_default().into_iter().enumerate() {
                let labels = s
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| LabelPair {
                        name: l.name.unwrap_or_default(),
                        value: l.value.unwrap_or_default(),
                    })
                    .collect();
                let mut samples = Vec::new();
                for (j, x) in s.samples.unwrap_or_default().into_iter().enumerate() {
                    let raw =
                        decode_base64(x.raw_profile.as_deref().unwrap_or("")).map_err(|e| {
                            PyroscopeError::Invalid(format!(
                                "series {i} sample {j}: rawProfile is not base64: {e}"
                            ))
                        })?;
                    samples.push(RawSample {
                        raw_profile: raw,
                        id: x.id.unwrap_or_default(),
                    });
                }
                out.series.push(RawProfileSeries { labels, samples });
            }
            Ok(out)
        }
    }
}

/// One series of a push, its labels converted (see the
/// [module docs](self#push-labels)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSeries {
    /// `__name__`.
    pub name: Option<String>,
    /// `__delta__`.
    pub delta: Option<bool>,
    /// The series labels.
    pub labels: Labels,
}

/// Converts the labels of one pushed series and checks them against
/// `limits` (as ingest will).
pub fn push_series(
    pairs: &[LabelPair],
    limits: &LabelLimits,
) -> Result<PushSeries, PyroscopeError> {
    let mut out = PushSeries {
        name: None,
        delta: None,
        labels: Labels::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for l in pairs {
        if !seen.insert(l.name.as_str()) {
            return Err(PyroscopeError::Invalid(format!(
                "label {:?} given twice",
                l.name
            )));
        }
        if l.name == METRIC_NAME {
            if !l.value.is_empty() {
                check_profile_name(&l.value).map_err(|e| PyroscopeError::Invalid(e.to_string()))?;
                out.name = Some(l.value.clone());
            }
        } else if l.name == "__delta__" {
            out.delta = match l.value.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                "" => None,
                v => {
                    return Err(PyroscopeError::Invalid(format!(
                        "label __delta__ must be \"true\" or \"false\", got {v:?}"
                    )))
                }
            };
        } else if l.name.starts_with("__") {
            // Reserved for profstore: dropped (see the module docs).
        } else {
            if l.name.is_empty() {
                return Err(PyroscopeError::Invalid("empty label name".into()));
            }
            out.labels.set(l.name.clone(), l.value.clone());
        }
    }
    check_writer_labels(&out.labels, limits).map_err(|e| PyroscopeError::Invalid(e.to_string()))?;
    if out.labels.len() + 1 > limits.max_labels_per_series {
        return Err(PyroscopeError::Invalid(format!(
            "limit exceeded: series has {} labels with __name__, limit max_labels_per_series is {}",
            out.labels.len() + 1,
            limits.max_labels_per_series
        )));
    }
    Ok(out)
}

/// A pushed profile ready for ingest, or its raw bytes when it was decoded
/// once to validate it but not kept (see [`plan_push`]).
#[derive(Debug)]
pub enum PlannedProfile {
    /// Decoded and validated.
    Decoded(Box<Profile>),
    /// Validated, to be decoded again (decoding is deterministic).
    Raw(Vec<u8>),
}

/// One profile of a push to ingest.
#[derive(Debug)]
pub struct PlannedPush {
    /// Where it came from: `series i sample j`.
    pub context: String,
    /// Its series' labels.
    pub series: PushSeries,
    /// The profile.
    pub profile: PlannedProfile,
}

/// Checks every series' labels and decodes and validates every
/// `raw_profile` of `req` (see [all or nothing](self#all-or-nothing)).
///
/// Memory: decoded profiles are kept while a worst-case estimate of their
/// size (50 × their protobuf bytes, the largest expansion `decode` allows)
/// stays within `decode.max_heap_bytes`; the others are decoded once to
/// validate them, dropped, and decoded again by [`PlannedPush::into_request`].
pub fn plan_push(
    req: PushRequest,
    decode: &DecodeLimits,
    labels: &LabelLimits,
) -> Result<Vec<PlannedPush>, PyroscopeError> {
    let mut out = Vec::new();
    let mut kept_estimate = 0usize;
    for (i, s) in req.series.into_iter().enumerate() {
        let series = push_series(&s.labels, labels)
            .map_err(|e| PyroscopeError::Invalid(format!("series {i}: {e}")))?;
        for (j, sample) in s.samples.into_iter().enumerate() {
            let context = format!("series {i} sample {j}");
            let profile = crate::pprof::decode(&sample.raw_profile, decode)
                .map_err(|e| PyroscopeError::from_pprof(&context, e))?;
            let estimate = sample.raw_profile.len().saturating_mul(50);
            let profile = if kept_estimate.saturating_add(estimate) <= decode.max_heap_bytes {
                kept_estimate += estimate;
                PlannedProfile::Decoded(Box::new(profile))
            } else {
                drop(profile);
                PlannedProfile::Raw(sample.raw_profile)
            };
            out.push(PlannedPush {
                context,
                series: series.clone(),
                profile,
            });
        }
    }
    Ok(out)
}

impl PlannedPush {
    /// The ingest request of this profile.
    pub fn into_request(
        self,
        decode: &DecodeLimits,
        received_at_ms: i64,
    ) -> Result<IngestRequest, PyroscopeError> {
        let profile = match self.profile {
            PlannedProfile::Decoded(p) => *p,
            PlannedProfile::Raw(raw) => crate::pprof::decode(&raw, decode)
                .map_err(|e| PyroscopeError::from_pprof(&self.context, e))?,
        };
        Ok(IngestRequest {
            name: self.series.name,
            labels: self.series.labels,
            delta: self.series.delta,
            profile,
            received_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(name: &str, value: &str) -> LabelPair {
        LabelPair {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn push_labels() {
        let lim = LabelLimits::default();
        let s = push_series(
            &[
                lp("__name__", "process_cpu"),
                lp("__delta__", "false"),
                lp("__session_id__", "abc"),
                lp("service_name", "svc"),
                lp("otel.scope.name", "x"),
                lp("empty", ""),
            ],
            &lim,
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("process_cpu"));
        assert_eq!(s.delta, Some(false));
        assert_eq!(
            s.labels,
            Labels::from_pairs([("otel.scope.name", "x"), ("service_name", "svc")])
        );
        assert!(push_series(&[lp("a", "1"), lp("a", "2")], &lim).is_err());
        assert!(push_series(&[lp("__delta__", "maybe")], &lim).is_err());
        assert!(push_series(&[lp("__name__", "a:b")], &lim).is_err());
        assert!(push_series(&[lp("", "x")], &lim).is_err());
        let s = push_series(&[], &lim).unwrap();
        assert_eq!((s.name, s.delta, s.labels.len()), (None, None, 0));
    }

    #[test]
    fn json_bodies() {
        let lim = DecodeLimits::default();
        let r = decode_push(
            br#"{"series":[{"labels":[{"name":"a","value":"b"}],"samples":[{"rawProfile":"AQI=","ID":"x"},{"raw_profile":"AQI"},{"rawProfile":null}]}],"unknown":1}"#,
            Codec::Json,
            &lim,
        )
        .unwrap();
        assert_eq!(r.series[0].labels[0].name, "a");
        assert_eq!(r.series[0].samples[0].raw_profile, vec![1, 2]);
        assert_eq!(r.series[0].samples[0].id, "x");
        assert_eq!(r.series[0].samples[1].raw_profile, vec![1, 2]);
        assert!(r.series[0].samples[2].raw_profile.is_empty());
        assert!(decode_push(b"{}", Codec::Json, &lim)
            .unwrap()
            .series
            .is_empty());
        assert!(matches!(
            decode_push(
                br#"{"series":[{"samples":[{"rawProfile":"!!"}]}]}"#,
                Codec::Json,
                &lim
            ),
            Err(PyroscopeError::Invalid(_))
        ));
        assert!(matches!(
            decode_push(b"{", Codec::Json, &lim),
            Err(PyroscopeError::Invalid(_))
        ));
        // Too many objects for the heap budget.
        let tight = DecodeLimits {
            max_heap_bytes: 1000,
            ..DecodeLimits::default()
        };
        let many = format!(r#"{{"series":[{}]}}"#, vec!["{}"; 100].join(","));
        assert!(matches!(
            decode_push(many.as_bytes(), Codec::Json, &tight),
            Err(PyroscopeError::TooLarge(_))
        ));
    }

    #[test]
    fn proto_element_count() {
        let req = PushRequest {
            series: vec![RawProfileSeries {
                labels: vec![lp("a", "b"), lp("c", "d")],
                samples: vec![RawSample {
                    raw_profile: vec![1, 2, 3],
                    id: String::new(),
                }],
            }],
        };
        let buf = req.encode_to_vec();
        assert_eq!(count_proto_elements(&buf), Some(4));
        assert_eq!(count_proto_elements(&[0x0a, 0x05]), None);
        let empty_series = [0x0a, 0x00].repeat(1000);
        assert_eq!(count_proto_elements(&empty_series), Some(1000));
        let tight = DecodeLimits {
            max_heap_bytes: 10_000,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode_push(&empty_series, Codec::Proto, &tight),
            Err(PyroscopeError::TooLarge(_))
        ));
    }

    #[test]
    fn gzip_bomb() {
        let zeros = vec![0u8; 1 << 20];
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &zeros).unwrap();
        let gz = e.finish().unwrap();
        assert!(matches!(
            gunzip_bounded(&gz, 1000),
            Err(PyroscopeError::TooLarge(_))
        ));
        assert_eq!(gunzip_bounded(&gz, 1 << 20).unwrap().len(), 1 << 20);
        assert!(matches!(
            gunzip_bounded(b"not gzip", 1000),
            Err(PyroscopeError::Invalid(_))
        ));
    }

    #[test]
    fn codecs() {
        assert_eq!(
            Codec::from_content_type("application/proto"),
            Some(Codec::Proto)
        );
        assert_eq!(
            Codec::from_content_type("application/json; charset=utf-8"),
            Some(Codec::Json)
        );
        assert_eq!(Codec::from_content_type("text/plain"), None);
        assert_eq!(Codec::from_content_type("application/grpc"), None);
    }
}
