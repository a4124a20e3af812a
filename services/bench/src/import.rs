//! The import figure: a generated Apple Health export (quirk-free, export
//! version 14, so the baseline can read it) imported by Hearth through
//! `POST /v1/imports` — records/s, MB/s of XML and the process's peak RSS,
//! at two sizes — beside `healthkit-to-sqlite` on the same file.
//!
//! Sizes: `HEARTH_BENCH_IMPORT_MB` (default 1000) megabytes of XML, and a
//! quarter of it for the second peak RSS reading. The baseline runs if
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
    peak_rss: u64,
}

async fn hearth_import(backend: Backend, admin: &str, zip: &Path) -> anyhow::Result<Run> {
    let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
    let client = reqwest::Client::new();
    reset_peak_rss();
    let started = Instant::now();
    let file = tokio::fs::File::open(zip).await?;
    let size = file.metadata().await?.len();
    let job: Value = client
        .post(format!("{}/v1/imports", server.base))
        .bearer_auth(&server.token)
        .header("content-type", "application/zip")
        .header("content-length", size)
        .body(reqwest::Body::from(file))
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
    let peak_rss = peak_rss();
    anyhow::ensure!(job["state"] == "succeeded", "the import failed: {job}");
    server.stop().await;
    Ok(Run { secs, peak_rss })
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
        peak_rss: peak,
    })
}

fn generate(dir: &Path, mb: u64) -> anyhow::Result<(std::path::PathBuf, Written)> {
    let path = dir.join(format!("export-{mb}mb.zip"));
    let written = generate::write_zip(
        &path,
        &Options {
            version: 14,
            days: 1,
            min_xml_bytes: mb * 1_000_000,
            heart_rate_every_min: 2,
            quirks: false,
            ..Options::default()
        },
    )?;
    Ok((path, written))
}

pub async fn bench_import(backend: Backend, admin: &str) -> anyhow::Result<()> {
    let mb: u64 = std::env::var("HEARTH_BENCH_IMPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tool = std::env::var("HEARTH_BENCH_HEALTHKIT_TO_SQLITE").ok();
    let dir = tempfile::tempdir()?;
    println!("import: Apple Health export, version 14 without quirks, into SQLite-or-Postgres as chosen by --backend");
    let mut first = true;
    for size in [mb, (mb / 4).max(1)] {
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
        let run = hearth_import(backend, admin, &zip).await?;
        println!(
            "  hearth              {:>8.0} records/s {:>6.1} MB/s  {:>6.1} s  peak RSS {:>5.0} MB (target < 300 MB)",
            records / run.secs,
            xml_mb / run.secs,
            run.secs,
            run.peak_rss as f64 / 1e6
        );
        if first {
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
        first = false;
        std::fs::remove_file(&zip)?;
    }
    Ok(())
}
