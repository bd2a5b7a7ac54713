//! Installs the process-wide Prometheus recorder (all names prefixed `cdc_relay_`) and renders it
//! for `/metrics`, plus `gauge_family`: the text format for series rendered at scrape time from
//! current state (per-partition gauges, which must vanish with the partition). It must not define
//! metrics of its own beyond descriptions.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Seconds. Measured (BENCHMARKS.md): record latency p50 2–70 ms and p99 20–400 ms at a steady
/// rate, sink calls 1–700 ms; so the buckets are dense from 1 to 100 ms (a p99 of 10 ms or 25 ms
/// is told apart) and reach 30 s for a sink that hangs.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Requests per sink call: 1 (the DLQ topic), 10 (SQS, EventBridge), 16 (conditional groups),
/// 25 (BatchWriteItem), 100 (TransactWriteItems), up to the blackhole's 1000.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 16.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// Installs the recorder once per process and returns its handle (None if another recorder won).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("cdc_relay_sink_batch_size".into()),
                    BATCH_SIZE_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            // Event counters with a closed label set: shown at 0 before their first event.
            metrics::counter!("cdc_relay_memory_budget_pauses_total").increment(0);
            for kind in ["transport", "all_brokers_down", "kafka", "client"] {
                metrics::counter!("cdc_relay_consumer_errors_total", "kind" => kind).increment(0);
            }
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "cdc_relay_records_consumed_total",
        "Records taken by a partition actor, by topic"
    );
    describe_counter!(
        "cdc_relay_records_processed_total",
        "Records completed, by topic and outcome (written, superseded, stale, skipped, dead_lettered)"
    );
    describe_counter!(
        "cdc_relay_records_skipped_total",
        "Records decoded to no change, by reason (qlik_metadata, kafka_tombstone)"
    );
    describe_counter!(
        "cdc_relay_poison_records_total",
        "Poison records, by topic and reason"
    );
    describe_histogram!(
        "cdc_relay_processing_latency_seconds",
        "Dispatch to completion per record"
    );
    describe_counter!(
        "cdc_relay_sink_requests_total",
        "Sink calls (one per batch; one per request for conditional DynamoDB writes) by sink and result (ok, partial, retryable, poison, misconfiguration, circuit_open)"
    );
    describe_counter!(
        "cdc_relay_sink_abandoned_total",
        "Attempts dropped before sending because their caller gave up (revoke, shutdown, switch)"
    );
    describe_histogram!(
        "cdc_relay_sink_batch_size",
        "Requests per sink call (batch size) by sink"
    );
    describe_counter!(
        "cdc_relay_sink_exhausted_total",
        "Optional-sink writes whose retry budget ran out (the record went to the DLQ), by sink"
    );
    describe_gauge!(
        "cdc_relay_circuit_state",
        "Circuit breaker state by sink: 0 closed, 1 open, 2 half-open"
    );
    describe_counter!(
        "cdc_relay_circuit_transitions_total",
        "Circuit breaker transitions by sink and target state"
    );
    describe_counter!(
        "cdc_relay_dlq_records_total",
        "Records written to the DLQ, by source topic and reason"
    );
    describe_gauge!(
        "cdc_relay_in_flight_bytes",
        "Record bytes in flight across all partitions (the memory budget's measure)"
    );
    describe_counter!(
        "cdc_relay_memory_budget_pauses_total",
        "Times the global memory budget paused every partition"
    );
    describe_histogram!(
        "cdc_relay_sink_latency_seconds",
        "Sink request latency by sink"
    );
    describe_gauge!("cdc_relay_sink_in_flight", "Requests in flight by sink");
    describe_gauge!(
        "cdc_relay_sink_misconfigured",
        "1 while a sink reports a misconfiguration"
    );
    describe_counter!(
        "cdc_relay_commits_total",
        "Offset commits by mode (sync, async) and result"
    );
    describe_gauge!(
        "cdc_relay_assigned_partitions",
        "Partitions assigned to this instance"
    );
    describe_counter!(
        "cdc_relay_actor_restarts_total",
        "Supervised actor restarts by actor kind"
    );
    describe_counter!(
        "cdc_relay_consumer_errors_total",
        "Kafka client errors by kind"
    );
    describe_gauge!("cdc_relay_schema_cache_size", "Writer schemas cached by id");
    describe_gauge!(
        "cdc_relay_failover_epoch",
        "The highest control-record epoch this pod has seen (one switch decision per epoch)"
    );
    describe_counter!(
        "cdc_relay_spans_dropped_total",
        "Trace spans dropped instead of exported (export queue full, collector slow or unreachable)"
    );
    describe_counter!(
        "cdc_relay_spans_exported_total",
        "Trace spans the OTLP collector accepted"
    );
    describe_gauge!(
        "cdc_relay_region_up",
        "1 while a region's cluster answers probes (healthy or suspect)"
    );
    describe_gauge!(
        "cdc_relay_region_active",
        "1 for the region whose cluster the consumer uses"
    );
    describe_gauge!(
        "cdc_relay_link_lag_messages",
        "Primary high watermark minus secondary high watermark, per mirrored partition"
    );
    describe_gauge!(
        "cdc_relay_link_lag_seconds",
        "Age of the oldest primary record not yet mirrored, per mirrored partition"
    );
    describe_counter!(
        "cdc_relay_failovers_total",
        "Cluster switches by target side (primary, secondary)"
    );
    describe_gauge!(
        "cdc_relay_failover_duration_seconds",
        "Last switch: first failed probe (or the planned request) to the consumer assigned on the target with its start positions committed"
    );
    describe_gauge!(
        "cdc_relay_failover_first_record_seconds",
        "Last switch: first failed probe (or the planned request) to the first record done on the target"
    );
    describe_counter!(
        "cdc_relay_failover_offset_source_total",
        "Partitions started after a switch, by offset source (group, checkpoint, committed, reset)"
    );
}

/// The Prometheus text exposition, or an empty string if no recorder is installed.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

/// A gauge family rendered at scrape time.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
}

/// Appends `family` with its samples in the Prometheus text format (HELP, TYPE, one line per
/// sample; label values escaped). Nothing is appended when there are no samples.
pub fn gauge_family(
    out: &mut String,
    family: &Family,
    samples: impl Iterator<Item = (Vec<(&'static str, String)>, f64)>,
) {
    use std::fmt::Write;
    let mut header = false;
    for (labels, value) in samples {
        if !header {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} gauge", family.name);
            header = true;
        }
        out.push_str(family.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{escaped}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let mut out = String::new();
        let f = Family {
            name: "cdc_relay_x",
            help: "An x",
        };
        gauge_family(&mut out, &f, std::iter::empty());
        assert!(out.is_empty(), "no samples, no family");
        gauge_family(
            &mut out,
            &f,
            vec![
                (
                    vec![("topic", "a\"b".to_string()), ("partition", "0".into())],
                    3.0,
                ),
                (vec![], 0.5),
            ]
            .into_iter(),
        );
        assert_eq!(
            out,
            "# HELP cdc_relay_x An x\n# TYPE cdc_relay_x gauge\ncdc_relay_x{topic=\"a\\\"b\",partition=\"0\"} 3\ncdc_relay_x 0.5\n"
        );
    }
}
