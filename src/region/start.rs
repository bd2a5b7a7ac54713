//! Where each partition starts on the target cluster of a switch (DESIGN §6), from the first
//! usable source: (1) the group's offsets on the target, which the cluster link syncs; (2) the
//! relay's checkpoint in the control record, when the link preserves offsets; (3) the checkpoint's
//! timestamp: `offsets_for_times(last processed timestamp − offset_margin)`; else the group's
//! `auto_offset_reset`. Also the cluster queries of a planned switch (committed offsets, caught up).
//!
//! It only reads from the clusters; it must not commit, switch or consume for processing.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{ClusterConfig, Config};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where one partition starts on the target cluster, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOffset {
    /// `(topic on the target, partition)`.
    pub tp: (String, i32),
    /// `group` (synced group offsets), `checkpoint`, `timestamp` or `reset`.
    pub source: &'static str,
    /// `None`: the group's committed offset there (or the reset policy) is used.
    pub offset: Option<i64>,
}

/// The relay's progress by source `topic/partition`: last committed offsets, and the timestamp
/// (ms) of the last record of each partition's completed prefix.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub offsets: BTreeMap<String, i64>,
    pub timestamps: BTreeMap<String, i64>,
}

/// A client for `cluster` acting as `group` (reads only; never commits).
fn client(config: &Config, cluster: &ClusterConfig) -> Result<BaseConsumer, String> {
    let mut c = ClientConfig::new();
    for (k, v) in &cluster.properties {
        if !k.starts_with("session.") && !k.starts_with("heartbeat.") {
            c.set(k, v);
        }
    }
    c.set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Single-record reads of the timestamp search: no long-poll fetch to wait out on each
        // re-assignment, little prefetch.
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "10")
        .create()
        .map_err(|e| format!("{}: {e}", cluster.name))
}

fn partitions(client: &BaseConsumer, topic: &str) -> Result<i32, String> {
    let m = client
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| format!("{topic}: {e}"))?;
    Ok(m.topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32))
}

/// For each partition of the configured topics on `target`: where to start, and why.
pub fn resolve_start(
    config: &Config,
    target: &ClusterConfig,
    progress: &Progress,
) -> Result<Vec<StartOffset>, String> {
    let client = client(config, target)?;
    let preserved = config.failover.offsets_preserved;
    let margin = i64::try_from(config.failover.offset_margin.as_millis()).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for t in &config.kafka.topics {
        let name = format!("{}{t}", target.topic_prefix);
        let n = partitions(&client, &name)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(&name, p);
        }
        let committed = client.committed_offsets(tpl, TIMEOUT).ok();
        for p in 0..n {
            let key = format!("{t}/{p}");
            // Never start beyond what the target has: records the link had not mirrored are
            // gone with the old cluster (the RPO), and an out-of-range offset would reset.
            let high = client
                .fetch_watermarks(&name, p, TIMEOUT)
                .map(|(_, h)| h)
                .unwrap_or(i64::MAX);
            let group = committed
                .as_ref()
                .and_then(|c| c.find_partition(&name, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            // The checkpoint's offsets name the same records on the target only when the link
            // preserves offsets.
            let cp = preserved
                .then(|| progress.offsets.get(&key).map(|c| (*c).min(high)))
                .flatten();
            let by_time = || {
                let ts = progress.timestamps.get(&key)?;
                match offset_for_time(&client, &name, p, ts.saturating_sub(margin)) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        tracing::warn!(topic = %name, partition = p, error = %e, "timestamp lookup failed");
                        None
                    }
                }
            };
            let (source, offset) = match (group, cp) {
                (Some(g), Some(cp)) if cp > g => ("checkpoint", Some(cp)),
                (None, Some(cp)) => ("checkpoint", Some(cp)),
                // Offsets not preserved: translated group offsets are conservative, so the
                // timestamp wins when it is further ahead.
                (Some(g), None) if !preserved => match by_time() {
                    Some(o) if o > g => ("timestamp", Some(o)),
                    _ => ("group", None),
                },
                (Some(_), _) => ("group", None),
                (None, None) => match by_time() {
                    Some(o) => ("timestamp", Some(o)),
                    None => ("reset", None),
                },
            };
            out.push(StartOffset {
                tp: (name.clone(), p),
                source,
                offset,
            });
        }
    }
    Ok(out)
}

/// The first offset of `topic/partition` whose record's timestamp is at least `ts` (ms), or the
/// high watermark if there is none. Asks the broker's time index (`offsets_for_times`) and checks
/// the answer against the records around it; when the broker cannot answer (librdkafka's mock
/// cluster, some Kafka-compatible brokers) or the answer is inconsistent, it binary-searches by
/// reading records, assuming timestamps do not decrease within a partition (producer CreateTime
/// in commit order, or LogAppendTime); `offset_margin` absorbs small skews. `client` should fetch
/// with a small `fetch.wait.max.ms` (as `resolve_start`'s does): each read re-assigns the
/// partition and would otherwise wait out a long-poll fetch.
pub fn offset_for_time(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<i64, String> {
    let (low, high) = client
        .fetch_watermarks(topic, partition, TIMEOUT)
        .map_err(|e| format!("watermarks: {e}"))?;
    if low >= high {
        return Ok(high);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ts))
        .map_err(|e| e.to_string())?;
    let answer = client.offsets_for_times(tpl, TIMEOUT).ok().and_then(|r| {
        r.find_partition(topic, partition)
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => high,
            })
    });
    let reader = Reader {
        client,
        topic,
        partition,
    };
    if let Some(o) = answer
        && (low..=high).contains(&o)
    {
        let before_ok = o == low || reader.at(o - 1)?.is_some_and(|(r, t)| r == o - 1 && t < ts);
        let at_ok = o == high || reader.at(o)?.is_some_and(|(_, t)| t >= ts);
        if before_ok && at_ok {
            return Ok(o);
        }
        tracing::info!(
            topic,
            partition,
            answer = o,
            "the broker's timestamp lookup is inconsistent with the records; searching by reading"
        );
    }
    // Invariant: every record below `lo` is older than `ts`; the answer is at most `hi`.
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match reader.at(mid)? {
            Some((r, t)) if r < hi => {
                if t >= ts {
                    hi = mid;
                } else {
                    lo = r + 1;
                }
            }
            // Nothing readable in [mid, hi): the answer is below mid or is hi itself.
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Reads single records of one partition by offset.
struct Reader<'a> {
    client: &'a BaseConsumer,
    topic: &'a str,
    partition: i32,
}

impl Reader<'_> {
    /// `(offset, timestamp ms)` of the first record at or after `offset`, if one arrives in time.
    fn at(&self, offset: i64) -> Result<Option<(i64, i64)>, String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(self.topic, self.partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
        self.client.assign(&tpl).map_err(|e| e.to_string())?;
        let until = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < until {
            match self.client.poll(Duration::from_millis(100)) {
                Some(Ok(m))
                    if m.topic() == self.topic
                        && m.partition() == self.partition
                        && m.offset() >= offset =>
                {
                    let ts = m
                        .timestamp()
                        .to_millis()
                        .ok_or_else(|| format!("record {} has no timestamp", m.offset()))?;
                    return Ok(Some((m.offset(), ts)));
                }
                Some(Err(e)) => return Err(format!("fetch at {offset}: {e}")),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// Committed offsets of the group on `cluster` for the configured topics, by
/// `(topic on that cluster, partition)`.
pub fn committed_on(
    config: &Config,
    cluster: &ClusterConfig,
) -> Result<BTreeMap<(String, i32), i64>, String> {
    let client = client(config, cluster)?;
    let mut out = BTreeMap::new();
    for t in &config.kafka.topics {
        let name = format!("{}{t}", cluster.topic_prefix);
        let n = partitions(&client, &name).map_err(|e| format!("{}: {e}", cluster.name))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(&name, p);
        }
        let got = client
            .committed_offsets(tpl, TIMEOUT)
            .map_err(|e| format!("{}: {e}", cluster.name))?;
        for e in got.elements() {
            if let Offset::Offset(o) = e.offset() {
                out.insert((name.clone(), e.partition()), o);
            }
        }
    }
    Ok(out)
}

/// Whether `cluster` holds every record below `offsets` (same partitions, its own topic names).
pub fn caught_up(cluster: &ClusterConfig, offsets: &BTreeMap<(String, i32), i64>) -> bool {
    let Ok(client) = ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap_servers)
        .create::<BaseConsumer>()
    else {
        return false;
    };
    offsets.iter().all(|((t, p), o)| {
        client
            .fetch_watermarks(t, *p, TIMEOUT)
            .is_ok_and(|(_, high)| high >= *o)
    })
}
