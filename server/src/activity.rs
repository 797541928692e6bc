//! What the HTTP layer sees of each user's activity (app requests forwardAuth and the gateway
//! let through, visits to the portal's pages), kept in memory until the idle check next writes
//! it down. A leaf: the request path only touches a map.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Activity {
    /// Owner → unix seconds of the last app request.
    apps: Mutex<HashMap<String, i64>>,
    /// User → unix seconds of the last portal page they opened.
    portal: Mutex<HashMap<String, i64>>,
}

/// Everything seen since the last reading.
#[derive(Debug, Default)]
pub struct Seen {
    pub apps: HashMap<String, i64>,
    pub portal: HashMap<String, i64>,
}

impl Activity {
    pub fn touch_app(&self, owner: &str) {
        touch(&self.apps, owner);
    }

    pub fn touch_portal(&self, user: &str) {
        touch(&self.portal, user);
    }

    /// Everything seen since the last call, emptied.
    pub fn take(&self) -> Seen {
        Seen {
            apps: std::mem::take(&mut *self.apps.lock().expect("activity")),
            portal: std::mem::take(&mut *self.portal.lock().expect("activity")),
        }
    }
}

fn touch(map: &Mutex<HashMap<String, i64>>, who: &str) {
    let now = crate::db::now();
    let mut map = map.lock().expect("activity");
    match map.get_mut(who) {
        Some(at) => *at = now,
        None => {
            map.insert(who.to_string(), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_seen_is_read_once() {
        let activity = Activity::default();
        activity.touch_app("alice");
        activity.touch_portal("bob");
        let seen = activity.take();
        assert_eq!(seen.apps.keys().collect::<Vec<_>>(), vec!["alice"]);
        assert_eq!(seen.portal.keys().collect::<Vec<_>>(), vec!["bob"]);
        let again = activity.take();
        assert!(again.apps.is_empty() && again.portal.is_empty());
    }
}
