//! Watching a scenario from outside, as a user's tools would: the group's committed offsets read
//! with OffsetFetch (an rdkafka client that never joins the group), the clusters' end offsets,
//! DynamoDB scanned with the AWS SDK (each scan after a commit reading, so a record committed
//! before the scan must show in it), and at the end the DLQ (SQS) and the event queue.
//!
//! Observing and recording only: it must not inject faults or judge. A cluster that does not
//! answer (killed) gives no reading; a scan that does not finish (moto frozen) gives no sample.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::history::{Commits, DlqEntry, Pos, Sample};

/// One cluster the group may commit on: its label, bootstrap servers and the topic read there.
#[derive(Debug, Clone)]
pub struct Watched {
    pub cluster: String,
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
}

/// A client per watched cluster, in `group` (it never joins it: OffsetFetch and ListOffsets only).
pub struct Readers {
    clients: Vec<(Watched, BaseConsumer)>,
}

impl Readers {
    pub fn new(group: &str, watched: &[Watched]) -> Readers {
        let clients = watched
            .iter()
            .filter_map(|w| {
                ClientConfig::new()
                    .set("bootstrap.servers", &w.bootstrap)
                    .set("group.id", group)
                    .create::<BaseConsumer>()
                    .ok()
                    .map(|c| (w.clone(), c))
            })
            .collect();
        Readers { clients }
    }

    /// Committed offsets on every watched cluster that answers (next offset to consume).
    pub fn commits(&self) -> Commits {
        let mut out = Commits::new();
        for (w, c) in &self.clients {
            let mut tpl = TopicPartitionList::new();
            for p in 0..w.partitions {
                tpl.add_partition(&w.topic, p);
            }
            let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(2)) else {
                continue;
            };
            for p in 0..w.partitions {
                if let Some(Offset::Offset(o)) = got.find_partition(&w.topic, p).map(|e| e.offset())
                {
                    out.insert((w.cluster.clone(), w.topic.clone(), p), o);
                }
            }
        }
        out
    }

    /// End offsets (high watermarks) per partition of each cluster; `None` where it does not
    /// answer.
    pub fn ends(&self) -> Vec<(Watched, Option<BTreeMap<i32, i64>>)> {
        self.clients
            .iter()
            .map(|(w, c)| {
                let ends = (0..w.partitions)
                    .map(|p| {
                        c.fetch_watermarks(&w.topic, p, Duration::from_secs(2))
                            .ok()
                            .map(|(_, high)| (p, high))
                    })
                    .collect();
                (w.clone(), ends)
            })
            .collect()
    }
}

/// The AWS SDK's configuration against `endpoint` (moto), with a per-attempt timeout generous
/// enough for a moto on a loaded 2-core machine (the sampler bounds its scans on its own).
async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    cdc_relay::sinks::aws::sdk_config(
        &cdc_relay::config::AwsConfig {
            region: Some("us-west-2".into()),
            endpoint_url: Some(endpoint.to_string()),
        },
        Duration::from_secs(30),
    )
    .await
}

pub async fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk(endpoint).await)
}

pub async fn sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk(endpoint).await)
}

/// What the sampler recorded, shared with the scenario while it runs.
#[derive(Debug, Default)]
pub struct Recorded {
    pub samples: Vec<Sample>,
    pub commit_readings: Vec<(u64, Commits)>,
    /// (ms since the start, consumer lag summed over the watched cluster the group reads).
    pub lag: Vec<(u64, i64)>,
}

/// Samples commits, lag and DynamoDB every `every` until cancelled.
pub struct Sampler {
    pub recorded: Arc<Mutex<Recorded>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(
        started: Instant,
        group: String,
        watched: Vec<Watched>,
        ddb: aws_sdk_dynamodb::Client,
        table: String,
        every: Duration,
    ) -> Sampler {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let cancel = CancellationToken::new();
        let (rec, stop) = (recorded.clone(), cancel.clone());
        let readers = Arc::new(Readers::new(&group, &watched));
        let task = tokio::spawn(async move {
            while !stop.is_cancelled() {
                let next = Instant::now() + every;
                let r = readers.clone();
                let (commits, ends) = tokio::task::spawn_blocking(move || (r.commits(), r.ends()))
                    .await
                    .unwrap_or_default();
                let at = started.elapsed().as_millis() as u64;
                let lag = lag_of(&commits, &ends);
                let scan = tokio::time::timeout(
                    Duration::from_secs(2),
                    cdc_relay::verify::scan_table(&ddb, &table, "pk"),
                )
                .await;
                {
                    let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
                    r.commit_readings.push((at, commits.clone()));
                    if let Some(l) = lag {
                        r.lag.push((at, l));
                    }
                    if let Ok(Ok(items)) = scan {
                        let seqs = items
                            .iter()
                            .filter_map(|(pk, it)| match it.get(cdc_relay::generate::ATTR_SEQ) {
                                Some(cdc_relay::event::Value::String(s)) => {
                                    Some((pk.clone(), s.clone()))
                                }
                                _ => None,
                            })
                            .collect();
                        r.samples.push(Sample {
                            at_ms: at,
                            commits,
                            seqs: BTreeMap::from([(table.clone(), seqs)]),
                        });
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stop.cancelled() => {}
                }
            }
        });
        Sampler {
            recorded,
            cancel,
            task,
        }
    }

    pub async fn stop(self) -> Recorded {
        self.cancel.cancel();
        let _ = self.task.await;
        match Arc::try_unwrap(self.recorded) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(shared) => std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }
}

/// Lag of the group on the cluster it has commits on with the highest total (the one it reads):
/// end offset minus committed offset, summed over partitions; `None` when that cluster did not
/// answer.
fn lag_of(commits: &Commits, ends: &[(Watched, Option<BTreeMap<i32, i64>>)]) -> Option<i64> {
    let mut best: Option<(i64, i64)> = None;
    for (w, e) in ends {
        let Some(e) = e else { continue };
        let mut committed = 0i64;
        let mut lag = 0i64;
        let mut any = false;
        for (p, end) in e {
            match commits.get(&(w.cluster.clone(), w.topic.clone(), *p)) {
                Some(c) => {
                    any = true;
                    committed += c;
                    lag += (end - c).max(0);
                }
                None => lag += end,
            }
        }
        if any && best.is_none_or(|(c, _)| committed > c) {
            best = Some((committed, lag));
        }
    }
    best.map(|(_, l)| l)
}

/// Creates the SQS queue `name` and returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating queue {name}: {e:?}"))
        .queue_url()
        .unwrap_or_default()
        .to_string()
}

/// An EventBridge bus whose rule forwards every cdc-relay event to a new SQS queue; returns the
/// queue's URL.
pub async fn bus_to_queue(endpoint: &str, bus: &str, queue: &str) -> String {
    let sdk = sdk(endpoint).await;
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let q = aws_sdk_sqs::Client::new(&sdk);
    let url = create_queue(&q, queue).await;
    let arn_attr = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let arn = q
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(arn_attr.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{queue}'s ARN: {e:?}"))
        .attributes()
        .and_then(|a| a.get(&arn_attr).cloned())
        .unwrap_or_default();
    eb.create_event_bus()
        .name(bus)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating bus {bus}: {e:?}"));
    eb.put_rule()
        .name("all-cdc")
        .event_bus_name(bus)
        .event_pattern(r#"{"source": ["cdc-relay"]}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("rule on {bus}: {e:?}"));
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(&arn)
        .build()
        .unwrap_or_else(|e| panic!("rule target: {e:?}"));
    eb.put_targets()
        .rule("all-cdc")
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .unwrap_or_else(|e| panic!("rule target on {bus}: {e:?}"));
    url
}

/// Every message body on `queue_url` (received with a long visibility timeout, not deleted),
/// until three receives in a row come back empty.
async fn drain_bodies(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut idle = 0;
    while idle < 3 {
        let resp = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading {queue_url}: {e:?}"));
        let msgs = resp.messages();
        if msgs.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        for m in msgs {
            out.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap_or_default());
        }
    }
    out
}

/// The event ids (`detail.event_id`) of every event the bus's rule delivered to `queue_url`.
pub async fn read_event_ids(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    drain_bodies(sqs, queue_url)
        .await
        .iter()
        .map(|b| {
            b["detail"]["event_id"]
                .as_str()
                .unwrap_or("(no detail.event_id)")
                .to_string()
        })
        .collect()
}

/// Every message on the DLQ queue (received, not deleted), as the checker reads it: the body's
/// own JSON fields, not the relay's types. `regions` maps a region name to its cluster label.
pub async fn read_dlq(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    regions: &BTreeMap<String, String>,
) -> Vec<DlqEntry> {
    drain_bodies(sqs, queue_url)
        .await
        .iter()
        .map(|body| {
            let region = body["region"].as_str().unwrap_or_default();
            DlqEntry {
                pos: Pos {
                    cluster: regions.get(region).cloned().unwrap_or(region.to_string()),
                    topic: body["topic"].as_str().unwrap_or_default().to_string(),
                    partition: body["partition"].as_i64().unwrap_or(-1) as i32,
                    offset: body["offset"].as_i64().unwrap_or(-1),
                },
                reason: body["error"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            }
        })
        .collect()
}
