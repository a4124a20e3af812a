//! Query logic over the in-memory projection, independent of HTTP.
//!
//! - [`sources`]: who wrote a sample (app and device), and the priority that
//!   decides which of overlapping sources counts;
//! - [`series`]: cumulative sums with overlapping sources merged, cached per
//!   type as prefix sums so any range costs two binary searches;
//! - [`buckets`]: calendar-aware statistics collections (`P1D` in
//!   `Europe/Berlin`, ...), with [`buckets::run`] callable in-process;
//! - [`changes`]: the anchored change feed;
//! - [`fixture`]: synthetic projections for benchmarks.

pub mod buckets;
pub mod changes;
pub mod fixture;
pub mod series;
pub mod sources;
