//! The end-to-end benchmark driver: records pre-produced into an in-process lab (librdkafka's mock
//! cluster, the registry fixture), then, all in one run so the ratios hold on a noisy machine:
//! (a) the limit — a plain rdkafka `BaseConsumer` reading the same records (and kcat when
//! installed); (b) the relay binary, as its own process, into the blackhole output; (c) into the
//! accept-all DynamoDB responder in each write mode; (d) the same with a per-request delay at
//! several sink concurrencies; (e) into moto, next to a raw SDK client writing as many items to
//! the same moto. Per case: records/s (from the first record consumed to the last done), consume→ack
//! latency p50/p99 (the relay's histogram), relay CPU seconds per 1,000 records, peak RSS, and
//! the ratio to (a).
//!
//! `make bench` runs the full plan (`benches/e2e.rs`); `tests/bench_smoke.rs` runs a tiny one so
//! the instrument keeps working. No timing is asserted anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cdc_relay::config::{EnvelopeKind, RegistryConfig, ValueFormat};
use cdc_relay::generate::{GenerateSpec, OpMix};
use cdc_relay::lab::{Lab, LabOptions};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::responder::Responder;

/// Where a relay run writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The blackhole output.
    Blackhole,
    /// The accept-all DynamoDB responder in `mode`, each request delayed by `delay_ms`, with
    /// `concurrency` batches in flight (`None`: the default).
    Responder {
        mode: &'static str,
        delay_ms: u64,
        concurrency: Option<usize>,
    },
    /// moto, conditional writes.
    Moto,
}

/// One measurement.
#[derive(Debug, Clone)]
pub enum Case {
    /// (a) the raw-consume limit with rdkafka (and kcat when installed).
    RawConsume,
    Relay(Target),
    /// (e) a raw SDK client writing as many conditional items to moto, `concurrency` at once.
    RawSdkToMoto {
        concurrency: usize,
    },
    /// Latency at a steady rate: relay → blackhole while records are produced at `fraction` of
    /// the group's blackhole rate (measured by the group's blackhole case, which must run first),
    /// into a fresh topic the relay has already joined.
    Paced {
        fraction: f64,
    },
    /// relay → blackhole with trace export to an accept-all OTLP receiver, `ratio` of the
    /// records sampled (`None`: tracing off). Run `TRACED_RUNS` times, interleaved with the
    /// group's other `Traced` cases; the median is reported, so off, 1% and 100% compare with
    /// less of the machine's noise.
    /// `collector_down`: the endpoint is a port nothing listens on (export fails, spans are
    /// dropped and counted): the relay must keep its throughput.
    Traced {
        ratio: Option<f64>,
        collector_down: bool,
    },
}

/// A traced case: (ratio, collector down).
type TracedKey = (Option<f64>, bool);

/// One traced case's run: its key and figures.
type TracedRun = (TracedKey, Result<RelayFigures, String>);

/// Runs per `Traced` case (median reported), interleaved with the group's other traced cases;
/// `CDC_RELAY_BENCH_TRACED_RUNS` overrides it.
pub const TRACED_RUNS: usize = 11;

fn traced_runs() -> usize {
    std::env::var("CDC_RELAY_BENCH_TRACED_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(TRACED_RUNS)
}

impl Case {
    pub fn name(&self) -> String {
        match self {
            Case::RawConsume => "raw consume (rdkafka BaseConsumer)".into(),
            Case::Relay(Target::Blackhole) => "relay → blackhole".into(),
            Case::Relay(Target::Responder {
                mode,
                delay_ms,
                concurrency,
            }) => {
                let mut n = format!("relay → responder, {mode}");
                if *delay_ms > 0 {
                    n.push_str(&format!(", {delay_ms} ms/request"));
                }
                if let Some(c) = concurrency {
                    n.push_str(&format!(", concurrency {c}"));
                }
                n
            }
            Case::Relay(Target::Moto) => "relay → moto, conditional".into(),
            Case::RawSdkToMoto { concurrency } => {
                format!("raw SDK PutItem → moto, concurrency {concurrency}")
            }
            Case::Paced { fraction } => {
                format!("relay → blackhole, produced at {fraction} × its rate")
            }
            Case::Traced { ratio: None, .. } => {
                format!(
                    "relay → blackhole, tracing off (median of {})",
                    traced_runs()
                )
            }
            Case::Traced {
                ratio: Some(r),
                collector_down,
            } => format!(
                "relay → blackhole, traced {}%{} (median of {})",
                r * 100.0,
                if *collector_down {
                    ", collector down"
                } else {
                    ""
                },
                traced_runs()
            ),
        }
    }
}

/// Records on one topic and the cases run against them.
#[derive(Debug, Clone)]
pub struct Group {
    pub label: String,
    pub partitions: i32,
    /// Bytes of each row's padded `note` (sizes the records).
    pub note_bytes: usize,
    pub records: u64,
    pub cases: Vec<Case>,
}

/// What was measured for one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub group: String,
    pub case: String,
    pub partitions: i32,
    pub record_bytes: u64,
    pub records: u64,
    pub records_per_sec: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cpu_s_per_1k: Option<f64>,
    /// The whole machine's CPU busy over the same window, in % of all cores (relay, brokers,
    /// producer and everything else): near 100 means the figures are the machine's limit.
    pub machine_busy_pct: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    /// records/s divided by the group's raw-consume records/s.
    pub ratio_to_raw: Option<f64>,
    /// Why the case produced no figures (e.g. the relay does not support the output yet).
    pub skipped: Option<String>,
    /// For responder cases: (mode, delay ms, concurrency) for the plot.
    #[serde(skip)]
    pub target: Option<Target>,
}

impl Measured {
    /// Takes a relay run's figures, or why it produced none.
    fn take(&mut self, run: Result<RelayFigures, String>) {
        match run {
            Ok(r) => {
                self.records_per_sec = Some(r.rate);
                self.p50_ms = r.p50_ms;
                self.p99_ms = r.p99_ms;
                self.cpu_s_per_1k = Some(r.cpu_s_per_1k);
                self.machine_busy_pct = r.machine_busy_pct;
                self.peak_rss_mb = r.peak_rss_mb;
            }
            Err(why) => self.skipped = Some(why),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BenchError + '_ {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

/// Runs every group; returns one `Measured` per case (skipped cases say why).
pub async fn run(relay_bin: &Path, groups: &[Group]) -> Result<Vec<Measured>, BenchError> {
    let lab = Lab::start(LabOptions {
        moto: groups.iter().any(|g| {
            g.cases
                .iter()
                .any(|c| matches!(c, Case::Relay(Target::Moto) | Case::RawSdkToMoto { .. }))
        }),
        ..Default::default()
    })
    .await
    .map_err(setup("lab"))?;
    let mut out = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let table = format!("bench{i}");
        let topic = format!("bench.{table}");
        lab.kafka
            .create_topic(&topic, g.partitions)
            .map_err(setup("topic"))?;
        let spec = GenerateSpec {
            bootstrap_servers: lab.kafka.bootstrap_servers().to_string(),
            registry: RegistryConfig {
                url: Some(lab.registry.url()),
                ..Default::default()
            },
            envelope: EnvelopeKind::Qlik,
            format: ValueFormat::Avro,
            tables: vec![table.clone()],
            topic_prefix: "bench.".into(),
            keys_per_table: 10_000,
            records: g.records,
            first_record: 0,
            seed: 7 + i as u64,
            rate: None,
            mix: OpMix::default(),
            producer_properties: BTreeMap::new(),
            note_bytes: g.note_bytes,
            traceparent: false,
        };
        // Also checks that the mock cluster retained every record produced.
        let (report, _) = cdc_relay::generate::generate(&spec)
            .await
            .map_err(setup("generate"))?;
        eprintln!(
            "bench: {} — {} records on {topic} ({} partitions)",
            g.label, report.records, g.partitions
        );
        let mut raw_rate = None;
        let mut blackhole_rate = None;
        // The traced cases' runs, made together when the first of them comes up.
        let mut traced: Option<Vec<TracedRun>> = None;
        // Each traced case's rate per round (in run order), for ratios paired by round.
        let mut traced_rates: Vec<(TracedKey, Vec<Option<f64>>)> = Vec::new();
        let mut record_bytes = 0;
        // `CDC_RELAY_BENCH_CASE=<part of a case name>`: only those cases (and the raw limit).
        let only = std::env::var("CDC_RELAY_BENCH_CASE").ok();
        for case in g.cases.iter().filter(|c| {
            matches!(c, Case::RawConsume)
                || only.as_ref().is_none_or(|o| c.name().contains(o.as_str()))
        }) {
            let mut m = Measured {
                group: g.label.clone(),
                case: case.name(),
                partitions: g.partitions,
                record_bytes: 0,
                records: g.records,
                records_per_sec: None,
                p50_ms: None,
                p99_ms: None,
                cpu_s_per_1k: None,
                machine_busy_pct: None,
                peak_rss_mb: None,
                ratio_to_raw: None,
                skipped: None,
                target: None,
            };
            match case {
                Case::RawConsume => {
                    let (rate, bytes) = raw_consume(lab.kafka.bootstrap_servers(), &topic, g);
                    record_bytes = bytes;
                    m.records_per_sec = Some(rate);
                    raw_rate = Some(rate);
                    if let Some(kcat) = kcat_rate(lab.kafka.bootstrap_servers(), &topic, g.records)
                    {
                        eprintln!("bench:   kcat read them at {kcat:.0} records/s");
                    }
                }
                Case::Relay(target) => {
                    m.target = Some(target.clone());
                    let endpoint = match target {
                        Target::Moto => {
                            let ddb = aws_sdk_dynamodb::Client::new(&lab.sdk_config().await);
                            let t = format!("{table}-relay");
                            cdc_relay::lab::create_table(&ddb, &t, "pk")
                                .await
                                .map_err(setup("moto table"))?;
                            (lab.aws_config().endpoint_url.unwrap_or_default(), t, None)
                        }
                        Target::Responder { delay_ms, .. } => {
                            let r = Responder::start(Duration::from_millis(*delay_ms))
                                .await
                                .map_err(setup("responder"))?;
                            (r.url(), table.clone(), Some(r))
                        }
                        Target::Blackhole => (String::new(), table.clone(), None),
                    };
                    let (url, t, _responder) = endpoint;
                    let cfg = relay_config(&lab, &topic, &t, &url, target, i);
                    let run = relay_run(relay_bin, &cfg, g.records, None).await;
                    if *target == Target::Blackhole {
                        blackhole_rate = run.as_ref().ok().map(|r| r.rate);
                    }
                    m.take(run);
                }
                Case::RawSdkToMoto { concurrency } => {
                    let ddb = aws_sdk_dynamodb::Client::new(&lab.sdk_config().await);
                    let t = format!("{table}-raw");
                    cdc_relay::lab::create_table(&ddb, &t, "pk")
                        .await
                        .map_err(setup("moto table"))?;
                    m.records_per_sec =
                        Some(raw_sdk(&ddb, &t, g.records, g.note_bytes, *concurrency).await?);
                }
                Case::Traced {
                    ratio,
                    collector_down,
                } => {
                    let key = (*ratio, *collector_down);
                    if traced.is_none() {
                        // Every traced case of the group, interleaved round by round, so drift
                        // on a shared machine falls on all of them alike.
                        let keys: Vec<(Option<f64>, bool)> = g
                            .cases
                            .iter()
                            .filter_map(|c| match c {
                                Case::Traced {
                                    ratio,
                                    collector_down,
                                } => Some((*ratio, *collector_down)),
                                _ => None,
                            })
                            .collect();
                        let receiver = super::otlp::Receiver::start_counting().await;
                        // Nothing listens there.
                        let down = format!("http://127.0.0.1:{}", free_port());
                        let mut runs: Vec<TracedRun> = Vec::new();
                        for _ in 0..traced_runs() {
                            for (r, is_down) in &keys {
                                // A fresh group each run (its name holds the admin port).
                                let mut c =
                                    relay_config(&lab, &topic, &table, "", &Target::Blackhole, i);
                                if let Some(r) = r {
                                    let endpoint = if *is_down {
                                        down.clone()
                                    } else {
                                        receiver.endpoint()
                                    };
                                    c.text.push_str(&format!(
                                        "\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nsampler = \"traceidratio\"\nsampler_ratio = {r}\n"
                                    ));
                                }
                                let run = relay_run(relay_bin, &c, g.records, None).await;
                                eprintln!(
                                    "bench:     traced {r:?}{}: {}",
                                    if *is_down { ", collector down" } else { "" },
                                    run.as_ref().map_or_else(
                                        |e| e.clone(),
                                        |f| format!(
                                            "{:.0} records/s, {:.4} CPU s/1k",
                                            f.rate, f.cpu_s_per_1k
                                        )
                                    )
                                );
                                let rate = run.as_ref().ok().map(|f| f.rate);
                                match traced_rates.iter_mut().find(|(k, _)| *k == (*r, *is_down)) {
                                    Some((_, v)) => v.push(rate),
                                    None => traced_rates.push(((*r, *is_down), vec![rate])),
                                }
                                runs.push(((*r, *is_down), run));
                            }
                        }
                        eprintln!(
                            "bench:   {} spans received over {} traced runs",
                            receiver.count(),
                            runs.iter().filter(|((r, _), _)| r.is_some()).count()
                        );
                        traced = Some(runs);
                    }
                    let runs = traced.as_mut().map(|t| {
                        let (mine, rest): (Vec<_>, Vec<_>) =
                            std::mem::take(t).into_iter().partition(|(k, _)| *k == key);
                        *t = rest;
                        mine
                    });
                    let mut ok: Vec<RelayFigures> = Vec::new();
                    let mut err = None;
                    for (_, r) in runs.unwrap_or_default() {
                        match r {
                            Ok(f) => ok.push(f),
                            Err(e) => err = Some(e),
                        }
                    }
                    ok.sort_by(|a, b| a.rate.total_cmp(&b.rate));
                    let mid = ok.len() / 2;
                    m.take(match (ok.len(), err) {
                        (n, None) if n > 0 => Ok(ok.swap_remove(mid)),
                        (_, Some(e)) => Err(e),
                        _ => Err("no run".into()),
                    });
                    // Against tracing off round by round: drift on a shared machine cancels out.
                    let of = |k: (Option<f64>, bool)| {
                        traced_rates
                            .iter()
                            .find(|(x, _)| *x == k)
                            .map(|(_, v)| v.clone())
                    };
                    if key.0.is_some()
                        && let (Some(mine), Some(off)) = (of(key), of((None, false)))
                    {
                        let mut ratios: Vec<f64> = mine
                            .iter()
                            .zip(&off)
                            .filter_map(|(a, b)| Some((*a)? / (*b)?))
                            .collect();
                        ratios.sort_by(f64::total_cmp);
                        if let Some(r) = ratios.get(ratios.len() / 2) {
                            m.case = format!("{}; paired ratio to off {r:.2}", m.case);
                        }
                    }
                }
                Case::Paced { fraction } => {
                    let Some(max) = blackhole_rate else {
                        m.skipped = Some("needs the group's blackhole case first".into());
                        out.push(m);
                        continue;
                    };
                    let rate = (max * fraction).max(1.0) as u32;
                    // About 4 s of load, within the mock cluster's retention.
                    let records = (u64::from(rate) * 4).min(g.records);
                    m.records = records;
                    let paced_topic = format!("bench.{table}paced{}", (fraction * 100.0) as u32);
                    lab.kafka
                        .create_topic(&paced_topic, g.partitions)
                        .map_err(setup("topic"))?;
                    // The group's records, copied at the rate: produced ahead of time, so the
                    // feeder spends ~1 µs per record, not an encoder's and planner's worth.
                    let copied = read_records(lab.kafka.bootstrap_servers(), &topic, g, records);
                    let feed = Paced {
                        bootstrap: lab.kafka.bootstrap_servers().to_string(),
                        topic: paced_topic.clone(),
                        records: copied,
                        rate,
                    };
                    let cfg = relay_config(&lab, &paced_topic, &table, "", &Target::Blackhole, i);
                    m.take(relay_run(relay_bin, &cfg, records, Some(feed)).await);
                }
            }
            m.record_bytes = record_bytes;
            m.ratio_to_raw = match (m.records_per_sec, raw_rate) {
                (Some(r), Some(raw)) if raw > 0.0 => Some(r / raw),
                _ => None,
            };
            eprintln!(
                "bench:   {:<55} {}",
                m.case,
                match (&m.skipped, m.records_per_sec) {
                    (Some(why), _) => format!("skipped: {why}"),
                    (None, Some(r)) => format!("{r:>10.0} records/s"),
                    _ => "no figure".into(),
                }
            );
            out.push(m);
        }
    }
    Ok(out)
}

/// Up to `n` records (key, value) of the group's topic, read with a plain consumer.
fn read_records(bootstrap: &str, topic: &str, g: &Group, n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    use rdkafka::Message;
    let mut out = Vec::new();
    let Ok(c) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-copy")
        .set("enable.auto.commit", "false")
        .create::<BaseConsumer>()
    else {
        return out;
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..g.partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    if c.assign(&tpl).is_err() {
        return out;
    }
    let start = Instant::now();
    while (out.len() as u64) < n && start.elapsed() < Duration::from_secs(120) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Records produced at a steady rate (the paced latency case).
pub struct Paced {
    bootstrap: String,
    topic: String,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    rate: u32,
}

impl Paced {
    /// Produces every record, the n-th at n / rate seconds (1 ms linger), then flushes.
    fn produce(self) -> Result<(), String> {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "1")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        for (n, (k, v)) in self.records.iter().enumerate() {
            let due = Duration::from_secs_f64(n as f64 / f64::from(self.rate.max(1)));
            if let Some(ahead) = due.checked_sub(start.elapsed())
                && ahead > Duration::from_millis(1)
            {
                std::thread::sleep(ahead);
            }
            let mut rec = BaseRecord::to(&self.topic)
                .key(k.as_slice())
                .payload(v.as_slice());
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        p.poll(Duration::from_millis(1));
                        rec = r;
                    }
                }
            }
            if n % 256 == 0 {
                p.poll(Duration::ZERO);
            }
        }
        p.flush(Duration::from_secs(30)).map_err(|e| e.to_string())
    }
}

/// Reads every record of the group's topic with a plain consumer; (records/s, mean value bytes).
fn raw_consume(bootstrap: &str, topic: &str, g: &Group) -> (f64, u64) {
    use rdkafka::Message;
    let c: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(_) => return (0.0, 0),
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..g.partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    if c.assign(&tpl).is_err() {
        return (0.0, 0);
    }
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < g.records && start.elapsed() < Duration::from_secs(300) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            n += 1;
            bytes += m.payload().map_or(0, |p| p.len() as u64);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs.max(1e-9), bytes / n.max(1))
}

/// kcat reading the topic to its end, if kcat is installed.
fn kcat_rate(bootstrap: &str, topic: &str, records: u64) -> Option<f64> {
    let start = Instant::now();
    let out = Command::new("kcat")
        .args([
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "\n",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let n = out.stdout.iter().filter(|b| **b == b'\n').count() as u64;
    (out.status.success() && n >= records).then(|| n as f64 / start.elapsed().as_secs_f64())
}

/// A raw SDK client's conditional PutItems into moto, as the relay writes them.
async fn raw_sdk(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    records: u64,
    note_bytes: usize,
    concurrency: usize,
) -> Result<f64, BenchError> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use futures::StreamExt;
    let note = "x".repeat(note_bytes.max(16));
    let start = Instant::now();
    let results: Vec<bool> = futures::stream::iter(0..records)
        .map(|i| {
            let note = note.clone();
            async move {
                ddb.put_item()
                    .table_name(table)
                    .item("pk", A::S((i % 10_000).to_string()))
                    .item("_seq", A::S(format!("{i:040}")))
                    .item("note", A::S(note))
                    .condition_expression("attribute_not_exists(#pk) OR #seq < :seq")
                    .expression_attribute_names("#pk", "pk")
                    .expression_attribute_names("#seq", "_seq")
                    .expression_attribute_values(":seq", A::S(format!("{i:040}")))
                    .send()
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let ok = results.iter().filter(|r| **r).count() as u64;
    if ok < records * 9 / 10 {
        return Err(BenchError::Setup(format!(
            "raw SDK writer: only {ok} of {records} writes succeeded"
        )));
    }
    Ok(records as f64 / start.elapsed().as_secs_f64())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct RelayConfig {
    text: String,
    admin: String,
}

fn relay_config(
    lab: &Lab,
    topic: &str,
    table: &str,
    endpoint: &str,
    target: &Target,
    group: usize,
) -> RelayConfig {
    let port = free_port();
    let (mode, concurrency, output) = match target {
        Target::Responder {
            mode, concurrency, ..
        } => (
            *mode,
            *concurrency,
            format!("table = \"{table}\"\nwrite_mode = \"{mode}\""),
        ),
        Target::Moto => (
            "conditional",
            None,
            format!("table = \"{table}\"\nwrite_mode = \"conditional\""),
        ),
        Target::Blackhole => (
            "blackhole",
            None,
            "[[routes.outputs]]\ntype = \"blackhole\"".to_string(),
        ),
    };
    let dynamodb = concurrency
        .map(|c| format!("[dynamodb]\nconcurrency = {c}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bs}"
group_id = "bench-{group}-{mode}-{port}"
topics = ["{topic}"]
commit_interval = "100ms"
[schema_registry]
url = "{reg}"
[aws]
region = "us-west-2"
endpoint_url = "{aws}"
{dynamodb}[admin]
listen = "127.0.0.1:{port}"
[[routes]]
topic = "{topic}"
key = ["id"]
{output}
"#,
        bs = lab.kafka.bootstrap_servers(),
        reg = lab.registry.url(),
        aws = if endpoint.is_empty() {
            "http://127.0.0.1:9"
        } else {
            endpoint
        },
    );
    // `CDC_RELAY_BENCH_EXTRA`: TOML appended to every relay config (experiments, e.g. a
    // `[runtime]` section); the figures then describe that configuration, not the default.
    let extra = std::env::var("CDC_RELAY_BENCH_EXTRA").unwrap_or_default();
    RelayConfig {
        text: format!("{text}\n{extra}\n"),
        admin: format!("http://127.0.0.1:{port}"),
    }
}

struct RelayFigures {
    rate: f64,
    cpu_s_per_1k: f64,
    machine_busy_pct: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    peak_rss_mb: Option<f64>,
}

/// The relay process; killed if still running when dropped.
struct RelayProcess(Child);

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of `pid`.
/// The machine's (busy, total) CPU ticks since boot, from `/proc/stat`'s `cpu` line (idle and
/// iowait count as not busy).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The share of all cores busy between two `machine_ticks` samples, in %.
fn busy_pct(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    (t1 > t0).then(|| (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64)
}

fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// Records completed by the relay (written, stale, skipped, dead-lettered), from `/status`.
async fn processed(client: &reqwest::Client, admin: &str) -> Option<u64> {
    let st: serde_json::Value = client
        .get(format!("{admin}/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let r = &st["records"];
    Some(
        ["written", "stale", "skipped", "dead_lettered", "superseded"]
            .iter()
            .map(|k| r[*k].as_u64().unwrap_or(0))
            .sum(),
    )
}

/// Whether the relay's consumer owns at least one partition and is running.
async fn assigned(client: &reqwest::Client, admin: &str) -> bool {
    let Some(st) = async {
        client
            .get(format!("{admin}/status"))
            .send()
            .await
            .ok()?
            .json::<serde_json::Value>()
            .await
            .ok()
    }
    .await
    else {
        return false;
    };
    st["partitions"].as_array().is_some_and(|p| !p.is_empty())
}

/// Records the relay has consumed so far (`cdc_relay_records_consumed_total`, all topics).
async fn consumed(client: &reqwest::Client, admin: &str) -> Option<u64> {
    let text = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("cdc_relay_records_consumed_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

/// A quantile of a Prometheus histogram, interpolated linearly within its bucket.
pub fn histogram_quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                0.0
            };
            return Some(prev.0 + (le - prev.0) * within);
        }
        prev = (le, count);
    }
    None
}

/// Starts the relay on `cfg`, waits until it completed `records`, and measures it.
/// Runs the relay binary on `cfg` until `records` are done. With `feed`, the records are
/// produced (at the spec's rate) once the relay owns every partition of its topic.
async fn relay_run(
    bin: &Path,
    cfg: &RelayConfig,
    records: u64,
    feed: Option<Paced>,
) -> Result<RelayFigures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, &cfg.text).map_err(|e| e.to_string())?;
    let check = Command::new(bin)
        .arg("check-config")
        .arg(&path)
        .output()
        .map_err(|e| e.to_string())?;
    if !check.status.success() {
        return Err(format!(
            "this relay does not accept the case's config: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        ));
    }
    let log = dir.path().join("relay.log");
    let child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    // `CDC_RELAY_BENCH_PERF=<file>` with `CDC_RELAY_BENCH_PERF_CASE=<part of a case config>`:
    // a CPU profile of that case's relay process (`perf record -g`, DWARF call graphs).
    let perf = match (
        std::env::var("CDC_RELAY_BENCH_PERF"),
        std::env::var("CDC_RELAY_BENCH_PERF_CASE"),
    ) {
        (Ok(out), Ok(case)) if cfg.text.contains(&case) => Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-o",
                &out,
                "-p",
            ])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok(),
        _ => None,
    };
    let mut proc = RelayProcess(child);
    let ticks = clock_ticks();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut feeder = None;
    let mut feed = feed;
    let mut first: Option<(Instant, u64, f64)> = None;
    let last: (Instant, u64, f64);
    let mut machine_first = None;
    let machine_last;
    loop {
        if feed.is_some()
            && assigned(&client, &cfg.admin).await
            && let Some(paced) = feed.take()
        {
            feeder = Some(tokio::task::spawn_blocking(move || paced.produce()));
        }
        if feeder
            .as_ref()
            .is_some_and(tokio::task::JoinHandle::is_finished)
            && let Some(f) = feeder.take()
            && let Ok(Err(e)) = f.await
        {
            return Err(format!("producing the paced records failed: {e}"));
        }
        if let Ok(Some(st)) = proc.0.try_wait() {
            return Err(format!(
                "the relay exited ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("not done within 10 minutes".into());
        }
        let Some(n) = processed(&client, &cfg.admin).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let now = Instant::now();
        let cpu = cpu_seconds(pid, ticks).unwrap_or(0.0);
        // From the first record consumed (group join and start-up excluded) to the last done: the
        // rate includes fetching, so it cannot exceed what the consumer fetches, and the CPU
        // window includes decoding the first records.
        if first.is_none() && consumed(&client, &cfg.admin).await.unwrap_or(0) > 0 {
            first = Some((now, n, cpu));
            machine_first = machine_ticks();
        }
        if n >= records {
            last = (now, n, cpu);
            machine_last = machine_ticks();
            break;
        }
        // `CDC_RELAY_BENCH_TRACE=1`: the progress of the run, sample by sample.
        if std::env::var_os("CDC_RELAY_BENCH_TRACE").is_some()
            && let Some((t0, _, c0)) = first
        {
            eprintln!(
                "bench:     {:>6.0} ms  {n:>7} done  {:>6.2} CPU s",
                (now - t0).as_secs_f64() * 1000.0,
                cpu - c0
            );
        }
        // Polled every 5 ms until the first record, then at most every 50 ms, and closer to
        // the end the nearer it is: a fixed 50 ms step would end a sub-second run up to 50 ms
        // late (7% of a 0.7 s window), more noise than the differences being measured.
        let pause = match first {
            None => 5.0,
            Some((t0, n0, _)) if n > n0 => {
                let per_record = (now - t0).as_secs_f64() * 1000.0 / (n - n0) as f64;
                (records.saturating_sub(n) as f64 * per_record / 2.0).clamp(2.0, 50.0)
            }
            Some(_) => 50.0,
        };
        tokio::time::sleep(Duration::from_secs_f64(pause / 1000.0)).await;
    }
    let metrics = client
        .get(format!("{}/metrics", cfg.admin))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let rss = peak_rss_mb(pid);
    if let Some(mut p) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && matches!(proc.0.try_wait(), Ok(None)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From the first record consumed to the last done when the run gave two distinct samples,
    // else the whole run.
    let (rate, cpu_per) = match (first, last) {
        (Some((t0, n0, c0)), (t1, n1, c1)) if n1 > n0 && t1 > t0 => (
            (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
            (c1 - c0) / (n1 - n0) as f64 * 1000.0,
        ),
        _ => {
            let secs = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds(pid, ticks).unwrap_or(0.0);
            (records as f64 / secs, cpu / records.max(1) as f64 * 1000.0)
        }
    };
    let q = |q| {
        histogram_quantile(&metrics, "cdc_relay_processing_latency_seconds", q).map(|s| s * 1000.0)
    };
    Ok(RelayFigures {
        rate,
        cpu_s_per_1k: cpu_per,
        machine_busy_pct: busy_pct(machine_first, machine_last),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        peak_rss_mb: rss,
    })
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
}

/// The results as a Markdown table.
pub fn table(results: &[Measured]) -> String {
    let mut t = String::from(
        "| group | case | record bytes | records | records/s | × raw | p50 ms | p99 ms | CPU s / 1k | machine busy % | peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for m in results {
        if let Some(why) = &m.skipped {
            t.push_str(&format!(
                "| {} | {} | {} | {} | skipped: {why} | | | | | | |\n",
                m.group, m.case, m.record_bytes, m.records
            ));
            continue;
        }
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            m.group,
            m.case,
            m.record_bytes,
            m.records,
            fmt(m.records_per_sec, 0),
            fmt(m.ratio_to_raw, 3),
            fmt(m.p50_ms, 2),
            fmt(m.p99_ms, 2),
            fmt(m.cpu_s_per_1k, 3),
            fmt(m.machine_busy_pct, 0),
            fmt(m.peak_rss_mb, 0),
        ));
    }
    t
}

/// Throughput against concurrency per write mode (the delay cases), as an SVG line chart.
pub fn plot(results: &[Measured], path: &PathBuf) -> Result<(), String> {
    use plotters::prelude::*;
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for m in results {
        if let (
            Some(Target::Responder {
                mode,
                delay_ms,
                concurrency: Some(c),
            }),
            Some(r),
        ) = (&m.target, m.records_per_sec)
            && *delay_ms > 0
        {
            series.entry(mode).or_default().push((*c as f64, r));
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    let max_y = series
        .values()
        .flatten()
        .map(|(_, r)| *r)
        .fold(0.0, f64::max)
        * 1.1;
    let max_x = series
        .values()
        .flatten()
        .map(|(c, _)| *c)
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "relay → responder with 5 ms per request: records/s against sink concurrency",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((8f64..max_x * 1.3).log_scale(), 0f64..max_y.max(1.0))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("dynamodb.concurrency (batches in flight)")
        .y_desc("records/s")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (mode, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(mode)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
