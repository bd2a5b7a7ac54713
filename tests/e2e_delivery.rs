//! End-to-end delivery contract against real components: librdkafka's mock cluster (3 brokers,
//! real Kafka protocol) and moto (real DynamoDB API). Asserts on the final DynamoDB state and on
//! the offsets committed in the broker.

mod common;

use std::time::{Duration, Instant};

use cdc_relay::config::EnvelopeKind;
use cdc_relay::relay::{self, StartOptions};
use common::{Env, PARTITIONS, Plan, count};

/// (a) 20k mixed records for 500 keys over 3 partitions → exact final state, tombstones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_exact_final_state() {
    let env = Env::start().await;
    let s = env
        .scenario(Plan::new("customers", EnvelopeKind::Qlik, 500, 20_000, 1))
        .await;
    assert!(
        s.report.tombstones > 0,
        "the mix must produce tombstones: {:?}",
        s.report
    );
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let ends = env.wait_done(&s).await;
    assert_eq!(ends.iter().sum::<i64>(), 20_000);
    let v = env.assert_exact(&s).await;
    assert_eq!(v.matched, 500);
    assert_eq!(count(&relay, "poison"), 0);
    // The relay learns the results of its asynchronous commits: /status and the metric show
    // what the broker holds (one commit interval later at most).
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = relay.status().to_json();
        let shown: Vec<Option<i64>> = (0..common::PARTITIONS)
            .map(|p| {
                st["partitions"]
                    .as_array()
                    .and_then(|ps| {
                        ps.iter()
                            .find(|x| x["partition"] == p && x["topic"] == s.topic.as_str())
                    })
                    .and_then(|x| x["committed_offset"].as_i64())
            })
            .collect();
        if shown == ends.iter().map(|e| Some(*e)).collect::<Vec<_>>() {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "committed offsets in /status {shown:?}, broker {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = common::metrics(&relay).await;
    assert!(
        m.contains(&format!(
            "cdc_relay_committed_offset{{topic=\"{}\",partition=\"0\"}} {}",
            s.topic, ends[0]
        )),
        "{m}"
    );
    relay.shutdown().await;
}

/// (b) Abort the whole relay mid-stream, start it again: exact state; replays are stale, not writes.
///
/// By construction, not by speed: the first relay applies the whole first part of the stream
/// but never reaches a commit (its commit interval is an hour), so at the abort every record it
/// applied is uncommitted; the second part is produced only after the abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_crash_restart_is_exact() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("orders", EnvelopeKind::Qlik, 300, 3_000, 2))
        .await;
    let mut slow = s.cfg.clone();
    slow.kafka.commit_interval = Duration::from_secs(3_600);
    let r1 = relay::start(slow, StartOptions::default()).await.unwrap();
    let until = std::time::Instant::now() + common::DONE_TIMEOUT;
    while completed(&r1) < 3_000 {
        assert!(
            std::time::Instant::now() < until,
            "the first part was not applied ({} of 3000)",
            completed(&r1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let committed_at_crash = env.committed_total(&s);
    let written1 = count(&r1, "written");
    r1.abort().await;
    assert!(
        committed_at_crash < 3_000,
        "applied records must be uncommitted at the crash ({committed_at_crash} committed)"
    );
    env.produce_more(&mut s, 3_000).await;

    let r2 = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    let (written2, stale2) = (count(&r2, "written"), count(&r2, "stale"));
    // Everything after the committed position is seen again; what run 1 had applied is stale.
    assert_eq!(
        written2 + stale2 + count(&r2, "skipped") + count(&r2, "superseded"),
        (6_000 - committed_at_crash) as u64
    );
    assert!(
        stale2 > 0,
        "records applied before the crash must replay as stale (written1={written1})"
    );
    assert!(
        written1 + written2 <= 6_000,
        "a record was written twice: {written1} + {written2}"
    );
    r2.shutdown().await;
}

/// (c) Reset the group to offset 0 and replay everything: no item changes, no `_seq` regresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_replay_from_zero_never_regresses() {
    let env = Env::start().await;
    let s = env
        .scenario(Plan::new("accounts", EnvelopeKind::Debezium, 200, 4_000, 3))
        .await;
    let r1 = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;
    r1.shutdown().await;
    env.assert_exact(&s).await;
    let snapshot = cdc_relay::verify::scan_table(&env.ddb, &s.table, "pk")
        .await
        .unwrap();

    let mut last = snapshot.clone();
    let replay = common::replay_from_zero(&env, &s, s.cfg.clone(), |now| {
        for (pk, item) in now {
            let (seq, before) = (&item["_seq"], &last[pk]["_seq"]);
            assert!(
                seq.key_text() >= before.key_text(),
                "_seq of {pk} went backwards during replay: {before:?} -> {seq:?}"
            );
        }
        assert_eq!(
            now, &snapshot,
            "an item changed during a replay of already-applied records"
        );
        last = now.clone();
    })
    .await;
    assert!(
        replay.mid_samples >= 1,
        "the replay must be sampled while it runs ({} samples)",
        replay.samples
    );
    let r2 = replay.relay;
    assert_eq!(
        count(&r2, "stale") + count(&r2, "skipped") + count(&r2, "superseded"),
        4_000
    );
    assert_eq!(
        count(&r2, "written"),
        0,
        "a replay of applied records must not write"
    );
    r2.shutdown().await;
}

/// (d) Two relays in one group; one stops mid-stream; the other takes over; exact state.
///
/// "Mid-stream" holds by construction: the second half of the stream is produced only after the
/// stop has returned, so the stopped instance's partitions have records only the survivor can
/// process, however fast the machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_two_instances_rebalance() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("items", EnvelopeKind::Qlik, 300, 3_000, 4))
        .await;
    let a = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let b = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    // Both must own partitions before one leaves.
    for _ in 0..300 {
        if !a.status().partitions().is_empty() && !b.status().partitions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !a.status().partitions().is_empty() && !b.status().partitions().is_empty(),
        "the group must split the partitions"
    );
    let left: Vec<i32> = b
        .status()
        .partitions()
        .iter()
        .map(|p| p.partition)
        .collect();
    env.wait_progress(&s, 1_500).await;
    b.shutdown().await;
    let survivor_before = completed(&a);
    // The rest of the stream arrives after the stop, on every partition.
    env.produce_more(&mut s, 3_000).await;
    let ends = env.end_offsets(&s.topic, PARTITIONS);
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while a.status().partitions().len() < PARTITIONS as usize {
        assert!(
            std::time::Instant::now() < until,
            "the survivor did not take over partitions {left:?}: it owns {:?}",
            a.status()
                .partitions()
                .iter()
                .map(|p| p.partition)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.wait_committed(&s.group, &s.topic, &ends, common::DONE_TIMEOUT)
        .await;
    assert_eq!(
        a.status().partitions().len(),
        3,
        "the survivor owns every partition"
    );
    assert!(
        completed(&a) - survivor_before >= 3_000,
        "the survivor processed the whole second half ({} records)",
        completed(&a) - survivor_before
    );
    env.assert_exact(&s).await;
    a.shutdown().await;
}

/// Records this relay instance has finished (written, stale, superseded, skipped, dead-lettered).
fn completed(r: &relay::RelayHandle) -> u64 {
    ["written", "stale", "superseded", "skipped", "dead_lettered"]
        .iter()
        .map(|k| count(r, k))
        .sum()
}

/// A partition actor that fails mid-stream is restarted by its supervisor, seeks back to its last
/// completed offset, and the final state is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_failed_partition_actor_restarts_and_resumes() {
    let env = Env::start().await;
    let s = env
        .scenario(Plan::new("restart", EnvelopeKind::Qlik, 200, 4_000, 5))
        .await;
    let r = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 500).await;
    let before = restarts_of("partition");
    for p in 0..PARTITIONS {
        assert!(r.inject_partition_failure(&s.topic, p));
    }
    // Once the supervisor restarted all three, a second failure of partition 0 within the
    // restart period is still within the budget.
    let until = Instant::now() + Duration::from_secs(60);
    while restarts_of("partition") < before + f64::from(PARTITIONS) {
        assert!(
            Instant::now() < until,
            "the partition actors were not restarted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(r.inject_partition_failure(&s.topic, 0));
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    let restarts = restarts_of("partition");
    assert!(
        restarts >= 4.0,
        "expected ≥ 4 partition restarts, metrics say {restarts}"
    );
    assert_eq!(r.status().partitions().len(), 3);
    assert!(r.status().readiness().0, "{:?}", r.status().readiness().1);
    r.shutdown().await;
}

/// A missing table is a misconfiguration: nothing is committed or dropped, `/ready` is false and
/// names the sink; once the table exists everything lands exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_missing_table_holds_then_recovers() {
    let env = Env::start().await;
    let s = env
        .scenario(Plan {
            create_table: false,
            ..Plan::new("late", EnvelopeKind::Qlik, 50, 300, 6)
        })
        .await;
    let r = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let mut not_ready = None;
    for _ in 0..100 {
        let (ready, why) = r.status().readiness();
        if !ready
            && why
                .iter()
                .any(|w| w.contains("misconfigured") && w.contains("ResourceNotFound"))
        {
            not_ready = Some(why);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        not_ready.is_some(),
        "/ready must report the missing table: {:?}",
        r.status().readiness()
    );
    assert_eq!(env.committed_total(&s), 0, "nothing may be committed");
    cdc_relay::lab::create_table(&env.ddb, &s.table, "pk")
        .await
        .unwrap();
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    assert!(
        r.status().readiness().0,
        "ready again: {:?}",
        r.status().readiness().1
    );
    r.shutdown().await;
}

/// Supervised restarts of one actor kind, from this process's Prometheus metrics.
fn restarts_of(kind: &str) -> f64 {
    let prefix = format!("cdc_relay_actor_restarts_total{{actor=\"{kind}\"}}");
    cdc_relay::telemetry::metrics::render()
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The DynamoDB sink-pool actor fails mid-stream, twice: its supervisor restarts it, the writes
/// it had in flight are sent again, nothing is lost and the final state is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_failed_sink_pool_restarts_and_retries_in_flight_writes() {
    let env = Env::start().await;
    let s = env
        .scenario(Plan::new("pool", EnvelopeKind::Qlik, 200, 3_000, 10))
        .await;
    let r = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 300).await;
    assert!(r.inject_sink_pool_failure());
    env.wait_progress(&s, 1_200).await;
    assert!(r.inject_sink_pool_failure());
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    assert!(
        restarts_of("sinkpool") >= 2.0,
        "the pool actor must have been restarted twice"
    );
    assert!(r.status().readiness().0, "{:?}", r.status().readiness().1);
    r.shutdown().await;
}

/// Issue #9 defect 2: after a rebalance revokes partitions from an instance, its `/metrics` has
/// no series for them any more; every lag and committed-offset series it exports is one of its
/// own partitions, with the broker's truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_revoked_partitions_leave_the_metrics() {
    let env = Env::start().await;
    let s = env
        .scenario(Plan::new("revoke", EnvelopeKind::Qlik, 100, 1_500, 11))
        .await;
    let a = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let ends = env.wait_done(&s).await;
    let owned = |r: &relay::RelayHandle| -> Vec<i64> {
        r.status().to_json()["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["partition"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(owned(&a).len(), common::PARTITIONS as usize);
    let b = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while owned(&b).is_empty() || owned(&a).len() + owned(&b).len() != common::PARTITIONS as usize {
        assert!(std::time::Instant::now() < until, "no rebalance");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each instance learns the committed offsets and watermarks of what it owns (librdkafka's
    // statistics and the commit results arrive on their own schedule): poll until both show
    // the broker's truth, and only what they own.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut wrong = Vec::new();
        for r in [&a, &b] {
            wrong.extend(series_problems(r, &owned(r), &s.topic, &ends).await);
        }
        if wrong.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < until, "{wrong:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// What is wrong with `r`'s per-partition series: a lag or committed-offset series of a
/// partition it does not own, a value other than the broker's truth (lag 0, committed = end), or
/// an owned partition without its committed offset.
async fn series_problems(
    r: &relay::RelayHandle,
    mine: &[i64],
    topic: &str,
    ends: &[i64],
) -> Vec<String> {
    let m = common::metrics(r).await;
    let mut wrong = Vec::new();
    for family in [
        "cdc_relay_consumer_lag_messages",
        "cdc_relay_committed_offset",
    ] {
        for l in m.lines().filter(|l| l.starts_with(&format!("{family}{{"))) {
            let p: i64 = l
                .split("partition=\"")
                .nth(1)
                .and_then(|x| x.split('"').next())
                .and_then(|x| x.parse().ok())
                .unwrap_or(-1);
            if !mine.contains(&p) {
                wrong.push(format!(
                    "{family} for partition {p} not owned ({mine:?}): {l}"
                ));
                continue;
            }
            let value: f64 = l
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0);
            let truth = if family.contains("lag") {
                0.0
            } else {
                ends[p as usize] as f64
            };
            if value != truth {
                wrong.push(format!("{l}: the broker says {truth}"));
            }
        }
    }
    for p in mine {
        let want = format!(
            "cdc_relay_committed_offset{{topic=\"{topic}\",partition=\"{p}\"}} {}",
            ends[*p as usize]
        );
        if !m.contains(&want) {
            wrong.push(format!("owned partition {p} lacks {want}"));
        }
    }
    wrong
}

/// Global tables: with `dynamodb.write_region`, every write goes to that region's replica (here
/// moto's us-east-1, where alone the table exists), whatever `aws.region` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_writes_go_to_the_write_region() {
    let env = Env::start().await;
    let mut plan = Plan::new("wregion", EnvelopeKind::Qlik, 100, 1_000, 7);
    plan.create_table = false;
    let s = env.scenario(plan).await;
    let east = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&env.lab.sdk_config().await)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build(),
    );
    cdc_relay::lab::create_table(&east, &s.table, "pk")
        .await
        .unwrap();
    let mut cfg = s.cfg.clone();
    assert_eq!(cfg.aws.region.as_deref(), Some("us-west-2"));
    cfg.dynamodb.write_region = Some("us-east-1".into());
    let relay = relay::start(cfg, StartOptions::default()).await.unwrap();
    let ends = env.wait_done(&s).await;
    assert_eq!(ends.iter().sum::<i64>(), 1_000);
    let table = s.table.clone();
    let v = cdc_relay::verify::verify(&east, &s.expected, move |_| table.clone(), "pk")
        .await
        .unwrap();
    common::assert_exact(&v);
    // Nothing went to aws.region: the table does not exist there.
    let west = env.ddb.describe_table().table_name(&s.table).send().await;
    assert!(
        west.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{west:?}"
    );
    relay.shutdown().await;
}
