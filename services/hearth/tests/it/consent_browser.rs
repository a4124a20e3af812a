//! The consent page in a real browser: headless Chromium driven over the
//! WebDriver protocol. The owner logs in with the passphrase, turns all
//! requested types on, switches some off again, and allows; the grants that
//! result must match the switches exactly.

use std::time::{Duration, Instant};

use crate::browser::Driver;
use crate::support::{query_param, Backend, Pkce, TestApp, TestDatabase, PASSPHRASE};
use serde_json::{json, Value};

both_backends!(owner_switches_types_off_and_grants_match);

/// The native app's loopback listener: answers every request with "done".
async fn loopback_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndone",
                    )
                    .await;
            });
        }
    });
    port
}

async fn owner_switches_types_off_and_grants_match(backend: Backend) {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let reg = app
        .register_app("Sleep Diary", "http://127.0.0.1/callback", false)
        .await;
    let client_id = reg["id"].as_str().unwrap();
    let port = loopback_app().await;
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let pkce = Pkce::new();
    let scope =
        "read:step_count read:heart_rate read:sleep_analysis write:sleep_analysis write:body_mass";
    let mut url = reqwest::Url::parse(&app.url("/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", scope)
        .append_pair("state", "xyz")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");

    driver.goto(url.as_str()).await;
    let text = driver.page_text().await;
    assert!(text.contains("Sleep Diary"), "{text}");
    assert!(
        text.contains("Sleep Diary shows your trends"),
        "purpose shown"
    );
    // Everything starts off; "Turn all on" switches every type on.
    assert!(!driver.selected("input[name='read:heart_rate']").await);
    driver.click("#all-on").await;
    for s in scope.split(' ') {
        assert!(driver.selected(&format!("input[name='{s}']")).await, "{s}");
    }
    // The owner switches two types off again, read and write apart.
    driver.click("input[name='read:heart_rate']").await;
    driver.click("input[name='write:body_mass']").await;
    driver.type_into("#passphrase", PASSPHRASE).await;
    driver.click("#allow").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let landed = loop {
        let current = driver.current_url().await;
        if current.starts_with(&redirect) {
            break current;
        }
        if Instant::now() > deadline {
            let text = driver.page_text().await;
            panic!("no redirect; at {current}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    driver.quit().await;
    assert_eq!(query_param(&landed, "state").as_deref(), Some("xyz"));
    let code = query_param(&landed, "code").unwrap();

    let got = app.get_json(&format!("/v1/apps/{client_id}")).await;
    assert_eq!(
        got["grants"],
        json!({
            "step_count": {"read": true, "write": null},
            "heart_rate": {"read": false, "write": null},
            "sleep_analysis": {"read": true, "write": true},
            "body_mass": {"read": null, "write": false},
        })
    );
    let r = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", pkce.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], scope, "the token's scope is the request");
}
