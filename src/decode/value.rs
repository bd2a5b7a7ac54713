//! Avro value → `event::Value` mapping (DESIGN §5), walking the writer schema alongside the value
//! so that logical types (decimal scale, dates, timestamps) are exact.
//!
//! Pure conversion: no I/O, no envelope knowledge.

use std::collections::BTreeMap;

use apache_avro::schema::{Name, Schema};
use apache_avro::types::Value as Avro;
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
    #[error("value does not match its schema at {path}: {detail}")]
    Mismatch { path: String, detail: String },
    #[error("unresolved named type {0}")]
    UnknownName(String),
}

/// Converts `v` (decoded with `schema`) to an `event::Value`.
pub fn convert(
    v: &Avro,
    schema: &Schema,
    names: &Names,
    mode: TemporalMode,
) -> Result<Value, ValueError> {
    conv(v, schema, names, mode, "$")
}

fn mismatch(path: &str, detail: impl Into<String>) -> ValueError {
    ValueError::Mismatch {
        path: path.to_string(),
        detail: detail.into(),
    }
}

fn conv(
    v: &Avro,
    schema: &Schema,
    names: &Names,
    mode: TemporalMode,
    path: &str,
) -> Result<Value, ValueError> {
    if let Schema::Ref { name } = schema {
        let s = names
            .get(name)
            .ok_or_else(|| ValueError::UnknownName(name.to_string()))?;
        return conv(v, s, names, mode, path);
    }
    Ok(match (v, schema) {
        (Avro::Union(idx, inner), Schema::Union(u)) => {
            let s = u
                .variants()
                .get(*idx as usize)
                .ok_or_else(|| mismatch(path, format!("union index {idx} out of range")))?;
            return conv(inner, s, names, mode, path);
        }
        (Avro::Union(_, inner), s) => return conv(inner, s, names, mode, path),
        (Avro::Null, _) => Value::Null,
        (Avro::Boolean(b), _) => Value::Bool(*b),
        (Avro::Int(i), _) => Value::Number(i.to_string()),
        (Avro::Long(i), _) => Value::Number(i.to_string()),
        (Avro::Float(f), _) => float(f64::from(*f), path)?,
        (Avro::Double(f), _) => float(*f, path)?,
        (Avro::String(s), _) | (Avro::Enum(_, s), _) => Value::String(s.clone()),
        (Avro::Bytes(b), _) | (Avro::Fixed(_, b), _) => Value::Bytes(b.clone()),
        (Avro::Uuid(u), _) => Value::String(u.to_string()),
        (Avro::Decimal(d), Schema::Decimal(ds)) => {
            let unscaled = BigInt::from(d.clone());
            Value::Number(scale_decimal(&unscaled.to_string(), ds.scale))
        }
        (Avro::Decimal(_), other) => {
            return Err(mismatch(
                path,
                format!("decimal value with schema {other:?}"),
            ));
        }
        (Avro::BigDecimal(d), _) => Value::Number(d.to_plain_string()),
        (Avro::Date(days), _) => match mode {
            TemporalMode::Epoch => Value::Number(days.to_string()),
            TemporalMode::Iso => Value::String(iso_date(i64::from(*days))),
        },
        (Avro::TimeMillis(ms), _) => Value::Number(ms.to_string()),
        (Avro::TimeMicros(us), _) => Value::Number(us.to_string()),
        (Avro::TimestampMillis(t), _) | (Avro::LocalTimestampMillis(t), _) => {
            temporal(*t, 1_000, mode)
        }
        (Avro::TimestampMicros(t), _) | (Avro::LocalTimestampMicros(t), _) => {
            temporal(*t, 1_000_000, mode)
        }
        (Avro::TimestampNanos(t), _) | (Avro::LocalTimestampNanos(t), _) => {
            temporal(*t, 1_000_000_000, mode)
        }
        (Avro::Duration(d), _) => {
            let m: u32 = d.months().into();
            let days: u32 = d.days().into();
            let ms: u32 = d.millis().into();
            Value::Map(BTreeMap::from([
                ("months".to_string(), Value::Number(m.to_string())),
                ("days".to_string(), Value::Number(days.to_string())),
                ("millis".to_string(), Value::Number(ms.to_string())),
            ]))
        }
        (Avro::Array(items), Schema::Array(a)) => Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| conv(x, &a.items, names, mode, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (Avro::Map(m), Schema::Map(ms)) => Value::Map(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        conv(x, &ms.types, names, mode, &format!("{path}.{k}"))?,
                    ))
                })
                .collect::<Result<_, ValueError>>()?,
        ),
        (Avro::Record(fields), Schema::Record(rs)) => {
            let mut out = BTreeMap::new();
            for (name, x) in fields {
                let fs = rs
                    .fields
                    .iter()
                    .find(|f| &f.name == name)
                    .ok_or_else(|| mismatch(path, format!("field {name} not in schema")))?;
                out.insert(
                    name.clone(),
                    conv(x, &fs.schema, names, mode, &format!("{path}.{name}"))?,
                );
            }
            Value::Map(out)
        }
        (v, s) => {
            return Err(mismatch(
                path,
                format!("{:?} value with schema {s:?}", kind(v)),
            ));
        }
    })
}

fn kind(v: &Avro) -> &'static str {
    match v {
        Avro::Array(_) => "array",
        Avro::Map(_) => "map",
        Avro::Record(_) => "record",
        _ => "scalar",
    }
}

fn float(f: f64, path: &str) -> Result<Value, ValueError> {
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
