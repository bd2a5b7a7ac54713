//! Decoder tests against the schema-registry fixture: all three envelopes in Avro and JSON, the
//! Qlik `atMSG` wrapper and `MD` skipping, every logical type of DESIGN §5, schema evolution and
//! registry failures (auth, unknown id, unreachable).

use std::collections::BTreeMap;

use apache_avro::types::Value as Avro;
use cdc_relay::config::{Config, RegistryConfig, RouteConfig};
use cdc_relay::decode::avro::{encode_datum, frame_wire};
use cdc_relay::decode::registry::{RegistryClient, RegistryError};
use cdc_relay::decode::value::TemporalMode;
use cdc_relay::decode::{DecodeError, Decoded, Decoder, Skip};
use cdc_relay::error_class::ErrorClass;
use cdc_relay::event::{ChangeEvent, Op, Seq, SourcePos, Value};
use cdc_relay::lab::registry_fixture::RegistryFixture;

fn route(envelope: &str, format: &str) -> RouteConfig {
    let cfg = Config::from_toml(&format!(
        "[kafka]\nbootstrap_servers='a:1'\ntopics=['db.customers']\n[schema_registry]\nurl='http://x'\n[[routes]]\ntopic='db.customers'\ntable='t'\nkey=['id']\nenvelope='{envelope}'\nformat='{format}'\n"
    ))
    .unwrap();
    cfg.routes[0].clone()
}

fn pos(offset: i64) -> SourcePos {
    SourcePos {
        topic: "db.customers".into(),
        partition: 0,
        offset,
    }
}

async fn fixture(auth: Option<(&str, &str)>) -> (RegistryFixture, RegistryClient) {
    let fx = RegistryFixture::start(auth).await.unwrap();
    let client = RegistryClient::new(&RegistryConfig {
        url: Some(fx.url()),
        username: auth.map(|(u, _)| u.to_string()),
        password: auth.map(|(_, p)| p.to_string()),
        ..Default::default()
    })
    .unwrap();
    (fx, client)
}

async fn avro_payload(reg: &RegistryClient, subject: &str, schema: &str, v: Avro) -> Vec<u8> {
    let id = reg.register(subject, schema).await.unwrap();
    let parsed = apache_avro::Schema::parse_str(schema).unwrap();
    frame_wire(id, &encode_datum(&parsed, v).unwrap())
}

fn change(d: Decoded) -> ChangeEvent {
    match d {
        Decoded::Change(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn n(s: &str) -> Value {
    Value::Number(s.into())
}
fn s(x: &str) -> Value {
    Value::String(x.into())
}

const ROW: &str = r#"{"type":"record","name":"Row","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;

fn row(id: i64, name: &str) -> Avro {
    Avro::Record(vec![
        ("id".into(), Avro::Long(id)),
        ("name".into(), Avro::String(name.into())),
    ])
}

fn some(v: Avro) -> Avro {
    Avro::Union(1, Box::new(v))
}
fn none() -> Avro {
    Avro::Union(0, Box::new(Avro::Null))
}

#[tokio::test]
async fn qlik_avro_plain() {
    let (_fx, reg) = fixture(None).await;
    let schema = format!(
        r#"{{"type":"record","name":"DataRecord","fields":[
            {{"name":"data","type":["null",{ROW}]}},{{"name":"beforeData","type":["null","Row"]}},
            {{"name":"headers","type":{{"type":"record","name":"H","fields":[
                {{"name":"operation","type":{{"type":"enum","name":"op","symbols":["INSERT","UPDATE","DELETE","REFRESH"]}}}},
                {{"name":"changeSequence","type":"string"}},{{"name":"timestamp","type":"string"}}]}}}}]}}"#
    );
    let v = Avro::Record(vec![
        ("data".into(), some(row(7, "new"))),
        ("beforeData".into(), some(row(7, "old"))),
        (
            "headers".into(),
            Avro::Record(vec![
                ("operation".into(), Avro::Enum(1, "UPDATE".into())),
                (
                    "changeSequence".into(),
                    Avro::String("20261122000000000000000000000000042".into()),
                ),
                (
                    "timestamp".into(),
                    Avro::String("2026-11-22 10:00:00".into()),
                ),
            ]),
        ),
    ]);
    let payload = avro_payload(&reg, "db.customers-value", &schema, v).await;
    let ev = change(
        Decoder::new(reg)
            .decode(&route("qlik", "avro"), Some(&payload), pos(3))
            .await
            .unwrap(),
    );
    assert_eq!(ev.op, Op::Update);
    assert_eq!(
        ev.seq,
        Seq::from_digits("20261122000000000000000000000000042").unwrap()
    );
    assert_eq!(ev.after.as_ref().unwrap()["name"], s("new"));
    assert_eq!(ev.before.as_ref().unwrap()["name"], s("old"));
    assert_eq!(ev.table, "customers");
}

#[tokio::test]
async fn qlik_json_atmsg_and_md_skipping() {
    let (_fx, reg) = fixture(None).await;
    let dec = Decoder::new(reg);
    let dt = serde_json::json!({
        "magic": "atMSG", "type": "DT", "headers": null, "messageSchemaId": null, "messageSchema": null,
        "message": {"data": {"id": 1, "name": "a"}, "beforeData": null,
                    "headers": {"operation": "INSERT", "changeSequence": "100", "timestamp": "x", "tableName": "CUSTOMERS"}}
    });
    let ev = change(
        dec.decode(
            &route("qlik", "json"),
            Some(dt.to_string().as_bytes()),
            pos(1),
        )
        .await
        .unwrap(),
    );
    assert_eq!((ev.op, ev.table.as_str()), (Op::Insert, "CUSTOMERS"));
    assert_eq!(ev.seq, Seq::from_u128(100));
    // auto-detection finds the same envelope
    let ev2 = change(
        dec.decode(
            &route("auto", "json"),
            Some(dt.to_string().as_bytes()),
            pos(1),
        )
        .await
        .unwrap(),
    );
    assert_eq!(ev, ev2);
    let md = serde_json::json!({"magic": "atMSG", "type": "MD", "headers": null, "message": {"lineage": {}}});
    let d = dec
        .decode(
            &route("qlik", "json"),
            Some(md.to_string().as_bytes()),
            pos(2),
        )
        .await
        .unwrap();
    assert_eq!(d, Decoded::Skipped(Skip::QlikMetadata));
    // A REFRESH without changeSequence falls back to the Kafka offset.
    let refresh = serde_json::json!({"data": {"id": 1}, "beforeData": null, "headers": {"operation": "REFRESH", "changeSequence": ""}});
    let ev = change(
        dec.decode(
            &route("qlik", "json"),
            Some(refresh.to_string().as_bytes()),
            pos(77),
        )
        .await
        .unwrap(),
    );
    assert_eq!((ev.op, ev.seq.clone()), (Op::Refresh, Seq::from_offset(77)));
}

#[tokio::test]
async fn debezium_avro_and_json_with_and_without_envelope() {
    let (_fx, reg) = fixture(None).await;
    let schema = format!(
        r#"{{"type":"record","name":"Envelope","fields":[
            {{"name":"before","type":["null",{ROW}]}},{{"name":"after","type":["null","Row"]}},
            {{"name":"source","type":{{"type":"record","name":"Source","fields":[{{"name":"ts_ms","type":"long"}},{{"name":"table","type":"string"}},{{"name":"lsn","type":["null","long"]}}]}}}},
            {{"name":"op","type":"string"}}]}}"#
    );
    let v = Avro::Record(vec![
        ("before".into(), some(row(9, "gone"))),
        ("after".into(), none()),
        (
            "source".into(),
            Avro::Record(vec![
                ("ts_ms".into(), Avro::Long(1000)),
                ("table".into(), Avro::String("customers".into())),
                ("lsn".into(), some(Avro::Long(555))),
            ]),
        ),
        ("op".into(), Avro::String("d".into())),
    ]);
    let payload = avro_payload(&reg, "dbz-value", &schema, v).await;
    let dec = Decoder::new(reg);
    let ev = change(
        dec.decode(&route("debezium", "avro"), Some(&payload), pos(4))
            .await
            .unwrap(),
    );
    assert_eq!((ev.op, ev.seq.clone()), (Op::Delete, Seq::from_u128(555)));
    assert_eq!(ev.key_image().unwrap()["id"], n("9"));

    let payload = serde_json::json!({"before": null, "after": {"id": 1}, "source": {"ts_ms": 1700, "table": "c"}, "op": "r"});
    let wrapped = serde_json::json!({"schema": {"type": "struct"}, "payload": payload});
    let a = change(
        dec.decode(
            &route("debezium", "json"),
            Some(payload.to_string().as_bytes()),
            pos(8),
        )
        .await
        .unwrap(),
    );
    let b = change(
        dec.decode(
            &route("auto", "json"),
            Some(wrapped.to_string().as_bytes()),
            pos(8),
        )
        .await
        .unwrap(),
    );
    assert_eq!(a, b, "with and without schema/payload decode alike");
    assert_eq!(
        (a.op, a.seq),
        (Op::Refresh, Seq::from_ts_and_offset(1700, 8)),
        "no LSN: ts_ms with the offset as tie-break"
    );
    // Tombstones (null value, or payload null) are skipped.
    let t = dec
        .decode(&route("debezium", "json"), None, pos(9))
        .await
        .unwrap();
    assert_eq!(t, Decoded::Skipped(Skip::Tombstone));
    let t = dec
        .decode(
            &route("debezium", "json"),
            Some(br#"{"schema":{},"payload":null}"#),
            pos(9),
        )
        .await
        .unwrap();
    assert_eq!(t, Decoded::Skipped(Skip::Tombstone));
}

#[tokio::test]
async fn simple_envelope_avro_and_json() {
    let (_fx, reg) = fixture(None).await;
    let schema = r#"{"type":"record","name":"S","fields":[{"name":"operation","type":"string"},{"name":"table_name","type":"string"},
        {"name":"timestamp","type":"long"},{"name":"before","type":["null","string"]},{"name":"after","type":["null","string"]}]}"#;
    let v = Avro::Record(vec![
        ("operation".into(), Avro::String("UPDATE".into())),
        ("table_name".into(), Avro::String("orders".into())),
        ("timestamp".into(), Avro::Long(1_700_000_000_000)),
        (
            "before".into(),
            some(Avro::String(r#"{"id": 3, "amt": 1.5}"#.into())),
        ),
        (
            "after".into(),
            some(Avro::String(
                r#"{"id": 3, "amt": 2.25, "tags": ["a"]}"#.into(),
            )),
        ),
    ]);
    let payload = avro_payload(&reg, "simple-value", schema, v).await;
    let dec = Decoder::new(reg);
    let ev = change(
        dec.decode(&route("simple", "avro"), Some(&payload), pos(5))
            .await
            .unwrap(),
    );
    assert_eq!((ev.op, ev.table.as_str()), (Op::Update, "orders"));
    assert_eq!(ev.seq, Seq::from_ts_and_offset(1_700_000_000_000, 5));
    assert_eq!(ev.after.as_ref().unwrap()["amt"], n("2.25"));
    assert_eq!(
        ev.after.as_ref().unwrap()["tags"],
        Value::List(vec![s("a")])
    );
    let json = serde_json::json!({"operation": "DELETE", "table_name": "orders", "timestamp": 5, "before": "{\"id\": 3}", "after": null});
    let ev = change(
        dec.decode(
            &route("auto", "json"),
            Some(json.to_string().as_bytes()),
            pos(6),
        )
        .await
        .unwrap(),
    );
    assert_eq!(ev.op, Op::Delete);
    assert_eq!(ev.key_image().unwrap()["id"], n("3"));
    let bad = serde_json::json!({"operation": "DELETE", "table_name": "orders", "timestamp": "soon", "before": "{}"});
    let e = dec
        .decode(
            &route("simple", "json"),
            Some(bad.to_string().as_bytes()),
            pos(7),
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Poison);
    assert!(e.to_string().contains("timestamp"), "{e}");
}

const LOGICAL: &str = r#"{"type":"record","name":"L","fields":[
    {"name":"id","type":"long"},
    {"name":"dec_bytes","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":3}},
    {"name":"dec_fixed","type":{"type":"fixed","name":"F","size":8,"logicalType":"decimal","precision":18,"scale":2}},
    {"name":"d","type":{"type":"int","logicalType":"date"}},
    {"name":"tmil","type":{"type":"int","logicalType":"time-millis"}},
    {"name":"tmic","type":{"type":"long","logicalType":"time-micros"}},
    {"name":"tsmil","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"tsmic","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"u","type":{"type":"string","logicalType":"uuid"}},
    {"name":"f","type":"float"}, {"name":"db","type":"double"}, {"name":"b","type":"boolean"}, {"name":"raw","type":"bytes"},
    {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
    {"name":"arr","type":{"type":"array","items":"int"}},
    {"name":"m","type":{"type":"map","values":"string"}},
    {"name":"nested","type":{"type":"record","name":"N","fields":[{"name":"x","type":["null","int"]}]}},
    {"name":"opt","type":["null","string"]}
]}"#;

fn logical_value() -> Avro {
    use num_bigint::BigInt;
    let dec = |v: i64, width: Option<usize>| {
        let mut b = BigInt::from(v).to_signed_bytes_be();
        if let Some(w) = width {
            let fill = if v < 0 { 0xff } else { 0 };
            while b.len() < w {
                b.insert(0, fill);
            }
        }
        apache_avro::Decimal::from(b)
    };
    Avro::Record(vec![
        ("id".into(), Avro::Long(1)),
        ("dec_bytes".into(), Avro::Decimal(dec(-12_345, None))),
        ("dec_fixed".into(), Avro::Decimal(dec(123_456_789, Some(8)))),
        ("d".into(), Avro::Date(19_753)),
        ("tmil".into(), Avro::TimeMillis(3_600_000)),
        ("tmic".into(), Avro::TimeMicros(1_000_001)),
        ("tsmil".into(), Avro::TimestampMillis(1_706_702_400_123)),
        ("tsmic".into(), Avro::TimestampMicros(1_706_702_400_123_456)),
        ("u".into(), Avro::Uuid(apache_avro::Uuid::from_u128(0x1234))),
        ("f".into(), Avro::Float(1.5)),
        ("db".into(), Avro::Double(-0.25)),
        ("b".into(), Avro::Boolean(true)),
        ("raw".into(), Avro::Bytes(vec![1, 2, 255])),
        ("e".into(), Avro::Enum(1, "GREEN".into())),
        ("arr".into(), Avro::Array(vec![Avro::Int(1), Avro::Int(2)])),
        (
            "m".into(),
            Avro::Map(
                [("k".to_string(), Avro::String("v".into()))]
                    .into_iter()
                    .collect(),
            ),
        ),
        (
            "nested".into(),
            Avro::Record(vec![("x".into(), some(Avro::Int(5)))]),
        ),
        ("opt".into(), none()),
    ])
}

fn debezium_with(row_schema: &str) -> String {
    format!(
        r#"{{"type":"record","name":"E","fields":[{{"name":"after","type":["null",{row_schema}]}},{{"name":"op","type":"string"}}]}}"#
    )
}

#[tokio::test]
async fn every_logical_type_maps_exactly() {
    let (_fx, reg) = fixture(None).await;
    let v = Avro::Record(vec![
        ("after".into(), some(logical_value())),
        ("op".into(), Avro::String("c".into())),
    ]);
    let payload = avro_payload(&reg, "logical-value", &debezium_with(LOGICAL), v).await;
    let dec = Decoder::new(reg);
    let ev = change(
        dec.decode(&route("debezium", "avro"), Some(&payload), pos(1))
            .await
            .unwrap(),
    );
    let r = ev.after.unwrap();
    let want: BTreeMap<&str, Value> = BTreeMap::from([
        ("dec_bytes", n("-12.345")),
        ("dec_fixed", n("1234567.89")),
        ("d", n("19753")),
        ("tmil", n("3600000")),
        ("tmic", n("1000001")),
        ("tsmil", n("1706702400123")),
        ("tsmic", n("1706702400123456")),
        ("u", s("00000000-0000-0000-0000-000000001234")),
        ("f", n("1.5")),
        ("db", n("-0.25")),
        ("b", Value::Bool(true)),
        ("raw", Value::Bytes(vec![1, 2, 255])),
        ("e", s("GREEN")),
        ("arr", Value::List(vec![n("1"), n("2")])),
        ("m", Value::Map(BTreeMap::from([("k".to_string(), s("v"))]))),
        (
            "nested",
            Value::Map(BTreeMap::from([("x".to_string(), n("5"))])),
        ),
        ("opt", Value::Null),
    ]);
    for (k, v) in want {
        assert_eq!(r[k], v, "column {k}");
    }
    // ISO mode renders dates and timestamps as strings.
    let mut iso = route("debezium", "avro");
    iso.temporal = TemporalMode::Iso;
    let ev = change(dec.decode(&iso, Some(&payload), pos(1)).await.unwrap());
    let r = ev.after.unwrap();
    assert_eq!(r["d"], s("2024-01-31"));
    assert_eq!(r["tsmil"], s("2024-01-31T12:00:00.123Z"));
    assert_eq!(r["tsmic"], s("2024-01-31T12:00:00.123456Z"));
}

#[tokio::test]
async fn schema_evolution_two_writer_ids_for_one_subject() {
    let (_fx, reg) = fixture(None).await;
    let v1 = r#"{"type":"record","name":"Row","fields":[{"name":"id","type":"long"}]}"#;
    let v2 = r#"{"type":"record","name":"Row","fields":[{"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null}]}"#;
    let p1 = avro_payload(
        &reg,
        "evo-value",
        &debezium_with(v1),
        Avro::Record(vec![
            (
                "after".into(),
                some(Avro::Record(vec![("id".into(), Avro::Long(1))])),
            ),
            ("op".into(), Avro::String("c".into())),
        ]),
    )
    .await;
    let p2 = avro_payload(
        &reg,
        "evo-value",
        &debezium_with(v2),
        Avro::Record(vec![
            (
                "after".into(),
                some(Avro::Record(vec![
                    ("id".into(), Avro::Long(2)),
                    ("email".into(), some(Avro::String("a@b".into()))),
                ])),
            ),
            ("op".into(), Avro::String("u".into())),
        ]),
    )
    .await;
    assert_ne!(p1[1..5], p2[1..5], "two writer schema ids");
    let dec = Decoder::new(reg);
    let a = change(
        dec.decode(&route("debezium", "avro"), Some(&p1), pos(1))
            .await
            .unwrap(),
    );
    let b = change(
        dec.decode(&route("debezium", "avro"), Some(&p2), pos(2))
            .await
            .unwrap(),
    );
    assert!(!a.after.unwrap().contains_key("email"));
    assert_eq!(b.after.unwrap()["email"], s("a@b"));
    // interleaved again, from the cache
    let a2 = change(
        dec.decode(&route("debezium", "avro"), Some(&p1), pos(3))
            .await
            .unwrap(),
    );
    assert_eq!(a2.after.unwrap()["id"], n("1"));
    assert_eq!(dec.registry().cached(), 2);
    // A partition's memo of its last writer schema follows the id of every record.
    let mut memo = None;
    for (p, want_email) in [(&p1, false), (&p1, false), (&p2, true), (&p1, false)] {
        let ev = change(
            dec.decode_memo(&mut memo, &route("debezium", "avro"), Some(p), pos(4))
                .await
                .unwrap(),
        );
        assert_eq!(ev.after.unwrap().contains_key("email"), want_email);
        assert_eq!(
            memo.as_ref().map(|w| w.id.to_be_bytes()),
            Some([p[1], p[2], p[3], p[4]])
        );
    }
}

#[tokio::test]
async fn poison_inputs_are_classified() {
    let (_fx, reg) = fixture(None).await;
    let dec = Decoder::new(reg.clone());
    let r = route("debezium", "avro");
    let e = dec
        .decode(&r, Some(b"\x01\x00\x00\x00\x01abc"), pos(1))
        .await
        .unwrap_err();
    assert_eq!((e.class(), e.reason()), (ErrorClass::Poison, "bad_magic"));
    let e = dec.decode(&r, Some(b"\x00\x00"), pos(1)).await.unwrap_err();
    assert_eq!((e.class(), e.reason()), (ErrorClass::Poison, "too_short"));
    let e = dec
        .decode(&r, Some(&frame_wire(4242, b"\x00")), pos(1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.class(), e.reason()),
        (ErrorClass::Poison, "unknown_schema_id")
    );
    assert!(e.to_string().contains("4242"), "{e}");
    let good = avro_payload(
        &reg,
        "p-value",
        &debezium_with(ROW),
        Avro::Record(vec![
            ("after".into(), some(row(1, "abcdef"))),
            ("op".into(), Avro::String("c".into())),
        ]),
    )
    .await;
    let truncated = &good[..good.len() - 3];
    let e = dec.decode(&r, Some(truncated), pos(1)).await.unwrap_err();
    assert_eq!((e.class(), e.reason()), (ErrorClass::Poison, "avro_decode"));
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"zz");
    let e = dec.decode(&r, Some(&trailing), pos(1)).await.unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");
    let e = dec
        .decode(&route("debezium", "json"), Some(b"{not json"), pos(1))
        .await
        .unwrap_err();
    assert_eq!((e.class(), e.reason()), (ErrorClass::Poison, "json_decode"));
    let e = dec
        .decode(&route("auto", "json"), Some(br#"{"what": 1}"#), pos(1))
        .await
        .unwrap_err();
    assert!(matches!(e, DecodeError::Envelope(_)), "{e}");
}

#[tokio::test]
async fn registry_auth_failures_are_misconfiguration_not_poison() {
    let fx = RegistryFixture::start(Some(("relay", "s3cret")))
        .await
        .unwrap();
    let ok = RegistryClient::new(&RegistryConfig {
        url: Some(fx.url()),
        username: Some("relay".into()),
        password: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let id = ok.register("auth-value", ROW).await.unwrap();
    assert!(ok.schema(id).await.is_ok());
    for (user, pass) in [(None, None), (Some("relay"), Some("wrong"))] {
        let c = RegistryClient::new(&RegistryConfig {
            url: Some(fx.url()),
            username: user.map(String::from),
            password: pass.map(String::from),
            ..Default::default()
        })
        .unwrap();
        let e = c.schema(id).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::Unauthorized { status: 401, .. }),
            "{e:?}"
        );
        let dec = Decoder::new(c);
        let err = dec
            .decode(
                &route("debezium", "avro"),
                Some(&frame_wire(id, b"")),
                pos(1),
            )
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Misconfiguration, "{err}");
    }
}

#[tokio::test]
async fn unreachable_registry_is_retryable() {
    // A port that was free a moment ago: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = RegistryClient::new(&RegistryConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        max_attempts: 2,
        ..Default::default()
    })
    .unwrap();
    let e = c.schema(1).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Unavailable { attempts: 2, .. }),
        "{e:?}"
    );
    let err = Decoder::new(c)
        .decode(
            &route("debezium", "avro"),
            Some(&frame_wire(1, b"")),
            pos(1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
}
