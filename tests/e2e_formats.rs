//! End-to-end per envelope and value format (mock Kafka + moto): JSON Qlik (`atMSG`), JSON
//! Debezium (`schema`/`payload`), the simple envelope auto-detected, and the hard-delete mode.

mod common;

use cdc_relay::config::{EnvelopeKind, ValueFormat};
use cdc_relay::event::Value;
use cdc_relay::relay::{self, StartOptions};
use common::{Env, Plan, count};

/// Relays 1,200 generated changes per `plan` and checks the exact final state.
async fn run(plan: Plan, hard_delete: bool) {
    let env = Env::start().await;
    let mut s = env.scenario(plan).await;
    assert!(s.report.tombstones > 0);
    if hard_delete {
        // Hard deletes leave nothing behind: the expected state has no tombstones.
        for items in s.expected.tables.values_mut() {
            items.retain(|_, item| item.get("_deleted") != Some(&Value::Bool(true)));
        }
    }
    let r = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    assert_eq!(count(&r, "poison"), 0);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_qlik_json_atmsg() {
    let plan = Plan {
        format: ValueFormat::Json,
        ..Plan::new("qjson", EnvelopeKind::Qlik, 60, 1_200, 7)
    };
    run(plan, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_debezium_json_schema_payload() {
    let plan = Plan {
        format: ValueFormat::Json,
        ..Plan::new("djson", EnvelopeKind::Debezium, 60, 1_200, 7)
    };
    run(plan, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_simple_avro_auto_detected_with_hard_deletes() {
    let plan = Plan {
        route_envelope: Some(EnvelopeKind::Auto),
        route_extra: "delete = \"hard\"",
        ..Plan::new("simple", EnvelopeKind::Simple, 60, 1_200, 8)
    };
    run(plan, true).await;
}
