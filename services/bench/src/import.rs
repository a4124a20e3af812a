//! The import figure: a generated Apple Health export (quirk-free, export
//! version 14, so the baseline can read it) imported by Hearth through
//! `POST /v1/imports` — records/s, MB/s of XML and the process's peak RSS,
//! at two sizes — beside `healthkit-to-sqlite` on the same file.
//!
//! Sizes: a quarter of `HEARTH_BENCH_IMPORT_MB` (default 1000) megabytes of
//! XML, then all of it, for two peak RSS readings; the baseline runs on the
//! larger. Each Hearth import runs in a process of its own, as the
//! baseline does, so no peak includes what an earlier run or the export's
//! generation left behind. Each Hearth figure also says how much of its
//! peak the process held before the import and how much is the store's
//! in-memory projection of the samples imported. Each imported store is
//! then opened by a fresh process, as after a restart, and unlocked from
//! the snapshot the import ended with: the seconds and that process's peak
//! RSS over the unlock. The baseline runs if
//! `HEARTH_BENCH_HEALTHKIT_TO_SQLITE` names it (`scripts/bench.sh` installs
//! it from `scripts/import-bench-requirements.txt`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth::crypto::KdfParams;
use hearth::import::apple_health::generate::{self, Options, Written};
use serde_json::Value;

use super::{Backend, Server};

/// Peak resident set of this process, in bytes.
fn peak_rss() -> u64 {
    rss_field("/proc/self/status", "VmHWM:")
}

fn rss_field(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Starts a new peak: later readings cover only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Run {
    secs: f64,
    /// Until the snapshot that ends an import is stored (Hearth only).
    snapshot_secs: f64,
    /// Over the import and its snapshot.
    peak_rss: u64,
    /// Until the import's job ended, before its snapshot was sealed (Hearth
    /// only): what the snapshot adds is the difference.
    peak_rss_before_snapshot: u64,
    /// What the store's in-memory projection holds once the import is done,
    /// and the samples in it (Hearth only).
    projection: Option<(u64, usize)>,
    /// The importing process's resident set as the import began, its
    /// server started (Hearth only).
    rss_before: u64,
    /// The imported store opened again by a process of its own, as after a
    /// restart (Hearth only).
    restart: Option<Restart>,
    /// What the stopped store takes on disk: its SQLite files, or its
    /// Postgres database (Hearth only).
    store_bytes: u64,
}

/// A store unlocked by a fresh process: seconds to unlock, the process's
/// resident set before the unlock and its peak over the unlock.
struct Restart {
    secs: f64,
    rss_before: u64,
    peak_rss: u64,
}

impl Restart {
    fn to_json(&self) -> Value {
        serde_json::json!({
            "secs": self.secs,
            "rss_before": self.rss_before,
            "peak_rss": self.peak_rss,
        })
    }

    fn from_json(figures: &Value) -> anyhow::Result<Restart> {
        Ok(Restart {
            secs: figure(figures, "secs")?,
            rss_before: figure(figures, "rss_before")? as u64,
            peak_rss: figure(figures, "peak_rss")? as u64,
        })
    }
}

/// The number `figures` holds under `key`.
fn figure(figures: &Value, key: &str) -> anyhow::Result<f64> {
    figures[key]
        .as_f64()
        .with_context(|| format!("figure {key}"))
}

async fn hearth_import(backend: Backend, admin: &str, zip: &Path) -> anyhow::Result<Run> {
    let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
    let client = reqwest::Client::new();
    reset_peak_rss();
    let rss_before = rss_field("/proc/self/status", "VmRSS:");
    let started = Instant::now();
    let file = tokio::fs::File::open(zip).await?;
    let size = file.metadata().await?.len();
    let job: Value = client
        .post(format!("{}/v1/imports", server.base))
        .bearer_auth(&server.token)
        .header("content-type", "application/zip")
        .header("content-length", size)
        // As `hearth import` sends it.
        .body(hearth::import::client::upload_body(file, |_| ()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = job["id"].as_str().context("a job id")?.to_string();
    let job = loop {
        let job: Value = client
            .get(format!("{}/v1/imports/{id}", server.base))
            .bearer_auth(&server.token)
            .send()
            .await?
            .json()
            .await?;
        if job["state"] != "running" {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    let peak_rss_before_snapshot = peak_rss();
    anyhow::ensure!(job["state"] == "succeeded", "the import failed: {job}");
    // The import ends with a snapshot of the store, taken in the
    // background: its memory counts in the import's peak.
    let storage = server.store.storage().clone();
    let head = storage.head().await?.seq;
    let waiting = Instant::now();
    while storage
        .snapshots()
        .await?
        .first()
        .is_none_or(|s| s.at.seq < head)
    {
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(300),
            "no snapshot after the import"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snapshot_secs = waiting.elapsed().as_secs_f64();
    // Id indexes are built on first use: counted here as if used.
    let open = server.store.open_store().ok();
    if let Some(open) = &open {
        open.build_indexes();
    }
    let peak_rss = peak_rss();
    let projection = open.map(|open| (open.memory_bytes() as u64, open.sample_count()));
    let (dir, url) = server.stop_keeping().await;
    let store_bytes = store_bytes(dir.path(), &url).await?;
    let restart = tokio::task::spawn_blocking(move || unlock_apart(dir.path(), &url)).await??;
    Ok(Run {
        secs,
        snapshot_secs,
        peak_rss,
        peak_rss_before_snapshot,
        projection,
        rss_before,
        restart: Some(restart),
        store_bytes,
    })
}

/// What a stopped store takes on disk: the files of its SQLite database,
/// its write-ahead log folded in first, or the size of its Postgres
/// database.
async fn store_bytes(dir: &Path, url: &str) -> anyhow::Result<u64> {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut db)
            .await?;
        db.close().await?;
        let mut bytes = 0;
        for file in std::fs::read_dir(dir)? {
            let meta = file?.metadata()?;
            if meta.is_file() {
                bytes += meta.len();
            }
        }
        return Ok(bytes);
    }
    let mut db = sqlx::PgConnection::connect(url).await?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut db)
        .await?;
    db.close().await?;
    Ok(bytes as u64)
}

/// What a process running [`unlock_one`] prints its figures after.
const UNLOCK_FIGURES: &str = "unlock figures: ";

/// Opens the store in `dir` at `url` as a restarted server would, unlocks
/// it, and prints the figures: what `hearth-bench --unlock-one` runs.
pub async fn unlock_one(dir: &Path, url: &str) -> anyhow::Result<()> {
    let app =
        hearth::startup::Application::build(&super::serve_args(dir, url, KdfParams::RECOMMENDED)?)
            .await?;
    reset_peak_rss();
    let rss_before = rss_field("/proc/self/status", "VmRSS:");
    let started = Instant::now();
    app.store.unlock(super::PASSPHRASE, None).await?;
    let secs = started.elapsed().as_secs_f64();
    // Id indexes are built on first use: counted here as if used.
    app.store
        .open_store()
        .map_err(|_| anyhow::anyhow!("not unlocked"))?
        .build_indexes();
    let restart = Restart {
        secs,
        rss_before,
        peak_rss: peak_rss(),
    };
    println!("{UNLOCK_FIGURES}{}", restart.to_json());
    Ok(())
}

/// [`unlock_one`] in a process of its own.
fn unlock_apart(dir: &Path, url: &str) -> anyhow::Result<Restart> {
    let mut run = std::process::Command::new(std::env::current_exe()?);
    run.arg("--unlock-one").arg(dir).arg(url);
    Restart::from_json(&figures_of(run, UNLOCK_FIGURES)?)
}

/// Runs this binary as `command` says and reads the figures it prints
/// after `prefix`.
fn figures_of(mut command: std::process::Command, prefix: &str) -> anyhow::Result<Value> {
    let output = command.stderr(std::process::Stdio::inherit()).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "the process printing {prefix:?} failed ({}): {stdout}",
        output.status
    );
    let figures = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .with_context(|| format!("a line starting {prefix:?}"))?;
    Ok(serde_json::from_str(figures)?)
}

/// What a process running [`import_one`] prints its figures after.
const FIGURES: &str = "import figures: ";

/// Imports `zip` into a fresh store in this process and prints the
/// figures: what `hearth-bench --import-one` runs.
pub async fn import_one(backend: Backend, admin: &str, zip: &Path) -> anyhow::Result<()> {
    let run = hearth_import(backend, admin, zip).await?;
    let figures = serde_json::json!({
        "secs": run.secs,
        "snapshot_secs": run.snapshot_secs,
        "peak_rss": run.peak_rss,
        "peak_rss_before_snapshot": run.peak_rss_before_snapshot,
        "projection": run.projection,
        "rss_before": run.rss_before,
        "restart": run.restart.as_ref().map(Restart::to_json),
        "store_bytes": run.store_bytes,
    });
    println!("{FIGURES}{figures}");
    Ok(())
}

/// [`hearth_import`] in a process of its own: this binary, run with
/// `--import-one`.
fn hearth_import_apart(backend: Backend, admin: &str, zip: &Path) -> anyhow::Result<Run> {
    use clap::ValueEnum;
    let backend = backend.to_possible_value().context("a backend name")?;
    let mut run = std::process::Command::new(std::env::current_exe()?);
    run.args(["--backend", backend.get_name(), "--database-url", admin])
        .arg("--import-one")
        .arg(zip);
    let figures = figures_of(run, FIGURES)?;
    let number = |key: &str| figure(&figures, key);
    Ok(Run {
        secs: number("secs")?,
        snapshot_secs: number("snapshot_secs")?,
        peak_rss: number("peak_rss")? as u64,
        peak_rss_before_snapshot: number("peak_rss_before_snapshot")? as u64,
        projection: figures["projection"]
            .as_array()
            .and_then(|p| Some((p.first()?.as_u64()?, p.get(1)?.as_u64()? as usize))),
        rss_before: number("rss_before")? as u64,
        restart: Some(Restart::from_json(&figures["restart"])?),
        store_bytes: number("store_bytes")? as u64,
    })
}

/// `healthkit-to-sqlite` on the same zip; its peak RSS is sampled while it runs.
fn baseline(tool: &str, zip: &Path) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let mut child = std::process::Command::new(tool)
        .arg(zip)
        .arg(dir.path().join("healthkit.db"))
        .arg("--silent")
        .spawn()
        .with_context(|| format!("running {tool}"))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        peak = peak.max(rss_field(&status_file, "VmHWM:"));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    anyhow::ensure!(status.success(), "{tool} failed: {status}");
    Ok(Run {
        secs: started.elapsed().as_secs_f64(),
        snapshot_secs: 0.0,
        peak_rss: peak,
        peak_rss_before_snapshot: peak,
        projection: None,
        rss_before: 0,
        restart: None,
        store_bytes: 0,
    })
}

/// The benchmark's exports: `mb` megabytes of XML or more, with a heart
/// rate reading every two minutes.
fn options(mb: u64, version: u8, quirks: bool) -> Options {
    Options {
        version,
        days: 1,
        min_xml_bytes: mb * 1_000_000,
        heart_rate_every_min: 2,
        quirks,
        ..Options::default()
    }
}

fn generate(dir: &Path, mb: u64) -> anyhow::Result<(std::path::PathBuf, Written)> {
    let path = dir.join(format!("export-{mb}mb.zip"));
    let written = generate::write_zip(&path, &options(mb, 14, false))?;
    Ok((path, written))
}

/// `hearth-bench --generate-export PATH`: an export like the benchmark's,
/// for trying an import by hand; prints what it holds, as an import
/// should count it.
pub fn generate_export(path: &Path, mb: u64, version: u8, quirks: bool) -> anyhow::Result<()> {
    let written = generate::write_zip(path, &options(mb, version, quirks))
        .with_context(|| format!("writing {}", path.display()))?;
    // Written, not printed: a closed pipe is an error, not a panic.
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &written)?;
    std::io::Write::write_all(&mut out, b"\n")?;
    Ok(())
}

pub async fn bench_import(backend: Backend, admin: &str) -> anyhow::Result<()> {
    let mb: u64 = std::env::var("HEARTH_BENCH_IMPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tool = std::env::var("HEARTH_BENCH_HEALTHKIT_TO_SQLITE").ok();
    let dir = tempfile::tempdir()?;
    println!("import: Apple Health export, version 14 without quirks, into SQLite-or-Postgres as chosen by --backend");
    // The smaller first: memory the allocator keeps after a run would count
    // in the next run's peak.
    let quarter = (mb / 4).max(1);
    for size in [quarter, mb] {
        let (zip, written) = tokio::task::spawn_blocking({
            let dir = dir.path().to_path_buf();
            move || generate(&dir, size)
        })
        .await??;
        let zip_mb = std::fs::metadata(&zip)?.len() as f64 / 1e6;
        let xml_mb = written.xml_bytes as f64 / 1e6;
        let records = written.records as f64;
        println!(
            "  export: {xml_mb:.0} MB of XML ({zip_mb:.0} MB zipped), {} records",
            written.records
        );
        let run = hearth_import_apart(backend, admin, &zip)?;
        println!(
            "  hearth              {:>8.0} records/s {:>6.1} MB/s  {:>6.1} s  peak RSS {:>5.0} MB (target < 300 MB), its snapshot included ({:.1} s more)",
            records / run.secs,
            xml_mb / run.secs,
            run.secs,
            run.peak_rss as f64 / 1e6,
            run.snapshot_secs
        );
        if let Some((bytes, samples)) = run.projection {
            // The store keeps every sample in memory by design; the rest of
            // the peak is the import's own (parsing, batches, allocator).
            println!(
                "    of which the process before the import {:>5.0} MB, the store's projection {:>5.0} MB for {samples} samples ({:.0} bytes/sample), the rest {:>5.0} MB",
                run.rss_before as f64 / 1e6,
                bytes as f64 / 1e6,
                bytes as f64 / samples.max(1) as f64,
                run.peak_rss.saturating_sub(bytes + run.rss_before) as f64 / 1e6
            );
        }
        println!(
            "    peak RSS until the import's job ended {:>5.0} MB; its snapshot adds {:>5.0} MB",
            run.peak_rss_before_snapshot as f64 / 1e6,
            run.peak_rss.saturating_sub(run.peak_rss_before_snapshot) as f64 / 1e6
        );
        if let Some((_, samples)) = run.projection {
            println!(
                "    the store on disk {:>5.0} MB ({:.0} bytes/sample)",
                run.store_bytes as f64 / 1e6,
                run.store_bytes as f64 / samples.max(1) as f64
            );
        }
        if let Some(restart) = &run.restart {
            println!(
                "    restarted: unlock from its snapshot {:>5.2} s, peak RSS {:>5.0} MB (target < 300 MB; the sealed process before it {:>5.0} MB)",
                restart.secs,
                restart.peak_rss as f64 / 1e6,
                restart.rss_before as f64 / 1e6
            );
        }
        if size == mb {
            match &tool {
                Some(tool) => {
                    let base = baseline(tool, &zip)?;
                    println!(
                        "  healthkit-to-sqlite {:>8.0} records/s {:>6.1} MB/s  {:>6.1} s  peak RSS {:>5.0} MB",
                        records / base.secs,
                        xml_mb / base.secs,
                        base.secs,
                        base.peak_rss as f64 / 1e6
                    );
                    println!(
                        "  hearth / baseline   {:>8.1}x throughput (target >= 20x)",
                        base.secs / run.secs
                    );
                }
                None => println!(
                    "  (healthkit-to-sqlite not run: set HEARTH_BENCH_HEALTHKIT_TO_SQLITE, as scripts/bench.sh does)"
                ),
            }
        }
        std::fs::remove_file(&zip)?;
    }
    Ok(())
}
