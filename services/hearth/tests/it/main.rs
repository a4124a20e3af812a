//! The integration tests: one binary (one link of the crate), a module per
//! area, every test against the real server on SQLite and on Postgres.
//! `support` is the shared harness; `process` runs the `hearth` binary as
//! a process of its own (crashes, restarts, the commands).

// The server runs in this process, with the allocator its binary uses:
// the memory tests look at what a freed block still holds.
#[global_allocator]
static ALLOCATOR: zero_on_free::ZeroOnFree<mimalloc::MiMalloc> =
    zero_on_free::ZeroOnFree(mimalloc::MiMalloc);

#[macro_use]
mod support;

mod access_pages;
mod api;
mod app_pages;
mod apps;
mod audit;
mod bounds;
mod browser;
mod catalogue;
mod consent_browser;
mod correlations;
mod durability;
mod edge;
mod erasure;
mod import_apple;
mod import_hae;
mod keys;
mod memory;
mod oauth;
mod owner_pages;
mod owner_walk;
mod pending;
mod privacy;
mod privacy_notice;
mod process;
mod queries;
mod research;
mod research_export;
mod rollback;
mod settings_pages;
mod snapshots;
mod study_pages;
mod sync;
mod telemetry;
