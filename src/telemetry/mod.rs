//! Telemetry: Prometheus metrics recorder and log/tracing subscriber set-up.
//!
//! Set-up only; the metrics themselves are recorded where things happen.

pub mod metrics;
pub mod tracing;
