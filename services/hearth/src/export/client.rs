//! `hearth export` and `hearth import ndjson`: clients of the running
//! server's owner API, like `hearth app`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use super::ndjson::{self, Line};
use super::Format;
use crate::config::ServerArgs;

/// `hearth export`.
pub async fn run_export(
    server: ServerArgs,
    format: &str,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let format = Format::parse(format).context("the format is ndjson or fhir")?;
    let (client, base, token) = crate::cli::owner_session(&server).await?;
    match output {
        Some(path) => {
            let file = tokio::fs::File::create(&path)
                .await
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = tokio::io::BufWriter::new(file);
            download(&client, &base, &token, format, &mut out, true).await?;
        }
        None => {
            let mut out = tokio::io::stdout();
            download(&client, &base, &token, format, &mut out, false).await?;
        }
    }
    Ok(())
}

/// `hearth import …`.
pub async fn run_import(server: ServerArgs, path: PathBuf) -> anyhow::Result<()> {
    let (client, base, token) = crate::cli::owner_session(&server).await?;
    let summary = if path.as_os_str() == "-" {
        let input = tokio::io::BufReader::new(tokio::io::stdin());
        import_ndjson(&client, &base, &token, input, true).await?
    } else {
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        import_ndjson(
            &client,
            &base,
            &token,
            tokio::io::BufReader::new(file),
            true,
        )
        .await?
    };
    println!(
        "samples: {} ({} added, {} already stored); characteristics: {}",
        summary.samples,
        summary.added,
        summary.unchanged,
        if summary.characteristics {
            "set"
        } else {
            "none"
        }
    );
    Ok(())
}

/// Samples per `POST /v1/samples`.
const BATCH: usize = 1000;

/// Streams `GET /v1/export` into `out`; reports progress on standard error
/// when `progress` is set. Returns the bytes written.
pub async fn download(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    format: Format,
    out: &mut (impl AsyncWrite + Unpin),
    progress: bool,
) -> anyhow::Result<u64> {
    let format = match format {
        Format::Ndjson => "ndjson",
        Format::Fhir => "fhir",
    };
    let r = client
        .get(format!("{base}/v1/export?format={format}"))
        .bearer_auth(token)
        .send()
        .await
        .context("export: connecting")?;
    if !r.status().is_success() {
        let status = r.status();
        bail!("export: {status}: {}", r.text().await.unwrap_or_default());
    }
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut bytes = 0u64;
    let mut r = r;
    while let Some(chunk) = r.chunk().await.context("export: the download broke off")? {
        out.write_all(&chunk).await?;
        bytes += chunk.len() as u64;
        if progress && shown.elapsed() > Duration::from_millis(500) {
            shown = Instant::now();
            eprint!("\rexported {}", rate(bytes, started));
        }
    }
    out.flush().await?;
    if progress {
        eprintln!("\rexported {}", rate(bytes, started));
    }
    Ok(bytes)
}

fn rate(bytes: u64, started: Instant) -> String {
    let mb = bytes as f64 / 1e6;
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    format!("{mb:.1} MB ({:.1} MB/s)", mb / secs)
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub samples: u64,
    pub added: u64,
    pub unchanged: u64,
    pub characteristics: bool,
}

/// Reads an `ndjson` export and writes it to the server: samples through
/// `POST /v1/samples`, characteristics through `PUT /v1/characteristics`.
/// Running it again adds nothing (each sample's exported id is its
/// `sync_id`).
pub async fn import_ndjson(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    input: impl AsyncBufRead + Unpin,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let mut lines = input.lines();
    let mut summary = ImportSummary::default();
    let mut workouts: HashMap<String, String> = HashMap::new();
    // Samples waiting to be written, with the exported ids of workouts.
    let mut batch: Vec<(Option<String>, Value)> = Vec::new();
    let mut number = 0usize;
    let mut header = false;
    let started = Instant::now();
    while let Some(text) = lines.next_line().await? {
        number += 1;
        if text.trim().is_empty() {
            continue;
        }
        let line = ndjson::parse_line(&text).map_err(|e| anyhow::anyhow!("line {number}: {e}"))?;
        match line {
            Line::Header { version } => {
                if version != u64::from(ndjson::VERSION) {
                    bail!("line {number}: export format version {version}; this Hearth reads version {}", ndjson::VERSION);
                }
                header = true;
            }
            _ if !header => bail!("line {number}: not a Hearth export (no header line)"),
            Line::Characteristics(values) => {
                if !values.is_empty() {
                    post(
                        client.put(format!("{base}/v1/characteristics")),
                        token,
                        &Value::Object(values),
                        "setting characteristics",
                    )
                    .await?;
                    summary.characteristics = true;
                }
            }
            // The samples are the importer's own: no order among sources.
            Line::SourcePriority => {}
            Line::Sample(sample) => {
                if ndjson::is_route(&sample) && !batch.is_empty() {
                    // A route names its workout by the id the import gave it.
                    flush(client, base, token, &mut batch, &mut workouts, &mut summary).await?;
                }
                let new = ndjson::new_sample(&sample, &workouts)
                    .map_err(|e| anyhow::anyhow!("line {number}: {e}"))?;
                let workout = (sample.get("type").and_then(Value::as_str) == Some("workout"))
                    .then(|| ndjson::exported_id(&sample).map(str::to_string))
                    .flatten();
                batch.push((workout, new));
                if batch.len() >= BATCH {
                    flush(client, base, token, &mut batch, &mut workouts, &mut summary).await?;
                    if progress {
                        eprint!(
                            "\rimported {} samples ({:.0}/s)",
                            summary.samples,
                            summary.samples as f64 / started.elapsed().as_secs_f64().max(1e-3)
                        );
                    }
                }
            }
        }
    }
    flush(client, base, token, &mut batch, &mut workouts, &mut summary).await?;
    if !header {
        bail!("not a Hearth export (no header line)");
    }
    if progress {
        eprintln!("\rimported {} samples", summary.samples);
    }
    Ok(summary)
}

async fn flush(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    batch: &mut Vec<(Option<String>, Value)>,
    workouts: &mut HashMap<String, String>,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let (old_ids, samples): (Vec<_>, Vec<_>) = std::mem::take(batch).into_iter().unzip();
    let answer = post(
        client.post(format!("{base}/v1/samples")),
        token,
        &json!({ "samples": samples }),
        "writing samples",
    )
    .await?;
    let ids = answer["ids"].as_array().context("no ids in the answer")?;
    for (old, new) in old_ids.iter().zip(ids) {
        if let (Some(old), Some(new)) = (old, new.as_str()) {
            workouts.insert(old.clone(), new.to_string());
        }
    }
    summary.samples += samples.len() as u64;
    summary.added += answer["added"].as_u64().unwrap_or(0);
    summary.unchanged += answer["unchanged"].as_u64().unwrap_or(0);
    Ok(())
}

async fn post(
    rb: reqwest::RequestBuilder,
    token: &str,
    body: &Value,
    what: &str,
) -> anyhow::Result<Value> {
    let r = rb
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("{what}: connecting"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{what}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}
