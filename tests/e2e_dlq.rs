//! DLQ end to end (issue #3 acceptance b, c, e), against the mock Kafka cluster and moto's SQS:
//! poison records land in SQS with their attributes and offsets commit past them; an unavailable
//! DLQ holds the partition; `dlq inspect|replay` moves records back and empties the queue.

mod common;

use std::time::{Duration, Instant};

use cdc_relay::config::EnvelopeKind;
use cdc_relay::dlq::DlqBody;
use cdc_relay::relay::{self, StartOptions};
use common::poison::{self, Poisons};
use common::{Env, PARTITIONS, Plan, count, dlq_config, registry, sqs};

/// (b) Every poison kind among 10k good records: each poison record is in SQS with the right
/// attributes and original bytes, every good record is in DynamoDB, offsets commit past the poison.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_poison_goes_to_dlq_and_commits_past() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("dlqb", EnvelopeKind::Qlik, 500, 10_000, 31))
        .await;
    let poisons = Poisons::new(&registry(&env), "cdc.dlqb-value").await;
    let producer = poison::producer(&env.bootstrap());
    // The poison records, then good records behind them on every partition.
    let mut sent = Vec::new();
    for (i, (payload, reason)) in poisons.kinds.iter().enumerate() {
        let p = i as i32 % PARTITIONS;
        let key = format!("poison-{i}");
        let tp = format!("00-{:032x}-{:016x}-01", i + 1, i + 1);
        let headers: Vec<(&str, &str)> = if i == 0 {
            vec![("traceparent", tp.as_str())]
        } else {
            vec![]
        };
        let offset = poison::send(&producer, &s.topic, p, &key, payload, &headers).await;
        sent.push((
            p,
            offset,
            key,
            payload.clone(),
            *reason,
            (i == 0).then_some(tp),
        ));
    }
    let mut tail = 0;
    for p in 0..PARTITIONS {
        for i in 0..10i64 {
            let id = 900_000 + i64::from(p) * 100 + i;
            poison::send(
                &producer,
                &s.topic,
                p,
                &id.to_string(),
                &poisons.good(id, 1),
                &[],
            )
            .await;
            tail += 1;
        }
    }
    let sqs = sqs::client(&env).await;
    let url = sqs::create_queue(&sqs, "dlqb").await;
    env.lab.kafka.create_topic("dlq.b", 1).unwrap();
    s.cfg.dlq = Some(cdc_relay::config::DlqConfig {
        kafka_topic: Some("dlq.b".into()),
        ..dlq_config(&url)
    });

    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;

    // Every good record is in DynamoDB, exactly; no poison record is.
    let v = cdc_relay::verify::verify(&env.ddb, &s.expected, |_| "dlqb".into(), "pk")
        .await
        .unwrap();
    assert_eq!((v.matched, v.mismatch_count), (v.expected, 0), "{v:#?}");
    assert_eq!(v.unexpected_items, tail, "only the tail records are extra");
    let items = cdc_relay::verify::scan_table(&env.ddb, "dlqb", "pk")
        .await
        .unwrap();
    assert!(
        !items.contains_key("4999"),
        "the oversize item is not written"
    );

    // Every poison record is in SQS with its attributes and original bytes.
    let msgs = sqs::read_all(&sqs, &url).await;
    assert_eq!(
        msgs.len(),
        poisons.kinds.len(),
        "one DLQ message per poison record"
    );
    for (p, offset, key, payload, reason, tp) in &sent {
        let m = msgs
            .iter()
            .find(|m| {
                sqs::attr(m, "offset") == Some(offset.to_string())
                    && sqs::attr(m, "partition") == Some(p.to_string())
            })
            .unwrap_or_else(|| panic!("no DLQ message for {p}@{offset} ({reason})"));
        assert_eq!(sqs::attr(m, "topic").as_deref(), Some(s.topic.as_str()));
        assert_eq!(sqs::attr(m, "key").as_deref(), Some(key.as_str()));
        assert_eq!(sqs::attr(m, "error_class").as_deref(), Some("poison"));
        assert_eq!(sqs::attr(m, "error_reason").as_deref(), Some(*reason));
        assert!(sqs::attr(m, "error_text").is_some_and(|t| !t.is_empty()));
        assert_eq!(sqs::attr(m, "region").as_deref(), Some("us-west-2"));
        assert_eq!(sqs::attr(m, "traceparent"), *tp);
        let body: DlqBody = serde_json::from_str(m.body().unwrap()).unwrap();
        assert_eq!((body.partition, body.offset), (*p, *offset));
        assert_eq!(body.key(), Some(key.as_bytes().to_vec()));
        assert_eq!(body.value_bytes, payload.len());
        if *reason == "item_too_large" {
            // 500 KB does not fit an SQS message: located, not copied.
            assert!(body.value_omitted && body.value_b64.is_none());
        } else {
            assert_eq!(
                body.value().as_ref(),
                Some(payload),
                "{reason}: original bytes"
            );
        }
        if *reason == "missing_key" {
            assert!(body.error.message.contains("id"), "{}", body.error.message);
        }
    }
    assert_eq!(count(&relay, "dead_lettered"), poisons.kinds.len() as u64);
    assert_eq!(count(&relay, "poison"), 0, "no partition stopped");

    // The Kafka DLQ topic holds the original records with dlq.* headers.
    let dlq_topic = common::consume_all(&env, "dlq.b", 1, Duration::from_secs(20));
    assert_eq!(
        dlq_topic.len(),
        sent.len(),
        "one Kafka DLQ record per poison record"
    );
    for (p, offset, key, payload, reason, _) in &sent {
        let r = dlq_topic
            .iter()
            .find(|r| {
                r.header("dlq.source.offset") == Some(offset.to_string())
                    && r.header("dlq.source.partition") == Some(p.to_string())
            })
            .unwrap_or_else(|| panic!("no Kafka DLQ record for {p}@{offset}"));
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(r.value.as_ref(), Some(payload), "{reason}: original bytes");
        assert_eq!(r.header("dlq.error.reason").as_deref(), Some(*reason));
        assert_eq!(
            r.header("dlq.source.topic").as_deref(),
            Some(s.topic.as_str())
        );
    }
    let addr = relay.admin_addr().unwrap();
    let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = common::metrics(&relay).await;
    assert!(metrics.contains("cdc_relay_dlq_records_total"), "{metrics}");
    relay.shutdown().await;
}

/// (c) The DLQ queue is gone and a poison record arrives: nothing at or after it is committed;
/// once the queue is back, everything completes and the record is in the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_dlq_unavailable_holds_the_partition() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("dlqc", EnvelopeKind::Qlik, 30, 300, 32))
        .await;
    let poisons = Poisons::new(&registry(&env), "cdc.dlqc-value").await;
    let producer = poison::producer(&env.bootstrap());
    let (bad, _) = &poisons.kinds[0];
    let poison_at = poison::send(&producer, &s.topic, 0, "bad", bad, &[]).await;
    for i in 0..5 {
        let id = 800_000 + i;
        poison::send(
            &producer,
            &s.topic,
            0,
            &id.to_string(),
            &poisons.good(id, 1),
            &[],
        )
        .await;
    }
    let sqs = sqs::client(&env).await;
    let url = sqs::create_queue(&sqs, "dlqc").await;
    sqs.delete_queue().queue_url(&url).send().await.unwrap();
    s.cfg.dlq = Some(dlq_config(&url));

    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let ends = env.end_offsets(&s.topic, PARTITIONS);
    // The other partitions finish; partition 0 holds at the poison record.
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let c = env.committed(&s.group, &s.topic, PARTITIONS);
        assert!(
            c[0].unwrap_or(0) <= poison_at,
            "committed past the undelivered poison: {c:?}"
        );
        if c[1] == Some(ends[1]) && c[2] == Some(ends[2]) && c[0] == Some(poison_at) {
            break;
        }
        assert!(Instant::now() < until, "no progress: {c:?} vs {ends:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..20 {
        let c = env.committed(&s.group, &s.topic, PARTITIONS);
        assert_eq!(c[0], Some(poison_at), "held at the poison record");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let addr = relay.admin_addr().unwrap();
    let ready = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "a missing DLQ queue is reported"
    );

    // The queue comes back (same name, same URL): everything completes.
    let url2 = sqs::create_queue(&sqs, "dlqc").await;
    assert_eq!(url2, url);
    env.wait_done(&s).await;
    let msgs = sqs::read_all(&sqs, &url).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(sqs::attr(&msgs[0], "offset"), Some(poison_at.to_string()));
    assert_eq!(
        sqs::attr(&msgs[0], "error_reason").as_deref(),
        Some("bad_magic")
    );
    let v = cdc_relay::verify::verify(&env.ddb, &s.expected, |_| "dlqc".into(), "pk")
        .await
        .unwrap();
    assert_eq!(
        (v.matched, v.mismatch_count, v.unexpected_items),
        (v.expected, 0, 5),
        "{v:#?}"
    );
    relay.shutdown().await;
}

/// (e) Records dead-lettered for an unknown schema id are replayed after the schema is
/// registered — to the source topic and through the sinks — and the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_dlq_replay_moves_records_back_and_empties_the_queue() {
    let env = Env::start().await;
    let topic = "qlik.replay";
    env.topic_and_table(topic, 1, "replay").await;
    let reg = registry(&env);
    let poisons = Poisons::new(&reg, "qlik.replay-value").await;
    // A schema the registry does not know yet: the next id it will assign.
    let mut v2: serde_json::Value = serde_json::from_str(&poison::schema(true)).unwrap();
    v2["fields"][0]["type"][1]["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "email", "type": ["null", "string"], "default": null}));
    let v2_text = v2.to_string();
    let v2_schema = apache_avro::Schema::parse_str(&v2_text).unwrap();
    // The fixture assigns ids in order; the keyless schema was the last one registered.
    let next_id = reg
        .register("probe-subject", &poison::schema(false))
        .await
        .unwrap()
        + 1;
    let fixable = |id: i64| {
        let apache_avro::types::Value::Record(mut fields) = poison::record(true, id, "fixed", 5)
        else {
            unreachable!()
        };
        if let apache_avro::types::Value::Union(1, row) = &mut fields[0].1
            && let apache_avro::types::Value::Record(cols) = row.as_mut()
        {
            cols.push((
                "email".into(),
                apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
            ));
        }
        cdc_relay::decode::avro::frame_wire(
            next_id,
            &cdc_relay::decode::avro::encode_datum(
                &v2_schema,
                apache_avro::types::Value::Record(fields),
            )
            .unwrap(),
        )
    };
    let producer = poison::producer(&env.bootstrap());
    for id in 1..=3 {
        poison::send(
            &producer,
            topic,
            0,
            &id.to_string(),
            &poisons.good(id, 1),
            &[("origin", "test")],
        )
        .await;
    }
    for id in [777, 778] {
        poison::send(
            &producer,
            topic,
            0,
            &id.to_string(),
            &fixable(id),
            &[("origin", "test")],
        )
        .await;
    }
    poison::send(&producer, topic, 0, "4", &poisons.good(4, 1), &[]).await;

    let sqs = sqs::client(&env).await;
    let url = sqs::create_queue(&sqs, "replay-dlq").await;
    let mut cfg = env.config(
        "g-replay",
        topic,
        "replay",
        EnvelopeKind::Qlik,
        cdc_relay::config::ValueFormat::Avro,
        "",
    );
    cfg.schema_registry.max_attempts = 2;
    cfg.dlq = Some(dlq_config(&url));
    let relay = relay::start(cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_committed("g-replay", topic, &[6], Duration::from_secs(120))
        .await;
    assert_eq!(sqs::depth(&sqs, &url).await, 2);
    let items = cdc_relay::verify::scan_table(&env.ddb, "replay", "pk")
        .await
        .unwrap();
    assert!(items.contains_key("4") && !items.contains_key("777"));

    // The CLI, as an operator runs it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdc-relay"))
            .args(args)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cli(&["dlq", "inspect"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("qlik.replay/0@3") && out.contains("qlik.replay/0@4"),
        "{out}"
    );
    assert!(out.contains("poison/unknown_schema_id"), "{out}");
    assert_eq!(sqs::depth(&sqs, &url).await, 2, "inspect consumes nothing");

    let (code, out, err) = cli(&["dlq", "replay", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (report["read"].as_u64(), report["deleted"].as_u64()),
        (Some(2), Some(0)),
        "{out}"
    );
    assert_eq!(sqs::depth(&sqs, &url).await, 2, "a dry run deletes nothing");

    // Still unknown: replay through the sinks fails and keeps the message.
    let (code, out, _) = cli(&["dlq", "replay", "--to-sinks", "--max", "1"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        sqs::depth(&sqs, &url).await,
        2,
        "a failed replay keeps the message"
    );

    // The fix: register the schema. Then one record back to its topic, one through the sinks.
    assert_eq!(
        reg.register("qlik.replay-value", &v2_text).await.unwrap(),
        next_id
    );
    let (code, out, err) = cli(&["dlq", "replay", "--max", "1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(sqs::depth(&sqs, &url).await, 1);
    let (code, out, err) = cli(&["dlq", "replay", "--to-sinks"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["deleted"].as_u64(), Some(1), "{out}");
    assert_eq!(sqs::depth(&sqs, &url).await, 0, "the queue is empty");

    // The relay consumed the re-produced record; the other was written directly.
    env.wait_committed("g-replay", topic, &[7], Duration::from_secs(60))
        .await;
    let items = cdc_relay::verify::scan_table(&env.ddb, "replay", "pk")
        .await
        .unwrap();
    for id in ["1", "2", "3", "4", "777", "778"] {
        assert!(items.contains_key(id), "{id} missing after replay");
    }
    assert_eq!(count(&relay, "dead_lettered"), 2);
    relay.shutdown().await;
}
