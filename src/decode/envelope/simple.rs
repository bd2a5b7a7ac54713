//! The simple envelope of the seed system: `operation, table_name, timestamp, before, after`,
//! where `before` and `after` are JSON strings (objects are accepted too).
//!
//! `_seq` is `timestamp` (epoch units) with the Kafka offset as tie-break, so two changes in the
//! same millisecond still order. It must not touch wire formats.

use super::{Decoded, EnvelopeError, as_map, err, text, type_name};
use crate::event::{ChangeEvent, Op, Row, Seq, SourcePos, Value};

const NAME: &str = "simple";

pub fn decode(value: Value, pos: SourcePos) -> Result<Decoded, EnvelopeError> {
    let mut m = as_map(value, NAME, "the record")?;
    let op_text = text(m.get("operation")).ok_or_else(|| err(NAME, "operation missing"))?;
    let op =
        Op::parse(&op_text).ok_or_else(|| err(NAME, format!("unknown operation {op_text:?}")))?;
    let table = text(m.get("table_name")).ok_or_else(|| err(NAME, "table_name missing"))?;
    let ts_text = text(m.get("timestamp")).ok_or_else(|| err(NAME, "timestamp missing"))?;
    let ts: u64 = ts_text.parse().map_err(|_| {
        err(
            NAME,
            format!("timestamp {ts_text:?} is not a non-negative integer"),
        )
    })?;
    let before = image(m.remove("before"), "before")?;
    let after = image(m.remove("after"), "after")?;
    if before.is_none() && after.is_none() {
        return Err(err(NAME, "both before and after are null"));
    }
    Ok(Decoded::Change(ChangeEvent {
        op,
        table,
        before,
        after,
        seq: Seq::from_ts_and_offset(ts, pos.offset),
        ts_ms: i64::try_from(ts).ok(),
        source: pos,
    }))
}

fn image(v: Option<Value>, field: &str) -> Result<Option<Row>, EnvelopeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() || s.trim() == "null" => Ok(None),
        Some(Value::String(s)) => {
            let j: serde_json::Value = serde_json::from_str(&s)
                .map_err(|e| err(NAME, format!("{field} is not valid JSON: {e}")))?;
            match Value::from_json(&j) {
                Value::Map(r) => Ok(Some(r)),
                Value::Null => Ok(None),
                other => Err(err(
                    NAME,
                    format!("{field} must be a JSON object, got {}", type_name(&other)),
                )),
            }
        }
        Some(Value::Map(r)) => Ok(Some(r)),
        Some(other) => Err(err(
            NAME,
            format!("{field} must be a JSON string, got {}", type_name(&other)),
        )),
    }
}
