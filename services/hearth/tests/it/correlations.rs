//! Correlations are seen through their members: an app sees one only if it
//! reads a type among its members (or wrote it), only the members it reads,
//! and its metadata only if it reads every member's type. On every surface:
//! lists, reads by id, the change feed and the observer stream.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Backend, TestApp, TestDatabase};

both_backends!(correlations_show_only_what_their_members_allow);

/// A `food` entry at `minute` with these `(type, grams)` members.
fn food(minute: i64, members: &[(&str, f64)], meal: &str) -> Value {
    let mut s = crate::support::sample("food", minute, 0.0, "g");
    s.as_object_mut().unwrap().remove("value");
    s.as_object_mut().unwrap().remove("unit");
    s["members"] = members
        .iter()
        .map(|(t, g)| json!({ "type": t, "value": g, "unit": "g" }))
        .collect();
    s["metadata"] = json!({ "meal": meal });
    s
}

/// Each correlation of `page[key]` as (its meal, or its id when the
/// metadata is hidden; its member types; whether metadata shows), sorted.
fn by_meal(page: &Value, key: &str) -> Vec<(String, Vec<String>, bool)> {
    let mut out: Vec<(String, Vec<String>, bool)> = page[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let members = s["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["type"].as_str().unwrap().to_string())
                .collect();
            match s["metadata"]["meal"].as_str() {
                Some(meal) => (meal.to_string(), members, true),
                None => (s["id"].as_str().unwrap().to_string(), members, false),
            }
        })
        .collect();
    out.sort();
    out
}

/// Whether a `change` event arrives on `stream` within `within`.
async fn change_within(stream: &mut reqwest::Response, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Err(_) => return false,
            Ok(chunk) => {
                let chunk = chunk.unwrap().expect("the stream stays open");
                if String::from_utf8_lossy(&chunk).contains("event: change") {
                    return true;
                }
            }
        }
    }
}

async fn correlations_show_only_what_their_members_allow(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let sugar = "dietary_sugar";
    let caffeine = "dietary_caffeine";
    let cake = food(0, &[(sugar, 30.0)], "cake");
    let latte = food(1, &[(caffeine, 0.08), (sugar, 10.0)], "latte");
    let espresso = food(2, &[(caffeine, 0.06)], "espresso");
    let r = app
        .write(vec![cake.clone(), latte.clone(), espresso.clone()])
        .await;
    assert_eq!(r.status(), 201);
    // Hearth assigns the ids: map each entry, by its sync_id, to the id the
    // write answered.
    let written: Value = r.json().await.unwrap();
    let assigned: std::collections::HashMap<String, String> = [&cake, &latte, &espresso]
        .iter()
        .zip(written["ids"].as_array().unwrap())
        .map(|(s, id)| {
            (
                s["sync_id"].as_str().unwrap().to_string(),
                id.as_str().unwrap().to_string(),
            )
        })
        .collect();
    let id = |s: &Value| assigned[s["sync_id"].as_str().unwrap()].clone();
    let sample_id = |s: &Value| s["id"].as_str().unwrap().to_string();

    let reg = app
        .register_app("coffee", "https://coffee.example/cb", false)
        .await;
    let coffee_token = app
        .mint(reg["id"].as_str().unwrap(), &[caffeine], &["food", sugar])
        .await;
    let coffee = app.as_token(&coffee_token);
    // Its own sugar-only entry: it wrote it, so it sees all of it.
    let own = food(3, &[(sugar, 5.0)], "biscuit");
    assert_eq!(coffee.write(vec![own.clone()]).await.status(), 201);

    // The list: no cake; the latte with its caffeine only and no metadata.
    let list = coffee.get_json("/v1/samples?type=food").await;
    let seen = by_meal(&list, "samples");
    let mut expected = vec![
        ("biscuit".to_string(), vec![sugar.to_string()], true),
        ("espresso".to_string(), vec![caffeine.to_string()], true),
        (id(&latte), vec![caffeine.to_string()], false),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    // Page by page, the same entries in the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/samples?type=food&limit=1&cursor={c}"),
            None => "/v1/samples?type=food&limit=1".to_string(),
        };
        let page = coffee.get_json(&path).await;
        paged.extend(page["samples"].as_array().unwrap().iter().map(sample_id));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let listed: Vec<String> = list["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(sample_id)
        .collect();
    assert_eq!(paged, listed);

    // By id: the cake is as absent as an id never used.
    assert_eq!(
        coffee
            .get(&format!("/v1/samples/{}", id(&cake)))
            .await
            .status(),
        404
    );
    let one = coffee
        .get_json(&format!("/v1/samples/{}", id(&latte)))
        .await;
    assert!(one.get("metadata").is_none(), "{one}");
    assert_eq!(one["members"].as_array().unwrap().len(), 1);

    // The change feed: the same three, then only the visible deletion.
    let feed = coffee.get_json("/v1/changes?types=food").await;
    assert_eq!(by_meal(&feed, "added"), seen);
    let anchor = feed["anchor"].as_str().unwrap().to_string();
    assert_eq!(
        app.delete(&format!("/v1/samples/{}", id(&cake)))
            .await
            .status(),
        204
    );
    let quiet = coffee
        .get_json(&format!("/v1/changes?types=food&anchor={anchor}"))
        .await;
    assert_eq!(quiet["deleted"], json!([]));
    assert_eq!(
        app.delete(&format!("/v1/samples/{}", id(&latte)))
            .await
            .status(),
        204
    );
    let gone = coffee
        .get_json(&format!("/v1/changes?types=food&anchor={anchor}"))
        .await;
    assert_eq!(gone["deleted"][0]["id"], id(&latte));

    // The observer: silent for a sugar-only entry, a change for one with
    // caffeine.
    let mut stream = app
        .client
        .get(app.url("/v1/observe?types=food&heartbeat=60"))
        .bearer_auth(&coffee_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let ready = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&ready).contains("event: ready"));
    assert_eq!(
        app.write(vec![food(4, &[(sugar, 12.0)], "donut")])
            .await
            .status(),
        201
    );
    assert!(
        !change_within(&mut stream, Duration::from_millis(1500)).await,
        "a sugar-only entry must not fire"
    );
    assert_eq!(
        app.write(vec![food(5, &[(caffeine, 0.1)], "cola")])
            .await
            .status(),
        201
    );
    assert!(change_within(&mut stream, Duration::from_secs(5)).await);

    // Reading every member type shows the metadata too; reading none shows
    // nothing; the owner sees everything.
    let reg = app
        .register_app("diet", "https://diet.example/cb", false)
        .await;
    let both = app
        .mint(reg["id"].as_str().unwrap(), &[caffeine, sugar], &[])
        .await;
    let both_list = app.as_token(&both).get_json("/v1/samples?type=food").await;
    let metas: Vec<bool> = by_meal(&both_list, "samples")
        .into_iter()
        .map(|(_, _, has_meta)| has_meta)
        .collect();
    assert_eq!(metas.len(), 4, "espresso, biscuit, donut, cola");
    assert!(metas.iter().all(|&m| m));
    let reg = app
        .register_app("none", "https://none.example/cb", false)
        .await;
    let none = app.mint(reg["id"].as_str().unwrap(), &[], &[]).await;
    let none_list = app.as_token(&none).get_json("/v1/samples?type=food").await;
    assert_eq!(none_list["samples"], json!([]));
    let owner = app.get_json("/v1/samples?type=food").await;
    let owner_seen = by_meal(&owner, "samples");
    assert_eq!(owner_seen.len(), 4);
    assert!(owner_seen.iter().all(|(_, _, has_meta)| *has_meta));
    let donut = owner_seen.iter().find(|(m, _, _)| m == "donut").unwrap();
    assert_eq!(donut.1, vec![sugar.to_string()]);
}
