//! The relay: builds the sinks, decoder and routes from a `Config`, starts the supervision tree
//! (root `Supervisor` → `Consumer` → partition actors) and the admin server, and offers graceful
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

use crate::config::Config;
use crate::decode::Decoder;
use crate::decode::registry::{RegistryClient, RegistryError};
use crate::kafka::consumer::{ConsumerActor, ConsumerArgs, ConsumerMsg};
use crate::partition::PartitionDeps;
use crate::route::Route;
use crate::sinks::Sink;
use crate::sinks::dynamodb::DynamoDbSink;
use crate::sinks::pool::{PoolHandle, PoolSettings, PoolSpec, SinkPool};
use crate::status::StatusBoard;
use crate::supervision::{ChildSpec, Supervisor, SupervisorArgs, SupervisorMsg};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot start the actor tree: {0}")]
    Spawn(String),
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
        let args = ConsumerArgs {
            config: Arc::clone(&self.config),
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
    dynamodb_pool: PoolHandle,
}

/// Starts a relay for `config`.
pub async fn start(config: Config, opts: StartOptions) -> Result<RelayHandle, RelayError> {
    crate::telemetry::metrics::install();
    let config = Arc::new(config);
    let sdk = match opts.sdk_config {
        Some(s) => s,
        None => crate::sinks::aws::sdk_config(&config.aws, config.dynamodb.request_timeout).await,
    };
    let dynamodb: Arc<dyn Sink> = Arc::new(DynamoDbSink::new(&sdk));
    let pool = SinkPool::new(
        dynamodb,
        PoolSettings {
            concurrency: config.dynamodb.concurrency,
            backoff_initial: config.dynamodb.backoff_initial,
            backoff_max: config.dynamodb.backoff_max,
            misconfig_backoff: Duration::from_secs(5),
        },
    );
    let status = StatusBoard::new();
    status.add_sink("dynamodb", Arc::clone(pool.health()));
    let dynamodb_pool = PoolHandle::new(pool);
    let deps = Arc::new(PartitionDeps {
        decoder: Decoder::new(RegistryClient::new(&config.schema_registry)?),
        routes: config
            .routes
            .iter()
            .map(|r| (r.topic.clone(), Route::new(r.clone())))
            .collect::<HashMap<_, _>>(),
        dynamodb: dynamodb_pool.clone(),
        max_item_bytes: config.dynamodb.max_item_bytes,
        status: Arc::clone(&status),
    });
    let admin_cancel = CancellationToken::new();
    let admin_addr = if opts.no_admin {
        None
    } else {
        Some(
            crate::admin::serve(
                &config.admin.listen,
                Arc::clone(&status),
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
    let (root, join) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            policy: config.runtime.supervision.clone(),
            // The pool first: partition actors write through it as soon as the consumer runs.
            children: vec![
                Arc::new(PoolSpec(dynamodb_pool.clone())),
                Arc::new(ConsumerSpec {
                    config: Arc::clone(&config),
                    deps,
                    status: Arc::clone(&status),
                    current: Arc::clone(&current),
                }),
            ],
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
        dynamodb_pool,
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

    /// Fault injection for tests and chaos runs: the DynamoDB sink-pool actor fails; its in-flight
    /// writes are retried against the actor its supervisor restarts.
    pub fn inject_sink_pool_failure(&self) -> bool {
        self.dynamodb_pool.inject_failure()
    }

    /// Drains in-flight records, commits, leaves the group and stops everything.
    pub async fn shutdown(self) {
        if let Some(c) = self.consumer() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if c.cast(ConsumerMsg::Shutdown(tx)).is_ok() {
                let _ =
                    tokio::time::timeout(self.shutdown_timeout + Duration::from_secs(5), rx).await;
            }
        }
        self.finish().await;
    }

    /// Stops without committing anything more, like a crash (tests and chaos).
    pub async fn abort(self) {
        if let Some(c) = self.consumer() {
            let _ = c.cast(ConsumerMsg::Abort);
            for _ in 0..200 {
                if !matches!(
                    c.get_status(),
                    ractor::ActorStatus::Running
                        | ractor::ActorStatus::Starting
                        | ractor::ActorStatus::Upgrading
                ) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.finish().await;
    }

    async fn finish(self) {
        self.root.stop(None);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.join).await;
        self.admin_cancel.cancel();
    }
}
