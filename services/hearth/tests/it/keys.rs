//! The owner's keys: passphrase change, the recovery key, key-file slots for
//! unattended unlock, key-slot parameters that cannot be tampered with, a
//! store from before key slots, and no secret of any of them at rest.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{find, raw_bytes, secret_file, verify};
use crate::support::{steps, Backend, TestApp, TestDatabase, PASSPHRASE};
use serde_json::{json, Value};

both_backends!(
    passphrase_change_keeps_the_data_and_retires_the_old_passphrase,
    recovery_key_unlocks_and_sets_a_new_passphrase,
    re_created_recovery_key_invalidates_the_old_one,
    key_file_slot_unlocks_at_start_until_revoked,
    tampered_kdf_parameters_are_refused,
    store_from_before_key_slots_moves_to_them,
    no_secret_of_the_key_slots_at_rest,
    passphrase_and_recovery_commands_talk_to_the_server,
);

const NEW_PASSPHRASE: &str = "a new and longer passphrase";
const MARKER_VALUE: f64 = 4711.0815;

/// A new store set up over HTTP; returns the app and its recovery key.
async fn set_up(db: &TestDatabase) -> (TestApp, String) {
    let mut app = TestApp::start(db).await;
    let code = app.store.setup_code().expect("store is new");
    let r = app
        .post_json(
            "/v1/setup",
            &json!({ "setup_code": code, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    app.token = Some(body["token"].as_str().unwrap().to_string());
    let recovery = body["recovery_key"]
        .as_str()
        .expect("recovery key")
        .to_string();
    assert_eq!(recovery.split('-').count(), 9, "{recovery}");
    (app, recovery)
}

async fn unlock_with(app: &mut TestApp, body: Value) -> reqwest::Response {
    // Failed attempts back off per client: let the last one's delay pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = app.post_json("/v1/unlock", &body).await;
    if r.status() == 200 {
        let session: Value = r.json().await.unwrap();
        app.token = Some(session["token"].as_str().unwrap().to_string());
        return app.get("/readyz").await;
    }
    r
}

async fn lock(app: &TestApp) {
    assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
}

async fn code_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_string())
}

async fn write_marker(app: &TestApp) {
    let r = app.write(vec![steps(1, MARKER_VALUE), steps(2, 1.0)]).await;
    assert_eq!(r.status(), 201);
}

async fn assert_marker_readable(app: &TestApp) {
    let s = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(s["count"], 2);
    assert_eq!(s["sum"].as_f64(), Some(MARKER_VALUE + 1.0));
}

async fn passphrase_change_keeps_the_data_and_retires_the_old_passphrase(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (mut app, _) = set_up(&db).await;
    write_marker(&app).await;

    // A wrong current passphrase, a weak new one, both at once: refused.
    let r = app
        .post_json(
            "/v1/owner/passphrase",
            &json!({ "passphrase": "not the passphrase", "new_passphrase": NEW_PASSPHRASE }),
        )
        .await;
    assert_eq!(code_of(r).await, (401, "wrong_passphrase".into()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = app
        .post_json(
            "/v1/owner/passphrase",
            &json!({ "passphrase": PASSPHRASE, "new_passphrase": "short" }),
        )
        .await;
    assert_eq!(code_of(r).await, (400, "invalid_input".into()));
    let r = app
        .post_json(
            "/v1/owner/passphrase",
            &json!({ "new_passphrase": NEW_PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 400);
    // Only the owner.
    let r = app
        .client
        .post(app.url("/v1/owner/passphrase"))
        .json(&json!({ "passphrase": PASSPHRASE, "new_passphrase": NEW_PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = app
        .post_json(
            "/v1/owner/passphrase",
            &json!({ "passphrase": PASSPHRASE, "new_passphrase": NEW_PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    lock(&app).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    assert_eq!(code_of(r).await, (401, "wrong_passphrase".into()));
    let r = unlock_with(&mut app, json!({ "passphrase": NEW_PASSPHRASE })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;

    // After a restart too; and only the passphrase slot changed.
    app.stop().await;
    let mut app = TestApp::start(&db).await;
    let r = unlock_with(&mut app, json!({ "passphrase": NEW_PASSPHRASE })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;
    let slots = app.get_json("/v1/owner/keyslots").await;
    assert_eq!(
        slots,
        json!({ "slots": [{ "id": 1, "kind": "passphrase" }, { "id": 2, "kind": "recovery" }] })
    );
    let (code, out) = verify(
        &db,
        Some(&secret_file(
            db.dir.path(),
            "verify-passphrase",
            NEW_PASSPHRASE,
        )),
    );
    assert_eq!(code, 0, "{out}");
}

async fn recovery_key_unlocks_and_sets_a_new_passphrase(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (app, recovery) = set_up(&db).await;
    write_marker(&app).await;
    app.stop().await;

    // The passphrase is lost. The recovery key, as typed by a person.
    let mut app = TestApp::start(&db).await;
    let typo = format!("{}Z", &recovery[..recovery.len() - 1]);
    let typo = if typo == recovery {
        format!("{}Y", &recovery[..recovery.len() - 1])
    } else {
        typo
    };
    let r = unlock_with(&mut app, json!({ "recovery_key": typo })).await;
    assert_eq!(code_of(r).await, (400, "invalid_input".into()));
    let r = unlock_with(
        &mut app,
        json!({ "passphrase": PASSPHRASE, "recovery_key": recovery }),
    )
    .await;
    assert_eq!(r.status(), 400, "one secret at a time");
    let typed = recovery.to_lowercase().replace('-', " ");
    let r = unlock_with(&mut app, json!({ "recovery_key": typed })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;

    let r = app
        .post_json(
            "/v1/owner/passphrase",
            &json!({ "recovery_key": recovery, "new_passphrase": NEW_PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    lock(&app).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    assert_eq!(r.status(), 401);
    let r = unlock_with(&mut app, json!({ "passphrase": NEW_PASSPHRASE })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;
    // The recovery key still works: changing the passphrase left it alone.
    lock(&app).await;
    let r = unlock_with(&mut app, json!({ "recovery_key": recovery })).await;
    assert_eq!(r.status(), 200);
}

async fn re_created_recovery_key_invalidates_the_old_one(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (mut app, old) = set_up(&db).await;
    write_marker(&app).await;
    let r = app
        .post_json(
            "/v1/owner/recovery",
            &json!({ "passphrase": "not the passphrase" }),
        )
        .await;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = app
        .post_json("/v1/owner/recovery", &json!({ "passphrase": PASSPHRASE }))
        .await;
    assert_eq!(r.status(), 200);
    let new = r.json::<Value>().await.unwrap()["recovery_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    lock(&app).await;
    let r = unlock_with(&mut app, json!({ "recovery_key": old })).await;
    assert_eq!(code_of(r).await, (401, "wrong_recovery_key".into()));
    let r = unlock_with(&mut app, json!({ "recovery_key": new })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;
}

/// Runs `hearth keyslot …` against the test server.
fn keyslot_cli(app: &TestApp, pass: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("keyslot")
        .arg("--server")
        .arg(&app.base)
        .arg("--passphrase-file")
        .arg(pass)
        .args(args)
        .output()
        .expect("run hearth keyslot")
}

async fn key_file_slot_unlocks_at_start_until_revoked(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (app, _) = set_up(&db).await;
    write_marker(&app).await;
    let pass = secret_file(db.dir.path(), "passphrase", PASSPHRASE);
    let key_file = db.dir.path().join("unlock.key");

    let out = keyslot_cli(&app, &pass, &["add", "--file", key_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = added["id"].as_i64().unwrap();
    assert!(id > 2);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let contents = std::fs::read_to_string(&key_file).unwrap();
    assert!(!contents.contains(PASSPHRASE));
    // An existing file is never overwritten.
    let again = keyslot_cli(&app, &pass, &["add", "--file", key_file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), contents);

    let out = keyslot_cli(&app, &pass, &["list"]);
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed["slots"],
        json!([
            { "id": 1, "kind": "passphrase" },
            { "id": 2, "kind": "recovery" },
            { "id": id, "kind": "key_file" },
        ])
    );
    app.stop().await;

    // The key file unlocks at start; the passphrase in a key file no longer does.
    let mut args = db.serve_args();
    args.unlock_key_file = Some(key_file.clone());
    let app = TestApp::start_with(args.clone()).await;
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Unlocked);
    app.stop().await;
    let mut with_passphrase = db.serve_args();
    with_passphrase.unlock_key_file = Some(pass.clone());
    let refused = hearth::startup::Application::build(&with_passphrase)
        .await
        .err()
        .expect("a passphrase key file is refused once key slots exist");
    assert!(
        format!("{refused:#}").contains("keyslot add"),
        "{refused:#}"
    );

    // Revoked: the file no longer opens the store.
    let mut app = TestApp::start(&db).await;
    assert_eq!(
        unlock_with(&mut app, json!({ "passphrase": PASSPHRASE }))
            .await
            .status(),
        200
    );
    assert_marker_readable(&app).await;
    let r = app.delete("/v1/owner/keyslots/1").await;
    assert_eq!(
        r.status(),
        404,
        "the passphrase slot is changed, never revoked"
    );
    let out = keyslot_cli(&app, &pass, &["revoke", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.delete(&format!("/v1/owner/keyslots/{id}"))
            .await
            .status(),
        404
    );
    app.stop().await;
    let refused = hearth::startup::Application::build(&args)
        .await
        .err()
        .expect("a revoked key file is refused");
    assert!(format!("{refused:#}").contains("key file"), "{refused:#}");
}

/// Runs `sql` on the test database directly, as someone with the disk would.
async fn raw_sql(db: &TestDatabase, sql: &str) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

async fn tampered_kdf_parameters_are_refused(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (app, _) = set_up(&db).await;
    write_marker(&app).await;
    app.stop().await;

    // Out of bounds: refused before any allocation, with a clear answer,
    // and the server keeps running.
    raw_sql(
        &db,
        "UPDATE keyslots SET kdf_memory_kib = 4294967295 WHERE kind = 'passphrase'",
    )
    .await;
    let mut app = TestApp::start(&db).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 500);
    assert_eq!(body["code"], "key_slot_invalid");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("out of bounds"), "{detail}");
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;

    // In bounds but changed: the wrap no longer authenticates.
    raw_sql(
        &db,
        "UPDATE keyslots SET kdf_memory_kib = 512 WHERE kind = 'passphrase'",
    )
    .await;
    let mut app = TestApp::start(&db).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    assert_eq!(r.status(), 401);
    app.stop().await;

    // Back as it was, it opens again: nothing else was harmed.
    raw_sql(
        &db,
        "UPDATE keyslots SET kdf_memory_kib = 256 WHERE kind = 'passphrase'",
    )
    .await;
    let mut app = TestApp::start(&db).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;
}

/// Turns a store back into one from before key slots: the root key wrapped
/// under the passphrase in the keyring table, no slots.
async fn make_legacy(db: &TestDatabase, app: &TestApp) {
    use hearth::crypto;
    let storage = app.store.storage().clone();
    let root = hearth::lock::open_data_key(&*storage, PASSPHRASE)
        .await
        .unwrap()
        .unwrap();
    let keyring = storage.keyring().await.unwrap().unwrap();
    let kek = crypto::derive_kek(PASSPHRASE.as_bytes(), &keyring.salt, keyring.kdf).unwrap();
    let wrapped = hex::encode(root.wrap(&kek));
    let literal = match db.backend {
        Backend::Sqlite => format!("X'{wrapped}'"),
        Backend::Postgres => format!("'\\x{wrapped}'::bytea"),
    };
    raw_sql(
        db,
        &format!(
            "DELETE FROM keyslots; INSERT INTO keyring (key_id, wrapped_key) VALUES (1, {literal})"
        ),
    )
    .await;
}

async fn store_from_before_key_slots_moves_to_them(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (app, _) = set_up(&db).await;
    write_marker(&app).await;
    make_legacy(&db, &app).await;
    app.stop().await;

    // A passphrase key file, as such stores used, unlocks it at start and
    // moves the wrap into a passphrase slot.
    let pass = secret_file(db.dir.path(), "passphrase", PASSPHRASE);
    let mut args = db.serve_args();
    args.unlock_key_file = Some(pass);
    let app = TestApp::start_with(args).await;
    assert_eq!(app.store.state(), hearth::lock::LockStateName::Unlocked);
    let keyring = app.store.storage().keyring().await.unwrap().unwrap();
    assert!(keyring.wrapped_keys.is_empty(), "the old wrap is gone");
    assert_eq!(keyring.keyslots.len(), 1);
    assert_eq!(keyring.keyslots[0].kind, "passphrase");
    app.stop().await;

    // From now on slots alone open it; the owner makes a recovery key.
    let mut app = TestApp::start(&db).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;
    let r = app
        .post_json("/v1/owner/recovery", &json!({ "passphrase": PASSPHRASE }))
        .await;
    assert_eq!(r.status(), 200);
    let recovery = r.json::<Value>().await.unwrap()["recovery_key"]
        .as_str()
        .unwrap()
        .to_string();
    lock(&app).await;
    let r = unlock_with(&mut app, json!({ "recovery_key": recovery })).await;
    assert_eq!(r.status(), 200);
}

async fn no_secret_of_the_key_slots_at_rest(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (app, first_recovery) = set_up(&db).await;
    write_marker(&app).await;
    let r = app
        .post_json(
            "/v1/owner/passphrase",
            &json!({ "passphrase": PASSPHRASE, "new_passphrase": NEW_PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .post_json(
            "/v1/owner/recovery",
            &json!({ "passphrase": NEW_PASSPHRASE }),
        )
        .await;
    let second_recovery = r.json::<Value>().await.unwrap()["recovery_key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post_json(
            "/v1/owner/keyslots",
            &json!({ "passphrase": NEW_PASSPHRASE }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let key_file = r.json::<Value>().await.unwrap()["key_file"]
        .as_str()
        .unwrap()
        .to_string();
    let key_part = key_file.trim().rsplit(':').next().unwrap().to_string();
    use base64::Engine;
    let key_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&key_part)
        .unwrap();

    let haystack = raw_bytes(&db, "keyslots");
    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("old passphrase", PASSPHRASE.as_bytes().to_vec()),
        ("new passphrase", NEW_PASSPHRASE.as_bytes().to_vec()),
        ("first recovery key", first_recovery.as_bytes().to_vec()),
        ("second recovery key", second_recovery.as_bytes().to_vec()),
        ("key file", key_part.as_bytes().to_vec()),
        ("key file bytes", key_bytes.clone()),
        ("marker value", MARKER_VALUE.to_le_bytes().to_vec()),
        ("marker text", b"4711.0815".to_vec()),
    ];
    let hex: Vec<(&str, Vec<u8>)> = needles
        .iter()
        .map(|(n, b)| (*n, hex::encode(b).into_bytes()))
        .collect();
    needles.extend(hex);
    for (name, needle) in needles {
        assert!(
            !find(&haystack, &needle),
            "{name} found in the raw database"
        );
    }
    // The search is not vacuous: the slots are there, and the data reads.
    assert!(find(&haystack, b"key_file"));
    assert_marker_readable(&app).await;
}

async fn passphrase_and_recovery_commands_talk_to_the_server(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (mut app, first_recovery) = set_up(&db).await;
    write_marker(&app).await;
    let dir = db.dir.path();
    let old = secret_file(dir, "old-passphrase", PASSPHRASE);
    let new = secret_file(dir, "new-passphrase", NEW_PASSPHRASE);
    let hearth = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .output()
            .expect("run hearth")
    };
    let out = hearth(&[
        "passphrase".as_ref(),
        "--server".as_ref(),
        app.base.as_ref(),
        "--passphrase-file".as_ref(),
        old.as_os_str(),
        "--new-passphrase-file".as_ref(),
        new.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `hearth recovery` with the new passphrase prints a new key; the first
    // one stops working.
    let out = hearth(&[
        "recovery".as_ref(),
        "--server".as_ref(),
        app.base.as_ref(),
        "--passphrase-file".as_ref(),
        new.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second_recovery = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(second_recovery.split('-').count(), 9, "{second_recovery}");

    // The lost-passphrase flow through the command: the recovery key sets
    // the passphrase back.
    let rk = secret_file(dir, "recovery-key", &second_recovery);
    let out = hearth(&[
        "passphrase".as_ref(),
        "--server".as_ref(),
        app.base.as_ref(),
        "--recovery-key-file".as_ref(),
        rk.as_os_str(),
        "--new-passphrase-file".as_ref(),
        old.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    lock(&app).await;
    let r = unlock_with(&mut app, json!({ "recovery_key": first_recovery })).await;
    assert_eq!(r.status(), 401);
    let r = unlock_with(&mut app, json!({ "passphrase": NEW_PASSPHRASE })).await;
    assert_eq!(r.status(), 401);
    // A second failure in a row doubles the back-off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = unlock_with(&mut app, json!({ "passphrase": PASSPHRASE })).await;
    assert_eq!(r.status(), 200);
    assert_marker_readable(&app).await;
}
