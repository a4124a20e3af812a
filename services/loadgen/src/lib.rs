//! `hearth-loadgen`: drives a live Hearth server over HTTP and reports
//! throughput and latency per operation.
//!
//! - [`options`]: the command line;
//! - [`target`]: which servers may be loaded (loopback unless told otherwise);
//! - [`spawn`]: a throwaway server of our own (`--spawn`);
//! - [`scenario`]: what the simulated apps do (`phone-sync`, `dashboard`,
//!   `mixed`, `spike`), mirroring the k6 scripts in `loadtest/`;
//! - [`stats`]: HDR histograms and the report.
//!
//! Every run is bounded: it stops at `--duration` or after `--max-requests`,
//! whichever comes first, and no request outlives `--request-timeout`.

pub mod gen;
pub mod options;
pub mod scenario;
pub mod spawn;
pub mod stats;
pub mod target;

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::json;

pub use options::{Options, ScenarioName};
pub use stats::Report;

/// Runs the whole thing: optionally spawns a server, authenticates, seeds,
/// loads, and shuts the spawned server down again.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    opts.validate()?;
    let server = if opts.spawn {
        Some(spawn::Server::start(opts).await?)
    } else {
        None
    };
    let result = run_against(opts, server.as_ref()).await;
    if let Some(server) = server {
        let stopped = server.stop().await;
        if let Err(e) = &stopped {
            eprintln!("hearth-loadgen: stopping the spawned server: {e:#}");
        }
        let report = result?;
        stopped?;
        Ok(report)
    } else {
        result
    }
}

async fn run_against(opts: &Options, server: Option<&spawn::Server>) -> anyhow::Result<Report> {
    let base = match server {
        Some(s) => s.url.clone(),
        None => target::check(&opts.url, opts.allow_remote)?,
    };
    let client = client(opts.request_timeout)?;
    // A spawned server has its own passphrase; --token and --passphrase are
    // for servers that were already running.
    let token = match (server, &opts.token, &opts.passphrase) {
        (Some(s), _, _) => unlock(&client, &base, &s.passphrase).await?,
        (None, Some(t), _) => t.clone(),
        (None, None, Some(p)) => unlock(&client, &base, p).await?,
        (None, None, None) => {
            anyhow::bail!("give --token or --passphrase (or --spawn a server of our own)")
        }
    };
    let mut headers = HeaderMap::new();
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the token is not a valid header value")?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(opts.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let backend = match server {
        Some(s) => format!("spawned, {}", s.backend),
        None => "existing server".to_string(),
    };
    scenario::run(opts, client, base, backend).await
}

/// An HTTP client that never follows redirects (they could lead off
/// loopback) and ignores proxy settings (so does the traffic).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?)
}

/// `POST /v1/unlock`: an owner session token for the passphrase.
pub async fn unlock(
    client: &reqwest::Client,
    base: &reqwest::Url,
    passphrase: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(base.join("/v1/unlock")?)
        .json(&json!({ "passphrase": passphrase }))
        .send()
        .await
        .context("POST /v1/unlock")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "unlock failed with {status}: {}",
        body.get("detail")
            .and_then(|d| d.as_str())
            .unwrap_or("no detail")
    );
    body.get("token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .context("the unlock answer carries no token")
}
