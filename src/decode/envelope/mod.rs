//! CDC envelopes: turn a decoded record value (Avro or JSON, already mapped to `event::Value`)
//! into a `ChangeEvent`, or a counted skip (Qlik `MD` metadata, Kafka tombstones).
//!
//! Envelope logic only: no wire formats, no registry, no sink knowledge.

pub mod debezium;
pub mod qlik;
pub mod simple;

use std::collections::BTreeMap;

use crate::config::EnvelopeKind;
use crate::event::{ChangeEvent, Row, SourcePos, Value};

/// A record that decodes to no change (counted, then committed like a completed record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Qlik `atMSG` with `type = "MD"` (table metadata).
    QlikMetadata,
    /// A Kafka record with a null value (Debezium emits one after each delete for compaction).
    Tombstone,
}

impl Skip {
    pub const ALL: [Skip; 2] = [Skip::QlikMetadata, Skip::Tombstone];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::QlikMetadata => "qlik_metadata",
            Skip::Tombstone => "kafka_tombstone",
        }
    }
}

/// What an envelope made of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Change(ChangeEvent),
    Skipped(Skip),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{envelope} envelope: {detail}")]
pub struct EnvelopeError {
    pub envelope: &'static str,
    pub detail: String,
}

pub(crate) fn err(envelope: &'static str, detail: impl Into<String>) -> EnvelopeError {
    EnvelopeError {
        envelope,
        detail: detail.into(),
    }
}

/// Applies the envelope `kind` (or detects it for `Auto`).
pub fn apply(kind: EnvelopeKind, value: Value, pos: SourcePos) -> Result<Decoded, EnvelopeError> {
    let kind = match kind {
        EnvelopeKind::Auto => detect(&value).ok_or_else(|| {
            err(
                "auto",
                "cannot detect the envelope: expected qlik (data/beforeData/headers or atMSG), debezium (op/before/after/source) or simple (operation/table_name)",
            )
        })?,
        k => k,
    };
    match kind {
        EnvelopeKind::Qlik => qlik::decode(value, pos),
        EnvelopeKind::Debezium => debezium::decode(value, pos),
        EnvelopeKind::Simple => simple::decode(value, pos),
        EnvelopeKind::Auto => Err(err("auto", "unreachable: auto after detection")),
    }
}

/// Guesses the envelope from the record's top-level fields.
pub fn detect(v: &Value) -> Option<EnvelopeKind> {
    let Value::Map(m) = v else { return None };
    let has = |k: &str| m.contains_key(k);
    if matches!(m.get("magic"), Some(Value::String(s)) if s == "atMSG")
        || (has("headers") && (has("data") || has("beforeData")))
    {
        Some(EnvelopeKind::Qlik)
    } else if has("payload") && has("schema") || has("op") && (has("before") || has("after")) {
        Some(EnvelopeKind::Debezium)
    } else if has("operation") && has("table_name") {
        Some(EnvelopeKind::Simple)
    } else {
        None
    }
}

// Small accessors shared by the envelopes.

pub(crate) fn as_map(
    v: Value,
    envelope: &'static str,
    what: &str,
) -> Result<BTreeMap<String, Value>, EnvelopeError> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(err(
            envelope,
            format!("{what} must be a record/object, got {}", type_name(&other)),
        )),
    }
}

/// A row image: a record, or absent/null.
pub(crate) fn row(
    m: &mut BTreeMap<String, Value>,
    field: &str,
    envelope: &'static str,
) -> Result<Option<Row>, EnvelopeError> {
    match m.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Map(r)) => Ok(Some(r)),
        Some(other) => Err(err(
            envelope,
            format!(
                "{field} must be a record or null, got {}",
                type_name(&other)
            ),
        )),
    }
}

pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) | Some(Value::Number(s)) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "array",
        Value::Map(_) => "record",
    }
}

/// The table name from a topic when the envelope carries none: the part after the last `.`.
pub(crate) fn table_from_topic(topic: &str) -> String {
    topic.rsplit('.').next().unwrap_or(topic).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn detects_each_envelope() {
        let q = map(&[("data", Value::Null), ("headers", Value::Null)]);
        assert_eq!(detect(&q), Some(EnvelopeKind::Qlik));
        let w = map(&[("magic", Value::String("atMSG".into()))]);
        assert_eq!(detect(&w), Some(EnvelopeKind::Qlik));
        let d = map(&[("op", Value::String("c".into())), ("after", Value::Null)]);
        assert_eq!(detect(&d), Some(EnvelopeKind::Debezium));
        let s = map(&[("operation", Value::Null), ("table_name", Value::Null)]);
        assert_eq!(detect(&s), Some(EnvelopeKind::Simple));
        assert_eq!(detect(&map(&[("x", Value::Null)])), None);
    }
}
