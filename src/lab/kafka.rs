//! `MockKafka`: a librdkafka mock cluster (real Kafka protocol on real TCP ports) owned by a
//! dedicated OS thread, since `MockCluster` is neither `Send` nor `Sync`; commands go through a
//! channel. Test and demo support only.

use std::collections::BTreeMap;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// What librdkafka's mock cluster keeps per partition (hard-coded in librdkafka 2.12,
/// `rd_kafka_mock_partition_init`, with no API to raise it): about 5 MiB of record batches and at
/// most 100,000 batches. Beyond that it silently drops the oldest batches and the log start
/// offset moves; `cdc-relay generate` fails when that happens to records it just produced.
pub const PARTITION_RETENTION_BYTES: u64 = 5 * 1024 * 1024;
pub const PARTITION_RETENTION_BATCHES: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock cluster: {0}")]
    Kafka(String),
    #[error("mock cluster thread is gone")]
    Gone,
    #[error("{0}")]
    BadRequest(String),
}

type Reply = mpsc::Sender<Result<(), MockError>>;

enum Cmd {
    CreateTopic(String, i32, Reply),
    BrokerDown(i32, Reply),
    BrokerUp(i32, Reply),
    Leader(String, i32, i32, Reply),
    Coordinator(String, i32, Reply),
    RoundTrip(i32, Duration, Reply),
    PushErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>, Reply),
    ClearErrors(RDKafkaApiKey, Reply),
    Shutdown,
}

/// What was done to the cluster (librdkafka cannot be asked), as the lab's control endpoint
/// reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MockState {
    /// Broker id → up.
    pub brokers: BTreeMap<i32, bool>,
    /// Broker id → added round-trip time in milliseconds.
    pub round_trip_ms: BTreeMap<i32, u64>,
    /// `topic/partition` → leader broker, for leaders moved by hand.
    pub leaders: BTreeMap<String, i32>,
    /// Consumer group → coordinator broker, for coordinators set by hand.
    pub coordinators: BTreeMap<String, i32>,
    /// API → errors pushed (each fails one request of that API, in order; a request may use
    /// them up without this being known here).
    pub injected_errors: BTreeMap<String, Vec<String>>,
}

/// Kafka error codes the lab can inject, by their protocol names.
pub const ERROR_NAMES: &[(&str, RDKafkaRespErr)] = &[
    (
        "NOT_LEADER_OR_FOLLOWER",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    ),
    (
        "LEADER_NOT_AVAILABLE",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
    ),
    (
        "REQUEST_TIMED_OUT",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ),
    (
        "BROKER_NOT_AVAILABLE",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE,
    ),
    (
        "NETWORK_EXCEPTION",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
    ),
    (
        "COORDINATOR_LOAD_IN_PROGRESS",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
    ),
    (
        "COORDINATOR_NOT_AVAILABLE",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
    ),
    (
        "NOT_COORDINATOR",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
    ),
    (
        "NOT_ENOUGH_REPLICAS",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    ),
    (
        "REBALANCE_IN_PROGRESS",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
    ),
    (
        "UNKNOWN_TOPIC_OR_PARTITION",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    ),
    (
        "KAFKA_STORAGE_ERROR",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
    ),
    (
        "THROTTLING_QUOTA_EXCEEDED",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED,
    ),
    // Not a protocol code: the broker drops the connection.
    ("TRANSPORT", RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT),
];

/// APIs whose requests can be made to fail, by their protocol names.
pub const API_NAMES: &[(&str, RDKafkaApiKey)] = &[
    ("Produce", RDKafkaApiKey::Produce),
    ("Fetch", RDKafkaApiKey::Fetch),
    ("ListOffsets", RDKafkaApiKey::ListOffsets),
    ("Metadata", RDKafkaApiKey::Metadata),
    ("OffsetCommit", RDKafkaApiKey::OffsetCommit),
    ("OffsetFetch", RDKafkaApiKey::OffsetFetch),
    ("FindCoordinator", RDKafkaApiKey::FindCoordinator),
    ("JoinGroup", RDKafkaApiKey::JoinGroup),
    ("Heartbeat", RDKafkaApiKey::Heartbeat),
    ("LeaveGroup", RDKafkaApiKey::LeaveGroup),
    ("SyncGroup", RDKafkaApiKey::SyncGroup),
    ("InitProducerId", RDKafkaApiKey::InitProducerId),
];

/// The entry of `table` called `name` (case-insensitive); its canonical name too.
fn named<T: Copy>(
    table: &[(&'static str, T)],
    what: &str,
    name: &str,
) -> Result<(&'static str, T), MockError> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            MockError::BadRequest(format!(
                "unknown {what} {name:?}; one of {}",
                table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// A running mock cluster. Dropping it shuts the cluster down.
pub struct MockKafka {
    bootstrap: String,
    brokers: i32,
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
    state: Mutex<MockState>,
}

impl MockKafka {
    /// Starts a cluster with `brokers` brokers. The group initial-rebalance delay is set to 0 so a
    /// new group's first fetch does not wait 3 s.
    pub fn start(brokers: i32) -> Result<MockKafka, MockError> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let producer: BaseProducer = match ClientConfig::new()
                    .set("test.mock.num.brokers", brokers.to_string())
                    .set("log_level", "3")
                    .create()
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(MockError::Kafka(e.to_string())));
                        return;
                    }
                };
                let Some(cluster) = producer.client().mock_cluster() else {
                    let _ = ready_tx.send(Err(MockError::Kafka(
                        "no mock cluster on the client".into(),
                    )));
                    return;
                };
                // SAFETY: the handle belongs to `producer`, alive for this whole thread.
                unsafe {
                    let mc = rdkafka::bindings::rd_kafka_handle_mock_cluster(
                        producer.client().native_ptr(),
                    );
                    if !mc.is_null() {
                        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(mc, 0);
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let kafka = |r: rdkafka::error::KafkaResult<()>| {
                    r.map_err(|e| MockError::Kafka(e.to_string()))
                };
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Cmd::CreateTopic(t, n, reply) => {
                            let _ = reply.send(kafka(cluster.create_topic(&t, n, 1)));
                        }
                        Cmd::BrokerDown(b, reply) => {
                            let _ = reply.send(kafka(cluster.broker_down(b)));
                        }
                        Cmd::BrokerUp(b, reply) => {
                            let _ = reply.send(kafka(cluster.broker_up(b)));
                        }
                        Cmd::Leader(t, p, b, reply) => {
                            let _ = reply.send(kafka(cluster.partition_leader(&t, p, Some(b))));
                        }
                        Cmd::Coordinator(g, b, reply) => {
                            let _ = reply.send(kafka(
                                cluster.coordinator(rdkafka::mocking::MockCoordinator::Group(g), b),
                            ));
                        }
                        Cmd::RoundTrip(b, d, reply) => {
                            let _ = reply.send(kafka(cluster.broker_round_trip_time(b, d)));
                        }
                        Cmd::PushErrors(api, errors, reply) => {
                            cluster.request_errors(api, &errors);
                            let _ = reply.send(Ok(()));
                        }
                        Cmd::ClearErrors(api, reply) => {
                            cluster.clear_request_errors(api);
                            let _ = reply.send(Ok(()));
                        }
                        Cmd::Shutdown => break,
                    }
                }
                drop(cluster);
                let _ = producer.flush(Duration::from_millis(100));
            })
            .map_err(|e| MockError::Kafka(e.to_string()))?;
        let bootstrap = ready_rx.recv().map_err(|_| MockError::Gone)??;
        Ok(MockKafka {
            bootstrap,
            brokers,
            tx,
            thread: Some(thread),
            state: Mutex::new(MockState {
                brokers: (1..=brokers).map(|b| (b, true)).collect(),
                ..MockState::default()
            }),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn brokers(&self) -> i32 {
        self.brokers
    }

    /// What was done to the cluster so far.
    pub fn state(&self) -> MockState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn note(&self, f: impl FnOnce(&mut MockState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    fn broker(&self, id: i32) -> Result<(), MockError> {
        if (1..=self.brokers).contains(&id) {
            Ok(())
        } else {
            Err(MockError::BadRequest(format!(
                "no broker {id}: brokers are 1..={}",
                self.brokers
            )))
        }
    }

    fn call(&self, f: impl FnOnce(Reply) -> Cmd) -> Result<(), MockError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(f(tx)).map_err(|_| MockError::Gone)?;
        rx.recv().map_err(|_| MockError::Gone)?
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), MockError> {
        self.call(|tx| Cmd::CreateTopic(topic.to_string(), partitions, tx))
    }

    /// Takes broker `id` down (`-1`: every broker, i.e. the whole cluster). Partitions it leads
    /// stall until it is back or their leader is moved (`partition_leader`): the mock elects no
    /// new leaders.
    pub fn broker_down(&self, id: i32) -> Result<(), MockError> {
        self.set_broker(id, false)
    }

    pub fn broker_up(&self, id: i32) -> Result<(), MockError> {
        self.set_broker(id, true)
    }

    fn set_broker(&self, id: i32, up: bool) -> Result<(), MockError> {
        if id != -1 {
            self.broker(id)?;
        }
        self.call(|tx| {
            if up {
                Cmd::BrokerUp(id, tx)
            } else {
                Cmd::BrokerDown(id, tx)
            }
        })?;
        self.note(|s| {
            for (b, state) in s.brokers.iter_mut() {
                if id == -1 || *b == id {
                    *state = up;
                }
            }
        });
        Ok(())
    }

    /// Makes `broker` the leader of `topic/partition` (what a controller does after a broker loss).
    pub fn partition_leader(
        &self,
        topic: &str,
        partition: i32,
        broker: i32,
    ) -> Result<(), MockError> {
        self.broker(broker)?;
        self.call(|tx| Cmd::Leader(topic.to_string(), partition, broker, tx))?;
        self.note(|s| {
            s.leaders.insert(format!("{topic}/{partition}"), broker);
        });
        Ok(())
    }

    /// Makes `broker` the coordinator of consumer group `group` (otherwise the mock picks one by
    /// hashing the group id), so a test can take other brokers down without taking the group's
    /// joins and commits with them.
    pub fn group_coordinator(&self, group: &str, broker: i32) -> Result<(), MockError> {
        self.broker(broker)?;
        self.call(|tx| Cmd::Coordinator(group.to_string(), broker, tx))?;
        self.note(|s| {
            s.coordinators.insert(group.to_string(), broker);
        });
        Ok(())
    }

    /// Adds `rtt` to every request `broker` answers (zero: none).
    pub fn round_trip_time(&self, broker: i32, rtt: Duration) -> Result<(), MockError> {
        self.broker(broker)?;
        self.call(|tx| Cmd::RoundTrip(broker, rtt, tx))?;
        self.note(|s| {
            let ms = u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 {
                s.round_trip_ms.remove(&broker);
            } else {
                s.round_trip_ms.insert(broker, ms);
            }
        });
        Ok(())
    }

    /// Makes the next `count` requests of `api` (protocol name, e.g. `Fetch`) fail with `error`
    /// (protocol name, e.g. `NOT_LEADER_OR_FOLLOWER`; see `ERROR_NAMES`).
    pub fn inject_errors(&self, api: &str, error: &str, count: usize) -> Result<(), MockError> {
        let (name, key) = named(API_NAMES, "API", api)?;
        let (err, code) = named(ERROR_NAMES, "error", error)?;
        if count == 0 || count > 100_000 {
            return Err(MockError::BadRequest("count must be 1..=100000".into()));
        }
        self.call(|tx| Cmd::PushErrors(key, vec![code; count], tx))?;
        self.note(|s| {
            s.injected_errors
                .entry(name.to_string())
                .or_default()
                .extend(std::iter::repeat_n(err.to_string(), count));
        });
        Ok(())
    }

    /// Removes the errors still pending for `api`.
    pub fn clear_errors(&self, api: &str) -> Result<(), MockError> {
        let (name, key) = named(API_NAMES, "API", api)?;
        self.call(|tx| Cmd::ClearErrors(key, tx))?;
        self.note(|s| {
            s.injected_errors.remove(name);
        });
        Ok(())
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
