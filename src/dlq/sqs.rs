//! The DLQ's SQS target: SendMessageBatch of up to 10 dead letters (and 256 KB), each with its
//! JSON body and message attributes (source topic, partition, offset, key, error class, reason
//! and text, region, traceparent).
//!
//! One attempt per call; entries that fail inside a successful call get their own result. It
//! must not retry (the pool does).

use std::sync::Arc;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use super::{DeadLetter, attr, truncate};
use crate::error_class::ErrorClass;
use crate::sinks::aws::classify;
use crate::sinks::{BatchLimits, Sink, SinkError, SinkResult};

pub struct SqsDlqSink {
    client: Client,
    queue_url: String,
    name: String,
    max_bytes: usize,
}

impl SqsDlqSink {
    pub fn new(client: Client, queue_url: &str, max_message_bytes: usize) -> Self {
        let queue = queue_url.rsplit('/').next().unwrap_or(queue_url);
        SqsDlqSink {
            client,
            queue_url: queue_url.to_string(),
            name: format!("sqs:{queue}"),
            max_bytes: max_message_bytes,
        }
    }

    fn failed(&self, class: ErrorClass, reason: &'static str, message: String) -> SinkResult {
        SinkError::result(&self.name, class, reason, message)
    }
}

fn string_attr(v: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .ok()
}

fn number_attr(v: i64) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(v.to_string())
        .build()
        .ok()
}

/// The message attributes of one dead letter.
pub fn attributes(dl: &DeadLetter) -> Vec<(&'static str, MessageAttributeValue)> {
    let mut a = vec![
        (attr::TOPIC, string_attr(&dl.src.topic)),
        (attr::PARTITION, number_attr(i64::from(dl.src.partition))),
        (attr::OFFSET, number_attr(dl.src.offset)),
        (attr::ERROR_CLASS, string_attr(dl.class.as_str())),
        (attr::ERROR_REASON, string_attr(&dl.reason)),
        (attr::ERROR_TEXT, string_attr(&truncate(&dl.error, 1024))),
        (attr::REGION, string_attr(&dl.region)),
    ];
    let key = dl.key_text();
    if !key.is_empty() {
        a.push((attr::KEY, string_attr(&key)));
    }
    if let Some(tp) = &dl.traceparent {
        a.push((attr::TRACEPARENT, string_attr(tp)));
    }
    // Empty strings are invalid attribute values; such attributes are left out.
    a.into_iter()
        .filter_map(|(k, v)| {
            v.filter(|v| v.string_value().is_some_and(|s| !s.is_empty()))
                .map(|v| (k, v))
        })
        .collect()
}

#[async_trait::async_trait]
impl Sink<DeadLetter> for SqsDlqSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_count: 10,
            max_bytes: self.max_bytes,
        }
    }

    async fn write_batch(&self, batch: &[Arc<DeadLetter>]) -> Vec<SinkResult> {
        let mut entries = Vec::with_capacity(batch.len());
        for (i, dl) in batch.iter().enumerate() {
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&dl.body);
            for (k, v) in attributes(dl) {
                e = e.message_attributes(k, v);
            }
            match e.build() {
                Ok(e) => entries.push(e),
                Err(err) => {
                    let r = self.failed(ErrorClass::Poison, "dlq_rejected", err.to_string());
                    return vec![r; batch.len()];
                }
            }
        }
        match self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let mut results = vec![
                    self.failed(
                        ErrorClass::Retryable,
                        "entry_failed",
                        "not acknowledged by SendMessageBatch".into()
                    );
                    batch.len()
                ];
                for ok in out.successful() {
                    if let Some(r) = ok
                        .id()
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| results.get_mut(i))
                    {
                        *r = SinkResult::Done;
                    }
                }
                for f in out.failed() {
                    let msg = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                    let res = if f.sender_fault() {
                        self.failed(ErrorClass::Poison, "dlq_rejected", msg)
                    } else {
                        self.failed(ErrorClass::Retryable, "entry_failed", msg)
                    };
                    if let Some(r) = f
                        .id()
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| results.get_mut(i))
                    {
                        *r = res;
                    }
                }
                results
            }
            Err(e) => vec![classify(&self.name, &e); batch.len()],
        }
    }
}
