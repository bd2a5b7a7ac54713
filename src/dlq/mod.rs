//! The dead-letter queue (DESIGN §3.1, §4): where records that can never succeed go, with their
//! original bytes and the reason. `Dlq` writes each `DeadLetter` to the SQS queue and, when
//! configured, to a Kafka DLQ topic, each through its own sink pool; a record counts as
//! dead-lettered only when every configured target acknowledged it.
//!
//! The DLQ is a required sink: while it is unreachable the record is retryable and its partition
//! holds. This module must not decide what is poison (decode, route and sinks do) or commit.

pub mod kafka;
pub mod sqs;
pub mod tool;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error_class::ErrorClass;
use crate::event::SourcePos;
use crate::record::RecordIn;
use crate::sinks::SinkRequest;
use crate::sinks::pool::{PoolHandle, Trace, WriteOutcome};

/// Format version of the SQS body.
pub const BODY_VERSION: u32 = 1;

/// SQS message attributes (at most 10 per message).
pub mod attr {
    pub const TOPIC: &str = "topic";
    pub const PARTITION: &str = "partition";
    pub const OFFSET: &str = "offset";
    pub const KEY: &str = "key";
    pub const ERROR_CLASS: &str = "error_class";
    pub const ERROR_REASON: &str = "error_reason";
    pub const ERROR_TEXT: &str = "error_text";
    pub const REGION: &str = "region";
    pub const TRACEPARENT: &str = "traceparent";
}

/// One record header in the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyHeader {
    pub key: String,
    pub value_b64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyError {
    pub class: String,
    pub reason: String,
    pub message: String,
}

/// The SQS message body: the original record and why it is here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqBody {
    pub v: u32,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key_b64: Option<String>,
    /// The original value bytes; `None` with `value_omitted` when they did not fit the message
    /// (the record stays in Kafka and `dlq replay` fetches it from there).
    pub value_b64: Option<String>,
    pub value_bytes: usize,
    pub value_omitted: bool,
    pub headers: Vec<BodyHeader>,
    pub error: BodyError,
    /// The decoded change, when decoding got that far.
    pub decoded: Option<serde_json::Value>,
    pub region: String,
    pub dead_lettered_at_ms: i64,
}

impl DlqBody {
    pub fn key(&self) -> Option<Vec<u8>> {
        self.key_b64.as_ref().and_then(|k| B64.decode(k).ok())
    }
    pub fn value(&self) -> Option<Vec<u8>> {
        self.value_b64.as_ref().and_then(|v| B64.decode(v).ok())
    }
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.headers
            .iter()
            .map(|h| {
                (
                    h.key.clone(),
                    h.value_b64.as_ref().and_then(|v| B64.decode(v).ok()),
                )
            })
            .collect()
    }
}

/// One record on its way to the DLQ.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub src: SourcePos,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
    pub class: ErrorClass,
    pub reason: String,
    pub error: String,
    pub region: String,
    pub traceparent: Option<String>,
    /// The SQS body, already sized to fit `max_message_bytes`.
    pub body: String,
    id: String,
}

/// Room kept for message attributes within the SQS size limit (`sqs::attributes` caps each).
pub const ATTRIBUTE_ROOM: usize = 4096;

impl DeadLetter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rec: &RecordIn,
        class: ErrorClass,
        reason: &str,
        error: &str,
        decoded: Option<serde_json::Value>,
        region: &str,
        max_message_bytes: usize,
    ) -> DeadLetter {
        let src = rec.pos();
        let mut body = DlqBody {
            v: BODY_VERSION,
            topic: src.topic.clone(),
            partition: src.partition,
            offset: src.offset,
            timestamp_ms: rec.timestamp_ms,
            key_b64: rec.key.as_ref().map(|k| B64.encode(k)),
            value_b64: rec.payload.as_ref().map(|v| B64.encode(v)),
            value_bytes: rec.payload.as_ref().map_or(0, Vec::len),
            value_omitted: false,
            headers: rec
                .headers
                .iter()
                .map(|(k, v)| BodyHeader {
                    key: k.clone(),
                    value_b64: v.as_ref().map(|v| B64.encode(v)),
                })
                .collect(),
            error: BodyError {
                class: class.to_string(),
                reason: reason.to_string(),
                message: truncate(error, 4096),
            },
            decoded,
            region: region.to_string(),
            dead_lettered_at_ms: now_ms(),
        };
        let limit = max_message_bytes.saturating_sub(ATTRIBUTE_ROOM);
        let mut text = serde_json::to_string(&body).unwrap_or_default();
        // Shed what can be recovered elsewhere, largest first: the decoded copy, then the value
        // (still in Kafka at topic/partition/offset), then the headers.
        if text.len() > limit {
            body.decoded = None;
            text = serde_json::to_string(&body).unwrap_or_default();
        }
        if text.len() > limit {
            body.value_b64 = None;
            body.value_omitted = true;
            text = serde_json::to_string(&body).unwrap_or_default();
        }
        if text.len() > limit {
            body.headers.clear();
            body.key_b64 = None;
            text = serde_json::to_string(&body).unwrap_or_default();
        }
        let text = sqs::safe_body(text);
        DeadLetter {
            id: src.to_string(),
            src,
            key: rec.key.clone(),
            value: rec.payload.clone(),
            headers: rec.headers.clone(),
            timestamp_ms: rec.timestamp_ms,
            class,
            reason: reason.to_string(),
            error: error.to_string(),
            region: region.to_string(),
            traceparent: rec.traceparent().map(str::to_string),
            body: text,
        }
    }

    /// The key as text for the SQS attribute: verbatim when it is UTF-8 made only of characters
    /// SQS accepts, otherwise `b64:` + base64 (a Confluent-framed Avro key, for one, is valid
    /// UTF-8 full of control characters). The body always holds the exact key.
    pub fn key_text(&self) -> String {
        match &self.key {
            None => String::new(),
            Some(k) => match std::str::from_utf8(k) {
                Ok(s) if sqs::is_sqs_text(s) => truncate(s, 1024),
                _ => format!("b64:{}", truncate(&B64.encode(k), 1024)),
            },
        }
    }
}

impl SinkRequest for DeadLetter {
    fn batch_bytes(&self) -> usize {
        self.body.len() + ATTRIBUTE_ROOM
    }
    fn batch_key(&self) -> &str {
        &self.id
    }
    fn describe(&self) -> String {
        self.id.clone()
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The DLQ's sink pools (SQS, and the Kafka topic when configured).
#[derive(Clone)]
pub struct Dlq {
    pub sqs: PoolHandle<DeadLetter>,
    pub kafka: Option<PoolHandle<DeadLetter>>,
    pub max_message_bytes: usize,
}

impl Dlq {
    /// Writes `dl` to every configured target; `Done` once all acknowledged. Retries forever
    /// (the DLQ is required); `Poison` if a target rejects the record itself.
    /// Sends `dl` to every DLQ target; `trace` is its `dlq.send` span when its record is traced.
    pub async fn send(
        &self,
        dl: DeadLetter,
        trace: Option<Trace>,
        cancel: &CancellationToken,
    ) -> WriteOutcome {
        let dl = Arc::new(dl);
        let sqs = self
            .sqs
            .write_traced(Arc::clone(&dl), trace.clone(), cancel, true);
        let outcome = match &self.kafka {
            None => sqs.await,
            Some(k) => {
                let (a, b) = futures::join!(
                    sqs,
                    k.write_traced(Arc::clone(&dl), trace.clone(), cancel, true)
                );
                match (a, b) {
                    (WriteOutcome::Cancelled, _) | (_, WriteOutcome::Cancelled) => {
                        WriteOutcome::Cancelled
                    }
                    (p @ WriteOutcome::Poison(_), _) | (_, p @ WriteOutcome::Poison(_)) => p,
                    (a, _) => a,
                }
            }
        };
        if matches!(outcome, WriteOutcome::Done | WriteOutcome::Stale) {
            metrics::counter!("cdc_relay_dlq_records_total", "topic" => dl.src.topic.clone(), "reason" => dl.reason.clone())
                .increment(1);
            let trace_id = trace.as_ref().map(|t| t.trace_id().to_string());
            let span_id = trace.as_ref().map(|t| t.span_id().to_string());
            tracing::warn!(src = %dl.src, class = %dl.class, reason = %dl.reason, error = %dl.error, trace_id, span_id, "record written to the DLQ");
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: Vec<u8>) -> RecordIn {
        RecordIn {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            key: Some(b"k1".to_vec()),
            payload: Some(value),
            headers: vec![(
                "traceparent".into(),
                Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
            )],
            timestamp_ms: Some(5),
            received: std::time::Instant::now(),
            ticket: None,
            trace: None,
        }
    }

    #[test]
    fn body_round_trips_the_original_record() {
        let dl = DeadLetter::new(
            &rec(vec![0, 1, 2, 255]),
            ErrorClass::Poison,
            "bad_magic",
            "first byte is 1",
            Some(serde_json::json!({"a": 1})),
            "us-west-2",
            256 * 1024,
        );
        let body: DlqBody = serde_json::from_str(&dl.body).unwrap();
        assert_eq!(body.value(), Some(vec![0, 1, 2, 255]));
        assert_eq!(body.key(), Some(b"k1".to_vec()));
        assert_eq!(body.headers()[0].0, "traceparent");
        assert_eq!(body.error.reason, "bad_magic");
        assert_eq!(body.decoded, Some(serde_json::json!({"a": 1})));
        assert_eq!(
            dl.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(!body.value_omitted);
    }

    #[test]
    fn oversize_values_are_omitted_but_located() {
        let dl = DeadLetter::new(
            &rec(vec![b'x'; 500 * 1024]),
            ErrorClass::Poison,
            "item_too_large",
            "too big",
            Some(serde_json::json!({"big": "y".repeat(300 * 1024)})),
            "us-west-2",
            256 * 1024,
        );
        assert!(dl.body.len() <= 256 * 1024 - ATTRIBUTE_ROOM);
        let body: DlqBody = serde_json::from_str(&dl.body).unwrap();
        assert!(body.value_omitted);
        assert_eq!(body.value_bytes, 500 * 1024);
        assert_eq!((body.partition, body.offset), (2, 7));
        assert!(body.decoded.is_none());
    }
}
