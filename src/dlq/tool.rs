//! `cdc-relay dlq inspect|replay`: the operator's tools for the SQS DLQ.
//!
//! `inspect` reads messages without consuming them (they become visible again at once).
//! `replay` re-produces each record's original key, value and headers to a Kafka topic (default:
//! its source topic), or re-runs it through the sinks after a fix, and deletes the SQS message only
//! after the replay was acknowledged. A message whose replay fails stays in the queue. It must
//! not delete anything in `--dry-run`, and never deletes before an acknowledgement.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::DlqBody;
use crate::config::Config;
use crate::decode::registry::RegistryClient;
use crate::decode::{Decoded, Decoder};
use crate::event::SourcePos;
use crate::route::Route;
use crate::sinks::output::{Change, Output};
use crate::sinks::pool::WriteOutcome;
use crate::sinks::registry;
use crate::sinks::wiring::Wiring;

/// The header a replayed record carries: the SQS message id it came from.
pub const REPLAY_HEADER: &str = "cdc-relay-dlq-replay";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("the config has no [dlq] section")]
    NoDlq,
    #[error("cannot find the DLQ queue: {0}")]
    Queue(String),
    #[error("SQS: {0}")]
    Sqs(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Registry(#[from] crate::decode::registry::RegistryError),
    #[error("cannot start the outputs: {0}")]
    Sinks(String),
}

/// One DLQ message as read from SQS.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    pub receive_count: u32,
    /// The parsed body; `Err` holds the raw text of a body this tool cannot read.
    pub body: Result<DlqBody, String>,
}

/// Where `replay` sends records.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    /// Produce to this topic, or to each record's source topic.
    Topic(Option<String>),
    /// Decode, route and write to the route's DynamoDB table (events are not re-sent).
    Sinks,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ReplayReport {
    pub read: usize,
    pub replayed: usize,
    pub deleted: usize,
    pub dry_run: bool,
    /// `(message id, why)` of messages left in the queue.
    pub failed: Vec<(String, String)>,
}

pub struct DlqTool {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    config: Config,
    sdk: aws_config::SdkConfig,
}

fn sqs_err<E: std::error::Error + 'static>(e: E) -> ToolError {
    ToolError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

impl DlqTool {
    pub async fn connect(config: Config, sdk: aws_config::SdkConfig) -> Result<Self, ToolError> {
        let d = config.dlq.clone().ok_or(ToolError::NoDlq)?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let queue_url = match (&d.sqs_queue_url, &d.sqs_queue_name) {
            (Some(u), _) => u.clone(),
            (None, Some(n)) => sqs
                .get_queue_url()
                .queue_name(n)
                .send()
                .await
                .map_err(|e| {
                    ToolError::Queue(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                })?
                .queue_url()
                .map(str::to_string)
                .ok_or_else(|| ToolError::Queue(format!("no URL for {n}")))?,
            (None, None) => return Err(ToolError::NoDlq),
        };
        Ok(DlqTool {
            sqs,
            queue_url,
            config,
            sdk,
        })
    }

    /// Receives up to `max` messages, hidden for `visibility` seconds.
    async fn receive(&self, max: usize, visibility: i32) -> Result<Vec<Received>, ToolError> {
        let mut out: Vec<Received> = Vec::new();
        while out.len() < max {
            let n = (max - out.len()).min(10) as i32;
            let resp = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(n)
                .visibility_timeout(visibility)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(sqs_err)?;
            let msgs = resp.messages();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let text = m.body().unwrap_or_default();
                out.push(Received {
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    receipt: m.receipt_handle().unwrap_or_default().to_string(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0),
                    body: serde_json::from_str(text).map_err(|_| text.to_string()),
                });
            }
        }
        Ok(out)
    }

    /// Makes a received message visible again at once.
    async fn release(&self, m: &Received) {
        if let Err(e) = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&m.receipt)
            .visibility_timeout(0)
            .send()
            .await
        {
            tracing::warn!(message = %m.message_id, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "cannot release a DLQ message; it reappears after its visibility timeout");
        }
    }

    async fn delete(&self, m: &Received) -> Result<(), ToolError> {
        self.sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(&m.receipt)
            .send()
            .await
            .map_err(sqs_err)?;
        Ok(())
    }

    /// Reads up to `max` messages without consuming them.
    pub async fn inspect(&self, max: usize) -> Result<Vec<Received>, ToolError> {
        let msgs = self.receive(max, 30).await?;
        for m in &msgs {
            self.release(m).await;
        }
        Ok(msgs)
    }

    fn kafka_props(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // With [regions]: the primary, where the source topics live under their own names.
        let cluster = self.config.cluster(crate::config::Side::Primary);
        for (k, v) in &cluster.properties {
            if !k.starts_with("session.") && !k.starts_with("heartbeat.") {
                c.set(k, v);
            }
        }
        c.set("bootstrap.servers", &cluster.bootstrap_servers);
        c
    }

    /// The record's value: from the body, or (when it was too large for SQS) from Kafka.
    fn value(&self, b: &DlqBody) -> Result<Option<Vec<u8>>, String> {
        if !b.value_omitted {
            return Ok(b.value());
        }
        let consumer: BaseConsumer = self
            .kafka_props()
            .set("group.id", "cdc-relay-dlq-fetch")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| format!("cannot create a consumer: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&b.topic, b.partition, Offset::Offset(b.offset))
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.offset() == b.offset => {
                    return Ok(m.payload().map(<[u8]>::to_vec));
                }
                Some(Ok(m)) if m.offset() > b.offset => break,
                _ => {}
            }
        }
        Err(format!(
            "the value was too large for SQS and {}/{}@{} is no longer readable in Kafka",
            b.topic, b.partition, b.offset
        ))
    }

    /// Replays up to `max` messages to `target`.
    pub async fn replay(
        &self,
        target: &ReplayTarget,
        dry_run: bool,
        max: usize,
    ) -> Result<ReplayReport, ToolError> {
        let mut report = ReplayReport {
            dry_run,
            ..ReplayReport::default()
        };
        let producer: Option<FutureProducer> = match target {
            ReplayTarget::Topic(_) if !dry_run => Some(
                self.kafka_props()
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .create()
                    .map_err(|e| ToolError::Kafka(e.to_string()))?,
            ),
            _ => None,
        };
        let sinks = match target {
            ReplayTarget::Sinks => Some(SinkReplay::new(&self.config, &self.sdk).await?),
            ReplayTarget::Topic(_) => None,
        };
        let mut seen = std::collections::HashSet::new();
        while report.read < max {
            // Hidden while we work on them; released again unless deleted.
            let batch = self.receive((max - report.read).min(10), 60).await?;
            if batch.is_empty() {
                break;
            }
            // Messages this run released (failed, or a dry run) come round again: make them
            // visible again and skip them; once a batch holds nothing new, every message was seen.
            if batch.iter().all(|m| seen.contains(&m.message_id)) {
                for m in &batch {
                    self.release(m).await;
                }
                return Ok(report);
            }
            for m in batch {
                if !seen.insert(m.message_id.clone()) {
                    self.release(&m).await;
                    continue;
                }
                report.read += 1;
                let result = match &m.body {
                    Err(raw) => Err(format!(
                        "not a cdc-relay DLQ body: {}",
                        super::truncate(raw, 200)
                    )),
                    Ok(b) if dry_run => {
                        let to = match target {
                            ReplayTarget::Topic(t) => {
                                format!("topic {}", t.as_deref().unwrap_or(&b.topic))
                            }
                            ReplayTarget::Sinks => "the sinks".into(),
                        };
                        println!(
                            "would replay {}/{}@{} ({}) to {to}",
                            b.topic, b.partition, b.offset, b.error.reason
                        );
                        Ok(())
                    }
                    Ok(b) => match (target, &producer, &sinks) {
                        (ReplayTarget::Topic(t), Some(p), _) => {
                            self.produce(p, t.as_deref().unwrap_or(&b.topic), b, &m.message_id)
                                .await
                        }
                        (ReplayTarget::Sinks, _, Some(s)) => match self.value(b) {
                            Ok(v) => s.write(b, v).await,
                            Err(e) => Err(e),
                        },
                        _ => Err("no replay target".into()),
                    },
                };
                match result {
                    Ok(()) if dry_run => self.release(&m).await,
                    Ok(()) => {
                        report.replayed += 1;
                        self.delete(&m).await?;
                        report.deleted += 1;
                    }
                    Err(why) => {
                        tracing::warn!(message = %m.message_id, %why, "replay failed; the message stays in the DLQ");
                        report.failed.push((m.message_id.clone(), why));
                        self.release(&m).await;
                    }
                }
            }
        }
        Ok(report)
    }

    async fn produce(
        &self,
        producer: &FutureProducer,
        topic: &str,
        b: &DlqBody,
        message_id: &str,
    ) -> Result<(), String> {
        let value = self.value(b)?;
        let key = b.key();
        let mut headers = OwnedHeaders::new();
        for (k, v) in b.headers() {
            headers = headers.insert(Header {
                key: &k,
                value: v.as_deref(),
            });
        }
        headers = headers.insert(Header {
            key: REPLAY_HEADER,
            value: Some(message_id),
        });
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = &key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &value {
            rec = rec.payload(v.as_slice());
        }
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("produce to {topic} failed: {e}"))
    }
}

/// Re-runs records through decode → route → every output of their route, in order (the DynamoDB
/// table, the events, `[[routes.outputs]]`), through the same outputs and pools as the relay.
struct SinkReplay {
    decoder: Decoder,
    routes: HashMap<String, (Route, Vec<Arc<dyn Output>>)>,
    /// The pools' supervisor; stopped when the replay ends.
    root: ractor::ActorRef<crate::supervision::SupervisorMsg>,
}

/// How long one record may take through its outputs before the replay gives up on it.
const REPLAY_DEADLINE: Duration = Duration::from_secs(30);

impl SinkReplay {
    async fn new(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, ToolError> {
        let status = crate::status::StatusBoard::new();
        let region = config.aws.region.clone().unwrap_or_default();
        let mut wiring = Wiring::new(config, sdk, &region, &status);
        let mut routes = HashMap::new();
        for r in &config.routes {
            let outputs = registry::outputs(r, &mut wiring).map_err(ToolError::Sinks)?;
            routes.insert(r.topic.clone(), (Route::new(r.clone()), outputs));
        }
        let (root, _) = ractor::Actor::spawn(
            None,
            crate::supervision::Supervisor,
            crate::supervision::SupervisorArgs {
                policy: config.runtime.supervision.clone(),
                children: wiring.children,
                escalate_to: None,
            },
        )
        .await
        .map_err(|e| ToolError::Sinks(e.to_string()))?;
        Ok(SinkReplay {
            decoder: Decoder::new(RegistryClient::new(
                &config.registry(crate::config::Side::Primary),
            )?),
            routes,
            root,
        })
    }

    async fn write(&self, b: &DlqBody, value: Option<Vec<u8>>) -> Result<(), String> {
        let (route, outputs) = self
            .routes
            .get(&b.topic)
            .ok_or_else(|| format!("no route for topic {}", b.topic))?;
        let pos = SourcePos {
            topic: b.topic.clone(),
            partition: b.partition,
            offset: b.offset,
        };
        let ev = match self
            .decoder
            .decode(&route.cfg, value.as_deref(), pos)
            .await
            .map_err(|e| format!("still cannot decode: {e}"))?
        {
            Decoded::Skipped(_) => return Ok(()),
            Decoded::Change(ev) => ev,
        };
        let key = route
            .key(&ev)
            .map_err(|e| format!("still cannot route: {e}"))?;
        let traceparent = b
            .headers()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
            .and_then(|(_, v)| v)
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|t| crate::record::well_formed_traceparent(t));
        let change = Change {
            event: &ev,
            key: &key,
            kafka_ts_ms: b.timestamp_ms,
            traceparent: traceparent.as_deref(),
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let _deadline = {
            let c = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REPLAY_DEADLINE).await;
                c.cancel();
            })
        };
        for o in outputs {
            let p = o
                .prepare(&change)
                .map_err(|f| format!("{} still refuses it: {}", o.name(), f.error))?;
            match o.write(&[p], &cancel).await.pop() {
                Some(WriteOutcome::Done | WriteOutcome::Stale) => {}
                Some(WriteOutcome::Poison(e) | WriteOutcome::Exhausted(e)) => {
                    return Err(format!("{} still fails: {e}", o.name()));
                }
                _ => {
                    return Err(format!(
                        "{} did not acknowledge within {REPLAY_DEADLINE:?}",
                        o.name()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Drop for SinkReplay {
    fn drop(&mut self) {
        self.root.stop(None);
    }
}
