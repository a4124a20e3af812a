//! Apple Health import: generated exports of every version imported and
//! checked against what the generator wrote, re-imports that add nothing,
//! bad uploads refused with nothing stored, and an import beside an app
//! writing at the same time.

use std::io::Write;
use std::time::{Duration, Instant};

use hearth::import::apple_health::generate::{self, Options, Written};
use hearth::log::event::{Event, NOT_DERIVED};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{steps, Backend, TestApp, TestDatabase};

fn export_zip(options: &Options) -> (Vec<u8>, Written) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.zip");
    let written = generate::write_zip(&path, options).unwrap();
    (std::fs::read(&path).unwrap(), written)
}

fn export_xml(options: &Options) -> (Vec<u8>, Written) {
    let mut xml = Vec::new();
    let mut routes = Vec::new();
    let written = generate::write_xml(&mut xml, options, &mut routes).unwrap();
    (xml, written)
}

async fn upload(app: &TestApp, body: Vec<u8>) -> reqwest::Response {
    app.post_raw("/v1/imports", "application/zip", body).await
}

/// Uploads and waits for the job to end; answers the job.
async fn import(app: &TestApp, body: Vec<u8>) -> Value {
    let r = upload(app, body).await;
    assert_eq!(r.status(), 202, "import: {}", r.text().await.unwrap());
    let job: Value = r.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job = app.get_json(&format!("/v1/imports/{id}")).await;
        if job["state"] != "running" {
            return job;
        }
        assert!(Instant::now() < deadline, "the import did not end: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counts(v: &Value) -> std::collections::BTreeMap<String, u64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// Checks what the store answers against what the generator wrote.
async fn check_store(app: &TestApp, written: &Written) {
    for (ty, n) in &written.samples {
        let stats = app
            .get_json_any(&format!("/v1/samples?type={ty}&limit=1"))
            .await;
        assert!(stats["samples"].is_array(), "{ty}: {stats}");
        let listed = app.list_all(ty, 1000).await.len() as u64;
        assert_eq!(listed, *n, "samples of {ty}");
    }
    let steps = app.get_json("/v1/statistics?type=step_count").await;
    assert!(
        close(steps["sum"].as_f64().unwrap(), written.steps_sum),
        "{steps}"
    );
    // The `sources=` filter takes an imported source's name as it is.
    let phone = app
        .get_json("/v1/statistics?type=step_count&sources=apple-health:iPhone")
        .await;
    assert!(
        close(phone["sum"].as_f64().unwrap(), written.steps_sum),
        "{phone}"
    );
    let hr = app.get_json("/v1/statistics?type=heart_rate").await;
    let n = written.samples["heart_rate"] as f64;
    assert_eq!(hr["count"].as_u64().unwrap(), written.samples["heart_rate"]);
    assert!(
        close(hr["min"].as_f64().unwrap(), written.heart_rate_min),
        "{hr}"
    );
    assert!(
        close(hr["max"].as_f64().unwrap(), written.heart_rate_max),
        "{hr}"
    );
    assert!(
        close(hr["avg"].as_f64().unwrap(), written.heart_rate_sum / n),
        "{hr}"
    );
    let mut sleep = std::collections::BTreeMap::<String, i64>::new();
    for s in app.list_all("sleep_analysis", 1000).await {
        let start = chrono::DateTime::parse_from_rfc3339(s["start"].as_str().unwrap()).unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(s["end"].as_str().unwrap()).unwrap();
        *sleep
            .entry(s["value"].as_str().unwrap().to_string())
            .or_default() += (end - start).num_seconds();
    }
    assert_eq!(sleep, written.sleep_seconds);
    // Units converted: pounds to kilograms, a fraction to a percentage.
    let mass = app.list_all("body_mass", 1000).await;
    let kg = mass[0]["value"].as_f64().unwrap();
    assert!((60.0..75.0).contains(&kg), "{kg}");
    let spo2 = app.list_all("oxygen_saturation", 1).await;
    assert!(spo2[0]["value"].as_f64().unwrap() > 90.0);
    // Devices, with their kind; metadata with spaces in keys; routes.
    let sources = app.get_json("/v1/sources?type=heart_rate").await;
    assert_eq!(sources["sources"][0]["source"], "apple-health:Apple Watch");
    assert_eq!(sources["sources"][0]["device"]["kind"], "watch");
    let bp = app.list_all("blood_pressure", 1000).await;
    assert_eq!(bp[0]["metadata"]["Cuff position"], "left arm");
    assert_eq!(bp[0]["members"].as_array().unwrap().len(), 2);
    let hrv = app.list_all("heart_rate_variability_sdnn", 1).await;
    assert!(hrv[0]["metadata"]["HeartRateVariabilityMetadataList"]
        .as_str()
        .unwrap()
        .contains('@'));
    let routes = app.list_all("workout_route", 1000).await;
    let points: usize = routes
        .iter()
        .map(|r| r["route"].as_array().unwrap().len())
        .sum();
    assert_eq!(points as u64, written.route_points);
    // Each route names a stored workout, its own: within the workout's
    // time, and no two routes the same workout.
    let time = |s: &Value, at: &str| {
        chrono::DateTime::parse_from_rfc3339(s[at].as_str().unwrap()).unwrap()
    };
    let workouts: std::collections::HashMap<String, Value> = app
        .list_all("workout", 1000)
        .await
        .into_iter()
        .map(|w| (w["id"].as_str().unwrap().to_string(), w))
        .collect();
    let mut named = std::collections::HashSet::new();
    for r in &routes {
        let workout = &workouts[r["workout"].as_str().unwrap()];
        assert!(time(workout, "start") <= time(r, "start"), "{workout} {r}");
        assert!(time(r, "end") <= time(workout, "end"), "{workout} {r}");
        assert!(named.insert(r["workout"].as_str().unwrap()), "{r}");
    }
    let characteristics = app.get_json("/v1/characteristics").await;
    assert_eq!(characteristics["biological_sex"], "female");
    assert_eq!(characteristics["blood_type"], "ab_positive");
    assert_eq!(characteristics["date_of_birth"], "1984-05-06");
}

async fn every_export_version_imports_as_written(backend: Backend) {
    for version in 11..=14u8 {
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        let options = Options {
            version,
            days: 5,
            // A localised export file name.
            file_name: if version == 13 {
                "eksport.xml"
            } else {
                "export.xml"
            }
            .into(),
            ..Options::default()
        };
        // Version 11 goes up as the XML alone (its routes are inline).
        let (body, written) = if version == 11 {
            export_xml(&options)
        } else {
            export_zip(&options)
        };
        let job = import(&app, body.clone()).await;
        assert_eq!(job["state"], "succeeded", "version {version}: {job}");
        let summary = &job["summary"];
        assert_eq!(
            counts(&summary["samples"]),
            written.samples,
            "version {version}"
        );
        assert_eq!(counts(&summary["unknown"]), written.unknown);
        let skipped = counts(&summary["skipped"]);
        let activity = skipped
            .iter()
            .find(|(k, _)| k.starts_with("ActivitySummary"))
            .map(|(_, n)| *n);
        assert_eq!(activity, Some(written.activity_summaries), "{skipped:?}");
        let empty = skipped.get("workout route file empty (0 bytes)").copied();
        let missing = skipped.get("workout route file missing").copied();
        assert_eq!(empty.unwrap_or(0), written.empty_route_files);
        assert_eq!(missing.unwrap_or(0), written.missing_route_files);
        if version >= 12 {
            assert_eq!(written.empty_route_files, 1);
            assert_eq!(written.missing_route_files, 1);
        }
        assert_eq!(
            summary["correlation_duplicates"].as_u64().unwrap(),
            written.correlation_duplicates
        );
        let total: u64 = written.samples.values().sum();
        assert_eq!(summary["added"].as_u64().unwrap(), total);
        assert_eq!(summary["records"].as_u64().unwrap(), written.records);
        assert_eq!(
            summary["sources"].as_array().unwrap().len(),
            written.sources.len()
        );
        assert_eq!(
            job["progress"]["records"].as_u64().unwrap(),
            written.records
        );
        check_store(&app, &written).await;

        // Again: every sample is already there.
        let again = import(&app, body).await;
        assert_eq!(again["state"], "succeeded", "{again}");
        assert_eq!(again["summary"]["added"], 0, "{again}");
        assert_eq!(again["summary"]["unchanged"].as_u64().unwrap(), total);
        check_store(&app, &written).await;
        app.stop().await;
    }
}

/// Workouts with routes are written in groups before their routes (each
/// route names its workout's id): more of them than one group holds, with
/// routes inline (version 11) and in files, each keep their own routes.
async fn workouts_past_one_group_keep_their_own_routes(backend: Backend) {
    for version in [11, 14] {
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        let options = Options {
            version,
            days: 150,
            heart_rate_every_min: 720,
            ..Options::default()
        };
        let (body, written) = if version == 11 {
            export_xml(&options)
        } else {
            export_zip(&options)
        };
        assert!(written.samples["workout"] > 64, "{:?}", written.samples);
        let job = import(&app, body.clone()).await;
        assert_eq!(job["state"], "succeeded", "version {version}: {job}");
        assert_eq!(counts(&job["summary"]["samples"]), written.samples);
        check_store(&app, &written).await;
        let again = import(&app, body).await;
        assert_eq!(again["summary"]["added"], 0, "{again}");
        check_store(&app, &written).await;
        app.stop().await;
    }
}

async fn a_newer_overlapping_export_adds_only_what_is_new(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let older = Options {
        days: 3,
        ..Options::default()
    };
    let newer = Options {
        days: 6,
        pointer_salt: 0x5eed,
        ..Options::default()
    };
    let (body, _) = export_zip(&older);
    assert_eq!(import(&app, body).await["state"], "succeeded");
    // The same days again, with other device pointers, and three more.
    let (body, written) = export_zip(&newer);
    let job = import(&app, body).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    check_store(&app, &written).await;
    app.stop().await;
}

/// A zip with these `(name, contents)` entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

async fn assert_nothing_stored(app: &TestApp) {
    for ty in ["step_count", "heart_rate", "sleep_analysis", "workout"] {
        assert!(app.list_all(ty, 1000).await.is_empty(), "{ty} stored");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn refused(app: &TestApp, body: Vec<u8>, what: &str) -> String {
    let r = upload(app, body).await;
    let status = r.status();
    let problem: Value = r.json().await.unwrap();
    assert_eq!(status, 400, "{what}: {problem}");
    assert_eq!(problem["code"], "import_refused", "{what}: {problem}");
    assert_nothing_stored(app).await;
    problem["detail"].as_str().unwrap().to_string()
}

async fn bad_exports_are_refused_and_nothing_is_stored(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (good, _) = export_zip(&Options {
        days: 2,
        ..Options::default()
    });

    let truncated = good[..good.len() / 2].to_vec();
    let why = refused(&app, truncated, "truncated zip").await;
    assert!(
        why.contains("incomplete") || why.contains("damaged"),
        "{why}"
    );

    let zeros = vec![0u8; 64 << 20];
    let why = refused(
        &app,
        zip_of(&[("apple_health_export/export.xml", &zeros)]),
        "zip bomb",
    )
    .await;
    assert!(why.contains("zip bomb"), "{why}");

    let (xml, _) = export_xml(&Options {
        days: 1,
        ..Options::default()
    });
    let why = refused(
        &app,
        zip_of(&[
            ("apple_health_export/export.xml", &xml),
            ("apple_health_export/../../etc/cron.d/evil", b"x"),
        ]),
        "path traversal",
    )
    .await;
    assert!(why.contains("unsafe file name"), "{why}");

    let entity = br#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ENTITY secret SYSTEM "file:///etc/passwd">
]>
<HealthData locale="en_US">
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="&secret;" unit="count" startDate="2020-01-01 10:00:00 +0000" endDate="2020-01-01 10:01:00 +0000" value="10"/>
</HealthData>
"#;
    let why = refused(&app, entity.to_vec(), "external entity").await;
    assert!(why.contains("entit"), "{why}");

    // Elements nested far deeper than any export's: the job fails with a
    // clear error before the tree is walked, and the server stays up.
    let deep = format!(
        "<HealthData>\n<Record type=\"HKQuantityTypeIdentifierStepCount\">{}{}</Record>\n</HealthData>\n",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    let job = import(&app, deep.into_bytes()).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("nested"), "{job}");
    assert_nothing_stored(&app).await;

    let why = refused(&app, b"just some bytes".to_vec(), "not an export").await;
    assert!(why.contains("HealthData"), "{why}");

    // A body that says it is 10 GB is refused before it is read.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let token = app.token.clone().unwrap();
    let head = format!(
        "POST /v1/imports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\r\nPK",
        10u64 << 30
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer before the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(stream);
    assert_nothing_stored(&app).await;

    // The server still works, and imports.
    assert_eq!(app.write(vec![json!(steps(1, 5.0))]).await.status(), 201);
    assert_eq!(import(&app, good).await["state"], "succeeded");
    app.stop().await;
}

async fn an_import_beside_an_app_writing_counts_each_sample_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Pedometer", "https://p.example/cb", false)
        .await;
    let token = app
        .mint(
            reg["id"].as_str().unwrap(),
            &["step_count"],
            &["step_count"],
        )
        .await;
    let (body, written) = export_zip(&Options {
        days: 20,
        ..Options::default()
    });
    let writer = {
        let client = reqwest::Client::new();
        let url = app.url("/v1/samples");
        tokio::spawn(async move {
            let mut sum = 0.0;
            for batch in 0..40 {
                let samples: Vec<Value> = (0..25).map(|i| steps(batch * 25 + i, 3.0)).collect();
                sum += 3.0 * 25.0;
                let r = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "samples": samples }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
            sum
        })
    };
    let job = import(&app, body).await;
    let app_sum = writer.await.unwrap();
    assert_eq!(job["state"], "succeeded", "{job}");
    let all = app.get_json("/v1/statistics?type=step_count").await;
    assert!(
        close(all["sum"].as_f64().unwrap(), written.steps_sum + app_sum),
        "{all}"
    );
    assert_eq!(
        app.list_all("step_count", 1000).await.len() as u64,
        written.samples["step_count"] + 1000
    );
    app.stop().await;
}

both_backends!(
    every_export_version_imports_as_written,
    workouts_past_one_group_keep_their_own_routes,
    a_newer_overlapping_export_adds_only_what_is_new,
    bad_exports_are_refused_and_nothing_is_stored,
    an_import_beside_an_app_writing_counts_each_sample_once,
    erasing_the_import_family_erases_every_imported_source,
    a_source_with_more_devices_than_its_cap_is_imported_without_them,
    an_upload_outlasts_the_request_timeout_but_not_a_stall,
    an_import_takes_one_snapshot_when_it_ends,
    imported_ids_hold_their_identifiers_and_deleted_ones_are_not_reused,
);

/// Each listed sample of the types an export writes: id to sync
/// identifier.
async fn identities(
    app: &TestApp,
    written: &Written,
) -> std::collections::BTreeMap<String, Option<String>> {
    let mut out = std::collections::BTreeMap::new();
    for ty in written.samples.keys() {
        for s in app.list_all(ty, 1000).await {
            let sync_id = s["sync_id"].as_str().map(String::from);
            out.insert(s["id"].as_str().unwrap().to_string(), sync_id);
        }
    }
    out
}

/// An imported sample's id is derived from its sync identifier, so the
/// store keeps no record of the identifier: each still reads back with its
/// sample, the same after a restart from a snapshot and from the log
/// alone; every id is a random (version 4) UUID; and a deleted sample
/// imported again comes back under a new id, not the one deleted.
async fn imported_ids_hold_their_identifiers_and_deleted_ones_are_not_reused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (body, written) = export_zip(&Options {
        days: 2,
        ..Options::default()
    });
    let total: u64 = written.samples.values().sum();
    let job = import(&app, body.clone()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let before = identities(&app, &written).await;
    assert_eq!(before.len() as u64, total);
    // A correlation's members hold no identifier of their own.
    let members = ["blood_pressure_systolic", "blood_pressure_diastolic"];
    let mut member_ids = std::collections::BTreeSet::new();
    for ty in members {
        member_ids.extend(
            app.list_all(ty, 1000)
                .await
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string()),
        );
    }
    assert!(!member_ids.is_empty());
    for (id, sync_id) in &before {
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
        let imported = sync_id.as_deref().is_some_and(|s| s.starts_with("ah1-"));
        assert_eq!(imported, !member_ids.contains(id), "{id}");
    }
    // Only a route's identifier (a digest and the route's number) is
    // held by a record.
    let routes = written.samples["workout_route"] as usize;
    let records = |app: &TestApp| app.store.open_store().unwrap().sync_records();
    assert_eq!(records(&app), routes);
    // So does the log: every other imported sample's event marks its id
    // as derived instead.
    let (mut listed, mut derived) = (0, 0);
    for envelope in crate::erasure::recover(&db).await.events() {
        match envelope.event {
            Event::SamplesWritten { synced, .. } => listed += synced.len(),
            Event::SamplesImported {
                synced, derived: d, ..
            } => {
                listed += synced.len();
                derived += d.iter().filter(|&&bits| bits != NOT_DERIVED).count();
            }
            _ => {}
        }
    }
    assert_eq!(listed, routes);
    assert_eq!(derived, before.len() - member_ids.len() - routes);
    let distinct: std::collections::BTreeSet<_> = before.values().flatten().collect();
    assert_eq!(
        distinct.len(),
        before.len() - member_ids.len(),
        "one identifier per sample"
    );
    app.stop().await;

    // From the snapshot taken at the lock, then from the log alone.
    let mut app = TestApp::start(&db).await;
    assert!(!app.store.storage().snapshots().await.unwrap().is_empty());
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(identities(&app, &written).await, before);
    assert_eq!(records(&app), routes);
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    app.store
        .storage()
        .delete_snapshots(u64::MAX)
        .await
        .unwrap();
    assert!(app.store.storage().snapshots().await.unwrap().is_empty());
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(identities(&app, &written).await, before);
    assert_eq!(records(&app), routes);
    let again = import(&app, body.clone()).await;
    assert_eq!(again["summary"]["added"], 0, "{again}");

    // A deleted sample imported again gets an id of its own.
    let hr = app.list_all("heart_rate", 1).await;
    let victim = hr[0]["id"].as_str().unwrap().to_string();
    let r = app.delete(&format!("/v1/samples/{victim}")).await;
    assert!(r.status().is_success(), "{}", r.status());
    let back = import(&app, body).await;
    assert_eq!(back["summary"]["added"], 1, "{back}");
    assert_eq!(back["summary"]["unchanged"].as_u64().unwrap(), total - 1);
    let after = identities(&app, &written).await;
    assert_eq!(after.len(), before.len());
    assert!(
        !after.contains_key(&victim),
        "the deleted id is not given again"
    );
    let returned: Vec<_> = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .collect();
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].1, &before[&victim]);
    assert_eq!(records(&app), routes + 1, "its identifier has a record");
    app.stop().await;
}

/// `DELETE /v1/source-families/apple-health` erases every source an import
/// wrote, by destroying their keys, and nothing of the owner's or an app's.
async fn erasing_the_import_family_erases_every_imported_source(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Pedometer", "https://p.example/cb", false)
        .await;
    let token = app
        .mint(
            reg["id"].as_str().unwrap(),
            &["step_count"],
            &["step_count"],
        )
        .await;
    let r = app
        .as_token(&token)
        .write((0..10).map(|m| steps(m, 7.0)).collect())
        .await;
    assert_eq!(r.status(), 201);
    let r = app.write((20..25).map(|m| steps(m, 2.0)).collect()).await;
    assert_eq!(r.status(), 201);
    let options = Options {
        days: 2,
        ..Options::default()
    };
    let (body, written) = export_zip(&options);
    let job = import(&app, body.clone()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let mut imported = 0;
    for ty in written.samples.keys() {
        imported += app.list_all(ty, 1000).await.len();
    }
    imported -= 15; // the app's and the owner's steps

    // Not a family name, and not the owner: refused, nothing erased.
    for bad in ["apple%3Ahealth", "a%2Fb", &"x".repeat(65)] {
        let r = app.delete(&format!("/v1/source-families/{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = app
        .as_token(&token)
        .delete("/v1/source-families/apple-health")
        .await;
    assert_eq!(r.status(), 403);
    let none = app.delete("/v1/source-families/fitbit").await;
    assert_eq!(none.status(), 200);
    let none: Value = none.json().await.unwrap();
    assert_eq!(none["sources"], json!([]), "{none}");
    assert_eq!(none["samples_erased"], 0);

    // A snapshot taken at lock holds the family's samples.
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert!(r.status().is_success());
    let mut app = app;
    assert_eq!(app.unlock().await.status(), 200);
    assert!(!app.store.storage().snapshots().await.unwrap().is_empty());
    let family = |s: &hearth::keys::data_keys::KeyScope| {
        matches!(s, hearth::keys::data_keys::KeyScope::Samples { source, .. }
            if source.starts_with("apple-health:"))
    };
    let family_keys = crate::erasure::recover(&db).await.key_ids(family);
    assert!(!family_keys.is_empty());
    let r = app.delete("/v1/source-families/apple-health").await;
    assert_eq!(r.status(), 200);
    let erased: Value = r.json().await.unwrap();
    // No snapshot from before the erasure is left.
    let erased_at = app.store.storage().head().await.unwrap().seq;
    let snapshots = app.store.storage().snapshots().await.unwrap();
    assert!(
        snapshots.iter().all(|s| s.at.seq >= erased_at),
        "{snapshots:?}"
    );
    let mut sources: Vec<String> = serde_json::from_value(erased["sources"].clone()).unwrap();
    sources.sort();
    let mut expected: Vec<String> = job["summary"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(sources, expected);
    assert!(sources.iter().all(|s| s.starts_with("apple-health:")));
    assert_eq!(
        erased["samples_erased"].as_u64().unwrap() as usize,
        imported
    );
    assert!(erased["keys_destroyed"].as_u64().unwrap() > 0);

    // What remains is the app's and the owner's.
    let all = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(all["sum"].as_f64().unwrap(), 80.0, "{all}");
    for ty in written.samples.keys() {
        let left = app.list_all(ty, 1000).await;
        let expected = if ty == "step_count" { 15 } else { 0 };
        assert_eq!(left.len(), expected, "{ty}");
    }

    // No key of the family is left in the database, and none of what is
    // left opens the family's records.
    let after = crate::erasure::recover(&db).await;
    assert!(after.key_ids(family).is_empty());
    let sealed = after.records_under(&family_keys);
    assert!(!sealed.is_empty());
    assert!(sealed.iter().all(|r| !after.opens(r)));

    // Importing the export again brings it all back, under new keys.
    let again = import(&app, body).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(again["summary"]["unchanged"], 0, "{again}");
    for (ty, n) in &written.samples {
        let extra = if ty == "step_count" { 15 } else { 0 };
        assert_eq!(app.list_all(ty, 1000).await.len() as u64, n + extra, "{ty}");
    }
    let phone = app
        .get_json("/v1/statistics?type=step_count&sources=apple-health:iPhone")
        .await;
    assert!(
        close(phone["sum"].as_f64().unwrap(), written.steps_sum),
        "{phone}"
    );
    app.stop().await;
}

/// Sends `body` as an upload in `pieces` parts, `pause` apart, then waits
/// for the answer; returns its status line and body.
async fn trickle(app: &TestApp, body: &[u8], pieces: usize, pause: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let token = app.token.clone().unwrap();
    let head = format!(
        "POST /v1/imports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(body.len().div_ceil(pieces)) {
        tokio::time::sleep(pause).await;
        if stream.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// An export that takes longer to arrive than the server's request timeout
/// is still taken (a few gigabytes over a home network take minutes); one
/// that stops arriving for that long is dropped, and nothing is stored.
async fn an_upload_outlasts_the_request_timeout_but_not_a_stall(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.request_timeout_secs = 1;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    let (body, _) = export_zip(&Options {
        days: 2,
        ..Options::default()
    });
    // Three seconds in all, never a second without a byte.
    let answer = trickle(&app, &body, 8, Duration::from_millis(400)).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    // Half of it, then nothing.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let token = app.token.clone().unwrap();
    let head = format!(
        "POST /v1/imports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("the stalled upload is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");

    // Every other request keeps the timeout: a write whose body stops
    // half way is answered 408 after a second.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let json = serde_json::to_vec(&json!({ "samples": [steps(1, 5.0)] })).unwrap();
    let head = format!(
        "POST /v1/samples HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        json.len()
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&json[..json.len() / 2]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the stalled write is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The first import completes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = app
            .get("/v1/imports/00000000-0000-0000-0000-000000000000")
            .await;
        assert_eq!(jobs.status(), 404);
        let steps = app.get_json("/v1/statistics?type=step_count").await;
        if steps["count"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trickled import stored nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// An import is one snapshot, taken when it ends: snapshots every so many
/// records would capture the growing projection over and over.
async fn an_import_takes_one_snapshot_when_it_ends(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.snapshot_every = 5;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    // A heart rate every minute: the import writes many more records than
    // the snapshot interval.
    let (zip, _) = export_zip(&Options {
        days: 30,
        heart_rate_every_min: 1,
        ..Options::default()
    });
    let before = app.store.storage().head().await.unwrap().seq;
    let job = import(&app, zip).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let head = app.store.storage().head().await.unwrap().seq;
    assert!(
        head > before + 20,
        "the import wrote {} records",
        head - before
    );
    let mut waited = Duration::ZERO;
    let stored = loop {
        let stored = app.store.storage().snapshots().await.unwrap();
        if stored.first().is_some_and(|s| s.at.seq == head) || waited > Duration::from_secs(30) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    };
    let seqs: Vec<u64> = stored.iter().map(|s| s.at.seq).collect();
    assert_eq!(
        seqs.first(),
        Some(&head),
        "one snapshot at the import's end: {seqs:?}"
    );
    assert!(
        seqs[1..].iter().all(|&seq| seq <= before),
        "none while it ran ({before}..{head}): {seqs:?}"
    );
    // Written records after the import are snapshotted every 5 again.
    for minute in 0..6 {
        assert_eq!(app.write(vec![steps(minute, 1.0)]).await.status(), 201);
    }
    let mut waited = Duration::ZERO;
    while app.store.storage().snapshots().await.unwrap()[0].at.seq <= head {
        assert!(
            waited < Duration::from_secs(30),
            "no snapshot after the import"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    app.stop().await;
}

/// A source may name at most `MAX_DEVICES_PER_SOURCE` devices: an export
/// whose source names more is still imported, its samples without devices.
async fn a_source_with_more_devices_than_its_cap_is_imported_without_them(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let devices = hearth::log::writer::MAX_DEVICES_PER_SOURCE + 6;
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HealthData locale=\"en_US\">\n");
    for n in 0..devices {
        xml.push_str(&format!(
            " <Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"Band\" unit=\"count\" \
             device=\"&lt;&lt;HKDevice: 0x{n:x}&gt;, name:Band {n}, manufacturer:Acme, model:Band, hardware:B1, software:1&gt;\" \
             startDate=\"2020-01-01 {h:02}:{m:02}:00 +0000\" endDate=\"2020-01-01 {h:02}:{m:02}:30 +0000\" value=\"{n}\"/>\n",
            h = 10 + n / 60,
            m = n % 60
        ));
    }
    xml.push_str("</HealthData>\n");
    let job = import(&app, xml.into_bytes()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["summary"]["added"], devices as u64, "{job}");
    let stored = app.list_all("step_count", 50).await;
    assert_eq!(stored.len(), devices);
    assert!(
        stored.iter().all(|s| s["device"].is_null()),
        "{:?}",
        stored[0]
    );
    app.stop().await;
    // Within the cap, devices are kept.
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (zip, _) = export_zip(&Options::default());
    assert_eq!(import(&app, zip).await["state"], "succeeded");
    let stored = app.list_all("step_count", 500).await;
    assert!(stored.iter().any(|s| s["device"].is_object()));
    app.stop().await;
}
