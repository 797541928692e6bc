//! Berth's server: configuration, database, domain services and the HTTP surface.
//! The `berth` binary (src/main.rs) is a thin command-line front.

pub mod accounts;
pub mod activity;
pub mod api;
pub mod app_errors;
pub mod audit;
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
pub mod remote;
pub mod routes;
pub mod ratelimit;
pub mod self_service;
pub mod serve;
pub mod sessions;
pub mod sharing;
pub mod ssh_keys;
pub mod sso;
pub mod telemetry;
pub mod tokens;
pub mod username;
pub mod web;
pub mod web_static;
pub mod workspace;
