//! End-to-end per envelope and value format (mock Kafka + moto): JSON Qlik (`atMSG`), JSON
//! Debezium (`schema`/`payload`), simple Avro, and the hard-delete mode.

mod common;

use std::time::Duration;

use cdc_relay::config::{EnvelopeKind, ValueFormat};
use cdc_relay::event::Value;
use cdc_relay::relay::{self, StartOptions};
use common::{Env, assert_exact};

/// Generates 1,200 changes with `envelope`/`format`, relays them through a route declaring
/// `route_envelope`, and checks the exact final state.
async fn run(envelope: EnvelopeKind, route_envelope: EnvelopeKind, format: ValueFormat, extra: &str, hard_delete: bool) {
    let env = Env::start().await;
    env.topic_and_table("fmt.rows", 3, "rows").await;
    let mut spec = env.spec("fmt.", &["rows"], envelope, 60, 1_200, 7);
    spec.format = format;
    let (report, mut expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    assert!(report.tombstones > 0);
    if hard_delete {
        // Hard deletes leave nothing behind: the expected state has no tombstones.
        for items in expected.tables.values_mut() {
            items.retain(|_, item| item.get("_deleted") != Some(&Value::Bool(true)));
        }
    }
    let cfg = env.config("g-f", "fmt.rows", "rows", route_envelope, format, extra);
    let r = relay::start(cfg, StartOptions::default()).await.unwrap();
    let ends = env.end_offsets("fmt.rows", 3);
    env.wait_committed("g-f", "fmt.rows", &ends, Duration::from_secs(120)).await;
    let v = env.verify(&expected, |t| t.to_string()).await;
    assert_exact(&v);
    assert_eq!(r.status().outcomes.to_json()["poison"], 0);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_qlik_json_atmsg() {
    run(EnvelopeKind::Qlik, EnvelopeKind::Qlik, ValueFormat::Json, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_debezium_json_schema_payload() {
    run(EnvelopeKind::Debezium, EnvelopeKind::Debezium, ValueFormat::Json, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_simple_avro_auto_detected_with_hard_deletes() {
    run(EnvelopeKind::Simple, EnvelopeKind::Auto, ValueFormat::Avro, "delete = \"hard\"", true).await;
}
