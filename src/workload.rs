//! A deterministic workload: a stream of [`IngestRequest`]s built from real
//! profiles, for comparing storage backends on the identical input.
//!
//! Shape (see [`WorkloadSpec`]): `targets` target slots × the profile kinds
//! (one real pprof each) × `scrapes` scrapes, `interval_ms` apart. Slot `n`
//! scrapes at `start_ms + s·interval_ms + n·interval_ms/(targets+1)`, so the
//! stream is in time order (timestamps never decrease) and no two requests
//! of one series share a timestamp. Each request is the kind's profile with:
//! - every sample's values jittered by up to ±`jitter_permille`‰;
//! - each sample kept with probability `stack_keep_percent`%, decided anew
//!   every `stack_flip_scrapes` scrapes per (target, sample), so stacks appear
//!   and disappear over time;
//! - with `label_cardinality > 0`, a pprof string label `label_key` on every
//!   sample, one of `label_cardinality` values (`v0`, `v1`, …), chosen per
//!   (target, sample) — so each profile type gets up to that many series per
//!   target;
//! - with `span_percent > 0`, a pprof string label `span_id` with a fresh
//!   value (16 hex digits, a new one per target, scrape and sample) on that
//!   share of the samples, as tracing integrations attach the request's
//!   span;
//! - writer labels `job="workload"`, `kind="<kind name>"`,
//!   `instance="t<slot>-g<generation>"`. With `lifetime_scrapes = Some(L)`, a
//!   slot's target lives L scrapes and is then replaced by the next
//!   generation (a new instance, so new series: churn); slots are staggered,
//!   so about `targets/L` targets are replaced per scrape.
//!
//! Determinism: every random choice is a pure function (SplitMix64) of the
//! seed and the choice's coordinates, so the same spec and base profiles
//! give the same stream on every platform and version, and any request can
//! be computed without the ones before it.

use crate::ingest::IngestRequest;
use crate::model::labels::Labels;
use crate::pprof::{DecodeLimits, PprofError};
use crate::proto::pprof::{Label, Profile};
use std::path::Path;

/// What to generate (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// Seed of every random choice.
    pub seed: u64,
    /// Concurrent target slots.
    pub targets: usize,
    /// Scrapes per slot.
    pub scrapes: usize,
    /// Time between a slot's scrapes (ms).
    pub interval_ms: i64,
    /// Time of the first scrape (ms).
    pub start_ms: i64,
    /// Values are jittered by up to ± this many per mille.
    pub jitter_permille: u32,
    /// Probability (%) that a sample is present in a scrape.
    pub stack_keep_percent: u32,
    /// Presence is redrawn every this many scrapes (≥ 1).
    pub stack_flip_scrapes: usize,
    /// Name of the pprof string label added to samples.
    pub label_key: String,
    /// Distinct values of that label; 0 adds no label.
    pub label_cardinality: usize,
    /// Scrapes a target lives before a new one replaces it; `None`: forever.
    pub lifetime_scrapes: Option<usize>,
    /// Share (%) of the samples that carry a fresh `span_id`; 0: none.
    pub span_percent: u32,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            seed: 0x5eed,
            targets: 10,
            scrapes: 60,
            interval_ms: 10_000,
            start_ms: 1_700_000_000_000,
            jitter_permille: 200,
            stack_keep_percent: 80,
            stack_flip_scrapes: 6,
            label_key: "endpoint".into(),
            label_cardinality: 4,
            lifetime_scrapes: Some(30),
            span_percent: 0,
        }
    }
}

impl WorkloadSpec {
    /// Requests the stream yields with `kinds` profile kinds.
    pub fn requests(&self, kinds: usize) -> usize {
        self.targets * self.scrapes * kinds
    }

    /// The instance label of slot `n` at scrape `s`.
    pub fn instance(&self, n: usize, s: usize) -> String {
        format!("t{n}-g{}", self.generation(n, s))
    }

    /// The generation of slot `n` at scrape `s` (0 without churn). Slot `n`
    /// is staggered by `n·L/targets` scrapes.
    pub fn generation(&self, n: usize, s: usize) -> usize {
        match self.lifetime_scrapes {
            Some(l) if l > 0 => (s + n * l / self.targets.max(1)) / l,
            _ => 0,
        }
    }

    /// The timestamp (ms) of slot `n`'s scrape `s`.
    pub fn timestamp(&self, n: usize, s: usize) -> i64 {
        self.start_ms
            + s as i64 * self.interval_ms
            + (n as i64 * self.interval_ms) / (self.targets as i64 + 1)
    }
}

/// One profile kind: a name (the `kind` label) and its base profile.
#[derive(Debug, Clone)]
pub struct Kind {
    /// The `kind` label's value.
    pub name: String,
    /// The real profile every request of this kind starts from.
    pub profile: Profile,
}

/// The kinds [`Kind::testdata`] loads: a CPU profile with many stacks and
/// pprof labels, a heap profile (four sample types) and an fgprof profile,
/// relative to `testdata/pprof`. Per profile: 2,746, 4,661 and 175 samples.
pub const TESTDATA_KINDS: &[(&str, &str)] = &[
    ("cpu", "parca/cpu_labels.pb.gz"),
    ("heap", "parca/alloc_objects.pb.gz"),
    ("fgprof", "parca/fgprof.pb.gz"),
];

/// Smaller kinds of the same shapes, for workloads of many profiles: a CPU
/// profile with pprof labels (121 samples), a heap profile of a small
/// service (54 samples, four sample types) and the same fgprof profile.
pub const SMALL_KINDS: &[(&str, &str)] = &[
    ("cpu", "parca/labels.pb.gz"),
    ("heap", "parca/1644509272337470000.pb.gz"),
    ("fgprof", "parca/fgprof.pb.gz"),
];

impl Kind {
    /// Loads the first `k` of [`TESTDATA_KINDS`] from `dir`
    /// (`testdata/pprof`). Their pprof string labels are kept (they add
    /// series of their own, as real ones would).
    pub fn testdata(dir: &Path, k: usize) -> Result<Vec<Kind>, WorkloadError> {
        Kind::load(dir, TESTDATA_KINDS, k)
    }

    /// Loads the first `k` of `list` (kind name, path relative to `dir`).
    pub fn load(dir: &Path, list: &[(&str, &str)], k: usize) -> Result<Vec<Kind>, WorkloadError> {
        list.iter()
            .take(k)
            .map(|(name, rel)| {
                let path = dir.join(rel);
                let bytes = std::fs::read(&path).map_err(|source| WorkloadError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Ok(Kind {
                    name: (*name).to_string(),
                    profile: crate::pprof::decode(&bytes, &DecodeLimits::default())?,
                })
            })
            .collect()
    }
}

/// Errors of loading a workload's profiles.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A profile file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A profile file is not a valid pprof.
    #[error(transparent)]
    Pprof(#[from] PprofError),
}

/// SplitMix64 of `x`: a stateless, well-mixed 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Index of `s` in `table`, added at the end when absent.
fn intern(table: &mut Vec<String>, s: &str) -> i64 {
    match table.iter().rposition(|t| t == s) {
        Some(i) => i as i64,
        None => {
            table.push(s.to_string());
            (table.len() - 1) as i64
        }
    }
}

/// A random 64-bit value for a choice at coordinates `parts`.
fn draw(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed), |h, p| mix(h ^ p))
}

// Tags separating the kinds of choices.
const KEEP: u64 = 1;
const JITTER: u64 = 2;
const LABEL: u64 = 3;
const SPAN: u64 = 4;

/// The stream of requests, in time order (see the module docs).
#[derive(Debug, Clone)]
pub struct Workload {
    spec: WorkloadSpec,
    kinds: Vec<Kind>,
    /// Next (scrape, slot, kind).
    pos: (usize, usize, usize),
}

impl Workload {
    /// The stream of `spec` over `kinds`.
    pub fn new(spec: WorkloadSpec, kinds: Vec<Kind>) -> Workload {
        Workload {
            spec,
            kinds,
            pos: (0, 0, 0),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// The request of slot `n`, kind `k` at scrape `s`.
    pub fn request(&self, s: usize, n: usize, k: usize) -> IngestRequest {
        let spec = &self.spec;
        let kind = &self.kinds[k];
        let generation = spec.generation(n, s);
        let target = ((n as u64) << 32) | generation as u64;
        let epoch = (s / spec.stack_flip_scrapes.max(1)) as u64;
        let mut p = kind.profile.clone();
        let label = (spec.label_cardinality > 0).then(|| {
            let key = p.string_table.len() as i64;
            p.string_table.push(spec.label_key.clone());
            let first_value = p.string_table.len() as i64;
            for v in 0..spec.label_cardinality {
                p.string_table.push(format!("v{v}"));
            }
            (key, first_value)
        });
        let span_key = (spec.span_percent > 0).then(|| intern(&mut p.string_table, "span_id"));
        let samples = std::mem::take(&mut p.sample);
        for (i, mut sample) in samples.into_iter().enumerate() {
            let i = i as u64;
            let keep = draw(spec.seed, &[KEEP, k as u64, target, i, epoch]) % 100;
            if keep >= u64::from(spec.stack_keep_percent) {
                continue;
            }
            let j = i64::from(spec.jitter_permille);
            for (t, v) in sample.value.iter_mut().enumerate() {
                if j > 0 {
                    let r = draw(
                        spec.seed,
                        &[JITTER, k as u64, target, i, s as u64, t as u64],
                    );
                    let factor = (r % (2 * j as u64 + 1)) as i64 - j;
                    *v = v.saturating_add(v.saturating_mul(factor) / 1000);
                }
            }
            if let Some(key) = span_key {
                let r = draw(spec.seed, &[SPAN, k as u64, target, i, s as u64]);
                if r % 100 < u64::from(spec.span_percent) {
                    let str = p.string_table.len() as i64;
                    p.string_table.push(format!("{:016x}", r >> 8));
                    sample.label.push(Label {
                        key,
                        str,
                        ..Default::default()
                    });
                }
            }
            if let Some((key, first)) = label {
                let r = draw(spec.seed, &[LABEL, k as u64, target, i]);
                // The sample may already carry this key: ingest keeps the
                // first value, so put ours first.
                sample.label.insert(
                    0,
                    Label {
                        key,
                        str: first + (r % spec.label_cardinality as u64) as i64,
                        ..Default::default()
                    },
                );
            }
            p.sample.push(sample);
        }
        p.time_nanos = spec.timestamp(n, s).saturating_mul(1_000_000);
        IngestRequest {
            name: None,
            labels: Labels::from_pairs([
                ("job", "workload".to_string()),
                ("kind", kind.name.clone()),
                ("instance", spec.instance(n, s)),
            ]),
            delta: None,
            profile: p,
            received_at_ms: spec.timestamp(n, s),
        }
    }
}

impl Iterator for Workload {
    type Item = IngestRequest;

    fn next(&mut self) -> Option<IngestRequest> {
        let (s, n, k) = self.pos;
        if s >= self.spec.scrapes || self.spec.targets == 0 || self.kinds.is_empty() {
            return None;
        }
        let req = self.request(s, n, k);
        self.pos = if k + 1 < self.kinds.len() {
            (s, n, k + 1)
        } else if n + 1 < self.spec.targets {
            (s, n + 1, 0)
        } else {
            (s + 1, 0, 0)
        };
        Some(req)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (s, n, k) = self.pos;
        let per_scrape = self.spec.targets * self.kinds.len();
        let done = s * per_scrape + n * self.kinds.len() + k;
        let left = self.spec.requests(self.kinds.len()).saturating_sub(done);
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::encode;
    use std::collections::{BTreeMap, BTreeSet};

    fn kinds() -> Vec<Kind> {
        Kind::testdata(Path::new("testdata/pprof"), 2).unwrap()
    }

    fn small() -> WorkloadSpec {
        WorkloadSpec {
            targets: 4,
            scrapes: 12,
            lifetime_scrapes: Some(5),
            label_cardinality: 3,
            ..Default::default()
        }
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<Vec<u8>> = Workload::new(small(), kinds())
            .map(|r| encode(&r.profile))
            .collect();
        let b: Vec<Vec<u8>> = Workload::new(small(), kinds())
            .map(|r| encode(&r.profile))
            .collect();
        assert_eq!(a.len(), small().requests(2));
        assert_eq!(a, b);
        let other = WorkloadSpec { seed: 7, ..small() };
        let c: Vec<Vec<u8>> = Workload::new(other, kinds())
            .map(|r| encode(&r.profile))
            .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn stream_is_in_time_order_and_series_timestamps_increase() {
        let mut last = i64::MIN;
        let mut per_target: BTreeMap<(String, String), i64> = BTreeMap::new();
        for r in Workload::new(small(), kinds()) {
            let t = r.profile.time_nanos / 1_000_000;
            assert!(t >= last);
            last = t;
            let key = (
                r.labels.get("instance").unwrap().to_string(),
                r.labels.get("kind").unwrap().to_string(),
            );
            if let Some(prev) = per_target.insert(key, t) {
                assert!(t > prev);
            }
        }
    }

    #[test]
    fn label_cardinality_holds() {
        let spec = small();
        let mut values = BTreeSet::new();
        for r in Workload::new(spec.clone(), kinds()) {
            let p = &r.profile;
            let key = p
                .string_table
                .iter()
                .rposition(|s| *s == spec.label_key)
                .unwrap() as i64;
            for s in &p.sample {
                let first = s.label.iter().find(|l| l.key == key).unwrap();
                values.insert(p.string_table[first.str as usize].clone());
            }
        }
        assert_eq!(values.len(), spec.label_cardinality, "{values:?}");
        let none = WorkloadSpec {
            label_cardinality: 0,
            ..small()
        };
        let base: usize = kinds().iter().map(|k| k.profile.string_table.len()).sum();
        let got: usize = Workload::new(none, kinds())
            .take(2)
            .map(|r| r.profile.string_table.len())
            .sum();
        assert_eq!(got, base, "no label strings added");
    }

    #[test]
    fn targets_churn_after_their_lifetime() {
        let spec = small();
        let l = spec.lifetime_scrapes.unwrap();
        // instance → scrapes it appears in.
        let mut seen: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let per_scrape = spec.targets * 2;
        for (i, r) in Workload::new(spec.clone(), kinds()).enumerate() {
            let inst = r.labels.get("instance").unwrap().to_string();
            seen.entry(inst).or_default().insert(i / per_scrape);
        }
        for (inst, scrapes) in &seen {
            let (lo, hi) = (scrapes.first().unwrap(), scrapes.last().unwrap());
            assert!(hi - lo < l, "{inst} lives {lo}..={hi}");
            assert_eq!(scrapes.len(), hi - lo + 1, "{inst}: consecutive");
        }
        // Every scrape has exactly `targets` live instances.
        for s in 0..spec.scrapes {
            let live = seen.values().filter(|v| v.contains(&s)).count();
            assert_eq!(live, spec.targets);
        }
        // 12 scrapes of lifetime 5 over 4 staggered slots: every slot is
        // replaced at least twice.
        assert!(seen.len() >= spec.targets * 3, "{}", seen.len());
        let forever = WorkloadSpec {
            lifetime_scrapes: None,
            ..small()
        };
        let n: BTreeSet<String> = Workload::new(forever, kinds())
            .map(|r| r.labels.get("instance").unwrap().to_string())
            .collect();
        assert_eq!(n.len(), spec.targets);
    }

    #[test]
    fn stacks_appear_and_disappear_and_values_jitter() {
        let spec = small();
        let w = Workload::new(spec.clone(), kinds());
        let base = &w.kinds[0].profile;
        let counts: Vec<usize> = (0..spec.scrapes)
            .map(|s| w.request(s, 0, 0).profile.sample.len())
            .collect();
        assert!(counts.iter().all(|c| *c < base.sample.len()), "{counts:?}");
        let distinct: BTreeSet<_> = counts.iter().collect();
        assert!(distinct.len() > 1, "presence changes over time: {counts:?}");
        let a = w.request(0, 0, 0);
        let b = w.request(1, 0, 0);
        let va: i64 = a.profile.sample.iter().map(|s| s.value[0]).sum();
        let vb: i64 = b.profile.sample.iter().map(|s| s.value[0]).sum();
        assert_ne!(va, vb);
    }
}
