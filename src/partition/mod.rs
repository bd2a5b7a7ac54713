//! The partition actor: one per assigned partition. Decodes each record, routes it, and runs one
//! job per record — the DynamoDB write, then the EventBridge event, or the DLQ — with per-key
//! ordering; it tracks offsets so only completed prefixes commit.
//!
//! It never commits (the consumer thread does, from `PartitionState::committable`), never skips a
//! record silently (poison goes to the DLQ, or stops the partition when there is none), and never
//! lets two jobs for one key run at once.

pub mod offsets;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::EventBridgeConfig;
use crate::decode::{Decoded, Decoder};
use crate::dlq::{DeadLetter, Dlq};
use crate::error_class::ErrorClass;
use crate::record::RecordIn;
use crate::route::{Route, WriteKind, WriteRequest};
use crate::sinks::SinkError;
use crate::sinks::eventbridge::EventRequest;
use crate::sinks::pool::{PoolHandle, WriteOutcome};
use crate::sinks::retry::Backoff;
use crate::status::{PartitionState, StopInfo};
use offsets::OffsetTracker;

/// A route's events: the EventBridge pool and whether the route requires them.
pub struct EventSink {
    pub pool: PoolHandle<EventRequest>,
    pub required: bool,
    pub cfg: Arc<EventBridgeConfig>,
}

/// A route with the sinks it writes to.
pub struct RouteSinks {
    pub route: Route,
    pub dynamodb: PoolHandle<WriteRequest>,
    pub events: Option<EventSink>,
}

/// What every partition actor shares: routes with their sink pools, the DLQ.
pub struct PartitionDeps {
    pub routes: HashMap<String, RouteSinks>,
    pub dlq: Option<Dlq>,
    /// The relay's region, written into events and DLQ attributes.
    pub region: String,
    pub max_item_bytes: usize,
    pub status: Arc<crate::status::StatusBoard>,
}

/// Why a record cannot succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: ErrorClass,
    pub reason: String,
    pub error: String,
}

impl Failure {
    fn from_sink(e: &SinkError, prefix: &str) -> Failure {
        Failure {
            class: e.class,
            reason: format!("{prefix}{}", e.reason),
            error: e.to_string(),
        }
    }
}

/// How a record's job ended.
#[derive(Debug)]
pub enum JobOutcome {
    Written,
    Stale,
    /// In the DLQ (with this reason); the offset may commit.
    DeadLettered(String),
    /// No DLQ, or the DLQ rejected the record: the partition stops at it.
    Stop(Failure),
    /// Given up (revoke, shutdown, actor restart): not committed, fetched again later.
    Cancelled,
}

pub enum PartitionMsg {
    Record(Box<RecordIn>),
    JobDone {
        offset: i64,
        pk: Option<String>,
        outcome: JobOutcome,
        received: Instant,
    },
    /// Stop taking records; reply once no job is running.
    Drain(std::sync::mpsc::Sender<()>),
    /// Fault injection (tests, chaos): fail this actor as a bug would, so its supervisor restarts it.
    Fail(String),
}

pub struct PartitionArgs {
    pub deps: Arc<PartitionDeps>,
    /// Decodes with the registry of the region whose cluster this partition is read from.
    pub decoder: Decoder,
    pub state: Arc<PartitionState>,
}

/// One record's work. Holding it holds the record's in-flight ticket.
struct Job {
    rec: RecordIn,
    write: Option<Arc<WriteRequest>>,
    event: Option<Arc<EventRequest>>,
    /// Set when decoding or routing already showed the record to be poison.
    poison: Option<Failure>,
}

impl Job {
    /// The decoded change as JSON for the DLQ body (when decoding got that far).
    fn decoded(&self) -> Option<serde_json::Value> {
        let w = self.write.as_ref()?;
        let item = match &w.kind {
            WriteKind::Put(item) => serde_json::Value::Object(
                item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ),
            WriteKind::Delete => serde_json::Value::Null,
        };
        Some(
            serde_json::json!({"table": &*w.table, "pk": w.pk, "seq": w.seq.as_str(), "op": w.op.as_str(), "item": item}),
        )
    }

    /// Runs the job: DynamoDB (required), then the event (the change is in the table before
    /// anyone hears of it; sent on stale too, so a replay re-sends what a crash may have lost,
    /// with the same `event_id`). A failure goes to the DLQ.
    async fn run(self, deps: Arc<PartitionDeps>, cancel: CancellationToken) -> JobOutcome {
        let mut failure = self.poison.clone();
        let mut stale = false;
        if failure.is_none()
            && let Some(rs) = deps.routes.get(&self.rec.topic)
        {
            if let Some(w) = &self.write {
                match rs.dynamodb.write(Arc::clone(w), &cancel, true).await {
                    WriteOutcome::Done => {}
                    WriteOutcome::Stale => stale = true,
                    WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e) => {
                        failure = Some(Failure::from_sink(&e, ""));
                    }
                    WriteOutcome::Cancelled => return JobOutcome::Cancelled,
                }
            }
            if failure.is_none()
                && let (Some(ev), Some(es)) = (&self.event, &rs.events)
            {
                match es.pool.write(Arc::clone(ev), &cancel, es.required).await {
                    WriteOutcome::Done | WriteOutcome::Stale => {}
                    WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e) => {
                        failure = Some(Failure::from_sink(&e, "eventbridge_"));
                    }
                    WriteOutcome::Cancelled => return JobOutcome::Cancelled,
                }
            }
        }
        let Some(f) = failure else {
            return if stale {
                JobOutcome::Stale
            } else {
                JobOutcome::Written
            };
        };
        let Some(dlq) = &deps.dlq else {
            return JobOutcome::Stop(f);
        };
        let dl = DeadLetter::new(
            &self.rec,
            f.class,
            &f.reason,
            &f.error,
            self.decoded(),
            &deps.region,
            dlq.max_message_bytes,
        );
        match dlq.send(dl, &cancel).await {
            WriteOutcome::Done | WriteOutcome::Stale => JobOutcome::DeadLettered(f.reason),
            WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e) => JobOutcome::Stop(Failure {
                class: ErrorClass::Poison,
                reason: "dlq_rejected".into(),
                error: format!("{} (the DLQ rejected it: {e})", f.error),
            }),
            WriteOutcome::Cancelled => JobOutcome::Cancelled,
        }
    }
}

pub struct PartitionActorState {
    deps: Arc<PartitionDeps>,
    decoder: Decoder,
    shared: Arc<PartitionState>,
    tracker: OffsetTracker,
    /// Keys with a job running, each with the jobs waiting behind it in offset order.
    keys: HashMap<String, VecDeque<Job>>,
    active: usize,
    /// The offset this partition stopped at (poison without a DLQ), if any.
    stopped_at: Option<i64>,
    draining: Option<std::sync::mpsc::Sender<()>>,
    cancel: CancellationToken,
    _cancel_on_drop: DropGuard,
}

pub struct PartitionActor;

impl PartitionActorState {
    fn labels(&self) -> [(&'static str, String); 1] {
        [("topic", self.shared.topic.clone())]
    }

    /// Marks `offset` complete and publishes the new commit position.
    fn complete(
        &mut self,
        offset: i64,
        outcome: &'static str,
        received: Instant,
    ) -> Result<(), ActorProcessingErr> {
        self.tracker.complete(offset)?;
        if let Some(c) = self.tracker.committable() {
            self.shared.set_committable(c);
        }
        if let Some(ts) = self.tracker.committable_ts() {
            self.shared.set_processed_ts(ts);
        }
        let o = &self.deps.status.outcomes;
        match outcome {
            "written" => &o.written,
            "stale" => &o.stale,
            "dead_lettered" => &o.dead_lettered,
            _ => &o.skipped,
        }
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut l = self.labels().to_vec();
        l.push(("outcome", outcome.to_string()));
        metrics::counter!("cdc_relay_records_processed_total", &l).increment(1);
        metrics::histogram!("cdc_relay_processing_latency_seconds")
            .record(received.elapsed().as_secs_f64());
        Ok(())
    }

    /// Stops the partition at a poison record: nothing at or after `offset` is processed or
    /// committed. Used when no DLQ is configured, or the DLQ rejected the record.
    fn stop_at(&mut self, offset: i64, f: Failure) {
        tracing::error!(
            topic = %self.shared.topic, partition = self.shared.partition, offset, class = %f.class, reason = %f.reason, error = %f.error,
            "poison record and no DLQ to take it: partition stopped at this offset; nothing at or after it is committed"
        );
        let mut l = self.labels().to_vec();
        l.push(("reason", f.reason.clone()));
        metrics::counter!("cdc_relay_poison_records_total", &l).increment(1);
        self.deps
            .status
            .outcomes
            .poison
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stopped_at = Some(self.stopped_at.map_or(offset, |s| s.min(offset)));
        self.shared.set_stopped(Some(StopInfo {
            offset: self.stopped_at.unwrap_or(offset),
            class: f.class.to_string(),
            reason: f.reason,
            error: f.error,
        }));
    }

    fn may_run(&self, offset: i64) -> bool {
        self.stopped_at.is_none_or(|s| offset < s) && !self.cancel.is_cancelled()
    }

    fn spawn_job(&mut self, myself: &ActorRef<PartitionMsg>, job: Job, pk: Option<String>) {
        self.active += 1;
        let deps = Arc::clone(&self.deps);
        let cancel = self.cancel.clone();
        let me = myself.clone();
        let (offset, received) = (job.rec.offset, job.rec.received);
        tokio::spawn(async move {
            let outcome = job.run(deps, cancel).await;
            let _ = me.cast(PartitionMsg::JobDone {
                offset,
                pk,
                outcome,
                received,
            });
        });
    }

    /// A record that can never succeed: to the DLQ through a job, or (no DLQ) stop here.
    fn poison(&mut self, myself: &ActorRef<PartitionMsg>, rec: RecordIn, f: Failure) {
        if self.deps.dlq.is_none() {
            self.stop_at(rec.offset, f);
            return;
        }
        let job = Job {
            rec,
            write: None,
            event: None,
            poison: Some(f),
        };
        self.spawn_job(myself, job, None);
    }

    /// Replies to a pending `Drain` once no job is running (queued jobs start as soon as their
    /// key's previous job completes, so `active == 0` means the queues are empty too).
    fn check_drained(&mut self) {
        if self.active == 0
            && let Some(tx) = self.draining.take()
        {
            let _ = tx.send(());
            // Keep discarding: the consumer removes us right after.
            self.draining = Some(std::sync::mpsc::channel().0);
        }
    }

    async fn on_record(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        r: RecordIn,
    ) -> Result<(), ActorProcessingErr> {
        if self.draining.is_some() || self.stopped_at.is_some() || self.shared.is_draining() {
            // Not tracked, so never committed: fetched again by whoever owns the partition next.
            return Ok(());
        }
        // Out of order means our view of the partition is broken: fail, restart, seek (DESIGN §2).
        self.tracker.track(r.offset, r.timestamp_ms)?;
        metrics::counter!("cdc_relay_records_consumed_total", &self.labels()).increment(1);
        let pos = r.pos();
        let deps = Arc::clone(&self.deps);
        let Some(rs) = deps.routes.get(&r.topic) else {
            let error = format!("no route for topic {}", r.topic);
            self.poison(
                myself,
                r,
                Failure {
                    class: ErrorClass::Poison,
                    reason: "no_route".into(),
                    error,
                },
            );
            return Ok(());
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 2.0);
        let decoded = loop {
            match self
                .decoder
                .decode(&rs.route.cfg, r.payload.as_deref(), pos.clone())
                .await
            {
                Ok(d) => break d,
                Err(e) if e.class() == ErrorClass::Poison => {
                    let f = Failure {
                        class: ErrorClass::Poison,
                        reason: e.reason().into(),
                        error: e.to_string(),
                    };
                    self.poison(myself, r, f);
                    return Ok(());
                }
                Err(e) => {
                    // Registry down or credentials wrong: hold the partition and retry.
                    let d = backoff.next_delay();
                    tracing::warn!(src = %pos, class = %e.class(), error = %e, "decode cannot proceed; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        };
        let ev = match decoded {
            Decoded::Skipped(skip) => {
                metrics::counter!("cdc_relay_records_skipped_total", "topic" => r.topic.clone(), "reason" => skip.as_str()).increment(1);
                return self.complete(r.offset, "skipped", r.received);
            }
            Decoded::Change(ev) => ev,
        };
        let for_event = rs.events.as_ref().map(|_| ev.clone());
        let req = match rs.route.build(ev, r.timestamp_ms, deps.max_item_bytes) {
            Ok(req) => req,
            Err(e) => {
                let f = Failure {
                    class: e.class(),
                    reason: e.reason().into(),
                    error: e.to_string(),
                };
                self.poison(myself, r, f);
                return Ok(());
            }
        };
        let event = match (&rs.events, for_event) {
            (Some(es), Some(ev)) => Some(Arc::new(EventRequest::new(
                &es.cfg,
                &rs.route.cfg.table,
                &rs.route.cfg.key,
                &req.pk,
                &ev,
                &deps.region,
                r.traceparent(),
            ))),
            _ => None,
        };
        let pk = req.pk.clone();
        let job = Job {
            rec: r,
            write: Some(Arc::new(req)),
            event,
            poison: None,
        };
        match self.keys.get_mut(&pk) {
            Some(waiting) => waiting.push_back(job),
            None => {
                self.keys.insert(pk.clone(), VecDeque::new());
                self.spawn_job(myself, job, Some(pk));
            }
        }
        Ok(())
    }

    fn on_job_done(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        offset: i64,
        pk: Option<String>,
        outcome: JobOutcome,
        received: Instant,
    ) -> Result<(), ActorProcessingErr> {
        self.active = self.active.saturating_sub(1);
        match outcome {
            JobOutcome::Written => self.complete(offset, "written", received)?,
            JobOutcome::Stale => self.complete(offset, "stale", received)?,
            JobOutcome::DeadLettered(_) => self.complete(offset, "dead_lettered", received)?,
            JobOutcome::Stop(f) => self.stop_at(offset, f),
            JobOutcome::Cancelled => {}
        }
        // Start the next job of this key, unless it lies at or after a stop. Draining (revoke,
        // shutdown) finishes every tracked record, queued ones included, so the commit covers
        // all of them; the consumer's deadline bounds how long that may take.
        if let Some(pk) = pk {
            let next = self.keys.get_mut(&pk).and_then(VecDeque::pop_front);
            match next {
                Some(job) if self.may_run(job.rec.offset) => self.spawn_job(myself, job, Some(pk)),
                // Dropping the rest releases their tickets; they are not committed.
                _ => {
                    self.keys.remove(&pk);
                }
            }
        }
        self.check_drained();
        Ok(())
    }
}

impl Actor for PartitionActor {
    type Msg = PartitionMsg;
    type State = PartitionActorState;
    type Arguments = PartitionArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PartitionMsg>,
        args: PartitionArgs,
    ) -> Result<PartitionActorState, ActorProcessingErr> {
        let cancel = CancellationToken::new();
        let tracker = OffsetTracker::new(args.state.committable());
        args.state.set_stopped(None);
        Ok(PartitionActorState {
            deps: args.deps,
            decoder: args.decoder,
            shared: args.state,
            tracker,
            keys: HashMap::new(),
            active: 0,
            stopped_at: None,
            draining: None,
            _cancel_on_drop: cancel.clone().drop_guard(),
            cancel,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PartitionMsg>,
        msg: PartitionMsg,
        state: &mut PartitionActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PartitionMsg::Record(r) => state.on_record(&myself, *r).await,
            PartitionMsg::JobDone {
                offset,
                pk,
                outcome,
                received,
            } => state.on_job_done(&myself, offset, pk, outcome, received),
            PartitionMsg::Fail(why) => Err(format!("injected failure: {why}").into()),
            PartitionMsg::Drain(tx) => {
                state.draining = Some(tx);
                state.check_drained();
                Ok(())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PartitionMsg>,
        state: &mut PartitionActorState,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        Ok(())
    }
}
