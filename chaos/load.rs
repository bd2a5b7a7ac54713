//! The scenario's load: an outside producer (rdkafka, idempotent, retrying without a deadline)
//! writing CDC records at a steady rate for the whole scenario, from the oracle's seeded stream
//! (`cdc_relay::generate::Stream`), with a share of deliberately corrupt records when asked.
//! Every record the broker acknowledged becomes a `Produced` entry: where it landed and what it
//! must leave in DynamoDB.
//!
//! Producing and recording only: it must not read DynamoDB or judge; a record the broker never
//! acknowledged is not in the history, and one whose delivery failed fails the scenario (its
//! fate would be unknown).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cdc_relay::generate::{GenerateSpec, Generated, Stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use crate::history::{Pos, Produced};

/// Where records go: a cluster (its label in the history), its bootstrap servers and, when it is
/// not the stream's own topic, the topic (a promoted mirror topic after a region is lost).
#[derive(Debug, Clone)]
pub struct Target {
    pub cluster: String,
    pub bootstrap: String,
    pub topic: Option<String>,
}

/// What the scenario tells a running load.
enum Ctl {
    /// Stop producing and settle every record in flight; acknowledged once settled.
    Hold(tokio::sync::oneshot::Sender<()>),
    /// Go on producing, to a new target if given.
    Resume(Option<Target>),
}

/// What the load produces.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: Target,
    pub registry_url: String,
    pub table: String,
    pub topic: String,
    pub keys: u32,
    /// Records per second.
    pub rate: u32,
    pub seed: u64,
}

/// A running load: change its poison share, stop it and take what it produced.
pub struct Load {
    ctl: tokio::sync::mpsc::UnboundedSender<Ctl>,
    poison_permille: watch::Sender<u32>,
    stop: watch::Sender<bool>,
    acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<Vec<Produced>, String>>,
}

impl Load {
    /// Registers the schema and starts producing.
    pub async fn start(spec: LoadSpec) -> Load {
        let gen_spec = GenerateSpec {
            bootstrap_servers: spec.target.bootstrap.clone(),
            registry: cdc_relay::config::RegistryConfig {
                url: Some(spec.registry_url.clone()),
                ..Default::default()
            },
            envelope: cdc_relay::config::EnvelopeKind::Qlik,
            format: cdc_relay::config::ValueFormat::Avro,
            tables: vec![spec.table.clone()],
            topic_prefix: spec
                .topic
                .strip_suffix(&spec.table)
                .unwrap_or_else(|| panic!("topic {} ends with its table", spec.topic))
                .to_string(),
            keys_per_table: spec.keys,
            records: u64::MAX / 2,
            first_record: 0,
            seed: spec.seed,
            rate: None,
            mix: Default::default(),
            producer_properties: BTreeMap::new(),
            note_bytes: 0,
            traceparent: false,
        };
        let stream = Stream::new(&gen_spec)
            .await
            .unwrap_or_else(|e| panic!("the load's stream: {e}"));
        let (poison_permille, poison_rx) = watch::channel(0u32);
        let (stop, stop_rx) = watch::channel(false);
        let acked = Arc::new(AtomicU64::new(0));
        let (ctl, ctl_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(run(spec, stream, poison_rx, stop_rx, ctl_rx, acked.clone()));
        Load {
            ctl,
            poison_permille,
            stop,
            acked,
            task,
        }
    }

    /// From now on, `permille` of the records are corrupt (truncated Avro or a bad magic byte).
    pub fn set_poison(&self, permille: u32) {
        let _ = self.poison_permille.send(permille);
    }

    /// Stops producing and returns once every record sent so far is acknowledged: the fate of
    /// each is known before a fault that could leave an acknowledgement unanswered.
    pub async fn hold(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.ctl.send(Ctl::Hold(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Produces again after `hold`, to `target` when given.
    pub fn resume(&self, target: Option<Target>) {
        let _ = self.ctl.send(Ctl::Resume(target));
    }

    /// Records the broker acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Stops producing, waits for every outstanding delivery and returns the records.
    pub async fn stop(self) -> Vec<Produced> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => panic!("the load failed: {e}"),
            Err(e) => panic!("the load's task: {e}"),
        }
    }
}

/// A record sent and not yet acknowledged.
struct InFlight {
    delivery: rdkafka::producer::DeliveryFuture,
    change: Generated,
    poison: bool,
}

async fn run(
    spec: LoadSpec,
    mut stream: Stream,
    poison: watch::Receiver<u32>,
    mut stop: watch::Receiver<bool>,
    mut ctl: tokio::sync::mpsc::UnboundedReceiver<Ctl>,
    acked: Arc<AtomicU64>,
) -> Result<Vec<Produced>, String> {
    let mut target = spec.target.clone();
    let mut producer = producer_for(&target)?;
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5eed);
    let mut started = Instant::now();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut produced = Vec::new();
    let mut sent_since = 0u64;
    while !*stop.borrow() {
        if let Ok(Ctl::Hold(ack)) = ctl.try_recv() {
            settle(&target, &mut in_flight, &mut produced, &acked).await?;
            let _ = ack.send(());
            let resumed = loop {
                tokio::select! {
                    c = ctl.recv() => match c {
                        Some(Ctl::Resume(t)) => break t,
                        Some(Ctl::Hold(ack)) => { let _ = ack.send(()); }
                        None => return Ok(produced),
                    },
                    _ = stop.changed() => return Ok(produced),
                }
            };
            if let Some(t) = resumed {
                producer = producer_for(&t)?;
                target = t;
            }
            // The rate restarts from here (the hold is not made up for).
            started = Instant::now();
            sent_since = 0;
        }
        let Some(change) = stream.next_change().map_err(|e| e.to_string())? else {
            break;
        };
        let permille = *poison.borrow();
        let is_poison = permille > 0 && rng.random_range(0..1000) < permille;
        let payload = if is_poison {
            corrupt(&change.payload, rng.random_bool(0.5))
        } else {
            change.payload.clone()
        };
        let topic = target.topic.clone().unwrap_or_else(|| change.topic.clone());
        let delivery = producer
            .send_result(
                FutureRecord::to(&topic)
                    .key(change.pk.as_bytes())
                    .payload(&payload),
            )
            .map_err(|(e, _)| format!("enqueue: {e}"))?;
        in_flight.push(InFlight {
            delivery,
            change: Generated {
                payload: Vec::new(),
                topic,
                ..change
            },
            poison: is_poison,
        });
        sent_since += 1;
        if in_flight.len() >= 200 {
            settle(&target, &mut in_flight, &mut produced, &acked).await?;
        }
        let due = Duration::from_secs_f64(sent_since as f64 / f64::from(spec.rate.max(1)));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    settle(&target, &mut in_flight, &mut produced, &acked).await?;
    Ok(produced)
}

fn producer_for(t: &Target) -> Result<FutureProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", &t.bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // No delivery deadline: a record is retried through any outage until acknowledged.
        .set("message.timeout.ms", "0")
        .create()
        .map_err(|e| e.to_string())
}

/// Awaits the deliveries in order and records each acknowledged record.
async fn settle(
    target: &Target,
    in_flight: &mut Vec<InFlight>,
    produced: &mut Vec<Produced>,
    acked: &AtomicU64,
) -> Result<(), String> {
    for f in in_flight.drain(..) {
        let d = f
            .delivery
            .await
            .map_err(|_| "delivery cancelled".to_string())?
            .map_err(|(e, _)| format!("delivery of {}/{}: {e}", f.change.topic, f.change.pk))?;
        let change = if f.poison {
            None
        } else {
            let seq = f
                .change
                .seq
                .clone()
                .ok_or("the qlik envelope carries its _seq")?;
            let item = Stream::expected_item(&f.change, &seq);
            Some((seq, item))
        };
        produced.push(Produced {
            pos: Pos {
                cluster: target.cluster.clone(),
                topic: f.change.topic.clone(),
                partition: d.partition,
                offset: d.offset,
            },
            table: f.change.table.clone(),
            pk: f.change.pk.clone(),
            change,
        });
        acked.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// A record no relay can decode: the Avro datum cut short behind its valid header (the schema is
/// found, the datum is not whole), or a wrong magic byte.
fn corrupt(payload: &[u8], truncate: bool) -> Vec<u8> {
    if truncate && payload.len() > 8 {
        payload[..5 + (payload.len() - 5) / 4].to_vec()
    } else {
        let mut p = payload.to_vec();
        if let Some(b) = p.first_mut() {
            *b = 0x07;
        }
        p
    }
}
