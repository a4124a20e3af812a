//! The authorization server over HTTP: flows, refresh rotation,
//! revocation, and the attacks a nosy app or someone on the LAN would try.

use std::time::Duration;

use crate::support::{hidden_field, query_param, steps, Backend, Pkce, TestApp, TestDatabase};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

both_backends!(
    metadata_is_published,
    public_client_with_loopback_redirect_on_a_random_port,
    confidential_client_authenticates,
    refresh_rotates_and_reuse_revokes_the_grant,
    revocation_endpoint,
    token_scope_is_the_request_not_the_decision,
    consent_with_passphrase_when_no_session,
    attack_no_pkce,
    attack_plain_pkce,
    attack_wrong_verifier,
    attack_code_reuse_revokes_tokens,
    attack_redirect_uri_mismatch,
    attack_revoked_app,
    attack_expired_code,
    attack_consent_post_without_csrf,
    attack_consent_post_cross_origin,
    attack_open_redirect,
    attack_code_for_another_client,
    attack_owner_scope_is_refused,
    token_alg_none,
    token_hs256_signed_with_public_material,
    token_wrong_typ,
    token_wrong_aud,
    token_wrong_iss,
    token_expired,
    token_not_yet_valid,
    token_unknown_kid,
    token_tampered,
    token_from_another_store,
    token_string_exp_nbf,
    token_endpoint_is_rate_limited,
    consent_works_while_locked_and_refuses_when_sealed,
    consent_login_is_throttled,
    research_apps_may_ask_for_export,
    oversized_forms_are_refused_like_other_errors,
    consent_page_escapes_what_the_app_registered,
);

const LOOPBACK: &str = "http://127.0.0.1/callback";

/// The authorize URL for a request.
fn authorize_url(
    client_id: &str,
    redirect: &str,
    scope: &str,
    challenge: &str,
    state: &str,
) -> String {
    let mut url = reqwest::Url::parse("http://x/oauth/authorize").unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", scope)
        .append_pair("state", state)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    format!("/oauth/authorize?{}", url.query().unwrap())
}

/// Shows the consent page to the owner's session; returns status and HTML.
async fn consent_page(app: &TestApp, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let r = TestApp::no_redirect_client()
        .get(app.url(path))
        .header("cookie", app.session_cookie())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

/// Submits the consent form with `on` switched on; returns the response.
async fn decide(
    app: &TestApp,
    html: &str,
    on: &[&str],
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form: Vec<(String, String)> = vec![
        (
            "request_id".into(),
            hidden_field(html, "request_id").unwrap(),
        ),
        (
            "csrf_token".into(),
            hidden_field(html, "csrf_token").unwrap(),
        ),
        ("decision".into(), "allow".into()),
    ];
    for s in on {
        form.push((s.to_string(), "on".into()));
    }
    for (k, v) in extra {
        form.retain(|(name, _)| name != k);
        form.push((k.to_string(), v.to_string()));
    }
    TestApp::no_redirect_client()
        .post(app.url("/oauth/authorize"))
        .header("cookie", app.session_cookie())
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Runs the consent step and returns the code from the redirect.
async fn get_code(
    app: &TestApp,
    client_id: &str,
    redirect: &str,
    scope: &str,
    on: &[&str],
    pkce: &Pkce,
) -> String {
    let (status, html, _) = consent_page(
        app,
        &authorize_url(client_id, redirect, scope, &pkce.challenge, "st4te"),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let r = decide(app, &html, on, &[]).await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(redirect), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some("st4te"));
    assert_eq!(
        query_param(&location, "iss").as_deref(),
        Some(app.base.as_str())
    );
    query_param(&location, "code").expect("a code")
}

async fn token_request(
    app: &TestApp,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut rb = app.client.post(app.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        rb = rb.basic_auth(id, Some(secret));
    }
    rb.send().await.unwrap()
}

async fn exchange(
    app: &TestApp,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
        None,
    )
    .await
}

async fn refresh(app: &TestApp, client_id: &str, token: &str) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ],
        None,
    )
    .await
}

/// A public app with a loopback redirect, holding tokens for step_count.
struct Setup {
    app: TestApp,
    client_id: String,
    tokens: Value,
    _db: TestDatabase,
}

async fn setup(backend: Backend) -> Setup {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(
        app.write(vec![steps(0, 11.0), steps(1, 12.0)])
            .await
            .status(),
        201
    );
    let reg = app.register_app("Plotter", LOOPBACK, false).await;
    let client_id = reg["id"].as_str().unwrap().to_string();
    let pkce = Pkce::new();
    let scope = "read:step_count write:step_count";
    let code = get_code(
        &app,
        &client_id,
        LOOPBACK,
        scope,
        &["read:step_count", "write:step_count"],
        &pkce,
    )
    .await;
    let r = exchange(&app, &client_id, &code, LOOPBACK, &pkce.verifier).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    Setup {
        app,
        client_id,
        tokens,
        _db: db,
    }
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

async fn reads_ok(app: &TestApp, token: &str) -> bool {
    let r = app
        .as_token(token)
        .get("/v1/statistics?type=step_count")
        .await;
    r.status() == 200
}

async fn metadata_is_published(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let m = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(m["issuer"], app.base);
    assert_eq!(m["token_endpoint"], format!("{}/oauth/token", app.base));
    assert_eq!(
        m["authorization_endpoint"],
        format!("{}/oauth/authorize", app.base)
    );
    assert_eq!(
        m["revocation_endpoint"],
        format!("{}/oauth/revoke", app.base)
    );
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(m["response_types_supported"], json!(["code"]));
    assert!(m["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("read:step_count")));
}

async fn public_client_with_loopback_redirect_on_a_random_port(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(app.write(vec![steps(0, 11.0)]).await.status(), 201);
    let reg = app.register_app("Native", LOOPBACK, false).await;
    let client_id = reg["id"].as_str().unwrap();
    // The native app listens on a port of its own choosing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let pkce = Pkce::new();
    let code = get_code(
        &app,
        client_id,
        &redirect,
        "read:step_count write:step_count write:body_mass",
        &["read:step_count", "write:step_count"],
        &pkce,
    )
    .await;
    let r = exchange(&app, client_id, &code, &redirect, &pkce.verifier).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].as_u64().unwrap() <= 900);
    let token = access(&t);
    let me = app.as_token(token);
    assert_eq!(
        me.get_json("/v1/statistics?type=step_count").await["count"],
        1
    );
    assert_eq!(me.write(vec![steps(5, 1.0)]).await.status(), 201);
    let r = me
        .write(vec![crate::support::sample("body_mass", 1, 70.0, "kg")])
        .await;
    assert_eq!(r.status(), 403, "body_mass write was switched off");
    let st = me
        .get_json("/v1/authorization/status?types=step_count,body_mass")
        .await;
    assert_eq!(
        st["write"],
        json!({"step_count": "authorized", "body_mass": "denied"})
    );
    drop(listener);
}

async fn confidential_client_authenticates(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let redirect = "https://clinic.example/cb";
    let reg = app.register_app("Clinic", redirect, true).await;
    let id = reg["id"].as_str().unwrap();
    let secret = reg["client_secret"].as_str().unwrap();
    let pkce = Pkce::new();
    let code = get_code(
        &app,
        id,
        redirect,
        "read:step_count",
        &["read:step_count"],
        &pkce,
    )
    .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    // Without a secret, or with a wrong one: invalid_client.
    let mut no_secret = form.to_vec();
    no_secret.push(("client_id", id));
    let r = token_request(&app, &no_secret, None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = token_request(&app, &form, Some((id, "hcs_wrong"))).await;
    assert_eq!(r.status(), 401);
    // Two methods at once are refused.
    let mut both = form.to_vec();
    both.push(("client_secret", secret));
    let r = token_request(&app, &both, Some((id, secret))).await;
    assert_eq!(r.status(), 401);
    // HTTP Basic works.
    let r = token_request(&app, &form, Some((id, secret))).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(reads_ok(&app, access(&t)).await);
    // Refresh needs the secret too (client_secret_post this time).
    let rt = t["refresh_token"].as_str().unwrap();
    let r = refresh(&app, id, rt).await;
    assert_eq!(r.status(), 401);
    let r = token_request(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", id),
            ("client_secret", secret),
            ("refresh_token", rt),
        ],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
}

async fn refresh_rotates_and_reuse_revokes_the_grant(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let rt1 = s.tokens["refresh_token"].as_str().unwrap();
    let r = refresh(app, &s.client_id, rt1).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let rt2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2, "rotated");
    assert_eq!(t2["scope"], s.tokens["scope"]);
    assert!(reads_ok(app, access(&t2)).await);
    assert!(
        reads_ok(app, access(&s.tokens)).await,
        "older access token still live"
    );
    // Reusing the old refresh token: refused, and the whole grant dies.
    let r = refresh(app, &s.client_id, rt1).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert!(!reads_ok(app, access(&t2)).await);
    assert!(!reads_ok(app, access(&s.tokens)).await);
    assert_eq!(refresh(app, &s.client_id, rt2).await.status(), 400);
}

async fn revocation_endpoint(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let revoke = |token: String| {
        let client = app.client.clone();
        let url = app.url("/oauth/revoke");
        let id = s.client_id.clone();
        async move {
            client
                .post(url)
                .form(&[("client_id", id.as_str()), ("token", token.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    // Unknown tokens are 200 too (RFC 7009 §2.2).
    assert_eq!(revoke("hat_unknown".into()).await.status(), 200);
    let at = access(&s.tokens).to_string();
    assert_eq!(revoke(at.clone()).await.status(), 200);
    assert!(!reads_ok(app, &at).await);
    // Revoking the refresh token ends the grant.
    let rt = s.tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(revoke(rt.clone()).await.status(), 200);
    assert_eq!(refresh(app, &s.client_id, &rt).await.status(), 400);
    // Another client cannot revoke this client's tokens.
    let other = app.register_app("Other", LOOPBACK, false).await;
    let s2 = {
        let pkce = Pkce::new();
        let code = get_code(
            app,
            &s.client_id,
            LOOPBACK,
            "read:step_count",
            &["read:step_count"],
            &pkce,
        )
        .await;
        let r = exchange(app, &s.client_id, &code, LOOPBACK, &pkce.verifier).await;
        r.json::<Value>().await.unwrap()
    };
    let r = app
        .client
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("client_id", other["id"].as_str().unwrap()),
            ("token", access(&s2)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(reads_ok(app, access(&s2)).await);
}

async fn token_scope_is_the_request_not_the_decision(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("Q", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let scope = "read:step_count read:heart_rate write:step_count";
    // The owner switches everything off.
    let code = get_code(&app, id, LOOPBACK, scope, &[], &pkce).await;
    let t: Value = exchange(&app, id, &code, LOOPBACK, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["scope"], scope);
    let got = app.get_json(&format!("/v1/apps/{id}")).await;
    assert_eq!(
        got["grants"]["step_count"],
        json!({"read": false, "write": false})
    );
    assert_eq!(
        got["grants"]["heart_rate"],
        json!({"read": false, "write": null})
    );
}

async fn consent_with_passphrase_when_no_session(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("P", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let client = TestApp::no_redirect_client();
    let html = client
        .get(app.url(&authorize_url(
            id,
            LOOPBACK,
            "read:step_count",
            &pkce.challenge,
            "s",
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"passphrase\""));
    let form = |pass: &str| {
        vec![
            (
                "request_id".to_string(),
                hidden_field(&html, "request_id").unwrap(),
            ),
            (
                "csrf_token".to_string(),
                hidden_field(&html, "csrf_token").unwrap(),
            ),
            ("decision".to_string(), "allow".to_string()),
            ("read:step_count".to_string(), "on".to_string()),
            ("passphrase".to_string(), pass.to_string()),
        ]
    };
    let r = client
        .post(app.url("/oauth/authorize"))
        .form(&form("wrong passphrase!"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = client
        .post(app.url("/oauth/authorize"))
        .form(&form(crate::support::PASSPHRASE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("HttpOnly"));
    let code = query_param(r.headers()["location"].to_str().unwrap(), "code").unwrap();
    assert_eq!(
        exchange(&app, id, &code, LOOPBACK, &pkce.verifier)
            .await
            .status(),
        200
    );
}

/// Asserts the authorize request is answered by an error redirect to the
/// client (it is trusted) and no consent page.
async fn expect_error_redirect(app: &TestApp, path: &str, error: &str) {
    let r = TestApp::no_redirect_client()
        .get(app.url(path))
        .header("cookie", app.session_cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{path}");
    let location = r.headers()["location"].to_str().unwrap();
    assert_eq!(query_param(location, "error").as_deref(), Some(error));
    assert!(query_param(location, "code").is_none());
}

async fn attack_no_pkce(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let path = format!(
        "/oauth/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=read:step_count",
        urlencode(LOOPBACK)
    );
    expect_error_redirect(&app, &path, "invalid_request").await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn attack_plain_pkce(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let path = authorize_url(id, LOOPBACK, "read:step_count", &pkce.verifier, "s")
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    expect_error_redirect(&app, &path, "invalid_request").await;
    // Without a method (which would default to plain) too.
    let path = authorize_url(id, LOOPBACK, "read:step_count", &pkce.challenge, "s")
        .replace("&code_challenge_method=S256", "");
    expect_error_redirect(&app, &path, "invalid_request").await;
}

async fn attack_wrong_verifier(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let code = get_code(
        &app,
        id,
        LOOPBACK,
        "read:step_count",
        &["read:step_count"],
        &pkce,
    )
    .await;
    let other = Pkce::new();
    for verifier in [other.verifier.as_str(), pkce.challenge.as_str(), ""] {
        let r = exchange(&app, id, &code, LOOPBACK, verifier).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    // The rightful client still redeems it.
    assert_eq!(
        exchange(&app, id, &code, LOOPBACK, &pkce.verifier)
            .await
            .status(),
        200
    );
}

async fn attack_code_reuse_revokes_tokens(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let code = get_code(
        &app,
        id,
        LOOPBACK,
        "read:step_count",
        &["read:step_count"],
        &pkce,
    )
    .await;
    let t: Value = exchange(&app, id, &code, LOOPBACK, &pkce.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert!(reads_ok(&app, access(&t)).await);
    let r = exchange(&app, id, &code, LOOPBACK, &pkce.verifier).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert!(
        !reads_ok(&app, access(&t)).await,
        "tokens from the code are revoked"
    );
    assert_eq!(
        refresh(&app, id, t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        400
    );
}

async fn attack_redirect_uri_mismatch(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let registered = "https://app.example/cb";
    let reg = app.register_app("A", registered, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    for bad in [
        "https://app.example/cb/",
        "https://app.example/c",
        "https://app.example/cb/../cb",
        "https://app.example/cbx",
        "https://app.example/cb?next=https://evil.example",
        "https://APP.example/cb",
        "https://app.example/CB",
        "https://app.example/%63b",
        "https://app.example%2Fcb",
        "https://app.example/cb%00",
        "https://app.example.evil.example/cb",
        "https://evil.example/https://app.example/cb",
        "https://app.example@evil.example/cb",
        "http://app.example/cb",
        "https://app.example:443/cb",
        "https://app.example/cb#x",
        " https://app.example/cb",
    ] {
        let (status, html, headers) = consent_page(
            &app,
            &authorize_url(id, bad, "read:step_count", &pkce.challenge, "s"),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert!(headers.get("location").is_none(), "{bad}: never redirect");
        assert!(!html.contains("csrf_token"), "{bad}: no consent page");
    }
    // The token endpoint checks it again, exactly.
    let code = get_code(&app, id, registered, "read:step_count", &[], &pkce).await;
    let r = exchange(&app, id, &code, "https://app.example/cb/", &pkce.verifier).await;
    assert_eq!(r.status(), 400);
    // Loopback: any port, but nothing else may change.
    let reg = app.register_app("L", LOOPBACK, false).await;
    let lid = reg["id"].as_str().unwrap();
    for bad in [
        "http://127.0.0.1:8080/callback/",
        "http://127.0.0.1:8080/Callback",
        "http://127.0.0.1:8080@evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://localhost:8080/callback",
        "https://127.0.0.1:8080/callback",
        "http://127.0.0.1:99999999/callback",
        "http://[::1]:8080/callback",
    ] {
        let (status, _, headers) = consent_page(
            &app,
            &authorize_url(lid, bad, "read:step_count", &pkce.challenge, "s"),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert!(headers.get("location").is_none());
    }
}

async fn attack_revoked_app(backend: Backend) {
    let s = setup(backend).await;
    let app = &s.app;
    let pkce = Pkce::new();
    let code = get_code(
        app,
        &s.client_id,
        LOOPBACK,
        "read:step_count",
        &["read:step_count"],
        &pkce,
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/apps/{}", s.client_id))
            .await
            .status(),
        204
    );
    assert!(!reads_ok(app, access(&s.tokens)).await);
    let r = refresh(
        app,
        &s.client_id,
        s.tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status(), 401, "the client itself is gone");
    let r = exchange(app, &s.client_id, &code, LOOPBACK, &pkce.verifier).await;
    assert_eq!(r.status(), 401);
    let (status, _, _) = consent_page(
        app,
        &authorize_url(
            &s.client_id,
            LOOPBACK,
            "read:step_count",
            &pkce.challenge,
            "s",
        ),
    )
    .await;
    assert_eq!(status, 400);
}

async fn attack_expired_code(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let code = get_code(&app, id, LOOPBACK, "read:step_count", &[], &pkce).await;
    app.store.apps().clock.advance(Duration::from_secs(601));
    let r = exchange(&app, id, &code, LOOPBACK, &pkce.verifier).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

async fn attack_consent_post_without_csrf(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    for csrf in [None, Some("forged")] {
        let (_, html, _) = consent_page(
            &app,
            &authorize_url(id, LOOPBACK, "read:step_count", &pkce.challenge, "s"),
        )
        .await;
        let mut form = vec![
            ("request_id", hidden_field(&html, "request_id").unwrap()),
            ("decision", "allow".to_string()),
            ("read:step_count", "on".to_string()),
        ];
        if let Some(c) = csrf {
            form.push(("csrf_token", c.to_string()));
        }
        let r = TestApp::no_redirect_client()
            .post(app.url("/oauth/authorize"))
            .header("cookie", app.session_cookie())
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("location").is_none());
        // And the request is spent: the right token cannot be tried after.
        let r = decide(&app, &html, &["read:step_count"], &[]).await;
        assert_eq!(r.status(), 400);
    }
    let got = app.get_json(&format!("/v1/apps/{id}")).await;
    assert_eq!(got["grants"], json!({}), "no grant was recorded");
}

async fn attack_consent_post_cross_origin(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let (_, html, _) = consent_page(
        &app,
        &authorize_url(id, LOOPBACK, "read:step_count", &pkce.challenge, "s"),
    )
    .await;
    let mut form = vec![
        ("request_id", hidden_field(&html, "request_id").unwrap()),
        ("csrf_token", hidden_field(&html, "csrf_token").unwrap()),
        ("decision", "allow".to_string()),
    ];
    form.push(("read:step_count", "on".into()));
    let r = TestApp::no_redirect_client()
        .post(app.url("/oauth/authorize"))
        .header("cookie", app.session_cookie())
        .header("origin", "http://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A page fetched without the session needs the passphrase: a session
    // cookie alone does not decide it.
    let html = TestApp::no_redirect_client()
        .get(app.url(&authorize_url(
            id,
            LOOPBACK,
            "read:step_count",
            &pkce.challenge,
            "s",
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = decide(&app, &html, &["read:step_count"], &[]).await;
    assert_eq!(r.status(), 401);
}

async fn attack_open_redirect(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("A", "https://app.example/cb", false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let evil = "https://evil.example/steal";
    // Unknown client, missing client, bad scope with a foreign redirect, a
    // bad response type: none of these may send the browser to evil.
    let paths = [
        authorize_url("app_unknown", evil, "read:step_count", &pkce.challenge, "s"),
        authorize_url(id, evil, "read:step_count", &pkce.challenge, "s"),
        authorize_url(id, evil, "bogus", &pkce.challenge, "s"),
        format!(
            "/oauth/authorize?response_type=token&redirect_uri={}",
            urlencode(evil)
        ),
        format!(
            "/oauth/authorize?client_id={id}&redirect_uri={}&redirect_uri={}&response_type=code",
            urlencode("https://app.example/cb"),
            urlencode(evil)
        ),
    ];
    let mut bodies = Vec::new();
    for p in &paths {
        let (status, html, headers) = consent_page(&app, p).await;
        assert_eq!(status, 400, "{p}");
        assert!(headers.get("location").is_none(), "{p}");
        assert!(!html.contains("evil.example"), "{p}: not echoed");
        bodies.push(html);
    }
    // An unknown client and an unregistered redirect look the same.
    assert_eq!(bodies[0], bodies[1]);
    // The decision redirect goes only to the URI of the pending request,
    // whatever the form says.
    let (_, html, _) = consent_page(
        &app,
        &authorize_url(
            id,
            "https://app.example/cb",
            "read:step_count",
            &pkce.challenge,
            "s",
        ),
    )
    .await;
    let r = decide(&app, &html, &[], &[("redirect_uri", evil)]).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://app.example/cb?"));
}

async fn attack_code_for_another_client(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let a = app.register_app("A", LOOPBACK, false).await;
    let b = app.register_app("B", LOOPBACK, false).await;
    let pkce = Pkce::new();
    let code = get_code(
        &app,
        a["id"].as_str().unwrap(),
        LOOPBACK,
        "read:step_count",
        &[],
        &pkce,
    )
    .await;
    let r = exchange(
        &app,
        b["id"].as_str().unwrap(),
        &code,
        LOOPBACK,
        &pkce.verifier,
    )
    .await;
    assert_eq!(r.status(), 400);
}

async fn attack_owner_scope_is_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let a = app.register_app("A", LOOPBACK, false).await;
    let pkce = Pkce::new();
    let id = a["id"].as_str().unwrap();
    for scope in [
        "owner",
        "research:export",
        "read:step_count owner",
        "read:nope",
        "",
    ] {
        expect_error_redirect(
            &app,
            &authorize_url(id, LOOPBACK, scope, &pkce.challenge, "s"),
            "invalid_scope",
        )
        .await;
    }
}

// --- Tokens: forgeries of every kind are 401, a real token is 200. ---

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::digest([ipad.as_slice(), msg].concat());
    Sha256::digest([opad.as_slice(), inner.as_slice()].concat()).to_vec()
}

fn claims(s: &Setup) -> Value {
    let now = s.app.store.apps().clock.now_us() / 1_000_000;
    json!({
        "iss": s.app.base, "aud": s.app.base, "sub": s.client_id, "client_id": s.client_id,
        "scope": "read:step_count write:step_count", "iat": now, "nbf": now - 5,
        "exp": now + 600, "jti": uuid::Uuid::new_v4(),
    })
}

fn jwt(header: Value, payload: Value, key: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(&header), b64(&payload));
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(key, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// The forged token is refused, and the genuine one beside it works.
async fn refused(s: &Setup, forged: &str) {
    assert!(
        reads_ok(&s.app, access(&s.tokens)).await,
        "the real token works"
    );
    let r = s
        .app
        .as_token(forged)
        .get("/v1/statistics?type=step_count")
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unauthenticated");
    let r = s.app.as_token(forged).write(vec![steps(9, 1.0)]).await;
    assert_eq!(r.status(), 401);
}

fn eddsa_header() -> Value {
    json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "hearth-1"})
}

async fn token_alg_none(backend: Backend) {
    let s = setup(backend).await;
    let t = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&claims(&s))
    );
    refused(&s, &t).await;
}

async fn token_hs256_signed_with_public_material(backend: Backend) {
    let s = setup(backend).await;
    // Everything public about the store, used as an HMAC key.
    let public = s
        .app
        .get("/.well-known/oauth-authorization-server")
        .await
        .text()
        .await
        .unwrap();
    let t = jwt(
        json!({"alg": "HS256", "typ": "at+jwt", "kid": "hearth-1"}),
        claims(&s),
        public.as_bytes(),
    );
    refused(&s, &t).await;
}

async fn token_wrong_typ(backend: Backend) {
    let s = setup(backend).await;
    let t = jwt(
        json!({"alg": "EdDSA", "typ": "JWT", "kid": "hearth-1"}),
        claims(&s),
        b"k",
    );
    refused(&s, &t).await;
}

async fn token_wrong_aud(backend: Backend) {
    let s = setup(backend).await;
    let mut c = claims(&s);
    c["aud"] = json!("https://other.example");
    refused(&s, &jwt(eddsa_header(), c, b"k")).await;
}

async fn token_wrong_iss(backend: Backend) {
    let s = setup(backend).await;
    let mut c = claims(&s);
    c["iss"] = json!("https://evil.example");
    refused(&s, &jwt(eddsa_header(), c, b"k")).await;
}

async fn token_expired(backend: Backend) {
    let s = setup(backend).await;
    let mut c = claims(&s);
    c["exp"] = json!(s.app.store.apps().clock.now_us() / 1_000_000 - 60);
    refused(&s, &jwt(eddsa_header(), c, b"k")).await;
    // A genuine access token past its 15 minutes is refused as well; the
    // refresh token still gets a new one.
    s.app
        .store
        .apps()
        .clock
        .advance(Duration::from_secs(15 * 60 + 1));
    assert!(!reads_ok(&s.app, access(&s.tokens)).await);
    let r = refresh(
        &s.app,
        &s.client_id,
        s.tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(reads_ok(&s.app, access(&t)).await);
}

async fn token_not_yet_valid(backend: Backend) {
    let s = setup(backend).await;
    let mut c = claims(&s);
    c["nbf"] = json!(s.app.store.apps().clock.now_us() / 1_000_000 + 3600);
    refused(&s, &jwt(eddsa_header(), c, b"k")).await;
}

async fn token_unknown_kid(backend: Backend) {
    let s = setup(backend).await;
    let t = jwt(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "../../etc/passwd"}),
        claims(&s),
        b"k",
    );
    refused(&s, &t).await;
}

async fn token_tampered(backend: Backend) {
    let s = setup(backend).await;
    let real = access(&s.tokens);
    // Flip one character at several places, and append and drop one.
    let bytes = real.as_bytes();
    for at in [4, bytes.len() / 2, bytes.len() - 1] {
        let mut t = bytes.to_vec();
        t[at] = if t[at] == b'A' { b'B' } else { b'A' };
        refused(&s, std::str::from_utf8(&t).unwrap()).await;
    }
    refused(&s, &format!("{real}A")).await;
    refused(&s, &real[..real.len() - 1]).await;
    // A refresh token is not an access token.
    refused(&s, s.tokens["refresh_token"].as_str().unwrap()).await;
}

async fn token_from_another_store(backend: Backend) {
    let s = setup(backend).await;
    let other = setup(backend).await;
    refused(&s, access(&other.tokens)).await;
    // Not even for the refresh grant, with the other store's client id.
    let r = refresh(
        &s.app,
        &other.client_id,
        other.tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status(), 401);
}

async fn token_string_exp_nbf(backend: Backend) {
    let s = setup(backend).await;
    let mut c = claims(&s);
    c["exp"] = json!("99999999999");
    c["nbf"] = json!("0");
    refused(&s, &jwt(eddsa_header(), c, b"k")).await;
}

async fn token_endpoint_is_rate_limited(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut limited = false;
    for _ in 0..200 {
        let r = token_request(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "app_x"),
                ("refresh_token", "x"),
            ],
            None,
        )
        .await;
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            limited = true;
            break;
        }
        assert_eq!(r.status(), 401);
    }
    assert!(limited, "guessing is throttled");
}

/// Opens the consent page without a session; returns its HTML.
async fn anonymous_page(app: &TestApp, path: &str) -> (u16, String) {
    let r = TestApp::no_redirect_client()
        .get(app.url(path))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_passphrase(app: &TestApp, html: &str, pass: &str) -> reqwest::Response {
    TestApp::no_redirect_client()
        .post(app.url("/oauth/authorize"))
        .form(&[
            ("request_id", hidden_field(html, "request_id").unwrap()),
            ("csrf_token", hidden_field(html, "csrf_token").unwrap()),
            ("decision", "allow".to_string()),
            ("read:step_count", "on".to_string()),
            ("passphrase", pass.to_string()),
        ])
        .send()
        .await
        .unwrap()
}

async fn consent_works_while_locked_and_refuses_when_sealed(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("L", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap().to_string();
    let pkce = Pkce::new();
    let path = authorize_url(&id, LOOPBACK, "read:step_count", &pkce.challenge, "s");
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    // Locked: the registry is still there, so the page shows; the
    // passphrase on it unlocks the store.
    let (status, html) = anonymous_page(&app, &path).await;
    assert_eq!(status, 200);
    let r = post_passphrase(&app, &html, crate::support::PASSPHRASE).await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Unlocked);
    app.stop().await;
    // Sealed (after a restart): nothing about apps is known yet.
    let app = TestApp::start(&db).await;
    let (status, html) = anonymous_page(&app, &path).await;
    assert_eq!(status, 503);
    assert!(!html.contains("csrf_token"));
}

async fn consent_login_is_throttled(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app.register_app("T", LOOPBACK, false).await;
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let (_, html) = anonymous_page(
        &app,
        &authorize_url(id, LOOPBACK, "read:step_count", &pkce.challenge, "s"),
    )
    .await;
    let first = post_passphrase(&app, &html, "guess number one").await;
    assert_eq!(first.status(), 401);
    // Right after a failure even the right passphrase waits.
    let second = post_passphrase(&app, &html, crate::support::PASSPHRASE).await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().get("location").is_none());
}

async fn research_apps_may_ask_for_export(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let r = app
        .post_json(
            "/v1/apps",
            &json!({
                "name": "Sleep Study", "purpose": "A study of sleep and steps",
                "privacy_policy_url": "https://study.example/privacy",
                "redirect_uris": [LOOPBACK], "client_type": "public", "kind": "research",
            }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    assert_eq!(reg["kind"], "research");
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let (status, html, _) = consent_page(
        &app,
        &authorize_url(
            id,
            LOOPBACK,
            "research:export read:step_count",
            &pkce.challenge,
            "s",
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("research app"));
}

/// A form over the body limit was answered by axum's `text/plain` 413; the
/// token and revocation endpoints answer a problem, the consent form a page.
async fn oversized_forms_are_refused_like_other_errors(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    // Over each route's limit: the token and revocation endpoints read at
    // most a few KiB, the consent form the server-wide limit. Each body
    // goes past the limit at once, and its rest waits for the answer.
    for (path, size, first, content_type) in [
        (
            "/oauth/token",
            64 * 1024,
            16 * 1024,
            "application/problem+json",
        ),
        (
            "/oauth/revoke",
            64 * 1024,
            16 * 1024,
            "application/problem+json",
        ),
        (
            "/oauth/authorize",
            17 * 1024 * 1024,
            16 * 1024 * 1024 + 16 * 1024,
            "text/html; charset=utf-8",
        ),
    ] {
        let r = app
            .post_declared(path, "application/x-www-form-urlencoded", size, first)
            .await;
        assert_eq!(r.status(), 413, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert_eq!(r.headers()["connection"], "close", "{path}");
    }
    app.stop().await;
}

/// The app's name and purpose are the app's words, not the store's: the
/// consent page shows them as text, never as markup.
async fn consent_page_escapes_what_the_app_registered(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let name = r#"<script>alert("name")</script> & 'Co'"#;
    let purpose = r#"Counts <b onclick="x()">steps</b> & "sleep""#;
    let r = app
        .post_json(
            "/v1/apps",
            &json!({
                "name": name, "purpose": purpose,
                "privacy_policy_url": "https://app.example/privacy?a=1&b=2",
                "redirect_uris": [LOOPBACK], "client_type": "public",
            }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    let id = reg["id"].as_str().unwrap();
    let pkce = Pkce::new();
    let (status, html, _) = consent_page(
        &app,
        &authorize_url(id, LOOPBACK, "read:step_count", &pkce.challenge, "s"),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    for raw in [
        "<script>alert",
        "<b ",
        "\"name\"",
        "\"sleep\"",
        "'Co'",
        "& ",
    ] {
        assert!(!html.contains(raw), "{raw:?} is not escaped: {html}");
    }
    // Shown as the very text registered, once the entities are read back.
    let shown = unescape(&html);
    assert!(shown.contains(&format!("“{name}” would like")), "{shown}");
    assert!(
        shown.contains(&format!("id=\"purpose\">{purpose}</p>")),
        "{shown}"
    );
    assert!(
        shown.contains("href=\"https://app.example/privacy?a=1&b=2\""),
        "{shown}"
    );
    // Still a working page: the owner can answer it.
    let r = decide(&app, &html, &["read:step_count"], &[]).await;
    assert_eq!(r.status(), 303);
    assert!(query_param(r.headers()["location"].to_str().unwrap(), "code").is_some());
    app.stop().await;
}

/// Reads back the character references of an HTML text, named or numeric.
fn unescape(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').expect("a reference ends with `;`");
        let reference = &rest[1..end];
        let c = match reference {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            r => {
                let code = r.strip_prefix('#').expect("a known reference");
                let code = match code.strip_prefix('x') {
                    Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
                    None => code.parse().unwrap(),
                };
                char::from_u32(code).unwrap()
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}
