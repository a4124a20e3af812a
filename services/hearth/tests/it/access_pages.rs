//! The owner's access log page: apps' reads and writes from the audit,
//! newest first, narrowed by kind, app, type and date, paged with the
//! audit's cursor, with every name an app chose escaped; only the owner
//! opens it.

use serde_json::Value;

use crate::support::*;

both_backends!(
    the_access_log_lists_filters_and_pages_what_apps_did,
    the_access_log_is_the_owners_alone,
);

/// The table's rows, as (class, text without tags).
fn rows(html: &str) -> Vec<(String, String)> {
    let Some(start) = html.find("<tbody>") else {
        return Vec::new();
    };
    let end = html[start..].find("</tbody>").unwrap() + start;
    html[start..end]
        .split("<tr class=\"")
        .skip(1)
        .map(|row| {
            let class = row[..row.find('"').unwrap()].to_string();
            let mut text = String::new();
            let mut in_tag = false;
            for c in row[row.find('>').unwrap() + 1..].chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            (class, text)
        })
        .collect()
}

fn today(app: &TestApp) -> String {
    chrono::DateTime::from_timestamp_micros(app.store.apps().clock.now_us())
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

async fn the_access_log_lists_filters_and_pages_what_apps_did(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let r = app
        .write(vec![
            steps(0, 10.0),
            sample("heart_rate", 0, 60.0, "count/min"),
        ])
        .await;
    assert_eq!(r.status(), 201);
    let pedometer = app
        .register_app("<b>Pedometer</b>", "https://p.example/cb", false)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let p_token = app
        .mint(&pedometer, &["step_count", "heart_rate"], &["step_count"])
        .await;
    let cardio = app
        .register_app("Cardio", "https://c.example/cb", false)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c_token = app.mint(&cardio, &["heart_rate"], &[]).await;
    for (token, ty) in [
        (&p_token, "step_count"),
        (&p_token, "heart_rate"),
        (&c_token, "heart_rate"),
    ] {
        let r = app
            .as_token(token)
            .get(&format!("/v1/samples?type={ty}"))
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = app.as_token(&p_token).write(vec![steps(5, 1.0)]).await;
    assert_eq!(r.status(), 201);

    let (status, html) = app.owner_page("/access").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/access\""), "the nav links the log");
    let all = rows(&html);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(!html.contains("<b>Pedometer</b>"), "names are escaped");
    assert!(
        html.contains("&#60;b&#62;Pedometer&#60;/b&#62;")
            || html.contains("&lt;b&gt;Pedometer&lt;/b&gt;")
    );
    let day = today(&app);
    assert!(
        all.iter().all(|(_, text)| text.starts_with(&day)),
        "{all:?}"
    );
    // The same entries in the same order as the API's, newest first.
    let api: Value = app.get_json("/v1/audit").await;
    let kinds: Vec<String> = api["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().replace('_', "-"))
        .collect();
    let classes: Vec<String> = all.iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(classes, kinds);

    let count = |query: String| {
        let app = &app;
        async move {
            let (status, html) = app.owner_page(&format!("/access?{query}")).await;
            assert_eq!(status, 200, "{query}: {html}");
            rows(&html)
        }
    };
    let reads = count("kind=app_read".into()).await;
    assert_eq!(reads.len(), 3);
    assert!(reads
        .iter()
        .all(|(c, t)| c == "app-read" && t.contains(" read")));
    let writes = count("kind=app_write&app=&type=".into()).await;
    assert_eq!(writes.len(), 1, "empty fields are no filter");
    assert!(writes[0].1.contains("Step count"), "{writes:?}");
    assert_eq!(count(format!("app={cardio}")).await.len(), 1);
    assert_eq!(count("type=heart_rate".into()).await.len(), 2);
    assert_eq!(
        count(format!("app={pedometer}&type=heart_rate"))
            .await
            .len(),
        1
    );
    assert_eq!(count(format!("from={day}&to={day}")).await.len(), 4);
    assert_eq!(count("from=2100-01-01".into()).await.len(), 0);
    assert_eq!(count("to=2000-01-01".into()).await.len(), 0);
    let (status, html) = app.owner_page("/access?kind=app_read").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<option value=\"app_read\" selected>"),
        "the filter stays chosen"
    );

    // A page at a time, following "Older entries", keeping the filter.
    let mut seen = Vec::new();
    let mut path = "/access?kind=app_read&limit=1".to_string();
    loop {
        let (status, html) = app.owner_page(&path).await;
        assert_eq!(status, 200, "{html}");
        seen.extend(rows(&html));
        let Some(at) = html.find("id=\"next-page\"") else {
            break;
        };
        let href_start = html[..at].rfind("href=\"").unwrap() + 6;
        let href_end = html[href_start..].find('"').unwrap() + href_start;
        path = html[href_start..href_end]
            .replace("&#38;", "&")
            .replace("&amp;", "&");
        assert!(path.contains("kind=app_read"), "{path}");
        assert!(seen.len() <= 3, "paging does not end");
    }
    assert_eq!(seen, reads);

    // Bad filters are answered plainly.
    let (status, html) = app.owner_page("/access?from=yesterday").await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("YYYY-MM-DD"));
    let (status, _) = app.owner_page("/access?kind=everything").await;
    assert_eq!(status, 400);
    let (status, _) = app.owner_page("/access?cursor=nonsense").await;
    assert_eq!(status, 400);
}

async fn the_access_log_is_the_owners_alone(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let r = TestApp::no_redirect_client()
        .get(app.url("/access"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let reg = app
        .register_app("Reader", "https://r.example/cb", false)
        .await;
    let token = app
        .mint(reg["id"].as_str().unwrap(), &["step_count"], &[])
        .await;
    app.token = Some(token);
    let (status, html) = app.owner_page("/access").await;
    assert_eq!(status, 401, "an app's token is no owner session: {html}");
}
