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
use crate::history::{History, Mirror};
use crate::load::{Load, LoadSpec, Target};
use crate::observe::{self, Sampler, Watched};
use crate::procs::{Lab, Relay};
use crate::report::{self, Report};

pub const TOPIC: &str = "qlik.customers";
pub const TABLE: &str = "customers";
pub const PARTITIONS: i32 = 3;
pub const GROUP: &str = "cdc-relay-chaos";
pub const DLQ_QUEUE: &str = "cdc-relay-chaos-dlq";
/// Records per second the load writes (by default).
pub const RATE: u32 = 200;
/// With events on: moto's EventBridge delivers each event to SQS inside PutEvents, several times
/// slower than a DynamoDB write; the rate leaves it room on a 2-core machine.
pub const EVENTS_RATE: u32 = 20;

/// What a scenario needs besides the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub relays: usize,
    /// 2: a secondary region with the cluster link; the relays fail over between them.
    pub regions: u8,
    /// Domain events on: an EventBridge bus (required output) whose rule forwards to an SQS
    /// queue, read at the end for the checker's `unseen_events`.
    pub events: bool,
    /// Records per second the load writes.
    pub rate: u32,
    /// Extra TOML appended to each relay's config.
    pub relay_extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            relays: 1,
            regions: 1,
            events: false,
            rate: RATE,
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
    /// How the link maps the primary's records to the secondary; at a region kill, what it had
    /// mirrored.
    mirrors: Vec<Mirror>,
    /// Fault → a relay on the other region (ms), set by region scenarios.
    pub failover_ms: Option<u64>,
    /// Scenario-specific figures for the report (e.g. the relay's link lag before a kill).
    pub figures: BTreeMap<String, f64>,
    /// The SQS queue the event bus's rule forwards to, with events on.
    event_queue: Option<String>,
    /// The load's rate; the relay counts as recovered at a lag of two seconds of it.
    rate: u32,
    dir: Option<tempfile::TempDir>,
}

pub const CONTROL_TABLE: &str = "control";

fn relay_config(lab: &Lab, regions: u8, extra: &str) -> String {
    let common = format!(
        r#"
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
        aws = lab.field(&["aws_endpoint_url"]),
    );
    // One region: the cluster in [kafka]; two: each region's cluster and registry.
    let bootstrap = if regions < 2 {
        format!(
            "bootstrap_servers = \"{}\"",
            lab.field(&["bootstrap_servers"])
        )
    } else {
        String::new()
    };
    let kafka = format!(
        r#"
[kafka]
{bootstrap}
group_id = "{GROUP}"
topics = ["{TOPIC}"]
commit_interval = "200ms"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"#
    );
    if regions < 2 {
        return format!(
            "{kafka}[schema_registry]\nurl = \"{}\"\n{common}",
            lab.field(&["schema_registry_url"])
        );
    }
    format!(
        r#"{kafka}
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
control_table = "{CONTROL_TABLE}"
checkpoint_interval = "1s"
admin_token_env = "{token_env}"
[dynamodb]
write_region = "us-west-2"
{common}"#,
        primary = lab.field(&["bootstrap_servers"]),
        preg = lab.field(&["schema_registry_url"]),
        secondary = lab.field(&["secondary", "bootstrap_servers"]),
        prefix = lab.field(&["secondary", "mirror_prefix"]),
        sreg = lab.field(&["secondary", "schema_registry_url"]),
        token_env = crate::procs::ADMIN_TOKEN_ENV,
    )
}

/// The primary topic's mirror on the secondary.
pub fn mirror_topic(lab: &Lab) -> String {
    format!("{}{TOPIC}", lab.field(&["secondary", "mirror_prefix"]))
}

/// A failed scenario keeps its directory (the processes' full logs, their configs) and says where.
impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.dir.take()
        {
            let kept = d.keep();
            eprintln!(
                "[{}] logs and configs kept in {}",
                self.name,
                kept.display()
            );
        }
    }
}

/// The link copies the primary topic to the mirror with the same offsets (`cluster-link`).
fn link_identity(lab: &Lab) -> Mirror {
    Mirror {
        from: ("primary".into(), TOPIC.into()),
        to: ("secondary".into(), mirror_topic(lab)),
        mirrored: (0..PARTITIONS).map(|p| (p, i64::MAX)).collect(),
        killed: false,
    }
}

impl Scenario {
    /// Starts the lab (one region, three brokers), the table, the DLQ, the relays, the load and
    /// the sampler.
    pub async fn start(name: &str, opts: Options) -> Scenario {
        let dir = tempfile::Builder::new()
            .prefix(&format!("chaos-{name}-"))
            .tempdir()
            .unwrap();
        let topics = format!("{TOPIC}:{PARTITIONS}");
        let regions = opts.regions.to_string();
        let lab = Lab::start(
            dir.path(),
            &[
                "--brokers",
                "3",
                "--topics",
                &topics,
                "--groups",
                GROUP,
                "--regions",
                &regions,
            ],
        );
        let aws = lab.field(&["aws_endpoint_url"]);
        let ddb = observe::dynamodb(&aws).await;
        cdc_relay::lab::create_table(&ddb, TABLE, "pk")
            .await
            .unwrap_or_else(|e| panic!("creating {TABLE}: {e}"));
        if opts.regions > 1 {
            cdc_relay::lab::create_table(&ddb, CONTROL_TABLE, "group")
                .await
                .unwrap_or_else(|e| panic!("creating {CONTROL_TABLE}: {e}"));
        }
        let sqs = observe::sqs(&aws).await;
        let dlq_url = observe::create_queue(&sqs, DLQ_QUEUE).await;
        let mut extra = opts.relay_extra.clone();
        let event_queue = if opts.events {
            extra.push_str("\n[eventbridge]\nbus = \"chaos-events\"\nrequired = true\n");
            Some(observe::bus_to_queue(&aws, "chaos-events", "chaos-events-q").await)
        } else {
            None
        };
        let config = relay_config(&lab, opts.regions, &extra);
        let relays = (0..opts.relays)
            .map(|i| Relay::start(dir.path(), &format!("relay{i}"), &config))
            .collect();
        let started = Instant::now();
        let load = Load::start(LoadSpec {
            target: Target {
                cluster: "primary".into(),
                bootstrap: lab.field(&["bootstrap_servers"]),
                topic: None,
            },
            registry_url: lab.field(&["schema_registry_url"]),
            table: TABLE.into(),
            topic: TOPIC.into(),
            keys: 300,
            rate: opts.rate,
            seed: name
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
        })
        .await;
        let mut watched = vec![Watched {
            cluster: "primary".into(),
            bootstrap: lab.field(&["bootstrap_servers"]),
            topic: TOPIC.into(),
            partitions: PARTITIONS,
        }];
        if opts.regions > 1 {
            watched.push(Watched {
                cluster: "secondary".into(),
                bootstrap: lab.field(&["secondary", "bootstrap_servers"]),
                topic: mirror_topic(&lab),
                partitions: PARTITIONS,
            });
        }
        let sampler = Sampler::start(
            started,
            GROUP.into(),
            watched.clone(),
            ddb,
            TABLE.into(),
            Duration::from_millis(500),
        );
        let mirrors = if opts.regions > 1 {
            vec![link_identity(&lab)]
        } else {
            Vec::new()
        };
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
            readers: std::sync::Arc::new(observe::Readers::new(GROUP, &watched)),
            mirrors,
            failover_ms: None,
            figures: BTreeMap::new(),
            event_queue,
            rate: opts.rate,
            dir: Some(dir),
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

    /// The whole primary region dies (its brokers, then its registry). The load holds first, so
    /// every record's fate is known (the source dies with its region); what the link had mirrored
    /// is read once the secondary's mirror stops growing. Returns the relay's own link lag (summed
    /// `cdc_relay_link_lag_messages` of the first relay) read just before the kill.
    pub async fn kill_primary_region(&mut self) -> f64 {
        if let Some(l) = &self.load {
            l.hold().await;
        }
        let link_lag = crate::procs::metric_sum(
            &self.relays[0].metrics().await,
            "cdc_relay_link_lag_messages",
            &[],
        );
        // How old the relay's measurement was (its probe skips a measurement that overran the
        // probe timeout and keeps the last one).
        let st = self.relays[0].status().await;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if let Some(oldest) = st["region"]["link_lag"]
            .as_array()
            .and_then(|l| l.iter().filter_map(|x| x["measured_at_ms"].as_i64()).min())
        {
            self.figures
                .insert("link_lag_age_ms".into(), (now_ms - oldest) as f64);
        }
        self.fault("primary region down (brokers, registry)");
        self.lab.control("/regions/primary/down", None).await;
        self.lab
            .control("/regions/primary/registry/stop", None)
            .await;
        let mirrored = self.stable_mirror_ends().await;
        self.mirrors = vec![Mirror {
            from: ("primary".into(), TOPIC.into()),
            to: ("secondary".into(), mirror_topic(&self.lab)),
            mirrored,
            killed: true,
        }];
        link_lag
    }

    /// The primary region is back (brokers, registry) with its data: its unmirrored tail is no
    /// longer lost (the link copies it, the relay may read it there), and the load resumes there.
    pub async fn primary_back(&mut self) {
        self.lab.control("/regions/primary/up", None).await;
        self.lab
            .control("/regions/primary/registry/start", None)
            .await;
        self.mirrors = vec![link_identity(&self.lab)];
        if let Some(l) = &self.load {
            l.resume(None);
        }
    }

    /// The mirror topic's end offsets once they held still for a second (the link's last writes
    /// landed).
    async fn stable_mirror_ends(&self) -> BTreeMap<i32, i64> {
        let w = Watched {
            cluster: "secondary".into(),
            bootstrap: self.lab.field(&["secondary", "bootstrap_servers"]),
            topic: mirror_topic(&self.lab),
            partitions: PARTITIONS,
        };
        let r = std::sync::Arc::new(observe::Readers::new(GROUP, std::slice::from_ref(&w)));
        let mut last: Option<BTreeMap<i32, i64>> = None;
        loop {
            let rr = r.clone();
            let ends = tokio::task::spawn_blocking(move || rr.ends())
                .await
                .ok()
                .and_then(|mut e| e.pop())
                .and_then(|(_, e)| e);
            if ends.is_some() && ends == last {
                return ends.unwrap_or_default();
            }
            last = ends;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until `relay` reports `region` active, and returns how long that took from `since`.
    pub async fn wait_active(&mut self, relay: usize, region: &str, since: Instant) -> u64 {
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let st = self.relays[relay].status().await;
            if st["region"]["active"] == region {
                return since.elapsed().as_millis() as u64;
            }
            assert!(
                Instant::now() < until,
                "[{}] {} not on {region} after 90 s: {}; logs: {}",
                self.name,
                self.relays[relay].name,
                st["region"],
                self.logs()
            );
            self.run_for(Duration::from_millis(100)).await;
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
        // Everything produced is committed at one of its positions (each good record written,
        // each poison dead-lettered), but the RPO: records a killed region never mirrored.
        let pending = History {
            produced,
            mirrors: self.mirrors.clone(),
            ..History::default()
        };
        // Bounded by the time without progress, not in all: a replay after a switch back is
        // long on a loaded machine, not stuck.
        let stall = Duration::from_secs(180);
        let mut until = Instant::now() + stall;
        let mut fewest = usize::MAX;
        loop {
            let c = self.commits().await;
            let left: Vec<_> = pending
                .produced
                .iter()
                .filter(|p| !checker::in_rpo(&pending, p) && !checker::committed(&pending, p, &c))
                .collect();
            if left.is_empty() {
                break;
            }
            if left.len() < fewest {
                fewest = left.len();
                until = Instant::now() + stall;
            }
            if Instant::now() >= until {
                // What the relays say about themselves, kept with their logs.
                for r in &self.relays {
                    let st = r.status().await;
                    if let Some(d) = &self.dir {
                        let _ = std::fs::write(
                            d.path().join(format!("{}.status.json", r.name)),
                            serde_json::to_vec_pretty(&st).unwrap_or_default(),
                        );
                        let _ = std::fs::write(
                            d.path().join(format!("{}.metrics.txt", r.name)),
                            r.metrics().await,
                        );
                    }
                }
            }
            assert!(
                Instant::now() < until,
                "[{}] the relays committed nothing more for 180 s: {} records left, first {}; committed {c:?}; logs: {}",
                self.name,
                left.len(),
                left[0].pos,
                self.logs()
            );
            self.run_for(Duration::from_millis(300)).await;
        }
        let produced = pending.produced;
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
            &BTreeMap::from([
                ("us-west-2".to_string(), "primary".to_string()),
                ("us-east-1".to_string(), "secondary".to_string()),
            ]),
        )
        .await;
        let event_ids = match &self.event_queue {
            Some(url) => Some(observe::read_event_ids(&sqs, url).await),
            None => None,
        };
        let mut commit_readings = recorded.commit_readings;
        let last = self.commits().await;
        commit_readings.push((drained, last));
        let history = History {
            produced,
            samples: recorded.samples,
            commit_readings,
            mirrors: self.mirrors.clone(),
            final_items: BTreeMap::from([(TABLE.to_string(), items)]),
            dlq,
            event_ids,
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
            2 * i64::from(self.rate),
        );
        let report = Report {
            failover_ms: self.failover_ms,
            figures: self.figures.clone(),
            ..report
        };
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
