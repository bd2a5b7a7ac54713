//! criterion micro-benchmarks of the record path's pieces (`make bench`): wire format + Avro
//! decode per envelope, routing (item building and DynamoDB's rules), `OffsetTracker` under
//! random completion, the sink pool's batching with a sink that does nothing, and the AWS SDK's
//! per-request cost: the DynamoDB output writing to the accept-all responder on loopback (request
//! building, SigV4 signing, HTTP round trip, response parsing), one request at a time and 64 at
//! once, per write mode.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use cdc_relay::config::{Config, EnvelopeKind, ValueFormat};
use cdc_relay::decode::registry::RegistryClient;
use cdc_relay::decode::{Decoded, Decoder};
use cdc_relay::event::SourcePos;
use cdc_relay::partition::offsets::OffsetTracker;
use cdc_relay::route::{Route, WriteRequest};
use cdc_relay::sinks::pool::{PoolHandle, PoolSettings, PoolSpec};
use cdc_relay::sinks::{BatchLimits, Sink, SinkResult};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::seq::SliceRandom;

const RECORDS: u64 = 1000;

fn config(envelope: &str) -> Config {
    Config::from_toml(&format!(
        "[kafka]\nbootstrap_servers='127.0.0.1:9'\ntopics=['bench.customers']\n[schema_registry]\nschemas_dir='{}'\n[[routes]]\ntopic='bench.customers'\ntable='customers'\nkey=['id']\nenvelope='{envelope}'\n",
        schemas_dir().display()
    ))
    .expect("bench config")
}

/// A `schemas_dir` with schema id 1 per envelope (one directory per envelope).
fn schemas_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cdc-relay-bench-schemas-{}", std::process::id()))
}

fn decoder_for(envelope: EnvelopeKind) -> Decoder {
    let dir = schemas_dir().join(format!("{envelope:?}"));
    std::fs::create_dir_all(&dir).expect("schemas dir");
    std::fs::write(
        dir.join("1.avsc"),
        cdc_relay::generate::envelope_schema(envelope, "customers"),
    )
    .expect("schema file");
    Decoder::new(
        RegistryClient::new(&cdc_relay::config::RegistryConfig {
            schemas_dir: Some(dir.display().to_string()),
            ..Default::default()
        })
        .expect("registry client"),
    )
}

fn pos(offset: i64) -> SourcePos {
    SourcePos {
        topic: "bench.customers".into(),
        partition: 0,
        offset,
    }
}

fn decode_and_route(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (name, envelope) in [
        ("qlik", EnvelopeKind::Qlik),
        ("debezium", EnvelopeKind::Debezium),
        ("simple", EnvelopeKind::Simple),
    ] {
        let payloads = cdc_relay::generate::sample_payloads(
            envelope,
            ValueFormat::Avro,
            "customers",
            1,
            RECORDS,
            130,
        )
        .expect("payloads");
        let cfg = config(name);
        let route_cfg = cfg.routes[0].clone();
        let decoder = decoder_for(envelope);
        let route = Route::new(route_cfg.clone());
        // Warm the schema cache.
        rt.block_on(decoder.decode(&route_cfg, Some(&payloads[0]), pos(0)))
            .expect("decodes");
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.throughput(Throughput::Elements(RECORDS));
        g.bench_function("wire+avro+envelope", |b| {
            b.iter(|| {
                rt.block_on(async {
                    for (i, p) in payloads.iter().enumerate() {
                        black_box(
                            decoder
                                .decode(&route_cfg, Some(p), pos(i as i64))
                                .await
                                .expect("decodes"),
                        );
                    }
                })
            })
        });
        let events: Vec<_> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                match rt
                    .block_on(decoder.decode(&route_cfg, Some(p), pos(i as i64)))
                    .expect("decodes")
                {
                    Decoded::Change(ev) => ev,
                    Decoded::Skipped(s) => panic!("skipped {s:?}"),
                }
            })
            .collect();
        g.bench_function("route (item + DynamoDB rules)", |b| {
            b.iter_batched(
                || events.clone(),
                |evs| {
                    for ev in evs {
                        black_box(route.build(&ev, Some(1), 400 * 1024).expect("routes"));
                    }
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

fn offset_tracker(c: &mut Criterion) {
    let mut order: Vec<i64> = (0..RECORDS as i64).collect();
    order.shuffle(&mut rand::rng());
    let mut g = c.benchmark_group("offset_tracker");
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("track + random completion", |b| {
        b.iter(|| {
            let mut t = OffsetTracker::new(None);
            for o in 0..RECORDS as i64 {
                t.track(o, Some(o)).expect("in order");
            }
            for o in &order {
                t.complete(*o).expect("tracked");
            }
            black_box(t.committable())
        })
    });
    g.finish();
}

/// A sink that acknowledges every request at once.
struct Nothing;

#[async_trait::async_trait]
impl Sink<WriteRequest> for Nothing {
    fn name(&self) -> &str {
        "bench:nothing"
    }
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_count: 25,
            max_bytes: 16 * 1024 * 1024,
            per_request: false,
        }
    }
    async fn write_batch(&self, batch: &[Arc<WriteRequest>]) -> Vec<SinkResult> {
        vec![SinkResult::Done; batch.len()]
    }
}

/// `n` DynamoDB write requests built from sample Qlik records, as the route builds them.
fn write_requests(rt: &tokio::runtime::Runtime, n: u64) -> Vec<Arc<WriteRequest>> {
    let cfg = config("qlik");
    let route = Route::new(cfg.routes[0].clone());
    let decoder = decoder_for(EnvelopeKind::Qlik);
    let payloads = cdc_relay::generate::sample_payloads(
        EnvelopeKind::Qlik,
        ValueFormat::Avro,
        "customers",
        1,
        n,
        130,
    )
    .expect("payloads");
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let Decoded::Change(ev) = rt
                .block_on(decoder.decode(&cfg.routes[0], Some(p), pos(i as i64)))
                .expect("decodes")
            else {
                panic!("skipped")
            };
            Arc::new(route.build(&ev, None, 400 * 1024).expect("routes"))
        })
        .collect()
}

fn pool(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let requests = write_requests(&rt, RECORDS);
    let handle = PoolHandle::new(
        Arc::new(Nothing),
        PoolSettings {
            concurrency: 64,
            linger: Duration::from_millis(1),
            retry: Default::default(),
            misconfig_backoff: Duration::from_secs(1),
            breaker: Default::default(),
        },
    );
    rt.block_on(async {
        ractor::Actor::spawn(
            None,
            cdc_relay::supervision::Supervisor,
            cdc_relay::supervision::SupervisorArgs {
                policy: Default::default(),
                children: vec![Arc::new(PoolSpec(handle.clone()))],
                escalate_to: None,
            },
        )
        .await
        .expect("pool starts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(RECORDS));
    g.bench_function("1000 single-request writes, no-op sink", |b| {
        b.iter(|| {
            rt.block_on(async {
                let cancel = tokio_util::sync::CancellationToken::new();
                let writes = requests
                    .iter()
                    .map(|r| handle.write(Arc::clone(r), &cancel, true));
                black_box(futures::future::join_all(writes).await)
            })
        })
    });
    g.bench_function("one 1000-request batch, no-op sink", |b| {
        b.iter(|| {
            rt.block_on(async {
                let cancel = tokio_util::sync::CancellationToken::new();
                black_box(handle.write_batch(&requests, &cancel, true).await)
            })
        })
    });
    g.finish();
}

/// The DynamoDB output's cost per request against the accept-all responder (no delay).
fn sdk_request(c: &mut Criterion) {
    use cdc_relay::config::{AwsConfig, WriteMode};
    use cdc_relay::sinks::dynamodb::DynamoDbSink;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let responder = rt
        .block_on(support::responder::Responder::start(Duration::ZERO))
        .expect("responder");
    let sdk = rt.block_on(cdc_relay::sinks::aws::sdk_config(
        &AwsConfig {
            region: Some("us-west-2".into()),
            endpoint_url: Some(responder.url()),
        },
        Duration::from_secs(5),
    ));
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let requests = write_requests(&rt, 100);
    let mut g = c.benchmark_group("sdk (DynamoDB output → loopback responder)");
    // Through the SDK, then through DynamoDB's JSON protocol directly (`dynamodb_wire`, what
    // the relay uses for conditional writes), without the SDK's orchestrator.
    let wire = cdc_relay::sinks::dynamodb_wire::WireClient::new(&sdk, Duration::from_secs(5))
        .expect("wire client");
    let sdk_sink = DynamoDbSink::new(client.clone(), "customers", WriteMode::Conditional);
    let wire_sink = DynamoDbSink::new(client.clone(), "customers", WriteMode::Conditional)
        .with_wire(Arc::new(wire));
    for (path, sink) in [("", sdk_sink), (", wire", wire_sink)] {
        let conditional = Arc::new(sink);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("conditional PutItem, one at a time{path}"), |b| {
            let one = &requests[..1];
            b.iter(|| rt.block_on(async { black_box(conditional.write_batch(one).await) }))
        });
        g.throughput(Throughput::Elements(64));
        g.bench_function(format!("conditional PutItem, 64 at once{path}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let writes = requests[..64]
                        .iter()
                        .map(|r| conditional.write_batch(std::slice::from_ref(r)));
                    black_box(futures::future::join_all(writes).await)
                })
            })
        });
    }
    let transact = DynamoDbSink::new(client, "customers", WriteMode::Transact);
    g.throughput(Throughput::Elements(100));
    g.bench_function("TransactWriteItems of 100, per item", |b| {
        b.iter(|| rt.block_on(async { black_box(transact.write_batch(&requests).await) }))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = decode_and_route, offset_tracker, pool, sdk_request
}
criterion_main!(benches);
