//! Correlations, workouts, routes and characteristics over HTTP, on SQLite
//! and Postgres.

use crate::support::{Backend, TestApp, TestDatabase};
use serde_json::{json, Value};

both_backends!(
    blood_pressure_reads_back_through_its_member_types,
    workout_with_route_and_per_workout_statistics,
    characteristics_are_owner_set_events,
    types_list_everything,
    bad_structured_samples_are_refused,
);

fn blood_pressure(sync_id: &str, systolic: f64, diastolic: f64) -> Value {
    json!({
        "sync_id": sync_id, "type": "blood_pressure",
        "start": "2026-04-01T08:00:00+02:00", "end": "2026-04-01T08:00:30+02:00",
        "members": [
            {"type": "blood_pressure_systolic", "value": systolic, "unit": "mmHg"},
            {"type": "blood_pressure_diastolic", "value": diastolic, "unit": "mmHg"},
        ],
        "metadata": {"arm": "left"},
        "device": {"name": "Cuff", "kind": "blood_pressure_monitor"},
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

async fn blood_pressure_reads_back_through_its_member_types(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let sync_id = "cuff-reading-1";
    let r = app.write(vec![blood_pressure(sync_id, 120.0, 80.0)]).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["added"], 3, "the correlation and its two members");
    let id = body["ids"][0].as_str().unwrap().to_string();
    // A retry is a no-op, members included.
    let r = app.write(vec![blood_pressure(sync_id, 120.0, 80.0)]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["unchanged"].as_u64(), body["ids"][0].as_str()),
        (Some(3), Some(id.as_str()))
    );
    assert_eq!(
        app.write(vec![blood_pressure(sync_id, 121.0, 80.0)])
            .await
            .status(),
        409
    );

    let listed = app.list_all("blood_pressure", 10).await;
    assert_eq!(listed.len(), 1);
    let bp = &listed[0];
    assert_eq!(bp["id"], id.as_str());
    assert_eq!(
        (bp["sync_id"].as_str(), bp["sync_version"].as_i64()),
        (Some(sync_id), Some(0))
    );
    assert_eq!(bp["metadata"], json!({"arm": "left"}));
    assert!(bp.get("value").is_none());
    let members = bp["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["type"], "blood_pressure_systolic");
    assert_eq!(members[0]["value"], 120.0);
    assert_eq!(members[1]["type"], "blood_pressure_diastolic");
    assert_eq!(members[1]["value"], 80.0);
    assert_eq!(members[1]["device"]["name"], "Cuff");
    assert_eq!(app.get_json(&format!("/v1/samples/{id}")).await, *bp);

    // Each member reads back through its own type, statistics included.
    let systolic = app.list_all("blood_pressure_systolic", 10).await;
    assert_eq!(systolic.len(), 1);
    assert_eq!(systolic[0]["id"], members[0]["id"]);
    let s = app
        .get_json("/v1/statistics?type=blood_pressure_diastolic&unit=kPa")
        .await;
    assert!(
        (s["max"].as_f64().unwrap() - 10.665_790_4).abs() < 1e-3,
        "{s}"
    );

    // Food: any nutrients.
    let r = app
        .write(vec![json!({
            "type": "food", "start": "2026-04-01T12:00:00+02:00", "end": "2026-04-01T12:20:00+02:00",
            "members": [
                {"type": "dietary_energy_consumed", "value": 650, "unit": "kcal"},
                {"type": "dietary_protein", "value": 30, "unit": "g"},
            ],
        })])
        .await;
    assert_eq!(r.status(), 201);
    let food = app.list_all("food", 10).await;
    assert_eq!(food[0]["members"].as_array().unwrap().len(), 2);
    let kcal = app
        .get_json("/v1/statistics?type=dietary_energy_consumed")
        .await;
    assert_eq!(kcal["sum"], 650.0);

    // The change feed shows the correlation with its members.
    let feed = app.get_json("/v1/changes?types=blood_pressure").await;
    assert_eq!(feed["added"][0]["members"].as_array().unwrap().len(), 2);

    // A higher version replaces the correlation with its members.
    let mut newer = blood_pressure(sync_id, 118.0, 78.0);
    newer["sync_version"] = json!(1);
    let r = app.write(vec![newer]).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!((&body["added"], &body["replaced"]), (&json!(0), &json!(3)));
    assert_eq!(app.get(&format!("/v1/samples/{id}")).await.status(), 404);
    let systolic = app.list_all("blood_pressure_systolic", 10).await;
    assert_eq!(
        systolic.len(),
        1,
        "the old member went with its correlation"
    );
    assert_eq!(systolic[0]["value"], 118.0);
    let bp = app.list_all("blood_pressure", 10).await;
    assert_eq!((bp.len(), &bp[0]["sync_version"]), (1, &json!(1)));
    assert_eq!(bp[0]["members"][1]["value"], 78.0);
    app.stop().await;
}

async fn workout_with_route_and_per_workout_statistics(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (workout, route) = crate::support::workout_with_route(&app).await;
    // Heart rate during and after the workout.
    let hr = |t: &str, v: f64| json!({"type": "heart_rate", "start": t, "end": t, "value": v, "unit": "count/min"});
    let r = app
        .write(vec![
            hr("2026-05-01T07:05:00+02:00", 140.0),
            hr("2026-05-01T07:25:00+02:00", 160.0),
            hr("2026-05-01T08:00:00+02:00", 70.0),
        ])
        .await;
    assert_eq!(r.status(), 201);

    let w = app.get_json(&format!("/v1/samples/{workout}")).await;
    assert_eq!(w["activity"], "running");
    assert_eq!(w["duration_s"], 1800.0);
    assert_eq!(w["energy"], json!({"value": 350.0, "unit": "kcal"}));
    assert_eq!(w["distance"], json!({"value": 5000.0, "unit": "m"}));
    assert!(w.get("metadata").is_none());

    let routes = app.list_all("workout_route", 10).await;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0]["id"], route.as_str());
    assert_eq!(routes[0]["workout"], workout.as_str());
    let points = routes[0]["route"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[0]["time"], "2026-05-01T07:00:00+02:00");
    assert_eq!(points[0]["alt"], 34.0);
    assert!(points[1].get("alt").is_none());
    assert_eq!(
        app.get_json(&format!("/v1/samples/{route}")).await,
        routes[0]
    );

    let s = app
        .get_json(&format!(
            "/v1/workouts/{workout}/statistics?type=heart_rate"
        ))
        .await;
    assert_eq!(s["activity"], "running");
    assert_eq!(s["statistics"]["count"], 2);
    assert_eq!(s["statistics"]["avg"], 150.0);
    assert_eq!(s["statistics"]["max"], 160.0);
    let plain = app
        .get_json(&format!("/v1/workouts/{workout}/statistics"))
        .await;
    assert!(plain.get("statistics").is_none());
    let r = app.get(&format!("/v1/workouts/{route}/statistics")).await;
    assert_eq!(r.status(), 404, "a route is not a workout");
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/v1/workouts/{missing}/statistics"))
            .await
            .status(),
        404
    );
    let r = app
        .get(&format!(
            "/v1/workouts/{workout}/statistics?type=heart_rate&unit=kg"
        ))
        .await;
    assert_eq!(r.status(), 400);

    // A later route for the stored workout is fine; one for no workout is not.
    let later = json!({
        "type": "workout_route", "workout": workout,
        "start": "2026-05-01T07:00:00+02:00", "end": "2026-05-01T07:30:00+02:00",
        "route": [{"time": "2026-05-01T07:10:00+02:00", "lat": 1.0, "lon": 2.0}],
    });
    assert_eq!(app.write(vec![later.clone()]).await.status(), 201);
    let mut orphan = later;
    orphan["workout"] = json!(uuid::Uuid::new_v4());
    let r = app.write(vec![orphan]).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "workout");
    app.stop().await;
}

async fn characteristics_are_owner_set_events(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let empty = app.get_json("/v1/characteristics").await;
    assert_eq!(empty["date_of_birth"], Value::Null);
    assert_eq!(empty["blood_type"], Value::Null);
    let set = json!({
        "date_of_birth": "1984-02-29", "biological_sex": "female",
        "blood_type": "o_negative", "fitzpatrick_skin_type": "iii", "wheelchair_use": "no",
    });
    let r = put_json(&app, "/v1/characteristics", &set).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), set);
    // Survives lock and unlock: it is in the log.
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    assert_eq!(app.get("/v1/characteristics").await.status(), 503);
    app.unlock().await;
    assert_eq!(app.get_json("/v1/characteristics").await, set);
    // PUT replaces the whole set.
    let r = put_json(
        &app,
        "/v1/characteristics",
        &json!({"blood_type": "a_positive"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let now = app.get_json("/v1/characteristics").await;
    assert_eq!(now["blood_type"], "a_positive");
    assert_eq!(now["date_of_birth"], Value::Null);

    for bad in [
        json!({"date_of_birth": "1984-02-30"}),
        json!({"date_of_birth": "2999-01-01"}),
        json!({"date_of_birth": 1984}),
        json!({"blood_type": "z_positive"}),
        json!({"step_count": "1"}),
        json!({"eye_colour": "green"}),
    ] {
        let r = put_json(&app, "/v1/characteristics", &bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    // Not a sample type one can write.
    let r = app
        .write(vec![
            json!({"type": "blood_type", "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T00:00:00Z", "value": "a_positive"}),
        ])
        .await;
    assert_eq!(r.status(), 400);
    app.stop().await;
}

async fn types_list_everything(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let body = app.get_json("/v1/types").await;
    let types = body["types"].as_array().unwrap();
    let find = |id: &str| types.iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(find("blood_pressure")["kind"], "correlation");
    assert_eq!(
        find("blood_pressure")["members"],
        json!(["blood_pressure_systolic", "blood_pressure_diastolic"])
    );
    assert_eq!(find("food")["kind"], "correlation");
    assert!(find("workout")["activities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "cycling"));
    assert_eq!(find("workout_route")["belongs_to"], "workout");
    assert_eq!(find("date_of_birth")["format"], "date");
    assert_eq!(find("biological_sex")["kind"], "characteristic");
    assert!(body["device_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "watch"));
    app.stop().await;
}

async fn bad_structured_samples_are_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let bp = blood_pressure(&uuid::Uuid::new_v4().to_string(), 120.0, 80.0);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut s = bp.clone();
        f(&mut s);
        s
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&|s| {
                s["members"].as_array_mut().unwrap().pop();
            }),
            "members",
        ),
        (
            with(&|s| s["members"][1]["type"] = json!("heart_rate")),
            "members",
        ),
        (
            with(&|s| s["members"][1]["type"] = json!("blood_pressure_systolic")),
            "members",
        ),
        (with(&|s| s["members"][0]["unit"] = json!("kg")), "members"),
        (with(&|s| s["members"] = json!([])), "members"),
        (
            with(&|s| {
                s.as_object_mut().unwrap().remove("members");
            }),
            "members",
        ),
        (with(&|s| s["value"] = json!(1)), "value"),
        (with(&|s| s["activity"] = json!("running")), "activity"),
        (
            with(&|s| s["metadata"] = json!({"hearth:members": "x"})),
            "metadata",
        ),
        (
            json!({"type": "step_count", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z",
                "value": 1, "unit": "count", "members": []}),
            "members",
        ),
        (
            json!({"type": "workout", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                "activity": "levitation"}),
            "activity",
        ),
        (
            json!({"type": "workout", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}),
            "activity",
        ),
        (
            json!({"type": "workout", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                "activity": "running", "energy": {"value": 1, "unit": "m"}}),
            "energy",
        ),
        (
            json!({"type": "workout_route", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                "workout": uuid::Uuid::new_v4(), "route": []}),
            "route",
        ),
        (
            json!({"type": "workout_route", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                "workout": uuid::Uuid::new_v4(),
                "route": [{"time": "2026-01-01T00:10:00Z", "lat": 91.0, "lon": 0.0}]}),
            "route",
        ),
        (
            json!({"type": "workout_route", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                "workout": uuid::Uuid::new_v4(),
                "route": [{"time": "2026-01-01T02:10:00Z", "lat": 1.0, "lon": 0.0}]}),
            "route",
        ),
        (
            json!({"type": "workout_route", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z",
                "route": [{"time": "2026-01-01T00:10:00Z", "lat": 1.0, "lon": 0.0}]}),
            "workout",
        ),
    ];
    for (sample, field) in cases {
        let r = app
            .write(vec![crate::support::steps(0, 1.0), sample.clone()])
            .await;
        assert_eq!(r.status(), 400, "{sample}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{sample}: {body}");
        assert_eq!(body["errors"][0]["index"], 1, "{body}");
    }
    // Nothing landed.
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["count"], 0);
    assert!(app.list_all("blood_pressure_systolic", 10).await.is_empty());
    app.stop().await;
}
