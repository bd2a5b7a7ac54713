//! Assignment bookkeeping: the partitions this consumer owns, each with its partition actor and
//! shared state (`Slot`), and what the poll thread, the rebalance callbacks and the `Consumer`
//! actor share (`Shared`): spawning actors, draining them, stopping them.
//!
//! It must not call the Kafka client (the poll thread does) or process records.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorRef};
use rdkafka::topic_partition_list::Offset;

use crate::decode::Decoder;
use crate::partition::{PartitionActor, PartitionArgs, PartitionDeps, PartitionMsg};
use crate::status::{PartitionState, StatusBoard};

/// `(topic on this cluster, partition)`.
pub type Tp = (String, i32);

/// One assigned partition: its actor and shared state.
#[derive(Clone)]
pub struct Slot {
    pub actor: ActorRef<PartitionMsg>,
    pub state: Arc<PartitionState>,
    /// A seek that has not succeeded yet (a start position after a switch, or the last completed
    /// offset after an actor restart). Until it does, records of this partition are not
    /// dispatched: they would run ahead of the actor's tracker.
    pub seek_to: Option<Offset>,
    /// An explicit start position handed in for this partition (after a switch): committed on
    /// assignment when it is ahead of the group's offset.
    pub start: Option<i64>,
}

/// State shared by the poll thread, its rebalance callbacks and the `Consumer` actor.
pub struct Shared {
    pub slots: Mutex<HashMap<Tp, Slot>>,
    pub deps: Arc<PartitionDeps>,
    /// Decodes with the registry of the cluster this consumer reads.
    pub decoder: Decoder,
    /// The configured name of the cluster this consumer reads (traces show it).
    pub cluster: Arc<str>,
    pub status: Arc<StatusBoard>,
    pub rt: tokio::runtime::Handle,
    pub supervisor: ActorCell,
    pub drain_timeout: Duration,
    /// Set while closing: rebalance callbacks then only stop actors (no drain, no commit).
    pub closing: AtomicBool,
    /// Set for an abort (crash simulation, or leaving a dead cluster): nothing more is committed.
    pub aborted: AtomicBool,
    pub reset: String,
    /// Topic names on this cluster are `topic_prefix + <source topic>` (mirror topics).
    pub topic_prefix: String,
    /// Where to start partitions that have no usable committed offset on this cluster (after a
    /// failover: the checkpoint or a timestamp lookup). Taken on assign.
    pub start_offsets: Mutex<HashMap<Tp, i64>>,
    /// When each kind of client error was last logged (rate limit).
    pub error_logged: Mutex<HashMap<&'static str, Instant>>,
}

impl Shared {
    /// A copy of the assigned partitions' slots (the lock is not held while they are used).
    pub fn snapshot(&self) -> Vec<(Tp, Slot)> {
        self.slots
            .lock()
            .map(|s| s.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn slot(&self, tp: &Tp) -> Option<Slot> {
        self.slots.lock().ok().and_then(|s| s.get(tp).cloned())
    }

    /// Applies `f` to the slot of `tp`, if still assigned.
    pub fn update(&self, tp: &Tp, f: impl FnOnce(&mut Slot)) {
        if let Ok(mut slots) = self.slots.lock()
            && let Some(s) = slots.get_mut(tp)
        {
            f(s);
        }
    }

    /// The arguments of a partition actor for `state`.
    pub fn partition_args(&self, state: &Arc<PartitionState>) -> PartitionArgs {
        PartitionArgs {
            deps: Arc::clone(&self.deps),
            decoder: self.decoder.clone(),
            cluster: Arc::clone(&self.cluster),
            state: Arc::clone(state),
        }
    }

    /// Spawns the actor of a newly assigned partition and records its slot, with the start
    /// position handed in for it, if any.
    pub fn assign(&self, tp: Tp) {
        if self.slot(&tp).is_some() {
            return;
        }
        let state = PartitionState::new(&tp.0, tp.1, Arc::clone(&self.status.memory));
        let spawned = self.rt.block_on(Actor::spawn_linked(
            None,
            PartitionActor,
            self.partition_args(&state),
            self.supervisor.clone(),
        ));
        let actor = match spawned {
            Ok((actor, _)) => actor,
            Err(e) => {
                tracing::error!(topic = %tp.0, partition = tp.1, error = %e, "cannot spawn partition actor");
                return;
            }
        };
        let start = self
            .start_offsets
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&tp));
        self.status.insert_partition(Arc::clone(&state));
        if let Ok(mut s) = self.slots.lock() {
            s.insert(
                tp,
                Slot {
                    actor,
                    state,
                    seek_to: start.map(Offset::Offset),
                    start,
                },
            );
        }
    }

    /// Removes the slots of `tps` (revoked) and returns them.
    pub fn unassign<'a>(&self, tps: impl Iterator<Item = Tp> + 'a) -> Vec<(Tp, Slot)> {
        let Ok(mut slots) = self.slots.lock() else {
            return Vec::new();
        };
        tps.filter_map(|tp| slots.remove(&tp).map(|s| (tp, s)))
            .collect()
    }

    /// Asks the actors to drain and waits for them, up to `deadline`.
    pub fn drain(&self, slots: &[(Tp, Slot)], deadline: Duration) {
        let until = Instant::now() + deadline;
        let waits: Vec<_> = slots
            .iter()
            .filter_map(|(tp, s)| {
                s.state.set_draining();
                let (tx, rx) = std_mpsc::channel();
                s.actor
                    .cast(PartitionMsg::Drain(tx))
                    .ok()
                    .map(|_| (tp.clone(), rx))
            })
            .collect();
        for (tp, rx) in waits {
            let left = until.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                tracing::warn!(topic = %tp.0, partition = tp.1, "drain deadline passed with writes in flight; committing what is complete");
            }
        }
    }

    /// Stops the actors of `slots`; the partitions leave `/status` and the per-partition metrics
    /// (this instance no longer owns them).
    pub fn stop_actors(&self, slots: &[(Tp, Slot)]) {
        for ((t, p), s) in slots {
            s.actor.stop(Some("partition revoked".into()));
            self.status.remove_partition(t, *p);
        }
    }
}
