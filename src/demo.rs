//! `cdc-relay demo`: the whole pipeline on embedded defaults. Starts the lab (3-broker mock Kafka,
//! registry fixture, moto), generates CDC records for three tables plus a few poison records,
//! runs the relay (DynamoDB, EventBridge events, SQS DLQ) until every record is committed,
//! verifies DynamoDB against the generator's expected state and the DLQ against the poison
//! records, and prints "verified N/N items match".
//!
//! Orchestration only: it uses the same `relay::start` as production and shares no shortcut.

use std::time::{Duration, Instant};

use crate::config::{Config, EnvelopeKind, ValueFormat};
use crate::generate::{GenerateSpec, OpMix};
use crate::lab::{Lab, LabOptions};
use crate::relay::{self, StartOptions};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub records: u64,
    pub keys_per_table: u32,
    pub envelope: EnvelopeKind,
    pub seed: u64,
    /// Two regions: about `failover_after` into the run the whole primary cluster goes down and
    /// the relay fails over to the secondary.
    pub failover: bool,
    pub failover_after: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            records: 50_000,
            keys_per_table: 1_000,
            envelope: EnvelopeKind::Qlik,
            seed: 42,
            failover: false,
            failover_after: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error("embedded demo config is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Stalled(String),
    #[error("AWS: {0}")]
    Aws(String),
    #[error("Kafka: {0}")]
    Kafka(String),
}

/// One record that is not Confluent-framed per partition of `demo.customers`.
async fn inject_poison(bootstrap: &str) -> Result<(), DemoError> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| DemoError::Kafka(e.to_string()))?;
    for p in 0..POISON {
        let key = format!("poison-{p}");
        let partition = i32::try_from(p).unwrap_or(0) % PARTITIONS;
        producer
            .send(
                FutureRecord::to("demo.customers")
                    .partition(partition)
                    .key(key.as_bytes())
                    .payload(b"{\"not\": \"avro\"}".as_slice()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| DemoError::Kafka(e.to_string()))?;
    }
    Ok(())
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, DemoError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| DemoError::Aws(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&A::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Event entries sent successfully, read back from the relay's own metrics.
fn event_entries_sent() -> u64 {
    let text = crate::telemetry::metrics::render();
    let prefix = format!("cdc_relay_sink_batch_size_sum{{sink=\"eventbridge:{EVENT_BUS}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

pub const TABLES: [&str; 3] = ["customers", "orders", "accounts"];
const PARTITIONS: i32 = 3;
const DLQ_QUEUE: &str = "cdc-relay-demo-dlq";
const EVENT_BUS: &str = "cdc-relay-demo";
/// Poison records the demo injects (one per partition of `demo.customers`): not Confluent-framed.
const POISON: usize = 3;
const MIRROR_PREFIX: &str = "primary.";
const CONTROL_TABLE: &str = "cdc-relay-demo-control";

/// The demo's relay config (also a readable example of a complete config).
pub fn demo_config(bootstrap: &str, registry: &str, aws_endpoint: &str, envelope: &str) -> String {
    let mut routes = String::new();
    for t in TABLES {
        routes.push_str(&format!(
            "\n[[routes]]\ntopic = \"demo.{t}\"\nenvelope = \"{envelope}\"\nformat = \"avro\"\ntable = \"{t}\"\nkey = [\"id\"]\n"
        ));
    }
    format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "cdc-relay-demo"
topics = ["demo.customers", "demo.orders", "demo.accounts"]
commit_interval = "500ms"
[schema_registry]
url = "{registry}"
[aws]
region = "us-west-2"
endpoint_url = "{aws_endpoint}"
[dynamodb]
concurrency = 64
[eventbridge]
bus = "{EVENT_BUS}"
[dlq]
sqs_queue_name = "{DLQ_QUEUE}"
[admin]
listen = "127.0.0.1:0"
# moto answers ~300 requests/s from one Python process (~0.7 s per request with the default
# window): 9 partitions x 1000 records in flight would wait ~45 s each, and the committed
# position would trail the completed records by ~1,300. A window sized to the emulator keeps it
# within a few hundred, and runs faster. Against DynamoDB keep the default (BENCHMARKS.md).
[runtime]
max_in_flight_per_partition = 200
{routes}"#
    )
}

fn committed_total(bootstrap: &str, group: &str, prefix: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let Ok(c) = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create::<BaseConsumer>()
    else {
        return 0;
    };
    let mut tpl = TopicPartitionList::new();
    for t in TABLES {
        for p in 0..PARTITIONS {
            tpl.add_partition(&format!("{prefix}demo.{t}"), p);
        }
    }
    c.committed_offsets(tpl, Duration::from_secs(5))
        .map(|l| {
            l.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs the demo; returns (matched, expected) on success.
pub async fn run(opts: DemoOptions) -> Result<(usize, usize), DemoError> {
    let started = Instant::now();
    println!("demo: starting the lab (3-broker mock Kafka, schema-registry fixture, moto)…");
    let lab = Lab::start(LabOptions::default()).await?;
    let sdk = lab.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for t in TABLES {
        lab.kafka
            .create_topic(&format!("demo.{t}"), PARTITIONS)
            .map_err(crate::lab::LabError::from)?;
        crate::lab::create_table(&ddb, t, "pk").await?;
    }
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let dlq_url = sqs
        .create_queue()
        .queue_name(DLQ_QUEUE)
        .send()
        .await
        .map_err(|e| DemoError::Aws(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    aws_sdk_eventbridge::Client::new(&sdk)
        .create_event_bus()
        .name(EVENT_BUS)
        .send()
        .await
        .map_err(|e| {
            DemoError::Aws(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
        })?;
    let bootstrap = lab.kafka.bootstrap_servers().to_string();
    let envelope = match opts.envelope {
        EnvelopeKind::Debezium => "debezium",
        EnvelopeKind::Simple => "simple",
        _ => "qlik",
    };
    println!(
        "demo: kafka {bootstrap}, registry {}, moto {}",
        lab.registry.url(),
        lab.aws_config().endpoint_url.unwrap_or_default()
    );
    let spec = GenerateSpec {
        bootstrap_servers: bootstrap.clone(),
        registry: crate::config::RegistryConfig {
            url: Some(lab.registry.url()),
            ..Default::default()
        },
        envelope: opts.envelope,
        format: ValueFormat::Avro,
        tables: TABLES.iter().map(|t| t.to_string()).collect(),
        topic_prefix: "demo.".into(),
        keys_per_table: opts.keys_per_table,
        records: opts.records,
        first_record: 0,
        seed: opts.seed,
        rate: None,
        mix: OpMix::default(),
        producer_properties: Default::default(),
        note_bytes: 0,
        // Every record starts a trace, as from an instrumented producer: with
        // OTEL_EXPORTER_OTLP_ENDPOINT set, the demo exports whole traces.
        traceparent: true,
    };
    println!(
        "demo: generating {} {envelope} records for {} keys in each of {:?}…",
        opts.records, opts.keys_per_table, TABLES
    );
    let (report, expected) = crate::generate::generate(&spec).await?;
    println!(
        "demo: produced {} records ({:?}) in {} ms; expected final state: {} items, {} tombstones",
        report.records, report.by_op, report.elapsed_ms, report.expected_items, report.tombstones
    );
    inject_poison(&bootstrap).await?;
    println!(
        "demo: produced {POISON} poison records (no Confluent framing) into demo.customers; they must end in the DLQ"
    );
    let mut cfg = Config::from_toml(&demo_config(
        &bootstrap,
        &lab.registry.url(),
        &lab.aws_config().endpoint_url.unwrap_or_default(),
        envelope,
    ))?;
    let second = if opts.failover {
        let topics: Vec<(String, i32)> = TABLES
            .iter()
            .map(|t| (format!("demo.{t}"), PARTITIONS))
            .collect();
        let second = crate::lab::SecondRegion::start(
            &bootstrap,
            &lab.registry,
            3,
            &topics,
            MIRROR_PREFIX,
            &[cfg.kafka.group_id.clone()],
        )
        .await?;
        crate::lab::create_table(&ddb, CONTROL_TABLE, "group").await?;
        cfg.kafka.bootstrap_servers = String::new();
        cfg.regions = Some(crate::config::RegionsConfig {
            primary: crate::config::RegionConfig {
                name: "us-west-2".into(),
                bootstrap_servers: bootstrap.clone(),
                properties: Default::default(),
                properties_file: None,
                topic_prefix: String::new(),
                schema_registry: Default::default(),
            },
            secondary: crate::config::RegionConfig {
                name: "us-east-1".into(),
                bootstrap_servers: second.kafka.bootstrap_servers().to_string(),
                properties: Default::default(),
                properties_file: None,
                topic_prefix: MIRROR_PREFIX.into(),
                schema_registry: crate::config::RegionRegistry {
                    url: Some(second.registry.url()),
                    ..Default::default()
                },
            },
        });
        cfg.failover.control_table = Some(CONTROL_TABLE.into());
        // Global tables: one write region for the group (moto serves every region).
        cfg.dynamodb.write_region = Some("us-west-2".into());
        cfg.failover.unhealthy_after = Duration::from_secs(3);
        println!(
            "demo: second region us-east-1 at {} with mirror topics {MIRROR_PREFIX}demo.* (cluster-link emulator), its own schema registry at {}; control table {CONTROL_TABLE}",
            second.kafka.bootstrap_servers(),
            second.registry.url()
        );
        Some(second)
    } else {
        None
    };
    let relay = relay::start(
        cfg,
        StartOptions {
            sdk_config: Some(sdk),
            no_admin: false,
        },
    )
    .await?;
    if let Some(a) = relay.admin_addr() {
        println!("demo: relay running; admin on http://{a} (/status, /metrics, /ready)");
    }
    let total = i64::try_from(report.records + POISON as u64).unwrap_or(i64::MAX);
    let relay_start = Instant::now();
    let mut last_progress = (0, Instant::now());
    // Records done and when, for the rate of the last interval.
    let mut last_rate = (0u64, Instant::now());
    let mut killed: Option<Instant> = None;
    let mut failover_took: Option<f64> = None;
    let mut stale_at_switch: Option<u64> = None;
    let mut regressions = 0usize;
    let mut last_scan: Option<Vec<crate::verify::TableItems>> = None;
    loop {
        if let Some(sec) = &second
            && killed.is_none()
            && relay_start.elapsed() >= opts.failover_after
        {
            // Wait until the link has mirrored everything, so the demo's RPO is zero.
            let until = Instant::now() + Duration::from_secs(30);
            while sec.link.copied() < report.records + POISON as u64 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lab.kafka
                .broker_down(-1)
                .map_err(crate::lab::LabError::from)?;
            killed = Some(Instant::now());
            println!("demo: *** the whole primary cluster (us-west-2) is DOWN ***");
        }
        let on_secondary = relay.status().to_json()["region"]["active"] == "secondary";
        if let Some(k) = killed
            && on_secondary
        {
            let st = relay.status().to_json();
            if stale_at_switch.is_none() {
                stale_at_switch = Some(
                    relay
                        .status()
                        .outcomes
                        .stale
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
                println!(
                    "demo: switched to us-east-1 (epoch {}), offset sources {}",
                    st["region"]["epoch"], st["region"]["last_switch"]["offset_sources"]
                );
            }
            if failover_took.is_none()
                && let Some(d) = st["region"]["last_switch"]["duration_seconds"].as_f64()
            {
                failover_took = Some(d);
                println!(
                    "demo: first record done on the secondary {d:.1} s after the first failed probe of the primary (cdc_relay_failover_duration_seconds; primary killed {:.1} s ago)",
                    k.elapsed().as_secs_f64()
                );
            }
            // Replays must never move an item backwards: compare successive scans of one table.
            let now_scan = vec![crate::verify::scan_table(&ddb, TABLES[0], "pk").await?];
            if let Some(prev) = &last_scan {
                for (a, b) in prev.iter().zip(&now_scan) {
                    for (pk, item) in b {
                        if let (Some(old), Some(new)) =
                            (a.get(pk).and_then(|i| i.get("_seq")), item.get("_seq"))
                            && new.key_text() < old.key_text()
                        {
                            regressions += 1;
                        }
                    }
                }
            }
            last_scan = Some(now_scan);
        }
        let (cluster, prefix) = if on_secondary {
            (
                second
                    .as_ref()
                    .map(|s| s.kafka.bootstrap_servers().to_string())
                    .unwrap_or_default(),
                MIRROR_PREFIX,
            )
        } else {
            (bootstrap.clone(), "")
        };
        let done = committed_total(&cluster, "cdc-relay-demo", prefix);
        let o = relay.status().outcomes.to_json();
        let n = |k: &str| o[k].as_u64().unwrap_or(0);
        let completed =
            n("written") + n("stale") + n("superseded") + n("skipped") + n("dead_lettered");
        let rate =
            (completed - last_rate.0) as f64 / last_rate.1.elapsed().as_secs_f64().max(0.001);
        last_rate = (completed, Instant::now());
        println!(
            "demo: {completed} records done, {done}/{total} committed ({:.0}%) — written {}, superseded {}, stale {}, skipped {}, dead-lettered {} — {rate:.0} records/s",
            done as f64 * 100.0 / total.max(1) as f64,
            n("written"),
            n("superseded"),
            n("stale"),
            n("skipped"),
            n("dead_lettered"),
        );
        if done >= total {
            break;
        }
        if done > last_progress.0 {
            last_progress = (done, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(60) {
            relay.shutdown().await;
            return Err(DemoError::Stalled(format!(
                "no progress for 60 s at {done}/{total}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let verdict = crate::verify::verify(&ddb, &expected, |t| t.to_string(), "pk").await?;
    let replayed = stale_at_switch.map(|s0| {
        relay
            .status()
            .outcomes
            .stale
            .load(std::sync::atomic::Ordering::Relaxed)
            - s0
    });
    let dead_lettered = relay
        .status()
        .outcomes
        .dead_lettered
        .load(std::sync::atomic::Ordering::Relaxed);
    let events = event_entries_sent();
    relay.shutdown().await;
    let in_dlq = queue_depth(&sqs, &dlq_url).await?;
    println!(
        "demo: {events} event entries sent to EventBridge bus {EVENT_BUS}; {dead_lettered} records dead-lettered, {in_dlq} messages in SQS {DLQ_QUEUE} (inspect: cdc-relay dlq inspect)"
    );
    if in_dlq != POISON as u64 || dead_lettered != POISON as u64 {
        return Err(DemoError::Stalled(format!(
            "expected {POISON} records in the DLQ, found {in_dlq} ({dead_lettered} dead-lettered)"
        )));
    }
    for m in &verdict.mismatches {
        println!("demo: mismatch: {m}");
    }
    match (opts.failover, failover_took) {
        (true, Some(took)) => println!(
            "verified {}/{} items match, {regressions} regressions, failover took {took:.1} s ({} records replayed as stale; {} tables, {} records, {:.1} s)",
            verdict.matched,
            verdict.expected,
            replayed.unwrap_or(0),
            TABLES.len(),
            report.records,
            started.elapsed().as_secs_f64()
        ),
        _ => println!(
            "verified {}/{} items match ({} tables, {} records, {:.1} s)",
            verdict.matched,
            verdict.expected,
            TABLES.len(),
            report.records,
            started.elapsed().as_secs_f64()
        ),
    }
    if opts.failover && (failover_took.is_none() || regressions > 0) {
        return Err(DemoError::Stalled(format!(
            "failover demo: switched = {}, regressions = {regressions}",
            failover_took.is_some()
        )));
    }
    if verdict.is_exact() {
        Ok((verdict.matched, verdict.expected))
    } else {
        Err(DemoError::Stalled(format!(
            "{} mismatches, {} unexpected items",
            verdict.mismatch_count, verdict.unexpected_items
        )))
    }
}
