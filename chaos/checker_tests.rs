//! The checker can fail: recorded histories with one anomaly each (a lost record, a regressed
//! item, a missing and an unexpected DLQ entry, an unseen event, a committed offset that moved
//! back, a final state that is not exact) and the one it must report; an unmirrored tail at a
//! region kill counts as RPO, never as lost.
//!
//! Tests only: they build histories by hand and must not start any process.

use std::collections::BTreeMap;

use cdc_relay::event::Value;

use crate::checker::{DISALLOWED, check};
use crate::history::{Commits, DlqEntry, History, Mirror, Pos, Produced, Sample};

const T: &str = "customers";

fn seq(n: u64) -> String {
    cdc_relay::generate::seq_of_digits(&n.to_string())
}

fn pos(cluster: &str, partition: i32, offset: i64) -> Pos {
    Pos {
        cluster: cluster.into(),
        topic: "qlik.customers".into(),
        partition,
        offset,
    }
}

fn item(pk: &str, n: u64) -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("pk".to_string(), Value::String(pk.into())),
        ("name".to_string(), Value::String(format!("v{n}"))),
        ("_seq".to_string(), Value::String(seq(n))),
    ])
}

fn good(p: Pos, pk: &str, n: u64) -> Produced {
    Produced {
        pos: p,
        table: T.into(),
        pk: pk.into(),
        change: Some((seq(n), item(pk, n))),
    }
}

fn commits(cluster: &str, partition: i32, next: i64) -> Commits {
    BTreeMap::from([(
        (cluster.to_string(), "qlik.customers".to_string(), partition),
        next,
    )])
}

fn seqs(pairs: &[(&str, u64)]) -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::from([(
        T.to_string(),
        pairs
            .iter()
            .map(|(pk, n)| (pk.to_string(), seq(*n)))
            .collect(),
    )])
}

/// A valid history: keys 1 and 2, key 1 updated; one poison record dead-lettered; every event
/// seen; commits only forward.
fn valid() -> History {
    History {
        produced: vec![
            good(pos("primary", 0, 0), "1", 1),
            good(pos("primary", 0, 1), "2", 2),
            Produced {
                pos: pos("primary", 0, 2),
                table: T.into(),
                pk: "3".into(),
                change: None,
            },
            good(pos("primary", 0, 3), "1", 4),
        ],
        samples: vec![
            Sample {
                at_ms: 100,
                commits: commits("primary", 0, 2),
                seqs: seqs(&[("1", 1), ("2", 2)]),
            },
            Sample {
                at_ms: 200,
                commits: commits("primary", 0, 4),
                seqs: seqs(&[("1", 4), ("2", 2)]),
            },
        ],
        commit_readings: vec![
            (100, commits("primary", 0, 2)),
            (200, commits("primary", 0, 4)),
        ],
        mirrors: Vec::new(),
        final_items: BTreeMap::from([(
            T.to_string(),
            BTreeMap::from([
                ("1".to_string(), item("1", 4)),
                ("2".to_string(), item("2", 2)),
            ]),
        )]),
        dlq: vec![DlqEntry {
            pos: pos("primary", 0, 2),
            reason: "avro_decode".into(),
        }],
        event_ids: Some(vec![
            format!("{T}/{}/1", seq(1)),
            format!("{T}/{}/2", seq(2)),
            format!("{T}/{}/1", seq(4)),
        ]),
    }
}

/// Exactly `anomaly` is reported (and the history is invalid), every other count zero.
fn only(h: &History, anomaly: &str) {
    let a = check(h);
    assert!(
        !a.valid,
        "{anomaly}: the history must be invalid: {:?}",
        a.anomalies
    );
    for name in DISALLOWED {
        let want = name == anomaly;
        assert_eq!(
            a.count(name) > 0,
            want,
            "{anomaly}: {name} = {} ({:?})",
            a.count(name),
            a.anomalies[name].examples
        );
    }
    assert!(
        !a.anomalies[anomaly].examples.is_empty(),
        "{anomaly} has an example"
    );
}

#[test]
fn a_valid_history_is_valid() {
    let a = check(&valid());
    assert!(a.valid, "{:?}", a.anomalies);
    assert_eq!((a.produced, a.poison, a.rpo, a.superseded), (4, 1, 0, 1));
    assert_eq!(a.count("duplicate_events"), 0);
}

#[test]
fn a_committed_record_missing_from_dynamodb_is_lost() {
    let mut h = valid();
    // Key 2 committed at the first sample but not in DynamoDB then.
    h.samples[0].seqs = seqs(&[("1", 1)]);
    only(&h, "lost");
}

#[test]
fn a_committed_poison_record_missing_from_the_dlq_is_missing_not_lost() {
    let mut h = valid();
    h.dlq.clear();
    only(&h, "missing_dlq");
}

#[test]
fn a_dlq_entry_for_a_good_record_is_unexpected() {
    let mut h = valid();
    h.dlq.push(DlqEntry {
        pos: pos("primary", 0, 1),
        reason: "envelope".into(),
    });
    only(&h, "unexpected_dlq");
}

#[test]
fn an_item_whose_seq_goes_back_between_samples_regressed() {
    let mut h = valid();
    // Key 1's update written before its commit, then its older version seen again (nothing
    // committed says it must be newer: a regression, not a loss).
    let early = |at_ms, n| Sample {
        at_ms,
        commits: commits("primary", 0, 2),
        seqs: seqs(&[("1", n), ("2", 2)]),
    };
    h.samples.insert(1, early(150, 4));
    h.samples.insert(2, early(160, 1));
    // The final state is right again, so only the regression is reported.
    only(&h, "regressed");
}

#[test]
fn a_final_state_with_a_wrong_value_is_inexact() {
    let mut h = valid();
    if let Some(i) = h.final_items.get_mut(T).and_then(|t| t.get_mut("2")) {
        i.insert("name".into(), Value::String("wrong".into()));
    }
    only(&h, "inexact");
}

#[test]
fn a_change_without_its_event_is_unseen_and_duplicates_are_allowed() {
    let mut h = valid();
    if let Some(ids) = &mut h.event_ids {
        ids.remove(1);
        ids.push(ids[0].clone());
    }
    only(&h, "unseen_events");
    assert_eq!(check(&h).count("duplicate_events"), 1);
}

#[test]
fn a_committed_offset_that_moves_back_is_reported() {
    let mut h = valid();
    h.commit_readings.push((300, commits("primary", 0, 3)));
    h.commit_readings.push((400, commits("primary", 0, 4)));
    only(&h, "commits_back");
}

#[test]
fn the_unmirrored_tail_of_a_killed_region_is_rpo_not_lost() {
    let mut h = valid();
    // The primary died with offsets 3.. unmirrored; the relay finished on the secondary's copy.
    h.mirrors.push(Mirror {
        from: ("primary".into(), "qlik.customers".into()),
        to: ("secondary".into(), "qlik.customers".into()),
        mirrored: BTreeMap::from([(0, 3)]),
        killed: true,
    });
    if let Some(t) = h.final_items.get_mut(T) {
        t.insert("1".into(), item("1", 1));
    }
    h.samples.truncate(1);
    h.commit_readings = vec![
        (100, commits("primary", 0, 2)),
        (200, commits("secondary", 0, 3)),
    ];
    if let Some(ids) = &mut h.event_ids {
        ids.pop();
    }
    let a = check(&h);
    assert!(a.valid, "{:?}", a.anomalies);
    assert_eq!(a.rpo, 1);
    // The same tail without the kill is a loss of an applied record: inexact.
    h.mirrors[0].killed = false;
    assert!(!check(&h).valid);
}
