//! The integration tests: one binary (one link of the crate), a module per
//! area, every test against the real server on SQLite and on Postgres.
//! `support` is the shared harness.

#[macro_use]
mod support;

mod api;
mod apps;
mod bounds;
mod catalogue;
mod consent_browser;
mod correlations;
mod durability;
mod edge;
mod oauth;
mod privacy;
mod queries;
mod snapshots;
mod sync;
mod telemetry;
