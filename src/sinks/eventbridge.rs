//! EventBridge sink (DESIGN §3.4): one domain event per change, sent with PutEvents in batches of
//! up to 10 entries and under 256 KB. Entries that fail inside a successful call
//! (FailedEntryCount) get their own result, so only they are retried.
//!
//! Builds and sends events; it must not retry (the pool does) or decide whether events are
//! required (the route does).

use std::sync::Arc;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::aws::classify;
use super::{BatchLimits, Sink, SinkError, SinkRequest, SinkResult};
use crate::config::EventBridgeConfig;
use crate::error_class::ErrorClass;
use crate::event::{ChangeEvent, Row, SourcePos, Value};

/// PutEvents' limit per call (entries and bytes) — also the limit of one entry.
pub const MAX_ENTRIES: usize = 10;
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// One event to publish.
#[derive(Debug, Clone)]
pub struct EventRequest {
    pub detail_type: String,
    /// The JSON `detail`.
    pub detail: String,
    /// Deterministic id: `<table>/<seq>/<pk>`; the same change always gets the same id, in
    /// every region and on every replay, so consumers can deduplicate.
    pub event_id: String,
    pub src: SourcePos,
    /// Entry size as EventBridge counts it (source + detail-type + detail).
    pub size: usize,
}

impl EventRequest {
    /// Builds the event of one change written to `table` under key `pk`.
    pub fn new(
        cfg: &EventBridgeConfig,
        table: &str,
        key_columns: &[String],
        pk: &str,
        ev: &ChangeEvent,
        region: &str,
        traceparent: Option<&str>,
    ) -> EventRequest {
        let row_json = |r: &Option<Row>| {
            r.as_ref().map_or(serde_json::Value::Null, |r| {
                serde_json::Value::Object(
                    r.iter().map(|(k, v)| (k.clone(), event_json(v))).collect(),
                )
            })
        };
        let key: serde_json::Map<String, serde_json::Value> = ev
            .key_image()
            .map(|img| {
                key_columns
                    .iter()
                    .filter_map(|c| img.get(c).map(|v| (c.clone(), event_json(v))))
                    .collect()
            })
            .unwrap_or_default();
        let event_id = format!("{table}/{}/{pk}", ev.seq.as_str());
        let mut detail = serde_json::json!({
            "event_id": event_id,
            "table": table,
            "source_table": ev.table,
            "op": ev.op.as_str(),
            "pk": pk,
            "key": key,
            "before": row_json(&ev.before),
            "after": row_json(&ev.after),
            "seq": ev.seq.as_str(),
            "ts_ms": ev.ts_ms,
            "region": region,
            "source": {"topic": ev.source.topic, "partition": ev.source.partition, "offset": ev.source.offset},
        });
        if let (Some(tp), Some(obj)) = (traceparent, detail.as_object_mut()) {
            obj.insert("traceparent".into(), serde_json::Value::String(tp.into()));
        }
        let detail = detail.to_string();
        let detail_type = cfg
            .detail_type
            .replace("{table}", table)
            .replace("{op}", ev.op.as_str());
        EventRequest {
            size: cfg.source.len() + detail_type.len() + detail.len(),
            detail_type,
            detail,
            event_id,
            src: ev.source.clone(),
        }
    }
}

/// A value as event JSON. Numbers stay JSON numbers only when consumers read them exactly:
/// integers within i64 (PutEvents refuses larger JSON integers) and decimals of at most 15
/// significant digits (what an IEEE double holds); any other number (a 38-digit DECIMAL, say)
/// becomes its exact decimal string instead of being rounded or refused.
pub fn event_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Number(n) => {
            if let Ok(i) = n.parse::<i64>() {
                return serde_json::Value::from(i);
            }
            let integer = !n.contains(['.', 'e', 'E']);
            let significant = n
                .split(['e', 'E'])
                .next()
                .unwrap_or("")
                .bytes()
                .filter(u8::is_ascii_digit)
                .skip_while(|b| *b == b'0')
                .count();
            match n.parse::<f64>() {
                Ok(f) if !integer && f.is_finite() && significant <= 15 => {
                    serde_json::Number::from_f64(f).map_or_else(
                        || serde_json::Value::String(n.clone()),
                        serde_json::Value::Number,
                    )
                }
                _ => serde_json::Value::String(n.clone()),
            }
        }
        Value::List(l) => serde_json::Value::Array(l.iter().map(event_json).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, x)| (k.clone(), event_json(x))).collect())
        }
        other => other.to_json(),
    }
}

/// The EventBridge output of a route, when its events are on (`[eventbridge]`, `events`):
/// the bus's pool, required or not as configured, with the `Event` role.
pub fn output_for(
    route: &crate::config::RouteConfig,
    w: &mut super::wiring::Wiring<'_>,
) -> Option<Arc<dyn super::output::Output>> {
    let required = w.config.events_for(route)?;
    let eb = w.config.eventbridge.clone()?;
    let sdk = w.sdk;
    let pool = w.pool(&format!("eventbridge:{}", eb.bus), || {
        let mut b = aws_sdk_eventbridge::config::Builder::from(sdk)
            .timeout_config(super::aws::timeouts(eb.request_timeout));
        if let Some(r) = &eb.region {
            b = b.region(aws_sdk_eventbridge::config::Region::new(r.clone()));
        }
        if let Some(u) = &eb.endpoint_url {
            b = b.endpoint_url(u);
        }
        super::pool::PoolHandle::new(
            Arc::new(EventBridgeSink::new(Client::from_conf(b.build()), &eb)),
            super::pool::PoolSettings::of(eb.concurrency, eb.linger, &eb.retry, &eb.breaker),
        )
    });
    let region = w.region.to_string();
    let table = route.table.clone();
    let key_columns = route.key.clone();
    Some(Arc::new(super::output::PooledOutput {
        span_name: "eventbridge.put_events",
        pool,
        role: super::output::Role::Event,
        required,
        reason_prefix: "eventbridge_",
        build: Box::new(move |c| {
            Ok(EventRequest::new(
                &eb,
                table.as_deref().unwrap_or(&c.event.table),
                &key_columns,
                c.key,
                c.event,
                &region,
                c.traceparent,
            ))
        }),
        describe: None,
    }))
}

impl SinkRequest for EventRequest {
    fn batch_bytes(&self) -> usize {
        self.size
    }
    fn batch_key(&self) -> &str {
        &self.event_id
    }
    fn describe(&self) -> String {
        self.src.to_string()
    }
}

pub struct EventBridgeSink {
    client: Client,
    bus: String,
    source: String,
    name: String,
}

impl EventBridgeSink {
    pub fn new(client: Client, cfg: &EventBridgeConfig) -> Self {
        EventBridgeSink {
            client,
            bus: cfg.bus.clone(),
            source: cfg.source.clone(),
            name: format!("eventbridge:{}", cfg.bus),
        }
    }

    fn failed(&self, class: ErrorClass, reason: &'static str, message: String) -> SinkResult {
        SinkError::result(&self.name, class, reason, message)
    }

    /// One failed entry of a successful PutEvents call.
    fn entry_error(&self, code: &str, message: &str) -> SinkResult {
        let msg = format!("{code}: {message}");
        match code {
            c if c.contains("Throttl") || c.contains("Internal") || c.contains("Unavailable") => {
                self.failed(ErrorClass::Retryable, "throttled_or_unavailable", msg)
            }
            c if c.contains("AccessDenied") || c.contains("NotFound") => {
                self.failed(ErrorClass::Misconfiguration, "misconfigured", msg)
            }
            c if c.contains("Malformed") || c.contains("Invalid") || c.contains("Validation") => {
                self.failed(ErrorClass::Poison, "event_rejected", msg)
            }
            _ => self.failed(ErrorClass::Retryable, "entry_failed", msg),
        }
    }
}

#[async_trait::async_trait]
impl Sink<EventRequest> for EventBridgeSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_count: MAX_ENTRIES,
            max_bytes: MAX_REQUEST_BYTES,
            per_request: false,
        }
    }

    fn call(&self, _req: Option<&EventRequest>) -> super::CallSpan {
        super::CallSpan {
            name: "EventBridge.PutEvents".into(),
            attrs: crate::telemetry::trace::aws_call("EventBridge", "PutEvents"),
        }
    }

    async fn write_batch(&self, batch: &[Arc<EventRequest>]) -> Vec<SinkResult> {
        let mut results: Vec<Option<SinkResult>> = vec![None; batch.len()];
        let mut sent = Vec::new();
        let mut entries = Vec::new();
        for (i, ev) in batch.iter().enumerate() {
            if ev.size > MAX_REQUEST_BYTES {
                results[i] = Some(self.failed(
                    ErrorClass::Poison,
                    "event_too_large",
                    format!(
                        "event of {} bytes exceeds EventBridge's {MAX_REQUEST_BYTES}",
                        ev.size
                    ),
                ));
                continue;
            }
            entries.push(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(&ev.detail_type)
                    .detail(&ev.detail)
                    .build(),
            );
            sent.push(i);
        }
        if !entries.is_empty() {
            match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let got = out.entries();
                    for (n, &i) in sent.iter().enumerate() {
                        results[i] = Some(match got.get(n) {
                            Some(e) => match e.error_code() {
                                Some(code) => {
                                    self.entry_error(code, e.error_message().unwrap_or(""))
                                }
                                None if e.event_id().is_some() => SinkResult::Done,
                                None => self.failed(
                                    ErrorClass::Retryable,
                                    "entry_failed",
                                    "no event id and no error code returned".into(),
                                ),
                            },
                            None => self.failed(
                                ErrorClass::Retryable,
                                "entry_failed",
                                "PutEvents returned fewer entries than sent".into(),
                            ),
                        });
                    }
                }
                Err(e) => {
                    let r = classify(&self.name, &e);
                    for &i in &sent {
                        results[i] = Some(r.clone());
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    self.failed(ErrorClass::Retryable, "entry_failed", "not sent".into())
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::event_json;
    use crate::event::Value;

    #[test]
    fn event_numbers_are_exact_or_strings() {
        let n = |s: &str| event_json(&Value::Number(s.into()));
        assert_eq!(n("42"), serde_json::json!(42));
        assert_eq!(n("-9223372036854775808"), serde_json::json!(i64::MIN));
        // Beyond i64: PutEvents refuses the integer, so it travels as text.
        assert_eq!(
            n("9223372036854775808"),
            serde_json::json!("9223372036854775808")
        );
        assert_eq!(n("1234.56"), serde_json::json!(1234.56));
        // 38 digits would be rounded by every JSON reader: text, exactly.
        let d = "12345678901234567890.123456789012345678";
        assert_eq!(n(d), serde_json::json!(d));
        assert_eq!(
            event_json(&Value::List(vec![Value::Number("1e400".into())])),
            serde_json::json!(["1e400"])
        );
    }
}
