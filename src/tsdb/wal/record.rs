//! The payload of a `Profile` record: one ingest request as received (the
//! `ProfileRecord` message of `proto/wal.proto`; framing in
//! `docs/format/wal.md`). Replay decodes it back into the request and runs
//! the ordinary ingest again.

use crate::ingest::{IngestError, IngestRequest};
use crate::model::Labels;
use crate::pprof::DecodeLimits;
use crate::proto::wal::{Label, ProfileRecord};
use prost::Message;

/// The record of `req`; `raw` is the pprof as received (else the profile
/// is encoded again), whose time the ingest path may have replaced: the
/// record then keeps the profile's time beside it.
pub fn encode_profile(req: &IngestRequest, raw: Option<&[u8]>) -> Vec<u8> {
    ProfileRecord {
        received_at_ms: req.received_at_ms,
        name: req.name.clone().unwrap_or_default(),
        labels: req
            .labels
            .iter()
            .map(|l| Label {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect(),
        delta: match req.delta {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        },
        pprof: match raw {
            Some(b) => b.to_vec(),
            None => crate::pprof::encode(&req.profile),
        },
        time_nanos: raw.map(|_| req.profile.time_nanos),
    }
    .encode_to_vec()
}

/// The request a record holds; its pprof is decoded and validated within
/// `limits`. Arbitrary bytes give an error, never a panic.
pub fn decode_profile(payload: &[u8], limits: &DecodeLimits) -> Result<IngestRequest, IngestError> {
    let r = ProfileRecord::decode(payload)
        .map_err(|e| IngestError::InvalidLabels(format!("undecodable WAL profile record: {e}")))?;
    let mut labels = Labels::new();
    for l in r.labels {
        labels.set(l.name, l.value);
    }
    let mut profile = crate::pprof::decode(&r.pprof, limits)?;
    if let Some(t) = r.time_nanos {
        profile.time_nanos = t;
    }
    Ok(IngestRequest {
        name: (!r.name.is_empty()).then_some(r.name),
        labels,
        delta: match r.delta {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        },
        profile,
        received_at_ms: r.received_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_and_garbage_is_an_error() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/pprof/parca/fib.pb.gz"
        ))
        .unwrap();
        let limits = DecodeLimits::default();
        let req = IngestRequest {
            name: Some("cpu".into()),
            labels: Labels::from_pairs([("job", "x")]),
            delta: Some(true),
            profile: crate::pprof::decode(&bytes, &limits).unwrap(),
            received_at_ms: 42,
        };
        let back = decode_profile(&encode_profile(&req, Some(&bytes)), &limits).unwrap();
        assert_eq!(back.name, req.name);
        assert_eq!(back.labels, req.labels);
        assert_eq!(back.delta, req.delta);
        assert_eq!(back.received_at_ms, 42);
        assert_eq!(back.profile, req.profile);
        assert!(decode_profile(b"\xff\xff\xff", &limits).is_err());
    }

    #[test]
    fn a_replaced_time_is_kept_beside_the_body_as_received() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/pprof/parca/fib.pb.gz"
        ))
        .unwrap();
        let limits = DecodeLimits::default();
        let original = crate::pprof::decode(&bytes, &limits).unwrap();
        assert_ne!(original.time_nanos, 0);
        for t in [0, 1, original.time_nanos + 7, i64::MAX] {
            let mut profile = original.clone();
            profile.time_nanos = t;
            let req = IngestRequest {
                name: None,
                labels: Labels::new(),
                delta: None,
                profile,
                received_at_ms: 5,
            };
            let record = encode_profile(&req, Some(&bytes));
            // The body is logged as received, not encoded again.
            assert_eq!(
                ProfileRecord::decode(record.as_slice()).unwrap().pprof,
                bytes
            );
            assert_eq!(
                decode_profile(&record, &limits).unwrap().profile,
                req.profile
            );
            let encoded = encode_profile(&req, None);
            assert_eq!(
                ProfileRecord::decode(encoded.as_slice())
                    .unwrap()
                    .time_nanos,
                None
            );
            assert_eq!(
                decode_profile(&encoded, &limits).unwrap().profile,
                req.profile
            );
        }
        // A record of an earlier version (no time field): the body's time.
        let old = ProfileRecord {
            pprof: bytes.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(decode_profile(&old, &limits).unwrap().profile, original);
    }
}
