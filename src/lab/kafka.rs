//! `MockKafka`: a librdkafka mock cluster (real Kafka protocol on real TCP ports) owned by a
//! dedicated OS thread, since `MockCluster` is neither `Send` nor `Sync`; commands go through a
//! channel. Test and demo support only.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("mock cluster: {0}")]
    Kafka(String),
    #[error("mock cluster thread is gone")]
    Gone,
}

enum Cmd {
    CreateTopic(String, i32, mpsc::Sender<Result<(), MockError>>),
    BrokerDown(i32, mpsc::Sender<Result<(), MockError>>),
    BrokerUp(i32, mpsc::Sender<Result<(), MockError>>),
    Shutdown,
}

/// A running mock cluster. Dropping it shuts the cluster down.
pub struct MockKafka {
    bootstrap: String,
    brokers: i32,
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
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
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    pub fn brokers(&self) -> i32 {
        self.brokers
    }

    fn call(
        &self,
        f: impl FnOnce(mpsc::Sender<Result<(), MockError>>) -> Cmd,
    ) -> Result<(), MockError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(f(tx)).map_err(|_| MockError::Gone)?;
        rx.recv().map_err(|_| MockError::Gone)?
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), MockError> {
        self.call(|tx| Cmd::CreateTopic(topic.to_string(), partitions, tx))
    }

    /// Takes broker `id` down (`-1`: every broker, i.e. the whole cluster).
    pub fn broker_down(&self, id: i32) -> Result<(), MockError> {
        self.call(|tx| Cmd::BrokerDown(id, tx))
    }

    pub fn broker_up(&self, id: i32) -> Result<(), MockError> {
        self.call(|tx| Cmd::BrokerUp(id, tx))
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
