//! Shared work: a querier with peers (`--peers`) splits each merge into
//! units, sends each unit to one peer, and merges the partial results.
//!
//! # Units
//! A unit is a set of blocks that must be read together: within a stream,
//! blocks that overlap in time are replicas (or a compaction and a
//! rewrite) whose profiles are counted once per series and timestamp, so a
//! stream's blocks are cut into runs connected by overlap ([`units`]);
//! blocks of different streams, and runs of one stream, hold different
//! profiles and add up. A unit's key is its smallest block id.
//!
//! # Who reads a unit
//! Rendezvous hashing ([`rendezvous`]): the unit goes to the peer with the
//! highest `xxh3(peer name, unit key)` among those not backing off
//! (below). Every querier given the same peer
//! list sends a block to the same peer while the block's unit is
//! unchanged, so that peer's cache holds it; adding or removing a peer
//! moves only the units it wins or held. The peer whose name is this
//! querier's own (`--advertise`) is read in process. Units holding an
//! ingester's live data are always read here (the peers' live data is
//! their own).
//!
//! # Work stealing
//! One worker per peer (plus this querier when it is not among them)
//! takes units from its own queue first, then from the back of the
//! longest other queue, then runs again a unit that another worker has
//! held for longer than three times the median unit so far (at least
//! [`MIN_SLOW`]): the first answer wins. A peer that fails once leaves the
//! query; its units go to the others, and later queries leave it out for
//! [`PEER_BACKOFF`] (hashing the units among the others). The query fails
//! only when every worker failed.
//!
//! # Invariant
//! The answer is the same whatever the peers and however the units were
//! shared: each unit's partial is counted once, and [`Partial::merge`] is
//! associative and commutative.

use super::wire::{self, UnitRequest};
use super::ListedBlock;
use crate::engine::peer::PARTIAL_ROUTE;
use crate::engine::{Partial, QueryError, TimeRange};
use crate::model::{Matcher, StorageError};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a querier waits for one peer's answer to one unit.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of one peer's answer a querier takes: 1 GiB.
pub const MAX_ANSWER_BYTES: u64 = 1 << 30;
/// A unit held for less than this is never run a second time.
pub const MIN_SLOW: Duration = Duration::from_millis(250);
/// How long a peer that failed a unit is left out of the next queries.
pub const PEER_BACKOFF: Duration = Duration::from_secs(10);

/// A querier that reads units for others.
pub trait Peer: Send + Sync + std::fmt::Debug {
    /// Its name in the peer list (a URL).
    fn name(&self) -> &str;
    /// The answer ([`wire::encode_partial`]) to an encoded request.
    fn partial(&self, request: &[u8]) -> Result<Vec<u8>, StorageError>;
}

/// A peer over HTTP (`POST <base>/internal/v1/partial`).
#[derive(Debug)]
pub struct HttpPeer {
    base: String,
    agent: ureq::Agent,
}

impl HttpPeer {
    /// The peer at `base` (`http://host:port`).
    pub fn new(base: &str) -> HttpPeer {
        HttpPeer {
            base: base.trim_end_matches('/').to_string(),
            agent: super::http_agent(PEER_TIMEOUT),
        }
    }
}

impl Peer for HttpPeer {
    fn name(&self) -> &str {
        &self.base
    }

    fn partial(&self, request: &[u8]) -> Result<Vec<u8>, StorageError> {
        let url = format!("{}{PARTIAL_ROUTE}", self.base);
        let failed = |e: String| StorageError::new("peer", format!("POST {url}: {e}"));
        let mut res = self
            .agent
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .send(request)
            .map_err(|e| failed(e.to_string()))?;
        let status = res.status().as_u16();
        let mut body = Vec::new();
        res.body_mut()
            .as_reader()
            .take(MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| failed(format!("reading the body: {e}")))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(failed(format!("status {status}: {}", text.trim())));
        }
        if body.len() as u64 > MAX_ANSWER_BYTES {
            return Err(failed(format!("answer over {MAX_ANSWER_BYTES} bytes")));
        }
        Ok(body)
    }
}

/// A peer in this process, reached through the wire format all the same
/// (for tests and benchmarks).
#[derive(Debug)]
pub struct InProcessPeer {
    /// Its name in the peer list.
    pub name: String,
    /// The querier that reads its units.
    pub work: Arc<dyn crate::engine::peer::PeerWork>,
}

impl Peer for InProcessPeer {
    fn name(&self) -> &str {
        &self.name
    }

    fn partial(&self, request: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.work
            .partial_bytes(request)
            .map_err(|e| StorageError::new("peer", format!("{}: {e}", self.name)))
    }
}

/// Blocks read together (see the module docs).
#[derive(Debug, Clone)]
pub struct Unit {
    /// The blocks, with their replicas.
    pub blocks: Vec<ListedBlock>,
    /// The smallest block id: what rendezvous hashing places.
    pub key: String,
    /// True when a block is an ingester's live data (read here only).
    pub local_only: bool,
}

/// The units of the blocks of `listed` that overlap `range`, each stream's
/// blocks cut into runs connected by overlap; sorted by key.
pub fn units(listed: &[ListedBlock], range: TimeRange) -> Vec<Unit> {
    let mut streams: BTreeMap<Option<u32>, Vec<&ListedBlock>> = BTreeMap::new();
    for l in listed {
        if l.block.overlaps(range.start, range.end) {
            streams
                .entry(l.replica.map(|r| r.stream))
                .or_default()
                .push(l);
        }
    }
    let mut out = Vec::new();
    for (stream, mut blocks) in streams {
        if stream.is_none() {
            // Blocks without a replica are never deduplicated: one each.
            out.extend(blocks.into_iter().map(|b| unit_of(vec![b.clone()])));
            continue;
        }
        blocks.sort_by(|a, b| {
            (a.block.min_time(), a.block.max_time(), &a.descriptor.id).cmp(&(
                b.block.min_time(),
                b.block.max_time(),
                &b.descriptor.id,
            ))
        });
        let mut run: Vec<ListedBlock> = Vec::new();
        let mut end = i64::MIN;
        for b in blocks {
            // A block's range ends before its max_time.
            if !run.is_empty() && b.block.min_time() >= end {
                out.push(unit_of(std::mem::take(&mut run)));
            }
            end = if run.is_empty() {
                b.block.max_time()
            } else {
                end.max(b.block.max_time())
            };
            run.push(b.clone());
        }
        if !run.is_empty() {
            out.push(unit_of(run));
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn unit_of(blocks: Vec<ListedBlock>) -> Unit {
    let key = blocks
        .iter()
        .map(|b| b.descriptor.id.as_str())
        .min()
        .unwrap_or_default()
        .to_string();
    let local_only = blocks
        .iter()
        .any(|b| b.descriptor.id.starts_with(super::live::LIVE_PREFIX));
    Unit {
        blocks,
        key,
        local_only,
    }
}

/// The index of the peer of `names` that reads the unit `key`: the highest
/// `xxh3(name, 0, key)` (ties, which need equal names, to the first).
pub fn rendezvous(names: &[&str], key: &str) -> Option<usize> {
    let score = |name: &str| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        h.digest()
    };
    let mut best: Option<(u64, usize)> = None;
    for (i, n) in names.iter().enumerate() {
        let s = score(n);
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, i));
        }
    }
    best.map(|b| b.1)
}

/// Reads a unit in this process.
pub type LocalRead = Arc<dyn Fn(&Unit) -> Result<Partial, QueryError> + Send + Sync>;

/// Who a worker is.
#[derive(Clone)]
enum Worker {
    Local,
    Remote(Arc<dyn Peer>),
}

/// What a shared query did, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShareStats {
    /// Units read in this process.
    pub local: u64,
    /// Units a peer answered.
    pub remote: u64,
    /// Units a worker took from another's queue.
    pub stolen: u64,
    /// Units run a second time because their first worker was slow.
    pub speculative: u64,
    /// Units a worker failed (the worker then left the query).
    pub failures: u64,
    /// Units this querier read for its peers.
    pub answered: u64,
}

impl ShareStats {
    /// Adds `o`'s counts to these.
    pub fn add(&mut self, o: &ShareStats) {
        self.local += o.local;
        self.remote += o.remote;
        self.stolen += o.stolen;
        self.speculative += o.speculative;
        self.failures += o.failures;
        self.answered += o.answered;
    }
}

/// The schedule of one query (see the module docs).
struct Schedule {
    /// Per worker, the units (indexes) it is to read, its own first.
    queues: Vec<VecDeque<usize>>,
    /// Per unit: the workers holding it now, and since when.
    running: BTreeMap<usize, (Instant, Vec<usize>)>,
    /// Per unit, the first answer.
    results: Vec<Option<Partial>>,
    /// Units without an answer.
    remaining: usize,
    /// Per worker: it failed a unit (or backs off) and takes no more.
    failed: Vec<bool>,
    /// Per unit: it holds live data, only the local worker reads it.
    local_only: Vec<bool>,
    /// The worker that reads in this process.
    local_worker: usize,
    /// How long each answered unit took.
    durations: Vec<Duration>,
    /// Set when a unit failed on every worker: the query's error.
    error: Option<QueryError>,
    stats: ShareStats,
    /// Workers that failed a unit in this query.
    newly_failed: Vec<usize>,
}

impl Schedule {
    fn slow_after(&self) -> Duration {
        if self.durations.is_empty() {
            return MIN_SLOW * 8;
        }
        let mut d = self.durations.clone();
        d.sort_unstable();
        (d[d.len() / 2] * 3).max(MIN_SLOW)
    }

    fn may_run(&self, w: usize, unit: usize) -> bool {
        self.results[unit].is_none() && (!self.local_only[unit] || w == self.local_worker)
    }

    /// The next unit worker `w` runs, if any now.
    fn next(&mut self, w: usize) -> Option<usize> {
        while let Some(u) = self.queues[w].pop_front() {
            if self.may_run(w, u) {
                return Some(u);
            }
        }
        // Steal from the back of the longest queue.
        let mut victims: Vec<usize> = (0..self.queues.len()).filter(|&v| v != w).collect();
        victims.sort_by_key(|&v| std::cmp::Reverse(self.queues[v].len()));
        for v in victims {
            let pos = (0..self.queues[v].len())
                .rev()
                .find(|&i| self.may_run(w, self.queues[v][i]));
            if let Some(i) = pos {
                self.stats.stolen += 1;
                return self.queues[v].remove(i);
            }
        }
        // Run again a unit held too long by another worker.
        let slow = self.slow_after();
        let now = Instant::now();
        let pick = self
            .running
            .iter()
            .filter(|(&u, (since, ws))| {
                ws.len() < 2
                    && !ws.contains(&w)
                    && self.may_run(w, u)
                    && now.duration_since(*since) > slow
            })
            .min_by_key(|(_, (since, _))| *since)
            .map(|(&u, _)| u);
        if pick.is_some() {
            self.stats.speculative += 1;
        }
        pick
    }

    fn finish(
        &mut self,
        w: usize,
        unit: usize,
        started: Instant,
        got: Result<Partial, QueryError>,
    ) {
        if let Some((_, ws)) = self.running.get_mut(&unit) {
            ws.retain(|&x| x != w);
            if ws.is_empty() {
                self.running.remove(&unit);
            }
        }
        match got {
            Ok(p) => {
                if self.results[unit].is_none() {
                    self.results[unit] = Some(p);
                    self.remaining -= 1;
                    self.durations.push(started.elapsed());
                    if w == self.local_worker {
                        self.stats.local += 1;
                    } else {
                        self.stats.remote += 1;
                    }
                }
            }
            Err(e) => {
                self.stats.failures += 1;
                self.failed[w] = true;
                self.newly_failed.push(w);
                if self.results[unit].is_none() && !self.running.contains_key(&unit) {
                    // Back in the queue of a worker still in the query.
                    let to = if self.local_only[unit] {
                        Some(self.local_worker).filter(|&l| !self.failed[l])
                    } else {
                        (0..self.failed.len()).find(|&x| !self.failed[x])
                    };
                    match to {
                        Some(to) => self.queues[to].push_front(unit),
                        None => self.error = Some(e),
                    }
                }
            }
        }
    }

    fn over(&self) -> bool {
        self.remaining == 0 || self.error.is_some()
    }
}

/// The peers a querier shares merges with.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// The peer list, the same on every querier of the group.
    pub peers: Vec<Arc<dyn Peer>>,
    /// This querier's own name in the list (read in process), if it is
    /// there.
    pub own_name: Option<String>,
    /// Peers that failed a unit, left out until then.
    pub backoff: Arc<Mutex<BTreeMap<String, Instant>>>,
}

impl Peers {
    /// True when merges are shared.
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The merge over `units` of the profiles in `range` of the series
    /// `matchers` select, shared between the peers (see the module docs);
    /// `local` reads a unit here.
    pub fn run(
        &self,
        units: Vec<Unit>,
        matchers: &[Matcher],
        range: TimeRange,
        local: LocalRead,
    ) -> Result<(Partial, ShareStats), QueryError> {
        if units.is_empty() {
            return Ok((Partial::default(), ShareStats::default()));
        }
        // Workers: the peers (this querier's own entry read in process),
        // then this querier when it is not among them.
        let mut workers: Vec<Worker> = self
            .peers
            .iter()
            .map(|p| {
                if Some(p.name()) == self.own_name.as_deref() {
                    Worker::Local
                } else {
                    Worker::Remote(Arc::clone(p))
                }
            })
            .collect();
        let local_worker = match workers.iter().position(|w| matches!(w, Worker::Local)) {
            Some(i) => i,
            None => {
                workers.push(Worker::Local);
                workers.len() - 1
            }
        };
        // The peers not backing off, and the worker of each.
        let now = Instant::now();
        let up: Vec<usize> = {
            let mut backoff = self.backoff.lock();
            backoff.retain(|_, until| *until > now);
            (0..self.peers.len())
                .filter(|&i| i == local_worker || !backoff.contains_key(self.peers[i].name()))
                .collect()
        };
        let names: Vec<&str> = up.iter().map(|&i| self.peers[i].name()).collect();
        let mut queues = vec![VecDeque::new(); workers.len()];
        for (i, u) in units.iter().enumerate() {
            let w = if u.local_only {
                local_worker
            } else {
                rendezvous(&names, &u.key).map_or(local_worker, |k| up[k])
            };
            queues[w].push_back(i);
        }
        let skipped: Vec<bool> = (0..workers.len())
            .map(|w| w < self.peers.len() && w != local_worker && !up.contains(&w))
            .collect();
        let n = units.len();
        let state = Arc::new((
            Mutex::new(Schedule {
                queues,
                running: BTreeMap::new(),
                results: vec![None; n],
                remaining: n,
                failed: skipped,
                local_only: units.iter().map(|u| u.local_only).collect(),
                local_worker,
                durations: Vec::new(),
                error: None,
                stats: ShareStats::default(),
                newly_failed: Vec::new(),
            }),
            Condvar::new(),
        ));
        let units = Arc::new(units);
        let matchers: Arc<Vec<Matcher>> = Arc::new(matchers.to_vec());
        for (w, worker) in workers.into_iter().enumerate() {
            let (st, units, matchers, local) = (
                Arc::clone(&state),
                Arc::clone(&units),
                Arc::clone(&matchers),
                Arc::clone(&local),
            );
            let spawned = std::thread::Builder::new()
                .name("querier-share".into())
                .spawn(move || work(w, worker, &st, &units, &matchers, range, &local));
            if let Err(e) = spawned {
                let (lock, cv) = &*state;
                let mut s = lock.lock();
                s.failed[w] = true;
                if s.failed.iter().all(|f| *f) {
                    s.error = Some(QueryError::Storage(StorageError::new("querier", e)));
                }
                cv.notify_all();
            }
        }
        let (lock, cv) = &*state;
        let mut s = lock.lock();
        while !s.over() {
            cv.wait(&mut s);
        }
        let until = Instant::now() + PEER_BACKOFF;
        let mut backoff = self.backoff.lock();
        for w in s.newly_failed.drain(..) {
            if let Some(p) = self.peers.get(w).filter(|_| w != local_worker) {
                backoff.insert(p.name().to_string(), until);
            }
        }
        drop(backoff);
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        let mut out = Partial::default();
        for p in s.results.iter_mut() {
            if let Some(p) = p.take() {
                out.merge(p);
            }
        }
        Ok((out, s.stats))
    }
}

/// Worker `w`'s loop (see the module docs).
fn work(
    w: usize,
    worker: Worker,
    state: &(Mutex<Schedule>, Condvar),
    units: &[Unit],
    matchers: &[Matcher],
    range: TimeRange,
    local: &LocalRead,
) {
    let (lock, cv) = state;
    loop {
        let unit = {
            let mut s = lock.lock();
            loop {
                if s.over() || s.failed[w] {
                    return;
                }
                if let Some(u) = s.next(w) {
                    let e = s
                        .running
                        .entry(u)
                        .or_insert_with(|| (Instant::now(), Vec::new()));
                    e.1.push(w);
                    break u;
                }
                // Wake up to look for slow units even when nothing ends.
                cv.wait_for(&mut s, MIN_SLOW / 4);
            }
        };
        let started = Instant::now();
        let got = match &worker {
            Worker::Local => local(&units[unit]),
            Worker::Remote(peer) => remote(peer.as_ref(), &units[unit], matchers, range),
        };
        if let Err(e) = &got {
            let who = match &worker {
                Worker::Local => "this querier",
                Worker::Remote(p) => p.name(),
            };
            tracing::warn!(peer = who, unit = %units[unit].key, "a unit of a merge failed; the others take it: {e}");
        }
        let mut s = lock.lock();
        s.finish(w, unit, started, got);
        cv.notify_all();
    }
}

/// Unit `u` read by `peer`.
fn remote(
    peer: &dyn Peer,
    u: &Unit,
    matchers: &[Matcher],
    range: TimeRange,
) -> Result<Partial, QueryError> {
    let request = UnitRequest {
        matchers: matchers.to_vec(),
        range,
        blocks: u
            .blocks
            .iter()
            .map(|b| {
                let replica = b.replica.unwrap_or(crate::tsdb::reader::Replica {
                    stream: u32::MAX,
                    rank: 0,
                });
                (b.descriptor.id.clone(), replica)
            })
            .collect(),
    };
    let answer = peer.partial(&wire::encode_request(&request))?;
    wire::decode_partial(&answer).map_err(|e| {
        QueryError::Storage(StorageError::new(
            "peer",
            format!("{}: the answer is bad: {e}", peer.name()),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_units_a_peer_wins_or_held() {
        let keys: Vec<String> = (0..3000).map(|i| format!("{i}_{}_abc", i * 7)).collect();
        let three = ["http://a:1", "http://b:1", "http://c:1"];
        let four = ["http://a:1", "http://b:1", "http://c:1", "http://d:1"];
        let owner = |names: &[&str], k: &str| names[rendezvous(names, k).unwrap()].to_string();
        let mut moved = 0;
        let mut per_peer = BTreeMap::<String, usize>::new();
        for k in &keys {
            let (before, after) = (owner(&three, k), owner(&four, k));
            *per_peer.entry(before.clone()).or_default() += 1;
            if before != after {
                // Only to the new peer.
                assert_eq!(after, "http://d:1");
                moved += 1;
            }
            // Removing b moves only b's units; the order of the list
            // does not matter.
            let without_b = ["http://c:1", "http://a:1"];
            if before != "http://b:1" {
                assert_eq!(owner(&without_b, k), before);
            }
        }
        // About a quarter moves to the fourth peer; each of three holds
        // about a third.
        assert!((600..900).contains(&moved), "{moved}");
        for (p, n) in per_peer {
            assert!((850..1150).contains(&n), "{p}: {n}");
        }
        assert_eq!(rendezvous(&[], "k"), None);
    }
}
