//! The privacy notice: generated from the live configuration, it lists the
//! apps, their grants and the studies, and changes when they change; an
//! app sees only itself and what it may write; a stranger sees how Hearth
//! works and nothing of this store; names are escaped in the page.

use serde_json::{json, Value};

use crate::research::{add_study, consent, description, es384_key, inline};
use crate::support::{Backend, TestApp, TestDatabase};

both_backends!(
    the_owners_notice_follows_apps_grants_and_studies,
    an_app_sees_only_itself_and_what_it_may_write,
    a_stranger_learns_nothing_about_this_store,
    the_page_escapes_what_apps_chose,
);

async fn notice(app: &TestApp) -> Value {
    app.get_json("/v1/privacy").await
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

async fn register(app: &TestApp, name: &str) -> String {
    let reg = app
        .register_app(name, "https://app.example/cb", false)
        .await;
    reg["id"].as_str().unwrap().to_string()
}

async fn the_owners_notice_follows_apps_grants_and_studies(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let before = notice(&app).await;
    assert_eq!(before["audience"], "owner");
    assert_eq!(before["apps"], json!([]));
    assert_eq!(before["studies"], json!([]));
    let storage = &before["storage"];
    let backend_name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(storage["backend"], backend_name);
    assert!(storage["state_file"].as_str().is_some());
    assert!(before["encryption"]["cipher"]
        .as_str()
        .unwrap()
        .contains("AES-256-GCM-SIV"));
    assert!(before["encryption"]["key_derivation"]
        .as_str()
        .unwrap()
        .contains("Argon2id"));
    assert_eq!(before["telemetry"]["enabled"], false);
    assert!(!before["your_choices"].as_array().unwrap().is_empty());

    let scale = register(&app, "Bathroom scale").await;
    app.mint(&scale, &["body_mass"], &["body_mass", "height"])
        .await;
    let study = add_study(&app, &description(inline(&[&es384_key("k1")]))).await;
    let now = notice(&app).await;
    assert_eq!(names(&now["apps"]), ["Bathroom scale"]);
    let listed = &now["apps"][0];
    assert_eq!(listed["id"], scale);
    assert_eq!(listed["reads"], json!(["body_mass"]));
    assert_eq!(listed["writes"], json!(["body_mass", "height"]));
    assert_eq!(names(&now["studies"]), ["Sleep and Heart Study"]);
    let s = &now["studies"][0];
    assert_eq!(s["id"], study);
    assert_eq!(s["status"], "awaiting_consent");
    assert_eq!(s["consented_types"], json!([]));
    assert_eq!(s["deidentification"], "shifted_dates");
    assert_eq!(
        s["requested_types"],
        json!(["step_count", "heart_rate", "body_mass"])
    );

    // A grant taken back, a consent given: the notice says so at once.
    app.set_grants(&scale, json!({ "read": { "body_mass": false } }))
        .await;
    consent(&app, &study, &["heart_rate"]).await;
    let now = notice(&app).await;
    assert_eq!(now["apps"][0]["reads"], json!([]));
    assert_eq!(now["studies"][0]["status"], "consented");
    assert_eq!(now["studies"][0]["consented_types"], json!(["heart_rate"]));

    // Withdrawn: nothing leaves any more. Removed app: gone.
    let r = app
        .post_json(&format!("/v1/studies/{study}/withdraw"), &json!({}))
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app.delete(&format!("/v1/apps/{scale}")).await;
    assert!(r.status().is_success(), "{}", r.status());
    let now = notice(&app).await;
    assert_eq!(now["apps"], json!([]));
    assert_eq!(now["studies"][0]["status"], "withdrawn");
    assert_eq!(now["studies"][0]["consented_types"], json!([]));
}

async fn an_app_sees_only_itself_and_what_it_may_write(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mine = register(&app, "Step tracker").await;
    let token = app.mint(&mine, &["heart_rate"], &["step_count"]).await;
    let other = register(&app, "Secret diary").await;
    app.mint(&other, &["step_count"], &[]).await;
    add_study(&app, &description(inline(&[&es384_key("k1")]))).await;

    let seen = app.as_token(&token).get_json("/v1/privacy").await;
    assert_eq!(seen["audience"], "app");
    assert_eq!(names(&seen["apps"]), ["Step tracker"]);
    assert_eq!(seen["apps"][0]["writes"], json!(["step_count"]));
    // What it may read is never told to an app.
    assert!(seen["apps"][0].get("reads").is_none(), "{seen}");
    assert_eq!(seen["studies"], json!([]));
    assert!(seen.get("storage").is_none());
    let text = seen.to_string();
    for secret in [
        "Secret diary",
        &other,
        "Sleep and Heart Study",
        "heart_rate",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // The page shows it the same.
    let page = app
        .client
        .get(app.url("/privacy"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Step tracker"));
    assert!(!page.contains("Secret diary"));
    assert!(!page.contains("Sleep and Heart Study"));
}

async fn a_stranger_learns_nothing_about_this_store(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let id = register(&app, "Private clinic app").await;
    app.mint(&id, &["body_mass"], &[]).await;
    add_study(&app, &description(inline(&[&es384_key("k1")]))).await;
    let stranger = reqwest::Client::new();

    let r = stranger.get(app.url("/v1/privacy")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let public = |app: &TestApp| {
        let url = app.url("/privacy");
        let stranger = stranger.clone();
        async move {
            let r = stranger.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(r
                .headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            r.text().await.unwrap()
        }
    };
    let unlocked = public(&app).await;
    for secret in [
        "Private clinic app",
        id.as_str(),
        "Sleep and Heart Study",
        "postgres",
        "sqlite",
        "hearth.state",
    ] {
        assert!(!unlocked.contains(secret), "{secret} shown to a stranger");
    }
    assert!(unlocked.contains("AES-256-GCM-SIV"));
    // The same page whatever the lock state.
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert!(r.status().is_success());
    let locked = public(&app).await;
    let strip = |page: &str| {
        page.lines()
            .filter(|l| !l.starts_with("<p>Generated "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&locked), strip(&unlocked));
    // While locked, the JSON notice answers the lock state, as reads do.
    let r = app.get("/v1/privacy").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "store_locked");
    assert_eq!(app.unlock().await.status(), 200);
}

async fn the_page_escapes_what_apps_chose(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let id = register(&app, "<script>alert(1)</script>").await;
    app.mint(&id, &[], &["step_count"]).await;
    let page = app.get("/privacy").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)</script>"), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("step_count"));
}
