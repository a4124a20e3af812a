//! The append-only event log: record format, hash chain, the single writer,
//! replay at unlock and offline verification.

pub mod chain;
pub mod event;
pub mod head;
pub mod replay;
pub mod writer;

pub use chain::{LogHead, LogRecord};
pub use event::Event;
