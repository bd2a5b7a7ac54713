//! Kafka side of the relay: the consumer (one polling thread), offset tracking and cluster probes.
//!
//! Nothing here decodes records or talks to AWS.

pub mod consumer;
pub mod offsets;
pub mod record;
