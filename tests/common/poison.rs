//! Records of every poison kind (DESIGN §4) plus good records of the same Qlik schema, for the
//! poison and DLQ tests. Key column `id`.
#![allow(dead_code)]

use std::time::Duration;

use apache_avro::types::Value as Avro;
use cdc_relay::decode::avro::{encode_datum, frame_wire};
use cdc_relay::decode::registry::RegistryClient;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

pub fn schema(with_id: bool) -> String {
    let mut fields = vec![serde_json::json!({"name": "name", "type": "string"})];
    if with_id {
        fields.insert(0, serde_json::json!({"name": "id", "type": "long"}));
    }
    serde_json::json!({
        "type": "record", "name": "DataRecord",
        "fields": [
            {"name": "data", "type": ["null", {"type": "record", "name": "Row", "fields": fields}]},
            {"name": "beforeData", "type": ["null", "Row"]},
            {"name": "headers", "type": {"type": "record", "name": "Headers", "fields": [
                {"name": "operation", "type": "string"},
                {"name": "changeSequence", "type": "string"}
            ]}}
        ]
    })
    .to_string()
}

pub fn record(with_id: bool, id: i64, name: &str, seq: u64) -> Avro {
    let mut row = vec![("name".to_string(), Avro::String(name.to_string()))];
    if with_id {
        row.insert(0, ("id".to_string(), Avro::Long(id)));
    }
    Avro::Record(vec![
        ("data".into(), Avro::Union(1, Box::new(Avro::Record(row)))),
        ("beforeData".into(), Avro::Union(0, Box::new(Avro::Null))),
        (
            "headers".into(),
            Avro::Record(vec![
                ("operation".into(), Avro::String("INSERT".into())),
                ("changeSequence".into(), Avro::String(seq.to_string())),
            ]),
        ),
    ])
}

/// Encoders for good records and the five poison kinds, registered under `subject`.
pub struct Poisons {
    good_id: u32,
    good_schema: apache_avro::Schema,
    /// `(payload, reason)` for each poison kind.
    pub kinds: Vec<(Vec<u8>, &'static str)>,
}

impl Poisons {
    pub async fn new(reg: &RegistryClient, subject: &str) -> Poisons {
        let good_text = schema(true);
        let good_id = reg.register(subject, &good_text).await.unwrap();
        let keyless_text = schema(false);
        let keyless_id = reg.register(subject, &keyless_text).await.unwrap();
        let good_schema = apache_avro::Schema::parse_str(&good_text).unwrap();
        let keyless_schema = apache_avro::Schema::parse_str(&keyless_text).unwrap();
        let good = |id: i64, seq: u64| {
            frame_wire(
                good_id,
                &encode_datum(&good_schema, record(true, id, "ok", seq)).unwrap(),
            )
        };
        let mut corrupt = good(9_999, 1);
        corrupt.truncate(corrupt.len() - 3);
        let kinds = vec![
            (b"\x07not-confluent-framed".to_vec(), "bad_magic"),
            (frame_wire(424_242, b"\x02\x00"), "unknown_schema_id"),
            (corrupt, "avro_decode"),
            (
                frame_wire(
                    keyless_id,
                    &encode_datum(&keyless_schema, record(false, 0, "no id", 1)).unwrap(),
                ),
                "missing_key",
            ),
            (
                frame_wire(
                    good_id,
                    &encode_datum(&good_schema, record(true, 4_999, &"x".repeat(500_000), 1))
                        .unwrap(),
                ),
                "item_too_large",
            ),
        ];
        Poisons {
            good_id,
            good_schema,
            kinds,
        }
    }

    /// A good INSERT of `id` with sequence `seq`.
    pub fn good(&self, id: i64, seq: u64) -> Vec<u8> {
        frame_wire(
            self.good_id,
            &encode_datum(&self.good_schema, record(true, id, "ok", seq)).unwrap(),
        )
    }
}

/// A producer that accepts the 500 KB poison record.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap()
}

pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> i64 {
    let mut hs = rdkafka::message::OwnedHeaders::new();
    for (k, v) in headers {
        hs = hs.insert(rdkafka::message::Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(key.as_bytes())
                .payload(payload)
                .headers(hs),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap()
        .offset
}
