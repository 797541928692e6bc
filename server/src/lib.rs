//! Berth's server: configuration, database, domain services and the HTTP surface.
//! The `berth` binary (src/main.rs) is a thin command-line front.

pub mod accounts;
pub mod activity;
pub mod backend;
pub mod cli;
pub mod config;
pub mod cookies;
pub mod crypto;
pub mod db;
pub mod disk;
pub mod hosts;
pub mod metrics;
pub mod monitor;
pub mod passwords;
pub mod portal;
pub mod routes;
pub mod ratelimit;
pub mod serve;
pub mod sessions;
pub mod sharing;
pub mod sso;
pub mod telemetry;
pub mod username;
pub mod web;
pub mod web_static;
pub mod workspace;
