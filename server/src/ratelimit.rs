//! In-memory attempt limiter for login and sign-up.
//!
//! An attempt is reserved (counted) before the expensive work it guards runs, under one lock for
//! every key it touches: concurrent guesses cannot all pass a check that is only recorded later.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts events per key inside a sliding window; each caller names the limit of each key.
#[derive(Debug)]
pub struct AttemptLimiter {
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// How long a throttled caller should wait, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// A refused attempt: how long to wait, and the name of the quota that set that wait (the
/// longest among the used-up ones), so the log can say which limit fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: RetryAfter,
    pub quota: &'static str,
}

/// One key and how many events it may hold in the window; `name` says which kind of limit it
/// is (e.g. "address"), never whose.
#[derive(Debug, Clone)]
pub struct Quota {
    pub name: &'static str,
    pub key: String,
    pub limit: usize,
}

impl Quota {
    pub fn new(name: &'static str, key: impl Into<String>, limit: u32) -> Quota {
        Quota { name, key: key.into(), limit: limit.max(1) as usize }
    }
}

/// Attempts counted by [`AttemptLimiter::reserve`]. Dropping it gives them back (the attempt did
/// not happen: a correct password, a busy server, a database error); [`Reservation::spend`]
/// keeps them (a failed guess).
#[must_use]
pub struct Reservation<'a> {
    limiter: &'a AttemptLimiter,
    keys: Vec<String>,
    at: Instant,
    spent: bool,
}

impl Reservation<'_> {
    pub fn spend(mut self) {
        self.spent = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.spent {
            return;
        }
        let mut events = self.limiter.events.lock().expect("limiter lock");
        for key in &self.keys {
            if let Some(queue) = events.get_mut(key) {
                if let Some(i) = queue.iter().rposition(|t| *t == self.at) {
                    queue.remove(i);
                }
            }
        }
    }
}

const PRUNE_ABOVE_KEYS: usize = 10_000;

impl AttemptLimiter {
    pub fn new(window: Duration) -> Self {
        AttemptLimiter { window, events: Mutex::new(HashMap::new()) }
    }

    /// Counts one attempt against every quota, or none when any is used up: then the answer is
    /// the longest wait among the exhausted ones, and whose it is.
    pub fn reserve(&self, quotas: &[Quota]) -> Result<Reservation<'_>, Refused> {
        let now = Instant::now();
        let mut events = self.events.lock().expect("limiter lock");
        let mut refused: Option<Refused> = None;
        for quota in quotas {
            let Some(queue) = events.get_mut(&quota.key) else { continue };
            Self::expire(queue, now, self.window);
            if queue.len() >= quota.limit {
                let oldest = queue[queue.len() - quota.limit];
                let seconds = self.window.saturating_sub(now - oldest).as_secs().max(1);
                if refused.is_none_or(|r| seconds > r.retry_after.0) {
                    refused = Some(Refused { retry_after: RetryAfter(seconds), quota: quota.name });
                }
            }
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
        if events.len() > PRUNE_ABOVE_KEYS {
            let window = self.window;
            events.retain(|_, q| {
                Self::expire(q, now, window);
                !q.is_empty()
            });
        }
        for quota in quotas {
            events.entry(quota.key.clone()).or_default().push_back(now);
        }
        Ok(Reservation { limiter: self, keys: quotas.iter().map(|q| q.key.clone()).collect(), at: now, spent: false })
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

/// The part of a client address that names one client: an IPv4 address whole, an IPv6 address
/// by its /64 (one subscriber usually gets a whole /64 and can pick any address in it).
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_limit_and_recovers_after_window() {
        let limiter = AttemptLimiter::new(Duration::from_millis(200));
        let alice = [Quota::new("user", "alice", 3)];
        for _ in 0..3 {
            limiter.reserve(&alice).unwrap().spend();
        }
        let refused = limiter.reserve(&alice).err().unwrap();
        assert_eq!(refused, Refused { retry_after: RetryAfter(1), quota: "user" });
        assert!(limiter.reserve(&[Quota::new("user", "bob", 3)]).is_ok(), "keys are independent");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.reserve(&alice).is_ok());
    }

    #[test]
    fn a_dropped_reservation_gives_its_attempt_back() {
        let limiter = AttemptLimiter::new(Duration::from_secs(60));
        let quota = [Quota::new("user", "alice", 2)];
        for _ in 0..10 {
            drop(limiter.reserve(&quota).unwrap());
        }
        limiter.reserve(&quota).unwrap().spend();
        limiter.reserve(&quota).unwrap().spend();
        assert!(limiter.reserve(&quota).is_err());
    }

    #[test]
    fn all_quotas_or_none_are_counted() {
        let limiter = AttemptLimiter::new(Duration::from_secs(60));
        let wide = || Quota::new("wide", "w", 2);
        let narrow = || Quota::new("narrow", "n", 1);
        limiter.reserve(&[narrow()]).unwrap().spend();
        // "narrow" is used up, so "wide" must not be charged for the refused attempt.
        for _ in 0..5 {
            assert_eq!(limiter.reserve(&[wide(), narrow()]).err().map(|r| r.quota), Some("narrow"));
        }
        limiter.reserve(&[wide()]).unwrap().spend();
        limiter.reserve(&[wide()]).unwrap().spend();
        assert_eq!(limiter.reserve(&[wide()]).err().map(|r| r.quota), Some("wide"));
    }

    #[test]
    fn clear_resets_a_key() {
        let limiter = AttemptLimiter::new(Duration::from_secs(60));
        let alice = || [Quota::new("user", "alice", 1)];
        limiter.reserve(&alice()).unwrap().spend();
        assert!(limiter.reserve(&alice()).is_err());
        limiter.clear("alice");
        assert!(limiter.reserve(&alice()).is_ok());
    }

    #[test]
    fn the_refusal_names_the_quota_with_the_longest_wait() {
        let limiter = AttemptLimiter::new(Duration::from_secs(60));
        let early = || Quota::new("early", "e", 1);
        let late = || Quota::new("late", "l", 1);
        limiter.reserve(&[early()]).unwrap().spend();
        std::thread::sleep(Duration::from_millis(1100));
        limiter.reserve(&[late()]).unwrap().spend();
        // Both are used up; "late" frees a second later, so its wait is the one to tell.
        let refused = limiter.reserve(&[early(), late()]).err().unwrap();
        assert_eq!(refused.quota, "late");
        assert_eq!(limiter.reserve(&[late(), early()]).err().unwrap().quota, "late", "whatever the order");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("198.51.100.7"), "198.51.100.7");
        assert_eq!(key("198.51.100.8"), "198.51.100.8");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(key("::ffff:198.51.100.7"), "198.51.100.7", "IPv4 seen through a dual-stack socket");
    }
}
