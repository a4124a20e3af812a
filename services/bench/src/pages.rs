//! The owner's pages on a large store: each page's answer time beside the
//! JSON API call its figures come from, so a page's own cost (templates,
//! charts) shows apart from the query's.

use std::time::Instant;

use hearth::catalogue;
use hearth::log::event::StoredSample;
use hearth::log::writer::NewSample;
use serde_json::json;

use crate::{median, Args, Backend, KdfParams, Server, MINUTE_US};

/// A steps sample every minute and a heart rate every fifth, ending now.
fn sample(minute: i64, now_minute: i64, total: i64) -> NewSample {
    let start_us = (now_minute - total + minute) * MINUTE_US;
    let heart = minute % 5 == 0;
    NewSample {
        type_index: catalogue::lookup(if heart { "heart_rate" } else { "step_count" }).unwrap(),
        sample: StoredSample {
            id: uuid::Uuid::new_v4().into_bytes(),
            start_us,
            start_offset_min: 60,
            end_us: start_us + MINUTE_US,
            end_offset_min: 60,
            value: if heart {
                55.0 + (minute % 40) as f64
            } else {
                (minute % 50) as f64
            },
            metadata: None,
        },
        device: None,
    }
}

async fn time_get(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    page: bool,
) -> anyhow::Result<f64> {
    let url = format!("{}{path}", server.base);
    let request = if page {
        client
            .get(url)
            .header("cookie", format!("hearth_session={}", server.token))
    } else {
        client.get(url).bearer_auth(&server.token)
    };
    let t = Instant::now();
    let r = request.send().await?;
    let status = r.status();
    let body = r.bytes().await?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status.is_success(), "{path}: {status}");
    anyhow::ensure!(!body.is_empty(), "{path}: empty");
    Ok(ms)
}

/// Times `page` (first request, then the median of `runs`) beside the API
/// call it rests on, and prints the row.
async fn time_case(
    client: &reqwest::Client,
    server: &Server,
    runs: usize,
    name: &str,
    page: &str,
    api: Option<&str>,
) -> anyhow::Result<()> {
    let first = time_get(client, server, page, true).await?;
    let mut pages = Vec::new();
    let mut apis = Vec::new();
    for _ in 0..runs.max(1) {
        pages.push(time_get(client, server, page, true).await?);
        if let Some(api) = api {
            apis.push(time_get(client, server, api, false).await?);
        }
    }
    let page_ms = median(pages);
    let api_text = if apis.is_empty() {
        String::new()
    } else {
        format!("   API call beneath it {:>8.2} ms", median(apis))
    };
    println!("  {name:<18} {page_ms:>8.2} ms (first {first:>8.2} ms){api_text}");
    Ok(())
}

/// An app registered with a credential, so its page has something to
/// show; returns its id.
async fn registered_app(client: &reqwest::Client, server: &Server) -> anyhow::Result<String> {
    let id = crate::pending::register_app(client, server).await?;
    let r = client
        .post(format!("{}/v1/apps/{id}/credentials", server.base))
        .bearer_auth(&server.token)
        .json(&json!({ "name": "bench", "read": ["step_count"], "write": ["step_count"] }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "credential: {}", r.status());
    Ok(id)
}

pub async fn bench_pages(args: &Args, admin: &str) -> anyhow::Result<()> {
    let n = args.pages_samples as i64;
    println!(
        "== pages: the owner's pages on a store of {n} samples (SQLite; median of {} runs) ==",
        args.runs
    );
    let server = Server::start(Backend::Sqlite, admin, KdfParams::RECOMMENDED).await?;
    let now_minute = hearth::clock::Clock::default().now_us() / MINUTE_US;
    let loading = Instant::now();
    server
        .load((0..n).map(|m| sample(m, now_minute, n)))
        .await?;
    eprintln!(
        "  loaded {n} samples in {:.1}s",
        loading.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    let day_us = 86_400_000_000i64;
    let now_us = now_minute * MINUTE_US;
    let week = |interval: &str, days: i64| {
        format!(
            "/v1/statistics/buckets?type=step_count&start={}&end={}&interval={interval}&tz=UTC",
            crate::rfc3339(now_us - days * day_us),
            crate::rfc3339(now_us + day_us)
        )
    };
    // Each page beside the API call it rests on.
    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("summary", "/summary?tz=UTC".into(), Some(week("1d", 7))),
        (
            "browse",
            "/types".into(),
            Some("/v1/samples?type=step_count&limit=1&order=desc".into()),
        ),
        (
            "type, day",
            "/types/step_count?period=day&tz=UTC".into(),
            Some(week("1h", 1)),
        ),
        (
            "type, week",
            "/types/step_count?period=week&tz=UTC".into(),
            Some(week("1d", 7)),
        ),
        (
            "type, month",
            "/types/step_count?period=month&tz=UTC".into(),
            Some(week("1d", 30)),
        ),
        (
            "type, year",
            "/types/step_count?period=year&tz=UTC".into(),
            Some(week("1mo", 365)),
        ),
        (
            "heart rate, year",
            "/types/heart_rate?period=year&tz=UTC".into(),
            None,
        ),
        ("apps", "/apps".into(), Some("/v1/apps".into())),
        ("studies", "/studies".into(), Some("/v1/studies".into())),
        ("privacy", "/privacy".into(), Some("/v1/privacy".into())),
        ("import", "/import".into(), None),
    ];
    let app_id = registered_app(&client, &server).await?;
    let app_page = format!("/apps/{app_id}");
    let app_api = format!("/v1/apps/{app_id}");
    let more: Vec<(&str, String, Option<String>)> = vec![
        ("an app", app_page, Some(app_api)),
        ("access log", "/access".into(), Some("/v1/audit".into())),
        ("settings", "/settings".into(), None),
    ];
    for (name, page, api) in cases.iter().chain(&more) {
        time_case(&client, &server, args.runs, name, page, api.as_deref()).await?;
    }
    // The summary again with three types pinned ahead of its own.
    let r = client
        .put(format!("{}/v1/owner/pinned-types", server.base))
        .bearer_auth(&server.token)
        .json(&json!({ "types": ["heart_rate", "body_mass", "mindful_session"] }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "pinning: {}", r.status());
    time_case(
        &client,
        &server,
        args.runs,
        "summary, 3 pinned",
        "/summary?tz=UTC",
        Some("/v1/owner/pinned-types"),
    )
    .await?;
    server.stop().await;
    Ok(())
}
