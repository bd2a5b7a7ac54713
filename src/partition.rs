//! The partition actor: one per assigned partition. Decodes each record, routes it, hands writes
//! to the sink pool with per-key ordering, and tracks offsets so only completed prefixes commit.
//!
//! It never commits (the consumer thread does, from `PartitionState::committable`), never skips a
//! record silently, and never lets two writes for one key be in flight at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::decode::{Decoded, Decoder};
use crate::error_class::ErrorClass;
use crate::event::SourcePos;
use crate::kafka::offsets::OffsetTracker;
use crate::route::{Route, WriteRequest};
use crate::sinks::pool::{PoolHandle, WriteOutcome};
use crate::sinks::retry::Backoff;
use crate::status::{PartitionState, StopInfo};

/// What every partition actor shares: decoder, routes, sink pools.
pub struct PartitionDeps {
    pub decoder: Decoder,
    pub routes: HashMap<String, Route>,
    pub dynamodb: PoolHandle,
    pub max_item_bytes: usize,
    pub status: Arc<crate::status::StatusBoard>,
}

/// A record handed over by the consumer thread (an owned copy of the Kafka message).
#[derive(Debug, Clone)]
pub struct RecordIn {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub received: Instant,
}

pub enum PartitionMsg {
    Record(Box<RecordIn>),
    WriteDone {
        offset: i64,
        pk: String,
        outcome: WriteOutcome,
        received: Instant,
    },
    /// Stop taking records; reply once no write is in flight.
    Drain(std::sync::mpsc::Sender<()>),
    /// Fault injection (tests, chaos): fail this actor as a bug would, so its supervisor restarts it.
    Fail(String),
}

pub struct PartitionArgs {
    pub deps: Arc<PartitionDeps>,
    pub state: Arc<PartitionState>,
}

struct Queued {
    offset: i64,
    req: Arc<WriteRequest>,
    received: Instant,
}

pub struct PartitionActorState {
    deps: Arc<PartitionDeps>,
    shared: Arc<PartitionState>,
    tracker: OffsetTracker,
    /// Per key: the write in flight (front) and those waiting behind it, in offset order.
    keys: HashMap<String, VecDeque<Queued>>,
    active: usize,
    /// The offset this partition stopped at (poison), if any.
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
        self.shared.sub_in_flight();
        let o = &self.deps.status.outcomes;
        match outcome {
            "written" => &o.written,
            "stale" => &o.stale,
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

    /// Stops the partition at a poison record: nothing at or after `offset` is processed or committed.
    fn stop_at(&mut self, offset: i64, class: ErrorClass, reason: &str, error: String) {
        tracing::error!(
            topic = %self.shared.topic, partition = self.shared.partition, offset, %class, reason, %error,
            "poison record: partition stopped at this offset (no DLQ configured); nothing at or after it is committed"
        );
        let mut l = self.labels().to_vec();
        l.push(("reason", reason.to_string()));
        metrics::counter!("cdc_relay_poison_records_total", &l).increment(1);
        self.deps
            .status
            .outcomes
            .poison
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stopped_at = Some(self.stopped_at.map_or(offset, |s| s.min(offset)));
        self.shared.set_stopped(Some(StopInfo {
            offset: self.stopped_at.unwrap_or(offset),
            class: class.to_string(),
            reason: reason.to_string(),
            error,
        }));
        self.shared.sub_in_flight();
    }

    fn may_write(&self, offset: i64) -> bool {
        self.stopped_at.is_none_or(|s| offset < s)
    }

    fn spawn_write(&mut self, myself: &ActorRef<PartitionMsg>, q: &Queued) {
        self.active += 1;
        let pool = self.deps.dynamodb.clone();
        let cancel = self.cancel.clone();
        let me = myself.clone();
        let req = Arc::clone(&q.req);
        let (offset, received) = (q.offset, q.received);
        tokio::spawn(async move {
            let outcome = pool.write(Arc::clone(&req), &cancel).await;
            let _ = me.cast(PartitionMsg::WriteDone {
                offset,
                pk: req.pk.clone(),
                outcome,
                received,
            });
        });
    }

    /// Replies to a pending `Drain` once no write is in flight (queued writes start as soon as
    /// their key's previous write completes, so `active == 0` means the queues are empty too).
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
            // Not tracked, so never committed: it is fetched again by whoever owns the partition next.
            self.shared.sub_in_flight();
            return Ok(());
        }
        // Out of order means our view of the partition is broken: fail, restart, seek (DESIGN §2).
        self.tracker.track(r.offset)?;
        metrics::counter!("cdc_relay_records_consumed_total", &self.labels()).increment(1);
        let pos = SourcePos {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
        };
        let Some(route) = self.deps.routes.get(&r.topic) else {
            self.stop_at(
                r.offset,
                ErrorClass::Poison,
                "no_route",
                format!("no route for topic {}", r.topic),
            );
            return Ok(());
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 2.0);
        let decoded = loop {
            match self
                .deps
                .decoder
                .decode(&route.cfg, r.payload.as_deref(), pos.clone())
                .await
            {
                Ok(d) => break d,
                Err(e) if e.class() == ErrorClass::Poison => {
                    self.stop_at(r.offset, ErrorClass::Poison, e.reason(), e.to_string());
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
        let req = match route.build(ev, r.timestamp_ms, self.deps.max_item_bytes) {
            Ok(req) => req,
            Err(e) => {
                self.stop_at(r.offset, e.class(), e.reason(), e.to_string());
                return Ok(());
            }
        };
        let q = Queued {
            offset: r.offset,
            req: Arc::new(req),
            received: r.received,
        };
        let pk = q.req.pk.clone();
        let queue = self.keys.entry(pk.clone()).or_default();
        queue.push_back(q);
        if queue.len() == 1
            && let Some(front) = self.keys.get(&pk).and_then(|q| q.front())
        {
            let front = Queued {
                offset: front.offset,
                req: Arc::clone(&front.req),
                received: front.received,
            };
            self.spawn_write(myself, &front);
        }
        Ok(())
    }

    fn on_write_done(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        offset: i64,
        pk: String,
        outcome: WriteOutcome,
        received: Instant,
    ) -> Result<(), ActorProcessingErr> {
        self.active = self.active.saturating_sub(1);
        if let Some(q) = self.keys.get_mut(&pk) {
            q.pop_front();
        }
        match outcome {
            WriteOutcome::Done => self.complete(offset, "written", received)?,
            WriteOutcome::Stale => self.complete(offset, "stale", received)?,
            WriteOutcome::Poison(e) => {
                self.stop_at(offset, ErrorClass::Poison, e.reason, e.to_string())
            }
            WriteOutcome::Cancelled => self.shared.sub_in_flight(),
        }
        // Start the next write for this key, unless it lies at or after a poison stop.
        let next = self.keys.get(&pk).and_then(|q| q.front()).map(|f| Queued {
            offset: f.offset,
            req: Arc::clone(&f.req),
            received: f.received,
        });
        // Draining (revoke, shutdown) finishes every tracked record, queued ones included, so the
        // commit covers all of them; the consumer's deadline bounds how long that may take.
        match next {
            Some(n) if self.may_write(n.offset) && !self.cancel.is_cancelled() => {
                self.spawn_write(myself, &n)
            }
            _ => {
                if let Some(rest) = self.keys.remove(&pk) {
                    for _ in rest {
                        self.shared.sub_in_flight();
                    }
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
            PartitionMsg::WriteDone {
                offset,
                pk,
                outcome,
                received,
            } => state.on_write_done(&myself, offset, pk, outcome, received),
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
