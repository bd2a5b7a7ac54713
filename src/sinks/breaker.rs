//! Circuit breaker per sink target (DESIGN §3.5, §4): closed → open after `failures` consecutive
//! failures or an error ratio over `window` → half-open probes after `open_for` → closed.
//!
//! A pure state machine on `tokio::time::Instant` (so tests run on paused time). It decides
//! whether a request may go out and records results; it must not sleep, retry or perform I/O.
//! Every transition is logged and exported as `cdc_relay_circuit_state{sink}`.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Breaker settings (per sink section in the config: `[<sink>.breaker]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many consecutive failed requests.
    pub failures: u32,
    /// Or open when the failure ratio over `window` reaches this (0 < ratio <= 1) ...
    pub error_ratio: f64,
    /// ... and at least `min_requests` requests were made within it.
    pub min_requests: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the breaker stays open before it lets probes through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Concurrent probe requests allowed while half-open; this many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            error_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(2),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Problems with these settings, as `(field, why)`.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut p = Vec::new();
        if self.failures == 0 {
            p.push(("failures", "must be at least 1"));
        }
        if !(self.error_ratio > 0.0 && self.error_ratio <= 1.0) {
            p.push(("error_ratio", "must be in (0, 1]"));
        }
        if self.window.is_zero() {
            p.push(("window", "must be greater than 0"));
        }
        if self.open_for.is_zero() {
            p.push(("open_for", "must be greater than 0"));
        }
        if self.half_open_probes == 0 {
            p.push(("half_open_probes", "must be at least 1"));
        }
        p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

/// Whether a request may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send it; report the result with `record`.
    Allowed,
    /// Send it as a half-open probe; report the result with `record`.
    Probe,
    /// Fail fast: the breaker is open (or all probe slots are taken).
    Rejected,
}

#[derive(Debug)]
pub struct Breaker {
    sink: String,
    cfg: BreakerConfig,
    state: State,
    consecutive: u32,
    recent: VecDeque<(Instant, bool)>,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    transitions: u64,
}

impl Breaker {
    pub fn new(sink: &str, cfg: BreakerConfig) -> Self {
        metrics::gauge!("cdc_relay_circuit_state", "sink" => sink.to_string()).set(0.0);
        Breaker {
            sink: sink.to_string(),
            cfg,
            state: State::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            opened_at: None,
            probes_in_flight: 0,
            probe_successes: 0,
            transitions: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// How many transitions happened so far (tests, `/status`).
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    fn set(&mut self, to: State, why: &str) {
        if self.state == to {
            return;
        }
        let from = self.state;
        self.state = to;
        self.transitions += 1;
        metrics::gauge!("cdc_relay_circuit_state", "sink" => self.sink.clone()).set(to.gauge());
        metrics::counter!("cdc_relay_circuit_transitions_total", "sink" => self.sink.clone(), "to" => to.as_str())
            .increment(1);
        match to {
            State::Open => {
                tracing::warn!(sink = %self.sink, from = from.as_str(), to = to.as_str(), why, "circuit breaker opened; requests fail fast")
            }
            _ => {
                tracing::info!(sink = %self.sink, from = from.as_str(), to = to.as_str(), why, "circuit breaker transition")
            }
        }
    }

    /// Asks to send one request at `now`.
    pub fn acquire(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed => Permit::Allowed,
            State::Open => {
                let since = self.opened_at.map_or(Duration::MAX, |t| now - t);
                if since >= self.cfg.open_for {
                    self.set(State::HalfOpen, "open_for elapsed");
                    self.probes_in_flight = 0;
                    self.probe_successes = 0;
                    self.acquire(now)
                } else {
                    Permit::Rejected
                }
            }
            State::HalfOpen => {
                if self.probes_in_flight < self.cfg.half_open_probes {
                    self.probes_in_flight += 1;
                    Permit::Probe
                } else {
                    Permit::Rejected
                }
            }
        }
    }

    /// Reports the result of a request sent under `permit`. `ok = false` only for failures that
    /// say the sink is unhealthy (timeouts, 5xx, throttling, connection errors), not for records
    /// the sink rightly rejected.
    pub fn record(&mut self, permit: Permit, ok: bool, now: Instant) {
        self.recent.push_back((now, ok));
        while let Some((t, _)) = self.recent.front() {
            if now - *t > self.cfg.window || self.recent.len() > 10_000 {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.consecutive = if ok { 0 } else { self.consecutive + 1 };
        match (self.state, permit) {
            (State::HalfOpen, Permit::Probe) => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                if ok {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.cfg.half_open_probes {
                        self.recent.clear();
                        self.set(State::Closed, "probes succeeded");
                    }
                } else {
                    self.opened_at = Some(now);
                    self.set(State::Open, "probe failed");
                }
            }
            (State::Closed, _) if !ok => {
                let n = self.recent.len() as u32;
                let failed = self.recent.iter().filter(|(_, ok)| !ok).count() as f64;
                let ratio_trips =
                    n >= self.cfg.min_requests && failed / f64::from(n) >= self.cfg.error_ratio;
                if self.consecutive >= self.cfg.failures {
                    self.opened_at = Some(now);
                    self.set(State::Open, "consecutive failures");
                } else if ratio_trips {
                    self.opened_at = Some(now);
                    self.set(State::Open, "error ratio over window");
                }
            }
            // Results of requests sent before the breaker opened change nothing.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            error_ratio: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(2),
            half_open_probes: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_then_probes_close() {
        let mut b = Breaker::new("test", cfg());
        let t = Instant::now;
        for _ in 0..2 {
            assert_eq!(b.acquire(t()), Permit::Allowed);
            b.record(Permit::Allowed, false, t());
        }
        assert_eq!(b.state(), State::Closed);
        b.record(Permit::Allowed, false, t());
        assert_eq!(b.state(), State::Open);
        // Fails fast while open.
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(b.acquire(t()), Permit::Rejected);
        // After open_for: half-open, two probe slots, the third is rejected.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.acquire(t()), Permit::Probe);
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.acquire(t()), Permit::Probe);
        assert_eq!(b.acquire(t()), Permit::Rejected);
        b.record(Permit::Probe, true, t());
        assert_eq!(b.state(), State::HalfOpen);
        b.record(Permit::Probe, true, t());
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.acquire(t()), Permit::Allowed);
        assert_eq!(b.transitions(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_a_full_period() {
        let mut b = Breaker::new("test", cfg());
        let t = Instant::now;
        for _ in 0..3 {
            b.record(Permit::Allowed, false, t());
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.acquire(t()), Permit::Probe);
        b.record(Permit::Probe, false, t());
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(b.acquire(t()), Permit::Rejected);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(b.acquire(t()), Permit::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn error_ratio_over_window_opens() {
        let mut b = Breaker::new("test", cfg());
        let t = Instant::now;
        // Alternating results never reach 3 consecutive failures, but 50% over >= 10 requests does.
        for i in 0..9 {
            b.record(Permit::Allowed, i % 2 == 0, t());
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert_eq!(b.state(), State::Closed, "below min_requests");
        b.record(Permit::Allowed, false, t());
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let mut b = Breaker::new("test", cfg());
        let t = Instant::now;
        for i in 0..10 {
            b.record(Permit::Allowed, i % 2 == 0, t());
        }
        assert_eq!(b.state(), State::Open);
        // Close via probes, then the old failures must not count against the new window.
        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..2 {
            let p = b.acquire(t());
            b.record(p, true, t());
        }
        assert_eq!(b.state(), State::Closed);
        tokio::time::advance(Duration::from_secs(11)).await;
        b.record(Permit::Allowed, false, t());
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_results_while_open_change_nothing() {
        let mut b = Breaker::new("test", cfg());
        let t = Instant::now;
        for _ in 0..3 {
            b.record(Permit::Allowed, false, t());
        }
        assert_eq!(b.state(), State::Open);
        b.record(Permit::Allowed, true, t());
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn bad_settings_are_reported() {
        let bad = BreakerConfig {
            failures: 0,
            error_ratio: 1.5,
            min_requests: 0,
            window: Duration::ZERO,
            open_for: Duration::ZERO,
            half_open_probes: 0,
        };
        assert_eq!(bad.problems().len(), 5);
        assert!(BreakerConfig::default().problems().is_empty());
    }
}
