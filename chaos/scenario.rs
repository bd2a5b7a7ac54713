//! One scenario's life, shared by every scenario: the lab and relay processes started, the table
//! and the DLQ created with the AWS SDK, the load and the sampler running from the first second;
//! faults marked with their start and end; at the end the load stopped, the relay left to finish,
//! the history handed to the checker, the report written and the verdict asserted.
//!
//! Orchestration only: faults are the scenario's (through `procs`), recording is `load`'s and
//! `observe`'s, judging is the checker's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::checker::{self, Analysis};
use crate::history::History;
use crate::load::{Load, LoadSpec, Target};
use crate::observe::{self, Sampler, Watched};
use crate::procs::{Lab, Relay};
use crate::report::{self, Report};

pub const TOPIC: &str = "qlik.customers";
pub const TABLE: &str = "customers";
pub const PARTITIONS: i32 = 3;
pub const GROUP: &str = "cdc-relay-chaos";
pub const DLQ_QUEUE: &str = "cdc-relay-chaos-dlq";
/// Records per second the load writes.
pub const RATE: u32 = 200;
/// Lag at or under which the relay counts as recovered.
pub const RECOVERED_LAG: i64 = 2 * RATE as i64;

/// What a scenario needs besides the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub relays: usize,
    /// Extra TOML appended to each relay's config.
    pub relay_extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            relays: 1,
            relay_extra: String::new(),
        }
    }
}

/// A scenario in progress.
pub struct Scenario {
    pub name: String,
    pub lab: Lab,
    pub relays: Vec<Relay>,
    pub load: Option<Load>,
    sampler: Option<Sampler>,
    started: Instant,
    /// (what, start ms, end ms) of each fault.
    faults: Vec<(String, u64, Option<u64>)>,
    aws: String,
    dlq_url: String,
    readers: std::sync::Arc<observe::Readers>,
    _dir: tempfile::TempDir,
}

fn relay_config(lab: &Lab, extra: &str) -> String {
    format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{GROUP}"
topics = ["{TOPIC}"]
commit_interval = "200ms"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[schema_registry]
url = "{registry}"
[aws]
region = "us-west-2"
endpoint_url = "{aws}"
[dlq]
sqs_queue_name = "{DLQ_QUEUE}"
[admin]
listen = "{{admin}}"
[[routes]]
topic = "{TOPIC}"
table = "{TABLE}"
key = ["id"]
{extra}
"#,
        bootstrap = lab.field(&["bootstrap_servers"]),
        registry = lab.field(&["schema_registry_url"]),
        aws = lab.field(&["aws_endpoint_url"]),
    )
}

impl Scenario {
    /// Starts the lab (one region, three brokers), the table, the DLQ, the relays, the load and
    /// the sampler.
    pub async fn start(name: &str, opts: Options) -> Scenario {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chaos-{name}-"))
            .tempdir()
            .unwrap();
        let lab = Lab::start(
            dir.path(),
            &[
                "--brokers",
                "3",
                "--topics",
                &format!("{TOPIC}:{PARTITIONS}"),
                "--groups",
                GROUP,
            ],
        );
        let aws = lab.field(&["aws_endpoint_url"]);
        let ddb = observe::dynamodb(&aws).await;
        cdc_relay::lab::create_table(&ddb, TABLE, "pk")
            .await
            .unwrap_or_else(|e| panic!("creating {TABLE}: {e}"));
        let sqs = observe::sqs(&aws).await;
        let dlq_url = sqs
            .create_queue()
            .queue_name(DLQ_QUEUE)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating the DLQ: {e:?}"))
            .queue_url()
            .unwrap_or_default()
            .to_string();
        let config = relay_config(&lab, &opts.relay_extra);
        let relays = (0..opts.relays)
            .map(|i| Relay::start(dir.path(), &format!("relay{i}"), &config))
            .collect();
        let started = Instant::now();
        let load = Load::start(LoadSpec {
            target: Target {
                cluster: "primary".into(),
                bootstrap: lab.field(&["bootstrap_servers"]),
            },
            registry_url: lab.field(&["schema_registry_url"]),
            table: TABLE.into(),
            topic: TOPIC.into(),
            keys: 300,
            rate: RATE,
            seed: name
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
        })
        .await;
        let watched = Watched {
            cluster: "primary".into(),
            bootstrap: lab.field(&["bootstrap_servers"]),
            topic: TOPIC.into(),
            partitions: PARTITIONS,
        };
        let sampler = Sampler::start(
            started,
            GROUP.into(),
            vec![watched.clone()],
            ddb,
            TABLE.into(),
            Duration::from_millis(500),
        );
        Scenario {
            name: name.to_string(),
            lab,
            relays,
            load: Some(load),
            sampler: Some(sampler),
            started,
            faults: Vec::new(),
            aws,
            dlq_url,
            readers: std::sync::Arc::new(observe::Readers::new(GROUP, &[watched])),
            _dir: dir,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Marks a fault's start.
    pub fn fault(&mut self, what: &str) {
        let at = self.now_ms();
        eprintln!("[{}] {at} ms: {what}", self.name);
        self.faults.push((what.to_string(), at, None));
    }

    /// Marks the last fault's end.
    pub fn fault_over(&mut self) {
        let at = self.now_ms();
        if let Some(f) = self.faults.last_mut() {
            eprintln!("[{}] {at} ms: {} over", self.name, f.0);
            f.2 = Some(at);
        }
    }

    /// Lets the load run for `d`, checking the relays still run (a relay that exits on its own
    /// fails the scenario, with its log).
    pub async fn run_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            for r in &mut self.relays {
                if r.is_running() {
                    r.assert_running();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the relays committed a record produced after now (progress), up to `timeout`.
    pub async fn wait_progress(&mut self, timeout: Duration) {
        let target = self.load.as_ref().map_or(0, Load::acked);
        let until = Instant::now() + timeout;
        loop {
            let c = self.commits().await;
            if c.values().sum::<i64>() > target as i64 {
                return;
            }
            assert!(
                Instant::now() < until,
                "[{}] no progress past {target} records in {timeout:?}: committed {c:?}; logs: {}",
                self.name,
                self.logs()
            );
            self.run_for(Duration::from_millis(300)).await;
        }
    }

    /// The group's committed offsets now, read from outside.
    pub async fn commits(&self) -> crate::history::Commits {
        let r = self.readers.clone();
        tokio::task::spawn_blocking(move || r.commits())
            .await
            .unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let lab = self.lab.log();
        let tail: Vec<&str> = lab.lines().rev().take(20).collect();
        let mut s = format!(
            "\n--- lab (last 20 lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        for r in &self.relays {
            let log = r.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            s.push_str(&format!(
                "\n--- {} (last 40 lines) ---\n{}",
                r.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        s
    }

    /// Stops the load, waits for the relays to commit everything it produced, records the final
    /// state and the DLQ, checks the history, writes the report and asserts the verdict.
    pub async fn finish(mut self) -> (Analysis, Report) {
        let produced = match self.load.take() {
            Some(l) => l.stop().await,
            None => Vec::new(),
        };
        let load_end = self.now_ms();
        // Everything produced is committed (each good record written, each poison dead-lettered).
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for p in &produced {
            let e = ends.entry(p.pos.partition).or_default();
            *e = (*e).max(p.pos.offset + 1);
        }
        let until = Instant::now() + Duration::from_secs(180);
        loop {
            let c = self.commits().await;
            let done = ends.iter().all(|(p, e)| {
                c.get(&("primary".into(), TOPIC.into(), *p))
                    .is_some_and(|c| c >= e)
            });
            if done {
                break;
            }
            assert!(
                Instant::now() < until,
                "[{}] the relays did not commit what was produced in 180 s: committed {c:?}, ends {ends:?}; logs: {}",
                self.name,
                self.logs()
            );
            self.run_for(Duration::from_millis(300)).await;
        }
        let drained = self.now_ms();
        let recorded = match self.sampler.take() {
            Some(s) => s.stop().await,
            None => Default::default(),
        };
        let mut metrics = BTreeMap::new();
        for r in &mut self.relays {
            r.scrape().await;
            for (k, v) in r.counted() {
                *metrics.entry(k).or_insert(0.0) += v;
            }
        }
        let ddb = observe::dynamodb(&self.aws).await;
        let items = cdc_relay::verify::scan_table(&ddb, TABLE, "pk")
            .await
            .unwrap_or_else(|e| panic!("final scan: {e}"));
        let sqs = observe::sqs(&self.aws).await;
        let dlq = observe::read_dlq(
            &sqs,
            &self.dlq_url,
            &BTreeMap::from([("us-west-2".to_string(), "primary".to_string())]),
        )
        .await;
        let mut commit_readings = recorded.commit_readings;
        let last = self.commits().await;
        commit_readings.push((drained, last));
        let history = History {
            produced,
            samples: recorded.samples,
            commit_readings,
            mirrors: Vec::new(),
            final_items: BTreeMap::from([(TABLE.to_string(), items)]),
            dlq,
            event_ids: None,
        };
        let analysis = checker::check(&history);
        let report = report::build(
            &self.name,
            &analysis,
            &metrics,
            &recorded.lag,
            &self.faults,
            load_end,
            drained,
            history.dlq.len() as u64,
            RECOVERED_LAG,
        );
        report::write(&report);
        eprintln!(
            "[{}] {}",
            self.name,
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        assert!(
            analysis.valid,
            "[{}] invalid history: {}; logs: {}",
            self.name,
            serde_json::to_string_pretty(&analysis.anomalies).unwrap_or_default(),
            self.logs()
        );
        (analysis, report)
    }
}
