//! portcullis: an authenticating reverse proxy.
//!
//! One access decision ([`decision::decide`]: host, method and path checks → `/.auth/*`
//! endpoints → route → strip inbound identity and hop-by-hop headers → authenticate →
//! authorize), called by the pipeline ([`proxy`]: then inject identity headers → forward), by
//! forward-auth ([`forward_auth`]) and by `portcullis explain` ([`explain`]). Each stage lives in
//! its own module and imports point one way: no module imports one that imports it back
//! (`tests/layout.rs` checks it; its allow-list names the edges still being removed).

pub(crate) mod assertion;
pub mod auth;
pub(crate) mod authz;
pub(crate) mod cache;
pub(crate) mod claims;
pub mod config;
pub(crate) mod decision;
pub mod doctor;
pub(crate) mod error;
pub mod explain;
pub(crate) mod forward_auth;
pub(crate) mod grpc;
pub(crate) mod headers;
pub(crate) mod health;
pub(crate) mod identity;
pub mod import;
pub(crate) mod metrics;
pub mod policy;
pub mod provider;
pub(crate) mod proxy;
pub(crate) mod request;
pub mod routes;
pub mod server;
pub mod session;
pub mod telemetry;
pub(crate) mod timer;
pub mod tls_client;
pub mod trace;
pub(crate) mod upstream;

pub use config::Config;
