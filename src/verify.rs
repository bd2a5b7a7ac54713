//! Verification: compares the items in DynamoDB with a generator's expected final state.
//! Used by the demo, `cdc-relay verify`, the e2e tests and the chaos suite. Read-only: it never
//! writes.
//!
//! Independent of the relay's write path: it reads DynamoDB attributes itself (`read_attr`) and
//! names the relay's attributes itself (`generate::ATTR_*`), so a bug in the sink's conversion or
//! a renamed attribute shows as a difference instead of on both sides.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::event::Value;
use crate::generate::{ATTR_SRC, ATTR_TS, ExpectedState};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("scanning {table}: {message}")]
    Scan { table: String, message: String },
}

/// The outcome of a comparison.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Verdict {
    pub expected: usize,
    pub matched: usize,
    /// Human-readable differences (first 20 kept).
    pub mismatches: Vec<String>,
    pub mismatch_count: usize,
    pub unexpected_items: usize,
}

impl Verdict {
    pub fn is_exact(&self) -> bool {
        self.mismatch_count == 0 && self.unexpected_items == 0 && self.matched == self.expected
    }

    fn note(&mut self, m: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < 20 {
            self.mismatches.push(m);
        }
    }
}

/// A DynamoDB attribute as the oracle reads it: numbers stay exact text, sets become lists.
pub fn read_attr(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => Value::Number(n.clone()),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::B(b) => Value::Bytes(b.as_ref().to_vec()),
        AttributeValue::L(l) => Value::List(l.iter().map(read_attr).collect()),
        AttributeValue::M(m) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), read_attr(v))).collect())
        }
        AttributeValue::Ss(ss) => Value::List(ss.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(ns) => Value::List(ns.iter().cloned().map(Value::Number).collect()),
        AttributeValue::Bs(bs) => Value::List(
            bs.iter()
                .map(|b| Value::Bytes(b.as_ref().to_vec()))
                .collect(),
        ),
        // A type this SDK does not know: never equal to anything expected.
        _ => Value::String(format!("<unknown attribute type {v:?}>")),
    }
}

/// An item's partition key as text (`S` or `N`), `None` for any other type.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) | Value::Number(s) => Some(s.clone()),
        _ => None,
    }
}

/// A table's items by partition key.
pub type TableItems = BTreeMap<String, BTreeMap<String, Value>>;

pub async fn scan_table(
    client: &Client,
    table: &str,
    pk_attribute: &str,
) -> Result<TableItems, VerifyError> {
    let mut out = BTreeMap::new();
    let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
    loop {
        let resp = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| VerifyError::Scan {
                table: table.to_string(),
                message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
            })?;
        for item in resp.items() {
            let m: BTreeMap<String, Value> = item
                .iter()
                .map(|(k, v)| (k.clone(), read_attr(v)))
                .collect();
            if let Some(pk) = m.get(pk_attribute).and_then(key_text) {
                out.insert(pk, m);
            }
        }
        match resp.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(out)
}

/// Normalises numbers so `1.50`, `1.5` and `01.5` compare equal (DynamoDB normalises too).
pub fn normalize_number(n: &str) -> String {
    let (neg, body) = match n.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let s = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    if neg && s != "0" { format!("-{s}") } else { s }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => normalize_number(x) == normalize_number(y),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Compares `actual` (one table's items) with the expected items of that table. Every expected
/// attribute must match and no other may exist, except `_src` (the Kafka position, which differs
/// between replays and regions) and `_ts` when the expected item has none.
pub fn compare_table(
    table: &str,
    expected: &BTreeMap<String, BTreeMap<String, Value>>,
    actual: &BTreeMap<String, BTreeMap<String, Value>>,
    verdict: &mut Verdict,
) {
    verdict.expected += expected.len();
    for (pk, want) in expected {
        let Some(got) = actual.get(pk) else {
            verdict.note(format!("{table}/{pk}: missing"));
            continue;
        };
        let mut ok = true;
        for (k, v) in want {
            match got.get(k) {
                Some(g) if same(v, g) => {}
                other => {
                    ok = false;
                    verdict.note(format!("{table}/{pk}.{k}: expected {v:?}, found {other:?}"));
                }
            }
        }
        for k in got.keys() {
            if !want.contains_key(k) && k != ATTR_SRC && k != ATTR_TS {
                ok = false;
                verdict.note(format!("{table}/{pk}: unexpected attribute {k}"));
            }
        }
        if ok {
            verdict.matched += 1;
        }
    }
    verdict.unexpected_items += actual
        .keys()
        .filter(|pk| !expected.contains_key(*pk))
        .count();
}

/// Compares every table of `expected` with DynamoDB.
pub async fn verify(
    client: &Client,
    expected: &ExpectedState,
    table_of: impl Fn(&str) -> String,
    pk_attribute: &str,
) -> Result<Verdict, VerifyError> {
    let mut v = Verdict::default();
    for (t, items) in &expected.tables {
        let name = table_of(t);
        let actual = scan_table(client, &name, pk_attribute).await?;
        compare_table(&name, items, &actual, &mut v);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_normalise() {
        assert_eq!(normalize_number("1.50"), "1.5");
        assert_eq!(normalize_number("-0.50"), "-0.5");
        assert_eq!(normalize_number("007"), "7");
        assert_eq!(normalize_number("-0.00"), "0");
        assert_eq!(normalize_number("10"), "10");
    }

    /// The mistakes a relay could make in what it writes, which an oracle sharing its code would
    /// make too: a decimal at the wrong scale, a `_seq` not padded or off by one.
    #[test]
    fn catches_a_wrong_decimal_scale_and_a_wrong_seq() {
        use crate::generate::{ATTR_SEQ, cents_text, seq_of_digits};
        let item = |balance: String, seq: String| {
            BTreeMap::from([
                ("pk".to_string(), Value::String("1".into())),
                ("balance".to_string(), Value::Number(balance)),
                (ATTR_SEQ.to_string(), Value::String(seq)),
            ])
        };
        let expected = BTreeMap::from([(
            "1".to_string(),
            item(cents_text(123_456), seq_of_digits("77")),
        )]);
        let verdict = |got: BTreeMap<String, Value>| {
            let mut v = Verdict::default();
            compare_table(
                "t",
                &expected,
                &BTreeMap::from([("1".to_string(), got)]),
                &mut v,
            );
            v
        };
        assert!(verdict(item("1234.560".into(), seq_of_digits("77"))).is_exact());
        for (wrong, what) in [
            (item("123456".into(), seq_of_digits("77")), "scale 0"),
            (item("123.456".into(), seq_of_digits("77")), "scale 3"),
            (item("1234.56".into(), "77".into()), "unpadded _seq"),
            (
                item("1234.56".into(), seq_of_digits("78")),
                "_seq off by one",
            ),
        ] {
            let v = verdict(wrong);
            assert!(!v.is_exact() && v.mismatch_count == 1, "{what}: {v:?}");
        }
    }

    #[test]
    fn reads_every_attribute_type_itself() {
        use aws_sdk_dynamodb::primitives::Blob;
        let m = AttributeValue::M(std::collections::HashMap::from([
            ("n".to_string(), AttributeValue::N("1.50".into())),
            (
                "l".to_string(),
                AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)]),
            ),
            ("b".to_string(), AttributeValue::B(Blob::new(vec![1, 2]))),
            ("ss".to_string(), AttributeValue::Ss(vec!["a".into()])),
        ]));
        assert_eq!(
            read_attr(&m),
            Value::Map(BTreeMap::from([
                ("n".to_string(), Value::Number("1.50".into())),
                (
                    "l".to_string(),
                    Value::List(vec![Value::Bool(true), Value::Null])
                ),
                ("b".to_string(), Value::Bytes(vec![1, 2])),
                (
                    "ss".to_string(),
                    Value::List(vec![Value::String("a".into())])
                ),
            ]))
        );
    }

    #[test]
    fn compare_detects_each_difference() {
        let item = |pairs: &[(&str, Value)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let exp = BTreeMap::from([(
            "1".to_string(),
            item(&[
                ("pk", Value::String("1".into())),
                ("n", Value::Number("1.50".into())),
            ]),
        )]);
        let mut ok = Verdict::default();
        let act = BTreeMap::from([(
            "1".to_string(),
            item(&[
                ("pk", Value::String("1".into())),
                ("n", Value::Number("1.5".into())),
                ("_ts", Value::Number("3".into())),
            ]),
        )]);
        compare_table("t", &exp, &act, &mut ok);
        assert!(ok.is_exact(), "{ok:?}");
        let mut bad = Verdict::default();
        let act = BTreeMap::from([
            (
                "1".to_string(),
                item(&[
                    ("pk", Value::String("1".into())),
                    ("n", Value::Number("2".into())),
                    ("x", Value::Null),
                ]),
            ),
            ("2".to_string(), item(&[])),
        ]);
        compare_table("t", &exp, &act, &mut bad);
        assert!(!bad.is_exact());
        assert_eq!(bad.mismatch_count, 2);
        assert_eq!(bad.unexpected_items, 1);
    }
}
