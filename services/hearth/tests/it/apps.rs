//! Apps, grants, credentials and the read and write policy over HTTP, on
//! SQLite and Postgres.

use crate::support::{steps, Backend, TestApp, TestDatabase};
use serde_json::{json, Value};

both_backends!(
    owner_registers_lists_changes_and_removes_apps,
    registration_is_validated,
    app_endpoints_are_owner_only,
    credential_writes_with_grant_and_is_refused_without,
    source_comes_from_the_token_not_the_body,
    apps_delete_only_what_they_wrote,
    write_status_and_request_status,
    registry_survives_lock_and_restart,
    revoking_an_app_kills_its_tokens_at_once,
    revoked_credential_dies,
    silent_deny_is_indistinguishable,
    revoking_read_takes_effect_on_the_next_request,
    cli_registers_apps_and_mints_credentials,
    routes_stay_hidden_without_read_workout_route,
);

/// Runs `hearth app …` against the test server; returns its JSON output.
async fn cli(app: &TestApp, pass: &std::path::Path, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("app")
        .arg("--server")
        .arg(&app.base)
        .arg("--passphrase-file")
        .arg(pass)
        .args(args)
        .output()
        .await
        .expect("run hearth app");
    assert!(
        out.status.success(),
        "hearth app {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

async fn cli_registers_apps_and_mints_credentials(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let pass = db.dir.path().join("pass");
    std::fs::write(&pass, format!("{}\n", crate::support::PASSPHRASE)).unwrap();
    let reg = cli(
        &app,
        &pass,
        &[
            "add",
            "--name",
            "Scale",
            "--purpose",
            "Records your weight",
            "--privacy-policy-url",
            "https://scale.example/privacy",
            "--redirect-uri",
            "https://scale.example/cb",
            "--confidential",
        ],
    )
    .await;
    let id = reg["id"].as_str().unwrap();
    assert!(reg["client_secret"].as_str().is_some());
    let listed = cli(&app, &pass, &["list"]).await;
    assert_eq!(listed["apps"][0]["name"], "Scale");
    let cred = cli(
        &app,
        &pass,
        &["token", id, "--name", "bathroom", "--write", "body_mass"],
    )
    .await;
    let token = cred["token"].as_str().unwrap();
    let r = app
        .as_token(token)
        .write(vec![crate::support::sample("body_mass", 0, 70.0, "kg")])
        .await;
    assert_eq!(r.status(), 201);
    cli(&app, &pass, &["remove", id]).await;
    let r = app
        .as_token(token)
        .write(vec![crate::support::sample("body_mass", 1, 70.0, "kg")])
        .await;
    assert_eq!(r.status(), 401);
}

async fn owner_registers_lists_changes_and_removes_apps(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let public = app
        .register_app("Step Plotter", "http://127.0.0.1/callback", false)
        .await;
    assert_eq!(public["client_type"], "public");
    assert!(public.get("client_secret").is_none());
    let confidential = app
        .register_app("Clinic Portal", "https://clinic.example/cb", true)
        .await;
    assert_eq!(confidential["client_type"], "confidential");
    assert!(confidential["client_secret"]
        .as_str()
        .unwrap()
        .starts_with("hcs_"));
    let id = public["id"].as_str().unwrap();

    let listed = app.get_json("/v1/apps").await;
    assert_eq!(listed["apps"].as_array().unwrap().len(), 2);
    assert!(
        !listed.to_string().contains("hcs_"),
        "a secret is shown once only"
    );

    let r = app
        .client
        .patch(app.url(&format!("/v1/apps/{id}")))
        .bearer_auth(app.token.as_ref().unwrap())
        .json(&json!({ "name": "Step Plotter 2", "purpose": "new purpose" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = app.get_json(&format!("/v1/apps/{id}")).await;
    assert_eq!(got["name"], "Step Plotter 2");
    assert_eq!(got["purpose"], "new purpose");
    assert_eq!(got["redirect_uris"], json!(["http://127.0.0.1/callback"]));

    app.set_grants(
        id,
        json!({ "read": { "heart_rate": true }, "write": { "step_count": false } }),
    )
    .await;
    let got = app.get_json(&format!("/v1/apps/{id}")).await;
    assert_eq!(
        got["grants"]["heart_rate"],
        json!({"read": true, "write": null})
    );
    assert_eq!(
        got["grants"]["step_count"],
        json!({"read": null, "write": false})
    );

    assert_eq!(app.delete(&format!("/v1/apps/{id}")).await.status(), 204);
    assert_eq!(app.get(&format!("/v1/apps/{id}")).await.status(), 404);
    assert_eq!(app.delete(&format!("/v1/apps/{id}")).await.status(), 404);
    assert_eq!(
        app.get_json("/v1/apps").await["apps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn registration_is_validated(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let base = json!({
        "name": "X", "purpose": "p", "privacy_policy_url": "https://x.example/p",
        "redirect_uris": ["https://x.example/cb"], "client_type": "public"
    });
    let bad = [
        ("redirect_uris", json!(["http://x.example/cb"])),
        ("redirect_uris", json!(["https://x.example/cb#frag"])),
        ("redirect_uris", json!(["javascript:alert(1)"])),
        ("redirect_uris", json!([])),
        ("redirect_uris", json!(["/relative"])),
        ("privacy_policy_url", json!("javascript:alert(1)")),
        ("name", json!("")),
        ("client_type", json!("secret")),
    ];
    for (field, value) in bad {
        let mut body = base.clone();
        body[field] = value.clone();
        let r = app.post_json("/v1/apps", &body).await;
        assert_eq!(r.status(), 400, "{field} = {value}");
    }
    assert_eq!(app.post_json("/v1/apps", &base).await.status(), 201);
}

async fn app_endpoints_are_owner_only(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Nosy", "https://nosy.example/cb", false)
        .await;
    let id = reg["id"].as_str().unwrap();
    let token = app.mint(id, &["step_count"], &["step_count"]).await;
    let nosy = app.as_token(&token);
    for path in [
        "/v1/apps".to_string(),
        format!("/v1/apps/{id}"),
        format!("/v1/apps/{id}/credentials"),
    ] {
        let r = nosy.get(&path).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "owner_only");
    }
    let r = nosy
        .post_json(&format!("/v1/apps/{id}/credentials"), &json!({"name": "x"}))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(nosy.delete(&format!("/v1/apps/{id}")).await.status(), 403);
    // Nor may an app lock the store on its owner.
    assert_eq!(nosy.post_json("/v1/lock", &json!({})).await.status(), 403);
    // Without any token: 401, the same for a known and an unknown app id.
    let anon = app
        .client
        .get(app.url(&format!("/v1/apps/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let anon = app
        .client
        .get(app.url("/v1/apps/app_000"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}

async fn credential_writes_with_grant_and_is_refused_without(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Scale", "https://scale.example/cb", false)
        .await;
    let id = reg["id"].as_str().unwrap();
    let token = app.mint(id, &[], &["step_count"]).await;
    let scale = app.as_token(&token);
    assert_eq!(scale.write(vec![steps(0, 10.0)]).await.status(), 201);
    let r = scale
        .write(vec![crate::support::sample("body_mass", 1, 70.0, "kg")])
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "write_not_authorized");
    // A mixed batch stores nothing.
    let r = scale
        .write(vec![
            steps(2, 1.0),
            crate::support::sample("body_mass", 1, 70.0, "kg"),
        ])
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(app.list_all("step_count", 100).await.len(), 1);
    // The owner turns write off: the next write is refused.
    app.set_grants(id, json!({ "write": { "step_count": false } }))
        .await;
    let r = scale.write(vec![steps(3, 1.0)]).await;
    assert_eq!(r.status(), 403);
    // A garbage token is 401.
    let r = app.as_token("hdc_nope").write(vec![steps(4, 1.0)]).await;
    assert_eq!(r.status(), 401);
}

async fn source_comes_from_the_token_not_the_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Scale", "https://scale.example/cb", false)
        .await;
    let id = reg["id"].as_str().unwrap();
    let token = app.mint(id, &["step_count"], &["step_count"]).await;
    let scale = app.as_token(&token);
    let mut s = steps(0, 5.0);
    s["source"] = json!("owner");
    // Unknown fields are refused outright, so a body cannot even try.
    assert_eq!(scale.write(vec![s]).await.status(), 400);
    assert_eq!(scale.write(vec![steps(0, 5.0)]).await.status(), 201);
    let listed = app.list_all("step_count", 10).await;
    assert_eq!(listed[0]["source"], id);
}

async fn apps_delete_only_what_they_wrote(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let a = app.register_app("A", "https://a.example/cb", false).await;
    let b = app.register_app("B", "https://b.example/cb", false).await;
    let ta = app
        .mint(a["id"].as_str().unwrap(), &["step_count"], &["step_count"])
        .await;
    let tb = app
        .mint(b["id"].as_str().unwrap(), &["step_count"], &["step_count"])
        .await;
    let written = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["ids"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mine = written(app.as_token(&ta).write(vec![steps(0, 1.0)]).await).await;
    let theirs = written(app.as_token(&tb).write(vec![steps(1, 2.0)]).await).await;
    // B can read A's sample (it has read access), but not delete it.
    let r = app
        .as_token(&tb)
        .delete(&format!("/v1/samples/{mine}"))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "delete_not_authorized"
    );
    let r = app
        .as_token(&tb)
        .delete(&format!("/v1/samples/{theirs}"))
        .await;
    assert_eq!(r.status(), 204);
    // The owner deletes anything.
    let r = app.delete(&format!("/v1/samples/{mine}")).await;
    assert_eq!(r.status(), 204);
}

async fn write_status_and_request_status(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("S", "https://s.example/cb", false).await;
    let id = reg["id"].as_str().unwrap();
    let token = app.mint(id, &[], &["step_count"]).await;
    app.set_grants(
        id,
        json!({ "write": { "body_mass": false }, "read": { "heart_rate": false, "body_mass": true } }),
    )
    .await;
    let s = app.as_token(&token);
    let st = s
        .get_json("/v1/authorization/status?types=step_count,body_mass,heart_rate")
        .await;
    assert_eq!(
        st["write"],
        json!({ "step_count": "authorized", "body_mass": "denied", "heart_rate": "not_determined" })
    );
    // Asking about read types: decided (either way) means "unnecessary",
    // so a denial and a grant look the same.
    let r = s
        .get_json("/v1/authorization/request-status?read=heart_rate")
        .await;
    assert_eq!(r["status"], "unnecessary");
    let r = s
        .get_json("/v1/authorization/request-status?read=body_mass")
        .await;
    assert_eq!(r["status"], "unnecessary");
    let r = s
        .get_json("/v1/authorization/request-status?read=blood_glucose&write=step_count")
        .await;
    assert_eq!(r["status"], "should_request");
    let r = s
        .get_json("/v1/authorization/request-status?write=heart_rate")
        .await;
    assert_eq!(r["status"], "should_request");
    let r = s.get("/v1/authorization/status?types=no_such_type").await;
    assert_eq!(r.status(), 400);
}

async fn registry_survives_lock_and_restart(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let reg = app.register_app("S", "https://s.example/cb", false).await;
    let id = reg["id"].as_str().unwrap().to_string();
    let token = app.mint(&id, &["step_count"], &["step_count"]).await;
    assert_eq!(
        app.as_token(&token)
            .write(vec![steps(0, 3.0)])
            .await
            .status(),
        201
    );

    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    // Locked: the same answer as for every caller, and the registry is kept.
    let r = app
        .as_token(&token)
        .get("/v1/statistics?type=step_count")
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "store_locked");
    assert!(app.store.apps().read().app(&id).is_some());
    assert_eq!(app.unlock().await.status(), 200);
    let st = app
        .as_token(&token)
        .get_json("/v1/statistics?type=step_count")
        .await;
    assert_eq!(st["count"], 1);
    app.stop().await;

    // After a restart the registry is rebuilt from the log at unlock.
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    let got = app.get_json(&format!("/v1/apps/{id}")).await;
    assert_eq!(
        got["grants"]["step_count"],
        json!({"read": true, "write": true})
    );
    let st = app
        .as_token(&token)
        .get_json("/v1/statistics?type=step_count")
        .await;
    assert_eq!(st["count"], 1);
}

async fn revoking_an_app_kills_its_tokens_at_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let reg = app.register_app("S", "https://s.example/cb", false).await;
    let id = reg["id"].as_str().unwrap();
    let t1 = app.mint(id, &["step_count"], &["step_count"]).await;
    let t2 = app.mint(id, &["heart_rate"], &[]).await;
    assert_eq!(
        app.as_token(&t1)
            .get("/v1/statistics?type=step_count")
            .await
            .status(),
        200
    );
    assert_eq!(app.delete(&format!("/v1/apps/{id}")).await.status(), 204);
    for t in [&t1, &t2] {
        let r = app.as_token(t).get("/v1/statistics?type=step_count").await;
        assert_eq!(r.status(), 401);
    }
    // And it stays dead after a restart.
    app.stop().await;
    let mut app2 = TestApp::start(&db).await;
    assert_eq!(app2.unlock().await.status(), 200);
    let r = app2
        .as_token(&t1)
        .get("/v1/statistics?type=step_count")
        .await;
    assert_eq!(r.status(), 401);
    app = app2;
    let _ = &mut app;
}

async fn revoked_credential_dies(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("S", "https://s.example/cb", false).await;
    let id = reg["id"].as_str().unwrap();
    let keep = app.mint(id, &["step_count"], &[]).await;
    let kill = app.mint(id, &["step_count"], &[]).await;
    let creds = app.get_json(&format!("/v1/apps/{id}/credentials")).await;
    let list = creds["credentials"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        !creds.to_string().contains("hdc_"),
        "tokens are never listed"
    );
    let kill_id = list[1]["id"].as_str().unwrap();
    let r = app
        .delete(&format!("/v1/apps/{id}/credentials/{kill_id}"))
        .await;
    assert_eq!(r.status(), 204);
    let still = app
        .as_token(&keep)
        .get("/v1/statistics?type=step_count")
        .await;
    let dead = app
        .as_token(&kill)
        .get("/v1/statistics?type=step_count")
        .await;
    // One of the two was revoked, the other still works.
    let statuses = [still.status().as_u16(), dead.status().as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&401),
        "{statuses:?}"
    );
}

/// Replaces ids, times and app ids by placeholders, so two stores compare.
pub(crate) fn normalise(v: &Value, ids: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (from, to) in ids {
                s = s.replace(from, to);
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, ids)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), normalise(x, ids)))
                .collect(),
        ),
        x => x.clone(),
    }
}

pub(crate) struct Seen {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// The body as answered, before normalising.
    pub raw: Value,
}

impl Seen {
    fn normalised(mut self, ids: &[(String, String)]) -> Seen {
        self.body = normalise(&self.body, ids);
        self
    }
}

pub(crate) async fn observe(r: reqwest::Response, ids: &[(String, String)]) -> Seen {
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    headers.sort();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    let raw = body.clone();
    let mut body = normalise(&body, ids);
    // Anchors are sealed with a fresh nonce each time: opaque, like ids.
    if let Some(anchor) = body.get_mut("anchor") {
        assert!(anchor.is_string());
        *anchor = Value::String("ANCHOR".into());
    }
    // Cursors hold the last sample's id, random in each store.
    if let Some(cursor) = body.get_mut("next_cursor").filter(|c| c.is_string()) {
        *cursor = Value::String("CURSOR".into());
    }
    Seen {
        status,
        headers,
        body,
        raw,
    }
}

/// Store A holds step samples by X and by Y; store B only Y's. Y may write
/// but not read step_count (never asked, or explicitly denied): everything
/// Y can ask must look the same.
async fn silent_deny_is_indistinguishable(backend: Backend) {
    silent_deny_with(backend, false).await;
    silent_deny_with(backend, true).await;
}

async fn silent_deny_with(backend: Backend, read_denied: bool) {
    // The same samples for Y in both stores: same sync ids, times and values
    // (the ids Hearth gives them differ, and are normalised).
    let y_samples: Vec<Value> = (0..7).map(|m| steps(m * 10, m as f64 + 1.0)).collect();
    let x_samples: Vec<Value> = (0..9).map(|m| steps(m * 10 + 5, 100.0)).collect();
    let owner_sample = steps(33, 9.0);
    // Y's writes after its samples: sync ids that collide with the hidden
    // samples' (X's and the owner's), a retry, a later version, and a
    // client-chosen `id`, which no store accepts.
    let with_sync = |minute: i64, value: f64, of: &Value, version: Option<i64>| {
        let mut s = steps(minute, value);
        s["sync_id"] = of["sync_id"].clone();
        if let Some(v) = version {
            s["sync_version"] = json!(v);
        }
        vec![s]
    };
    let collide_x = with_sync(61, 3.0, &x_samples[0], None);
    let collide_owner = with_sync(62, 4.0, &owner_sample, None);
    let collide_versioned = with_sync(63, 5.0, &x_samples[1], Some(5));
    let mut with_id = steps(64, 6.0);
    let mut stores = Vec::new();
    let mut hidden_id = String::new();
    for with_x in [true, false] {
        let db = TestDatabase::new(backend).await;
        let app = TestApp::unlocked(&db).await;
        let y = app.register_app("Y", "https://y.example/cb", false).await;
        let y_id = y["id"].as_str().unwrap().to_string();
        // Denied: the token asks for read, the owner's grant says no.
        let read: &[&str] = if read_denied { &["step_count"] } else { &[] };
        let y_token = app.mint(&y_id, read, &["step_count"]).await;
        if read_denied {
            app.set_grants(&y_id, json!({ "read": { "step_count": false } }))
                .await;
        }
        if with_x {
            let x = app.register_app("X", "https://x.example/cb", false).await;
            let x_token = app
                .mint(x["id"].as_str().unwrap(), &[], &["step_count"])
                .await;
            let r = app.as_token(&x_token).write(x_samples.clone()).await;
            assert_eq!(r.status(), 201);
            hidden_id = r.json::<Value>().await.unwrap()["ids"][0]
                .as_str()
                .unwrap()
                .to_string();
            with_id["id"] = json!(hidden_id);
            // The owner's own samples are hidden from Y too.
            assert_eq!(app.write(vec![owner_sample.clone()]).await.status(), 201);
        }
        // One request per sample: the change feed orders a record's samples
        // by their (random) ids, and separate records keep Y's order fixed.
        let mut writes: Vec<Seen> = Vec::new();
        let y = app.as_token(&y_token);
        for s in &y_samples {
            writes.push(observe(y.write(vec![s.clone()]).await, &[]).await);
        }
        for batch in [
            &collide_x,
            &collide_owner,
            &collide_x,
            &collide_versioned,
            &vec![with_id.clone()],
        ] {
            writes.push(observe(y.write(batch.clone()).await, &[]).await);
        }
        let mut ids = vec![(y_id.clone(), "APP_Y".to_string())];
        for (i, w) in writes.iter().enumerate() {
            if let Some(id) = w.raw["ids"][0].as_str() {
                ids.push((id.to_string(), format!("Y_SAMPLE_{i}")));
            }
        }
        let writes: Vec<Seen> = writes.into_iter().map(|w| w.normalised(&ids)).collect();
        stores.push((db, app, y_token, ids, writes));
    }
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let paths = vec![
        "/v1/samples?type=step_count".to_string(),
        "/v1/samples?type=step_count&limit=2".to_string(),
        "/v1/samples?type=step_count&limit=3&start=2026-01-01T00:15:00Z".to_string(),
        "/v1/samples?type=step_count&end=2025-01-01T00:00:00Z".to_string(),
        "/v1/samples?type=step_count&cursor=garbage".to_string(),
        "/v1/samples?type=step_count&unit=mmol/L".to_string(),
        "/v1/samples?type=heart_rate".to_string(),
        "/v1/samples/Y_SAMPLE_0".to_string(),
        format!("/v1/samples/{hidden_id}"),
        format!("/v1/samples/{hidden_id}?unit=count"),
        format!("/v1/samples/{unknown_id}"),
        "/v1/statistics?type=step_count".to_string(),
        "/v1/statistics?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-01T01:00:00Z"
            .to_string(),
        "/v1/statistics?type=heart_rate".to_string(),
        "/v1/statistics?type=step_count&by_source=true".to_string(),
        "/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-01T02:00:00Z&interval=PT10M&tz=Europe/Berlin"
            .to_string(),
        "/v1/statistics/buckets?type=step_count&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&interval=PT1H&by_source=true"
            .to_string(),
        "/v1/samples?type=step_count&order=desc&limit=3".to_string(),
        "/v1/samples?type=step_count&most_recent=true".to_string(),
        "/v1/sources?type=step_count".to_string(),
        "/v1/changes?types=step_count".to_string(),
        "/v1/changes?types=step_count&limit=2".to_string(),
        "/v1/changes?types=step_count,heart_rate&anchor=garbage".to_string(),
        "/v1/authorization/status?types=step_count,heart_rate".to_string(),
        "/v1/authorization/request-status?read=step_count&write=step_count".to_string(),
        "/v1/types".to_string(),
    ];
    let mut seen: Vec<Vec<Seen>> = Vec::new();
    for (_, app, token, ids, writes) in &mut stores {
        let y = app.as_token(token);
        let mut out = std::mem::take(writes);
        for p in &paths {
            // Back from placeholders to this store's ids.
            let mut p = p.clone();
            for (id, name) in ids.iter() {
                p = p.replace(name, id);
            }
            out.push(observe(y.get(&p).await, ids).await);
        }
        // Every page of a walk with a small page size, cursors included.
        let mut cursor: Option<String> = None;
        loop {
            let mut p = "/v1/samples?type=step_count&limit=2".to_string();
            if let Some(c) = &cursor {
                p.push_str(&format!("&cursor={c}"));
            }
            let s = observe(y.get(&p).await, ids).await;
            cursor = s.raw["next_cursor"].as_str().map(str::to_string);
            out.push(s);
            if cursor.is_none() {
                break;
            }
        }
        // Deleting a hidden sample is 404, like an unknown one.
        out.push(observe(y.delete(&format!("/v1/samples/{hidden_id}")).await, ids).await);
        out.push(observe(y.delete(&format!("/v1/samples/{unknown_id}")).await, ids).await);
        seen.push(out);
    }
    let (a, b) = (&seen[0], &seen[1]);
    assert_eq!(a.len(), b.len(), "the same number of pages");
    for (i, (sa, sb)) in a.iter().zip(b).enumerate() {
        assert_eq!(sa.status, sb.status, "request {i} status");
        assert_eq!(sa.headers, sb.headers, "request {i} headers");
        assert_eq!(sa.body, sb.body, "request {i} body");
    }
    // Sanity: Y's colliding writes were new samples, the retry a no-op, the
    // client-chosen id refused; Y sees exactly its own samples, and the
    // hidden id is 404.
    let statuses: Vec<u16> = a[7..12].iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![201, 201, 200, 201, 400]);
    assert_eq!(a[9].body["unchanged"], 1);
    assert_eq!(a[9].body["ids"], a[7].body["ids"]);
    assert_eq!(a[10].body["added"], 1, "{}", a[10].body);
    let reads = &a[12..];
    assert_eq!(reads[0].body["samples"].as_array().unwrap().len(), 10);
    assert_eq!(reads[7].status, 200, "Y's own sample by id");
    assert_eq!(reads[8].status, 404);
    // The samples really are there for the owner in store A.
    let (_, owner_a, _, _, _) = &stores[0];
    assert_eq!(owner_a.list_all("step_count", 100).await.len(), 20);
}

async fn revoking_read_takes_effect_on_the_next_request(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(
        app.write(vec![steps(0, 1.0), steps(1, 2.0)]).await.status(),
        201
    );
    let reg = app.register_app("R", "https://r.example/cb", false).await;
    let id = reg["id"].as_str().unwrap();
    let token = app.mint(id, &["step_count"], &[]).await;
    let r = app.as_token(&token);
    let before = r.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(before["count"], 2);
    let owners = app.list_all("step_count", 10).await;
    let owner_id = owners[0]["id"].as_str().unwrap();
    assert_eq!(
        r.get(&format!("/v1/samples/{owner_id}")).await.status(),
        200
    );

    app.set_grants(id, json!({ "read": { "step_count": false } }))
        .await;
    let after = r.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(after["count"], 0);
    assert_eq!(
        r.get_json("/v1/samples?type=step_count").await["samples"],
        json!([])
    );
    assert_eq!(
        r.get(&format!("/v1/samples/{owner_id}")).await.status(),
        404
    );

    app.set_grants(id, json!({ "read": { "step_count": true } }))
        .await;
    assert_eq!(
        r.get_json("/v1/statistics?type=step_count").await["count"],
        2
    );
}

/// Location is sensitive: an app that may read workouts but not routes sees
/// the workout and nothing of its route, as if the route did not exist.
async fn routes_stay_hidden_without_read_workout_route(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (workout, route) = crate::support::workout_with_route(&app).await;
    let reg = app
        .register_app("Coach", "https://coach.example/cb", false)
        .await;
    let id = reg["id"].as_str().unwrap();
    let token = app.mint(id, &["workout"], &[]).await;
    let coach = app.as_token(&token);

    let workouts = coach.get_json("/v1/samples?type=workout").await;
    let listed = workouts["samples"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], workout);
    let text = serde_json::to_string(&workouts).unwrap();
    assert!(!text.contains(&route), "the workout names no hidden route");
    assert!(!text.contains("52.52"), "no coordinates");

    let routes = coach.get_json("/v1/samples?type=workout_route").await;
    assert_eq!(routes["samples"].as_array().unwrap().len(), 0);
    let r = coach.get(&format!("/v1/samples/{route}")).await;
    assert_eq!(r.status(), 404);
    let by_id = coach.get_json(&format!("/v1/samples/{workout}")).await;
    assert!(!serde_json::to_string(&by_id).unwrap().contains(&route));

    // With the grant, the route is there.
    let token = app.mint(id, &["workout", "workout_route"], &[]).await;
    let coach = app.as_token(&token);
    let routes = coach.get_json("/v1/samples?type=workout_route").await;
    assert_eq!(routes["samples"].as_array().unwrap().len(), 1);
}
