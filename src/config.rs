//! Configuration: a TOML file plus `CDC_RELAY__SECTION__KEY` environment overrides, validated.
//!
//! Loading and validation only. It must not open connections or start anything (the only files
//! it reads are the config and its `properties_file`s); it reports every problem at once, each
//! naming the offending key and why (used by `check-config`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::sinks::breaker::BreakerConfig;
use crate::sinks::pool::RetryConfig;
use crate::supervision::RestartPolicy;

/// DynamoDB's hard item size limit.
pub const DYNAMODB_MAX_ITEM_BYTES: usize = 400 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub schema_registry: RegistryConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    #[serde(default)]
    pub dynamodb: DynamoDbConfig,
    /// Domain events to EventBridge; off unless the section is present.
    #[serde(default)]
    pub eventbridge: Option<EventBridgeConfig>,
    /// Dead-letter queue for records that can never succeed. Without it, such a record stops
    /// its partition (nothing is skipped).
    #[serde(default)]
    pub dlq: Option<DlqConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Two clusters (DESIGN §6). Without it, the relay consumes `kafka.bootstrap_servers` only.
    #[serde(default)]
    pub regions: Option<RegionsConfig>,
    #[serde(default)]
    pub failover: FailoverConfig,
    /// Trace export (OTLP). Off unless an endpoint is configured here or by
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// How the relay exports traces. Every field falls back to the standard `OTEL_*` variable, then
/// to its default (DESIGN §7).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP endpoint, e.g. `http://otel-collector:4317` (gRPC) or `http://collector:4318`
    /// (HTTP; `/v1/traces` is appended). Else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; without any, tracing is off.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Else `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`; default `grpc`.
    pub otlp_protocol: Option<String>,
    /// Else `OTEL_SERVICE_NAME`; default `cdc-relay`.
    pub service_name: Option<String>,
    /// `parentbased_traceidratio` (default), `traceidratio`, `parentbased_always_on`,
    /// `always_on`, `parentbased_always_off`, `always_off`. Else `OTEL_TRACES_SAMPLER`.
    pub sampler: Option<String>,
    /// The ratio of the ratio samplers, 0..=1. Else `OTEL_TRACES_SAMPLER_ARG`; default 0.01.
    pub sampler_ratio: Option<f64>,
    /// Spans waiting for export; when full, new spans are dropped and counted
    /// (`cdc_relay_spans_dropped_total`), never waited for. Default 8192.
    pub queue_size: Option<usize>,
    /// One export call's time limit. Default 10s.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionsConfig {
    pub primary: RegionConfig,
    pub secondary: RegionConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// A label, e.g. the AWS region (`us-west-2`); used in metrics and `/status`.
    pub name: String,
    pub bootstrap_servers: String,
    /// librdkafka properties for this cluster (security), applied over `kafka.properties`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A properties file for this cluster (secrets), merged over `properties` at load.
    #[serde(default)]
    pub properties_file: Option<PathBuf>,
    /// Topic names on this cluster are `topic_prefix + <source topic>` (cluster-link mirror
    /// topics carry a prefix; the primary's usually none).
    #[serde(default)]
    pub topic_prefix: String,
    /// This region's schema registry (with Schema Linking it serves the same ids). Unset keys
    /// fall back to `[schema_registry]`.
    #[serde(default)]
    pub schema_registry: RegionRegistry,
}

/// A region's schema registry: URL and credentials; timeouts, attempts and `schemas_dir` come
/// from `[schema_registry]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionRegistry {
    pub url: Option<String>,
    pub username: Option<String>,
    /// Prefer `CDC_RELAY__REGIONS__<SIDE>__SCHEMA_REGISTRY__PASSWORD` over the file.
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Switch to the secondary when the primary is down for `unhealthy_after`.
    #[default]
    Automatic,
    /// Only `POST /admin/failover` switches.
    Manual,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    pub mode: FailoverMode,
    /// How often both clusters are probed (metadata + watermarks) and the control record read.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// A probe that takes longer than this failed.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// The primary is down after its probes failed for this long.
    #[serde(with = "humantime_serde")]
    pub unhealthy_after: Duration,
    /// DynamoDB table holding the shared decision (`group` string key). Without it each pod
    /// decides alone (requires `allow_local_decision`).
    pub control_table: Option<String>,
    /// With `mode = automatic`, let a pod switch on its own when the control table is not
    /// configured or unreachable. Pods may then disagree for a while; version guards keep the
    /// data right at the cost of duplicate writes.
    pub allow_local_decision: bool,
    /// How often committed offsets are written to the control record.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Whether the link keeps offsets (Confluent Cluster Linking: yes; MirrorMaker 2: no). Only
    /// then is the checkpoint's offset valid on the other cluster; otherwise its timestamp is
    /// used (below).
    pub offsets_preserved: bool,
    /// Third start source on the target, for partitions without usable synced group offsets or
    /// checkpoint offset: `offsets_for_times(last committed record's timestamp − offset_margin)`.
    #[serde(with = "humantime_serde")]
    pub offset_margin: Duration,
    /// After an unplanned failover: `manual` (default; `POST /admin/failback`) or `automatic`
    /// (planned failback once the primary has been healthy for `failback_after`).
    pub failback: FailbackMode,
    #[serde(with = "humantime_serde")]
    pub failback_after: Duration,
    /// Planned failover/failback: how long to wait for the target to hold every committed
    /// record before switching anyway.
    #[serde(with = "humantime_serde")]
    pub planned_timeout: Duration,
    /// Environment variable holding the admin token for `POST /admin/failover|failback`.
    pub admin_token_env: String,
    /// Or a file holding it (e.g. a mounted Kubernetes secret); it wins over the variable.
    pub admin_token_file: Option<String>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            mode: FailoverMode::Automatic,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            unhealthy_after: Duration::from_secs(5),
            control_table: None,
            allow_local_decision: false,
            checkpoint_interval: Duration::from_secs(5),
            offsets_preserved: true,
            offset_margin: Duration::from_secs(60),
            failback: FailbackMode::Manual,
            failback_after: Duration::from_secs(300),
            planned_timeout: Duration::from_secs(60),
            admin_token_env: "CDC_RELAY_ADMIN_TOKEN".into(),
            admin_token_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailbackMode {
    #[default]
    Manual,
    Automatic,
}

/// Which of the two clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Primary,
    Secondary,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Secondary => "secondary",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "primary" => Some(Side::Primary),
            "secondary" => Some(Side::Secondary),
            _ => None,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Secondary,
            Side::Secondary => Side::Primary,
        }
    }
}

/// The cluster the consumer connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    pub side: Side,
    pub name: String,
    pub bootstrap_servers: String,
    /// `kafka.properties` with the region's properties applied over them.
    pub properties: BTreeMap<String, String>,
    pub topic_prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of the cluster. With `[regions]`, leave it out: the
    /// regions name their clusters.
    #[serde(default)]
    pub bootstrap_servers: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topics to subscribe to. Either this or `topic_pattern`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regex subscription (librdkafka `^`-prefixed pattern), e.g. `^qlik\..*`.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    #[serde(default = "default_reset")]
    pub auto_offset_reset: String,
    /// How often completed offsets are committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// On revoke, how long to wait for in-flight records before committing what is done.
    #[serde(default = "default_revoke_timeout", with = "humantime_serde")]
    pub revoke_drain_timeout: Duration,
    /// librdkafka properties passed through verbatim (security, timeouts, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A Java-style properties file (`key=value` lines, `#` comments) merged over `properties`
    /// when the config loads: secrets such as `sasl.password` from a mounted Kubernetes Secret.
    #[serde(default)]
    pub properties_file: Option<PathBuf>,
}

fn default_group_id() -> String {
    "cdc-relay".into()
}
fn default_reset() -> String {
    "earliest".into()
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_revoke_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL of a Confluent-compatible schema registry.
    pub url: Option<String>,
    pub username: Option<String>,
    /// Basic-auth password. Prefer `CDC_RELAY__SCHEMA_REGISTRY__PASSWORD` over the file.
    pub password: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per schema fetch for transient failures (5xx, timeouts) before the record is poison.
    pub max_attempts: u32,
    /// Air-gapped mode: a directory of `<id>.avsc` files used instead of (or before) the registry.
    pub schemas_dir: Option<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: None,
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            schemas_dir: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// AWS region for the sinks; falls back to the SDK's default chain (`AWS_REGION`, ...).
    pub region: Option<String>,
    /// Custom endpoint (moto, LocalStack, VPC endpoints). Unset in production.
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoDbConfig {
    /// Maximum concurrent DynamoDB requests (batches) per table.
    pub concurrency: usize,
    /// Items larger than this are poison (DynamoDB's limit is 400 KB).
    pub max_item_bytes: usize,
    /// How long the first write of a `transact`/`batch` batch waits for more.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Per-request timeout (the SDK's operation timeout).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The one region whose DynamoDB endpoint every pod of the group writes (state tables and
    /// the control table), before and after a Kafka failover; default `aws.region`. Required
    /// with `[regions]`: global tables evaluate a condition only in the region that receives the
    /// write, so the version guard and the epoch hold only with a single write region.
    pub write_region: Option<String>,
    /// Backoff of retryable errors. DynamoDB is required: retries never stop (`budget` unused).
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        DynamoDbConfig {
            concurrency: 64,
            max_item_bytes: DYNAMODB_MAX_ITEM_BYTES,
            linger: Duration::from_millis(5),
            request_timeout: Duration::from_secs(10),
            write_region: None,
            retry: RetryConfig {
                max: Duration::from_secs(10),
                ..RetryConfig::default()
            },
            breaker: BreakerConfig::default(),
        }
    }
}

/// How a route writes to DynamoDB (DESIGN §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// One conditional PutItem/DeleteItem per record; never regresses.
    #[default]
    Conditional,
    /// TransactWriteItems of up to 100 distinct keys, each guarded; never regresses; 2× WCU.
    Transact,
    /// BatchWriteItem of 25 unguarded writes: fastest; a replay regresses items until it catches up.
    Batch,
}

impl WriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Conditional => "conditional",
            WriteMode::Transact => "transact",
            WriteMode::Batch => "batch",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventBridgeConfig {
    /// Event bus name or ARN.
    pub bus: String,
    /// Region of the bus when it differs from `aws.region` (cross-region routing).
    pub region: Option<String>,
    /// Custom endpoint; defaults to `aws.endpoint_url`.
    pub endpoint_url: Option<String>,
    /// The events' `source`.
    pub source: String,
    /// The events' `detail-type`; `{table}` and `{op}` are replaced.
    pub detail_type: String,
    /// Required: failures hold the partition like DynamoDB's. Optional (default): after
    /// `retry.budget` attempts the record goes to the DLQ and commits proceed.
    pub required: bool,
    /// PutEvents calls in flight.
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
}

impl Default for EventBridgeConfig {
    fn default() -> Self {
        EventBridgeConfig {
            bus: "default".into(),
            region: None,
            endpoint_url: None,
            source: "cdc-relay".into(),
            detail_type: "{table}.{op}".into(),
            required: false,
            concurrency: 8,
            linger: Duration::from_millis(10),
            request_timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DlqConfig {
    /// SQS queue URL of the DLQ (or set `sqs_queue_name`).
    pub sqs_queue_url: Option<String>,
    /// SQS queue name, resolved to its URL at start-up (GetQueueUrl).
    pub sqs_queue_name: Option<String>,
    /// Optional Kafka DLQ topic (the seed's `events.validation_failed`): the original record,
    /// headers plus `dlq.*` headers, written by an idempotent producer with acks=all.
    pub kafka_topic: Option<String>,
    /// Cluster of the Kafka DLQ topic; default: `kafka.bootstrap_servers`.
    pub kafka_bootstrap_servers: Option<String>,
    /// librdkafka properties of the DLQ producer (security); default: `kafka.properties`.
    pub kafka_properties: Option<BTreeMap<String, String>>,
    /// SQS message size limit; larger record bytes are left out of the body (the record stays
    /// in Kafka and `dlq replay` fetches it from there).
    pub max_message_bytes: usize,
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The DLQ is required: retries never stop (`budget` unused) and the partition holds.
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
}

impl Default for DlqConfig {
    fn default() -> Self {
        DlqConfig {
            sqs_queue_url: None,
            sqs_queue_name: None,
            kafka_topic: None,
            kafka_bootstrap_servers: None,
            kafka_properties: None,
            max_message_bytes: 256 * 1024,
            concurrency: 4,
            linger: Duration::from_millis(20),
            request_timeout: Duration::from_secs(10),
            retry: RetryConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
                ..RetryConfig::default()
            },
            breaker: BreakerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeKind {
    Qlik,
    Debezium,
    Simple,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// Confluent wire format + Avro (the default).
    Avro,
    /// Plain JSON (Qlik JSON with `atMSG`, Debezium JSON with or without `schema`/`payload`).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Keep a tombstone item (`_deleted = true`, `_seq`) so older writes cannot resurrect it.
    Tombstone,
    /// Delete the item. A late, older insert can then resurrect it.
    Hard,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Source topic (exact name).
    pub topic: String,
    #[serde(default = "default_envelope")]
    pub envelope: EnvelopeKind,
    #[serde(default = "default_format")]
    pub format: ValueFormat,
    /// Target DynamoDB table (the route's state output; the DynamoDB keys below apply to it).
    /// Optional when `outputs` names other outputs.
    #[serde(default)]
    pub table: Option<String>,
    /// Key columns; their values joined by `#` form the partition key attribute.
    pub key: Vec<String>,
    /// Name of the table's partition-key attribute (type S).
    #[serde(default = "default_pk")]
    pub pk_attribute: String,
    /// A column whose value is the version instead of the envelope's sequence (digits only).
    #[serde(default)]
    pub version_field: Option<String>,
    #[serde(default = "default_delete")]
    pub delete: DeleteMode,
    /// TTL for tombstones, written to `tombstone_ttl_attribute` as epoch seconds.
    #[serde(default, with = "humantime_serde")]
    pub tombstone_ttl: Option<Duration>,
    #[serde(default = "default_ttl_attr")]
    pub tombstone_ttl_attribute: String,
    /// How Avro date/time/timestamp logical types are stored: `epoch` (N) or `iso` (S).
    #[serde(default)]
    pub temporal: crate::decode::value::TemporalMode,
    /// `conditional` (default), `transact` or `batch` (DESIGN §3.3).
    #[serde(default)]
    pub write_mode: WriteMode,
    /// Publish a domain event per record to EventBridge (default: when `[eventbridge]` is set).
    #[serde(default)]
    pub events: Option<bool>,
    /// Override `eventbridge.required` for this route.
    #[serde(default)]
    pub events_required: Option<bool>,
    /// More outputs, after the table and the events, in order (`[[routes.outputs]]`, each with
    /// a `type` from the output registry, e.g. `blackhole`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputSpec>,
}

/// One `[[routes.outputs]]` entry: its `type`, whether it must acknowledge before a commit, and
/// the type's own settings. Config only parses them: each type checks its own settings
/// (`sinks::registry::problems`, called by `check-config` and when the relay starts), so this
/// module does not depend on the output types.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OutputSpec {
    #[serde(rename = "type")]
    pub kind: String,
    /// Required outputs block the commit until they acknowledge (default: the type's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(flatten)]
    pub settings: toml::Table,
}

fn default_envelope() -> EnvelopeKind {
    EnvelopeKind::Auto
}
fn default_format() -> ValueFormat {
    ValueFormat::Avro
}
fn default_pk() -> String {
    "pk".into()
}
fn default_delete() -> DeleteMode {
    DeleteMode::Tombstone
}
fn default_ttl_attr() -> String {
    "_ttl".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address of /health, /ready, /metrics, /status. Port 0 picks a free port.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "0.0.0.0:8080".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// On SIGTERM: drain, commit and exit within this time.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Records dispatched to one partition and not yet complete before it is paused.
    pub max_in_flight_per_partition: usize,
    /// Record bytes in flight in one partition before it is paused.
    pub max_in_flight_bytes_per_partition: usize,
    /// Record bytes in flight across all partitions before every partition is paused. It also
    /// caps librdkafka's prefetch queue (`queued.max.messages.kbytes`, a quarter of it).
    pub memory_budget_bytes: usize,
    /// A paused partition resumes when its (and the global) in-flight figures fall below this
    /// fraction of their bounds (hysteresis).
    pub resume_below: f64,
    /// Restart policy of every supervisor.
    pub supervision: RestartPolicy,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shutdown_timeout: Duration::from_secs(30),
            max_in_flight_per_partition: 1000,
            max_in_flight_bytes_per_partition: 16 * 1024 * 1024,
            memory_budget_bytes: 256 * 1024 * 1024,
            resume_below: 0.8,
            supervision: RestartPolicy::default(),
        }
    }
}

/// One validation problem: the dotted key and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.why)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { path, source } => vec![Problem {
                key: path.clone(),
                why: source.to_string(),
            }],
            ConfigError::Invalid(p) => p.clone(),
        }
    }
}

/// A Java-style properties file: `key=value` (or `key: value`) lines; blank lines and lines
/// starting with `#` or `!` are skipped. Values are not echoed in errors (they hold secrets).
fn read_properties(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            return Err(format!(
                "{} line {}: expected key=value",
                path.display(),
                n + 1
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{} line {}: empty key", path.display(), n + 1));
        }
        out.insert(k.to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Whether `r` has the shape of an AWS region name: `us-west-2`, `eu-central-1`,
/// `us-gov-west-1`, `ap-southeast-5`.
fn is_aws_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
}

/// The environment-variable prefix of overrides: `CDC_RELAY__KAFKA__GROUP_ID=x` sets `kafka.group_id`.
pub const ENV_PREFIX: &str = "CDC_RELAY__";

impl Config {
    /// Loads `path`, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_with_env(&text, Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// Parses TOML text without environment overrides (tests, embedded defaults).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_toml_with_env(text: &str, env: Env) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::from(Toml::string(text)).merge(env))
    }

    fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let mut cfg: Config = fig.extract().map_err(|e| {
            ConfigError::Invalid(
                e.into_iter()
                    .map(|e| Problem {
                        key: if e.path.is_empty() {
                            "(root)".into()
                        } else {
                            e.path.join(".")
                        },
                        why: e.kind.to_string(),
                    })
                    .collect(),
            )
        })?;
        let mut problems = cfg.merge_properties_files();
        problems.extend(cfg.validate());
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Merges each `properties_file` over its `properties` (the file wins); a file that cannot
    /// be read or parsed is a problem naming its key.
    fn merge_properties_files(&mut self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut merge = |key: &str, file: &Option<PathBuf>, into: &mut BTreeMap<String, String>| {
            let Some(path) = file else { return };
            match read_properties(path) {
                Ok(props) => into.extend(props),
                Err(why) => problems.push(Problem {
                    key: key.into(),
                    why,
                }),
            }
        };
        merge(
            "kafka.properties_file",
            &self.kafka.properties_file,
            &mut self.kafka.properties,
        );
        if let Some(r) = &mut self.regions {
            for (side, rc) in [("primary", &mut r.primary), ("secondary", &mut r.secondary)] {
                merge(
                    &format!("regions.{side}.properties_file"),
                    &rc.properties_file,
                    &mut rc.properties,
                );
            }
        }
        problems
    }

    /// Every semantic problem, each naming its key.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, why: &str| {
            p.push(Problem {
                key: key.into(),
                why: why.into(),
            })
        };
        let k = &self.kafka;
        let mut check_servers = |key: &str, list: &str| {
            if list.trim().is_empty() {
                bad(key, "must list at least one host:port");
            }
            for (i, b) in list.split(',').enumerate() {
                let b = b.trim();
                if !b.is_empty()
                    && b.rsplit_once(':')
                        .and_then(|(_, port)| port.parse::<u16>().ok())
                        .is_none()
                {
                    bad(key, &format!("entry {i} ({b:?}) is not host:port"));
                }
            }
        };
        match &self.regions {
            None => check_servers("kafka.bootstrap_servers", &k.bootstrap_servers),
            Some(r) => {
                check_servers(
                    "regions.primary.bootstrap_servers",
                    &r.primary.bootstrap_servers,
                );
                check_servers(
                    "regions.secondary.bootstrap_servers",
                    &r.secondary.bootstrap_servers,
                );
            }
        }
        if let Some(r) = &self.regions {
            if !k.bootstrap_servers.trim().is_empty() {
                bad(
                    "kafka.bootstrap_servers",
                    "leave it out with [regions]: regions.primary and regions.secondary name the clusters",
                );
            }
            if k.topic_pattern.is_some() {
                bad(
                    "kafka.topic_pattern",
                    "with [regions], list `topics` (mirror topic names are derived from them)",
                );
            }
            if r.primary.name.trim().is_empty() || r.primary.name == r.secondary.name {
                bad(
                    "regions.primary.name",
                    "both regions need distinct, non-empty names",
                );
            }
            for (side, rc) in [("primary", &r.primary), ("secondary", &r.secondary)] {
                if let Some(url) = &rc.schema_registry.url
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    bad(
                        &format!("regions.{side}.schema_registry.url"),
                        "must start with http:// or https://",
                    );
                }
                if rc.schema_registry.password.is_some()
                    && rc.schema_registry.username.is_none()
                    && self.schema_registry.username.is_none()
                {
                    bad(
                        &format!("regions.{side}.schema_registry.username"),
                        "a password needs a username",
                    );
                }
                for key in rc.properties.keys() {
                    if MANAGED_PROPERTIES.contains(&key.as_str()) {
                        bad(
                            &format!("regions.{side}.properties.{key}"),
                            "is managed by cdc-relay; remove it",
                        );
                    }
                }
            }
        }
        let f = &self.failover;
        if f.probe_interval.is_zero() || f.probe_timeout.is_zero() {
            bad(
                "failover.probe_interval",
                "probe_interval and probe_timeout must be greater than 0",
            );
        }
        if f.failback_after < f.probe_interval {
            bad(
                "failover.failback_after",
                "must be at least failover.probe_interval",
            );
        }
        if f.unhealthy_after < f.probe_interval {
            bad(
                "failover.unhealthy_after",
                "must be at least failover.probe_interval",
            );
        }
        if self.regions.is_some()
            && f.mode == FailoverMode::Automatic
            && f.control_table.is_none()
            && !f.allow_local_decision
        {
            bad(
                "failover.control_table",
                "automatic failover needs a control table (the shared decision), or allow_local_decision = true",
            );
        }
        // Global tables (README "Global tables and the version guard").
        let d = &self.dynamodb;
        if let Some(r) = &d.write_region
            && !is_aws_region(r)
        {
            bad(
                "dynamodb.write_region",
                &format!("{r:?} is not an AWS region name (like us-west-2)"),
            );
        }
        let writes_dynamodb =
            self.routes.iter().any(|r| r.table.is_some()) || f.control_table.is_some();
        if self.regions.is_some() && writes_dynamodb && d.write_region.is_none() {
            bad(
                "dynamodb.write_region",
                "a two-region relay must name the one region whose DynamoDB every pod of the group writes, the same in both regions' deployments: a global table evaluates a condition only in the region that receives the write and replicates last-writer-wins, so the version guard and the failover epoch hold only with one write region",
            );
        }
        if k.group_id.trim().is_empty() {
            bad("kafka.group_id", "must not be empty");
        }
        match (&k.topics.is_empty(), &k.topic_pattern) {
            (true, None) => bad("kafka.topics", "set `topics` or `topic_pattern`"),
            (false, Some(_)) => bad(
                "kafka.topic_pattern",
                "set either `topics` or `topic_pattern`, not both",
            ),
            _ => {}
        }
        if let Some(pat) = &k.topic_pattern
            && !pat.starts_with('^')
        {
            bad(
                "kafka.topic_pattern",
                "a pattern must start with '^' (librdkafka treats other strings as topic names)",
            );
        }
        if !["earliest", "latest"].contains(&k.auto_offset_reset.as_str()) {
            bad(
                "kafka.auto_offset_reset",
                "must be \"earliest\" or \"latest\"",
            );
        }
        if k.commit_interval.is_zero() {
            bad("kafka.commit_interval", "must be greater than 0");
        }
        for key in k.properties.keys() {
            if MANAGED_PROPERTIES.contains(&key.as_str()) {
                bad(
                    &format!("kafka.properties.{key}"),
                    "is managed by cdc-relay (offsets are committed only after sinks acknowledge); remove it",
                );
            }
        }
        if let Some(url) = &self.schema_registry.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bad("schema_registry.url", "must start with http:// or https://");
        }
        if self.schema_registry.password.is_some() && self.schema_registry.username.is_none() {
            bad(
                "schema_registry.username",
                "required when a password is set",
            );
        }
        if self.schema_registry.max_attempts == 0 {
            bad("schema_registry.max_attempts", "must be at least 1");
        }
        let needs_registry = self.routes.iter().any(|r| r.format == ValueFormat::Avro);
        let sides: &[Side] = if self.regions.is_some() {
            &[Side::Primary, Side::Secondary]
        } else {
            &[Side::Primary]
        };
        for side in sides {
            let r = self.registry(*side);
            if needs_registry && r.url.is_none() && r.schemas_dir.is_none() {
                let key = if self.regions.is_some() {
                    format!("regions.{}.schema_registry.url", side.as_str())
                } else {
                    "schema_registry.url".to_string()
                };
                bad(
                    &key,
                    "Avro routes need a registry url (here or in [schema_registry]) or a schemas_dir",
                );
            }
        }
        if let Some(url) = &self.aws.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bad("aws.endpoint_url", "must start with http:// or https://");
        }
        if self.dynamodb.concurrency == 0 {
            bad("dynamodb.concurrency", "must be at least 1");
        }
        if self.dynamodb.max_item_bytes == 0
            || self.dynamodb.max_item_bytes > DYNAMODB_MAX_ITEM_BYTES
        {
            bad(
                "dynamodb.max_item_bytes",
                "must be between 1 and 409600 (DynamoDB's item limit)",
            );
        }
        let mut sink_checks = |section: &str, retry: &RetryConfig, breaker: &BreakerConfig| {
            for (f, why) in retry.problems() {
                bad(&format!("{section}.retry.{f}"), why);
            }
            for (f, why) in breaker.problems() {
                bad(&format!("{section}.breaker.{f}"), why);
            }
        };
        sink_checks("dynamodb", &self.dynamodb.retry, &self.dynamodb.breaker);
        if let Some(eb) = &self.eventbridge {
            sink_checks("eventbridge", &eb.retry, &eb.breaker);
        }
        if let Some(d) = &self.dlq {
            sink_checks("dlq", &d.retry, &d.breaker);
        }
        if let Some(eb) = &self.eventbridge {
            if eb.bus.trim().is_empty() {
                bad("eventbridge.bus", "must not be empty");
            }
            if eb.source.trim().is_empty() {
                bad("eventbridge.source", "must not be empty");
            }
            if eb.detail_type.trim().is_empty() {
                bad("eventbridge.detail_type", "must not be empty");
            }
            // PutEvents' entry rules (moto does not enforce them; EventBridge rejects the entry).
            if eb.source.chars().count() > 256 {
                bad(
                    "eventbridge.source",
                    "must be at most 256 characters (PutEvents)",
                );
            }
            if eb.source.starts_with("aws.") {
                bad(
                    "eventbridge.source",
                    "must not start with \"aws.\" (reserved by AWS)",
                );
            }
            let longest_op = ["INSERT", "UPDATE", "DELETE", "REFRESH"];
            for r in self.routes.iter().filter(|r| self.events_for(r).is_some()) {
                for op in longest_op {
                    let dt = eb
                        .detail_type
                        .replace("{table}", r.table.as_deref().unwrap_or_default())
                        .replace("{op}", op);
                    if dt.chars().count() > 128 {
                        bad(
                            "eventbridge.detail_type",
                            &format!(
                                "{dt:?} (table {}) is over PutEvents' 128 characters",
                                r.table.as_deref().unwrap_or_default()
                            ),
                        );
                        break;
                    }
                }
            }
            if eb.concurrency == 0 {
                bad("eventbridge.concurrency", "must be at least 1");
            }
            if let Some(url) = &eb.endpoint_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bad(
                    "eventbridge.endpoint_url",
                    "must start with http:// or https://",
                );
            }
        }
        if let Some(d) = &self.dlq {
            match (&d.sqs_queue_url, &d.sqs_queue_name) {
                (None, None) => bad("dlq.sqs_queue_url", "set sqs_queue_url or sqs_queue_name"),
                (Some(_), Some(_)) => bad(
                    "dlq.sqs_queue_name",
                    "set either sqs_queue_url or sqs_queue_name, not both",
                ),
                _ => {}
            }
            if d.kafka_topic.is_some()
                && d.kafka_bootstrap_servers.is_none()
                && self.regions.is_some()
            {
                bad(
                    "dlq.kafka_bootstrap_servers",
                    "with [regions], name the cluster of the Kafka DLQ topic explicitly (a DLQ on the primary would hold every partition while the primary is down)",
                );
            }
            if d.kafka_topic
                .as_deref()
                .is_some_and(|t| t.trim().is_empty())
            {
                bad("dlq.kafka_topic", "must not be empty when set");
            }
            if !(1024..=1024 * 1024).contains(&d.max_message_bytes) {
                bad(
                    "dlq.max_message_bytes",
                    "must be between 1024 and 1048576 (SQS's limit)",
                );
            }
            if d.concurrency == 0 {
                bad("dlq.concurrency", "must be at least 1");
            }
        }
        if self.routes.is_empty() {
            bad("routes", "at least one [[routes]] entry is required");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = |f: &str| format!("routes[{i}].{f}");
            if r.topic.trim().is_empty() {
                bad(&at("topic"), "must not be empty");
            } else if !seen.insert(r.topic.clone()) {
                bad(
                    &at("topic"),
                    &format!("topic {:?} has more than one route", r.topic),
                );
            }
            if r.table.as_deref().is_some_and(|t| t.trim().is_empty()) {
                bad(&at("table"), "must not be empty");
            }
            if r.table.is_none() && r.outputs.is_empty() {
                bad(
                    &at("table"),
                    "a route needs an output: a DynamoDB table, or [[routes.outputs]] entries",
                );
            }
            if r.outputs.iter().any(|o| o.kind.trim().is_empty()) {
                bad(&at("outputs"), "every entry needs a type");
            }
            if r.key.is_empty() {
                bad(&at("key"), "list at least one key column");
            }
            if r.key.iter().any(|c| c.trim().is_empty()) {
                bad(&at("key"), "key column names must not be empty");
            }
            if r.pk_attribute.trim().is_empty() || r.pk_attribute.starts_with('_') {
                bad(
                    &at("pk_attribute"),
                    "must be a non-empty name not starting with '_' (reserved for relay metadata)",
                );
            }
            if let Some(other) = self
                .routes
                .iter()
                .find(|o| r.table.is_some() && o.table == r.table && o.write_mode != r.write_mode)
            {
                bad(
                    &at("write_mode"),
                    &format!(
                        "table {:?} is also written by topic {:?} in mode {}; one table has one mode",
                        r.table.as_deref().unwrap_or_default(),
                        other.topic,
                        other.write_mode.as_str()
                    ),
                );
            }
            if (r.events == Some(true) || r.events_required.is_some()) && self.eventbridge.is_none()
            {
                bad(&at("events"), "needs an [eventbridge] section");
            }
            if r.tombstone_ttl.is_some() && r.delete == DeleteMode::Hard {
                bad(
                    &at("tombstone_ttl"),
                    "only applies to delete = \"tombstone\"",
                );
            }
        }
        for t in &k.topics {
            if !self.routes.iter().any(|r| &r.topic == t) {
                bad(
                    "kafka.topics",
                    &format!("topic {t:?} has no [[routes]] entry"),
                );
            }
        }
        if self.admin.listen.parse::<SocketAddr>().is_err() {
            bad("admin.listen", "must be ip:port, e.g. 0.0.0.0:8080");
        }
        if self.runtime.max_in_flight_per_partition == 0 {
            bad("runtime.max_in_flight_per_partition", "must be at least 1");
        }
        if self.runtime.max_in_flight_bytes_per_partition < 1024 {
            bad(
                "runtime.max_in_flight_bytes_per_partition",
                "must be at least 1024",
            );
        }
        if self.runtime.memory_budget_bytes < self.runtime.max_in_flight_bytes_per_partition {
            bad(
                "runtime.memory_budget_bytes",
                "must be at least runtime.max_in_flight_bytes_per_partition",
            );
        }
        if !(self.runtime.resume_below > 0.0 && self.runtime.resume_below < 1.0) {
            bad("runtime.resume_below", "must be in (0, 1)");
        }
        if self.runtime.supervision.max_restarts == 0 {
            bad("runtime.supervision.max_restarts", "must be at least 1");
        }
        p
    }

    /// The cluster of `side`: a region, or (without `[regions]`) the one `kafka` cluster.
    pub fn cluster(&self, side: Side) -> ClusterConfig {
        let mut properties = self.kafka.properties.clone();
        match (&self.regions, side) {
            (None, _) => ClusterConfig {
                side: Side::Primary,
                name: "primary".into(),
                bootstrap_servers: self.kafka.bootstrap_servers.clone(),
                properties,
                topic_prefix: String::new(),
            },
            (Some(r), side) => {
                let rc = match side {
                    Side::Primary => &r.primary,
                    Side::Secondary => &r.secondary,
                };
                properties.extend(rc.properties.clone());
                ClusterConfig {
                    side,
                    name: rc.name.clone(),
                    bootstrap_servers: rc.bootstrap_servers.clone(),
                    properties,
                    topic_prefix: rc.topic_prefix.clone(),
                }
            }
        }
    }

    /// The schema registry of `side`: `[schema_registry]` with the region's URL and credentials
    /// over it.
    pub fn registry(&self, side: Side) -> RegistryConfig {
        let mut r = self.schema_registry.clone();
        if let Some(regions) = &self.regions {
            let rr = match side {
                Side::Primary => &regions.primary.schema_registry,
                Side::Secondary => &regions.secondary.schema_registry,
            };
            if rr.url.is_some() {
                r.url = rr.url.clone();
            }
            if rr.username.is_some() {
                r.username = rr.username.clone();
                r.password = rr.password.clone();
            } else if rr.password.is_some() {
                r.password = rr.password.clone();
            }
        }
        r
    }

    /// Whether `side` has a registry of its own (so decoding must follow the active region).
    pub fn has_regional_registry(&self) -> bool {
        self.regions.as_ref().is_some_and(|r| {
            r.primary.schema_registry.url.is_some() || r.secondary.schema_registry.url.is_some()
        })
    }

    pub fn route_for(&self, topic: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.topic == topic)
    }

    /// Whether `route` publishes events, and whether they are required.
    pub fn events_for(&self, route: &RouteConfig) -> Option<bool> {
        let eb = self.eventbridge.as_ref()?;
        route
            .events
            .unwrap_or(true)
            .then(|| route.events_required.unwrap_or(eb.required))
    }
}

/// librdkafka properties cdc-relay sets itself; overriding them would break the delivery contract.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "partition.assignment.strategy",
];

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [kafka]
        bootstrap_servers = "127.0.0.1:9092"
        topics = ["qlik.customers"]
        [schema_registry]
        url = "http://127.0.0.1:8081"
        [[routes]]
        topic = "qlik.customers"
        envelope = "qlik"
        table = "customers"
        key = ["customer_id"]
    "#;

    #[test]
    fn good_config_loads_with_defaults() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.kafka.group_id, "cdc-relay");
        assert_eq!(c.routes[0].format, ValueFormat::Avro);
        assert_eq!(c.routes[0].delete, DeleteMode::Tombstone);
        assert_eq!(c.dynamodb.max_item_bytes, DYNAMODB_MAX_ITEM_BYTES);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let bad = r#"
            [kafka]
            bootstrap_servers = "nohostport"
            auto_offset_reset = "sometimes"
            topics = ["a"]
            [kafka.properties]
            "enable.auto.commit" = "true"
            [dynamodb]
            concurrency = 0
            [[routes]]
            topic = "b"
            table = ""
            key = []
        "#;
        let err = Config::from_toml(bad).unwrap_err();
        let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
        for k in [
            "kafka.bootstrap_servers",
            "kafka.auto_offset_reset",
            "kafka.properties.enable.auto.commit",
            "dynamodb.concurrency",
            "routes[0].table",
            "routes[0].key",
            "kafka.topics",
            "schema_registry.url",
        ] {
            assert!(
                keys.iter().any(|x| x == k),
                "missing problem for {k}: {keys:?}"
            );
        }
    }

    #[test]
    fn sink_sections_are_validated_with_their_keys() {
        let bad = format!(
            r#"{GOOD}
            events = true
            [[routes]]
            topic = "qlik.other"
            table = "customers"
            key = ["id"]
            write_mode = "batch"
            [dynamodb.breaker]
            failures = 0
            error_ratio = 2.0
            [dynamodb.retry]
            initial = "0s"
            [dlq]
            sqs_queue_url = "https://sqs.example/1/q"
            sqs_queue_name = "q"
            max_message_bytes = 10
            [dlq.retry]
            multiplier = 0.5
            [runtime]
            resume_below = 1.5
            memory_budget_bytes = 1024
            "#
        );
        let err = Config::from_toml(&bad).unwrap_err();
        let keys: Vec<String> = err.problems().into_iter().map(|p| p.key).collect();
        for k in [
            "routes[0].events",
            "routes[1].write_mode",
            "dynamodb.breaker.failures",
            "dynamodb.breaker.error_ratio",
            "dynamodb.retry.initial",
            "dlq.sqs_queue_name",
            "dlq.max_message_bytes",
            "dlq.retry.multiplier",
            "runtime.resume_below",
            "runtime.memory_budget_bytes",
        ] {
            assert!(
                keys.iter().any(|x| x == k),
                "missing problem for {k}: {keys:?}"
            );
        }
        let no_queue = format!("{GOOD}\n[dlq]\nkafka_topic = \"dlq\"\n");
        let err = Config::from_toml(&no_queue).unwrap_err();
        assert!(err.to_string().contains("dlq.sqs_queue_url"), "{err}");
    }

    #[test]
    fn eventbridge_entry_limits_are_checked_before_anything_is_sent() {
        let long_table = "t".repeat(130);
        let bad = format!(
            "{}\n[eventbridge]\nbus = \"b\"\nsource = \"aws.cdc\"\n",
            GOOD.replace(
                "table = \"customers\"",
                &format!("table = \"{long_table}\"")
            )
        );
        let err = Config::from_toml(&bad).unwrap_err();
        let problems = err.problems();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.why))
            .collect();
        assert!(
            text.iter()
                .any(|p| p.starts_with("eventbridge.detail_type") && p.contains("128")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|p| p.starts_with("eventbridge.source") && p.contains("aws.")),
            "{text:?}"
        );
        let long_source = format!(
            "{GOOD}\n[eventbridge]\nbus = \"b\"\nsource = \"{}\"\n",
            "s".repeat(257)
        );
        let err = Config::from_toml(&long_source).unwrap_err();
        assert!(err.problems().iter().any(|p| p.key == "eventbridge.source"));
    }

    #[test]
    fn events_follow_the_section_and_route_overrides() {
        let c = Config::from_toml(&format!("{GOOD}\n[eventbridge]\nbus = \"b\"\n")).unwrap();
        assert_eq!(
            c.events_for(&c.routes[0]),
            Some(false),
            "optional by default"
        );
        let c = Config::from_toml(&format!(
            "{GOOD}\nevents_required = true\n[eventbridge]\nbus = \"b\"\n"
        ))
        .unwrap();
        assert_eq!(c.events_for(&c.routes[0]), Some(true));
        let c = Config::from_toml(&format!("{GOOD}\nevents = false\n[eventbridge]\n")).unwrap();
        assert_eq!(c.events_for(&c.routes[0]), None);
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.events_for(&c.routes[0]), None, "no section, no events");
    }

    /// Two regions writing DynamoDB must name one write region; it must look like a region.
    #[test]
    fn global_tables_need_one_write_region() {
        let cfg = |dynamodb: &str| {
            format!(
                r#"
            [kafka]
            topics = ["t"]
            [schema_registry]
            url = "http://127.0.0.1:8081"
            [[routes]]
            topic = "t"
            table = "customers"
            key = ["id"]
            [regions.primary]
            name = "us-west-2"
            bootstrap_servers = "w:9092"
            [regions.secondary]
            name = "us-east-1"
            bootstrap_servers = "e:9092"
            [failover]
            control_table = "ctl"
            [dynamodb]
            {dynamodb}
            "#
            )
        };
        let err = Config::from_toml(&cfg("")).unwrap_err().to_string();
        assert!(
            err.contains("dynamodb.write_region") && err.contains("one region"),
            "{err}"
        );
        let c = Config::from_toml(&cfg("write_region = \"us-east-1\"")).unwrap();
        assert_eq!(c.dynamodb.write_region.as_deref(), Some("us-east-1"));
        for bad in ["west", "US-WEST-2", "us-west", "us-west-x", "us--2"] {
            let err = Config::from_toml(&cfg(&format!("write_region = \"{bad}\"")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not an AWS region name"), "{bad}: {err}");
        }
        assert!(is_aws_region("us-gov-west-1") && is_aws_region("ap-southeast-5"));
        // One region: no rule (aws.region is the write region).
        let one = "[kafka]\nbootstrap_servers = \"b:9092\"\ntopics = [\"t\"]\n[schema_registry]\nurl = \"http://r:8081\"\n[[routes]]\ntopic = \"t\"\ntable = \"x\"\nkey = [\"id\"]\n";
        assert!(Config::from_toml(one).is_ok());
    }

    /// A properties file (a mounted Secret) is merged over `properties`; a missing or malformed
    /// file is a problem naming its key, without echoing values.
    #[test]
    fn properties_files_merge_over_properties() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "# secrets\nsasl.password = s3cret\n\n! also a comment\nsasl.username: relay\n",
        )
        .unwrap();
        let cfg = |path: &std::path::Path| {
            format!(
                "[kafka]\nbootstrap_servers = \"b:9092\"\ntopics = [\"t\"]\nproperties_file = \"{}\"\n[kafka.properties]\n\"sasl.username\" = \"other\"\n\"security.protocol\" = \"SASL_SSL\"\n[schema_registry]\nurl = \"http://r:8081\"\n[[routes]]\ntopic = \"t\"\ntable = \"x\"\nkey = [\"id\"]\n",
                path.display()
            )
        };
        let c = Config::from_toml(&cfg(&file)).unwrap();
        let p = c.cluster(Side::Primary).properties;
        assert_eq!(p["sasl.password"], "s3cret");
        assert_eq!(p["sasl.username"], "relay", "the file wins");
        assert_eq!(p["security.protocol"], "SASL_SSL");

        let err = Config::from_toml(&cfg(&dir.path().join("missing")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kafka.properties_file") && err.contains("cannot read"),
            "{err}"
        );
        std::fs::write(&file, "sasl.password s3cret\n").unwrap();
        let err = Config::from_toml(&cfg(&file)).unwrap_err().to_string();
        assert!(
            err.contains("line 1: expected key=value") && !err.contains("s3cret"),
            "{err}"
        );
        // A managed key from the file is refused like one in the TOML.
        std::fs::write(&file, "enable.auto.commit=true\n").unwrap();
        let err = Config::from_toml(&cfg(&file)).unwrap_err().to_string();
        assert!(err.contains("enable.auto.commit"), "{err}");
    }

    #[test]
    fn regions_are_validated_and_resolve_to_clusters() {
        let two = |extra: &str| {
            format!(
                r#"
            [kafka]
            {extra}
            topics = ["qlik.customers"]
            [kafka.properties]
            "security.protocol" = "SSL"
            [schema_registry]
            url = "http://127.0.0.1:8081"
            [[routes]]
            topic = "qlik.customers"
            table = "customers"
            key = ["id"]
            [regions.primary]
            name = "us-west-2"
            bootstrap_servers = "w:9092"
            [regions.secondary]
            name = "us-east-1"
            bootstrap_servers = "e:9092"
            topic_prefix = "west."
            [regions.secondary.properties]
            "ssl.ca.location" = "/east.pem"
            [failover]
            control_table = "ctl"
            [dynamodb]
            write_region = "us-west-2"
            "#
            )
        };
        let c = Config::from_toml(&two("")).unwrap();
        let e = c.cluster(Side::Secondary);
        assert_eq!(
            (
                e.name.as_str(),
                e.bootstrap_servers.as_str(),
                e.topic_prefix.as_str()
            ),
            ("us-east-1", "e:9092", "west.")
        );
        assert_eq!(
            e.properties["security.protocol"], "SSL",
            "kafka.properties apply"
        );
        assert_eq!(e.properties["ssl.ca.location"], "/east.pem");
        assert_eq!(c.cluster(Side::Primary).topic_prefix, "");
        let err = Config::from_toml(&two("bootstrap_servers = \"x:1\"")).unwrap_err();
        assert!(err.to_string().contains("kafka.bootstrap_servers"), "{err}");
        let err = Config::from_toml(&two("").replace("control_table = \"ctl\"", "")).unwrap_err();
        assert!(err.to_string().contains("failover.control_table"), "{err}");
        let manual = two("").replace("control_table = \"ctl\"", "mode = \"manual\"");
        assert!(Config::from_toml(&manual).is_ok());
        let err = Config::from_toml(&two("").replace("us-east-1", "us-west-2")).unwrap_err();
        assert!(err.to_string().contains("regions.primary.name"), "{err}");
        let kafka_dlq = format!(
            "{}\n[dlq]\nsqs_queue_name = \"q\"\nkafka_topic = \"dlq\"\n",
            two("")
        );
        let err = Config::from_toml(&kafka_dlq).unwrap_err();
        assert!(
            err.to_string().contains("dlq.kafka_bootstrap_servers"),
            "{err}"
        );

        // A registry per region: URL and credentials per region, the rest from [schema_registry].
        let regional = two("").replace(
            "[failover]",
            "[regions.secondary.schema_registry]\nurl = \"https://east:8081\"\nusername = \"e\"\npassword = \"p\"\n[failover]",
        );
        let c = Config::from_toml(&regional).unwrap();
        let (w, e) = (c.registry(Side::Primary), c.registry(Side::Secondary));
        assert_eq!(w.url.as_deref(), Some("http://127.0.0.1:8081"));
        assert_eq!(e.url.as_deref(), Some("https://east:8081"));
        assert_eq!(
            (e.username.as_deref(), e.password.as_deref()),
            (Some("e"), Some("p"))
        );
        assert_eq!(e.timeout, w.timeout, "inherited");
        assert!(c.has_regional_registry());
        let err = Config::from_toml(&regional.replace("https://east", "east")).unwrap_err();
        assert!(
            err.to_string()
                .contains("regions.secondary.schema_registry.url"),
            "{err}"
        );
        // Without a shared URL, each region with Avro routes needs one.
        let err = Config::from_toml(&regional.replace("url = \"http://127.0.0.1:8081\"", ""))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("regions.primary.schema_registry.url"),
            "{err}"
        );
        assert!(
            !err.to_string()
                .contains("regions.secondary.schema_registry.url"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        let err = Config::from_toml(&GOOD.replace("envelope = \"qlik\"", "envelope = \"oracle\""))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("envelope"), "{msg}");
        let err =
            Config::from_toml(&format!("{GOOD}\n[admin]\nlisten = \"x\"\ntypo = 1\n")).unwrap_err();
        assert!(err.to_string().contains("typo"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
    fn env_overrides_apply() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CDC_RELAY__KAFKA__GROUP_ID", "from-env");
            jail.set_env("CDC_RELAY__DYNAMODB__CONCURRENCY", "7");
            let c =
                Config::from_toml_with_env(GOOD, Env::prefixed(ENV_PREFIX).split("__")).unwrap();
            assert_eq!(c.kafka.group_id, "from-env");
            assert_eq!(c.dynamodb.concurrency, 7);
            Ok(())
        });
    }
}
