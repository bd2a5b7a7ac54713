//! What a chaos scenario recorded, as plain data for the checker: every record the load produced
//! (where it landed and what it must leave in DynamoDB), DynamoDB sampled during the run (each
//! sample after a read of the group's committed offsets), every committed offset read from
//! outside, the DLQ's and the event queue's final contents, the link's mirror at a region kill.
//!
//! Recording only: it must not judge (the checker does) or talk to any process (the scenario's
//! observers fill it).

use std::collections::BTreeMap;

use cdc_relay::event::Value;

/// Where a record is: the cluster (`primary`, `secondary`), topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub cluster: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}/{}@{}",
            self.cluster, self.topic, self.partition, self.offset
        )
    }
}

/// One record the load produced, as acknowledged by the broker.
#[derive(Debug, Clone)]
pub struct Produced {
    pub pos: Pos,
    pub table: String,
    pub pk: String,
    /// A good record: the `_seq` the relay must write and the item this record alone leaves
    /// (tombstones included). `None`: a deliberately injected poison record.
    pub change: Option<(String, BTreeMap<String, Value>)>,
}

/// A region's cluster killed while its link still had records to copy: the records at or past
/// `mirrored[partition]` on `from` never reached `to` (the RPO, never counted as lost).
#[derive(Debug, Clone)]
pub struct Mirror {
    pub from: (String, String),
    pub to: (String, String),
    /// Partition → first offset not on `to` (the mirror's end when `from` died).
    pub mirrored: BTreeMap<i32, i64>,
    /// Whether `from` died with that tail: its unmirrored records are the RPO.
    pub killed: bool,
}

/// The group's committed offsets (next offset to consume) per (cluster, topic, partition), read
/// with OffsetFetch from outside.
pub type Commits = BTreeMap<(String, String, i32), i64>;

/// DynamoDB as one scan saw it: table → pk → `_seq`, after `commits` was read.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at_ms: u64,
    pub commits: Commits,
    pub seqs: BTreeMap<String, BTreeMap<String, String>>,
}

/// One DLQ message: the record's position and the reason.
#[derive(Debug, Clone)]
pub struct DlqEntry {
    pub pos: Pos,
    pub reason: String,
}

/// The whole recording.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub produced: Vec<Produced>,
    pub samples: Vec<Sample>,
    /// Every committed-offset reading in time order (samples' readings included).
    pub commit_readings: Vec<(u64, Commits)>,
    pub mirrors: Vec<Mirror>,
    /// DynamoDB at the end: table → pk → item.
    pub final_items: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    pub dlq: Vec<DlqEntry>,
    /// Event ids received through the bus's rule, when events are on (`None`: off).
    pub event_ids: Option<Vec<String>>,
}
