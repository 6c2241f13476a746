//! portcullis: an authenticating reverse proxy.
//!
//! The request pipeline (see [`proxy`]) reads top to bottom:
//! normalize path → match route → strip inbound identity headers → authenticate → authorize →
//! inject identity headers → forward. Each stage lives in its own module; arrows point one way:
//! the pipeline calls stages, stages call `provider`/`session`, nothing reaches back up.

pub mod assertion;
pub mod auth;
pub mod authz;
pub mod claims;
pub mod config;
pub mod decision;
pub mod error;
pub mod explain;
pub mod forward_auth;
pub mod headers;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod provider;
pub mod proxy;
pub mod request;
pub mod routes;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod timer;
pub mod upstream;

pub use config::Config;
