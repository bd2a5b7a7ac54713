//! The normalised change event: what every envelope decodes into and every sink consumes.
//!
//! Pure data plus the `Seq` ordering key. It must not know about Kafka clients, AWS or
//! envelopes; conversions live in `decode/` and `route.rs`.

use std::collections::BTreeMap;
use std::fmt;

/// A column value after decoding, independent of the wire format (DESIGN §5).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An exact decimal number in canonical text form (`-12.50`, `42`, `1.5e3` is never produced).
    Number(String),
    String(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The value as it is written into a composite key (`pk`): strings verbatim, numbers as text.
    pub fn key_text(&self) -> Option<String> {
        match self {
            Value::String(s) | Value::Number(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Bytes(b) => Some(base64_encode(b)),
            Value::Null | Value::List(_) | Value::Map(_) => None,
        }
    }

    /// Converts a JSON value (JSON envelopes, the simple envelope's row strings).
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.to_string()),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// JSON rendering, used by `/status`, the generator's expected-state file and tests.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::from_str::<serde_json::Number>(n)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|_| serde_json::Value::String(n.clone())),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => serde_json::Value::String(base64_encode(b)),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// One row image: column name → value.
pub type Row = BTreeMap<String, Value>;

/// The normalised operation (DESIGN §3, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// A full-load / snapshot row (Qlik REFRESH, Debezium `r`). Written like an insert.
    Refresh,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Refresh => "REFRESH",
        }
    }

    /// Parses the spellings used by Qlik, Debezium and the simple envelope.
    pub fn parse(s: &str) -> Option<Op> {
        match s.trim().to_ascii_uppercase().as_str() {
            "INSERT" | "I" | "C" | "CREATE" => Some(Op::Insert),
            "UPDATE" | "U" => Some(Op::Update),
            "DELETE" | "D" => Some(Op::Delete),
            "REFRESH" | "R" | "READ" | "SNAPSHOT" => Some(Op::Refresh),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record came from. Offsets are identical on mirror topics (cluster linking preserves them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourcePos {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// Width of the zero-padded `_seq` string. 40 digits hold any u128 and Qlik's 35-digit
/// `changeSequence`, so DynamoDB's string comparison equals numeric comparison.
pub const SEQ_WIDTH: usize = 40;

/// The version of a change, stored as `_seq`. Ordered numerically; rendered zero-padded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeqError {
    #[error("sequence {0:?} is not a non-negative integer")]
    NotDigits(String),
    #[error("sequence {0:?} has more than {SEQ_WIDTH} digits")]
    TooLong(String),
}

impl Seq {
    /// Parses a decimal digit string (Qlik `changeSequence`, a Debezium LSN as text).
    pub fn from_digits(s: &str) -> Result<Seq, SeqError> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SeqError::NotDigits(s.to_string()));
        }
        let stripped = t.trim_start_matches('0');
        if stripped.len() > SEQ_WIDTH {
            return Err(SeqError::TooLong(s.to_string()));
        }
        Ok(Seq(format!("{stripped:0>SEQ_WIDTH$}")))
    }

    pub fn from_u128(v: u128) -> Seq {
        Seq(format!("{v:0>SEQ_WIDTH$}"))
    }

    /// A source timestamp with the Kafka offset as tie-break: `ts * 10^20 + offset`.
    /// Used where the source has no unique sequence (Debezium without LSN, the simple envelope).
    pub fn from_ts_and_offset(ts: u64, offset: i64) -> Seq {
        let off = u128::try_from(offset.max(0)).unwrap_or(0);
        Seq::from_u128(u128::from(ts) * 100_000_000_000_000_000_000u128 + off)
    }

    /// The Kafka offset itself: valid across regions because cluster links preserve offsets.
    pub fn from_offset(offset: i64) -> Seq {
        Seq::from_u128(u128::try_from(offset.max(0)).unwrap_or(0))
    }

    /// The zero-padded, fixed-width form stored in DynamoDB.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decoded, normalised change. `table` is the source table name (e.g. `customers`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    pub table: String,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub seq: Seq,
    /// Source commit time in epoch milliseconds, when the envelope carries one.
    pub ts_ms: Option<i64>,
    pub source: SourcePos,
}

impl ChangeEvent {
    /// The image that identifies the row: `after` for inserts/updates, `before` (or `after`) for deletes.
    pub fn key_image(&self) -> Option<&Row> {
        match self.op {
            Op::Delete => self.before.as_ref().or(self.after.as_ref()),
            _ => self.after.as_ref().or(self.before.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_fixed_width_and_orders_numerically() {
        let a = Seq::from_digits("9").unwrap();
        let b = Seq::from_digits("10").unwrap();
        assert_eq!(a.as_str().len(), SEQ_WIDTH);
        assert!(a.as_str() < b.as_str());
        assert_eq!(Seq::from_digits("0010").unwrap(), b);
    }

    #[test]
    fn seq_rejects_garbage() {
        assert!(matches!(
            Seq::from_digits("12a"),
            Err(SeqError::NotDigits(_))
        ));
        assert!(matches!(Seq::from_digits(""), Err(SeqError::NotDigits(_))));
        let long = "1".repeat(SEQ_WIDTH + 1);
        assert!(matches!(Seq::from_digits(&long), Err(SeqError::TooLong(_))));
    }

    #[test]
    fn ts_offset_tiebreak_orders_by_ts_then_offset() {
        let a = Seq::from_ts_and_offset(1_700_000_000_000, 99);
        let b = Seq::from_ts_and_offset(1_700_000_000_000, 100);
        let c = Seq::from_ts_and_offset(1_700_000_000_001, 0);
        assert!(a < b && b < c);
        assert!(a.as_str() < b.as_str() && b.as_str() < c.as_str());
    }

    #[test]
    fn op_parses_all_spellings() {
        assert_eq!(Op::parse("c"), Some(Op::Insert));
        assert_eq!(Op::parse("REFRESH"), Some(Op::Refresh));
        assert_eq!(Op::parse("r"), Some(Op::Refresh));
        assert_eq!(Op::parse("x"), None);
    }
}
