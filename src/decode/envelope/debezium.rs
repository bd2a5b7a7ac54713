//! Debezium envelope: `before` / `after` / `source` / `op` (c, u, d, r), in Avro or JSON, the JSON
//! with or without the `schema`/`payload` wrapper. A null value is a compaction tombstone: skipped.
//!
//! `_seq` is `source.lsn` when present, otherwise `source.ts_ms` (or `ts_ms`) with the Kafka offset
//! as tie-break. It must not touch wire formats.

use super::{Decoded, EnvelopeError, Skip, as_map, err, row, table_from_topic, text};
use crate::event::{ChangeEvent, Op, Seq, SourcePos, Value};

const NAME: &str = "debezium";

pub fn decode(value: Value, pos: SourcePos) -> Result<Decoded, EnvelopeError> {
    let mut m = match value {
        Value::Null => return Ok(Decoded::Skipped(Skip::Tombstone)),
        v => as_map(v, NAME, "the record")?,
    };
    if m.contains_key("payload") && m.contains_key("schema") {
        match m.remove("payload") {
            Some(Value::Null) | None => return Ok(Decoded::Skipped(Skip::Tombstone)),
            Some(p) => m = as_map(p, NAME, "payload")?,
        }
    }
    let op_text = text(m.get("op")).ok_or_else(|| err(NAME, "op missing"))?;
    let op = Op::parse(&op_text).ok_or_else(|| err(NAME, format!("unknown op {op_text:?}")))?;
    let source = match m.remove("source") {
        Some(Value::Map(s)) => s,
        _ => Default::default(),
    };
    let ts_ms = text(source.get("ts_ms"))
        .or_else(|| text(m.get("ts_ms")))
        .and_then(|t| t.parse::<i64>().ok());
    let seq = match text(source.get("lsn")) {
        Some(lsn) => Seq::from_digits(&lsn).map_err(|e| err(NAME, format!("source.lsn: {e}")))?,
        None => match ts_ms {
            Some(ts) => Seq::from_ts_and_offset(u64::try_from(ts).unwrap_or(0), pos.offset),
            None => Seq::from_offset(pos.offset),
        },
    };
    let before = row(&mut m, "before", NAME)?;
    let after = row(&mut m, "after", NAME)?;
    match op {
        Op::Delete if before.is_none() => return Err(err(NAME, "op d without before image")),
        Op::Insert | Op::Update | Op::Refresh if after.is_none() => {
            return Err(err(NAME, format!("op {op_text} without after image")));
        }
        _ => {}
    }
    let table = text(source.get("table")).unwrap_or_else(|| table_from_topic(&pos.topic));
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
