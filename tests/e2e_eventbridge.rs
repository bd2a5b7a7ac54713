//! (d) EventBridge end to end against moto: a rule on the bus targets an SQS queue; 200 records
//! give exactly 200 events with unique, deterministic `event_id`s and the documented detail. The
//! bus lives in another region than the relay's sinks (cross-region routing).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cdc_relay::config::{EnvelopeKind, EventBridgeConfig};
use cdc_relay::relay::{self, StartOptions};
use common::{Env, Plan, sqs};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_each_record_gives_one_event() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("evd", EnvelopeKind::Qlik, 50, 200, 41))
        .await;
    // The relay's region is us-west-2; the bus (and the queue its rule feeds) are in us-east-1.
    let (q, url) = common::bus_to_queue(&env, "bus-d", "events-d", "us-east-1").await;
    s.cfg.eventbridge = Some(EventBridgeConfig {
        bus: "bus-d".into(),
        region: Some("us-east-1".into()),
        ..Default::default()
    });

    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;
    env.assert_exact(&s).await;

    // Collect deliveries until 200 arrived, then make sure no more come.
    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(90);
    let mut quiet_since = Instant::now();
    while Instant::now() < until {
        let r = q
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in r.messages() {
            events.push(serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap());
            q.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            quiet_since = Instant::now();
        }
        if events.len() >= 200 && quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert_eq!(events.len(), 200, "exactly one event per record");
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200, "event ids are unique");
    for e in &events {
        let d = &e["detail"];
        assert_eq!(e["source"], "cdc-relay");
        let op = d["op"].as_str().unwrap();
        assert!(
            ["INSERT", "UPDATE", "DELETE", "REFRESH"].contains(&op),
            "{d}"
        );
        assert_eq!(e["detail-type"], format!("evd.{op}"));
        assert_eq!(d["table"], "evd");
        assert_eq!(d["region"], "us-west-2");
        let (pk, seq) = (d["pk"].as_str().unwrap(), d["seq"].as_str().unwrap());
        assert_eq!(d["event_id"], format!("evd/{seq}/{pk}"), "deterministic id");
        assert_eq!(seq.len(), 40);
        assert!(
            d["key"]["id"].is_number() || d["key"]["id"].is_string(),
            "{d}"
        );
        match op {
            "DELETE" => assert!(!d["before"].is_null() || !d["after"].is_null(), "{d}"),
            _ => assert!(d["after"].is_object(), "{d}"),
        }
        assert!(d["source"]["offset"].is_i64());
    }
    let metrics = common::metrics(&relay).await;
    assert!(
        metrics.contains(r#"cdc_relay_sink_requests_total{sink="eventbridge:bus-d",result="ok"}"#),
        "{metrics}"
    );
    relay.shutdown().await;
}

/// Optional events: when EventBridge keeps failing, each record's event is retried within the
/// budget, then the record goes to the DLQ (counted) and commits proceed; DynamoDB is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_optional_events_exhaust_to_the_dlq_without_blocking_commits() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("evx", EnvelopeKind::Qlik, 20, 100, 42))
        .await;
    // An endpoint nobody listens on: connection refused, a retryable error.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let q = sqs::client(&env).await;
    let dlq_url = sqs::create_queue(&q, "evx-dlq").await;
    s.cfg.dlq = Some(common::dlq_config(&dlq_url));
    s.cfg.eventbridge = Some(EventBridgeConfig {
        bus: "nowhere".into(),
        endpoint_url: Some(dead_url),
        retry: cdc_relay::sinks::pool::RetryConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            budget: 3,
            ..Default::default()
        },
        ..Default::default()
    });
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    let msgs = sqs::read_all(&q, &dlq_url).await;
    let changes = s.report.records - count_skipped(&relay);
    assert_eq!(
        msgs.len() as u64,
        changes,
        "one DLQ entry per change whose event failed"
    );
    for m in &msgs {
        let reason = sqs::attr(m, "error_reason").unwrap();
        assert!(reason.starts_with("eventbridge_"), "{reason}");
        assert_eq!(sqs::attr(m, "error_class").as_deref(), Some("retryable"));
    }
    let metrics = common::metrics(&relay).await;
    assert!(
        metrics.contains(r#"cdc_relay_sink_exhausted_total{sink="eventbridge:nowhere"}"#),
        "{metrics}"
    );
    relay.shutdown().await;
}

fn count_skipped(relay: &cdc_relay::relay::RelayHandle) -> u64 {
    common::count(relay, "skipped")
}
