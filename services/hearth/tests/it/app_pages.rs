//! The owner's app pages: registering an app, its switches, credentials
//! minted and revoked, and deleting all its data, each through a form that
//! only the owner's own pages can send.

use reqwest::header::LOCATION;
use serde_json::Value;

use crate::support::*;

async fn form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String, Option<String>) {
    let r = app.owner_form(path, fields, origin).await;
    let location = r
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string());
    (r.status().as_u16(), r.text().await.unwrap(), location)
}

/// The token shown once on the page.
fn shown_code(html: &str, id: &str) -> String {
    let start = html.find(&format!("id=\"{id}\"")).expect(id);
    let code = html[start..].find("<code>").unwrap() + start + 6;
    let end = html[code..].find("</code>").unwrap() + code;
    html[code..end].to_string()
}

async fn apps_are_registered_switched_and_revoked_from_their_pages(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (status, html) = app.owner_page("/apps").await;
    assert_eq!(status, 200);
    let csrf = hidden_field(&html, "csrf_token").unwrap();
    let register = |name: &'static str, url: &'static str, client: &'static str| {
        vec![
            ("name", name),
            ("purpose", "Counts <b>steps</b>"),
            ("privacy_policy_url", url),
            ("redirect_uri", "https://app.example/cb"),
            ("client_type", client),
        ]
    };
    // A page elsewhere, a wrong token, a bad URL: nothing is registered.
    let mut fields = register("Evil", "https://app.example/p", "public");
    fields.push(("csrf_token", &csrf));
    assert_eq!(
        form(&app, "/apps", &fields, Some("http://evil.example"))
            .await
            .0,
        401
    );
    let mut fields = register("Evil", "https://app.example/p", "public");
    fields.push(("csrf_token", "nope"));
    assert_eq!(form(&app, "/apps", &fields, None).await.0, 403);
    let mut fields = register("Evil", "javascript:alert(1)", "public");
    fields.push(("csrf_token", &csrf));
    let (status, html, _) = form(&app, "/apps", &fields, None).await;
    assert_eq!(status, 400);
    assert!(html.contains("id=\"error\""), "{html}");
    assert!(app.get_json("/v1/apps").await["apps"]
        .as_array()
        .unwrap()
        .is_empty());

    let mut fields = register(
        "<script>alert(1)</script> Pedometer",
        "https://app.example/p",
        "public",
    );
    fields.push(("csrf_token", &csrf));
    let (status, _, location) = form(&app, "/apps", &fields, None).await;
    assert_eq!(status, 303);
    let apps = app.get_json("/v1/apps").await;
    let id = apps["apps"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(location.as_deref(), Some(format!("/apps/{id}").as_str()));
    let (_, list) = app.owner_page("/apps").await;
    assert!(!list.contains("<script>alert"), "{list}");
    assert!(list.contains("&#60;script&#62;"), "{list}");

    // A confidential client's secret is shown once, on the answer only.
    let mut fields = register("Server", "https://app.example/p", "confidential");
    fields.push(("csrf_token", &csrf));
    let (status, html, _) = form(&app, "/apps", &fields, None).await;
    assert_eq!(status, 201);
    assert!(
        shown_code(&html, "client-secret").starts_with("hcs_"),
        "{html}"
    );

    // A credential: the token is shown once and works; the switches follow.
    let base = format!("/apps/{id}");
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("name", "phone"),
        ("read", "step_count"),
        ("write", "step_count, heart_rate"),
    ];
    let (status, html, _) = form(&app, &format!("{base}/credentials"), &fields, None).await;
    assert_eq!(status, 201, "{html}");
    let token = shown_code(&html, "new-token");
    assert_eq!(
        app.as_token(&token)
            .write(vec![steps(1, 10.0)])
            .await
            .status(),
        201
    );
    let (_, html) = app.owner_page(&base).await;
    assert!(!html.contains(&token), "the token is not shown again");
    // The audit says when it last wrote, and what; it has read nothing.
    assert!(html.contains("Last read: never"), "{html}");
    assert!(!html.contains("Last write: never"), "{html}");
    assert!(html.contains("(Step count)"), "{html}");
    assert!(
        html.contains("id=\"read-step_count\" aria-label")
            && html.contains("may read Step count\" checked"),
        "{html}"
    );
    assert!(html.contains("may write Heart rate\" checked"), "{html}");

    // Switching reading off: the app's reads of steps come back empty.
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("write", "step_count"),
        ("write", "heart_rate"),
    ];
    let (status, _, _) = form(&app, &format!("{base}/grants"), &fields, None).await;
    assert_eq!(status, 303);
    let grants = &app.get_json(&format!("/v1{base}")).await["grants"];
    assert_eq!(grants["step_count"]["read"], false, "{grants}");
    assert_eq!(grants["step_count"]["write"], true, "{grants}");
    let seen: Value = app
        .as_token(&token)
        .get_json("/v1/samples?type=step_count")
        .await;
    assert!(
        seen["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["source"] == id.as_str()),
        "only its own: {seen}"
    );

    // Revoked one by one, then all at once.
    let credentials = app.get_json(&format!("/v1/apps/{id}/credentials")).await;
    let cred = credentials["credentials"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, _) = form(
        &app,
        &format!("{base}/credentials/{cred}/revoke"),
        &[("csrf_token", &csrf)],
        None,
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        app.as_token(&token)
            .write(vec![steps(2, 10.0)])
            .await
            .status(),
        401
    );
    let mut tokens = Vec::new();
    for name in ["one", "two"] {
        let fields = [
            ("csrf_token", csrf.as_str()),
            ("name", name),
            ("write", "step_count"),
        ];
        let (_, html, _) = form(&app, &format!("{base}/credentials"), &fields, None).await;
        tokens.push(shown_code(&html, "new-token"));
    }
    let (status, _, _) = form(
        &app,
        &format!("{base}/revoke-all"),
        &[("csrf_token", &csrf)],
        None,
    )
    .await;
    assert_eq!(status, 303);
    for token in &tokens {
        assert_eq!(
            app.as_token(token)
                .write(vec![steps(3, 10.0)])
                .await
                .status(),
            401
        );
    }

    // Deleting all its data needs the box ticked.
    assert_eq!(app.list_all("step_count", 10).await.len(), 1);
    let (status, _, _) = form(
        &app,
        &format!("{base}/erase"),
        &[("csrf_token", &csrf)],
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(app.list_all("step_count", 10).await.len(), 1);
    let fields = [("csrf_token", csrf.as_str()), ("confirm", "yes")];
    let (status, html, _) = form(&app, &format!("{base}/erase"), &fields, None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("1 samples deleted"), "{html}");
    assert!(app.list_all("step_count", 10).await.is_empty());
    assert_eq!(app.owner_page("/apps/app_unknown").await.0, 404);
    app.stop().await;
}

both_backends!(apps_are_registered_switched_and_revoked_from_their_pages);
