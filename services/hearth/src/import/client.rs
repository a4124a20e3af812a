//! `hearth import apple-health PATH`: uploads an export to the running
//! server as its owner, follows the job with a progress bar, and prints
//! the summary.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::apple_health::xml::is_export;
use crate::cli::{call, owner_session};
use crate::config::{ImportCommand, ServerArgs};

pub async fn run(server: ServerArgs, command: ImportCommand) -> anyhow::Result<()> {
    let (path, json, content_type) = match command {
        ImportCommand::AppleHealth { path, json } => (path, json, "application/zip"),
        ImportCommand::Ndjson { path, json } => (path, json, "application/x-ndjson"),
    };
    let (client, base, token) = owner_session(&server).await?;
    // A folder travels as a zip of the files an import reads; standard
    // input as a file, so that its size is known.
    let packed;
    let upload: &Path = if path.as_os_str() == "-" {
        let (file, temp) = tempfile::Builder::new()
            .prefix("hearth-import-")
            .tempfile()?
            .into_parts();
        let mut out = tokio::fs::File::from_std(file);
        tokio::io::copy(&mut tokio::io::stdin(), &mut out).await?;
        out.flush().await?;
        packed = temp;
        packed.as_ref()
    } else if path.is_dir() && content_type == "application/zip" {
        packed = tokio::task::spawn_blocking({
            let path = path.clone();
            move || pack_folder(&path)
        })
        .await??;
        packed.as_ref()
    } else {
        &path
    };
    let size = tokio::fs::metadata(upload)
        .await
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("a valid template"),
    );
    let file = tokio::fs::File::open(upload).await?;
    let uploaded = bar.clone();
    let body = upload_body(file, move |n| uploaded.inc(n));
    let job = call(
        client
            .post(format!("{base}/v1/imports"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .header("content-length", size)
            .body(body),
        "uploading the export",
    )
    .await?;
    bar.finish_and_clear();
    let id = job["id"]
        .as_str()
        .context("no job id in the answer")?
        .to_string();
    let bar = ProgressBar::new(job["progress"]["bytes_total"].as_u64().unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("importing {bar:30} {bytes}/{total_bytes} {msg} eta {eta}")
            .expect("a valid template"),
    );
    let job = loop {
        let job = call(
            client
                .get(format!("{base}/v1/imports/{id}"))
                .bearer_auth(&token),
            "following the import",
        )
        .await?;
        let p = &job["progress"];
        let records = p["records"].as_u64().unwrap_or(0);
        let elapsed = p["elapsed_s"].as_f64().unwrap_or(0.0).max(0.001);
        bar.set_length(p["bytes_total"].as_u64().unwrap_or(0));
        bar.set_position(p["bytes_read"].as_u64().unwrap_or(0));
        bar.set_message(format!(
            "{records} records, {:.0} records/s",
            records as f64 / elapsed
        ));
        if job["state"] != "running" {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    } else {
        print_summary(&job);
    }
    if job["state"] != "succeeded" {
        bail!(
            "the import failed: {}",
            job["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// An upload's body: `file` read a mebibyte at a time (a reader's default
/// of a few kilobytes costs a blocking read each), `read` told of each.
pub fn upload_body(
    file: tokio::fs::File,
    read: impl Fn(u64) + Send + Sync + 'static,
) -> reqwest::Body {
    let read = std::sync::Arc::new(read);
    reqwest::Body::wrap_stream(stream::unfold(file, move |mut file| {
        let read = read.clone();
        async move {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    read(n as u64);
                    Some((Ok::<_, std::io::Error>(buf), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        }
    }))
}

fn print_summary(job: &Value) {
    let p = &job["progress"];
    let elapsed = p["elapsed_s"].as_f64().unwrap_or(0.0);
    let records = p["records"].as_u64().unwrap_or(0);
    let of = if job["format"] == "apple_health" {
        " of XML"
    } else {
        ""
    };
    println!(
        "read {records} records ({:.1} MB{of}) in {elapsed:.1} s",
        p["bytes_read"].as_u64().unwrap_or(0) as f64 / 1e6
    );
    let Some(s) = job.get("summary") else {
        return;
    };
    println!(
        "samples: {} added, {} already stored, {} replaced",
        s["added"], s["unchanged"], s["replaced"]
    );
    let section = |title: &str, v: &Value| {
        if let Some(map) = v.as_object().filter(|m| !m.is_empty()) {
            println!("{title}:");
            for (k, n) in map {
                println!("  {k}: {n}");
            }
        }
    };
    section("by type", &s["samples"]);
    section("unknown types (not imported)", &s["unknown"]);
    section("left out", &s["skipped"]);
    if let Some(sources) = s["sources"].as_array() {
        println!("sources:");
        for src in sources {
            println!("  {}", src.as_str().unwrap_or(""));
        }
    }
}

/// Zips (without compressing) the export XML and route files of an
/// unzipped export folder into a temporary file.
fn pack_folder(dir: &Path) -> anyhow::Result<tempfile::TempPath> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    collect(dir, dir, &mut files, 0)?;
    let mut export = None;
    let mut routes = Vec::new();
    for (path, name) in files {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".gpx") && lower.contains("workout-routes/") {
            routes.push((path, name));
        } else if lower.ends_with(".xml") && !lower.ends_with("export_cda.xml") {
            let mut head = Vec::new();
            std::fs::File::open(&path)?
                .take(64 << 10)
                .read_to_end(&mut head)?;
            if is_export(&head) {
                export = Some((path, name));
            }
        }
    }
    let Some(export) = export else {
        bail!("{} holds no Apple Health export XML", dir.display());
    };
    let out = tempfile::Builder::new()
        .prefix("hearth-export-")
        .suffix(".zip")
        .tempfile()?;
    let (file, path) = out.into_parts();
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (source, name) in std::iter::once(export).chain(routes) {
        zip.start_file(name, options)?;
        std::io::copy(&mut std::fs::File::open(&source)?, &mut zip)?;
    }
    zip.finish()?.flush()?;
    Ok(path)
}

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(PathBuf, String)>,
    depth: usize,
) -> anyhow::Result<()> {
    if depth > 3 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, out, depth + 1)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((path, name));
        }
    }
    Ok(())
}
