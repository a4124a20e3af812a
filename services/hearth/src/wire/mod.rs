//! The JSON bodies of the API, exactly as they travel. Handlers parse and
//! send these types, and their derived schemas are the OpenAPI description:
//! there is no second copy to drift from.
//!
//! Nothing here knows about HTTP, storage or keys; domain modules convert
//! these into what they validate and store.

pub mod apps;
pub mod audit;
pub mod erasure;
pub mod imports;
pub mod ingest;
pub mod keys;
pub mod lifecycle;
pub mod privacy;
pub mod problem;
pub mod queries;
pub mod research;
pub mod samples;

pub use problem::{ErrorCode, FieldError, ProblemDetails};
