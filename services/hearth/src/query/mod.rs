//! Query logic over the in-memory projection, independent of HTTP.
//!
//! - [`sources`]: who wrote a sample (app and device), and the priority that
//!   decides which of overlapping sources counts;
//! - [`series`]: cumulative sums with overlapping sources merged, cached per
//!   type as prefix sums so any range costs two binary searches;
//! - [`buckets`]: calendar-aware statistics collections (`P1D` in
//!   `Europe/Berlin`, ...), with [`buckets::run`] callable in-process;
//! - [`samples`]: a page of samples as one caller sees them;
//! - [`changes`]: the anchored change feed;
//! - `fixture`: synthetic projections for benchmarks and tests, compiled
//!   only for this crate's tests and with the `fixture` feature.
//!
//! Running a bucket query in-process (the benchmark's shape): with the
//! `fixture` feature on, build a projection with
//! `fixture::overlapping_minute_steps(start_us, 1826)` (five years of minute
//! steps from a watch and a phone, ~5.3 M samples) or with
//! `projection::ProjectionBuilder` from your own events; parse the request
//! once with `buckets::Interval::parse("P1D")`, `buckets::parse_tz(
//! "Europe/Berlin")` and `buckets::default_anchor(start_us, &interval, &tz)`
//! (or `buckets::parse_anchor`); then time `buckets::run(&view,
//! &buckets::BucketRequest { ty: catalogue::lookup("step_count")?, start_us,
//! end_us, interval: &interval, anchor: &anchor, sources: None, by_source:
//! false })`, with `view` the owner's [`crate::view::View`]. The first call
//! builds and caches the merged series of the type (one pass); later calls
//! reuse it until the type or the source priority changes.

pub mod buckets;
pub mod changes;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
pub mod samples;
pub mod series;
pub mod sources;
