//! In-memory attempt limiter for login and sign-up: per username and per client address.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts events per key inside a sliding window.
#[derive(Debug)]
pub struct AttemptLimiter {
    limit: usize,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// How long a throttled caller should wait, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

const PRUNE_ABOVE_KEYS: usize = 10_000;

impl AttemptLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        AttemptLimiter { limit: limit.max(1) as usize, window, events: Mutex::new(HashMap::new()) }
    }

    /// Fails when `key` already used up its attempts in the window.
    pub fn check(&self, key: &str) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let mut events = self.events.lock().expect("limiter lock");
        let Some(queue) = events.get_mut(key) else { return Ok(()) };
        Self::expire(queue, now, self.window);
        if queue.len() >= self.limit {
            let oldest = *queue.front().expect("non-empty");
            let wait = self.window.saturating_sub(now - oldest);
            return Err(RetryAfter(wait.as_secs().max(1)));
        }
        Ok(())
    }

    pub fn record(&self, key: &str) {
        let now = Instant::now();
        let mut events = self.events.lock().expect("limiter lock");
        if events.len() > PRUNE_ABOVE_KEYS {
            let window = self.window;
            events.retain(|_, q| {
                Self::expire(q, now, window);
                !q.is_empty()
            });
        }
        events.entry(key.to_string()).or_default().push_back(now);
    }

    pub fn clear(&self, key: &str) {
        self.events.lock().expect("limiter lock").remove(key);
    }

    fn expire(queue: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while queue.front().is_some_and(|t| now.duration_since(*t) >= window) {
            queue.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_limit_and_recovers_after_window() {
        let limiter = AttemptLimiter::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
            limiter.record("alice");
        }
        let RetryAfter(wait) = limiter.check("alice").unwrap_err();
        assert!(wait >= 1);
        assert!(limiter.check("bob").is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.check("alice").is_ok());
    }

    #[test]
    fn clear_resets_a_key() {
        let limiter = AttemptLimiter::new(1, Duration::from_secs(60));
        limiter.record("alice");
        assert!(limiter.check("alice").is_err());
        limiter.clear("alice");
        assert!(limiter.check("alice").is_ok());
    }
}
