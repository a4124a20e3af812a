//! The owner's study pages: the consent document with its switches, the
//! decision and withdrawal through forms, and what a page from elsewhere
//! cannot do.

use reqwest::header::{COOKIE, LOCATION};
use serde_json::{json, Value};

use crate::research::{add_study, description, es384_key, inline};
use crate::support::*;

async fn page(app: &TestApp, path: &str, with_cookie: bool) -> (u16, String) {
    let mut request = TestApp::no_redirect_client().get(app.url(path));
    if with_cookie {
        request = request.header(COOKIE, app.session_cookie());
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> reqwest::Response {
    app.owner_form(path, fields, origin).await
}

async fn decision(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/v1/studies/{id}/consent")).await
}

fn switched_on(doc: &Value) -> Vec<String> {
    doc["switches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["on"] == true)
        .map(|s| s["type"].as_str().unwrap().to_string())
        .collect()
}

async fn the_owner_consents_and_withdraws_on_the_study_page(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut d = description(inline(&[&es384_key("page-1")]));
    d["name"] = json!("<script>alert('name')</script> Sleep Study");
    d["purpose"] = json!("Heart <b>rate</b> & sleep");
    let id = add_study(&app, &d).await;
    let path = format!("/studies/{id}");

    // Without the owner's session the page says to unlock first.
    let (status, html) = page(&app, &path, false).await;
    assert_eq!(status, 401);
    assert!(html.contains("Unlock Hearth first"), "{html}");
    assert!(!html.contains("Sleep Study"));

    let (status, list) = page(&app, "/studies", true).await;
    assert_eq!(status, 200);
    assert!(list.contains(&format!("href=\"/studies/{id}\"")), "{list}");

    let (status, html) = page(&app, &path, true).await;
    assert_eq!(status, 200, "{html}");
    // Names and texts from the study are escaped, never markup.
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&#60;script&#62;alert(&#39;name&#39;)"),
        "{html}"
    );
    assert!(
        html.contains("Heart &#60;b&#62;rate&#60;/b&#62; &#38; sleep"),
        "{html}"
    );
    // One switch per requested type, every one off.
    for ty in ["step_count", "heart_rate", "body_mass"] {
        assert!(
            html.contains(&format!("value=\"{ty}\" id=\"type-{ty}\">")),
            "{ty}: {html}"
        );
    }
    assert!(!html.contains(" checked"), "{html}");
    assert!(
        !html.contains("id=\"receipt\""),
        "no receipt before a decision"
    );
    assert!(html.contains("Nothing has left for this study."), "{html}");
    let csrf = hidden_field(&html, "csrf_token").expect("the form carries its token");
    let consent_path = format!("{path}/consent");

    // A form from another origin, or without the page's token, changes nothing.
    let r = post_form(
        &app,
        &consent_path,
        &[("csrf_token", &csrf), ("type", "step_count")],
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = post_form(&app, &consent_path, &[("type", "step_count")], None).await;
    assert_eq!(r.status(), 403);
    let r = post_form(
        &app,
        &consent_path,
        &[
            ("csrf_token", "0".repeat(64).as_str()),
            ("type", "step_count"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    // Neither a type the study did not ask for nor an empty decision.
    let r = post_form(
        &app,
        &consent_path,
        &[("csrf_token", &csrf), ("type", "blood_glucose")],
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("id=\"error\""));
    let r = post_form(&app, &consent_path, &[("csrf_token", &csrf)], None).await;
    assert_eq!(r.status(), 400);
    let doc = decision(&app, &id).await;
    assert!(switched_on(&doc).is_empty(), "{doc}");
    assert_eq!(doc["status"], "awaiting_consent");

    // The owner turns two of three on: that is the decision the API shows.
    let origin = app.base.trim_end_matches('/').to_string();
    let r = post_form(
        &app,
        &consent_path,
        &[
            ("csrf_token", &csrf),
            ("type", "step_count"),
            ("type", "body_mass"),
        ],
        Some(&origin),
    )
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(r.headers()[LOCATION], path.as_str());
    let doc = decision(&app, &id).await;
    assert_eq!(switched_on(&doc), ["step_count", "body_mass"], "{doc}");
    assert_eq!(doc["status"], "consented");
    let (_, html) = page(&app, &path, true).await;
    assert!(html.contains("value=\"step_count\" id=\"type-step_count\" checked"));
    assert!(!html.contains("value=\"heart_rate\" id=\"type-heart_rate\" checked"));
    assert!(html.contains("id=\"receipt\""), "{html}");
    let receipt = TestApp::no_redirect_client()
        .get(app.url(&format!("/v1/studies/{id}/receipt")))
        .header(COOKIE, app.session_cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), 200);
    assert_eq!(receipt.text().await.unwrap().split('.').count(), 3);

    // Withdrawal: from another origin nothing happens; from the page it
    // takes effect and the forms are gone.
    let withdraw_path = format!("{path}/withdraw");
    let r = post_form(
        &app,
        &withdraw_path,
        &[("csrf_token", &csrf)],
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(decision(&app, &id).await["status"], "consented");
    let r = post_form(&app, &withdraw_path, &[("csrf_token", &csrf)], None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(decision(&app, &id).await["status"], "withdrawn");
    let (_, html) = page(&app, &path, true).await;
    assert!(html.contains("id=\"withdrawn\""), "{html}");
    assert!(!html.contains("id=\"consent\""));
    let r = post_form(
        &app,
        &consent_path,
        &[("csrf_token", &csrf), ("type", "step_count")],
        None,
    )
    .await;
    assert_eq!(r.status(), 409);
    app.stop().await;
}

async fn study_pages_show_nothing_while_locked(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let id = add_study(&app, &description(inline(&[&es384_key("page-2")]))).await;
    let (status, html) = page(&app, &format!("/studies/{id}"), true).await;
    assert_eq!(status, 200);
    let csrf = hidden_field(&html, "csrf_token").unwrap();
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    for path in ["/studies".to_string(), format!("/studies/{id}")] {
        let (status, html) = page(&app, &path, true).await;
        assert_ne!(status, 200, "{path}");
        assert!(!html.contains("Sleep and Heart Study"), "{path}: {html}");
    }
    let r = post_form(
        &app,
        &format!("/studies/{id}/consent"),
        &[("csrf_token", &csrf), ("type", "step_count")],
        None,
    )
    .await;
    assert_ne!(r.status(), 303);
    app.stop().await;
}

both_backends!(
    the_owner_consents_and_withdraws_on_the_study_page,
    study_pages_show_nothing_while_locked,
);
