//! The health of one cluster as a small explicit state machine (DESIGN §6):
//! Healthy → Suspect (a probe failed) → Down (probes kept failing for `unhealthy_after`) →
//! Recovering (a probe succeeded again) → Healthy (probes kept succeeding for `recovered_after`).
//!
//! Pure logic on `tokio::time::Instant` (tests run on paused time). It must not probe, decide a
//! failover or perform I/O; the region-health actor feeds it probe results and acts on changes.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Probes fail since `since`; not yet long enough to call it down.
    Suspect {
        since: Instant,
    },
    /// Declared down at `since`.
    Down {
        since: Instant,
    },
    /// Probes succeed again since `since`; not yet long enough to trust it.
    Recovering {
        since: Instant,
    },
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Suspect { .. } => "suspect",
            Health::Down { .. } => "down",
            Health::Recovering { .. } => "recovering",
        }
    }

    /// Whether the cluster counts as up (`cdc_relay_region_up`): healthy or only suspect.
    pub fn is_up(self) -> bool {
        matches!(self, Health::Healthy | Health::Suspect { .. })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    pub unhealthy_after: Duration,
    pub recovered_after: Duration,
}

#[derive(Debug, Clone)]
pub struct HealthMachine {
    cfg: HealthConfig,
    state: Health,
}

impl HealthMachine {
    pub fn new(cfg: HealthConfig) -> Self {
        HealthMachine {
            cfg,
            state: Health::Healthy,
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    /// Feeds one probe result; returns the new state when it changed.
    pub fn observe(&mut self, ok: bool, now: Instant) -> Option<Health> {
        let next = match (self.state, ok) {
            (Health::Healthy, true) => Health::Healthy,
            (Health::Healthy, false) => Health::Suspect { since: now },
            (Health::Suspect { .. }, true) => Health::Healthy,
            (Health::Suspect { since }, false) if now - since >= self.cfg.unhealthy_after => {
                Health::Down { since: now }
            }
            (s @ Health::Suspect { .. }, false) => s,
            (s @ Health::Down { .. }, false) => s,
            (Health::Down { .. }, true) => Health::Recovering { since: now },
            (Health::Recovering { .. }, false) => Health::Down { since: now },
            (Health::Recovering { since }, true) if now - since >= self.cfg.recovered_after => {
                Health::Healthy
            }
            (s @ Health::Recovering { .. }, true) => s,
        };
        let changed = std::mem::discriminant(&next) != std::mem::discriminant(&self.state);
        self.state = next;
        changed.then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> HealthMachine {
        HealthMachine::new(HealthConfig {
            unhealthy_after: Duration::from_secs(5),
            recovered_after: Duration::from_secs(30),
        })
    }

    async fn tick(m: &mut HealthMachine, ok: bool) -> Option<&'static str> {
        tokio::time::advance(Duration::from_secs(1)).await;
        m.observe(ok, Instant::now()).map(Health::as_str)
    }

    #[tokio::test(start_paused = true)]
    async fn down_only_after_unhealthy_after_of_failures() {
        let mut m = machine();
        assert_eq!(tick(&mut m, true).await, None);
        assert_eq!(tick(&mut m, false).await, Some("suspect"));
        assert!(m.state().is_up());
        for _ in 0..4 {
            assert_eq!(tick(&mut m, false).await, None, "suspect for < 5 s");
        }
        assert_eq!(tick(&mut m, false).await, Some("down"));
        assert!(!m.state().is_up());
        assert_eq!(tick(&mut m, false).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blip_is_forgiven() {
        let mut m = machine();
        assert_eq!(tick(&mut m, false).await, Some("suspect"));
        assert_eq!(tick(&mut m, false).await, None);
        assert_eq!(tick(&mut m, true).await, Some("healthy"));
        // The next failure starts a new suspicion period.
        assert_eq!(tick(&mut m, false).await, Some("suspect"));
        for _ in 0..4 {
            assert_eq!(tick(&mut m, false).await, None);
        }
        assert_eq!(tick(&mut m, false).await, Some("down"));
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_must_hold_for_recovered_after() {
        let mut m = machine();
        tick(&mut m, false).await;
        for _ in 0..5 {
            tick(&mut m, false).await;
        }
        assert_eq!(m.state().as_str(), "down");
        assert_eq!(tick(&mut m, true).await, Some("recovering"));
        for _ in 0..29 {
            assert_eq!(tick(&mut m, true).await, None);
        }
        // A failure while recovering: down again, and the clock restarts.
        assert_eq!(tick(&mut m, false).await, Some("down"));
        assert_eq!(tick(&mut m, true).await, Some("recovering"));
        for _ in 0..29 {
            assert_eq!(tick(&mut m, true).await, None);
        }
        assert_eq!(tick(&mut m, true).await, Some("healthy"));
    }
}
