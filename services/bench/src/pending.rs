//! Writes while locked: samples/s of apps' `POST /v1/samples` answered `202`
//! by a locked store, beside the same load unlocked (target >= 50%); and
//! seconds to merge a million pending samples at unlock, beside an unlock
//! with nothing pending.

use std::time::Instant;

use anyhow::Context;
use hearth::crypto::KdfParams;
use serde_json::{json, Value};

use super::{ingest_batches, median, Args, Backend, Server, BATCH, CLIENTS, PASSPHRASE};

/// Registers the benchmarks' pedometer app; returns its id.
pub(crate) async fn register_app(
    http: &reqwest::Client,
    server: &Server,
) -> anyhow::Result<String> {
    let app: Value = http
        .post(format!("{}/v1/apps", server.base))
        .bearer_auth(&server.token)
        .json(&json!({
            "name": "Bench pedometer", "purpose": "benchmark",
            "privacy_policy_url": "https://app.example/privacy",
            "redirect_uris": ["http://127.0.0.1/cb"], "client_type": "public",
        }))
        .send()
        .await?
        .json()
        .await?;
    Ok(app["id"].as_str().context("app id")?.to_string())
}

/// An app with a credential that writes steps; returns the token.
async fn app_token(server: &Server) -> anyhow::Result<String> {
    let http = reqwest::Client::new();
    let id = register_app(&http, server).await?;
    let cred: Value = http
        .post(format!("{}/v1/apps/{id}/credentials", server.base))
        .bearer_auth(&server.token)
        .json(&json!({ "name": "bench", "write": ["step_count"] }))
        .send()
        .await?
        .json()
        .await?;
    Ok(cred["token"].as_str().context("credential")?.to_string())
}

/// Posts every client's bodies concurrently; samples/s. Every answer must
/// have `status`.
async fn post_all(
    server: &Server,
    token: &str,
    work: Vec<Vec<Vec<u8>>>,
    status: u16,
) -> anyhow::Result<f64> {
    let total: usize = work.iter().map(|w| w.len() * BATCH).sum();
    let started = Instant::now();
    let mut clients = Vec::new();
    for bodies in work {
        let url = format!("{}/v1/samples", server.base);
        let token = token.to_string();
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
                anyhow::ensure!(
                    r.status().as_u16() == status,
                    "a write answered {}, not {status}",
                    r.status()
                );
            }
            Ok(())
        }));
    }
    for c in clients {
        c.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn bodies(batches: usize, run: usize) -> Vec<Vec<Vec<u8>>> {
    (0..CLIENTS)
        .map(|c| {
            ingest_batches(c, batches, run)
                .into_iter()
                .map(|(body, _)| body)
                .collect()
        })
        .collect()
}

pub async fn bench_pending(args: &Args, admin: &str) -> anyhow::Result<()> {
    println!(
        "== pending: an app's POST /v1/samples while locked (202), {BATCH}-sample batches, {CLIENTS} clients =="
    );
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let name = match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        let (mut open, mut locked) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
            let token = app_token(&server).await?;
            open.push(
                post_all(
                    &server,
                    &token,
                    bodies(args.batches_per_client, 2 * run),
                    201,
                )
                .await?,
            );
            server.store.lock().await;
            locked.push(
                post_all(
                    &server,
                    &token,
                    bodies(args.batches_per_client, 2 * run + 1),
                    202,
                )
                .await?,
            );
            server.stop().await;
            eprintln!(
                "  {name} run {}: unlocked {:.0}/s, locked {:.0}/s",
                run + 1,
                open.last().unwrap(),
                locked.last().unwrap()
            );
        }
        let (open, locked) = (median(open), median(locked));
        println!("  {name}: unlocked ingest                  {open:>12.0} samples/s");
        println!(
            "  {name}: locked (sealed, pending)         {locked:>12.0} samples/s   {:.0}% of unlocked (target >= 50%)",
            100.0 * locked / open
        );
    }

    let samples = args.pending_merge_samples.max(BATCH);
    println!("== pending: merge at unlock of {samples} pending samples ==");
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let name = match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
        let token = app_token(&server).await?;
        server.store.lock().await;
        let started = Instant::now();
        server.store.unlock(PASSPHRASE, None).await?;
        let empty = started.elapsed().as_secs_f64();
        server.store.lock().await;
        let per_client = samples.div_ceil(BATCH * CLIENTS);
        post_all(&server, &token, bodies(per_client, 0), 202).await?;
        let waiting = server.store.pending().totals();
        let started = Instant::now();
        server.store.unlock(PASSPHRASE, None).await?;
        let merged = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            server.store.pending().totals().batches == 0,
            "pending batches left after the merge"
        );
        let open = server
            .store
            .open_store()
            .map_err(|_| anyhow::anyhow!("locked"))?;
        anyhow::ensure!(
            open.sample_count() == per_client * CLIENTS * BATCH,
            "{} samples after the merge, not {}",
            open.sample_count(),
            per_client * CLIENTS * BATCH
        );
        println!(
            "  {name}: unlock with {} pending samples ({} batches, {} MB sealed) {merged:>7.2} s   (unlock with none pending {empty:.2} s; merge {:.2} s)",
            per_client * CLIENTS * BATCH,
            waiting.batches,
            waiting.bytes / 1_000_000,
            merged - empty
        );
        server.stop().await;
    }
    Ok(())
}
