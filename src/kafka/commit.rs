//! Where the group's positions move: commits (asynchronous ones every `commit_interval`, whose
//! results come back through the consumer queue; synchronous ones on revoke, shutdown and for the
//! start positions after a switch) and seeks (to a start position, or back to the last completed
//! offset after a partition actor restart).
//!
//! Commit positions come only from `PartitionState::committable` (the partition's
//! `OffsetTracker`) or from start positions resolved by a switch; nothing here decides them.
//! Called from the poll thread only (it uses the `BaseConsumer`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::assignment::{Shared, Slot, Tp};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Synchronously commits the committable offsets of `slots` (revoke, shutdown).
pub fn commit_sync<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    slots: &[(Tp, Slot)],
) {
    if shared.aborted.load(Ordering::Acquire) {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), s) in slots {
        if let Some(c) = s.state.committable()
            && s.state.committed() != Some(c)
        {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(c));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            for (_, s) in slots {
                if let Some(c) = s.state.committable() {
                    s.state.set_committed(c);
                }
            }
            metrics::counter!("cdc_relay_commits_total", "result" => "ok", "mode" => "sync")
                .increment(1);
        }
        Err(e) => {
            metrics::counter!("cdc_relay_commits_total", "result" => "error", "mode" => "sync")
                .increment(1);
            tracing::error!(error = %e, "synchronous commit failed; the records will be replayed (version guards absorb it)");
        }
    }
}

/// Commits every assigned partition whose committable offset moved (every `commit_interval`).
pub fn commit_async<C: ConsumerContext>(shared: &Shared, consumer: &BaseConsumer<C>) {
    if shared.aborted.load(Ordering::Acquire) {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    if let Ok(slots) = shared.slots.lock() {
        for ((t, p), s) in slots.iter() {
            if let Some(c) = s.state.committable()
                && s.state.committed() != Some(c)
            {
                let _ = tpl.add_partition_offset(t, *p, Offset::Offset(c));
            }
        }
    }
    if tpl.count() > 0 {
        match commit_reported(consumer, &tpl) {
            Ok(()) => {
                metrics::counter!("cdc_relay_commits_total", "result" => "ok", "mode" => "async")
                    .increment(1)
            }
            Err(e) => tracing::warn!(error = %e, "commit request failed"),
        }
    }
}

/// Right after an assignment: learns each new partition's committed offset (for `/status` and
/// lag), and commits, synchronously, every explicit start position (a switch's checkpoint or
/// timestamp source) that is ahead of it. Without this, a partition that starts at the end of a
/// mirror topic and receives nothing would never commit there: the group's offset would stay at
/// the link's last sync, a restart would replay the difference, and lag monitors would show it.
pub fn commit_start_positions<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    assigned: &[Tp],
) {
    if assigned.is_empty() || shared.aborted.load(Ordering::Acquire) {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p) in assigned {
        tpl.add_partition(t, *p);
    }
    let committed = match consumer.committed_offsets(tpl, TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the group's committed offsets of the new assignment");
            TopicPartitionList::new()
        }
    };
    let mut ahead = TopicPartitionList::new();
    let mut commits = Vec::new();
    for tp in assigned {
        let Some(slot) = shared.slot(tp) else {
            continue;
        };
        let group = committed
            .find_partition(&tp.0, tp.1)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        if let Some(g) = group {
            slot.state.set_committed(g);
        }
        if let Some(start) = slot.start
            && group.is_none_or(|g| start > g)
        {
            let _ = ahead.add_partition_offset(&tp.0, tp.1, Offset::Offset(start));
            commits.push((tp.clone(), slot, start));
        }
    }
    if commits.is_empty() {
        return;
    }
    match consumer.commit(&ahead, CommitMode::Sync) {
        Ok(()) => {
            metrics::counter!("cdc_relay_commits_total", "result" => "ok", "mode" => "sync")
                .increment(1);
            for ((t, p), slot, start) in commits {
                slot.state.set_committed(start);
                if slot.state.committable().is_none() {
                    slot.state.set_committable(start);
                }
                // The partition's end, so lag is known at once (not at the next statistics).
                if let Ok((_, high)) = consumer.fetch_watermarks(&t, p, TIMEOUT) {
                    slot.state.set_high_watermark(high);
                }
                tracing::info!(topic = %t, partition = p, offset = start, "start position committed");
            }
        }
        Err(e) => {
            metrics::counter!("cdc_relay_commits_total", "result" => "error", "mode" => "sync")
                .increment(1);
            tracing::warn!(error = %e, "start positions not committed; they are committed once records complete there");
        }
    }
}

/// An asynchronous commit whose result comes back through the consumer's poll as an
/// `OFFSET_COMMIT` event (→ `RelayContext::commit_callback`, which records the committed offsets).
/// rust-rdkafka's `commit(Async)` has librdkafka send no reply at all when no `offset_commit_cb`
/// is configured, so committed offsets would never be known; this asks for the reply on the
/// consumer queue that `poll` serves.
fn commit_reported<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> Result<(), rdkafka::error::RDKafkaErrorCode> {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` and `tpl` are live for the whole call; librdkafka copies the list.
    // `rd_kafka_queue_get_consumer` returns a new reference to the consumer queue, released
    // right after the call; the pending reply holds its own reference.
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            return consumer.commit(tpl, CommitMode::Async).map_err(|e| {
                e.rdkafka_error_code()
                    .unwrap_or(rdkafka::error::RDKafkaErrorCode::Fail)
            });
        }
        let err = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    match rdkafka::error::RDKafkaErrorCode::from(err) {
        rdkafka::error::RDKafkaErrorCode::NoError => Ok(()),
        code => Err(code),
    }
}

/// Performs pending seeks; a failed one is retried at the next tick. Returns the partitions whose
/// seek succeeded (the caller resumes them if they were paused).
pub fn retry_seeks<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
) -> Vec<(Tp, Slot)> {
    let pending: Vec<(Tp, Offset, Slot)> = shared
        .slots
        .lock()
        .map(|s| {
            s.iter()
                .filter_map(|(tp, slot)| slot.seek_to.map(|o| (tp.clone(), o, slot.clone())))
                .collect()
        })
        .unwrap_or_default();
    let mut done = Vec::new();
    for (tp, to, slot) in pending {
        match consumer.seek(&tp.0, tp.1, to, TIMEOUT) {
            Ok(()) => {
                tracing::info!(topic = %tp.0, partition = tp.1, offset = ?to, "partition positioned");
                shared.update(&tp, |s| s.seek_to = None);
                done.push((tp, slot));
            }
            Err(e) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "seek failed; retrying")
            }
        }
    }
    done
}

/// The group's committed offset for `tp`, or the reset policy's end.
pub fn group_offset<C: ConsumerContext>(
    shared: &Shared,
    consumer: &BaseConsumer<C>,
    tp: &Tp,
) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    let fallback = if shared.reset == "latest" {
        Offset::End
    } else {
        Offset::Beginning
    };
    match consumer.committed_offsets(tpl, TIMEOUT) {
        Ok(c) => c
            .find_partition(&tp.0, tp.1)
            .map(|e| e.offset())
            .filter(|o| matches!(o, Offset::Offset(_)))
            .unwrap_or(fallback),
        Err(_) => fallback,
    }
}
