//! Avro binary datum → `event::Value` in one pass (DESIGN §5), walking the writer schema
//! alongside the bytes so that logical types (decimal scale, dates, timestamps) are exact.
//!
//! One pass with no intermediate tree: no `apache_avro::types::Value` is built, names are
//! resolved once per writer schema (in the registry client), and nothing is formatted unless
//! something is wrong. Lengths and counts are checked against the bytes left before anything is
//! allocated, so a corrupt record costs an error, never a large allocation or a panic. Pure
//! conversion: no I/O, no envelope knowledge.

use std::collections::BTreeMap;

use apache_avro::schema::{
    DecimalSchema, InnerDecimalSchema, Name, NamespaceRef, RecordSchema, Schema, UuidSchema,
};
use num_bigint::BigInt;

use crate::event::Value;

/// Named types of a writer schema, to resolve `Schema::Ref`.
pub type Names = std::collections::HashMap<Name, Schema>;

/// How temporal logical types are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemporalMode {
    /// Epoch units as N: date → days, time-micros → µs, timestamp-millis → ms, timestamp-micros → µs.
    #[default]
    Epoch,
    /// ISO-8601 strings as S (`2024-01-31`, `2024-01-31T12:00:00.123Z`).
    Iso,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("at {path}: {detail}")]
    Mismatch { path: String, detail: String },
    #[error("unresolved named type {0}")]
    UnknownName(String),
    #[error("{0} trailing byte(s) after the datum (wrong schema id?)")]
    Trailing(usize),
}

/// Decodes one Avro datum written with `schema` (named types in `names`) into an `event::Value`.
/// Every byte must be used: trailing bytes are an error.
pub fn decode(
    body: &[u8],
    schema: &Schema,
    names: &Names,
    mode: TemporalMode,
) -> Result<Value, ValueError> {
    let mut r = Bytes {
        buf: body,
        pos: 0,
        names,
        mode,
    };
    let v = r.value(schema, None, &Path::Root)?;
    match body.len() - r.pos {
        0 => Ok(v),
        n => Err(ValueError::Trailing(n)),
    }
}

/// Where in the value something is wrong (`$.row.amount`, `$.items[3]`): built as a chain on the
/// stack and rendered only for an error, so the happy path formats nothing.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Field(p, name) => write!(f, "{p}.{name}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

fn mismatch(path: &Path<'_>, detail: impl Into<String>) -> ValueError {
    ValueError::Mismatch {
        path: path.to_string(),
        detail: detail.into(),
    }
}

/// Most elements one array or map may hold when its items can take no bytes (nulls, empty
/// records): otherwise a five-byte count could ask for billions of them.
const MAX_ZERO_SIZE_ITEMS: usize = 1 << 16;

/// The datum being read, with what every step needs.
struct Bytes<'a> {
    buf: &'a [u8],
    pos: usize,
    names: &'a Names,
    mode: TemporalMode,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize, path: &Path<'_>) -> Result<&'a [u8], ValueError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(mismatch(
                path,
                format!(
                    "the datum ends at byte {}; {n} byte(s) needed, {left} left",
                    self.buf.len()
                ),
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A zig-zag varint (Avro `long`).
    fn long(&mut self, path: &Path<'_>) -> Result<i64, ValueError> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(mismatch(
                    path,
                    "the datum ends inside a variable-length integer",
                ));
            };
            self.pos += 1;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(mismatch(
            path,
            "variable-length integer longer than 10 bytes",
        ))
    }

    fn int(&mut self, path: &Path<'_>) -> Result<i32, ValueError> {
        let v = self.long(path)?;
        i32::try_from(v).map_err(|_| mismatch(path, format!("{v} does not fit an Avro int")))
    }

    /// A length prefix (bytes, string), checked against what is left.
    fn len(&mut self, path: &Path<'_>) -> Result<usize, ValueError> {
        let n = self.long(path)?;
        usize::try_from(n).map_err(|_| mismatch(path, format!("negative length {n}")))
    }

    fn bytes(&mut self, path: &Path<'_>) -> Result<&'a [u8], ValueError> {
        let n = self.len(path)?;
        self.take(n, path)
    }

    fn str(&mut self, path: &Path<'_>) -> Result<&'a str, ValueError> {
        let b = self.bytes(path)?;
        std::str::from_utf8(b).map_err(|e| mismatch(path, format!("string is not UTF-8: {e}")))
    }

    /// One block count of an array or map (0 ends it; a negative count is followed by the
    /// block's byte size, which is skipped).
    fn block(&mut self, path: &Path<'_>) -> Result<usize, ValueError> {
        let n = self.long(path)?;
        if n < 0 {
            self.long(path)?;
        }
        usize::try_from(n.unsigned_abs())
            .map_err(|_| mismatch(path, format!("block count {n} out of range")))
    }

    /// Checks that `count` more items (of which each takes at least `min` bytes) can be there.
    fn room(&self, total: usize, min: usize, path: &Path<'_>) -> Result<(), ValueError> {
        let left = self.buf.len() - self.pos;
        let ok = match left.checked_div(min) {
            None => total <= MAX_ZERO_SIZE_ITEMS,
            Some(fit) => total <= fit + 1,
        };
        if ok {
            Ok(())
        } else {
            Err(mismatch(
                path,
                format!("{total} items cannot fit in the {left} byte(s) left"),
            ))
        }
    }

    fn resolve(&self, name: &Name, ns: NamespaceRef<'_>) -> Result<&'a Schema, ValueError> {
        let names: &'a Names = self.names;
        names
            .get(name)
            .or_else(|| names.get(name.fully_qualified_name(ns).as_ref()))
            .ok_or_else(|| ValueError::UnknownName(name.to_string()))
    }

    fn value(
        &mut self,
        schema: &'a Schema,
        ns: NamespaceRef<'a>,
        path: &Path<'_>,
    ) -> Result<Value, ValueError> {
        let mode = self.mode;
        Ok(match schema {
            Schema::Ref { name } => {
                let s = self.resolve(name, ns)?;
                return self.value(s, ns, path);
            }
            Schema::Null => Value::Null,
            Schema::Boolean => match self.take(1, path)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(mismatch(path, format!("boolean byte {b:#04x}"))),
            },
            Schema::Int | Schema::TimeMillis => Value::Number(self.int(path)?.to_string()),
            Schema::Long | Schema::TimeMicros => Value::Number(self.long(path)?.to_string()),
            Schema::Float => {
                let b = self.take(4, path)?;
                float(
                    f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    path,
                )?
            }
            Schema::Double => {
                let b = self.take(8, path)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                float(f64::from_le_bytes(a), path)?
            }
            Schema::Bytes => Value::Bytes(self.bytes(path)?.to_vec()),
            Schema::String => Value::String(self.str(path)?.to_owned()),
            Schema::Fixed(f) => Value::Bytes(self.take(f.size, path)?.to_vec()),
            Schema::Enum(e) => {
                let i = self.int(path)?;
                let sym = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| {
                        mismatch(path, format!("enum index {i} of {}", e.symbols.len()))
                    })?;
                Value::String(sym.clone())
            }
            Schema::Union(u) => {
                let i = self.long(path)?;
                let s = usize::try_from(i)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| {
                        mismatch(
                            path,
                            format!("union index {i} of {} variants", u.variants().len()),
                        )
                    })?;
                return self.value(s, ns, path);
            }
            Schema::Record(rs) => return self.record(rs, ns, path),
            Schema::Array(a) => {
                let min = min_size(&a.items, self.names, 0);
                let mut items = Vec::new();
                loop {
                    let n = self.block(path)?;
                    if n == 0 {
                        break;
                    }
                    self.room(items.len().saturating_add(n), min, path)?;
                    items.reserve(n);
                    for _ in 0..n {
                        let at = Path::Index(path, items.len());
                        items.push(self.value(&a.items, ns, &at)?);
                    }
                }
                Value::List(items)
            }
            Schema::Map(m) => {
                let min = 1 + min_size(&m.types, self.names, 0);
                let (mut out, mut seen) = (BTreeMap::new(), 0usize);
                loop {
                    let n = self.block(path)?;
                    if n == 0 {
                        break;
                    }
                    seen = seen.saturating_add(n);
                    self.room(seen, min, path)?;
                    for _ in 0..n {
                        let k = self.str(path)?;
                        let v = self.value(&m.types, ns, &Path::Field(path, k))?;
                        out.insert(k.to_owned(), v);
                    }
                }
                Value::Map(out)
            }
            Schema::Decimal(DecimalSchema { scale, inner, .. }) => {
                let b = match inner {
                    InnerDecimalSchema::Bytes => self.bytes(path)?,
                    InnerDecimalSchema::Fixed(f) => self.take(f.size, path)?,
                };
                Value::Number(scale_decimal(&signed_be(b), *scale))
            }
            Schema::BigDecimal => {
                let whole = self.bytes(path)?;
                let mut inner = Bytes {
                    buf: whole,
                    pos: 0,
                    names: self.names,
                    mode,
                };
                let unscaled = signed_be(inner.bytes(path)?);
                let scale = inner.long(path)?;
                Value::Number(big_decimal(&unscaled, scale, path)?)
            }
            Schema::Uuid(u) => {
                let uuid = match u {
                    UuidSchema::String => {
                        let s = self.str(path)?;
                        apache_avro::Uuid::parse_str(s)
                            .map_err(|e| mismatch(path, format!("uuid {s:?}: {e}")))?
                    }
                    UuidSchema::Bytes => {
                        let b = self.bytes(path)?;
                        apache_avro::Uuid::from_slice(b)
                            .map_err(|e| mismatch(path, format!("uuid bytes: {e}")))?
                    }
                    UuidSchema::Fixed(f) => {
                        let b = self.take(f.size, path)?;
                        apache_avro::Uuid::from_slice(b)
                            .map_err(|e| mismatch(path, format!("uuid fixed: {e}")))?
                    }
                };
                Value::String(uuid.to_string())
            }
            Schema::Date => {
                let days = self.int(path)?;
                match mode {
                    TemporalMode::Epoch => Value::Number(days.to_string()),
                    TemporalMode::Iso => Value::String(iso_date(i64::from(days))),
                }
            }
            Schema::TimestampMillis | Schema::LocalTimestampMillis => {
                temporal(self.long(path)?, 1_000, mode)
            }
            Schema::TimestampMicros | Schema::LocalTimestampMicros => {
                temporal(self.long(path)?, 1_000_000, mode)
            }
            Schema::TimestampNanos | Schema::LocalTimestampNanos => {
                temporal(self.long(path)?, 1_000_000_000, mode)
            }
            Schema::Duration(_) => {
                let b = self.take(12, path)?;
                let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                Value::Map(BTreeMap::from([
                    ("months".to_string(), Value::Number(u(0).to_string())),
                    ("days".to_string(), Value::Number(u(4).to_string())),
                    ("millis".to_string(), Value::Number(u(8).to_string())),
                ]))
            }
        })
    }

    fn record(
        &mut self,
        rs: &'a RecordSchema,
        ns: NamespaceRef<'a>,
        path: &Path<'_>,
    ) -> Result<Value, ValueError> {
        // Fields of a record resolve names in the record's own namespace.
        let inner_ns = rs.name.namespace().or(ns);
        let mut out = BTreeMap::new();
        for f in &rs.fields {
            let v = self.value(&f.schema, inner_ns, &Path::Field(path, &f.name))?;
            out.insert(f.name.clone(), v);
        }
        Ok(Value::Map(out))
    }
}

/// Whether a value of `schema` takes at least one byte (1) or can take none (0): bounds counts
/// against the bytes left. Unresolvable or deeply nested references count as 0 (the safe side).
fn min_size(schema: &Schema, names: &Names, depth: usize) -> usize {
    match schema {
        Schema::Null => 0,
        Schema::Fixed(f) | Schema::Duration(f) => f.size.min(1),
        Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => f.size.min(1),
        Schema::Uuid(UuidSchema::Fixed(f)) => f.size.min(1),
        Schema::Record(rs) if depth < 8 => rs
            .fields
            .iter()
            .map(|f| min_size(&f.schema, names, depth + 1))
            .max()
            .unwrap_or(0),
        Schema::Ref { name } if depth < 8 => {
            names.get(name).map_or(0, |s| min_size(s, names, depth + 1))
        }
        Schema::Record(_) | Schema::Ref { .. } => 0,
        _ => 1,
    }
}

/// A big-endian two's-complement integer as decimal text (an empty slice is 0).
fn signed_be(b: &[u8]) -> String {
    if b.len() <= 16 {
        let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut a = [fill; 16];
        a[16 - b.len()..].copy_from_slice(b);
        i128::from_be_bytes(a).to_string()
    } else {
        BigInt::from_signed_bytes_be(b).to_string()
    }
}

/// Avro's `big-decimal` (unscaled integer and its own scale) as plain decimal text.
fn big_decimal(unscaled: &str, scale: i64, path: &Path<'_>) -> Result<String, ValueError> {
    const MAX_SCALE: i64 = 1_000;
    if !(-MAX_SCALE..=MAX_SCALE).contains(&scale) {
        return Err(mismatch(
            path,
            format!("big-decimal scale {scale} out of range"),
        ));
    }
    Ok(match usize::try_from(scale) {
        Ok(s) => scale_decimal(unscaled, s),
        Err(_) if unscaled == "0" => "0".to_string(),
        Err(_) => format!("{unscaled}{}", "0".repeat(scale.unsigned_abs() as usize)),
    })
}

fn float(f: f64, path: &Path<'_>) -> Result<Value, ValueError> {
    if !f.is_finite() {
        return Err(mismatch(
            path,
            format!("{f} cannot be stored as a DynamoDB number"),
        ));
    }
    Ok(Value::Number(format!("{f}")))
}

fn temporal(t: i64, per_sec: i64, mode: TemporalMode) -> Value {
    match mode {
        TemporalMode::Epoch => Value::Number(t.to_string()),
        TemporalMode::Iso => {
            let secs = t.div_euclid(per_sec);
            let frac = t.rem_euclid(per_sec);
            let days = secs.div_euclid(86_400);
            let sod = secs.rem_euclid(86_400);
            let width = per_sec.ilog10() as usize;
            Value::String(format!(
                "{}T{:02}:{:02}:{:02}.{:0width$}Z",
                iso_date(days),
                sod / 3600,
                (sod % 3600) / 60,
                sod % 60,
                frac
            ))
        }
    }
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (proleptic Gregorian; Hinnant's civil_from_days).
fn iso_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Places the decimal point `scale` digits from the right of an integer string.
pub fn scale_decimal(unscaled: &str, scale: usize) -> String {
    let (neg, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    let s = if scale == 0 {
        digits.to_string()
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    };
    if neg { format!("-{s}") } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value as Avro;

    fn parsed(text: &str) -> (Schema, Names) {
        let schema = Schema::parse_str(text).unwrap();
        let names = apache_avro::schema::ResolvedSchema::try_from(&schema)
            .unwrap()
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        (schema, names)
    }

    fn encode(schema: &Schema, v: Avro) -> Vec<u8> {
        crate::decode::avro::encode_datum(schema, v).unwrap()
    }

    fn num(s: &str) -> Value {
        Value::Number(s.into())
    }

    const RICH: &str = r#"{"type":"record","name":"R","namespace":"ns","fields":[
        {"name":"n","type":"null"},
        {"name":"b","type":"boolean"},
        {"name":"i","type":"int"},
        {"name":"l","type":"long"},
        {"name":"s","type":"string"},
        {"name":"fx","type":{"type":"fixed","name":"Four","size":4}},
        {"name":"dur","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}},
        {"name":"uf","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}},
        {"name":"tn","type":{"type":"long","logicalType":"timestamp-nanos"}},
        {"name":"ltm","type":{"type":"long","logicalType":"local-timestamp-millis"}},
        {"name":"bd","type":{"type":"bytes","logicalType":"big-decimal"}},
        {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":40,"scale":2}},
        {"name":"inner","type":{"type":"record","name":"In","fields":[{"name":"x","type":"long"}]}},
        {"name":"again","type":["null","In"]},
        {"name":"arr","type":{"type":"array","items":"In"}},
        {"name":"m","type":{"type":"map","values":["null","long"]}}
    ]}"#;

    fn rich_value() -> Avro {
        let inner = |x| Avro::Record(vec![("x".into(), Avro::Long(x))]);
        Avro::Record(vec![
            ("n".into(), Avro::Null),
            ("b".into(), Avro::Boolean(false)),
            ("i".into(), Avro::Int(-7)),
            ("l".into(), Avro::Long(i64::MIN)),
            ("s".into(), Avro::String("héllo".into())),
            ("fx".into(), Avro::Fixed(4, vec![1, 2, 3, 4])),
            (
                "dur".into(),
                Avro::Duration(apache_avro::Duration::new(
                    apache_avro::Months::new(1),
                    apache_avro::Days::new(2),
                    apache_avro::Millis::new(3),
                )),
            ),
            ("uf".into(), Avro::Uuid(apache_avro::Uuid::from_u128(0xabc))),
            ("tn".into(), Avro::TimestampNanos(1_706_702_400_123_456_789)),
            ("ltm".into(), Avro::LocalTimestampMillis(5)),
            ("bd".into(), Avro::BigDecimal("-1234.5678".parse().unwrap())),
            (
                "dec".into(),
                // 10^40 does not fit an i128: the BigInt path.
                Avro::Decimal(apache_avro::Decimal::from(
                    BigInt::from(10).pow(40).to_signed_bytes_be(),
                )),
            ),
            ("inner".into(), inner(1)),
            ("again".into(), Avro::Union(1, Box::new(inner(2)))),
            ("arr".into(), Avro::Array(vec![inner(3), inner(4)])),
            (
                "m".into(),
                Avro::Map(
                    [
                        ("a".to_string(), Avro::Union(1, Box::new(Avro::Long(9)))),
                        ("b".to_string(), Avro::Union(0, Box::new(Avro::Null))),
                    ]
                    .into_iter()
                    .collect(),
                ),
            ),
        ])
    }

    #[test]
    fn every_type_decodes_in_one_pass() {
        let (schema, names) = parsed(RICH);
        let body = encode(&schema, rich_value());
        let Value::Map(m) = decode(&body, &schema, &names, TemporalMode::Epoch).unwrap() else {
            panic!("not a map");
        };
        let inner = |x: &str| Value::Map(BTreeMap::from([("x".to_string(), num(x))]));
        let want = BTreeMap::from([
            ("n".to_string(), Value::Null),
            ("b".to_string(), Value::Bool(false)),
            ("i".to_string(), num("-7")),
            ("l".to_string(), num("-9223372036854775808")),
            ("s".to_string(), Value::String("héllo".into())),
            ("fx".to_string(), Value::Bytes(vec![1, 2, 3, 4])),
            (
                "dur".to_string(),
                Value::Map(BTreeMap::from([
                    ("months".to_string(), num("1")),
                    ("days".to_string(), num("2")),
                    ("millis".to_string(), num("3")),
                ])),
            ),
            (
                "uf".to_string(),
                Value::String("00000000-0000-0000-0000-000000000abc".into()),
            ),
            ("tn".to_string(), num("1706702400123456789")),
            ("ltm".to_string(), num("5")),
            ("bd".to_string(), num("-1234.5678")),
            (
                "dec".to_string(),
                num("100000000000000000000000000000000000000.00"),
            ),
            ("inner".to_string(), inner("1")),
            ("again".to_string(), inner("2")),
            ("arr".to_string(), Value::List(vec![inner("3"), inner("4")])),
            (
                "m".to_string(),
                Value::Map(BTreeMap::from([
                    ("a".to_string(), num("9")),
                    ("b".to_string(), Value::Null),
                ])),
            ),
        ]);
        assert_eq!(m, want);
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_an_error_never_a_panic() {
        let (schema, names) = parsed(RICH);
        let body = encode(&schema, rich_value());
        for cut in 0..body.len() {
            assert!(
                decode(&body[..cut], &schema, &names, TemporalMode::Epoch).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer, &schema, &names, TemporalMode::Epoch),
            Err(ValueError::Trailing(1))
        );
    }

    fn err(schema: &str, body: &[u8]) -> String {
        let (schema, names) = parsed(schema);
        decode(body, &schema, &names, TemporalMode::Epoch)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn corrupt_data_is_described_without_large_allocations() {
        // A string claiming 2^62 bytes, an array of longs claiming 2^40 items, an array of nulls
        // claiming a billion: errors, not allocations.
        assert!(
            err(
                r#""string""#,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
            )
            .contains("byte(s) needed")
        );
        assert!(
            err(
                r#"{"type":"array","items":"long"}"#,
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x40]
            )
            .contains("cannot fit")
        );
        assert!(
            err(
                r#"{"type":"array","items":"null"}"#,
                &[0x80, 0x94, 0xeb, 0xdc, 0x07]
            )
            .contains("cannot fit")
        );
        assert!(err(r#""boolean""#, &[2]).contains("boolean byte 0x02"));
        assert!(err(r#"["null","long"]"#, &[4]).contains("union index 2 of 2"));
        assert!(
            err(r#"{"type":"enum","name":"E","symbols":["A"]}"#, &[2])
                .contains("enum index 1 of 1")
        );
        assert!(err(r#""string""#, &[4, 0xff, 0xfe]).contains("not UTF-8"));
        assert!(
            err(r#""int""#, &[0xfe, 0xff, 0xff, 0xff, 0x1f]).contains("does not fit an Avro int")
        );
        assert!(err(r#""long""#, &[0xff; 11]).contains("longer than 10 bytes"));
        assert!(err(r#""double""#, &f64::NAN.to_le_bytes()).contains("cannot be stored"));
        // The path names the field.
        let rec = r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"boolean"}}]}"#;
        assert!(
            err(rec, &[2, 5]).contains("at $.a[0]"),
            "{}",
            err(rec, &[2, 5])
        );
    }

    #[test]
    fn negative_block_counts_carry_a_byte_size() {
        // [1, 2] as one block of -2 items with its byte size (2), then the end.
        let (schema, names) = parsed(r#"{"type":"array","items":"long"}"#);
        let v = decode(&[3, 4, 2, 4, 0], &schema, &names, TemporalMode::Epoch).unwrap();
        assert_eq!(v, Value::List(vec![num("1"), num("2")]));
    }

    #[test]
    fn decimal_scaling() {
        assert_eq!(scale_decimal("12345", 2), "123.45");
        assert_eq!(scale_decimal("-5", 3), "-0.005");
        assert_eq!(scale_decimal("7", 0), "7");
        assert_eq!(scale_decimal("0", 2), "0.00");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(19_753), "2024-01-31");
        assert_eq!(iso_date(-1), "1969-12-31");
        assert_eq!(
            temporal(1_706_702_400_123, 1000, TemporalMode::Iso),
            Value::String("2024-01-31T12:00:00.123Z".into())
        );
    }
}
