//! The owner's settings page: the passphrase changed and a new recovery key
//! made through forms that carry the session's token, with the old secrets
//! refused afterwards; a wrong current passphrase changes nothing.

use serde_json::json;

use crate::support::*;

both_backends!(
    the_passphrase_and_recovery_key_change_from_the_settings_page,
    settings_forms_refuse_foreign_posts_and_wrong_secrets,
    every_owner_page_says_when_the_store_locks_itself,
);

const NEW_PASSPHRASE: &str = "a brand new passphrase";

async fn form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String) {
    let r = app.owner_form(path, fields, origin).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn unlocks_with(app: &TestApp, secret: serde_json::Value) -> u16 {
    TestApp::no_redirect_client()
        .post(app.url("/v1/unlock"))
        .json(&secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The recovery key shown on the page.
fn shown_key(html: &str) -> String {
    let at = html
        .find("id=\"new-recovery-key\"")
        .expect("a new key shown");
    let code = html[at..].find("<code>").unwrap() + at + 6;
    let end = html[code..].find("</code>").unwrap() + code;
    html[code..end].to_string()
}

async fn the_passphrase_and_recovery_key_change_from_the_settings_page(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (status, html) = app.owner_page("/settings").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("href=\"/settings\""),
        "the nav links settings"
    );
    let csrf = hidden_field(&html, "csrf_token").unwrap();

    let (status, html) = form(
        &app,
        "/settings/passphrase",
        &[
            ("csrf_token", &csrf),
            ("current_passphrase", PASSPHRASE),
            ("new_passphrase", NEW_PASSPHRASE),
            ("repeat_passphrase", NEW_PASSPHRASE),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Your passphrase is changed"), "{html}");

    let (status, html) = form(
        &app,
        "/settings/recovery-key",
        &[
            ("csrf_token", &csrf),
            ("current_passphrase", NEW_PASSPHRASE),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let recovery = shown_key(&html);
    assert_eq!(recovery.split('-').count(), 9, "{recovery}");
    let (_, again) = app.owner_page("/settings").await;
    assert!(!again.contains(&recovery), "the key is shown once");

    // The secrets now: the new passphrase and the new recovery key open
    // the store, the old passphrase does not (last: a failure backs off).
    assert_eq!(
        unlocks_with(&app, json!({ "passphrase": NEW_PASSPHRASE })).await,
        200
    );
    assert_eq!(
        unlocks_with(&app, json!({ "recovery_key": recovery })).await,
        200
    );
    assert_eq!(
        unlocks_with(&app, json!({ "passphrase": PASSPHRASE })).await,
        401
    );
}

/// The passphrase form's fields.
fn change<'a>(token: &'a str, current: &'a str, repeat: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("csrf_token", token),
        ("current_passphrase", current),
        ("new_passphrase", NEW_PASSPHRASE),
        ("repeat_passphrase", repeat),
    ]
}

async fn settings_forms_refuse_foreign_posts_and_wrong_secrets(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (_, html) = app.owner_page("/settings").await;
    let csrf = hidden_field(&html, "csrf_token").unwrap();
    let csrf = csrf.as_str();
    // Another site, a wrong token, a repetition that differs: the
    // passphrase stays.
    let (status, _) = form(
        &app,
        "/settings/passphrase",
        &change(csrf, PASSPHRASE, NEW_PASSPHRASE),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = form(
        &app,
        "/settings/passphrase",
        &change("nope", PASSPHRASE, NEW_PASSPHRASE),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, html) = form(
        &app,
        "/settings/passphrase",
        &change(csrf, PASSPHRASE, "something else entirely"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{html}");
    let (status, _) = form(
        &app,
        "/settings/recovery-key",
        &[("csrf_token", "nope"), ("current_passphrase", PASSPHRASE)],
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        unlocks_with(&app, json!({ "passphrase": PASSPHRASE })).await,
        200
    );
    // A wrong current passphrase is refused on the page (and backs off).
    let (status, html) = form(
        &app,
        "/settings/passphrase",
        &change(csrf, "not the passphrase", NEW_PASSPHRASE),
        None,
    )
    .await;
    assert_eq!(status, 401, "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(html.contains("not right"), "{html}");
    // Without a session the page asks to unlock first.
    let r = TestApp::no_redirect_client()
        .get(app.url("/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn every_owner_page_says_when_the_store_locks_itself(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (_, html) = app.owner_page("/settings").await;
    assert!(!html.contains("id=\"idle-lock\""), "no idle lock: {html}");
    app.stop().await;

    let mut args = db.serve_args();
    args.idle_lock_secs = 600;
    let mut app = TestApp::start_with(args).await;
    let r = app.unlock().await;
    assert_eq!(r.status(), 200);
    for path in [
        "/summary",
        "/types",
        "/apps",
        "/access",
        "/studies",
        "/import",
        "/settings",
    ] {
        let (status, html) = app.owner_page(path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(
            html.contains("Hearth locks itself after 10 minutes without activity"),
            "{path}: {html}"
        );
        assert!(html.contains("data-after-ms=\"600000\""), "{path}: {html}");
        assert!(html.contains("src=\"/static/idle.js\""), "{path}: {html}");
    }
}
