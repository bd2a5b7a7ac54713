//! Qlik Replicate envelope: `data` / `beforeData` / `headers{operation, changeSequence, ...}`,
//! optionally wrapped in `{magic: "atMSG", type: "DT"|"MD", message: {...}}` (JSON message format).
//!
//! `_seq` is `headers.changeSequence`; full-load rows (REFRESH) carry none and fall back to the
//! Kafka offset. The source commit time (`ts_ms`, the item's `_ts`) is `headers.timestamp`, which
//! Qlik writes in UTC as `YYYY-MM-DD hh:mm:ss.ffffff` (epoch milliseconds are accepted too); when
//! it is absent or unparsable, `ts_ms` stays empty and the route falls back to the Kafka
//! timestamp. It must not touch wire formats.

use super::{Decoded, EnvelopeError, Skip, as_map, err, row, table_from_topic, text};
use crate::event::{ChangeEvent, Op, Seq, SourcePos, Value};

const NAME: &str = "qlik";

pub fn decode(value: Value, pos: SourcePos) -> Result<Decoded, EnvelopeError> {
    let mut m = as_map(value, NAME, "the record")?;
    if let Some(Value::String(magic)) = m.get("magic") {
        if magic != "atMSG" {
            return Err(err(
                NAME,
                format!("unknown magic {magic:?}; expected \"atMSG\""),
            ));
        }
        match text(m.get("type")).as_deref() {
            Some("MD") => return Ok(Decoded::Skipped(Skip::QlikMetadata)),
            Some("DT") => {}
            other => {
                return Err(err(
                    NAME,
                    format!("atMSG type {other:?}; expected \"DT\" or \"MD\""),
                ));
            }
        }
        let msg = m
            .remove("message")
            .ok_or_else(|| err(NAME, "atMSG wrapper without message"))?;
        m = as_map(msg, NAME, "atMSG message")?;
    }
    let headers = as_map(
        m.remove("headers")
            .ok_or_else(|| err(NAME, "headers missing"))?,
        NAME,
        "headers",
    )?;
    let op_text =
        text(headers.get("operation")).ok_or_else(|| err(NAME, "headers.operation missing"))?;
    let op = Op::parse(&op_text)
        .ok_or_else(|| err(NAME, format!("unknown headers.operation {op_text:?}")))?;
    let seq = match text(headers.get("changeSequence")) {
        Some(s) if !s.trim().is_empty() => {
            Seq::from_digits(&s).map_err(|e| err(NAME, format!("headers.changeSequence: {e}")))?
        }
        _ => Seq::from_offset(pos.offset),
    };
    let after = row(&mut m, "data", NAME)?;
    let before = row(&mut m, "beforeData", NAME)?;
    if after.is_none() && before.is_none() {
        return Err(err(NAME, "both data and beforeData are null"));
    }
    let table = text(headers.get("tableName")).unwrap_or_else(|| table_from_topic(&pos.topic));
    let ts_ms = text(headers.get("timestamp")).and_then(|t| timestamp_ms(&t));
    Ok(Decoded::Change(ChangeEvent {
        op,
        table,
        before,
        after,
        seq,
        ts_ms,
        source: pos,
    }))
}

/// `headers.timestamp` in epoch milliseconds: Qlik's UTC `2024-05-01 10:00:00.000123` (any
/// fractional precision, `T` or space, optional `Z`), or plain epoch milliseconds. `None` when
/// it is neither.
pub fn timestamp_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    let at = humantime::parse_rfc3339_weak(t).ok()?;
    match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok(),
        Err(before) => i64::try_from(before.duration().as_millis())
            .ok()
            .map(|ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn record(timestamp: Option<&str>) -> Value {
        let mut headers = BTreeMap::from([
            ("operation".to_string(), Value::String("INSERT".into())),
            ("changeSequence".to_string(), Value::String("7".into())),
        ]);
        if let Some(t) = timestamp {
            headers.insert("timestamp".into(), Value::String(t.into()));
        }
        Value::Map(BTreeMap::from([
            ("headers".to_string(), Value::Map(headers)),
            (
                "data".to_string(),
                Value::Map(BTreeMap::from([(
                    "id".to_string(),
                    Value::Number("1".into()),
                )])),
            ),
            ("beforeData".to_string(), Value::Null),
        ]))
    }

    fn ts(timestamp: Option<&str>) -> Option<i64> {
        let pos = SourcePos {
            topic: "qlik.t".into(),
            partition: 0,
            offset: 3,
        };
        match decode(record(timestamp), pos).unwrap() {
            Decoded::Change(ev) => ev.ts_ms,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn source_time_comes_from_headers_timestamp() {
        // Qlik's format: UTC, microseconds.
        assert_eq!(
            ts(Some("2024-05-01 10:00:00.000123")),
            Some(1_714_557_600_000)
        );
        assert_eq!(
            ts(Some("2024-05-01 10:00:01.999999")),
            Some(1_714_557_601_999)
        );
        assert_eq!(ts(Some("2024-05-01T10:00:00Z")), Some(1_714_557_600_000));
        assert_eq!(ts(Some("1714557600123")), Some(1_714_557_600_123));
        // Absent or unparsable: none, so the route uses the Kafka timestamp.
        assert_eq!(ts(None), None);
        assert_eq!(ts(Some("yesterday")), None);
        assert_eq!(ts(Some("")), None);
    }
}
