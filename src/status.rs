//! Shared runtime state read by `/status`, `/ready` and the consumer: per-partition offsets,
//! in-flight counts, poison stops; consumer state; sink health.
//!
//! Plain shared data with atomics. It must not make decisions or perform I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::sinks::pool::SinkHealth;

/// `-1` in the atomics below means "none yet".
const NONE: i64 = -1;

/// Why a partition stopped: a poison record with no DLQ configured, or one the DLQ rejected.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StopInfo {
    pub offset: i64,
    pub class: String,
    pub reason: String,
    pub error: String,
}

/// Record bytes in flight across the process (DESIGN §3.5's global memory budget).
#[derive(Debug, Default)]
pub struct MemoryUse {
    bytes: AtomicUsize,
    peak: AtomicUsize,
}

impl MemoryUse {
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
    /// The highest value `bytes` reached since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

/// Accounts one record against its partition's and the process's in-flight bounds until it is
/// dropped: when the record is complete, discarded, or its actor died.
#[derive(Debug)]
pub struct InFlight {
    state: Arc<PartitionState>,
    bytes: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let sub = |a: &AtomicUsize, n: usize| {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.state.in_flight, 1);
        sub(&self.state.in_flight_bytes, self.bytes);
        sub(&self.state.memory.bytes, self.bytes);
    }
}

/// State of one assigned partition.
#[derive(Debug)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    committable: AtomicI64,
    committed: AtomicI64,
    processed_ts: AtomicI64,
    high_watermark: AtomicI64,
    in_flight: AtomicUsize,
    in_flight_bytes: AtomicUsize,
    memory: Arc<MemoryUse>,
    paused: AtomicBool,
    draining: AtomicBool,
    stopped: Mutex<Option<StopInfo>>,
}

impl PartitionState {
    pub fn new(topic: &str, partition: i32, memory: Arc<MemoryUse>) -> Arc<Self> {
        Arc::new(PartitionState {
            topic: topic.to_string(),
            partition,
            committable: AtomicI64::new(NONE),
            committed: AtomicI64::new(NONE),
            processed_ts: AtomicI64::new(NONE),
            high_watermark: AtomicI64::new(NONE),
            in_flight: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            memory,
            paused: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopped: Mutex::new(None),
        })
    }

    fn get(a: &AtomicI64) -> Option<i64> {
        let v = a.load(Ordering::Acquire);
        (v != NONE).then_some(v)
    }

    /// The offset that may be committed (next to read), as the partition's tracker says.
    pub fn committable(&self) -> Option<i64> {
        Self::get(&self.committable)
    }
    pub fn set_committable(&self, o: i64) {
        self.committable.store(o, Ordering::Release);
    }
    /// The last offset committed to the group.
    pub fn committed(&self) -> Option<i64> {
        Self::get(&self.committed)
    }
    pub fn set_committed(&self, o: i64) {
        self.committed.store(o, Ordering::Release);
    }
    /// Timestamp (ms) of the last record of the completed prefix (every earlier record is done).
    pub fn processed_ts(&self) -> Option<i64> {
        Self::get(&self.processed_ts)
    }
    pub fn set_processed_ts(&self, ts: i64) {
        self.processed_ts.store(ts, Ordering::Release);
    }
    pub fn high_watermark(&self) -> Option<i64> {
        Self::get(&self.high_watermark)
    }
    pub fn set_high_watermark(&self, o: i64) {
        self.high_watermark.store(o, Ordering::Release);
    }
    /// Records dispatched to the partition actor and not yet completed or discarded.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes.load(Ordering::Acquire)
    }
    /// Admits one record of `bytes`; the ticket releases it when dropped.
    pub fn admit(self: &Arc<Self>, bytes: usize) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        let total = self.memory.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.memory.peak.fetch_max(total, Ordering::AcqRel);
        InFlight {
            state: Arc::clone(self),
            bytes,
        }
    }
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }
    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Release);
    }
    /// Set by the consumer thread on revoke/shutdown: the actor discards queued records at once
    /// (they are not tracked, so never committed) instead of processing its mailbox backlog.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    pub fn stopped(&self) -> Option<StopInfo> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }
    pub fn set_stopped(&self, info: Option<StopInfo>) {
        if let Ok(mut s) = self.stopped.lock() {
            *s = info;
        }
    }

    /// Messages between the high watermark and what is committed (or committable).
    pub fn lag(&self) -> Option<i64> {
        let hw = self.high_watermark()?;
        let pos = self.committed().or(self.committable())?;
        Some((hw - pos).max(0))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "topic": self.topic,
            "partition": self.partition,
            "committed_offset": self.committed(),
            "committable_offset": self.committable(),
            "high_watermark": self.high_watermark(),
            "lag": self.lag(),
            "in_flight": self.in_flight(),
            "in_flight_bytes": self.in_flight_bytes(),
            "paused": self.is_paused(),
            "stopped": self.stopped(),
        })
    }
}

/// Consumer lifecycle, as `/ready` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerPhase {
    Starting,
    /// Subscribed and polling; partitions may or may not be assigned yet.
    Running,
    Draining,
    Stopped,
}

/// Record outcomes of this relay instance (the Prometheus counters are process-wide).
#[derive(Debug, Default)]
pub struct Outcomes {
    pub written: std::sync::atomic::AtomicU64,
    pub stale: std::sync::atomic::AtomicU64,
    /// Completed by a newer version of their key written in their place (coalescing).
    pub superseded: std::sync::atomic::AtomicU64,
    pub skipped: std::sync::atomic::AtomicU64,
    /// Records that stopped their partition (no DLQ, or the DLQ rejected them).
    pub poison: std::sync::atomic::AtomicU64,
    /// Records written to the DLQ (poison, or an optional sink's budget spent).
    pub dead_lettered: std::sync::atomic::AtomicU64,
}

impl Outcomes {
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({"written": g(&self.written), "stale": g(&self.stale), "superseded": g(&self.superseded), "skipped": g(&self.skipped), "poison": g(&self.poison), "dead_lettered": g(&self.dead_lettered)})
    }
}

/// Everything `/status` and `/ready` report. One per relay instance.
#[derive(Debug)]
pub struct StatusBoard {
    pub outcomes: Outcomes,
    pub memory: Arc<MemoryUse>,
    partitions: Mutex<BTreeMap<(String, i32), Arc<PartitionState>>>,
    phase: Mutex<ConsumerPhase>,
    sinks: Mutex<Vec<(String, Arc<SinkHealth>)>>,
    bootstrap: Mutex<String>,
    /// The failover controller's view (regions, health, epoch, lag, last switch) for `/status`.
    region: Mutex<Option<serde_json::Value>>,
    /// Why the failover controller thinks this pod must not take traffic (control table down).
    region_problem: Mutex<Option<String>>,
    /// When the consumer last finished an assignment (its start positions committed).
    assigned_at: Mutex<Option<std::time::Instant>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            outcomes: Outcomes::default(),
            memory: Arc::new(MemoryUse::default()),
            partitions: Mutex::new(BTreeMap::new()),
            phase: Mutex::new(ConsumerPhase::Starting),
            sinks: Mutex::new(Vec::new()),
            bootstrap: Mutex::new(String::new()),
            region: Mutex::new(None),
            region_problem: Mutex::new(None),
            assigned_at: Mutex::new(None),
        }
    }
}

impl StatusBoard {
    pub fn new() -> Arc<Self> {
        Arc::new(StatusBoard::default())
    }

    pub fn insert_partition(&self, p: Arc<PartitionState>) {
        if let Ok(mut m) = self.partitions.lock() {
            m.insert((p.topic.clone(), p.partition), p);
        }
        self.publish_counts();
    }

    pub fn remove_partition(&self, topic: &str, partition: i32) {
        if let Ok(mut m) = self.partitions.lock() {
            m.remove(&(topic.to_string(), partition));
        }
        self.publish_counts();
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<PartitionState>> {
        self.partitions
            .lock()
            .ok()
            .and_then(|m| m.get(&(topic.to_string(), partition)).cloned())
    }

    pub fn partitions(&self) -> Vec<Arc<PartitionState>> {
        self.partitions
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn publish_counts(&self) {
        let n = self.partitions.lock().map(|m| m.len()).unwrap_or(0);
        metrics::gauge!("cdc_relay_assigned_partitions").set(n as f64);
    }

    /// The consumer finished an assignment: its partitions are spawned and their start positions
    /// committed.
    pub fn note_assigned(&self) {
        if let Ok(mut a) = self.assigned_at.lock() {
            *a = Some(std::time::Instant::now());
        }
    }

    /// When the consumer last finished an assignment.
    pub fn assigned_at(&self) -> Option<std::time::Instant> {
        self.assigned_at.lock().ok().and_then(|a| *a)
    }

    /// The per-partition series of `/metrics`, rendered from the partitions this instance owns
    /// now, so a revoked partition or one of a cluster left behind has no series at all (instead
    /// of a frozen value an alert would fire on).
    pub fn partition_metrics(&self) -> String {
        use crate::telemetry::metrics::{Family, gauge_family};
        let parts = self.partitions();
        let labels = |p: &PartitionState| {
            vec![
                ("topic", p.topic.clone()),
                ("partition", p.partition.to_string()),
            ]
        };
        let mut out = String::new();
        gauge_family(
            &mut out,
            &Family {
                name: "cdc_relay_consumer_lag_messages",
                help: "High watermark minus committed offset, per partition this instance consumes",
            },
            parts
                .iter()
                .filter_map(|p| p.lag().map(|l| (labels(p), l as f64))),
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        gauge_family(
            &mut out,
            &Family {
                name: "cdc_relay_consumer_lag_seconds",
                help: "While records wait behind the committed offset: age of the last committed record (its Kafka timestamp); 0 when caught up",
            },
            parts.iter().filter_map(|p| {
                consumer_lag_seconds(p.lag()?, p.processed_ts(), now_ms).map(|s| (labels(p), s))
            }),
        );
        gauge_family(
            &mut out,
            &Family {
                name: "cdc_relay_committed_offset",
                help: "Last offset committed to the group, per partition this instance consumes",
            },
            parts
                .iter()
                .filter_map(|p| p.committed().map(|c| (labels(p), c as f64))),
        );
        gauge_family(
            &mut out,
            &Family {
                name: "cdc_relay_partition_stopped",
                help: "1 while a partition is stopped at a poison record (no DLQ, or the DLQ rejected it)",
            },
            parts
                .iter()
                .map(|p| (labels(p), if p.stopped().is_some() { 1.0 } else { 0.0 })),
        );
        gauge_family(
            &mut out,
            &Family {
                name: "cdc_relay_paused_partitions",
                help: "Partitions paused by back-pressure or a poison stop",
            },
            std::iter::once((
                Vec::new(),
                parts.iter().filter(|p| p.is_paused()).count() as f64,
            )),
        );
        out
    }

    /// `/ready` as a gauge (alerts cannot probe an endpoint).
    pub fn ready_metric(&self) -> String {
        let mut out = String::new();
        crate::telemetry::metrics::gauge_family(
            &mut out,
            &crate::telemetry::metrics::Family {
                name: "cdc_relay_ready",
                help: "1 while /ready answers 200 (a cluster is active, no sink misconfigured, no partition stopped)",
            },
            std::iter::once((Vec::new(), if self.readiness().0 { 1.0 } else { 0.0 })),
        );
        out
    }

    pub fn set_phase(&self, p: ConsumerPhase) {
        if let Ok(mut ph) = self.phase.lock() {
            *ph = p;
        }
    }

    pub fn phase(&self) -> ConsumerPhase {
        self.phase
            .lock()
            .map(|p| *p)
            .unwrap_or(ConsumerPhase::Stopped)
    }

    pub fn set_bootstrap(&self, b: &str) {
        if let Ok(mut s) = self.bootstrap.lock() {
            *s = b.to_string();
        }
    }

    pub fn add_sink(&self, name: &str, h: Arc<SinkHealth>) {
        if let Ok(mut s) = self.sinks.lock() {
            s.push((name.to_string(), h));
        }
    }

    pub fn set_region(&self, v: serde_json::Value) {
        if let Ok(mut r) = self.region.lock() {
            *r = Some(v);
        }
    }

    pub fn set_region_problem(&self, p: Option<String>) {
        if let Ok(mut r) = self.region_problem.lock() {
            *r = p;
        }
    }

    /// Ready: the consumer runs, no sink is misconfigured, no partition is stopped by a poison
    /// record, and the failover controller has no problem (e.g. an unreachable control table).
    pub fn readiness(&self) -> (bool, Vec<String>) {
        let mut why = Vec::new();
        if let Some(p) = self.region_problem.lock().ok().and_then(|p| p.clone()) {
            why.push(p);
        }
        if self.phase() != ConsumerPhase::Running {
            why.push(format!("consumer is {:?}", self.phase()));
        }
        for (name, h) in self.sinks.lock().map(|s| s.clone()).unwrap_or_default() {
            if h.is_misconfigured() {
                why.push(format!(
                    "sink {name} misconfigured: {}",
                    h.last_error().unwrap_or_default()
                ));
            }
        }
        for p in self.partitions() {
            if let Some(s) = p.stopped() {
                why.push(format!(
                    "{}/{} stopped at offset {}: {}",
                    p.topic, p.partition, s.offset, s.error
                ));
            }
        }
        (why.is_empty(), why)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (ready, why) = self.readiness();
        let sinks: Vec<_> = self
            .sinks
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(n, h)| serde_json::json!({"sink": n, "breaker": h.breaker_state(), "misconfigured": h.is_misconfigured(), "last_error": h.last_error()}))
            .collect();
        serde_json::json!({
            "ready": ready,
            "not_ready_because": why,
            "consumer": { "phase": self.phase(), "bootstrap_servers": self.bootstrap.lock().map(|b| b.clone()).unwrap_or_default() },
            "partitions": self.partitions().iter().map(|p| p.to_json()).collect::<Vec<_>>(),
            "sinks": sinks,
            "records": self.outcomes.to_json(),
            "region": self.region.lock().ok().and_then(|r| r.clone()),
            "memory": { "in_flight_bytes": self.memory.bytes(), "peak_in_flight_bytes": self.memory.peak() },
        })
    }
}

/// Consumer lag in seconds: 0 when nothing waits behind the committed offset; else the age of
/// the last committed record (an upper bound on how far behind the relay is); `None` when
/// records wait but none was committed yet (the message lag and `partition_stopped` tell then).
pub fn consumer_lag_seconds(lag: i64, processed_ts_ms: Option<i64>, now_ms: i64) -> Option<f64> {
    if lag <= 0 {
        return Some(0.0);
    }
    processed_ts_ms.map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
}
