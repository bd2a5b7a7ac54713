//! The `blackhole` output: acknowledges every request without writing it, after an optional
//! `ack_after` delay per batch (like Vector's blackhole sink). For measuring the relay's own cost
//! and for dry runs of a pipeline; a user configures it like any output:
//!
//! ```toml
//! [[routes.outputs]]
//! type = "blackhole"
//! ack_after = "2ms"    # per batch; default 0
//! batch_size = 500     # requests per batch; default 500
//! concurrency = 8      # batches in flight; default 8
//! ```
//!
//! It has the `State` role (a stand-in for a state store: versions of one key may be coalesced).
//! It must not write anywhere.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::output::{Output, OutputType, PooledOutput, Role};
use super::pool::PoolHandle;
use super::wiring::Wiring;
use super::{BatchLimits, Sink, SinkRequest, SinkResult};
use crate::config::{OutputSpec, RouteConfig};

pub const TYPE: OutputType = OutputType {
    name: "blackhole",
    validate,
    build,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default, with = "humantime_serde")]
    ack_after: Option<Duration>,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    /// Distinguishes several blackholes in metrics (default: the route's topic).
    #[serde(default)]
    name: Option<String>,
}

fn default_batch() -> usize {
    500
}

fn default_concurrency() -> usize {
    8
}

fn settings(spec: &OutputSpec) -> Result<Settings, String> {
    Settings::deserialize(toml::Value::Table(spec.settings.clone())).map_err(|e| e.to_string())
}

fn validate(spec: &OutputSpec) -> Vec<(String, String)> {
    match settings(spec) {
        Err(e) => vec![(String::new(), e)],
        Ok(s) => {
            let mut p = Vec::new();
            if s.batch_size == 0 {
                p.push(("batch_size".into(), "must be at least 1".into()));
            }
            if s.concurrency == 0 {
                p.push(("concurrency".into(), "must be at least 1".into()));
            }
            if s.ack_after.is_some_and(|d| d > Duration::from_secs(60)) {
                p.push(("ack_after".into(), "must be at most 60s".into()));
            }
            p
        }
    }
}

/// One acknowledged-and-forgotten change.
pub struct Discard {
    key: Arc<str>,
    /// Where it came from (partition, offset), for logs.
    at: (i32, i64),
}

impl SinkRequest for Discard {
    fn batch_bytes(&self) -> usize {
        self.key.len()
    }
    fn batch_key(&self) -> &str {
        &self.key
    }
    fn describe(&self) -> String {
        format!("{}@{}", self.at.0, self.at.1)
    }
}

struct BlackholeSink {
    name: String,
    ack_after: Duration,
    batch: usize,
}

#[async_trait::async_trait]
impl Sink<Discard> for BlackholeSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_count: self.batch,
            max_bytes: usize::MAX,
            per_request: false,
        }
    }
    async fn write_batch(&self, batch: &[Arc<Discard>]) -> Vec<SinkResult> {
        if !self.ack_after.is_zero() {
            tokio::time::sleep(self.ack_after).await;
        }
        vec![SinkResult::Done; batch.len()]
    }
}

fn build(
    spec: &OutputSpec,
    route: &RouteConfig,
    w: &mut Wiring<'_>,
) -> Result<Arc<dyn Output>, String> {
    let s = settings(spec)?;
    let name = format!("blackhole:{}", s.name.as_deref().unwrap_or(&route.topic));
    let pool: PoolHandle<Discard> = w.pool(&name, || {
        PoolHandle::new(
            Arc::new(BlackholeSink {
                name: name.clone(),
                ack_after: s.ack_after.unwrap_or_default(),
                batch: s.batch_size,
            }),
            super::pool::PoolSettings {
                concurrency: s.concurrency,
                linger: Duration::ZERO,
                retry: Default::default(),
                misconfig_backoff: Duration::from_secs(5),
                breaker: Default::default(),
            },
        )
    });
    Ok(Arc::new(PooledOutput {
        span_name: "blackhole.write",
        pool,
        role: Role::State,
        required: spec.required.unwrap_or(true),
        reason_prefix: "blackhole_",
        build: Box::new(|c| {
            Ok(Discard {
                key: Arc::from(c.key),
                at: (c.event.source.partition, c.event.source.offset),
            })
        }),
        describe: None,
    }))
}
