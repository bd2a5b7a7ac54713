//! Multi-region resilience (DESIGN §6): cluster health, cluster-link lag, the shared failover
//! decision, start offsets on the target and the region-health actor that switches. Nothing here
//! processes records.

pub mod control;
pub mod decide;
pub mod failover;
pub mod health;
pub mod lag;
pub mod start;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Side;

/// Which cluster the consumer uses, and where partitions start after a switch. Written by the
/// failover controller, read by the consumer's spec each time the consumer (re)starts.
#[derive(Debug)]
pub struct Active {
    side: Mutex<Side>,
    /// `(topic on the target cluster, partition)` → offset, for partitions without usable
    /// committed offsets there.
    start_offsets: Mutex<HashMap<(String, i32), i64>>,
}

impl Active {
    pub fn new(side: Side) -> Self {
        Active {
            side: Mutex::new(side),
            start_offsets: Mutex::new(HashMap::new()),
        }
    }

    pub fn side(&self) -> Side {
        self.side.lock().map(|s| *s).unwrap_or(Side::Primary)
    }

    /// Makes `side` active with these start offsets (used by the next consumer start).
    pub fn set(&self, side: Side, start_offsets: HashMap<(String, i32), i64>) {
        if let Ok(mut s) = self.side.lock() {
            *s = side;
        }
        if let Ok(mut o) = self.start_offsets.lock() {
            *o = start_offsets;
        }
    }

    /// The start offsets, once.
    pub fn take_start_offsets(&self) -> HashMap<(String, i32), i64> {
        self.start_offsets
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }
}
