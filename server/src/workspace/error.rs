//! The workspace layer's one error enum (runtime errors wrapped, with storage ones lifted out
//! because users are told about them in their own words).

use super::lock::LockError;
use super::runtime::RuntimeError;
use super::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0}")]
    Runtime(RuntimeError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}'s account is not approved")]
    NotApproved(String),
    /// The actor may not do this (a caller forgot to check, or tried anyway).
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("cannot prepare {path}: {source}")]
    Storage { path: String, source: std::io::Error },
    /// Said to users as is (the dashboard shows it), so it names no server path; the log does.
    #[error("the workspace storage is full ({free_mib} MiB free, {needed_mib} MiB needed), so nothing was started; an administrator has to free space")]
    StorageFull { path: String, free_mib: u64, needed_mib: u64 },
    /// Said to users and admins as is: it names the setting and the fix.
    #[error("{setting} = {value} asks for GPUs, but this Docker engine offers none (no NVIDIA runtime, no CDI GPU devices): set it to auto or none, or install the NVIDIA Container Toolkit on the server")]
    NoGpus { setting: String, value: String },
    /// Said to the admin as is.
    #[error("{username}'s workspace is {state}: stop it first (its files must not change while they are copied)")]
    MustBeStopped { username: String, state: &'static str },
    #[error("all {0} port blocks are taken")]
    NoFreeSlot(u32),
    #[error("stored workspace credentials could not be opened (was the secret key changed?)")]
    Secrets,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("routes: {0}")]
    Routes(String),
    /// Said to the user as is: the new credential is safe in the database either way.
    #[error("the new {credential} is saved and takes effect when the workspace next starts, but it could not be applied to the running workspace now: {why}")]
    CredentialNotApplied { credential: &'static str, why: String },
}

impl From<RuntimeError> for WorkspaceError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Storage { path, source } => WorkspaceError::Storage { path, source },
            RuntimeError::StorageFull { path, free_mib, needed_mib } => WorkspaceError::StorageFull { path, free_mib, needed_mib },
            other => WorkspaceError::Runtime(other),
        }
    }
}

