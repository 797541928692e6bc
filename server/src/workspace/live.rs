//! One in-memory picture of every workspace on the runtime, fed by the runtime's events and a
//! periodic resynchronisation (see `reconcile::watch_events`). While it is being followed,
//! dashboards read it and never ask the runtime; otherwise (the CLI, a broken event stream)
//! each read asks the runtime, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use super::runtime::Observed;

#[derive(Default)]
pub struct LiveState {
    /// By owner.
    observed: RwLock<HashMap<String, Observed>>,
    following: AtomicBool,
}

impl LiveState {
    /// Whether the picture is current: the event stream is up and a full listing was read.
    pub fn following(&self) -> bool {
        self.following.load(Ordering::Acquire)
    }

    pub fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::Release);
    }

    pub fn get(&self, owner: &str) -> Option<Observed> {
        self.observed.read().expect("live state").get(owner).cloned()
    }

    pub fn snapshot(&self) -> Vec<Observed> {
        let mut all: Vec<Observed> = self.observed.read().expect("live state").values().cloned().collect();
        all.sort_by(|a, b| a.owner.cmp(&b.owner));
        all
    }

    /// One workspace as just observed (None: it is gone). True when that changed the picture.
    pub fn update(&self, owner: &str, observed: Option<Observed>) -> bool {
        let mut all = self.observed.write().expect("live state");
        match observed {
            Some(o) => all.insert(owner.to_string(), o.clone()).as_ref() != Some(&o),
            None => all.remove(owner).is_some(),
        }
    }

    /// A full listing. Listings carry no start time, so a known one is kept while the
    /// workspace stays in the same state. True when anything changed.
    pub fn replace_all(&self, listed: Vec<Observed>) -> bool {
        let mut all = self.observed.write().expect("live state");
        let mut next = HashMap::new();
        for mut o in listed {
            let Some(owner) = o.owner.clone() else { continue };
            if let Some(known) = all.get(&owner) {
                if o.started_at.is_none() && known.status == o.status && known.plan_hash == o.plan_hash {
                    o.started_at = known.started_at;
                }
            }
            next.insert(owner, o);
        }
        let changed = *all != next;
        *all = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::runtime::RuntimeStatus;

    fn seen(owner: &str, status: RuntimeStatus, started_at: Option<i64>) -> Observed {
        Observed { name: format!("workspace-{owner}"), owner: Some(owner.into()), status, plan_hash: Some("h1".into()), started_at, node: None }
    }

    #[test]
    fn a_listing_keeps_known_start_times_and_drops_the_gone() {
        let live = LiveState::default();
        assert!(live.update("alice", Some(seen("alice", RuntimeStatus::Running, Some(1_700_000_000)))));
        assert!(!live.update("alice", Some(seen("alice", RuntimeStatus::Running, Some(1_700_000_000)))), "no change, no news");
        live.update("bob", Some(seen("bob", RuntimeStatus::Exited, None)));
        let changed = live.replace_all(vec![seen("alice", RuntimeStatus::Running, None)]);
        assert!(changed, "bob is gone");
        assert_eq!(live.get("alice").unwrap().started_at, Some(1_700_000_000));
        assert_eq!(live.get("bob"), None);
        live.replace_all(vec![seen("alice", RuntimeStatus::Exited, None)]);
        assert_eq!(live.get("alice").unwrap().started_at, None, "a stopped workspace has no start time");
    }
}
