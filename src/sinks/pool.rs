//! `SinkPool`: one per target (`dynamodb:<table>`, `eventbridge:<bus>`, `sqs:<queue>`,
//! `kafka:<topic>`, `blackhole:…`). A supervised ractor actor that takes callers' submissions (a
//! batch of requests each, one message and one reply per submission), cuts sink batches out of
//! everything waiting by count, bytes and linger time (in O(batch): the bytes waiting are a
//! running total), runs at most `concurrency` batches at once through its circuit breaker, and
//! answers each submission with one `SinkResult` per request once all of them are known.
//! `PoolHandle::write_batch` wraps that in the retry policy: only the failed requests are sent
//! again, with full-jitter backoff, forever for required sinks, within a budget for optional ones.
//!
//! It must not decide commits (the partition does), reorder two writes of one key (a batch never
//! holds two requests with the same key, and callers send a key's next write only after the
//! previous one finished), or drop a request on a transient error or a crash: a worker panic or
//! a pool restart drops the reply, and the caller sends the attempt again.

use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use opentelemetry::trace::{SpanContext, SpanKind};

use super::breaker::{Breaker, BreakerConfig, Permit, State as BreakerState};
use super::retry::Backoff;
use super::{Sink, SinkError, SinkRequest, SinkResult};
use crate::error_class::ErrorClass;
use crate::telemetry::semconv;
use crate::telemetry::trace::{self, TracedSpan};

/// The final outcome of a write, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    Stale,
    /// Can never succeed: the record goes to the DLQ (or stops its partition without one).
    Poison(SinkError),
    /// An optional sink's retry budget ran out: the record goes to the DLQ and is counted.
    Exhausted(SinkError),
    /// Given up on purpose (revoke deadline, shutdown). The record is not committed.
    Cancelled,
}

/// Full-jitter exponential backoff settings of one sink.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    pub multiplier: f64,
    /// Attempts before an *optional* sink gives a record up to the DLQ. Required sinks retry
    /// retryable errors forever and ignore this.
    pub budget: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            budget: 10,
        }
    }
}

impl RetryConfig {
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut p = Vec::new();
        if self.initial.is_zero() || self.initial > self.max {
            p.push(("initial", "must be > 0 and <= max"));
        }
        if self.multiplier.is_nan() || self.multiplier < 1.0 {
            p.push(("multiplier", "must be >= 1"));
        }
        if self.budget == 0 {
            p.push(("budget", "must be at least 1"));
        }
        p
    }
}

/// Settings of one pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Batches in flight at once.
    pub concurrency: usize,
    /// How long the first request of a batch may wait for company.
    pub linger: Duration,
    pub retry: RetryConfig,
    /// Misconfiguration errors back off at least this long between attempts.
    pub misconfig_backoff: Duration,
    pub breaker: BreakerConfig,
}

impl PoolSettings {
    /// Settings from a sink's config section; misconfiguration retries at most every 5 s.
    pub fn of(
        concurrency: usize,
        linger: Duration,
        retry: &RetryConfig,
        breaker: &BreakerConfig,
    ) -> PoolSettings {
        PoolSettings {
            concurrency,
            linger,
            retry: retry.clone(),
            misconfig_backoff: Duration::from_secs(5),
            breaker: breaker.clone(),
        }
    }
}

/// What `/ready` and `/status` need to know about a sink.
#[derive(Debug, Default)]
pub struct SinkHealth {
    misconfigured: AtomicBool,
    breaker: AtomicU8,
    last_error: Mutex<Option<String>>,
}

impl SinkHealth {
    pub fn is_misconfigured(&self) -> bool {
        self.misconfigured.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// `closed`, `open` or `half_open`.
    pub fn breaker_state(&self) -> &'static str {
        match self.breaker.load(Ordering::Relaxed) {
            1 => BreakerState::Open.as_str(),
            2 => BreakerState::HalfOpen.as_str(),
            _ => BreakerState::Closed.as_str(),
        }
    }

    fn set(&self, misconfigured: bool, err: Option<String>) {
        self.misconfigured.store(misconfigured, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = err;
        }
    }
}

/// What a pool shares across actor restarts: the sink, its settings, breaker, health and
/// metric handles.
pub struct PoolCore<R: SinkRequest> {
    sink: Arc<dyn Sink<R>>,
    settings: PoolSettings,
    health: Arc<SinkHealth>,
    breaker: Mutex<Breaker>,
    meters: Meters,
}

/// The pool's metric handles, resolved once (a lookup by name and labels costs a hash of the
/// labels and a registry lock: too much per sink call).
struct Meters {
    in_flight: Gauge,
    batch_size: Histogram,
    latency: Histogram,
    abandoned: Counter,
    exhausted: Counter,
    /// `cdc_relay_sink_requests_total` by result, in `RESULTS` order.
    requests: Vec<Counter>,
}

/// The `result` label values of `cdc_relay_sink_requests_total`.
const RESULTS: [&str; 6] = [
    "ok",
    "partial",
    "circuit_open",
    "poison",
    "retryable",
    "misconfiguration",
];

impl Meters {
    fn new(sink: &str) -> Meters {
        let s = sink.to_string();
        let m = Meters {
            in_flight: metrics::gauge!("cdc_relay_sink_in_flight", "sink" => s.clone()),
            batch_size: metrics::histogram!("cdc_relay_sink_batch_size", "sink" => s.clone()),
            latency: metrics::histogram!("cdc_relay_sink_latency_seconds", "sink" => s.clone()),
            abandoned: metrics::counter!("cdc_relay_sink_abandoned_total", "sink" => s.clone()),
            exhausted: metrics::counter!("cdc_relay_sink_exhausted_total", "sink" => s.clone()),
            requests: RESULTS
                .iter()
                .map(|r| metrics::counter!("cdc_relay_sink_requests_total", "sink" => s.clone(), "result" => *r))
                .collect(),
        };
        // Series that change only on events, shown at 0 from the start (dashboards, alerts).
        metrics::gauge!("cdc_relay_sink_misconfigured", "sink" => s.clone()).set(0.0);
        for to in ["open", "half_open", "closed"] {
            metrics::counter!("cdc_relay_circuit_transitions_total", "sink" => s.clone(), "to" => to)
                .increment(0);
        }
        metrics::counter!("cdc_relay_actor_restarts_total", "actor" => "sink_worker").increment(0);
        m
    }

    fn requests(&self, result: &str) -> Option<&Counter> {
        RESULTS
            .iter()
            .position(|r| *r == result)
            .and_then(|i| self.requests.get(i))
    }
}

impl<R: SinkRequest> PoolCore<R> {
    fn breaker_acquire(&self) -> Permit {
        let Ok(mut b) = self.breaker.lock() else {
            return Permit::Allowed;
        };
        let p = b.acquire(Instant::now());
        self.health
            .breaker
            .store(b.state().gauge() as u8, Ordering::Relaxed);
        p
    }

    fn breaker_record(&self, permit: Permit, ok: bool) {
        if let Ok(mut b) = self.breaker.lock() {
            b.record(permit, ok, Instant::now());
            self.health
                .breaker
                .store(b.state().gauge() as u8, Ordering::Relaxed);
        }
    }

    fn update_health(&self, results: &[SinkResult]) {
        let name = self.sink.name();
        let misconfig = results.iter().find_map(|r| match r {
            SinkResult::Failed(e) if e.class == ErrorClass::Misconfiguration => Some(e),
            _ => None,
        });
        if let Some(e) = misconfig {
            if !self.health.is_misconfigured() {
                tracing::error!(sink = %name, error = %e.message, "sink misconfigured; retrying slowly, /ready is false");
            }
            metrics::gauge!("cdc_relay_sink_misconfigured", "sink" => name.to_string()).set(1.0);
            self.health.set(true, Some(e.message.clone()));
        } else if self.health.is_misconfigured()
            && results
                .iter()
                .any(|r| matches!(r, SinkResult::Done | SinkResult::Stale))
        {
            tracing::info!(sink = %name, "sink recovered");
            metrics::gauge!("cdc_relay_sink_misconfigured", "sink" => name.to_string()).set(0.0);
            self.health.set(false, None);
        }
    }
}

/// One caller's submission: its requests' results, filled in as sink batches finish, and the
/// reply sent once every result is known. If the pool loses part of it (a worker panic, a pool
/// restart), the last holder drops the reply and the caller sends the submission again.
pub struct Submission {
    results: Mutex<Vec<Option<SinkResult>>>,
    left: AtomicUsize,
    reply: Mutex<Option<oneshot::Sender<Vec<SinkResult>>>>,
    /// The caller gave up (revoke, shutdown, a switch): its waiting requests are not sent.
    cancel: CancellationToken,
}

impl Submission {
    /// Records the results of `(index, result)` pairs of this submission; replies when complete.
    fn fill(&self, results: impl Iterator<Item = (usize, SinkResult)>) {
        let mut done = false;
        if let Ok(mut slots) = self.results.lock() {
            for (i, r) in results {
                if let Some(slot) = slots.get_mut(i)
                    && slot.is_none()
                {
                    *slot = Some(r);
                    done = self.left.fetch_sub(1, Ordering::AcqRel) == 1;
                }
            }
            if done && let Some(reply) = self.reply.lock().ok().and_then(|mut r| r.take()) {
                let all: Vec<SinkResult> =
                    slots.drain(..).map(|r| r.unwrap_or_else(missing)).collect();
                let _ = reply.send(all);
            }
        }
    }
}

/// The result of a request that got none (cannot happen once `left` reached zero).
fn missing() -> SinkResult {
    SinkResult::Failed(SinkError {
        class: ErrorClass::Retryable,
        reason: "entry_failed",
        sink: String::new(),
        message: "no result".into(),
    })
}

/// One request of a submission, waiting in a pool.
pub struct Attempt<R> {
    req: Arc<R>,
    /// The span of the record delivery it is part of, when that record is traced: the sink
    /// call's span links to it (or, for a call of its own, is its child).
    trace: Option<Trace>,
    sub: Arc<Submission>,
    index: usize,
    /// When it was queued (the linger time counts from here).
    at: Instant,
    /// How old what it carries is: the buffer is kept oldest first.
    age: Instant,
}

/// Messages to a `SinkPoolActor`.
pub enum PoolMsg<R> {
    /// A caller's submission: its requests, answered together. A dropped reply (worker panic,
    /// pool restart) tells the caller to send it again: it is retryable, never lost.
    Submit(Vec<Attempt<R>>),
    /// The linger time of the oldest waiting attempt is over.
    Flush,
    /// A batch finished; a worker slot is free.
    BatchDone,
    /// Fault injection (tests, chaos): fail the pool actor as a bug would.
    Fail,
}

pub struct SinkPoolActor<R>(PhantomData<fn() -> R>);

impl<R> Default for SinkPoolActor<R> {
    fn default() -> Self {
        SinkPoolActor(PhantomData)
    }
}

pub struct SinkPoolState<R: SinkRequest> {
    core: Arc<PoolCore<R>>,
    buf: VecDeque<Attempt<R>>,
    /// Bytes of the requests in `buf` (kept as they come and go, so a flush is O(batch)).
    buf_bytes: usize,
    flush_at: Option<Instant>,
    slots: Arc<Semaphore>,
    workers: tokio::task::JoinSet<()>,
}

impl<R: SinkRequest> SinkPoolState<R> {
    /// Collects finished workers; a panicked one has already dropped its replies (callers retry).
    fn reap(&mut self) {
        while let Some(done) = self.workers.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!(sink = %self.core.sink.name(), "sink worker panicked; its batch is retried");
                metrics::counter!("cdc_relay_actor_restarts_total", "actor" => "sink_worker")
                    .increment(1);
            }
        }
    }

    /// Takes the next batch off the buffer: at most `max_count` requests and `max_bytes`
    /// (at least one request), never two with the same key. Skipped requests keep their order.
    fn take_batch(&mut self, max_count: usize) -> Vec<Attempt<R>> {
        let lim = self.core.sink.limits();
        let mut batch = Vec::new();
        // Hashes of the batch's keys: a collision only defers a request to the next batch.
        let hasher = std::collections::hash_map::RandomState::new();
        let mut keys: HashSet<u64> = HashSet::new();
        let mut bytes = 0usize;
        let mut skipped = Vec::new();
        while let Some(a) = self.buf.pop_front() {
            let size = a.req.batch_bytes();
            if batch.len() >= max_count || (!batch.is_empty() && bytes + size > lim.max_bytes) {
                self.buf.push_front(a);
                break;
            }
            if !keys.insert(std::hash::BuildHasher::hash_one(&hasher, a.req.batch_key())) {
                skipped.push(a);
                continue;
            }
            bytes += size;
            batch.push(a);
        }
        self.buf_bytes = self.buf_bytes.saturating_sub(bytes);
        for a in skipped.into_iter().rev() {
            self.buf.push_front(a);
        }
        batch
    }

    fn try_flush(&mut self, myself: &ActorRef<PoolMsg<R>>) {
        let lim = self.core.sink.limits();
        // Attempts whose caller gave up (revoke, shutdown, a switch of clusters) are not sent:
        // after a switch they would otherwise delay every new write by the old backlog.
        // Only the front is checked each time (O(1)); given-up requests further back are dropped
        // when they reach it.
        let mut abandoned = 0u64;
        while let Some(front) = self.buf.front()
            && front.sub.cancel.is_cancelled()
        {
            if let Some(a) = self.buf.pop_front() {
                self.buf_bytes = self.buf_bytes.saturating_sub(a.req.batch_bytes());
                abandoned += 1;
            }
        }
        if abandoned > 0 {
            self.core.meters.abandoned.increment(abandoned);
        }
        loop {
            let Some(front) = self.buf.front() else {
                return;
            };
            let full = lim.per_request
                || self.buf.len() >= lim.max_count
                || self.buf_bytes >= lim.max_bytes;
            let due = front.at + self.core.settings.linger;
            if !full && Instant::now() < due {
                if self.flush_at.is_none_or(|f| f > due) {
                    self.flush_at = Some(due);
                    let wait = due.saturating_duration_since(Instant::now());
                    myself.send_after(wait, || PoolMsg::Flush);
                }
                return;
            }
            // A slot per batch, or per request when each request is its own call.
            let max_count = if lim.per_request {
                lim.max_count.min(self.slots.available_permits()).max(1)
            } else {
                lim.max_count
            };
            let want = if lim.per_request { max_count } else { 1 };
            let Ok(mut slot) =
                Arc::clone(&self.slots).try_acquire_many_owned(u32::try_from(want).unwrap_or(1))
            else {
                // Every worker is busy; `BatchDone` flushes again (and batches grow meanwhile).
                return;
            };
            let permit = self.core.breaker_acquire();
            if permit == Permit::Rejected {
                let name = self.core.sink.name().to_string();
                if let Some(c) = self.core.meters.requests("circuit_open") {
                    c.increment(self.buf.len() as u64);
                }
                let open = SinkResult::Failed(SinkError {
                    class: ErrorClass::Retryable,
                    reason: "circuit_open",
                    sink: name.clone(),
                    message: format!("circuit breaker of {name} is open"),
                });
                self.buf_bytes = 0;
                let waiting: Vec<Attempt<R>> = self.buf.drain(..).collect();
                answer(waiting, std::iter::repeat(open));
                return;
            }
            let batch = self.take_batch(max_count);
            if lim.per_request && batch.len() < want {
                // Fewer requests than slots taken: give the rest back.
                drop(slot.split(want - batch.len()));
            }
            self.spawn_worker(myself, batch, permit, slot);
        }
    }

    fn spawn_worker(
        &mut self,
        myself: &ActorRef<PoolMsg<R>>,
        batch: Vec<Attempt<R>>,
        permit: Permit,
        slot: OwnedSemaphorePermit,
    ) {
        let core = Arc::clone(&self.core);
        let me = myself.clone();
        self.workers.spawn(async move {
            let _slot = slot;
            let m = &core.meters;
            let reqs: Vec<Arc<R>> = batch.iter().map(|a| Arc::clone(&a.req)).collect();
            let n = reqs.len() as f64;
            m.in_flight.increment(n);
            m.batch_size.record(n);
            let mut spans = call_spans(core.sink.as_ref(), &batch);
            let started = Instant::now();
            let results = core.sink.write_batch(&reqs).await;
            end_call_spans(&mut spans, &results);
            m.in_flight.decrement(n);
            m.latency.record(started.elapsed().as_secs_f64());
            let unhealthy = results
                .iter()
                .find_map(|r| match r {
                    SinkResult::Failed(e) if e.trips_breaker() => Some(e),
                    _ => None,
                })
                .cloned();
            if core.sink.limits().per_request {
                // Each request was its own call.
                for r in &results {
                    let label = r.failure().map_or("ok", |e| e.class.as_str());
                    if let Some(c) = m.requests(label) {
                        c.increment(1);
                    }
                }
            } else {
                let label = match (&unhealthy, results.iter().find_map(SinkResult::failure)) {
                    (Some(e), _) => e.class.as_str(),
                    (None, Some(e)) if results.len() == 1 => e.class.as_str(),
                    (None, Some(_)) => "partial",
                    (None, None) => "ok",
                };
                if let Some(c) = m.requests(label) {
                    c.increment(1);
                }
            }
            core.breaker_record(permit, unhealthy.is_none());
            core.update_health(&results);
            if results.len() != batch.len() {
                tracing::error!(sink = %core.sink.name(), sent = batch.len(), got = results.len(), "sink returned a wrong number of results; the batch is retried");
                return;
            }
            answer(batch, results.into_iter());
            let _ = me.cast(PoolMsg::BatchDone);
        });
    }
}

/// A traced record delivery's span context (shared by the retries of its request).
pub type Trace = Arc<SpanContext>;

/// The spans of one sink call, for the traced requests it carries (none for untraced ones: the
/// check is one pass over the batch). A sink that makes one call per request gets a span per
/// traced request, a child of its delivery span. A batch call gets one span: a child of the
/// delivery span when it carries one traced request (the usual case at low sampling ratios, so
/// the record's trace shows the call), else a new trace linked to all of them.
fn call_spans<R: SinkRequest>(
    sink: &dyn Sink<R>,
    batch: &[Attempt<R>],
) -> Vec<(Option<usize>, TracedSpan)> {
    if batch.iter().all(|a| a.trace.is_none()) {
        return Vec::new();
    }
    let per_request = sink.limits().per_request;
    if per_request {
        batch
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let parent = a.trace.as_ref()?;
                let call = sink.call(Some(&a.req));
                trace::start_child(parent, call.name, SpanKind::Client, call.attrs)
                    .map(|s| (Some(i), s))
            })
            .collect()
    } else {
        let links: Vec<SpanContext> = batch
            .iter()
            .filter_map(|a| a.trace.as_deref().cloned())
            .collect();
        let mut call = sink.call(None);
        call.attrs.push(opentelemetry::KeyValue::new(
            semconv::MESSAGING_BATCH_MESSAGE_COUNT,
            batch.len() as i64,
        ));
        let span = match links.as_slice() {
            [one] => trace::start_child(one, call.name, SpanKind::Client, call.attrs),
            _ => trace::start_linked(call.name, SpanKind::Client, links, call.attrs),
        };
        span.map(|s| (None, s)).into_iter().collect()
    }
}

/// Ends the call spans with the results: a failure marks the span failed.
fn end_call_spans(spans: &mut Vec<(Option<usize>, TracedSpan)>, results: &[SinkResult]) {
    for (i, span) in spans.iter_mut() {
        let failure = match i {
            Some(i) => results.get(*i).and_then(SinkResult::failure),
            None => results.iter().find_map(SinkResult::failure),
        };
        if let Some(e) = failure {
            span.error(e.reason, e.message.clone());
        }
    }
    spans.clear();
}

/// Hands each attempt's result to its submission, one lock per submission and batch.
fn answer<R>(attempts: Vec<Attempt<R>>, results: impl Iterator<Item = SinkResult>) {
    let mut pairs: Vec<(Attempt<R>, SinkResult)> = attempts.into_iter().zip(results).collect();
    pairs.sort_by_key(|(a, _)| Arc::as_ptr(&a.sub) as usize);
    let mut i = 0;
    while i < pairs.len() {
        let sub = Arc::clone(&pairs[i].0.sub);
        let mut j = i;
        while j < pairs.len() && Arc::ptr_eq(&pairs[j].0.sub, &sub) {
            j += 1;
        }
        sub.fill(
            pairs[i..j]
                .iter_mut()
                .map(|(a, r)| (a.index, std::mem::replace(r, SinkResult::Done))),
        );
        i = j;
    }
}

impl<R: SinkRequest> Actor for SinkPoolActor<R> {
    type Msg = PoolMsg<R>;
    type State = SinkPoolState<R>;
    type Arguments = Arc<PoolCore<R>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<PoolMsg<R>>,
        core: Arc<PoolCore<R>>,
    ) -> Result<SinkPoolState<R>, ActorProcessingErr> {
        Ok(SinkPoolState {
            slots: Arc::new(Semaphore::new(core.settings.concurrency.max(1))),
            core,
            buf: VecDeque::new(),
            buf_bytes: 0,
            flush_at: None,
            workers: tokio::task::JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg<R>>,
        msg: PoolMsg<R>,
        state: &mut SinkPoolState<R>,
    ) -> Result<(), ActorProcessingErr> {
        state.reap();
        match msg {
            PoolMsg::Submit(attempts) => {
                state.buf_bytes += attempts.iter().map(|a| a.req.batch_bytes()).sum::<usize>();
                // Oldest first: usually the newest submission, appended in O(batch); an older
                // one (a key's next change, a retry) goes ahead of the newer ones waiting.
                let age = attempts.first().map(|a| a.age);
                let at = age.map_or(state.buf.len(), |age| {
                    state.buf.partition_point(|a| a.age <= age)
                });
                if at == state.buf.len() {
                    state.buf.extend(attempts);
                } else {
                    let mut rest = state.buf.split_off(at);
                    state.buf.extend(attempts);
                    state.buf.append(&mut rest);
                }
            }
            PoolMsg::Flush => state.flush_at = None,
            PoolMsg::BatchDone => {}
            PoolMsg::Fail => {
                return Err(
                    format!("injected failure of sink pool {}", state.core.sink.name()).into(),
                );
            }
        }
        state.try_flush(&myself);
        Ok(())
    }
}

/// How callers reach a pool: its shared core and its current actor, which changes when the
/// supervisor restarts it. Cheap to clone.
pub struct PoolHandle<R: SinkRequest> {
    core: Arc<PoolCore<R>>,
    current: Arc<std::sync::RwLock<Option<ActorRef<PoolMsg<R>>>>>,
}

impl<R: SinkRequest> Clone for PoolHandle<R> {
    fn clone(&self) -> Self {
        PoolHandle {
            core: Arc::clone(&self.core),
            current: Arc::clone(&self.current),
        }
    }
}

impl<R: SinkRequest> PoolHandle<R> {
    pub fn new(sink: Arc<dyn Sink<R>>, settings: PoolSettings) -> Self {
        let breaker = Mutex::new(Breaker::new(sink.name(), settings.breaker.clone()));
        let meters = Meters::new(sink.name());
        PoolHandle {
            core: Arc::new(PoolCore {
                sink,
                settings,
                health: Arc::new(SinkHealth::default()),
                breaker,
                meters,
            }),
            current: Arc::new(std::sync::RwLock::new(None)),
        }
    }

    pub fn name(&self) -> &str {
        self.core.sink.name()
    }

    /// Requests per sink batch (the sink's count limit).
    pub fn batch_size(&self) -> usize {
        self.core.sink.limits().max_count.max(1)
    }

    pub fn health(&self) -> &Arc<SinkHealth> {
        &self.core.health
    }

    fn actor(&self) -> Option<ActorRef<PoolMsg<R>>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// One attempt at each request through the pool actor (one message, one reply); `None` if
    /// cancelled. If the actor or a worker dies first, the whole submission is sent again after
    /// a short pause (requests that had landed are absorbed by version guards or deduplicated
    /// downstream).
    pub async fn attempt_batch(
        &self,
        reqs: &[Arc<R>],
        cancel: &CancellationToken,
    ) -> Option<Vec<SinkResult>> {
        self.attempt_batch_since(reqs, Instant::now(), cancel).await
    }

    /// `attempt_batch` for requests as old as `since`: they wait behind older ones only.
    pub async fn attempt_batch_since(
        &self,
        reqs: &[Arc<R>],
        since: Instant,
        cancel: &CancellationToken,
    ) -> Option<Vec<SinkResult>> {
        self.attempt_traced(reqs, None, since, cancel).await
    }

    /// `attempt_batch_since` with the delivery spans of traced requests (`traces[i]` for
    /// `reqs[i]`), which the sink calls' spans link to.
    async fn attempt_traced(
        &self,
        reqs: &[Arc<R>],
        traces: Option<&[Option<Trace>]>,
        since: Instant,
        cancel: &CancellationToken,
    ) -> Option<Vec<SinkResult>> {
        if reqs.is_empty() {
            return Some(Vec::new());
        }
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            if let Some(actor) = self.actor() {
                let (tx, rx) = oneshot::channel();
                let sub = Arc::new(Submission {
                    results: Mutex::new(vec![None; reqs.len()]),
                    left: AtomicUsize::new(reqs.len()),
                    reply: Mutex::new(Some(tx)),
                    cancel: cancel.clone(),
                });
                let at = Instant::now();
                let attempts = reqs
                    .iter()
                    .enumerate()
                    .map(|(index, req)| Attempt {
                        req: Arc::clone(req),
                        trace: traces.and_then(|t| t.get(index).cloned().flatten()),
                        sub: Arc::clone(&sub),
                        index,
                        at,
                        age: since.min(at),
                    })
                    .collect();
                drop(sub);
                if actor.cast(PoolMsg::Submit(attempts)).is_ok() {
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        r = rx => if let Ok(results) = r { return Some(results) },
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// One attempt at `req`; `None` if cancelled.
    pub async fn attempt(&self, req: &Arc<R>, cancel: &CancellationToken) -> Option<SinkResult> {
        self.attempt_batch(std::slice::from_ref(req), cancel)
            .await
            .and_then(|mut r| r.pop())
    }

    /// Writes `req` with the pool's retry policy (see `write_batch`).
    pub async fn write(
        &self,
        req: Arc<R>,
        cancel: &CancellationToken,
        required: bool,
    ) -> WriteOutcome {
        self.write_traced(req, None, cancel, required).await
    }

    /// `write` for a request of a traced record delivery (`trace`: its span).
    pub async fn write_traced(
        &self,
        req: Arc<R>,
        trace: Option<Trace>,
        cancel: &CancellationToken,
        required: bool,
    ) -> WriteOutcome {
        let traces = trace.map(|t| [Some(t)]);
        self.write_batch_traced(
            &[req],
            traces.as_ref().map(|t| t.as_slice()),
            Instant::now(),
            cancel,
            required,
        )
        .await
        .pop()
        .unwrap_or(WriteOutcome::Cancelled)
    }

    /// Writes `reqs` with the pool's retry policy, one outcome per request: each until done,
    /// stale, poison, cancelled, or (when not `required`) until its retry budget is spent. Only
    /// the requests that failed retryably are sent again, after a full-jitter backoff.
    pub async fn write_batch(
        &self,
        reqs: &[Arc<R>],
        cancel: &CancellationToken,
        required: bool,
    ) -> Vec<WriteOutcome> {
        self.write_batch_since(reqs, Instant::now(), cancel, required)
            .await
    }

    /// `write_batch` for requests as old as `since` (their records' age): the pool sends
    /// older requests first, retries included.
    pub async fn write_batch_since(
        &self,
        reqs: &[Arc<R>],
        since: Instant,
        cancel: &CancellationToken,
        required: bool,
    ) -> Vec<WriteOutcome> {
        self.write_batch_traced(reqs, None, since, cancel, required)
            .await
    }

    /// `write_batch_since` with the delivery spans of traced requests (`traces[i]` for
    /// `reqs[i]`; `None`: none is traced).
    pub async fn write_batch_traced(
        &self,
        reqs: &[Arc<R>],
        traces: Option<&[Option<Trace>]>,
        since: Instant,
        cancel: &CancellationToken,
        required: bool,
    ) -> Vec<WriteOutcome> {
        let s = &self.core.settings;
        let mut backoff = Backoff::new(s.retry.initial, s.retry.max, s.retry.multiplier);
        let name = self.name();
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; reqs.len()];
        let mut attempts = vec![0u32; reqs.len()];
        let mut pending: Vec<usize> = (0..reqs.len()).collect();
        loop {
            let batch: Vec<Arc<R>> = pending.iter().map(|&i| Arc::clone(&reqs[i])).collect();
            let batch_traces: Option<Vec<Option<Trace>>> = traces.map(|t| {
                pending
                    .iter()
                    .map(|&i| t.get(i).cloned().flatten())
                    .collect()
            });
            let Some(results) = self
                .attempt_traced(&batch, batch_traces.as_deref(), since, cancel)
                .await
            else {
                break;
            };
            let mut retry = Vec::new();
            let mut misconfigured = false;
            let mut first_error: Option<SinkError> = None;
            for (&i, result) in pending.iter().zip(results) {
                match result {
                    SinkResult::Done => outcomes[i] = Some(WriteOutcome::Done),
                    SinkResult::Stale => outcomes[i] = Some(WriteOutcome::Stale),
                    SinkResult::Failed(e) => match e.class {
                        ErrorClass::Poison => outcomes[i] = Some(WriteOutcome::Poison(e)),
                        ErrorClass::Retryable => {
                            attempts[i] += 1;
                            if !required && attempts[i] >= s.retry.budget {
                                self.core.meters.exhausted.increment(1);
                                tracing::warn!(sink = %name, req = %reqs[i].describe(), attempts = attempts[i], error = %e.message, "optional sink: retry budget spent; the record goes to the DLQ");
                                outcomes[i] = Some(WriteOutcome::Exhausted(e));
                            } else {
                                retry.push(i);
                                if first_error.is_none() && e.reason != "circuit_open" {
                                    first_error = Some(e);
                                }
                            }
                        }
                        // Never DLQ'd (a misconfiguration would send everything there): hold.
                        ErrorClass::Misconfiguration => {
                            misconfigured = true;
                            retry.push(i);
                        }
                    },
                }
            }
            if retry.is_empty() {
                break;
            }
            let mut delay = backoff.next_delay();
            if misconfigured {
                delay = delay.max(s.misconfig_backoff);
            }
            // An open breaker is logged once, at its transition.
            if let Some(e) = first_error
                && (backoff.attempts() == 1 || backoff.attempts().is_multiple_of(20))
            {
                tracing::warn!(sink = %name, req = %reqs[retry[0]].describe(), requests = retry.len(), attempts = backoff.attempts(), reason = e.reason, error = %e.message, "retryable sink error; backing off");
            }
            pending = retry;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(WriteOutcome::Cancelled))
            .collect()
    }

    /// Fault injection (tests, chaos): fail the current pool actor.
    pub fn inject_failure(&self) -> bool {
        self.actor().is_some_and(|a| a.cast(PoolMsg::Fail).is_ok())
    }
}

/// The supervisor's recipe for (re)starting a pool actor and publishing it to its `PoolHandle`.
pub struct PoolSpec<R: SinkRequest>(pub PoolHandle<R>);

impl<R: SinkRequest> crate::supervision::ChildSpec for PoolSpec<R> {
    fn name(&self) -> String {
        format!("sinkpool:{}", self.0.name())
    }

    fn spawn(
        &self,
        supervisor: ractor::ActorCell,
    ) -> futures::future::BoxFuture<'static, Result<ractor::ActorCell, ractor::SpawnErr>> {
        let handle = self.0.clone();
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(
                None,
                SinkPoolActor::<R>::default(),
                Arc::clone(&handle.core),
                supervisor,
            )
            .await?;
            if let Ok(mut c) = handle.current.write() {
                *c = Some(actor.clone());
            }
            Ok(actor.get_cell())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::sinks::BatchLimits;

    struct Req(String);

    impl SinkRequest for Req {
        fn batch_bytes(&self) -> usize {
            10
        }
        fn batch_key(&self) -> &str {
            &self.0
        }
        fn describe(&self) -> String {
            self.0.clone()
        }
    }

    /// Records every batch; fails the first `fail_first` calls (retryable), panics on call
    /// number `panic_on` (1-based, 0 = never).
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<String>>>,
        calls: AtomicUsize,
        fail_first: usize,
        panic_on: usize,
    }

    #[async_trait::async_trait]
    impl Sink<Req> for Recorder {
        fn name(&self) -> &str {
            "test:recorder"
        }
        fn limits(&self) -> BatchLimits {
            BatchLimits {
                max_count: 3,
                max_bytes: 25,
                per_request: false,
            }
        }
        async fn write_batch(&self, batch: &[Arc<Req>]) -> Vec<SinkResult> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(n != self.panic_on, "injected worker panic");
            self.batches
                .lock()
                .unwrap()
                .push(batch.iter().map(|r| r.0.clone()).collect());
            tokio::time::sleep(Duration::from_millis(5)).await;
            let r = if n <= self.fail_first {
                SinkResult::Failed(SinkError {
                    class: ErrorClass::Retryable,
                    reason: "transport",
                    sink: "test:recorder".into(),
                    message: "down".into(),
                })
            } else {
                SinkResult::Done
            };
            vec![r; batch.len()]
        }
    }

    fn settings(breaker_failures: u32) -> PoolSettings {
        PoolSettings {
            concurrency: 2,
            linger: Duration::from_millis(20),
            retry: RetryConfig {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(40),
                multiplier: 2.0,
                budget: 3,
            },
            misconfig_backoff: Duration::from_millis(100),
            breaker: BreakerConfig {
                failures: breaker_failures,
                open_for: Duration::from_millis(500),
                ..BreakerConfig::default()
            },
        }
    }

    async fn start(sink: Arc<dyn Sink<Req>>, s: PoolSettings) -> PoolHandle<Req> {
        let h = PoolHandle::new(sink, s);
        let (actor, _) = Actor::spawn(None, SinkPoolActor::<Req>::default(), Arc::clone(&h.core))
            .await
            .unwrap();
        *h.current.write().unwrap() = Some(actor);
        h
    }

    /// A sink whose requests are each their own call (conditional writes).
    #[derive(Default)]
    struct PerRequest {
        in_flight: AtomicUsize,
        most: AtomicUsize,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Sink<Req> for PerRequest {
        fn name(&self) -> &str {
            "test:per_request"
        }
        fn limits(&self) -> BatchLimits {
            BatchLimits {
                max_count: 16,
                max_bytes: usize::MAX,
                per_request: true,
            }
        }
        async fn write_batch(&self, batch: &[Arc<Req>]) -> Vec<SinkResult> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(batch.len(), Ordering::SeqCst) + batch.len();
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(batch.len(), Ordering::SeqCst);
            vec![SinkResult::Done; batch.len()]
        }
    }

    /// With `per_request`, `concurrency` bounds the requests in flight (not the calls), and
    /// requests share worker calls instead of one task each.
    #[tokio::test(start_paused = true)]
    async fn per_request_sinks_count_concurrency_in_requests() {
        let sink = Arc::new(PerRequest::default());
        let mut s = settings(100);
        s.concurrency = 6;
        let h = start(Arc::clone(&sink) as Arc<dyn Sink<Req>>, s).await;
        let reqs: Vec<Arc<Req>> = (0..60).map(|i| Arc::new(Req(format!("k{i}")))).collect();
        let out = h.write_batch(&reqs, &CancellationToken::new(), true).await;
        assert_eq!(out.len(), 60);
        assert!(out.iter().all(|o| matches!(o, WriteOutcome::Done)));
        let most = sink.most.load(Ordering::SeqCst);
        assert!(most <= 6, "{most} requests in flight with concurrency 6");
        assert!(most > 1, "requests were sent one at a time");
        assert!(
            sink.calls.load(Ordering::SeqCst) < 60,
            "one call per request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batches_respect_count_bytes_and_distinct_keys() {
        let sink = Arc::new(Recorder::default());
        let h = start(sink.clone(), settings(100)).await;
        let cancel = CancellationToken::new();
        let keys = ["a", "b", "a", "c", "d", "a", "e", "f"];
        let outcomes = futures::future::join_all(
            keys.iter()
                .map(|k| h.write(Arc::new(Req((*k).into())), &cancel, true)),
        )
        .await;
        assert!(
            outcomes.iter().all(|o| *o == WriteOutcome::Done),
            "{outcomes:?}"
        );
        let batches = sink.batches.lock().unwrap().clone();
        let total: usize = batches.iter().map(Vec::len).sum();
        assert_eq!(total, keys.len(), "{batches:?}");
        for b in &batches {
            // max_count 3; 25 bytes allow only 2 requests of 10 bytes.
            assert!(b.len() <= 2, "{batches:?}");
            let distinct: HashSet<_> = b.iter().collect();
            assert_eq!(
                distinct.len(),
                b.len(),
                "a key twice in one batch: {batches:?}"
            );
        }
        assert!(
            batches.iter().any(|b| b.len() == 2),
            "linger lets batches form: {batches:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn older_requests_are_sent_first() {
        let sink = Arc::new(Recorder::default());
        let h = start(sink.clone(), settings(100)).await;
        let cancel = CancellationToken::new();
        let reqs = |a: &str, b: &str| vec![Arc::new(Req(a.into())), Arc::new(Req(b.into()))];
        let (newer, older) = (reqs("n1", "n2"), reqs("o1", "o2"));
        let now = Instant::now();
        // Both wait out the linger time together; the older submission arrives second.
        let (a, b) = tokio::join!(h.write_batch_since(&newer, now, &cancel, true), async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            h.write_batch_since(&older, now - Duration::from_secs(1), &cancel, true)
                .await
        });
        assert!(a.iter().chain(&b).all(|o| *o == WriteOutcome::Done));
        let batches = sink.batches.lock().unwrap().clone();
        assert_eq!(
            batches[0],
            vec!["o1".to_string(), "o2".to_string()],
            "{batches:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn open_breaker_fails_fast_without_calling_the_sink() {
        let sink = Arc::new(Recorder {
            fail_first: usize::MAX,
            ..Recorder::default()
        });
        let h = start(sink.clone(), settings(2)).await;
        let cancel = CancellationToken::new();
        let req = Arc::new(Req("k".into()));
        for _ in 0..2 {
            let r = h.attempt(&req, &cancel).await.unwrap();
            assert_eq!(r.failure().map(|e| e.reason), Some("transport"));
        }
        assert_eq!(h.health().breaker_state(), "open");
        let r = h.attempt(&req, &cancel).await.unwrap();
        assert_eq!(r.failure().map(|e| e.reason), Some("circuit_open"));
        assert_eq!(sink.calls.load(Ordering::SeqCst), 2, "fail fast: no call");
    }

    #[tokio::test(start_paused = true)]
    async fn optional_writes_exhaust_their_budget_required_ones_never_do() {
        let sink = Arc::new(Recorder {
            fail_first: 5,
            ..Recorder::default()
        });
        let h = start(sink.clone(), settings(100)).await;
        let cancel = CancellationToken::new();
        let r = h.write(Arc::new(Req("opt".into())), &cancel, false).await;
        assert!(matches!(r, WriteOutcome::Exhausted(_)), "{r:?}");
        assert_eq!(sink.calls.load(Ordering::SeqCst), 3, "budget = 3 attempts");
        let r = h.write(Arc::new(Req("req".into())), &cancel, true).await;
        assert_eq!(r, WriteOutcome::Done);
        assert_eq!(sink.calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_worker_loses_nothing() {
        let sink = Arc::new(Recorder {
            panic_on: 1,
            ..Recorder::default()
        });
        let h = start(sink.clone(), settings(100)).await;
        let cancel = CancellationToken::new();
        let r = h.write(Arc::new(Req("p".into())), &cancel, true).await;
        assert_eq!(r, WriteOutcome::Done);
        assert_eq!(
            sink.calls.load(Ordering::SeqCst),
            2,
            "re-sent after the panic"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_attempts_are_not_sent() {
        let sink = Arc::new(Recorder::default());
        let h = start(sink.clone(), settings(100)).await;
        let cancel = CancellationToken::new();
        // Two attempts (below the batch limits) wait for the linger time; they are given up
        // before it is over; then one more write.
        let abandoned: Vec<_> = (0..2)
            .map(|i| {
                let h = h.clone();
                let c = cancel.clone();
                tokio::spawn(
                    async move { h.write(Arc::new(Req(format!("gone{i}"))), &c, true).await },
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        cancel.cancel();
        for a in abandoned {
            assert_eq!(a.await.unwrap(), WriteOutcome::Cancelled);
        }
        let r = h
            .write(
                Arc::new(Req("kept".into())),
                &CancellationToken::new(),
                true,
            )
            .await;
        assert_eq!(r, WriteOutcome::Done);
        let sent: Vec<String> = sink.batches.lock().unwrap().concat();
        assert_eq!(
            sent,
            vec!["kept".to_string()],
            "abandoned attempts were sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_gives_up_without_an_outcome() {
        let sink = Arc::new(Recorder {
            fail_first: usize::MAX,
            ..Recorder::default()
        });
        let h = start(sink, settings(100)).await;
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c2.cancel();
        });
        let r = h.write(Arc::new(Req("c".into())), &cancel, true).await;
        assert_eq!(r, WriteOutcome::Cancelled);
    }
}
