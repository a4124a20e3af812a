//! The read boundary seen from a nosy app: nothing it can ask — values to
//! the last bit, order, sources and devices, the change feed and the
//! observer stream — depends on samples it may not read. Each test builds
//! a store with hidden samples and one without, lets the same app do the
//! same things in both, and compares every answer.

use std::time::Duration;

use serde_json::{json, Value};

use crate::apps::{normalise, observe, Seen};
use crate::queries::Sse;
use crate::support::{sample, steps, Backend, TestApp, TestDatabase};

both_backends!(
    an_apps_sum_keeps_its_last_bit_whatever_is_hidden,
    hidden_samples_and_devices_change_nothing_an_app_sees,
);

/// 2^53: above it, adding 1.0 to a float changes nothing, so the grouping
/// of a sum shows in its result.
const TWO_53: f64 = 9_007_199_254_740_992.0;

fn with_device(mut sample: Value, name: &str, kind: &str) -> Value {
    sample["device"] = json!({ "name": name, "kind": kind });
    sample
}

/// An app that may write step_count but not read it; returns its token.
async fn write_only_app(app: &TestApp, name: &str) -> (String, String) {
    let reg = app
        .register_app(name, &format!("https://{name}.example/cb"), false)
        .await;
    let id = reg["id"].as_str().unwrap().to_string();
    let token = app.mint(&id, &[], &["step_count"]).await;
    (id, token)
}

const WINDOW: &str = "start=2026-01-01T00:00:00Z&end=2026-01-01T03:00:00Z";

/// The attack: an app writes one sample of 2^53 steps and 64 of 1, then
/// watches its own sum while the owner adds samples it cannot see in the
/// same window. Its sum must not move by a single bit.
async fn an_apps_sum_keeps_its_last_bit_whatever_is_hidden(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (_, token) = write_only_app(&app, "nosy").await;
    let nosy = app.as_token(&token);
    let mut own = vec![steps(0, TWO_53)];
    own.extend((1..=64).map(|m| steps(m, 1.0)));
    assert_eq!(nosy.write(own).await.status(), 201);
    let read = || async {
        let stats = nosy
            .get_json(&format!("/v1/statistics?type=step_count&{WINDOW}"))
            .await;
        let buckets = nosy
            .get_json(&format!(
                "/v1/statistics/buckets?type=step_count&{WINDOW}&interval=PT1H"
            ))
            .await;
        (stats["sum"].clone(), buckets["buckets"].clone())
    };
    let before = read().await;
    assert!(before.0.as_f64().unwrap() >= TWO_53, "{before:?}");
    let mut minute = 0;
    for hidden in [5, 11, 30, 64, 1] {
        let batch: Vec<Value> = (0..hidden)
            .map(|i| {
                minute += 1;
                // Between the app's samples, so they share its rows' blocks.
                let mut s = steps(minute % 64, 1.0 + f64::from(i) * 0.5);
                s["start"] = Value::String(s["start"].as_str().unwrap().replace(":00+", ":30+"));
                s
            })
            .collect();
        assert_eq!(app.write(batch).await.status(), 201);
        assert_eq!(read().await, before, "after {hidden} more hidden samples");
    }
    // The owner sees every sample, so the owner's sum does move.
    let owner = app
        .get_json(&format!("/v1/statistics?type=step_count&{WINDOW}"))
        .await;
    assert_eq!(owner["count"], 65 + 5 + 11 + 30 + 64 + 1);
}

/// What one app does, in order, in both stores; `Hidden` steps happen only
/// in the store with hidden data.
enum Step {
    Own(Vec<Value>),
    Hidden(Vec<Value>),
    /// Another app writes: hidden from ours, with devices of its own.
    Other(Vec<Value>),
    /// The owner deletes the first of its hidden samples still there.
    HiddenDelete,
    /// Our app deletes its own sample at this position of its list.
    OwnDelete(usize),
}

fn script() -> Vec<Step> {
    let frac = [0.1, 0.7, 1e-3, 2.5e-7, 0.3, 1.0 / 3.0];
    // Another app's devices: many, one named like ours.
    let other = |from: i64, n: i64| -> Vec<Value> {
        (0..n)
            .map(|d| {
                let name = if d == 0 {
                    "Watch".to_string()
                } else {
                    format!("Band {}", from + d)
                };
                with_device(steps(from + d, 0.25 + d as f64), &name, "band")
            })
            .collect()
    };
    vec![
        Step::Hidden((0..5).map(|m| steps(m * 3 + 1, 17.5)).collect()),
        Step::Other(other(0, 30)),
        Step::Own(
            std::iter::once(with_device(steps(0, TWO_53), "Watch", "watch"))
                .chain((0..40).map(|m| {
                    with_device(
                        steps(2 + m * 2, frac[m as usize % frac.len()]),
                        "Watch",
                        "watch",
                    )
                }))
                .collect(),
        ),
        Step::Hidden((0..11).map(|m| steps(m * 5 + 2, TWO_53 + 2.0)).collect()),
        Step::Other(other(40, 25)),
        Step::HiddenDelete,
        Step::Own(vec![
            with_device(steps(90, TWO_53 + 2.0), "Phone", "phone"),
            with_device(steps(91, 0.3), "Ring", "ring"),
            with_device(steps(92, 1.0), "Phone", "phone"),
            sample("heart_rate", 93, 61.5, "count/min"),
        ]),
        Step::Hidden((0..30).map(|m| steps(m * 3, 0.1)).collect()),
        Step::OwnDelete(3),
        Step::Hidden(vec![with_device(steps(95, 3.0), "Phone", "phone")]),
    ]
}

struct Run {
    seen: Vec<Seen>,
    events: Vec<(String, Value)>,
}

/// Runs the script in a store with (`hidden`) or without hidden data and
/// records everything our app can observe.
async fn run(backend: Backend, hidden: bool) -> Run {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (our_id, token) = write_only_app(&app, "ours").await;
    let heart = app.mint(&our_id, &[], &["step_count", "heart_rate"]).await;
    let (_, other_token) = write_only_app(&app, "other").await;
    let owner_token = app.token.replace(token.clone()).unwrap();
    let mut sse = Sse::open(&app, "/v1/observe?types=step_count", None).await;
    app.token = Some(owner_token);
    let mut events = Vec::new();
    let next_event = async |sse: &mut Sse| {
        sse.next_event(Duration::from_secs(2)).await.map(|m| {
            let mut data: Value = serde_json::from_str(&m.data).unwrap_or(Value::String(m.data));
            if let Some(a) = data.get_mut("anchor") {
                *a = Value::String("ANCHOR".into());
            }
            (m.event, data)
        })
    };
    events.push(next_event(&mut sse).await.expect("ready"));
    let ours = app.as_token(&token);
    let mut deleted_ids = Vec::new();
    let mut own_written = 0;
    for step in script() {
        match step {
            Step::Own(mut samples) => {
                // The same sync_ids in both stores, so answers compare.
                for s in &mut samples {
                    own_written += 1;
                    s["sync_id"] = Value::String(format!("own-{own_written}"));
                }
                let t = if samples.iter().any(|s| s["type"] == "heart_rate") {
                    &heart
                } else {
                    &token
                };
                assert_eq!(app.as_token(t).write(samples).await.status(), 201);
                events.push(next_event(&mut sse).await.expect("its own change"));
            }
            Step::Hidden(samples) if hidden => {
                assert_eq!(app.write(samples).await.status(), 201);
            }
            Step::Other(samples) if hidden => {
                let r = app.as_token(&other_token).write(samples).await;
                assert_eq!(r.status(), 201);
            }
            Step::HiddenDelete if hidden => {
                let all = app.list_all("step_count", 500).await;
                let first = all.iter().find(|s| s["source"] == "owner").unwrap();
                let id = first["id"].as_str().unwrap();
                assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 204);
            }
            Step::OwnDelete(at) => {
                let list = ours.get_json("/v1/samples?type=step_count&limit=100").await;
                let id = list["samples"][at]["id"].as_str().unwrap().to_string();
                assert_eq!(
                    ours.delete(&format!("/v1/samples/{id}")).await.status(),
                    204
                );
                deleted_ids.push(id);
                events.push(next_event(&mut sse).await.expect("its own deletion"));
            }
            Step::Hidden(_) | Step::Other(_) | Step::HiddenDelete => {}
        }
    }
    // Nothing else arrives: hidden changes never fire.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), next_event(&mut sse)).await;
    if let Ok(Some(extra)) = quiet {
        events.push(extra);
    }

    // Our samples' ids are the server's: name them by position.
    let mut ids = vec![(our_id.clone(), "APP_OURS".to_string())];
    for (i, id) in deleted_ids.into_iter().enumerate() {
        ids.push((id, format!("DELETED_{i}")));
    }
    let all = ours
        .get_json("/v1/samples?type=step_count&limit=1000")
        .await;
    for (i, s) in all["samples"].as_array().unwrap().iter().enumerate() {
        ids.push((s["id"].as_str().unwrap().to_string(), format!("SAMPLE_{i}")));
    }
    let paths = [
        "/v1/samples?type=step_count&limit=1000",
        "/v1/samples?type=step_count&limit=7&order=desc",
        "/v1/samples?type=step_count&device=Watch&limit=5",
        "/v1/samples?type=step_count&sources=APP/Phone",
        "/v1/samples?type=step_count&most_recent=true",
        "/v1/statistics?type=step_count",
        "/v1/statistics?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-01T00:45:00Z",
        "/v1/statistics?type=step_count&by_source=true",
        "/v1/statistics?type=step_count&sources=APP/Watch",
        "/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-01T02:00:00Z&interval=PT7M&tz=Europe/Berlin",
        "/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-01T02:00:00Z&interval=PT10M&by_source=true",
        "/v1/statistics/buckets?type=step_count&start=2025-12-31T00:00:00Z&end=2026-01-03T00:00:00Z&interval=P1D&tz=Europe/Berlin&by_source=true",
        "/v1/sources?type=step_count",
        "/v1/changes?types=step_count&limit=1000",
        // Exactly what is left of the first write (one of its 41 samples is
        // deleted later): within one write, changes follow the
        // (random) ids, so a page boundary inside it would differ by chance.
        "/v1/changes?types=step_count,heart_rate&limit=40",
    ];
    let mut seen = Vec::new();
    for p in paths {
        let p = p.replace("APP", &our_id);
        let mut s = observe(ours.get(&p).await, &ids).await;
        // A cursor carries the last sample's id, which is random: opaque.
        if let Some(c) = s.body.get_mut("next_cursor").filter(|c| c.is_string()) {
            *c = Value::String("CURSOR".into());
        }
        // A page of the change feed lists one write's samples by id, and
        // ids are random: order them by time.
        if let Some(added) = s.body.get_mut("added").and_then(Value::as_array_mut) {
            added.sort_by_key(|a| a["start"].as_str().unwrap_or("").to_string());
        }
        seen.push(s);
    }
    let events = events
        .into_iter()
        .map(|(e, d)| (e, normalise(&d, &ids)))
        .collect();
    app.stop().await;
    Run { seen, events }
}

/// The differential test: floats near 2^53 and fractions, another app's
/// devices named like ours and interned between ours, hidden deletions,
/// the change feed and the observer stream.
async fn hidden_samples_and_devices_change_nothing_an_app_sees(backend: Backend) {
    let with = run(backend, true).await;
    let without = run(backend, false).await;
    assert_eq!(with.seen.len(), without.seen.len());
    for (i, (a, b)) in with.seen.iter().zip(&without.seen).enumerate() {
        assert_eq!(a.status, b.status, "request {i} status");
        assert_eq!(a.body, b.body, "request {i} body");
        assert_eq!(a.headers, b.headers, "request {i} headers");
    }
    assert_eq!(with.events, without.events, "observer events");
    // Sanity: the app sees its own samples, sums and devices.
    let list = &with.seen[0].body["samples"];
    assert_eq!(list.as_array().unwrap().len(), 41 + 3 - 1, "{list}");
    let sources = with.seen[12].body["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 3, "Watch, Phone, Ring: {sources:?}");
    assert_eq!(
        with.events.len(),
        1 + 3,
        "ready, two writes of step_count, one deletion"
    );
}
