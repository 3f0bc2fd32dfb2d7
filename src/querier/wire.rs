//! The peer protocol's messages (`proto/peer.proto`, `docs/format/peer.md`):
//! a [`UnitRequest`] a coordinating querier sends, and the [`Partial`] a
//! peer answers with.
//!
//! A partial travels with its stacks unresolved: the sums name stacks by
//! their index in a block symbols section ([`crate::tsdb::block::symbols`])
//! that holds every stack once, with what it reaches; the receiver derives
//! each stack's content id from its fields and resolves it from that
//! section alone. So a peer's answer is checked as a block's symbols are,
//! and the same stack from two peers merges by content id.
//!
//! Both decoders take untrusted bytes (a request from the network; an
//! answer from a peer that may be another version or broken): every
//! error names what is wrong, nothing panics, and allocation is bounded by
//! the input's size.

use crate::engine::{Partial, TimeRange};
use crate::model::{Labels, MatchOp, Matcher, ProfileType, Resolver, StackId, SymbolSource};
use crate::proto::peer as pb;
use crate::tsdb::block::{symbols, BlockSymbols};
use crate::tsdb::reader::Replica;
use prost::Message;
use rustc_hash::FxHashMap;

/// The version of the messages this build speaks.
pub const VERSION: u32 = 1;
/// Most blocks one request names.
pub const MAX_UNIT_BLOCKS: usize = 100_000;
/// Longest block id a request may name.
const MAX_ID_LEN: usize = 256;

/// One unit of a merge: read every profile in `range` of the series
/// `matchers` select, in `blocks` (each with its replica).
#[derive(Debug, Clone)]
pub struct UnitRequest {
    /// The selector.
    pub matchers: Vec<Matcher>,
    /// The inclusive time range.
    pub range: TimeRange,
    /// The unit's blocks (bucket ids) and their replicas.
    pub blocks: Vec<(String, Replica)>,
}

fn op_code(op: MatchOp) -> u32 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Regex => 2,
        MatchOp::NotRegex => 3,
    }
}

/// `r` as bytes.
pub fn encode_request(r: &UnitRequest) -> Vec<u8> {
    pb::PartialRequest {
        version: VERSION,
        matchers: r
            .matchers
            .iter()
            .map(|m| pb::Matcher {
                name: m.name.clone(),
                op: op_code(m.op),
                value: m.value.clone(),
            })
            .collect(),
        start: r.range.start,
        end: r.range.end,
        blocks: r
            .blocks
            .iter()
            .map(|(id, rep)| pb::UnitBlock {
                id: id.clone(),
                stream: rep.stream,
                rank: rep.rank,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// True for a bucket block id a request may name: not empty, at most
/// 256 bytes of ASCII letters, digits, `-` and `_` (no path separator).
pub fn valid_block_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Decodes and checks a request.
pub fn decode_request(b: &[u8]) -> Result<UnitRequest, String> {
    let r = pb::PartialRequest::decode(b).map_err(|e| format!("undecodable request: {e}"))?;
    if r.version != VERSION {
        return Err(format!(
            "request version {}, this node speaks {VERSION}",
            r.version
        ));
    }
    if r.blocks.len() > MAX_UNIT_BLOCKS {
        return Err(format!(
            "{} blocks in one request, at most {MAX_UNIT_BLOCKS}",
            r.blocks.len()
        ));
    }
    let range = TimeRange::new(r.start, r.end).map_err(|e| e.to_string())?;
    let mut matchers = Vec::with_capacity(r.matchers.len());
    for m in r.matchers {
        let op = match m.op {
            0 => MatchOp::Equal,
            1 => MatchOp::NotEqual,
            2 => MatchOp::Regex,
            3 => MatchOp::NotRegex,
            other => return Err(format!("matcher operator {other}")),
        };
        matchers.push(Matcher::new(op, m.name, m.value).map_err(|e| e.to_string())?);
    }
    let mut blocks = Vec::with_capacity(r.blocks.len());
    for ub in r.blocks {
        if !valid_block_id(&ub.id) {
            return Err(format!("block id {:?}", truncate(&ub.id)));
        }
        blocks.push((
            ub.id,
            Replica {
                stream: ub.stream,
                rank: ub.rank,
            },
        ));
    }
    Ok(UnitRequest {
        matchers,
        range,
        blocks,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn labels_pb<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<pb::Label> {
    pairs
        .map(|(n, v)| pb::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// `p` (its `stacks` not needed: ids resolve from `source`) as bytes.
/// Errors when `source` lacks a stack the sums name.
pub fn encode_partial(
    p: &Partial,
    source: &dyn SymbolSource,
) -> Result<Vec<u8>, crate::model::SymbolError> {
    let ids: Vec<StackId> = p.stack_ids().into_iter().collect();
    let index: FxHashMap<StackId, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    let symbols = symbols::encode_flat(source, &ids)?;
    let sums = p
        .sums
        .iter()
        .map(|(pprof, acc)| {
            let mut pairs: Vec<(u32, i64)> = acc.iter().map(|(id, v)| (index[id], *v)).collect();
            pairs.sort_unstable();
            pb::Sums {
                pprof_labels: labels_pb(pprof.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                stacks: pairs.iter().map(|p| p.0).collect(),
                values: pairs.iter().map(|p| p.1).collect(),
            }
        })
        .collect();
    let mut reads: Vec<(&(u64, i64), &i64)> = p.reads.iter().collect();
    reads.sort_unstable();
    Ok(pb::PartialResponse {
        version: VERSION,
        types: p.types.iter().map(|t| t.to_string()).collect(),
        sums,
        symbols,
        read_origins: reads.iter().map(|r| r.0 .0).collect(),
        read_times: reads.iter().map(|r| r.0 .1).collect(),
        read_durations: reads.iter().map(|r| *r.1).collect(),
        last: p.last.as_ref().map(|(labels, ts, period)| pb::Last {
            labels: labels_pb(labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
            time: *ts,
            period: *period,
        }),
    }
    .encode_to_vec())
}

/// Decodes and checks a peer's answer into a [`Partial`] with every stack
/// resolved.
pub fn decode_partial(b: &[u8]) -> Result<Partial, String> {
    let r = pb::PartialResponse::decode(b).map_err(|e| format!("undecodable answer: {e}"))?;
    if r.version != VERSION {
        return Err(format!(
            "answer version {}, this node speaks {VERSION}",
            r.version
        ));
    }
    let mut out = Partial::default();
    for t in &r.types {
        out.types
            .insert(ProfileType::parse(t).map_err(|e| format!("profile type {t:?}: {e}"))?);
    }
    let table = BlockSymbols::decode(&r.symbols).map_err(|e| format!("symbols: {e}"))?;
    let ids: Vec<StackId> = table.stack_ids().collect();
    for s in r.sums {
        if s.stacks.len() != s.values.len() {
            return Err(format!(
                "sums: {} stacks, {} values",
                s.stacks.len(),
                s.values.len()
            ));
        }
        let mut pprof: Vec<(String, String)> = s
            .pprof_labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        pprof.sort();
        let acc = out.sums.entry(pprof).or_default();
        for (i, v) in s.stacks.into_iter().zip(s.values) {
            let id = *ids
                .get(i as usize)
                .ok_or_else(|| format!("sums: stack {i} of {}", ids.len()))?;
            let x = acc.entry(id).or_insert(0);
            *x = x.wrapping_add(v);
        }
    }
    let n = r.read_origins.len();
    if r.read_times.len() != n || r.read_durations.len() != n {
        return Err(format!(
            "reads: {n} origins, {} times, {} durations",
            r.read_times.len(),
            r.read_durations.len()
        ));
    }
    for ((origin, ts), d) in r
        .read_origins
        .into_iter()
        .zip(r.read_times)
        .zip(r.read_durations)
    {
        let e = out.reads.entry((origin, ts)).or_insert(d);
        *e = (*e).max(d);
    }
    if let Some(last) = r.last {
        let labels: Labels = Labels::from_pairs(last.labels.into_iter().map(|l| (l.name, l.value)));
        out.last = Some((labels, last.time, last.period));
    }
    let mut resolver = Resolver::new(vec![&table as &dyn SymbolSource]);
    for id in out.stack_ids() {
        let stack = resolver.stack(id).map_err(|e| format!("symbols: {e}"))?;
        out.stacks.insert(id, stack);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let r = UnitRequest {
            matchers: vec![
                Matcher::new(MatchOp::Equal, "__name__", "cpu").unwrap(),
                Matcher::new(MatchOp::NotRegex, "pod", "a.*").unwrap(),
            ],
            range: TimeRange::new(-5, 99).unwrap(),
            blocks: vec![("01ABC".into(), Replica { stream: 2, rank: 1 })],
        };
        let back = decode_request(&encode_request(&r)).unwrap();
        assert_eq!(back.matchers, r.matchers);
        assert_eq!(back.range, r.range);
        assert_eq!(back.blocks, r.blocks);
        for bad_id in ["", "../x", "a/b", "live:http://x"] {
            let mut b = r.clone();
            b.blocks[0].0 = bad_id.into();
            assert!(decode_request(&encode_request(&b)).is_err(), "{bad_id}");
        }
        let mut p = pb::PartialRequest::decode(&encode_request(&r)[..]).unwrap();
        p.version = 2;
        assert!(decode_request(&p.encode_to_vec())
            .unwrap_err()
            .contains("version"));
        p.version = VERSION;
        p.end = -6;
        assert!(decode_request(&p.encode_to_vec()).is_err());
        assert!(decode_request(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn an_answer_naming_a_stack_it_lacks_is_refused() {
        let bad = pb::PartialResponse {
            version: VERSION,
            sums: vec![pb::Sums {
                pprof_labels: vec![],
                stacks: vec![3],
                values: vec![1],
            }],
            ..Default::default()
        };
        let e = decode_partial(&bad.encode_to_vec()).unwrap_err();
        assert!(e.contains("stack 3 of 0"), "{e}");
        let uneven = pb::PartialResponse {
            version: VERSION,
            read_origins: vec![1],
            ..Default::default()
        };
        assert!(decode_partial(&uneven.encode_to_vec()).is_err());
        let empty = decode_partial(
            &pb::PartialResponse {
                version: VERSION,
                ..Default::default()
            }
            .encode_to_vec(),
        )
        .unwrap();
        assert_eq!(empty, Partial::default());
    }
}
