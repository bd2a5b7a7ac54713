//! Telemetry: Prometheus metrics recorder, log subscriber, trace export (OTLP) and the
//! record-path spans, with every exported name in `semconv`.
//!
//! Set-up and span plumbing only; metrics are recorded and spans started where things happen.

pub mod metrics;
pub mod otel;
pub mod semconv;
pub mod trace;
pub mod tracing;
