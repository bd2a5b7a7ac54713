//! Qlik Replicate envelope: `data` / `beforeData` / `headers{operation, changeSequence, ...}`,
//! optionally wrapped in `{magic: "atMSG", type: "DT"|"MD", message: {...}}` (JSON message format).
//!
//! `_seq` is `headers.changeSequence`; full-load rows (REFRESH) carry none and fall back to the
//! Kafka offset. It must not touch wire formats.

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
    Ok(Decoded::Change(ChangeEvent {
        op,
        table,
        before,
        after,
        seq,
        ts_ms: None,
        source: pos,
    }))
}
