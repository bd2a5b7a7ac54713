//! The poll thread: the only user of the `BaseConsumer`. It polls the group's main queue (DESIGN
//! §2: no split partition queues), takes everything already fetched (up to `POLL_BATCH` records)
//! and hands each partition actor its records as one message per poll round, runs
//! flow control every `FLOW_INTERVAL`, commits and retries seeks every `commit_interval`, and
//! carries out the `Consumer` actor's commands (replace a partition actor, stop).
//!
//! It must not decode records or talk to AWS.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message};
use rdkafka::topic_partition_list::Offset;

use super::assignment::{Shared, Slot, Tp};
use super::commit;
use super::flow::{FLOW_INTERVAL, Flow, RESUME_INTERVAL, set_paused};
use super::rebalance::{RelayContext, error_kind};
use crate::config::{ClusterConfig, KafkaConfig};
use crate::partition::PartitionMsg;
use crate::record::RecordIn;
use crate::status::ConsumerPhase;

/// At most this many records per poll round (what is already fetched; polling never waits for
/// more once it has one).
const POLL_BATCH: usize = 2048;

/// Records of one partition taken in one poll round.
struct Group {
    tp: Tp,
    slot: Option<Slot>,
    source_topic: String,
    records: Vec<RecordIn>,
}

/// Commands to the poll thread.
pub enum Cmd {
    /// A failed partition actor was replaced: swap it in and seek back to the last completed offset.
    Replace {
        tp: Tp,
        actor: ActorRef<PartitionMsg>,
    },
    /// Stop polling. Graceful: drain, commit, leave the group. Otherwise (abort): commit nothing.
    Stop {
        graceful: bool,
        deadline: Duration,
        done: Option<std_mpsc::Sender<()>>,
    },
}

/// The consumer's client configuration: the cluster's properties, then what the delivery
/// contract needs (manual commits, cooperative rebalancing) and bounded prefetch.
pub fn client_config(
    k: &KafkaConfig,
    cluster: &ClusterConfig,
    memory_budget: usize,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (key, v) in &cluster.properties {
        c.set(key, v);
    }
    c.set("bootstrap.servers", &cluster.bootstrap_servers)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &k.auto_offset_reset)
        .set("partition.assignment.strategy", "cooperative-sticky");
    if !cluster.properties.contains_key("statistics.interval.ms") {
        c.set("statistics.interval.ms", "2000");
    }
    // A partition resumed after a pause joins the next Fetch request to its leader, and librdkafka
    // keeps one Fetch in flight per broker: with the default long poll (500 ms) a resumed
    // partition waited behind a Fetch for caught-up partitions. Measured: stalls of 300–500 ms
    // under load (BENCHMARKS.md). 50 ms costs at most 20 idle Fetch requests per second per broker.
    if !cluster.properties.contains_key("fetch.wait.max.ms") {
        c.set("fetch.wait.max.ms", "50");
    }
    // librdkafka's prefetch queue is memory too: a quarter of the budget (its default is 64 MiB).
    if !cluster
        .properties
        .contains_key("queued.max.messages.kbytes")
    {
        let kb = (memory_budget / 4 / 1024).clamp(1024, 65536);
        c.set("queued.max.messages.kbytes", kb.to_string());
    }
    c
}

pub struct PollLoop {
    pub consumer: BaseConsumer<RelayContext>,
    pub shared: Arc<Shared>,
    pub cmds: std_mpsc::Receiver<Cmd>,
    pub commit_interval: Duration,
    pub flow: Flow,
    /// Some partition is paused at a bound: poll briefly and check for resumption often.
    pub held_back: std::cell::Cell<bool>,
}

impl PollLoop {
    pub fn run(self) {
        self.shared.status.set_phase(ConsumerPhase::Running);
        let mut last_commit = Instant::now();
        let mut last_flow = Instant::now();
        loop {
            while let Ok(cmd) = self.cmds.try_recv() {
                match cmd {
                    Cmd::Replace { tp, actor } => self.replace(tp, actor),
                    Cmd::Stop {
                        graceful,
                        deadline,
                        done,
                    } => {
                        self.stop(graceful, deadline);
                        if let Some(d) = done {
                            let _ = d.send(());
                        }
                        return;
                    }
                }
            }
            self.poll_round();
            let interval = if self.held_back.get() {
                RESUME_INTERVAL
            } else {
                FLOW_INTERVAL
            };
            if last_flow.elapsed() >= interval {
                self.held_back
                    .set(self.flow.tick(&self.consumer, &self.shared));
                last_flow = Instant::now();
            }
            if last_commit.elapsed() >= self.commit_interval {
                commit::commit_async(&self.shared, &self.consumer);
                self.seek_pending();
                last_commit = Instant::now();
            }
        }
    }

    /// Polls once (waiting up to 50 ms for the first record), takes whatever else is already
    /// fetched, and hands each partition its records in one message.
    fn poll_round(&self) {
        let mut groups: Vec<Group> = Vec::new();
        let mut wait = if self.held_back.get() {
            RESUME_INTERVAL
        } else {
            Duration::from_millis(50)
        };
        for _ in 0..POLL_BATCH {
            match self.consumer.poll(wait) {
                Some(Ok(m)) => self.take(&m, &mut groups),
                Some(Err(e)) => {
                    metrics::counter!("cdc_relay_consumer_errors_total", "kind" => error_kind(&e))
                        .increment(1);
                    tracing::debug!(error = %e, "consumer poll error");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        for g in groups {
            let Some(slot) = g.slot else {
                continue;
            };
            if g.records.is_empty() {
                continue;
            }
            // If the actor died, the records come back and drop their tickets; its supervisor
            // replaces the actor and seeks back. Not tracked, not committed.
            let _ = slot.actor.cast(PartitionMsg::Records(g.records));
        }
    }

    /// Adds one fetched record to its partition's group.
    fn take(&self, m: &rdkafka::message::BorrowedMessage<'_>, groups: &mut Vec<Group>) {
        let (topic, partition) = (m.topic(), m.partition());
        let at = match groups
            .iter()
            .position(|g| g.tp.1 == partition && g.tp.0 == topic)
        {
            Some(i) => i,
            None => {
                let tp = (topic.to_string(), partition);
                let slot = self.shared.slot(&tp);
                if slot.is_none() {
                    tracing::debug!(
                        topic,
                        partition,
                        "record for an unassigned partition dropped (not committed)"
                    );
                }
                groups.push(Group {
                    // Routes, `_src`, events and the DLQ use the source topic name in every region.
                    source_topic: topic
                        .strip_prefix(self.shared.topic_prefix.as_str())
                        .unwrap_or(topic)
                        .to_string(),
                    tp,
                    // Fetched before a pending seek took effect: fetched again after it.
                    slot: slot.filter(|s| s.seek_to.is_none()),
                    records: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        let Some(slot) = &g.slot else {
            return;
        };
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let bytes = RecordIn::accounted_bytes(m.key(), m.payload(), &headers);
        g.records.push(RecordIn {
            topic: g.source_topic.clone(),
            partition,
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
            received: Instant::now(),
            ticket: Some(slot.state.admit(bytes)),
            trace: None,
        });
        // At a bound the partition (or everything) pauses at once: librdkafka then drops what
        // it had fetched beyond this record, so the bounds hold to within one record.
        if self
            .flow
            .after_dispatch(&self.consumer, &self.shared, &g.tp, slot)
        {
            self.held_back.set(true);
        }
    }

    /// Seeks that are due (start positions, restarts); a partition paused meanwhile resumes.
    fn seek_pending(&self) {
        for (tp, slot) in commit::retry_seeks(&self.shared, &self.consumer) {
            if slot.state.is_paused() && slot.state.stopped().is_none() {
                set_paused(&self.consumer, &tp, &slot, false);
            }
        }
    }

    fn replace(&self, tp: Tp, actor: ActorRef<PartitionMsg>) {
        let Some(state) = ({
            let Ok(mut slots) = self.shared.slots.lock() else {
                return;
            };
            slots.get_mut(&tp).map(|s| {
                s.actor = actor.clone();
                Arc::clone(&s.state)
            })
        }) else {
            // Revoked meanwhile.
            actor.stop(None);
            return;
        };
        // Everything below `committable` is complete; everything from it on is fetched again.
        let to = match state.committable() {
            Some(o) => Offset::Offset(o),
            None => commit::group_offset(&self.shared, &self.consumer, &tp),
        };
        // The dead actor's records release their in-flight tickets as they are dropped.
        self.shared.update(&tp, |s| s.seek_to = Some(to));
        self.seek_pending();
    }

    fn stop(self, graceful: bool, deadline: Duration) {
        let sh = Arc::clone(&self.shared);
        let slots: Vec<(Tp, Slot)> = sh.snapshot();
        if graceful {
            sh.status.set_phase(ConsumerPhase::Draining);
            sh.drain(&slots, deadline);
            commit::commit_sync(&sh, &self.consumer, &slots);
        } else {
            sh.aborted.store(true, Ordering::Release);
        }
        sh.closing.store(true, Ordering::Release);
        if let Ok(mut s) = sh.slots.lock() {
            s.clear();
        }
        sh.stop_actors(&slots);
        if graceful {
            self.consumer.unsubscribe();
            // Dropping the consumer closes it (leaves the group).
            drop(self.consumer);
        } else {
            // Abandoned (abort, or a switch away from a dead cluster): closing may wait for an
            // unreachable coordinator for a session timeout, so it happens in the background;
            // nothing more is committed (`aborted`).
            let consumer = self.consumer;
            let _ = std::thread::Builder::new()
                .name("kafka-close".into())
                .spawn(move || drop(consumer));
        }
        sh.status.set_phase(ConsumerPhase::Stopped);
        tracing::info!(graceful, "consumer stopped");
    }
}
