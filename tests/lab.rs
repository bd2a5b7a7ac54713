//! `cdc-relay lab` driven from outside, as a user would: the binary as its own process, its JSON
//! on stdout, faults through its control endpoint over plain HTTP, a relay *process* against it,
//! and outside clients (rdkafka, the AWS SDK, `cdc-relay generate`) to check the results.
//!
//! Issue #9: the control endpoint kills a region and a relay process fails over; every operation
//! answers with the resulting state; Ctrl-C ends the lab within 5 s with a region down; moto is
//! found at run time (not through a compile-time path) and the lab says how; logs written to a
//! file hold no colour codes; `generate` refuses to report records the cluster dropped.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, read_text};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-relay");
const TOPIC: &str = "qlik.customers";
const PARTITIONS: i32 = 3;

/// A lab process and what it printed.
struct LabProcess {
    child: Child,
    info: Value,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl LabProcess {
    /// Starts `cdc-relay lab` in an empty working directory without `CDC_RELAY_MOTO_PYTHON`, so
    /// moto must be found from the executable's location, and reads its JSON line.
    fn start(args: &[&str]) -> LabProcess {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("lab.err");
        let mut child = Command::new(BIN)
            .arg("lab")
            .args(args)
            .current_dir(dir.path())
            .env_remove("CDC_RELAY_MOTO_PYTHON")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the lab prints its JSON line");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("lab JSON {line:?}: {e}; stderr: {}", read_text(&stderr)));
        LabProcess {
            child,
            info,
            stderr,
            _dir: dir,
        }
    }

    fn control(&self) -> String {
        self.info["control_url"].as_str().unwrap().to_string()
    }

    /// Sends SIGINT (Ctrl-C) and returns how long the process took to exit, and its status.
    async fn interrupt(&mut self) -> (Duration, std::process::ExitStatus) {
        match common::signal_and_wait(&mut self.child, "INT", Duration::from_secs(30)).await {
            Some(exit) => exit,
            None => {
                let _ = self.child.kill();
                panic!("the lab did not exit within 30 s of Ctrl-C");
            }
        }
    }
}

impl Drop for LabProcess {
    /// Ctrl-C first, so the lab stops the moto it started (a SIGKILLed lab leaves moto running),
    /// then SIGKILL if it has not exited within 15 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(url: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut req = c.post(url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let sdk = cdc_relay::sinks::aws::sdk_config(
        &cdc_relay::config::AwsConfig {
            region: Some("us-west-2".into()),
            endpoint_url: Some(endpoint.to_string()),
        },
        Duration::from_secs(10),
    )
    .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// No ANSI escape sequence (colour codes) in a log written to a file.
fn assert_no_colour(what: &str, text: &str) {
    assert!(
        !text.contains("\u{1b}["),
        "{what} has ANSI colour codes although it went to a file"
    );
}

/// Issue #9 acceptance: a relay process fails over when the lab's control endpoint kills the
/// primary region (brokers and registry), over HTTP only. Along the way: the lab found moto at
/// run time and said how, each operation answered with the state it made, the relay's and the
/// lab's logs in files hold no colour codes, and the lab exits within 5 s of Ctrl-C with a
/// region down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_lab_region_kill_fails_a_relay_process_over() {
    let mut lab = LabProcess::start(&[
        "--regions",
        "2",
        "--topics",
        &format!("{TOPIC}:{PARTITIONS}"),
    ]);
    let info = lab.info.clone();
    let lab_err = read_text(&lab.stderr);
    assert!(
        lab_err.contains("moto:") && lab_err.contains("found by venv"),
        "the lab says which moto it uses: {lab_err}"
    );
    let aws = info["aws_endpoint_url"]
        .as_str()
        .unwrap_or_else(|| panic!("moto runs in the lab: {info}; stderr: {lab_err}"))
        .to_string();
    let primary = info["bootstrap_servers"].as_str().unwrap().to_string();
    let secondary = info["secondary"]["bootstrap_servers"]
        .as_str()
        .unwrap()
        .to_string();
    let mirror = info["secondary"]["mirror_topics"][0]
        .as_str()
        .unwrap()
        .to_string();
    let group = info["secondary"]["synced_groups"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(info["partition_retention"]["bytes"], 5 * 1024 * 1024);

    // AWS side, with the SDK against the lab's moto.
    let ddb = dynamodb(&aws).await;
    cdc_relay::lab::create_table(&ddb, "customers", "pk")
        .await
        .unwrap();
    cdc_relay::lab::create_table(&ddb, "control", "group")
        .await
        .unwrap();

    // Records, with the generate command.
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.jsonl");
    let out = Command::new(BIN)
        .args([
            "generate",
            "--bootstrap-servers",
            &primary,
            "--registry-url",
        ])
        .arg(info["schema_registry_url"].as_str().unwrap())
        .args([
            "--tables",
            "customers",
            "--keys",
            "200",
            "--records",
            "3000",
        ])
        .arg("--expected")
        .arg(&expected)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The relay process, two regions.
    let admin_port = free_port();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
group_id = "{group}"
topics = ["{TOPIC}"]
commit_interval = "200ms"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[regions.primary]
name = "us-west-2"
bootstrap_servers = "{primary}"
[regions.primary.schema_registry]
url = "{preg}"
[regions.secondary]
name = "us-east-1"
bootstrap_servers = "{secondary}"
topic_prefix = "{prefix}"
[regions.secondary.schema_registry]
url = "{sreg}"
[failover]
probe_interval = "500ms"
probe_timeout = "500ms"
unhealthy_after = "2s"
control_table = "control"
checkpoint_interval = "1s"
[aws]
region = "us-west-2"
endpoint_url = "{aws}"
[dynamodb]
write_region = "us-west-2"
[admin]
listen = "127.0.0.1:{admin_port}"
[[routes]]
topic = "{TOPIC}"
table = "customers"
key = ["id"]
"#,
            preg = info["schema_registry_url"].as_str().unwrap(),
            sreg = info["secondary"]["schema_registry_url"].as_str().unwrap(),
            prefix = info["secondary"]["mirror_prefix"].as_str().unwrap(),
        ),
    )
    .unwrap();
    let relay_err = dir.path().join("relay.err");
    let mut relay = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&relay_err).unwrap())
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let status = || async {
        match reqwest::get(format!("{admin}/status")).await {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };

    // Progress on the primary, and everything mirrored, before the region dies.
    let ends = common::end_offsets_on(&primary, TOPIC, PARTITIONS);
    assert_eq!(ends.iter().sum::<i64>(), 3000);
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let c = common::committed_on(&primary, &group, TOPIC, PARTITIONS);
        if c.iter().map(|c| c.unwrap_or(0)).sum::<i64>() >= 500
            && common::end_offsets_on(&secondary, &mirror, PARTITIONS) == ends
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "no progress: committed {c:?}; relay stderr: {}",
            read_text(&relay_err)
        );
        assert!(
            relay.try_wait().unwrap().is_none(),
            "the relay exited: {}",
            read_text(&relay_err)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The whole primary region dies: its cluster, then its schema registry.
    let control = lab.control();
    let (code, st) = post(&format!("{control}/regions/primary/down"), None).await;
    assert_eq!(code, 200, "{st}");
    let brokers = st["regions"]["primary"]["cluster"]["brokers"]
        .as_object()
        .unwrap();
    assert!(
        !brokers.is_empty() && brokers.values().all(|up| up == false),
        "the answer shows every primary broker down: {st}"
    );
    assert!(
        st["regions"]["secondary"]["cluster"]["brokers"]
            .as_object()
            .unwrap()
            .values()
            .all(|up| up == true)
    );
    let (code, st) = post(&format!("{control}/regions/primary/registry/stop"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        st["regions"]["primary"]["schema_registry"]["running"],
        false
    );
    let killed = Instant::now();

    // The relay process switches to the secondary and finishes the stream there.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status().await;
        if st["region"]["active"] == "secondary" {
            break;
        }
        assert!(
            Instant::now() < until,
            "no failover: {}; relay stderr: {}",
            st["region"],
            read_text(&relay_err)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "relay process on the secondary {:?} after the region kill",
        killed.elapsed()
    );
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let c = common::committed_on(&secondary, &group, &mirror, PARTITIONS);
        if c.iter().zip(&ends).all(|(c, e)| *c == Some(*e)) {
            break;
        }
        assert!(
            Instant::now() < until,
            "secondary committed {c:?} of {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let verdict = Command::new(BIN)
        .args(["verify", "--expected"])
        .arg(&expected)
        .args(["--aws-endpoint", &aws, "--aws-region", "us-west-2"])
        .output()
        .unwrap();
    assert!(
        verdict.status.success(),
        "DynamoDB holds the expected state: {}",
        String::from_utf8_lossy(&verdict.stdout)
    );
    // The switch is reported at the region-health actor's next probe (its figures are exact: taken
    // from when the assignment finished); the relay may finish the stream before that. A poll with
    // a generous deadline: the figures are checked, not how soon a loaded machine reports them.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status().await;
        let sw = &st["region"]["last_switch"];
        if let Some(d) = sw["duration_seconds"].as_f64() {
            // The first record on the secondary, if the relay had anything left to do there.
            let first = sw["first_record_seconds"].as_f64();
            eprintln!("switch reported: {d:.2} s to the assignment; first record: {first:?}");
            assert!(first.is_none_or(|f| d <= f), "{sw}");
            break;
        }
        assert!(Instant::now() < until, "no switch report: {}", st["region"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Ctrl-C with the primary region still down: the lab is gone within 5 s.
    let (took, exit) = lab.interrupt().await;
    eprintln!("lab exited {took:?} after Ctrl-C with a region down");
    assert!(took < Duration::from_secs(5), "lab took {took:?} to exit");
    assert!(exit.success(), "{exit}");
    let _ = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status();
    let _ = relay.wait();
    assert_no_colour("the lab's log", &read_text(&lab.stderr));
    let relay_log = read_text(&relay_err);
    assert!(relay_log.contains("INFO"), "the relay logged: {relay_log}");
    assert_no_colour("the relay's log", &relay_log);
}

/// Each control operation does what it says and answers with the resulting state; bad requests
/// get a clear 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_lab_control_operations_answer_with_the_resulting_state() {
    let lab = LabProcess::start(&[
        "--regions",
        "2",
        "--topics",
        &format!("{TOPIC}:{PARTITIONS}"),
    ]);
    let control = lab.control();
    let primary = lab.info["bootstrap_servers"].as_str().unwrap().to_string();
    let secondary = lab.info["secondary"]["bootstrap_servers"]
        .as_str()
        .unwrap()
        .to_string();
    let mirror = lab.info["secondary"]["mirror_topics"][0]
        .as_str()
        .unwrap()
        .to_string();
    let state: Value = reqwest::get(format!("{control}/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["link"]["paused"], false, "{state}");

    // One broker down and up.
    let (code, st) = post(&format!("{control}/regions/primary/brokers/2/down"), None).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["regions"]["primary"]["cluster"]["brokers"]["2"], false);
    assert_eq!(st["regions"]["primary"]["cluster"]["brokers"]["1"], true);
    let (_, st) = post(&format!("{control}/regions/primary/brokers/2/up"), None).await;
    assert_eq!(st["regions"]["primary"]["cluster"]["brokers"]["2"], true);

    // A leader move, seen by an outside client's metadata.
    let (code, st) = post(
        &format!("{control}/regions/primary/leaders"),
        Some(serde_json::json!({"topic": TOPIC, "partition": 1, "broker": 3})),
    )
    .await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(
        st["regions"]["primary"]["cluster"]["leaders"][format!("{TOPIC}/1")],
        3
    );
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &primary)
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
            .unwrap();
        let leader = md.topics()[0]
            .partitions()
            .iter()
            .find(|p| p.id() == 1)
            .unwrap()
            .leader();
        assert_eq!(leader, 3);
    }

    // Latency and error injection.
    let (_, st) = post(
        &format!("{control}/regions/secondary/brokers/1/latency"),
        Some(serde_json::json!({"ms": 150})),
    )
    .await;
    assert_eq!(
        st["regions"]["secondary"]["cluster"]["round_trip_ms"]["1"],
        150
    );
    let (code, st) = post(
        &format!("{control}/regions/primary/errors"),
        Some(serde_json::json!({"api": "Fetch", "error": "NOT_LEADER_OR_FOLLOWER", "count": 3})),
    )
    .await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(
        st["regions"]["primary"]["cluster"]["injected_errors"]["Fetch"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let resp = reqwest::Client::new()
        .delete(format!("{control}/regions/primary/errors/Fetch"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let st: Value = resp.json().await.unwrap();
    assert!(
        st["regions"]["primary"]["cluster"]["injected_errors"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    // Bad requests are refused with a reason.
    let (code, body) = post(
        &format!("{control}/regions/primary/errors"),
        Some(serde_json::json!({"api": "Fetch", "error": "NO_SUCH_ERROR"})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("THROTTLING_QUOTA_EXCEEDED")
    );
    let (code, _) = post(&format!("{control}/regions/primary/brokers/9/down"), None).await;
    assert_eq!(code, 400);
    let (code, _) = post(&format!("{control}/regions/tertiary/down"), None).await;
    assert_eq!(code, 404);

    // The link: paused, new records stay on the primary; resumed, they arrive.
    let (_, st) = post(&format!("{control}/link/pause"), None).await;
    assert_eq!(st["link"]["paused"], true);
    let producer = common::poison::producer(&primary);
    common::poison::send(&producer, TOPIC, 0, "k", b"v", &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        common::end_offsets_on(&secondary, &mirror, PARTITIONS)[0],
        0
    );
    let (_, st) = post(
        &format!("{control}/link/slow"),
        Some(serde_json::json!({"per_record_ms": 5})),
    )
    .await;
    assert_eq!(st["link"]["per_record_delay_ms"], 5.0);
    let (_, st) = post(&format!("{control}/link/resume"), None).await;
    assert_eq!(st["link"]["paused"], false);
    let until = Instant::now() + Duration::from_secs(20);
    while common::end_offsets_on(&secondary, &mirror, PARTITIONS)[0] != 1 {
        assert!(Instant::now() < until, "the link did not copy after resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // moto frozen (the process is stopped) and thawed; the registry stopped and started.
    let (code, st) = post(&format!("{control}/moto/freeze"), None).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["moto"]["frozen"], true);
    let pid = st["moto"]["pid"].as_u64().unwrap();
    // The freeze answers once the kernel shows moto stopped (SIGSTOP lands asynchronously).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let field = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .map(String::from);
    let proc_state = &stat;
    assert_eq!(field.as_deref(), Some("T"), "moto is stopped: {proc_state}");
    let (_, st) = post(&format!("{control}/moto/thaw"), None).await;
    assert_eq!(st["moto"]["frozen"], false);
    let registry = lab.info["secondary"]["schema_registry_url"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, st) = post(&format!("{control}/regions/secondary/registry/stop"), None).await;
    assert_eq!(
        st["regions"]["secondary"]["schema_registry"]["running"],
        false
    );
    assert!(reqwest::get(format!("{registry}/subjects")).await.is_err());
    let (_, st) = post(&format!("{control}/regions/secondary/registry/start"), None).await;
    assert_eq!(
        st["regions"]["secondary"]["schema_registry"]["running"],
        true
    );
    assert!(
        reqwest::get(format!("{registry}/subjects"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

/// The mock cluster keeps about 5 MiB per partition and silently drops older records; generate
/// must not report records the cluster no longer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_generate_fails_when_the_cluster_dropped_what_it_produced() {
    let lab = cdc_relay::lab::Lab::start(cdc_relay::lab::LabOptions {
        moto: false,
        ..Default::default()
    })
    .await
    .unwrap();
    lab.kafka.create_topic("qlik.big", 1).unwrap();
    let run = |records: &str| {
        Command::new(BIN)
            .args([
                "generate",
                "--bootstrap-servers",
                lab.kafka.bootstrap_servers(),
            ])
            .args(["--registry-url", &lab.registry.url()])
            .args(["--tables", "big", "--keys", "1000", "--records", records])
            .output()
            .unwrap()
    };
    let out = run("60000");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the cluster dropped") && err.contains("qlik.big/0"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no report of records that are gone");
}
