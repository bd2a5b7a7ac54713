//! The DLQ's optional Kafka target (the seed's `events.validation_failed`): the original key,
//! value and headers plus `dlq.*` headers, written by an idempotent producer with acks=all.
//!
//! One attempt per call; it must not retry (the pool does). A retried record may appear twice
//! in the topic (at-least-once, like any Kafka producer retry across calls).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::DeadLetter;
use crate::error_class::ErrorClass;
use crate::sinks::{BatchLimits, CallSpan, Sink, SinkError, SinkResult};
use crate::telemetry::semconv;

pub struct KafkaDlqSink {
    producer: FutureProducer,
    topic: String,
    name: String,
    timeout: Duration,
}

/// An idempotent, acks=all producer for `bootstrap` with `properties` (security) applied.
pub fn producer(
    bootstrap: &str,
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<FutureProducer, KafkaError> {
    let mut c = ClientConfig::new();
    for (k, v) in properties {
        // Consumer-only properties would make the producer fail to start.
        if !k.starts_with("session.") && !k.starts_with("heartbeat.") && !k.starts_with("fetch.") {
            c.set(k, v);
        }
    }
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
}

impl KafkaDlqSink {
    pub fn new(producer: FutureProducer, topic: &str, timeout: Duration) -> Self {
        KafkaDlqSink {
            producer,
            topic: topic.to_string(),
            name: format!("kafka:{topic}"),
            timeout,
        }
    }

    async fn send(&self, dl: &DeadLetter) -> SinkResult {
        let partition = dl.src.partition.to_string();
        let offset = dl.src.offset.to_string();
        let mut headers = OwnedHeaders::new();
        // The record's headers, with its `traceparent` replaced by the relay's (the DLQ span's,
        // when the record is traced), so a consumer of the DLQ topic continues the trace.
        let own_tp = dl.traceparent.as_deref();
        for (k, v) in &dl.headers {
            if own_tp.is_some() && k.eq_ignore_ascii_case(semconv::TRACEPARENT) {
                continue;
            }
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        if let Some(tp) = own_tp {
            headers = headers.insert(Header {
                key: semconv::TRACEPARENT,
                value: Some(tp),
            });
        }
        for (k, v) in [
            ("dlq.source.topic", dl.src.topic.as_str()),
            ("dlq.source.partition", partition.as_str()),
            ("dlq.source.offset", offset.as_str()),
            ("dlq.error.class", dl.class.as_str()),
            ("dlq.error.reason", dl.reason.as_str()),
            ("dlq.error.message", dl.error.as_str()),
            ("dlq.region", dl.region.as_str()),
        ] {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = &dl.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &dl.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(ts) = dl.timestamp_ms {
            rec = rec.timestamp(ts);
        }
        match self.producer.send(rec, self.timeout).await {
            Ok(_) => SinkResult::Done,
            Err((e, _)) => {
                let (class, reason) = match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                        (ErrorClass::Poison, "dlq_rejected")
                    }
                    Some(
                        RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                        | RDKafkaErrorCode::UnknownTopic
                        | RDKafkaErrorCode::UnknownTopicOrPartition,
                    ) => (ErrorClass::Misconfiguration, "misconfigured"),
                    _ => (ErrorClass::Retryable, "transport"),
                };
                SinkResult::Failed(SinkError {
                    class,
                    reason,
                    sink: self.name.clone(),
                    message: e.to_string(),
                })
            }
        }
    }
}

#[async_trait::async_trait]
impl Sink<DeadLetter> for KafkaDlqSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        // librdkafka batches internally; the pool sends records one by one, many in flight.
        BatchLimits {
            max_count: 1,
            max_bytes: usize::MAX,
            per_request: false,
        }
    }

    fn call(&self, _req: Option<&DeadLetter>) -> CallSpan {
        use crate::telemetry::semconv as sc;
        CallSpan {
            name: format!("send {}", self.topic).into(),
            attrs: vec![
                opentelemetry::KeyValue::new(sc::MESSAGING_SYSTEM, sc::MESSAGING_SYSTEM_KAFKA),
                opentelemetry::KeyValue::new(sc::MESSAGING_OPERATION_NAME, "send"),
                opentelemetry::KeyValue::new(sc::MESSAGING_OPERATION_TYPE, "send"),
                opentelemetry::KeyValue::new(sc::MESSAGING_DESTINATION_NAME, self.topic.clone()),
            ],
        }
    }

    async fn write_batch(&self, batch: &[Arc<DeadLetter>]) -> Vec<SinkResult> {
        futures::future::join_all(batch.iter().map(|dl| self.send(dl))).await
    }
}
