//! The invariant checker, in the spirit of Jepsen's Kafka checker: it reads a `History` and
//! counts each anomaly, keeps a few examples of each, and is `valid` only when every anomaly
//! outside the allowed set is zero.
//!
//! Anomalies: `lost` (a record below a committed offset, reflected neither in DynamoDB at its
//! `_seq` or newer nor in the DLQ), `regressed` (an item's `_seq` went backwards between samples),
//! `inexact` (the final state differs from the one the records leave), `unexpected_dlq`,
//! `missing_dlq`, `unseen_events`, `commits_back` (a committed offset moved backwards on its
//! cluster). Allowed, reported only: `duplicate_events`, the RPO (records a killed region never
//! mirrored: excluded from every other check, never counted as lost).
//!
//! Judging only: it must not talk to any process, and it reads values as the oracle writes them
//! (`_seq` text compared as text, items through `verify::compare_table`), never through the
//! relay's decode or sink code.

use std::collections::{BTreeMap, BTreeSet};

use cdc_relay::event::Value;
use serde::Serialize;

use crate::history::{History, Pos, Produced};

/// Examples kept per anomaly.
const EXAMPLES: usize = 5;

/// One anomaly's count and its first examples.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Anomaly {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Anomaly {
    fn note(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// The anomalies that make a history invalid (everything the checker counts but these two:
/// `duplicate_events`, `rpo`).
pub const DISALLOWED: [&str; 7] = [
    "lost",
    "regressed",
    "inexact",
    "unexpected_dlq",
    "missing_dlq",
    "unseen_events",
    "commits_back",
];

/// The checker's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub valid: bool,
    /// Every anomaly by name (zero counts included, so a report shows what was checked).
    pub anomalies: BTreeMap<String, Anomaly>,
    /// Records produced (good and poison), and of them: poison, the RPO.
    pub produced: u64,
    pub poison: u64,
    pub rpo: u64,
    /// Good records whose change a later record of the same key replaced (in the final state).
    pub superseded: u64,
    pub samples: usize,
}

impl Analysis {
    pub fn count(&self, anomaly: &str) -> u64 {
        self.anomalies.get(anomaly).map_or(0, |a| a.count)
    }
}

/// Every position a record has: where it was produced and, when a link copied it, its copy.
pub fn positions<'a>(h: &'a History, p: &'a Produced) -> impl Iterator<Item = Pos> + 'a {
    let copies = h.mirrors.iter().filter_map(move |m| {
        let copied = (p.pos.cluster.as_str(), p.pos.topic.as_str())
            == (m.from.0.as_str(), m.from.1.as_str())
            && m.mirrored
                .get(&p.pos.partition)
                .is_some_and(|end| p.pos.offset < *end);
        copied.then(|| Pos {
            cluster: m.to.0.clone(),
            topic: m.to.1.clone(),
            partition: p.pos.partition,
            offset: p.pos.offset,
        })
    });
    std::iter::once(p.pos.clone()).chain(copies)
}

/// A record a killed region never mirrored (the RPO).
pub fn in_rpo(h: &History, p: &Produced) -> bool {
    h.mirrors.iter().any(|m| {
        m.killed
            && (p.pos.cluster.as_str(), p.pos.topic.as_str())
                == (m.from.0.as_str(), m.from.1.as_str())
            && m.mirrored
                .get(&p.pos.partition)
                .is_none_or(|end| p.pos.offset >= *end)
    })
}

/// Whether `commits` cover `p` at one of its positions (the next offset to consume is past it).
pub fn committed(h: &History, p: &Produced, commits: &crate::history::Commits) -> bool {
    positions(h, p).any(|q| {
        commits
            .get(&(q.cluster.clone(), q.topic.clone(), q.partition))
            .is_some_and(|c| q.offset < *c)
    })
}

fn seq_of(item: &BTreeMap<String, Value>) -> Option<&str> {
    match item.get(cdc_relay::generate::ATTR_SEQ) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Counts one `anomaly` (a name of `DISALLOWED` or `duplicate_events`) with its example.
fn note(a: &mut BTreeMap<String, Anomaly>, anomaly: &str, example: impl FnOnce() -> String) {
    a.entry(anomaly.to_string()).or_default().note(example);
}

/// Reads the whole history.
pub fn check(h: &History) -> Analysis {
    let mut a: BTreeMap<String, Anomaly> = DISALLOWED
        .iter()
        .chain(["duplicate_events"].iter())
        .map(|n| (n.to_string(), Anomaly::default()))
        .collect();
    let visible: Vec<&Produced> = h.produced.iter().filter(|p| !in_rpo(h, p)).collect();
    let rpo = (h.produced.len() - visible.len()) as u64;
    let dlq: BTreeMap<Pos, &str> = h
        .dlq
        .iter()
        .map(|d| (d.pos.clone(), d.reason.as_str()))
        .collect();
    let in_dlq = |p: &Produced| positions(h, p).any(|q| dlq.contains_key(&q));

    // Lost: at every sample (commits read before the scan) and at the end.
    let mut lost_seen: BTreeSet<Pos> = BTreeSet::new();
    let final_sample = crate::history::Sample {
        at_ms: u64::MAX,
        commits: h
            .commit_readings
            .last()
            .map(|(_, c)| c.clone())
            .unwrap_or_default(),
        seqs: h
            .final_items
            .iter()
            .map(|(t, items)| {
                let seqs = items
                    .iter()
                    .filter_map(|(pk, it)| seq_of(it).map(|s| (pk.clone(), s.to_string())))
                    .collect();
                (t.clone(), seqs)
            })
            .collect(),
    };
    for s in h.samples.iter().chain(std::iter::once(&final_sample)) {
        for p in &visible {
            let Some((seq, _)) = &p.change else { continue };
            if !committed(h, p, &s.commits) || lost_seen.contains(&p.pos) {
                continue;
            }
            let reflected = s
                .seqs
                .get(&p.table)
                .and_then(|t| t.get(&p.pk))
                .is_some_and(|have| have.as_str() >= seq.as_str());
            if !reflected && !in_dlq(p) {
                lost_seen.insert(p.pos.clone());
                note(&mut a, "lost", || {
                    format!(
                        "{} ({}/{} _seq {seq}) committed at sample {} but DynamoDB has {:?}",
                        p.pos,
                        p.table,
                        p.pk,
                        s.at_ms,
                        s.seqs.get(&p.table).and_then(|t| t.get(&p.pk))
                    )
                });
            }
        }
    }

    // Regressed: an item's `_seq` never goes backwards from one sample to the next.
    let mut last: BTreeMap<(&str, &str), (&str, u64)> = BTreeMap::new();
    for s in h.samples.iter().chain(std::iter::once(&final_sample)) {
        for (table, items) in &s.seqs {
            for (pk, seq) in items {
                if let Some((before, at)) = last.get(&(table.as_str(), pk.as_str()))
                    && seq.as_str() < *before
                {
                    note(&mut a, "regressed", || {
                        format!(
                            "{table}/{pk}: _seq {before} at {at} ms, then {seq} at {} ms",
                            s.at_ms
                        )
                    });
                }
                last.insert((table, pk), (seq, s.at_ms));
            }
        }
    }

    // Exact: the final state is what the visible good records leave (the newest `_seq` per key).
    let mut expected: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
    let mut superseded = 0u64;
    for p in &visible {
        let Some((seq, item)) = &p.change else {
            continue;
        };
        let slot = expected.entry(p.table.clone()).or_default();
        match slot.get(&p.pk).and_then(seq_of) {
            Some(have) if have >= seq.as_str() => superseded += 1,
            Some(_) => {
                superseded += 1;
                slot.insert(p.pk.clone(), item.clone());
            }
            None => {
                slot.insert(p.pk.clone(), item.clone());
            }
        }
    }
    let mut verdict = cdc_relay::verify::Verdict::default();
    let empty = BTreeMap::new();
    for (table, items) in &expected {
        let actual = h.final_items.get(table).unwrap_or(&empty);
        cdc_relay::verify::compare_table(table, items, actual, &mut verdict);
    }
    for m in verdict.mismatches.iter().take(EXAMPLES) {
        if let Some(x) = a.get_mut("inexact") {
            x.examples.push(m.clone());
        }
    }
    if let Some(x) = a.get_mut("inexact") {
        x.count = (verdict.mismatch_count + verdict.unexpected_items) as u64;
        if verdict.unexpected_items > 0 && x.examples.len() < EXAMPLES {
            x.examples
                .push(format!("{} items no record made", verdict.unexpected_items));
        }
    }

    // DLQ: exactly the injected poison records.
    let poison: BTreeSet<Pos> = visible
        .iter()
        .filter(|p| p.change.is_none())
        .flat_map(|p| positions(h, p))
        .collect();
    for d in &h.dlq {
        if !poison.contains(&d.pos) {
            note(&mut a, "unexpected_dlq", || {
                format!("{} ({})", d.pos, d.reason)
            });
        }
    }
    for p in visible.iter().filter(|p| p.change.is_none()) {
        if !in_dlq(p) {
            note(&mut a, "missing_dlq", || {
                format!("{} ({}/{})", p.pos, p.table, p.pk)
            });
        }
    }

    // Events: one per good record (`<table>/<_seq>/<pk>`), duplicates counted.
    if let Some(ids) = &h.event_ids {
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        for id in ids {
            *seen.entry(id.as_str()).or_default() += 1;
        }
        for p in &visible {
            let Some((seq, _)) = &p.change else { continue };
            let id = format!("{}/{seq}/{}", p.table, p.pk);
            if !seen.contains_key(id.as_str()) {
                note(&mut a, "unseen_events", || format!("{id} ({})", p.pos));
            }
        }
        for (id, n) in seen.iter().filter(|(_, n)| **n > 1) {
            if let Some(x) = a.get_mut("duplicate_events") {
                for _ in 1..*n {
                    x.note(|| format!("{id} ×{n}"));
                }
            }
        }
    }

    // Commits: never backwards on the cluster they belong to.
    let mut high: BTreeMap<&(String, String, i32), (i64, u64)> = BTreeMap::new();
    for (at, commits) in &h.commit_readings {
        for (k, c) in commits {
            if let Some((before, t)) = high.get(k)
                && c < before
            {
                note(&mut a, "commits_back", || {
                    format!(
                        "{}:{}/{}: {before} at {t} ms, then {c} at {at} ms",
                        k.0, k.1, k.2
                    )
                });
            }
            let e = high.entry(k).or_insert((*c, *at));
            if *c >= e.0 {
                *e = (*c, *at);
            }
        }
    }

    let valid = DISALLOWED
        .iter()
        .all(|n| a.get(*n).is_none_or(|x| x.count == 0));
    Analysis {
        valid,
        anomalies: a,
        produced: h.produced.len() as u64,
        poison: h.produced.iter().filter(|p| p.change.is_none()).count() as u64,
        rpo,
        superseded,
        samples: h.samples.len(),
    }
}
