//! Traffic seen for each workspace's apps (forwardAuth and the app gateway tell it), kept in
//! memory until the idle check next writes it down. A leaf: the request path only touches a map.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Activity {
    /// Owner → unix seconds of the last app request.
    apps: Mutex<HashMap<String, i64>>,
}

impl Activity {
    pub fn touch(&self, owner: &str) {
        let now = crate::db::now();
        let mut apps = self.apps.lock().expect("activity");
        match apps.get_mut(owner) {
            Some(at) => *at = now,
            None => {
                apps.insert(owner.to_string(), now);
            }
        }
    }

    /// Everything seen since the last call, emptied.
    pub fn take(&self) -> HashMap<String, i64> {
        std::mem::take(&mut *self.apps.lock().expect("activity"))
    }
}
