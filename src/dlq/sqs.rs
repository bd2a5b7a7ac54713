//! The DLQ's SQS target: SendMessageBatch of up to 10 dead letters (and 256 KB), each with its
//! JSON body and message attributes (source topic, partition, offset, key, error class, reason
//! and text, region, traceparent).
//!
//! One attempt per call; entries that fail inside a successful call get their own result. It
//! must not retry (the pool does).
//!
//! SQS accepts only some characters in bodies and string attributes (`allowed`; moto does not
//! check, real SQS answers `InvalidMessageContents`): every text sent is made to fit here
//! (`escape_text`, `safe_body`) or, for keys, encoded (`DeadLetter::key_text`).

use std::sync::Arc;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use super::{DeadLetter, attr, truncate};
use crate::error_class::ErrorClass;
use crate::sinks::aws::classify;
use crate::sinks::{BatchLimits, CallSpan, Sink, SinkError, SinkResult};

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

/// Whether SQS accepts `c` in a message body or a string attribute value: #x9, #xA, #xD,
/// #x20–#xD7FF, #xE000–#xFFFD, #x10000–#x10FFFF (AWS SendMessage documentation).
pub fn allowed(c: char) -> bool {
    matches!(u32::from(c), 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Whether all of `s` is accepted by SQS.
pub fn is_sqs_text(s: &str) -> bool {
    s.chars().all(allowed)
}

/// `s` with every character SQS refuses replaced by `escape(c)`.
fn replace_refused(s: &str, escape: impl Fn(u32) -> String) -> std::borrow::Cow<'_, str> {
    if is_sqs_text(s) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if allowed(c) {
            out.push(c);
        } else {
            out.push_str(&escape(u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Human-readable text (error messages, reasons) made acceptable to SQS: each refused character
/// becomes `\u{..}`.
pub fn escape_text(s: &str) -> std::borrow::Cow<'_, str> {
    replace_refused(s, |c| format!("\\u{{{c:x}}}"))
}

/// A JSON text made acceptable to SQS without changing what it means: serde_json already escapes
/// control characters inside strings; the other refused characters (U+FFFE, U+FFFF) can only
/// occur inside strings too, and become `\uXXXX` escapes there.
pub fn safe_body(json: String) -> String {
    match replace_refused(&json, |c| format!("\\u{c:04x}")) {
        std::borrow::Cow::Borrowed(_) => json,
        std::borrow::Cow::Owned(escaped) => escaped,
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
    // Each text has a cap, so all attributes together stay within the room the body leaves
    // them (`ATTRIBUTE_ROOM`; SQS counts names, data types and values against the message size).
    let text = |s: &str, cap: usize| string_attr(&truncate(&escape_text(s), cap));
    let mut a = vec![
        (attr::TOPIC, text(&dl.src.topic, 255)),
        (attr::PARTITION, number_attr(i64::from(dl.src.partition))),
        (attr::OFFSET, number_attr(dl.src.offset)),
        (attr::ERROR_CLASS, text(dl.class.as_str(), 32)),
        (attr::ERROR_REASON, text(&dl.reason, 128)),
        (attr::ERROR_TEXT, text(&dl.error, 1024)),
        (attr::REGION, text(&dl.region, 64)),
    ];
    let key = dl.key_text();
    if !key.is_empty() {
        a.push((attr::KEY, string_attr(&key)));
    }
    // `RecordIn::traceparent` only passes well-formed W3C values.
    if let Some(tp) = &dl.traceparent {
        a.push((attr::TRACEPARENT, text(tp, 512)));
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
            per_request: false,
        }
    }

    fn call(&self, _req: Option<&DeadLetter>) -> CallSpan {
        use crate::telemetry::semconv as sc;
        let mut attrs = crate::telemetry::trace::aws_call("SQS", "SendMessageBatch");
        attrs.push(opentelemetry::KeyValue::new(
            sc::MESSAGING_SYSTEM,
            sc::MESSAGING_SYSTEM_AWS_SQS,
        ));
        attrs.push(opentelemetry::KeyValue::new(
            sc::MESSAGING_DESTINATION_NAME,
            self.name.trim_start_matches("sqs:").to_string(),
        ));
        attrs.push(opentelemetry::KeyValue::new(
            sc::MESSAGING_OPERATION_TYPE,
            "send",
        ));
        CallSpan {
            name: "SQS.SendMessageBatch".into(),
            attrs,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordIn;

    /// Every character class SQS refuses, plus some it accepts, in every field a record brings.
    fn nasty() -> String {
        let mut s = String::from("ok é 😀 \t\n\r ");
        for c in [
            '\u{0}', '\u{1}', '\u{8}', '\u{b}', '\u{c}', '\u{e}', '\u{1f}', '\u{fffe}', '\u{ffff}',
        ] {
            s.push(c);
        }
        s
    }

    fn dead_letter(key: Vec<u8>) -> DeadLetter {
        let rec = RecordIn {
            topic: "t".into(),
            partition: 1,
            offset: 42,
            key: Some(key),
            payload: Some(nasty().into_bytes()),
            headers: vec![
                (
                    "traceparent".into(),
                    Some(format!("00-{}", nasty()).into_bytes()),
                ),
                (nasty(), Some(nasty().into_bytes())),
            ],
            timestamp_ms: Some(1),
            received: std::time::Instant::now(),
            ticket: None,
            trace: None,
        };
        DeadLetter::new(
            &rec,
            ErrorClass::Poison,
            &format!("reason{}", nasty()),
            &format!("error text {}", nasty()),
            Some(serde_json::json!({ nasty(): nasty() })),
            "us-west-2",
            256 * 1024,
        )
    }

    #[test]
    fn every_string_sent_to_sqs_is_in_the_allowed_set() {
        // A Confluent-framed Avro key (Debezium's key record) is valid UTF-8 full of controls.
        for key in [
            b"\x00\x00\x00\x00\x01\x0e".to_vec(),
            nasty().into_bytes(),
            vec![0xff, 0xfe, 0x00],
            b"plain-key".to_vec(),
        ] {
            let dl = dead_letter(key.clone());
            assert!(is_sqs_text(&dl.body), "body: {:?}", dl.body);
            let body: crate::dlq::DlqBody = serde_json::from_str(&dl.body).unwrap();
            assert_eq!(
                body.key(),
                Some(key.clone()),
                "the body keeps the exact key"
            );
            assert_eq!(
                body.decoded,
                Some(serde_json::json!({ nasty(): nasty() })),
                "escapes keep the meaning"
            );
            for (name, v) in attributes(&dl) {
                let text = v.string_value().unwrap_or_default();
                assert!(!text.is_empty(), "{name} is empty");
                assert!(is_sqs_text(text), "{name}: {text:?}");
                assert!(is_sqs_text(name));
            }
            let key_attr = attributes(&dl)
                .into_iter()
                .find(|(n, _)| *n == attr::KEY)
                .and_then(|(_, v)| v.string_value().map(str::to_string))
                .unwrap();
            if key == b"plain-key" {
                assert_eq!(key_attr, "plain-key");
            } else {
                assert!(key_attr.starts_with("b64:"), "{key_attr:?}");
            }
            // A malformed traceparent is not passed on.
            assert!(attributes(&dl).iter().all(|(n, _)| *n != attr::TRACEPARENT));
        }
    }

    #[test]
    fn attributes_fit_the_room_the_body_leaves_them() {
        let huge = "x".repeat(100_000);
        let rec = RecordIn {
            topic: "t".repeat(249),
            partition: i32::MAX,
            offset: i64::MAX,
            key: Some(vec![0u8; 100_000]),
            payload: Some(vec![1; 10]),
            headers: vec![(
                "traceparent".into(),
                Some(
                    b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(b'a', 400))
                        .collect(),
                ),
            )],
            timestamp_ms: None,
            received: std::time::Instant::now(),
            ticket: None,
            trace: None,
        };
        let dl = DeadLetter::new(
            &rec,
            ErrorClass::Poison,
            &huge,
            &huge,
            None,
            &huge,
            256 * 1024,
        );
        // SQS's size of an attribute: its name, data type and value.
        let size: usize = attributes(&dl)
            .iter()
            .map(|(n, v)| n.len() + v.data_type().len() + v.string_value().map_or(0, str::len))
            .sum();
        assert!(
            size <= crate::dlq::ATTRIBUTE_ROOM,
            "{size} bytes of attributes"
        );
        assert!(dl.body.len() + size <= 256 * 1024);
    }

    #[test]
    fn allowed_set_matches_the_documentation() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '~',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fffd}',
            '\u{10000}',
            '\u{10ffff}',
        ] {
            assert!(allowed(c), "{c:?}");
        }
        for c in [
            '\u{0}', '\u{8}', '\u{b}', '\u{c}', '\u{1f}', '\u{fffe}', '\u{ffff}',
        ] {
            assert!(!allowed(c), "{c:?}");
        }
        assert_eq!(escape_text("a\u{1}b"), "a\\u{1}b");
        assert_eq!(safe_body("\"\u{ffff}\"".into()), "\"\\uffff\"");
    }
}
