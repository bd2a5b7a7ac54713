//! Dashboards, alerts and the README cannot drift from the code (issue #11):
//! - Prometheus' own `promtool` checks `dashboards/alerts.yaml` and runs its unit tests
//!   (`dashboards/alerts.test.yaml`), and fails on a deliberately broken rule file.
//! - A running relay (two regions, a DLQ, a planned failover, trace export on) and a second one
//!   stopped at a poison record export every metric the README's table names, every metric a
//!   dashboard or alert rule uses, and nothing the README does not document.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cdc_relay::config::EnvelopeKind;
use cdc_relay::relay::{self, StartOptions};
use common::poison::{self, Poisons};
use common::regions::{Regions, regions};
use common::{dlq_config, registry, sqs};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool cannot run ({e}): scripts/setup.sh installs it (Debian package prometheus)")
        })
}

#[test]
fn promtool_checks_the_alert_rules_and_runs_their_unit_tests() {
    let dir = root().join("dashboards");
    let check = promtool(&["check", "rules", "alerts.yaml"], &dir);
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = promtool(&["test", "rules", "alerts.test.yaml"], &dir);
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // The check can fail: a rule file with a PromQL syntax error is refused.
    let broken = promtool(
        &["check", "rules", "broken-alerts.yaml"],
        &root().join("tests/fixtures"),
    );
    assert!(
        !broken.status.success(),
        "a broken rule file must fail the check"
    );
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("could not parse expression")
            || String::from_utf8_lossy(&broken.stderr).contains("could not parse expression"),
        "{broken:?}"
    );
}

/// `cdc_relay_*` names in `text`, with a histogram's `_bucket`/`_sum`/`_count` series folded into
/// its family when `families` knows the family.
fn referenced(text: &str, families: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("cdc_relay_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| families.contains(*b)))
            .unwrap_or(name);
        out.insert(family.to_string());
        rest = &tail[end..];
    }
    out
}

/// The metric families in a Prometheus text exposition.
fn families(metrics: &str) -> BTreeSet<String> {
    let typed: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let samples = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect::<Vec<_>>();
    let mut out = typed.clone();
    for s in samples {
        let fam = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|x| s.strip_suffix(x).filter(|b| typed.contains(*b)))
            .map_or(s.clone(), str::to_string);
        out.insert(fam);
    }
    out
}

/// The names in README's metrics table (`| \`name\` | type | …`, all prefixed `cdc_relay_`).
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("### Metrics")
        .expect("README has a Metrics section");
    let section = &readme[start..];
    let end = section[4..].find("\n#").map_or(section.len(), |e| e + 4);
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("cdc_relay_{n}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_every_documented_dashboard_and_alert_metric_is_exported() {
    let Regions {
        env,
        mut s,
        secondary: _secondary,
        mirror: _mirror,
        link: _link,
        registries: _registries,
    } = regions("obs", 91).await;
    // Trace export on (to a receiver), so its counters exist.
    cdc_relay::telemetry::metrics::install();
    let receiver = common::otlp::Receiver::start().await;
    let traces = cdc_relay::telemetry::otel::TraceSettings::resolve(
        &cdc_relay::config::TelemetryConfig {
            otlp_endpoint: Some(receiver.endpoint()),
            sampler_ratio: Some(0.01),
            ..Default::default()
        },
        |_| None,
    )
    .unwrap()
    .unwrap();
    let _trace_guard = cdc_relay::telemetry::otel::init(&traces, "us-west-2", &s.group).unwrap();
    // A DLQ, and one poison record for it.
    let sqs = sqs::client(&env).await;
    let url = sqs::create_queue(&sqs, "dlq-obs").await;
    s.cfg.dlq = Some(dlq_config(&url));
    let poisons = Poisons::new(&registry(&env), "cdc.obs-value").await;
    let producer = poison::producer(&env.bootstrap());
    let (bad, _) = &poisons.kinds[0];
    poison::send(&producer, &s.topic, 0, "poison", bad, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = "obs-token";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    s.cfg.failover.admin_token_file = Some(token_file.display().to_string());
    let relay = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    let admin = relay.admin_addr().unwrap();
    env.wait_progress(&s, 1_000).await;
    // A planned failover: the failover metrics get their values.
    let resp = reqwest::Client::new()
        .post(format!("http://{admin}/admin/failover"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    // Records after the switch (mirrored to the secondary), so the first one processed there
    // exports its metric however far the relay got before the switch.
    env.produce_more(&mut s, 300).await;

    // A second relay without a DLQ, stopped at a poison record (the stop's metrics).
    let stop_topic = "cdc.obsstop";
    env.topic_and_table(stop_topic, 1, "obsstop").await;
    poison::send(&producer, stop_topic, 0, "poison", bad, &[]).await;
    let stopper = relay::start(
        env.config(
            "g-obsstop",
            stop_topic,
            "obsstop",
            EnvelopeKind::Qlik,
            cdc_relay::config::ValueFormat::Avro,
            "",
        ),
        StartOptions::default(),
    )
    .await
    .unwrap();

    // Everything that takes an event has had it: the DLQ, the stop, the first record after the
    // switch, the spans.
    let until = Instant::now() + Duration::from_secs(90);
    let metrics = loop {
        let m = common::metrics(&relay).await;
        let have = families(&m);
        let want = [
            "cdc_relay_dlq_records_total",
            "cdc_relay_poison_records_total",
            "cdc_relay_failover_first_record_seconds",
            "cdc_relay_failover_offset_source_total",
            "cdc_relay_link_lag_seconds",
            "cdc_relay_consumer_lag_seconds",
        ];
        if want.iter().all(|w| have.contains(*w)) {
            break m;
        }
        assert!(
            Instant::now() < until,
            "missing {:?} in:\n{m}",
            want.iter()
                .filter(|w| !have.contains(**w))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let exported = families(&metrics);

    let documented = readme_metrics();
    assert!(documented.len() > 30, "README table parsed: {documented:?}");
    let undocumented: Vec<&String> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in README's metrics table: {undocumented:?}"
    );
    let missing: Vec<&String> = documented.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "in README's metrics table but not exported: {missing:?}"
    );

    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            // Every panel query of the dashboard.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut exprs = Vec::new();
            collect_exprs(&v, &mut exprs);
            assert!(!exprs.is_empty(), "{name} has queries");
            for e in exprs {
                used.extend(referenced(&e, &exported));
            }
        } else if name == "alerts.yaml" {
            used.extend(referenced(&text, &exported));
        }
    }
    assert!(used.len() > 20, "{used:?}");
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "dashboards or alerts use metrics the relay does not export: {unknown:?}"
    );
    stopper.shutdown().await;
    relay.shutdown().await;
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
