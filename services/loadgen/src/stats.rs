//! Latency histograms (HDR, microsecond resolution), counts and the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency a histogram records exactly; longer ones are clamped.
const MAX_MICROS: u64 = 600_000_000;

/// How one request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this status.
    Status(u16),
    /// No answer: `timeout`, `connect` or `transport`.
    Failed(&'static str),
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        match self {
            Outcome::Status(s) => *s >= 400,
            Outcome::Failed(_) => true,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Failed(kind) => (*kind).to_string(),
        }
    }
}

pub struct OpStats {
    pub latency: Histogram<u64>,
    pub errors: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"),
            errors: 0,
        }
    }
}

/// What one worker saw; workers' stats are merged at the end.
#[derive(Default)]
pub struct Stats {
    pub ops: BTreeMap<String, OpStats>,
    /// Requests by outcome label (`201`, `404`, `timeout`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Failed requests by `(operation, outcome)`.
    pub errors: BTreeMap<(String, String), u64>,
    /// Samples carried by writes the server acknowledged.
    pub samples_acknowledged: u64,
    /// Of those, samples the server reported as new.
    pub samples_added: u64,
    /// The first few error details, for diagnosis.
    pub first_errors: Vec<String>,
}

const KEPT_ERRORS: usize = 5;

impl Stats {
    pub fn record(&mut self, op: &str, latency: Duration, outcome: &Outcome, detail: &str) {
        let entry = match self.ops.get_mut(op) {
            Some(e) => e,
            None => self.ops.entry(op.to_string()).or_insert_with(OpStats::new),
        };
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        entry.latency.saturating_record(micros);
        let label = outcome.label();
        if outcome.is_error() {
            entry.errors += 1;
            *self
                .errors
                .entry((op.to_string(), label.clone()))
                .or_default() += 1;
            if self.first_errors.len() < KEPT_ERRORS {
                let detail: String = detail.chars().take(300).collect();
                self.first_errors.push(format!("{op}: {label}: {detail}"));
            }
        }
        *self.outcomes.entry(label).or_default() += 1;
    }

    /// Counts an error found in a successful answer (a retried batch that
    /// stored samples twice, say) under `op`, without counting a request.
    pub fn flag(&mut self, op: &str, label: &str, detail: &str) {
        if let Some(entry) = self.ops.get_mut(op) {
            entry.errors += 1;
        }
        *self
            .errors
            .entry((op.to_string(), label.to_string()))
            .or_default() += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push(format!("{op}: {label}: {detail}"));
        }
    }

    pub fn merge(&mut self, other: Stats) {
        for (op, s) in other.ops {
            match self.ops.get_mut(&op) {
                Some(mine) => {
                    mine.latency.add(&s.latency).expect("same bounds");
                    mine.errors += s.errors;
                }
                None => {
                    self.ops.insert(op, s);
                }
            }
        }
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.samples_acknowledged += other.samples_acknowledged;
        self.samples_added += other.samples_added;
        for e in other.first_errors {
            if self.first_errors.len() < KEPT_ERRORS {
                self.first_errors.push(e);
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[derive(Serialize, Debug, Clone)]
pub struct OpReport {
    pub operation: String,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct ErrorReport {
    pub operation: String,
    pub status: String,
    pub count: u64,
}

/// The outcome of a run, printed as a table or JSON.
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub backend: String,
    pub concurrency: usize,
    pub elapsed_secs: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub samples_acknowledged: u64,
    pub samples_added: u64,
    pub samples_per_second: f64,
    pub errors: u64,
    pub status_counts: BTreeMap<String, u64>,
    pub errors_by_status: Vec<ErrorReport>,
    pub operations: Vec<OpReport>,
    /// Requests made before the clock started (seeding), not in the figures above.
    pub setup_requests: u64,
    pub setup_errors: u64,
    pub first_errors: Vec<String>,
    pub notes: Vec<String>,
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 1000.0 * 100.0).round() / 100.0
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        scenario: &str,
        target: &str,
        backend: &str,
        concurrency: usize,
        elapsed: Duration,
        stats: &Stats,
        setup: &Stats,
        notes: Vec<String>,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let operations = stats
            .ops
            .iter()
            .map(|(op, s)| OpReport {
                operation: op.clone(),
                requests: s.latency.len(),
                errors: s.errors,
                per_second: round2(s.latency.len() as f64 / secs),
                p50_ms: ms(s.latency.value_at_quantile(0.50)),
                p90_ms: ms(s.latency.value_at_quantile(0.90)),
                p99_ms: ms(s.latency.value_at_quantile(0.99)),
                max_ms: ms(s.latency.max()),
            })
            .collect();
        let mut first_errors = setup.first_errors.clone();
        first_errors.extend(stats.first_errors.iter().cloned());
        first_errors.truncate(KEPT_ERRORS);
        Report {
            scenario: scenario.to_string(),
            target: target.to_string(),
            backend: backend.to_string(),
            concurrency,
            elapsed_secs: round2(secs),
            requests: stats.requests(),
            requests_per_second: round2(stats.requests() as f64 / secs),
            samples_acknowledged: stats.samples_acknowledged,
            samples_added: stats.samples_added,
            samples_per_second: round2(stats.samples_acknowledged as f64 / secs),
            errors: stats.error_count(),
            status_counts: stats.outcomes.clone(),
            errors_by_status: setup
                .errors
                .iter()
                .map(|((op, status), count)| ErrorReport {
                    operation: format!("setup/{op}"),
                    status: status.clone(),
                    count: *count,
                })
                .chain(
                    stats
                        .errors
                        .iter()
                        .map(|((op, status), count)| ErrorReport {
                            operation: op.clone(),
                            status: status.clone(),
                            count: *count,
                        }),
                )
                .collect(),
            operations,
            setup_requests: setup.requests(),
            setup_errors: setup.error_count(),
            first_errors,
            notes,
        }
    }

    /// Whether every request, seeding included, succeeded.
    pub fn ok(&self) -> bool {
        self.errors == 0 && self.setup_errors == 0 && self.requests > 0
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} against {} ({}), {} apps, {:.1}s",
            self.scenario, self.target, self.backend, self.concurrency, self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "requests: {} ({:.1}/s)   samples written: {} ({:.1}/s, {} new)   errors: {}",
            self.requests,
            self.requests_per_second,
            self.samples_acknowledged,
            self.samples_per_second,
            self.samples_added,
            self.errors + self.setup_errors
        );
        if self.setup_requests > 0 {
            let _ = writeln!(
                out,
                "setup: {} requests before the clock started, {} errors",
                self.setup_requests, self.setup_errors
            );
        }
        let _ = writeln!(
            out,
            "\n{:<24} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "operation", "requests", "req/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for op in &self.operations {
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:>9.1} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                op.operation,
                op.requests,
                op.per_second,
                op.errors,
                op.p50_ms,
                op.p90_ms,
                op.p99_ms,
                op.max_ms
            );
        }
        let statuses: Vec<String> = self
            .status_counts
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(out, "\nresponses by status: {}", statuses.join(", "));
        if !self.errors_by_status.is_empty() {
            let _ = writeln!(out, "errors by operation and status:");
            for e in &self.errors_by_status {
                let _ = writeln!(out, "  {:<24} {:>9} x {}", e.operation, e.status, e.count);
            }
            for e in &self.first_errors {
                let _ = writeln!(out, "  e.g. {e}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_report() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=100u64 {
            a.record("list", Duration::from_millis(i), &Outcome::Status(200), "");
        }
        b.record(
            "list",
            Duration::from_millis(500),
            &Outcome::Status(503),
            "sealed",
        );
        b.record(
            "write",
            Duration::from_millis(5),
            &Outcome::Failed("timeout"),
            "",
        );
        b.samples_acknowledged = 10;
        a.merge(b);
        assert_eq!(a.requests(), 102);
        assert_eq!(a.error_count(), 2);
        a.flag("list", "duplicated", "stored twice");
        assert_eq!(a.requests(), 102);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.ops["list"].errors, 2);
        a.flag("list", "duplicated", "stored twice");
        a.flag("list", "duplicated", "stored twice");
        let r = Report::build(
            "mixed",
            "http://127.0.0.1:1",
            "test",
            2,
            Duration::from_secs(2),
            &a,
            &Stats::default(),
            vec![],
        );
        assert!(!r.ok());
        assert_eq!(r.requests_per_second, 51.0);
        assert_eq!(r.samples_per_second, 5.0);
        let list = &r.operations[0];
        assert_eq!(list.operation, "list");
        assert_eq!(list.requests, 101);
        assert!((49.0..=52.0).contains(&list.p50_ms), "{}", list.p50_ms);
        assert!((499.0..=501.0).contains(&list.max_ms), "{}", list.max_ms);
        assert_eq!(r.status_counts["503"], 1);
        assert_eq!(r.status_counts["timeout"], 1);
        assert_eq!(r.errors, 5);
        assert_eq!(r.first_errors.len(), 5);
        assert!(r.table().contains("errors by operation and status"));
    }
}
