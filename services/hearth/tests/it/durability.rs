//! What survives restarts and crashes, what an attacker with the database
//! sees, and what tampering `hearth verify` and unlock catch.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::{
    find, init_store, owner_token, passphrase_file, raw_bytes, spawn_server, verify,
};
use crate::support::{sample, steps, Backend, TestApp, TestDatabase, PASSPHRASE};
use serde_json::{json, Value};

both_backends!(
    restart_comes_back_sealed_with_data_intact,
    unattended_key_file_unlocks_at_start,
    nothing_readable_at_rest,
    kill_9_loses_no_acknowledged_write,
    flipped_byte_is_named,
    deleted_record_is_named,
    swapped_records_are_named,
    cut_tail_is_named,
    forged_chain_fails_authentication,
    log_refuses_edits_through_the_schema,
    store_from_before_the_sqlx_migrator_opens,
);

async fn restart_comes_back_sealed_with_data_intact(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let batch: Vec<Value> = (0..500).map(|m| steps(m, 2.0)).collect();
    assert_eq!(app.write(batch).await.status(), 201);
    app.stop().await;

    let mut app = TestApp::start(&db).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["state"], "sealed");
    let r = app.get("/v1/statistics?type=step_count").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "store_sealed");
    let r = app
        .post_json("/v1/unlock", &json!({"passphrase": "not the passphrase"}))
        .await;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.unlock().await.status(), 200);
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(
        (s["count"].as_u64(), s["sum"].as_f64()),
        (Some(500), Some(1000.0))
    );
    assert_eq!(app.list_all("step_count", 1000).await.len(), 500);
}

async fn unattended_key_file_unlocks_at_start(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(app.write(vec![steps(0, 7.0)]).await.status(), 201);
    app.stop().await;

    let key_file = passphrase_file(db.dir.path());
    let mut args = db.serve_args();
    args.unlock_key_file = Some(key_file.clone());
    let app = TestApp::start_with(args.clone()).await;
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Unlocked);
    app.stop().await;

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = hearth::startup::Application::build(&args).await;
    assert!(refused.is_err(), "a key file readable by others is refused");
}

const MARKER_TEXT: &str = "MARKER-q7Zt9wXv";
const MARKER_VALUE: f64 = 8675.309;
const MARKER_GLUCOSE: f64 = 123.4567;
const MARKER_APP_NAME: &str = "AppName-Kx83Qp";
const MARKER_PURPOSE: &str = "Purpose-Wd72Lm charts your steps";
const MARKER_REDIRECT: &str = "https://redirect-zr41tn.example/cb";
const MARKER_CREDENTIAL: &str = "Credential-Hy65Vb";

/// Every encoding in which a marker could leak.
fn needles(id: uuid::Uuid) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("metadata text".into(), MARKER_TEXT.as_bytes().to_vec()),
        ("value text".into(), b"8675.309".to_vec()),
        ("glucose text".into(), b"123.4567".to_vec()),
        ("value LE".into(), MARKER_VALUE.to_le_bytes().to_vec()),
        ("value BE".into(), MARKER_VALUE.to_be_bytes().to_vec()),
        ("glucose LE".into(), MARKER_GLUCOSE.to_le_bytes().to_vec()),
        ("type name".into(), b"blood_glucose".to_vec()),
        ("other type name".into(), b"step_count".to_vec()),
        ("sample id".into(), id.to_string().into_bytes()),
        ("sample id bytes".into(), id.as_bytes().to_vec()),
        ("passphrase".into(), PASSPHRASE.as_bytes().to_vec()),
        ("metadata key".into(), b"clinic_note".to_vec()),
        ("app name".into(), MARKER_APP_NAME.as_bytes().to_vec()),
        ("app purpose".into(), MARKER_PURPOSE.as_bytes().to_vec()),
        ("redirect URI".into(), MARKER_REDIRECT.as_bytes().to_vec()),
        (
            "credential name".into(),
            MARKER_CREDENTIAL.as_bytes().to_vec(),
        ),
    ];
    // pg_dump writes bytea as hex.
    let hex: Vec<(String, Vec<u8>)> = out
        .iter()
        .map(|(n, b)| (format!("{n} (hex)"), hex::encode(b).into_bytes()))
        .collect();
    out.extend(hex);
    out
}

async fn nothing_readable_at_rest(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut marked = steps(5, MARKER_VALUE);
    let sync_id = marked["sync_id"].as_str().unwrap().to_string();
    marked["metadata"] = json!({ "clinic_note": MARKER_TEXT });
    let glucose = sample("blood_glucose", 6, MARKER_GLUCOSE, "mg/dL");
    let r = app.write(vec![marked, glucose]).await;
    assert_eq!(r.status(), 201);
    let id = uuid::Uuid::parse_str(r.json::<Value>().await.unwrap()["ids"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(app.delete(&format!("/v1/samples/{id}")).await.status(), 204);
    // An app registration, grants and a credential are encrypted too.
    let r = app
        .post_json(
            "/v1/apps",
            &json!({
                "name": MARKER_APP_NAME, "purpose": MARKER_PURPOSE,
                "privacy_policy_url": "https://app.example/privacy",
                "redirect_uris": [MARKER_REDIRECT], "client_type": "confidential",
            }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    let app_id = reg["id"].as_str().unwrap().to_string();
    let secret = reg["client_secret"].as_str().unwrap().to_string();
    let r = app
        .post_json(
            &format!("/v1/apps/{app_id}/credentials"),
            &json!({ "name": MARKER_CREDENTIAL, "read": ["blood_glucose"] }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let token: Value = r.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    let haystack = raw_bytes(&db, "events");
    let mut all = needles(id);
    for (name, value) in [
        ("app id", &app_id),
        ("sync id", &sync_id),
        ("client secret", &secret),
        ("credential", &token),
    ] {
        all.push((name.into(), value.as_bytes().to_vec()));
        all.push((format!("{name} (hex)"), hex::encode(value).into_bytes()));
    }
    for (name, needle) in all {
        assert!(
            !find(&haystack, &needle),
            "{name} found in the raw database"
        );
    }
    // The markers are really in the store (the search is not vacuous).
    let s = app.get_json("/v1/statistics?type=blood_glucose").await;
    assert_eq!(s["max"], MARKER_GLUCOSE);
    let got = app.get_json(&format!("/v1/apps/{app_id}")).await;
    assert_eq!(got["purpose"], MARKER_PURPOSE);
    let s = app
        .as_token(&token)
        .get_json("/v1/statistics?type=blood_glucose")
        .await;
    assert_eq!(s["max"], MARKER_GLUCOSE);
}

async fn kill_9_loses_no_acknowledged_write(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let key_file = passphrase_file(db.dir.path());
    init_store(&db, &key_file);
    let mut server = spawn_server(&db, &key_file);
    let token = owner_token(&server.base).await;

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
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(batch),
                    _ => return,
                }
            }
        }));
    }
    // Kill in the middle of the load, once a good number of writes landed.
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();

    let mut server = spawn_server(&db, &key_file);
    let token = owner_token(&server.base).await;
    let client = reqwest::Client::new();
    let mut stored = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = client
            .get(format!(
                "{}/v1/samples?type=step_count&limit=1000{cursor}",
                server.base
            ))
            .bearer_auth(&token)
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
        for s in batch {
            assert!(
                unique.contains(&s["sync_id"].as_str().unwrap().to_string()),
                "an acknowledged write was lost"
            );
        }
    }
    // Unacknowledged batches landed whole or not at all.
    for batch in &attempted {
        let present = batch
            .iter()
            .filter(|s| unique.contains(&s["sync_id"].as_str().unwrap().to_string()))
            .count();
        assert!(
            present == 0 || present == batch.len(),
            "partial batch: {present}"
        );
    }
    // Retrying an acknowledged batch changes nothing.
    let r = client
        .post(format!("{}/v1/samples", server.base))
        .bearer_auth(&token)
        .json(&json!({ "samples": acked[0] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["added"], 0);
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let (code, out) = verify(&db, Some(&key_file));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("result: ok"));
}

/// Direct access to the database, as an attacker with the file or a dump has.
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

    async fn exec(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            RawDb::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            RawDb::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
    }

    async fn drop_guards(&self) {
        let sql = match self {
            RawDb::Sqlite(_) => "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;",
            RawDb::Postgres(_) => "DROP TRIGGER events_append_only ON events;",
        };
        self.exec(sql).await.unwrap();
    }

    /// The `version` column of `table`, in order.
    async fn versions(&self, table: &str) -> Result<Vec<i64>, sqlx::Error> {
        let sql = format!("SELECT version FROM {table} ORDER BY version");
        match self {
            RawDb::Sqlite(p) => sqlx::query_scalar(&sql).fetch_all(p).await,
            RawDb::Postgres(p) => sqlx::query_scalar(&sql).fetch_all(p).await,
        }
    }

    async fn close(self) {
        match self {
            RawDb::Sqlite(p) => p.close().await,
            RawDb::Postgres(p) => p.close().await,
        }
    }

    fn bytes(&self, b: &[u8]) -> String {
        match self {
            RawDb::Sqlite(_) => format!("X'{}'", hex::encode(b)),
            RawDb::Postgres(_) => format!("'\\x{}'::bytea", hex::encode(b)),
        }
    }

    /// `(key_id, prev_hash, hash, body)` of record `seq`.
    async fn record(&self, seq: i64) -> (i64, Vec<u8>, Vec<u8>, Vec<u8>) {
        let sql = format!("SELECT key_id, prev_hash, hash, body FROM events WHERE seq = {seq}");
        match self {
            RawDb::Sqlite(p) => sqlx::query_as(&sql).fetch_one(p).await.unwrap(),
            RawDb::Postgres(p) => {
                let (k, a, b, c): (i32, Vec<u8>, Vec<u8>, Vec<u8>) =
                    sqlx::query_as(&sql).fetch_one(p).await.unwrap();
                (k as i64, a, b, c)
            }
        }
    }

    async fn set_record(&self, seq: i64, rec: &(i64, Vec<u8>, Vec<u8>, Vec<u8>)) {
        let sql = format!(
            "UPDATE events SET key_id = {}, prev_hash = {}, hash = {}, body = {} WHERE seq = {seq}",
            rec.0,
            self.bytes(&rec.1),
            self.bytes(&rec.2),
            self.bytes(&rec.3)
        );
        self.exec(&sql).await.unwrap();
    }
}

/// Hearth once kept its own record of applied migrations (`hearth_schema`);
/// a store created then opens under sqlx's migrator with its data, its
/// record moves into the migrator's table, and nothing is applied twice.
async fn store_from_before_the_sqlx_migrator_opens(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(app.write(vec![steps(0, 7.0)]).await.status(), 201);
    app.stop().await;

    // The same schema under the earlier bookkeeping, as that version left it.
    let raw = RawDb::open(&db).await;
    let applied = raw.versions("_sqlx_migrations").await.unwrap();
    assert!(!applied.is_empty());
    let legacy_table = match backend {
        Backend::Sqlite => "CREATE TABLE hearth_schema (version INTEGER PRIMARY KEY);",
        Backend::Postgres => "CREATE TABLE hearth_schema (version BIGINT PRIMARY KEY);",
    };
    raw.exec(&format!(
        "{legacy_table} INSERT INTO hearth_schema (version) SELECT version FROM _sqlx_migrations; \
         DROP TABLE _sqlx_migrations;"
    ))
    .await
    .unwrap();
    raw.close().await;

    for _ in 0..2 {
        let mut app = TestApp::start(&db).await;
        assert_eq!(app.unlock().await.status(), 200);
        let s = app.get_json("/v1/statistics?type=step_count").await;
        assert_eq!(
            (s["count"].as_u64(), s["sum"].as_f64()),
            (Some(1), Some(7.0))
        );
        app.stop().await;

        let raw = RawDb::open(&db).await;
        assert_eq!(raw.versions("_sqlx_migrations").await.unwrap(), applied);
        assert!(
            raw.versions("hearth_schema").await.is_err(),
            "the earlier table is gone once adopted"
        );
        raw.close().await;
    }
}

/// A stopped store with six records, one per write.
async fn store_with_six_records(backend: Backend) -> TestDatabase {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    for i in 0..6 {
        assert_eq!(
            app.write(vec![steps(i, 1.0), steps(i + 100, 2.0)])
                .await
                .status(),
            201
        );
    }
    app.stop().await;
    let (code, out) = verify(&db, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records checked: 6"), "{out}");
    db
}

/// `verify` (with and without the key) and unlock both name `seq`.
async fn assert_tamper_named(db: &TestDatabase, seq: u64) {
    let key_file = passphrase_file(db.dir.path());
    for key in [None, Some(key_file.as_path())] {
        let (code, out) = verify(db, key);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("first bad sequence number: {seq}\n")),
            "{out}"
        );
    }
    // Unlock from a snapshot checks the chain from the snapshot's record to
    // the head only (`verify` above checks all of it; the snapshots tests
    // cover tampering after a snapshot): without one, unlock replays the
    // whole log and must name the record as well.
    let raw = RawDb::open(db).await;
    raw.exec("DELETE FROM snapshots").await.unwrap();
    raw.close().await;
    let app = TestApp::start(db).await;
    let r = app
        .post_json("/v1/unlock", &json!({ "passphrase": PASSPHRASE }))
        .await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "log_tampered");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("record {seq}")),
        "{body}"
    );
    assert_ne!(app.store.state(), hearth::lock::LockStateName::Unlocked);
}

async fn flipped_byte_is_named(backend: Backend) {
    let db = store_with_six_records(backend).await;
    let raw = RawDb::open(&db).await;
    raw.drop_guards().await;
    let mut rec = raw.record(3).await;
    rec.3[20] ^= 0x01;
    raw.set_record(3, &rec).await;
    assert_tamper_named(&db, 3).await;
}

async fn deleted_record_is_named(backend: Backend) {
    let db = store_with_six_records(backend).await;
    let raw = RawDb::open(&db).await;
    raw.drop_guards().await;
    raw.exec("DELETE FROM events WHERE seq = 4").await.unwrap();
    assert_tamper_named(&db, 4).await;
}

async fn swapped_records_are_named(backend: Backend) {
    let db = store_with_six_records(backend).await;
    let raw = RawDb::open(&db).await;
    raw.drop_guards().await;
    let (two, three) = (raw.record(2).await, raw.record(3).await);
    raw.set_record(2, &three).await;
    raw.set_record(3, &two).await;
    assert_tamper_named(&db, 2).await;
}

async fn cut_tail_is_named(backend: Backend) {
    let db = store_with_six_records(backend).await;
    let raw = RawDb::open(&db).await;
    raw.drop_guards().await;
    raw.exec("DELETE FROM events WHERE seq >= 5").await.unwrap();
    assert_tamper_named(&db, 5).await;
}

async fn log_refuses_edits_through_the_schema(backend: Backend) {
    let db = store_with_six_records(backend).await;
    let raw = RawDb::open(&db).await;
    assert!(raw.exec("DELETE FROM events WHERE seq = 2").await.is_err());
    assert!(raw
        .exec("UPDATE events SET key_id = 9 WHERE seq = 2")
        .await
        .is_err());
    let (code, out) = verify(&db, None);
    assert_eq!(code, 0, "{out}");
}

/// An attacker who edits a record and recomputes every hash (no key needed)
/// passes the chain check, but the record no longer authenticates.
async fn forged_chain_fails_authentication(backend: Backend) {
    let db = store_with_six_records(backend).await;
    let raw = RawDb::open(&db).await;
    raw.drop_guards().await;
    let mut prev = raw.record(2).await.2;
    for seq in 3..=6 {
        let mut rec = raw.record(seq).await;
        if seq == 3 {
            rec.3[30] ^= 0x80;
        }
        rec.1 = prev.clone();
        rec.2 = hearth::log::chain::record_hash(
            seq as u64,
            rec.0 as u32,
            &rec.1.clone().try_into().unwrap(),
            &rec.3,
        )
        .to_vec();
        raw.set_record(seq, &rec).await;
        prev = rec.2.clone();
    }
    raw.exec(&format!(
        "UPDATE store_meta SET head_hash = {}",
        raw.bytes(&prev)
    ))
    .await
    .unwrap();

    // The high-water mark outside the database still knows the real last
    // record, so even a check without the key notices the new history.
    let (code, out) = verify(&db, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad sequence number: 6\n"), "{out}");
    std::fs::remove_file(db.dir.path().join("hearth.state")).unwrap();
    let (code, out) = verify(&db, None);
    assert_eq!(
        code, 0,
        "without the mark, the forged chain is consistent: {out}"
    );
    let key_file = passphrase_file(db.dir.path());
    let (code, out) = verify(&db, Some(&key_file));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad sequence number: 3\n"), "{out}");
    assert!(out.contains("failed authentication"), "{out}");
    let app = TestApp::start(&db).await;
    let r = app
        .post_json("/v1/unlock", &json!({ "passphrase": PASSPHRASE }))
        .await;
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("record 3"),
        "{body}"
    );
}
