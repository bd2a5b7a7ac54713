//! Shared helpers for the integration tests: a lab (mock Kafka + registry fixture + moto), relay
//! configs, and waiting on committed offsets read from the broker itself.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cdc_relay::config::{Config, EnvelopeKind, ValueFormat};
use cdc_relay::generate::{ExpectedState, GenerateSpec, OpMix};
use cdc_relay::lab::{Lab, LabOptions};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub mod otlp;
pub mod poison;
pub mod regions;

pub struct Env {
    pub lab: Lab,
    pub ddb: aws_sdk_dynamodb::Client,
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,cdc_relay=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Every log line of this test process, kept in memory (for assertions on what is *not* logged).
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs the capture as the process's subscriber, at trace level for the relay and the
    /// HTTP stack (axum, hyper, tower, reqwest) and info for the rest. Call it before
    /// `Env::start` (nextest runs each test in its own process).
    pub fn install() -> LogCapture {
        let cap = LogCapture::default();
        let w = cap.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info,cdc_relay=trace,axum=trace,hyper=trace,tower=trace,tower_http=trace,reqwest=trace")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init()
            .expect("no other subscriber yet");
        cap
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

/// High watermarks of `topic`'s partitions on the cluster at `bootstrap`.
pub fn end_offsets_on(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// `group`'s committed offsets of `topic` on the cluster at `bootstrap` (None = nothing committed).
pub fn committed_on(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

impl Env {
    pub async fn start() -> Env {
        init_logs();
        let lab = Lab::start(LabOptions::default())
            .await
            .expect("lab starts (is moto installed? run scripts/setup.sh)");
        let ddb = aws_sdk_dynamodb::Client::new(&lab.sdk_config().await);
        Env { lab, ddb }
    }

    pub fn bootstrap(&self) -> String {
        self.lab.kafka.bootstrap_servers().to_string()
    }

    /// Creates the topic and the DynamoDB table.
    pub async fn topic_and_table(&self, topic: &str, partitions: i32, table: &str) {
        self.lab.kafka.create_topic(topic, partitions).unwrap();
        cdc_relay::lab::create_table(&self.ddb, table, "pk")
            .await
            .unwrap();
    }

    /// A relay config: one route `topic → table`, key `id`, fast commits, admin on a free port.
    pub fn config(
        &self,
        group: &str,
        topic: &str,
        table: &str,
        envelope: EnvelopeKind,
        format: ValueFormat,
        extra: &str,
    ) -> Config {
        let env = match envelope {
            EnvelopeKind::Qlik => "qlik",
            EnvelopeKind::Debezium => "debezium",
            EnvelopeKind::Simple => "simple",
            EnvelopeKind::Auto => "auto",
        };
        let fmt = match format {
            ValueFormat::Avro => "avro",
            ValueFormat::Json => "json",
        };
        let aws = self.lab.aws_config();
        let text = format!(
            r#"
[kafka]
bootstrap_servers = "{bs}"
group_id = "{group}"
topics = ["{topic}"]
commit_interval = "200ms"
revoke_drain_timeout = "5s"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[schema_registry]
url = "{reg}"
[aws]
region = "us-west-2"
endpoint_url = "{aws}"
[dynamodb]
concurrency = 32
[dynamodb.retry]
initial = "20ms"
max = "1s"
[admin]
listen = "127.0.0.1:0"
[runtime]
shutdown_timeout = "10s"
# moto applies ~300 conditional writes/s here: bound in-flight work so drains finish in time.
max_in_flight_per_partition = 300
[[routes]]
topic = "{topic}"
envelope = "{env}"
format = "{fmt}"
table = "{table}"
key = ["id"]
{extra}
"#,
            bs = self.bootstrap(),
            reg = self.lab.registry.url(),
            aws = aws.endpoint_url.unwrap_or_default(),
        );
        Config::from_toml(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
    }

    pub fn spec(
        &self,
        topic_prefix: &str,
        tables: &[&str],
        envelope: EnvelopeKind,
        keys: u32,
        records: u64,
        seed: u64,
    ) -> GenerateSpec {
        GenerateSpec {
            bootstrap_servers: self.bootstrap(),
            registry: cdc_relay::config::RegistryConfig {
                url: Some(self.lab.registry.url()),
                ..Default::default()
            },
            envelope,
            format: ValueFormat::Avro,
            tables: tables.iter().map(|t| t.to_string()).collect(),
            topic_prefix: topic_prefix.to_string(),
            keys_per_table: keys,
            records,
            first_record: 0,
            seed,
            rate: None,
            mix: OpMix::default(),
            producer_properties: Default::default(),
            note_bytes: 0,
            traceparent: false,
        }
    }

    /// High watermarks of `topic`'s partitions.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> Vec<i64> {
        end_offsets_on(&self.bootstrap(), topic, partitions)
    }

    /// The group's committed offsets, read from the broker (None = nothing committed).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        committed_on(&self.bootstrap(), group, topic, partitions)
    }

    /// Waits until the group has committed every partition up to `ends`. `stall` bounds the time
    /// without any progress, not the whole wait: a loaded machine makes the relay (and moto)
    /// slower, not stuck, and a test that fails on speed would not show what it means to.
    pub async fn wait_committed(&self, group: &str, topic: &str, ends: &[i64], stall: Duration) {
        let n = i32::try_from(ends.len()).unwrap();
        let mut last: Vec<Option<i64>> = Vec::new();
        let mut until = Instant::now() + stall;
        loop {
            let c = self.committed(group, topic, n);
            if c.iter().zip(ends).all(|(c, e)| *c == Some(*e)) {
                return;
            }
            if c != last {
                last = c.clone();
                until = Instant::now() + stall;
            }
            assert!(
                Instant::now() < until,
                "group {group} made no progress toward {ends:?} for {stall:?}; committed {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Resets `group` to `offset` on every partition of `topic`, as `kafka-consumer-groups
    /// --reset-offsets` does: join the (otherwise empty) group, commit, leave. The mock broker,
    /// like a real one, only accepts commits from a member.
    pub fn reset_group(&self, group: &str, topic: &str, partitions: i32, offset: i64) {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while c.assignment().map(|a| a.count()).unwrap_or(0) < partitions as usize {
            assert!(
                Instant::now() < until,
                "could not join group {group} to reset it"
            );
            let _ = c.poll(Duration::from_millis(100));
        }
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Offset(offset))
                .unwrap();
        }
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
        c.unsubscribe();
    }

    pub async fn verify(
        &self,
        expected: &ExpectedState,
        table_of: impl Fn(&str) -> String,
    ) -> cdc_relay::verify::Verdict {
        cdc_relay::verify::verify(&self.ddb, expected, table_of, "pk")
            .await
            .unwrap()
    }
}

pub fn assert_exact(v: &cdc_relay::verify::Verdict) {
    assert!(v.is_exact(), "final state differs: {v:#?}");
}

/// What a test scenario relays: topic `<name>` (3 partitions) → table `<name>`, group `g-<name>`.
pub struct Plan {
    pub name: &'static str,
    /// The generator's envelope; the route declares the same unless `route_envelope` is set.
    pub envelope: EnvelopeKind,
    pub route_envelope: Option<EnvelopeKind>,
    pub format: ValueFormat,
    pub keys: u32,
    pub records: u64,
    pub seed: u64,
    /// Extra `[[routes]]` lines.
    pub route_extra: &'static str,
    /// Create the DynamoDB table up front.
    pub create_table: bool,
}

impl Plan {
    pub fn new(
        name: &'static str,
        envelope: EnvelopeKind,
        keys: u32,
        records: u64,
        seed: u64,
    ) -> Plan {
        Plan {
            name,
            envelope,
            route_envelope: None,
            format: ValueFormat::Avro,
            keys,
            records,
            seed,
            route_extra: "",
            create_table: true,
        }
    }
}

/// A generated scenario: its relay config and the expected final state.
pub struct Scenario {
    pub topic: String,
    pub table: String,
    pub group: String,
    pub cfg: Config,
    /// The expected final state of everything produced so far (`produce_more` lays its part
    /// over it).
    pub expected: ExpectedState,
    /// The report of the first part.
    pub report: cdc_relay::generate::GenerateReport,
    /// The generator's spec of the first part (`produce_more` continues it).
    pub spec: GenerateSpec,
    /// Records of the stream produced so far, over every part.
    pub produced: u64,
}

pub const PARTITIONS: i32 = 3;
/// How long a wait for the relay to finish may go without any progress.
pub const DONE_TIMEOUT: Duration = Duration::from_secs(180);

impl Env {
    /// Creates the topic (and table), produces the records, and builds the relay config.
    pub async fn scenario(&self, plan: Plan) -> Scenario {
        let (topic, table, group) = (
            format!("cdc.{}", plan.name),
            plan.name.to_string(),
            format!("g-{}", plan.name),
        );
        self.lab.kafka.create_topic(&topic, PARTITIONS).unwrap();
        if plan.create_table {
            cdc_relay::lab::create_table(&self.ddb, &table, "pk")
                .await
                .unwrap();
        }
        let mut spec = self.spec(
            "cdc.",
            &[plan.name],
            plan.envelope,
            plan.keys,
            plan.records,
            plan.seed,
        );
        spec.format = plan.format;
        let (report, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
        assert_eq!(report.records, plan.records);
        let produced = report.records;
        let cfg = self.config(
            &group,
            &topic,
            &table,
            plan.route_envelope.unwrap_or(plan.envelope),
            plan.format,
            plan.route_extra,
        );
        Scenario {
            topic,
            table,
            group,
            cfg,
            expected,
            report,
            spec,
            produced,
        }
    }

    /// Produces `records` more changes of the scenario's stream onto its topic, with versions
    /// that follow everything produced before, and lays their expected state over the
    /// scenario's. Tests whose premise is "the relay is stopped (or held) mid-stream" produce the
    /// rest of the stream only after the stop, so the premise holds however fast the machine is.
    pub async fn produce_more(&self, s: &mut Scenario, records: u64) {
        let registry = self.lab.registry.url();
        produce_more_to(s, records, &self.bootstrap(), &registry, "cdc.").await;
    }

    /// Records committed by the scenario's group, over all partitions.
    pub fn committed_total(&self, s: &Scenario) -> i64 {
        self.committed(&s.group, &s.topic, PARTITIONS)
            .iter()
            .map(|c| c.unwrap_or(0))
            .sum()
    }

    /// Waits until the group has committed at least `at_least` records in total.
    pub async fn wait_progress(&self, s: &Scenario, at_least: i64) {
        let until = Instant::now() + DONE_TIMEOUT;
        while self.committed_total(s) < at_least {
            assert!(
                Instant::now() < until,
                "no progress to {at_least} committed records"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every record of the scenario is committed.
    pub async fn wait_done(&self, s: &Scenario) -> Vec<i64> {
        let ends = self.end_offsets(&s.topic, PARTITIONS);
        self.wait_committed(&s.group, &s.topic, &ends, DONE_TIMEOUT)
            .await;
        ends
    }

    /// DynamoDB holds exactly the expected final state.
    pub async fn assert_exact(&self, s: &Scenario) -> cdc_relay::verify::Verdict {
        let table = s.table.clone();
        let v = cdc_relay::verify::verify(&self.ddb, &s.expected, move |_| table.clone(), "pk")
            .await
            .unwrap();
        assert_exact(&v);
        v
    }
}

/// Produces `records` more changes of `s`'s stream onto `<topic_prefix><name>` on the cluster at
/// `bootstrap` (registering the schema with the registry at `registry_url`), continuing its
/// versions, and lays their expected state over `s.expected`.
pub async fn produce_more_to(
    s: &mut Scenario,
    records: u64,
    bootstrap: &str,
    registry_url: &str,
    topic_prefix: &str,
) {
    let mut spec = s.spec.clone();
    spec.bootstrap_servers = bootstrap.to_string();
    spec.registry.url = Some(registry_url.to_string());
    spec.topic_prefix = topic_prefix.to_string();
    spec.records = records;
    spec.first_record = s.produced;
    spec.seed = s.spec.seed.wrapping_mul(1_000_003).wrapping_add(s.produced);
    let (report, expected) = cdc_relay::generate::generate(&spec).await.unwrap();
    assert_eq!(report.records, records);
    s.expected.overlay(expected);
    s.produced += records;
}

/// What `replay_from_zero` saw.
pub struct Replayed {
    pub relay: cdc_relay::relay::RelayHandle,
    /// Table scans taken while the replay ran.
    pub samples: usize,
    /// Of those, the scans taken while the last partition was held back, so with part of the
    /// replay still to come (at least one, by construction).
    pub mid_samples: usize,
}

/// Resets `s`'s group to offset 0 and replays the whole stream with a relay started from `cfg`,
/// scanning the table continuously and handing each scan to `sample`, until every partition is
/// committed to its end again and the relay has finished every record.
///
/// At least one scan lands in the middle of the replay by construction, not by speed: the last
/// partition's leader is moved to a broker that is down (the group's coordinator and the other
/// leaders stay on brokers that are up) until the other partitions are replayed and sampled.
pub async fn replay_from_zero(
    env: &Env,
    s: &Scenario,
    cfg: Config,
    mut sample: impl FnMut(&cdc_relay::verify::TableItems),
) -> Replayed {
    let kafka = &env.lab.kafka;
    let held = PARTITIONS - 1;
    let ends = env.end_offsets(&s.topic, PARTITIONS);
    env.reset_group(&s.group, &s.topic, PARTITIONS, 0);
    kafka.group_coordinator(&s.group, 1).unwrap();
    for p in 0..held {
        kafka.partition_leader(&s.topic, p, 1).unwrap();
    }
    kafka.partition_leader(&s.topic, held, 3).unwrap();
    kafka.broker_down(3).unwrap();
    let relay = cdc_relay::relay::start(cfg, cdc_relay::relay::StartOptions::default())
        .await
        .unwrap();
    let scan = || cdc_relay::verify::scan_table(&env.ddb, &s.table, "pk");
    let (mut samples, mut mid_samples) = (0, 0);
    let until = Instant::now() + DONE_TIMEOUT;
    // Phase 1: every partition but the held one replays.
    loop {
        sample(&scan().await.unwrap());
        samples += 1;
        mid_samples += 1;
        let c = env.committed(&s.group, &s.topic, PARTITIONS);
        assert_eq!(c[held as usize], Some(0), "the held partition moved: {c:?}");
        if (0..held as usize).all(|p| c[p] == Some(ends[p])) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the replay did not finish: {c:?} of {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Mid-replay: the held partition is still to come.
    sample(&scan().await.unwrap());
    samples += 1;
    mid_samples += 1;
    kafka.broker_up(3).unwrap();
    // Phase 2: the held partition replays too.
    loop {
        sample(&scan().await.unwrap());
        samples += 1;
        let c = env.committed(&s.group, &s.topic, PARTITIONS);
        let done = ["written", "stale", "skipped", "superseded", "dead_lettered"]
            .iter()
            .map(|k| count(&relay, k))
            .sum::<u64>();
        if c.iter().zip(&ends).all(|(c, e)| *c == Some(*e)) && done == s.produced {
            break;
        }
        assert!(
            Instant::now() < until,
            "the replay did not finish: {c:?} of {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Replayed {
        relay,
        samples,
        mid_samples,
    }
}

/// One of this relay instance's record outcomes (written, stale, skipped, poison).
pub fn count(relay: &cdc_relay::relay::RelayHandle, what: &str) -> u64 {
    relay.status().outcomes.to_json()[what]
        .as_u64()
        .unwrap_or(0)
}

/// SQS helpers against the lab's moto.
pub mod sqs {
    use std::collections::HashMap;

    use aws_sdk_sqs::types::{Message, QueueAttributeName};

    pub async fn client(env: &super::Env) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&env.lab.sdk_config().await)
    }

    pub async fn create_queue(c: &aws_sdk_sqs::Client, name: &str) -> String {
        c.create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string()
    }

    /// Visible plus in-flight messages.
    pub async fn depth(c: &aws_sdk_sqs::Client, url: &str) -> u64 {
        let a = c
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = a.attributes().cloned().unwrap_or_default();
        let n = |k: QueueAttributeName| -> u64 {
            attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// Reads every message (hidden for 60 s, not deleted), with all attributes.
    pub async fn read_all(c: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
        let mut out: HashMap<String, Message> = HashMap::new();
        let mut empty = 0;
        while empty < 2 {
            let r = c
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .wait_time_seconds(1)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            if r.messages().is_empty() {
                empty += 1;
            }
            for m in r.messages() {
                out.insert(m.message_id().unwrap_or_default().to_string(), m.clone());
            }
        }
        out.into_values().collect()
    }

    pub fn attr(m: &Message, name: &str) -> Option<String> {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
    }
}

/// A DLQ config on `queue_url` with fast retries.
pub fn dlq_config(queue_url: &str) -> cdc_relay::config::DlqConfig {
    cdc_relay::config::DlqConfig {
        sqs_queue_url: Some(queue_url.to_string()),
        retry: cdc_relay::sinks::pool::RetryConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// One consumed record (for checking output topics).
pub struct Consumed {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Consumed {
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads `topic` from the beginning up to its current end.
pub fn consume_all(env: &Env, topic: &str, partitions: i32, timeout: Duration) -> Vec<Consumed> {
    use rdkafka::Message;
    use rdkafka::message::Headers;
    let ends = env.end_offsets(topic, partitions);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env.bootstrap())
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let total: i64 = ends.iter().sum();
    let mut out = Vec::new();
    let until = Instant::now() + timeout;
    while (out.len() as i64) < total && Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(Consumed {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// The relay's `/metrics` text.
pub async fn metrics(relay: &cdc_relay::relay::RelayHandle) -> String {
    let addr = relay.admin_addr().expect("admin server running");
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A registry client for the lab's registry fixture.
pub fn registry(env: &Env) -> cdc_relay::decode::registry::RegistryClient {
    cdc_relay::decode::registry::RegistryClient::new(&cdc_relay::config::RegistryConfig {
        url: Some(env.lab.registry.url()),
        ..Default::default()
    })
    .unwrap()
}

/// An EventBridge bus in `region` whose rule sends every `cdc-relay` event to a new SQS queue
/// there: returns that region's SQS client and the queue's URL.
pub async fn bus_to_queue(
    env: &Env,
    bus: &str,
    queue: &str,
    region: &'static str,
) -> (aws_sdk_sqs::Client, String) {
    let sdk = env.lab.sdk_config().await;
    let region = aws_sdk_eventbridge::config::Region::new(region);
    let eb = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(&sdk)
            .region(region.clone())
            .build(),
    );
    let q = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .region(region)
            .build(),
    );
    let url = sqs::create_queue(&q, queue).await;
    let arn = q
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .unwrap();
    eb.create_event_bus().name(bus).send().await.unwrap();
    eb.put_rule()
        .name("all-cdc")
        .event_bus_name(bus)
        .event_pattern(r#"{"source": ["cdc-relay"]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("all-cdc")
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(&arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (q, url)
}

/// A loopback port free at the time of asking (for a process's admin server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A file's text, or "" (a process's log that may not exist yet).
pub fn read_text(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Sends `signal` (`TERM`, `INT`) to `child` and waits up to `within` for it to exit: how long it
/// took and its status, or `None` if it is still running.
pub async fn signal_and_wait(
    child: &mut std::process::Child,
    signal: &str,
    within: Duration,
) -> Option<(Duration, std::process::ExitStatus)> {
    let t = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some((t.elapsed(), st));
        }
        if t.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
