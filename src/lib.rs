//! cdc-relay: moves CDC change events from Kafka into AWS without losing or regressing data.
//!
//! The crate is a library (`cdc_relay`) driven by a thin binary (`src/main.rs`). See
//! `ARCHITECTURE.md` for the codemap and `DESIGN.md` (shared) for the target design.
//! This file only declares modules; it must not hold logic.

pub mod admin;
pub mod config;
pub mod decode;
pub mod demo;
pub mod dlq;
pub mod error_class;
pub mod event;
pub mod generate;
pub mod kafka;
pub mod lab;
pub mod partition;
pub mod record;
pub mod region;
pub mod relay;
pub mod route;
pub mod sinks;
pub mod status;
pub mod supervision;
pub mod telemetry;
pub mod verify;
