//! The `cdc-relay` binary: CLI parsing, runtime set-up, signals and exit codes (anyhow lives here).
//!
//! Every subcommand delegates to the library; nothing here holds relay logic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cdc_relay::config::{Config, EnvelopeKind, RegistryConfig, ValueFormat};
use cdc_relay::telemetry::otel::TraceSettings;
use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of glibc's malloc: the record path allocates and frees on different worker
/// threads, where glibc's arenas contend (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cdc-relay",
    version,
    about = "Kafka CDC → DynamoDB relay that never loses or regresses data"
)]
struct Cli {
    /// Log as JSON lines (production) instead of human-readable text.
    #[arg(long, global = true, env = "CDC_RELAY_JSON_LOGS")]
    json_logs: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Envelope {
    Qlik,
    Debezium,
    Simple,
}

impl From<Envelope> for EnvelopeKind {
    fn from(e: Envelope) -> Self {
        match e {
            Envelope::Qlik => EnvelopeKind::Qlik,
            Envelope::Debezium => EnvelopeKind::Debezium,
            Envelope::Simple => EnvelopeKind::Simple,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Avro,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the relay until SIGTERM/SIGINT (then drains, commits and exits 0).
    Run {
        /// The TOML config file (CDC_RELAY__SECTION__KEY variables override it).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Asks a running relay's admin endpoint whether it is alive (the container image's
    /// HEALTHCHECK: the image has no curl). Exit 0 on a 2xx answer, 1 otherwise.
    Probe {
        /// The URL to GET.
        #[arg(default_value = "http://127.0.0.1:9090/health")]
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Validates a config file (with CDC_RELAY__* overrides); prints every problem. Exit 0 or 2.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Runs the whole pipeline locally on embedded defaults and verifies the result.
    Demo {
        #[arg(long, default_value_t = 50_000)]
        records: u64,
        #[arg(long, default_value_t = 1_000)]
        keys: u32,
        #[arg(long, value_enum, default_value = "qlik")]
        envelope: Envelope,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Two regions: kill the whole primary cluster after --failover-after and fail over.
        #[arg(long)]
        failover: bool,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        failover_after: Duration,
    },
    /// Produces seeded CDC records and writes the expected final state (JSONL). Prints a JSON report.
    Generate {
        #[arg(long)]
        bootstrap_servers: String,
        /// Schema registry URL (required for --format avro).
        #[arg(long)]
        registry_url: Option<String>,
        #[arg(long, env = "CDC_RELAY_REGISTRY_USERNAME")]
        registry_username: Option<String>,
        #[arg(long, env = "CDC_RELAY_REGISTRY_PASSWORD", hide_env_values = true)]
        registry_password: Option<String>,
        #[arg(long, value_enum, default_value = "qlik")]
        envelope: Envelope,
        #[arg(long, value_enum, default_value = "avro")]
        format: Format,
        /// Comma-separated table names; topic = <topic-prefix><table>.
        #[arg(long, value_delimiter = ',', default_value = "customers")]
        tables: Vec<String>,
        #[arg(long, default_value = "qlik.")]
        topic_prefix: String,
        #[arg(long, default_value_t = 500)]
        keys: u32,
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<u32>,
        /// Where to write the expected final state (JSONL).
        #[arg(long)]
        expected: Option<PathBuf>,
        /// Pad every row's `note` to this many bytes (sizes records for benchmarks).
        #[arg(long, default_value_t = 0)]
        note_bytes: usize,
        /// Give every record a `traceparent` header (a new sampled trace each), so traces start
        /// at the producer.
        #[arg(long)]
        traceparent: bool,
    },
    /// Starts the local environment (mock Kafka on real ports, registry fixture, moto if installed),
    /// prints its connection details as JSON and runs until Ctrl-C.
    Lab {
        #[arg(long, default_value_t = 3)]
        brokers: i32,
        /// Topics to create, as name:partitions (comma-separated).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Do not start moto.
        #[arg(long)]
        no_moto: bool,
        /// 2: also start a secondary cluster with mirror topics and the cluster-link emulator.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        regions: u8,
        /// Mirror topic prefix on the secondary (with --regions 2).
        #[arg(long, default_value = "primary.")]
        mirror_prefix: String,
        /// Consumer groups whose offsets the link syncs (with --regions 2).
        #[arg(long, value_delimiter = ',', default_value = "cdc-relay")]
        groups: Vec<String>,
    },
    /// Works with the SQS dead-letter queue of a config's `[dlq]`.
    Dlq {
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// Compares DynamoDB with an expected-state file. Prints a JSON verdict; exit 0 if exact.
    Verify {
        #[arg(long)]
        expected: PathBuf,
        /// AWS endpoint (moto/LocalStack); default: the SDK's.
        #[arg(long)]
        aws_endpoint: Option<String>,
        #[arg(long)]
        aws_region: Option<String>,
        /// Prefix added to table names from the file.
        #[arg(long, default_value = "")]
        table_prefix: String,
        #[arg(long, default_value = "pk")]
        pk_attribute: String,
    },
}

#[derive(Subcommand)]
enum DlqCmd {
    /// Prints DLQ messages readably without consuming them.
    Inspect {
        #[arg(long, short)]
        config: PathBuf,
        /// At most this many messages.
        #[arg(long, default_value_t = 10)]
        max: usize,
        /// One JSON object per message instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replays DLQ messages, deleting each only after its replay is acknowledged.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// Produce to this topic instead of each record's source topic.
        #[arg(long, conflicts_with = "to_sinks")]
        to_topic: Option<String>,
        /// Decode, route and write to DynamoDB directly (after fixing the cause).
        #[arg(long)]
        to_sinks: bool,
        /// Print what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages (default: until the queue is empty).
        #[arg(long)]
        max: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own progress; only warnings and errors are logged unless RUST_LOG says otherwise.
    let default_filter = if matches!(cli.cmd, Cmd::Demo { .. }) {
        "warn,librdkafka=off,rdkafka=off"
    } else if matches!(cli.cmd, Cmd::Lab { .. }) {
        // The lab's own clients (the link emulator) report every fault the lab injects.
        "info,librdkafka=off,rdkafka=off"
    } else {
        "info,rdkafka=warn"
    };
    cdc_relay::telemetry::tracing::init(cli.json_logs, default_filter);
    if let Cmd::CheckConfig { file } = &cli.cmd {
        return check_config(file);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn probe(url: &str, timeout: std::time::Duration) -> ExitCode {
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("probe: {url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("probe: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let problems = match Config::load(file) {
        Ok(cfg) => {
            let mut p = cdc_relay::sinks::registry::problems(&cfg);
            if let Err(t) = TraceSettings::resolve(&cfg.telemetry, |k| std::env::var(k).ok()) {
                p.extend(t);
            }
            p
        }
        Err(e) => e.problems(),
    };
    if problems.is_empty() {
        println!("{}: ok", file.display());
        return ExitCode::SUCCESS;
    }
    eprintln!("{}: {} problem(s)", file.display(), problems.len());
    for p in problems {
        eprintln!("  - {p}");
    }
    ExitCode::from(2)
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::CheckConfig { file } => Ok(check_config(&file)),
        Cmd::Probe { url, timeout } => Ok(probe(&url, timeout).await),
        Cmd::Run { config } => run(config).await,
        Cmd::Dlq { cmd } => dlq(cmd).await,
        Cmd::Demo {
            records,
            keys,
            envelope,
            seed,
            failover,
            failover_after,
        } => {
            // The demo's relay exports traces when the standard OTEL_* variables ask for it.
            let traces = TraceSettings::resolve(&Default::default(), |k| std::env::var(k).ok())
                .map_err(cdc_relay::config::ConfigError::Invalid)?;
            let guard = start_traces(traces.as_ref(), "demo", "cdc-relay-demo")?;
            let r = cdc_relay::demo::run(cdc_relay::demo::DemoOptions {
                records,
                keys_per_table: keys,
                envelope: envelope.into(),
                seed,
                failover,
                failover_after,
            })
            .await;
            stop_traces(guard).await;
            match r {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Cmd::Generate {
            bootstrap_servers,
            registry_url,
            registry_username,
            registry_password,
            envelope,
            format,
            tables,
            topic_prefix,
            keys,
            records,
            seed,
            rate,
            expected,
            note_bytes,
            traceparent,
        } => {
            let format = match format {
                Format::Avro => ValueFormat::Avro,
                Format::Json => ValueFormat::Json,
            };
            if format == ValueFormat::Avro && registry_url.is_none() {
                anyhow::bail!("--registry-url is required with --format avro");
            }
            let spec = cdc_relay::generate::GenerateSpec {
                bootstrap_servers,
                registry: RegistryConfig {
                    url: registry_url,
                    username: registry_username,
                    password: registry_password,
                    ..Default::default()
                },
                envelope: envelope.into(),
                format,
                tables,
                topic_prefix,
                keys_per_table: keys,
                records,
                first_record: 0,
                seed,
                rate,
                mix: Default::default(),
                producer_properties: Default::default(),
                note_bytes,
                traceparent,
            };
            let (report, state) = cdc_relay::generate::generate(&spec).await?;
            if let Some(path) = expected {
                state.write_jsonl(&path)?;
            }
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab {
            brokers,
            topics,
            no_moto,
            regions,
            mirror_prefix,
            groups,
        } => {
            let mut with_parts = Vec::new();
            for t in topics {
                let (name, parts) = t.split_once(':').unwrap_or((t.as_str(), "3"));
                let parts: i32 = parts
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("bad partition count in {t:?}"))?;
                with_parts.push((name.to_string(), parts));
            }
            let session =
                cdc_relay::lab::session::Session::start(cdc_relay::lab::session::SessionOptions {
                    brokers,
                    topics: with_parts,
                    moto: !no_moto,
                    regions,
                    mirror_prefix,
                    groups,
                })
                .await?;
            eprintln!("{}", session.moto_note);
            println!("{}", session.info());
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
            eprintln!("lab: stopping");
            // Within 5 s whatever state the clusters are in: moto is killed at once, the rest
            // gets 3 s to close, then the process exits (ending what is left).
            let clean =
                tokio::task::spawn_blocking(move || session.shutdown(Duration::from_secs(3)))
                    .await
                    .unwrap_or(false);
            if !clean {
                eprintln!("lab: some clients did not close within 3 s; exiting anyway");
            }
            std::process::exit(0);
        }
        Cmd::Verify {
            expected,
            aws_endpoint,
            aws_region,
            table_prefix,
            pk_attribute,
        } => {
            let state = cdc_relay::generate::ExpectedState::read_jsonl(&expected)?;
            let aws = cdc_relay::config::AwsConfig {
                region: aws_region,
                endpoint_url: aws_endpoint,
            };
            let sdk = cdc_relay::sinks::aws::sdk_config(&aws, Duration::from_secs(10)).await;
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            let v = cdc_relay::verify::verify(
                &client,
                &state,
                |t| format!("{table_prefix}{t}"),
                &pk_attribute,
            )
            .await?;
            println!("{}", serde_json::to_string(&v)?);
            Ok(if v.is_exact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn dlq(cmd: DlqCmd) -> anyhow::Result<ExitCode> {
    use cdc_relay::dlq::tool::{DlqTool, ReplayTarget};
    let path = match &cmd {
        DlqCmd::Inspect { config, .. } | DlqCmd::Replay { config, .. } => config.clone(),
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let sdk = cdc_relay::sinks::aws::sdk_config(&cfg.aws, cfg.dynamodb.request_timeout).await;
    let tool = DlqTool::connect(cfg, sdk).await?;
    match cmd {
        DlqCmd::Inspect { max, json, .. } => {
            let msgs = tool.inspect(max).await?;
            for m in &msgs {
                match (&m.body, json) {
                    (Ok(b), true) => println!(
                        "{}",
                        serde_json::json!({"message_id": m.message_id, "receive_count": m.receive_count, "body": b})
                    ),
                    (Ok(b), false) => {
                        println!(
                            "{}/{}@{}  key={}  {}/{}: {}",
                            b.topic,
                            b.partition,
                            b.offset,
                            b.key()
                                .map(|k| String::from_utf8_lossy(&k).into_owned())
                                .unwrap_or_default(),
                            b.error.class,
                            b.error.reason,
                            b.error.message
                        );
                        println!(
                            "    value: {} bytes{}  region: {}  message: {}  received {}x",
                            b.value_bytes,
                            if b.value_omitted {
                                " (omitted: too large for SQS; still in Kafka)"
                            } else {
                                ""
                            },
                            b.region,
                            m.message_id,
                            m.receive_count
                        );
                        if let Some(d) = &b.decoded {
                            println!(
                                "    decoded: {}",
                                cdc_relay::dlq::truncate(&d.to_string(), 300)
                            );
                        }
                    }
                    (Err(raw), _) => println!(
                        "{}  (not a cdc-relay DLQ body) {}",
                        m.message_id,
                        cdc_relay::dlq::truncate(raw, 300)
                    ),
                }
            }
            eprintln!("{} message(s)", msgs.len());
            Ok(ExitCode::SUCCESS)
        }
        DlqCmd::Replay {
            to_topic,
            to_sinks,
            dry_run,
            max,
            ..
        } => {
            let target = if to_sinks {
                ReplayTarget::Sinks
            } else {
                ReplayTarget::Topic(to_topic)
            };
            let report = tool
                .replay(&target, dry_run, max.unwrap_or(usize::MAX))
                .await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let shutdown_timeout = cfg.runtime.shutdown_timeout;
    let traces = match TraceSettings::resolve(&cfg.telemetry, |k| std::env::var(k).ok()) {
        Ok(t) => t,
        Err(problems) => {
            eprintln!("{}", cdc_relay::config::ConfigError::Invalid(problems));
            return Ok(ExitCode::from(2));
        }
    };
    let region = cfg.aws.region.clone().unwrap_or_default();
    let guard = start_traces(traces.as_ref(), &region, &cfg.kafka.group_id)?;
    let code = run_relay(cfg, shutdown_timeout).await;
    stop_traces(guard).await;
    code
}

/// Starts trace export when configured (after the metrics recorder, so the exporter's counters
/// are real).
fn start_traces(
    settings: Option<&TraceSettings>,
    region: &str,
    group: &str,
) -> anyhow::Result<Option<cdc_relay::telemetry::otel::TraceGuard>> {
    cdc_relay::telemetry::metrics::install();
    Ok(match settings {
        Some(t) => Some(cdc_relay::telemetry::otel::init(t, region, group)?),
        None => None,
    })
}

/// Exports what is queued, bounded in time.
async fn stop_traces(guard: Option<cdc_relay::telemetry::otel::TraceGuard>) {
    if let Some(g) = guard {
        let _ = tokio::task::spawn_blocking(move || g.shutdown()).await;
    }
}

async fn run_relay(cfg: Config, shutdown_timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut relay = cdc_relay::relay::start(cfg, Default::default()).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining and committing"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining and committing"),
        reason = relay.escalated() => {
            tracing::error!(reason = ?reason, "supervision escalated to the root; exiting non-zero");
            relay.abort().await;
            return Ok(ExitCode::FAILURE);
        }
    }
    match tokio::time::timeout(shutdown_timeout + Duration::from_secs(5), relay.shutdown()).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(_) => {
            tracing::error!("shutdown did not finish within shutdown_timeout");
            Ok(ExitCode::FAILURE)
        }
    }
}
