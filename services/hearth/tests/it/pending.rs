//! Writes while locked: accepted (`202`) sealed to the store's public key,
//! kept durably, merged exactly once at the next unlock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::{find, init_store, owner_token, passphrase_file, raw_bytes, spawn_server};
use crate::support::{sample, steps, Backend, TestApp, TestDatabase, PASSPHRASE};
use serde_json::{json, Value};

both_backends!(
    locked_store_accepts_app_writes_and_merges_them_at_unlock,
    kill_9_while_locked_loses_no_accepted_write,
    nothing_of_a_pending_write_is_readable_at_rest,
    flipped_byte_is_reported_and_the_rest_merges,
    merged_batch_found_again_is_not_written_twice,
    sealed_store_refuses_writes,
    refusals_while_locked_are_those_of_an_unlocked_store,
    pending_limits_answer_clear_problems,
    sync_id_across_lock_and_unlock_adds_once,
    a_refused_batch_stays_while_those_beside_it_leave,
);

/// An app that may write steps and glucose (and read steps); its token.
async fn writer_app(app: &TestApp) -> (String, String) {
    let reg = app
        .register_app("Pedometer", "http://127.0.0.1/cb", false)
        .await;
    let id = reg["id"].as_str().unwrap().to_string();
    let token = app
        .mint(&id, &["step_count"], &["step_count", "blood_glucose"])
        .await;
    (id, token)
}

async fn lock(app: &TestApp) {
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Locked);
}

/// Unlocks; returns the answer's body (with the merge report).
async fn unlock(app: &mut TestApp) -> Value {
    let r = app
        .post_json("/v1/unlock", &json!({ "passphrase": PASSPHRASE }))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    app.token = Some(body["token"].as_str().unwrap().to_string());
    body
}

async fn accepted(r: reqwest::Response) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body
}

fn sync_ids(samples: &[Value]) -> Vec<String> {
    samples
        .iter()
        .map(|s| s["sync_id"].as_str().unwrap().to_string())
        .collect()
}

async fn locked_store_accepts_app_writes_and_merges_them_at_unlock(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    assert_eq!(
        app.as_token(&token)
            .write(vec![steps(0, 1.0)])
            .await
            .status(),
        201
    );
    lock(&app).await;

    let first: Vec<Value> = (1..=3).map(|m| steps(m, 2.0)).collect();
    let second: Vec<Value> = (4..=5).map(|m| steps(m, 3.0)).collect();
    let body = accepted(app.as_token(&token).write(first.clone()).await).await;
    // The count, and nothing an app could correlate.
    assert_eq!(body, json!({ "accepted": 3 }));
    accepted(app.as_token(&token).write(second.clone()).await).await;
    let totals = app.store.pending().totals();
    assert_eq!(totals.batches, 2);
    assert!(totals.bytes > 0);

    // Reads stay closed while locked.
    let r = app
        .as_token(&token)
        .get("/v1/statistics?type=step_count")
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "store_locked");

    let body = unlock(&mut app).await;
    let report = &body["pending"];
    assert_eq!(report["merged_batches"], 2, "{body}");
    assert_eq!(report["merged_samples"], 5);
    assert_eq!(report["unopened"], json!([]));
    assert_eq!(report["refused"], json!([]));
    assert_eq!(report["waiting"], 0);
    assert_eq!(app.store.pending().totals().batches, 0);

    let s = app
        .as_token(&token)
        .get_json("/v1/statistics?type=step_count")
        .await;
    assert_eq!(
        (s["count"].as_u64(), s["sum"].as_f64()),
        (Some(6), Some(13.0))
    );
    // Attributed to the app that wrote them, as an unlocked write is.
    let listed = app.list_all("step_count", 100).await;
    let all: Vec<String> = sync_ids(&first)
        .into_iter()
        .chain(sync_ids(&second))
        .collect();
    for s in &listed {
        let id = s["sync_id"].as_str().unwrap().to_string();
        if all.contains(&id) {
            assert_eq!(s["source"]["app"], listed[0]["source"]["app"]);
        }
    }
    // A second unlock of an open store merges nothing and reports nothing.
    let again = unlock(&mut app).await;
    assert!(again.get("pending").is_none(), "{again}");
}

async fn post(base: &str, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut rb = reqwest::Client::new().post(format!("{base}{path}"));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.json(body).send().await.unwrap()
}

async fn kill_9_while_locked_loses_no_accepted_write(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let key_file = passphrase_file(db.dir.path());
    init_store(&db, &key_file);
    let mut server = spawn_server(&db, &key_file);
    let owner = owner_token(&server.base).await;
    let r = post(
        &server.base,
        "/v1/apps",
        Some(&owner),
        &json!({
            "name": "Pedometer", "purpose": "counts steps",
            "privacy_policy_url": "https://app.example/privacy",
            "redirect_uris": ["http://127.0.0.1/cb"], "client_type": "public",
        }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let app_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = post(
        &server.base,
        &format!("/v1/apps/{app_id}/credentials"),
        Some(&owner),
        &json!({ "name": "script", "write": ["step_count"] }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post(&server.base, "/v1/lock", Some(&owner), &json!({}))
            .await
            .status(),
        204
    );

    let acked: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (acked, attempted) = (acked.clone(), attempted.clone());
        let (base, token) = (server.base.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for round in 0.. {
                let batch: Vec<Value> = (0..50)
                    .map(|i| steps(w * 1_000_000 + round * 50 + i, 1.0))
                    .collect();
                attempted.lock().unwrap().push(batch.clone());
                let sent = client
                    .post(format!("{base}/v1/samples"))
                    .bearer_auth(&token)
                    .json(&json!({ "samples": batch }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 202 => acked.lock().unwrap().push(batch),
                    Ok(r) => panic!(
                        "a write while locked answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ),
                    Err(_) => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 40 {
        assert!(
            !writers.iter().any(|w| w.is_finished()),
            "a writer stopped before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();

    // The key file unlocks at start: the merge runs then.
    let mut server = spawn_server(&db, &key_file);
    let owner = owner_token(&server.base).await;
    let client = reqwest::Client::new();
    let mut stored = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = client
            .get(format!(
                "{}/v1/samples?type=step_count&limit=1000{cursor}",
                server.base
            ))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for s in page["samples"].as_array().unwrap() {
            stored.push(s["sync_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no sample stored twice");
    for batch in &acked {
        for id in sync_ids(batch) {
            assert!(unique.contains(&id), "an accepted write was lost");
        }
    }
    for batch in &attempted {
        let present = sync_ids(batch)
            .iter()
            .filter(|id| unique.contains(id))
            .count();
        assert!(
            present == 0 || present == batch.len(),
            "partial batch: {present}"
        );
    }
    // Nothing waits any more.
    let raw = RawDb::open(&db).await;
    assert_eq!(raw.pending_seqs().await, Vec::<i64>::new());
    raw.close().await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Direct access to the database, as an attacker with the file has.
enum RawDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawDb {
    async fn open(db: &TestDatabase) -> RawDb {
        match db.backend {
            Backend::Sqlite => RawDb::Sqlite(sqlx::SqlitePool::connect(&db.url).await.unwrap()),
            Backend::Postgres => RawDb::Postgres(sqlx::PgPool::connect(&db.url).await.unwrap()),
        }
    }

    async fn pending_seqs(&self) -> Vec<i64> {
        let sql = "SELECT seq FROM pending_writes ORDER BY seq";
        match self {
            RawDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            RawDb::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    async fn pending_body(&self, seq: i64) -> Vec<u8> {
        match self {
            RawDb::Sqlite(p) => sqlx::query_scalar("SELECT body FROM pending_writes WHERE seq = ?")
                .bind(seq)
                .fetch_one(p)
                .await
                .unwrap(),
            RawDb::Postgres(p) => {
                sqlx::query_scalar("SELECT body FROM pending_writes WHERE seq = $1")
                    .bind(seq)
                    .fetch_one(p)
                    .await
                    .unwrap()
            }
        }
    }

    async fn set_pending_body(&self, seq: i64, body: &[u8]) {
        match self {
            RawDb::Sqlite(p) => {
                sqlx::query("UPDATE pending_writes SET body = ? WHERE seq = ?")
                    .bind(body)
                    .bind(seq)
                    .execute(p)
                    .await
                    .unwrap();
            }
            RawDb::Postgres(p) => {
                sqlx::query("UPDATE pending_writes SET body = $1 WHERE seq = $2")
                    .bind(body)
                    .bind(seq)
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
    }

    /// Puts a batch back as a crash before its removal would have left it.
    async fn insert_pending(&self, body: &[u8]) {
        match self {
            RawDb::Sqlite(p) => {
                sqlx::query("INSERT INTO pending_writes (body) VALUES (?)")
                    .bind(body)
                    .execute(p)
                    .await
                    .unwrap();
            }
            RawDb::Postgres(p) => {
                sqlx::query("INSERT INTO pending_writes (body) VALUES ($1)")
                    .bind(body)
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
    }

    async fn close(self) {
        match self {
            RawDb::Sqlite(p) => p.close().await,
            RawDb::Postgres(p) => p.close().await,
        }
    }
}

const MARKER_TEXT: &str = "PendingMarker-r8Kq2Z";
const MARKER_VALUE: f64 = 4321.987;
const MARKER_GLUCOSE: f64 = 98.7654;

async fn nothing_of_a_pending_write_is_readable_at_rest(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (app_id, token) = writer_app(&app).await;
    lock(&app).await;
    let mut marked = steps(7, MARKER_VALUE);
    marked["metadata"] = json!({ "pending_note": MARKER_TEXT });
    marked["device"] = json!({ "name": "WristMarker-p3Lx" });
    let sync_id = marked["sync_id"].as_str().unwrap().to_string();
    let glucose = sample("blood_glucose", 8, MARKER_GLUCOSE, "mg/dL");
    accepted(app.as_token(&token).write(vec![marked, glucose]).await).await;

    let haystack = raw_bytes(&db, "pending_writes");
    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("metadata text", MARKER_TEXT.as_bytes().to_vec()),
        ("metadata key", b"pending_note".to_vec()),
        ("device name", b"WristMarker-p3Lx".to_vec()),
        ("value text", b"4321.987".to_vec()),
        ("value LE", MARKER_VALUE.to_le_bytes().to_vec()),
        ("value BE", MARKER_VALUE.to_be_bytes().to_vec()),
        ("glucose LE", MARKER_GLUCOSE.to_le_bytes().to_vec()),
        ("glucose text", b"98.7654".to_vec()),
        ("type name", b"blood_glucose".to_vec()),
        ("other type name", b"step_count".to_vec()),
        ("sync id", sync_id.as_bytes().to_vec()),
        ("app id", app_id.as_bytes().to_vec()),
        ("token", token.as_bytes().to_vec()),
    ];
    let hex: Vec<(&str, Vec<u8>)> = needles
        .iter()
        .map(|(n, b)| (*n, hex::encode(b).into_bytes()))
        .collect();
    needles.extend(hex);
    for (name, needle) in needles {
        assert!(
            !find(&haystack, &needle),
            "{name} of a pending write found in the raw database"
        );
    }
    let raw = RawDb::open(&db).await;
    assert_eq!(raw.pending_seqs().await.len(), 1, "the batch is stored");
    raw.close().await;

    // The markers are really there once unlocked (the search is not vacuous).
    unlock(&mut app).await;
    let s = app.get_json("/v1/statistics?type=blood_glucose").await;
    assert_eq!(s["max"], MARKER_GLUCOSE);
    let listed = app.list_all("step_count", 100).await;
    let marked = listed.iter().find(|s| s["sync_id"] == sync_id.as_str());
    assert_eq!(marked.unwrap()["metadata"]["pending_note"], MARKER_TEXT);
}

async fn flipped_byte_is_reported_and_the_rest_merges(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    lock(&app).await;
    for m in 0..3 {
        accepted(app.as_token(&token).write(vec![steps(m, 10.0)]).await).await;
    }
    let raw = RawDb::open(&db).await;
    let seqs = raw.pending_seqs().await;
    assert_eq!(seqs.len(), 3);
    let bad = seqs[1];
    let mut body = raw.pending_body(bad).await;
    let at = body.len() / 2;
    body[at] ^= 0x01;
    raw.set_pending_body(bad, &body).await;

    let report = unlock(&mut app).await["pending"].clone();
    assert_eq!(report["unopened"], json!([bad]), "{report}");
    assert_eq!(report["merged_batches"], 2);
    assert_eq!(report["waiting"], 1);
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(
        (s["count"].as_u64(), s["sum"].as_f64()),
        (Some(2), Some(20.0))
    );
    // Kept, and named again at the next unlock.
    assert_eq!(raw.pending_seqs().await, vec![bad]);
    lock(&app).await;
    let report = unlock(&mut app).await["pending"].clone();
    assert_eq!(report["unopened"], json!([bad]));
    assert_eq!(report["merged_batches"], 0);
    raw.close().await;
}

async fn merged_batch_found_again_is_not_written_twice(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    lock(&app).await;
    // No sync ids: only the ids given on arrival can tell it was merged.
    let plain: Vec<Value> = (0..4)
        .map(|m| {
            let mut s = steps(m, 5.0);
            s.as_object_mut().unwrap().remove("sync_id");
            s
        })
        .collect();
    accepted(app.as_token(&token).write(plain).await).await;
    let raw = RawDb::open(&db).await;
    let seq = raw.pending_seqs().await[0];
    let sealed = raw.pending_body(seq).await;
    unlock(&mut app).await;
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["count"], 4);

    // Found again after its merge (as a store that removed batches after
    // their append could leave one after a crash).
    lock(&app).await;
    raw.insert_pending(&sealed).await;
    let report = unlock(&mut app).await["pending"].clone();
    assert_eq!(report["merged_batches"], 1, "{report}");
    assert_eq!(report["waiting"], 0);
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["count"], 4, "merged once");
    assert!(raw.pending_seqs().await.is_empty());
    raw.close().await;
}

async fn sealed_store_refuses_writes(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    app.stop().await;

    let app = TestApp::start(&db).await;
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Sealed);
    let r = app.as_token(&token).write(vec![steps(0, 1.0)]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "store_sealed");
    let raw = RawDb::open(&db).await;
    assert!(raw.pending_seqs().await.is_empty());
    raw.close().await;
}

/// The status and body of an answer.
async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn refusals_while_locked_are_those_of_an_unlocked_store(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    let mut unknown_unit = steps(1, 1.0);
    unknown_unit["unit"] = json!("furlong");
    let bad_requests = vec![
        vec![sample("heart_rate", 0, 60.0, "count/min")],
        vec![steps(0, 1.0), sample("heart_rate", 0, 60.0, "count/min")],
        vec![unknown_unit],
        vec![sample("no_such_type", 0, 1.0, "count")],
        vec![],
    ];
    let mut unlocked = Vec::new();
    for batch in &bad_requests {
        unlocked.push(answer(app.as_token(&token).write(batch.clone()).await).await);
    }
    assert_eq!(unlocked[0].0, 403, "{:?}", unlocked[0]);
    assert_eq!(unlocked[0].1["code"], "write_not_authorized");
    lock(&app).await;
    for (batch, expected) in bad_requests.iter().zip(&unlocked) {
        let got = answer(app.as_token(&token).write(batch.clone()).await).await;
        assert_eq!(&got, expected);
    }
    assert_eq!(app.store.pending().totals().batches, 0, "nothing was kept");
    // A token nobody knows gets the lock state, as before.
    let r = app.as_token("not-a-token").write(vec![steps(0, 1.0)]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "store_locked");
}

async fn pending_limits_answer_clear_problems(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.pending.max_pending_batches = 2;
    args.pending.max_pending_bytes = 64 * 1024;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    let (_, token) = writer_app(&app).await;
    lock(&app).await;

    // Bytes: a batch that would not fit is refused whole.
    let big: Vec<Value> = (0..2000).map(|m| steps(m, 1.0)).collect();
    let (status, body) = answer(app.as_token(&token).write(big).await).await;
    assert_eq!((status, body["code"].as_str()), (507, Some("pending_full")));
    // Batches.
    accepted(app.as_token(&token).write(vec![steps(0, 1.0)]).await).await;
    accepted(app.as_token(&token).write(vec![steps(1, 1.0)]).await).await;
    let (status, body) = answer(app.as_token(&token).write(vec![steps(2, 1.0)]).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("pending_batches_full"))
    );
    assert_eq!(app.store.pending().totals().batches, 2);

    // An unlock makes room.
    unlock(&mut app).await;
    lock(&app).await;
    accepted(app.as_token(&token).write(vec![steps(3, 1.0)]).await).await;
    unlock(&mut app).await;
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["count"], 3);
}

async fn sync_id_across_lock_and_unlock_adds_once(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    let kept = steps(0, 4.0);
    let replaced = steps(1, 5.0);
    let r = app
        .as_token(&token)
        .write(vec![kept.clone(), replaced.clone()])
        .await;
    assert_eq!(r.status(), 201);
    lock(&app).await;

    let fresh = steps(2, 6.0);
    let mut newer = replaced.clone();
    newer["value"] = json!(50.0);
    newer["sync_version"] = json!(2);
    // The same sample again, twice; a newer version; a new one, twice.
    accepted(app.as_token(&token).write(vec![kept.clone()]).await).await;
    accepted(
        app.as_token(&token)
            .write(vec![kept.clone(), fresh.clone()])
            .await,
    )
    .await;
    accepted(app.as_token(&token).write(vec![newer]).await).await;
    accepted(app.as_token(&token).write(vec![fresh.clone()]).await).await;

    let report = unlock(&mut app).await["pending"].clone();
    assert_eq!(report["merged_batches"], 4, "{report}");
    assert_eq!(report["refused"], json!([]));
    let listed = app.list_all("step_count", 100).await;
    let ids = sync_ids(&listed);
    assert_eq!(ids.len(), 3, "{listed:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3);
    let value_of = |s: &Value| {
        listed
            .iter()
            .find(|l| l["sync_id"] == s["sync_id"])
            .map(|l| l["value"].as_f64().unwrap())
    };
    assert_eq!(value_of(&kept), Some(4.0));
    assert_eq!(value_of(&replaced), Some(50.0));
    assert_eq!(value_of(&fresh), Some(6.0));
    // And after the merge, the same write unlocked is a no-op.
    let r = app.as_token(&token).write(vec![fresh]).await;
    assert_eq!(r.status(), 200);
    // The batches that changed nothing left the pending table too.
    let raw = RawDb::open(&db).await;
    assert!(raw.pending_seqs().await.is_empty());
    raw.close().await;
}

/// Batches merge in one group: the refused one is kept, and every one the
/// log took leaves the pending table with the append that took it.
async fn a_refused_batch_stays_while_those_beside_it_leave(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (_, token) = writer_app(&app).await;
    lock(&app).await;
    let first = steps(0, 4.0);
    let mut clash = first.clone();
    clash["value"] = json!(9.0);
    let after = steps(1, 6.0);
    for batch in [vec![first.clone()], vec![clash], vec![after.clone()]] {
        accepted(app.as_token(&token).write(batch).await).await;
    }
    let raw = RawDb::open(&db).await;
    let seqs = raw.pending_seqs().await;
    assert_eq!(seqs.len(), 3);

    let report = unlock(&mut app).await["pending"].clone();
    assert_eq!(report["merged_batches"], 2, "{report}");
    assert_eq!(report["refused"][0]["seq"], seqs[1], "{report}");
    assert_eq!(raw.pending_seqs().await, vec![seqs[1]]);
    let listed = app.list_all("step_count", 100).await;
    let values: Vec<f64> = listed
        .iter()
        .map(|l| l["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values.len(), 2, "{listed:?}");
    assert!(values.contains(&4.0) && values.contains(&6.0), "{values:?}");
    raw.close().await;
}
