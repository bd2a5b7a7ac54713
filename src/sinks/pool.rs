//! `SinkPool`: runs one sink's writes with bounded concurrency and retries retryable errors with
//! full-jitter backoff, forever, until the write succeeds, turns out poison, or is cancelled
//! (the partition gave the record up on revoke or shutdown; it stays uncommitted).
//!
//! It must not decide commits (the partition does) or drop a record on a transient error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::retry::Backoff;
use super::{Sink, SinkError, SinkResult};
use crate::error_class::ErrorClass;
use crate::route::WriteRequest;

/// The final outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    Stale,
    /// Can never succeed; the record must stop its partition (or, later, go to the DLQ).
    Poison(SinkError),
    /// Given up on purpose (revoke deadline, shutdown). The record is not committed.
    Cancelled,
}

/// Retry and concurrency settings of a pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub concurrency: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Misconfiguration errors back off at least this long between attempts.
    pub misconfig_backoff: Duration,
}

/// What `/ready` needs to know about a sink.
#[derive(Debug, Default)]
pub struct SinkHealth {
    misconfigured: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl SinkHealth {
    pub fn is_misconfigured(&self) -> bool {
        self.misconfigured.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set(&self, misconfigured: bool, err: Option<String>) {
        self.misconfigured.store(misconfigured, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = err;
        }
    }
}

/// A pool of concurrent writes to one sink. Cheap to clone.
#[derive(Clone)]
pub struct SinkPool {
    sink: Arc<dyn Sink>,
    permits: Arc<Semaphore>,
    settings: PoolSettings,
    health: Arc<SinkHealth>,
}

impl SinkPool {
    pub fn new(sink: Arc<dyn Sink>, settings: PoolSettings) -> Self {
        SinkPool {
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            sink,
            settings,
            health: Arc::new(SinkHealth::default()),
        }
    }

    pub fn name(&self) -> &str {
        self.sink.name()
    }

    pub fn health(&self) -> &Arc<SinkHealth> {
        &self.health
    }

    /// Writes `req`, retrying transient failures until done, stale, poison or cancelled.
    pub async fn write(&self, req: &WriteRequest, cancel: &CancellationToken) -> WriteOutcome {
        let mut backoff = Backoff::new(
            self.settings.backoff_initial,
            self.settings.backoff_max,
            2.0,
        );
        let sink = self.sink.name().to_string();
        loop {
            let permit = tokio::select! {
                _ = cancel.cancelled() => return WriteOutcome::Cancelled,
                p = self.permits.acquire() => match p {
                    Ok(p) => p,
                    Err(_) => return WriteOutcome::Cancelled,
                },
            };
            metrics::gauge!("cdc_relay_sink_in_flight", "sink" => sink.clone()).increment(1.0);
            let started = Instant::now();
            let result = self.sink.write(req).await;
            metrics::gauge!("cdc_relay_sink_in_flight", "sink" => sink.clone()).decrement(1.0);
            drop(permit);
            let label = match &result {
                SinkResult::Done => "ok",
                SinkResult::Stale => "stale",
                SinkResult::Failed(e) => e.class.as_str(),
            };
            metrics::counter!("cdc_relay_sink_requests_total", "sink" => sink.clone(), "result" => label).increment(1);
            metrics::histogram!("cdc_relay_sink_latency_seconds", "sink" => sink.clone())
                .record(started.elapsed().as_secs_f64());
            let delay = match result {
                SinkResult::Done | SinkResult::Stale => {
                    if self.health.is_misconfigured() {
                        tracing::info!(sink = %sink, "sink recovered");
                        metrics::gauge!("cdc_relay_sink_misconfigured", "sink" => sink.clone())
                            .set(0.0);
                    }
                    self.health.set(false, None);
                    return if result == SinkResult::Done {
                        WriteOutcome::Done
                    } else {
                        WriteOutcome::Stale
                    };
                }
                SinkResult::Failed(e) => match e.class {
                    ErrorClass::Poison => return WriteOutcome::Poison(e),
                    ErrorClass::Retryable => {
                        let d = backoff.next_delay();
                        if backoff.attempts() == 1 || backoff.attempts() % 20 == 0 {
                            tracing::warn!(sink = %sink, src = %req.src, attempts = backoff.attempts(), error = %e.message, "retryable sink error; backing off");
                        }
                        d
                    }
                    ErrorClass::Misconfiguration => {
                        if !self.health.is_misconfigured() {
                            tracing::error!(sink = %sink, error = %e.message, "sink misconfigured; retrying slowly, /ready is false");
                        }
                        metrics::gauge!("cdc_relay_sink_misconfigured", "sink" => sink.clone())
                            .set(1.0);
                        self.health.set(true, Some(e.message.clone()));
                        backoff.next_delay().max(self.settings.misconfig_backoff)
                    }
                },
            };
            tokio::select! {
                _ = cancel.cancelled() => return WriteOutcome::Cancelled,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Messages to a `SinkPoolActor`.
pub enum PoolMsg {
    /// Run one write; the outcome goes to `reply`. A dropped `reply` (worker panic, pool restart)
    /// tells the caller to send the write again: it is retryable, never lost.
    Write {
        req: Arc<WriteRequest>,
        cancel: CancellationToken,
        reply: tokio::sync::oneshot::Sender<WriteOutcome>,
    },
    /// Fault injection (tests, chaos): fail the pool actor as a bug would.
    Fail,
}

/// The supervised face of a `SinkPool` (DESIGN §2: `SinkPool(dynamodb:<table>)` in the tree).
/// Each write runs as a worker task owned by the actor; when the actor fails, its workers are
/// aborted with it and every caller is told to retry against the restarted actor.
pub struct SinkPoolActor;

pub struct SinkPoolState {
    pool: SinkPool,
    workers: tokio::task::JoinSet<()>,
}

impl SinkPoolState {
    /// Collects finished workers; a panicked one has already dropped its reply (caller retries).
    fn reap(&mut self) {
        while let Some(done) = self.workers.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!(sink = %self.pool.name(), "sink worker panicked; its write is retried");
                metrics::counter!("cdc_relay_actor_restarts_total", "actor" => "sink_worker")
                    .increment(1);
            }
        }
    }
}

impl ractor::Actor for SinkPoolActor {
    type Msg = PoolMsg;
    type State = SinkPoolState;
    type Arguments = SinkPool;

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<PoolMsg>,
        pool: SinkPool,
    ) -> Result<SinkPoolState, ractor::ActorProcessingErr> {
        Ok(SinkPoolState {
            pool,
            workers: tokio::task::JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut SinkPoolState,
    ) -> Result<(), ractor::ActorProcessingErr> {
        state.reap();
        match msg {
            PoolMsg::Write { req, cancel, reply } => {
                let pool = state.pool.clone();
                state.workers.spawn(async move {
                    let outcome = pool.write(&req, &cancel).await;
                    let _ = reply.send(outcome);
                });
                Ok(())
            }
            PoolMsg::Fail => {
                Err(format!("injected failure of sink pool {}", state.pool.name()).into())
            }
        }
    }
}

/// How callers reach the pool's current actor, which changes when the supervisor restarts it.
#[derive(Clone)]
pub struct PoolHandle {
    pool: SinkPool,
    current: Arc<std::sync::RwLock<Option<ractor::ActorRef<PoolMsg>>>>,
}

impl PoolHandle {
    pub fn new(pool: SinkPool) -> Self {
        PoolHandle {
            pool,
            current: Arc::new(std::sync::RwLock::new(None)),
        }
    }

    pub fn pool(&self) -> &SinkPool {
        &self.pool
    }

    fn actor(&self) -> Option<ractor::ActorRef<PoolMsg>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Writes `req` through the pool actor. If the actor or the worker dies first, the write is
    /// sent again (after a short pause) until an outcome arrives or `cancel` fires.
    pub async fn write(&self, req: Arc<WriteRequest>, cancel: &CancellationToken) -> WriteOutcome {
        loop {
            if cancel.is_cancelled() {
                return WriteOutcome::Cancelled;
            }
            if let Some(actor) = self.actor() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let msg = PoolMsg::Write {
                    req: Arc::clone(&req),
                    cancel: cancel.clone(),
                    reply: tx,
                };
                if actor.cast(msg).is_ok() {
                    tokio::select! {
                        _ = cancel.cancelled() => return WriteOutcome::Cancelled,
                        r = rx => if let Ok(outcome) = r { return outcome },
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return WriteOutcome::Cancelled,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Fault injection (tests, chaos): fail the current pool actor.
    pub fn inject_failure(&self) -> bool {
        self.actor().is_some_and(|a| a.cast(PoolMsg::Fail).is_ok())
    }
}

/// The supervisor's recipe for (re)starting a pool actor and publishing it to its `PoolHandle`.
pub struct PoolSpec(pub PoolHandle);

impl crate::supervision::ChildSpec for PoolSpec {
    fn name(&self) -> String {
        format!("sinkpool:{}", self.0.pool.name())
    }

    fn spawn(
        &self,
        supervisor: ractor::ActorCell,
    ) -> futures::future::BoxFuture<'static, Result<ractor::ActorCell, ractor::SpawnErr>> {
        let handle = self.0.clone();
        Box::pin(async move {
            let (actor, _) =
                ractor::Actor::spawn_linked(None, SinkPoolActor, handle.pool.clone(), supervisor)
                    .await?;
            if let Ok(mut c) = handle.current.write() {
                *c = Some(actor.clone());
            }
            Ok(actor.get_cell())
        })
    }
}
