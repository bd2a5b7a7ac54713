//! End-to-end delivery contract against real components: librdkafka's mock cluster (3 brokers,
//! real Kafka protocol) and moto (real DynamoDB API). Asserts on the final DynamoDB state.

mod common;

use std::time::Duration;

use cdc_relay::config::{EnvelopeKind, ValueFormat};
use cdc_relay::relay::{self, StartOptions};
use common::{Env, assert_exact};

const T: Duration = Duration::from_secs(180);

/// (a) 20k mixed records for 500 keys over 3 partitions → exact final state, tombstones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_exact_final_state() {
    let env = Env::start().await;
    env.topic_and_table("qlik.customers", 3, "customers").await;
    let spec = env.spec("qlik.", &["customers"], EnvelopeKind::Qlik, ValueFormat::Avro, 500, 20_000, 1);
    let (report, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    assert_eq!(report.records, 20_000);
    assert!(report.tombstones > 0, "the mix must produce tombstones: {report:?}");
    let cfg = env.config("g-a", "qlik.customers", "customers", EnvelopeKind::Qlik, ValueFormat::Avro, "");
    let relay = relay::start(cfg, StartOptions::default()).await.unwrap();
    let ends = env.end_offsets("qlik.customers", 3);
    assert_eq!(ends.iter().sum::<i64>(), 20_000);
    env.wait_committed("g-a", "qlik.customers", &ends, T).await;
    let v = env.verify(&expected, |t| t.to_string()).await;
    assert_exact(&v);
    assert_eq!(v.matched, 500);
    let o = relay.status().outcomes.to_json();
    assert_eq!(o["poison"], 0, "{o}");
    relay.shutdown().await;
}
