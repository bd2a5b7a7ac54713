//! Flow control (DESIGN §3.5): a partition is paused at its bound on in-flight records or bytes,
//! every partition at the process's memory budget, and a partition stopped at a poison record;
//! each is resumed once it and the process are below `resume_below` of their bounds.
//!
//! Decides pause and resume only; called from the poll thread (it uses the `BaseConsumer`).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::assignment::{Shared, Slot, Tp};

/// How often paused partitions are checked for resumption.
pub const FLOW_INTERVAL: Duration = Duration::from_millis(50);

/// Back-pressure bounds.
pub struct Flow {
    pub max_records: usize,
    pub max_bytes: usize,
    pub budget: usize,
    pub resume_below: f64,
}

impl Flow {
    /// After a record of `slot` was dispatched: pause it at its bounds, everything at the budget.
    pub fn after_dispatch<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        shared: &Shared,
        tp: &Tp,
        slot: &Slot,
    ) {
        if !slot.state.is_paused()
            && (slot.state.in_flight() >= self.max_records
                || slot.state.in_flight_bytes() >= self.max_bytes)
        {
            set_paused(consumer, tp, slot, true);
        }
        if shared.status.memory.bytes() >= self.budget {
            self.pause_all(consumer, shared);
        }
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
    /// the low-water marks (`resume_below` of each bound).
    pub fn tick<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, shared: &Shared) {
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
            }
        }
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
        Ok(()) => slot.state.set_paused(paused),
        Err(e) => {
            tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "pause/resume failed")
        }
    }
}
