//! Bounded work: devices per source, series per answer, requests in
//! progress; values no app can use to overflow or undo others' totals; and
//! answers whose order depends only on what the caller sees.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::support::{sample, steps, Backend, TestApp, TestDatabase};

both_backends!(
    ten_thousand_devices_in_one_batch_are_refused_quickly,
    a_source_has_at_most_64_devices,
    by_source_answers_are_capped,
    device_order_does_not_depend_on_hidden_devices,
    excess_concurrent_requests_are_overloaded,
    no_write_overflows_or_undoes_the_totals_others_see,
);

fn device(name: &str, kind: &str) -> Value {
    json!({ "name": name, "kind": kind })
}

/// A step sample at `minute` measured on `name`.
fn steps_on(minute: i64, value: f64, name: &str) -> Value {
    let mut s = steps(minute, value);
    s["device"] = device(name, "phone");
    s
}

/// An app that may write steps but read nothing; returns its token.
async fn writer_app(app: &TestApp, name: &str) -> String {
    let reg = app
        .register_app(name, &format!("https://{name}.example/cb"), false)
        .await;
    app.mint(reg["id"].as_str().unwrap(), &[], &["step_count"])
        .await
}

async fn problem_code(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
        body["detail"].as_str().unwrap_or_default().to_string(),
    )
}

/// Median milliseconds of `runs` owner statistics queries.
async fn owner_statistics_ms(app: &TestApp, runs: usize) -> f64 {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let r = app
            .get("/v1/statistics?type=step_count&by_source=true")
            .await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// An app sends 10,000 samples, each naming its own device: the batch is
/// refused as a whole, at once, and the owner's queries are as quick after
/// the attempt as before. Timings are reported, not asserted.
async fn ten_thousand_devices_in_one_batch_are_refused_quickly(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let owner: Vec<Value> = (0..2000).map(|m| steps_on(m, 3.0, "Phone")).collect();
    assert_eq!(app.write(owner).await.status(), 201);
    let before_ms = owner_statistics_ms(&app, 21).await;

    let token = writer_app(&app, "abuser").await;
    let batch: Vec<Value> = (0..10_000)
        .map(|i| steps_on(i, 1.0, &format!("device {i}")))
        .collect();
    let started = Instant::now();
    let r = app.as_token(&token).write(batch).await;
    let refused_after = started.elapsed();
    let (status, code, detail) = problem_code(r).await;
    assert_eq!((status, code.as_str()), (400, "too_many_devices"));
    assert!(detail.contains("64"), "the message names the cap: {detail}");

    // Nothing of the batch landed.
    let own = app
        .as_token(&token)
        .get_json("/v1/samples?type=step_count&limit=10")
        .await;
    assert_eq!(own["samples"], json!([]));
    let all = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(all["count"], 2000);
    let after_ms = owner_statistics_ms(&app, 21).await;
    eprintln!(
        "adversarial batch ({backend:?}): 10,000 distinct devices refused in {:.1} ms; \
         owner statistics median {before_ms:.2} ms before, {after_ms:.2} ms after",
        refused_after.as_secs_f64() * 1e3
    );
}

/// 64 devices per source are accepted, the 65th is refused, in one request
/// or across several; another source has its own 64; re-sending what is
/// stored stays a no-op at the cap.
async fn a_source_has_at_most_64_devices(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let token = writer_app(&app, "gadgets").await;
    let as_app = app.as_token(&token);
    let first: Vec<Value> = (0..60)
        .map(|i| steps_on(i, 1.0, &format!("d{i}")))
        .collect();
    assert_eq!(as_app.write(first.clone()).await.status(), 201);
    // Five new devices would make 65: nothing of the batch lands.
    let five: Vec<Value> = (60..65)
        .map(|i| steps_on(i, 1.0, &format!("d{i}")))
        .collect();
    let (status, code, _) = problem_code(as_app.write(five.clone()).await).await;
    assert_eq!((status, code.as_str()), (400, "too_many_devices"));
    let count = |v: Value| v["count"].as_u64().unwrap();
    assert_eq!(
        count(as_app.get_json("/v1/statistics?type=step_count").await),
        60
    );
    // Four fit; known devices and samples without one are always welcome.
    assert_eq!(as_app.write(five[..4].to_vec()).await.status(), 201);
    let known = vec![steps_on(100, 1.0, "d3"), steps(101, 1.0)];
    assert_eq!(as_app.write(known).await.status(), 201);
    assert_eq!(as_app.write(first).await.status(), 200);
    let (status, code, _) = problem_code(as_app.write(vec![five[4].clone()]).await).await;
    assert_eq!((status, code.as_str()), (400, "too_many_devices"));
    assert_eq!(
        count(as_app.get_json("/v1/statistics?type=step_count").await),
        66
    );

    // The owner's devices are the owner's: 64 in one request, not 65.
    let sixty_five: Vec<Value> = (0..65)
        .map(|i| steps_on(1000 + i, 1.0, &format!("d{i}")))
        .collect();
    let (status, code, _) = problem_code(app.write(sixty_five.clone()).await).await;
    assert_eq!((status, code.as_str()), (400, "too_many_devices"));
    assert_eq!(app.write(sixty_five[..64].to_vec()).await.status(), 201);

    // Replay rebuilds all of it.
    let before = app.get_json("/v1/sources?type=step_count").await;
    assert_eq!(before["sources"].as_array().unwrap().len(), 64 + 65);
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.get_json("/v1/sources?type=step_count").await, before);
}

/// `by_source` answers hold at most 65 series (one source's 64 devices and
/// its samples without a device); beyond it they are refused, and
/// `sources=` narrows them.
async fn by_source_answers_are_capped(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut batch: Vec<Value> = (0..64)
        .map(|i| steps_on(i, 1.0, &format!("d{i}")))
        .collect();
    batch.push(steps(64, 1.0));
    assert_eq!(app.write(batch).await.status(), 201);
    let range = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
    let stats = format!("/v1/statistics?type=step_count&{range}&by_source=true");
    let buckets =
        format!("/v1/statistics/buckets?type=step_count&{range}&interval=PT1H&by_source=true");
    let full = app.get_json(&stats).await;
    assert_eq!(full["sources"].as_array().unwrap().len(), 65);
    let full = app.get_json(&buckets).await;
    assert_eq!(full["sources"].as_array().unwrap().len(), 65);

    let token = writer_app(&app, "another").await;
    assert_eq!(
        app.as_token(&token)
            .write(vec![steps(200, 1.0)])
            .await
            .status(),
        201
    );
    for path in [&stats, &buckets] {
        let (status, code, detail) = problem_code(app.get(path).await).await;
        assert_eq!((status, code.as_str()), (400, "too_many_series"), "{path}");
        assert!(detail.contains("65"), "{detail}");
        let narrowed = app.get_json(&format!("{path}&sources=owner")).await;
        assert_eq!(narrowed["sources"].as_array().unwrap().len(), 65);
    }
    // Merged answers are not capped.
    let merged = app
        .get_json(&format!("/v1/statistics?type=step_count&{range}"))
        .await;
    assert_eq!(merged["count"], 66);
}

/// What an app without read access is shown, and in which order, is the
/// same in a store full of other sources' devices (some with the very
/// names and descriptions of its own, interned before them) as in a store
/// without them.
async fn device_order_does_not_depend_on_hidden_devices(backend: Backend) {
    async fn app_view(with_hidden: bool, backend: Backend) -> Vec<Value> {
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        let hidden = |from: i64, names: &[&str]| -> Vec<Value> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let mut s = steps(from + i as i64, 2.0);
                    s["device"] = device(n, "watch");
                    s
                })
                .collect()
        };
        if with_hidden {
            assert_eq!(
                app.write(hidden(0, &["Zulu", "Alpha", "Mike", "Kilo"]))
                    .await
                    .status(),
                201
            );
            let other = writer_app(&app, "other").await;
            let mut s = steps(9, 4.0);
            s["device"] = device("Alpha", "watch");
            assert_eq!(app.as_token(&other).write(vec![s]).await.status(), 201);
        }
        let token = writer_app(&app, "viewer").await;
        let mine = |minute: i64, name: &str| {
            let mut s = steps(minute, 1.0);
            s["device"] = device(name, "watch");
            s
        };
        let as_app = app.as_token(&token);
        assert_eq!(
            as_app
                .write(vec![mine(30, "Zulu"), mine(31, "Mike")])
                .await
                .status(),
            201
        );
        if with_hidden {
            assert_eq!(
                app.write(hidden(40, &["Bravo", "Yankee", "Alpha"]))
                    .await
                    .status(),
                201
            );
        }
        assert_eq!(
            as_app
                .write(vec![mine(32, "Alpha"), mine(33, "Echo"), steps(34, 1.0)])
                .await
                .status(),
            201
        );
        let range = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
        let mut views = Vec::new();
        for path in [
            "/v1/sources?type=step_count".to_string(),
            format!("/v1/statistics?type=step_count&{range}&by_source=true"),
            format!("/v1/statistics/buckets?type=step_count&{range}&interval=PT6H&by_source=true"),
        ] {
            let body = as_app.get_json(&path).await;
            // The app's id differs between the two stores; nothing else may.
            let text = body.to_string().replace(&source_of(&body), "APP");
            views.push(serde_json::from_str::<Value>(&text).unwrap());
        }
        views
    }
    fn source_of(body: &Value) -> String {
        body["sources"][0]["source"]
            .as_str()
            .expect("a source")
            .to_string()
    }
    let crowded = app_view(true, backend).await;
    let alone = app_view(false, backend).await;
    assert_eq!(crowded, alone);
    let names: Vec<&str> = crowded[0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["device"]["name"].as_str().unwrap_or("-"))
        .collect();
    // Wearables first (by name), then the app's own samples without a device.
    assert_eq!(names, ["Alpha", "Echo", "Mike", "Zulu", "-"]);
}

/// Requests beyond `HEARTH_MAX_CONCURRENT_REQUESTS` are answered `503
/// overloaded` with `Retry-After`, while unlocking and health checks keep a
/// pool of their own; the limit frees up as requests end.
async fn excess_concurrent_requests_are_overloaded(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.max_concurrent_requests = 2;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    let token = app.token.clone().unwrap();

    // Two writes whose bodies never finish hold both permits. One may reach
    // the server while a probe below holds a permit and be refused itself:
    // then it is sent again.
    let hold = || async {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /v1/samples HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"samples\": [",
            app.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        stream
    };
    let mut held = vec![hold().await, hold().await];
    let deadline = Instant::now() + Duration::from_secs(30);
    let overloaded = loop {
        let r = app.get("/v1/types").await;
        if r.status() == 503 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "never overloaded: {}",
            r.status()
        );
        for stream in &mut held {
            let mut buf = [0u8; 64];
            let answered = tokio::time::timeout(
                Duration::from_millis(10),
                tokio::io::AsyncReadExt::read(stream, &mut buf),
            )
            .await
            .is_ok();
            if answered {
                *stream = hold().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(overloaded.headers()["retry-after"], "1");
    assert_eq!(
        overloaded.headers()["content-type"],
        "application/problem+json"
    );
    let (_, code, _) = problem_code(overloaded).await;
    assert_eq!(code, "overloaded");
    let (status, code, _) = problem_code(app.get("/v1/samples?type=step_count").await).await;
    assert_eq!((status, code.as_str()), (503, "overloaded"));
    // The owner's own routes still answer.
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/").await.status(), 200);
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    assert_eq!(app.unlock().await.status(), 200);

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.get("/v1/samples?type=step_count").await;
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still overloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.write(vec![sample("step_count", 0, 5.0, "count")])
            .await
            .status(),
        201
    );
}

/// An app that may write a type cannot make the figures every reader sees
/// infinite (shown as `null`) or take from other sources' sums: values
/// beyond 1e16 in the type's canonical unit and negative values of types
/// that add up are refused, in plain samples, correlation members and
/// workouts alike, with a short message; the largest value allowed lands.
async fn no_write_overflows_or_undoes_the_totals_others_see(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(
        app.write(vec![
            steps(0, 100.0),
            sample("heart_rate", 0, 60.0, "count/min")
        ])
        .await
        .status(),
        201
    );
    let reg = app
        .register_app("spoiler", "https://spoiler.example/cb", false)
        .await;
    let token = app
        .mint(
            reg["id"].as_str().unwrap(),
            &[],
            &[
                "step_count",
                "heart_rate",
                "distance_walking_running",
                "blood_pressure",
                "blood_pressure_systolic",
                "blood_pressure_diastolic",
                "workout",
            ],
        )
        .await;
    let as_app = app.as_token(&token);
    let pressure = |systolic: f64| {
        let mut s = sample("blood_pressure", 2, 0.0, "mmHg");
        s.as_object_mut().unwrap().remove("value");
        s.as_object_mut().unwrap().remove("unit");
        s["members"] = json!([
            {"type": "blood_pressure_systolic", "value": systolic, "unit": "mmHg"},
            {"type": "blood_pressure_diastolic", "value": 80, "unit": "mmHg"},
        ]);
        s
    };
    let workout = json!({"type": "workout", "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T01:00:00Z", "activity": "running",
        "energy": {"value": 1e300, "unit": "kcal"}});
    for (sample, field, says) in [
        (
            steps(1, 1.7e308),
            "value",
            "step_count is at most 1e16 count in size",
        ),
        (steps(2, 1e16 + 2.0), "value", "step_count is at most 1e16"),
        (
            steps(3, -5000.0),
            "value",
            "step_count adds up and must not be negative",
        ),
        // 2e13 km is 2e16 m: the bound holds in the canonical unit.
        (
            sample("distance_walking_running", 4, 2e13, "km"),
            "value",
            "1e16 m in size",
        ),
        (
            sample("heart_rate", 5, 1.7e308, "count/min"),
            "value",
            "heart_rate is at most",
        ),
        (
            pressure(1e300),
            "members",
            "blood_pressure_systolic is at most",
        ),
        (workout, "energy", "active_energy_burned is at most"),
    ] {
        let r = as_app.write(vec![sample.clone()]).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{sample}: {body}");
        assert_eq!(body["code"], "invalid_input", "{body}");
        assert_eq!(body["errors"][0]["field"], field, "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{sample}: {message}");
        assert!(message.len() < 120, "{message}");
    }
    // The bound itself is allowed, and the totals stay numbers.
    let largest = vec![steps(10, 1e16), steps(11, 1e16)];
    assert_eq!(as_app.write(largest).await.status(), 201);
    let totals = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(totals["sum"], json!(2e16 + 100.0), "{totals}");
    let heart = app.get_json("/v1/statistics?type=heart_rate").await;
    assert_eq!(heart["avg"], json!(60.0), "{heart}");
}
