//! The binary's contract: `check-config` exit codes and messages, and `run` draining, committing
//! and exiting 0 on SIGTERM (a real process against the mock cluster and moto).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdc_relay::config::EnvelopeKind;
use cdc_relay::relay::{self, StartOptions};
use common::{Env, Plan, count};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-relay");

#[test]
fn check_config_accepts_the_example() {
    let out = Command::new(BIN)
        .args(["check-config", "config/example.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dlq_tools_need_a_dlq_section() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodlq.toml");
    std::fs::write(
        &path,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\ntopics = [\"t\"]\n[aws]\nregion = \"us-west-2\"\nendpoint_url = \"http://127.0.0.1:9\"\n[[routes]]\ntopic = \"t\"\ntable = \"x\"\nkey = [\"id\"]\nformat = \"json\"\n",
    )
    .unwrap();
    for args in [&["dlq", "inspect"][..], &["dlq", "replay", "--dry-run"][..]] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no [dlq] section"), "{args:?}: {err}");
    }
    // A bad config is reported like check-config does.
    std::fs::write(&path, "[kafka]\n").unwrap();
    let out = Command::new(BIN)
        .args(["dlq", "inspect", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap_servers"));
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check(
        "[kafka]\nbootstrap_servers = \"nohost\"\ntopics = [\"t\"]\n[dynamodb]\nconcurrency = 0\n[[routes]]\ntopic = \"t\"\ntable = \"x\"\nkey = []\nformat = \"json\"\n".to_string(),
    );
    for key in [
        "kafka.bootstrap_servers",
        "dynamodb.concurrency",
        "routes[0].key",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
    // Environment overrides are validated too.
    let out = Command::new(BIN)
        .args(["check-config", "config/example.toml"])
        .env("CDC_RELAY__DYNAMODB__CONCURRENCY", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dynamodb.concurrency"));
    // Output entries are checked by their type: an unknown type, a bad setting, a typo.
    let head = "[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\ntopics = [\"t\"]\n[schema_registry]\nurl = \"http://127.0.0.1:8081\"\n[[routes]]\ntopic = \"t\"\nkey = [\"id\"]\n";
    let err = check(format!(
        "{head}[[routes.outputs]]\ntype = \"nope\"\n[[routes.outputs]]\ntype = \"blackhole\"\nbatch_size = 0\n[[routes.outputs]]\ntype = \"blackhole\"\nack_aftr = \"1ms\"\n"
    ));
    for needle in [
        "routes[0].outputs[0].type: unknown output type \"nope\"",
        "routes[0].outputs[1].batch_size",
        "routes[0].outputs[2]: unknown field `ack_aftr`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // A route with no output at all.
    assert!(check(head.to_string()).contains("routes[0].table: a route needs an output"));
    // A missing file is a clear error.
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_sigterm_drains_commits_and_exits_zero() {
    let env = Env::start().await;
    let mut s = env
        .scenario(Plan::new("sig", EnvelopeKind::Qlik, 200, 2_000, 9))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    let mut cfg = s.cfg.clone();
    let port = common::free_port();
    cfg.admin.listen = format!("127.0.0.1:{port}");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    // `cdc-relay probe` (the image's HEALTHCHECK): 0 while /health answers 2xx, else 1.
    let probe = |path: &str| {
        Command::new(BIN)
            .args(["probe", &format!("http://127.0.0.1:{port}{path}")])
            .output()
            .unwrap()
    };
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while env.committed_total(&s) < 800 {
        assert!(Instant::now() < until, "the relay made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the relay exited early"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(probe("/health").status.code(), Some(0));
    let missing = probe("/no-such-path");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{missing:?}"
    );
    let (_, status) = common::signal_and_wait(&mut child, "TERM", Duration::from_secs(20))
        .await
        .expect("no exit within shutdown_timeout");
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");
    let down = probe("/health");
    assert_eq!(down.status.code(), Some(1), "nothing listens after exit");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("probe:"),
        "{down:?}"
    );
    // The stream goes on after the stop (by construction, whatever the machine's speed).
    env.produce_more(&mut s, 2_000).await;

    // Everything written before SIGTERM was committed: the next run replays nothing as stale.
    let r = relay::start(s.cfg.clone(), StartOptions::default())
        .await
        .unwrap();
    env.wait_done(&s).await;
    env.assert_exact(&s).await;
    assert_eq!(
        count(&r, "stale"),
        0,
        "a graceful stop must commit what it wrote"
    );
    r.shutdown().await;
}
