//! Full-jitter exponential backoff (AWS architecture blog's "full jitter").
//!
//! Computes delays only; it must not sleep on its own or decide what is retryable.

use std::time::Duration;

use rand::Rng;

/// A uniformly random duration in `[0, cap]`.
pub fn full_jitter(cap: Duration) -> Duration {
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Exponential backoff state: `min(max, initial * multiplier^attempt)`, full jitter applied.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Backoff {
            initial,
            max,
            multiplier: multiplier.max(1.0),
            attempt: 0,
        }
    }

    /// The cap for the current attempt (before jitter).
    pub fn cap(&self) -> Duration {
        let f = self
            .multiplier
            .powi(i32::try_from(self.attempt.min(64)).unwrap_or(64));
        self.initial.mul_f64(f.min(1e9)).min(self.max)
    }

    /// The next delay to sleep (jittered), advancing the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let d = full_jitter(self.cap());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_grow_and_saturate() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 2.0);
        let caps: Vec<_> = (0..6)
            .map(|_| {
                let c = b.cap();
                let d = b.next_delay();
                assert!(d <= c);
                c.as_millis()
            })
            .collect();
        assert_eq!(caps, vec![10, 20, 40, 80, 100, 100]);
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(10));
    }
}
