//! Queries over HTTP on SQLite and Postgres: statistics buckets, merging of
//! overlapping sources, the change feed, the observer stream and sample
//! filters.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Backend, TestApp, TestDatabase};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

both_backends!(
    buckets_match_brute_force_across_dst_and_months,
    overlapping_phone_and_watch_count_each_minute_once,
    change_feed_pages_replay_to_the_visible_set,
    observer_reports_changes_resumes_and_ends_at_lock,
    shutdown_ends_observer_streams,
    samples_filter_by_source_and_device_and_order,
    bad_input_to_new_endpoints_is_a_clear_problem,
    huge_bucket_intervals_are_refused_not_a_panic,
    observer_never_fires_for_hidden_changes,
    revoking_a_credential_ends_its_observer_streams,
    observer_streams_are_capped_per_token,
);

/// An RFC 3339 time for a query string.
fn q(t: &str) -> String {
    t.replace('+', "%2B")
}

fn ts(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap()
}

fn rfc(us: i64) -> String {
    ts(us).to_string()
}

fn parse_us(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_microsecond()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

fn device(name: &str, kind: &str) -> Value {
    json!({ "name": name, "kind": kind, "manufacturer": "Acme" })
}

fn step_sample(start_us: i64, dur_s: i64, value: f64) -> Value {
    json!({
        "sync_id": uuid::Uuid::new_v4().to_string(),
        "type": "step_count",
        "start": rfc(start_us),
        "end": rfc(start_us + dur_s * 1_000_000),
        "value": value,
        "unit": "count",
    })
}

async fn put_json(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(app.token.as_deref().unwrap())
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Bucket edges computed independently: civil days, months or fixed hours.
fn brute_edges(kind: &str, tz: &TimeZone, start_us: i64, end_us: i64) -> Vec<i64> {
    let local = |us: i64| -> Zoned { ts(us).to_zoned(tz.clone()) };
    let mut out = Vec::new();
    match kind {
        "P1D" => {
            let mut d = local(start_us).date();
            loop {
                let e = d.to_zoned(tz.clone()).unwrap().timestamp().as_microsecond();
                out.push(e);
                if e >= end_us {
                    break;
                }
                d = d.tomorrow().unwrap();
            }
        }
        "P1M" => {
            let mut d = local(start_us).date().first_of_month();
            loop {
                let e = d.to_zoned(tz.clone()).unwrap().timestamp().as_microsecond();
                out.push(e);
                if e >= end_us {
                    break;
                }
                d = d.last_of_month().tomorrow().unwrap();
            }
        }
        "PT1H" => {
            let mut e = local(start_us)
                .start_of_day()
                .unwrap()
                .timestamp()
                .as_microsecond();
            while e + 3_600_000_000 <= start_us {
                e += 3_600_000_000;
            }
            loop {
                out.push(e);
                if e >= end_us {
                    break;
                }
                e += 3_600_000_000;
            }
        }
        _ => unreachable!(),
    }
    out
}

/// Samples as (start µs, duration s, value).
fn brute_sum(samples: &[(i64, i64, f64)], a: i64, b: i64) -> f64 {
    samples
        .iter()
        .map(|&(s, d, v)| {
            if d == 0 {
                if (a..b).contains(&s) {
                    v
                } else {
                    0.0
                }
            } else {
                let e = s + d * 1_000_000;
                let overlap = (e.min(b) - s.max(a)).max(0);
                v * overlap as f64 / (e - s) as f64
            }
        })
        .sum()
}

/// Random samples (many straddling bucket edges) around DST changes in
/// Berlin and New York and over months of different lengths: every bucket
/// equals a brute-force computation.
async fn buckets_match_brute_force_across_dst_and_months(backend: Backend) {
    let windows = [
        // (tz, interval, window start, window end)
        (
            "Europe/Berlin",
            "P1D",
            "2026-03-27T00:00:00Z",
            "2026-04-01T00:00:00Z",
        ),
        (
            "Europe/Berlin",
            "PT1H",
            "2026-10-24T20:00:00Z",
            "2026-10-25T06:00:00Z",
        ),
        (
            "America/New_York",
            "P1D",
            "2026-10-30T00:00:00Z",
            "2026-11-04T00:00:00Z",
        ),
        (
            "America/New_York",
            "P1D",
            "2026-03-06T00:00:00Z",
            "2026-03-10T00:00:00Z",
        ),
        (
            "Europe/Berlin",
            "P1M",
            "2026-01-10T00:00:00Z",
            "2026-06-20T00:00:00Z",
        ),
    ];
    let mut runner = TestRunner::new(Config::with_cases(4));
    let strategy = proptest::collection::vec((0.0f64..1.0, prop_dur(), 0.0f64..500.0), 1..150);
    for _ in 0..2 {
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        for &(tz_name, interval, from, to) in &windows {
            let (from_us, to_us) = (parse_us(from), parse_us(to));
            let raw = strategy.new_tree(&mut runner).unwrap().current();
            let samples: Vec<(i64, i64, f64)> = raw
                .iter()
                .map(|&(f, d, v)| {
                    (
                        from_us + ((to_us - from_us) as f64 * f) as i64 / 1_000_000 * 1_000_000,
                        d,
                        v,
                    )
                })
                .collect();
            // Each window writes its own samples; earlier windows lie outside.
            let body: Vec<Value> = samples
                .iter()
                .map(|&(s, d, v)| step_sample(s, d, v))
                .collect();
            assert_eq!(app.write(body).await.status(), 201);
            let tz = TimeZone::get(tz_name).unwrap();
            let edges = brute_edges(interval, &tz, from_us, to_us);
            let got = app
                .get_json(&format!(
                    "/v1/statistics/buckets?type=step_count&start={}&end={}&interval={interval}&tz={tz_name}",
                    q(from),
                    q(to)
                ))
                .await;
            let buckets = got["buckets"].as_array().unwrap();
            assert_eq!(
                buckets.len(),
                edges.len() - 1,
                "{tz_name} {interval}: {got}"
            );
            for (i, b) in buckets.iter().enumerate() {
                let (a, z) = (edges[i], edges[i + 1]);
                assert_eq!(parse_us(b["start"].as_str().unwrap()), a, "{b}");
                assert_eq!(parse_us(b["end"].as_str().unwrap()), z, "{b}");
                let want = brute_sum(&samples, a, z);
                let have = b["sum"].as_f64().unwrap();
                assert!(
                    close(have, want),
                    "{tz_name} {interval} bucket {i}: {have} vs {want}"
                );
            }
            // Clean up so the next window starts from nothing.
            for s in app.list_all("step_count", 1000).await {
                let id = s["id"].as_str().unwrap();
                assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 204);
            }
        }
        // DST day lengths, explicitly.
        let steps = app
            .get_json("/v1/statistics/buckets?type=step_count&start=2026-03-28T12:00:00Z&end=2026-03-30T12:00:00Z&interval=P1D&tz=Europe/Berlin")
            .await;
        let starts: Vec<&str> = steps["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["start"].as_str().unwrap())
            .collect();
        assert_eq!(
            starts,
            [
                "2026-03-28T00:00:00+01:00",
                "2026-03-29T00:00:00+01:00",
                "2026-03-30T00:00:00+02:00"
            ]
        );
        app.stop().await;
    }
}

fn prop_dur() -> impl Strategy<Value = i64> {
    proptest::prop_oneof![proptest::strategy::Just(0i64), 1i64..120, 3000i64..20_000,]
}

/// Minute samples from a phone and a watch for the same minutes: the daily
/// sum counts each minute once, the priority decides which, and
/// `by_source` shows both.
async fn overlapping_phone_and_watch_count_each_minute_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    // Two local days in Berlin, the second one the 23-hour DST day.
    let from = parse_us("2026-03-27T23:00:00Z");
    let minutes = 24 * 60 + 23 * 60;
    let mut batch = Vec::new();
    for m in 0..minutes {
        let start = from + m * 60_000_000;
        let mut w = step_sample(start, 60, 10.0);
        w["device"] = device("Watch", "watch");
        let mut p = step_sample(start, 60, 7.0);
        p["device"] = device("Phone", "phone");
        batch.push(w);
        batch.push(p);
    }
    assert_eq!(app.write(batch).await.status(), 201);
    let path = "/v1/statistics/buckets?type=step_count&start=2026-03-27T23:00:00Z&end=2026-03-29T22:00:00Z&interval=P1D&tz=Europe/Berlin";
    let sums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| b["sum"].as_f64().unwrap())
            .collect()
    };
    let merged = app.get_json(path).await;
    assert_eq!(
        sums(&merged["buckets"]),
        vec![14_400.0, 13_800.0],
        "the watch wins by default"
    );
    let plain = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(plain["sum"], 28_200.0);
    assert_eq!(plain["count"], 2 * minutes);

    let by = app.get_json(&format!("{path}&by_source=true")).await;
    let series = by["sources"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    let mut seen = BTreeMap::new();
    for s in series {
        assert_eq!(s["source"], "owner");
        seen.insert(
            s["device"]["name"].as_str().unwrap().to_string(),
            sums(&s["buckets"]),
        );
    }
    assert_eq!(seen["Watch"], vec![14_400.0, 13_800.0]);
    assert_eq!(seen["Phone"], vec![10_080.0, 9_660.0]);

    let only = app.get_json(&format!("{path}&sources=owner/Phone")).await;
    assert_eq!(sums(&only["buckets"]), vec![10_080.0, 9_660.0]);

    let sources = app.get_json("/v1/sources?type=step_count").await;
    assert_eq!(sources["sources"][0]["device"]["name"], "Watch");

    let r = put_json(
        &app,
        "/v1/sources/priority",
        &json!({"order": [{"source": "owner", "device": "Phone"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let merged = app.get_json(path).await;
    assert_eq!(
        sums(&merged["buckets"]),
        vec![10_080.0, 9_660.0],
        "the phone now wins"
    );
    let plain = app
        .get_json("/v1/statistics?type=step_count&by_source=true")
        .await;
    assert_eq!(plain["sum"], 19_740.0);
    assert_eq!(plain["sources"].as_array().unwrap().len(), 2);
    let sources = app.get_json("/v1/sources?type=step_count").await;
    assert_eq!(sources["sources"][0]["device"]["name"], "Phone");

    // The priority is an event: it survives lock and unlock.
    let mut app = app;
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    app.unlock().await;
    let merged = app.get_json(path).await;
    assert_eq!(sums(&merged["buckets"]), vec![10_080.0, 9_660.0]);
    let order = app.get_json("/v1/sources/priority").await;
    assert_eq!(order["order"][0]["device"], "Phone");
    app.stop().await;
}

/// Interleaved writes and deletes, read back in small pages: replaying the
/// pages rebuilds exactly the visible set, and resuming from an anchor later
/// picks up exactly what changed since.
async fn change_feed_pages_replay_to_the_visible_set(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut replica: BTreeMap<String, Value> = BTreeMap::new();
    let mut anchor: Option<String> = None;
    let types = "step_count,heart_rate";
    let mut minute = 0;
    for round in 0..4 {
        for _ in 0..3 {
            let mut batch = Vec::new();
            for _ in 0..6 {
                batch.push(crate::support::steps(minute, 1.0));
                batch.push(crate::support::sample(
                    "heart_rate",
                    minute,
                    60.0,
                    "count/min",
                ));
                minute += 1;
            }
            assert_eq!(app.write(batch).await.status(), 201);
            // Delete some of what exists, old and new.
            let all = app.list_all("step_count", 1000).await;
            for s in all.iter().step_by(4).take(2) {
                let id = s["id"].as_str().unwrap();
                assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 204);
            }
        }
        // Another type, not asked for: never in the feed.
        assert_eq!(
            app.write(vec![crate::support::sample("body_mass", round, 70.0, "kg")])
                .await
                .status(),
            201
        );
        loop {
            let mut path = format!("/v1/changes?types={types}&limit=7");
            if let Some(a) = &anchor {
                path.push_str(&format!("&anchor={a}"));
            }
            let page = app.get_json(&path).await;
            let added = page["added"].as_array().unwrap();
            let deleted = page["deleted"].as_array().unwrap();
            assert!(added.len() + deleted.len() <= 7);
            for s in added {
                assert_ne!(s["type"], "body_mass");
                replica.insert(s["id"].as_str().unwrap().to_string(), s.clone());
            }
            for d in deleted {
                replica.remove(d["id"].as_str().unwrap());
            }
            anchor = Some(page["anchor"].as_str().unwrap().to_string());
            if !page["has_more"].as_bool().unwrap() {
                break;
            }
        }
        let mut visible: BTreeMap<String, Value> = BTreeMap::new();
        for ty in ["step_count", "heart_rate"] {
            for s in app.list_all(ty, 1000).await {
                visible.insert(s["id"].as_str().unwrap().to_string(), s);
            }
        }
        assert_eq!(replica, visible, "round {round}");
    }
    // At the head: nothing more, and the anchor stays.
    let a = anchor.unwrap();
    let page = app
        .get_json(&format!("/v1/changes?types={types}&anchor={a}"))
        .await;
    assert_eq!(page["added"], json!([]));
    assert_eq!(page["deleted"], json!([]));
    assert_eq!(page["has_more"], false);
    app.stop().await;
}

/// A minimal Server-Sent Events reader.
pub(crate) struct Sse {
    response: reqwest::Response,
    buffer: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub comment: bool,
}

impl Sse {
    pub(crate) async fn open(app: &TestApp, path: &str, last_id: Option<&str>) -> Sse {
        let mut rb = app
            .client
            .get(app.url(path))
            .bearer_auth(app.token.as_deref().unwrap());
        if let Some(id) = last_id {
            rb = rb.header("last-event-id", id);
        }
        let response = rb.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next message, or `None` when the stream ends.
    async fn next(&mut self, within: Duration) -> Option<SseMessage> {
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                let mut m = SseMessage::default();
                for line in block.lines() {
                    if line.starts_with(':') {
                        m.comment = true;
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match k {
                            "event" => m.event = v.to_string(),
                            "id" => m.id = Some(v.to_string()),
                            "data" => m.data.push_str(v),
                            _ => {}
                        }
                    }
                }
                return Some(m);
            }
            let chunk = tokio::time::timeout(within, self.response.chunk())
                .await
                .expect("an SSE message in time")
                .expect("stream read");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// The next message that is not a heartbeat.
    pub(crate) async fn next_event(&mut self, within: Duration) -> Option<SseMessage> {
        loop {
            let m = self.next(within).await?;
            if !m.comment {
                return Some(m);
            }
        }
    }
}

async fn observer_reports_changes_resumes_and_ends_at_lock(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let second = Duration::from_secs(1);
    let path = "/v1/observe?types=step_count&heartbeat=1";
    let mut sse = Sse::open(&app, path, None).await;
    let ready = sse.next_event(second).await.unwrap();
    assert_eq!(ready.event, "ready");

    // A type not observed never fires; an observed one within a second.
    assert_eq!(
        app.write(vec![crate::support::sample(
            "heart_rate",
            0,
            60.0,
            "count/min"
        )])
        .await
        .status(),
        201
    );
    assert_eq!(
        app.write(vec![crate::support::steps(0, 5.0)])
            .await
            .status(),
        201
    );
    let change = sse.next_event(second).await.unwrap();
    assert_eq!(change.event, "change");
    let data: Value = serde_json::from_str(&change.data).unwrap();
    assert_eq!(data["type"], "step_count");
    let last_id = change.id.clone().unwrap();
    assert_eq!(data["anchor"], last_id.as_str());
    // The anchor is a change-feed anchor: nothing after it yet.
    let page = app
        .get_json(&format!("/v1/changes?types=step_count&anchor={last_id}"))
        .await;
    assert_eq!(page["added"], json!([]));

    // Heartbeats keep the stream alive.
    let beat = sse.next(Duration::from_secs(3)).await.unwrap();
    assert!(beat.comment, "{beat:?}");
    drop(sse);

    // Changes while disconnected are reported on reconnect.
    assert_eq!(
        app.write(vec![crate::support::steps(1, 5.0)])
            .await
            .status(),
        201
    );
    let mut sse = Sse::open(&app, path, Some(&last_id)).await;
    let missed = sse.next_event(second).await.unwrap();
    assert_eq!(missed.event, "change");
    assert!(missed.data.contains("step_count"));
    assert_ne!(missed.id.as_deref(), Some(last_id.as_str()));
    assert_eq!(sse.next_event(second).await.unwrap().event, "ready");

    // Reconnecting from the latest id reports nothing old.
    let latest = missed.id.unwrap();
    let mut again = Sse::open(&app, path, Some(&latest)).await;
    assert_eq!(again.next_event(second).await.unwrap().event, "ready");

    // Locking ends both streams with `store_locked`.
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    for s in [&mut sse, &mut again] {
        let end = s.next_event(second).await.unwrap();
        assert_eq!(end.event, "store_locked");
        assert!(s.next_event(second).await.is_none(), "the stream ends");
    }
    let r = app.get(path).await;
    assert_eq!(r.status(), 503);
    app.unlock().await;
    app.stop().await;
}

/// A server stopping does not wait for observers: their streams end.
async fn shutdown_ends_observer_streams(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut sse = Sse::open(&app, "/v1/observe", None).await;
    assert_eq!(
        sse.next_event(Duration::from_secs(1)).await.unwrap().event,
        "ready"
    );
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops with an observer connected");
    let end = sse.next_event(Duration::from_secs(1)).await.unwrap();
    assert_eq!(end.event, "store_locked");
}

async fn samples_filter_by_source_and_device_and_order(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut batch = Vec::new();
    for m in 0..6 {
        let mut s = crate::support::sample("heart_rate", m, 60.0 + m as f64, "count/min");
        if m % 2 == 0 {
            s["device"] = device("Watch", "watch");
        }
        batch.push(s);
    }
    assert_eq!(app.write(batch.clone()).await.status(), 201);
    // Retrying with the same device is a no-op; another device is a conflict.
    assert_eq!(app.write(batch.clone()).await.status(), 200);
    let mut other = batch[0].clone();
    other["device"] = device("Other", "phone");
    assert_eq!(app.write(vec![other]).await.status(), 409);

    let all = app.get_json("/v1/samples?type=heart_rate").await;
    let values = |v: &Value| -> Vec<f64> {
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(values(&all), vec![60.0, 61.0, 62.0, 63.0, 64.0, 65.0]);
    assert_eq!(all["samples"][0]["device"], device("Watch", "watch"));
    assert!(all["samples"][1].get("device").is_none());

    let desc = app
        .get_json("/v1/samples?type=heart_rate&order=desc&limit=4")
        .await;
    assert_eq!(values(&desc), vec![65.0, 64.0, 63.0, 62.0]);
    let cursor = desc["next_cursor"].as_str().unwrap();
    let rest = app
        .get_json(&format!(
            "/v1/samples?type=heart_rate&order=desc&limit=4&cursor={cursor}"
        ))
        .await;
    assert_eq!(values(&rest), vec![61.0, 60.0]);
    assert!(rest["next_cursor"].is_null());

    let latest = app
        .get_json("/v1/samples?type=heart_rate&most_recent=true")
        .await;
    assert_eq!(values(&latest), vec![65.0]);
    let watch = app
        .get_json("/v1/samples?type=heart_rate&device=Watch")
        .await;
    assert_eq!(values(&watch), vec![60.0, 62.0, 64.0]);
    let watch = app
        .get_json("/v1/samples?type=heart_rate&sources=owner/Watch&order=desc")
        .await;
    assert_eq!(values(&watch), vec![64.0, 62.0, 60.0]);
    let none = app
        .get_json("/v1/samples?type=heart_rate&sources=someone")
        .await;
    assert_eq!(values(&none), Vec::<f64>::new());

    let stats = app.get_json("/v1/statistics?type=heart_rate").await;
    assert_eq!(stats["most_recent"], 65.0);
    assert_eq!(stats["count"], 6);
    let watch = app
        .get_json("/v1/statistics?type=heart_rate&sources=owner/Watch")
        .await;
    assert_eq!(watch["most_recent"], 64.0);
    assert_eq!(watch["max"], 64.0);
    let hourly = app
        .get_json("/v1/statistics/buckets?type=heart_rate&start=2026-01-01T00:00:00Z&end=2026-01-01T01:00:00Z&interval=PT1H&aggregate=max,most_recent&unit=count/s")
        .await;
    let b = &hourly["buckets"][0];
    assert!(close(b["max"].as_f64().unwrap(), 65.0 / 60.0), "{b}");
    assert!(b.get("min").is_none());
    assert_eq!(b["count"], 6);
    app.stop().await;
}

async fn assert_problem(r: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(r.status(), status, "{what}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}"
    );
    body
}

async fn bad_input_to_new_endpoints_is_a_clear_problem(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(
        app.write(vec![crate::support::steps(0, 1.0)])
            .await
            .status(),
        201
    );
    let b = "/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
    let cases = [
        (format!("{b}&interval=1D"), "interval"),
        (format!("{b}&interval=P"), "interval"),
        (format!("{b}&interval=-P1D"), "interval"),
        (format!("{b}&interval=PT0S"), "interval"),
        (b.to_string(), "interval"),
        (format!("{b}&interval=P1D&tz=Mars/Olympus"), "tz"),
        (format!("{b}&interval=P1D&tz="), "tz"),
        (format!("{b}&interval=P1D&anchor=noonish"), "anchor"),
        (format!("{b}&interval=P1D&aggregate=avg"), "aggregate"),
        (format!("{b}&interval=P1D&unit=kg"), "unit"),
        (format!("{b}&interval=P1D&sources=,"), "sources"),
        (format!("{b}&interval=P1D&by_source=maybe"), "by_source"),
        ("/v1/statistics/buckets?type=nope&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&interval=P1D".into(), "type"),
        ("/v1/statistics/buckets?type=sleep_analysis&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&interval=P1D".into(), "type"),
        ("/v1/statistics/buckets?type=step_count&end=2026-01-02T00:00:00Z&interval=P1D".into(), "start"),
        ("/v1/statistics/buckets?type=step_count&start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z&interval=P1D".into(), "end"),
        ("/v1/changes?types=nope".into(), "type"),
        ("/v1/changes?types=".into(), "type"),
        ("/v1/changes?anchor=garbage".into(), "anchor"),
        ("/v1/changes?limit=0".into(), "limit"),
        ("/v1/changes?limit=1001".into(), "limit"),
        ("/v1/changes?unit=kg".into(), "unit"),
        ("/v1/changes?types=step_count&unit=kg".into(), "unit"),
        ("/v1/observe?types=nope".into(), "type"),
        ("/v1/observe?heartbeat=0".into(), "heartbeat"),
        ("/v1/sources?type=nope".into(), "type"),
        ("/v1/samples?type=step_count&order=sideways".into(), "order"),
        ("/v1/samples?type=step_count&most_recent=yes".into(), "most_recent"),
        ("/v1/statistics?type=step_count&sources=a,,b".into(), "sources"),
    ];
    for (path, field) in cases {
        let body = assert_problem(app.get(&path).await, 400, &path).await;
        if body["code"] == "invalid_input" {
            assert!(
                body["errors"][0]["field"].as_str().unwrap().contains(field),
                "{path}: {body}"
            );
        }
    }
    // Too many buckets is its own clear 400.
    let body = assert_problem(
        app.get("/v1/statistics/buckets?type=step_count&start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z&interval=PT1M").await,
        400,
        "huge range",
    )
    .await;
    assert_eq!(body["code"], "too_many_buckets");
    let body = assert_problem(
        app.get("/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-08T00:00:00Z&interval=PT1M").await,
        400,
        "10,080 buckets",
    )
    .await;
    assert_eq!(body["code"], "too_many_buckets");
    // A bad Last-Event-ID is refused too.
    let r = app
        .client
        .get(app.url("/v1/observe"))
        .bearer_auth(app.token.as_deref().unwrap())
        .header("last-event-id", "bogus")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "Last-Event-ID").await;
    // Priority bodies.
    for body in [
        json!({}),
        json!({"order": "watch"}),
        json!({"order": [{"source": ""}]}),
        json!({"order": [{"source": "a"}, {"source": "a"}]}),
        json!({"order": [{"source": "a", "extra": 1}]}),
    ] {
        assert_problem(
            put_json(&app, "/v1/sources/priority", &body).await,
            400,
            &body.to_string(),
        )
        .await;
    }
    // Bad devices on write.
    for d in [
        json!({"kind": "watch"}),
        json!({"name": "", "kind": "watch"}),
        json!({"name": "W", "kind": "toaster"}),
        json!({"name": "a/b"}),
        json!("watch"),
    ] {
        let mut s = crate::support::steps(5, 1.0);
        s["device"] = d.clone();
        assert_problem(app.write(vec![s]).await, 400, &d.to_string()).await;
    }
    // Unauthenticated and locked requests answer as everywhere else.
    let r = app.client.get(app.url("/v1/changes")).send().await.unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    app.stop().await;
}

/// Found by fuzzing: a `19998y` interval overflowed the bucket estimate and
/// the handler panicked (the connection dropped without an answer).
async fn huge_bucket_intervals_are_refused_not_a_panic(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(
        app.write(vec![crate::support::steps(0, 1.0)])
            .await
            .status(),
        201
    );
    let b = "/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
    for interval in [
        "19998y", "P19998Y", "P731M", "239976mo", "1042326w", "P50YT1S",
    ] {
        let path = format!("{b}&interval={interval}");
        let body = assert_problem(app.get(&path).await, 400, &path).await;
        assert_eq!(body["errors"][0]["field"], "interval", "{path}: {body}");
    }
    // Fifty years is still one bucket.
    let r = app.get(&format!("{b}&interval=P50Y")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["buckets"].as_array().unwrap().len(), 1, "{body}");
    app.stop().await;
}

/// An app that may write but not read step_count hears nothing of others'
/// step samples, only of its own, and its stream's ids are as opaque as the
/// change feed's anchors.
async fn observer_never_fires_for_hidden_changes(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let reg = app.register_app("Y", "https://y.example/cb", false).await;
    let y_token = app
        .mint(reg["id"].as_str().unwrap(), &[], &["step_count"])
        .await;
    let owner_token = app.token.replace(y_token.clone()).unwrap();
    let second = Duration::from_secs(1);
    let mut sse = Sse::open(&app, "/v1/observe?types=step_count", None).await;
    assert_eq!(sse.next_event(second).await.unwrap().event, "ready");

    app.token = Some(owner_token);
    assert_eq!(
        app.write(vec![crate::support::steps(0, 5.0)])
            .await
            .status(),
        201
    );
    let quiet = tokio::time::timeout(
        Duration::from_millis(1500),
        sse.next_event(Duration::from_secs(10)),
    )
    .await;
    assert!(quiet.is_err(), "a hidden change must not fire: {quiet:?}");

    app.token = Some(y_token);
    assert_eq!(
        app.write(vec![crate::support::steps(1, 7.0)])
            .await
            .status(),
        201
    );
    let own = sse.next_event(second).await.expect("its own change fires");
    assert_eq!(own.event, "change");
    assert!(own.data.contains("step_count"));
}

/// Mints a credential; returns its id and token.
async fn mint_with_id(app: &TestApp, app_id: &str, read: &[&str]) -> (String, String) {
    let r = app
        .post_json(
            &format!("/v1/apps/{app_id}/credentials"),
            &json!({ "name": "watcher", "read": read, "write": [] }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

async fn revoking_a_credential_ends_its_observer_streams(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Watcher", "https://w.example/cb", false)
        .await;
    let app_id = reg["id"].as_str().unwrap().to_string();
    let (cred_id, token) = mint_with_id(&app, &app_id, &["step_count"]).await;
    let owner = app.token.replace(token).unwrap();
    let mut sse = Sse::open(&app, "/v1/observe?types=step_count&heartbeat=1", None).await;
    app.token = Some(owner);
    let second = Duration::from_secs(1);
    assert_eq!(sse.next_event(second).await.unwrap().event, "ready");

    let r = app
        .delete(&format!("/v1/apps/{app_id}/credentials/{cred_id}"))
        .await;
    assert_eq!(r.status(), 204);
    // Within one heartbeat (plus slack for a loaded machine) the stream
    // says why it ends, and ends.
    let last = sse.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(last.event, "token_revoked");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["code"], "unauthenticated");
    assert!(
        sse.next(Duration::from_secs(5)).await.is_none(),
        "the stream ends"
    );
    app.stop().await;
}

async fn observer_streams_are_capped_per_token(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Greedy", "https://g.example/cb", false)
        .await;
    let app_id = reg["id"].as_str().unwrap().to_string();
    let (_, first) = mint_with_id(&app, &app_id, &["step_count"]).await;
    let (_, second) = mint_with_id(&app, &app_id, &["step_count"]).await;
    let owner = app.token.replace(first.clone()).unwrap();
    let mut open = Vec::new();
    // Heartbeats every second: the server notices a closed stream when a
    // heartbeat fails to go out.
    let path = "/v1/observe?heartbeat=1";
    for _ in 0..8 {
        open.push(Sse::open(&app, path, None).await);
    }
    let r = app
        .client
        .get(app.url("/v1/observe"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "a ninth stream for one token is refused");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_streams");

    // Another token is counted apart; a closed stream frees its slot.
    app.token = Some(second);
    let _other = Sse::open(&app, path, None).await;
    drop(open.pop());
    app.token = Some(first);
    let mut reopened = None;
    for _ in 0..150 {
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(app.token.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed stream gives its slot back");
    app.token = Some(owner);
    app.stop().await;
}
