//! export (only when asked, `--only export`): a study exports a store of
//! `HEARTH_BENCH_EXPORT_SAMPLES` step samples as FHIR NDJSON through Bulk
//! Data — kick-off, polling, download of every file — beside the owner
//! paging through the same samples with `GET /v1/samples` (1,000 a page).
//! Each figure gives resources/s and the process's peak RSS above what it
//! held before (the store's projection), so flat memory shows as a growth
//! that does not scale with the store. Target: ≥ 100,000 resources/s.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

use super::{minute_sample, Backend, Server};
use hearth::crypto::KdfParams;

/// Resident set of this process now, and its peak, in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts a new peak: later readings cover only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct StudyClient {
    id: String,
    kid: String,
    pkcs8: Vec<u8>,
}

/// Adds a study with a fresh ES384 key and consents to `step_count`.
async fn consented_study(http: &reqwest::Client, server: &Server) -> anyhow::Result<StudyClient> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("key generation"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("key"))?;
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let description = json!({
        "name": "Benchmark study", "organisation": "Bench", "contact": "bench@example.org",
        "purpose": "p", "procedures": "p", "risks_and_benefits": "r", "duration": "d",
        "data_use_and_sharing": "u", "withdrawal": "w",
        "requested_types": ["step_count"],
        "date_range": {"start": "2020-01-01"},
        "frequency": "once", "deidentification": "shifted_dates",
        "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "kid": "bench", "alg": "ES384",
            "x": b64(&point[1..49]), "y": b64(&point[49..97])}]},
    });
    let study: Value = http
        .post(format!("{}/v1/studies", server.base))
        .bearer_auth(&server.token)
        .json(&description)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = study["id"].as_str().context("study id")?.to_string();
    http.post(format!("{}/v1/studies/{id}/consent", server.base))
        .bearer_auth(&server.token)
        .json(&json!({"types": ["step_count"]}))
        .send()
        .await?
        .error_for_status()?;
    Ok(StudyClient {
        id,
        kid: "bench".into(),
        pkcs8: pkcs8.as_ref().to_vec(),
    })
}

async fn study_token(
    http: &reqwest::Client,
    server: &Server,
    study: &StudyClient,
) -> anyhow::Result<String> {
    let token_url = format!("{}/fhir/token", server.base);
    let now = hearth::clock::Clock::default().now_us() / 1_000_000;
    let claims = json!({"iss": study.id, "sub": study.id, "aud": token_url,
        "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string()});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(study.kid.clone());
    let assertion = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&study.pkcs8),
    )?;
    let body: Value = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("scope", "system/Observation.rs system/Patient.rs"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["access_token"]
        .as_str()
        .context("access token")?
        .to_string())
}

/// Lines in a streamed body, counted as it arrives.
async fn count_lines(mut r: reqwest::Response) -> anyhow::Result<(u64, u64)> {
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = r.chunk().await? {
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
    }
    Ok((lines, bytes))
}

struct Figure {
    resources: u64,
    secs: f64,
    growth: u64,
    /// For the export: seconds until the manifest came.
    job_secs: Option<f64>,
}

impl Figure {
    fn print(&self, name: &str) {
        println!(
            "  {name:<34} {:>10} resources {:>7.1} s {:>9.0} resources/s  peak RSS +{:>5.0} MB",
            self.resources,
            self.secs,
            self.resources as f64 / self.secs,
            self.growth as f64 / 1e6
        );
        if let Some(job) = self.job_secs {
            println!(
                "  {:<34} job done after {job:.1} s (polled each second), download {:.1} s",
                "",
                self.secs - job
            );
        }
    }
}

async fn bulk_export(
    http: &reqwest::Client,
    server: &Server,
    study: &StudyClient,
) -> anyhow::Result<Figure> {
    let token = study_token(http, server, study).await?;
    let (before, _) = rss();
    reset_peak_rss();
    let started = Instant::now();
    let r = http
        .get(format!("{}/fhir/Group/{}/$export", server.base, study.id))
        .bearer_auth(&token)
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .await?;
    anyhow::ensure!(r.status() == 202, "kick-off answered {}", r.status());
    let status_url = r.headers()["content-location"].to_str()?.to_string();
    let manifest: Value = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Tokens live five minutes: a long export outlives one.
        let token = study_token(http, server, study).await?;
        let r = http.get(&status_url).bearer_auth(&token).send().await?;
        match r.status().as_u16() {
            200 => break r.json().await?,
            202 | 429 => continue,
            s => anyhow::bail!("status answered {s}"),
        }
    };
    let job_secs = started.elapsed().as_secs_f64();
    let token = study_token(http, server, study).await?;
    let mut resources = 0;
    for file in manifest["output"].as_array().context("output")? {
        let r = http
            .get(file["url"].as_str().context("url")?)
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        let (lines, _) = count_lines(r).await?;
        anyhow::ensure!(
            Some(lines) == file["count"].as_u64(),
            "a file has {lines} lines, the manifest says {}",
            file["count"]
        );
        resources += lines;
    }
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = rss();
    Ok(Figure {
        resources,
        secs,
        growth: peak.saturating_sub(before),
        job_secs: Some(job_secs),
    })
}

async fn paging(http: &reqwest::Client, server: &Server) -> anyhow::Result<Figure> {
    let (before, _) = rss();
    reset_peak_rss();
    let started = Instant::now();
    let mut resources = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/samples?type=step_count&limit=1000", server.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(&url)
            .bearer_auth(&server.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        resources += page["samples"].as_array().map_or(0, |s| s.len() as u64);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (_, peak) = rss();
    Ok(Figure {
        resources,
        secs,
        growth: peak.saturating_sub(before),
        job_secs: None,
    })
}

pub async fn bench_export(backend: Backend, admin: &str, samples: usize) -> anyhow::Result<()> {
    println!("export: {samples} step samples, FHIR Bulk Data NDJSON beside GET /v1/samples paging");
    let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
    let loading = Instant::now();
    server
        .load((0..samples as i64).map(|m| minute_sample(m, (m % 50) as f64)))
        .await?;
    println!(
        "  loaded in {:.1}s; process RSS {:.0} MB",
        loading.elapsed().as_secs_f64(),
        rss().0 as f64 / 1e6
    );
    let http = reqwest::Client::new();
    let study = consented_study(&http, &server).await?;
    let export = bulk_export(&http, &server, &study).await?;
    anyhow::ensure!(
        export.resources == samples as u64 + 1,
        "the export holds {} resources, not {} samples and the Patient",
        export.resources,
        samples
    );
    let paged = paging(&http, &server).await?;
    anyhow::ensure!(
        paged.resources == samples as u64,
        "paging saw {}",
        paged.resources
    );
    export.print("bulk $export (kick-off to download)");
    paged.print("GET /v1/samples, 1,000 a page");
    println!("  target: ≥ 100000 resources/s; peak RSS growth flat with the store's size");
    server.stop().await;
    Ok(())
}
