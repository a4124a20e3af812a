//! Hearth: a self-hosted, encrypted personal health data store.
//!
//! Where things live:
//! - [`keys`]: the key hierarchy: root key, key slots, recovery key;
//! - [`lock`]: the lock model (uninitialised, sealed, unlocked, locked);
//! - [`store`]: the store handle that holds the lock state and the open store;
//! - [`log`]: the encrypted append-only log, its single writer, replay, verify;
//! - [`projection`]: the in-memory columns every query reads;
//! - [`policy`]: what each caller may read and write; [`caller`]: who asks;
//! - [`samples`]: validating request samples and presenting stored ones;
//! - [`wire`]: the JSON bodies of the API, whose schemas are its description;
//! - [`apps`]: the app registry, grants and token state (kept across lock);
//! - [`clock`]: the wall clock, read nowhere else;
//! - [`oauth`]: the authorization server: consent, codes, tokens;
//! - [`storage`]: SQLite and Postgres behind one trait;
//! - [`query`]: buckets, source merging and the change feed over projections;
//! - [`api`]: the HTTP surface; [`web`]: the pages for the owner's browser;
//! - [`catalogue`]: sample types and units;
//! - [`import`]: other tools' formats as samples (Apple Health export jobs,
//!   Health Auto Export pushes); [`export`]: the owner's full export;
//! - [`keys`]: the key hierarchy (root key, key slots, data keys);
//! - [`research`]: studies, consent, receipts and the studies' token endpoint;
//! - [`audit`]: every disclosure (apps' reads, study exports) as log events;
//!   [`privacy`]: the privacy notice generated from the live configuration;
//! - [`telemetry`]: logs, traces and metrics that carry no health data;
//! - [`startup`]: building and running the server; [`hardening`]: no core dumps;
//!   [`spread`]: CPU-bound work over the cores.

#![forbid(unsafe_code)]

pub mod api;
pub mod apps;
pub mod audit;
pub mod caller;
pub mod catalogue;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod export;
pub mod hardening;
pub mod import;
pub mod keys;
pub mod lock;
pub mod log;
pub mod oauth;
pub mod pending;
pub mod policy;
pub mod privacy;
pub mod projection;
pub mod query;
pub mod research;
pub mod samples;
pub mod spread;
pub mod startup;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod view;
pub mod web;
pub mod wire;
