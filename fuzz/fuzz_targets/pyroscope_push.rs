//! Fuzzes the Pyroscope push decoders: the Connect `PushRequest` body in
//! protobuf and protobuf-JSON (`profstore::pyroscope::decode_push`, optionally
//! gunzipped first, then `plan_push` and `into_request` as the server runs
//! them) and the legacy `/ingest` upload (`legacy::ingest_request` with its
//! `name`/`from`/`until`/`sampleRate`/`format` parameters, `parse_name`, and
//! `folded::parse` of `folded`/`lines` bodies).
//!
//! Input: the first byte picks the decoder. `& 3`: 0 Connect protobuf, 1
//! Connect JSON, 2 or 3 legacy. `& 0x80` gunzips a Connect body first
//! (`content-encoding: gzip`). A legacy input is the query string, a newline,
//! then the body.
//!
//! Must hold: no panic, hang or huge allocation on any input. A decoded
//! `PushRequest` encodes (in its codec) and decodes back to itself. Every
//! request the server would ingest has labels and a profile name that pass
//! ingest's checks and a valid profile that the write-ahead log can replay:
//! its `pprof::encode` decodes back to the same profile. A parsed `name`
//! written back as `app.kind{k=v,...}` parses to the same; parsed folded and
//! lines bodies written back parse to the same stacks.
//!
//! Run from the crate root: `cargo fuzz run pyroscope_push` (with a stable
//! toolchain: `RUSTC_BOOTSTRAP=1 cargo fuzz run pyroscope_push`).

#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use profstore::ingest::{check_profile_name, check_writer_labels, IngestRequest, LabelLimits};
use profstore::pprof::{self, DecodeLimits};
use profstore::proto::pyroscope::push::v1::PushRequest;
use profstore::pyroscope::{self as pyro, folded, legacy, Codec};
use profstore::server::params::Params;
use prost::Message;
use std::fmt::Write;

/// The receive time given to requests (ms).
const NOW_MS: i64 = 1_700_000_000_000;

/// What the server checks before it ingests `req`, and the WAL round trip:
/// an accepted request is logged as `pprof::encode(&req.profile)` and
/// replayed with `pprof::decode`.
fn check_request(req: &IngestRequest, decode: &DecodeLimits, labels: &LabelLimits) {
    check_writer_labels(&req.labels, labels).expect("request labels pass ingest's checks");
    assert!(req.labels.len() < labels.max_labels_per_series);
    if let Some(name) = &req.name {
        check_profile_name(name).expect("request profile name passes ingest's check");
    }
    assert_eq!(pprof::validate(&req.profile, decode), Ok(()));
    let bytes = pprof::encode(&req.profile);
    if bytes.is_empty() {
        // Only an all-default profile encodes to nothing.
        assert_eq!(req.profile, Default::default());
    } else {
        assert_eq!(
            pprof::decode(&bytes, decode).as_ref(),
            Ok(&req.profile),
            "the WAL could not replay an accepted request"
        );
    }
}

/// `req` as protobuf-JSON, the way Pyroscope's clients write it.
fn to_json(req: &PushRequest) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let series: Vec<serde_json::Value> = req
        .series
        .iter()
        .map(|s| {
            let labels: Vec<_> = s
                .labels
                .iter()
                .map(|l| serde_json::json!({ "name": l.name, "value": l.value }))
                .collect();
            let samples: Vec<_> = s
                .samples
                .iter()
                .map(
                    |x| serde_json::json!({ "rawProfile": b64.encode(&x.raw_profile), "ID": x.id }),
                )
                .collect();
            serde_json::json!({ "labels": labels, "samples": samples })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "series": series })).expect("JSON of a value")
}

/// `POST /push.v1.PusherService/Push`, as `server/pyroscope.rs` runs it.
fn push(body: &[u8], codec: Codec, gzipped: bool, decode: &DecodeLimits, labels: &LabelLimits) {
    let inflated;
    let body = if gzipped {
        match pyro::gunzip_bounded(body, decode.max_decompressed_bytes) {
            Ok(b) => {
                inflated = b;
                &inflated[..]
            }
            Err(_) => return,
        }
    } else {
        body
    };
    let Ok(req) = pyro::decode_push(body, codec, decode) else {
        return;
    };
    let again = match codec {
        Codec::Proto => req.encode_to_vec(),
        Codec::Json => to_json(&req),
    };
    let back = pyro::decode_push(&again, codec, decode).expect("a push request encoded again");
    assert_eq!(back, req, "{codec:?} round trip changed the push request");
    let Ok(plan) = pyro::plan_push(req, decode, labels) else {
        return;
    };
    for p in plan {
        let req = p
            .into_request(decode, NOW_MS)
            .expect("a planned profile decodes again");
        check_request(&req, decode, labels);
    }
}

/// A parsed `name`, written back with every tag value percent-encoded,
/// parses to the same.
fn check_name(name: &str, limits: &LabelLimits) {
    let Ok(a) = legacy::parse_name(name, limits) else {
        return;
    };
    assert_eq!(a.labels.get("service_name"), Some(a.app.as_str()));
    let mut s = a.app.clone();
    if let Some(k) = a.kind {
        s.push('.');
        s.push_str(k.kind);
    }
    s.push('{');
    for l in a.labels.iter().filter(|l| l.name != "service_name") {
        s.push_str(&l.name);
        s.push('=');
        for b in l.value.bytes() {
            write!(s, "%{b:02X}").expect("write to a String");
        }
        s.push(',');
    }
    s.push('}');
    let b = legacy::parse_name(&s, limits).expect("a parsed name written back parses");
    assert_eq!(b, a, "name {name:?} written back as {s:?}");
}

/// Parsed stacks, written back (folded: one line per stack; lines: one line
/// per count, each ending in `;` so that the last frame keeps trailing
/// spaces), parse to the same.
fn check_folded(text: &str, with_counts: bool) {
    let Ok(s) = folded::parse(text, with_counts) else {
        return;
    };
    let mut out = String::new();
    for (frames, count) in &s.stacks {
        assert!(!frames.is_empty() && *count >= 0);
        let names: Vec<&str> = frames.iter().map(|&i| s.frames[i].as_str()).collect();
        let line = names.join(";");
        if with_counts {
            writeln!(out, "{line} {count}").expect("write to a String");
        } else {
            assert!(*count >= 1);
            for _ in 0..*count {
                writeln!(out, "{line};").expect("write to a String");
            }
        }
    }
    assert_eq!(
        folded::parse(&out, with_counts),
        Ok(s),
        "stacks written back as {out:?}"
    );
}

/// `POST /ingest?<query>` with `body` (not multipart), as
/// `server/pyroscope.rs` runs it.
fn ingest(input: &[u8], decode: &DecodeLimits, labels: &LabelLimits) {
    let (query, body) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let query = String::from_utf8_lossy(query);
    let params = Params::from_query(Some(&query));
    if let Some(name) = params.get("name") {
        check_name(name, labels);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        check_folded(text, true);
        check_folded(text, false);
    }
    let Ok(format) = legacy::Format::parse(params.get("format")) else {
        return;
    };
    let format = format.unwrap_or_else(|| legacy::Format::detect(body));
    let p = legacy::IngestParams {
        name: params.get("name"),
        from: params.get("from"),
        until: params.get("until"),
        sample_rate: params.get("sampleRate"),
    };
    if let Ok(req) = legacy::ingest_request(&p, format, body, decode, labels, NOW_MS) {
        check_request(&req, decode, labels);
        assert!(req.labels.get("service_name").is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let decode = DecodeLimits::default();
    let labels = LabelLimits::default();
    match mode & 3 {
        0 => push(rest, Codec::Proto, mode & 0x80 != 0, &decode, &labels),
        1 => push(rest, Codec::Json, mode & 0x80 != 0, &decode, &labels),
        _ => ingest(rest, &decode, &labels),
    }
});
