//! The chaos suite (issue #19): scenarios that run the relay as separate processes against
//! `cdc-relay lab` under a steady outside load, inject faults only through the lab's control
//! endpoint and OS signals, and hand what they observed to an independent checker ("0 lost,
//! 0 regressed, exact, DLQ only for injected poison, commits never back").
//!
//! Each scenario is one test, `chaos_<name>`, so one runs alone by name
//! (`cargo nextest run --test chaos chaos_broker_down`). Reports go to `target/tmp/chaos/`;
//! `make chaos` merges them into `chaos/report.json` and `chaos/README.md`.
//!
//! The suite must not reach into a running relay (no library calls into its pipeline) or weaken
//! anything for the test: the relay runs on the config a user would write.

mod checker;
mod history;
mod load;
mod observe;
mod procs;
mod report;
mod scenario;

use std::time::{Duration, Instant};

use load::Target;

use scenario::{Options, PARTITIONS, Scenario, TOPIC};
use serde_json::json;

/// Each scenario in its own runtime with room for the load, the sampler and the processes' I/O.
macro_rules! scenario_test {
    ($name:ident, $body:expr) => {
        #[test]
        fn $name() {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap()
                .block_on($body);
        }
    };
}

/// A warm-up under load before the first fault: the relay has its partitions and commits.
async fn warm(s: &mut Scenario) {
    s.wait_progress(Duration::from_secs(60)).await;
    s.run_for(Duration::from_secs(3)).await;
}

// 1. One of three brokers down for 10 s, its partitions' leaders moved first (as a controller
// would), then back.
scenario_test!(chaos_broker_down, async {
    let mut s = Scenario::start("broker_down", Options::default()).await;
    warm(&mut s).await;
    s.fault("broker 2 down, its leaders moved to 1 and 3");
    for p in 0..PARTITIONS {
        let broker = if p % 2 == 0 { 1 } else { 3 };
        s.lab
            .control(
                "/regions/primary/leaders",
                Some(json!({"topic": TOPIC, "partition": p, "broker": broker})),
            )
            .await;
    }
    s.lab.control("/regions/primary/brokers/2/down", None).await;
    s.run_for(Duration::from_secs(10)).await;
    s.lab.control("/regions/primary/brokers/2/up", None).await;
    s.fault_over();
    s.run_for(Duration::from_secs(8)).await;
    s.finish().await;
});

// 4. 200 ms of round-trip latency on every primary broker for 20 s.
scenario_test!(chaos_broker_latency, async {
    let mut s = Scenario::start("broker_latency", Options::default()).await;
    warm(&mut s).await;
    s.fault("200 ms round trip on brokers 1-3");
    for b in 1..=3 {
        s.lab
            .control(
                &format!("/regions/primary/brokers/{b}/latency"),
                Some(json!({"ms": 200})),
            )
            .await;
    }
    s.run_for(Duration::from_secs(20)).await;
    for b in 1..=3 {
        s.lab
            .control(
                &format!("/regions/primary/brokers/{b}/latency"),
                Some(json!({"ms": 0})),
            )
            .await;
    }
    s.fault_over();
    s.run_for(Duration::from_secs(8)).await;
    s.finish().await;
});

// 5. moto (DynamoDB and the SQS DLQ) frozen for 15 s with SIGSTOP, then SIGCONT; data kept.
scenario_test!(chaos_moto_frozen, async {
    let mut s = Scenario::start("moto_frozen", Options::default()).await;
    warm(&mut s).await;
    s.fault("moto frozen (SIGSTOP)");
    s.lab.control("/moto/freeze", None).await;
    s.run_for(Duration::from_secs(15)).await;
    s.lab.control("/moto/thaw", None).await;
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    s.finish().await;
});

// 6. SIGKILL of the relay mid-batch, then a restart on the same config; domain events on (every
// change has its event; duplicates from the replay are counted).
scenario_test!(chaos_relay_sigkill, async {
    let mut s = Scenario::start(
        "relay_sigkill",
        Options {
            events: true,
            rate: scenario::EVENTS_RATE,
            ..Options::default()
        },
    )
    .await;
    warm(&mut s).await;
    s.fault("relay SIGKILL");
    s.relays[0].scrape().await;
    s.relays[0].kill();
    s.run_for(Duration::from_secs(2)).await;
    s.relays[0].restart();
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    s.finish().await;
});

// 7. Two relays in one group: one SIGKILLed (restarted later), then a rolling restart of the
// other (SIGTERM, start).
scenario_test!(chaos_two_relays, async {
    let mut s = Scenario::start(
        "two_relays",
        Options {
            relays: 2,
            ..Options::default()
        },
    )
    .await;
    warm(&mut s).await;
    s.fault("relay0 SIGKILL");
    s.relays[0].scrape().await;
    s.relays[0].kill();
    s.run_for(Duration::from_secs(8)).await;
    s.relays[0].restart();
    s.fault_over();
    s.run_for(Duration::from_secs(5)).await;
    s.fault("relay1 rolling restart (SIGTERM, start)");
    s.relays[1].scrape().await;
    let took = s.relays[1].terminate(Duration::from_secs(30));
    eprintln!("relay1 drained in {took:?}");
    s.relays[1].restart();
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    s.finish().await;
});

// 8. A poison flood: 5% corrupt records for 20 s, with the DLQ (moto) frozen for 5 s of it.
scenario_test!(chaos_poison_flood, async {
    let mut s = Scenario::start("poison_flood", Options::default()).await;
    warm(&mut s).await;
    s.fault("5% poison for 20 s, DLQ frozen 5 s of it");
    if let Some(l) = &s.load {
        l.set_poison(50);
    }
    s.run_for(Duration::from_secs(8)).await;
    s.lab.control("/moto/freeze", None).await;
    s.run_for(Duration::from_secs(5)).await;
    s.lab.control("/moto/thaw", None).await;
    s.run_for(Duration::from_secs(7)).await;
    if let Some(l) = &s.load {
        l.set_poison(0);
    }
    s.fault_over();
    s.run_for(Duration::from_secs(8)).await;
    let (a, _) = s.finish().await;
    assert!(a.poison > 0, "the flood produced poison records");
});

// 9. Kafka errors injected on Fetch, OffsetCommit and Heartbeat.
scenario_test!(chaos_kafka_errors, async {
    let mut s = Scenario::start("kafka_errors", Options::default()).await;
    warm(&mut s).await;
    s.fault("errors on Fetch, OffsetCommit, Heartbeat");
    for (api, error, count) in [
        ("Fetch", "THROTTLING_QUOTA_EXCEEDED", 20),
        ("Fetch", "NOT_LEADER_OR_FOLLOWER", 20),
        ("OffsetCommit", "REQUEST_TIMED_OUT", 10),
        ("Heartbeat", "REBALANCE_IN_PROGRESS", 5),
        ("OffsetCommit", "NOT_LEADER_OR_FOLLOWER", 5),
    ] {
        s.lab
            .control(
                "/regions/primary/errors",
                Some(json!({"api": api, "error": error, "count": count})),
            )
            .await;
        s.run_for(Duration::from_secs(3)).await;
    }
    for api in ["Fetch", "OffsetCommit", "Heartbeat"] {
        s.lab
            .control_delete(&format!("/regions/primary/errors/{api}"))
            .await;
    }
    s.fault_over();
    s.run_for(Duration::from_secs(8)).await;
    s.finish().await;
});

// 10. The schema registry unreachable for 15 s while the relay restarts: records hold (the new
// process has no cached schema), nothing goes to the DLQ.
scenario_test!(chaos_registry_down_restart, async {
    let mut s = Scenario::start("registry_down_restart", Options::default()).await;
    warm(&mut s).await;
    s.fault("registry stopped, relay restarted (SIGTERM, start)");
    s.lab.control("/regions/primary/registry/stop", None).await;
    s.relays[0].scrape().await;
    s.relays[0].terminate(Duration::from_secs(30));
    s.relays[0].restart();
    s.run_for(Duration::from_secs(15)).await;
    s.lab.control("/regions/primary/registry/start", None).await;
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    s.finish().await;
});

fn two_regions() -> Options {
    Options {
        regions: 2,
        ..Options::default()
    }
}

// 2. The whole primary region down: automatic failover; then the primary back and a planned
// failback. The load is the primary's source: it holds while its region is down.
scenario_test!(chaos_region_failover_failback, async {
    let mut s = Scenario::start("region_failover_failback", two_regions()).await;
    warm(&mut s).await;
    s.kill_primary_region().await;
    let killed = Instant::now();
    s.failover_ms = Some(s.wait_active(0, "secondary", killed).await);
    s.run_for(Duration::from_secs(8)).await;
    s.primary_back().await;
    s.fault_over();
    s.run_for(Duration::from_secs(5)).await;
    s.fault("planned failback");
    let (code, answer) = s.relays[0].planned("failback").await;
    assert!((200..300).contains(&code), "failback: {code} {answer}");
    let asked = Instant::now();
    let back = s.wait_active(0, "primary", asked).await;
    s.figures.insert("failback_ms".into(), back as f64);
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    s.finish().await;
});

// 3. The link stalled for 10 s, then the primary killed: what it had not mirrored is the RPO,
// compared with the relay's own link lag just before the kill. The load then writes to the
// promoted mirror on the secondary.
scenario_test!(chaos_link_stall_then_kill, async {
    let mut s = Scenario::start("link_stall_then_kill", two_regions()).await;
    warm(&mut s).await;
    s.fault("link paused");
    s.lab.control("/link/pause", None).await;
    s.run_for(Duration::from_secs(10)).await;
    s.fault_over();
    let link_lag = s.kill_primary_region().await;
    s.figures.insert("link_lag_before_kill".into(), link_lag);
    let killed = Instant::now();
    s.failover_ms = Some(s.wait_active(0, "secondary", killed).await);
    if let Some(l) = &s.load {
        l.resume(Some(Target {
            cluster: "secondary".into(),
            bootstrap: s.lab.field(&["secondary", "bootstrap_servers"]),
            topic: Some(scenario::mirror_topic(&s.lab)),
        }));
    }
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    let (a, r) = s.finish().await;
    assert!(a.rpo > 0, "the stalled link left an unmirrored tail");
    eprintln!(
        "RPO {} records; the relay's link lag before the kill: {link_lag}",
        r.rpo
    );
});

// 11. SIGKILL of the relay in the middle of a planned failover, restart: it ends on the region
// the control record holds (an operator retries a failover that did not get recorded).
scenario_test!(chaos_sigkill_mid_planned_failover, async {
    let mut s = Scenario::start("sigkill_mid_planned_failover", two_regions()).await;
    warm(&mut s).await;
    s.fault("planned failover, relay SIGKILLed 200 ms into it");
    let (code, answer) = s.relays[0].planned("failover").await;
    assert!((200..300).contains(&code), "failover: {code} {answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.relays[0].scrape().await;
    s.relays[0].kill();
    s.run_for(Duration::from_secs(1)).await;
    s.relays[0].restart();
    let restarted = Instant::now();
    let until = Instant::now() + Duration::from_secs(20);
    let mut retried = 0.0;
    loop {
        let st = s.relays[0].status().await;
        if st["region"]["active"] == "secondary" {
            break;
        }
        if Instant::now() > until && retried == 0.0 {
            let (code, answer) = s.relays[0].planned("failover").await;
            assert!(
                (200..300).contains(&code),
                "failover again: {code} {answer}"
            );
            retried = 1.0;
        }
        s.run_for(Duration::from_millis(100)).await;
        assert!(
            restarted.elapsed() < Duration::from_secs(90),
            "the restarted relay never reached the secondary: {}",
            st["region"]
        );
    }
    s.figures.insert("failover_retried".into(), retried);
    s.failover_ms = Some(restarted.elapsed().as_millis() as u64);
    s.fault_over();
    s.run_for(Duration::from_secs(10)).await;
    s.finish().await;
});

#[cfg(test)]
mod checker_tests;
