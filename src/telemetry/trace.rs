//! Record-path tracing (DESIGN §7): the sampling decision per record, and the spans of a sampled
//! record — `process <topic>` (its parent from the record's W3C `traceparent` header when present,
//! else a new root) → `decode`, `route`, one delivery span per output, `dlq.send` — and the sink
//! calls that carry them (`DynamoDB.BatchWriteItem`, `EventBridge.PutEvents`, …: own spans linked
//! to the delivery spans, or children of the one they carry).
//!
//! The decision is made before any span exists, so an unsampled record costs one check and a
//! random number; with tracing off (nothing installed) it costs one load. Spans are built on the
//! OpenTelemetry SDK's tracer directly, with explicit parents, because a record's span crosses
//! actors and tasks: its handle travels with the record (`RecordIn::trace`) and ends when the
//! record is done. Attribute names come from `semconv`.
//!
//! It must not decide anything about records, and it must not block: export is `otel`'s.

use std::borrow::Cow;
use std::sync::OnceLock;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::semconv as sc;

/// Parent-based or not, and the ratio of new traces kept (DESIGN §7: parent-based ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    parent_based: bool,
    ratio: f64,
}

impl Sampling {
    pub fn new(parent_based: bool, ratio: f64) -> Sampling {
        Sampling {
            parent_based,
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    /// Whether a record with this (remote) parent is traced. Parent-based: as its parent was
    /// (sampled or not); without a parent, or not parent-based: `ratio` of them.
    pub fn sample(&self, parent: Option<&SpanContext>) -> bool {
        match parent {
            Some(p) if self.parent_based => p.is_sampled(),
            _ => self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio),
        }
    }
}

struct Installed {
    tracer: SdkTracer,
    sampling: Sampling,
    group: String,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the tracer of `provider` for the record path (once per process; the binary's start).
pub fn install(provider: &SdkTracerProvider, sampling: Sampling, group: &str) {
    let scope = InstrumentationScope::builder(sc::SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(sc::SCHEMA_URL)
        .build();
    let _ = INSTALLED.set(Installed {
        tracer: provider.tracer_with_scope(scope),
        sampling,
        group: group.to_string(),
    });
}

/// Whether spans are exported at all.
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

/// One span of the relay; ended (and handed to export) when dropped.
pub struct TracedSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl std::fmt::Debug for TracedSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TracedSpan")
            .field(&traceparent(self.span.span_context()))
            .finish()
    }
}

impl TracedSpan {
    pub fn context(&self) -> &SpanContext {
        self.span.span_context()
    }

    /// Its W3C `traceparent`, for what the relay sends on (EventBridge detail, SQS attributes,
    /// Kafka headers).
    pub fn traceparent(&self) -> String {
        traceparent(self.context())
    }

    /// `(trace_id, span_id)` in hex, for log lines.
    pub fn log_ids(&self) -> (String, String) {
        let c = self.context();
        (c.trace_id().to_string(), c.span_id().to_string())
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.span.set_attribute(KeyValue::new(key, value));
    }

    /// Marks it failed: `error.type` and the status description.
    pub fn error(&mut self, error_type: impl Into<Value>, message: impl Into<Cow<'static, str>>) {
        self.span
            .set_attribute(KeyValue::new(sc::ERROR_TYPE, error_type));
        self.span.set_status(Status::error(message));
    }

    /// A child of this span, starting now.
    pub fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attrs: Vec<KeyValue>,
    ) -> Option<TracedSpan> {
        start_child(self.context(), name, kind, attrs)
    }
}

/// The process span of a consumed record, if the record is sampled.
pub struct RecordFacts<'a> {
    pub traceparent: Option<&'a str>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub cluster: &'a str,
}

/// Starts a record's `process <topic>` span when tracing is on and the record is sampled.
pub fn start_record(f: &RecordFacts<'_>) -> Option<Box<TracedSpan>> {
    let t = INSTALLED.get()?;
    let parent = f.traceparent.and_then(parse_traceparent);
    if !t.sampling.sample(parent.as_ref()) {
        return None;
    }
    let cx = match parent {
        Some(p) => Context::new().with_remote_span_context(p),
        None => Context::new(),
    };
    let attrs = vec![
        KeyValue::new(sc::MESSAGING_SYSTEM, sc::MESSAGING_SYSTEM_KAFKA),
        KeyValue::new(sc::MESSAGING_OPERATION_NAME, sc::OP_PROCESS),
        KeyValue::new(sc::MESSAGING_OPERATION_TYPE, sc::OP_PROCESS),
        KeyValue::new(sc::MESSAGING_DESTINATION_NAME, f.topic.to_string()),
        KeyValue::new(
            sc::MESSAGING_DESTINATION_PARTITION_ID,
            f.partition.to_string(),
        ),
        KeyValue::new(sc::MESSAGING_KAFKA_OFFSET, f.offset),
        KeyValue::new(sc::MESSAGING_CONSUMER_GROUP_NAME, t.group.clone()),
        KeyValue::new(sc::MESSAGING_KAFKA_CLUSTER_ID, f.cluster.to_string()),
    ];
    let span = t
        .tracer
        .span_builder(format!("{} {}", sc::OP_PROCESS, f.topic))
        .with_kind(SpanKind::Consumer)
        .with_attributes(attrs)
        .start_with_context(&t.tracer, &cx);
    Some(Box::new(TracedSpan { span }))
}

/// A span under `parent` (a span of this process), starting now; `None` with tracing off.
pub fn start_child(
    parent: &SpanContext,
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    attrs: Vec<KeyValue>,
) -> Option<TracedSpan> {
    let t = INSTALLED.get()?;
    let cx = Context::new().with_remote_span_context(parent.clone());
    let span = t
        .tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attrs)
        .start_with_context(&t.tracer, &cx);
    Some(TracedSpan { span })
}

/// A new root span linked to `links` (a batch call carrying several records' spans).
pub fn start_linked(
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    links: Vec<SpanContext>,
    mut attrs: Vec<KeyValue>,
) -> Option<TracedSpan> {
    let t = INSTALLED.get()?;
    attrs.push(KeyValue::new(sc::RELAY_BATCH_LINKS, links.len() as i64));
    let span = t
        .tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attrs)
        .with_links(links.into_iter().map(Link::with_context).collect())
        .start_with_context(&t.tracer, &Context::new());
    Some(TracedSpan { span })
}

/// The attributes of an AWS API call span (`rpc.system = aws-api`, service, method).
pub fn aws_call(service: &'static str, method: &'static str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(sc::RPC_SYSTEM, sc::RPC_SYSTEM_AWS_API),
        KeyValue::new(sc::RPC_SERVICE, service),
        KeyValue::new(sc::RPC_METHOD, method),
    ]
}

/// Parses a W3C `traceparent` (version 00 and later, read as 00).
pub fn parse_traceparent(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// The W3C `traceparent` of `c`.
pub fn traceparent(c: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        c.trace_id(),
        c.span_id(),
        c.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_what_w3c_rejects() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = parse_traceparent(tp).unwrap();
        assert!(c.is_sampled());
        assert_eq!(traceparent(&c), tp);
        let unsampled =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap();
        assert!(!unsampled.is_sampled());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn sampling_follows_the_parent_or_the_ratio() {
        let sampled = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let unsampled =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
        let pb = Sampling::new(true, 0.0);
        assert!(pb.sample(sampled.as_ref()));
        assert!(!pb.sample(unsampled.as_ref()));
        assert!(!pb.sample(None));
        assert!(Sampling::new(true, 1.0).sample(None));
        assert!(!Sampling::new(true, 1.0).sample(unsampled.as_ref()));
        assert!(Sampling::new(false, 1.0).sample(unsampled.as_ref()));
        let tenth = Sampling::new(false, 0.1);
        let n = (0..20_000).filter(|_| tenth.sample(None)).count();
        assert!((1_500..2_500).contains(&n), "{n} of 20000 at 0.1");
    }
}
