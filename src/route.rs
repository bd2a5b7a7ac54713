//! Routing: a `ChangeEvent` plus its route → the `WriteRequest` for the route's DynamoDB table.
//!
//! Builds the item (`pk`, columns, `_seq`, `_op`, `_src`, `_ts`, `_deleted`) and checks it against
//! DynamoDB's rules: key value size, attribute names, number precision and range, nesting depth and
//! item size. DynamoDB rejects a whole BatchWriteItem or TransactWriteItems call for one invalid
//! item (and moto accepts much of it), so each record is checked here, alone, and a bad one is
//! poison before it can fail its batch. It must not perform I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{DeleteMode, RouteConfig};
use crate::error_class::ErrorClass;
use crate::event::{ChangeEvent, Op, Seq, SourcePos, Value};

/// Relay metadata attributes on every item.
pub const ATTR_SEQ: &str = "_seq";
pub const ATTR_OP: &str = "_op";
pub const ATTR_SRC: &str = "_src";
pub const ATTR_TS: &str = "_ts";
pub const ATTR_DELETED: &str = "_deleted";

/// What to do with the item.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteKind {
    /// Conditional put of the full item (inserts, updates, refreshes, tombstones).
    Put(BTreeMap<String, Value>),
    /// Conditional hard delete (`delete = "hard"`).
    Delete,
}

/// One versioned write to a DynamoDB table.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    pub table: Arc<str>,
    pub pk_attribute: Arc<str>,
    /// The partition key value: key column values joined by `#`.
    pub pk: String,
    pub seq: Seq,
    pub op: Op,
    pub kind: WriteKind,
    pub src: SourcePos,
    /// DynamoDB's size estimate of the item, in bytes.
    pub item_bytes: usize,
}

/// DynamoDB limits (Developer Guide, "Service, account, and table quotas" and "Naming rules").
pub mod limits {
    /// A partition key value, in bytes (UTF-8).
    pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
    /// An attribute name, in bytes.
    pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 65535;
    /// Nested lists and maps.
    pub const MAX_DEPTH: usize = 32;
    /// Significant digits of a number.
    pub const MAX_NUMBER_DIGITS: usize = 38;
    /// Decimal exponent range of a non-zero number: 1E-130 ..= 9.99…E+125.
    pub const MIN_EXPONENT: i64 = -130;
    pub const MAX_EXPONENT: i64 = 125;
}

impl WriteRequest {
    /// The write as JSON (the DLQ body's decoded change).
    pub fn to_json(&self) -> serde_json::Value {
        let item = match &self.kind {
            WriteKind::Put(item) => serde_json::Value::Object(
                item.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ),
            WriteKind::Delete => serde_json::Value::Null,
        };
        serde_json::json!({"table": &*self.table, "pk": self.pk, "seq": self.seq.as_str(), "op": self.op.as_str(), "item": item})
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("key column {column:?} is missing or null in the {image} image")]
    MissingKey { column: String, image: &'static str },
    #[error("item is {bytes} bytes, over the {limit}-byte limit")]
    ItemTooLarge { bytes: usize, limit: usize },
    #[error("the partition key value is {0}: DynamoDB needs 1 to 2048 bytes")]
    BadKeyValue(String),
    #[error("attribute name {name:?}: {detail}")]
    AttributeName { name: String, detail: &'static str },
    #[error("attribute {attribute:?}: number {value} {detail}")]
    BadNumber {
        attribute: String,
        value: String,
        detail: &'static str,
    },
    #[error("attribute {attribute:?} nests lists/maps deeper than DynamoDB's 32 levels")]
    TooDeep { attribute: String },
}

impl RouteError {
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Poison
    }

    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::MissingKey { .. } => "missing_key",
            RouteError::ItemTooLarge { .. } => "item_too_large",
            RouteError::BadKeyValue(_) => "bad_key_value",
            RouteError::AttributeName { .. } => "bad_attribute_name",
            RouteError::BadNumber { .. } => "bad_number",
            RouteError::TooDeep { .. } => "too_deep",
        }
    }
}

/// A route with its strings shared between requests.
#[derive(Debug, Clone)]
pub struct Route {
    pub cfg: RouteConfig,
    table: Arc<str>,
    pk_attribute: Arc<str>,
}

impl Route {
    pub fn new(cfg: RouteConfig) -> Self {
        Route {
            table: Arc::from(cfg.table.as_deref().unwrap_or_default()),
            pk_attribute: Arc::from(cfg.pk_attribute.as_str()),
            cfg,
        }
    }

    /// The change's key: the key columns' values of its identifying image (`before` for
    /// deletes, else `after`) joined by `#`.
    pub fn key(&self, ev: &ChangeEvent) -> Result<String, RouteError> {
        let (image_name, image) = match ev.op {
            Op::Delete => ("before", ev.before.as_ref().or(ev.after.as_ref())),
            _ => ("after", ev.after.as_ref()),
        };
        let mut pk = String::new();
        for (i, col) in self.cfg.key.iter().enumerate() {
            let v = image
                .and_then(|r| r.get(col))
                .and_then(Value::key_text)
                .ok_or_else(|| RouteError::MissingKey {
                    column: col.clone(),
                    image: image_name,
                })?;
            if i > 0 {
                pk.push('#');
            }
            pk.push_str(&v);
        }
        Ok(pk)
    }

    /// Builds the write for `ev` (key included). `kafka_ts_ms` is used for `_ts` when the source
    /// has no time.
    pub fn build(
        &self,
        ev: &ChangeEvent,
        kafka_ts_ms: Option<i64>,
        max_item_bytes: usize,
    ) -> Result<WriteRequest, RouteError> {
        let pk = self.key(ev)?;
        self.build_keyed(ev, pk, kafka_ts_ms, max_item_bytes)
    }

    /// Builds the write for `ev` whose key (`Route::key`) is `pk`.
    pub fn build_keyed(
        &self,
        ev: &ChangeEvent,
        pk: String,
        kafka_ts_ms: Option<i64>,
        max_item_bytes: usize,
    ) -> Result<WriteRequest, RouteError> {
        let image = match ev.op {
            Op::Delete => ev.before.as_ref().or(ev.after.as_ref()),
            _ => ev.after.as_ref(),
        };
        if pk.is_empty() {
            return Err(RouteError::BadKeyValue("empty".into()));
        }
        if pk.len() > limits::MAX_PARTITION_KEY_BYTES {
            return Err(RouteError::BadKeyValue(format!("{} bytes", pk.len())));
        }
        let ts = ev.ts_ms.or(kafka_ts_ms).unwrap_or(0);
        let meta = |item: &mut BTreeMap<String, Value>, deleted: bool| {
            item.insert(self.cfg.pk_attribute.clone(), Value::String(pk.clone()));
            item.insert(ATTR_SEQ.into(), Value::String(ev.seq.as_str().to_string()));
            item.insert(ATTR_OP.into(), Value::String(ev.op.as_str().into()));
            item.insert(ATTR_SRC.into(), Value::String(ev.source.to_string()));
            item.insert(ATTR_TS.into(), Value::Number(ts.to_string()));
            item.insert(ATTR_DELETED.into(), Value::Bool(deleted));
        };
        let kind = match (ev.op, self.cfg.delete) {
            (Op::Delete, DeleteMode::Hard) => WriteKind::Delete,
            (Op::Delete, DeleteMode::Tombstone) => {
                let mut item = BTreeMap::new();
                if let Some(img) = image {
                    for col in &self.cfg.key {
                        if let Some(v) = img.get(col) {
                            item.insert(col.clone(), v.clone());
                        }
                    }
                }
                meta(&mut item, true);
                if let Some(ttl) = self.cfg.tombstone_ttl {
                    let expires = ts / 1000 + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
                    item.insert(
                        self.cfg.tombstone_ttl_attribute.clone(),
                        Value::Number(expires.to_string()),
                    );
                }
                WriteKind::Put(item)
            }
            _ => {
                let mut item = ev.after.clone().unwrap_or_default();
                meta(&mut item, false);
                WriteKind::Put(item)
            }
        };
        if let WriteKind::Put(item) = &kind {
            check_item(item)?;
        }
        let item_bytes = match &kind {
            WriteKind::Put(item) => item_size(item),
            WriteKind::Delete => self.cfg.pk_attribute.len() + pk.len(),
        };
        if item_bytes > max_item_bytes {
            return Err(RouteError::ItemTooLarge {
                bytes: item_bytes,
                limit: max_item_bytes,
            });
        }
        Ok(WriteRequest {
            table: Arc::clone(&self.table),
            pk_attribute: Arc::clone(&self.pk_attribute),
            pk,
            seq: ev.seq.clone(),
            op: ev.op,
            kind,
            src: ev.source.clone(),
            item_bytes,
        })
    }
}

/// At most 64 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Checks every attribute against DynamoDB's rules (names, numbers, nesting).
pub fn check_item(item: &BTreeMap<String, Value>) -> Result<(), RouteError> {
    for (name, v) in item {
        if name.is_empty() {
            return Err(RouteError::AttributeName {
                name: name.clone(),
                detail: "must not be empty",
            });
        }
        if name.len() > limits::MAX_ATTRIBUTE_NAME_BYTES {
            return Err(RouteError::AttributeName {
                name: shorten(name),
                detail: "is longer than 64 KB",
            });
        }
        check_value(name, v, 1)?;
    }
    Ok(())
}

fn check_value(attribute: &str, v: &Value, depth: usize) -> Result<(), RouteError> {
    match v {
        Value::Number(n) => number_ok(n).map_err(|detail| RouteError::BadNumber {
            attribute: attribute.to_string(),
            value: shorten(n),
            detail,
        }),
        Value::List(_) | Value::Map(_) if depth > limits::MAX_DEPTH => Err(RouteError::TooDeep {
            attribute: attribute.to_string(),
        }),
        Value::List(l) => l
            .iter()
            .try_for_each(|x| check_value(attribute, x, depth + 1)),
        Value::Map(m) => m
            .values()
            .try_for_each(|x| check_value(attribute, x, depth + 1)),
        _ => Ok(()),
    }
}

/// Whether DynamoDB accepts `n` as a number: decimal text (optional sign, digits, optional
/// fraction and exponent), at most 38 significant digits, zero or a magnitude within
/// 1E-130 ..= 9.99…E+125.
pub fn number_ok(n: &str) -> Result<(), &'static str> {
    let unsigned = n.strip_prefix(['-', '+']).unwrap_or(n);
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => (
            &unsigned[..i],
            unsigned[i + 1..]
                .parse::<i64>()
                .map_err(|_| "is not a decimal number")?,
        ),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err("is not a decimal number");
    }
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let Some(first) = digits.iter().position(|&d| d != b'0') else {
        return Ok(());
    };
    let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
    if last - first + 1 > limits::MAX_NUMBER_DIGITS {
        return Err("has more than 38 significant digits");
    }
    let magnitude =
        i64::try_from(int.len()).unwrap_or(i64::MAX) - 1 - i64::try_from(first).unwrap_or(0) + exp;
    if magnitude > limits::MAX_EXPONENT {
        return Err("is larger than DynamoDB's 9.99E+125");
    }
    if magnitude < limits::MIN_EXPONENT {
        return Err("is smaller than DynamoDB's 1E-130");
    }
    Ok(())
}

/// DynamoDB's item size rules: attribute names plus values (numbers ~1 byte per 2 digits + 1,
/// 3 bytes of overhead per list/map plus 1 per element).
pub fn item_size(item: &BTreeMap<String, Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::List(l) => 3 + l.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        Value::Map(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn route(extra: &str) -> Route {
        let cfg = Config::from_toml(&format!(
            "[kafka]\nbootstrap_servers='a:1'\ntopics=['t']\n[schema_registry]\nurl='http://x'\n[[routes]]\ntopic='t'\ntable='tbl'\nkey=['id','region']\n{extra}"
        ))
        .unwrap();
        Route::new(cfg.routes[0].clone())
    }

    fn ev(op: Op, row: &[(&str, Value)]) -> ChangeEvent {
        let r: BTreeMap<_, _> = row
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        ChangeEvent {
            op,
            table: "t".into(),
            before: (op == Op::Delete).then(|| r.clone()),
            after: (op != Op::Delete).then_some(r),
            seq: Seq::from_u128(7),
            ts_ms: Some(5000),
            source: SourcePos {
                topic: "t".into(),
                partition: 1,
                offset: 9,
            },
        }
    }

    #[test]
    fn put_carries_metadata_and_composite_key() {
        let w = route("")
            .build(
                &ev(
                    Op::Update,
                    &[
                        ("id", Value::Number("4".into())),
                        ("region", Value::String("eu".into())),
                        ("n", Value::Null),
                    ],
                ),
                None,
                1000,
            )
            .unwrap();
        assert_eq!(w.pk, "4#eu");
        let WriteKind::Put(item) = w.kind else {
            panic!()
        };
        assert_eq!(item["pk"], Value::String("4#eu".into()));
        assert_eq!(item["_src"], Value::String("t/1/9".into()));
        assert_eq!(item["_deleted"], Value::Bool(false));
        assert_eq!(
            item["_seq"].key_text().unwrap().len(),
            crate::event::SEQ_WIDTH
        );
    }

    #[test]
    fn delete_is_a_tombstone_by_default_and_hard_on_request() {
        let row = [
            ("id", Value::Number("4".into())),
            ("region", Value::String("eu".into())),
            ("big", Value::String("x".into())),
        ];
        let w = route("tombstone_ttl = '1h'")
            .build(&ev(Op::Delete, &row), None, 1000)
            .unwrap();
        let WriteKind::Put(item) = w.kind else {
            panic!()
        };
        assert_eq!(item["_deleted"], Value::Bool(true));
        assert!(!item.contains_key("big"));
        assert_eq!(item["_ttl"], Value::Number((5 + 3600).to_string()));
        let w = route("delete = 'hard'")
            .build(&ev(Op::Delete, &row), None, 1000)
            .unwrap();
        assert_eq!(w.kind, WriteKind::Delete);
    }

    #[test]
    fn missing_key_and_oversize_are_poison() {
        let e = route("")
            .build(
                &ev(Op::Insert, &[("id", Value::Number("4".into()))]),
                None,
                1000,
            )
            .unwrap_err();
        assert_eq!(
            e,
            RouteError::MissingKey {
                column: "region".into(),
                image: "after"
            }
        );
        let e = route("")
            .build(
                &ev(
                    Op::Insert,
                    &[
                        ("id", Value::Number("4".into())),
                        ("region", Value::String("x".repeat(2000))),
                    ],
                ),
                None,
                1000,
            )
            .unwrap_err();
        assert!(matches!(e, RouteError::ItemTooLarge { limit: 1000, .. }));
        assert_eq!(e.class(), ErrorClass::Poison);
    }

    fn build(row: &[(&str, Value)]) -> Result<WriteRequest, RouteError> {
        route("").build(&ev(Op::Insert, row), None, 400 * 1024)
    }

    fn key() -> [(&'static str, Value); 2] {
        [
            ("id", Value::Number("4".into())),
            ("region", Value::String("eu".into())),
        ]
    }

    #[test]
    fn what_dynamodb_would_refuse_is_poison_per_record() {
        // Key values: empty, or over 2048 bytes.
        let e = build(&[
            ("id", Value::String(String::new())),
            ("region", Value::String(String::new())),
        ]);
        assert!(e.is_ok(), "\"#\" is a non-empty key");
        let long = "k".repeat(2048);
        let e = build(&[
            ("id", Value::String(long)),
            ("region", Value::String("e".into())),
        ]);
        assert_eq!(e.unwrap_err().reason(), "bad_key_value");
        let cfg = Config::from_toml(
            "[kafka]\nbootstrap_servers='a:1'\ntopics=['t']\n[schema_registry]\nurl='http://x'\n[[routes]]\ntopic='t'\ntable='tbl'\nkey=['id']\n",
        )
        .unwrap();
        let e = Route::new(cfg.routes[0].clone())
            .build(
                &ev(Op::Insert, &[("id", Value::String(String::new()))]),
                None,
                1000,
            )
            .unwrap_err();
        assert_eq!(e.reason(), "bad_key_value");

        // Attribute names.
        let mut row = key().to_vec();
        row.push(("", Value::Bool(true)));
        assert_eq!(build(&row).unwrap_err().reason(), "bad_attribute_name");

        // Numbers: precision and range, nested too.
        for bad in [
            "1234567890123456789012345678901234567890",
            "1e126",
            "1e-131",
            "NaN",
            "1.2.3",
        ] {
            let mut row = key().to_vec();
            row.push(("n", Value::List(vec![Value::Number(bad.into())])));
            let e = build(&row).unwrap_err();
            assert_eq!(e.reason(), "bad_number", "{bad}: {e}");
        }
        for good in [
            "0",
            "-0.000",
            "12345678901234567890123456789012345678",
            "1234567890123456789012345678901234567800000",
            "9.9999999999999999999999999999999999999E+125",
            "1E-130",
            "0.00000000001",
            "-42.5",
        ] {
            let mut row = key().to_vec();
            row.push(("n", Value::Number(good.into())));
            build(&row).unwrap_or_else(|e| panic!("{good}: {e}"));
        }

        // Nesting deeper than 32 levels.
        let mut deep = Value::Number("1".into());
        for _ in 0..33 {
            deep = Value::List(vec![deep]);
        }
        let mut row = key().to_vec();
        row.push(("deep", deep));
        assert_eq!(build(&row).unwrap_err().reason(), "too_deep");
        let mut ok = Value::Number("1".into());
        for _ in 0..32 {
            ok = Value::List(vec![ok]);
        }
        let mut row = key().to_vec();
        row.push(("deep", ok));
        build(&row).unwrap();
    }
}
