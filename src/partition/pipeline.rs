//! The partition's record pipeline as a pure state machine: records enter with one prepared
//! request per output (`admit`), run through their route's outputs in order, and leave completed
//! or failed. Per output (`Lane`) it keeps one request in flight per key and hands out what is
//! ready to send as one batch (`take_ready`); answers come back as one batch (`written`).
//!
//! **Coalescing** (DESIGN §3.3), on `State` outputs: of the versions of one key waiting behind
//! the one in flight, only the newest — the highest `_seq`, then the latest offset — is sent; the
//! others ride on it and complete when it is acknowledged (`superseded`). A version the guard
//! would refuse anyway is never written, and the committed position follows the processed one.
//! If the newest turns out to be poison, the others are offered again. `Event` outputs get every
//! change, one in flight per key, in the order the records reach them.
//!
//! No I/O, no tasks, no clock: the partition actor drives it, and the unit tests below run random
//! interleavings against it. It must not decide commit positions (`OffsetTracker` does).

use std::collections::VecDeque;

// Keys are hashed with foldhash (seeded per process, like std's SipHash, and several times
// faster on short keys): every record touches these maps once per output.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use crate::sinks::output::{Failure, Prepared, Role};
use crate::sinks::pool::WriteOutcome;

/// How a completed record ended in its state output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// The version guard found the same or a newer version stored.
    Stale,
    /// A newer version of its key, in flight at the same time, was written for it.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::Stale => "stale",
            Outcome::Superseded => "superseded",
        }
    }
}

/// One request handed to an output, standing for one or more records of its key.
#[derive(Clone)]
pub struct Unit {
    pub prepared: Prepared,
    /// The record the request was built from.
    pub rep: i64,
    /// Every record it completes (`rep` included).
    pub covers: Vec<i64>,
}

/// What became of a record.
#[derive(Debug)]
pub enum Done<T> {
    /// Through every output.
    Completed {
        offset: i64,
        outcome: Outcome,
        held: T,
    },
    /// Cannot succeed (an output refused it or gave up): the DLQ's, or a stop. `prepared` are
    /// its requests (for the DLQ body's decoded change).
    Failed {
        offset: i64,
        failure: Failure,
        held: T,
        prepared: Vec<Option<Prepared>>,
    },
    /// Given up on purpose (revoke, shutdown): neither completed nor failed; fetched again.
    Dropped { offset: i64, held: T },
}

struct Rec<T> {
    /// One request per output (`None`: the output is skipped for this record).
    prepared: Vec<Option<Prepared>>,
    /// The next output to run.
    next: usize,
    outcome: Option<Outcome>,
    failure: Option<Failure>,
    held: T,
}

/// The records inside, in offset order. Records arrive in offset order and mostly leave in it,
/// so a deque with binary search beats a hash map (no hashing, no rehashing under churn); a
/// record that leaves early leaves a hole until the ones before it are gone.
struct Slots<T> {
    q: VecDeque<(i64, Option<Rec<T>>)>,
    live: usize,
}

impl<T> Slots<T> {
    fn new() -> Self {
        Slots {
            q: VecDeque::new(),
            live: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn find(&self, offset: i64) -> Result<usize, usize> {
        self.q.binary_search_by_key(&offset, |(o, _)| *o)
    }

    fn insert(&mut self, offset: i64, rec: Rec<T>) {
        match self.q.back() {
            Some((last, _)) if *last >= offset => match self.find(offset) {
                Ok(i) => {
                    if self.q[i].1.replace(rec).is_none() {
                        self.live += 1;
                    }
                }
                Err(i) => {
                    self.q.insert(i, (offset, Some(rec)));
                    self.live += 1;
                }
            },
            _ => {
                self.q.push_back((offset, Some(rec)));
                self.live += 1;
            }
        }
    }

    fn get(&self, offset: i64) -> Option<&Rec<T>> {
        self.find(offset).ok().and_then(|i| self.q[i].1.as_ref())
    }

    fn get_mut(&mut self, offset: i64) -> Option<&mut Rec<T>> {
        self.find(offset).ok().and_then(|i| self.q[i].1.as_mut())
    }

    fn remove(&mut self, offset: i64) -> Option<Rec<T>> {
        let i = self.find(offset).ok()?;
        let rec = self.q[i].1.take()?;
        self.live -= 1;
        while self.q.front().is_some_and(|(_, r)| r.is_none()) {
            self.q.pop_front();
        }
        while self.q.back().is_some_and(|(_, r)| r.is_none()) {
            self.q.pop_back();
        }
        Some(rec)
    }

    /// Offsets inside at or after `offset`.
    fn offsets_from(&self, offset: i64) -> Vec<i64> {
        let start = self.find(offset).unwrap_or_else(|i| i);
        self.q
            .range(start..)
            .filter(|(_, r)| r.is_some())
            .map(|(o, _)| *o)
            .collect()
    }
}

/// One output's queue.
struct Lane {
    role: Role,
    reason_prefix: String,
    /// Keys with a request in flight.
    busy: HashSet<Arc<str>>,
    /// `State`: per key, the newest waiting version and the records it stands for.
    newest: HashMap<Arc<str>, Unit>,
    /// `Event`: per key, the waiting changes in order.
    queued: HashMap<Arc<str>, VecDeque<Unit>>,
    /// Keys that may have become sendable since the last `take_ready`.
    dirty: Vec<Arc<str>>,
}

impl Lane {
    fn waiting(&self, key: &Arc<str>) -> bool {
        self.newest.contains_key(key) || self.queued.contains_key(key)
    }
}

/// The pipeline of one partition; `T` is what is held for each record until it leaves (the
/// consumed record with its in-flight ticket).
pub struct Pipeline<T> {
    records: Slots<T>,
    lanes: Vec<Lane>,
    in_flight: usize,
}

impl<T> Pipeline<T> {
    /// A pipeline over outputs with these roles and failure-reason prefixes, in route order.
    pub fn new(outputs: impl IntoIterator<Item = (Role, String)>) -> Self {
        Pipeline {
            records: Slots::new(),
            lanes: outputs
                .into_iter()
                .map(|(role, reason_prefix)| Lane {
                    role,
                    reason_prefix,
                    busy: HashSet::new(),
                    newest: HashMap::new(),
                    queued: HashMap::new(),
                    dirty: Vec::new(),
                })
                .collect(),
            in_flight: 0,
        }
    }

    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Records inside, and requests handed out and not answered.
    pub fn is_idle(&self) -> bool {
        self.records.is_empty() && self.in_flight == 0
    }

    /// Takes a record in with one request per output (`None`: skip that output) and, if an
    /// optional output already refused it, that failure (it goes to the DLQ after the others).
    pub fn admit(
        &mut self,
        offset: i64,
        prepared: Vec<Option<Prepared>>,
        failure: Option<Failure>,
        held: T,
        done: &mut Vec<Done<T>>,
    ) {
        self.records.insert(
            offset,
            Rec {
                prepared,
                next: 0,
                outcome: None,
                failure,
                held,
            },
        );
        self.advance(offset, done);
    }

    /// Sends `offset` to its next output, or lets it leave.
    fn advance(&mut self, offset: i64, done: &mut Vec<Done<T>>) {
        let Some(rec) = self.records.get_mut(offset) else {
            return;
        };
        while rec.next < rec.prepared.len() && rec.prepared[rec.next].is_none() {
            rec.next += 1;
        }
        let lane = rec.next;
        if lane < self.lanes.len()
            && let Some(p) = rec.prepared[lane].clone()
        {
            self.offer(lane, offset, p);
            return;
        }
        let Some(rec) = self.records.remove(offset) else {
            return;
        };
        done.push(match rec.failure {
            Some(failure) => Done::Failed {
                offset,
                failure,
                held: rec.held,
                prepared: rec.prepared,
            },
            None => Done::Completed {
                offset,
                outcome: rec.outcome.unwrap_or(Outcome::Written),
                held: rec.held,
            },
        });
    }

    fn offer(&mut self, lane: usize, offset: i64, p: Prepared) {
        let l = &mut self.lanes[lane];
        let key = Arc::clone(&p.key);
        let sendable = !l.busy.contains(&key) && !l.waiting(&key);
        match l.role {
            Role::State => match l.newest.get_mut(&key) {
                Some(u) => {
                    // The unit is as old as the oldest record it stands for: pools send older
                    // requests first, and that record may be what holds the commit position.
                    let born = u.prepared.born.min(p.born);
                    if (&p.seq, offset) > (&u.prepared.seq, u.rep) {
                        u.prepared = p;
                        u.rep = offset;
                    }
                    u.prepared.born = born;
                    u.covers.push(offset);
                }
                None => {
                    l.newest.insert(
                        Arc::clone(&key),
                        Unit {
                            prepared: p,
                            rep: offset,
                            covers: vec![offset],
                        },
                    );
                }
            },
            Role::Event => l
                .queued
                .entry(Arc::clone(&key))
                .or_default()
                .push_back(Unit {
                    prepared: p,
                    rep: offset,
                    covers: vec![offset],
                }),
        }
        if sendable {
            l.dirty.push(key);
        }
    }

    /// The requests of output `lane` that can be sent now (at most one per key), as one batch.
    pub fn take_ready(&mut self, lane: usize) -> Vec<Unit> {
        let l = &mut self.lanes[lane];
        let mut out = Vec::new();
        for key in std::mem::take(&mut l.dirty) {
            if l.busy.contains(&key) {
                continue;
            }
            let unit = match l.role {
                Role::State => l.newest.remove(&key),
                Role::Event => {
                    let q = l.queued.get_mut(&key);
                    let u = q.and_then(VecDeque::pop_front);
                    if l.queued.get(&key).is_some_and(VecDeque::is_empty) {
                        l.queued.remove(&key);
                    }
                    u
                }
            };
            if let Some(u) = unit {
                l.busy.insert(key);
                out.push(u);
            }
        }
        self.in_flight += out.len();
        out
    }

    /// The answers of output `lane` for `units` (as `take_ready` gave them), in order.
    pub fn written(
        &mut self,
        lane: usize,
        units: Vec<Unit>,
        outcomes: Vec<WriteOutcome>,
        done: &mut Vec<Done<T>>,
    ) {
        for (u, outcome) in units.into_iter().zip(outcomes) {
            self.in_flight = self.in_flight.saturating_sub(1);
            let l = &mut self.lanes[lane];
            l.busy.remove(&u.prepared.key);
            if l.waiting(&u.prepared.key) {
                l.dirty.push(Arc::clone(&u.prepared.key));
            }
            let role = l.role;
            let mut covers = u.covers;
            covers.sort_unstable();
            match outcome {
                WriteOutcome::Done | WriteOutcome::Stale => {
                    for o in covers {
                        if role == Role::State
                            && let Some(rec) = self.records.get_mut(o)
                            && rec.outcome.is_none()
                        {
                            rec.outcome = Some(if o != u.rep {
                                Outcome::Superseded
                            } else if outcome == WriteOutcome::Stale {
                                Outcome::Stale
                            } else {
                                Outcome::Written
                            });
                        }
                        if let Some(rec) = self.records.get_mut(o) {
                            rec.next = lane + 1;
                        }
                        self.advance(o, done);
                    }
                }
                WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e) => {
                    let prefix = self.lanes[lane].reason_prefix.clone();
                    if let Some(rec) = self.records.remove(u.rep) {
                        done.push(Done::Failed {
                            offset: u.rep,
                            failure: Failure {
                                class: e.class,
                                reason: format!("{prefix}{}", e.reason),
                                error: e.to_string(),
                            },
                            held: rec.held,
                            prepared: rec.prepared,
                        });
                    }
                    // The versions it stood for are written on their own merits.
                    for o in covers.into_iter().filter(|o| *o != u.rep) {
                        if let Some(p) = self
                            .records
                            .get(o)
                            .and_then(|r| r.prepared.get(lane).cloned().flatten())
                        {
                            self.offer(lane, o, p);
                        }
                    }
                }
                WriteOutcome::Cancelled => {
                    for o in covers {
                        if let Some(rec) = self.records.remove(o) {
                            done.push(Done::Dropped {
                                offset: o,
                                held: rec.held,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Lets every record at or after `offset` leave as dropped (a stop at a poison record:
    /// nothing behind it may complete) and forgets their waiting requests; a waiting version that
    /// also stood for older records is replaced by theirs. Their requests already in flight are
    /// answered into the void.
    pub fn drop_from(&mut self, offset: i64, done: &mut Vec<Done<T>>) {
        let gone = self.records.offsets_from(offset);
        for o in gone {
            if let Some(rec) = self.records.remove(o) {
                done.push(Done::Dropped {
                    offset: o,
                    held: rec.held,
                });
            }
        }
        for lane in 0..self.lanes.len() {
            let l = &mut self.lanes[lane];
            let mut again = Vec::new();
            l.newest.retain(|_, u| {
                if u.rep >= offset {
                    again.extend(u.covers.iter().copied().filter(|o| *o < offset));
                    false
                } else {
                    u.covers.retain(|o| *o < offset);
                    true
                }
            });
            for q in l.queued.values_mut() {
                q.retain(|u| u.rep < offset);
            }
            l.queued.retain(|_, q| !q.is_empty());
            for o in again {
                if let Some(p) = self
                    .records
                    .get(o)
                    .and_then(|r| r.prepared.get(lane).cloned().flatten())
                {
                    self.offer(lane, o, p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::error_class::ErrorClass;
    use crate::event::Seq;
    use crate::partition::offsets::OffsetTracker;
    use crate::sinks::SinkError;

    const STATE: usize = 0;
    const EVENTS: usize = 1;

    fn prepared(key: &str, seq: u128) -> Prepared {
        Prepared::new(Arc::from(key), Seq::from_u128(seq), ())
    }

    fn poison() -> WriteOutcome {
        WriteOutcome::Poison(SinkError {
            class: ErrorClass::Poison,
            reason: "sink_rejected",
            sink: "test".into(),
            message: "no".into(),
        })
    }

    /// Random records (keys 0..keys, versions not always increasing), admitted in random batches;
    /// random answers to random in-flight batches. Checks: a record completes only after a
    /// version of its key at least as new as its own is stored; the commit position never passes
    /// an unfinished record; the store ends with every key's newest version; every change gets
    /// exactly one event, in offset order per key.
    fn run(seed: u64, records: i64, keys: u64, poison_every: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut p: Pipeline<()> = Pipeline::new([
            (Role::State, String::new()),
            (Role::Event, "eventbridge_".into()),
        ]);
        let mut tracker = OffsetTracker::new(None);
        let recs: Vec<(String, u128)> = (0..records)
            .map(|_| {
                (
                    format!("k{}", rng.random_range(0..keys)),
                    rng.random_range(1..1_000_000u128),
                )
            })
            .collect();
        let mut store: BTreeMap<String, u128> = BTreeMap::new();
        let mut events: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut finished: BTreeMap<i64, bool> = BTreeMap::new();
        let mut in_flight: Vec<(usize, Vec<Unit>)> = Vec::new();
        let mut next = 0i64;
        let mut done = Vec::new();
        let mut poisoned = std::collections::HashSet::new();
        while next < records || !in_flight.is_empty() || !p.is_idle() {
            // Admit a batch.
            if next < records && rng.random_bool(0.5) {
                for _ in 0..rng.random_range(1..20) {
                    if next >= records {
                        break;
                    }
                    let (k, s) = &recs[next as usize];
                    tracker.track(next, None).unwrap();
                    p.admit(
                        next,
                        vec![Some(prepared(k, *s)), Some(prepared(k, *s))],
                        None,
                        (),
                        &mut done,
                    );
                    next += 1;
                }
            }
            for lane in [STATE, EVENTS] {
                let ready = p.take_ready(lane);
                if !ready.is_empty() {
                    in_flight.push((lane, ready));
                }
            }
            // Answer one in-flight batch.
            if !in_flight.is_empty() && rng.random_bool(0.7) {
                let (lane, units) = in_flight.swap_remove(rng.random_range(0..in_flight.len()));
                let keys_in: std::collections::HashSet<_> =
                    units.iter().map(|u| u.prepared.key.clone()).collect();
                assert_eq!(keys_in.len(), units.len(), "one request per key per batch");
                let outcomes = units
                    .iter()
                    .map(|u| {
                        let (k, s) = &recs[u.rep as usize];
                        if lane == STATE
                            && poison_every > 0
                            && (u.rep as u64).is_multiple_of(poison_every)
                        {
                            poisoned.insert(u.rep);
                            return poison();
                        }
                        if lane == STATE {
                            let cur = store.entry(k.clone()).or_insert(0);
                            if *s > *cur {
                                *cur = *s;
                                WriteOutcome::Done
                            } else {
                                WriteOutcome::Stale
                            }
                        } else {
                            events.entry(k.clone()).or_default().push(u.rep);
                            WriteOutcome::Done
                        }
                    })
                    .collect();
                p.written(lane, units, outcomes, &mut done);
            }
            for d in done.drain(..) {
                match d {
                    Done::Completed { offset, .. } => {
                        let (k, s) = &recs[offset as usize];
                        assert!(
                            store.get(k).is_some_and(|v| v >= s),
                            "record {offset} completed before a version >= its own was stored"
                        );
                        finished.insert(offset, true);
                        tracker.complete(offset).unwrap();
                    }
                    Done::Failed {
                        offset, failure, ..
                    } => {
                        assert!(poisoned.contains(&offset), "{offset} failed: {failure:?}");
                        finished.insert(offset, false);
                        tracker.complete(offset).unwrap();
                    }
                    Done::Dropped { offset, .. } => panic!("{offset} dropped"),
                }
            }
            if let Some(c) = tracker.committable() {
                assert!(
                    (0..c).all(|o| finished.contains_key(&o)),
                    "committable {c} passes an unfinished record"
                );
            }
        }
        assert_eq!(
            finished.len() as i64,
            records,
            "every record left the pipeline"
        );
        for (k, v) in &store {
            let newest = recs
                .iter()
                .enumerate()
                .filter(|(o, (rk, _))| rk == k && !poisoned.contains(&(*o as i64)))
                .map(|(_, (_, s))| *s)
                .max();
            assert_eq!(Some(*v), newest, "key {k} ends at its newest version");
        }
        for (k, sent) in &events {
            let expected: Vec<i64> = recs
                .iter()
                .enumerate()
                .filter(|(o, (rk, _))| rk == k && !poisoned.contains(&(*o as i64)))
                .map(|(o, _)| o as i64)
                .collect();
            assert_eq!(sent, &expected, "key {k}: one event per change, in order");
        }
    }

    #[test]
    fn random_interleavings_keep_every_guarantee() {
        for seed in 0..200 {
            run(seed, 300, 1 + seed % 12, 0);
        }
    }

    #[test]
    fn a_poison_newest_version_lets_the_others_through() {
        for seed in 0..100 {
            run(seed, 200, 3, 7);
        }
    }

    /// A coalesced request is as old as the oldest record it stands for, so the pool does not
    /// queue the partition's oldest record behind younger ones.
    #[test]
    fn a_coalesced_request_keeps_its_oldest_records_age() {
        let mut p: Pipeline<()> = Pipeline::new([(Role::State, String::new())]);
        let mut done = Vec::new();
        p.admit(0, vec![Some(prepared("k", 1))], None, (), &mut done);
        let first = p.take_ready(STATE);
        let older = prepared("k", 2);
        let mut newer = prepared("k", 3);
        newer.born = older.born + std::time::Duration::from_secs(5);
        p.admit(1, vec![Some(older.clone())], None, (), &mut done);
        p.admit(2, vec![Some(newer)], None, (), &mut done);
        p.written(STATE, first, vec![WriteOutcome::Done], &mut done);
        let second = p.take_ready(STATE);
        assert_eq!((second[0].rep, second[0].covers.len()), (2, 2));
        assert_eq!(second[0].prepared.born, older.born);
    }

    #[test]
    fn coalescing_writes_only_the_newest_waiting_version() {
        let mut p: Pipeline<()> = Pipeline::new([(Role::State, String::new())]);
        let mut done = Vec::new();
        p.admit(0, vec![Some(prepared("k", 1))], None, (), &mut done);
        let first = p.take_ready(STATE);
        assert_eq!(first.len(), 1);
        // Three more versions while the first is in flight; the middle one is the newest.
        p.admit(1, vec![Some(prepared("k", 3))], None, (), &mut done);
        p.admit(2, vec![Some(prepared("k", 9))], None, (), &mut done);
        p.admit(3, vec![Some(prepared("k", 5))], None, (), &mut done);
        assert!(p.take_ready(STATE).is_empty(), "one in flight per key");
        p.written(STATE, first, vec![WriteOutcome::Done], &mut done);
        let second = p.take_ready(STATE);
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].rep, second[0].covers.len()), (2, 3));
        p.written(STATE, second, vec![WriteOutcome::Done], &mut done);
        let outcomes: Vec<(i64, Outcome)> = done
            .iter()
            .map(|d| match d {
                Done::Completed {
                    offset, outcome, ..
                } => (*offset, *outcome),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (0, Outcome::Written),
                (1, Outcome::Superseded),
                (2, Outcome::Written),
                (3, Outcome::Superseded)
            ]
        );
        assert!(p.is_idle());
    }
}
