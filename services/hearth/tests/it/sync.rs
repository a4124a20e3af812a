//! Sync identifiers: per source, idempotent, versioned, and blind to every
//! other source's samples. On SQLite and Postgres.

use crate::support::{steps, Backend, TestApp, TestDatabase};
use serde_json::{json, Value};

both_backends!(
    another_sources_sync_id_changes_nothing,
    two_apps_use_the_same_sync_id_independently,
    retries_versions_and_conflicts,
    a_higher_version_replaces_in_the_change_feed,
    sync_ids_outside_the_limits_are_refused,
    sync_semantics_survive_lock_and_unlock,
);

fn synced(minute: i64, value: f64, sync_id: &str, version: Option<i64>) -> Value {
    let mut s = steps(minute, value);
    s["sync_id"] = json!(sync_id);
    if let Some(v) = version {
        s["sync_version"] = json!(v);
    }
    s
}

async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn first_id(body: &Value) -> String {
    body["ids"][0].as_str().unwrap().to_string()
}

/// Replaces the answer's ids by their positions: ids are random per store.
fn without_ids(mut body: Value) -> Value {
    if let Some(ids) = body.get_mut("ids").and_then(Value::as_array_mut) {
        for (i, id) in ids.iter_mut().enumerate() {
            assert!(id
                .as_str()
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .is_some());
            *id = json!(i);
        }
    }
    body
}

/// The old attack: an app writes with the sync_id (or the id) of samples it
/// cannot read, the owner's and another app's, then after they are deleted.
/// Every answer is the one a store without those samples gives.
async fn another_sources_sync_id_changes_nothing(backend: Backend) {
    let mut answers = Vec::new();
    let mut hidden_ids = Vec::new();
    for with_hidden in [true, false] {
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        let nosy = app
            .register_app("Nosy", "https://n.example/cb", false)
            .await;
        let token = app
            .mint(nosy["id"].as_str().unwrap(), &[], &["step_count"])
            .await;
        let other = app
            .register_app("Other", "https://o.example/cb", false)
            .await;
        let other_token = app
            .mint(other["id"].as_str().unwrap(), &[], &["step_count"])
            .await;
        if with_hidden {
            let (status, body) =
                answer(app.write(vec![synced(0, 1.0, "shared", None)]).await).await;
            assert_eq!(status, 201);
            hidden_ids.push(first_id(&body));
            let (status, body) = answer(
                app.as_token(&other_token)
                    .write(vec![synced(1, 1.0, "theirs", Some(7))])
                    .await,
            )
            .await;
            assert_eq!(status, 201);
            hidden_ids.push(first_id(&body));
        }
        let nosy = app.as_token(&token);
        let mut seen = Vec::new();
        let writes = [
            synced(5, 2.0, "shared", None),
            synced(5, 2.0, "shared", None),
            synced(6, 3.0, "theirs", Some(1)),
            synced(6, 4.0, "theirs", Some(0)),
            synced(6, 4.0, "theirs", Some(2)),
        ];
        for w in writes {
            let (status, body) = answer(nosy.write(vec![w]).await).await;
            seen.push((status, without_ids(body)));
        }
        if with_hidden {
            // Deleted hidden samples leave nothing behind either.
            for id in &hidden_ids {
                assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 204);
            }
        }
        for w in [
            synced(7, 5.0, "shared", Some(3)),
            synced(8, 5.0, "gone", None),
        ] {
            let (status, body) = answer(nosy.write(vec![w]).await).await;
            seen.push((status, without_ids(body)));
        }
        // A client-chosen id is no longer part of a sample, in any store.
        let mut with_id = steps(9, 1.0);
        with_id["id"] = json!(hidden_ids[0]);
        let (status, body) = answer(nosy.write(vec![with_id]).await).await;
        seen.push((status, body));
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    let statuses: Vec<u16> = answers[0].iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![201, 200, 201, 409, 201, 201, 201, 400]);
    assert_eq!(answers[0][3].1["code"], "sync_conflict");
    assert_eq!(answers[0][3].1["errors"][0]["index"], 0);
    assert_eq!(answers[0][4].1["replaced"], 1);
    assert_eq!(answers[0][5].1["replaced"], 1);
}

async fn two_apps_use_the_same_sync_id_independently(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut ids = Vec::new();
    for (name, value) in [("A", 10.0), ("B", 20.0)] {
        let reg = app.register_app(name, "https://x.example/cb", false).await;
        let token = app
            .mint(
                reg["id"].as_str().unwrap(),
                &["step_count"],
                &["step_count"],
            )
            .await;
        let (status, body) = answer(
            app.as_token(&token)
                .write(vec![synced(0, value, "walk-1", None)])
                .await,
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["added"], 1);
        ids.push(first_id(&body));
    }
    let (status, body) = answer(app.write(vec![synced(0, 30.0, "walk-1", None)]).await).await;
    assert_eq!((status, &body["added"]), (201, &json!(1)));
    ids.push(first_id(&body));
    let listed = app.list_all("step_count", 10).await;
    assert_eq!(listed.len(), 3);
    for (id, value) in ids.iter().zip([10.0, 20.0, 30.0]) {
        let s = app.get_json(&format!("/v1/samples/{id}")).await;
        assert_eq!(s["sync_id"], "walk-1");
        assert_eq!(s["sync_version"], 0);
        assert_eq!(s["value"], value);
    }
}

async fn retries_versions_and_conflicts(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (status, first) = answer(app.write(vec![synced(0, 1.0, "a", Some(2))]).await).await;
    assert_eq!(status, 201);
    let id = first_id(&first);
    // The same content and version: a no-op answering the stored id.
    let (status, body) = answer(app.write(vec![synced(0, 1.0, "a", Some(2))]).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["added"], &body["replaced"], &body["unchanged"]),
        (&json!(0), &json!(0), &json!(1))
    );
    assert_eq!(first_id(&body), id);
    // Other content at the same or a lower version, or the same content at
    // a lower one: a conflict naming the sample.
    for conflicting in [
        synced(0, 2.0, "a", Some(2)),
        synced(0, 2.0, "a", Some(1)),
        synced(0, 1.0, "a", None),
        synced(1, 1.0, "a", Some(2)),
    ] {
        let (status, body) = answer(
            app.write(vec![synced(5, 1.0, "b", None), conflicting])
                .await,
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "sync_conflict");
        assert_eq!(body["errors"][0]["index"], 1);
        assert_eq!(body["errors"][0]["field"], "sync_id");
    }
    assert_eq!(
        app.list_all("step_count", 10).await.len(),
        1,
        "all or nothing"
    );
    // Within one request: the same sample twice counts once; a later
    // version supersedes an earlier one, and both answer the stored id.
    let (status, body) = answer(
        app.write(vec![
            synced(2, 1.0, "c", None),
            synced(2, 1.0, "c", None),
            synced(3, 1.0, "d", Some(1)),
            synced(3, 2.0, "d", Some(2)),
        ])
        .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!((&body["added"], &body["unchanged"]), (&json!(2), &json!(1)));
    assert_eq!(body["ids"][0], body["ids"][1]);
    assert_eq!(body["ids"][2], body["ids"][3]);
    let d = app
        .get_json(&format!("/v1/samples/{}", body["ids"][3].as_str().unwrap()))
        .await;
    assert_eq!((&d["value"], &d["sync_version"]), (&json!(2.0), &json!(2)));
    // A sync_id of 128 bytes (multi-byte characters included) is fine.
    let long = "é".repeat(64);
    assert_eq!(
        app.write(vec![synced(4, 1.0, &long, None)]).await.status(),
        201
    );
}

async fn a_higher_version_replaces_in_the_change_feed(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", "https://a.example/cb", false).await;
    let token = app
        .mint(reg["id"].as_str().unwrap(), &[], &["step_count"])
        .await;
    let a = app.as_token(&token);
    let (_, body) = answer(a.write(vec![synced(0, 1.0, "s", None)]).await).await;
    let old = first_id(&body);
    let feed = a.get_json("/v1/changes?types=step_count").await;
    let anchor = feed["anchor"].as_str().unwrap().to_string();
    let (status, body) = answer(a.write(vec![synced(0, 5.0, "s", Some(1))]).await).await;
    assert_eq!(status, 201);
    assert_eq!((&body["added"], &body["replaced"]), (&json!(0), &json!(1)));
    let new = first_id(&body);
    assert_ne!(new, old);
    assert_eq!(a.get(&format!("/v1/samples/{old}")).await.status(), 404);
    let got = a.get_json(&format!("/v1/samples/{new}")).await;
    assert_eq!(
        (&got["value"], &got["sync_version"]),
        (&json!(5.0), &json!(1))
    );
    for reader in [
        a.get_json(&format!("/v1/changes?types=step_count&anchor={anchor}"))
            .await,
        app.get_json(&format!("/v1/changes?types=step_count&anchor={anchor}"))
            .await,
    ] {
        let added: Vec<&str> = reader["added"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        let deleted: Vec<&str> = reader["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!((added, deleted), (vec![new.as_str()], vec![old.as_str()]));
    }
    assert_eq!(app.list_all("step_count", 10).await.len(), 1);
    // Deleting frees the sync_id: the next write is a new sample.
    assert_eq!(a.delete(&format!("/v1/samples/{new}")).await.status(), 204);
    let (status, body) = answer(a.write(vec![synced(0, 5.0, "s", Some(1))]).await).await;
    assert_eq!((status, &body["added"]), (201, &json!(1)));
}

async fn sync_ids_outside_the_limits_are_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut unversioned = steps(0, 1.0);
    unversioned.as_object_mut().unwrap().remove("sync_id");
    unversioned["sync_version"] = json!(1);
    for (sample, field) in [
        (synced(0, 1.0, &"x".repeat(129), None), "sync_id"),
        (synced(0, 1.0, "", None), "sync_id"),
        (synced(0, 1.0, "tab\there", None), "sync_id"),
        (synced(0, 1.0, "ok", Some(-1)), "sync_version"),
        (unversioned, "sync_version"),
    ] {
        let (status, body) = answer(app.write(vec![steps(1, 1.0), sample]).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_input");
        assert_eq!(body["errors"][0]["index"], 1);
        assert_eq!(body["errors"][0]["field"], field);
    }
    assert!(app.list_all("step_count", 10).await.is_empty());
}

/// Replay rebuilds the per-source identifiers: after lock and unlock a
/// retry is still a no-op, a higher version still replaces, and a deleted
/// sample's identifier is still free.
async fn sync_semantics_survive_lock_and_unlock(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", "https://a.example/cb", false).await;
    let token = app
        .mint(reg["id"].as_str().unwrap(), &[], &["step_count"])
        .await;
    let (_, kept) = answer(
        app.as_token(&token)
            .write(vec![synced(0, 1.0, "kept", None)])
            .await,
    )
    .await;
    let (_, bumped) = answer(
        app.as_token(&token)
            .write(vec![synced(1, 1.0, "bumped", None)])
            .await,
    )
    .await;
    let (_, body) = answer(
        app.as_token(&token)
            .write(vec![synced(2, 1.0, "bumped", Some(1))])
            .await,
    )
    .await;
    assert_eq!(body["replaced"], 1);
    let (_, freed) = answer(
        app.as_token(&token)
            .write(vec![synced(3, 1.0, "freed", None)])
            .await,
    )
    .await;
    assert_eq!(
        app.as_token(&token)
            .delete(&format!("/v1/samples/{}", first_id(&freed)))
            .await
            .status(),
        204
    );
    // The owner's own "kept" is another source's.
    assert_eq!(
        app.write(vec![synced(9, 9.0, "kept", None)]).await.status(),
        201
    );
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    assert_eq!(app.unlock().await.status(), 200);
    let a = app.as_token(&token);
    let (status, body) = answer(a.write(vec![synced(0, 1.0, "kept", None)]).await).await;
    assert_eq!((status, first_id(&body)), (200, first_id(&kept)));
    let (status, _) = answer(a.write(vec![synced(0, 2.0, "kept", None)]).await).await;
    assert_eq!(status, 409);
    let (status, body) = answer(a.write(vec![synced(2, 1.0, "bumped", Some(1))]).await).await;
    assert_eq!((status, &body["unchanged"]), (200, &json!(1)));
    assert_ne!(first_id(&body), first_id(&bumped));
    let (status, body) = answer(a.write(vec![synced(0, 3.0, "kept", Some(4))]).await).await;
    assert_eq!((status, &body["replaced"]), (201, &json!(1)));
    let (status, body) = answer(a.write(vec![synced(3, 1.0, "freed", None)]).await).await;
    assert_eq!((status, &body["added"]), (201, &json!(1)));
    let got = app
        .get_json(&format!("/v1/samples/{}", first_id(&body)))
        .await;
    assert_eq!(got["sync_id"], "freed");
}
