//! librdkafka's callbacks on the poll thread (`RelayContext`): rebalances (revoke: drain with a
//! deadline, commit synchronously, stop the actors; assign: spawn actors, then commit the start
//! positions a switch handed in), commit results, statistics (high watermarks) and client errors.
//!
//! It must not decode records or talk to AWS.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::assignment::{Shared, Tp};
use super::commit;

/// librdkafka callbacks: rebalance, commit results, statistics.
pub struct RelayContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for RelayContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, ps) in &t.partitions {
                if *p < 0 || ps.hi_offset < 0 {
                    continue;
                }
                if let Some(s) = self.shared.slot(&(topic.clone(), *p)) {
                    s.state.set_high_watermark(ps.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // A dead cluster reports the same errors many times a second: warn once per kind per
        // 10 s (the poll path counts them in cdc_relay_consumer_errors_total).
        let kind = error_kind(&error);
        let due = self.shared.error_logged.lock().is_ok_and(|mut m| {
            let now = Instant::now();
            match m.get(kind) {
                Some(t) if now.duration_since(*t) < Duration::from_secs(10) => false,
                _ => {
                    m.insert(kind, now);
                    true
                }
            }
        });
        if due {
            tracing::warn!(%error, reason, "kafka client error (repeats of this kind are suppressed for 10 s)");
        } else {
            tracing::debug!(%error, reason, "kafka client error");
        }
    }
}

/// A metric label for a client error.
pub fn error_kind(e: &rdkafka::error::KafkaError) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::BrokerTransportFailure) => "transport",
        Some(C::AllBrokersDown) => "all_brokers_down",
        Some(_) => "kafka",
        None => "client",
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ConsumerContext for RelayContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let sh = &self.shared;
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = sh.unassign(partitions(tpl).into_iter());
                tracing::info!(partitions = ?revoked.iter().map(|(tp, _)| tp).collect::<Vec<_>>(), lost = consumer.assignment_lost(), "partitions revoked");
                if !sh.closing.load(Ordering::Acquire) && !consumer.assignment_lost() {
                    sh.drain(&revoked, sh.drain_timeout);
                    commit::commit_sync(sh, consumer, &revoked);
                }
                sh.stop_actors(&revoked);
            }
            Rebalance::Assign(tpl) => {
                if sh.closing.load(Ordering::Acquire) {
                    return;
                }
                for tp in partitions(tpl) {
                    sh.assign(tp);
                }
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        if self.shared.closing.load(Ordering::Acquire) {
            return;
        }
        // librdkafka keeps a partition's pause flag across revoke and re-assign; a fresh partition
        // actor starts unpaused, so the partition must be too.
        if tpl.count() > 0
            && let Err(e) = consumer.resume(tpl)
        {
            tracing::warn!(error = %e, "resume of newly assigned partitions failed");
        }
        // Now a member with this assignment: the group accepts its commits.
        commit::commit_start_positions(&self.shared, consumer, &partitions(tpl));
        self.shared.status.note_assigned();
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                for e in offsets.elements() {
                    if let (Offset::Offset(o), Some(s)) = (
                        e.offset(),
                        self.shared.slot(&(e.topic().to_string(), e.partition())),
                    ) {
                        s.state.set_committed(o);
                    }
                }
            }
            Err(e) => {
                metrics::counter!("cdc_relay_commits_total", "result" => "error", "mode" => "async").increment(1);
                // A consumer that has just (re)joined has no coordinator for a moment: normal.
                if e.rdkafka_error_code()
                    == Some(rdkafka::error::RDKafkaErrorCode::WaitingForCoordinator)
                {
                    tracing::debug!(error = %e, "offset commit deferred; retried at the next interval");
                } else {
                    tracing::warn!(error = %e, "offset commit failed; retried at the next interval");
                }
            }
        }
    }
}
