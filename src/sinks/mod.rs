//! Sinks: the `Sink` trait every target implements (DynamoDB, EventBridge, blackhole, the DLQ's
//! SQS queue and Kafka topic), the outcome vocabulary, the pool that batches, limits and retries,
//! and outputs — a route's targets as the partition pipeline sees them (`output.rs`), registered
//! in one place (`registry.rs`).
//!
//! A sink performs one batch request and classifies each result; it must not retry on its own
//! (the pool does) or know about offsets (the partition does).

pub mod aws;
pub mod blackhole;
pub mod breaker;
pub mod dynamodb;
pub mod dynamodb_wire;
pub mod eventbridge;
pub mod output;
pub mod pool;
pub mod registry;
pub mod retry;
pub mod wiring;

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::KeyValue;

use crate::error_class::ErrorClass;
use crate::route::WriteRequest;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkResult {
    /// Written.
    Done,
    /// The version guard found a newer or equal `_seq`: counts as success.
    Stale,
    /// Failed; the class says whether to retry, stop or alert.
    Failed(SinkError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class} error from {sink}: {message}")]
pub struct SinkError {
    pub class: ErrorClass,
    /// A short, stable label for metrics and the DLQ (e.g. `item_too_large`, `throttled`).
    pub reason: &'static str,
    pub sink: String,
    pub message: String,
}

impl SinkResult {
    pub fn failure(&self) -> Option<&SinkError> {
        match self {
            SinkResult::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Reasons that are retryable but say nothing about the sink's health (the breaker ignores them).
const BREAKER_NEUTRAL: &[&str] = &["transaction_retry", "unprocessed", "circuit_open"];

impl SinkError {
    /// A failed result of `sink`.
    pub fn result(
        sink: &str,
        class: ErrorClass,
        reason: &'static str,
        message: String,
    ) -> SinkResult {
        SinkResult::Failed(SinkError {
            class,
            reason,
            sink: sink.to_string(),
            message,
        })
    }

    /// Whether this failure counts against the circuit breaker: the sink looks unhealthy
    /// (timeouts, 5xx, throttling, connection errors), not merely a record it rejected.
    pub fn trips_breaker(&self) -> bool {
        self.class == ErrorClass::Retryable && !BREAKER_NEUTRAL.contains(&self.reason)
    }
}

/// How large a batch of one sink may be.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_count: usize,
    pub max_bytes: usize,
    /// Each request of a batch is its own call, made concurrently (conditional writes): the
    /// pool's `concurrency` then counts requests, not batches, and a batch never waits for
    /// more (there is nothing to amortise). Several requests still share one worker task.
    pub per_request: bool,
}

/// A request a pool can batch.
pub trait SinkRequest: Send + Sync + 'static {
    /// The bytes it adds to a batch (for the sink's byte limit).
    fn batch_bytes(&self) -> usize;
    /// Two requests with equal keys never share a batch.
    fn batch_key(&self) -> &str;
    /// Where it came from, for logs (`topic/partition@offset`).
    fn describe(&self) -> String;
}

impl SinkRequest for WriteRequest {
    fn batch_bytes(&self) -> usize {
        self.item_bytes
    }
    fn batch_key(&self) -> &str {
        &self.pk
    }
    fn describe(&self) -> String {
        self.src.to_string()
    }
}

/// How one sink call appears in a trace: `Service.Operation` for AWS calls, with the
/// conventions' attributes (`telemetry::semconv`).
pub struct CallSpan {
    pub name: Cow<'static, str>,
    pub attrs: Vec<KeyValue>,
}

/// One target. Implementations classify every error per DESIGN §4.
#[async_trait::async_trait]
pub trait Sink<R: SinkRequest>: Send + Sync + 'static {
    /// A stable name, e.g. `dynamodb:customers`; used in metrics and logs.
    fn name(&self) -> &str;
    fn limits(&self) -> BatchLimits;
    /// One attempt at a batch; exactly one result per request, in order.
    async fn write_batch(&self, batch: &[Arc<R>]) -> Vec<SinkResult>;
    /// The span of a call (only built when a traced record rides on it): of the call for
    /// `req` when each request is its own call (`BatchLimits::per_request`), else of a batch.
    fn call(&self, _req: Option<&R>) -> CallSpan {
        CallSpan {
            name: Cow::Owned(self.name().to_string()),
            attrs: Vec::new(),
        }
    }
}
