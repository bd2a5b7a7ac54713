//! cdc-relay: moves CDC change events from Kafka into AWS without losing or regressing data.
//!
//! The crate is a library (`cdc_relay`) driven by a thin binary (`src/main.rs`). See
//! `ARCHITECTURE.md` for the codemap and `DESIGN.md` (shared) for the target design.
//! This file only declares modules; it must not hold logic.

pub mod config;
pub mod event;
pub mod kafka;
pub mod supervision;
