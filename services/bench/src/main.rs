//! Hearth's benchmark: each figure printed beside its baseline, as medians.
//!
//! - ingest: samples/s through `POST /v1/samples` (1,000-sample batches, 4
//!   clients) on Postgres and SQLite, against plaintext multi-row INSERTs of
//!   100 rows per transaction into Postgres;
//! - query: `GET /v1/statistics` over a year of minute samples against
//!   `SELECT sum(value)` on an index over `(type, start)`;
//! - buckets: daily `GET /v1/statistics/buckets` in Europe/Berlin over five
//!   years of minute steps from a watch and a phone that overlap, against
//!   `GROUP BY` the local day over plaintext rows;
//! - unlock: seconds to unlock a large store from its newest snapshot and by
//!   a replay of the whole log, and projection bytes per sample;
//! - hidden: an app without read access lists, sums and buckets its own
//!   samples in stores that also hold millions of hidden samples, against the
//!   same reads in a store without them (see [`hidden`]);
//! - import (only when asked, `--only import`): a generated Apple Health
//!   export imported through `POST /v1/imports`, beside
//!   `healthkit-to-sqlite` (see [`import`]).
//! - export (only when asked, `--only export`): a study's FHIR Bulk Data
//!   export of a store of step samples, resources/s and peak memory, beside
//!   `GET /v1/samples` paging of the same data (see [`export`]).
//! - pending: an app's writes while the store is locked (`202`), beside the
//!   same load unlocked, and seconds to merge a million pending samples at
//!   unlock (see [`pending`]).
//!
//! Needs a Postgres server: `HEARTH_BENCH_DATABASE_URL`, or the
//! `HEARTH_TEST_DATABASE_URL` that `scripts/with-postgres.sh` provides.

mod export;
mod hidden;
mod import;
mod pages;
mod pending;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hearth::catalogue;
use hearth::config::{KdfArgs, ServeArgs, StorageArgs};
use hearth::crypto::KdfParams;
use hearth::log::event::{Device, StoredSample};
use hearth::log::writer::{NewSample, Write};
use hearth::startup::Application;
use hearth::store::Store;
use serde_json::{json, Value};
use sqlx::PgPool;

const PASSPHRASE: &str = "benchmark passphrase, long enough";
const MINUTE_US: i64 = 60_000_000;
/// 2025-01-01T00:00:00Z.
const YEAR_START_US: i64 = 1_735_689_600_000_000;

#[derive(Parser)]
#[command(about = "Hearth benchmark: prints each figure beside its baseline")]
struct Args {
    /// Which parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,query,buckets,unlock,hidden,pending"
    )]
    only: Vec<String>,
    /// Repetitions per figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// 1,000-sample batches each ingest client sends per run.
    #[arg(long, default_value_t = 50)]
    batches_per_client: usize,
    /// Samples in the store for the unlock figure.
    #[arg(
        long,
        env = "HEARTH_BENCH_UNLOCK_SAMPLES",
        default_value_t = 10_000_000
    )]
    unlock_samples: usize,
    /// Hidden samples in the stores of the hidden-data figure, one store each.
    #[arg(long, value_delimiter = ',', default_value = "1000000,5000000")]
    hidden_samples: Vec<usize>,
    /// Pending samples merged at unlock in the pending figure.
    #[arg(long, env = "HEARTH_BENCH_MERGE_SAMPLES", default_value_t = 1_000_000)]
    pending_merge_samples: usize,
    /// Samples in the store the owner's pages are timed on.
    #[arg(long, env = "HEARTH_BENCH_PAGES_SAMPLES", default_value_t = 10_000_000)]
    pages_samples: usize,
    /// Samples a study exports in the export figure.
    #[arg(long, env = "HEARTH_BENCH_EXPORT_SAMPLES", default_value_t = 100_000)]
    export_samples: usize,
    /// Backend of the stores in the hidden-data figure.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Postgres server URL (a database per run is created in it).
    #[arg(long, env = "HEARTH_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Imports this export into a fresh store and prints the figures: how
    /// `--only import` runs each of its imports in a process of its own.
    #[arg(long, hide = true)]
    import_one: Option<std::path::PathBuf>,
    /// `--only import` unlocks each imported store in a process of its own:
    /// the store's data directory, then its database's URL.
    #[arg(long, hide = true, num_args = 2, value_names = ["DIR", "URL"])]
    unlock_one: Option<Vec<String>>,
    /// Writes a synthetic Apple Health `export.zip` to this path (no
    /// benchmark is run): `--export-mb` megabytes of XML or more, in
    /// `--export-version`, with the quirks of real exports if
    /// `--export-quirks`. Needs no database.
    #[arg(long, value_name = "PATH")]
    generate_export: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 100, requires = "generate_export")]
    export_mb: u64,
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u8).range(11..=14), requires = "generate_export")]
    export_version: u8,
    #[arg(long, requires = "generate_export")]
    export_quirks: bool,
}

const CLIENTS: usize = 4;
const BATCH: usize = 1000;
const BASELINE_ROWS_PER_TXN: usize = 100;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn admin_url(args: &Args) -> anyhow::Result<String> {
    args.database_url
        .clone()
        .or_else(|| std::env::var("HEARTH_TEST_DATABASE_URL").ok())
        .context("set HEARTH_BENCH_DATABASE_URL, or run through scripts/bench.sh")
}

async fn fresh_database(admin: &str) -> anyhow::Result<String> {
    let name = format!("hearth_bench_{}", uuid::Uuid::new_v4().simple());
    let pool = PgPool::connect(admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').context("URL with a database")?;
    Ok(format!("{base}/{name}"))
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A Hearth's settings for a store in `dir` and at `url`.
fn serve_args(dir: &std::path::Path, url: &str, kdf: KdfParams) -> anyhow::Result<ServeArgs> {
    Ok(ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        storage: StorageArgs {
            data_dir: dir.to_path_buf(),
            database_url: Some(url.to_owned()),
            state_file: None,
        },
        kdf: KdfArgs {
            kdf_memory_kib: kdf.memory_kib,
            kdf_iterations: kdf.iterations,
        },
        unlock_key_file: None,
        idle_lock_secs: 0,
        max_body_bytes: 16 * 1024 * 1024,
        max_import_bytes: 6 << 30,
        max_concurrent_requests: 256,
        request_timeout_secs: 120,
        public_url: None,
        allowed_hosts: Vec::new(),
        tls: Default::default(),
        pending: Default::default(),
        log_format: "text".into(),
        snapshot_every: hearth::projection::snapshot::DEFAULT_EVERY,
    })
}

/// A running Hearth with a fresh store, set up and unlocked.
struct Server {
    base: String,
    token: String,
    store: Arc<Store>,
    dir: tempfile::TempDir,
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(backend: Backend, admin: &str, kdf: KdfParams) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("hearth.db").display()),
            Backend::Postgres => fresh_database(admin).await?,
        };
        let app = Application::build(&serve_args(dir.path(), &url, kdf)?).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let store = app.store.clone();
        let code = store.setup_code().context("new store")?;
        let token = store.setup(&code, PASSPHRASE, None).await?.0.to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Server {
            base,
            token,
            store,
            dir,
            url,
            stop,
            task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Stops the server and hands back its store: the data directory and
    /// the database's URL.
    async fn stop_keeping(self) -> (tempfile::TempDir, String) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        (self.dir, self.url)
    }

    /// Writes samples straight to the writer, skipping HTTP (for setting up data).
    async fn load(&self, samples: impl Iterator<Item = NewSample>) -> anyhow::Result<()> {
        let open = self
            .store
            .open_store()
            .map_err(|_| anyhow::anyhow!("not unlocked"))?;
        let mut chunk = Vec::with_capacity(10_000);
        for s in samples {
            chunk.push(s.into());
            if chunk.len() == 10_000 {
                open.writer
                    .write(Write::AddSamples {
                        source: "owner".into(),
                        entries: std::mem::take(&mut chunk),
                    })
                    .await?;
            }
        }
        if !chunk.is_empty() {
            open.writer
                .write(Write::AddSamples {
                    source: "owner".into(),
                    entries: chunk,
                })
                .await?;
        }
        Ok(())
    }
}

/// A step-count sample as the writer takes it: the one place a stored
/// sample is put together.
fn step_sample(start_us: i64, end_us: i64, value: f64) -> NewSample {
    NewSample {
        type_index: catalogue::lookup("step_count").unwrap(),
        sample: StoredSample {
            id: uuid::Uuid::new_v4().into_bytes(),
            start_us,
            start_offset_min: 60,
            end_us,
            end_offset_min: 60,
            value,
            metadata: None,
        },
        device: None,
    }
}

fn minute_sample(minute: i64, value: f64) -> NewSample {
    step_sample(
        YEAR_START_US + minute * MINUTE_US,
        YEAR_START_US + (minute + 1) * MINUTE_US,
        value,
    )
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One client's batches, JSON prepared before timing. The clients are four
/// devices syncing the same period side by side: batch `b` of every client
/// covers the same thousand minutes, each device a second apart.
fn ingest_batches(client: usize, batches: usize, run: usize) -> Vec<(Vec<u8>, Vec<BaselineRow>)> {
    (0..batches)
        .map(|b| {
            let mut rows = Vec::with_capacity(BATCH);
            let samples: Vec<Value> = (0..BATCH)
                .map(|i| {
                    let minute = (run * batches * BATCH + b * BATCH + i) as i64;
                    let start = YEAR_START_US + minute * MINUTE_US + client as i64 * 1_000_000;
                    let id = uuid::Uuid::new_v4();
                    let value = (minute % 97) as f64;
                    rows.push(BaselineRow { id, start, value });
                    json!({
                        "type": "step_count",
                        "start": rfc3339(start),
                        "end": rfc3339(start + MINUTE_US),
                        "value": value,
                        "unit": "count",
                    })
                })
                .collect();
            (
                serde_json::to_vec(&json!({ "samples": samples })).unwrap(),
                rows,
            )
        })
        .collect()
}

struct BaselineRow {
    id: uuid::Uuid,
    start: i64,
    value: f64,
}

async fn hearth_ingest(server: &Server, work: Vec<Vec<Vec<u8>>>) -> anyhow::Result<f64> {
    let total: usize = work.iter().map(|w| w.len() * BATCH).sum();
    let started = Instant::now();
    let mut clients = Vec::new();
    for bodies in work {
        let url = format!("{}/v1/samples", server.base);
        let token = server.token.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for body in bodies {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "ingest answered {}", r.status());
            }
            Ok(())
        }));
    }
    for c in clients {
        c.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

const BASELINE_SCHEMA: &str = "CREATE TABLE samples (
    id uuid PRIMARY KEY, type text NOT NULL, start timestamptz NOT NULL,
    end_time timestamptz NOT NULL, value double precision NOT NULL, unit text NOT NULL,
    source text NOT NULL);
    CREATE INDEX samples_type_start ON samples (type, start);";

async fn baseline_pool(admin: &str) -> anyhow::Result<PgPool> {
    let url = fresh_database(admin).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32 + 1)
        .connect(&url)
        .await?;
    sqlx::raw_sql(BASELINE_SCHEMA).execute(&pool).await?;
    Ok(pool)
}

/// Plaintext rows, multi-row INSERT of 100 rows per transaction, 4 clients.
async fn baseline_ingest(pool: &PgPool, work: Vec<Vec<BaselineRow>>) -> anyhow::Result<f64> {
    let total: usize = work.iter().map(|w| w.len()).sum();
    let mut insert = String::from(
        "INSERT INTO samples (id, type, start, end_time, value, unit, source) VALUES ",
    );
    for i in 0..BASELINE_ROWS_PER_TXN {
        let p = i * 5;
        if i > 0 {
            insert.push(',');
        }
        insert.push_str(&format!(
            "(${}::uuid, 'step_count', to_timestamp(${}::float8 / 1e6), to_timestamp(${}::float8 / 1e6), ${}, 'count', ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5
        ));
    }
    let insert = Arc::new(insert);
    let started = Instant::now();
    let mut clients = Vec::new();
    for rows in work {
        let pool = pool.clone();
        let insert = insert.clone();
        clients.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            for chunk in rows.chunks(BASELINE_ROWS_PER_TXN) {
                let mut q = sqlx::query(&insert);
                for r in chunk {
                    q = q
                        .bind(r.id.to_string())
                        .bind(r.start as f64)
                        .bind((r.start + MINUTE_US) as f64)
                        .bind(r.value)
                        .bind("owner");
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                q.execute(&mut *tx).await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for c in clients {
        c.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn bench_ingest(args: &Args, admin: &str) -> anyhow::Result<()> {
    println!("== ingest: POST /v1/samples, {BATCH}-sample batches, {CLIENTS} clients ==");
    let mut pg = Vec::new();
    let mut lite = Vec::new();
    let mut base = Vec::new();
    for run in 0..args.runs {
        let prepared: Vec<Vec<(Vec<u8>, Vec<BaselineRow>)>> = (0..CLIENTS)
            .map(|c| ingest_batches(c, args.batches_per_client, run))
            .collect();
        let mut bodies = Vec::new();
        let mut rows = Vec::new();
        for client in prepared {
            let (b, r): (Vec<Vec<u8>>, Vec<Vec<BaselineRow>>) = client.into_iter().unzip();
            bodies.push(b);
            rows.push(r.into_iter().flatten().collect::<Vec<_>>());
        }
        for (backend, out) in [(Backend::Postgres, &mut pg), (Backend::Sqlite, &mut lite)] {
            let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
            out.push(hearth_ingest(&server, bodies.clone()).await?);
            server.stop().await;
        }
        let pool = baseline_pool(admin).await?;
        base.push(baseline_ingest(&pool, rows).await?);
        pool.close().await;
        eprintln!(
            "  run {}: hearth/postgres {:.0}/s, hearth/sqlite {:.0}/s, baseline {:.0}/s",
            run + 1,
            pg.last().unwrap(),
            lite.last().unwrap(),
            base.last().unwrap()
        );
    }
    let (pg, lite, base) = (median(pg), median(lite), median(base));
    println!("  baseline (plaintext INSERT, 100 rows/txn)  {base:>12.0} samples/s");
    println!(
        "  hearth on postgres                         {pg:>12.0} samples/s   {:.2}x baseline (target >= 3x)",
        pg / base
    );
    println!(
        "  hearth on sqlite                           {lite:>12.0} samples/s   {:.2}x baseline",
        lite / base
    );
    Ok(())
}

async fn bench_query(args: &Args, admin: &str) -> anyhow::Result<()> {
    const YEAR_MINUTES: i64 = 365 * 24 * 60;
    println!("== query: statistics over one year of minute samples ({YEAR_MINUTES} samples) ==");
    let value = |m: i64| ((m * 7919) % 113) as f64;
    let server = Server::start(Backend::Postgres, admin, KdfParams::RECOMMENDED).await?;
    server
        .load((0..YEAR_MINUTES).map(|m| minute_sample(m, value(m))))
        .await?;
    let pool = baseline_pool(admin).await?;
    sqlx::query(
        "INSERT INTO samples (id, type, start, end_time, value, unit, source) \
         SELECT gen_random_uuid(), 'step_count', to_timestamp($1::float8 / 1e6) + m * interval '1 minute', \
         to_timestamp($1::float8 / 1e6) + (m + 1) * interval '1 minute', ((m * 7919) % 113)::float8, 'count', 'owner' \
         FROM generate_series(0, $2 - 1) AS m",
    )
    .bind(YEAR_START_US as f64)
    .bind(YEAR_MINUTES)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE samples").execute(&pool).await?;

    let (from, to) = (YEAR_START_US, YEAR_START_US + YEAR_MINUTES * MINUTE_US);
    let expected: f64 = (0..YEAR_MINUTES).map(value).sum();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/v1/statistics?type=step_count&start={}&end={}",
        server.base,
        rfc3339(from),
        rfc3339(to)
    );
    let reps = (args.runs * 10).max(20);
    let mut hearth_ms = Vec::new();
    let mut base_ms = Vec::new();
    for _ in 0..reps {
        // The clock stops when the whole answer has arrived; checking it is not timed.
        let t = Instant::now();
        let bytes = http
            .get(&url)
            .bearer_auth(&server.token)
            .send()
            .await?
            .bytes()
            .await?;
        hearth_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let body: Value = serde_json::from_slice(&bytes)?;
        anyhow::ensure!(body["sum"].as_f64() == Some(expected), "hearth sum {body}");

        let t = Instant::now();
        let sum: f64 = sqlx::query_scalar(
            "SELECT sum(value) FROM samples WHERE type = $1 AND start >= to_timestamp($2::float8 / 1e6) \
             AND start < to_timestamp($3::float8 / 1e6)",
        )
        .bind("step_count")
        .bind(from as f64)
        .bind(to as f64)
        .fetch_one(&pool)
        .await?;
        base_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(sum == expected, "baseline sum {sum}");
    }
    let (h, b) = (median(hearth_ms), median(base_ms));
    println!("  baseline (SELECT sum(value), index on (type, start))  {b:>9.3} ms");
    println!(
        "  hearth GET /v1/statistics                             {h:>9.3} ms   {:.1}x faster (target >= 10x)",
        b / h
    );
    pool.close().await;
    server.stop().await;
    Ok(())
}

async fn bench_buckets(args: &Args, admin: &str) -> anyhow::Result<()> {
    const DAYS: i64 = 1826;
    const MINUTES: i64 = DAYS * 1440;
    println!(
        "== buckets: daily, Europe/Berlin, five years of minute steps from a watch and a phone ({} samples) ==",
        2 * MINUTES
    );
    let value = |m: i64| (m % 97) as f64;
    let server = Server::start(Backend::Sqlite, admin, KdfParams::RECOMMENDED).await?;
    let device = |name: &str, kind: &str| Device {
        name: name.into(),
        model: None,
        manufacturer: None,
        kind: Some(kind.into()),
    };
    let loading = Instant::now();
    // Both devices sync a day at a time, as they would.
    let (watch, phone) = (device("watch", "watch"), device("phone", "phone"));
    for day in 0..DAYS {
        for (d, shift) in [(&watch, 0), (&phone, MINUTE_US / 2)] {
            server
                .load((day * 1440..(day + 1) * 1440).map(|m| {
                    let mut s = minute_sample(m, value(m));
                    s.sample.start_us += shift;
                    s.sample.end_us += shift;
                    s.device = Some(d.clone());
                    s
                }))
                .await?;
        }
    }
    eprintln!("  loaded in {:.1}s", loading.elapsed().as_secs_f64());

    let pool = baseline_pool(admin).await?;
    sqlx::query(
        "INSERT INTO samples (id, type, start, end_time, value, unit, source) \
         SELECT gen_random_uuid(), 'step_count', \
         to_timestamp($1::float8 / 1e6) + m * interval '1 minute' + s.shift, \
         to_timestamp($1::float8 / 1e6) + (m + 1) * interval '1 minute' + s.shift, \
         (m % 97)::float8, 'count', s.name \
         FROM generate_series(0, $2 - 1) AS m, \
         (VALUES ('watch', interval '0'), ('phone', interval '30 seconds')) AS s(name, shift)",
    )
    .bind(YEAR_START_US as f64)
    .bind(MINUTES)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE samples").execute(&pool).await?;

    let (from, to) = (YEAR_START_US, YEAR_START_US + MINUTES * MINUTE_US);
    let http = reqwest::Client::new();
    let url = format!(
        "{}/v1/statistics/buckets?type=step_count&start={}&end={}&interval=P1D&tz=Europe/Berlin",
        server.base,
        rfc3339(from),
        rfc3339(to)
    );
    let reps = (args.runs * 4).max(21);
    let mut hearth_ms = Vec::new();
    let mut base_ms = Vec::new();
    let mut first_ms = None;
    // Each side measured in a block of its own, so neither runs on caches the
    // other just cooled; the clock stops when the whole answer has arrived.
    for _ in 0..reps {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(&server.token).send().await?;
        anyhow::ensure!(r.status().is_success(), "buckets answered {}", r.status());
        let bytes = r.bytes().await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        // The first query builds the merged series; later ones reuse it.
        if first_ms.is_none() {
            first_ms = Some(ms);
        } else {
            hearth_ms.push(ms);
        }
        let body: Value = serde_json::from_slice(&bytes)?;
        let buckets = body["buckets"].as_array().map(Vec::len).unwrap_or(0);
        anyhow::ensure!(
            buckets >= DAYS as usize,
            "hearth returned {buckets} buckets"
        );
    }
    for _ in 0..reps {
        let t = Instant::now();
        let rows: Vec<(f64,)> = sqlx::query_as(
            "SELECT sum(value) FROM samples WHERE type = $1 \
             AND start >= to_timestamp($2::float8 / 1e6) AND start < to_timestamp($3::float8 / 1e6) \
             GROUP BY date_trunc('day', start AT TIME ZONE 'Europe/Berlin') \
             ORDER BY date_trunc('day', start AT TIME ZONE 'Europe/Berlin')",
        )
        .bind("step_count")
        .bind(from as f64)
        .bind(to as f64)
        .fetch_all(&pool)
        .await?;
        base_ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            rows.len() >= DAYS as usize,
            "baseline returned {} days",
            rows.len()
        );
    }
    let (h, b) = (median(hearth_ms), median(base_ms));
    println!("  baseline (GROUP BY local day, plaintext rows)        {b:>9.3} ms");
    println!(
        "  hearth GET /v1/statistics/buckets                     {h:>9.3} ms   {:.1}x faster (target >= 20x; median target < 10 ms)",
        b / h
    );
    println!(
        "  (first query, which builds the merged series: {:.1} ms)",
        first_ms.unwrap_or(f64::NAN)
    );
    pool.close().await;
    server.stop().await;
    Ok(())
}

async fn bench_unlock(args: &Args, admin: &str) -> anyhow::Result<()> {
    let n = args.unlock_samples;
    println!("== unlock: a store of {n} samples (Argon2id at the recommended cost) ==");
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
        let loading = Instant::now();
        server
            .load((0..n as i64).map(|m| minute_sample(m, (m % 50) as f64)))
            .await?;
        eprintln!(
            "  loaded {n} samples into {name} in {:.1}s",
            loading.elapsed().as_secs_f64()
        );
        let storage = server.store.storage().clone();
        let unlock = || async {
            let t = Instant::now();
            server.store.unlock(PASSPHRASE, None).await?;
            let secs = t.elapsed().as_secs_f64();
            let open = server
                .store
                .open_store()
                .map_err(|_| anyhow::anyhow!("not unlocked"))?;
            anyhow::ensure!(open.sample_count() == n, "sample count");
            // Counted with the id indexes, which unlock leaves to the
            // background.
            open.build_indexes();
            anyhow::Ok((secs, open.memory_bytes() as f64 / n as f64))
        };
        let (mut from_snapshot, mut full) = (Vec::new(), Vec::new());
        let mut bytes_per_sample = 0.0;
        for _ in 0..args.runs.min(3) {
            // Locking snapshots the store at its head (once: later locks
            // find it there already).
            let t = Instant::now();
            server.store.lock().await;
            eprintln!(
                "  {name}: lock (with snapshot) {:.2}s",
                t.elapsed().as_secs_f64()
            );
            anyhow::ensure!(
                !storage.snapshots().await?.is_empty(),
                "locking took a snapshot"
            );
            from_snapshot.push(unlock().await?.0);
            server.store.lock().await;
            hearth::projection::snapshot::discard_all(&*storage).await?;
            let (secs, bytes) = unlock().await?;
            full.push(secs);
            bytes_per_sample = bytes;
        }
        let kdf_only = {
            let t = Instant::now();
            hearth::lock::open_data_key(&*storage, PASSPHRASE).await?;
            t.elapsed().as_secs_f64()
        };
        let (from_snapshot, full) = (median(from_snapshot), median(full));
        println!(
            "  {name:<8} unlock from snapshot {from_snapshot:>6.2} s ({:.2} s after key derivation; target <= 1.5 s)   full replay {full:>6.2} s ({:.2} s after key derivation; target <= 4 s)",
            from_snapshot - kdf_only,
            full - kdf_only,
        );
        println!(
            "  {name:<8} key derivation {kdf_only:.2} s   projection {bytes_per_sample:>5.1} bytes/sample (target <= 64)"
        );
        server.stop().await;
    }
    Ok(())
}

// The server runs in this process, with the allocator its binary uses.
#[global_allocator]
static ALLOCATOR: zero_on_free::ZeroOnFree<mimalloc::MiMalloc> =
    zero_on_free::ZeroOnFree(mimalloc::MiMalloc);

fn main() -> anyhow::Result<std::process::ExitCode> {
    // As the server's binary does, before the runtime's threads exist.
    zero_on_free::return_freed_memory_promptly();
    // A kernel that refuses only costs memory, not correctness.
    let _ = zero_on_free::use_small_pages();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    // Hearth's own logs (timings of unlock and snapshots) when asked for.
    let _telemetry = std::env::var_os("HEARTH_LOG").map(|_| hearth::telemetry::init("text"));
    const PARTS: [&str; 9] = [
        "ingest", "query", "buckets", "unlock", "hidden", "pending", "import", "export", "pages",
    ];
    if let Some(unknown) = args.only.iter().find(|o| !PARTS.contains(&o.as_str())) {
        anyhow::bail!("no part {unknown:?}; the parts are {}", PARTS.join(", "));
    }
    if let Some(path) = &args.generate_export {
        import::generate_export(
            path,
            args.export_mb,
            args.export_version,
            args.export_quirks,
        )?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // Needs no admin URL: the store's own is given.
    if let Some([dir, url]) = args.unlock_one.as_deref() {
        import::unlock_one(dir.as_ref(), url).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let admin = admin_url(&args)?;
    if let Some(zip) = &args.import_one {
        import::import_one(args.backend, &admin, zip).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let started = Instant::now();
    if args.only.iter().any(|o| o == "ingest") {
        bench_ingest(&args, &admin).await?;
    }
    if args.only.iter().any(|o| o == "query") {
        bench_query(&args, &admin).await?;
    }
    if args.only.iter().any(|o| o == "buckets") {
        bench_buckets(&args, &admin).await?;
    }
    if args.only.iter().any(|o| o == "unlock") {
        bench_unlock(&args, &admin).await?;
    }
    if args.only.iter().any(|o| o == "pending") {
        pending::bench_pending(&args, &admin).await?;
    }
    if args.only.iter().any(|o| o == "import") {
        import::bench_import(args.backend, &admin).await?;
    }
    if args.only.iter().any(|o| o == "pages") {
        pages::bench_pages(&args, &admin).await?;
    }
    if args.only.iter().any(|o| o == "export") {
        export::bench_export(args.backend, &admin, args.export_samples).await?;
    }
    // A figure whose answers were wrong fails the run, after every table.
    let mut answers_hold = true;
    if args.only.iter().any(|o| o == "hidden") {
        answers_hold &= hidden::bench_hidden(&args, &admin).await?;
    }
    eprintln!(
        "benchmark finished in {:.0?}",
        Duration::from_secs(started.elapsed().as_secs())
    );
    Ok(if answers_hold {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
