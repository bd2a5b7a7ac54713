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
    let spec = env.spec("qlik.", &["customers"], EnvelopeKind::Qlik, 500, 20_000, 1);
    let (report, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    assert_eq!(report.records, 20_000);
    assert!(
        report.tombstones > 0,
        "the mix must produce tombstones: {report:?}"
    );
    let cfg = env.config(
        "g-a",
        "qlik.customers",
        "customers",
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "",
    );
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

fn count(relay: &relay::RelayHandle, what: &str) -> u64 {
    relay.status().outcomes.to_json()[what]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_progress(env: &Env, group: &str, topic: &str, partitions: i32, at_least: i64) {
    for _ in 0..1200 {
        let done: i64 = env
            .committed(group, topic, partitions)
            .iter()
            .map(|c| c.unwrap_or(0))
            .sum();
        if done >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no progress to {at_least} committed records");
}

/// (b) Abort the whole relay mid-stream, start it again: exact state; replays are stale, not writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_crash_restart_is_exact() {
    let env = Env::start().await;
    env.topic_and_table("qlik.orders", 3, "orders").await;
    let spec = env.spec("qlik.", &["orders"], EnvelopeKind::Qlik, 300, 6_000, 2);
    let (_, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    // A slow commit interval guarantees completed-but-uncommitted records at the crash.
    let mut cfg = env.config(
        "g-b",
        "qlik.orders",
        "orders",
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "",
    );
    cfg.kafka.commit_interval = Duration::from_secs(2);
    let r1 = relay::start(cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    wait_progress(&env, "g-b", "qlik.orders", 3, 1_500).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let committed_at_crash: i64 = env
        .committed("g-b", "qlik.orders", 3)
        .iter()
        .map(|c| c.unwrap_or(0))
        .sum();
    let written1 = count(&r1, "written");
    r1.abort().await;
    assert!(
        committed_at_crash < 6_000,
        "the crash must happen mid-stream"
    );

    let r2 = relay::start(
        env.config(
            "g-b",
            "qlik.orders",
            "orders",
            EnvelopeKind::Qlik,
            ValueFormat::Avro,
            "",
        ),
        StartOptions::default(),
    )
    .await
    .unwrap();
    let ends = env.end_offsets("qlik.orders", 3);
    env.wait_committed("g-b", "qlik.orders", &ends, T).await;
    assert_exact(&env.verify(&expected, |t| t.to_string()).await);
    let (written2, stale2) = (count(&r2, "written"), count(&r2, "stale"));
    // Everything after the committed position is seen again; what run 1 had already applied is stale.
    assert_eq!(
        written2 + stale2 + count(&r2, "skipped"),
        (6_000 - committed_at_crash) as u64
    );
    assert!(
        stale2 > 0,
        "records applied before the crash must replay as stale (written1={written1})"
    );
    assert!(
        written1 + written2 <= 6_000,
        "a record was written twice: {written1} + {written2}"
    );
    r2.shutdown().await;
}

/// (c) Reset the group to offset 0 and replay everything: no item changes, no `_seq` regresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_replay_from_zero_never_regresses() {
    let env = Env::start().await;
    env.topic_and_table("dbz.accounts", 3, "accounts").await;
    let spec = env.spec("dbz.", &["accounts"], EnvelopeKind::Debezium, 200, 4_000, 3);
    let (_, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    let cfg = env.config(
        "g-c",
        "dbz.accounts",
        "accounts",
        EnvelopeKind::Debezium,
        ValueFormat::Avro,
        "",
    );
    let r1 = relay::start(cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let ends = env.end_offsets("dbz.accounts", 3);
    env.wait_committed("g-c", "dbz.accounts", &ends, T).await;
    r1.shutdown().await;
    assert_exact(&env.verify(&expected, |t| t.to_string()).await);
    let snapshot = cdc_relay::verify::scan_table(&env.ddb, "accounts", "pk")
        .await
        .unwrap();

    env.reset_group("g-c", "dbz.accounts", 3, 0);
    let r2 = relay::start(cfg, StartOptions::default()).await.unwrap();
    let mut samples = 0;
    let mut last = snapshot.clone();
    loop {
        let now = cdc_relay::verify::scan_table(&env.ddb, "accounts", "pk")
            .await
            .unwrap();
        for (pk, item) in &now {
            let seq = &item["_seq"];
            let before = &last[pk]["_seq"];
            assert!(
                seq.key_text() >= before.key_text(),
                "_seq of {pk} went backwards during replay: {before:?} -> {seq:?}"
            );
        }
        assert_eq!(
            now, snapshot,
            "an item changed during a replay of already-applied records"
        );
        last = now;
        samples += 1;
        let c = env.committed("g-c", "dbz.accounts", 3);
        if c.iter().zip(&ends).all(|(c, e)| *c == Some(*e))
            && count(&r2, "stale") + count(&r2, "skipped") == 4_000
        {
            break;
        }
        assert!(samples < 2_000, "replay did not finish");

        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        samples >= 3,
        "the replay must be sampled while it runs ({samples} samples)"
    );
    assert_eq!(
        count(&r2, "written"),
        0,
        "a replay of applied records must not write"
    );
    r2.shutdown().await;
}

/// (d) Two relays in one group; one stops mid-stream; the other takes over; exact state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_two_instances_rebalance() {
    let env = Env::start().await;
    env.topic_and_table("qlik.items", 3, "items").await;
    let spec = env.spec("qlik.", &["items"], EnvelopeKind::Qlik, 300, 6_000, 4);
    let (_, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    let cfg = env.config(
        "g-d",
        "qlik.items",
        "items",
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "",
    );
    let a = relay::start(cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let b = relay::start(cfg, StartOptions::default()).await.unwrap();
    // Both must own partitions before one leaves.
    for _ in 0..300 {
        if !a.status().partitions().is_empty() && !b.status().partitions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !a.status().partitions().is_empty() && !b.status().partitions().is_empty(),
        "the group must split the partitions"
    );
    wait_progress(&env, "g-d", "qlik.items", 3, 1_500).await;
    b.shutdown().await;
    let done: i64 = env
        .committed("g-d", "qlik.items", 3)
        .iter()
        .map(|c| c.unwrap_or(0))
        .sum();
    assert!(
        done < 6_000,
        "the instance must stop mid-stream ({done} committed)"
    );
    let ends = env.end_offsets("qlik.items", 3);
    env.wait_committed("g-d", "qlik.items", &ends, T).await;
    assert_eq!(
        a.status().partitions().len(),
        3,
        "the survivor owns every partition"
    );
    assert_exact(&env.verify(&expected, |t| t.to_string()).await);
    a.shutdown().await;
}

/// A partition actor that fails mid-stream is restarted by its supervisor, seeks back to its last
/// completed offset, and the final state is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_failed_partition_actor_restarts_and_resumes() {
    let env = Env::start().await;
    env.topic_and_table("qlik.restart", 3, "restart").await;
    let spec = env.spec("qlik.", &["restart"], EnvelopeKind::Qlik, 200, 4_000, 5);
    let (_, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    let cfg = env.config(
        "g-r",
        "qlik.restart",
        "restart",
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "",
    );
    let r = relay::start(cfg, StartOptions::default()).await.unwrap();
    wait_progress(&env, "g-r", "qlik.restart", 3, 500).await;
    for p in 0..3 {
        assert!(r.inject_partition_failure("qlik.restart", p));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second failure of partition 0 within the restart period is still within the budget.
    assert!(r.inject_partition_failure("qlik.restart", 0));
    let ends = env.end_offsets("qlik.restart", 3);
    env.wait_committed("g-r", "qlik.restart", &ends, T).await;
    assert_exact(&env.verify(&expected, |t| t.to_string()).await);
    let metrics = cdc_relay::telemetry::metrics::render();
    let restarts: f64 = metrics
        .lines()
        .find(|l| l.starts_with("cdc_relay_actor_restarts_total{actor=\"partition\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        restarts >= 4.0,
        "expected ≥ 4 partition restarts, metrics say {restarts}"
    );
    assert_eq!(r.status().partitions().len(), 3);
    assert!(r.status().readiness().0, "{:?}", r.status().readiness().1);
    r.shutdown().await;
}

/// A missing table is a misconfiguration: nothing is committed or dropped, `/ready` is false and
/// names the sink; once the table exists everything lands exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_missing_table_holds_then_recovers() {
    let env = Env::start().await;
    env.lab.kafka.create_topic("qlik.late", 3).unwrap();
    let spec = env.spec("qlik.", &["late"], EnvelopeKind::Qlik, 50, 300, 6);
    let (_, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    let cfg = env.config(
        "g-m",
        "qlik.late",
        "late",
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "",
    );
    let r = relay::start(cfg, StartOptions::default()).await.unwrap();
    let mut not_ready = None;
    for _ in 0..100 {
        let (ready, why) = r.status().readiness();
        if !ready
            && why
                .iter()
                .any(|w| w.contains("misconfigured") && w.contains("ResourceNotFound"))
        {
            not_ready = Some(why);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        not_ready.is_some(),
        "/ready must report the missing table: {:?}",
        r.status().readiness()
    );
    assert!(
        env.committed("g-m", "qlik.late", 3)
            .iter()
            .all(|c| c.unwrap_or(0) == 0),
        "nothing may be committed"
    );
    cdc_relay::lab::create_table(&env.ddb, "late", "pk")
        .await
        .unwrap();
    let ends = env.end_offsets("qlik.late", 3);
    env.wait_committed("g-m", "qlik.late", &ends, T).await;
    assert_exact(&env.verify(&expected, |t| t.to_string()).await);
    assert!(
        r.status().readiness().0,
        "ready again: {:?}",
        r.status().readiness().1
    );
    r.shutdown().await;
}
