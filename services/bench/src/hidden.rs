//! Reads by an app without read access, in stores with and without hidden
//! samples.
//!
//! An app holding only a write grant for `step_count` writes its own 10,000
//! samples through `POST /v1/samples`, then lists, sums and buckets them with
//! its own token. Each store is set up the same way; the stores differ only
//! in the owner's `step_count` samples, loaded straight into the writer
//! before the app writes: none (the baseline), 1,000,000 and 5,000,000.
//! Hidden samples share the type and the time range with the app's, one in
//! every few minutes, so a read that scans the type's rows has to pass
//! them. No sample overlaps another in time, so nothing is merged by source
//! priority and an app's answer is the same with or without the owner's.
//!
//! Values are not integers (`12.3`, `41.7`, …), so a floating-point sum
//! that depended on hidden rows (their number, their values, the order they
//! were added in) would differ in its last bits. Before timing, every store's
//! answers are read in full: the app's list must hold exactly the samples it
//! wrote, and its list, sum and buckets must be identical to the baseline's;
//! any difference fails the run once the table is printed.
//!
//! The stores run side by side. Each request is timed from sending to the
//! last byte of the answer, in blocks of [`BLOCK_REPS`] per store, the stores
//! taking turns, `--runs` blocks each; the median over all of them is
//! printed.

use std::time::Instant;

use anyhow::Context;
use hearth::crypto::KdfParams;
use serde_json::{json, Value};

use crate::{median, rfc3339, step_sample, Args, Backend, Server, MINUTE_US, YEAR_START_US};

/// The range every store's samples lie in: 5,000,000 minutes (about 9.5
/// years) from 2025-01-01.
const RANGE_MINUTES: i64 = 5_000_000;
const RANGE_START_US: i64 = YEAR_START_US;
const RANGE_END_US: i64 = YEAR_START_US + RANGE_MINUTES * MINUTE_US;
/// The app's own samples and the batches it writes them in.
const APP_SAMPLES: i64 = 10_000;
const APP_BATCH: usize = 1_000;
/// The page size of the list figure.
const LIST_PAGE: usize = 500;
/// Requests per store in one block of a timing round.
const BLOCK_REPS: usize = 10;
const HALF_MINUTE_US: i64 = MINUTE_US / 2;

/// The app's sample `k`: the second half of a minute, every 500 minutes.
fn app_sample(k: i64) -> (i64, i64, f64) {
    let minute = k * (RANGE_MINUTES / APP_SAMPLES);
    let start = RANGE_START_US + minute * MINUTE_US + HALF_MINUTE_US;
    let value = (k % 89) as f64 + 0.1 * ((k % 7) + 1) as f64;
    (start, start + HALF_MINUTE_US, value)
}

/// The owner's sample `i` of `n`: the first half of a minute, spread evenly
/// over the range (so between and around the app's).
fn hidden_sample(i: usize, n: usize) -> hearth::log::writer::NewSample {
    let minute = i as i64 * RANGE_MINUTES / n as i64;
    let start = RANGE_START_US + minute * MINUTE_US;
    step_sample(start, start + HALF_MINUTE_US, (i % 50) as f64 + 0.7)
}

/// A number of samples as a column heading: `1M`, `250k`, `1234`.
fn short_count(n: usize) -> String {
    if n == 0 {
        "baseline".into()
    } else if n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// One store: a server, its hidden samples and the app's token.
struct HiddenStore {
    hidden: usize,
    server: Server,
    app_token: String,
    /// The cursor of the second page of the app's list.
    next_cursor: String,
}

/// What the app sees in one store, read in full before anything is timed.
struct Answers {
    /// `(start µs, end µs, value)` of every sample the list returns, in order.
    samples: Vec<(i64, i64, f64)>,
    count: u64,
    sum: f64,
    buckets: Value,
}

/// The surfaces timed, each a request by the app.
#[derive(Clone, Copy)]
enum Surface {
    FirstPage,
    NextPage,
    Sum,
    Buckets,
}

impl Surface {
    const ALL: [Surface; 4] = [
        Surface::FirstPage,
        Surface::NextPage,
        Surface::Sum,
        Surface::Buckets,
    ];

    fn label(self) -> String {
        match self {
            Surface::FirstPage => format!("list, first page of {LIST_PAGE}"),
            Surface::NextPage => format!("list, next {LIST_PAGE} (cursor)"),
            Surface::Sum => "statistics (sum)".into(),
            Surface::Buckets => "buckets P1D Europe/Berlin".into(),
        }
    }

    fn path(self, store: &HiddenStore) -> String {
        let range = format!(
            "type=step_count&start={}&end={}",
            rfc3339(RANGE_START_US),
            rfc3339(RANGE_END_US)
        );
        match self {
            Surface::FirstPage => format!("/v1/samples?{range}&limit={LIST_PAGE}"),
            Surface::NextPage => format!(
                "/v1/samples?{range}&limit={LIST_PAGE}&cursor={}",
                store.next_cursor
            ),
            Surface::Sum => format!("/v1/statistics?{range}"),
            Surface::Buckets => {
                format!("/v1/statistics/buckets?{range}&interval=P1D&tz=Europe/Berlin")
            }
        }
    }
}

/// The JSON answer to `request`, which must succeed.
async fn answer(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let r = request.send().await.with_context(|| what.to_string())?;
    let status = r.status();
    let body = r.text().await?;
    anyhow::ensure!(status.is_success(), "{what} answered {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{what}: {body}"))
}

/// Registers an app, grants it writing step_count and not reading it, and
/// mints a credential for it: the token of an app without read access.
async fn write_only_app(server: &Server, http: &reqwest::Client) -> anyhow::Result<String> {
    let app = answer(
        http.post(format!("{}/v1/apps", server.base))
            .bearer_auth(&server.token)
            .json(&json!({
                "name": "Step sync",
                "description": "Writes the steps a pedometer counts",
                "purpose": "Keeps your step count",
                "privacy_policy_url": "https://steps.example/privacy",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "client_type": "public",
            })),
        "registering the app",
    )
    .await?;
    let app_id = app["id"].as_str().context("app id")?;
    answer(
        http.patch(format!("{}/v1/apps/{app_id}/grants", server.base))
            .bearer_auth(&server.token)
            .json(&json!({
                "read": { "step_count": false },
                "write": { "step_count": true },
            })),
        "granting write",
    )
    .await?;
    let credential = answer(
        http.post(format!("{}/v1/apps/{app_id}/credentials", server.base))
            .bearer_auth(&server.token)
            .json(&json!({ "name": "pedometer", "write": ["step_count"] })),
        "minting the credential",
    )
    .await?;
    let scope = credential["scope"].as_str().unwrap_or_default();
    anyhow::ensure!(
        !scope.contains("read:"),
        "the credential may read: {credential}"
    );
    Ok(credential["token"]
        .as_str()
        .context("credential token")?
        .to_string())
}

/// The app writes its samples through the API, in batches.
async fn write_app_samples(
    server: &Server,
    http: &reqwest::Client,
    token: &str,
) -> anyhow::Result<()> {
    let samples: Vec<Value> = (0..APP_SAMPLES)
        .map(|k| {
            let (start, end, value) = app_sample(k);
            json!({
                "type": "step_count",
                "start": rfc3339(start),
                "end": rfc3339(end),
                "value": value,
                "unit": "count",
            })
        })
        .collect();
    for batch in samples.chunks(APP_BATCH) {
        answer(
            http.post(format!("{}/v1/samples", server.base))
                .bearer_auth(token)
                .json(&json!({ "samples": batch })),
            "writing the app's samples",
        )
        .await?;
    }
    Ok(())
}

async fn hidden_store(
    backend: Backend,
    admin: &str,
    hidden: usize,
    http: &reqwest::Client,
) -> anyhow::Result<HiddenStore> {
    let server = Server::start(backend, admin, KdfParams::RECOMMENDED).await?;
    let app_token = write_only_app(&server, http).await?;
    if hidden > 0 {
        let loading = Instant::now();
        server
            .load((0..hidden).map(|i| hidden_sample(i, hidden)))
            .await?;
        eprintln!(
            "  loaded {hidden} hidden samples in {:.1}s",
            loading.elapsed().as_secs_f64()
        );
    }
    write_app_samples(&server, http, &app_token).await?;
    Ok(HiddenStore {
        hidden,
        server,
        app_token,
        next_cursor: String::new(),
    })
}

fn micros(rfc3339: &Value) -> anyhow::Result<i64> {
    let text = rfc3339.as_str().context("a time")?;
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("time {text}"))?
        .timestamp_micros())
}

/// Reads everything the app sees in `store`, following the list's cursors;
/// remembers the cursor of the second page for timing.
async fn read_answers(store: &mut HiddenStore, http: &reqwest::Client) -> anyhow::Result<Answers> {
    let get = |path: String| {
        http.get(format!("{}{path}", store.server.base))
            .bearer_auth(&store.app_token)
    };
    let mut samples = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = Surface::FirstPage.path(store);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = answer(get(path), "listing").await?;
        for s in page["samples"].as_array().context("samples")? {
            let value = s["value"]
                .as_f64()
                .with_context(|| format!("value of {s}"))?;
            samples.push((micros(&s["start"])?, micros(&s["end"])?, value));
        }
        let next = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            store.next_cursor = next.clone().context("a second page")?;
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let statistics = answer(get(Surface::Sum.path(store)), "statistics").await?;
    let buckets = answer(get(Surface::Buckets.path(store)), "buckets").await?;
    Ok(Answers {
        samples,
        count: statistics["count"].as_u64().context("count")?,
        sum: statistics["sum"].as_f64().context("sum")?,
        buckets: buckets["buckets"].clone(),
    })
}

/// Differences between a store's answers and the baseline's (and, for the
/// baseline, the samples the app wrote).
fn differences(hidden: usize, got: &Answers, baseline: &Answers) -> Vec<String> {
    let name = short_count(hidden);
    let mut out = Vec::new();
    if hidden == 0 {
        let written: Vec<(i64, i64, f64)> = (0..APP_SAMPLES).map(app_sample).collect();
        let same = got.samples.len() == written.len()
            && got
                .samples
                .iter()
                .zip(&written)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && a.2.to_bits() == b.2.to_bits());
        if !same {
            out.push(format!(
                "baseline: the list holds {} samples, not the {} the app wrote as written",
                got.samples.len(),
                written.len()
            ));
        }
        let expected: f64 = written.iter().map(|s| s.2).sum();
        if got.count != APP_SAMPLES as u64 || (got.sum - expected).abs() > 1e-9 * expected {
            out.push(format!(
                "baseline: statistics count {} sum {}, the app wrote {APP_SAMPLES} summing to {expected}",
                got.count, got.sum
            ));
        }
        return out;
    }
    if got.samples.len() != baseline.samples.len() {
        out.push(format!(
            "{name}: the list holds {} samples, the baseline's {}",
            got.samples.len(),
            baseline.samples.len()
        ));
    } else if let Some(i) = (0..got.samples.len()).find(|&i| {
        let (a, b) = (got.samples[i], baseline.samples[i]);
        a.0 != b.0 || a.1 != b.1 || a.2.to_bits() != b.2.to_bits()
    }) {
        out.push(format!(
            "{name}: list entry {i} is {:?}, the baseline's {:?}",
            got.samples[i], baseline.samples[i]
        ));
    }
    if got.count != baseline.count || got.sum.to_bits() != baseline.sum.to_bits() {
        out.push(format!(
            "{name}: statistics count {} sum {:?}, the baseline's count {} sum {:?}",
            got.count, got.sum, baseline.count, baseline.sum
        ));
    }
    if got.buckets != baseline.buckets {
        let (a, b) = (
            got.buckets
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
            baseline
                .buckets
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        let differing: Vec<usize> = (0..a.len().max(b.len()))
            .filter(|&i| a.get(i) != b.get(i))
            .collect();
        let first = differing[0];
        out.push(format!(
            "{name}: {} of {} buckets differ from the baseline's (of {}); the first, {first}: {} against {}",
            differing.len(),
            a.len(),
            b.len(),
            a.get(first).unwrap_or(&Value::Null),
            b.get(first).unwrap_or(&Value::Null),
        ));
    }
    out
}

/// Milliseconds from sending one request until its whole answer is in.
async fn timed(
    http: &reqwest::Client,
    store: &HiddenStore,
    surface: Surface,
) -> anyhow::Result<f64> {
    let url = format!("{}{}", store.server.base, surface.path(store));
    let t = Instant::now();
    let r = http.get(&url).bearer_auth(&store.app_token).send().await?;
    let status = r.status();
    let _ = r.bytes().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(ms)
}

/// Prints the table; `Ok(false)` when an app's answers in a store with hidden
/// samples differ from the baseline's.
pub async fn bench_hidden(args: &Args, admin: &str) -> anyhow::Result<bool> {
    for &n in &args.hidden_samples {
        anyhow::ensure!(
            n > 0 && n as i64 <= RANGE_MINUTES,
            "--hidden-samples: between 1 and {RANGE_MINUTES}, not {n}"
        );
    }
    let backend = match args.backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "Postgres",
    };
    println!(
        "== hidden: an app without read access lists, sums and buckets its own {APP_SAMPLES} step_count samples \
         beside hidden ones of the owner (same type and range; {backend}) =="
    );
    let started = Instant::now();
    let http = reqwest::Client::new();
    let mut stores = Vec::new();
    for hidden in std::iter::once(0).chain(args.hidden_samples.iter().copied()) {
        stores.push(hidden_store(args.backend, admin, hidden, &http).await?);
    }
    eprintln!("  stores set up in {:.1}s", started.elapsed().as_secs_f64());

    // Everything the app sees, read before timing (this also warms each
    // store's caches for the requests timed below).
    let mut answers = Vec::new();
    for store in &mut stores {
        answers.push(read_answers(store, &http).await?);
    }
    let problems: Vec<String> = stores
        .iter()
        .zip(&answers)
        .flat_map(|(store, got)| differences(store.hidden, got, &answers[0]))
        .collect();

    let mut medians = Vec::new();
    for surface in Surface::ALL {
        let mut ms: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
        for _ in 0..args.runs.max(1) {
            for (store, out) in stores.iter().zip(&mut ms) {
                for _ in 0..BLOCK_REPS {
                    out.push(timed(&http, store, surface).await?);
                }
            }
        }
        medians.push(ms.into_iter().map(median).collect::<Vec<f64>>());
    }

    let mut heading = format!("  {:<30}{:>12}", "surface", "baseline ms");
    for store in &stores[1..] {
        let n = short_count(store.hidden);
        heading.push_str(&format!("{:>11}{:>9}", format!("{n} ms"), "ratio"));
    }
    println!("{heading}   (target <= 1.2x)");
    for (surface, row) in Surface::ALL.iter().zip(&medians) {
        let mut line = format!("  {:<30}{:>12.3}", surface.label(), row[0]);
        for ms in &row[1..] {
            line.push_str(&format!("{ms:>11.3}{:>8.2}x", ms / row[0]));
        }
        println!("{line}");
    }
    println!(
        "  (medians of {} requests per cell; hidden stores' answers {})",
        args.runs.max(1) * BLOCK_REPS,
        if problems.is_empty() {
            "identical to the baseline's"
        } else {
            "DIFFER from the baseline's"
        }
    );
    for store in stores {
        store.server.stop().await;
    }
    eprintln!(
        "  hidden-data figure took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    for p in &problems {
        println!("  {p}");
    }
    if !problems.is_empty() {
        println!("  FAILED: an app's answers depend on samples it cannot see");
    }
    Ok(problems.is_empty())
}
