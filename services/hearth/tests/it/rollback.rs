//! Rollback and truncation: the authenticated head and the high-water mark
//! catch an older copy of the database and a cut tail; the owner can accept
//! a deliberate restore, which is logged. Also backups, the Postgres
//! guards, core dumps, and reads in flight when the store locks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::process::{hearth_at, hearth_bin, passphrase_file, verify_at};
use crate::support::*;

both_backends!(
    older_copy_is_refused_until_the_restore_is_accepted,
    cut_tail_with_rewritten_head_is_refused,
    tampered_head_mac_is_refused,
    state_file_is_created_recreated_and_bound_to_its_store,
    backup_is_consistent_and_verifiable,
    reads_in_flight_at_lock_are_full_or_503,
);

/// `hearth verify` of the database at `url`, with the passphrase or without.
fn verify(db: &TestDatabase, url: &str, with_key: bool) -> (i32, String) {
    let key = passphrase_file(db.dir.path());
    verify_at(db, url, with_key.then_some(key.as_path()))
}

fn state_file(db: &TestDatabase) -> PathBuf {
    db.dir.path().join("hearth.state")
}

/// A server on `url` whose data directory (and state file) is `db`'s.
async fn start_on(db: &TestDatabase, url: &str) -> TestApp {
    let mut args = db.serve_args();
    args.storage.database_url = Some(url.to_string());
    TestApp::start_with(args).await
}

async fn write_batches(app: &TestApp, from: i64, n: i64) {
    for i in from..from + n {
        let r = app.write(vec![steps(i, 1.0), steps(i + 1000, 2.0)]).await;
        assert_eq!(r.status(), 201);
    }
}

async fn step_count(app: &TestApp) -> u64 {
    app.get_json("/v1/statistics?type=step_count").await["count"]
        .as_u64()
        .unwrap()
}

/// Unlock is refused with `409 rollback_detected`, naming `named`.
async fn assert_unlock_refused(db: &TestDatabase, url: &str, named: &[&str]) {
    let mut app = start_on(db, url).await;
    let r = app.unlock().await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rollback_detected", "{body}");
    let detail = body["detail"].as_str().unwrap();
    for n in named {
        assert!(detail.contains(n), "{n:?} not in {detail}");
    }
    assert_ne!(app.store.state(), hearth::lock::LockStateName::Unlocked);
    app.stop().await;
}

/// A copy of the stopped store's database; returns the URL that serves it.
pub(crate) async fn copy_database(db: &TestDatabase, name: &str) -> String {
    match db.backend {
        Backend::Sqlite => {
            let to = db.dir.path().join(format!("{name}.db"));
            // The WAL holds recent commits; the shared-memory index is
            // rebuilt from it on open.
            for suffix in ["", "-wal"] {
                let from = format!("{}{suffix}", db.sqlite_path().display());
                if Path::new(&from).exists() {
                    std::fs::copy(&from, format!("{}{suffix}", to.display())).unwrap();
                }
            }
            format!("sqlite://{}", to.display())
        }
        Backend::Postgres => {
            let (base, source) = db.url.rsplit_once('/').unwrap();
            let copy = format!("{source}_{name}");
            let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
            // The stopped server's pool may still be closing its connections.
            let mut tries = 0;
            loop {
                let made = sqlx::query(&format!("CREATE DATABASE {copy} TEMPLATE {source}"))
                    .execute(&admin)
                    .await;
                match made {
                    Ok(_) => break,
                    Err(_) if tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("copying the database: {e}"),
                }
            }
            admin.close().await;
            format!("{base}/{copy}")
        }
    }
}

/// Puts the copy at `copy_url` back in place of the store's database.
pub(crate) async fn restore_database(db: &TestDatabase, copy_url: &str) -> String {
    match db.backend {
        Backend::Sqlite => {
            let from = copy_url.trim_start_matches("sqlite://");
            for suffix in ["", "-wal", "-shm"] {
                let to = format!("{}{suffix}", db.sqlite_path().display());
                let _ = std::fs::remove_file(&to);
                if suffix == "-shm" {
                    continue;
                }
                let from = format!("{from}{suffix}");
                if Path::new(&from).exists() {
                    std::fs::copy(&from, &to).unwrap();
                }
            }
            db.url.clone()
        }
        // The older database is served under its own name, with the
        // store's data directory: the same as restoring it in place.
        Backend::Postgres => copy_url.to_string(),
    }
}

async fn older_copy_is_refused_until_the_restore_is_accepted(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    write_batches(&app, 0, 3).await;
    app.stop().await;
    let older = copy_database(&db, "older").await;

    // Further writes (a credential revoked, say) after the copy was taken.
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    write_batches(&app, 10, 2).await;
    app.stop().await;
    let (code, out) = verify(&db, &db.url, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records checked: 5"), "{out}");

    let url = restore_database(&db, &older).await;
    // The old copy's chain and head are intact; only the mark knows better.
    assert_unlock_refused(&db, &url, &["record 3", "record 5", "records 4 to 5"]).await;
    for with_key in [false, true] {
        let (code, out) = verify(&db, &url, with_key);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("first bad sequence number: 4\n"), "{out}");
        assert!(out.contains("rollback detected"), "{out}");
    }

    let key = passphrase_file(db.dir.path());
    let key = key.to_str().unwrap();
    let (code, out) = hearth_at(&db, &url, &["restore", "--passphrase-file", key]);
    assert_ne!(code, 0, "restore needs --accept-rollback: {out}");
    let (code, out) = hearth_at(
        &db,
        &url,
        &["restore", "--accept-rollback", "--passphrase-file", key],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the log ended at record 3, its high-water mark was record 5"),
        "{out}"
    );
    assert!(out.contains("logged as record 4"), "{out}");

    // Accepted: the restored store opens with its own data, and the
    // acceptance is a record of the log.
    let (code, out) = verify(&db, &url, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records checked: 4"), "{out}");
    assert!(out.contains("high-water mark: record 4"), "{out}");
    let mut app = start_on(&db, &url).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(step_count(&app).await, 6);
    write_batches(&app, 20, 1).await;
    assert_eq!(step_count(&app).await, 8);
    app.stop().await;
    let (code, out) = hearth_at(
        &db,
        &url,
        &["restore", "--accept-rollback", "--passphrase-file", key],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to accept"), "{out}");
}

/// Direct access to the database, as someone with the file or the server has.
async fn exec(db: &TestDatabase, sql: &str) -> Result<(), sqlx::Error> {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let r = sqlx::raw_sql(sql).execute(&pool).await.map(|_| ());
            pool.close().await;
            r
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let r = sqlx::raw_sql(sql).execute(&pool).await.map(|_| ());
            pool.close().await;
            r
        }
    }
}

fn bytes_literal(backend: Backend, b: &[u8]) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", hex::encode(b)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(b)),
    }
}

async fn hash_of(db: &TestDatabase, seq: i64) -> Vec<u8> {
    let sql = format!("SELECT hash FROM events WHERE seq = {seq}");
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let h = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            h
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let h = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            h
        }
    }
}

async fn store_with_records(backend: Backend, n: i64) -> TestDatabase {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    write_batches(&app, 0, n).await;
    app.stop().await;
    db
}

async fn cut_tail_with_rewritten_head_is_refused(backend: Backend) {
    let db = store_with_records(backend, 6).await;
    let drop_guards = match backend {
        Backend::Sqlite => "DROP TRIGGER events_no_delete;",
        Backend::Postgres => "DROP TRIGGER events_append_only ON events;",
    };
    exec(&db, drop_guards).await.unwrap();
    let five = hash_of(&db, 5).await;
    exec(
        &db,
        &format!(
            "DELETE FROM events WHERE seq = 6; UPDATE store_meta SET head_seq = 5, head_hash = {};",
            bytes_literal(backend, &five)
        ),
    )
    .await
    .unwrap();

    // The chain is consistent; without the key, the mark shows it behind.
    let (code, out) = verify(&db, &db.url, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad sequence number: 6\n"), "{out}");
    assert!(out.contains("records 6 to 6 are missing"), "{out}");
    assert_unlock_refused(&db, &db.url, &["head (record 5) fails authentication"]).await;

    // Without the state file the head's MAC alone catches it.
    std::fs::remove_file(state_file(&db)).unwrap();
    let (code, out) = verify(&db, &db.url, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad sequence number: 5\n"), "{out}");
    assert!(out.contains("fails authentication"), "{out}");
    assert_unlock_refused(&db, &db.url, &["head (record 5) fails authentication"]).await;
    assert!(!state_file(&db).exists(), "a refused unlock writes no mark");
}

async fn tampered_head_mac_is_refused(backend: Backend) {
    let db = store_with_records(backend, 3).await;
    exec(
        &db,
        &format!(
            "UPDATE store_meta SET head_mac = {}",
            bytes_literal(backend, &[7u8; 32])
        ),
    )
    .await
    .unwrap();
    let (code, out) = verify(&db, &db.url, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad sequence number: 3\n"), "{out}");
    assert_unlock_refused(&db, &db.url, &["head (record 3) fails authentication"]).await;

    // Removing the MAC of a store that has a mark is no way around it.
    exec(&db, "UPDATE store_meta SET head_mac = NULL")
        .await
        .unwrap();
    assert_unlock_refused(&db, &db.url, &["record 3"]).await;
}

async fn state_file_is_created_recreated_and_bound_to_its_store(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let path = state_file(&db);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "created at setup, owner-only");
    write_batches(&app, 0, 2).await;
    app.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\nseq 2\n"), "moved with the commits: {text}");

    // Missing on an existing store: unlock goes on (with a warning) and
    // puts the mark back at the current head.
    std::fs::remove_file(&path).unwrap();
    let (code, out) = verify(&db, &db.url, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("a rollback cannot be detected"), "{out}");
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("\nseq 2\n"));
    app.stop().await;

    // Another store's state file is refused, not overwritten.
    let other = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&other).await;
    write_batches(&app, 0, 1).await;
    app.stop().await;
    std::fs::copy(state_file(&other), &path).unwrap();
    let mut app = TestApp::start(&db).await;
    let r = app.unlock().await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("belongs to another store"),
        "{body}"
    );
    app.stop().await;
    let (code, out) = verify(&db, &db.url, true);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("belongs to another store"), "{out}");

    // An edited mark is refused too.
    let mut app = TestApp::start(&db).await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(app.unlock().await.status(), 200);
    app.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\nseq 2\n", "\nseq 1\n")).unwrap();
    let mut app = TestApp::start(&db).await;
    let r = app.unlock().await;
    assert_eq!(r.status(), 409);
    app.stop().await;
}

async fn backup_is_consistent_and_verifiable(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    write_batches(&app, 0, 3).await;
    let file = db.dir.path().join("backup.db");
    let target = file.to_str().unwrap();
    // Taken while the server runs and keeps writing.
    let writing = async {
        for i in 0..5 {
            assert_eq!(app.write(vec![steps(100 + i, 3.0)]).await.status(), 201);
        }
    };
    let backup = tokio::task::spawn_blocking({
        let url = db.url.clone();
        let dir = db.dir.path().to_path_buf();
        let target = target.to_string();
        move || {
            let out = Command::new(hearth_bin())
                .args(["backup", &target, "--database-url", &url, "--data-dir"])
                .arg(&dir)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        }
    });
    let ((code, out), ()) = tokio::join!(async { backup.await.unwrap() }, writing);
    app.stop().await;
    assert_eq!(code, 0, "{out}");
    if backend == Backend::Postgres {
        assert!(out.contains("pg_dump"), "{out}");
        assert!(!file.exists());
        return;
    }
    assert!(out.contains("backup written"), "{out}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&file).unwrap();

    let key = passphrase_file(db.dir.path());
    let key = key.to_str().unwrap();
    for args in [
        vec!["verify", "--backup", target],
        vec!["verify", "--backup", target, "--passphrase-file", key],
    ] {
        let (code, out) = hearth_at(&db, &db.url, &args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("result: ok"), "{out}");
    }
    let (_, out) = hearth_at(
        &db,
        &db.url,
        &["verify", "--backup", target, "--passphrase-file", key],
    );
    assert!(out.contains("head: authenticated"), "{out}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "checking never changes it"
    );

    // A backup with a flipped byte fails.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{target}"))
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP TRIGGER events_no_update; \
         UPDATE events SET body = zeroblob(length(body)) WHERE seq = 2;",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let (code, out) = hearth_at(&db, &db.url, &["verify", "--backup", target]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("first bad sequence number: 2\n"), "{out}");
}

/// Reads race a lock: every answer is the full, correct one or `503
/// store_locked`; never an empty or partial `200`.
async fn reads_in_flight_at_lock_are_full_or_503(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    // An app's credential: app tokens live across lock, as apps keep
    // syncing in the background.
    let registered = app
        .register_app("Pedometer", "https://app.example/cb", false)
        .await;
    let token = app
        .mint(
            registered["id"].as_str().unwrap(),
            &["step_count"],
            &["step_count"],
        )
        .await;
    let batch: Vec<Value> = (0..2000).map(|i| steps(i, 1.0)).collect();
    let r = app
        .as_token(&token)
        .post_json("/v1/samples", &json!({ "samples": batch }))
        .await;
    assert_eq!(r.status(), 201);
    let stats_path = "/v1/statistics?type=step_count";
    let page_path = "/v1/samples?type=step_count&limit=500";
    let expected_stats: Value = app
        .as_token(&token)
        .get(stats_path)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expected_stats["count"], 2000);
    let expected_page: Value = app
        .as_token(&token)
        .get(page_path)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expected_page["samples"].as_array().unwrap().len(), 500);

    // Rounds go on until some reads have met the lock (the lock lands at
    // a slightly different point of each round's reads), at most 32.
    let mut answers = 0;
    let mut refused = 0;
    let mut rounds = 0;
    for round in 0..32u64 {
        if rounds >= 4 && refused > 0 {
            break;
        }
        rounds += 1;
        let mut reads = tokio::task::JoinSet::new();
        for i in 0..64 {
            let client = app.client.clone();
            let token = token.clone();
            let url = app.url(if i % 2 == 0 { stats_path } else { page_path });
            reads.spawn(async move {
                let r = client.get(url).bearer_auth(token).send().await.unwrap();
                let status = r.status().as_u16();
                (i, status, r.json::<Value>().await.unwrap())
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(2 * (round % 4))).await;
        assert_eq!(app.post_json("/v1/lock", &json!({})).await.status(), 204);
        while let Some(joined) = reads.join_next().await {
            let (i, status, body) = joined.unwrap();
            answers += 1;
            match status {
                200 if i % 2 == 0 => assert_eq!(body, expected_stats),
                200 => assert_eq!(body["samples"], expected_page["samples"]),
                503 => {
                    assert_eq!(body["code"], "store_locked", "{body}");
                    refused += 1;
                }
                s => panic!("unexpected {s}: {body}"),
            }
        }
        assert_eq!(app.unlock().await.status(), 200);
    }
    assert_eq!(answers, 64 * rounds);
    assert!(refused > 0, "some reads met the lock");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_truncate_and_commits_synchronously() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let (_, name) = db.url.rsplit_once('/').unwrap();
    let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
    // Sessions default to asynchronous commit: appends must not inherit it.
    sqlx::query(&format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    ))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let app = TestApp::unlocked(&db).await;
    exec(
        &db,
        "CREATE TABLE commit_modes (mode TEXT NOT NULL);
         CREATE FUNCTION note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO commit_modes VALUES (current_setting('synchronous_commit'));
             RETURN NULL;
         END $$;
         CREATE TRIGGER note_commit_mode AFTER INSERT ON events
             FOR EACH STATEMENT EXECUTE FUNCTION note_commit_mode();",
    )
    .await
    .unwrap();
    write_batches(&app, 0, 3).await;
    app.stop().await;

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let default: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(default, "off", "the database default is asynchronous");
    let modes: Vec<String> = sqlx::query_scalar("SELECT mode FROM commit_modes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(modes, vec!["on"; 3], "every append commits synchronously");

    let truncated = sqlx::raw_sql("TRUNCATE events").execute(&pool).await;
    let error = truncated.expect_err("TRUNCATE is refused").to_string();
    assert!(error.contains("append-only"), "{error}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 3);
    pool.close().await;
}

#[test]
fn the_server_runs_without_core_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(hearth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("HEARTH_IDLE_LOCK_SECS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The setup code on the console means startup got past hardening.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("Setup code"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], &["0", "0"], "{core}");
}

#[test]
fn hardening_clears_the_dumpable_flag() {
    // Each test runs in its own process: this changes only this one.
    assert!(!hearth::hardening::core_dumps_disabled());
    hearth::hardening::disable_core_dumps().unwrap();
    assert!(hearth::hardening::core_dumps_disabled());
}
