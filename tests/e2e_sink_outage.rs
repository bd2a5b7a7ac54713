//! (a) AWS stops answering for 10 s mid-stream (moto frozen with SIGSTOP, keeping its data, then
//! continued): the DynamoDB breaker opens, partitions pause, the relay's in-flight bytes stay
//! within the memory budget, the breaker closes afterwards, and the final state is exact with
//! nothing in the DLQ.

mod common;

use std::time::{Duration, Instant};

use cdc_relay::config::EnvelopeKind;
use cdc_relay::relay::{self, StartOptions};
use cdc_relay::sinks::breaker::BreakerConfig;
use common::{Env, Plan, dlq_config, sqs};

const BUDGET: usize = 256 * 1024;

fn breaker_state(relay: &cdc_relay::relay::RelayHandle, sink: &str) -> String {
    let st = relay.status().to_json();
    st["sinks"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["sink"] == sink))
        .and_then(|s| s["breaker"].as_str())
        .unwrap_or("?")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_aws_outage_opens_breaker_pauses_and_recovers_exactly() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("outage", EnvelopeKind::Qlik, 300, 1_500, 51))
        .await;
    let q = sqs::client(&env).await;
    let dlq_url = sqs::create_queue(&q, "outage-dlq").await;
    s.cfg.dlq = Some(dlq_config(&dlq_url));
    s.cfg.dynamodb.request_timeout = Duration::from_secs(1);
    s.cfg.dynamodb.breaker = BreakerConfig {
        failures: 3,
        open_for: Duration::from_secs(1),
        ..Default::default()
    };
    s.cfg.runtime.memory_budget_bytes = BUDGET;
    s.cfg.runtime.max_in_flight_bytes_per_partition = BUDGET / 2;
    let largest_record = 4 * 1024;

    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 1_000).await;

    let moto = env.lab.moto.as_ref().unwrap();
    moto.pause().unwrap();
    let stopped = Instant::now();
    let committed_at_stop = env.committed_total(&s);
    // The rest of the stream arrives while AWS is silent, so the relay has work the outage
    // blocks however fast it went before.
    env.produce_more(&mut s, 4_500).await;
    let (mut saw_open, mut max_paused) = (false, 0usize);
    while stopped.elapsed() < Duration::from_secs(10) {
        saw_open |= breaker_state(&relay, "dynamodb:outage") == "open";
        max_paused = max_paused.max(
            relay
                .status()
                .partitions()
                .iter()
                .filter(|p| p.is_paused())
                .count(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let committed_during = env.committed_total(&s);
    moto.resume().unwrap();
    assert!(saw_open, "the breaker opened while AWS was silent");
    assert!(max_paused > 0, "partitions paused instead of buffering");
    assert!(
        committed_during - committed_at_stop < 1_000,
        "little can complete while AWS is stopped ({committed_at_stop} → {committed_during})"
    );

    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    let peak = relay.status().memory.peak();
    assert!(
        peak <= BUDGET + largest_record,
        "in-flight bytes peaked at {peak}, budget {BUDGET}"
    );
    let until = Instant::now() + Duration::from_secs(30);
    while breaker_state(&relay, "dynamodb:outage") != "closed" {
        assert!(Instant::now() < until, "breaker did not close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sqs::depth(&q, &dlq_url).await, 0, "nothing went to the DLQ");
    assert_eq!(common::count(&relay, "dead_lettered"), 0);
    let metrics = common::metrics(&relay).await;
    assert!(
        metrics
            .contains(r#"cdc_relay_circuit_transitions_total{sink="dynamodb:outage",to="open"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cdc_relay_circuit_state{sink="dynamodb:outage"} 0"#),
        "{metrics}"
    );
    eprintln!(
        "outage: peak in-flight {peak} B of {BUDGET} B budget; max paused partitions {max_paused}"
    );
    relay.shutdown().await;
}
