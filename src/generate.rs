//! `cdc-relay generate`: a seeded load generator. Registers schemas, produces CDC records (qlik,
//! debezium or simple envelope; Avro or JSON) for N keys per table with an INSERT/UPDATE/DELETE/
//! REFRESH mix and an optional rate limit, and computes the **expected final state** that the
//! relay must leave in DynamoDB (written as JSONL).
//!
//! It models the relay's documented semantics (composite `pk`, tombstones, `_seq`) but shares no
//! code path with the relay's decoding, so a test comparing both can fail.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::config::{EnvelopeKind, ValueFormat};
use crate::decode::registry::{RegistryClient, RegistryError};
use crate::event::Value;

/// The attributes the relay adds to every item (DESIGN §5), spelled here on their own rather than
/// taken from the relay's constants, so a renamed attribute shows as a difference.
pub const ATTR_SEQ: &str = "_seq";
pub const ATTR_OP: &str = "_op";
pub const ATTR_DELETED: &str = "_deleted";
pub const ATTR_TS: &str = "_ts";
pub const ATTR_SRC: &str = "_src";

/// A change the generator plans (its own vocabulary: the relay's `event::Op` is not used, so a
/// wrong spelling there shows as a difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Insert,
    Update,
    Delete,
    Refresh,
}

impl Change {
    /// The `_op` the relay must write, and the Qlik/simple envelope's operation.
    pub fn text(self) -> &'static str {
        match self {
            Change::Insert => "INSERT",
            Change::Update => "UPDATE",
            Change::Delete => "DELETE",
            Change::Refresh => "REFRESH",
        }
    }
}

/// Width of the relay's `_seq` text (DESIGN §5: 40 digits, zero-padded, so text order is
/// numeric order).
const SEQ_DIGITS: usize = 40;

/// `_seq` of a record with a source sequence (Qlik `changeSequence`, Debezium LSN): the digits,
/// left-padded with zeros.
pub fn seq_of_digits(digits: &str) -> String {
    let d = digits.trim_start_matches('0');
    format!("{}{d}", "0".repeat(SEQ_DIGITS.saturating_sub(d.len())))
}

/// `_seq` of a record without one (the simple envelope): the source timestamp followed by the
/// Kafka offset in 20 digits, left-padded to the width.
pub fn seq_of_ts_and_offset(ts_ms: i64, offset: i64) -> String {
    seq_of_digits(&format!("{}{:020}", ts_ms.max(0), offset.max(0)))
}

/// Exact decimal text of an amount in cents (scale 2, the generated `balance` column): the
/// integer part, a point and two digits, `-` when negative (`-5` → `-0.05`).
pub fn cents_text(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// The Confluent wire format: magic byte 0, the schema id (big-endian), the Avro datum.
fn confluent_frame(schema_id: u32, datum: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend(datum);
    out
}

/// The generated tables' row schema (named `<table>_row`): every logical type of DESIGN §5.
pub fn row_schema_json(table: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "record", "name": format!("{table}_row"), "namespace": "cdc.demo",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string"},
            {"name": "balance", "type": {"type": "bytes", "logicalType": "decimal", "precision": 14, "scale": 2}},
            {"name": "created", "type": {"type": "int", "logicalType": "date"}},
            {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "active", "type": "boolean"},
            {"name": "note", "type": ["null", "string"], "default": null}
        ]
    })
}

/// The Avro value schema of `envelope` for `table`.
pub fn envelope_schema(envelope: EnvelopeKind, table: &str) -> String {
    let row = row_schema_json(table);
    let row_name = format!("cdc.demo.{table}_row");
    let s = match envelope {
        EnvelopeKind::Qlik | EnvelopeKind::Auto => serde_json::json!({
            "type": "record", "name": "DataRecord", "namespace": "com.attunity.queue.msg",
            "fields": [
                {"name": "data", "type": ["null", row]},
                {"name": "beforeData", "type": ["null", row_name]},
                {"name": "headers", "type": {"type": "record", "name": "Headers", "fields": [
                    {"name": "operation", "type": {"type": "enum", "name": "operation", "symbols": ["INSERT", "UPDATE", "DELETE", "REFRESH"]}},
                    {"name": "changeSequence", "type": "string"},
                    {"name": "timestamp", "type": "string"},
                    {"name": "streamPosition", "type": "string"},
                    {"name": "transactionId", "type": "string"}
                ]}}
            ]
        }),
        EnvelopeKind::Debezium => serde_json::json!({
            "type": "record", "name": "Envelope", "namespace": format!("dbserver.{table}"),
            "fields": [
                {"name": "before", "type": ["null", row], "default": null},
                {"name": "after", "type": ["null", row_name], "default": null},
                {"name": "source", "type": {"type": "record", "name": "Source", "fields": [
                    {"name": "connector", "type": "string"},
                    {"name": "ts_ms", "type": "long"},
                    {"name": "table", "type": "string"},
                    {"name": "lsn", "type": ["null", "long"], "default": null}
                ]}},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": ["null", "long"], "default": null}
            ]
        }),
        EnvelopeKind::Simple => serde_json::json!({
            "type": "record", "name": "SimpleChange", "namespace": "cdc.simple",
            "fields": [
                {"name": "operation", "type": "string"},
                {"name": "table_name", "type": "string"},
                {"name": "timestamp", "type": "long"},
                {"name": "before", "type": ["null", "string"], "default": null},
                {"name": "after", "type": ["null", "string"], "default": null}
            ]
        }),
    };
    s.to_string()
}

/// Relative weights of the operations on keys that exist (inserts happen on keys that do not).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OpMix {
    pub update: u32,
    pub delete: u32,
    pub refresh: u32,
}

impl Default for OpMix {
    fn default() -> Self {
        OpMix {
            update: 70,
            delete: 20,
            refresh: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub bootstrap_servers: String,
    pub registry: crate::config::RegistryConfig,
    pub envelope: EnvelopeKind,
    pub format: ValueFormat,
    /// Table names; each goes to topic `<topic_prefix><table>`.
    pub tables: Vec<String>,
    pub topic_prefix: String,
    pub keys_per_table: u32,
    pub records: u64,
    /// The number of this run's first record (0 for a new stream). A run that continues an
    /// earlier run's stream on the same topics starts at the records produced before it, so its
    /// versions (`_seq`, source timestamps) follow them and its expected state can be laid over
    /// the earlier one (`ExpectedState::overlay`). Keys start out unknown to the continuing run:
    /// its first change of a key is an INSERT, which the relay applies like any newer version.
    pub first_record: u64,
    pub seed: u64,
    /// Records per second; `None` = as fast as the broker takes them.
    pub rate: Option<u32>,
    pub mix: OpMix,
    /// librdkafka properties for the producer (security etc.).
    pub producer_properties: BTreeMap<String, String>,
    /// Every row's `note` holds this many bytes (0: the usual mix of short notes and none), to
    /// size records for benchmarks.
    pub note_bytes: usize,
    /// Give every record a W3C `traceparent` header (a new sampled trace each), as an
    /// instrumented producer would, so the relay's spans join the producer's trace.
    pub traceparent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("schema registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("kafka producer: {0}")]
    Kafka(String),
    #[error("encoding: {0}")]
    Encode(String),
    #[error("expected-state file {path}: {detail}")]
    File { path: String, detail: String },
    /// The cluster no longer holds records this run produced: its log start offset moved past
    /// them (retention). librdkafka's mock cluster (`cdc-relay lab`) keeps only
    /// `lab::kafka::PARTITION_RETENTION_BYTES` of record batches per partition.
    #[error(
        "the cluster dropped {dropped} of the {records} records just produced ({detail}); \
         the expected state cannot be reached. The lab's mock cluster keeps about 5 MiB of records \
         per partition: produce fewer records, or spread them over more partitions"
    )]
    Dropped {
        dropped: u64,
        records: u64,
        detail: String,
    },
}

/// One expected DynamoDB item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedItem {
    pub table: String,
    pub pk: String,
    /// Attributes in DynamoDB JSON (`{"S": ..}`, `{"N": ..}`, ...), excluding `_src`.
    pub item: BTreeMap<String, serde_json::Value>,
}

/// The final state the relay must produce: table → pk → item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedState {
    pub tables: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
}

impl ExpectedState {
    pub fn len(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lays the expected state of a later run on the same stream (`GenerateSpec::first_record`
    /// past this one's records) over this one: the later run's items are newer versions, so they
    /// replace this run's items of the same key; the keys it never touched keep this run's items.
    pub fn overlay(&mut self, later: ExpectedState) {
        for (table, items) in later.tables {
            self.tables.entry(table).or_default().extend(items);
        }
    }

    pub fn write_jsonl(&self, path: &Path) -> Result<(), GenerateError> {
        let mut out = String::new();
        for (table, items) in &self.tables {
            for (pk, item) in items {
                let line = ExpectedItem {
                    table: table.clone(),
                    pk: pk.clone(),
                    item: item.iter().map(|(k, v)| (k.clone(), ddb_json(v))).collect(),
                };
                out.push_str(
                    &serde_json::to_string(&line)
                        .map_err(|e| GenerateError::Encode(e.to_string()))?,
                );
                out.push('\n');
            }
        }
        std::fs::write(path, out).map_err(|e| GenerateError::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    pub fn read_jsonl(path: &Path) -> Result<ExpectedState, GenerateError> {
        let file_err = |detail: String| GenerateError::File {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let mut st = ExpectedState::default();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let e: ExpectedItem =
                serde_json::from_str(line).map_err(|e| file_err(format!("line {}: {e}", n + 1)))?;
            let item = e
                .item
                .iter()
                .map(|(k, v)| from_ddb_json(v).map(|v| (k.clone(), v)))
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or_else(|| file_err(format!("line {}: not DynamoDB JSON", n + 1)))?;
            st.tables.entry(e.table).or_default().insert(e.pk, item);
        }
        Ok(st)
    }
}

/// `event::Value` → DynamoDB JSON.
pub fn ddb_json(v: &Value) -> serde_json::Value {
    use base64::Engine;
    match v {
        Value::Null => serde_json::json!({"NULL": true}),
        Value::Bool(b) => serde_json::json!({"BOOL": b}),
        Value::Number(n) => serde_json::json!({"N": n}),
        Value::String(s) => serde_json::json!({"S": s}),
        Value::Bytes(b) => {
            serde_json::json!({"B": base64::engine::general_purpose::STANDARD.encode(b)})
        }
        Value::List(l) => serde_json::json!({"L": l.iter().map(ddb_json).collect::<Vec<_>>()}),
        Value::Map(m) => {
            serde_json::json!({"M": m.iter().map(|(k, v)| (k.clone(), ddb_json(v))).collect::<serde_json::Map<_, _>>()})
        }
    }
}

/// DynamoDB JSON → `event::Value`.
pub fn from_ddb_json(v: &serde_json::Value) -> Option<Value> {
    use base64::Engine;
    let (tag, inner) = v.as_object()?.iter().next()?;
    Some(match tag.as_str() {
        "NULL" => Value::Null,
        "BOOL" => Value::Bool(inner.as_bool()?),
        "N" => Value::Number(inner.as_str()?.to_string()),
        "S" => Value::String(inner.as_str()?.to_string()),
        "B" => Value::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(inner.as_str()?)
                .ok()?,
        ),
        "L" => Value::List(
            inner
                .as_array()?
                .iter()
                .map(from_ddb_json)
                .collect::<Option<_>>()?,
        ),
        "M" => Value::Map(
            inner
                .as_object()?
                .iter()
                .map(|(k, v)| from_ddb_json(v).map(|v| (k.clone(), v)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// A generated row (the source of truth for Avro, JSON and the expected item).
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    name: String,
    balance_cents: i64,
    created_days: i32,
    updated_at_ms: i64,
    active: bool,
    note: Option<String>,
}

impl Row {
    fn avro(&self) -> Avro {
        let unscaled = num_bigint::BigInt::from(self.balance_cents).to_signed_bytes_be();
        Avro::Record(vec![
            ("id".into(), Avro::Long(self.id)),
            ("name".into(), Avro::String(self.name.clone())),
            (
                "balance".into(),
                Avro::Decimal(apache_avro::Decimal::from(unscaled)),
            ),
            ("created".into(), Avro::Date(self.created_days)),
            (
                "updated_at".into(),
                Avro::TimestampMillis(self.updated_at_ms),
            ),
            ("active".into(), Avro::Boolean(self.active)),
            (
                "note".into(),
                match &self.note {
                    Some(n) => Avro::Union(1, Box::new(Avro::String(n.clone()))),
                    None => Avro::Union(0, Box::new(Avro::Null)),
                },
            ),
        ])
    }

    fn json(&self) -> serde_json::Value {
        let balance: serde_json::Number = cents_text(self.balance_cents)
            .parse()
            .unwrap_or_else(|_| serde_json::Number::from(0));
        serde_json::json!({
            "id": self.id, "name": self.name, "balance": balance, "created": self.created_days,
            "updated_at": self.updated_at_ms, "active": self.active, "note": self.note,
        })
    }

    /// The columns as the relay writes them (numbers as exact decimal text).
    fn columns(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("id".into(), Value::Number(self.id.to_string())),
            ("name".into(), Value::String(self.name.clone())),
            (
                "balance".into(),
                Value::Number(cents_text(self.balance_cents)),
            ),
            (
                "created".into(),
                Value::Number(self.created_days.to_string()),
            ),
            (
                "updated_at".into(),
                Value::Number(self.updated_at_ms.to_string()),
            ),
            ("active".into(), Value::Bool(self.active)),
            (
                "note".into(),
                self.note.clone().map_or(Value::Null, Value::String),
            ),
        ])
    }
}

/// Base of Qlik-style 35-digit change sequences.
const QLIK_SEQ_PREFIX: &str = "20261122";

/// Summary printed by `cdc-relay generate` (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub records: u64,
    pub by_op: BTreeMap<String, u64>,
    pub expected_items: usize,
    pub tombstones: usize,
    pub topics: Vec<String>,
    pub elapsed_ms: u128,
}

/// One change of the stream: where it goes, its bytes, and what it must leave in DynamoDB.
#[derive(Debug, Clone)]
pub struct Generated {
    pub topic: String,
    pub table: String,
    /// The record key and the item's `pk`.
    pub pk: String,
    pub op: Change,
    pub payload: Vec<u8>,
    /// The row this change leaves (its columns; a DELETE's tombstone keeps `id`), before the
    /// relay's attributes (`Stream::expected_item` adds them).
    pub columns: BTreeMap<String, Value>,
    /// The `_seq` text the relay must write; `None` for the simple envelope, whose `_seq` is made
    /// of the offset (`seq_of_ts_and_offset` once the broker acknowledged it).
    pub seq: Option<String>,
    /// The source commit time the record carries.
    pub ts_ms: i64,
}

/// The seeded stream of changes `generate` produces, one at a time, for a producer of its own
/// (the chaos suite's load): schemas registered, rows tracked per key, payloads encoded.
pub struct Stream {
    spec: GenerateSpec,
    rng: StdRng,
    schema_ids: BTreeMap<String, (u32, apache_avro::Schema)>,
    live: BTreeMap<String, Vec<Option<Row>>>,
    next: u64,
    end: u64,
}

/// The base of every record's source commit time (record n: `BASE_MS + n`).
const BASE_MS: i64 = 1_790_000_000_000;

impl Stream {
    /// Registers the tables' schemas (Avro) and starts at `spec.first_record`.
    pub async fn new(spec: &GenerateSpec) -> Result<Stream, GenerateError> {
        let schema_ids = if spec.format == ValueFormat::Avro {
            let reg = RegistryClient::new(&spec.registry)?;
            let mut ids = BTreeMap::new();
            for t in &spec.tables {
                let text = envelope_schema(spec.envelope, t);
                let id = reg
                    .register(&format!("{}{t}-value", spec.topic_prefix), &text)
                    .await?;
                let parsed = apache_avro::Schema::parse_str(&text)
                    .map_err(|e| GenerateError::Encode(e.to_string()))?;
                ids.insert(t.clone(), (id, parsed));
            }
            ids
        } else {
            BTreeMap::new()
        };
        Ok(Stream {
            spec: spec.clone(),
            rng: StdRng::seed_from_u64(spec.seed),
            schema_ids,
            live: spec
                .tables
                .iter()
                .map(|t| (t.clone(), vec![None; spec.keys_per_table as usize]))
                .collect(),
            next: spec.first_record,
            end: spec.first_record.saturating_add(spec.records),
        })
    }

    /// The next change, or `None` after `spec.records` of them (or with no tables or keys).
    pub fn next_change(&mut self) -> Result<Option<Generated>, GenerateError> {
        let spec = &self.spec;
        if self.next >= self.end || spec.tables.is_empty() || spec.keys_per_table == 0 {
            return Ok(None);
        }
        let n = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        let table = spec.tables[rng.random_range(0..spec.tables.len())].clone();
        let k = rng.random_range(0..spec.keys_per_table) as usize;
        let rows = self
            .live
            .get_mut(&table)
            .ok_or_else(|| GenerateError::Encode("table state missing".into()))?;
        let before = rows[k].clone();
        let ts_ms = BASE_MS + i64::try_from(n).unwrap_or(i64::MAX / 2);
        let total_weight = spec.mix.update + spec.mix.delete + spec.mix.refresh;
        let op = match &before {
            None => Change::Insert,
            Some(_) => {
                let w = rng.random_range(0..total_weight.max(1));
                if w < spec.mix.update {
                    Change::Update
                } else if w < spec.mix.update + spec.mix.delete {
                    Change::Delete
                } else {
                    Change::Refresh
                }
            }
        };
        let after = match op {
            Change::Delete => None,
            _ => Some(Row {
                id: i64::try_from(k).unwrap_or(0) + 1,
                name: format!("{table}-{k}-v{n}"),
                balance_cents: rng.random_range(-10_000_000i64..100_000_000),
                created_days: 19_000 + rng.random_range(0..2000),
                updated_at_ms: ts_ms,
                active: rng.random_bool(0.8),
                note: if spec.note_bytes > 0 {
                    let head = format!("note {n} ");
                    Some(format!(
                        "{head}{}",
                        "x".repeat(spec.note_bytes.saturating_sub(head.len()))
                    ))
                } else {
                    rng.random_bool(0.3).then(|| format!("note {n}"))
                },
            }),
        };
        rows[k] = after.clone();
        let seq_digits = format!("{QLIK_SEQ_PREFIX}{:027}", n + 1);
        let seq = match spec.envelope {
            EnvelopeKind::Qlik | EnvelopeKind::Auto => Some(seq_of_digits(&seq_digits)),
            EnvelopeKind::Debezium => Some(seq_of_digits(&(n + 1).to_string())),
            EnvelopeKind::Simple => None,
        };
        let payload = encode(
            spec,
            &self.schema_ids,
            &table,
            op,
            before.as_ref(),
            after.as_ref(),
            &seq_digits,
            n + 1,
            ts_ms,
        )?;
        let columns = match (&after, &before) {
            (Some(a), _) => a.columns(),
            // A DELETE always follows a live row (the first change of a key is an INSERT).
            (None, b) => BTreeMap::from([(
                "id".to_string(),
                Value::Number(b.as_ref().map_or(0, |b| b.id).to_string()),
            )]),
        };
        Ok(Some(Generated {
            topic: format!("{}{table}", spec.topic_prefix),
            table,
            pk: (k + 1).to_string(),
            op,
            payload,
            columns,
            seq,
            ts_ms,
        }))
    }

    /// The item `c` alone leaves in DynamoDB with `_seq` = `seq`: its columns, `pk` and the
    /// relay's attributes (tombstones included).
    pub fn expected_item(c: &Generated, seq: &str) -> BTreeMap<String, Value> {
        let mut item = c.columns.clone();
        item.insert("pk".into(), Value::String(c.pk.clone()));
        item.insert(ATTR_SEQ.into(), Value::String(seq.to_string()));
        item.insert(ATTR_OP.into(), Value::String(c.op.text().into()));
        item.insert(ATTR_DELETED.into(), Value::Bool(c.op == Change::Delete));
        // The source commit time every envelope carries (Qlik `headers.timestamp`, Debezium
        // `source.ts_ms`, the simple envelope's `timestamp`), never the Kafka timestamp.
        item.insert(ATTR_TS.into(), Value::Number(c.ts_ms.to_string()));
        item
    }
}

/// Produces the records and returns the report and the expected final state.
pub async fn generate(
    spec: &GenerateSpec,
) -> Result<(GenerateReport, ExpectedState), GenerateError> {
    let started = Instant::now();
    let mut stream = Stream::new(spec).await?;
    let mut pc = ClientConfig::new();
    for (k, v) in &spec.producer_properties {
        pc.set(k, v);
    }
    let producer: FutureProducer = pc
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .map_err(|e| GenerateError::Kafka(e.to_string()))?;

    let mut report = GenerateReport {
        records: 0,
        by_op: BTreeMap::new(),
        expected_items: 0,
        tombstones: 0,
        topics: spec
            .tables
            .iter()
            .map(|t| format!("{}{t}", spec.topic_prefix))
            .collect(),
        elapsed_ms: 0,
    };
    let mut planned: Vec<Generated> = Vec::new();
    let mut pending = Vec::new();
    // The first offset this run wrote to each (topic, partition).
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while let Some(c) = stream.next_change()? {
        let mut record = FutureRecord::to(&c.topic)
            .key(c.pk.as_bytes())
            .payload(&c.payload);
        let tp;
        if spec.traceparent {
            tp = new_traceparent();
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(tp.as_str()),
            }));
        }
        let fut = producer
            .send_result(record)
            .map_err(|(e, _)| GenerateError::Kafka(e.to_string()))?;
        pending.push(fut);
        *report.by_op.entry(c.op.text().to_string()).or_default() += 1;
        report.records += 1;
        // The payload is on the producer's queue; only what the expected state needs is kept.
        planned.push(Generated {
            payload: Vec::new(),
            ..c
        });
        if pending.len() >= 2000 {
            collect(&mut pending, &mut planned, &mut first).await?;
        }
        if let Some(rate) = spec.rate {
            let due = Duration::from_secs_f64(report.records as f64 / f64::from(rate.max(1)));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    collect(&mut pending, &mut planned, &mut first).await?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| GenerateError::Kafka(e.to_string()))?;
    check_retained(producer.client(), &first, report.records)?;

    let mut expected = ExpectedState::default();
    for c in planned {
        let Some(seq) = &c.seq else { continue };
        let item = Stream::expected_item(&c, seq);
        expected
            .tables
            .entry(c.table)
            .or_default()
            .insert(c.pk, item);
    }
    report.expected_items = expected.len();
    report.tombstones = expected
        .tables
        .values()
        .flat_map(|t| t.values())
        .filter(|i| i.get(ATTR_DELETED) == Some(&Value::Bool(true)))
        .count();
    report.elapsed_ms = started.elapsed().as_millis();
    Ok((report, expected))
}

/// Fails when the cluster's log start offset moved past a record this run produced (the records
/// before it are gone, so no consumer can reach the expected state).
fn check_retained<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    first: &BTreeMap<(String, i32), i64>,
    records: u64,
) -> Result<(), GenerateError> {
    let mut dropped = 0u64;
    let mut detail = Vec::new();
    for ((topic, partition), first_offset) in first {
        let (low, _) = client
            .fetch_watermarks(topic, *partition, Duration::from_secs(10))
            .map_err(|e| GenerateError::Kafka(format!("watermarks of {topic}/{partition}: {e}")))?;
        if low > *first_offset {
            dropped += u64::try_from(low - first_offset).unwrap_or(0);
            detail.push(format!(
                "{topic}/{partition}: log starts at {low}, this run wrote from {first_offset}"
            ));
        }
    }
    if dropped > 0 {
        return Err(GenerateError::Dropped {
            dropped: dropped.min(records),
            records,
            detail: detail.join("; "),
        });
    }
    Ok(())
}

/// Awaits delivery of the pending records; fills the simple envelope's offset-based `_seq` and
/// notes the first offset written to each partition.
async fn collect(
    pending: &mut Vec<rdkafka::producer::DeliveryFuture>,
    planned: &mut [Generated],
    first: &mut BTreeMap<(String, i32), i64>,
) -> Result<(), GenerateError> {
    let start = planned.len() - pending.len();
    for (i, fut) in pending.drain(..).enumerate() {
        let d = fut
            .await
            .map_err(|_| GenerateError::Kafka("delivery cancelled".into()))?
            .map_err(|(e, _)| GenerateError::Kafka(e.to_string()))?;
        if let Some(c) = planned.get_mut(start + i) {
            let e = first
                .entry((c.topic.clone(), d.partition))
                .or_insert(d.offset);
            *e = (*e).min(d.offset);
            if c.seq.is_none() {
                c.seq = Some(seq_of_ts_and_offset(c.ts_ms, d.offset));
            }
        }
    }
    Ok(())
}

/// `count` records of `envelope` for `table` encoded as `generate` would produce them (UPDATEs of
/// 1,000 keys in turn, each row's `note` padded to `note_bytes`), without a broker or registry:
/// Avro values are framed with `schema_id`, whose schema is `envelope_schema(envelope, table)`.
/// For benchmarks of the decode and routing path.
pub fn sample_payloads(
    envelope: EnvelopeKind,
    format: ValueFormat,
    table: &str,
    schema_id: u32,
    count: u64,
    note_bytes: usize,
) -> Result<Vec<Vec<u8>>, GenerateError> {
    let spec = GenerateSpec {
        bootstrap_servers: String::new(),
        registry: Default::default(),
        envelope,
        format,
        tables: vec![table.to_string()],
        topic_prefix: String::new(),
        keys_per_table: 1000,
        records: count,
        first_record: 0,
        seed: 1,
        rate: None,
        mix: OpMix::default(),
        producer_properties: BTreeMap::new(),
        note_bytes,
        traceparent: false,
    };
    let schema = apache_avro::Schema::parse_str(&envelope_schema(envelope, table))
        .map_err(|e| GenerateError::Encode(e.to_string()))?;
    let ids = BTreeMap::from([(table.to_string(), (schema_id, schema))]);
    (0..count)
        .map(|n| {
            let k = i64::try_from(n % 1000).unwrap_or(0);
            let ts_ms = BASE_MS + i64::try_from(n).unwrap_or(0);
            let row = |v: u64| Row {
                id: k + 1,
                name: format!("{table}-{k}-v{v}"),
                balance_cents: 12_345 + i64::try_from(v).unwrap_or(0),
                created_days: 19_000,
                updated_at_ms: ts_ms,
                active: true,
                note: Some("x".repeat(note_bytes.max(4))),
            };
            let (before, after) = (row(n.saturating_sub(1)), row(n));
            let seq = format!("{QLIK_SEQ_PREFIX}{:027}", n + 1);
            encode(
                &spec,
                &ids,
                table,
                Change::Update,
                Some(&before),
                Some(&after),
                &seq,
                n + 1,
                ts_ms,
            )
        })
        .collect()
}

/// A W3C `traceparent` of a new, sampled trace (random ids, never all zero).
pub fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

/// Qlik's `headers.timestamp`: the source commit time in UTC, `YYYY-MM-DD hh:mm:ss.ffffff`.
pub fn qlik_timestamp(ts_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ts_ms).unwrap_or(0));
    humantime::format_rfc3339_micros(at)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

#[allow(clippy::too_many_arguments)]
fn encode(
    spec: &GenerateSpec,
    schema_ids: &BTreeMap<String, (u32, apache_avro::Schema)>,
    table: &str,
    op: Change,
    before: Option<&Row>,
    after: Option<&Row>,
    seq_digits: &str,
    n: u64,
    ts_ms: i64,
) -> Result<Vec<u8>, GenerateError> {
    let enc = |e: String| GenerateError::Encode(e);
    let opt_avro = |r: Option<&Row>| match r {
        Some(r) => Avro::Union(1, Box::new(r.avro())),
        None => Avro::Union(0, Box::new(Avro::Null)),
    };
    let opt_json = |r: Option<&Row>| r.map_or(serde_json::Value::Null, Row::json);
    // Qlik's DELETE carries the deleted row in `data`; Debezium's in `before`.
    let qlik_data = if op == Change::Delete { before } else { after };
    let qlik_before = if op == Change::Update { before } else { None };
    let dbz_op = match op {
        Change::Insert => "c",
        Change::Update => "u",
        Change::Delete => "d",
        Change::Refresh => "r",
    };
    let lsn = i64::try_from(n).unwrap_or(i64::MAX);
    match spec.format {
        ValueFormat::Avro => {
            let (id, schema) = schema_ids
                .get(table)
                .ok_or_else(|| enc(format!("no schema for {table}")))?;
            let v = match spec.envelope {
                EnvelopeKind::Qlik | EnvelopeKind::Auto => Avro::Record(vec![
                    ("data".into(), opt_avro(qlik_data)),
                    ("beforeData".into(), opt_avro(qlik_before)),
                    (
                        "headers".into(),
                        Avro::Record(vec![
                            (
                                "operation".into(),
                                Avro::Enum(op_index(op), op.text().into()),
                            ),
                            ("changeSequence".into(), Avro::String(seq_digits.into())),
                            ("timestamp".into(), Avro::String(qlik_timestamp(ts_ms))),
                            ("streamPosition".into(), Avro::String(format!("pos-{n}"))),
                            (
                                "transactionId".into(),
                                Avro::String(format!("tx-{}", n / 10)),
                            ),
                        ]),
                    ),
                ]),
                EnvelopeKind::Debezium => Avro::Record(vec![
                    (
                        "before".into(),
                        opt_avro(if op == Change::Insert || op == Change::Refresh {
                            None
                        } else {
                            before
                        }),
                    ),
                    ("after".into(), opt_avro(after)),
                    (
                        "source".into(),
                        Avro::Record(vec![
                            ("connector".into(), Avro::String("postgresql".into())),
                            ("ts_ms".into(), Avro::Long(ts_ms)),
                            ("table".into(), Avro::String(table.into())),
                            ("lsn".into(), Avro::Union(1, Box::new(Avro::Long(lsn)))),
                        ]),
                    ),
                    ("op".into(), Avro::String(dbz_op.into())),
                    ("ts_ms".into(), Avro::Union(1, Box::new(Avro::Long(ts_ms)))),
                ]),
                EnvelopeKind::Simple => {
                    let js = |r: Option<&Row>| match r {
                        Some(r) => Avro::Union(1, Box::new(Avro::String(r.json().to_string()))),
                        None => Avro::Union(0, Box::new(Avro::Null)),
                    };
                    Avro::Record(vec![
                        ("operation".into(), Avro::String(op.text().into())),
                        ("table_name".into(), Avro::String(table.into())),
                        ("timestamp".into(), Avro::Long(ts_ms)),
                        ("before".into(), js(before)),
                        ("after".into(), js(after)),
                    ])
                }
            };
            let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
                .build()
                .and_then(|w| w.write_value_to_vec(v))
                .map_err(|e| enc(e.to_string()))?;
            Ok(confluent_frame(*id, datum))
        }
        ValueFormat::Json => {
            let v = match spec.envelope {
                EnvelopeKind::Qlik | EnvelopeKind::Auto => serde_json::json!({
                    "magic": "atMSG", "type": "DT", "headers": null, "messageSchemaId": null, "messageSchema": null,
                    "message": {
                        "data": opt_json(qlik_data), "beforeData": opt_json(qlik_before),
                        "headers": {"operation": op.text(), "changeSequence": seq_digits, "timestamp": qlik_timestamp(ts_ms),
                                    "streamPosition": format!("pos-{n}"), "transactionId": format!("tx-{}", n / 10)}
                    }
                }),
                EnvelopeKind::Debezium => serde_json::json!({
                    "schema": {"type": "struct", "name": format!("dbserver.{table}.Envelope")},
                    "payload": {
                        "before": opt_json(if op == Change::Insert || op == Change::Refresh { None } else { before }),
                        "after": opt_json(after),
                        "source": {"connector": "postgresql", "ts_ms": ts_ms, "table": table, "lsn": lsn},
                        "op": dbz_op, "ts_ms": ts_ms
                    }
                }),
                EnvelopeKind::Simple => serde_json::json!({
                    "operation": op.text(), "table_name": table, "timestamp": ts_ms,
                    "before": before.map(|r| r.json().to_string()), "after": after.map(|r| r.json().to_string()),
                }),
            };
            Ok(v.to_string().into_bytes())
        }
    }
}

fn op_index(op: Change) -> u32 {
    match op {
        Change::Insert => 0,
        Change::Update => 1,
        Change::Delete => 2,
        Change::Refresh => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(items: &[(&str, &str, i64)]) -> ExpectedState {
        let mut s = ExpectedState::default();
        for (table, pk, v) in items {
            s.tables.entry(table.to_string()).or_default().insert(
                pk.to_string(),
                BTreeMap::from([("v".to_string(), Value::Number(v.to_string()))]),
            );
        }
        s
    }

    #[test]
    fn decimals_are_formatted_on_their_own_at_scale_two() {
        assert_eq!(cents_text(0), "0.00");
        assert_eq!(cents_text(5), "0.05");
        assert_eq!(cents_text(-5), "-0.05");
        assert_eq!(cents_text(-10_000_000), "-100000.00");
        assert_eq!(cents_text(123_456), "1234.56");
        assert_eq!(cents_text(i64::MIN), "-92233720368547758.08");
    }

    #[test]
    fn seq_texts_are_forty_digits_in_numeric_order() {
        let qlik = format!("{QLIK_SEQ_PREFIX}{:027}", 7);
        assert_eq!(
            seq_of_digits(&qlik),
            "0000020261122000000000000000000000000007"
        );
        assert_eq!(
            seq_of_digits("42"),
            "0000000000000000000000000000000000000042"
        );
        assert_eq!(
            seq_of_ts_and_offset(1_790_000_000_001, 12),
            "0000000179000000000100000000000000000012"
        );
        // Text order is numeric order, across widths.
        assert!(seq_of_digits("99") < seq_of_digits("100"));
        assert!(seq_of_ts_and_offset(5, 99_999) < seq_of_ts_and_offset(6, 0));
        assert_eq!(seq_of_digits("42").len(), 40);
    }

    #[test]
    fn overlay_replaces_keys_the_later_run_touched_and_keeps_the_rest() {
        let mut earlier = state(&[("a", "k1", 1), ("a", "k2", 2), ("b", "k1", 3)]);
        earlier.overlay(state(&[("a", "k2", 20), ("c", "k9", 90)]));
        assert_eq!(
            earlier.tables,
            state(&[
                ("a", "k1", 1),
                ("a", "k2", 20),
                ("b", "k1", 3),
                ("c", "k9", 90)
            ])
            .tables
        );
        assert_eq!(earlier.len(), 4);
    }
}
