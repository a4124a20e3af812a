//! The samples API over HTTP, on SQLite and Postgres.

use crate::support::{sample, steps, Backend, TestApp, TestDatabase};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

both_backends!(
    round_trip_keeps_offsets_units_and_metadata,
    retries_are_idempotent_and_conflicts_are_409,
    pagination_is_stable_under_concurrent_writes,
    statistics_match_brute_force,
    bad_input_is_a_clear_problem_and_stores_nothing,
    lock_unlock_and_passphrase_back_off,
    setup_needs_the_console_code,
    requests_need_an_owner_session,
    idle_store_locks_itself,
    values_too_large_for_a_unit_are_refused_not_null,
    path_segments_that_are_not_utf8_are_a_problem,
);

async fn round_trip_keeps_offsets_units_and_metadata(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let r = app
        .write(vec![json!({
            "type": "body_mass",
            "start": "2026-03-01T07:30:00-05:00", "end": "2026-03-01T07:30:00-05:00",
            "value": 154.0, "unit": "lb",
            "metadata": {"scale": "bathroom", "fasted": true}
        })])
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["added"], 1);
    let id = body["ids"][0].as_str().unwrap().to_string();
    let parsed = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(parsed.get_version_num(), 4, "ids are random UUIDs");

    let got = app.get_json(&format!("/v1/samples/{id}")).await;
    assert_eq!(got["type"], "body_mass");
    assert_eq!(got["unit"], "kg");
    assert!((got["value"].as_f64().unwrap() - 69.853_225).abs() < 1e-5);
    assert_eq!(got["start"], "2026-03-01T07:30:00-05:00");
    assert_eq!(
        got["metadata"],
        json!({"scale": "bathroom", "fasted": true})
    );
    assert_eq!(got["source"], "owner");
    assert!(got.get("sync_id").is_none() && got.get("sync_version").is_none());
    let in_lb = app.get_json(&format!("/v1/samples/{id}?unit=lb")).await;
    assert!((in_lb["value"].as_f64().unwrap() - 154.0).abs() < 1e-9);

    let r = app.get(&format!("/v1/samples/{id}?unit=mmol/L")).await;
    assert_eq!(r.status(), 400);

    let sleep = json!({
        "type": "sleep_analysis", "start": "2026-03-01T23:00:00+01:00",
        "end": "2026-03-02T06:00:00+01:00", "value": "asleep_core"
    });
    assert_eq!(app.write(vec![sleep]).await.status(), 201);
    let listed = app.list_all("sleep_analysis", 10).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["value"], "asleep_core");

    let r = app.delete(&format!("/v1/samples/{id}")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.get(&format!("/v1/samples/{id}")).await.status(), 404);
    assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 404);
    let unknown = uuid::Uuid::new_v4();
    let r = app.get(&format!("/v1/samples/{unknown}")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    assert!(app.list_all("body_mass", 10).await.is_empty());
}

async fn retries_are_idempotent_and_conflicts_are_409(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let a = steps(0, 100.0);
    let b = steps(1, 200.0);
    let r = app.write(vec![a.clone(), b.clone()]).await;
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    let r = app.write(vec![a.clone(), b.clone()]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["added"].as_u64(),
            body["replaced"].as_u64(),
            body["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(2))
    );
    assert_eq!(body["ids"], first["ids"], "a retry answers the stored ids");

    let mut changed = b.clone();
    changed["value"] = json!(201.0);
    let r = app.write(vec![steps(2, 1.0), changed]).await;
    assert_eq!(r.status(), 409);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "sync_conflict");
    assert_eq!(problem["errors"][0]["index"], 1);
    assert_eq!(problem["errors"][0]["field"], "sync_id");

    // The same id twice in one request with the same content counts once.
    let c = steps(3, 5.0);
    let r = app.write(vec![c.clone(), c.clone()]).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["added"].as_u64(), body["unchanged"].as_u64()),
        (Some(1), Some(1))
    );

    // Concurrent retries of one batch store it once.
    let batch: Vec<Value> = (10..60).map(|m| steps(m, 1.0)).collect();
    let writes = (0..6).map(|_| app.write(batch.clone()));
    for r in futures::future::join_all(writes).await {
        assert!(r.status().is_success());
    }

    let id = first["ids"][0].as_str().unwrap();
    assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 204);
    let r = app.write(vec![a]).await;
    assert_eq!(r.status(), 201, "a deletion frees the sync_id");
    let body: Value = r.json().await.unwrap();
    assert_ne!(body["ids"][0].as_str(), Some(id), "under a new id");
    // Without a sync_id every write is a new sample.
    let mut plain = steps(70, 1.0);
    plain.as_object_mut().unwrap().remove("sync_id");
    for _ in 0..2 {
        assert_eq!(app.write(vec![plain.clone()]).await.status(), 201);
    }
    let all = app.list_all("step_count", 1000).await;
    assert_eq!(
        all.len(),
        1 + 1 + 1 + 50 + 2,
        "a again, b, c, the batch, two plain"
    );
}

async fn pagination_is_stable_under_concurrent_writes(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    // Equal start times too, so ties are ordered by id.
    let initial: Vec<Value> = (0..600).map(|i| steps(i / 3, i as f64)).collect();
    let r = app.write(initial).await;
    assert_eq!(r.status(), 201);
    let expected: std::collections::BTreeSet<String> = r.json::<Value>().await.unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();

    let writer = {
        let client = app.client.clone();
        let url = app.url("/v1/samples");
        let token = app.token.clone().unwrap();
        tokio::spawn(async move {
            for round in 0..30 {
                // Both before and after the reader's position.
                let batch: Vec<Value> = (0..10)
                    .map(|i| steps((round * 37 + i * 11) % 260, 1.0))
                    .collect();
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "samples": batch }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/samples?type=step_count&limit=7".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let body = app.get_json(&path).await;
        for s in body["samples"].as_array().unwrap() {
            seen.push((
                chrono::DateTime::parse_from_rfc3339(s["start"].as_str().unwrap()).unwrap(),
                uuid::Uuid::parse_str(s["id"].as_str().unwrap()).unwrap(),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly ordered, no repeats"
    );
    let seen_ids: std::collections::BTreeSet<String> =
        seen.iter().map(|(_, id)| id.to_string()).collect();
    assert!(
        expected.is_subset(&seen_ids),
        "every sample present before paging began is seen"
    );
}

#[derive(Debug, Clone)]
struct StatsCase {
    values: Vec<(i64, f64)>,
    ranges: Vec<(i64, i64)>,
}

fn stats_cases() -> impl Strategy<Value = StatsCase> {
    let values = proptest::collection::vec((0i64..2000, -1e6f64..1e6), 0..300);
    let ranges = proptest::collection::vec((0i64..2100, 0i64..2100), 1..6);
    (values, ranges).prop_map(|(values, ranges)| StatsCase {
        values,
        ranges: ranges
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect(),
    })
}

fn minute_time(m: i64) -> String {
    chrono::DateTime::from_timestamp(1_767_225_600 + m * 60, 0)
        .unwrap()
        .to_rfc3339()
        .replace('+', "%2B")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Random data and ranges: every figure equals a brute-force computation.
async fn statistics_match_brute_force(backend: Backend) {
    let mut runner = TestRunner::new(Config::with_cases(12));
    let strategy = stats_cases();
    for _ in 0..12 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        if !case.values.is_empty() {
            let cumulative: Vec<Value> = case
                .values
                .iter()
                .map(|&(m, v)| steps(m, v.abs()))
                .collect();
            let discrete: Vec<Value> = case
                .values
                .iter()
                .map(|&(m, v)| sample("heart_rate", m, v / 1e4 + 100.0, "count/min"))
                .collect();
            assert_eq!(app.write(cumulative).await.status(), 201);
            assert_eq!(app.write(discrete).await.status(), 201);
        }
        for &(from, to) in &case.ranges {
            let inside: Vec<f64> = case
                .values
                .iter()
                .filter(|(m, _)| (from..to).contains(m))
                .map(|&(_, v)| v)
                .collect();
            let q = format!("start={}&end={}", minute_time(from), minute_time(to));
            let s = app
                .get_json(&format!("/v1/statistics?type=step_count&{q}"))
                .await;
            assert_eq!(s["count"].as_u64().unwrap() as usize, inside.len());
            let sum: f64 = inside.iter().map(|v| v.abs()).sum();
            assert!(close(s["sum"].as_f64().unwrap(), sum), "{s} vs {sum}");

            let h = app
                .get_json(&format!("/v1/statistics?type=heart_rate&{q}"))
                .await;
            let hr: Vec<f64> = inside.iter().map(|v| v / 1e4 + 100.0).collect();
            assert_eq!(h["count"].as_u64().unwrap() as usize, hr.len());
            if hr.is_empty() {
                assert!(h["min"].is_null() && h["avg"].is_null());
            } else {
                let min = hr.iter().copied().fold(f64::INFINITY, f64::min);
                let max = hr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let avg = hr.iter().sum::<f64>() / hr.len() as f64;
                assert!(close(h["min"].as_f64().unwrap(), min));
                assert!(close(h["max"].as_f64().unwrap(), max));
                assert!(close(h["avg"].as_f64().unwrap(), avg));
            }
        }
        app.stop().await;
    }
}

async fn assert_problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status, "expected {status} {code}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}

async fn bad_input_is_a_clear_problem_and_stores_nothing(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let good = steps(0, 1.0);
    let with = |field: &str, value: Value| {
        let mut s = steps(1, 1.0);
        s[field] = value;
        vec![good.clone(), s]
    };
    // Each bad sample sits at index 1 behind a good one: nothing of the request may land.
    let cases: Vec<(Vec<Value>, &str)> = vec![
        (with("value", json!("many")), "value"),
        (with("value", json!(null)), "value"),
        (with("start", json!(12)), "start"),
        (with("start", json!("yesterday")), "start"),
        (with("start", json!("2026-01-01T10:00:00")), "start"),
        (with("end", json!("2025-01-01T10:00:00Z")), "end"),
        (with("type", json!("steps")), "type"),
        (with("unit", json!("kg")), "unit"),
        (with("unit", json!("furlong")), "unit"),
        (with("sync_id", json!("")), "sync_id"),
        (with("sync_id", json!("x".repeat(129))), "sync_id"),
        (with("sync_id", json!("line\nbreak")), "sync_id"),
        (with("sync_id", json!(12)), "sync_id"),
        (with("sync_version", json!(-1)), "sync_version"),
        (with("sync_version", json!(1.5)), "sync_version"),
        (with("id", json!(uuid::Uuid::new_v4())), ""),
        (with("surprise", json!(1)), ""),
        (with("metadata", json!({"x": "y".repeat(5000)})), "metadata"),
        (with("metadata", json!({"nested": {"a": 1}})), "metadata"),
        (with("start", json!("1066-10-14T09:00:00Z")), "start"),
    ];
    for (samples, field) in cases {
        let r = app.write(samples).await;
        let body = assert_problem(r, 400, "invalid_input").await;
        assert_eq!(body["errors"][0]["index"], 1, "{body}");
        if !field.is_empty() {
            assert_eq!(body["errors"][0]["field"], field, "{body}");
        }
    }
    let raw: Vec<(&[u8], u16, &str)> = vec![
        (b"{\"samples\": [", 400, "malformed_json"),
        (b"not json", 400, "malformed_json"),
        (b"{\"samples\": [{\"value\": NaN}]}", 400, "malformed_json"),
        (b"{\"samples\": [{\"value\": Infinity}]}", 400, "malformed_json"),
        (b"{\"samples\": [{\"type\":\"step_count\",\"start\":\"2026-01-01T00:00:00Z\",\"end\":\"2026-01-01T00:00:00Z\",\"unit\":\"count\",\"value\": 1e999}]}", 400, "malformed_json"),
        (b"{\"samples\": {}}", 400, "invalid_input"),
        (b"{\"samples\": []}", 400, "invalid_input"),
        (b"[]", 400, "invalid_input"),
        (b"{\"samples\": []} trailing", 400, "malformed_json"),
        (b"{}", 400, "invalid_input"),
    ];
    for (body, status, code) in raw {
        let r = app
            .post_raw("/v1/samples", "application/json", body.to_vec())
            .await;
        assert_problem(r, status, code).await;
    }
    let r = app
        .post_raw(
            "/v1/samples",
            "text/plain",
            serde_json::to_vec(&json!({"samples": [good.clone()]})).unwrap(),
        )
        .await;
    assert_problem(r, 415, "unsupported_media_type").await;

    let too_many: Vec<Value> = (0..10_001).map(|m| steps(m, 1.0)).collect();
    assert_problem(app.write(too_many).await, 413, "too_many_samples").await;
    let huge = vec![b' '; 17 * 1024 * 1024];
    let r = app.post_raw("/v1/samples", "application/json", huge).await;
    assert_problem(r, 413, "payload_too_large").await;

    for path in [
        "/v1/samples?type=nope",
        "/v1/samples",
        "/v1/samples?type=step_count&limit=0",
        "/v1/samples?type=step_count&limit=abc",
        "/v1/samples?type=step_count&cursor=%%%",
        "/v1/samples?type=step_count&cursor=AAAA",
        "/v1/samples?type=step_count&start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z",
        "/v1/statistics?type=step_count&unit=kg",
        "/v1/samples/not-a-uuid",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }

    // Nothing of any rejected request was stored.
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["count"], 0);
    // The store still works.
    assert_eq!(app.write(vec![good]).await.status(), 201);
}

async fn lock_unlock_and_passphrase_back_off(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    assert_eq!(app.write(vec![steps(0, 42.0)]).await.status(), 201);
    assert_eq!(app.get_json("/readyz").await["state"], "unlocked");
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert_eq!(r.status(), 204);
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "locked");
    assert_problem(
        app.get("/v1/samples?type=step_count").await,
        503,
        "store_locked",
    )
    .await;
    assert_problem(
        app.get("/v1/statistics?type=step_count").await,
        503,
        "store_locked",
    )
    .await;
    assert_problem(app.write(vec![steps(1, 1.0)]).await, 503, "store_locked").await;
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Locked);

    let wrong = app
        .post_json("/v1/unlock", &json!({"passphrase": "wrong passphrase!"}))
        .await;
    assert_problem(wrong, 401, "wrong_passphrase").await;
    // Straight after a failure the next attempt must wait, even with the right passphrase.
    let r = app
        .post_json(
            "/v1/unlock",
            &json!({"passphrase": crate::support::PASSPHRASE}),
        )
        .await;
    let body = assert_problem(r, 429, "too_many_attempts").await;
    assert!(body["detail"].is_string());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let r = app.unlock().await;
    assert_eq!(r.status(), 200);
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["sum"], 42.0);
}

async fn setup_needs_the_console_code(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.get_json_any("/readyz").await["state"], "uninitialised");
    assert_problem(
        app.get("/v1/samples?type=step_count").await,
        503,
        "store_uninitialised",
    )
    .await;
    let r = app
        .post_json(
            "/v1/setup",
            &json!({"setup_code": "guess", "passphrase": crate::support::PASSPHRASE}),
        )
        .await;
    assert_problem(r, 401, "wrong_setup_code").await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let code = app.store.setup_code().unwrap();
    let r = app
        .post_json(
            "/v1/setup",
            &json!({"setup_code": code, "passphrase": "short"}),
        )
        .await;
    assert_problem(r, 400, "invalid_input").await;
    app.setup().await;
    let r = app
        .post_json(
            "/v1/setup",
            &json!({"setup_code": code, "passphrase": crate::support::PASSPHRASE}),
        )
        .await;
    assert_problem(r, 409, "already_initialised").await;
}

async fn requests_need_an_owner_session(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let token = app.token.clone().unwrap();
    let anonymous = reqwest::Client::new();
    let r = anonymous
        .get(app.url("/v1/samples?type=step_count"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    let r = anonymous
        .get(app.url("/v1/samples?type=step_count"))
        .bearer_auth("forged-token")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    // The session cookie works for reads from anywhere the browser sends it…
    let cookie = format!("hearth_session={token}");
    let r = anonymous
        .get(app.url("/v1/samples?type=step_count"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // …but a write riding on the cookie from another origin (another port on
    // the same host is the same site) is refused.
    let body = serde_json::to_vec(&json!({"samples": [steps(0, 1.0)]})).unwrap();
    let r = anonymous
        .post(app.url("/v1/samples"))
        .header("cookie", &cookie)
        .header("origin", "http://127.0.0.1:9999")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    let r = anonymous
        .post(app.url("/v1/lock"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
    let r = anonymous
        .post(app.url("/v1/samples"))
        .header("cookie", &cookie)
        .header("origin", app.base.clone())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn idle_store_locks_itself(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.idle_lock_secs = 1;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    assert_eq!(app.write(vec![steps(0, 1.0)]).await.status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Locked);
    assert_problem(
        app.get("/v1/statistics?type=step_count").await,
        503,
        "store_locked",
    )
    .await;
}

/// A stored value that overflows in the unit asked for was answered as
/// `"value": null`; it is a clear problem instead. Writes are held to
/// `MAX_QUANTITY`, so such a value is one from an older store's log: it
/// is written here past the request's checks, straight to the writer.
async fn values_too_large_for_a_unit_are_refused_not_null(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let request = json!({
        "type": "body_mass",
        "start": "2026-03-01T07:30:00Z", "end": "2026-03-01T07:30:00Z",
        "value": 1e300, "unit": "kg"
    });
    assert_eq!(app.write(vec![request.clone()]).await.status(), 400);
    let mut request = request;
    request["value"] = json!(70);
    let text = request.to_string();
    let mut entry = hearth::samples::validate(0, serde_json::from_str(&text).unwrap()).unwrap();
    entry.samples[0].sample.value = 1e300;
    let open = app.store.open_store().unwrap();
    let outcome = open
        .writer
        .write(hearth::log::writer::Write::AddSamples {
            source: "owner".into(),
            entries: vec![entry],
        })
        .await
        .unwrap();
    let hearth::log::writer::WriteOutcome::Added { ids, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let id = uuid::Uuid::from_u128(ids[0]).to_string();
    let in_mg = app.get_json(&format!("/v1/samples/{id}?unit=mg")).await;
    assert!(in_mg["value"].as_f64().unwrap().is_finite());
    for path in [
        format!("/v1/samples/{id}?unit=ug"),
        "/v1/samples?type=body_mass&unit=ug".to_string(),
        "/v1/changes?types=body_mass&unit=ug".to_string(),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "unit", "{path}: {body}");
    }
    app.stop().await;
}

/// A path segment that is not UTF-8 was answered by axum's `text/plain` 400.
async fn path_segments_that_are_not_utf8_are_a_problem(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    for path in [
        "/v1/samples/%FF",
        "/v1/workouts/%FF/statistics",
        "/v1/apps/%FF",
        "/v1/apps/%FF/credentials",
    ] {
        assert_problem(app.get(path).await, 400, "invalid_path").await;
    }
    let r = app
        .client
        .delete(app.url("/v1/apps/app_x/credentials/%FF"))
        .bearer_auth(app.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid_path").await;
    app.stop().await;
}
