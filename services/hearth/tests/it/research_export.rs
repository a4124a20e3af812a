//! Research export end to end: studies with ES384 and RS384 keys get a
//! token, run FHIR Bulk Data `$export`, poll and download exactly what the
//! owner consented to, de-identified; withdrawal cancels a running export;
//! a study learns nothing of what lies outside its consent; jobs survive a
//! lock and a restart, and `_since` catches late data. Every exported line
//! is validated as FHIR by `scripts/validate_fhir_ndjson.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::research::{assertion, es384_key, request_token, rs384_key, StudyKey};
use crate::support::{sample, Backend, TestApp, TestDatabase};

both_backends!(
    studies_export_exactly_what_was_consented,
    withdrawal_cancels_a_running_export,
    nothing_outside_consent_shows,
    exports_survive_lock_and_restart_and_since_catches_late_data,
    daily_studies_receive_sums_and_averages,
);

const MARK_META: &str = "MarkerMetaQ7Z";
const MARK_DEVICE: &str = "MarkerDeviceK3W";
const MARK_MODEL: &str = "MarkerModelP9X";
const MARK_APP: &str = "MarkerAppJ4V";
const MARK_ROUTE: &str = "52.5234567";
const SCOPES: &str = "system/Observation.rs system/Patient.rs";

fn study_description(
    key: &StudyKey,
    types: &[&str],
    level: &str,
    routes: bool,
    resolution: &str,
) -> Value {
    json!({
        "name": "Activity and Heart Study",
        "organisation": "Example University",
        "contact": "study-team@university.example",
        "purpose": "To learn how activity relates to heart health.",
        "procedures": "Hearth sends your data once a week.",
        "risks_and_benefits": "No direct benefit; a small risk of re-identification.",
        "duration": "One year",
        "data_use_and_sharing": "Only the study team sees the data.",
        "withdrawal": "You may withdraw at any time.",
        "requested_types": types,
        "date_range": { "start": "2026-01-01", "end": "2026-12-31" },
        "frequency": "weekly",
        "resolution": resolution,
        "requests_routes": routes,
        "deidentification": level,
        "jwks": { "keys": [key.jwk.clone()] },
    })
}

async fn add_study(app: &TestApp, body: &Value) -> String {
    let r = app.post_json("/v1/studies", body).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn consent(app: &TestApp, id: &str, types: &[&str], routes: bool) {
    let r = app
        .post_json(
            &format!("/v1/studies/{id}/consent"),
            &json!({ "types": types, "routes": routes }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn study_token(app: &TestApp, key: &StudyKey, study: &str, scope: &str) -> String {
    let (status, body) = request_token(app, &assertion(app, key, study), scope).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn kick_off(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap()
}

async fn started(app: &TestApp, token: &str, path: &str) -> String {
    let r = kick_off(app, token, path).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string()
}

async fn poll(app: &TestApp, token: &str, status_url: &str) -> reqwest::Response {
    app.client
        .get(status_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Polls as `Retry-After` says until the manifest comes.
async fn manifest(app: &TestApp, token: &str, status_url: &str) -> Value {
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = poll(app, token, status_url).await;
        match r.status().as_u16() {
            200 => {
                assert!(r.headers().contains_key("expires"));
                return r.json().await.unwrap();
            }
            202 => {
                assert!(r.headers().contains_key("x-progress"));
                assert!(r.headers().contains_key("retry-after"));
            }
            s => panic!("status {s}: {}", r.text().await.unwrap()),
        }
    }
    panic!("the export did not finish")
}

/// Every file of the manifest, by its `type` (errors under their own).
async fn download(app: &TestApp, token: &str, manifest: &Value) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for part in ["output", "error"] {
        for item in manifest[part].as_array().unwrap() {
            let url = item["url"].as_str().unwrap();
            let anonymous = app.client.get(url).send().await.unwrap();
            assert_eq!(anonymous.status(), 401, "files need the study's token");
            let r = app.client.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body = r.text().await.unwrap();
            assert_eq!(
                body.lines().count() as u64,
                item["count"].as_u64().unwrap(),
                "{part} count"
            );
            files.insert(item["type"].as_str().unwrap().to_string(), body);
        }
    }
    files
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Validates every line as FHIR and the manifest against the spec's fields.
fn validate(manifest: &Value, files: &BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let mut args = vec![
        repo_root()
            .join("scripts/validate_fhir_ndjson.py")
            .display()
            .to_string(),
        "--manifest".into(),
        manifest_path.display().to_string(),
    ];
    for (i, body) in files.values().enumerate() {
        let path = dir.path().join(format!("{i}.ndjson"));
        std::fs::write(&path, body).unwrap();
        args.push(path.display().to_string());
    }
    let out = std::process::Command::new("python3")
        .args(&args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "FHIR validation failed (fhir.resources is installed by .ci/run):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn loinc_or_hearth_code(obs: &Value) -> String {
    let codings = obs["code"]["coding"].as_array().unwrap();
    codings
        .iter()
        .find(|c| c["system"] == "https://hearth.invalid/fhir/CodeSystem/sample-type")
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every instant an exported resource names.
fn exported_instants(obs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = obs["effectiveDateTime"].as_str() {
        out.push(t.to_string());
    }
    for end in ["start", "end"] {
        if let Some(t) = obs["effectivePeriod"][end].as_str() {
            out.push(t.to_string());
        }
    }
    out
}

fn instant_us(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

async fn put_characteristics(app: &TestApp, body: &Value) {
    let r = app
        .client
        .put(app.url("/v1/characteristics"))
        .bearer_auth(app.token.as_deref().unwrap())
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// What the marked app writes: returns every stored instant.
async fn write_marked_data(app: &TestApp) -> Vec<i64> {
    let registered = app
        .register_app(MARK_APP, "http://127.0.0.1/callback", false)
        .await;
    let app_id = registered["id"].as_str().unwrap();
    let types = [
        "step_count",
        "heart_rate",
        "body_mass",
        "blood_pressure",
        "blood_pressure_systolic",
        "blood_pressure_diastolic",
        "workout",
        "workout_route",
    ];
    let token = app.mint(app_id, &[], &types).await;
    let writer = app.as_token(&token);
    let device = json!({"name": MARK_DEVICE, "model": MARK_MODEL, "manufacturer": "Acme"});
    let mut batch = Vec::new();
    for minute in 0..30 {
        let mut s = sample("step_count", minute * 10, 100.0 + minute as f64, "count");
        s["metadata"] = json!({"note": MARK_META});
        s["device"] = device.clone();
        batch.push(s);
    }
    for minute in 0..10 {
        let mut s = sample(
            "heart_rate",
            1000 + minute,
            60.0 + minute as f64,
            "count/min",
        );
        s["device"] = device.clone();
        batch.push(s);
    }
    for day in 0..3 {
        batch.push(sample("body_mass", 2000 + day * 1440, 70.0, "kg"));
    }
    // Outside the study's range (2025).
    for minute in 0..5 {
        batch.push(sample("step_count", -400 * 1440 + minute, 55.0, "count"));
    }
    batch.push(json!({
        "type": "blood_pressure",
        "start": "2026-04-01T08:00:00+02:00", "end": "2026-04-01T08:00:30+02:00",
        "members": [
            {"type": "blood_pressure_systolic", "value": 121, "unit": "mmHg"},
            {"type": "blood_pressure_diastolic", "value": 79, "unit": "mmHg"},
        ],
        "metadata": {"arm": MARK_META},
        "device": device.clone(),
    }));
    let mut instants: Vec<i64> = Vec::new();
    for s in &batch {
        for k in ["start", "end"] {
            instants.extend(s[k].as_str().and_then(instant_us));
        }
    }
    let r = writer.write(batch).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = writer
        .write(vec![json!({
            "type": "workout", "activity": "running",
            "start": "2026-05-01T07:00:00+02:00", "end": "2026-05-01T07:30:00+02:00",
            "energy": {"value": 350, "unit": "kcal"},
            "distance": {"value": 5, "unit": "km"},
            "metadata": {"route name": MARK_META},
            "device": device.clone(),
        })])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let workout = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let r = writer
        .write(vec![json!({
            "type": "workout_route", "workout": workout,
            "start": "2026-05-01T07:00:00+02:00", "end": "2026-05-01T07:30:00+02:00",
            "route": [
                {"time": "2026-05-01T07:00:00+02:00", "lat": 52.5234567, "lon": 13.4056789, "alt": 34.0},
                {"time": "2026-05-01T07:15:00+02:00", "lat": 52.5334567, "lon": 13.4156789},
                {"time": "2026-05-01T07:30:00+02:00", "lat": 52.5234567, "lon": 13.4056789},
            ],
        })])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for t in [
        "2026-05-01T07:00:00+02:00",
        "2026-05-01T07:15:00+02:00",
        "2026-05-01T07:30:00+02:00",
    ] {
        instants.push(instant_us(t).unwrap());
    }
    instants
}

fn assert_no_markers(files: &BTreeMap<String, String>) {
    for (kind, body) in files {
        for marker in [
            MARK_META,
            MARK_DEVICE,
            MARK_MODEL,
            MARK_APP,
            MARK_ROUTE,
            "Acme",
            "owner",
        ] {
            assert!(!body.contains(marker), "{marker} left in {kind}: {body}");
        }
    }
}

async fn studies_export_exactly_what_was_consented(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    // 95 years old at the time of the export.
    put_characteristics(
        &app,
        &json!({"date_of_birth": "1931-01-15", "biological_sex": "female"}),
    )
    .await;
    let stored = write_marked_data(&app).await;

    // A study with an ES384 key, dates shifted, routes asked for.
    let es = es384_key("es-1");
    let requested = [
        "step_count",
        "heart_rate",
        "body_mass",
        "blood_pressure",
        "workout",
        "workout_route",
        "date_of_birth",
        "biological_sex",
    ];
    let a = add_study(
        &app,
        &study_description(&es, &requested, "shifted_dates", true, "samples"),
    )
    .await;
    consent(
        &app,
        &a,
        &[
            "step_count",
            "blood_pressure",
            "workout",
            "workout_route",
            "date_of_birth",
            "biological_sex",
        ],
        true,
    )
    .await;
    // A study with an RS384 key at the Safe Harbor level.
    let rs = rs384_key();
    let b = add_study(
        &app,
        &study_description(
            &rs,
            &["heart_rate", "step_count", "date_of_birth"],
            "safe_harbor",
            false,
            "samples",
        ),
    )
    .await;
    consent(&app, &b, &["heart_rate", "date_of_birth"], false).await;

    // Study A.
    let token = study_token(&app, &es, &a, SCOPES).await;
    let status_url = started(&app, &token, &format!("/fhir/Group/{a}/$export")).await;
    let m = manifest(&app, &token, &status_url).await;
    assert_eq!(m["requiresAccessToken"], true);
    assert!(m["request"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/fhir/Group/{a}/$export")));
    assert!(m["transactionTime"].as_str().is_some());
    assert_eq!(m["error"], json!([]));
    let files = download(&app, &token, &m).await;
    assert_eq!(files.keys().collect::<Vec<_>>(), ["Observation", "Patient"]);
    validate(&m, &files);
    assert_no_markers(&files);

    let patient = &lines(&files["Patient"])[0];
    assert_eq!(patient["gender"], "female");
    assert!(patient.get("birthDate").is_none(), "{patient}");
    assert_eq!(patient["extension"][0]["valueString"], "90 or older");
    let pseudonym = patient["id"].as_str().unwrap();

    let observations = lines(&files["Observation"]);
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    for obs in &observations {
        *per_type.entry(loinc_or_hearth_code(obs)).or_default() += 1;
        assert_eq!(obs["subject"]["reference"], format!("Patient/{pseudonym}"));
        assert!(obs.get("device").is_none() && obs.get("note").is_none());
        for t in exported_instants(obs) {
            let us = instant_us(&t).expect("a shifted instant");
            assert!(!stored.contains(&us), "{t} is a stored instant");
        }
    }
    // Exactly the consented types; the samples from 2025 stay home.
    assert_eq!(
        per_type,
        BTreeMap::from([
            ("blood_pressure".to_string(), 1),
            ("step_count".to_string(), 30),
            ("workout".to_string(), 1),
            ("workout_route".to_string(), 1),
        ])
    );
    // The owner's audit names the export: study, counts, bytes.
    let audit = app
        .get_json(&format!("/v1/audit?kind=study_export&study={a}"))
        .await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    let entry = &entries[0];
    assert_eq!(entry["study_id"], a.as_str(), "{entry}");
    let bytes: usize = files.values().map(|f| f.len()).sum();
    assert_eq!(entry["bytes"].as_u64(), Some(bytes as u64), "{entry}");
    assert_eq!(entry["counts"]["step_count"], 30, "{entry}");
    // The study's page lists the export too.
    let html = reqwest::Client::new()
        .get(app.url(&format!("/studies/{a}")))
        .header(
            "cookie",
            format!("hearth_session={}", app.token.as_deref().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("<td>{bytes}</td>")), "{html}");
    let bp = observations
        .iter()
        .find(|o| loinc_or_hearth_code(o) == "blood_pressure")
        .unwrap();
    assert_eq!(bp["code"]["coding"][0]["code"], "85354-9");
    assert_eq!(bp["component"][0]["valueQuantity"]["value"], 121.0);
    assert_eq!(bp["component"][1]["valueQuantity"]["code"], "mm[Hg]");
    let steps = observations
        .iter()
        .find(|o| loinc_or_hearth_code(o) == "step_count")
        .unwrap();
    assert_eq!(steps["code"]["coding"][0]["code"], "55423-8");
    assert_eq!(steps["category"][0]["coding"][0]["code"], "activity");
    let route = observations
        .iter()
        .find(|o| loinc_or_hearth_code(o) == "workout_route")
        .unwrap();
    assert!(route["valueString"].as_str().unwrap().contains("52.52"));

    // Study B: the year and a relative day only; heart rate alone.
    let token = study_token(&app, &rs, &b, SCOPES).await;
    let status_url = started(&app, &token, "/fhir/Patient/$export").await;
    let m = manifest(&app, &token, &status_url).await;
    let files = download(&app, &token, &m).await;
    validate(&m, &files);
    assert_no_markers(&files);
    let patient = &lines(&files["Patient"])[0];
    assert!(patient.get("gender").is_none(), "not consented: {patient}");
    assert_eq!(patient["extension"][0]["valueString"], "90 or older");
    let observations = lines(&files["Observation"]);
    assert_eq!(observations.len(), 10);
    for obs in &observations {
        assert_eq!(loinc_or_hearth_code(obs), "heart_rate");
        assert_eq!(obs["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(obs["effectivePeriod"]["start"], "2026");
        assert!(obs["extension"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/relative-day"));
    }
    // Open mHealth needs whole dates: this study gets FHIR only.
    let r = kick_off(
        &app,
        &token,
        "/fhir/Patient/$export?_outputFormat=application%2Fvnd.openmhealth%2Bndjson",
    )
    .await;
    assert_eq!(r.status(), 400);

    // Study A as Open mHealth data points.
    let token = study_token(&app, &es, &a, SCOPES).await;
    let status_url = started(
        &app,
        &token,
        &format!("/fhir/Group/{a}/$export?_outputFormat=application/vnd.openmhealth%2Bndjson"),
    )
    .await;
    let m = manifest(&app, &token, &status_url).await;
    let files = download(&app, &token, &m).await;
    assert_no_markers(&files);
    let steps = lines(&files["omh:step-count:3.0"]);
    assert_eq!(steps.len(), 30);
    assert_eq!(steps[0]["header"]["schema_id"]["name"], "step-count");
    assert_eq!(steps[0]["body"]["step_count"]["unit"], "steps");
    assert_eq!(lines(&files["omh:blood-pressure:4.0"]).len(), 1);
    assert_eq!(lines(&files["omh:physical-activity:1.2"]).len(), 1);
    // Routes have no Open mHealth schema: the error file says so.
    assert!(files["OperationOutcome"].contains("workout_route"));
}

async fn withdrawal_cancels_a_running_export(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    for batch in 0..30 {
        let samples = (0..1000)
            .map(|i| sample("step_count", batch * 1000 + i, 10.0, "count"))
            .collect();
        assert_eq!(app.write(samples).await.status(), 201);
    }
    let key = es384_key("es-w");
    let id = add_study(
        &app,
        &study_description(&key, &["step_count"], "shifted_dates", false, "samples"),
    )
    .await;
    consent(&app, &id, &["step_count"], false).await;
    let token = study_token(&app, &key, &id, "system/Observation.rs").await;
    let status_url = started(&app, &token, &format!("/fhir/Group/{id}/$export")).await;
    // One export at a time per study.
    let second = kick_off(&app, &token, &format!("/fhir/Group/{id}/$export")).await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));

    let r = app
        .post_json(&format!("/v1/studies/{id}/withdraw"), &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    // The next request is refused, and no new token is issued.
    assert_eq!(poll(&app, &token, &status_url).await.status(), 401);
    let again = kick_off(&app, &token, &format!("/fhir/Group/{id}/$export")).await;
    assert_eq!(again.status(), 401);
    let (status, body) =
        request_token(&app, &assertion(&app, &key, &id), "system/Observation.rs").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client"))
    );
    // The job's files are gone.
    let exports = db.dir.path().join("exports");
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = std::fs::read_dir(&exports).map(|d| d.count()).unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the cancelled job left files behind");
}

/// The export a study gets, reduced to what does not depend on the random
/// shift and ids: (manifest types and counts, observation code and value).
async fn consented_view(
    extra: bool,
    backend: Backend,
) -> (Vec<(String, u64)>, Vec<(String, String)>, u16, String) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut batch: Vec<Value> = (0..20)
        .map(|m| sample("step_count", m * 5, 10.0 + m as f64, "count"))
        .collect();
    if extra {
        // Outside consent: other types, and the consented type out of range.
        batch.extend((0..50).map(|m| sample("heart_rate", m, 70.0, "count/min")));
        batch.extend((0..50).map(|m| sample("step_count", -500 * 1440 + m, 5.0, "count")));
        batch.extend((0..50).map(|m| sample("step_count", 400 * 1440 + m, 5.0, "count")));
        batch.push(sample("body_mass", 7, 80.0, "kg"));
    }
    assert_eq!(app.write(batch).await.status(), 201);
    let key = es384_key("es-c");
    let id = add_study(
        &app,
        &study_description(
            &key,
            &["step_count", "heart_rate"],
            "shifted_dates",
            false,
            "samples",
        ),
    )
    .await;
    consent(&app, &id, &["step_count"], false).await;
    let token = study_token(&app, &key, &id, "system/Observation.rs").await;
    // Another group is as unknown as a made-up one.
    let other = kick_off(
        &app,
        &token,
        "/fhir/Group/study_000000000000000000000000/$export",
    )
    .await;
    let other = (other.status().as_u16(), other.text().await.unwrap());
    let status_url = started(&app, &token, &format!("/fhir/Group/{id}/$export")).await;
    let m = manifest(&app, &token, &status_url).await;
    let files = download(&app, &token, &m).await;
    validate(&m, &files);
    let outputs = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().to_string(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut values: Vec<(String, String)> = lines(&files["Observation"])
        .iter()
        .map(|o| (loinc_or_hearth_code(o), o["valueQuantity"].to_string()))
        .collect();
    values.sort();
    (outputs, values, other.0, other.1)
}

async fn nothing_outside_consent_shows(backend: Backend) {
    let with_more = consented_view(true, backend).await;
    let without = consented_view(false, backend).await;
    assert_eq!(with_more, without);
    assert_eq!(with_more.2, 404);
    assert_eq!(with_more.1.len(), 20);

    // A token without the Patient scope may not ask for Patient.
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let key = es384_key("es-p");
    let id = add_study(
        &app,
        &study_description(&key, &["step_count"], "shifted_dates", false, "samples"),
    )
    .await;
    consent(&app, &id, &["step_count"], false).await;
    let token = study_token(&app, &key, &id, "system/Observation.rs").await;
    let r = kick_off(
        &app,
        &token,
        &format!("/fhir/Group/{id}/$export?_type=Patient"),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .get(app.url(&format!("/fhir/Group/{id}/$export")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "Prefer: respond-async is required");
}

async fn exports_survive_lock_and_restart_and_since_catches_late_data(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let batch = (0..10)
        .map(|m| sample("step_count", m, 10.0, "count"))
        .collect();
    assert_eq!(app.write(batch).await.status(), 201);
    let key = es384_key("es-r");
    let id = add_study(
        &app,
        &study_description(
            &key,
            &["step_count"],
            "shifted_dates_keep_weekday",
            false,
            "samples",
        ),
    )
    .await;
    consent(&app, &id, &["step_count"], false).await;
    let group = format!("/fhir/Group/{id}/$export");
    let token = study_token(&app, &key, &id, "system/Observation.rs").await;
    let first = manifest(&app, &token, &started(&app, &token, &group).await).await;
    assert_eq!(first["output"][0]["count"], 10);
    let since = first["transactionTime"].as_str().unwrap().to_string();

    // Late data: sample times long before the first export, arriving after.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = (0..4)
        .map(|m| sample("step_count", 100 + m, 99.0, "count"))
        .collect();
    assert_eq!(app.write(late).await.status(), 201);
    let path = format!("{group}?_since={}", urlencode(&since));
    let second = manifest(&app, &token, &started(&app, &token, &path).await).await;
    let files = download(&app, &token, &second).await;
    let values: Vec<f64> = lines(&files["Observation"])
        .iter()
        .map(|o| o["valueQuantity"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        values,
        vec![99.0; 4],
        "only what arrived after the first export"
    );

    // Kick-off while locked waits for the owner; a job started before the
    // lock is still there after it, and after a restart.
    let status_url = started(&app, &token, &group).await;
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    let locked = kick_off(&app, &token, &group).await;
    assert_eq!(locked.status(), 503);
    // A job that has not finished says it waits for the owner.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let waiting = poll(&app, &token, &status_url).await;
    match waiting.status().as_u16() {
        202 => {
            let progress = waiting.headers()["x-progress"].to_str().unwrap();
            assert!(progress.contains("locked"), "{progress}");
        }
        200 => {}
        s => panic!("status while locked: {s}"),
    }
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    let token = study_token(&app, &key, &id, "system/Observation.rs").await;
    // The server listens on another port now.
    let (_, job_path) = status_url.split_once("/fhir/").unwrap();
    let status_url = app.url(&format!("/fhir/{job_path}"));
    let m = manifest(&app, &token, &status_url).await;
    let files = download(&app, &token, &m).await;
    assert_eq!(lines(&files["Observation"]).len(), 14);
    // Releasing it deletes it.
    let r = app
        .client
        .delete(&status_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(poll(&app, &token, &status_url).await.status(), 404);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn daily_studies_receive_sums_and_averages(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    // Two UTC days of steps and heart rate (minute 0 is 2025-12-31T23:00Z).
    let mut batch: Vec<Value> = (60..120)
        .map(|m| sample("step_count", m, 10.0, "count"))
        .collect();
    batch.extend((1500..1510).map(|m| sample("step_count", m, 7.0, "count")));
    batch.extend(
        [60.0, 70.0, 80.0]
            .iter()
            .enumerate()
            .map(|(i, v)| sample("heart_rate", 100 + i as i64, *v, "count/min")),
    );
    batch.push(json!({
        "type": "workout", "activity": "running",
        "start": "2026-01-01T07:00:00+01:00", "end": "2026-01-01T07:30:00+01:00",
    }));
    assert_eq!(app.write(batch).await.status(), 201);
    // A second source counting the same first day's steps: a sum counts
    // each step once, as statistics do, not once per source.
    let watch = app
        .register_app("Watch", "https://watch.example/cb", true)
        .await;
    let watch_token = app
        .mint(watch["id"].as_str().unwrap(), &[], &["step_count"])
        .await;
    let same: Vec<Value> = (60..120)
        .map(|m| sample("step_count", m, 10.0, "count"))
        .collect();
    assert_eq!(app.as_token(&watch_token).write(same).await.status(), 201);
    let key = es384_key("es-d");
    let id = add_study(
        &app,
        &study_description(
            &key,
            &["step_count", "heart_rate", "workout"],
            "shifted_dates",
            false,
            "daily",
        ),
    )
    .await;
    consent(&app, &id, &["step_count", "heart_rate", "workout"], false).await;
    let token = study_token(&app, &key, &id, "system/Observation.rs").await;
    let m = manifest(
        &app,
        &token,
        &started(&app, &token, &format!("/fhir/Group/{id}/$export")).await,
    )
    .await;
    let files = download(&app, &token, &m).await;
    validate(&m, &files);
    let mut got: Vec<(String, f64, String)> = lines(&files["Observation"])
        .iter()
        .map(|o| {
            (
                loinc_or_hearth_code(o),
                o["valueQuantity"]["value"].as_f64().unwrap(),
                o["extension"][0]["valueCode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        got,
        vec![
            ("heart_rate".into(), 70.0, "average".into()),
            ("step_count".into(), 70.0, "sum".into()),
            ("step_count".into(), 600.0, "sum".into()),
        ]
    );
    // A workout has nothing to sum: it stays home, and the error file says so.
    assert!(files["OperationOutcome"].contains("workout"));
    for obs in lines(&files["Observation"]) {
        let start = instant_us(obs["effectivePeriod"]["start"].as_str().unwrap()).unwrap();
        let end = instant_us(obs["effectivePeriod"]["end"].as_str().unwrap()).unwrap();
        assert_eq!(end - start, 86_400_000_000, "one day");
    }
}
