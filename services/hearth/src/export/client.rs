//! `hearth export`: a client of the running server's owner API, like
//! `hearth app`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncWrite, AsyncWriteExt};

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
