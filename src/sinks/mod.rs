//! Sinks: the `Sink` trait every AWS target implements, the outcome vocabulary, and the pool
//! that runs writes with bounded concurrency and retries.
//!
//! A sink performs one request and classifies the result; it must not retry on its own (the pool
//! does) or know about offsets (the partition does).

pub mod aws;
pub mod dynamodb;
pub mod pool;
pub mod retry;

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

/// One AWS target. Implementations classify every error per DESIGN §4.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    /// A stable name, e.g. `dynamodb:customers`; used in metrics and logs.
    fn name(&self) -> &str;
    /// One attempt at `req`.
    async fn write(&self, req: &WriteRequest) -> SinkResult;
}
