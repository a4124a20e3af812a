//! The audit: every app read per app, type and day with its counts, app
//! writes, study exports; counts that survive lock, unlock and restart;
//! the owner's alone; filters and paging.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::process::{find, raw_bytes};
use crate::support::{steps, Backend, TestApp, TestDatabase};

both_backends!(
    the_owner_sees_each_apps_reads_per_type_and_day,
    counts_survive_lock_unlock_and_restart,
    apps_and_strangers_cannot_read_the_audit,
    filters_narrow_and_pages_follow_cursors,
    bad_filter_values_are_refused_plainly,
    a_study_export_disclosure_shows_up,
    the_audit_is_ciphertext_at_rest,
);

/// Today (UTC) by the server's clock.
fn today(app: &TestApp) -> String {
    chrono::DateTime::from_timestamp_micros(app.store.apps().clock.now_us())
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn heart_rate(minute: i64, bpm: f64) -> Value {
    crate::support::sample("heart_rate", minute, bpm, "count/min")
}

/// An app with these grants; returns (id, token).
async fn app_with(app: &TestApp, name: &str, read: &[&str], write: &[&str]) -> (String, String) {
    let reg = app
        .register_app(name, &format!("https://{name}.example/cb"), false)
        .await;
    let id = reg["id"].as_str().unwrap().to_string();
    let token = app.mint(&id, read, write).await;
    (id, token)
}

/// The owner's store: 3 step samples and 2 heart-rate samples.
async fn seeded(app: &TestApp) {
    let r = app
        .write(vec![
            steps(0, 10.0),
            steps(1, 20.0),
            steps(2, 30.0),
            heart_rate(0, 60.0),
            heart_rate(1, 61.0),
        ])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let body = app.get_json(&format!("/v1/audit?{query}")).await;
    body["entries"].as_array().unwrap().clone()
}

/// (kind, app, type) → (samples, summaries), for app usage on `day`.
async fn usage(app: &TestApp, day: &str) -> BTreeMap<(String, String, String), (u64, u64)> {
    audit(app, "limit=1000")
        .await
        .into_iter()
        .filter(|e| e["kind"] != "study_export")
        .map(|e| {
            assert_eq!(e["day"], day, "{e}");
            (
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["app_id"].as_str().unwrap().to_string(),
                    e["type"].as_str().unwrap().to_string(),
                ),
                (
                    e["samples"].as_u64().unwrap(),
                    e["summaries"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn key(kind: &str, app: &str, ty: &str) -> (String, String, String) {
    (kind.into(), app.into(), ty.into())
}

async fn read_samples(app: &TestApp, token: &str, query: &str) -> usize {
    let body = app
        .as_token(token)
        .get_json(&format!("/v1/samples?{query}"))
        .await;
    body["samples"].as_array().unwrap().len()
}

async fn the_owner_sees_each_apps_reads_per_type_and_day(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    seeded(&app).await;
    let (a, a_token) = app_with(&app, "reader", &["step_count", "heart_rate"], &[]).await;
    let (b, b_token) = app_with(&app, "counter", &["step_count"], &["step_count"]).await;

    assert_eq!(read_samples(&app, &a_token, "type=step_count").await, 3);
    assert_eq!(
        read_samples(&app, &a_token, "type=step_count&limit=2").await,
        2
    );
    assert_eq!(read_samples(&app, &a_token, "type=heart_rate").await, 2);
    // By id is a read too.
    let one = app
        .as_token(&a_token)
        .get_json("/v1/samples?type=heart_rate&limit=1")
        .await;
    let id = one["samples"][0]["id"].as_str().unwrap().to_string();
    let r = app
        .as_token(&a_token)
        .get(&format!("/v1/samples/{id}"))
        .await;
    assert_eq!(r.status(), 200);
    // An aggregate answer is counted as one summary, not as samples.
    let r = app
        .as_token(&b_token)
        .get("/v1/statistics?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z")
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // A write of B's.
    let r = app
        .as_token(&b_token)
        .write(vec![steps(10, 5.0), steps(11, 6.0)])
        .await;
    assert_eq!(r.status(), 201);
    // The owner's own reads are not disclosures.
    app.get_json("/v1/samples?type=step_count").await;

    let seen = usage(&app, &today(&app)).await;
    let expected = BTreeMap::from([
        (key("app_read", &a, "step_count"), (5, 0)),
        (key("app_read", &a, "heart_rate"), (4, 0)),
        (key("app_read", &b, "step_count"), (0, 1)),
        (key("app_write", &b, "step_count"), (2, 0)),
    ]);
    assert_eq!(seen, expected);
    // Each entry names the app as it is called now.
    let entries = audit(&app, &format!("kind=app_read&app={a}")).await;
    assert!(
        entries.iter().all(|e| e["app_name"] == "reader"),
        "{entries:?}"
    );

    // The owner's privacy page lists them too; an app's page does not.
    let page = app.get("/privacy").await.text().await.unwrap();
    assert!(page.contains(r#"<section id="audit">"#), "{page}");
    assert!(page.contains("<td>reader read</td><td>heart_rate</td><td>4 samples"));
    assert!(page.contains("<td>counter wrote</td><td>step_count</td><td>2 samples"));
    let theirs = app
        .client
        .get(app.url("/privacy"))
        .bearer_auth(&a_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!theirs.contains(r#"id="audit""#), "{theirs}");
}

async fn counts_survive_lock_unlock_and_restart(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    seeded(&app).await;
    let (a, a_token) = app_with(&app, "reader", &["step_count"], &[]).await;
    assert_eq!(read_samples(&app, &a_token, "type=step_count").await, 3);

    // Not listed before the lock: the tally is written at the lock.
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert!(r.status().is_success());
    assert_eq!(app.unlock().await.status(), 200);
    let day = today(&app);
    assert_eq!(
        usage(&app, &day).await,
        BTreeMap::from([(key("app_read", &a, "step_count"), (3, 0))])
    );

    // Read again, then stop the server: shutdown writes the tally too.
    assert_eq!(read_samples(&app, &a_token, "type=step_count").await, 3);
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(
        usage(&app, &day).await,
        BTreeMap::from([(key("app_read", &a, "step_count"), (6, 0))])
    );
    // And once more through a snapshot taken at the lock.
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert!(r.status().is_success());
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(
        usage(&app, &day).await,
        BTreeMap::from([(key("app_read", &a, "step_count"), (6, 0))])
    );
}

async fn apps_and_strangers_cannot_read_the_audit(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    seeded(&app).await;
    let (_, token) = app_with(&app, "nosy", &["step_count"], &[]).await;
    assert_eq!(read_samples(&app, &token, "type=step_count").await, 3);
    for query in ["", "?kind=app_read", "?kind=bogus", "?app=nosy"] {
        let r = app.as_token(&token).get(&format!("/v1/audit{query}")).await;
        assert_eq!(r.status(), 403, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "owner_only");
        assert!(body.get("entries").is_none());
    }
    let r = app.client.get(app.url("/v1/audit")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The owner still sees the read.
    assert_eq!(audit(&app, "kind=app_read").await.len(), 1);
}

async fn filters_narrow_and_pages_follow_cursors(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    seeded(&app).await;
    let (a, a_token) = app_with(&app, "a", &["step_count", "heart_rate"], &["step_count"]).await;
    let (b, b_token) = app_with(&app, "b", &["heart_rate"], &[]).await;
    read_samples(&app, &a_token, "type=step_count").await;
    read_samples(&app, &a_token, "type=heart_rate").await;
    read_samples(&app, &b_token, "type=heart_rate").await;
    let r = app.as_token(&a_token).write(vec![steps(20, 1.0)]).await;
    assert_eq!(r.status(), 201);

    assert_eq!(audit(&app, "").await.len(), 4);
    assert_eq!(audit(&app, "kind=app_read").await.len(), 3);
    assert_eq!(audit(&app, "kind=app_write").await.len(), 1);
    assert_eq!(audit(&app, "kind=study_export").await.len(), 0);
    assert_eq!(audit(&app, &format!("app={a}")).await.len(), 3);
    assert_eq!(
        audit(&app, &format!("app={b}&type=heart_rate")).await.len(),
        1
    );
    assert_eq!(audit(&app, "type=heart_rate").await.len(), 2);
    assert_eq!(audit(&app, "study=study_nothing").await.len(), 0);
    let day = today(&app);
    let inside = format!("since={day}T00:00:00Z&until={day}T23:59:59Z");
    assert_eq!(audit(&app, &inside).await.len(), 4);
    assert_eq!(audit(&app, "since=2100-01-01T00:00:00Z").await.len(), 0);
    assert_eq!(audit(&app, "until=2000-01-01T00:00:00Z").await.len(), 0);

    // One at a time, the same entries as all at once, each once.
    let all = audit(&app, "").await;
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/audit?limit=1".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json(&path).await;
        paged.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(paged.len() <= all.len(), "paging does not end");
    }
    assert_eq!(paged, all);
}

async fn bad_filter_values_are_refused_plainly(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    for (query, field) in [
        ("kind=app_reads", "kind"),
        ("type=steps", "type"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("cursor=not-a-cursor!", "cursor"),
    ] {
        let r = app.get(&format!("/v1/audit?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
        assert!(
            !body["errors"][0]["message"].as_str().unwrap().is_empty(),
            "{body}"
        );
    }
}

async fn a_study_export_disclosure_shows_up(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let at_us = 1_767_312_000_000_000; // 2026-01-02T00:00:00Z
    let disclosure = hearth::audit::StudyExportDisclosure {
        study_id: "study_abc".into(),
        job_id: "job_1".into(),
        types: vec!["heart_rate".into(), "step_count".into()],
        counts: BTreeMap::from([("heart_rate".into(), 12), ("step_count".into(), 30)]),
        range_start_us: Some(1_735_689_600_000_000), // 2025-01-01
        range_end_us: Some(1_767_225_600_000_000),   // 2026-01-01
        bytes: 4_096,
        at_us,
    };
    let open = app.store.open_store().unwrap();
    hearth::audit::record_study_export(&open.writer, disclosure)
        .await
        .unwrap();
    drop(open);

    let expected = json!({
        "kind": "study_export",
        "study_id": "study_abc",
        "study_name": null,
        "job_id": "job_1",
        "types": ["heart_rate", "step_count"],
        "counts": { "heart_rate": 12, "step_count": 30 },
        "range_start": "2025-01-01T00:00:00Z",
        "range_end": "2026-01-01T00:00:00Z",
        "bytes": 4096,
        "at": "2026-01-02T00:00:00Z",
    });
    assert_eq!(
        audit(&app, "kind=study_export").await,
        std::slice::from_ref(&expected)
    );
    assert_eq!(
        audit(&app, "study=study_abc&type=step_count").await.len(),
        1
    );
    assert_eq!(audit(&app, "study=study_other").await.len(), 0);
    assert_eq!(audit(&app, "type=body_mass").await.len(), 0);
    assert_eq!(audit(&app, "app=anyone").await.len(), 0);
    assert_eq!(
        audit(&app, "since=2026-01-02T00:00:01Z").await.len(),
        0,
        "since is inclusive of the moment only"
    );
    assert_eq!(audit(&app, "since=2026-01-02T00:00:00Z").await.len(), 1);

    // Kept in the log: there after a restart.
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(audit(&app, "kind=study_export").await, [expected]);
}

async fn the_audit_is_ciphertext_at_rest(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    seeded(&app).await;
    let (reader, token) = app_with(&app, "reader", &["step_count"], &[]).await;
    read_samples(&app, &token, "type=step_count").await;
    let open = app.store.open_store().unwrap();
    let disclosure = hearth::audit::StudyExportDisclosure {
        study_id: "study_MARKERAUDITSTUDY".into(),
        job_id: "job_MARKERAUDITJOB".into(),
        types: vec!["step_count".into()],
        counts: BTreeMap::from([("step_count".into(), 3)]),
        range_start_us: None,
        range_end_us: None,
        bytes: 77,
        at_us: 1_767_312_000_000_000,
    };
    hearth::audit::record_study_export(&open.writer, disclosure)
        .await
        .unwrap();
    drop(open);
    // Logged (the listing flushes the tally), then snapshotted at lock.
    assert_eq!(audit(&app, "").await.len(), 2);
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert!(r.status().is_success());

    let haystack = raw_bytes(&db, "events");
    for marker in [
        "study_MARKERAUDITSTUDY",
        "job_MARKERAUDITJOB",
        reader.as_str(),
    ] {
        assert!(!find(&haystack, marker.as_bytes()), "{marker} in the clear");
        assert!(
            !find(&haystack, hex::encode(marker).as_bytes()),
            "{marker} in the clear (hex)"
        );
    }
}
