//! The relay: builds every route's outputs through the output registry (one sink pool per target:
//! DynamoDB table, EventBridge bus, blackhole, …), the DLQ's pools (SQS queue, Kafka topic), a
//! decoder per region from a `Config`, starts the supervision tree (root
//! `Supervisor` → pools, `Consumer` → partition actors) and the admin server, and offers graceful
//! shutdown and abort.
//!
//! Wiring only; it must not contain record processing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DlqConfig, Side};
use crate::decode::Decoder;
use crate::decode::registry::{RegistryClient, RegistryError};
use crate::dlq::kafka::KafkaDlqSink;
use crate::dlq::sqs::SqsDlqSink;
use crate::dlq::{DeadLetter, Dlq};
use crate::kafka::consumer::{ConsumerActor, ConsumerArgs, ConsumerMsg};
use crate::partition::{PartitionDeps, RouteOutputs};
use crate::route::Route;
use crate::sinks::Sink;
use crate::sinks::aws::timeouts;
use crate::sinks::pool::{PoolHandle, PoolSettings};
use crate::sinks::wiring::Wiring;
use crate::status::StatusBoard;
use crate::supervision::{ChildSpec, Supervisor, SupervisorArgs, SupervisorMsg};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot start the actor tree: {0}")]
    Spawn(String),
    #[error("cannot find the DLQ queue {name:?}: {error}")]
    DlqQueue { name: String, error: String },
    #[error("cannot create the Kafka DLQ producer: {0}")]
    DlqProducer(String),
    #[error("cannot build the outputs: {0}")]
    Output(String),
    #[error("cannot read the admin token file {path}: {error}")]
    AdminToken { path: String, error: String },
    #[error("cannot bind the admin server on {listen}: {source}")]
    Admin {
        listen: String,
        source: std::io::Error,
    },
}

/// Options that tests and embedders may set; the binary uses the defaults.
#[derive(Default)]
pub struct StartOptions {
    /// Use this SDK config instead of loading one from `config.aws`.
    pub sdk_config: Option<aws_config::SdkConfig>,
    /// Do not start the admin server.
    pub no_admin: bool,
}

struct ConsumerSpec {
    config: Arc<Config>,
    active: Arc<crate::region::Active>,
    /// The decoder of each side (the same one without a registry per region).
    decoders: (Decoder, Decoder),
    deps: Arc<PartitionDeps>,
    status: Arc<StatusBoard>,
    current: Arc<Mutex<Option<ActorRef<ConsumerMsg>>>>,
}

impl ChildSpec for ConsumerSpec {
    fn name(&self) -> String {
        "consumer".into()
    }

    fn spawn(
        &self,
        supervisor: ActorCell,
    ) -> futures::future::BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let side = self.active.side();
        let args = ConsumerArgs {
            config: Arc::clone(&self.config),
            cluster: self.config.cluster(side),
            decoder: match side {
                Side::Primary => self.decoders.0.clone(),
                Side::Secondary => self.decoders.1.clone(),
            },
            start_offsets: self.active.take_start_offsets(),
            deps: Arc::clone(&self.deps),
            status: Arc::clone(&self.status),
        };
        let current = Arc::clone(&self.current);
        Box::pin(async move {
            let (r, _) = Actor::spawn_linked(None, ConsumerActor, args, supervisor).await?;
            if let Ok(mut c) = current.lock() {
                *c = Some(r.clone());
            }
            Ok(r.get_cell())
        })
    }
}

struct FailoverSpec {
    current: Arc<Mutex<Option<ActorRef<crate::region::failover::FailoverMsg>>>>,
    config: Arc<Config>,
    active: Arc<crate::region::Active>,
    status: Arc<StatusBoard>,
    control: Option<Arc<crate::region::control::ControlTable>>,
    consumer: Arc<Mutex<Option<ActorRef<ConsumerMsg>>>>,
    pod: String,
}

impl ChildSpec for FailoverSpec {
    fn name(&self) -> String {
        "region-health".into()
    }

    fn spawn(
        &self,
        supervisor: ActorCell,
    ) -> futures::future::BoxFuture<'static, Result<ActorCell, SpawnErr>> {
        let args = crate::region::failover::FailoverArgs {
            config: Arc::clone(&self.config),
            active: Arc::clone(&self.active),
            status: Arc::clone(&self.status),
            control: self.control.clone(),
            consumer: Arc::clone(&self.consumer),
            pod: self.pod.clone(),
        };
        let current = Arc::clone(&self.current);
        Box::pin(async move {
            let (r, _) = Actor::spawn_linked(
                None,
                crate::region::failover::FailoverActor,
                args,
                supervisor,
            )
            .await?;
            if let Ok(mut c) = current.lock() {
                *c = Some(r.clone());
            }
            Ok(r.get_cell())
        })
    }
}

/// The admin token: `failover.admin_token_file` if set, else the `failover.admin_token_env`
/// variable. Never logged.
fn admin_token(config: &Config) -> Result<Option<String>, RelayError> {
    if let Some(path) = &config.failover.admin_token_file {
        let t = std::fs::read_to_string(path).map_err(|e| RelayError::AdminToken {
            path: path.clone(),
            error: e.to_string(),
        })?;
        return Ok(Some(t.trim().to_string()).filter(|t| !t.is_empty()));
    }
    Ok(std::env::var(&config.failover.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty()))
}

/// This pod's name in the control record: `$HOSTNAME` (the pod name on Kubernetes) or a
/// process-unique fallback.
fn pod_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}-{:08x}", std::process::id(), rand::random::<u32>()))
}

/// A running relay.
pub struct RelayHandle {
    root: ActorRef<SupervisorMsg>,
    join: tokio::task::JoinHandle<()>,
    consumer: Arc<Mutex<Option<ActorRef<ConsumerMsg>>>>,
    status: Arc<StatusBoard>,
    admin_addr: Option<SocketAddr>,
    admin_cancel: CancellationToken,
    escalations: mpsc::UnboundedReceiver<String>,
    shutdown_timeout: Duration,
    /// Fault injection per sink pool, by pool name.
    faults: Vec<(String, Arc<dyn Fn() -> bool + Send + Sync>)>,
}

/// Resolves the DLQ's queue URL (`sqs_queue_url`, or GetQueueUrl of `sqs_queue_name`).
async fn dlq_queue_url(client: &aws_sdk_sqs::Client, d: &DlqConfig) -> Result<String, RelayError> {
    if let Some(url) = &d.sqs_queue_url {
        return Ok(url.clone());
    }
    let name = d.sqs_queue_name.clone().unwrap_or_default();
    let mut last = String::new();
    for attempt in 0..3u32 {
        match client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => {
                if let Some(url) = out.queue_url() {
                    return Ok(url.to_string());
                }
                last = "GetQueueUrl returned no URL".into();
            }
            Err(e) => last = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500) * (attempt + 1)).await;
    }
    Err(RelayError::DlqQueue { name, error: last })
}

/// Starts a relay for `config`.
pub async fn start(config: Config, opts: StartOptions) -> Result<RelayHandle, RelayError> {
    crate::telemetry::metrics::install();
    let config = Arc::new(config);
    let sdk = match opts.sdk_config {
        Some(s) => s,
        None => crate::sinks::aws::sdk_config(&config.aws, config.dynamodb.request_timeout).await,
    };
    let region = config
        .aws
        .region
        .clone()
        .or_else(|| sdk.region().map(ToString::to_string))
        .unwrap_or_else(|| "unknown".into());
    let status = StatusBoard::new();
    let mut wiring = Wiring::new(&config, &sdk, &region, &status);

    // Every route's outputs, in order (DynamoDB table, events, [[routes.outputs]]): one pool per
    // target, shared by the routes writing there.
    let mut routes = HashMap::new();
    for r in &config.routes {
        let outputs =
            crate::sinks::registry::outputs(r, &mut wiring).map_err(RelayError::Output)?;
        routes.insert(
            r.topic.clone(),
            RouteOutputs {
                route: Route::new(r.clone()),
                outputs,
            },
        );
    }

    // DLQ: SQS, and the Kafka topic when configured.
    let dlq = match &config.dlq {
        None => None,
        Some(d) => {
            let client = aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&sdk)
                    .timeout_config(timeouts(d.request_timeout))
                    .build(),
            );
            let url = dlq_queue_url(&client, d).await?;
            let settings = PoolSettings::of(d.concurrency, d.linger, &d.retry, &d.breaker);
            let sink: Arc<dyn Sink<DeadLetter>> =
                Arc::new(SqsDlqSink::new(client, &url, d.max_message_bytes));
            let name = sink.name().to_string();
            let sqs = wiring.pool(&name, || PoolHandle::new(sink, settings.clone()));
            let kafka = match &d.kafka_topic {
                None => None,
                Some(topic) => {
                    let producer = crate::dlq::kafka::producer(
                        d.kafka_bootstrap_servers
                            .as_deref()
                            .unwrap_or(&config.kafka.bootstrap_servers),
                        d.kafka_properties
                            .as_ref()
                            .unwrap_or(&config.kafka.properties),
                    )
                    .map_err(|e| RelayError::DlqProducer(e.to_string()))?;
                    let sink: Arc<dyn Sink<DeadLetter>> =
                        Arc::new(KafkaDlqSink::new(producer, topic, d.request_timeout));
                    let name = sink.name().to_string();
                    Some(wiring.pool(&name, || {
                        PoolHandle::new(
                            sink,
                            PoolSettings {
                                concurrency: 256,
                                linger: Duration::ZERO,
                                ..settings
                            },
                        )
                    }))
                }
            };
            Some(Dlq {
                sqs,
                kafka,
                max_message_bytes: d.max_message_bytes,
            })
        }
    };
    let Wiring {
        children: pool_specs,
        faults,
        ..
    } = wiring;
    let active = Arc::new(crate::region::Active::new(Side::Primary));
    let primary = Decoder::new(RegistryClient::new(&config.registry(Side::Primary))?);
    let decoders = if config.has_regional_registry() {
        let secondary = Decoder::new(RegistryClient::new(&config.registry(Side::Secondary))?);
        (primary, secondary)
    } else {
        (primary.clone(), primary)
    };
    let deps = Arc::new(PartitionDeps {
        routes,
        dlq,
        region: region.clone(),
        status: Arc::clone(&status),
    });
    let failover_ref = Arc::new(Mutex::new(None));
    let admin_cancel = CancellationToken::new();
    let admin_addr = if opts.no_admin {
        None
    } else {
        Some(
            crate::admin::serve(
                &config.admin.listen,
                crate::admin::AdminState {
                    status: Arc::clone(&status),
                    failover: Arc::clone(&failover_ref),
                    token: admin_token(&config)?.map(Arc::from),
                },
                admin_cancel.clone(),
            )
            .await
            .map_err(|source| RelayError::Admin {
                listen: config.admin.listen.clone(),
                source,
            })?,
        )
    };
    let current = Arc::new(Mutex::new(None));
    let (tx, escalations) = mpsc::unbounded_channel();
    // The pools first: partition actors write through them as soon as the consumer runs.
    let mut children = pool_specs;
    if config.regions.is_some() {
        let control = config.failover.control_table.as_ref().map(|t| {
            let client = aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&crate::sinks::aws::dynamodb_sdk(
                    &sdk,
                    &config.dynamodb,
                ))
                .timeout_config(timeouts(config.dynamodb.request_timeout))
                .build(),
            );
            Arc::new(crate::region::control::ControlTable::new(client, t))
        });
        // Before the consumer: a pod that starts while the group runs on the secondary must
        // follow the control record before it consumes anything.
        if let Some(c) = &control
            && let Ok(Some(r)) = c.read(&config.kafka.group_id).await
            && let Some(side) = Side::parse(&r.active_cluster)
        {
            tracing::info!(
                active = side.as_str(),
                epoch = r.epoch,
                "control record says where the group runs"
            );
            active.set(side, HashMap::new());
        }
        children.push(Arc::new(FailoverSpec {
            current: Arc::clone(&failover_ref),
            config: Arc::clone(&config),
            active: Arc::clone(&active),
            status: Arc::clone(&status),
            control,
            consumer: Arc::clone(&current),
            pod: pod_id(),
        }));
    }
    children.push(Arc::new(ConsumerSpec {
        config: Arc::clone(&config),
        active: Arc::clone(&active),
        decoders,
        deps,
        status: Arc::clone(&status),
        current: Arc::clone(&current),
    }));
    let (root, join) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            policy: config.runtime.supervision.clone(),
            children,
            escalate_to: Some(tx),
        },
    )
    .await
    .map_err(|e| RelayError::Spawn(e.to_string()))?;
    Ok(RelayHandle {
        root,
        join,
        consumer: current,
        status,
        admin_addr,
        admin_cancel,
        escalations,
        shutdown_timeout: config.runtime.shutdown_timeout,
        faults,
    })
}

impl RelayHandle {
    pub fn status(&self) -> &Arc<StatusBoard> {
        &self.status
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    fn consumer(&self) -> Option<ActorRef<ConsumerMsg>> {
        self.consumer.lock().ok().and_then(|c| c.clone())
    }

    /// Resolves when the tree escalated past its restart budget (the binary then exits non-zero).
    pub async fn escalated(&mut self) -> Option<String> {
        self.escalations.recv().await
    }

    /// Fault injection for tests and chaos runs: the partition actor of `topic/partition` fails
    /// as if it had hit a bug; supervision restarts it and it resumes from its last completed offset.
    pub fn inject_partition_failure(&self, topic: &str, partition: i32) -> bool {
        self.consumer()
            .map(|c| {
                c.cast(ConsumerMsg::FailPartition((topic.to_string(), partition)))
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// Fault injection for tests and chaos runs: every DynamoDB sink-pool actor fails; their
    /// in-flight writes are retried against the actors their supervisor restarts.
    pub fn inject_sink_pool_failure(&self) -> bool {
        let ddb: Vec<_> = self
            .faults
            .iter()
            .filter(|(name, _)| name.starts_with("dynamodb:"))
            .collect();
        ddb.iter()
            .fold(!ddb.is_empty(), |ok, (_, fail)| fail() && ok)
    }

    /// Drains in-flight records, commits, leaves the group and stops everything.
    pub async fn shutdown(self) {
        if let Some(c) = self.consumer() {
            crate::kafka::consumer::stop(&c, true, self.shutdown_timeout).await;
        }
        self.finish().await;
    }

    /// Stops without committing anything more, like a crash (tests and chaos).
    pub async fn abort(self) {
        if let Some(c) = self.consumer() {
            crate::kafka::consumer::stop(&c, false, self.shutdown_timeout).await;
        }
        self.finish().await;
    }

    async fn finish(self) {
        self.root.stop(None);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.join).await;
        self.admin_cancel.cancel();
    }
}
