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
/// is encoded again).
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
    Ok(IngestRequest {
        name: (!r.name.is_empty()).then_some(r.name),
        labels,
        delta: match r.delta {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        },
        profile: crate::pprof::decode(&r.pprof, limits)?,
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
}
