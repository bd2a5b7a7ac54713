//! Flow control (DESIGN §3.5): a partition is paused at its bound on in-flight records or bytes,
//! every partition at the process's memory budget, and a partition stopped at a poison record;
//! each is resumed once it and the process are below `resume_below` of their bounds.
//!
//! Decides pause and resume only; called from the poll thread (it uses the `BaseConsumer`).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::assignment::{Shared, Slot, Tp};

/// How often the bounds are checked while nothing is held back (the memory gauge, stopped
/// partitions).
pub const FLOW_INTERVAL: Duration = Duration::from_millis(50);
/// How often paused partitions are checked for resumption while some are held back: a paused
/// partition's fetched records are dropped by librdkafka, so every moment it stays paused after
/// it could resume is lost throughput.
pub const RESUME_INTERVAL: Duration = Duration::from_millis(2);

/// Back-pressure bounds.
pub struct Flow {
    pub max_records: usize,
    pub max_bytes: usize,
    pub budget: usize,
    pub resume_below: f64,
}

impl Flow {
    /// After a record of `slot` was dispatched: pause it at its bounds, everything at the budget.
    /// Returns whether something was paused.
    pub fn after_dispatch<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        shared: &Shared,
        tp: &Tp,
        slot: &Slot,
    ) -> bool {
        let mut paused = false;
        if !slot.state.is_paused()
            && (slot.state.in_flight() >= self.max_records
                || slot.state.in_flight_bytes() >= self.max_bytes)
        {
            set_paused(consumer, tp, slot, true);
            paused = true;
        }
        if shared.status.memory.bytes() >= self.budget {
            self.pause_all(consumer, shared);
            paused = true;
        }
        paused
    }

    /// The global memory budget is spent: pause every partition until it falls below low water.
    fn pause_all<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, shared: &Shared) {
        let mut paused = 0;
        for (tp, s) in shared.snapshot() {
            if !s.state.is_paused() {
                set_paused(consumer, &tp, &s, true);
                paused += 1;
            }
        }
        if paused > 0 {
            metrics::counter!("cdc_relay_memory_budget_pauses_total").increment(1);
            tracing::debug!(
                in_flight_bytes = shared.status.memory.bytes(),
                budget = self.budget,
                "memory budget reached: all partitions paused"
            );
        }
    }

    /// Pauses stopped partitions; resumes back-pressured ones once they and the process are below
    /// the low-water marks (`resume_below` of each bound). Returns whether some partition is
    /// still held back by a bound (not by a stop).
    pub fn tick<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, shared: &Shared) -> bool {
        let mut held = false;
        let memory = shared.status.memory.bytes();
        metrics::gauge!("cdc_relay_in_flight_bytes").set(memory as f64);
        let global_ok = (memory as f64) <= self.budget as f64 * self.resume_below;
        for (tp, s) in shared.snapshot() {
            let stopped = s.state.stopped().is_some();
            if stopped && !s.state.is_paused() {
                set_paused(consumer, &tp, &s, true);
            } else if !stopped
                && s.state.is_paused()
                && global_ok
                && (s.state.in_flight() as f64) <= self.max_records as f64 * self.resume_below
                && (s.state.in_flight_bytes() as f64) <= self.max_bytes as f64 * self.resume_below
            {
                set_paused(consumer, &tp, &s, false);
            } else if !stopped && s.state.is_paused() {
                held = true;
            }
        }
        held
    }
}

/// Pauses or resumes one partition at the client and records it in its state.
pub fn set_paused<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &Tp,
    slot: &Slot,
    paused: bool,
) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    let r = if paused {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match r {
        Ok(()) => {
            tracing::debug!(topic = %tp.0, partition = tp.1, paused, in_flight = slot.state.in_flight(), "partition flow");
            slot.state.set_paused(paused);
            if !paused {
                wake_fetcher(consumer, tp);
            }
        }
        Err(e) => {
            tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "pause/resume failed")
        }
    }
}

/// librdkafka 2.12 does not wake a partition's broker thread when the partition is resumed: the
/// thread notices only after its idle wait (up to 1 s, `rd_kafka_max_block_ms`), so every
/// pause/resume cycle would stall the partition for up to a second. A watermark query for the
/// partition sends a ListOffsets request to its leader, which wakes that thread at once; the
/// answer is not needed (1 ms of waiting at most).
fn wake_fetcher<C: ConsumerContext>(consumer: &BaseConsumer<C>, tp: &Tp) {
    let _ = consumer.fetch_watermarks(&tp.0, tp.1, Duration::from_millis(1));
}
