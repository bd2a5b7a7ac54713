//! An output as the partition pipeline sees it (DESIGN §3.6): a named target that builds its own
//! request from a change (`prepare`, where its own rules make a record poison) and writes a batch
//! of them (`write`, with its pool's batching, breaker and retry policy), one outcome per request.
//! Its `Role` says how the pipeline may treat it: a `State` output holds the latest version per
//! key (guarded by `_seq`), so of several versions of one key in flight only the newest needs
//! writing; an `Event` output gets every change, in order per key.
//!
//! Output types implement it (most through `PooledOutput`), describe themselves as an `OutputType`
//! and are registered in `registry.rs`. Nothing here knows a particular output type, decodes, or
//! tracks offsets.

use std::any::Any;
use std::sync::Arc;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::SinkRequest;
use super::pool::{PoolHandle, Trace, WriteOutcome};
use super::wiring::Wiring;
use crate::config::{OutputSpec, RouteConfig};
use crate::error_class::ErrorClass;
use crate::event::{ChangeEvent, Seq};

/// How the pipeline may treat an output's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The latest version per key; older versions in flight may be superseded (coalesced).
    State,
    /// One request per change, in order per key.
    Event,
}

/// What one record brings to its outputs.
pub struct Change<'a> {
    pub event: &'a ChangeEvent,
    /// The route's key value: the key columns' values joined by `#`.
    pub key: &'a str,
    /// The Kafka record's timestamp, for outputs that need a time when the source has none.
    pub kafka_ts_ms: Option<i64>,
    /// The `traceparent` to send on: the relay's span of the record when it is traced, else the
    /// record's own well-formed W3C header, if any.
    pub traceparent: Option<&'a str>,
}

/// Why a record cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    /// A short, stable label (metrics, DLQ attribute).
    pub reason: String,
    pub error: String,
}

impl Failure {
    pub fn poison(reason: impl Into<String>, error: impl Into<String>) -> Failure {
        Failure {
            class: ErrorClass::Poison,
            reason: reason.into(),
            error: error.into(),
        }
    }
}

/// The smallest submission worth its task and message: sinks that send one request per call
/// (conditional writes) still get their requests handed over in groups.
pub const MIN_SUBMISSION: usize = 16;

/// A request one output built for one record. Only that output reads `req`.
#[derive(Clone)]
pub struct Prepared {
    /// The change's key (coalescing and per-key order).
    pub key: Arc<str>,
    /// The change's version: of two versions of a key, the higher one wins.
    pub seq: Seq,
    /// When the request was built (as its record was taken in): pools send older requests
    /// first, so the oldest record of a partition, which holds its commit position, is not
    /// queued behind newer ones.
    pub born: Instant,
    /// The record's span while it is prepared and queued; the delivery span (a child of it)
    /// while it is written. `None` for untraced records.
    pub trace: Option<Trace>,
    req: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("key", &self.key)
            .field("seq", &self.seq.as_str())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    pub fn new<R: Send + Sync + 'static>(key: Arc<str>, seq: Seq, req: R) -> Prepared {
        Prepared {
            key,
            seq,
            born: Instant::now(),
            trace: None,
            req: Arc::new(req),
        }
    }

    /// The request, if it is an `R`.
    pub fn request<R: Send + Sync + 'static>(&self) -> Option<Arc<R>> {
        Arc::clone(&self.req).downcast::<R>().ok()
    }
}

/// One configured output of a route.
#[async_trait::async_trait]
pub trait Output: Send + Sync {
    /// A stable name, e.g. `dynamodb:customers`.
    fn name(&self) -> &str;
    fn role(&self) -> Role;
    /// Required outputs are retried forever; optional ones within a budget, then the record goes
    /// to the DLQ.
    fn required(&self) -> bool;
    /// Prefixed to the reason of a record this output gives up (e.g. `eventbridge_`).
    fn reason_prefix(&self) -> &str {
        ""
    }
    /// How many requests one `write` should carry: callers cut what they have into submissions
    /// of this size, so a record's answer waits for its own sink batch, not for every batch of
    /// a large hand-over (a key's next change waits on that answer).
    fn submission_size(&self) -> usize {
        MIN_SUBMISSION
    }
    /// The name of a record's delivery span to this output (DESIGN §7: `dynamodb.write`,
    /// `eventbridge.put_events`, …).
    fn span_name(&self) -> &'static str {
        "output.write"
    }
    /// Builds this output's request for a change, or says why the record is poison for it.
    fn prepare(&self, change: &Change<'_>) -> Result<Prepared, Failure>;
    /// Writes `batch` (retries included); one outcome per request, in order.
    async fn write(&self, batch: &[Prepared], cancel: &CancellationToken) -> Vec<WriteOutcome>;
    /// What the request holds, as JSON for a DLQ body (the decoded change), if it says more
    /// than the original record.
    fn describe(&self, _p: &Prepared) -> Option<serde_json::Value> {
        None
    }
}

/// Builds the output of one `[[routes.outputs]]` entry for a route.
pub type BuildOutput =
    fn(&OutputSpec, &RouteConfig, &mut Wiring<'_>) -> Result<Arc<dyn Output>, String>;

/// An output type that `[[routes.outputs]]` entries name with `type`.
pub struct OutputType {
    pub name: &'static str,
    /// Problems of one entry: (key within the entry, why).
    pub validate: fn(&OutputSpec) -> Vec<(String, String)>,
    /// Builds the output of one entry for a route.
    pub build: BuildOutput,
}

type Build<R> = dyn Fn(&Change<'_>) -> Result<R, Failure> + Send + Sync;

/// An output that writes through a sink pool: the common case.
pub struct PooledOutput<R: SinkRequest> {
    pub pool: PoolHandle<R>,
    pub role: Role,
    pub required: bool,
    pub reason_prefix: &'static str,
    pub build: Box<Build<R>>,
    pub describe: Option<fn(&R) -> serde_json::Value>,
    /// The delivery span's name.
    pub span_name: &'static str,
}

#[async_trait::async_trait]
impl<R: SinkRequest> Output for PooledOutput<R> {
    fn name(&self) -> &str {
        self.pool.name()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn required(&self) -> bool {
        self.required
    }

    fn reason_prefix(&self) -> &str {
        self.reason_prefix
    }

    fn submission_size(&self) -> usize {
        self.pool.batch_size().max(MIN_SUBMISSION)
    }

    fn span_name(&self) -> &'static str {
        self.span_name
    }

    fn prepare(&self, change: &Change<'_>) -> Result<Prepared, Failure> {
        let req = (self.build)(change)?;
        Ok(Prepared::new(
            Arc::from(change.key),
            change.event.seq.clone(),
            req,
        ))
    }

    async fn write(&self, batch: &[Prepared], cancel: &CancellationToken) -> Vec<WriteOutcome> {
        let reqs: Vec<Arc<R>> = batch.iter().filter_map(Prepared::request::<R>).collect();
        if reqs.len() != batch.len() {
            // A request of another output: a wiring bug, never a record's fault.
            tracing::error!(output = %self.name(), "a request of another output was handed to this one");
            return vec![WriteOutcome::Cancelled; batch.len()];
        }
        let since = batch
            .iter()
            .map(|p| p.born)
            .min()
            .unwrap_or_else(Instant::now);
        // The delivery spans of traced records, for the sink calls' spans to link to.
        let traces: Option<Vec<Option<Trace>>> = batch
            .iter()
            .any(|p| p.trace.is_some())
            .then(|| batch.iter().map(|p| p.trace.clone()).collect());
        self.pool
            .write_batch_traced(&reqs, traces.as_deref(), since, cancel, self.required)
            .await
    }

    fn describe(&self, p: &Prepared) -> Option<serde_json::Value> {
        let f = self.describe?;
        p.request::<R>().map(|r| f(&r))
    }
}
