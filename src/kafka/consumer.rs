//! The Kafka consumer: one OS thread polls the group's main queue and dispatches each record to
//! its partition actor (DESIGN §2: no split partition queues). The same thread commits completed
//! offsets, pauses and resumes partitions, and runs the rebalance callbacks (drain, then commit, on
//! revoke; spawn partition actors on assign).
//!
//! `Consumer` is the ractor actor that owns the thread and supervises the partition actors, so it
//! can be torn down and rebuilt against another cluster while the sink pools keep running.
//! It must not decode records or talk to AWS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Headers as _, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::{ClusterConfig, Config, KafkaConfig};
use crate::partition::{PartitionActor, PartitionArgs, PartitionDeps, PartitionMsg, RecordIn};
use crate::status::{ConsumerPhase, PartitionState, StatusBoard};
use crate::supervision::{Decision, RestartBudget};

type Tp = (String, i32);

/// How often paused partitions are checked for resumption.
const FLOW_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot create the Kafka consumer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    #[error("cannot subscribe: {0}")]
    Subscribe(#[source] rdkafka::error::KafkaError),
    #[error("consumer thread: {0}")]
    Thread(String),
}

/// One assigned partition: its actor and shared state.
#[derive(Clone)]
struct Slot {
    actor: ActorRef<PartitionMsg>,
    state: Arc<PartitionState>,
    /// A seek that has not succeeded yet (after an actor restart). Until it does, records of this
    /// partition are not dispatched: they would run ahead of the restarted actor's tracker.
    seek_to: Option<Offset>,
}

/// State shared by the poll thread, its rebalance callbacks and the `Consumer` actor.
struct Shared {
    slots: Mutex<HashMap<Tp, Slot>>,
    deps: Arc<PartitionDeps>,
    status: Arc<StatusBoard>,
    rt: tokio::runtime::Handle,
    supervisor: ActorCell,
    drain_timeout: Duration,
    /// Set while closing: rebalance callbacks then only stop actors (no drain, no commit).
    closing: AtomicBool,
    /// Set for an abort (crash simulation): nothing more is committed.
    aborted: AtomicBool,
    reset: String,
    /// Topic names on this cluster are `topic_prefix + <source topic>` (mirror topics).
    topic_prefix: String,
    /// Where to start partitions that have no usable committed offset on this cluster (after a
    /// failover: the checkpoint or a timestamp lookup). Taken on assign.
    start_offsets: Mutex<HashMap<Tp, i64>>,
    /// When each kind of client error was last logged (rate limit).
    error_logged: Mutex<HashMap<&'static str, Instant>>,
}

impl Shared {
    /// A copy of the assigned partitions' slots (the lock is not held while they are used).
    fn snapshot(&self) -> Vec<(Tp, Slot)> {
        self.slots
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn spawn_partition(
        &self,
        topic: &str,
        partition: i32,
        state: Option<Arc<PartitionState>>,
    ) -> Option<Slot> {
        let state = state.unwrap_or_else(|| {
            PartitionState::new(topic, partition, Arc::clone(&self.status.memory))
        });
        let args = PartitionArgs {
            deps: Arc::clone(&self.deps),
            state: Arc::clone(&state),
        };
        let spawned = self.rt.block_on(Actor::spawn_linked(
            None,
            PartitionActor,
            args,
            self.supervisor.clone(),
        ));
        match spawned {
            Ok((actor, _)) => Some(Slot {
                actor,
                state,
                seek_to: None,
            }),
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "cannot spawn partition actor");
                None
            }
        }
    }

    fn slot(&self, tp: &Tp) -> Option<Slot> {
        self.slots.lock().ok().and_then(|s| s.get(tp).cloned())
    }

    /// Asks the actors to drain and waits for them, up to `deadline`.
    fn drain(&self, slots: &[(Tp, Slot)], deadline: Duration) {
        let until = Instant::now() + deadline;
        let waits: Vec<_> = slots
            .iter()
            .filter_map(|(tp, s)| {
                s.state.set_draining();
                let (tx, rx) = std_mpsc::channel();
                s.actor
                    .cast(PartitionMsg::Drain(tx))
                    .ok()
                    .map(|_| (tp.clone(), rx))
            })
            .collect();
        for (tp, rx) in waits {
            let left = until.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                tracing::warn!(topic = %tp.0, partition = tp.1, "drain deadline passed with writes in flight; committing what is complete");
            }
        }
    }

    /// Synchronously commits the committable offsets of `slots`.
    fn commit_sync(&self, consumer: &BaseConsumer<RelayContext>, slots: &[(Tp, Slot)]) {
        if self.aborted.load(Ordering::Acquire) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), s) in slots {
            if let Some(c) = s.state.committable()
                && s.state.committed() != Some(c)
            {
                let _ = tpl.add_partition_offset(t, *p, Offset::Offset(c));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                for (_, s) in slots {
                    if let Some(c) = s.state.committable() {
                        s.state.set_committed(c);
                    }
                }
                metrics::counter!("cdc_relay_commits_total", "result" => "ok", "mode" => "sync")
                    .increment(1);
            }
            Err(e) => {
                metrics::counter!("cdc_relay_commits_total", "result" => "error", "mode" => "sync")
                    .increment(1);
                tracing::error!(error = %e, "synchronous commit failed; the records will be replayed (version guards absorb it)");
            }
        }
    }

    fn stop_actors(&self, slots: &[(Tp, Slot)]) {
        for ((t, p), s) in slots {
            s.actor.stop(Some("partition revoked".into()));
            self.status.remove_partition(t, *p);
        }
    }
}

/// librdkafka callbacks: rebalance, commit results, statistics.
pub struct RelayContext {
    shared: Arc<Shared>,
}

impl ClientContext for RelayContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, ps) in &t.partitions {
                if *p < 0 || ps.hi_offset < 0 {
                    continue;
                }
                if let Some(s) = self.shared.slot(&(topic.clone(), *p)) {
                    s.state.set_high_watermark(ps.hi_offset);
                    if let Some(lag) = s.state.lag() {
                        metrics::gauge!("cdc_relay_consumer_lag_messages", "topic" => topic.clone(), "partition" => p.to_string())
                            .set(lag as f64);
                    }
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // A dead cluster reports the same errors many times a second: warn once per kind per
        // 10 s (the poll path counts them in cdc_relay_consumer_errors_total).
        let kind = error_kind(&error);
        let due = self.shared.error_logged.lock().is_ok_and(|mut m| {
            let now = Instant::now();
            match m.get(kind) {
                Some(t) if now.duration_since(*t) < Duration::from_secs(10) => false,
                _ => {
                    m.insert(kind, now);
                    true
                }
            }
        });
        if due {
            tracing::warn!(%error, reason, "kafka client error (repeats of this kind are suppressed for 10 s)");
        } else {
            tracing::debug!(%error, reason, "kafka client error");
        }
    }
}

fn error_kind(e: &rdkafka::error::KafkaError) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::BrokerTransportFailure) => "transport",
        Some(C::AllBrokersDown) => "all_brokers_down",
        Some(_) => "kafka",
        None => "client",
    }
}

impl ConsumerContext for RelayContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let sh = &self.shared;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<(Tp, Slot)> = {
                    let Ok(mut slots) = sh.slots.lock() else {
                        return;
                    };
                    tpl.elements()
                        .iter()
                        .filter_map(|e| {
                            let tp = (e.topic().to_string(), e.partition());
                            slots.remove(&tp).map(|s| (tp, s))
                        })
                        .collect()
                };
                tracing::info!(partitions = ?revoked.iter().map(|(tp, _)| tp).collect::<Vec<_>>(), lost = consumer.assignment_lost(), "partitions revoked");
                if !sh.closing.load(Ordering::Acquire) && !consumer.assignment_lost() {
                    sh.drain(&revoked, sh.drain_timeout);
                    sh.commit_sync(consumer, &revoked);
                }
                sh.stop_actors(&revoked);
            }
            Rebalance::Assign(tpl) => {
                if sh.closing.load(Ordering::Acquire) {
                    return;
                }
                for e in tpl.elements() {
                    let tp = (e.topic().to_string(), e.partition());
                    if sh.slot(&tp).is_some() {
                        continue;
                    }
                    if let Some(mut slot) = sh.spawn_partition(&tp.0, tp.1, None) {
                        if let Some(o) =
                            sh.start_offsets.lock().ok().and_then(|mut m| m.remove(&tp))
                        {
                            // Not dispatched until the seek succeeded (see `dispatch`).
                            slot.seek_to = Some(Offset::Offset(o));
                        }
                        sh.status.insert_partition(Arc::clone(&slot.state));
                        if let Ok(mut s) = sh.slots.lock() {
                            s.insert(tp, slot);
                        }
                    }
                }
                tracing::info!(partitions = ?tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect::<Vec<_>>(), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // librdkafka keeps a partition's pause flag across revoke and re-assign; a fresh partition
        // actor starts unpaused, so the partition must be too.
        if let Rebalance::Assign(tpl) = rebalance
            && tpl.count() > 0
            && let Err(e) = consumer.resume(tpl)
        {
            tracing::warn!(error = %e, "resume of newly assigned partitions failed");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let (Offset::Offset(o), Some(s)) = (
                        e.offset(),
                        self.shared.slot(&(e.topic().to_string(), e.partition())),
                    ) {
                        s.state.set_committed(o);
                        metrics::gauge!("cdc_relay_committed_offset", "topic" => e.topic().to_string(), "partition" => e.partition().to_string())
                            .set(o as f64);
                    }
                }
            }
            Err(e) => {
                metrics::counter!("cdc_relay_commits_total", "result" => "error", "mode" => "async").increment(1);
                // A consumer that has just (re)joined has no coordinator for a moment: normal.
                if e.rdkafka_error_code()
                    == Some(rdkafka::error::RDKafkaErrorCode::WaitingForCoordinator)
                {
                    tracing::debug!(error = %e, "offset commit deferred; retried at the next interval");
                } else {
                    tracing::warn!(error = %e, "offset commit failed; retried at the next interval");
                }
            }
        }
    }
}

/// Commands to the poll thread.
enum Cmd {
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

fn client_config(k: &KafkaConfig, cluster: &ClusterConfig, memory_budget: usize) -> ClientConfig {
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

struct PollLoop {
    consumer: BaseConsumer<RelayContext>,
    shared: Arc<Shared>,
    cmds: std_mpsc::Receiver<Cmd>,
    commit_interval: Duration,
    flow: Flow,
}

/// Back-pressure bounds (DESIGN §3.5).
struct Flow {
    max_records: usize,
    max_bytes: usize,
    budget: usize,
    resume_below: f64,
}

impl PollLoop {
    fn run(self) {
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
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => self.dispatch(&m),
                Some(Err(e)) => {
                    metrics::counter!("cdc_relay_consumer_errors_total", "kind" => error_kind(&e))
                        .increment(1);
                    tracing::debug!(error = %e, "consumer poll error");
                }
                None => {}
            }
            if last_flow.elapsed() >= FLOW_INTERVAL {
                self.flow_control();
                last_flow = Instant::now();
            }
            if last_commit.elapsed() >= self.commit_interval {
                self.commit_async();
                self.retry_seeks();
                last_commit = Instant::now();
            }
        }
    }

    fn dispatch(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let tp = (m.topic().to_string(), m.partition());
        let Some(slot) = self.shared.slot(&tp) else {
            tracing::debug!(topic = %tp.0, partition = tp.1, "record for an unassigned partition dropped (not committed)");
            return;
        };
        if slot.seek_to.is_some() {
            // Fetched before the pending seek took effect: fetched again after it. Not tracked.
            return;
        }
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let bytes = RecordIn::accounted_bytes(m.key(), m.payload(), &headers);
        let rec = RecordIn {
            // Routes, `_src`, events and the DLQ use the source topic name in every region.
            topic: tp
                .0
                .strip_prefix(self.shared.topic_prefix.as_str())
                .unwrap_or(&tp.0)
                .to_string(),
            partition: tp.1,
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
            received: Instant::now(),
            ticket: Some(slot.state.admit(bytes)),
        };
        // If the actor died, the record comes back and drops its ticket; its supervisor replaces
        // the actor and seeks back. Not tracked, not committed.
        let _ = slot.actor.cast(PartitionMsg::Record(Box::new(rec)));
        let f = &self.flow;
        if !slot.state.is_paused()
            && (slot.state.in_flight() >= f.max_records
                || slot.state.in_flight_bytes() >= f.max_bytes)
        {
            self.set_paused(&tp, &slot, true);
        }
        if self.shared.status.memory.bytes() >= f.budget {
            self.pause_all();
        }
    }

    /// The global memory budget is spent: pause every partition until it falls below low water.
    fn pause_all(&self) {
        let slots = self.shared.snapshot();
        let mut paused = 0;
        for (tp, s) in slots {
            if !s.state.is_paused() {
                self.set_paused(&tp, &s, true);
                paused += 1;
            }
        }
        if paused > 0 {
            metrics::counter!("cdc_relay_memory_budget_pauses_total").increment(1);
            tracing::debug!(
                in_flight_bytes = self.shared.status.memory.bytes(),
                budget = self.flow.budget,
                "memory budget reached: all partitions paused"
            );
        }
    }

    fn set_paused(&self, tp: &Tp, slot: &Slot, paused: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        let r = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match r {
            Ok(()) => {
                slot.state.set_paused(paused);
                let n = self
                    .shared
                    .status
                    .partitions()
                    .iter()
                    .filter(|p| p.is_paused())
                    .count();
                metrics::gauge!("cdc_relay_paused_partitions").set(n as f64);
            }
            Err(e) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "pause/resume failed")
            }
        }
    }

    /// Pauses stopped partitions; resumes back-pressured ones once they and the process are below
    /// the low-water marks (`resume_below` of each bound).
    fn flow_control(&self) {
        let f = &self.flow;
        metrics::gauge!("cdc_relay_in_flight_bytes").set(self.shared.status.memory.bytes() as f64);
        let global_ok =
            (self.shared.status.memory.bytes() as f64) <= f.budget as f64 * f.resume_below;
        let slots = self.shared.snapshot();
        for (tp, s) in slots {
            let stopped = s.state.stopped().is_some();
            if stopped && !s.state.is_paused() {
                self.set_paused(&tp, &s, true);
            } else if !stopped
                && s.state.is_paused()
                && global_ok
                && (s.state.in_flight() as f64) <= f.max_records as f64 * f.resume_below
                && (s.state.in_flight_bytes() as f64) <= f.max_bytes as f64 * f.resume_below
            {
                self.set_paused(&tp, &s, false);
            }
        }
    }

    fn commit_async(&self) {
        if self.shared.aborted.load(Ordering::Acquire) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        if let Ok(slots) = self.shared.slots.lock() {
            for ((t, p), s) in slots.iter() {
                if let Some(c) = s.state.committable()
                    && s.state.committed() != Some(c)
                {
                    let _ = tpl.add_partition_offset(t, *p, Offset::Offset(c));
                }
            }
        }
        if tpl.count() > 0 {
            match commit_reported(&self.consumer, &tpl) {
                Ok(()) => metrics::counter!("cdc_relay_commits_total", "result" => "ok", "mode" => "async").increment(1),
                Err(e) => tracing::warn!(error = %e, "commit request failed"),
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
            None => self.group_offset(&tp),
        };
        // The dead actor's records release their in-flight tickets as they are dropped.
        if let Ok(mut slots) = self.shared.slots.lock()
            && let Some(s) = slots.get_mut(&tp)
        {
            s.seek_to = Some(to);
        }
        self.retry_seeks();
    }

    /// Performs pending seeks; a failed one is retried at the next tick.
    fn retry_seeks(&self) {
        let pending: Vec<(Tp, Offset, Slot)> = self
            .shared
            .slots
            .lock()
            .map(|s| {
                s.iter()
                    .filter_map(|(tp, slot)| slot.seek_to.map(|o| (tp.clone(), o, slot.clone())))
                    .collect()
            })
            .unwrap_or_default();
        for (tp, to, slot) in pending {
            match self.consumer.seek(&tp.0, tp.1, to, Duration::from_secs(5)) {
                Ok(()) => {
                    tracing::info!(topic = %tp.0, partition = tp.1, offset = ?to, "partition actor replaced; seeked back");
                    if let Ok(mut slots) = self.shared.slots.lock()
                        && let Some(s) = slots.get_mut(&tp)
                    {
                        s.seek_to = None;
                    }
                    if slot.state.is_paused() {
                        self.set_paused(&tp, &slot, false);
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "seek after restart failed; retrying")
                }
            }
        }
    }

    /// The group's committed offset for `tp`, or the reset policy's end.
    fn group_offset(&self, tp: &Tp) -> Offset {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.0, tp.1);
        let fallback = if self.shared.reset == "latest" {
            Offset::End
        } else {
            Offset::Beginning
        };
        match self.consumer.committed_offsets(tpl, Duration::from_secs(5)) {
            Ok(c) => c
                .find_partition(&tp.0, tp.1)
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(fallback),
            Err(_) => fallback,
        }
    }

    fn stop(self, graceful: bool, deadline: Duration) {
        let sh = Arc::clone(&self.shared);
        let slots: Vec<(Tp, Slot)> = sh
            .slots
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        if graceful {
            sh.status.set_phase(ConsumerPhase::Draining);
            sh.drain(&slots, deadline);
            sh.commit_sync(&self.consumer, &slots);
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

/// Messages to the `Consumer` actor.
pub enum ConsumerMsg {
    /// Restart the partition actor of `tp` (sent to itself after the backoff delay).
    RestartPartition(Tp),
    /// Drain, commit, leave the group; reply when done.
    Shutdown(tokio::sync::oneshot::Sender<()>),
    /// Stop without committing anything more (crash simulation for tests and chaos).
    Abort,
    /// Fault injection (tests, chaos): make the partition actor of `tp` fail.
    FailPartition(Tp),
}

pub struct ConsumerArgs {
    pub config: Arc<Config>,
    /// The cluster to consume (the active region).
    pub cluster: ClusterConfig,
    /// Start positions for partitions without a usable committed offset (by topic name on
    /// this cluster).
    pub start_offsets: HashMap<Tp, i64>,
    pub deps: Arc<PartitionDeps>,
    pub status: Arc<StatusBoard>,
}

pub struct ConsumerState {
    shared: Arc<Shared>,
    cmds: std_mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
    budget: RestartBudget,
    shutdown_timeout: Duration,
}

impl Drop for ConsumerState {
    fn drop(&mut self) {
        // However the actor ends, the poll thread must not outlive it.
        let _ = self.cmds.send(Cmd::Stop {
            graceful: false,
            deadline: Duration::ZERO,
            done: None,
        });
    }
}

/// The actor owning the Kafka consumer for the active cluster.
pub struct ConsumerActor;

impl ConsumerActor {
    /// Asks the poll thread to stop and waits for it off the async runtime.
    async fn stop_thread(state: &mut ConsumerState, graceful: bool) {
        let (tx, rx) = std_mpsc::channel();
        let deadline = state.shutdown_timeout;
        let _ = state.cmds.send(Cmd::Stop {
            graceful,
            deadline,
            done: Some(tx),
        });
        let thread = state.thread.take();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = rx.recv_timeout(deadline + Duration::from_secs(10));
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Actor for ConsumerActor {
    type Msg = ConsumerMsg;
    type State = ConsumerState;
    type Arguments = ConsumerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConsumerMsg>,
        args: ConsumerArgs,
    ) -> Result<ConsumerState, ActorProcessingErr> {
        let k = &args.config.kafka;
        let shared = Arc::new(Shared {
            slots: Mutex::new(HashMap::new()),
            deps: args.deps,
            status: Arc::clone(&args.status),
            rt: tokio::runtime::Handle::current(),
            supervisor: myself.get_cell(),
            drain_timeout: k.revoke_drain_timeout,
            closing: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            reset: k.auto_offset_reset.clone(),
            topic_prefix: args.cluster.topic_prefix.clone(),
            start_offsets: Mutex::new(args.start_offsets),
            error_logged: Mutex::new(HashMap::new()),
        });
        let rt = &args.config.runtime;
        let consumer: BaseConsumer<RelayContext> =
            client_config(k, &args.cluster, rt.memory_budget_bytes)
                .create_with_context(RelayContext {
                    shared: Arc::clone(&shared),
                })
                .map_err(ConsumerError::Create)?;
        match &k.topic_pattern {
            Some(p) => consumer.subscribe(&[p.as_str()]),
            None => {
                let topics: Vec<String> = k
                    .topics
                    .iter()
                    .map(|t| format!("{}{t}", args.cluster.topic_prefix))
                    .collect();
                consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())
            }
        }
        .map_err(ConsumerError::Subscribe)?;
        args.status.set_bootstrap(&args.cluster.bootstrap_servers);
        let (tx, rx) = std_mpsc::channel();
        let poll = PollLoop {
            consumer,
            shared: Arc::clone(&shared),
            cmds: rx,
            commit_interval: k.commit_interval,
            flow: Flow {
                max_records: rt.max_in_flight_per_partition,
                max_bytes: rt.max_in_flight_bytes_per_partition,
                budget: rt.memory_budget_bytes,
                resume_below: rt.resume_below,
            },
        };
        let thread = std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || poll.run())
            .map_err(|e| ConsumerError::Thread(e.to_string()))?;
        tracing::info!(cluster = %args.cluster.name, bootstrap = %args.cluster.bootstrap_servers, group = %k.group_id, "consumer started");
        Ok(ConsumerState {
            shared,
            cmds: tx,
            thread: Some(thread),
            budget: RestartBudget::new(args.config.runtime.supervision.clone()),
            shutdown_timeout: args.config.runtime.shutdown_timeout,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ConsumerMsg>,
        msg: ConsumerMsg,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConsumerMsg::RestartPartition(tp) => {
                let Some(slot) = state.shared.slot(&tp) else {
                    return Ok(());
                };
                let args = PartitionArgs {
                    deps: Arc::clone(&state.shared.deps),
                    state: Arc::clone(&slot.state),
                };
                let (actor, _) =
                    Actor::spawn_linked(None, PartitionActor, args, myself.get_cell()).await?;
                let _ = state.cmds.send(Cmd::Replace { tp, actor });
                Ok(())
            }
            ConsumerMsg::Shutdown(reply) => {
                ConsumerActor::stop_thread(state, true).await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
                Ok(())
            }
            ConsumerMsg::FailPartition(tp) => {
                if let Some(slot) = state.shared.slot(&tp) {
                    let _ = slot
                        .actor
                        .cast(PartitionMsg::Fail(format!("{}/{}", tp.0, tp.1)));
                }
                Ok(())
            }
            ConsumerMsg::Abort => {
                ConsumerActor::stop_thread(state, false).await;
                myself.stop(Some("abort".into()));
                Ok(())
            }
        }
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ConsumerMsg>,
        evt: SupervisionEvent,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            let tp = state.shared.slots.lock().ok().and_then(|s| {
                s.iter()
                    .find(|(_, slot)| slot.actor.get_id() == cell.get_id())
                    .map(|(tp, _)| tp.clone())
            });
            let Some(tp) = tp else { return Ok(()) };
            let name = format!("partition:{}:{}", tp.0, tp.1);
            match state.budget.on_failure(&name, tokio::time::Instant::now()) {
                Decision::Restart { after, attempt } => {
                    tracing::warn!(topic = %tp.0, partition = tp.1, error = %err, attempt, "partition actor failed; restarting");
                    myself.send_after(after, move || ConsumerMsg::RestartPartition(tp));
                }
                Decision::Escalate { restarts } => {
                    return Err(format!(
                        "partition {name} failed {restarts} times within the restart period: {err}"
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConsumerMsg>,
        state: &mut ConsumerState,
    ) -> Result<(), ActorProcessingErr> {
        if state.thread.is_some() {
            ConsumerActor::stop_thread(state, false).await;
        }
        Ok(())
    }
}

/// An asynchronous commit whose result comes back through the consumer's poll as an
/// `OFFSET_COMMIT` event (→ `RelayContext::commit_callback`, which records the committed offsets).
/// rust-rdkafka's `commit(Async)` has librdkafka send no reply at all when no `offset_commit_cb`
/// is configured, so committed offsets would never be known; this asks for the reply on the
/// consumer queue that `poll` serves.
fn commit_reported(
    consumer: &BaseConsumer<RelayContext>,
    tpl: &TopicPartitionList,
) -> Result<(), rdkafka::error::RDKafkaErrorCode> {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` and `tpl` are live for the whole call; librdkafka copies the list.
    // `rd_kafka_queue_get_consumer` returns a new reference to the consumer queue, released
    // right after the call; the pending reply holds its own reference.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return consumer.commit(tpl, CommitMode::Async).map_err(|e| {
                e.rdkafka_error_code()
                    .unwrap_or(rdkafka::error::RDKafkaErrorCode::Fail)
            });
        }
        let err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    match rdkafka::error::RDKafkaErrorCode::from(err) {
        rdkafka::error::RDKafkaErrorCode::NoError => Ok(()),
        code => Err(code),
    }
}
