//! One VM-like Docker container per user: the spec, the Docker driver, the lock and the service.

pub mod engine;
pub mod lock;
pub mod service;
pub mod spec;

pub use engine::{Engine, EngineError};
pub use service::{Credential, CredentialApplied, ReconcileReport, WorkspaceError, Workspaces};
