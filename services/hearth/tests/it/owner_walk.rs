//! A new owner's first visit, in a real browser: setup, an import through
//! the import page, the summary, a type's page by day, week, month and
//! year, the source order changing the chart, an app registered with its
//! switches and a credential minted and revoked, the access log, the
//! privacy notice and the lock; axe-core checks each page, and any
//! content security policy violation fails the walk. Screenshots
//! of each page at a phone's and a desktop's width go to
//! `target/screenshots/` for a person to look at.

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use hearth::import::apple_health::generate::{self, Options};
use serde_json::{json, Value};

use crate::browser::{Accessibility, Driver};
use crate::support::{Backend, TestApp, TestDatabase, PASSPHRASE};

both_backends!(
    a_new_owner_walks_through_every_page,
    an_open_page_warns_before_the_idle_lock_and_clears_itself_after,
);

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page at a phone's width and a desktop's, as PNGs.
async fn photograph(driver: &Driver, name: &str, backend: Backend) {
    if backend != Backend::Sqlite {
        return;
    }
    let dir = screenshots_dir();
    for (width, height, device) in [(390, 844, "phone"), (1280, 900, "desktop")] {
        driver.resize(width, height).await;
        let png = driver.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(dir.join(format!("{name}-{device}.png")), png).unwrap();
    }
}

/// The open page passes axe-core and its content security policy refused
/// nothing since the last page was checked.
async fn check_page(driver: &Driver, a11y: &Accessibility, page: &str) {
    a11y.check(driver, page).await;
    let refused = driver.csp_violations().await;
    assert!(
        refused.is_empty(),
        "{page}: content security policy violations:\n{}",
        refused.join("\n")
    );
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(hearth::clock::Clock::default().now_us()).unwrap()
}

/// A step sample in today's first minutes (UTC), never after now.
fn steps_today(value: f64) -> Value {
    let now = now();
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let t = (midnight + Duration::minutes(1)).min(now);
    json!({
        "type": "step_count",
        "start": t.to_rfc3339(),
        "end": (t + Duration::seconds(30)).to_rfc3339(),
        "value": value,
        "unit": "count",
    })
}

async fn a_new_owner_walks_through_every_page(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::start(&db).await;
    let Some(driver) = Driver::start().await else {
        return;
    };
    let a11y = Accessibility::load();
    let base = app.base.clone();
    let site = |path: &str| format!("{base}{path}");

    // Setup, in the page, with the code the server printed.
    driver.goto(&site("/")).await;
    driver.wait_for_text("#state", "uninitialised").await;
    // The check sees what the policy refuses: an inline script is refused.
    driver
        .execute(
            "const s = document.createElement('script');
             s.textContent = 'window.inlineRan = true;';
             document.body.append(s);
             return window.inlineRan === true;",
            json!([]),
            false,
        )
        .await;
    let refused = driver.csp_violations().await;
    assert!(
        refused.iter().any(|m| m.contains("script-src")),
        "an inline script was not reported: {refused:?}"
    );
    check_page(&driver, &a11y, "/ (setup)").await;
    let code = app.store.setup_code().expect("a new store");
    driver.type_into("#setup_code", &code).await;
    driver.type_into("#new_passphrase", PASSPHRASE).await;
    driver.click("#setup button").await;
    driver.wait_for_text("#message", "recovery key").await;
    driver.wait_for_text("#state", "unlocked").await;
    check_page(&driver, &a11y, "/ (unlocked)").await;
    photograph(&driver, "home", backend).await;
    // The API side of the test acts as the owner too.
    let r = app
        .post_json("/v1/unlock", &json!({ "passphrase": PASSPHRASE }))
        .await;
    app.token = Some(
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string(),
    );

    // An import through the import page, followed to its summary.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("export.zip");
    generate::write_zip(&zip, &Options::default()).unwrap();
    driver.goto(&site("/import")).await;
    check_page(&driver, &a11y, "/import").await;
    driver
        .type_into("#import-file", zip.to_str().unwrap())
        .await;
    driver.click("#import-button").await;
    driver.wait_for_text("#import-status", "Imported.").await;
    let summary = driver
        .wait_for_text("#import-summary", "Samples added")
        .await;
    assert!(summary.contains("apple-health:"), "{summary}");
    check_page(&driver, &a11y, "/import (done)").await;
    photograph(&driver, "import", backend).await;

    // Today's steps from the owner and from an app, overlapping.
    let pedometer = app
        .register_app("Pedometer", "https://app.example/cb", true)
        .await;
    let app_id = pedometer["id"].as_str().unwrap().to_string();
    let token = app.mint(&app_id, &[], &["step_count"]).await;
    assert_eq!(app.write(vec![steps_today(100.0)]).await.status(), 201);
    assert_eq!(
        app.as_token(&token)
            .write(vec![steps_today(300.0)])
            .await
            .status(),
        201
    );

    driver.goto(&site("/summary?tz=UTC")).await;
    let tile = driver.wait_for_text("#tile-step_count", "Today").await;
    assert!(
        tile.contains("100 count") || tile.contains("300 count"),
        "{tile}"
    );
    check_page(&driver, &a11y, "/summary").await;
    photograph(&driver, "summary", backend).await;

    driver.goto(&site("/types")).await;
    check_page(&driver, &a11y, "/types").await;
    driver.follow("#type-step_count").await;
    for period in ["day", "week", "month", "year"] {
        driver.follow(&format!("#period-{period}")).await;
        let current = driver
            .execute(
                "return document.querySelector('[aria-current=page]').id;",
                json!([]),
                false,
            )
            .await;
        assert_eq!(current, format!("period-{period}"));
        assert!(driver
            .page_text()
            .await
            .contains("The numbers behind the chart"));
    }
    check_page(&driver, &a11y, "/types/step_count").await;
    photograph(&driver, "type", backend).await;

    // A type pinned from its page comes first on the summary.
    driver.goto(&site("/types/body_temperature")).await;
    driver.follow("#pin").await;
    driver.wait_for_text("#pin", "Unpin from the summary").await;
    driver.goto(&site("/summary?tz=UTC")).await;
    let first = driver
        .execute(
            "return document.querySelector('.tiles > li').id;",
            json!([]),
            false,
        )
        .await;
    assert_eq!(first, "tile-body_temperature");
    driver
        .wait_for_text("#tile-body_temperature", "Pinned")
        .await;

    // The source order changes what the day's chart counts.
    driver
        .goto(&site("/types/step_count?period=day&tz=UTC"))
        .await;
    let numbers = |text: String| text.contains("300") as u8 * 3 + text.contains("100") as u8;
    let before = numbers(driver.wait_for_text("#numbers", "").await);
    // Move whichever of the two counts less up, a step at a time, until
    // it is above the other (imported sources sit between them).
    let position = "const items = [...document.querySelectorAll('#source-order > li')];
        return items.findIndex((li) => li.textContent.trim().startsWith(arguments[0]));";
    let counted = if before == 3 {
        app_id.clone()
    } else {
        "owner".to_string()
    };
    let other = if before == 3 {
        "owner".to_string()
    } else {
        app_id.clone()
    };
    loop {
        let (lower, upper) = (
            driver.execute(position, json!([other]), false).await,
            driver.execute(position, json!([counted]), false).await,
        );
        if lower.as_i64() < upper.as_i64() {
            break;
        }
        let index = lower.as_i64().unwrap() + 1;
        driver
            .click(&format!(
                "#source-order > li:nth-child({index}) button[value=up]"
            ))
            .await;
        // The form answers with the type's page at its sources.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !driver.current_url().await.ends_with("#sources") {
            assert!(
                std::time::Instant::now() < deadline,
                "the move did not answer: {}",
                driver.page_text().await
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        driver
            .goto(&site("/types/step_count?period=day&tz=UTC"))
            .await;
    }
    let after = numbers(driver.wait_for_text("#numbers", "").await);
    assert!(
        before == 3 && after == 1 || before == 1 && after == 3,
        "{before} then {after}"
    );

    // An app registered, switched, given a credential that is then revoked.
    driver.goto(&site("/apps")).await;
    check_page(&driver, &a11y, "/apps").await;
    driver.type_into("#name", "Sleep Diary").await;
    driver.type_into("#purpose", "Keeps a sleep diary").await;
    driver
        .type_into("#privacy_policy_url", "https://diary.example/privacy")
        .await;
    driver
        .type_into("#redirect_uri", "https://diary.example/cb")
        .await;
    driver.follow("#register-button").await;
    driver.wait_for_text("#app-name", "Sleep Diary").await;
    driver.type_into("#credential-name", "bedside").await;
    driver.type_into("#credential-read", "sleep_analysis").await;
    driver
        .type_into("#credential-write", "sleep_analysis")
        .await;
    driver.follow("#mint-button").await;
    let shown = driver.wait_for_text("#new-token", "shown this once").await;
    assert!(driver.selected("#read-sleep_analysis").await);
    driver.click("#read-sleep_analysis").await;
    driver.follow("#save-grants").await;
    driver.wait_for_text("#app-name", "Sleep Diary").await;
    assert!(!driver.selected("#read-sleep_analysis").await);
    assert!(driver.selected("#write-sleep_analysis").await);
    check_page(&driver, &a11y, "/apps/{id}").await;
    photograph(&driver, "app", backend).await;
    driver.follow("#credentials button").await;
    driver
        .wait_for_text("#no-credentials", "No credential")
        .await;
    let diary_token = shown.split_whitespace().last().unwrap().to_string();
    let r = app
        .as_token(&diary_token)
        .get("/v1/samples?type=sleep_analysis")
        .await;
    assert_eq!(r.status(), 401, "the revoked credential is refused");

    // The access log shows the pedometer's write of today's steps.
    driver.goto(&site("/access")).await;
    driver.wait_for_text("h1", "Access log").await;
    driver.wait_for_text("#entries", "Pedometer wrote").await;
    driver.click("#kind").await;
    driver
        .execute(
            "document.querySelector('#kind').value = 'app_write';",
            json!([]),
            false,
        )
        .await;
    driver.follow("#filter-button").await;
    driver.wait_for_text("#entries", "Step count").await;
    assert!(driver.current_url().await.contains("kind=app_write"));
    check_page(&driver, &a11y, "/access").await;
    photograph(&driver, "access", backend).await;

    driver.goto(&site("/studies")).await;
    driver.wait_for_text("h1", "Studies").await;
    check_page(&driver, &a11y, "/studies").await;
    photograph(&driver, "studies", backend).await;

    driver.goto(&site("/privacy")).await;
    driver.wait_for_text("h1", "Privacy").await;
    check_page(&driver, &a11y, "/privacy").await;
    photograph(&driver, "privacy", backend).await;

    driver.goto(&site("/settings")).await;
    driver.wait_for_text("h1", "Settings").await;
    check_page(&driver, &a11y, "/settings").await;
    photograph(&driver, "settings", backend).await;

    // Lock: back on the home page, and no owner page opens any more.
    driver.goto(&site("/summary")).await;
    driver.click("#lock").await;
    driver.wait_for_text("#state", "locked").await;
    check_page(&driver, &a11y, "/ (locked)").await;
    driver.goto(&site("/summary")).await;
    let text = driver.page_text().await;
    assert!(!text.contains("Today"), "{text}");
    driver.quit().await;
    app.stop().await;
}

/// A page left open: a warning before Hearth locks itself, then the data
/// taken off the page once it has, with the way back to unlock.
async fn an_open_page_warns_before_the_idle_lock_and_clears_itself_after(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(app.write(vec![steps_today(4321.0)]).await.status(), 201);
    app.stop().await;
    let mut args = db.serve_args();
    args.idle_lock_secs = 4;
    let app = TestApp::start_with(args).await;
    let Some(driver) = Driver::start().await else {
        return;
    };
    let site = |path: &str| format!("{}{path}", app.base);
    driver.goto(&site("/")).await;
    driver.wait_for_text("#state", "sealed").await;
    driver.type_into("#passphrase", PASSPHRASE).await;
    driver.click("#unlock button").await;
    driver.wait_for_text("#state", "unlocked").await;
    driver.goto(&site("/summary?tz=UTC")).await;
    driver.wait_for_text("#tile-step_count", "4321").await;
    driver
        .wait_for_text("#idle-lock", "locks itself after 4 seconds")
        .await;
    driver
        .wait_for_text("#idle-banner", "locks itself soon")
        .await;
    driver
        .wait_for_text("#stay-unlocked", "Stay unlocked")
        .await;
    driver
        .wait_for_text("main h1", "Hearth locked itself")
        .await;
    let text = driver.page_text().await;
    assert!(!text.contains("4321"), "the data left the page: {text}");
    assert!(text.contains("Unlock it again"), "{text}");
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Locked);
    check_page(&driver, &Accessibility::load(), "/summary (locked itself)").await;
    driver.quit().await;
    app.stop().await;
}
