//! Multi-region failover (issue #4 acceptance a): a steady stream, then every primary broker
//! down. The relay switches to the mirror topics on the secondary cluster (cluster-link emulator
//! in between, shared decision in a DynamoDB control table), the time from the kill to the first
//! record completed from the secondary is measured and asserted, and the final state is exact.
//!
//! `CDC_RELAY_FAILOVER_SLACK_SECS` adds CI slack to the 10 s bound (default 0).

mod common;

use std::time::{Duration, Instant};

use cdc_relay::lab::kafka::MockKafka;
use cdc_relay::relay::{self, StartOptions};
use common::{Env, PARTITIONS};

use common::regions::{Regions, regions, regions_linked, regions_sized};

fn watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    common::end_offsets_on(bootstrap, topic, PARTITIONS)
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    common::committed_on(bootstrap, group, topic, PARTITIONS)
}

/// Waits until the mirror topic on the secondary has every record up to `ends`.
async fn wait_mirrored(secondary: &MockKafka, mirror: &str, ends: &[i64]) {
    let until = Instant::now() + Duration::from_secs(30);
    while watermarks(secondary.bootstrap_servers(), mirror) != ends {
        assert!(Instant::now() < until, "link did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `group` has committed the mirror topic on the secondary up to `ends`.
async fn wait_done_on_secondary(secondary: &MockKafka, group: &str, mirror: &str, ends: &[i64]) {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let c = committed(secondary.bootstrap_servers(), group, mirror);
        if c.iter().zip(ends).all(|(c, e)| *c == Some(*e)) {
            return;
        }
        assert!(
            Instant::now() < until,
            "secondary did not finish: {c:?} vs {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn completed(relay: &cdc_relay::relay::RelayHandle) -> u64 {
    ["written", "stale", "superseded", "skipped", "dead_lettered"]
        .iter()
        .map(|k| common::count(relay, k))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_primary_death_fails_over_within_10s_exactly() {
    let Regions {
        env,
        mut s,
        secondary,
        mirror,
        link: _link,
        registries: (primary_registry, secondary_registry),
    } = regions("fa", 71).await;
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 1_500).await;
    // Everything is mirrored before the primary dies (the RPO case is a separate test).
    let ends = watermarks(&env.bootstrap(), &s.topic);
    wait_mirrored(&secondary, &mirror, &ends).await;

    // The whole region dies: its brokers and its schema registry. The secondary decodes with its
    // own registry (a cold cache: every schema is fetched there).
    env.lab.kafka.broker_down(-1).unwrap();
    drop(primary_registry);
    let killed = Instant::now();
    // Records the link had mirrored and the relay had not consumed yet when the region died:
    // written onto the mirror directly (the emulated link copies with identical offsets, so the
    // mirror goes on where the primary stopped), so the secondary has work to do however fast
    // the relay got through the primary's stream before the kill.
    common::produce_more_to(
        &mut s,
        1_500,
        secondary.bootstrap_servers(),
        &secondary_registry.url(),
        &format!("{}cdc.", common::regions::PREFIX),
    )
    .await;
    let ends = watermarks(secondary.bootstrap_servers(), &mirror);
    // The first DynamoDB answer (written, or stale: a replayed record the guard refused) for a
    // record of the mirror topic, i.e. consumed from the secondary.
    let from_secondary = |m: &str| -> f64 {
        ["written", "stale", "superseded"]
            .iter()
            .filter_map(|o| {
                metric(
                    m,
                    "cdc_relay_records_processed_total",
                    &format!("topic=\"{mirror}\",outcome=\"{o}\""),
                )
            })
            .sum()
    };
    let first_write = loop {
        let m = common::metrics(&relay).await;
        if from_secondary(&m) > 0.0 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no failover: {}",
            relay.status().to_json()["region"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let slack: u64 = std::env::var("CDC_RELAY_FAILOVER_SLACK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "failover: primary killed → first sink write for a record of the secondary in {first_write:?}"
    );
    assert!(
        first_write < Duration::from_secs(10 + slack),
        "failover took {first_write:?}"
    );

    // The secondary finishes the stream; DynamoDB is exact.
    wait_done_on_secondary(&secondary, &s.group, &mirror, &ends).await;
    env.assert_exact(&s).await;
    let st = relay.status().to_json();
    assert_eq!(st["region"]["epoch"], 1, "{st}");
    assert_eq!(st["region"]["active_region"], "us-east-1");
    let sources = &st["region"]["last_switch"]["offset_sources"];
    eprintln!(
        "failover: offset sources {sources}, status {}",
        st["region"]
    );
    let metrics = common::metrics(&relay).await;
    assert!(
        metrics.contains(r#"cdc_relay_region_active{region="us-east-1"} 1"#),
        "{metrics}"
    );
    relay.abort().await;
}

async fn post(
    relay: &cdc_relay::relay::RelayHandle,
    path: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let addr = relay.admin_addr().unwrap();
    let mut req = reqwest::Client::new().post(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// (d) Planned failover under load and planned failback: drained and committed on one side,
/// started at exactly those offsets on the other, so no record is processed twice; (f) the
/// admin endpoints refuse a missing or wrong token and never echo it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_planned_failover_and_failback_replay_nothing() {
    let logs = common::LogCapture::install();
    let Regions {
        env,
        mut s,
        secondary,
        mirror,
        link: _link,
        registries: _registries,
    } = regions("fp", 72).await;
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cr3t-token-for-tests";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    s.cfg.failover.admin_token_file = Some(token_file.display().to_string());
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 1_000).await;

    // (f) No token, a wrong token: 401, and the token never appears in a response.
    for bad in [None, Some("wrong"), Some("s3cr3t-token-for-test")] {
        let (code, body) = post(&relay, "/admin/failover", bad).await;
        assert_eq!(code, 401, "{bad:?}: {body}");
        assert!(!body.to_string().contains(token));
    }
    assert_eq!(relay.status().to_json()["region"]["active"], "primary");

    // Planned failover while the backlog is being processed.
    let (code, report) = post(&relay, "/admin/failover", Some(token)).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["caught_up"], true, "{report}");
    assert_eq!(report["epoch"], 1, "{report}");
    assert!(!report.to_string().contains(token));
    let at_failover = completed(&relay);
    // More of the stream after the switch (on the primary; the link mirrors it), so the
    // secondary has records to process however far the relay got before the switch.
    env.produce_more(&mut s, 1_500).await;
    let until = Instant::now() + Duration::from_secs(60);
    while completed(&relay) < at_failover + 500 {
        assert!(Instant::now() < until, "no progress on the secondary");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let on_secondary = committed(secondary.bootstrap_servers(), &s.group, &mirror);
    assert!(
        on_secondary.iter().all(Option::is_some),
        "committed on the secondary: {on_secondary:?}"
    );

    // Planned failback, same procedure in reverse.
    let (code, report) = post(&relay, "/admin/failback", Some(token)).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["epoch"], 2, "{report}");
    let (code, body) = post(&relay, "/admin/failback", Some(token)).await;
    assert_eq!(code, 409, "already on the primary: {body}");
    env.wait_done(&s).await;
    env.assert_exact(&s).await;

    // Zero replay: every record was processed exactly once across both switches.
    let (written, skipped, stale, superseded) = (
        common::count(&relay, "written"),
        common::count(&relay, "skipped"),
        common::count(&relay, "stale"),
        common::count(&relay, "superseded"),
    );
    assert_eq!(stale, 0, "records replayed across planned switches");
    assert_eq!(
        written + skipped + superseded,
        s.produced,
        "each record once"
    );
    let st = relay.status().to_json();
    assert_eq!(st["region"]["active"], "primary", "{st}");
    relay.shutdown().await;

    // (f) The token is in no log line, at trace level for the relay and the HTTP stack, while the
    // refusals were logged (the capture works).
    let text = logs.text();
    assert!(
        text.contains("admin request with a wrong token refused"),
        "capture holds the relay's logs ({} bytes)",
        text.len()
    );
    assert!(!text.contains(token), "the admin token appears in the logs");
}

/// (b) Two relay instances of one group: both follow one epoch to the secondary, and neither
/// flips back while the primary stays down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_two_instances_follow_one_epoch() {
    let Regions {
        env,
        s,
        secondary,
        mirror,
        link: _link,
        registries: _registries,
    } = regions("fb", 73).await;
    let a = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let b = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 1_500).await;
    let ends = watermarks(&env.bootstrap(), &s.topic);
    wait_mirrored(&secondary, &mirror, &ends).await;
    env.lab.kafka.broker_down(-1).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    for r in [&a, &b] {
        while r.status().to_json()["region"]["active"] != "secondary" {
            assert!(Instant::now() < until, "an instance did not follow");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // One decision: epoch 1 everywhere (two winning proposals would have made it 2), and it
    // holds while the primary stays down.
    for _ in 0..25 {
        for r in [&a, &b] {
            let st = r.status().to_json();
            assert_eq!(st["region"]["epoch"], 1, "{}", st["region"]);
            assert_eq!(st["region"]["active"], "secondary", "{}", st["region"]);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_done_on_secondary(&secondary, &s.group, &mirror, &ends).await;
    env.assert_exact(&s).await;
    a.abort().await;
    b.abort().await;
}

fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Produces `per_partition` new keys (one INSERT each, `_seq` 1) to every partition of the
/// scenario's topic on the primary; their ids are `base + partition × 100 + i`. Returns the keys.
async fn produce_changes(
    env: &Env,
    s: &common::Scenario,
    base: i64,
    per_partition: i64,
) -> Vec<String> {
    let poisons =
        common::poison::Poisons::new(&common::registry(env), &format!("{}-value", s.topic)).await;
    let producer = common::poison::producer(&env.bootstrap());
    let mut keys = Vec::new();
    for p in 0..PARTITIONS {
        for i in 0..per_partition {
            let id = base + i64::from(p) * 100 + i;
            common::poison::send(
                &producer,
                &s.topic,
                p,
                &id.to_string(),
                &poisons.good(id, 1),
                &[],
            )
            .await;
            keys.push(id.to_string());
        }
    }
    keys
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `/status`' link lag of every partition, once a probe that read its clock at or after `since_ms`
/// (and so read the watermarks after it) has published: `(messages, seconds, measured_at_ms)` by
/// partition. Prints how long that took against the probe interval.
async fn lag_measured_since(
    relay: &cdc_relay::relay::RelayHandle,
    since_ms: i64,
    probe: Duration,
) -> Vec<(i64, f64, i64)> {
    let asked = Instant::now();
    let until = asked + Duration::from_secs(30);
    loop {
        let st = relay.status().to_json();
        let lags: Vec<(i64, f64, i64)> = st["region"]["link_lag"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            l["messages"].as_i64().unwrap_or(-1),
                            l["seconds"].as_f64().unwrap_or(-1.0),
                            l["measured_at_ms"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if lags.len() == PARTITIONS as usize && lags.iter().all(|l| l.2 >= since_ms) {
            eprintln!(
                "a probe measured after the change published {:?} later (probe interval {probe:?})",
                asked.elapsed()
            );
            return lags;
        }
        assert!(
            Instant::now() < until,
            "no probe published after {since_ms}: {}",
            st["region"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (e) Link-lag metrics show the truth as of the probe that follows a change, paused and after
/// the link resumes: exact message counts, and an age that is the probe's clock reading minus the
/// oldest unmirrored record's timestamp. The probe's own clock reading (in `/status`) says which
/// probe saw what, so nothing here depends on how long a probe takes on a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_link_lag_metrics_follow_the_truth() {
    let Regions {
        env,
        s,
        secondary,
        mirror,
        link,
        registries: _registries,
    } = regions("fl", 74).await;
    let probe = s.cfg.failover.probe_interval;
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 500).await;
    link.pause();
    let produced_from = now_ms();
    produce_changes(&env, &s, 700_000, 10).await;
    let produced_to = now_ms();
    let truth: Vec<i64> = watermarks(&env.bootstrap(), &s.topic)
        .iter()
        .zip(watermarks(secondary.bootstrap_servers(), &mirror))
        .map(|(p, s)| p - s)
        .collect();
    assert!(truth.iter().all(|l| *l >= 10), "{truth:?}");
    let known = now_ms();
    let labels = |p: i32| format!("topic=\"{}\",partition=\"{p}\"", s.topic);
    let lags = lag_measured_since(&relay, known, probe).await;
    let m = common::metrics(&relay).await;
    for p in 0..PARTITIONS {
        let (messages, secs, at) = lags[p as usize];
        assert_eq!(messages, truth[p as usize], "partition {p}: {lags:?}");
        // The oldest unmirrored record was produced between `produced_from` and `produced_to`.
        let (lo, hi) = (
            (at - produced_to) as f64 / 1000.0,
            (at - produced_from) as f64 / 1000.0,
        );
        assert!(
            secs >= lo - 0.001 && secs <= hi + 0.001,
            "partition {p}: lag {secs} s, measured at {at}: must be within [{lo}, {hi}]"
        );
        // The metrics are what that probe (or a later one: the records only get older) found.
        assert_eq!(
            metric(&m, "cdc_relay_link_lag_messages", &labels(p)),
            Some(truth[p as usize] as f64)
        );
        let shown = metric(&m, "cdc_relay_link_lag_seconds", &labels(p)).unwrap();
        let now = (now_ms() - produced_from) as f64 / 1000.0;
        assert!(
            shown >= secs - 0.001 && shown <= now + 0.001,
            "partition {p}: metric {shown} s, probe {secs} s, at most {now} s"
        );
    }
    link.resume();
    let until = Instant::now() + Duration::from_secs(30);
    while watermarks(secondary.bootstrap_servers(), &mirror)
        != watermarks(&env.bootstrap(), &s.topic)
    {
        assert!(Instant::now() < until, "link did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = now_ms();
    let lags = lag_measured_since(&relay, caught_up, probe).await;
    assert!(lags.iter().all(|l| l.0 == 0 && l.1 == 0.0), "{lags:?}");
    let m = common::metrics(&relay).await;
    for p in 0..PARTITIONS {
        assert_eq!(
            metric(&m, "cdc_relay_link_lag_messages", &labels(p)),
            Some(0.0)
        );
        assert_eq!(
            metric(&m, "cdc_relay_link_lag_seconds", &labels(p)),
            Some(0.0)
        );
    }
    relay.abort().await;
}

/// (c) The link is paused for 5 s, then the primary dies. What the link had not mirrored is the
/// RPO: reported here. Everything mirrored is applied exactly and nothing regressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_link_paused_then_primary_dies_loses_only_the_unmirrored() {
    let Regions {
        env,
        s,
        secondary,
        mirror,
        link,
        registries: _registries,
    } = regions("fr", 75).await;
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let generated = watermarks(&env.bootstrap(), &s.topic);
    wait_mirrored(&secondary, &mirror, &generated).await;
    env.wait_progress(&s, 1_000).await;
    link.pause();
    // New changes arrive on the primary while the link is stalled.
    let extra = produce_changes(&env, &s, 600_000, 20).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let primary_end = watermarks(&env.bootstrap(), &s.topic);
    let mirrored = watermarks(secondary.bootstrap_servers(), &mirror);
    let rpo: i64 = primary_end.iter().zip(&mirrored).map(|(p, s)| p - s).sum();
    env.lab.kafka.broker_down(-1).unwrap();
    eprintln!(
        "RPO: {rpo} records were on the primary but not mirrored when it died ({primary_end:?} vs {mirrored:?})"
    );
    assert_eq!(
        rpo,
        extra.len() as i64,
        "exactly the records produced during the pause"
    );

    wait_done_on_secondary(&secondary, &s.group, &mirror, &mirrored).await;
    // Every mirrored change is applied exactly ...
    let v = cdc_relay::verify::verify(&env.ddb, &s.expected, |_| s.table.clone(), "pk")
        .await
        .unwrap();
    assert_eq!((v.matched, v.mismatch_count), (v.expected, 0), "{v:#?}");
    // ... and the unmirrored ones are either absent (lost with the primary) or were applied from
    // the primary before it died, never regressed.
    let items = cdc_relay::verify::scan_table(&env.ddb, &s.table, "pk")
        .await
        .unwrap();
    let applied = extra.iter().filter(|k| items.contains_key(*k)).count();
    assert_eq!(v.unexpected_items, applied);
    for k in extra.iter().filter(|k| items.contains_key(*k)) {
        assert_eq!(
            items[k]["_seq"].key_text(),
            Some(format!("{:040}", 1)),
            "{k}"
        );
    }
    eprintln!(
        "RPO: {rpo} unmirrored records; {applied} of them had been applied from the primary before it died"
    );
    relay.abort().await;
}

/// Automatic failback: after an unplanned failover, the primary comes back; once it has been
/// healthy for `failback_after`, the relay runs the planned failback on its own and ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_automatic_failback_after_the_primary_recovers() {
    let Regions {
        env,
        mut s,
        secondary,
        mirror,
        link: _link,
        registries: _registries,
    } = regions("fab", 76).await;
    s.cfg.failover.failback = cdc_relay::config::FailbackMode::Automatic;
    s.cfg.failover.failback_after = Duration::from_secs(2);
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_progress(&s, 1_000).await;
    let ends = watermarks(&env.bootstrap(), &s.topic);
    wait_mirrored(&secondary, &mirror, &ends).await;
    env.lab.kafka.broker_down(-1).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while relay.status().to_json()["region"]["active"] != "secondary" {
        assert!(Instant::now() < until, "no failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The primary comes back once the relay consumes the secondary (all partitions of the mirror
    // assigned), so what follows is a failback and not an aborted failover.
    let on_mirror = |st: &serde_json::Value| {
        st["partitions"].as_array().is_some_and(|ps| {
            ps.len() == PARTITIONS as usize && ps.iter().all(|p| p["topic"] == mirror.as_str())
        })
    };
    while !on_mirror(&relay.status().to_json()) {
        assert!(
            Instant::now() < until,
            "the relay did not take the mirror's partitions: {}",
            relay.status().to_json()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.lab.kafka.broker_up(-1).unwrap();
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let st = relay.status().to_json();
        if st["region"]["active"] == "primary" {
            assert_eq!(st["region"]["epoch"], 2, "{}", st["region"]);
            break;
        }
        assert!(
            Instant::now() < until,
            "no automatic failback: {}",
            st["region"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    relay.shutdown().await;
}

/// Without a reachable control table a pod stays where it is and reports not-ready, even when the
/// primary dies; with `allow_local_decision` it switches on its own (the documented trade-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_unreachable_control_table_holds_unless_local_decisions_are_allowed() {
    let Regions {
        env,
        mut s,
        secondary: _secondary,
        mirror: _mirror,
        link: _link,
        registries: _registries,
    } = regions("fu", 77).await;
    s.cfg.failover.control_table = Some("no-such-control-table".into());
    let held = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let mut local_cfg = s.cfg.clone();
    local_cfg.failover.allow_local_decision = true;
    local_cfg.kafka.group_id = format!("{}-local", s.group);
    local_cfg.admin.listen = "127.0.0.1:0".into();
    let local = relay::start(local_cfg, StartOptions::default())
        .await
        .unwrap();
    let addr = held.admin_addr().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
        let code = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        if code == 503 && body.to_string().contains("control table unreachable") {
            break;
        }
        assert!(Instant::now() < until, "not reported: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.lab.kafka.broker_down(-1).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while local.status().to_json()["region"]["active"] != "secondary" {
        assert!(
            Instant::now() < until,
            "the local-decision pod did not switch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        held.status().to_json()["region"]["active"],
        "primary",
        "without the shared decision the pod must stay"
    );
    held.abort().await;
    local.abort().await;
}

/// DESIGN §6's third start source. The link does not preserve offsets (a MirrorMaker-style
/// replication started after the topic had data: mirror offset = source offset − 300) and syncs
/// no group offsets, so the secondary has no group offsets and the checkpoint's offsets would
/// name the wrong records there. Each partition must start at
/// `offsets_for_times(last processed timestamp − offset_margin)` (the mock cluster has no time
/// index, so the relay's record-reading search runs). Nothing is lost (exact), and the replay is
/// bounded (no partition restarts from the mirror's beginning).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_offsets_not_preserved_start_from_the_checkpoint_timestamp() {
    const SKIP: i64 = 300;
    let Regions {
        env,
        mut s,
        secondary,
        mirror,
        link: _link,
        registries: _registries,
    } = regions_linked("fts", 78, |o| {
        o.skip_first = SKIP;
        o.groups.clear();
    })
    .await;
    s.cfg.failover.offsets_preserved = false;
    // The generator writes thousands of records per second, so any margin would reach back
    // before the mirror's first record; zero keeps the bound sharp (replay = records sharing the
    // last processed record's millisecond, plus what was processed after the checkpoint).
    s.cfg.failover.offset_margin = Duration::ZERO;
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    // Every partition is past the records the link never copied before the primary dies.
    let until = Instant::now() + Duration::from_secs(120);
    while committed(&env.bootstrap(), &s.group, &s.topic)
        .iter()
        .any(|c| c.unwrap_or(0) < SKIP + 100)
    {
        assert!(Instant::now() < until, "no progress on the primary");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ends = watermarks(&env.bootstrap(), &s.topic);
    let mirror_ends: Vec<i64> = ends.iter().map(|e| e - SKIP).collect();
    wait_mirrored(&secondary, &mirror, &mirror_ends).await;
    // A checkpoint carrying every partition's last processed timestamp.
    let control = cdc_relay::region::control::ControlTable::new(env.ddb.clone(), "control-fts");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = control.read(&s.group).await.unwrap();
        if r.as_ref()
            .is_some_and(|r| r.checkpoint_ts.len() == PARTITIONS as usize)
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "no checkpoint with timestamps: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = committed(&env.bootstrap(), &s.group, &s.topic);
    env.lab.kafka.broker_down(-1).unwrap();

    wait_done_on_secondary(&secondary, &s.group, &mirror, &mirror_ends).await;
    env.assert_exact(&s).await;
    let st = relay.status().to_json();
    let sw = &st["region"]["last_switch"];
    eprintln!("timestamp source: {sw}; primary committed {before:?} before the kill");
    assert_eq!(
        sw["offset_sources"],
        serde_json::json!({"timestamp": PARTITIONS}),
        "{sw}"
    );
    for p in 0..PARTITIONS {
        let start = sw["start_offsets"][format!("{mirror}/{p}")]
            .as_i64()
            .unwrap_or_else(|| panic!("no start offset for partition {p}: {sw}"));
        assert!(
            start > 0 && start < mirror_ends[p as usize],
            "partition {p}: start {start} on a mirror of {} records",
            mirror_ends[p as usize]
        );
    }
    relay.abort().await;
}

/// Issue #9 defects 1, 2 and 4. The link stalls, so the relay processes the primary further than
/// the mirror; then the primary dies and nothing new arrives on the secondary. The relay starts
/// each mirror partition at its end (the checkpoint, clamped) and has nothing to process there:
/// within the switch the group's committed offsets on the secondary must equal those start
/// positions, `/status` must show them with lag 0, the switch must be reported although no record
/// follows it, every exported per-partition series must describe a partition this instance owns
/// (the mirror's, not the dead primary's), and a graceful stop plus a restart on the secondary
/// must replay nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_switch_commits_its_start_positions_and_reports_itself() {
    let Regions {
        env,
        mut s,
        secondary,
        mirror,
        link,
        registries: _registries,
    } = regions_sized("fsp", 79, 1_500, |_| {}).await;
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    // The first part is committed, and the link has synced the group's offsets of it.
    let first = watermarks(&env.bootstrap(), &s.topic);
    env.wait_committed(&s.group, &s.topic, &first, common::DONE_TIMEOUT)
        .await;
    let until = Instant::now() + Duration::from_secs(30);
    while committed(secondary.bootstrap_servers(), &s.group, &mirror)
        != first.iter().map(|o| Some(*o)).collect::<Vec<_>>()
    {
        assert!(Instant::now() < until, "the link did not sync the group");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rest of the stream arrives and is mirrored while AWS holds still, so the relay can
    // complete (and commit, and the link sync) none of it: the link's sync stays behind the
    // mirror by construction. Then the link stalls and AWS answers again.
    let moto = env.lab.moto.as_ref().unwrap();
    moto.pause().unwrap();
    env.produce_more(&mut s, 1_500).await;
    let generated = watermarks(&env.bootstrap(), &s.topic);
    wait_mirrored(&secondary, &mirror, &generated).await;
    link.pause();
    moto.resume().unwrap();
    let synced = committed(secondary.bootstrap_servers(), &s.group, &mirror);
    // More changes on the primary only; the relay processes all of them there.
    produce_changes(&env, &s, 800_000, 20).await;
    let primary_end = watermarks(&env.bootstrap(), &s.topic);
    env.wait_committed(&s.group, &s.topic, &primary_end, common::DONE_TIMEOUT)
        .await;
    // A checkpoint with that progress (checkpoint_interval is 1 s).
    let control = cdc_relay::region::control::ControlTable::new(env.ddb.clone(), "control-fsp");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = control.read(&s.group).await.unwrap();
        let at_end = r.as_ref().is_some_and(|r| {
            (0..PARTITIONS).all(|p| {
                r.checkpoint.get(&format!("{}/{p}", s.topic)) == Some(&primary_end[p as usize])
            })
        });
        if at_end {
            break;
        }
        assert!(
            Instant::now() < until,
            "no checkpoint at {primary_end:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = completed(&relay);
    let m = common::metrics(&relay).await;
    assert!(
        m.contains(&format!(
            "cdc_relay_consumer_lag_messages{{topic=\"{}\",partition=\"0\"}}",
            s.topic
        )),
        "lag of the primary's partitions while consuming there: {m}"
    );
    env.lab.kafka.broker_down(-1).unwrap();

    // The switch is reported once the consumer is assigned on the secondary, with nothing to
    // process there.
    let until = Instant::now() + Duration::from_secs(60);
    let sw = loop {
        let st = relay.status().to_json();
        let sw = st["region"]["last_switch"].clone();
        if sw["duration_seconds"].as_f64().is_some() {
            break sw;
        }
        assert!(
            Instant::now() < until,
            "no switch reported: {}",
            st["region"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("switch: {sw}; link had synced {synced:?}, mirror ends at {generated:?}");
    assert!(
        sw["first_record_seconds"].is_null(),
        "nothing to process: {sw}"
    );
    for p in 0..PARTITIONS {
        assert_eq!(
            sw["start_offsets"][format!("{mirror}/{p}")].as_i64(),
            Some(generated[p as usize]),
            "partition {p} starts at the mirror's end: {sw}"
        );
        assert!(
            synced[p as usize].is_none_or(|o| o < generated[p as usize]),
            "the link's sync must be behind for this test to mean anything: {synced:?}"
        );
    }
    // Within the switch: the broker holds the start positions as the group's offsets.
    let on_secondary = committed(secondary.bootstrap_servers(), &s.group, &mirror);
    assert_eq!(
        on_secondary,
        generated.iter().map(|o| Some(*o)).collect::<Vec<_>>(),
        "committed on the secondary when the switch was reported"
    );
    let st = relay.status().to_json();
    for p in 0..PARTITIONS {
        let part = st["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["topic"] == mirror.as_str() && x["partition"] == p)
            .unwrap_or_else(|| panic!("partition {p} in /status: {st}"))
            .clone();
        assert_eq!(
            part["committed_offset"].as_i64(),
            Some(generated[p as usize]),
            "{part}"
        );
        assert_eq!(part["lag"].as_i64(), Some(0), "{part}");
    }
    let m = common::metrics(&relay).await;
    let duration = metric(&m, "cdc_relay_failover_duration_seconds", "")
        .or_else(|| {
            m.lines()
                .find_map(|l| l.strip_prefix("cdc_relay_failover_duration_seconds "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0);
    assert!(duration > 0.0, "failover duration exported: {m}");
    // Every per-partition series describes a partition of the active cluster, truthfully.
    for family in [
        "cdc_relay_consumer_lag_messages",
        "cdc_relay_committed_offset",
    ] {
        let series: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .collect();
        assert_eq!(series.len(), PARTITIONS as usize, "{family}: {series:?}");
        for l in &series {
            assert!(
                l.contains(&format!("topic=\"{mirror}\"")),
                "{family} describes a partition this instance does not own: {l}"
            );
        }
    }
    for p in 0..PARTITIONS {
        let labels = format!("topic=\"{mirror}\",partition=\"{p}\"");
        assert_eq!(
            metric(&m, "cdc_relay_consumer_lag_messages", &labels),
            Some(0.0)
        );
        assert_eq!(
            metric(&m, "cdc_relay_committed_offset", &labels),
            Some(generated[p as usize] as f64)
        );
    }
    assert_eq!(
        completed(&relay),
        before,
        "nothing was processed on the secondary"
    );

    // SIGTERM's path, then a restart: it follows the control record to the secondary and
    // replays nothing.
    relay.shutdown().await;
    let again = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while again.status().assigned_at().is_none()
        || again.status().to_json()["partitions"]
            .as_array()
            .is_none_or(|p| p.len() < PARTITIONS as usize)
    {
        assert!(
            Instant::now() < until,
            "the restarted relay got no partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again.status().to_json()["region"]["active"], "secondary");
    // Evidence instead of a hold: one new record per partition of the mirror (the primary is
    // dead, so the link writes nothing there). A partition completes and commits in order, so
    // once these are committed, any replay of the records before them has completed too.
    let poisons =
        common::poison::Poisons::new(&common::registry(&env), &format!("{}-value", s.topic)).await;
    let producer = common::poison::producer(secondary.bootstrap_servers());
    for p in 0..PARTITIONS {
        let id = 900_000 + i64::from(p);
        common::poison::send(
            &producer,
            &mirror,
            p,
            &id.to_string(),
            &poisons.good(id, 1),
            &[],
        )
        .await;
    }
    let sentinels: Vec<Option<i64>> = generated.iter().map(|o| Some(o + 1)).collect();
    let until = Instant::now() + Duration::from_secs(60);
    while committed(secondary.bootstrap_servers(), &s.group, &mirror) != sentinels {
        assert!(
            Instant::now() < until,
            "the restarted relay did not commit the new records: {:?} of {sentinels:?}",
            committed(secondary.bootstrap_servers(), &s.group, &mirror)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        completed(&again),
        PARTITIONS as u64,
        "a restart on the secondary replays nothing: only the new records were processed"
    );
    again.abort().await;
}
