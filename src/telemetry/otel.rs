//! Trace export set-up (DESIGN §7): resolves `[telemetry]` and the standard `OTEL_*` variables
//! into `TraceSettings`, builds the OTLP exporter (gRPC or HTTP/protobuf) and installs the
//! record-path tracer (`trace::install`).
//!
//! Export never blocks the data path: ended spans go into a bounded queue (`try_send`); when it
//! is full, or an export fails, the spans are dropped and counted (`cdc_relay_spans_dropped_total`)
//! and records keep flowing. One dedicated thread with its own small runtime batches and exports,
//! so a slow or unreachable collector costs the relay's runtime nothing.
//!
//! Set-up only: it creates no span itself and must not be called by library code other than the
//! binary's start.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};

use super::semconv;
use super::trace::Sampling;
use crate::config::{Problem, TelemetryConfig};

/// Spans per export call.
const EXPORT_BATCH: usize = 512;
/// A partial batch waits at most this long.
const EXPORT_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// What trace export was resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub sampling: Sampling,
    pub queue_size: usize,
    pub export_timeout: Duration,
}

impl TraceSettings {
    /// `[telemetry]` first, then the standard variables (`env`), then defaults. `Ok(None)`: no
    /// endpoint, or `OTEL_SDK_DISABLED=true` / `OTEL_TRACES_EXPORTER=none`: tracing is off.
    pub fn resolve(
        cfg: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TraceSettings>, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, why: String| {
            problems.push(Problem {
                key: key.into(),
                why,
            })
        };
        let env = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = cfg
            .otlp_endpoint
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let protocol = match cfg
            .otlp_protocol
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some(other) => {
                bad(
                    "telemetry.otlp_protocol",
                    format!("{other:?} is not supported: use \"grpc\" or \"http/protobuf\""),
                );
                OtlpProtocol::Grpc
            }
        };
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            bad(
                "telemetry.otlp_endpoint",
                format!("{e:?} must be an http:// or https:// URL"),
            );
        }
        if let (Some(e), OtlpProtocol::Grpc) = (&endpoint, protocol)
            && e.starts_with("https://")
        {
            bad(
                "telemetry.otlp_endpoint",
                "gRPC export is plaintext (a collector next to the relay); for TLS use otlp_protocol = \"http/protobuf\"".into(),
            );
        }
        let sampler = cfg
            .sampler
            .clone()
            .or_else(|| env("OTEL_TRACES_SAMPLER"))
            .unwrap_or_else(|| "parentbased_traceidratio".into());
        let ratio = match cfg.sampler_ratio {
            Some(r) => Some(r),
            None => match env("OTEL_TRACES_SAMPLER_ARG") {
                None => None,
                Some(v) => match v.parse::<f64>() {
                    Ok(r) => Some(r),
                    Err(_) => {
                        bad(
                            "telemetry.sampler_ratio",
                            format!("OTEL_TRACES_SAMPLER_ARG={v:?} is not a number"),
                        );
                        None
                    }
                },
            },
        }
        .unwrap_or(0.01);
        if !(0.0..=1.0).contains(&ratio) {
            bad(
                "telemetry.sampler_ratio",
                format!("{ratio} is not between 0 and 1"),
            );
        }
        let sampling = match sampler.as_str() {
            "parentbased_traceidratio" => Sampling::new(true, ratio),
            "traceidratio" => Sampling::new(false, ratio),
            "parentbased_always_on" => Sampling::new(true, 1.0),
            "always_on" => Sampling::new(false, 1.0),
            "parentbased_always_off" => Sampling::new(true, 0.0),
            "always_off" => Sampling::new(false, 0.0),
            other => {
                bad(
                    "telemetry.sampler",
                    format!(
                        "{other:?} is not one of parentbased_traceidratio, traceidratio, parentbased_always_on, always_on, parentbased_always_off, always_off"
                    ),
                );
                Sampling::new(true, 0.0)
            }
        };
        let queue_size = cfg.queue_size.unwrap_or(8192);
        if queue_size == 0 {
            bad("telemetry.queue_size", "must be at least 1".into());
        }
        let export_timeout = cfg.export_timeout.unwrap_or(Duration::from_secs(10));
        if export_timeout.is_zero() {
            bad("telemetry.export_timeout", "must be more than 0".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none");
        let Some(endpoint) = endpoint.filter(|_| !disabled) else {
            return Ok(None);
        };
        Ok(Some(TraceSettings {
            endpoint,
            protocol,
            service_name: cfg
                .service_name
                .clone()
                .or_else(|| env("OTEL_SERVICE_NAME"))
                .unwrap_or_else(|| "cdc-relay".into()),
            sampling,
            queue_size,
            export_timeout,
        }))
    }

    /// The endpoint an exporter of this protocol is given: HTTP gets `/v1/traces` appended
    /// unless the traces endpoint was given whole.
    fn exporter_endpoint(&self) -> String {
        match self.protocol {
            OtlpProtocol::Grpc => self.endpoint.clone(),
            OtlpProtocol::HttpProtobuf if self.endpoint.ends_with("/v1/traces") => {
                self.endpoint.clone()
            }
            OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("cannot start the span export thread: {0}")]
    Thread(std::io::Error),
}

/// Keeps trace export alive; `shutdown` exports what is queued (bounded in time).
pub struct TraceGuard {
    provider: SdkTracerProvider,
}

impl TraceGuard {
    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(5));
    }
}

/// Builds the exporter and the provider and installs the record-path tracer. `region` and
/// `group` go on the resource and the record spans.
pub fn init(
    settings: &TraceSettings,
    region: &str,
    group: &str,
) -> Result<TraceGuard, TelemetryError> {
    let endpoint = settings.exporter_endpoint();
    let err = |message: String| TelemetryError::Exporter {
        endpoint: endpoint.clone(),
        message,
    };
    // The export thread's runtime (tonic's channel also needs it when it is built).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TelemetryError::Thread)?;
    let processor = match settings.protocol {
        OtlpProtocol::Grpc => {
            let exporter = {
                let _g = rt.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint.clone())
                    .with_timeout(settings.export_timeout)
                    .build()
                    .map_err(|e| err(e.to_string()))?
            };
            Exporting::start(rt, exporter, settings)?
        }
        OtlpProtocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(settings.export_timeout)
                .build()
                .map_err(|e| err(e.to_string()))?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.export_timeout)
                .build()
                .map_err(|e| err(e.to_string()))?;
            Exporting::start(rt, exporter, settings)?
        }
    };
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new(semconv::SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
            KeyValue::new(semconv::CLOUD_REGION, region.to_string()),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        // The relay decides per record before any span exists (`trace::Sampling`): what reaches
        // the SDK is sampled.
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_span_processor(processor)
        .build();
    super::trace::install(&provider, settings.sampling, group);
    tracing::info!(endpoint = %endpoint, protocol = ?settings.protocol, sampling = ?settings.sampling, "exporting traces over OTLP");
    Ok(TraceGuard { provider })
}

/// What the span processor and the export thread share. Ended spans wait in `queue` (a lock
/// held for one push; only sampled spans get here); the export thread is woken only when a
/// batch is full or a flush is asked for, otherwise it looks every `EXPORT_DELAY`, so ending a
/// span costs no thread wake-up.
#[derive(Debug)]
struct Shared {
    queue: std::sync::Mutex<Vec<SpanData>>,
    capacity: usize,
    wake: tokio::sync::Notify,
    /// Flush requests: each is answered once what was queued before it is exported.
    flushes: std::sync::Mutex<Vec<std::sync::mpsc::Sender<()>>>,
    resource: std::sync::Mutex<Option<Resource>>,
    closed: std::sync::atomic::AtomicBool,
}

/// The span processor: ended spans into a bounded queue, never waiting; the export thread
/// sends them in batches.
#[derive(Debug)]
struct Exporting {
    shared: std::sync::Arc<Shared>,
    dropped: metrics::Counter,
}

impl Exporting {
    fn start<E: SpanExporter + 'static>(
        rt: tokio::runtime::Runtime,
        exporter: E,
        settings: &TraceSettings,
    ) -> Result<Exporting, TelemetryError> {
        let shared = std::sync::Arc::new(Shared {
            queue: std::sync::Mutex::new(Vec::with_capacity(EXPORT_BATCH)),
            capacity: settings.queue_size,
            wake: tokio::sync::Notify::new(),
            flushes: std::sync::Mutex::new(Vec::new()),
            resource: std::sync::Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let dropped = metrics::counter!("cdc_relay_spans_dropped_total");
        let exported = metrics::counter!("cdc_relay_spans_exported_total");
        let thread_dropped = dropped.clone();
        let thread_shared = std::sync::Arc::clone(&shared);
        let timeout = settings.export_timeout;
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                rt.block_on(export_loop(
                    thread_shared,
                    exporter,
                    timeout,
                    thread_dropped,
                    exported,
                ));
            })
            .map_err(TelemetryError::Thread)?;
        Ok(Exporting { shared, dropped })
    }

    fn flush(&self, wait: Duration) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut f) = self.shared.flushes.lock() {
            f.push(tx);
        }
        self.shared.wake.notify_one();
        rx.recv_timeout(wait)
            .map_err(|_| OTelSdkError::Timeout(wait))
    }
}

impl SpanProcessor for Exporting {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let len = match self.shared.queue.lock() {
            Ok(mut q) if q.len() < self.shared.capacity => {
                q.push(span);
                q.len()
            }
            _ => {
                self.dropped.increment(1);
                return;
            }
        };
        if len == EXPORT_BATCH {
            self.shared.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let r = self.flush(timeout);
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_one();
        r
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Ok(mut r) = self.shared.resource.lock() {
            *r = Some(resource.clone());
        }
        self.shared.wake.notify_one();
    }
}

async fn export_loop<E: SpanExporter>(
    shared: std::sync::Arc<Shared>,
    mut exporter: E,
    timeout: Duration,
    dropped: metrics::Counter,
    exported: metrics::Counter,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(EXPORT_DELAY) => {}
        }
        if let Some(r) = shared.resource.lock().ok().and_then(|mut r| r.take()) {
            exporter.set_resource(&r);
        }
        // Flushes asked for before this drain are answered after it.
        let flushes: Vec<std::sync::mpsc::Sender<()>> = shared
            .flushes
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        let spans = shared
            .queue
            .lock()
            .map(|mut q| std::mem::replace(&mut *q, Vec::with_capacity(EXPORT_BATCH)))
            .unwrap_or_default();
        let mut spans = spans.into_iter().peekable();
        while spans.peek().is_some() {
            let batch: Vec<SpanData> = spans.by_ref().take(EXPORT_BATCH).collect();
            let n = batch.len() as u64;
            let error = match tokio::time::timeout(timeout, exporter.export(batch)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {timeout:?}")),
            };
            match error {
                None => {
                    exported.increment(n);
                    if std::mem::take(&mut failing) {
                        tracing::info!("span export works again");
                    }
                }
                Some(e) => {
                    // The rest of this drain is not tried (each try would wait as long).
                    let rest = spans.by_ref().count() as u64;
                    dropped.increment(n + rest);
                    if !failing {
                        tracing::warn!(error = %e, spans = n + rest, "span export failed; spans are dropped (counted in cdc_relay_spans_dropped_total) until it works again");
                        failing = true;
                    }
                }
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
        if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
            let _ = exporter.shutdown();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        let cfg = TelemetryConfig::default();
        assert_eq!(TraceSettings::resolve(&cfg, env(&[])), Ok(None));
        let on = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        assert!(TraceSettings::resolve(&cfg, on).unwrap().is_some());
        let off = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(TraceSettings::resolve(&cfg, off), Ok(None));
    }

    #[test]
    fn config_wins_over_the_standard_variables_which_win_over_defaults() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://cfg:4318".into()),
            otlp_protocol: Some("http/protobuf".into()),
            ..Default::default()
        };
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
            ("OTEL_SERVICE_NAME", "relay-west"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        let s = TraceSettings::resolve(&cfg, e).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://cfg:4318");
        assert_eq!(s.exporter_endpoint(), "http://cfg:4318/v1/traces");
        assert_eq!(s.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(s.service_name, "relay-west");
        assert_eq!(s.sampling, Sampling::new(false, 0.25));
        let d = TraceSettings::resolve(
            &TelemetryConfig::default(),
            env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.protocol, OtlpProtocol::Grpc);
        assert_eq!(d.exporter_endpoint(), "http://t:4317");
        assert_eq!(d.sampling, Sampling::new(true, 0.01));
        assert_eq!(d.service_name, "cdc-relay");
    }

    #[test]
    fn bad_settings_are_named_by_key() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("collector:4317".into()),
            otlp_protocol: Some("thrift".into()),
            sampler: Some("sometimes".into()),
            sampler_ratio: Some(1.5),
            queue_size: Some(0),
            ..Default::default()
        };
        let p = TraceSettings::resolve(&cfg, env(&[])).unwrap_err();
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "telemetry.otlp_protocol",
                "telemetry.otlp_endpoint",
                "telemetry.sampler_ratio",
                "telemetry.sampler",
                "telemetry.queue_size"
            ],
            "{p:?}"
        );
        let p = TraceSettings::resolve(
            &TelemetryConfig::default(),
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_SAMPLER_ARG", "half"),
            ]),
        )
        .unwrap_err();
        assert_eq!(p[0].key, "telemetry.sampler_ratio");
    }
}
