//! portcullis: an authenticating reverse proxy.
//!
//! The request pipeline (see [`proxy`]) reads top to bottom:
//! normalize path → match route → strip inbound identity headers → authenticate → authorize →
//! inject identity headers → forward. Each stage lives in its own module.

pub mod config;
pub mod routes;

pub use config::Config;
