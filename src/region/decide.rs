//! The failover decision (DESIGN §6) as one pure function: from the two clusters' health, the
//! shared control record (or its absence), this pod's epoch and side, and the configured modes, it
//! says what to do after a probe round. The region-health actor (`failover.rs`) carries it out.
//!
//! Pure: no I/O, no clock of its own (health states carry their `tokio::time` instants, so tests
//! run on paused time like `health.rs`). It must not switch, write the control record or touch the
//! consumer.

use super::control::ControlRecord;
use super::health::Health;
use crate::config::{FailbackMode, FailoverMode, Side};

/// What is known of the shared decision this round.
#[derive(Debug, Clone, Copy)]
pub enum Shared<'a> {
    /// No control table is configured: pods decide locally (if allowed).
    NotConfigured,
    /// The control table could not be read.
    Unreachable,
    /// The current record.
    Record(&'a ControlRecord),
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub primary: Health,
    pub secondary: Health,
    /// The side this pod consumes now.
    pub active: Side,
    /// The highest epoch this pod has seen.
    pub epoch: u64,
    pub mode: FailoverMode,
    pub allow_local_decision: bool,
    pub failback: FailbackMode,
    /// Set by an unplanned failover; cleared by any planned switch.
    pub failback_armed: bool,
    pub shared: Shared<'a>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Stay,
    /// The shared record names another side at an epoch not older than ours: go there.
    Follow {
        to: Side,
        epoch: u64,
    },
    /// The primary is down: propose the switch in the control record, conditional on `seen`.
    Propose {
        to: Side,
        seen: u64,
    },
    /// Switch without a shared decision (`allow_local_decision`); `bump_epoch` without a control
    /// table, not when it is only unreachable (its epoch is unknown).
    SwitchLocally {
        to: Side,
        bump_epoch: bool,
    },
    /// The primary has been healthy for `failback_after` after an unplanned failover, with
    /// `failback = automatic`: run the planned failback.
    Failback,
}

/// The action for this probe round.
pub fn decide(i: &Inputs<'_>) -> Action {
    let primary_down = matches!(i.primary, Health::Down { .. });
    let want = (i.mode == FailoverMode::Automatic
        && primary_down
        && i.active == Side::Primary
        && i.secondary.is_up())
    .then_some(Side::Secondary);
    let record = match i.shared {
        Shared::NotConfigured | Shared::Unreachable => {
            return match want {
                Some(to) if i.allow_local_decision => Action::SwitchLocally {
                    to,
                    bump_epoch: matches!(i.shared, Shared::NotConfigured),
                },
                _ => Action::Stay,
            };
        }
        Shared::Record(r) => r,
    };
    // A decision older than what this pod has seen is never acted on.
    if record.epoch >= i.epoch
        && let Some(to) = Side::parse(&record.active_cluster)
        && to != i.active
    {
        return Action::Follow {
            to,
            epoch: record.epoch,
        };
    }
    if i.failback_armed
        && i.failback == FailbackMode::Automatic
        && i.active == Side::Secondary
        && matches!(i.primary, Health::Healthy)
    {
        return Action::Failback;
    }
    match want {
        // Conditional on the epoch the table holds now.
        Some(to) => Action::Propose {
            to,
            seen: record.epoch,
        },
        None => Action::Stay,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::region::health::{HealthConfig, HealthMachine};

    fn record(active: &str, epoch: u64) -> ControlRecord {
        ControlRecord {
            group: "g".into(),
            active_cluster: active.into(),
            epoch,
            decided_by: "pod".into(),
            decided_at_ms: 0,
            reason: String::new(),
            checkpoint: BTreeMap::new(),
            checkpoint_ts: BTreeMap::new(),
            checkpoint_at_ms: None,
        }
    }

    /// A primary and a secondary fed one probe per second.
    struct Clusters {
        primary: HealthMachine,
        secondary: HealthMachine,
    }

    impl Clusters {
        fn new() -> Self {
            let cfg = HealthConfig {
                unhealthy_after: Duration::from_secs(5),
                recovered_after: Duration::from_secs(10),
            };
            Clusters {
                primary: HealthMachine::new(cfg),
                secondary: HealthMachine::new(cfg),
            }
        }

        async fn probe(&mut self, primary_up: bool, secondary_up: bool, seconds: u64) {
            for _ in 0..seconds {
                tokio::time::advance(Duration::from_secs(1)).await;
                self.primary.observe(primary_up, Instant::now());
                self.secondary.observe(secondary_up, Instant::now());
            }
        }

        fn inputs<'a>(&self, active: Side, epoch: u64, shared: Shared<'a>) -> Inputs<'a> {
            Inputs {
                primary: self.primary.state(),
                secondary: self.secondary.state(),
                active,
                epoch,
                mode: FailoverMode::Automatic,
                allow_local_decision: false,
                failback: FailbackMode::Manual,
                failback_armed: false,
                shared,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_primary_is_proposed_only_after_unhealthy_after() {
        let mut c = Clusters::new();
        let r = record("primary", 0);
        c.probe(false, true, 4).await;
        assert_eq!(
            decide(&c.inputs(Side::Primary, 0, Shared::Record(&r))),
            Action::Stay,
            "suspect, not yet down"
        );
        c.probe(false, true, 2).await;
        assert_eq!(
            decide(&c.inputs(Side::Primary, 0, Shared::Record(&r))),
            Action::Propose {
                to: Side::Secondary,
                seen: 0
            }
        );
        // Not when the secondary is down too, nor in manual mode.
        let mut both = Clusters::new();
        both.probe(false, false, 10).await;
        assert_eq!(
            decide(&both.inputs(Side::Primary, 0, Shared::Record(&r))),
            Action::Stay
        );
        let mut manual = c.inputs(Side::Primary, 0, Shared::Record(&r));
        manual.mode = FailoverMode::Manual;
        assert_eq!(decide(&manual), Action::Stay);
    }

    #[tokio::test(start_paused = true)]
    async fn every_pod_follows_the_record_and_never_an_older_one() {
        let mut c = Clusters::new();
        c.probe(true, true, 3).await;
        // Another pod switched the group (the primary looks fine from here): follow.
        let r = record("secondary", 1);
        assert_eq!(
            decide(&c.inputs(Side::Primary, 0, Shared::Record(&r))),
            Action::Follow {
                to: Side::Secondary,
                epoch: 1
            }
        );
        // A stale record (epoch 1) after this pod saw epoch 2 back on the primary: ignored.
        assert_eq!(
            decide(&c.inputs(Side::Primary, 2, Shared::Record(&r))),
            Action::Stay
        );
        // Already there: nothing to do.
        assert_eq!(
            decide(&c.inputs(Side::Secondary, 1, Shared::Record(&r))),
            Action::Stay
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_shared_decision_only_allowed_pods_switch() {
        let mut c = Clusters::new();
        c.probe(false, true, 6).await;
        for shared in [Shared::NotConfigured, Shared::Unreachable] {
            assert_eq!(decide(&c.inputs(Side::Primary, 0, shared)), Action::Stay);
            let mut local = c.inputs(Side::Primary, 0, shared);
            local.allow_local_decision = true;
            assert_eq!(
                decide(&local),
                Action::SwitchLocally {
                    to: Side::Secondary,
                    bump_epoch: matches!(shared, Shared::NotConfigured)
                }
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn automatic_failback_waits_for_a_healthy_primary() {
        let mut c = Clusters::new();
        c.probe(false, true, 6).await;
        let r = record("secondary", 1);
        let mut i = c.inputs(Side::Secondary, 1, Shared::Record(&r));
        i.failback = FailbackMode::Automatic;
        i.failback_armed = true;
        assert_eq!(decide(&i), Action::Stay, "primary still down");
        c.probe(true, true, 5).await;
        let mut i = c.inputs(Side::Secondary, 1, Shared::Record(&r));
        i.failback = FailbackMode::Automatic;
        i.failback_armed = true;
        assert_eq!(decide(&i), Action::Stay, "recovering, not yet healthy");
        c.probe(true, true, 6).await;
        let mut i = c.inputs(Side::Secondary, 1, Shared::Record(&r));
        i.failback = FailbackMode::Automatic;
        i.failback_armed = true;
        assert_eq!(decide(&i), Action::Failback);
        // Manual failback, or a pod that did not fail over unplanned: never on its own.
        i.failback = FailbackMode::Manual;
        assert_eq!(decide(&i), Action::Stay);
        i.failback = FailbackMode::Automatic;
        i.failback_armed = false;
        assert_eq!(decide(&i), Action::Stay);
    }
}
