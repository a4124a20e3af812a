//! Bringing data in from other tools' formats.

pub mod health_auto_export;
