//! The partition actor: one per assigned partition. It takes the records the poll thread hands it
//! in batches, decodes and routes each, has every output of its route prepare its request, and
//! runs them through the `Pipeline` (`pipeline.rs`: outputs in route order, one request in flight
//! per key and output, coalescing on state outputs). What an output can send is sent as one batch
//! — one task and one reply per batch, not per record — and completions advance the
//! `OffsetTracker`, whose contiguous prefix the consumer thread commits.
//!
//! It never commits itself, never skips a record silently (poison goes to the DLQ, or stops the
//! partition when there is none or the DLQ refuses it), and never has two requests of one key in
//! flight to one output.

pub mod offsets;
pub mod pipeline;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::decode::{Decoded, Decoder};
use crate::dlq::{DeadLetter, Dlq};
use crate::error_class::ErrorClass;
use crate::record::RecordIn;
use crate::route::Route;
use crate::sinks::output::{Change, Failure, Output, Prepared};
use crate::sinks::pool::{Trace, WriteOutcome};
use crate::sinks::retry::Backoff;
use crate::status::{PartitionState, StopInfo};
use crate::telemetry::semconv;
use crate::telemetry::trace::{self, TracedSpan};
use offsets::OffsetTracker;
use pipeline::{Done, Pipeline, Unit};

/// A route with its outputs, in order.
pub struct RouteOutputs {
    pub route: Route,
    pub outputs: Vec<Arc<dyn Output>>,
}

/// What every partition actor shares: routes with their outputs, the DLQ.
pub struct PartitionDeps {
    pub routes: HashMap<String, RouteOutputs>,
    pub dlq: Option<Dlq>,
    /// The relay's region, written into DLQ attributes.
    pub region: String,
    pub status: Arc<crate::status::StatusBoard>,
}

pub enum PartitionMsg {
    /// Records of this partition, in offset order, as one poll round brought them.
    Records(Vec<RecordIn>),
    /// Output `lane` answered the batch it was given.
    Written {
        lane: usize,
        units: Vec<Unit>,
        outcomes: Vec<WriteOutcome>,
    },
    /// A record's way to the DLQ ended.
    DeadLettered {
        offset: i64,
        received: Instant,
        outcome: WriteOutcome,
        failure: Failure,
        /// The record's trace and span ids, when it is traced (for the log line of a stop).
        trace_ids: Option<(String, String)>,
    },
    /// Stop taking records; reply once nothing is in flight.
    Drain(std::sync::mpsc::Sender<()>),
    /// Fault injection (tests, chaos): fail this actor as a bug would, so its supervisor restarts it.
    Fail(String),
}

pub struct PartitionArgs {
    pub deps: Arc<PartitionDeps>,
    /// Decodes with the registry of the region whose cluster this partition is read from.
    pub decoder: Decoder,
    /// The configured name of the cluster the partition is read from (for traces).
    pub cluster: Arc<str>,
    pub state: Arc<PartitionState>,
}

/// Metric handles, resolved once per actor (not per record).
struct Meters {
    consumed: Counter,
    written: Counter,
    stale: Counter,
    superseded: Counter,
    skipped: Counter,
    dead_lettered: Counter,
    latency: Histogram,
}

impl Meters {
    fn new(topic: &str) -> Meters {
        for skip in crate::decode::envelope::Skip::ALL {
            metrics::counter!("cdc_relay_records_skipped_total", "topic" => topic.to_string(), "reason" => skip.as_str())
                .increment(0);
        }
        let processed = |outcome: &'static str| metrics::counter!("cdc_relay_records_processed_total", "topic" => topic.to_string(), "outcome" => outcome);
        Meters {
            consumed: metrics::counter!("cdc_relay_records_consumed_total", "topic" => topic.to_string()),
            written: processed("written"),
            stale: processed("stale"),
            superseded: processed("superseded"),
            skipped: processed("skipped"),
            dead_lettered: processed("dead_lettered"),
            latency: metrics::histogram!("cdc_relay_processing_latency_seconds"),
        }
    }
}

pub struct PartitionActorState {
    deps: Arc<PartitionDeps>,
    decoder: Decoder,
    /// The writer schema of the last record decoded (most records share it).
    schema_memo: Option<Arc<crate::decode::registry::WriterSchema>>,
    shared: Arc<PartitionState>,
    cluster: Arc<str>,
    tracker: OffsetTracker,
    /// Created with the first record: one lane per output of the partition's route.
    pipeline: Option<Pipeline<RecordIn>>,
    /// The source topic whose route the pipeline follows.
    topic: Option<String>,
    /// Records on their way to the DLQ.
    dead_lettering: usize,
    /// The offset this partition stopped at (poison without a DLQ), if any.
    stopped_at: Option<i64>,
    draining: Option<std::sync::mpsc::Sender<()>>,
    meters: Meters,
    cancel: CancellationToken,
    _cancel_on_drop: DropGuard,
}

pub struct PartitionActor;

impl PartitionActorState {
    fn route(&self) -> Option<&RouteOutputs> {
        self.topic.as_ref().and_then(|t| self.deps.routes.get(t))
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
        let m = &self.meters;
        let (atomic, counter) = match outcome {
            "written" => (&o.written, &m.written),
            "stale" => (&o.stale, &m.stale),
            "superseded" => (&o.superseded, &m.superseded),
            "dead_lettered" => (&o.dead_lettered, &m.dead_lettered),
            _ => (&o.skipped, &m.skipped),
        };
        atomic.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counter.increment(1);
        m.latency.record(received.elapsed().as_secs_f64());
        Ok(())
    }

    /// Stops the partition at a poison record: nothing at or after `offset` is processed or
    /// committed. Used when no DLQ is configured, or the DLQ rejected the record.
    fn stop_at(&mut self, offset: i64, f: Failure, trace_ids: Option<(String, String)>) {
        let (trace_id, span_id) = trace_ids.unzip();
        tracing::error!(
            topic = %self.shared.topic, partition = self.shared.partition, offset, class = %f.class, reason = %f.reason, error = %f.error, trace_id, span_id,
            "poison record and no DLQ to take it: partition stopped at this offset; nothing at or after it is committed"
        );
        metrics::counter!("cdc_relay_poison_records_total", "topic" => self.shared.topic.clone(), "reason" => f.reason.clone()).increment(1);
        self.deps
            .status
            .outcomes
            .poison
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let at = self.stopped_at.map_or(offset, |s| s.min(offset));
        self.stopped_at = Some(at);
        self.shared.set_stopped(Some(StopInfo {
            offset: at,
            class: f.class.to_string(),
            reason: f.reason,
            error: f.error,
        }));
        if let Some(p) = &mut self.pipeline {
            let mut dropped = Vec::new();
            p.drop_from(at, &mut dropped);
        }
    }

    /// A record that can never succeed: to the DLQ (one task; poison is rare), or without one,
    /// stop here.
    fn poison(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        mut rec: RecordIn,
        f: Failure,
        decoded: Option<serde_json::Value>,
    ) {
        if let Some(t) = rec.trace.as_mut() {
            t.set(semconv::RELAY_OUTCOME, "poison");
            t.error(f.reason.clone(), f.error.clone());
        }
        let trace_ids = rec.trace.as_ref().map(|t| t.log_ids());
        let Some(dlq) = self.deps.dlq.clone() else {
            self.stop_at(rec.offset, f, trace_ids);
            return;
        };
        if self.stopped_at.is_some_and(|s| rec.offset >= s) {
            return;
        }
        self.dead_lettering += 1;
        let mut dl = DeadLetter::new(
            &rec,
            f.class,
            &f.reason,
            &f.error,
            decoded,
            &self.deps.region,
            dlq.max_message_bytes,
        );
        let mut span = rec.trace.as_ref().and_then(|t| {
            t.child(
                semconv::SPAN_DLQ_SEND,
                SpanKind::Producer,
                vec![KeyValue::new(semconv::RELAY_REASON, f.reason.clone())],
            )
        });
        if let Some(s) = &span {
            // Whoever reads the DLQ continues the record's trace from here.
            dl.traceparent = Some(s.traceparent());
        }
        let link = span.as_ref().map(|s| Arc::new(s.context().clone()));
        let cancel = self.cancel.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let outcome = dlq.send(dl, link, &cancel).await;
            if let (Some(s), WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e)) =
                (span.as_mut(), &outcome)
            {
                s.error(e.reason, e.message.clone());
            }
            drop(span);
            let _ = me.cast(PartitionMsg::DeadLettered {
                offset: rec.offset,
                received: rec.received,
                outcome,
                failure: f,
                trace_ids,
            });
            // The record (and its in-flight ticket) is released here.
            drop(rec);
        });
    }

    fn on_dead_lettered(
        &mut self,
        offset: i64,
        received: Instant,
        outcome: WriteOutcome,
        f: Failure,
        trace_ids: Option<(String, String)>,
    ) -> Result<(), ActorProcessingErr> {
        self.dead_lettering = self.dead_lettering.saturating_sub(1);
        match outcome {
            WriteOutcome::Done | WriteOutcome::Stale => {
                self.complete(offset, "dead_lettered", received)?
            }
            WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e) => self.stop_at(
                offset,
                Failure {
                    class: ErrorClass::Poison,
                    reason: "dlq_rejected".into(),
                    error: format!("{} (the DLQ rejected it: {e})", f.error),
                },
                trace_ids,
            ),
            WriteOutcome::Cancelled => {}
        }
        Ok(())
    }

    /// Replies to a pending `Drain` once nothing is in flight.
    fn check_drained(&mut self) {
        let idle = self.pipeline.as_ref().is_none_or(Pipeline::is_idle);
        if idle
            && self.dead_lettering == 0
            && let Some(tx) = self.draining.take()
        {
            let _ = tx.send(());
            // Keep discarding: the consumer removes us right after.
            self.draining = Some(std::sync::mpsc::channel().0);
        }
    }

    /// Acts on what left the pipeline.
    fn settle(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        done: Vec<Done<RecordIn>>,
    ) -> Result<(), ActorProcessingErr> {
        for d in done {
            match d {
                Done::Completed {
                    offset,
                    outcome,
                    mut held,
                } => {
                    if let Some(t) = held.trace.as_mut() {
                        t.set(semconv::RELAY_OUTCOME, outcome.as_str());
                    }
                    self.complete(offset, outcome.as_str(), held.received)?
                }
                Done::Failed {
                    failure,
                    held,
                    prepared,
                    ..
                } => {
                    // The decoded change for the DLQ body: what the route's first output built.
                    let decoded = self.route().and_then(|r| {
                        let first = r.outputs.first()?;
                        prepared.first()?.as_ref().and_then(|p| first.describe(p))
                    });
                    self.poison(myself, held, failure, decoded);
                }
                Done::Dropped { .. } => {}
            }
        }
        Ok(())
    }

    /// Sends what each output can send now, cut into submissions of the output's batch size
    /// (each answered on its own, so a key's next change waits for its own batch only).
    fn flush(&mut self, myself: &ActorRef<PartitionMsg>) {
        let Some(route) = self.topic.as_ref().and_then(|t| self.deps.routes.get(t)) else {
            return;
        };
        let Some(p) = &mut self.pipeline else {
            return;
        };
        for (lane, output) in route.outputs.iter().enumerate() {
            let size = output.submission_size().max(1);
            let mut ready = p.take_ready(lane).into_iter();
            loop {
                let units: Vec<Unit> = ready.by_ref().take(size).collect();
                if units.is_empty() {
                    break;
                }
                let output = Arc::clone(output);
                let cancel = self.cancel.clone();
                let me = myself.clone();
                tokio::spawn(async move {
                    let mut batch: Vec<Prepared> =
                        units.iter().map(|u| u.prepared.clone()).collect();
                    let spans = delivery_spans(output.as_ref(), &mut batch);
                    let outcomes = output.write(&batch, &cancel).await;
                    end_delivery_spans(spans, &outcomes);
                    let _ = me.cast(PartitionMsg::Written {
                        lane,
                        units,
                        outcomes,
                    });
                });
            }
        }
    }

    /// Decodes one record, retrying while the registry is unavailable; `None` if cancelled.
    async fn decode(&mut self, route: &Route, r: &RecordIn) -> Option<Result<Decoded, Failure>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 2.0);
        loop {
            match self
                .decoder
                .decode_memo(
                    &mut self.schema_memo,
                    &route.cfg,
                    r.payload.as_deref(),
                    r.pos(),
                )
                .await
            {
                Ok(d) => return Some(Ok(d)),
                Err(e) if e.class() == ErrorClass::Poison => {
                    return Some(Err(Failure::poison(e.reason(), e.to_string())));
                }
                Err(e) => {
                    // Registry down or credentials wrong: hold the partition and retry.
                    let d = backoff.next_delay();
                    tracing::warn!(src = %r.pos(), class = %e.class(), error = %e, "decode cannot proceed; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return None,
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
    }

    async fn on_records(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        batch: Vec<RecordIn>,
    ) -> Result<(), ActorProcessingErr> {
        if self.draining.is_some() || self.stopped_at.is_some() || self.shared.is_draining() {
            // Not tracked, so never committed: fetched again by whoever owns the partition next.
            return Ok(());
        }
        self.meters.consumed.increment(batch.len() as u64);
        let deps = Arc::clone(&self.deps);
        let mut done = Vec::new();
        let tracing_on = trace::enabled();
        for mut r in batch {
            if self.stopped_at.is_some() || self.cancel.is_cancelled() {
                break;
            }
            // Out of order means our view of the partition is broken: fail, restart, seek (DESIGN §2).
            self.tracker.track(r.offset, r.timestamp_ms)?;
            if tracing_on {
                let span = trace::start_record(&trace::RecordFacts {
                    traceparent: r.traceparent(),
                    topic: &r.topic,
                    partition: r.partition,
                    offset: r.offset,
                    cluster: &self.cluster,
                });
                r.trace = span;
            }
            let Some(rs) = deps.routes.get(r.topic.as_str()) else {
                let error = format!("no route for topic {}", r.topic);
                self.poison(myself, r, Failure::poison("no_route", error), None);
                continue;
            };
            if self.pipeline.is_none() {
                self.topic = Some(r.topic.clone());
                self.pipeline = Some(Pipeline::new(
                    rs.outputs
                        .iter()
                        .map(|o| (o.role(), o.reason_prefix().to_string())),
                ));
            }
            let mut span = child_span(&r, semconv::SPAN_DECODE);
            let decoded = self.decode(&rs.route, &r).await;
            if let (Some(s), Some(Err(f))) = (span.as_mut(), &decoded) {
                s.error(f.reason.clone(), f.error.clone());
            }
            drop(span);
            let ev = match decoded {
                None => return Ok(()),
                Some(Err(f)) => {
                    self.poison(myself, r, f, None);
                    continue;
                }
                Some(Ok(Decoded::Skipped(skip))) => {
                    metrics::counter!("cdc_relay_records_skipped_total", "topic" => r.topic.clone(), "reason" => skip.as_str()).increment(1);
                    if let Some(t) = r.trace.as_mut() {
                        t.set(semconv::RELAY_OUTCOME, "skipped");
                    }
                    self.complete(r.offset, "skipped", r.received)?;
                    continue;
                }
                Some(Ok(Decoded::Change(ev))) => ev,
            };
            let mut span = child_span(&r, semconv::SPAN_ROUTE);
            if let Some(s) = span.as_mut() {
                s.set(semconv::RELAY_OP, ev.op.as_str());
            }
            let key = match rs.route.key(&ev) {
                Ok(k) => k,
                Err(e) => {
                    let f = Failure {
                        class: e.class(),
                        reason: e.reason().into(),
                        error: e.to_string(),
                    };
                    if let Some(s) = span.as_mut() {
                        s.error(f.reason.clone(), f.error.clone());
                    }
                    drop(span);
                    self.poison(myself, r, f, None);
                    continue;
                }
            };
            // What the outputs send on: the relay's span of the record when it is traced.
            let own_tp = r.trace.as_ref().map(|t| t.traceparent());
            let change = Change {
                event: &ev,
                key: &key,
                kafka_ts_ms: r.timestamp_ms,
                traceparent: own_tp.as_deref().or_else(|| r.traceparent()),
            };
            let mut prepared = Vec::with_capacity(rs.outputs.len());
            let mut failure = None;
            let mut refused = None;
            for o in &rs.outputs {
                match o.prepare(&change) {
                    Ok(p) => prepared.push(Some(p)),
                    Err(mut f) => {
                        f.reason = format!("{}{}", o.reason_prefix(), f.reason);
                        if o.required() {
                            refused = Some(f);
                            break;
                        }
                        // An optional output refused it: the others run, then the DLQ.
                        failure.get_or_insert(f);
                        prepared.push(None);
                    }
                }
            }
            if let Some(f) = refused {
                if let Some(s) = span.as_mut() {
                    s.error(f.reason.clone(), f.error.clone());
                }
                drop(span);
                self.poison(myself, r, f, None);
                continue;
            }
            drop(span);
            if let Some(t) = &r.trace {
                let cx: Trace = Arc::new(t.context().clone());
                for p in prepared.iter_mut().flatten() {
                    p.trace = Some(Arc::clone(&cx));
                }
            }
            if let Some(p) = &mut self.pipeline {
                p.admit(r.offset, prepared, failure, r, &mut done);
            }
        }
        self.settle(myself, done)?;
        self.flush(myself);
        Ok(())
    }

    fn on_written(
        &mut self,
        myself: &ActorRef<PartitionMsg>,
        lane: usize,
        units: Vec<Unit>,
        outcomes: Vec<WriteOutcome>,
    ) -> Result<(), ActorProcessingErr> {
        let mut done = Vec::new();
        if let Some(p) = &mut self.pipeline {
            p.written(lane, units, outcomes, &mut done);
        }
        self.settle(myself, done)?;
        if !self.cancel.is_cancelled() {
            self.flush(myself);
        }
        self.check_drained();
        Ok(())
    }
}

/// A child span of a traced record (`decode`, `route`), starting now.
fn child_span(r: &RecordIn, name: &'static str) -> Option<TracedSpan> {
    r.trace
        .as_ref()
        .and_then(|t| t.child(name, SpanKind::Internal, Vec::new()))
}

/// Starts the delivery span of each traced request of `batch` (a child of its record's span)
/// and hands the request that span instead, for the sink calls' spans to link to. One pass that
/// finds nothing for untraced batches.
fn delivery_spans(output: &dyn Output, batch: &mut [Prepared]) -> Vec<(usize, TracedSpan)> {
    let mut spans = Vec::new();
    for (i, p) in batch.iter_mut().enumerate() {
        let Some(parent) = p.trace.as_ref() else {
            continue;
        };
        let attrs = vec![KeyValue::new(
            semconv::RELAY_OUTPUT,
            output.name().to_string(),
        )];
        if let Some(s) = trace::start_child(parent, output.span_name(), SpanKind::Client, attrs) {
            p.trace = Some(Arc::new(s.context().clone()));
            spans.push((i, s));
        }
    }
    spans
}

/// Ends delivery spans with their requests' outcomes.
fn end_delivery_spans(spans: Vec<(usize, TracedSpan)>, outcomes: &[WriteOutcome]) {
    for (i, mut s) in spans {
        match outcomes.get(i) {
            Some(WriteOutcome::Done) => s.set(semconv::RELAY_OUTCOME, "written"),
            Some(WriteOutcome::Stale) => s.set(semconv::RELAY_OUTCOME, "stale"),
            Some(WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e)) => {
                s.error(e.reason, e.message.clone())
            }
            Some(WriteOutcome::Cancelled) | None => s.set(semconv::RELAY_OUTCOME, "cancelled"),
        }
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
        let meters = Meters::new(&args.state.topic);
        Ok(PartitionActorState {
            deps: args.deps,
            decoder: args.decoder,
            schema_memo: None,
            shared: args.state,
            cluster: args.cluster,
            tracker,
            pipeline: None,
            topic: None,
            dead_lettering: 0,
            stopped_at: None,
            draining: None,
            meters,
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
            PartitionMsg::Records(batch) => state.on_records(&myself, batch).await,
            PartitionMsg::Written {
                lane,
                units,
                outcomes,
            } => state.on_written(&myself, lane, units, outcomes),
            PartitionMsg::DeadLettered {
                offset,
                received,
                outcome,
                failure,
                trace_ids,
            } => {
                state.on_dead_lettered(offset, received, outcome, failure, trace_ids)?;
                state.check_drained();
                Ok(())
            }
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
