//! What each workspace's current (or last) operation is doing, step by step, for the card.
//! Every change bumps a counter that open dashboards wait on (see `Workspaces::changes`).

use std::collections::HashMap;
use std::sync::Mutex;

use app::model::{ProgressStep, StepState, WorkspaceState};
use tokio::sync::watch;

/// The steps of the operation running (or last run) on one workspace.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub busy: Option<WorkspaceState>,
    pub steps: Vec<ProgressStep>,
    pub error: Option<String>,
}

pub struct ProgressBoard {
    all: Mutex<HashMap<String, Progress>>,
    changes: watch::Sender<u64>,
}

impl Default for ProgressBoard {
    fn default() -> Self {
        ProgressBoard { all: Mutex::new(HashMap::new()), changes: watch::channel(0).0 }
    }
}

impl ProgressBoard {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Tells the waiting dashboards something changed (progress here, or the runtime's state).
    pub fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn get(&self, username: &str) -> Progress {
        self.all.lock().expect("progress").get(username).cloned().unwrap_or_default()
    }

    pub fn busy(&self, username: &str) -> Option<WorkspaceState> {
        self.all.lock().expect("progress").get(username).and_then(|p| p.busy)
    }

    /// A new operation, its steps all pending.
    pub fn begin(&self, username: &str, busy: WorkspaceState, steps: &[&str]) {
        let steps = steps
            .iter()
            .map(|name| ProgressStep { name: name.to_string(), state: StepState::Pending, detail: None })
            .collect();
        self.all.lock().expect("progress").insert(username.to_string(), Progress { busy: Some(busy), steps, error: None });
        self.bump();
    }

    pub fn step(&self, username: &str, name: &str, state: StepState, detail: Option<String>) {
        {
            let mut all = self.all.lock().expect("progress");
            let progress = all.entry(username.to_string()).or_default();
            match progress.steps.iter_mut().find(|s| s.name == name) {
                Some(step) => {
                    step.state = state;
                    step.detail = detail;
                }
                None => progress.steps.push(ProgressStep { name: name.to_string(), state, detail }),
            }
        }
        self.bump();
    }

    /// The operation ended; steps still running when it failed are marked failed.
    pub fn finish(&self, username: &str, error: Option<String>) {
        {
            let mut all = self.all.lock().expect("progress");
            let progress = all.entry(username.to_string()).or_default();
            progress.busy = None;
            if error.is_some() {
                for step in progress.steps.iter_mut().filter(|s| s.state == StepState::Running) {
                    step.state = StepState::Failed;
                }
            }
            progress.error = error;
        }
        self.bump();
    }

    pub fn forget(&self, username: &str) {
        self.all.lock().expect("progress").remove(username);
        self.bump();
    }

    /// Runs `op` as the step `name` of the current operation.
    pub async fn run_step<T, E: std::fmt::Display>(
        &self,
        username: &str,
        name: &str,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.step(username, name, StepState::Running, None);
        let result = op.await;
        match &result {
            Ok(_) => self.step(username, name, StepState::Done, None),
            Err(e) => self.step(username, name, StepState::Failed, Some(e.to_string())),
        }
        result
    }
}
