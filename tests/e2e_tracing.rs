//! Traces end to end (issue #11): the release binary as a separate process, exporting over OTLP
//! to the in-test receiver (`common::otlp`), with mock Kafka and moto (DynamoDB, EventBridge,
//! SQS). One record produced with a `traceparent` gives one trace through DynamoDB and
//! EventBridge; a poison record, a trace through the DLQ; the `traceparent` the relay sends on
//! (EventBridge `detail`, the SQS message attribute, the DLQ topic's header) carries the
//! record's trace id. An unreachable collector costs nothing: every record lands.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdc_relay::config::{Config, EnvelopeKind, EventBridgeConfig};
use common::otlp::{Received, Receiver, attr, hex};
use common::poison::{self, Poisons};
use common::{Env, Plan, dlq_config, free_port, read_text, registry, sqs};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-relay");

/// `cdc-relay run` as its own process, with `env` set; SIGTERM on `stop`, killed on drop.
struct RelayProcess {
    child: Child,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl RelayProcess {
    fn start(cfg: &Config, env: &[(&str, String)]) -> RelayProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, toml::to_string(cfg).unwrap()).unwrap();
        let stderr = dir.path().join("relay.err");
        let mut cmd = Command::new(BIN);
        cmd.args(["--json-logs", "run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        RelayProcess {
            child: cmd.spawn().unwrap(),
            stderr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        read_text(&self.stderr)
    }

    /// SIGTERM, then waits for a clean exit (the relay drains and flushes its spans).
    async fn stop(mut self) -> String {
        let exited =
            common::signal_and_wait(&mut self.child, "TERM", Duration::from_secs(30)).await;
        let log = self.log();
        let Some((_, status)) = exited else {
            panic!("no exit within 30 s of SIGTERM: {log}");
        };
        assert_eq!(status.code(), Some(0), "{log}");
        log
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spans of trace `trace_id`, by name (one per name expected).
fn by_name<'a>(spans: &'a [Received], trace_id: &str) -> HashMap<String, &'a Received> {
    let mut m = HashMap::new();
    for r in spans.iter().filter(|r| hex(&r.span.trace_id) == trace_id) {
        let prev = m.insert(r.span.name.clone(), r);
        assert!(
            prev.is_none(),
            "two {:?} spans in trace {trace_id}",
            r.span.name
        );
    }
    m
}

fn parent_of(child: &Received, parent: &Received) -> bool {
    child.span.parent_span_id == parent.span.span_id && child.span.trace_id == parent.span.trace_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_a_traced_record_is_one_trace_through_dynamodb_eventbridge_and_the_dlq() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    // 300 untraced generated records, then one good and one poison record with a traceparent.
    let mut s = env
        .scenario(Plan::new("trc", EnvelopeKind::Qlik, 50, 300, 17))
        .await;
    let poisons = Poisons::new(&registry(&env), "cdc.trc-value").await;
    let producer = poison::producer(&env.bootstrap());
    let good_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let good_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let good_id = 777_001i64;
    let good_offset = poison::send(
        &producer,
        &s.topic,
        1,
        &good_id.to_string(),
        &poisons.good(good_id, 1),
        &[("traceparent", good_tp)],
    )
    .await;
    let bad_tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let bad_trace = "0af7651916cd43dd8448eb211c80319c";
    let (bad_payload, bad_reason) = &poisons.kinds[0];
    poison::send(
        &producer,
        &s.topic,
        2,
        "poison-1",
        bad_payload,
        &[("traceparent", bad_tp)],
    )
    .await;

    let (events, events_url) =
        common::bus_to_queue(&env, "bus-trc", "events-trc", "us-west-2").await;
    s.cfg.eventbridge = Some(EventBridgeConfig {
        bus: "bus-trc".into(),
        ..Default::default()
    });
    let dlq = sqs::client(&env).await;
    let dlq_url = sqs::create_queue(&dlq, "dlq-trc").await;
    env.lab.kafka.create_topic("dlq.trc", 1).unwrap();
    s.cfg.dlq = Some(cdc_relay::config::DlqConfig {
        kafka_topic: Some("dlq.trc".into()),
        ..dlq_config(&dlq_url)
    });

    // Parent-based with ratio 0: exactly the records whose producer sampled them are traced.
    let relay = RelayProcess::start(
        &s.cfg,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", "0".into()),
            ("OTEL_SERVICE_NAME", "relay-under-test".into()),
        ],
    );
    env.wait_done(&s).await;
    let log = relay.stop().await;

    // The good record is in DynamoDB; the generated ones exactly as expected.
    let v = cdc_relay::verify::verify(&env.ddb, &s.expected, |_| "trc".into(), "pk")
        .await
        .unwrap();
    assert_eq!((v.matched, v.mismatch_count), (v.expected, 0), "{v:#?}");
    assert_eq!(v.unexpected_items, 1, "the traced good record");

    let spans = receiver
        .wait_for("both traces", |s| {
            let g = by_name(s, good_trace);
            let b = by_name(s, bad_trace);
            g.contains_key("EventBridge.PutEvents") && b.contains_key("SQS.SendMessageBatch")
        })
        .await;

    // Only the two sampled records were traced.
    let processes: Vec<&Received> = spans
        .iter()
        .filter(|r| r.span.name == format!("process {}", s.topic))
        .collect();
    assert_eq!(processes.len(), 2, "only sampled records are traced");

    // --- The good record: process → decode, route, dynamodb.write → DynamoDB.PutItem,
    //     eventbridge.put_events → EventBridge.PutEvents.
    let g = by_name(&spans, good_trace);
    let process = g[&format!("process {}", s.topic)];
    assert_eq!(
        hex(&process.span.parent_span_id),
        "00f067aa0ba902b7",
        "the record's traceparent is the parent"
    );
    assert_eq!(process.span.kind, SpanKind::Consumer as i32);
    let a = &process.span.attributes;
    assert_eq!(attr(a, "messaging.system").as_deref(), Some("kafka"));
    assert_eq!(
        attr(a, "messaging.operation.name").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(a, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(attr(a, "messaging.destination.name"), Some(s.topic.clone()));
    assert_eq!(
        attr(a, "messaging.destination.partition.id").as_deref(),
        Some("1")
    );
    assert_eq!(
        attr(a, "messaging.kafka.offset"),
        Some(good_offset.to_string())
    );
    assert_eq!(
        attr(a, "messaging.consumer.group.name"),
        Some(s.group.clone())
    );
    assert!(attr(a, "messaging.kafka.cluster.id").is_some(), "{a:?}");
    assert_eq!(attr(a, "cdc_relay.outcome").as_deref(), Some("written"));
    assert_eq!(
        attr(&process.resource, "service.name").as_deref(),
        Some("relay-under-test")
    );
    for name in [
        "decode",
        "route",
        "dynamodb.write",
        "eventbridge.put_events",
    ] {
        let child = g
            .get(name)
            .unwrap_or_else(|| panic!("no {name} span in {:?}", g.keys()));
        assert!(parent_of(child, process), "{name} is a child of process");
    }
    let put = g["DynamoDB.PutItem"];
    assert!(parent_of(put, g["dynamodb.write"]));
    assert_eq!(put.span.kind, SpanKind::Client as i32);
    let a = &put.span.attributes;
    assert_eq!(attr(a, "rpc.system").as_deref(), Some("aws-api"));
    assert_eq!(attr(a, "rpc.service").as_deref(), Some("DynamoDB"));
    assert_eq!(attr(a, "rpc.method").as_deref(), Some("PutItem"));
    assert_eq!(attr(a, "db.system.name").as_deref(), Some("aws.dynamodb"));
    assert_eq!(
        attr(a, "aws.dynamodb.table_names").as_deref(),
        Some("[trc]")
    );
    let pe = g["EventBridge.PutEvents"];
    assert!(parent_of(pe, g["eventbridge.put_events"]));
    assert_eq!(
        attr(&pe.span.attributes, "rpc.method").as_deref(),
        Some("PutEvents")
    );
    for r in g.values() {
        let code = r.span.status.as_ref().map_or(0, |s| s.code);
        assert_ne!(code, StatusCode::Error as i32, "{} failed", r.span.name);
    }

    // --- The poison record: process (failed) → decode (failed), dlq.send → SQS.SendMessageBatch
    //     and the DLQ topic's send.
    let b = by_name(&spans, bad_trace);
    let process = b[&format!("process {}", s.topic)];
    assert_eq!(hex(&process.span.parent_span_id), "b7ad6b7169203331");
    assert_eq!(
        process.span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(
        attr(&process.span.attributes, "error.type").as_deref(),
        Some(*bad_reason)
    );
    assert_eq!(
        b["decode"].span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    let dlq_send = b["dlq.send"];
    assert!(parent_of(dlq_send, process));
    assert_eq!(dlq_send.span.kind, SpanKind::Producer as i32);
    assert!(parent_of(b["SQS.SendMessageBatch"], dlq_send));
    assert!(parent_of(b["send dlq.trc"], dlq_send));
    assert!(!b.contains_key("dynamodb.write"), "poison is never written");

    // --- What the relay sent on carries the records' trace ids.
    let msgs = sqs::read_all(&dlq, &dlq_url).await;
    assert_eq!(msgs.len(), 1);
    let tp = sqs::attr(&msgs[0], "traceparent").expect("traceparent attribute");
    assert_eq!(
        tp,
        format!("00-{bad_trace}-{}-01", hex(&dlq_send.span.span_id)),
        "the DLQ message continues the record's trace from dlq.send"
    );
    let dlq_records = common::consume_all(&env, "dlq.trc", 1, Duration::from_secs(30));
    assert_eq!(dlq_records.len(), 1);
    assert_eq!(dlq_records[0].header("traceparent"), Some(tp));
    let good_pk = good_id.to_string();
    let traced_event = sqs::read_all(&events, &events_url)
        .await
        .into_iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap())
        .find(|e| e["detail"]["pk"].as_str() == Some(good_pk.as_str()))
        .expect("the traced record's event");
    let tp = traced_event["detail"]["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with(&format!("00-{good_trace}-")),
        "the event carries the record's trace id: {tp}"
    );
    assert_eq!(
        tp,
        format!(
            "00-{good_trace}-{}-01",
            hex(&process_span_id(&spans, good_trace, &s.topic))
        ),
        "and the relay's process span as parent"
    );

    // JSON logs of the traced poison record carry its trace and span ids.
    let ids = (
        format!("\"trace_id\":\"{bad_trace}\""),
        format!("\"span_id\":\"{}\"", hex(&dlq_send.span.span_id)),
    );
    assert!(
        log.lines().any(|l| l.contains("record written to the DLQ")
            && l.contains(&ids.0)
            && l.contains(&ids.1)),
        "{log}"
    );
}

fn process_span_id(spans: &[Received], trace: &str, topic: &str) -> Vec<u8> {
    spans
        .iter()
        .find(|r| hex(&r.span.trace_id) == trace && r.span.name == format!("process {topic}"))
        .map(|r| r.span.span_id.clone())
        .unwrap()
}

/// With the collector unreachable and every record sampled, the relay drops spans (and counts
/// them) but loses no record: exact final state, offsets committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_an_unreachable_collector_loses_no_record() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("trcdown", EnvelopeKind::Qlik, 200, 3_000, 23))
        .await;
    let admin = free_port();
    s.cfg.admin.listen = format!("127.0.0.1:{admin}");
    // Nothing listens there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let relay = RelayProcess::start(
        &s.cfg,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", dead),
            ("OTEL_TRACES_SAMPLER", "always_on".into()),
        ],
    );
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    // Export was attempted and failed: the spans were dropped and counted.
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let until = Instant::now() + Duration::from_secs(30);
    let dropped = loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let n: f64 = text
            .lines()
            .find(|l| l.starts_with("cdc_relay_spans_dropped_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if n > 0.0 || Instant::now() > until {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(dropped > 0.0, "dropped spans are counted: {}", relay.log());
    relay.stop().await;
}

/// The HTTP/protobuf exporter (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`): records produced
/// with `generate`'s `traceparent` headers arrive as one trace each, parented by the producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_http_protobuf_export_carries_the_producers_traces() {
    let env = Env::start().await;
    let receiver = Receiver::start_http().await;
    let (topic, table, group) = ("cdc.trchttp", "trchttp", "g-trchttp");
    env.topic_and_table(topic, 3, table).await;
    let mut spec = env.spec("cdc.", &[table], EnvelopeKind::Qlik, 20, 40, 5);
    spec.traceparent = true;
    cdc_relay::generate::generate(&spec).await.unwrap();
    let produced = common::consume_all(&env, topic, 3, Duration::from_secs(30));
    let parents: std::collections::BTreeSet<String> = produced
        .iter()
        .map(|r| r.header("traceparent").expect("generate --traceparent"))
        .collect();
    assert_eq!(parents.len(), 40, "a new trace per record");
    let cfg = env.config(
        group,
        topic,
        table,
        EnvelopeKind::Qlik,
        cdc_relay::config::ValueFormat::Avro,
        "",
    );
    let relay = RelayProcess::start(
        &cfg,
        &[
            // The base URL: the exporter appends /v1/traces.
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", receiver.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".into()),
        ],
    );
    let name = format!("process {topic}");
    let spans = receiver
        .wait_for("40 process spans", |s| {
            s.iter().filter(|r| r.span.name == name).count() >= 40
        })
        .await;
    relay.stop().await;
    let got: std::collections::BTreeSet<String> = spans
        .iter()
        .filter(|r| r.span.name == name)
        .map(|r| {
            format!(
                "00-{}-{}-01",
                hex(&r.span.trace_id),
                hex(&r.span.parent_span_id)
            )
        })
        .collect();
    assert_eq!(
        got, parents,
        "each record's span is a child of its producer's"
    );
}
