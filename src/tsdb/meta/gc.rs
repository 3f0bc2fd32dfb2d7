//! Garbage collection of the meta store: mark and sweep from the live stacks.
//!
//! Nothing in the meta store refers to a stack, so the stacks the caller
//! still stores samples for are the roots:
//!
//! - **Mark.** Live locations are those of the live stacks; live functions
//!   and mappings are those of the live locations. Values are read from the
//!   by-id cache, or else from sled without filling the cache: each record
//!   that holds an uncached live entity is read once (an entity read alone
//!   costs its whole record).
//! - **Sweep**, one phase per level, in this order: stacks, then locations,
//!   then functions and mappings. Every record of the kind is read, and
//!   every entity in it whose id is not live is deleted: the record is
//!   written again without it under the same number (or removed when
//!   nothing in it lives), with the kind's counter, in one sled batch (the
//!   records of about [`GC_BATCH`] deletions each), and only once the batch
//!   is applied are they removed from the caches. sled is flushed after
//!   every phase.
//!
//! # Why a crash midway leaves a sound store
//! The store's invariant is that every id stored in a value resolves: a
//! stack's locations, a location's mapping and functions all exist. Phase 1
//! deletes stacks, which no value refers to. Phase 2 starts after phase 1 is
//! flushed, so the only stacks left (on disk as in memory) are live ones, and
//! they refer only to live locations, which phase 2 keeps. Likewise phase 3
//! starts when only live locations are left. So at every point, and after a
//! crash at any point, no entity refers to a deleted one; what a crash leaves
//! is garbage only (entities nothing live reaches), which the next collection
//! deletes. Each batch carries its kind's counter, so the count check at open
//! holds after a crash between batches too. The flushes between phases make
//! this independent of how sled orders batches that are not yet durable.
//!
//! A deleted entity's id is gone from the id cache, so ingesting it again
//! stores it anew, under the same content id.

use super::record;
use super::store::{Entity, Table};
use super::{corrupt, MetaCounts, MetaError, MetaStore};
use crate::model::StackId;
use rustc_hash::FxHashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most entities deleted in one sled batch: bounds the batch's memory and
/// how long sled holds it, while keeping the number of batches small.
pub const GC_BATCH: usize = 4096;

/// What [`MetaStore::collect_garbage`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    /// Entities left, per kind (the counts after the collection).
    pub kept: MetaCounts,
    /// Entities deleted, per kind.
    pub deleted: MetaCounts,
    /// Time spent marking (reading the live stacks and locations).
    pub mark: Duration,
    /// Time of the whole collection, mark, sweep and flushes included.
    pub duration: Duration,
}

/// The sweep phases, in their order. Tests stop after one of them to check
/// what a crash would leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    // Only tests stop after the first phase.
    #[cfg_attr(not(test), allow(dead_code))]
    Stacks,
    Locations,
    FunctionsAndMappings,
}

impl MetaStore {
    /// Deletes every stack not in `live_stacks`, and every location, function
    /// and mapping that no kept stack reaches, from sled and from the
    /// caches. Returns what was kept and deleted.
    ///
    /// Contract (the caller's):
    /// - No ingest and no query resolution runs during the call (the store
    ///   calls it under its exclusive lock). Creation is serialized with the
    ///   call, but an ingest could still look up an id in the cache that the
    ///   sweep is about to delete and store it in a new entity or sample.
    /// - `live_stacks` holds every stack id still referenced by stored
    ///   samples (and only ids this store returned). A referenced stack left
    ///   out is deleted, and resolving it later gives
    ///   [`MetaError::NotFound`].
    ///
    /// After the call, ingesting an entity that was deleted creates it again
    /// (with the same content id), and it is deduplicated as before. Errors: a live
    /// stack, or a location of one, that cannot be read
    /// ([`MetaError::NotFound`], [`MetaError::Corrupt`]) stops the collection
    /// before anything is deleted; a sled error during the sweep stops it with
    /// the store still sound (see the [module docs](self)), and a later call
    /// finishes the job.
    pub fn collect_garbage(&self, live_stacks: &FxHashSet<StackId>) -> Result<GcStats, MetaError> {
        self.collect_garbage_until(live_stacks, Phase::FunctionsAndMappings)
    }

    /// [`MetaStore::collect_garbage`], sweeping only up to phase `last`.
    pub(super) fn collect_garbage_until(
        &self,
        live_stacks: &FxHashSet<StackId>,
        last: Phase,
    ) -> Result<GcStats, MetaError> {
        let start = Instant::now();
        let _guard = self.create.lock();
        // The sweep reads and deletes in sled: every queued creation first.
        self.sync_writes()?;

        // Mark.
        let mut live_locations: FxHashSet<Uuid> = FxHashSet::default();
        self.visit(&self.stacks, live_stacks.iter().map(|s| s.0), |s| {
            live_locations.extend(s.locations.iter().map(|l| l.0))
        })?;
        let mut live_functions: FxHashSet<Uuid> = FxHashSet::default();
        let mut live_mappings: FxHashSet<Uuid> = FxHashSet::default();
        self.visit(&self.locations, live_locations.iter().copied(), |l| {
            live_mappings.extend(l.mapping.map(|m| m.0));
            live_functions.extend(l.lines.iter().map(|x| x.function.0));
        })?;
        let mark = start.elapsed();

        // Sweep, stacks first: see the module docs for why this order.
        let mut deleted = MetaCounts {
            stacks: self.sweep(&self.stacks, |id| live_stacks.contains(&StackId(*id)))?,
            ..MetaCounts::default()
        };
        self.db().flush()?;
        if last >= Phase::Locations {
            deleted.locations = self.sweep(&self.locations, |id| live_locations.contains(id))?;
            self.db().flush()?;
        }
        if last >= Phase::FunctionsAndMappings {
            deleted.functions = self.sweep(&self.functions, |id| live_functions.contains(id))?;
            deleted.mappings = self.sweep(&self.mappings, |id| live_mappings.contains(id))?;
            self.db().flush()?;
        }
        let stats = GcStats {
            kept: self.counts(),
            deleted,
            mark,
            duration: start.elapsed(),
        };
        tracing::debug!(?stats, "meta store garbage collected");
        Ok(stats)
    }

    /// Calls `f` with the entity of every id in `ids` (each id once), from
    /// the cache or else from its record without caching it (a collection
    /// reads every live entity; caching them all would fill memory with
    /// values no query asked for). The uncached ones are read record by
    /// record, each record once (reading an entity costs its whole record).
    /// [`MetaError::NotFound`] for an id not stored.
    fn visit<E: Entity>(
        &self,
        t: &Table<E>,
        ids: impl Iterator<Item = Uuid>,
        mut f: impl FnMut(&E),
    ) -> Result<(), MetaError> {
        let mut wanted: FxHashSet<Uuid> = FxHashSet::default();
        let mut records: Vec<u64> = Vec::new();
        {
            let known = t.ids.read();
            let cache = t.values.read();
            for id in ids {
                if let Some((e, _)) = cache.get(&id) {
                    f(&e);
                    continue;
                }
                let number = *known
                    .get(&id)
                    .ok_or(MetaError::NotFound { kind: E::KIND, id })?;
                if wanted.insert(id) {
                    records.push(number);
                }
            }
        }
        records.sort_unstable();
        records.dedup();
        let db = self.db();
        let mut decoder = record::Decoder::new();
        let mut found = 0;
        for number in records {
            let v = db.get(record::key(E::RECORDS, number))?.ok_or_else(|| {
                MetaError::Corrupt(format!("{}: record {number} is missing", E::KIND))
            })?;
            for e in record::entries(decoder.decode(self.framing, &v)?) {
                let (id, value) = e.map_err(corrupt(E::KIND))?;
                if wanted.contains(&id) {
                    f(&E::decode(value)?);
                    found += 1;
                }
            }
        }
        if found != wanted.len() {
            return Err(MetaError::Corrupt(format!(
                "{}: {} entities are not in the records their ids name",
                E::KIND,
                wanted.len() - found
            )));
        }
        Ok(())
    }

    /// Deletes every entity of `t` whose id is not live; returns how many.
    /// Every record of the kind is read; one with dead entries is written
    /// again under its number without them, or removed when none is left.
    /// A sled batch holds the changed records of at most about
    /// [`GC_BATCH`] deletions and sets the counter; the caches follow once
    /// it is applied, so they always match sled.
    fn sweep<E: Entity>(
        &self,
        t: &Table<E>,
        is_live: impl Fn(&Uuid) -> bool,
    ) -> Result<u64, MetaError> {
        let db = self.db();
        let mut decoder = record::Decoder::new();
        let mut encoder = record::Encoder::new(self.framing);
        let mut deleted = 0;
        let mut batch = sled::Batch::default();
        let mut dead: Vec<Uuid> = Vec::new();
        let apply = |mut batch: sled::Batch, dead: &mut Vec<Uuid>| -> Result<(), MetaError> {
            // The id cache is exactly the records' entries (the queue is
            // drained), and every dead id is in it (nothing else runs
            // during a collection), so this is the count after the batch.
            let left = t.ids.read().len().saturating_sub(dead.len()) as u64;
            batch.insert(E::COUNT_KEY, left.to_be_bytes().as_slice());
            db.apply_batch(batch)?;
            let mut ids = t.ids.write();
            let mut values = t.values.write();
            for id in dead.drain(..) {
                ids.remove(&id);
                values.remove(&id);
            }
            t.count.store(left, Ordering::Relaxed);
            Ok(())
        };
        // Read as the sweep goes: a batch changes only records already
        // passed, which sled's iterator does not return again.
        for kv in db.scan_prefix(E::RECORDS) {
            let (k, v) = kv?;
            let v = decoder.decode(self.framing, &v)?;
            // Most records of a collection that deletes little hold no dead
            // entity: those are only read.
            let mut any_dead = false;
            for e in record::entries(v) {
                if !is_live(&e.map_err(corrupt(E::KIND))?.0) {
                    any_dead = true;
                    break;
                }
            }
            if !any_dead {
                continue;
            }
            let mut kept = Vec::new();
            for e in record::entries(v) {
                let (id, value) = e.map_err(corrupt(E::KIND))?;
                if is_live(&id) {
                    record::push(&mut kept, id, value);
                } else {
                    dead.push(id);
                }
            }
            if kept.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, encoder.encode(kept));
            }
            if dead.len() >= GC_BATCH {
                deleted += dead.len() as u64;
                apply(std::mem::take(&mut batch), &mut dead)?;
            }
        }
        if !dead.is_empty() {
            deleted += dead.len() as u64;
            apply(batch, &mut dead)?;
        }
        if deleted > 0 {
            // Give the memory back: a collection often deletes most entries.
            t.ids.write().shrink_to_fit();
            t.values.write().shrink_to_fit();
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    //! The collection checked against a slow, obvious model: dump everything
    //! sled holds, compute what the live stacks reach by walking the dump,
    //! and compare the store after the collection (sled, caches, public API,
    //! and sled again after a reopen) with the dump restricted to that.

    use super::*;
    use crate::ingest::{IngestRequest, LabelLimits};
    use crate::model::keys::*;
    use crate::model::labels::Labels;
    use crate::model::{Function, Line, Location, LocationId, Mapping, NumLabel, Stacktrace};
    use crate::pprof::DecodeLimits;
    use crate::proto::pprof::Profile;
    use crate::tsdb::append::append as ingest;
    use crate::tsdb::head::Head;
    use proptest::prelude::*;
    use rustc_hash::FxHashMap;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Everything sled holds, decoded.
    #[derive(Debug, Clone, PartialEq, Default)]
    struct Dump {
        mappings: BTreeMap<Uuid, Mapping>,
        functions: BTreeMap<Uuid, Function>,
        locations: BTreeMap<Uuid, Location>,
        stacks: BTreeMap<Uuid, Stacktrace>,
        /// Every entry of the by-key index of the previous layout (there
        /// must be none), prefix included.
        by_key: BTreeMap<Vec<u8>, Uuid>,
        /// The persisted counters.
        counts: MetaCounts,
    }

    /// Every entity in the kind's records (each once), and none left
    /// under the previous layout's by-id prefix.
    fn values<E: Entity>(db: &sled::Db, framing: record::Framing) -> BTreeMap<Uuid, E> {
        assert_eq!(db.scan_prefix(E::BY_ID).count(), 0);
        let mut out = BTreeMap::new();
        let mut decoder = record::Decoder::new();
        for kv in db.scan_prefix(E::RECORDS) {
            let (_, v) = kv.unwrap();
            for e in record::entries(decoder.decode(framing, &v).unwrap()) {
                let (id, value) = e.unwrap();
                assert!(out.insert(id, E::decode(value).unwrap()).is_none());
            }
        }
        out
    }

    fn counter(db: &sled::Db, key: &[u8]) -> u64 {
        db.get(key)
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
    }

    fn dump(m: &MetaStore) -> Dump {
        m.sync_writes().unwrap();
        let db = m.db();
        let mut by_key = BTreeMap::new();
        for p in [
            MAPPING_BY_KEY,
            FUNCTION_BY_KEY,
            LOCATION_BY_KEY,
            STACK_BY_KEY,
        ] {
            for kv in db.scan_prefix(p) {
                let (k, v) = kv.unwrap();
                by_key.insert(k.to_vec(), Uuid::from_slice(&v).unwrap());
            }
        }
        Dump {
            mappings: values(&db, m.framing),
            functions: values(&db, m.framing),
            locations: values(&db, m.framing),
            stacks: values(&db, m.framing),
            by_key,
            counts: MetaCounts {
                mappings: counter(&db, Mapping::COUNT_KEY),
                functions: counter(&db, Function::COUNT_KEY),
                locations: counter(&db, Location::COUNT_KEY),
                stacks: counter(&db, Stacktrace::COUNT_KEY),
            },
        }
    }

    fn counts_of(d: &Dump) -> MetaCounts {
        MetaCounts {
            mappings: d.mappings.len() as u64,
            functions: d.functions.len() as u64,
            locations: d.locations.len() as u64,
            stacks: d.stacks.len() as u64,
        }
    }

    /// The model: `pre` restricted to what `live` reaches.
    fn expected(pre: &Dump, live: &FxHashSet<StackId>) -> Dump {
        let mut e = Dump::default();
        for (id, s) in &pre.stacks {
            if live.contains(&StackId(*id)) {
                e.stacks.insert(*id, s.clone());
            }
        }
        for s in e.stacks.values() {
            for l in &s.locations {
                e.locations.insert(l.0, pre.locations[&l.0].clone());
            }
        }
        for l in e.locations.values() {
            if let Some(mid) = l.mapping {
                e.mappings.insert(mid.0, pre.mappings[&mid.0].clone());
            }
            for line in &l.lines {
                let f = line.function.0;
                e.functions.insert(f, pre.functions[&f].clone());
            }
        }
        e.counts = counts_of(&e);
        e
    }

    /// Every value's id is the content id of its key.
    fn ids_are_content_ids<E: Entity>(values: &BTreeMap<Uuid, E>) {
        for (id, e) in values {
            let mut k = Vec::new();
            e.key(&mut k);
            assert_eq!(*id, content_id(&k), "{} id is not its content id", E::KIND);
        }
    }

    fn cache_matches<E: Entity>(t: &Table<E>, ids: &BTreeMap<Uuid, E>) {
        let cache: BTreeSet<Uuid> = t.ids.read().keys().copied().collect();
        let disk: BTreeSet<Uuid> = ids.keys().copied().collect();
        assert_eq!(cache, disk, "{}: id cache differs from sled", E::KIND);
        for id in t.values.read().ids() {
            assert!(
                ids.contains_key(id),
                "{} {id} cached but not in sled",
                E::KIND
            );
        }
        assert_eq!(t.count.load(Ordering::Relaxed), ids.len() as u64);
    }

    /// The store's invariants: every stored id resolves, every id is the
    /// content id of its value, no by-key entry is left, the counters are
    /// right, and the caches match sled.
    fn assert_sound(m: &MetaStore, d: &Dump) {
        for s in d.stacks.values() {
            for l in &s.locations {
                assert!(d.locations.contains_key(&l.0), "stack → missing location");
            }
        }
        for l in d.locations.values() {
            if let Some(mid) = l.mapping {
                assert!(
                    d.mappings.contains_key(&mid.0),
                    "location → missing mapping"
                );
            }
            for line in &l.lines {
                assert!(
                    d.functions.contains_key(&line.function.0),
                    "location → missing function"
                );
            }
        }
        ids_are_content_ids(&d.mappings);
        ids_are_content_ids(&d.functions);
        ids_are_content_ids(&d.locations);
        ids_are_content_ids(&d.stacks);
        assert!(d.by_key.is_empty(), "by-key entries left in sled");
        assert_eq!(d.counts, counts_of(d));
        assert_eq!(m.counts(), d.counts);
        cache_matches(&m.mappings, &d.mappings);
        cache_matches(&m.functions, &d.functions);
        cache_matches(&m.locations, &d.locations);
        cache_matches(&m.stacks, &d.stacks);
    }

    /// Every stack of `stacks` resolves through the public API to what `d`
    /// holds, down to its functions and mappings.
    fn assert_resolves(m: &MetaStore, d: &Dump, stacks: &FxHashSet<StackId>) {
        for s in stacks {
            let st = m.stack(*s).unwrap();
            assert_eq!(*st, d.stacks[&s.0]);
            for l in &st.locations {
                let loc = m.location(*l).unwrap();
                assert_eq!(*loc, d.locations[&l.0]);
                if let Some(mid) = loc.mapping {
                    assert_eq!(*m.mapping(mid).unwrap(), d.mappings[&mid.0]);
                }
                for line in &loc.lines {
                    assert_eq!(
                        *m.function(line.function).unwrap(),
                        d.functions[&line.function.0]
                    );
                }
            }
        }
    }

    /// What deleted ids give now: `NotFound`, from the cache as from sled.
    fn assert_gone(m: &MetaStore, pre: &Dump, post: &Dump) {
        for id in pre.stacks.keys().filter(|id| !post.stacks.contains_key(id)) {
            assert!(matches!(
                m.stack(StackId(*id)),
                Err(MetaError::NotFound { .. })
            ));
        }
        for id in pre
            .locations
            .keys()
            .filter(|id| !post.locations.contains_key(id))
        {
            assert!(matches!(
                m.location(LocationId(*id)),
                Err(MetaError::NotFound { .. })
            ));
        }
    }

    // ------------------------------------------------------ real profiles --

    /// Go CPU (three successive Parca agent profiles, which share most
    /// entities), Go heap (dd-trace-go, Parca's alloc_objects) and the pprof
    /// sample CPU profile.
    const CORPUS: &[&str] = &[
        "parca/1644509272337470000.pb.gz",
        "parca/1644509275338070000.pb.gz",
        "parca/1644509278338696000.pb.gz",
        "dd-trace-go/heap.pprof",
        "parca/fib.pb.gz",
        "pprof/sample.cpu",
        "parca/alloc_objects.pb.gz",
    ];

    fn load(name: &str) -> Profile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/pprof")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        crate::pprof::decode(&bytes, &DecodeLimits::default()).unwrap()
    }

    fn corpus() -> Vec<Profile> {
        CORPUS.iter().map(|n| load(n)).collect()
    }

    /// Ingests `p` into a fresh head over `m` and returns the stacks it
    /// stored (every one, since each series holds one profile and zero sums
    /// are not stored).
    fn ingest_profile(m: &MetaStore, p: &Profile) -> FxHashSet<StackId> {
        let head = Head::new(100_000);
        let req = IngestRequest {
            name: None,
            labels: Labels::from_pairs([("job", "gc-test")]),
            delta: None,
            profile: p.clone(),
            received_at_ms: 1_000,
        };
        ingest(
            &head,
            m,
            &LabelLimits::default(),
            &req,
            &|_, _| false,
            &mut || Ok(()),
        )
        .unwrap();
        let mut acc = FxHashMap::default();
        for s in head.select(&[]) {
            s.merge_into(i64::MIN, i64::MAX, &mut acc);
        }
        acc.into_keys().collect()
    }

    /// A stack with its ids replaced by what they stand for, to compare
    /// stacks by content.
    type Resolved = (
        Vec<(Option<Mapping>, u64, bool, Vec<(Function, i64, i64)>)>,
        Vec<NumLabel>,
    );

    fn resolved(m: &MetaStore, s: StackId) -> Resolved {
        let st = m.stack(s).unwrap();
        let frames = st
            .locations
            .iter()
            .map(|l| {
                let loc = m.location(*l).unwrap();
                (
                    loc.mapping.map(|id| (*m.mapping(id).unwrap()).clone()),
                    loc.address,
                    loc.is_folded,
                    loc.lines
                        .iter()
                        .map(|x| ((*m.function(x.function).unwrap()).clone(), x.line, x.column))
                        .collect(),
                )
            })
            .collect();
        (frames, st.num_labels.clone())
    }

    fn resolved_set(m: &MetaStore, stacks: &FxHashSet<StackId>) -> BTreeSet<String> {
        // Debug strings: the parts have no Ord, and equality is all we need.
        stacks
            .iter()
            .map(|s| format!("{:?}", resolved(m, *s)))
            .collect()
    }

    /// Ingests the corpus into `m`; returns each profile's stacks and a live
    /// set: every other profile's stacks, plus every third stack (in id
    /// order) of profile 1, so profiles sharing entities are split too.
    fn fill(m: &MetaStore, profiles: &[Profile]) -> (Vec<FxHashSet<StackId>>, FxHashSet<StackId>) {
        let per: Vec<FxHashSet<StackId>> = profiles.iter().map(|p| ingest_profile(m, p)).collect();
        let mut live: FxHashSet<StackId> = FxHashSet::default();
        for s in per.iter().step_by(2) {
            live.extend(s);
        }
        let mut p1: Vec<StackId> = per[1].iter().copied().collect();
        p1.sort();
        live.extend(p1.into_iter().step_by(3));
        (per, live)
    }

    #[test]
    fn collects_exactly_what_no_live_stack_reaches() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(dir.path()).unwrap();
        let profiles = corpus();
        let (per, live) = fill(&m, &profiles);
        let pre = dump(&m);
        assert_sound(&m, &pre);
        // Put dead entities in the by-id cache too: they must leave it.
        for s in per.iter().skip(1).step_by(2).flatten() {
            resolved(&m, *s);
        }

        let stats = m.collect_garbage(&live).unwrap();
        let post = dump(&m);
        let exp = expected(&pre, &live);
        assert_eq!(post, exp);
        assert_sound(&m, &post);
        assert_resolves(&m, &post, &live);
        assert_gone(&m, &pre, &post);
        assert_eq!(stats.kept, m.counts());
        let pc = pre.counts;
        let deleted = MetaCounts {
            mappings: pc.mappings - post.counts.mappings,
            functions: pc.functions - post.counts.functions,
            locations: pc.locations - post.counts.locations,
            stacks: pc.stacks - post.counts.stacks,
        };
        assert_eq!(stats.deleted, deleted);
        // The split is not trivial: every kind but mappings (Go binaries
        // share few) loses entities and keeps some.
        assert!(deleted.stacks > 0 && deleted.locations > 0 && deleted.functions > 0);
        assert!(post.counts.stacks > 0 && post.counts.locations > 0);
        eprintln!("before {pc:?}\n{stats:?}");

        // A second collection with the same roots finds nothing.
        let again = m.collect_garbage(&live).unwrap();
        assert_eq!(again.deleted, MetaCounts::default());
        assert_eq!(dump(&m), exp);
    }

    #[test]
    fn reopened_store_after_collection_holds_exactly_the_live_entities() {
        let dir = tempfile::tempdir().unwrap();
        let profiles = corpus();
        let (pre, live) = {
            let m = MetaStore::open(dir.path()).unwrap();
            let (_, live) = fill(&m, &profiles);
            let pre = dump(&m);
            m.collect_garbage(&live).unwrap();
            (pre, live)
        };
        let m = MetaStore::open(dir.path()).unwrap();
        let post = dump(&m);
        assert_eq!(post, expected(&pre, &live));
        // The id caches are rebuilt from sled: only the kept entries.
        assert_sound(&m, &post);
        assert_resolves(&m, &post, &live);
        assert_gone(&m, &pre, &post);
    }

    #[test]
    fn deleted_entities_are_recreated_by_ingest_and_dedupe_again() {
        let dir = tempfile::tempdir().unwrap();
        let profiles = corpus();
        let m = MetaStore::open(dir.path()).unwrap();
        let per: Vec<FxHashSet<StackId>> = profiles.iter().map(|p| ingest_profile(&m, p)).collect();
        let before = m.counts();
        let contents: Vec<BTreeSet<String>> = per.iter().map(|s| resolved_set(&m, s)).collect();
        let old: FxHashSet<StackId> = per.iter().flatten().copied().collect();
        let live = per[0].clone();
        m.collect_garbage(&live).unwrap();

        // The live profile again: same stack ids, nothing created.
        let kept = m.counts();
        assert_eq!(ingest_profile(&m, &profiles[0]), per[0]);
        assert_eq!(m.counts(), kept);

        // The others: their stacks are back under the same content ids,
        // with the same contents.
        let mut again = Vec::new();
        for (i, p) in profiles.iter().enumerate().skip(1) {
            let s = ingest_profile(&m, p);
            assert_eq!(s, per[i], "content ids are stable across a collection");
            assert!(s.iter().all(|id| old.contains(id)));
            assert_eq!(resolved_set(&m, &s), contents[i]);
            again.push(s);
        }
        assert_eq!(m.counts(), before);

        // And they dedupe again: the same ids, nothing created.
        for (i, p) in profiles.iter().enumerate().skip(1) {
            assert_eq!(ingest_profile(&m, p), again[i - 1]);
        }
        assert_eq!(m.counts(), before);
        let d = dump(&m);
        assert_sound(&m, &d);
        drop(m);

        let m = MetaStore::open(dir.path()).unwrap();
        let d = dump(&m);
        assert_sound(&m, &d);
        for (i, s) in again.iter().enumerate() {
            assert_eq!(resolved_set(&m, s), contents[i + 1]);
        }
    }

    #[test]
    fn all_live_deletes_nothing_and_none_live_empties_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let profiles = corpus();
        {
            let m = MetaStore::open(dir.path()).unwrap();
            let per: Vec<FxHashSet<StackId>> =
                profiles.iter().map(|p| ingest_profile(&m, p)).collect();
            let all: FxHashSet<StackId> = per.iter().flatten().copied().collect();
            let ingested = dump(&m);
            // Ingest resolves every entity of a pprof, also those no stored
            // stack uses (locations of zero samples, unused table entries):
            // the first collection deletes those, and no stack.
            let stats = m.collect_garbage(&all).unwrap();
            eprintln!(
                "ingested {:?}; unreferenced {:?}",
                ingested.counts, stats.deleted
            );
            assert_eq!(stats.deleted.stacks, 0);
            let pre = dump(&m);
            assert_eq!(pre, expected(&ingested, &all));
            let stats = m.collect_garbage(&all).unwrap();
            assert_eq!(stats.deleted, MetaCounts::default());
            assert_eq!(stats.kept, pre.counts);
            assert_eq!(dump(&m), pre);

            let stats = m.collect_garbage(&FxHashSet::default()).unwrap();
            assert_eq!(stats.deleted, pre.counts);
            assert_eq!(stats.kept, MetaCounts::default());
            let post = dump(&m);
            assert_eq!(post, Dump::default());
            assert_sound(&m, &post);
            assert!(
                m.cache_bytes() < 1024,
                "caches hold {} bytes",
                m.cache_bytes()
            );
            assert_gone(&m, &pre, &post);
        }
        let m = MetaStore::open(dir.path()).unwrap();
        assert_eq!(m.counts(), MetaCounts::default());
        assert_eq!(dump(&m), Dump::default());
        // An emptied store fills again.
        let s = ingest_profile(&m, &profiles[0]);
        let d = dump(&m);
        assert_sound(&m, &d);
        assert_resolves(&m, &d, &s);
    }

    #[test]
    fn unknown_live_stack_stops_the_collection_before_any_deletion() {
        let m = MetaStore::temporary().unwrap();
        let mut live = ingest_profile(&m, &load("parca/fib.pb.gz"));
        ingest_profile(&m, &load("pprof/sample.cpu"));
        let pre = dump(&m);
        live.insert(StackId(Uuid::from_u128(42)));
        assert!(matches!(
            m.collect_garbage(&live),
            Err(MetaError::NotFound {
                kind: "stacktrace",
                ..
            })
        ));
        assert_eq!(dump(&m), pre);
        assert_sound(&m, &pre);
    }

    /// A crash after any phase leaves a sound store on disk (every stored id
    /// resolves, counters match), and the next collection finishes the job.
    #[test]
    fn a_collection_cut_after_any_phase_leaves_a_sound_store() {
        let profiles = corpus();
        for last in [Phase::Stacks, Phase::Locations] {
            let dir = tempfile::tempdir().unwrap();
            let (pre, live) = {
                let m = MetaStore::open(dir.path()).unwrap();
                let (_, live) = fill(&m, &profiles);
                let pre = dump(&m);
                m.collect_garbage_until(&live, last).unwrap();
                (pre, live)
            };
            let m = MetaStore::open(dir.path()).unwrap();
            let d = dump(&m);
            assert_sound(&m, &d);
            assert_resolves(&m, &d, &live);
            let stats = m.collect_garbage(&live).unwrap();
            assert_eq!(stats.deleted.stacks, 0, "{last:?}");
            assert_eq!(dump(&m), expected(&pre, &live), "{last:?}");
        }
    }

    // --------------------------------------------------- property test --

    /// A random meta store built through the insertion APIs: `maps`
    /// mappings, `funcs` functions, locations as (mapping index or none,
    /// function indexes), stacks as location indexes; and which stacks are
    /// live.
    #[derive(Debug, Clone)]
    struct Graph {
        maps: usize,
        funcs: usize,
        locations: Vec<(Option<usize>, Vec<usize>)>,
        stacks: Vec<(Vec<usize>, bool)>,
    }

    fn graph() -> impl Strategy<Value = Graph> {
        (1usize..5, 1usize..8)
            .prop_flat_map(|(maps, funcs)| {
                let loc = (
                    proptest::option::of(0..maps),
                    proptest::collection::vec(0..funcs, 0..3),
                );
                (
                    Just(maps),
                    Just(funcs),
                    proptest::collection::vec(loc, 1..12),
                )
            })
            .prop_flat_map(|(maps, funcs, locations)| {
                let n = locations.len();
                let stack = (proptest::collection::vec(0..n, 0..5), any::<bool>());
                (
                    Just(maps),
                    Just(funcs),
                    Just(locations),
                    proptest::collection::vec(stack, 0..16),
                )
            })
            .prop_map(|(maps, funcs, locations, stacks)| Graph {
                maps,
                funcs,
                locations,
                stacks,
            })
    }

    fn build(m: &MetaStore, g: &Graph) -> FxHashSet<StackId> {
        let maps = m
            .mapping_ids(
                (0..g.maps)
                    .map(|i| Mapping {
                        memory_limit: 4096,
                        filename: format!("/bin/m{i}"),
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        let funcs = m
            .function_ids(
                (0..g.funcs)
                    .map(|i| Function {
                        name: format!("f{i}"),
                        ..Default::default()
                    })
                    .collect(),
            )
            .unwrap();
        let locs = m
            .location_ids(
                g.locations
                    .iter()
                    .enumerate()
                    .map(|(i, (mapping, fs))| Location {
                        mapping: mapping.map(|x| maps[x]),
                        address: i as u64,
                        is_folded: false,
                        lines: fs
                            .iter()
                            .map(|f| Line {
                                function: funcs[*f],
                                line: 1,
                                column: 0,
                            })
                            .collect(),
                    })
                    .collect(),
            )
            .unwrap();
        let stacks = m
            .stack_ids(
                g.stacks
                    .iter()
                    .map(|(ls, _)| Stacktrace {
                        locations: ls.iter().map(|l| locs[*l]).collect(),
                        num_labels: Vec::new(),
                    })
                    .collect(),
            )
            .unwrap();
        stacks
            .iter()
            .zip(&g.stacks)
            .filter(|(_, (_, live))| *live)
            .map(|(id, _)| *id)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn collection_matches_the_model(g in graph(), cold in any::<bool>()) {
            let m = MetaStore::temporary().unwrap();
            let live = build(&m, &g);
            let pre = dump(&m);
            if cold {
                // The mark then reads every live entity from its record,
                // as after a reopen.
                m.mappings.values.write().clear();
                m.functions.values.write().clear();
                m.locations.values.write().clear();
                m.stacks.values.write().clear();
            }
            let stats = m.collect_garbage(&live).unwrap();
            let post = dump(&m);
            prop_assert_eq!(&post, &expected(&pre, &live));
            assert_sound(&m, &post);
            assert_resolves(&m, &post, &live);
            assert_gone(&m, &pre, &post);
            prop_assert_eq!(stats.kept, post.counts);
            // Building again recreates exactly what was deleted.
            build(&m, &g);
            let d = dump(&m);
            prop_assert_eq!(d.counts, pre.counts);
            assert_sound(&m, &d);
        }
    }

    // ------------------------------------------------------------ timing --

    /// How long a collection takes on a store filled from real profiles.
    /// Copy `k` of the corpus renames every mapping and function, so each
    /// copy adds fresh entities of every kind; the even copies stay live.
    /// Run with:
    /// `cargo test --release --lib meta::gc::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing() {
        let copies: usize = std::env::var("GC_COPIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let names = [
            "parca/alloc_objects.pb.gz",
            "parca/cpu_labels.pb.gz",
            "pprof/large.cpu",
            "pyroscope/cpu-big.pprof",
            "dd-trace-go/heap.pprof",
        ];
        let profiles: Vec<Profile> = names.iter().map(|n| load(n)).collect();
        let dir = tempfile::tempdir().unwrap();
        let m = MetaStore::open(dir.path()).unwrap();
        let mut live = FxHashSet::default();
        let t = Instant::now();
        for k in 0..copies {
            for p in &profiles {
                let mut p = p.clone();
                let tag = p.string_table.len() as i64;
                p.string_table.push(format!("copy{k}"));
                for mp in &mut p.mapping {
                    mp.build_id = tag;
                }
                for f in &mut p.function {
                    f.system_name = tag;
                }
                let s = ingest_profile(&m, &p);
                if k % 2 == 0 {
                    live.extend(s);
                }
            }
        }
        m.flush().unwrap();
        let fill = t.elapsed();
        let before = m.counts();
        let total = before.mappings + before.functions + before.locations + before.stacks;
        let bytes_before = m.cache_bytes();
        let stats = m.collect_garbage(&live).unwrap();
        eprintln!(
            "fill {fill:?}; {total} entities {before:?}, caches {bytes_before} B, disk {} B\n\
             gc: mark {:?}, total {:?}; kept {:?}; deleted {:?}; caches after {} B",
            m.disk_bytes(),
            stats.mark,
            stats.duration,
            stats.kept,
            stats.deleted,
            m.cache_bytes()
        );
        let t = Instant::now();
        let again = m.collect_garbage(&live).unwrap();
        eprintln!(
            "gc again (nothing to delete): {:?} (mark {:?}); {:?}",
            again.duration,
            again.mark,
            t.elapsed()
        );
        let t = Instant::now();
        drop(m);
        let m = MetaStore::open(dir.path()).unwrap();
        eprintln!("reopen after gc: {:?}, {:?}", t.elapsed(), m.counts());
    }
}
