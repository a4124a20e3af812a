//! Wall-clock time, read in one place.
//!
//! Whatever stamps or compares calendar time (event times, code and token
//! expiry, "today" for a date of birth) asks a [`Clock`], so tests can move
//! time forward without waiting; `clippy.toml` forbids reading the wall
//! clock anywhere else. Durations (back-off, rate limits, sessions, the idle
//! lock, timings) use the monotonic `std::time::Instant`, which no clock
//! change can move.

use std::sync::atomic::{AtomicI64, Ordering};

/// The time the registry, the writer and the authorization server go by.
#[derive(Default)]
pub struct Clock {
    offset_us: AtomicI64,
}

impl Clock {
    /// Microseconds since the Unix epoch, UTC.
    #[allow(clippy::disallowed_methods)] // The one read of the wall clock.
    pub fn now_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros() + self.offset_us.load(Ordering::Relaxed)
    }

    /// Today's date in the server's time zone.
    pub fn today(&self) -> jiff::civil::Date {
        let now = jiff::Timestamp::from_microsecond(self.now_us()).unwrap_or(jiff::Timestamp::MAX);
        now.to_zoned(jiff::tz::TimeZone::system()).date()
    }

    /// Moves this clock forward (for tests of expiry).
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_us
            .fetch_add(by.as_micros() as i64, Ordering::Relaxed);
    }
}
