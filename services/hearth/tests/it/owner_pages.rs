//! The owner's data pages: summary, browse and a type's page, what they
//! show and escape, their forms (delete, lock) and what a page from
//! elsewhere or a locked store gets.

use chrono::{DateTime, Duration, Utc};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};
use serde_json::{json, Value};

use crate::support::*;

async fn post_form(
    app: &TestApp,
    path: &str,
    csrf: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    app.owner_form(path, &[("csrf_token", csrf)], origin).await
}

/// Today's first minutes in UTC, never after now.
fn today_at(minute: i64) -> DateTime<Utc> {
    let now = DateTime::from_timestamp_micros(hearth::clock::Clock::default().now_us()).unwrap();
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    (midnight + Duration::minutes(minute)).min(now)
}

fn at(ty: &str, t: DateTime<Utc>, value: f64, unit: &str) -> Value {
    json!({
        "type": ty,
        "start": t.to_rfc3339(),
        "end": (t + Duration::seconds(30)).to_rfc3339(),
        "value": value,
        "unit": unit,
    })
}

async fn the_owner_sees_today_this_week_and_each_type(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut from_watch = at("step_count", today_at(1), 1200.0, "count");
    from_watch["device"] = json!({ "name": "<img src=x onerror=alert(1)>", "kind": "watch" });
    let r = app
        .write(vec![
            from_watch,
            at("step_count", today_at(2), 800.0, "count"),
            at(
                "step_count",
                today_at(0) - Duration::days(2),
                5000.0,
                "count",
            ),
            at("heart_rate", today_at(1), 61.0, "count/min"),
            at("heart_rate", today_at(2), 95.0, "count/min"),
        ])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // Nothing without the owner's session.
    for path in ["/summary", "/types", "/types/step_count"] {
        let r = TestApp::no_redirect_client()
            .get(app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let html = r.text().await.unwrap();
        assert!(!html.contains("Step count"), "{path}: {html}");
    }

    let (status, html) = app.owner_page("/summary?tz=UTC").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"tile-step_count\""), "{html}");
    assert!(
        html.contains("Today: <strong>2000 count</strong>"),
        "{html}"
    );
    assert!(html.contains("This week: 7000 count"), "{html}");
    assert!(html.contains("id=\"tile-heart_rate\""));
    assert!(
        html.contains("Today: <strong>61 – 95 count/min</strong>"),
        "{html}"
    );
    assert!(
        !html.contains("id=\"tile-resting_heart_rate\""),
        "no data, no tile"
    );
    assert!(html.contains("<svg class=\"chart\""));
    assert!(
        html.contains("href=\"/privacy\""),
        "every page links the privacy notice"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing from elsewhere"
    );

    let (status, html) = app.owner_page("/types").await;
    assert_eq!(status, 200);
    assert!(html.contains("<h2>Activity</h2>"), "{html}");
    assert!(html.contains("id=\"type-step_count\""));
    assert!(html.contains("id=\"type-heart_rate\""));
    assert!(
        !html.contains("id=\"type-blood_glucose\""),
        "types without data are left out"
    );

    for period in ["day", "week", "month", "year"] {
        let (status, html) = app
            .owner_page(&format!("/types/step_count?period={period}&tz=UTC"))
            .await;
        assert_eq!(status, 200, "{period}: {html}");
        assert!(html.contains("<svg class=\"chart\""), "{period}");
        assert!(html.contains("id=\"numbers\""), "{period}");
        let current = format!("aria-current=\"page\" id=\"period-{period}\"");
        assert!(html.contains(&current), "{period}: {html}");
    }
    let (_, day) = app.owner_page("/types/step_count?period=day&tz=UTC").await;
    assert!(
        day.contains("<td>2000</td>"),
        "today's first hour sums both samples: {day}"
    );
    let (_, week) = app.owner_page("/types/step_count?period=week&tz=UTC").await;
    assert!(
        week.contains("<td>5000</td>") && week.contains("<td>2000</td>"),
        "{week}"
    );
    // The device name is text, never markup.
    assert!(!week.contains("<img src=x"), "{week}");
    assert!(
        week.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{week}"
    );
    // A day across a DST change still renders, in the owner's zone.
    let (status, _) = app
        .owner_page("/types/heart_rate?period=month&tz=America%2FNew_York")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.owner_page("/types/step_count?period=decade").await.0,
        400
    );
    assert_eq!(app.owner_page("/types/no_such_type").await.0, 404);
    app.stop().await;
}

async fn page_forms_delete_and_lock_only_from_the_owners_pages(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let r = app
        .write(vec![at("step_count", today_at(1), 1234.0, "count")])
        .await;
    assert_eq!(r.status(), 201);
    let (_, html) = app.owner_page("/types/step_count?tz=UTC").await;
    let csrf = hidden_field(&html, "csrf_token").unwrap();
    let listed = app.list_all("step_count", 10).await;
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let delete = format!("/types/step_count/samples/{id}/delete");

    assert_eq!(post_form(&app, &delete, "wrong", None).await.status(), 403);
    assert_eq!(
        post_form(&app, &delete, &csrf, Some("http://evil.example"))
            .await
            .status(),
        401
    );
    assert_eq!(app.list_all("step_count", 10).await.len(), 1);
    let r = post_form(&app, &delete, &csrf, None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/types/step_count");
    assert!(app.list_all("step_count", 10).await.is_empty());

    assert_eq!(post_form(&app, "/lock", "wrong", None).await.status(), 403);
    assert_eq!(app.get("/readyz").await.status(), 200, "still unlocked");
    let r = post_form(&app, "/lock", &csrf, None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/");
    for path in ["/summary", "/types", "/types/step_count", "/studies"] {
        let (status, html) = app.owner_page(path).await;
        assert_ne!(status, 200, "{path} while locked");
        assert!(
            !html.contains("Step count") && !html.contains("1234"),
            "{path}: {html}"
        );
    }
    app.stop().await;
}

/// The source order on a type's page decides which of two overlapping
/// sources the chart counts.
async fn moving_a_source_up_changes_the_chart(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let pedometer = app
        .register_app("Pedometer", "https://app.example/cb", true)
        .await;
    let app_id = pedometer["id"].as_str().unwrap();
    let token = app.mint(app_id, &[], &["step_count"]).await;
    let t = today_at(1);
    assert_eq!(
        app.write(vec![at("step_count", t, 100.0, "count")])
            .await
            .status(),
        201
    );
    let r = app
        .as_token(&token)
        .write(vec![at("step_count", t, 300.0, "count")])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let day = "/types/step_count?period=day&tz=UTC";
    let (_, html) = app.owner_page(day).await;
    let first_is_app =
        html.find(&format!("<li>{app_id}")).unwrap() < html.find("<li>owner").unwrap();
    let (shown, hidden) = if first_is_app {
        ("300", "100")
    } else {
        ("100", "300")
    };
    assert!(html.contains(&format!("<td>{shown}</td>")), "{html}");
    assert!(!html.contains(&format!("<td>{hidden}</td>")), "{html}");
    let csrf = hidden_field(&html, "csrf_token").unwrap();

    let r = TestApp::no_redirect_client()
        .post(app.url("/types/step_count/sources/move"))
        .header(COOKIE, app.session_cookie())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}&index=1&direction=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let (_, html) = app.owner_page(day).await;
    assert!(
        html.contains(&format!("<td>{hidden}</td>")),
        "the other source counts now: {html}"
    );
    assert!(!html.contains(&format!("<td>{shown}</td>")), "{html}");
    let order = app.get_json("/v1/sources/priority").await;
    let expected = if first_is_app { "owner" } else { app_id };
    assert_eq!(order["order"][0]["source"], expected, "{order}");
    // Past the end is refused, and changes nothing.
    let r = TestApp::no_redirect_client()
        .post(app.url("/types/step_count/sources/move"))
        .header(COOKIE, app.session_cookie())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}&index=1&direction=down"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.get_json("/v1/sources/priority").await, order);
    app.stop().await;
}

async fn put_pins(app: &TestApp, token: &str, types: Value) -> reqwest::Response {
    app.client
        .put(app.url("/v1/owner/pinned-types"))
        .bearer_auth(token)
        .json(&json!({ "types": types }))
        .send()
        .await
        .unwrap()
}

async fn pin_form(app: &TestApp, ty: &str, csrf: &str, pinned: bool) -> reqwest::Response {
    TestApp::no_redirect_client()
        .post(app.url(&format!("/types/{ty}/pin")))
        .header(COOKIE, app.session_cookie())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}&pinned={pinned}"))
        .send()
        .await
        .unwrap()
}

/// Where a tile starts on the summary page.
fn tile_at(html: &str, ty: &str) -> Option<usize> {
    html.find(&format!("id=\"tile-{ty}\""))
}

/// The owner pins types to the summary from a type's page or the API: they
/// come first, in the owner's order, even without data this week; apps can
/// neither read nor set them; they outlive a restart (from the snapshot
/// and from the log) and are unreadable while locked.
async fn pinned_types_come_first_and_outlive_a_restart(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let owner = app.token.clone().unwrap();
    let r = app
        .write(vec![
            at("step_count", today_at(1), 1200.0, "count"),
            at("body_mass", today_at(1), 71.5, "kg"),
            json!({
                "type": "mindful_session",
                "start": today_at(2).to_rfc3339(),
                "end": (today_at(2) + Duration::minutes(10)).to_rfc3339(),
                "value": "not_applicable",
            }),
        ])
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (_, html) = app.owner_page("/summary?tz=UTC").await;
    assert!(tile_at(&html, "body_mass").is_none(), "not pinned: {html}");

    // Pinned from the type's page, with the session's token only.
    let (_, html) = app.owner_page("/types/body_mass").await;
    assert!(html.contains("Pin to the summary"), "{html}");
    let csrf = hidden_field(&html, "csrf_token").unwrap();
    assert_eq!(
        pin_form(&app, "body_mass", "wrong", true).await.status(),
        403
    );
    assert_eq!(
        app.get_json("/v1/owner/pinned-types").await["types"],
        json!([])
    );
    let r = pin_form(&app, "body_mass", &csrf, true).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/types/body_mass");
    let (_, html) = app.owner_page("/types/body_mass").await;
    assert!(html.contains("Unpin from the summary"), "{html}");
    assert_eq!(
        pin_form(&app, "mindful_session", &csrf, true)
            .await
            .status(),
        303
    );
    assert_eq!(
        pin_form(&app, "blood_glucose", &csrf, true).await.status(),
        303
    );
    assert_eq!(
        app.get_json("/v1/owner/pinned-types").await["types"],
        json!(["body_mass", "mindful_session", "blood_glucose"])
    );
    let (_, html) = app.owner_page("/summary?tz=UTC").await;
    let (mass, mindful, glucose, steps) = (
        tile_at(&html, "body_mass").expect("pinned"),
        tile_at(&html, "mindful_session").expect("pinned"),
        tile_at(&html, "blood_glucose").expect("pinned, even without data"),
        tile_at(&html, "step_count").expect("the summary's own"),
    );
    assert!(
        mass < mindful && mindful < glucose && glucose < steps,
        "{html}"
    );
    assert!(html.contains("Today: <strong>71.5 kg</strong>"), "{html}");
    assert!(html.contains("This week: <strong>1</strong>"), "{html}");
    assert!(
        tile_at(&html, "resting_heart_rate").is_none(),
        "not pinned, no data"
    );

    // The API checks what it is given, and an app reaches none of it.
    for bad in [
        json!(["no_such_type"]),
        json!(["body_mass", "body_mass"]),
        json!(["date_of_birth"]),
        json!(vec!["step_count"; 13]),
    ] {
        let r = put_pins(&app, &owner, bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let pedometer = app
        .register_app("Pedometer", "https://app.example/cb", true)
        .await;
    let token = app
        .mint(
            pedometer["id"].as_str().unwrap(),
            &["body_mass"],
            &["body_mass"],
        )
        .await;
    assert_eq!(
        app.as_token(&token)
            .get("/v1/owner/pinned-types")
            .await
            .status(),
        403
    );
    assert_eq!(put_pins(&app, &token, json!([])).await.status(), 403);
    assert_eq!(
        app.get_json("/v1/owner/pinned-types").await["types"],
        json!(["body_mass", "mindful_session", "blood_glucose"])
    );

    // Unpinned from the page: the rest keep their order.
    assert_eq!(
        pin_form(&app, "mindful_session", &csrf, false)
            .await
            .status(),
        303
    );
    let pins = json!(["body_mass", "blood_glucose"]);
    assert_eq!(app.get_json("/v1/owner/pinned-types").await["types"], pins);

    // Locked: nothing to read. A restart opens them from the snapshot taken
    // at shutdown; a restart without snapshots replays them from the log.
    let r = post_form(&app, "/lock", &csrf, None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.get("/v1/owner/pinned-types").await.status(), 503);
    app.unlock().await;
    assert_eq!(app.get_json("/v1/owner/pinned-types").await["types"], pins);
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.get_json("/v1/owner/pinned-types").await["types"], pins);
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    hearth::projection::snapshot::discard_all(&**app.store.storage())
        .await
        .unwrap();
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.get_json("/v1/owner/pinned-types").await["types"], pins);
    app.stop().await;
}

/// The `action` of every POST form in `html`.
fn post_actions(html: &str) -> Vec<String> {
    html.split("<form")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            if !tag.contains("method=\"post\"") {
                return None;
            }
            let start = tag.find("action=\"")? + 8;
            let end = tag[start..].find('"')? + start;
            Some(tag[start..end].replace("&amp;", "&"))
        })
        .collect()
}

/// What a form could change, as the API shows it.
async fn everything_forms_change(app: &TestApp, study: &str) -> Vec<Value> {
    let mut state = Vec::new();
    for path in [
        "/v1/apps",
        "/v1/samples?type=step_count",
        "/v1/sources/priority",
        "/v1/owner/pinned-types",
        &format!("/v1/studies/{study}/consent"),
    ] {
        state.push(app.get_json(path).await);
    }
    state.push(json!(app.get("/readyz").await.status().as_u16()));
    state
}

/// Every form on every owner page, found by reading the pages, refuses a
/// post from another site (even with the right token) and a post with a
/// token that is not the session's, and changes nothing; once locked, no
/// owner page opens.
async fn every_form_on_every_owner_page_refuses_foreign_posts(backend: Backend) {
    use crate::research::{add_study, description, es384_key, inline};
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let r = app
        .write(vec![at("step_count", today_at(1), 10.0, "count")])
        .await;
    assert_eq!(r.status(), 201);
    let pedometer = app
        .register_app("Pedometer", "https://app.example/cb", true)
        .await;
    let app_id = pedometer["id"].as_str().unwrap();
    app.mint(app_id, &["step_count"], &["step_count"]).await;
    let study = add_study(&app, &description(inline(&[&es384_key("forms")]))).await;
    let pages = [
        "/summary".to_string(),
        "/types".into(),
        "/types/step_count".into(),
        "/apps".into(),
        format!("/apps/{app_id}"),
        "/access".into(),
        "/studies".into(),
        format!("/studies/{study}"),
        "/import".into(),
        "/settings".into(),
    ];
    let mut actions = std::collections::BTreeSet::new();
    let mut csrf = None;
    for path in &pages {
        let (status, html) = app.owner_page(path).await;
        assert_eq!(status, 200, "{path}");
        csrf = csrf.or_else(|| hidden_field(&html, "csrf_token"));
        actions.extend(post_actions(&html));
    }
    let csrf = csrf.unwrap();
    // Lock, delete, move, pin, register, grants, mint, revoke, revoke all,
    // erase, passphrase, recovery key, consent, withdraw.
    assert!(actions.len() >= 12, "{actions:?}");
    let before = everything_forms_change(&app, &study).await;
    for action in &actions {
        let r = app
            .owner_form(
                action,
                &[("csrf_token", &csrf)],
                Some("https://evil.example"),
            )
            .await;
        assert_eq!(r.status(), 401, "{action} from another site");
        let r = app
            .owner_form(action, &[("csrf_token", &"0".repeat(csrf.len()))], None)
            .await;
        assert_eq!(r.status(), 403, "{action} with another token");
    }
    assert_eq!(everything_forms_change(&app, &study).await, before);

    // Locked, no page opens but the home page (to unlock).
    let r = post_form(&app, "/lock", &csrf, None).await;
    assert_eq!(r.status(), 303);
    for path in &pages {
        let (status, html) = app.owner_page(path).await;
        assert_ne!(status, 200, "{path} while locked");
        assert!(!html.contains("Pedometer"), "{path}: {html}");
    }
    assert_eq!(app.owner_page("/").await.0, 200);
    app.stop().await;
}

both_backends!(
    every_form_on_every_owner_page_refuses_foreign_posts,
    the_owner_sees_today_this_week_and_each_type,
    page_forms_delete_and_lock_only_from_the_owners_pages,
    moving_a_source_up_changes_the_chart,
    pinned_types_come_first_and_outlive_a_restart,
);
