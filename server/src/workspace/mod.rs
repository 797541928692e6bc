//! One VM-like workspace per user. The plan (`spec`) is pure; the runtime seam (`runtime`)
//! has a Docker implementation (`docker`, over the engine driver `engine`), a Swarm one
//! (`swarm`, one service per user on several machines) and an in-memory
//! one for tests (`fake`); the service (`service`, with `lifecycle`, `views`, `reconcile`)
//! decides, over the stored `records`, the `progress` board, the `live` picture and what it
//! learnt of each workspace's `services`.

pub mod docker;
pub mod engine;
mod error;
pub mod fake;
mod lifecycle;
mod live;
pub mod lock;
pub mod names;
mod progress;
mod reconcile;
pub mod records;
pub mod runtime;
pub mod service;
pub mod services;
pub mod spec;
pub mod swarm;
mod views;

pub use docker::{DockerRuntime, DockerSettings};
pub use engine::{Engine, EngineError};
pub use lifecycle::{Credential, CredentialApplied};
pub use reconcile::ReconcileReport;
pub use runtime::{NodeView, RuntimeError, WorkspaceRuntime};
pub use swarm::{SwarmRuntime, SwarmSettings};
pub use service::{Actor, HeldGpus, Owner, WorkspaceError, Workspaces};
pub use views::{log_line_matches, LOG_PAGE_TAIL, NOVNC_LAUNCH};
#[cfg(test)]
mod lifecycle_tests;
