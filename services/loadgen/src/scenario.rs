//! What the simulated apps do. The scenarios mirror the k6 scripts in
//! `loadtest/`:
//!
//! - `phone-sync`: every app is a phone syncing batches of 100–1000 samples,
//!   now and then retrying its last batch (same sync ids: must be a no-op
//!   `200`);
//! - `dashboard`: statistics over day, week, month and year ranges;
//! - `mixed`: phones, a watch, a scale, dashboards, a browser paging through
//!   lists and a by-id reader, all at once;
//! - `spike`: the mixed apps, a tenth of them for the first 30 % of the run,
//!   all of them for the next 30 %, a tenth again to the end. Operations are
//!   reported per phase (`base/`, `spike/`, `after/`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::{Method, RequestBuilder, Url};
use serde_json::Value;
use uuid::Uuid;

use crate::gen::{self, Kind};
use crate::options::{Options, ScenarioName};
use crate::stats::{Outcome, Report, Stats};

/// One simulated app's behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Batched writes of 100–1000 samples, retrying a batch now and then.
    Phone,
    /// Statistics over ranges; now and then the type catalogue.
    Dashboard,
    /// Small writes: 1–20 heart-rate samples.
    Watch,
    /// Lists, following `next_cursor` for up to five pages.
    Browser,
    /// Reads samples by id.
    Lookup,
    /// One body-mass or glucose reading at a time.
    Scale,
}

/// The apps of the mixed scenario, in the order workers take them.
pub const MIXED_APPS: &[App] = &[
    App::Phone,
    App::Dashboard,
    App::Watch,
    App::Browser,
    App::Lookup,
    App::Scale,
];

/// Largest number of known sample ids kept for by-id reads.
const ID_POOL: usize = 20_000;
/// Pages a browser follows at most.
const MAX_PAGES: usize = 5;
/// Seeding (before the clock starts) gives up after this long.
const SEED_TIMEOUT: Duration = Duration::from_secs(300);

/// Known sample ids (a reservoir sample of everything acknowledged).
#[derive(Default)]
struct IdPool {
    ids: Vec<Uuid>,
    seen: u64,
}

impl IdPool {
    fn add(&mut self, rng: &mut impl Rng, id: Uuid) {
        self.seen += 1;
        if self.ids.len() < ID_POOL {
            self.ids.push(id);
        } else {
            let slot = rng.gen_range(0..self.seen);
            if (slot as usize) < ID_POOL {
                self.ids[slot as usize] = id;
            }
        }
    }

    fn pick(&self, rng: &mut impl Rng) -> Option<Uuid> {
        self.ids.choose(rng).copied()
    }
}

/// What every worker shares: the client, the clock and the request budget.
pub struct Shared {
    client: reqwest::Client,
    base: Url,
    samples_url: Url,
    statistics_url: Url,
    types_url: Url,
    deadline: RwLock<Instant>,
    issued: AtomicU64,
    max_requests: u64,
    stop: AtomicBool,
    ids: Mutex<IdPool>,
}

/// A response: its status and body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Shared {
    /// Sends one request and records it under `op`. `None`: the clock or the
    /// request budget ran out, or the response never came (recorded as an
    /// error); nothing more should be sent by this worker step.
    async fn call(&self, stats: &mut Stats, op: &str, request: RequestBuilder) -> Option<Answer> {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= *self.deadline.read() {
            return None;
        }
        if self.issued.fetch_add(1, Ordering::Relaxed) >= self.max_requests {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        let started = Instant::now();
        let result = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.bytes().await.map(|b| (status, b.to_vec()))
            }
            Err(e) => Err(e),
        };
        let latency = started.elapsed();
        match result {
            Ok((status, body)) => {
                let outcome = Outcome::Status(status);
                let detail = if outcome.is_error() {
                    String::from_utf8_lossy(&body).into_owned()
                } else {
                    String::new()
                };
                stats.record(op, latency, &outcome, &detail);
                Some(Answer { status, body })
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                stats.record(op, latency, &Outcome::Failed(kind), &e.to_string());
                None
            }
        }
    }

    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        self.client.request(method, url.clone())
    }
}

/// Timing of the spike scenario, relative to the start of the load.
#[derive(Clone, Copy)]
struct SpikePlan {
    start: Instant,
    spike_from: Duration,
    spike_to: Duration,
}

impl SpikePlan {
    fn phase(&self) -> &'static str {
        let t = self.start.elapsed();
        if t < self.spike_from {
            "base"
        } else if t < self.spike_to {
            "spike"
        } else {
            "after"
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    stats: Stats,
    rng: StdRng,
    /// Where this app's next written sample starts (seconds since the epoch).
    clock: i64,
    /// The last batch written, for retries: its body and sample count.
    last_batch: Option<(Vec<u8>, u64)>,
    spike: Option<SpikePlan>,
}

fn range_query(rng: &mut impl Rng) -> (String, String) {
    let days = *[1i64, 7, 30, 365].choose(rng).expect("not empty");
    let len = days * 86_400;
    let start = gen::YEAR_START + rng.gen_range(0..=(gen::YEAR_SECS - len).max(0));
    (gen::time(start), gen::time(start + len))
}

impl Worker {
    fn new(shared: Arc<Shared>, seed: u64) -> Worker {
        let mut rng = StdRng::seed_from_u64(seed);
        let clock = gen::random_time(&mut rng);
        Worker {
            shared,
            stats: Stats::default(),
            rng,
            clock,
            last_batch: None,
            spike: None,
        }
    }

    fn op(&self, name: &str) -> String {
        match &self.spike {
            Some(plan) => format!("{}/{name}", plan.phase()),
            None => name.to_string(),
        }
    }

    async fn call(&mut self, op: &str, request: RequestBuilder) -> Option<Answer> {
        let op = self.op(op);
        self.shared.call(&mut self.stats, &op, request).await
    }

    /// One step of `app`; `false` when the worker should stop.
    async fn step(&mut self, app: App) -> bool {
        match app {
            App::Phone => self.phone().await,
            App::Dashboard => self.dashboard().await,
            App::Watch => {
                let n = self.rng.gen_range(1..=20);
                self.write("write-small", &gen::HEART_RATE, n).await
            }
            App::Scale => {
                let kind = if self.rng.gen_bool(0.5) {
                    gen::BODY_MASS
                } else {
                    gen::GLUCOSE
                };
                self.write("write-one", &kind, 1).await
            }
            App::Browser => self.browse().await,
            App::Lookup => self.lookup().await,
        }
    }

    /// Writes `n` new samples of `kind`; remembers the batch and some ids.
    async fn write(&mut self, op: &str, kind: &Kind, n: usize) -> bool {
        let (body, _) = gen::batch(&mut self.rng, kind, &mut self.clock, n);
        let body = serde_json::to_vec(&body).expect("JSON serialises");
        let request = self
            .shared
            .request(Method::POST, &self.shared.samples_url)
            .header("content-type", "application/json")
            .body(body.clone());
        let Some(answer) = self.call(op, request).await else {
            return false;
        };
        if answer.ok() {
            self.stats.samples_acknowledged += n as u64;
            let outcome = answer.json();
            self.stats.samples_added += outcome["added"].as_u64().unwrap_or(0);
            // The ids Hearth gave the samples, for reads by id.
            let ids: Vec<Uuid> = outcome["ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| id.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                        .collect()
                })
                .unwrap_or_default();
            let mut pool = self.shared.ids.lock();
            // A few ids per batch keep the pool spread over many batches.
            for id in ids.choose_multiple(&mut self.rng, 8) {
                pool.add(&mut self.rng, *id);
            }
            drop(pool);
            self.last_batch = Some((body, n as u64));
        }
        true
    }

    async fn phone(&mut self) -> bool {
        if self.last_batch.is_some() && self.rng.gen_ratio(1, 10) {
            // A phone that lost the answer sends the same batch again: the
            // server must acknowledge it without storing anything twice.
            let (body, n) = self.last_batch.clone().expect("checked");
            let request = self
                .shared
                .request(Method::POST, &self.shared.samples_url)
                .header("content-type", "application/json")
                .body(body);
            let Some(answer) = self.call("write-retry", request).await else {
                return false;
            };
            if answer.ok() {
                self.stats.samples_acknowledged += n;
                let added = answer.json()["added"].as_u64().unwrap_or(0);
                if added != 0 {
                    let op = self.op("write-retry");
                    self.stats.flag(
                        &op,
                        "duplicated",
                        &format!("a retried batch added {added} samples"),
                    );
                }
            }
            return true;
        }
        let kind = *gen::PHONE_KINDS.choose(&mut self.rng).expect("not empty");
        let n = self.rng.gen_range(100..=1000);
        self.write("write-batch", &kind, n).await
    }

    async fn dashboard(&mut self) -> bool {
        if self.rng.gen_ratio(1, 20) {
            let request = self.shared.request(Method::GET, &self.shared.types_url);
            return self.call("types", request).await.is_some();
        }
        let kind = *gen::ALL_KINDS.choose(&mut self.rng).expect("not empty");
        let (start, end) = range_query(&mut self.rng);
        let request = self
            .shared
            .request(Method::GET, &self.shared.statistics_url)
            .query(&[("type", kind.type_id), ("start", &start), ("end", &end)]);
        self.call("statistics", request).await.is_some()
    }

    async fn browse(&mut self) -> bool {
        let kind = *gen::PHONE_KINDS.choose(&mut self.rng).expect("not empty");
        let (start, end) = range_query(&mut self.rng);
        let limit = [50, 100, 250][self.rng.gen_range(0..3)].to_string();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("type", kind.type_id.to_string()),
                ("start", start.clone()),
                ("end", end.clone()),
                ("limit", limit.clone()),
            ];
            if let Some(c) = cursor.take() {
                query.push(("cursor", c));
            }
            let request = self
                .shared
                .request(Method::GET, &self.shared.samples_url)
                .query(&query);
            let Some(answer) = self.call("list-page", request).await else {
                return false;
            };
            if !answer.ok() {
                break;
            }
            match answer.json()["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        true
    }

    async fn lookup(&mut self) -> bool {
        let id = self.shared.ids.lock().pick(&mut self.rng);
        let Some(id) = id else {
            return self.dashboard().await;
        };
        let url = self
            .shared
            .samples_url
            .join(&format!("samples/{id}"))
            .expect("a valid path");
        let request = self.shared.request(Method::GET, &url);
        self.call("get-by-id", request).await.is_some()
    }
}

/// Hook for the observer stream. Hearth has no observer (change
/// notification) endpoint yet, so the mixed scenario runs without one. When
/// it lands, open one long-lived stream per simulated app here, count the
/// events delivered and measure the delay from write to notification.
pub fn observer_stream_hook(_shared: &Shared) -> Option<String> {
    Some("observer stream not exercised: Hearth has no observer endpoint yet (hook: scenario::observer_stream_hook)".into())
}

/// Seeds, then runs the scenario for `--duration`.
pub async fn run(
    opts: &Options,
    client: reqwest::Client,
    base: Url,
    backend: String,
) -> anyhow::Result<Report> {
    let shared = Arc::new(Shared {
        client,
        samples_url: base.join("/v1/samples")?,
        statistics_url: base.join("/v1/statistics")?,
        types_url: base.join("/v1/types")?,
        base: base.clone(),
        deadline: RwLock::new(Instant::now() + SEED_TIMEOUT),
        issued: AtomicU64::new(0),
        max_requests: opts.max_requests,
        stop: AtomicBool::new(false),
        ids: Mutex::new(IdPool::default()),
    });
    let seed = opts.seed.unwrap_or_else(rand::random);

    let setup = self::seed(&shared, opts.seed_samples(), seed).await;
    let mut notes = Vec::new();
    if opts.scenario == ScenarioName::Mixed || opts.scenario == ScenarioName::Spike {
        notes.extend(observer_stream_hook(&shared));
    }

    let started = Instant::now();
    *shared.deadline.write() = started + opts.duration;
    let n = opts.concurrency;
    let spike = (opts.scenario == ScenarioName::Spike).then(|| SpikePlan {
        start: started,
        spike_from: opts.duration.mul_f64(0.3),
        spike_to: opts.duration.mul_f64(0.6),
    });
    let baseline = (n / 10).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut worker = Worker::new(shared.clone(), seed.wrapping_add(1 + i as u64));
        worker.spike = spike;
        let scenario = opts.scenario;
        tasks.spawn(async move {
            if let Some(plan) = worker.spike {
                if i >= baseline {
                    // Joins for the spike only.
                    tokio::time::sleep_until((plan.start + plan.spike_from).into()).await;
                    let end = plan.start + plan.spike_to;
                    let mut k = 0;
                    while Instant::now() < end && worker.step(app_for(scenario, i, k, n)).await {
                        k += 1;
                    }
                    return worker.stats;
                }
            }
            // The few apps of the spike's quiet phases take every role in turn.
            let n = if worker.spike.is_some() { 1 } else { n };
            let mut k = 0;
            while worker.step(app_for(scenario, i, k, n)).await {
                k += 1;
            }
            worker.stats
        });
    }
    let limit = opts.duration + opts.request_timeout + Duration::from_secs(10);
    let mut stats = Stats::default();
    let collected = tokio::time::timeout(limit, async {
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(s) => stats.merge(s),
                Err(e) => return Err(anyhow::anyhow!("a worker failed: {e}")),
            }
        }
        Ok(())
    })
    .await;
    match collected {
        Ok(r) => r?,
        Err(_) => {
            tasks.abort_all();
            anyhow::bail!("workers did not stop within {}s", limit.as_secs());
        }
    }
    let elapsed = started.elapsed();
    if shared.stop.load(Ordering::Relaxed) {
        notes.push(format!(
            "stopped early at --max-requests {}",
            opts.max_requests
        ));
    }
    Ok(Report::build(
        opts.scenario.as_str(),
        shared.base.as_str(),
        &backend,
        n,
        elapsed,
        &stats,
        &setup,
        notes,
    ))
}

/// Which app worker `i` plays in its `k`-th step. With fewer workers than
/// mixed apps, each worker takes the apps in turn.
fn app_for(scenario: ScenarioName, i: usize, k: usize, n: usize) -> App {
    match scenario {
        ScenarioName::PhoneSync => App::Phone,
        ScenarioName::Dashboard => App::Dashboard,
        ScenarioName::Mixed | ScenarioName::Spike => {
            if n >= MIXED_APPS.len() {
                MIXED_APPS[i % MIXED_APPS.len()]
            } else {
                MIXED_APPS[(i + k * n) % MIXED_APPS.len()]
            }
        }
    }
}

/// Writes `samples` samples spread over the generated year, in batches of
/// 1000 from up to four tasks, before the clock starts.
async fn seed(shared: &Arc<Shared>, samples: u64, seed: u64) -> Stats {
    const BATCH: u64 = 1000;
    let batches = samples.div_ceil(BATCH);
    let tasks_n = batches.min(4);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..tasks_n {
        let mut worker = Worker::new(shared.clone(), seed.wrapping_sub(1 + t));
        tasks.spawn(async move {
            let mut b = t;
            while b < batches {
                let n = BATCH.min(samples - b * BATCH) as usize;
                let kind = gen::ALL_KINDS[(b as usize) % gen::ALL_KINDS.len()];
                worker.clock = gen::random_time(&mut worker.rng);
                if !worker.write("seed-write", &kind, n).await {
                    break;
                }
                b += tasks_n;
            }
            worker.stats
        });
    }
    let mut stats = Stats::default();
    while let Some(result) = tasks.join_next().await {
        if let Ok(s) = result {
            stats.merge(s);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_workers_take_every_app_in_turn() {
        let mut seen: Vec<App> = (0..6)
            .map(|k| app_for(ScenarioName::Mixed, 0, k, 1))
            .collect();
        seen.dedup();
        assert_eq!(seen.len(), 6);
        let many: Vec<App> = (0..12)
            .map(|i| app_for(ScenarioName::Mixed, i, 0, 12))
            .collect();
        assert_eq!(&many[..6], MIXED_APPS);
        assert_eq!(app_for(ScenarioName::PhoneSync, 3, 9, 8), App::Phone);
    }

    #[test]
    fn the_id_pool_stays_bounded() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut pool = IdPool::default();
        for _ in 0..(ID_POOL * 2) {
            pool.add(&mut rng, Uuid::new_v4());
        }
        assert_eq!(pool.ids.len(), ID_POOL);
        assert!(pool.pick(&mut rng).is_some());
    }

    #[test]
    fn ranges_stay_inside_the_year() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            let (start, end) = range_query(&mut rng);
            assert!(start.as_str() >= "2025-01-01" && end.as_str() <= "2026-01-01T02");
        }
    }
}
