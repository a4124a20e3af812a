//! Logs, traces and metrics.
//!
//! Telemetry carries routes (as templates), status codes, durations and
//! counts: never a value, a type name, metadata, app-supplied text, a token or
//! a query string. Spans and metrics go to an OTLP endpoint only when the
//! operator sets `OTEL_EXPORTER_OTLP_ENDPOINT`; otherwise nothing leaves.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::lock::LockStateName;
use crate::store::Store;

/// Flushes and stops the exporters when dropped.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

/// Sets up `tracing` (text or JSON on stderr, filtered by `HEARTH_LOG`) and,
/// when an OTLP endpoint is configured, trace and metric export.
pub fn init(log_format: &str) -> Telemetry {
    let filter = EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if log_format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let exporting = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.is_empty());
    let resource = Resource::builder().with_service_name("hearth").build();
    let (tracer, meter) = if exporting {
        match build_exporters(resource) {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("hearth: OpenTelemetry export disabled: {e}");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let otel = tracer
        .as_ref()
        .map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer("hearth")));
    tracing_subscriber::registry()
        .with(otel.with_filter(EnvFilter::new("hearth=info")))
        .with(fmt.with_filter(filter))
        .init();
    if let Some(m) = &meter {
        opentelemetry::global::set_meter_provider(m.clone());
    }
    EXPORTING.store(tracer.is_some(), std::sync::atomic::Ordering::Relaxed);
    Telemetry { tracer, meter }
}

/// Whether spans and metrics leave for an OpenTelemetry endpoint.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports telemetry (the privacy notice says so).
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

type Providers = (Option<SdkTracerProvider>, Option<SdkMeterProvider>);

fn build_exporters(resource: Resource) -> anyhow::Result<Providers> {
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()?;
    let meter = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics).build())
        .with_resource(resource)
        .build();
    Ok((Some(tracer), Some(meter)))
}

fn meter() -> Meter {
    opentelemetry::global::meter("hearth")
}

/// The instruments Hearth records into.
pub struct Metrics {
    pub request_duration: Histogram<f64>,
    pub commit_duration: Histogram<f64>,
    pub commit_samples: Histogram<u64>,
    pub commits: Counter<u64>,
    pub unlock_duration: Histogram<f64>,
}

pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = meter();
        Metrics {
            request_duration: m
                .f64_histogram("hearth.http.server.request.duration")
                .with_unit("s")
                .with_description("HTTP request latency by route template and status")
                .build(),
            commit_duration: m
                .f64_histogram("hearth.log.commit.duration")
                .with_unit("s")
                .with_description("Time to commit one group of records durably")
                .build(),
            commit_samples: m
                .u64_histogram("hearth.log.commit.samples")
                .with_description("Samples per group commit")
                .build(),
            commits: m
                .u64_counter("hearth.log.commits")
                .with_description("Group commits, by outcome")
                .build(),
            unlock_duration: m
                .f64_histogram("hearth.store.unlock.duration")
                .with_unit("s")
                .with_description(
                    "Time from a correct secret to an open store: key derivation, replay and \
                     the rollback check",
                )
                .build(),
        }
    })
}

/// Gauges read from the store at each export: lock state and projection size.
pub fn observe_store(store: Arc<Store>) {
    let m = meter();
    let s = store.clone();
    let _samples = m
        .u64_observable_gauge("hearth.projection.samples")
        .with_description("Samples in the in-memory projection (0 unless unlocked)")
        .with_callback(move |o| o.observe(s.projection_samples() as u64, &[]))
        .build();
    let s = store.clone();
    let _snapshot_records = m
        .u64_observable_gauge("hearth.snapshot.age.records")
        .with_description("Log records applied since the newest snapshot (while unlocked)")
        .with_callback(move |o| {
            if let Some((records, _)) = s.snapshot_age() {
                o.observe(records, &[]);
            }
        })
        .build();
    let s = store.clone();
    let _snapshot_seconds = m
        .f64_observable_gauge("hearth.snapshot.age.seconds")
        .with_unit("s")
        .with_description(
            "Seconds since the newest snapshot was taken while records followed it (while unlocked)",
        )
        .with_callback(move |o| {
            if let Some((_, seconds)) = s.snapshot_age().filter(|(_, s)| s.is_finite()) {
                o.observe(seconds, &[]);
            }
        })
        .build();
    let s = store.clone();
    let _pending_batches = m
        .u64_observable_gauge("hearth.pending.batches")
        .with_description("Writes accepted while locked, waiting for the next unlock")
        .with_callback(move |o| o.observe(s.pending().totals().batches, &[]))
        .build();
    let s = store.clone();
    let _pending_bytes = m
        .u64_observable_gauge("hearth.pending.bytes")
        .with_unit("By")
        .with_description("Sealed bytes of writes waiting for the next unlock")
        .with_callback(move |o| o.observe(s.pending().totals().bytes, &[]))
        .build();
    let _state = m
        .u64_observable_gauge("hearth.lock.state")
        .with_description("1 for the current lock state")
        .with_callback(move |o| {
            let now = store.state();
            for state in [
                LockStateName::Uninitialised,
                LockStateName::Sealed,
                LockStateName::Locked,
                LockStateName::Unlocked,
            ] {
                let name = serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                o.observe(u64::from(state == now), &[KeyValue::new("state", name)]);
            }
        })
        .build();
}

/// A span and a latency measurement per request, labelled with the route
/// template (never the path or query, which may hold ids and type names).
pub async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    metrics().request_duration.record(
        started.elapsed().as_secs_f64(),
        &[
            KeyValue::new("http.route", route),
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ],
    );
    response
}
