//! Without a DLQ, each poison kind stops its own partition with the documented error, is never committed
//! past, and the other partitions keep flowing. Real mock Kafka + moto; asserts on DynamoDB state
//! and on the offsets committed in the broker.

mod common;

use std::time::Duration;

use cdc_relay::config::{EnvelopeKind, ValueFormat};
use cdc_relay::decode::registry::RegistryClient;
use cdc_relay::relay::{self, StartOptions};
use common::Env;
use common::poison::{self, Poisons};

const TOPIC: &str = "qlik.poison";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_each_poison_kind_stops_only_its_partition() {
    let env = Env::start().await;
    env.topic_and_table(TOPIC, 6, "poison").await;
    let reg = RegistryClient::new(&cdc_relay::config::RegistryConfig {
        url: Some(env.lab.registry.url()),
        ..Default::default()
    })
    .unwrap();
    let kinds = Poisons::new(&reg, "qlik.poison-value").await;
    // Partition p: 5 good records, the poison at offset 5, 5 good records after it.
    let poisons: Vec<(i32, Vec<u8>, &str)> = kinds
        .kinds
        .iter()
        .enumerate()
        .map(|(p, (payload, reason))| (p as i32, payload.clone(), *reason))
        .collect();
    let producer = poison::producer(&env.bootstrap());
    let send = |p: i32, key: String, payload: Vec<u8>| {
        let producer = producer.clone();
        async move {
            poison::send(&producer, TOPIC, p, &key, &payload, &[]).await;
        }
    };
    let good = |id: i64, seq: u64| kinds.good(id, seq);
    for (p, poison, _) in &poisons {
        for i in 0..11i64 {
            let id = i64::from(*p) * 100 + i;
            let payload = if i == 5 {
                poison.clone()
            } else {
                good(id, 10 + i as u64)
            };
            send(*p, id.to_string(), payload).await;
        }
    }
    for i in 0..11i64 {
        send(5, (500 + i).to_string(), good(500 + i, 10 + i as u64)).await;
    }

    let cfg = env.config(
        "g-e",
        TOPIC,
        "poison",
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "",
    );
    let relay = relay::start(cfg, StartOptions::default()).await.unwrap();
    env.wait_committed("g-e", TOPIC, &[5, 5, 5, 5, 5, 11], Duration::from_secs(120))
        .await;
    // Held: nothing at or after the poison is ever committed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.committed("g-e", TOPIC, 6),
        vec![Some(5), Some(5), Some(5), Some(5), Some(5), Some(11)]
    );

    for (p, _, reason) in &poisons {
        let st = relay
            .status()
            .partition(TOPIC, *p)
            .expect("partition assigned");
        let stop = st
            .stopped()
            .unwrap_or_else(|| panic!("partition {p} must be stopped"));
        assert_eq!(stop.offset, 5, "partition {p}");
        assert_eq!(stop.reason, *reason, "partition {p}: {stop:?}");
        assert_eq!(stop.class, "poison");
    }
    assert!(
        relay
            .status()
            .partition(TOPIC, 5)
            .unwrap()
            .stopped()
            .is_none()
    );

    let items = cdc_relay::verify::scan_table(&env.ddb, "poison", "pk")
        .await
        .unwrap();
    for p in 0..5i64 {
        for i in 0..11i64 {
            let pk = (p * 100 + i).to_string();
            assert_eq!(
                items.contains_key(&pk),
                i < 5,
                "partition {p} offset {i}: written = {}",
                items.contains_key(&pk)
            );
        }
    }
    for i in 0..11 {
        assert!(
            items.contains_key(&(500 + i).to_string()),
            "clean partition record {i} missing"
        );
    }

    // Lag comes from librdkafka statistics (every 2 s): the clean partition has none left.
    let clean = relay.status().partition(TOPIC, 5).unwrap();
    for _ in 0..100 {
        if clean.high_watermark() == Some(11) && clean.lag() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((clean.high_watermark(), clean.lag()), (Some(11), Some(0)));
    let stopped = relay.status().partition(TOPIC, 0).unwrap();
    assert_eq!(
        stopped.lag(),
        Some(6),
        "a stopped partition shows what it holds back"
    );

    // /ready is false and names each stopped partition; /status shows the stop.
    let addr = relay.admin_addr().unwrap();
    let resp = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["not_ready_because"].as_array().unwrap().len(),
        5,
        "{body}"
    );
    let status: serde_json::Value = reqwest::get(format!("http://{addr}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["records"]["poison"], 5, "{status}");
    let metrics = common::metrics(&relay).await;
    assert!(
        metrics.contains("cdc_relay_poison_records_total"),
        "{metrics}"
    );
    relay.shutdown().await;
}
