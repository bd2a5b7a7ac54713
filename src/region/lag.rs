//! Cluster-link lag (DESIGN §6), per mirrored partition: `link_lag_messages` = primary high
//! watermark − secondary high watermark, and `link_lag_seconds` = the age of the oldest primary
//! record not yet on the secondary, i.e. of the primary record at the secondary's high watermark.
//! Also the cluster probe itself (metadata within a timeout).
//!
//! Measures only; it must not decide anything. The probes run blocking librdkafka calls, so
//! callers run them off the async runtime (`spawn_blocking`).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The lag of one mirrored partition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartitionLag {
    /// The source topic name (on the primary).
    pub topic: String,
    pub partition: i32,
    pub primary_high: i64,
    pub secondary_high: i64,
    pub messages: i64,
    /// 0 when nothing is missing; otherwise the age of the oldest unmirrored record.
    pub seconds: f64,
    /// The clock reading (ms since the epoch) the age was taken against, read before the
    /// watermarks: the figures describe the clusters as of this instant or later (`/status`
    /// shows it, so a reader can tell how fresh the lag is).
    pub measured_at_ms: i64,
}

/// Lag from the two high watermarks and the timestamp of the primary record at the secondary's
/// high watermark (if it could be read).
pub fn lag(
    primary_high: i64,
    secondary_high: i64,
    oldest_unmirrored_ts_ms: Option<i64>,
    now_ms: i64,
) -> (i64, f64) {
    let messages = (primary_high - secondary_high).max(0);
    if messages == 0 {
        return (0, 0.0);
    }
    let seconds = oldest_unmirrored_ts_ms
        .map(|ts| ((now_ms - ts).max(0) as f64) / 1000.0)
        .unwrap_or(0.0);
    (messages, seconds)
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{cluster}: {error}")]
    Kafka { cluster: String, error: String },
}

/// A cluster endpoint to probe.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub bootstrap_servers: String,
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Cluster {
    fn client(&self) -> Result<BaseConsumer, ProbeError> {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            if !k.starts_with("session.") && !k.starts_with("heartbeat.") {
                c.set(k, v);
            }
        }
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", "cdc-relay-probe")
            .set("enable.auto.commit", "false")
            .set("log_level", "0")
            .create()
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> ProbeError {
        ProbeError::Kafka {
            cluster: self.name.clone(),
            error: e.to_string(),
        }
    }
}

/// Probes one cluster and measures the link lag of mirrored topics. Holds one client per cluster
/// (librdkafka reconnects on its own), so a probe costs a few requests, not a connection.
pub struct LagProbe {
    primary: Cluster,
    secondary: Cluster,
    primary_client: BaseConsumer,
    secondary_client: BaseConsumer,
    /// Source topics; their partition counts are read from the primary's metadata.
    topics: Vec<String>,
    mirror_prefix: String,
}

impl LagProbe {
    pub fn new(
        primary: Cluster,
        secondary: Cluster,
        topics: Vec<String>,
        mirror_prefix: &str,
    ) -> Result<LagProbe, ProbeError> {
        Ok(LagProbe {
            primary_client: primary.client()?,
            secondary_client: secondary.client()?,
            primary,
            secondary,
            topics,
            mirror_prefix: mirror_prefix.to_string(),
        })
    }

    /// Whether the primary answers a metadata request within `timeout`.
    pub fn primary_up(&self, timeout: Duration) -> bool {
        self.primary_client.fetch_metadata(None, timeout).is_ok()
    }

    /// Whether the secondary answers a metadata request within `timeout`.
    pub fn secondary_up(&self, timeout: Duration) -> bool {
        self.secondary_client.fetch_metadata(None, timeout).is_ok()
    }

    /// The lag of every mirrored partition. Needs both clusters.
    pub fn measure(&self, timeout: Duration, now_ms: i64) -> Result<Vec<PartitionLag>, ProbeError> {
        let mut out = Vec::new();
        let mut to_read = TopicPartitionList::new();
        for t in &self.topics {
            let mirror = format!("{}{t}", self.mirror_prefix);
            let n = self
                .primary_client
                .fetch_metadata(Some(t), timeout)
                .map_err(|e| self.primary.err(e))?
                .topics()
                .first()
                .map_or(0, |m| m.partitions().len() as i32);
            for p in 0..n {
                let (_, ph) = self
                    .primary_client
                    .fetch_watermarks(t, p, timeout)
                    .map_err(|e| self.primary.err(e))?;
                let (_, sh) = self
                    .secondary_client
                    .fetch_watermarks(&mirror, p, timeout)
                    .map_err(|e| self.secondary.err(e))?;
                if ph > sh {
                    let _ = to_read.add_partition_offset(t, p, Offset::Offset(sh));
                }
                out.push(PartitionLag {
                    topic: t.clone(),
                    partition: p,
                    primary_high: ph,
                    secondary_high: sh,
                    messages: 0,
                    seconds: 0.0,
                    measured_at_ms: now_ms,
                });
            }
        }
        let oldest = self.read_timestamps(&to_read, timeout);
        for l in &mut out {
            let ts = oldest
                .iter()
                .find(|(t, p, _)| t == &l.topic && *p == l.partition)
                .map(|(_, _, ts)| *ts);
            (l.messages, l.seconds) = lag(l.primary_high, l.secondary_high, ts, now_ms);
        }
        Ok(out)
    }

    /// The timestamp of the record at each given offset on the primary (best effort).
    fn read_timestamps(
        &self,
        tpl: &TopicPartitionList,
        timeout: Duration,
    ) -> Vec<(String, i32, i64)> {
        let mut got = Vec::new();
        if tpl.count() == 0 || self.primary_client.assign(tpl).is_err() {
            return got;
        }
        let until = std::time::Instant::now() + timeout;
        while got.len() < tpl.count() && std::time::Instant::now() < until {
            if let Some(Ok(m)) = self.primary_client.poll(Duration::from_millis(50)) {
                let want = tpl
                    .find_partition(m.topic(), m.partition())
                    .map(|e| e.offset());
                if want == Some(Offset::Offset(m.offset()))
                    && !got
                        .iter()
                        .any(|(t, p, _)| t == m.topic() && *p == m.partition())
                    && let Some(ts) = m.timestamp().to_millis()
                {
                    got.push((m.topic().to_string(), m.partition(), ts));
                }
            }
        }
        let _ = self.primary_client.unassign();
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_messages_and_age_of_the_oldest_missing_record() {
        assert_eq!(lag(100, 100, None, 5_000), (0, 0.0));
        assert_eq!(lag(100, 100, Some(1), 5_000), (0, 0.0), "nothing missing");
        assert_eq!(lag(120, 100, Some(2_000), 5_000), (20, 3.0));
        assert_eq!(lag(120, 100, None, 5_000), (20, 0.0), "age unknown");
        assert_eq!(lag(100, 120, Some(0), 5_000), (0, 0.0), "never negative");
        assert_eq!(lag(101, 100, Some(6_000), 5_000), (1, 0.0), "clock skew");
    }
}
