//! The cluster-link emulator (test support): records are mirrored with identical offsets, keys,
//! values, headers and timestamps; group offsets are synced; pause and resume build up and drain
//! link lag. Two real mock clusters.

mod common;

use std::time::{Duration, Instant};

use cdc_relay::lab::kafka::MockKafka;
use cdc_relay::lab::link::{ClusterLink, LinkOptions};
use cdc_relay::region::lag::{Cluster, LagProbe};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

async fn produce(bootstrap: &str, topic: &str, from: usize, n: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in from..from + n {
        let key = format!("k{i}");
        let value = format!("v{i}");
        p.send(
            FutureRecord::to(topic)
                .key(&key)
                .payload(&value)
                .timestamp(1_700_000_000_000 + i as i64)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "h",
                    value: Some(value.as_bytes()),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
}

type Rec = (
    i32,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<i64>,
    Vec<(String, Vec<u8>)>,
);

fn read_all(bootstrap: &str, topic: &str, partitions: i32, expect: usize) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while out.len() < expect && Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.timestamp().to_millis(),
                m.headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            ));
        }
    }
    out.sort_by_key(|r| (r.0, r.1));
    out
}

fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                .unwrap()
                .1
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_mirrors_records_offsets_and_group_offsets() {
    common::init_logs();
    let primary = MockKafka::start(3).unwrap();
    let secondary = MockKafka::start(3).unwrap();
    primary.create_topic("t", 3).unwrap();
    secondary.create_topic("mirror.t", 3).unwrap();
    produce(primary.bootstrap_servers(), "t", 0, 300).await;
    let link = ClusterLink::start(
        primary.bootstrap_servers(),
        secondary.bootstrap_servers(),
        LinkOptions {
            topics: vec![("t".into(), 3)],
            mirror_prefix: "mirror.".into(),
            groups: vec!["g".into()],
            sync_interval: Duration::from_millis(200),
            skip_first: 0,
        },
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while link.copied() < 300 {
        assert!(Instant::now() < until, "copied only {}", link.copied());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = read_all(primary.bootstrap_servers(), "t", 3, 300);
    let b = read_all(secondary.bootstrap_servers(), "mirror.t", 3, 300);
    assert_eq!(a.len(), 300);
    assert_eq!(
        a, b,
        "partition, offset, key, value, timestamp and headers are identical"
    );

    // Group offsets committed on the primary appear on the secondary.
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", primary.bootstrap_servers())
        .set("group.id", "g")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    member.subscribe(&["t"]).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while member.assignment().map(|a| a.count()).unwrap_or(0) < 3 {
        assert!(Instant::now() < until, "could not join");
        let _ = member.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in [(0, 10), (1, 20), (2, 30)] {
        tpl.add_partition_offset("t", p, Offset::Offset(o)).unwrap();
    }
    member.commit(&tpl, CommitMode::Sync).unwrap();
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", secondary.bootstrap_servers())
        .set("group.id", "g")
        .create()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut q = TopicPartitionList::new();
        for p in 0..3 {
            q.add_partition("mirror.t", p);
        }
        let got: Vec<Offset> = reader
            .committed_offsets(q, Duration::from_secs(5))
            .unwrap()
            .elements()
            .iter()
            .map(|e| e.offset())
            .collect();
        if got == vec![Offset::Offset(10), Offset::Offset(20), Offset::Offset(30)] {
            break;
        }
        assert!(
            Instant::now() < until,
            "offsets not synced: {got:?} (syncs {})",
            link.synced()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Paused: new records stay on the primary (lag); resumed: they are mirrored.
    link.pause();
    let before = high_watermarks(secondary.bootstrap_servers(), "mirror.t", 3);
    produce(primary.bootstrap_servers(), "t", 300, 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        high_watermarks(secondary.bootstrap_servers(), "mirror.t", 3),
        before
    );
    // The lag probe sees exactly the unmirrored records and the age of the oldest one.
    let cluster = |name: &str, bs: &str| Cluster {
        name: name.into(),
        bootstrap_servers: bs.into(),
        properties: Default::default(),
    };
    let probe = LagProbe::new(
        cluster("primary", primary.bootstrap_servers()),
        cluster("secondary", secondary.bootstrap_servers()),
        vec!["t".into()],
        "mirror.",
    )
    .unwrap();
    assert!(probe.primary_up(Duration::from_secs(2)) && probe.secondary_up(Duration::from_secs(2)));
    let now_ms = 1_700_000_000_000 + 1_000_000;
    let lags = probe.measure(Duration::from_secs(5), now_ms).unwrap();
    assert_eq!(lags.iter().map(|l| l.messages).sum::<i64>(), 60, "{lags:?}");
    for l in &lags {
        assert_eq!(l.messages, l.primary_high - l.secondary_high);
        if l.messages > 0 {
            // Records 300.. carry timestamps base + i: the oldest missing one is >= base + 300.
            assert!(
                l.seconds > 0.0 && l.seconds <= (1_000_000.0 - 300.0) / 1000.0,
                "{l:?}"
            );
        }
    }
    link.resume();
    let want = high_watermarks(primary.bootstrap_servers(), "t", 3);
    let until = Instant::now() + Duration::from_secs(20);
    while high_watermarks(secondary.bootstrap_servers(), "mirror.t", 3) != want {
        assert!(Instant::now() < until, "link did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lags = probe.measure(Duration::from_secs(5), now_ms).unwrap();
    assert!(
        lags.iter().all(|l| l.messages == 0 && l.seconds == 0.0),
        "{lags:?}"
    );

    // A dead primary fails the probe within its timeout.
    primary.broker_down(-1).unwrap();
    let t = Instant::now();
    assert!(!probe.primary_up(Duration::from_secs(1)));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(probe.secondary_up(Duration::from_secs(1)));
}

/// The failover's timestamp start source: the first offset whose record is at least `ts` old.
/// librdkafka's mock cluster has no time index (ListOffsets by timestamp answers -1), so this
/// exercises the answer check and the record-reading search; duplicates and bounds included.
#[test]
fn offset_for_time_finds_the_first_record_at_or_after_a_timestamp() {
    let kafka = MockKafka::start(1).unwrap();
    kafka.create_topic("ts", 1).unwrap();
    let stamps: Vec<i64> = vec![
        1_000, 1_000, 1_500, 2_000, 2_000, 2_000, 3_000, 4_000, 9_000,
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .unwrap();
        for (i, ts) in stamps.iter().enumerate() {
            p.send(
                FutureRecord::to("ts")
                    .partition(0)
                    .key(&i.to_string())
                    .payload("x")
                    .timestamp(*ts),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        }
    });
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "seeker")
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "10")
        .create()
        .unwrap();
    let find = |ts| cdc_relay::region::start::offset_for_time(&c, "ts", 0, ts).unwrap();
    for (ts, want) in [
        (0, 0),
        (1_000, 0),
        (1_001, 2),
        (1_500, 2),
        (2_000, 3),
        (2_500, 6),
        (4_000, 7),
        (8_999, 8),
        (9_000, 8),
        (9_001, 9),
    ] {
        assert_eq!(find(ts), want, "first offset with timestamp >= {ts}");
    }
    kafka.create_topic("empty", 1).unwrap();
    assert_eq!(
        cdc_relay::region::start::offset_for_time(&c, "empty", 0, 5).unwrap(),
        0
    );
}
