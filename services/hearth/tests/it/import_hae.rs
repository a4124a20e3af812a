//! Health Auto Export pushes: every mapped metric and workouts, resends,
//! partial failures, permissions, and hostile payloads.

use serde_json::{json, Value};

use crate::support::{Backend, TestApp, TestDatabase};

const PATH: &str = "/v1/ingest/health-auto-export";

/// Every metric Hearth maps, as the app sends them (REST API, JSON, v2).
fn metrics_payload() -> Value {
    json!({"data": {"metrics": [
        {"name": "step_count", "units": "count", "data": [
            {"qty": 412, "date": "2026-03-02 08:00:00 +0100", "source": "Ada's iPhone"},
            {"qty": 1280, "date": "2026-03-02 09:00:00 +0100", "source": "Ada's iPhone"},
        ]},
        {"name": "active_energy", "units": "kJ", "data": [
            {"qty": 418.4, "date": "2026-03-02 08:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "basal_energy_burned", "units": "kcal", "data": [
            {"qty": 65.5, "date": "2026-03-02 08:00:00 +0100"},
        ]},
        {"name": "walking_running_distance", "units": "km", "data": [
            {"qty": 1.5, "date": "2026-03-02 08:00:00 +0100", "source": "Ada's iPhone"},
        ]},
        {"name": "heart_rate", "units": "count/min", "data": [
            {"Min": 58, "Avg": 64.5, "Max": 71, "date": "2026-03-02 08:01:00 +0100", "source": "Ada's Apple Watch"},
            {"Min": 60, "Avg": 66, "Max": 75, "date": "2026-03-02 08:02:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "resting_heart_rate", "units": "count/min", "data": [
            {"qty": 52, "date": "2026-03-02 00:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "heart_rate_variability", "units": "ms", "data": [
            {"qty": 48.2, "date": "2026-03-02 03:12:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "blood_pressure", "units": "mmHg", "data": [
            {"systolic": 121, "diastolic": 79, "date": "2026-03-02 07:30:00 +0100", "source": "Withings"},
        ]},
        {"name": "blood_oxygen_saturation", "units": "%", "data": [
            {"qty": 97, "date": "2026-03-02 03:00:00 +0100", "source": "Ada's Apple Watch"},
            {"qty": 0.95, "date": "2026-03-02 04:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "respiratory_rate", "units": "count/min", "data": [
            {"qty": 14.5, "date": "2026-03-02 03:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "body_temperature", "units": "degF", "data": [
            {"qty": 98.6, "date": "2026-03-02 07:00:00 +0100"},
        ]},
        {"name": "weight_body_mass", "units": "lb", "data": [
            {"qty": 154.3, "date": "2026-03-02 07:05:00 +0100", "source": "Withings"},
        ]},
        {"name": "height", "units": "cm", "data": [
            {"qty": 172, "date": "2026-01-01 12:00:00 +0100"},
        ]},
        {"name": "body_mass_index", "units": "count", "data": [
            {"qty": 23.7, "date": "2026-03-02 07:05:00 +0100", "source": "Withings"},
        ]},
        {"name": "blood_glucose", "units": "mg/dL", "data": [
            {"qty": 92, "date": "2026-03-02 07:40:00 +0100", "mealTime": "Before Meal"},
            {"qty": 131, "date": "2026-03-02 09:40:00 +0100", "mealTime": "After Meal"},
        ]},
        {"name": "vo2max", "units": "ml/(kg·min)", "data": [
            {"qty": 44.1, "date": "2026-03-01 18:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "apple_exercise_time", "units": "min", "data": [
            {"qty": 32, "date": "2026-03-02 00:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "apple_sleeping_wrist_temperature", "units": "degC", "data": [
            {"qty": -0.31, "date": "2026-03-02 06:00:00 +0100", "source": "Ada's Apple Watch"},
        ]},
        {"name": "sleep_analysis", "units": "hr", "data": [
            {"startDate": "2026-03-01 23:10:00 +0100", "endDate": "2026-03-02 00:40:00 +0100", "qty": 1.5, "value": "Core", "source": "Ada's Apple Watch"},
            {"startDate": "2026-03-02 00:40:00 +0100", "endDate": "2026-03-02 01:40:00 +0100", "qty": 1.0, "value": "Deep", "source": "Ada's Apple Watch"},
            {"startDate": "2026-03-02 01:40:00 +0100", "endDate": "2026-03-02 02:10:00 +0100", "qty": 0.5, "value": "REM", "source": "Ada's Apple Watch"},
            {"startDate": "2026-03-02 02:10:00 +0100", "endDate": "2026-03-02 02:20:00 +0100", "qty": 0.17, "value": "Awake", "source": "Ada's Apple Watch"},
            {"startDate": "2026-03-01 23:00:00 +0100", "endDate": "2026-03-02 07:00:00 +0100", "qty": 8.0, "value": "In Bed", "source": "Ada's iPhone"},
        ]},
    ]}})
}

/// One night's aggregated sleep, as the app sends it with "Aggregate sleep
/// data" on.
fn aggregated_sleep() -> Value {
    json!({"data": {"metrics": [
        {"name": "sleep_analysis", "units": "hr", "data": [{
            "date": "2026-03-04", "totalSleep": 7.2, "asleep": 0, "core": 4.1, "deep": 1.3,
            "rem": 1.8, "awake": 0.4, "sleepStart": "2026-03-03 23:20:00 +0100",
            "sleepEnd": "2026-03-04 06:50:00 +0100", "inBed": 7.9,
            "inBedStart": "2026-03-03 23:00:00 +0100", "inBedEnd": "2026-03-04 07:00:00 +0100",
            "source": "Ada's Apple Watch",
        }]},
    ]}})
}

/// A v2 workout with a route and heart-rate points that repeat readings of
/// the heart-rate metric sent in the same push.
fn workout_payload() -> Value {
    json!({"data": {
        "metrics": [
            {"name": "heart_rate", "units": "count/min", "data": [
                {"Min": 120, "Avg": 131, "Max": 140, "date": "2026-03-05 07:05:00 +0100", "source": "Ada's Apple Watch"},
            ]},
        ],
        "workouts": [{
            "id": "5C0D4C5B-8F3B-4C2E-9A55-4E1B2D3C4F50",
            "name": "Outdoor Run",
            "start": "2026-03-05 07:00:00 +0100",
            "end": "2026-03-05 07:30:00 +0100",
            "duration": 1800,
            "source": "Ada's Apple Watch",
            "activeEnergyBurned": {"qty": 312.5, "units": "kcal"},
            "distance": {"qty": 5.02, "units": "km"},
            "heartRateData": [
                {"date": "2026-03-05 07:05:00 +0100", "Min": 120, "Avg": 131, "Max": 140, "units": "count/min", "source": "Ada's Apple Watch"},
                {"date": "2026-03-05 07:06:00 +0100", "Min": 128, "Avg": 137, "Max": 145, "units": "count/min", "source": "Ada's Apple Watch"},
            ],
            "route": [
                {"latitude": 52.5200, "longitude": 13.4050, "altitude": 34.1, "course": 90.0, "horizontalAccuracy": 4.2, "verticalAccuracy": 3.1, "timestamp": "2026-03-05 07:00:00 +0100", "speed": 2.9},
                {"latitude": 52.5210, "longitude": 13.4090, "altitude": 35.0, "course": 80.0, "horizontalAccuracy": 4.0, "verticalAccuracy": 3.0, "timestamp": "2026-03-05 07:15:00 +0100", "speed": 3.1},
                {"latitude": 52.5201, "longitude": 13.4051, "altitude": 34.3, "course": 270.0, "horizontalAccuracy": 4.4, "verticalAccuracy": 3.2, "timestamp": "2026-03-05 07:30:00 +0100", "speed": 3.0},
            ],
        }],
    }})
}

/// An app credential that may write `write` (and read nothing).
async fn hae_app(app: &TestApp, write: &[&str]) -> String {
    let registered = app
        .register_app("Health Auto Export", "https://hae.example/cb", true)
        .await;
    let id = registered["id"].as_str().unwrap().to_string();
    app.mint(&id, &[], write).await
}

const EVERY_TYPE: &[&str] = &[
    "step_count",
    "active_energy_burned",
    "basal_energy_burned",
    "distance_walking_running",
    "heart_rate",
    "resting_heart_rate",
    "heart_rate_variability_sdnn",
    "blood_pressure",
    "blood_pressure_systolic",
    "blood_pressure_diastolic",
    "oxygen_saturation",
    "respiratory_rate",
    "body_temperature",
    "body_mass",
    "height",
    "body_mass_index",
    "blood_glucose",
    "sleep_analysis",
    "vo2_max",
    "apple_exercise_time",
    "apple_sleeping_wrist_temperature",
    "workout",
    "workout_route",
];

async fn push(app: &TestApp, key: &str, payload: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(PATH))
        .header("api-key", key)
        .json(payload)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn value_of(samples: &[Value], i: usize) -> f64 {
    samples[i]["value"].as_f64().unwrap()
}

async fn every_metric_is_stored_as_its_type(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, EVERY_TYPE).await;
    let (status, body) = push(&app, &key, &metrics_payload()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errors"], json!([]));
    assert_eq!(body["received"], 27);

    let steps = app.list_all("step_count", 100).await;
    assert_eq!(steps.len(), 2);
    assert_eq!(value_of(&steps, 0) + value_of(&steps, 1), 1692.0);
    assert_eq!(steps[0]["start"], "2026-03-02T08:00:00+01:00");
    assert_eq!(steps[0]["device"]["name"], "Ada's iPhone");

    let energy = app.list_all("active_energy_burned", 10).await;
    assert!(
        (value_of(&energy, 0) - 100.0).abs() < 1e-9,
        "418.4 kJ is 100 kcal"
    );
    let distance = app.list_all("distance_walking_running", 10).await;
    assert!((value_of(&distance, 0) - 1500.0).abs() < 1e-9);

    let hr = app.list_all("heart_rate", 10).await;
    assert_eq!(hr.len(), 2);
    assert_eq!(value_of(&hr, 0), 64.5);
    assert_eq!(hr[0]["metadata"], json!({"min": 58.0, "max": 71.0}));

    let bp = app.list_all("blood_pressure", 10).await;
    assert_eq!(bp.len(), 1);
    let members = bp[0]["members"].as_array().unwrap();
    let member = |ty: &str| {
        members.iter().find(|m| m["type"] == ty).unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(member("blood_pressure_systolic"), 121.0);
    assert_eq!(member("blood_pressure_diastolic"), 79.0);

    let spo2 = app.list_all("oxygen_saturation", 10).await;
    assert_eq!(value_of(&spo2, 0), 97.0);
    assert!((value_of(&spo2, 1) - 95.0).abs() < 1e-9, "0.95 is 95 %");

    let temp = app.list_all("body_temperature", 10).await;
    assert!((value_of(&temp, 0) - 37.0).abs() < 1e-9);
    let mass = app.list_all("body_mass", 10).await;
    assert!((value_of(&mass, 0) - 154.3 * 0.453_592_37).abs() < 1e-9);
    let height = app.list_all("height", 10).await;
    assert!((value_of(&height, 0) - 1.72).abs() < 1e-9);

    let glucose = app.list_all("blood_glucose", 10).await;
    assert_eq!(glucose[0]["metadata"]["meal_time"], "before_meal");
    assert_eq!(glucose[1]["metadata"]["meal_time"], "after_meal");
    assert_eq!(value_of(&glucose, 1), 131.0);

    let wrist = app.list_all("apple_sleeping_wrist_temperature", 10).await;
    assert_eq!(value_of(&wrist, 0), -0.31);

    for ty in [
        "basal_energy_burned",
        "resting_heart_rate",
        "heart_rate_variability_sdnn",
        "respiratory_rate",
        "body_mass_index",
        "vo2_max",
        "apple_exercise_time",
    ] {
        assert_eq!(app.list_all(ty, 10).await.len(), 1, "{ty}");
    }

    let sleep = app.list_all("sleep_analysis", 10).await;
    let stages: Vec<&str> = sleep.iter().map(|s| s["value"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "in_bed",
            "asleep_core",
            "asleep_deep",
            "asleep_rem",
            "awake"
        ]
    );
    assert_eq!(sleep[2]["end"], "2026-03-02T01:40:00+01:00");
}

async fn aggregated_sleep_is_a_night_in_bed_and_asleep(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, &["sleep_analysis"]).await;
    let (status, body) = push(&app, &key, &aggregated_sleep()).await;
    assert_eq!(status, 200, "{body}");
    let sleep = app.list_all("sleep_analysis", 10).await;
    assert_eq!(sleep.len(), 2);
    assert_eq!(sleep[0]["value"], "in_bed");
    assert_eq!(sleep[0]["start"], "2026-03-03T23:00:00+01:00");
    assert_eq!(sleep[0]["end"], "2026-03-04T07:00:00+01:00");
    assert_eq!(sleep[1]["value"], "asleep_unspecified");
    assert_eq!(sleep[1]["start"], "2026-03-03T23:20:00+01:00");
    assert_eq!(sleep[1]["metadata"]["deep_hours"], 1.3);
    assert_eq!(sleep[1]["metadata"]["total_sleep_hours"], 7.2);
    // Sent again: nothing new.
    let (status, body) = push(&app, &key, &aggregated_sleep()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["added"].as_u64(), body["unchanged"].as_u64()),
        (Some(0), Some(2))
    );
}

async fn workouts_keep_their_route_and_heart_rate_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, &["heart_rate", "workout", "workout_route"]).await;
    let (status, body) = push(&app, &key, &workout_payload()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repeated"], 1, "{body}");
    assert_eq!(
        body["added"], 4,
        "workout, route and two heart rates: {body}"
    );

    let workouts = app.list_all("workout", 10).await;
    assert_eq!(workouts.len(), 1);
    let w = &workouts[0];
    assert_eq!(w["activity"], "running");
    assert_eq!(w["energy"]["value"], 312.5);
    assert!((w["distance"]["value"].as_f64().unwrap() - 5020.0).abs() < 1e-9);
    assert_eq!(w["duration_s"], 1800.0);
    assert_eq!(w["metadata"]["name"], "Outdoor Run");

    let routes = app.list_all("workout_route", 10).await;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["workout"], w["id"]);
    let points = routes[0]["route"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[1]["lat"], 52.521);
    assert_eq!(points[1]["alt"], 35.0);

    // The reading at 07:05 came in the metric and in the workout: once.
    let hr = app.list_all("heart_rate", 10).await;
    assert_eq!(hr.len(), 2);
    let stats = app.get_json("/v1/statistics?type=heart_rate").await;
    assert_eq!(stats["avg"], 134.0, "{stats}");

    // The metric alone, sent again later, adds nothing either.
    let again = json!({"data": {"metrics": workout_payload()["data"]["metrics"].clone()}});
    let (status, body) = push(&app, &key, &again).await;
    assert_eq!(status, 200);
    assert_eq!(body["added"], 0);
    assert_eq!(body["unchanged"], 1);
}

async fn a_resend_adds_nothing_and_a_grown_value_replaces(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, EVERY_TYPE).await;
    let (status, first) = push(&app, &key, &metrics_payload()).await;
    assert_eq!(status, 200);
    let (status, workout) = push(&app, &key, &workout_payload()).await;
    assert_eq!(status, 200, "{workout}");
    let before: Vec<usize> = futures::future::join_all(
        EVERY_TYPE
            .iter()
            .map(|ty| async { app.list_all(ty, 1000).await.len() }),
    )
    .await;

    let (status, again) = push(&app, &key, &metrics_payload()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["added"], 0);
    assert_eq!(again["replaced"], 0);
    assert_eq!(again["unchanged"], first["added"]);
    let (status, again) = push(&app, &key, &workout_payload()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["added"], 0, "{again}");
    let after: Vec<usize> = futures::future::join_all(
        EVERY_TYPE
            .iter()
            .map(|ty| async { app.list_all(ty, 1000).await.len() }),
    )
    .await;
    assert_eq!(before, after);

    // An hour's step count that grew since the last push replaces it.
    let grown = json!({"data": {"metrics": [{"name": "step_count", "units": "count", "data": [
        {"qty": 1500, "date": "2026-03-02 09:00:00 +0100", "source": "Ada's iPhone"},
    ]}]}});
    let (status, body) = push(&app, &key, &grown).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replaced"], 1, "{body}");
    let steps = app.list_all("step_count", 10).await;
    assert_eq!(steps.len(), 2);
    assert_eq!(value_of(&steps, 1), 1500.0);
}

async fn one_bad_item_is_reported_and_the_rest_stored(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, &["step_count", "heart_rate"]).await;
    let payload = json!({"data": {"metrics": [
        {"name": "step_count", "units": "count", "data": [
            {"qty": 100, "date": "2026-03-02 08:00:00 +0100"},
            {"qty": 200, "date": "2026-03-02 08:01:00 +0100"},
            {"qty": 300, "date": "yesterday-ish"},
            {"qty": 400, "date": "2026-03-02 08:03:00 +0100"},
        ]},
    ]}});
    let (status, body) = push(&app, &key, &payload).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["added"], 3);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["item"], "metrics[0].data[2]");
    assert_eq!(errors[0]["type"], "step_count");
    assert_eq!(errors[0]["code"], "invalid_input");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("yyyy-MM-dd HH:mm:ss Z"),
        "{body}"
    );
    let steps = app.list_all("step_count", 10).await;
    assert_eq!(steps.len(), 3);
}

async fn types_without_a_write_grant_are_reported_not_stored(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    // This credential may write steps only.
    let key = hae_app(&app, &["step_count"]).await;
    let (status, body) = push(&app, &key, &metrics_payload()).await;
    assert_eq!(status, 207, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(errors
        .iter()
        .all(|e| e["code"] == "write_not_authorized" && e["type"] != "step_count"));
    let refused: Vec<&str> = errors.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(refused.contains(&"heart_rate") && refused.contains(&"blood_pressure"));
    assert_eq!(
        errors.len(),
        25,
        "every item but the two step counts: {body}"
    );
    assert_eq!(body["added"], 2);
    assert_eq!(app.list_all("step_count", 10).await.len(), 2);
    assert_eq!(app.list_all("heart_rate", 10).await.len(), 0);
    assert_eq!(app.list_all("blood_pressure_systolic", 10).await.len(), 0);

    // Metrics and sections Hearth does not take are reported as such.
    let payload = json!({"data": {
        "metrics": [{"name": "mindful_minutes", "units": "min", "data": [
            {"qty": 10, "date": "2026-03-02 08:00:00 +0100"},
        ]}],
        "medications": [{"name": "Ibuprofen"}],
    }});
    let (status, body) = push(&app, &key, &payload).await;
    assert_eq!(status, 207);
    let codes: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["not_imported", "not_imported"], "{body}");
}

async fn bearer_and_api_key_both_authenticate(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, &["step_count"]).await;
    let one = json!({"data": {"metrics": [{"name": "step_count", "units": "count", "data": [
        {"qty": 5, "date": "2026-03-02 08:00:00 +0100"},
    ]}]}});
    let r = app.as_token(&key).post_json(PATH, &one).await;
    assert_eq!(r.status(), 200);
    let (status, _) = push(&app, "not-a-credential", &one).await;
    assert_eq!(status, 401);
    let r = app
        .client
        .post(app.url(PATH))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn malformed_and_oversized_payloads_are_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.max_body_bytes = 64 * 1024;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    let key = hae_app(&app, &["step_count"]).await;
    let send = |body: Vec<u8>| {
        app.client
            .post(app.url(PATH))
            .header("api-key", &key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = send(b"{\"data\": {\"metrics\": [".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "malformed_json");

    let r = send(b"{\"metrics\": []}".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_input");

    let points: Vec<Value> = (0..2000)
        .map(|i| json!({"qty": i, "date": "2026-03-02 08:00:00 +0100"}))
        .collect();
    let big =
        json!({"data": {"metrics": [{"name": "step_count", "units": "count", "data": points}]}});
    let r = send(serde_json::to_vec(&big).unwrap()).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(app.list_all("step_count", 10).await.len(), 0);
    // The server is still up.
    let (status, _) = push(
        &app,
        &key,
        &json!({"data": {"metrics": [{"name": "step_count", "units": "count", "data": [
            {"qty": 5, "date": "2026-03-02 08:00:00 +0100"},
        ]}]}}),
    )
    .await;
    assert_eq!(status, 200);
}

async fn hostile_values_get_clear_errors(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = hae_app(&app, EVERY_TYPE).await;
    let payload = json!({"data": {
        "metrics": [
            {"name": "step_count", "units": "count", "data": [
                {"qty": "NaN", "date": "2026-03-02 08:00:00 +0100"},
                {"qty": "Infinity", "date": "2026-03-02 08:01:00 +0100"},
                {"qty": 1e300, "date": "2026-03-02 08:02:00 +0100"},
                {"qty": -40, "date": "2026-03-02 08:03:00 +0100"},
                {"qty": 10, "date": "2026-02-30 25:61:00 +0100"},
                {"qty": 10, "date": "1066-10-14 12:00:00 +0000"},
                {"qty": 10},
                {"qty": 10, "date": "2026-03-02 08:04:00 +0100", "source": {"$ne": 1}},
                {"qty": 12, "date": "2026-03-02 08:05:00 +0100"},
            ]},
            {"name": "step_count", "units": "furlongs", "data": [
                {"qty": 10, "date": "2026-03-02 08:06:00 +0100"},
            ]},
            {"name": "heart_rate", "units": "count/min", "data": [
                {"Min": 90, "Avg": 60, "Max": 70, "date": "2026-03-02 08:00:00 +0100"},
            ]},
            {"name": "blood_oxygen_saturation", "units": "%", "data": [
                {"qty": 140, "date": "2026-03-02 08:00:00 +0100"},
            ]},
            {"name": "sleep_analysis", "units": "hr", "data": [
                {"startDate": "2026-03-02 01:00:00 +0100", "endDate": "2026-03-02 00:00:00 +0100", "qty": 1, "value": "Deep"},
                {"startDate": "2026-03-02 01:00:00 +0100", "endDate": "2026-03-02 02:00:00 +0100", "qty": 1, "value": "Dreaming"},
            ]},
            {"name": "blood_glucose", "units": "mg/dL", "data": [
                {"qty": 90, "date": "2026-03-02 08:00:00 +0100", "mealTime": "<script>"},
            ]},
            {"data": []},
        ],
        "workouts": [
            {"name": "Outdoor Run", "start": "2026-03-05 07:00:00 +0100", "end": "2026-03-05 06:00:00 +0100"},
            {"name": "Walk", "start": "2026-03-05 08:00:00 +0100", "end": "2026-03-05 08:30:00 +0100",
             "route": [{"latitude": 95.0, "longitude": 13.4, "timestamp": "2026-03-05 08:00:00 +0100"}]},
        ],
    }});
    let (status, body) = push(&app, &key, &payload).await;
    assert_eq!(status, 207, "{body}");
    let errors = body["errors"].as_array().unwrap();
    let message = |item: &str| {
        errors
            .iter()
            .find(|e| e["item"] == item)
            .unwrap_or_else(|| panic!("no error for {item}: {body}"))["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(message("metrics[0].data[0]").contains("expected a number, got the string `NaN`"));
    assert!(message("metrics[0].data[1]").contains("`Infinity`"));
    let implausible = message("metrics[0].data[2]");
    assert!(
        implausible.contains("not a plausible reading"),
        "{implausible}"
    );
    // The reading is echoed as short as it was sent, not as 301 digits.
    assert!(implausible.contains("1e300"), "{implausible}");
    assert!(implausible.len() < 100, "{implausible}");
    assert!(message("metrics[0].data[3]").contains("negative"));
    assert!(message("metrics[0].data[4]").contains("is not a date"));
    assert!(message("metrics[0].data[5]").contains("1900"));
    assert!(message("metrics[0].data[6]").contains("date: missing"));
    assert!(message("metrics[0].data[7]").contains("source"));
    assert!(message("metrics[1].data[0]").contains("furlongs"));
    assert!(message("metrics[2].data[0]").contains("in order"));
    assert!(message("metrics[3].data[0]").contains("above 100"));
    assert!(message("metrics[4].data[0]").contains("before start"));
    assert!(message("metrics[4].data[1]").contains("Dreaming"));
    assert!(message("metrics[5].data[0]").contains("mealTime"));
    assert!(message("metrics[6]").contains("name"));
    assert!(message("workouts[0]").contains("before start"));
    assert!(message("workouts[1].route").contains("out of range"));
    assert_eq!(errors.len(), 17, "{body}");
    // The good ones: one step count, and the walk without its route.
    assert_eq!(app.list_all("step_count", 10).await.len(), 1);
    assert_eq!(app.list_all("workout", 10).await.len(), 1);
    assert_eq!(app.list_all("workout_route", 10).await.len(), 0);
}

both_backends!(
    every_metric_is_stored_as_its_type,
    aggregated_sleep_is_a_night_in_bed_and_asleep,
    workouts_keep_their_route_and_heart_rate_once,
    a_resend_adds_nothing_and_a_grown_value_replaces,
    one_bad_item_is_reported_and_the_rest_stored,
    types_without_a_write_grant_are_reported_not_stored,
    bearer_and_api_key_both_authenticate,
    malformed_and_oversized_payloads_are_refused,
    hostile_values_get_clear_errors,
    a_full_export_imports_into_an_empty_store_with_equal_answers,
);

/// Store A's answers for comparison: statistics, hourly buckets and every
/// sample without what a store assigns (ids, sync identifiers).
async fn answers(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for ty in [
        "step_count",
        "heart_rate",
        "blood_pressure_systolic",
        "blood_pressure_diastolic",
        "blood_glucose",
    ] {
        out.push(app.get_json(&format!("/v1/statistics?type={ty}")).await);
        out.push(
            app.get_json(&format!(
                "/v1/statistics/buckets?type={ty}&start=2026-01-01T00:00:00Z\
                 &end=2026-01-02T00:00:00Z&interval=PT1H&tz=Europe/Berlin"
            ))
            .await,
        );
    }
    for ty in [
        "step_count",
        "heart_rate",
        "blood_pressure",
        "blood_pressure_systolic",
        "blood_glucose",
        "sleep_analysis",
        "workout",
        "workout_route",
    ] {
        // Samples at the same time list in id order, which differs.
        let mut listed = app.list_all(ty, 1000).await;
        for s in &mut listed {
            strip(s);
        }
        listed.sort_by_key(|s| s.to_string());
        out.extend(listed);
    }
    out.push(app.get_json("/v1/characteristics").await);
    out
}

/// Compares answers one by one, naming the first that differs.
fn same_answers(a: &[Value], b: &[Value]) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x, y, "answer {i} differs");
    }
    assert_eq!(a.len(), b.len(), "as many answers");
}

fn strip(sample: &mut Value) {
    let obj = sample.as_object_mut().unwrap();
    for field in ["id", "sync_id", "sync_version", "workout"] {
        obj.remove(field);
    }
    if let Some(Value::Array(members)) = obj.get_mut("members") {
        for m in members {
            strip(m);
        }
    }
}

/// Uploads a Hearth export and waits for the job to end; answers the job.
async fn import_ndjson(app: &TestApp, body: Vec<u8>) -> Value {
    let r = app
        .post_raw("/v1/imports", "application/x-ndjson", body)
        .await;
    assert_eq!(r.status(), 202, "import: {}", r.text().await.unwrap());
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let job = app.get_json(&format!("/v1/imports/{id}")).await;
        if job["state"] != "running" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the import did not end");
}

async fn a_full_export_imports_into_an_empty_store_with_equal_answers(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let a = TestApp::unlocked(&db).await;
    let mut samples: Vec<Value> = (0..120)
        .map(|m| crate::support::steps(m * 7, (m % 13 * 10) as f64))
        .collect();
    samples.extend(
        (0..60).map(|m| {
            crate::support::sample("heart_rate", m * 11, 55.0 + (m % 9) as f64, "count/min")
        }),
    );
    samples.push(json!({
        "type": "blood_pressure", "start": "2026-01-01T08:00:00+01:00", "end": "2026-01-01T08:00:00+01:00",
        "members": [
            {"type": "blood_pressure_systolic", "value": 118, "unit": "mmHg"},
            {"type": "blood_pressure_diastolic", "value": 77, "unit": "mmHg"},
        ],
        "metadata": {"arm": "left"},
        "device": {"name": "Cuff", "manufacturer": "Omron", "kind": "other"},
    }));
    samples.push(json!({
        "type": "sleep_analysis", "value": "asleep_deep",
        "start": "2026-01-01T01:00:00+01:00", "end": "2026-01-01T02:10:00+01:00",
    }));
    let r = a.write(samples).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    crate::support::workout_with_route(&a).await;
    let r = a
        .client
        .put(a.url("/v1/characteristics"))
        .bearer_auth(a.token.as_deref().unwrap())
        .json(&json!({"date_of_birth": "1980-04-02", "blood_type": "o_negative"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An app's samples, with metadata and a device, from a push.
    let key = hae_app(&a, &["blood_glucose"]).await;
    let glucose = json!({"data": {"metrics": [{"name": "blood_glucose", "units": "mmol/L", "data": [
        {"qty": 5.4, "date": "2026-01-01 07:30:00 +0100", "mealTime": "Before Meal", "source": "Contour"},
        {"qty": 7.9, "date": "2026-01-01 09:30:00 +0100", "mealTime": "After Meal", "source": "Contour"},
    ]}]}});
    assert_eq!(push(&a, &key, &glucose).await.0, 200);
    // Steps of a second source over the owner's, counted first by the
    // owner's order: the statistics depend on whose they are.
    let pedometer = a
        .register_app("Pedometer", "https://p.example/cb", false)
        .await;
    let pedometer = pedometer["id"].as_str().unwrap().to_string();
    let ptoken = a.mint(&pedometer, &["step_count"], &["step_count"]).await;
    let r = a
        .as_token(&ptoken)
        .write(
            (0..30)
                .map(|m| crate::support::steps(m * 7, 11.0))
                .collect(),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = a
        .client
        .put(a.url("/v1/sources/priority"))
        .bearer_auth(a.token.as_deref().unwrap())
        .json(&json!({"order": [{"source": pedometer}, {"source": "owner"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = a.get("/v1/export").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let export = r.bytes().await.unwrap().to_vec();
    let lines: Vec<Value> = export
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["record"], "hearth_export");
    let of_type = |ty: &str| lines.iter().filter(|l| l["type"] == ty).count();
    assert_eq!(of_type("blood_pressure"), 1);
    assert_eq!(
        of_type("blood_pressure_systolic"),
        0,
        "members travel inside their correlation"
    );
    assert_eq!(of_type("step_count"), 150);
    assert_eq!(of_type("workout_route"), 1);
    let sample_lines = lines.iter().filter(|l| l["record"] == "sample").count();

    // Store B, empty, imports it the way `hearth import ndjson` does.
    let db_b = TestDatabase::new(backend).await;
    let b = TestApp::unlocked(&db_b).await;
    let job = import_ndjson(&b, export.clone()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["format"], "ndjson");
    let summary = &job["summary"];
    let stored: u64 = summary["samples"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(stored, sample_lines as u64);
    assert_eq!(summary["characteristics"], 2);
    same_answers(&answers(&a).await, &answers(&b).await);
    assert_eq!(
        a.get_json("/v1/sources/priority").await,
        b.get_json("/v1/sources/priority").await
    );
    assert_eq!(
        a.get_json("/v1/sources?type=step_count").await,
        b.get_json("/v1/sources?type=step_count").await
    );
    let routes = b.list_all("workout_route", 10).await;
    let workouts = b.list_all("workout", 10).await;
    assert_eq!(
        routes[0]["workout"], workouts[0]["id"],
        "the route names B's workout"
    );

    // Importing again adds nothing.
    let again = import_ndjson(&b, export.clone()).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(again["summary"]["added"], 0, "{again}");
    same_answers(&answers(&a).await, &answers(&b).await);

    // An export in which one sample's value changed, its id and version
    // not: the stored sample stays, the one in the file is counted as a
    // conflict, and the rest of the file is taken as before.
    let text = String::from_utf8(export.clone()).unwrap();
    let changed: String = text
        .split_inclusive('\n')
        .scan(false, |done, line| {
            let mut v = match serde_json::from_str::<Value>(line.trim_end()) {
                Ok(v) if !*done && v["type"] == "step_count" => v,
                _ => return Some(line.to_string()),
            };
            *done = true;
            v["value"] = json!(v["value"].as_f64().unwrap() + 1000.0);
            Some(format!("{v}\n"))
        })
        .collect();
    assert_ne!(changed, text);
    let conflicting = import_ndjson(&b, changed.into_bytes()).await;
    assert_eq!(conflicting["state"], "succeeded", "{conflicting}");
    let summary = &conflicting["summary"];
    assert_eq!(summary["conflicts"], 1, "{conflicting}");
    assert_eq!(summary["added"], 0, "{conflicting}");
    assert_eq!(
        summary["unchanged"].as_u64().unwrap(),
        again["summary"]["unchanged"].as_u64().unwrap() - 1,
        "{conflicting}"
    );
    same_answers(&answers(&a).await, &answers(&b).await);

    // What is not a Hearth export, or not one this server reads, is
    // refused whole: nothing of it is stored.
    let c_db = TestDatabase::new(backend).await;
    let c = TestApp::unlocked(&c_db).await;
    let text = String::from_utf8(export.clone()).unwrap();
    let (head, rest) = text.split_once('\n').unwrap();
    let bad_sample = text.replacen("\"step_count\"", "\"no_such_type\"", 1);
    let huge = format!(
        "{head}\n{{\"record\":\"sample\",\"x\":\"{}\"}}\n",
        "a".repeat(5 << 20)
    );
    for (body, why) in [
        (rest.to_string(), "first line is not the header"),
        (text.replacen("\"version\":1", "\"version\":9", 1), "version 9"),
        (bad_sample, "no_such_type"),
        (format!("{head}\nnot json\n"), "line 2: not JSON"),
        (huge, "line 2: longer than 4 MiB"),
        (format!("{head}\n{{\"record\":\"sample\",\"id\":\"x\",\"type\":\"step_count\",\"source\":\"\"}}\n"), "source"),
        (String::new(), "empty"),
        (format!("{text}{head}\n"), "a second header line"),
    ] {
        let r = c
            .post_raw("/v1/imports", "application/x-ndjson", body.into_bytes())
            .await;
        assert_eq!(r.status(), 400, "{why}");
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{why}: {problem}"
        );
    }
    assert!(c.list_all("step_count", 10).await.is_empty());
    assert_eq!(
        c.get_json("/v1/characteristics").await["date_of_birth"],
        Value::Null
    );
    c.stop().await;

    // The FHIR form holds the same samples as Observations.
    let r = a.get("/v1/export?format=fhir").await;
    assert_eq!(r.status(), 200);
    let fhir: Vec<Value> = r
        .bytes()
        .await
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(fhir[0]["resourceType"], "Patient");
    assert_eq!(fhir[0]["birthDate"], "1980-04-02");
    assert_eq!(fhir.len(), 1 + sample_lines);
    let bp = fhir
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "85354-9")
        .unwrap();
    assert_eq!(bp["component"][0]["valueQuantity"]["code"], "mm[Hg]");

    // Only the owner exports.
    let r = a.as_token(&key).get("/v1/export").await;
    assert_eq!(r.status(), 403);
    let r = a.get("/v1/export?format=csv").await;
    assert_eq!(r.status(), 400);
}
