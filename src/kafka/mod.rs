//! Kafka side of the relay: the `Consumer` actor and its poll thread, and what the thread does on
//! the group's behalf — assignment bookkeeping, rebalance callbacks, flow control (pause/resume
//! at the in-flight bounds), commits and seeks.
//!
//! Nothing here decodes records or talks to AWS; records are handed to partition actors.

pub mod assignment;
pub mod commit;
pub mod consumer;
pub mod flow;
pub mod poll;
pub mod rebalance;
