//! The `Consumer` actor: owns the poll thread for the active cluster (`poll.rs`) and supervises
//! the partition actors (restart with backoff, then the poll thread seeks back to the last
//! completed offset; escalation fails the consumer). It can be torn down and rebuilt against
//! another cluster while the sink pools keep running; `stop` is the one way to stop it and wait.
//!
//! It must not decode records or talk to AWS.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use super::assignment::{Shared, Tp};
use super::flow::Flow;
use super::poll::{Cmd, PollLoop, client_config};
use super::rebalance::RelayContext;
use crate::config::{ClusterConfig, Config};
use crate::decode::Decoder;
use crate::partition::{PartitionActor, PartitionDeps, PartitionMsg};
use crate::status::StatusBoard;
use crate::supervision::{Decision, RestartBudget};

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot create the Kafka consumer: {0}")]
    Create(#[source] rdkafka::error::KafkaError),
    #[error("cannot subscribe: {0}")]
    Subscribe(#[source] rdkafka::error::KafkaError),
    #[error("consumer thread: {0}")]
    Thread(String),
}

/// Messages to the `Consumer` actor.
pub enum ConsumerMsg {
    /// Restart the partition actor of `tp` (sent to itself after the backoff delay).
    RestartPartition(Tp),
    /// Drain, commit, leave the group; reply when done.
    Shutdown(tokio::sync::oneshot::Sender<()>),
    /// Stop without committing anything more (crash simulation for tests and chaos, or leaving a
    /// dead cluster).
    Abort,
    /// Fault injection (tests, chaos): make the partition actor of `tp` fail (its replacement, once
    /// running, when the current one already failed).
    FailPartition(Tp),
}

/// Stops a consumer and waits until it is gone, at most `timeout` plus 5 s. `graceful`: drain,
/// commit and leave the group; otherwise commit nothing more (a crash, or a dead cluster).
pub async fn stop(consumer: &ActorRef<ConsumerMsg>, graceful: bool, timeout: Duration) {
    let until = tokio::time::Instant::now() + timeout + Duration::from_secs(5);
    if graceful {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if consumer.cast(ConsumerMsg::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout_at(until, rx).await;
        }
    } else {
        let _ = consumer.cast(ConsumerMsg::Abort);
    }
    while matches!(
        consumer.get_status(),
        ractor::ActorStatus::Running
            | ractor::ActorStatus::Starting
            | ractor::ActorStatus::Upgrading
    ) && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct ConsumerArgs {
    pub config: Arc<Config>,
    /// The cluster to consume (the active region).
    pub cluster: ClusterConfig,
    /// Decodes with that cluster's region's schema registry.
    pub decoder: Decoder,
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
            decoder: args.decoder,
            cluster: Arc::from(args.cluster.name.as_str()),
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
            held_back: std::cell::Cell::new(false),
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
            budget: {
                crate::supervision::register_restarts("partition:");
                RestartBudget::new(args.config.runtime.supervision.clone())
            },
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
                let args = state.shared.partition_args(&slot.state);
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
                    if matches!(slot.actor.get_status(), ractor::ActorStatus::Running) {
                        let _ = slot
                            .actor
                            .cast(PartitionMsg::Fail(format!("{}/{}", tp.0, tp.1)));
                    } else {
                        // The partition's actor failed and its replacement is not in place yet:
                        // the fault is for the replacement (a cast to the dead one is lost).
                        myself.send_after(Duration::from_millis(20), move || {
                            ConsumerMsg::FailPartition(tp)
                        });
                    }
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
