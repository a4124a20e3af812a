//! Sealed snapshots: unlock from a snapshot and the records after it builds
//! exactly what a replay of the whole log builds; a snapshot that does not
//! open, or does not match the log, is passed over; nothing of one is
//! readable in the raw database. Snapshots carry what the log says about
//! data keys, go with an erasure, and never outlive an accepted rollback.

use std::process::Command;
use std::time::Duration;

use hearth::keys::data_keys::DataKeys;
use hearth::lock::open_data_key;
use hearth::log::replay::{replay_from, Walked};
use hearth::projection::snapshot::{self, canonical_dump};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::process::{passphrase_file, verify};
use crate::support::{sample, steps, Backend, TestApp, TestDatabase, PASSPHRASE};

both_backends!(
    snapshot_and_tail_equal_a_full_replay,
    lock_takes_a_snapshot_that_unlock_reads,
    a_corrupted_snapshot_falls_back_to_full_replay,
    a_snapshot_not_matching_the_log_is_not_used,
    snapshots_are_taken_every_n_records,
    discarding_snapshots_leaves_only_a_new_one,
    nothing_of_a_snapshot_is_readable_at_rest,
    tampering_after_a_snapshot_is_refused_at_unlock,
    erasure_discards_snapshots_and_unlock_from_the_next_keeps_it_erased,
    an_erasure_after_the_snapshot_unlock_starts_from_drops_its_samples,
    accepted_rollback_leaves_no_snapshot_of_the_lost_records,
    writes_merged_at_unlock_are_in_the_next_snapshot,
    stored_chunks_of_any_size_read_back_whole,
    a_log_read_in_many_pages_replays_whole,
);

/// Direct access to the database, as someone holding the file or a dump has.
enum RawDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawDb {
    async fn open(db: &TestDatabase) -> RawDb {
        RawDb::at(db.backend, &db.url).await
    }

    async fn at(backend: Backend, url: &str) -> RawDb {
        match backend {
            Backend::Sqlite => RawDb::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap()),
            Backend::Postgres => RawDb::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            RawDb::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            RawDb::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap()
    }

    /// `(seq, chunk, body)` of every stored snapshot chunk.
    async fn chunks(&self) -> Vec<(i64, i64, Vec<u8>)> {
        let sql = "SELECT seq, chunk, body FROM snapshots ORDER BY seq, chunk";
        match self {
            RawDb::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
            RawDb::Postgres(p) => {
                let rows: Vec<(i64, i32, Vec<u8>)> =
                    sqlx::query_as(sql).fetch_all(p).await.unwrap();
                rows.into_iter().map(|(s, c, b)| (s, c as i64, b)).collect()
            }
        }
    }

    async fn drop_guards(&self) {
        self.exec(match self {
            RawDb::Sqlite(_) => "DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;",
            RawDb::Postgres(_) => "DROP TRIGGER events_append_only ON events;",
        })
        .await
    }

    fn bytes(&self, b: &[u8]) -> String {
        match self {
            RawDb::Sqlite(_) => format!("X'{}'", hex::encode(b)),
            RawDb::Postgres(_) => format!("'\\x{}'::bytea", hex::encode(b)),
        }
    }

    async fn close(self) {
        match self {
            RawDb::Sqlite(p) => p.close().await,
            RawDb::Postgres(p) => p.close().await,
        }
    }
}

/// The canonical dumps of a full replay and of the newest snapshot plus
/// the records after it; `None` for the second when no snapshot opens.
async fn both_paths(app: &TestApp) -> (String, Option<(u64, String)>) {
    let ((full, _), snapshot) = both_walks(app).await;
    (full, snapshot.map(|(at, dump, _)| (at, dump)))
}

/// [`both_paths`], with what each path learnt about data keys.
async fn both_walks(app: &TestApp) -> ((String, Walked), Option<(u64, String, Walked)>) {
    let storage = app.store.storage().clone();
    let root = open_data_key(&*storage, PASSPHRASE)
        .await
        .unwrap()
        .expect("passphrase opens the keyring");
    let keys = DataKeys::load(&*storage, root).await.unwrap();
    let now = app.store.apps().clock.now_us();
    let (p, r, walked) = replay_from(&storage, &keys, now, None).await.unwrap();
    let full = (canonical_dump(&p, &r), walked);
    let Some(start) = snapshot::load_newest(&*storage, keys.root()).await else {
        return (full, None);
    };
    let at = start.at.seq;
    let (p, r, walked) = replay_from(&storage, &keys, now, Some(start))
        .await
        .unwrap();
    (full, Some((at, canonical_dump(&p, &r), walked)))
}

async fn head_seq(app: &TestApp) -> u64 {
    app.store.storage().head().await.unwrap().seq
}

async fn put_json(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(app.token.as_deref().unwrap())
        .json(body)
        .send()
        .await
        .unwrap()
}

/// One step of a random history.
#[derive(Clone, Debug)]
enum Op {
    /// A sample from source `source` (0: the owner), optionally with a sync
    /// id (and version), a device and metadata.
    Write {
        source: usize,
        heart: bool,
        minute: i64,
        value: u8,
        sync: Option<(u8, i64)>,
        device: Option<u8>,
        metadata: bool,
    },
    /// The owner deletes the `pick`-th sample written so far.
    Delete {
        pick: usize,
    },
    /// A correlation with members.
    Food {
        minute: i64,
        members: u8,
    },
    Priority {
        reversed: bool,
    },
    Characteristics {
        year: u16,
    },
    /// A new app with a credential.
    RegisterApp,
    /// A snapshot now.
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            0..3usize,
            any::<bool>(),
            0..300i64,
            any::<u8>(),
            proptest::option::of((0..4u8, 0..3i64)),
            proptest::option::of(0..3u8),
            any::<bool>(),
        )
            .prop_map(|(source, heart, minute, value, sync, device, metadata)| Op::Write {
                source,
                heart,
                minute,
                value,
                sync,
                device,
                metadata,
            }),
        2 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        1 => (0..300i64, 1..3u8).prop_map(|(minute, members)| Op::Food { minute, members }),
        1 => any::<bool>().prop_map(|reversed| Op::Priority { reversed }),
        1 => (1950..2000u16).prop_map(|year| Op::Characteristics { year }),
        1 => Just(Op::RegisterApp),
        1 => Just(Op::Snapshot),
    ]
}

/// Plays `ops` against a fresh store, with a snapshot after op `snap_at`.
async fn play(backend: Backend, ops: &[Op], snap_at: usize) -> (TestApp, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let types = ["step_count", "heart_rate", "food", "dietary_sugar"];
    let mut tokens = vec![app.token.clone().unwrap()];
    let register = |n: usize| format!("app{n}");
    for n in 0..2 {
        let reg = app
            .register_app(&register(n), &format!("https://app{n}.example/cb"), false)
            .await;
        tokens.push(app.mint(reg["id"].as_str().unwrap(), &[], &types).await);
    }
    let open = app.store.open_store().unwrap();
    let mut ids: Vec<String> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Write {
                source,
                heart,
                minute,
                value,
                sync,
                device,
                metadata,
            } => {
                let mut s = if *heart {
                    sample("heart_rate", *minute, 40.0 + *value as f64, "count/min")
                } else {
                    steps(*minute, *value as f64)
                };
                match sync {
                    Some((id, version)) => {
                        s["sync_id"] = json!(format!("s{id}"));
                        s["sync_version"] = json!(version);
                    }
                    None => {
                        s.as_object_mut().unwrap().remove("sync_id");
                    }
                }
                if let Some(d) = device {
                    s["device"] = json!({ "name": format!("d{d}"), "kind": "watch" });
                }
                if *metadata {
                    s["metadata"] = json!({ "note": format!("n{value}") });
                }
                let token = &tokens[*source % tokens.len()];
                let r = app.as_token(token).write(vec![s]).await;
                assert!(r.status().as_u16() < 500, "write: {}", r.status());
                if r.status().is_success() {
                    let body: Value = r.json().await.unwrap();
                    for id in body["ids"].as_array().into_iter().flatten() {
                        ids.push(id.as_str().unwrap().to_string());
                    }
                }
            }
            Op::Delete { pick } => {
                if !ids.is_empty() {
                    let id = ids[pick % ids.len()].clone();
                    let r = app.delete(&format!("/v1/samples/{id}")).await;
                    assert!(r.status().as_u16() < 500);
                }
            }
            Op::Food { minute, members } => {
                let mut s = sample("food", *minute, 0.0, "g");
                s.as_object_mut().unwrap().remove("value");
                s.as_object_mut().unwrap().remove("unit");
                let mut list = vec![json!({ "type": "dietary_sugar", "value": 12.5, "unit": "g" })];
                if *members > 1 {
                    list.push(json!({ "type": "dietary_caffeine", "value": 0.08, "unit": "g" }));
                }
                s["members"] = json!(list);
                let r = app.write(vec![s]).await;
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            }
            Op::Priority { reversed } => {
                let mut order = vec![json!({"source": "app0"}), json!({"source": "app1"})];
                if *reversed {
                    order.reverse();
                }
                let r = put_json(&app, "/v1/sources/priority", &json!({ "order": order })).await;
                assert!(r.status().is_success(), "priority: {}", r.status());
            }
            Op::Characteristics { year } => {
                let body = json!({ "date_of_birth": format!("{year}-03-01") });
                let r = put_json(&app, "/v1/characteristics", &body).await;
                assert!(r.status().is_success(), "characteristics: {}", r.status());
            }
            Op::RegisterApp => {
                let n = tokens.len() + 10;
                let reg = app
                    .register_app(&register(n), &format!("https://app{n}.example/cb"), false)
                    .await;
                tokens.push(app.mint(reg["id"].as_str().unwrap(), &[], &types).await);
            }
            Op::Snapshot => {
                open.snapshots.take_now().await.unwrap();
            }
        }
        if i == snap_at {
            open.snapshots.take_now().await.unwrap();
        }
    }
    (app, db)
}

/// Over random histories of writes, replacements by sync id, deletions,
/// correlations, priorities, characteristics and app registrations, the
/// newest snapshot and the records after it build what the whole log does.
async fn snapshot_and_tail_equal_a_full_replay(backend: Backend) {
    let cases = if backend == Backend::Sqlite { 12 } else { 6 };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(op(), 1..40),
        any::<prop::sample::Index>(),
    );
    let handle = tokio::runtime::Handle::current();
    runner
        .run(&strategy, |(ops, snap_at)| {
            let snap_at = snap_at.index(ops.len());
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let (app, _db) = play(backend, &ops, snap_at).await;
                    let (full, snapshot) = both_paths(&app).await;
                    let (at, from_snapshot) = snapshot.expect("a snapshot opens");
                    assert!(at > 0 && at <= head_seq(&app).await);
                    assert_eq!(full, from_snapshot, "snapshot at {at}");
                    app.stop().await;
                })
            });
            Ok(())
        })
        .unwrap();
}

/// Some samples and an app, so the state is not trivial.
async fn some_history(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for batch in 0..4 {
        let samples = (0..25).map(|m| steps(batch * 100 + m, m as f64)).collect();
        let r = app.write(samples).await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        ids.extend(
            body["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(
        app.delete(&format!("/v1/samples/{}", ids[3]))
            .await
            .status(),
        204
    );
    app.register_app("history", "https://history.example/cb", false)
        .await;
    ids
}

async fn lock(app: &TestApp) {
    let r = app.post_json("/v1/lock", &json!({})).await;
    assert!(r.status().is_success(), "lock: {}", r.status());
}

async fn lock_takes_a_snapshot_that_unlock_reads(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    let before = app.get_json("/v1/statistics?type=step_count").await;
    let head = head_seq(&app).await;
    lock(&app).await;
    let stored = app.store.storage().snapshots().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].at.seq, head, "taken at the head");
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.get_json("/v1/statistics?type=step_count").await, before);
    // Nothing new: locking again takes no second snapshot.
    lock(&app).await;
    assert_eq!(app.store.storage().snapshots().await.unwrap().len(), 1);
    // Two more snapshots: the newest two are kept.
    for minute in [1000, 1001] {
        assert_eq!(app.unlock().await.status(), 200);
        assert_eq!(app.write(vec![steps(minute, 1.0)]).await.status(), 201);
        lock(&app).await;
    }
    let stored = app.store.storage().snapshots().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].at.seq, head_seq(&app).await, "newest first");
    assert!(stored[1].at.seq < stored[0].at.seq);
    assert_eq!(app.unlock().await.status(), 200);
    let (full, snapshot) = both_paths(&app).await;
    assert_eq!(Some(full), snapshot.map(|(_, d)| d));
    // Shutdown takes one too.
    assert_eq!(app.write(vec![steps(1002, 1.0)]).await.status(), 201);
    let head = head_seq(&app).await;
    app.stop().await;
    let app = TestApp::start(&db).await;
    assert_eq!(
        app.store.storage().snapshots().await.unwrap()[0].at.seq,
        head
    );
    app.stop().await;
}

async fn a_corrupted_snapshot_falls_back_to_full_replay(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    let before = app.list_all("step_count", 50).await;
    lock(&app).await;
    let raw = RawDb::open(&db).await;
    let chunks = raw.chunks().await;
    assert_eq!(chunks.len(), 1);
    let (seq, chunk, mut body) = chunks.into_iter().next().unwrap();
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    raw.exec(&format!(
        "UPDATE snapshots SET body = {} WHERE seq = {seq} AND chunk = {chunk}",
        raw.bytes(&body)
    ))
    .await;
    raw.close().await;
    assert_eq!(app.unlock().await.status(), 200, "unlock still succeeds");
    assert_eq!(app.list_all("step_count", 50).await, before);
    let (_, snapshot) = both_paths(&app).await;
    assert!(snapshot.is_none(), "the flipped snapshot is not used");
    app.stop().await;
}

async fn a_snapshot_not_matching_the_log_is_not_used(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    let before = app.list_all("step_count", 50).await;
    lock(&app).await;
    let raw = RawDb::open(&db).await;
    let (seq, _, _) = raw.chunks().await.remove(0);
    // Another hash at its sequence number: not the record in the log.
    raw.exec(&format!(
        "UPDATE snapshots SET hash = {}",
        raw.bytes(&[7u8; 32])
    ))
    .await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.list_all("step_count", 50).await, before);
    assert!(both_paths(&app).await.1.is_none());
    lock(&app).await;
    // The snapshot at lock was retaken at the head; move it one record back,
    // with that record's hash: the seal binds where it was taken.
    let raw_seq = raw.chunks().await.remove(0).0;
    assert_eq!(raw_seq, seq, "nothing new: the same place");
    raw.exec("DELETE FROM snapshots").await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.write(vec![steps(2000, 3.0)]).await.status(), 201);
    lock(&app).await;
    let (seq, _, _) = raw.chunks().await.remove(0);
    let previous = app
        .store
        .storage()
        .records_after(seq as u64 - 2, 1)
        .await
        .unwrap()
        .remove(0);
    raw.exec(&format!(
        "UPDATE snapshots SET seq = {}, hash = {}",
        seq - 1,
        raw.bytes(&previous.hash)
    ))
    .await;
    raw.close().await;
    assert_eq!(app.unlock().await.status(), 200);
    assert!(both_paths(&app).await.1.is_none());
    assert_eq!(app.list_all("step_count", 50).await.len(), before.len() + 1);
    app.stop().await;
}

async fn snapshots_are_taken_every_n_records(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut args = db.serve_args();
    args.snapshot_every = 5;
    let mut app = TestApp::start_with(args).await;
    app.setup().await;
    for minute in 0..12 {
        assert_eq!(app.write(vec![steps(minute, 1.0)]).await.status(), 201);
    }
    // Waits for the background taker to catch up with the last writes
    // (one may still be under way when the first at 10 or more is stored).
    let mut waited = Duration::ZERO;
    let stored = loop {
        let stored = app.store.storage().snapshots().await.unwrap();
        let caught_up = app
            .store
            .snapshot_age()
            .is_some_and(|(behind, _)| behind < 5);
        let kept_up = stored.first().is_some_and(|s| s.at.seq >= 10);
        if (caught_up && kept_up) || waited > Duration::from_secs(20) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    };
    assert!(!stored.is_empty(), "a snapshot was taken in the background");
    assert!(
        stored[0].at.seq >= 10,
        "and kept up: {:?} (snapshots at {:?}, age {:?})",
        stored[0].at.seq,
        stored.iter().map(|s| s.at.seq).collect::<Vec<_>>(),
        app.store.snapshot_age(),
    );
    let (behind, _) = app.store.snapshot_age().expect("unlocked");
    assert!(behind < 5, "snapshot age {behind} records");
    let (full, snapshot) = both_paths(&app).await;
    assert_eq!(Some(full), snapshot.map(|(_, d)| d));
    app.stop().await;
}

async fn discarding_snapshots_leaves_only_a_new_one(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    lock(&app).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(app.write(vec![steps(900, 1.0)]).await.status(), 201);
    let open = app.store.open_store().unwrap();
    open.snapshots.take_now().await.unwrap();
    assert_eq!(app.store.storage().snapshots().await.unwrap().len(), 2);
    assert_eq!(app.write(vec![steps(901, 1.0)]).await.status(), 201);
    open.snapshots.discard_all_and_retake().await.unwrap();
    // The new one is taken in the background.
    let stored = snapshots_from(&app, head_seq(&app).await).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].at.seq, head_seq(&app).await);
    assert_eq!(app.store.snapshot_age().unwrap().0, 0);
    drop(open);
    snapshot::discard_all(&**app.store.storage()).await.unwrap();
    assert!(app.store.storage().snapshots().await.unwrap().is_empty());
    app.stop().await;
}

const MARKER_VALUE: f64 = 7356.125;
const MARKER_TEXT: &str = "snapshot-marker-ocelot";
const MARKER_APP: &str = "Snapshot Marker Tapir";

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn nothing_of_a_snapshot_is_readable_at_rest(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let mut marked = steps(5, MARKER_VALUE);
    let sync_id = "snapshot-marker-sync-id";
    marked["sync_id"] = json!(sync_id);
    marked["metadata"] = json!({ "snapshot_note": MARKER_TEXT });
    let r = app.write(vec![marked]).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    app.register_app(MARKER_APP, "https://tapir.example/cb", false)
        .await;
    lock(&app).await;
    let raw = RawDb::open(&db).await;
    let chunks = raw.chunks().await;
    assert!(!chunks.is_empty(), "a snapshot is stored");
    raw.close().await;

    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("value LE", MARKER_VALUE.to_le_bytes().to_vec()),
        ("value BE", MARKER_VALUE.to_be_bytes().to_vec()),
        ("value text", b"7356.125".to_vec()),
        ("metadata", MARKER_TEXT.as_bytes().to_vec()),
        ("metadata key", b"snapshot_note".to_vec()),
        ("sync id", sync_id.as_bytes().to_vec()),
        ("app name", MARKER_APP.as_bytes().to_vec()),
        ("sample id", id.as_bytes().to_vec()),
        ("sample id bytes", uuid.as_bytes().to_vec()),
        ("sample id LE", uuid.as_u128().to_le_bytes().to_vec()),
        ("type name", b"step_count".to_vec()),
    ];
    let hexed: Vec<(&str, Vec<u8>)> = needles
        .iter()
        .map(|(n, b)| (*n, hex::encode(b).into_bytes()))
        .collect();
    needles.extend(hexed);
    let haystack: Vec<u8> = match backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(bytes) = std::fs::read(format!("{}{suffix}", db.sqlite_path().display()))
                {
                    all.extend(bytes);
                }
            }
            all
        }
        Backend::Postgres => {
            let bindir = std::env::var("HEARTH_PG_BINDIR")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
            let out = Command::new(format!("{bindir}/pg_dump"))
                .arg(&db.url)
                .output()
                .expect("run pg_dump");
            assert!(out.status.success());
            assert!(find(&out.stdout, b"COPY public.snapshots"));
            out.stdout
        }
    };
    for (name, needle) in &needles {
        assert!(!find(&haystack, needle), "{name} found in the raw database");
    }
    app.stop().await;
}

/// A snapshot vouches for the records up to its own; every record after it
/// is checked at unlock, and a modified one is named.
async fn tampering_after_a_snapshot_is_refused_at_unlock(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    lock(&app).await;
    let at = app.store.storage().snapshots().await.unwrap()[0].at.seq;
    assert_eq!(app.unlock().await.status(), 200);
    for minute in 0..3 {
        assert_eq!(
            app.write(vec![steps(3000 + minute, 1.0)]).await.status(),
            201
        );
    }
    app.stop().await;
    // Shutdown took a newer snapshot: drop it, keeping the one at `at`.
    let raw = RawDb::open(&db).await;
    raw.exec(&format!("DELETE FROM snapshots WHERE seq > {at}"))
        .await;
    raw.drop_guards().await;
    let tampered = at + 2;
    raw.exec(&format!(
        "UPDATE events SET body = {} WHERE seq = {tampered}",
        raw.bytes(&[9u8; 64])
    ))
    .await;
    raw.close().await;
    let app = TestApp::start(&db).await;
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
            .contains(&format!("record {tampered}")),
        "{body}"
    );
    app.stop().await;
}

/// The stored snapshots once the newest is at `seq` or later (taken in the
/// background), waiting up to 20 s.
async fn snapshots_from(app: &TestApp, seq: u64) -> Vec<hearth::storage::SnapshotHeader> {
    for _ in 0..200 {
        let stored = app.store.storage().snapshots().await.unwrap();
        if stored.first().is_some_and(|s| s.at.seq >= seq) {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no snapshot at {seq} or later");
}

/// Every data key id in the keyring table.
async fn key_ids(app: &TestApp) -> Vec<u32> {
    let keys = app.store.storage().data_keys().await.unwrap();
    keys.into_iter().map(|k| k.key_id).collect()
}

async fn step_stats(app: &TestApp) -> Value {
    app.get_json("/v1/statistics?type=step_count").await
}

/// A store where the owner wrote first and an app last, so the app's data
/// keys have the highest ids: a new key reusing an erased id would show.
/// Returns the app's id and token.
async fn owner_then_app(app: &TestApp) -> (String, String) {
    assert_eq!(
        app.write((0..5).map(|m| steps(m, 1.0)).collect())
            .await
            .status(),
        201
    );
    let reg = app
        .register_app("Erased", "https://erased.example/cb", false)
        .await;
    let app_id = reg["id"].as_str().unwrap().to_string();
    let token = app
        .mint(&app_id, &["step_count"], &["step_count", "heart_rate"])
        .await;
    let as_app = app.as_token(&token);
    for batch in 0..3 {
        let samples = (0..4).map(|m| steps(100 + batch * 10 + m, 100.0)).collect();
        assert_eq!(as_app.write(samples).await.status(), 201);
    }
    let heart = sample("heart_rate", 7, 60.0, "count/min");
    assert_eq!(as_app.write(vec![heart]).await.status(), 201);
    (app_id, token)
}

/// Erasure deletes every snapshot (they hold the erased samples) and a new
/// one follows; unlock from it keeps the samples erased, knows which keys
/// were destroyed and gives new records keys with new ids.
async fn erasure_discards_snapshots_and_unlock_from_the_next_keeps_it_erased(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (app_id, token) = owner_then_app(&app).await;
    lock(&app).await;
    let before_erasure = app.store.storage().snapshots().await.unwrap();
    assert_eq!(before_erasure.len(), 1);
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(step_stats(&app).await["count"], 17);

    let keys_before = key_ids(&app).await;
    let r = app.delete(&format!("/v1/sources/{app_id}")).await;
    assert_eq!(r.status(), 200);
    let erasure_seq = head_seq(&app).await;
    let keys_after = key_ids(&app).await;
    let destroyed: Vec<u32> = keys_before
        .iter()
        .copied()
        .filter(|id| !keys_after.contains(id))
        .collect();
    assert_eq!(destroyed.len(), 2, "the app's step and heart keys");
    assert!(
        destroyed.iter().all(|d| keys_after.iter().all(|k| k < d)),
        "the erased keys were the newest: {keys_after:?} {destroyed:?}"
    );
    // The snapshot from before is gone; the one after is at the erasure.
    let stored = snapshots_from(&app, erasure_seq).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].at.seq, erasure_seq);
    assert!(stored
        .iter()
        .all(|s| !before_erasure.iter().any(|b| b.at == s.at)));

    lock(&app).await;
    assert_eq!(app.store.storage().snapshots().await.unwrap().len(), 1);
    assert_eq!(app.unlock().await.status(), 200);
    let ((_, full), from_snapshot) = both_walks(&app).await;
    let (at, _, walked) = from_snapshot.expect("unlock starts from the snapshot");
    assert_eq!(at, erasure_seq);
    assert_eq!(walked, full, "the snapshot knows what a full replay knows");
    assert_eq!(walked.destroyed, destroyed);
    assert_eq!(walked.erased, 4, "three step records and one heart rate");
    assert_eq!(step_stats(&app).await["count"], 5, "only the owner's");
    let heart = app.get_json("/v1/statistics?type=heart_rate").await;
    assert_eq!(heart["count"], 0);

    // The app writes again: its new key's id is none of the destroyed ones.
    let as_app = app.as_token(&token);
    assert_eq!(as_app.write(vec![steps(500, 3.0)]).await.status(), 201);
    let new: Vec<u32> = key_ids(&app)
        .await
        .into_iter()
        .filter(|id| !keys_after.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        destroyed.iter().all(|d| new[0] > *d),
        "new key {} reuses or undercuts {destroyed:?}",
        new[0]
    );
    assert_eq!(step_stats(&app).await["count"], 6);
    app.stop().await;

    let (code, out) = verify(&db, Some(&passphrase_file(db.dir.path())));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records erased: 4"), "{out}");
}

/// `(seq, chunk, chunks, key_id, hash, body)` of every snapshot chunk.
type SnapshotRow = (i64, i64, i64, i64, Vec<u8>, Vec<u8>);
/// The same as Postgres types it (`INTEGER` is 32 bits there).
type PgSnapshotRow = (i64, i32, i32, i32, Vec<u8>, Vec<u8>);

async fn snapshot_rows(backend: Backend, url: &str) -> Vec<SnapshotRow> {
    let sql = "SELECT seq, chunk, chunks, key_id, hash, body FROM snapshots ORDER BY seq, chunk";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows: Vec<PgSnapshotRow> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows.into_iter()
                .map(|(s, c, n, k, h, b)| (s, c as i64, n as i64, k as i64, h, b))
                .collect()
        }
    }
}

/// Puts snapshot rows back, replacing every stored snapshot.
async fn put_snapshot_rows(backend: Backend, url: &str, rows: &[SnapshotRow]) {
    let raw = RawDb::at(backend, url).await;
    raw.exec("DELETE FROM snapshots").await;
    for (seq, chunk, chunks, key_id, hash, body) in rows {
        raw.exec(&format!(
            "INSERT INTO snapshots (seq, chunk, chunks, key_id, hash, body) \
             VALUES ({seq}, {chunk}, {chunks}, {key_id}, {}, {})",
            raw.bytes(hash),
            raw.bytes(body)
        ))
        .await;
    }
    raw.close().await;
}

/// The process stops after an erasure commits and before the snapshots go:
/// unlock starts from a snapshot that still holds the erased samples, meets
/// the erasure in the records after it, drops them, and deletes that
/// snapshot.
async fn an_erasure_after_the_snapshot_unlock_starts_from_drops_its_samples(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let (app_id, _) = owner_then_app(&app).await;
    lock(&app).await;
    let stale = snapshot_rows(backend, &db.url).await;
    assert!(!stale.is_empty());
    let stale_seq = stale[0].0 as u64;
    assert_eq!(app.unlock().await.status(), 200);
    let r = app.delete(&format!("/v1/sources/{app_id}")).await;
    assert_eq!(r.status(), 200);
    let erasure_seq = head_seq(&app).await;
    assert_eq!(app.write(vec![steps(600, 2.0)]).await.status(), 201);
    app.stop().await;
    // As if the snapshots had never been discarded.
    put_snapshot_rows(backend, &db.url, &stale).await;

    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(step_stats(&app).await["count"], 6, "the owner's only");
    let heart = app.get_json("/v1/statistics?type=heart_rate").await;
    assert_eq!(heart["count"], 0);
    // The stale snapshot is gone; a new one is taken in the background.
    let stored = snapshots_from(&app, erasure_seq).await;
    assert!(stored.iter().all(|s| s.at.seq >= erasure_seq), "{stored:?}");
    assert!(stored.iter().all(|s| s.at.seq != stale_seq));

    // Replayed from the stale snapshot, the state and what is known of keys
    // are a full replay's (its rows of the erased source are dropped).
    put_snapshot_rows(backend, &db.url, &stale).await;
    let ((_, full), from_snapshot) = both_walks(&app).await;
    let (at, _, walked) = from_snapshot.expect("the stale snapshot opens");
    assert_eq!(at, stale_seq);
    assert_eq!(walked, full);
    app.stop().await;
}

/// A restore accepted after a rollback discards the snapshots, and a
/// snapshot of records the log no longer holds (or holds differently) is
/// never used: unlock builds what a full replay builds.
async fn accepted_rollback_leaves_no_snapshot_of_the_lost_records(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    let older_head = head_seq(&app).await;
    app.stop().await;
    let older_rows = snapshot_rows(backend, &db.url).await;
    let older_url = crate::rollback::copy_database(&db, "older").await;

    // More records, and snapshots of them.
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    for minute in 0..4 {
        assert_eq!(
            app.write(vec![steps(700 + minute, 5.0)]).await.status(),
            201
        );
    }
    lock(&app).await;
    // The snapshot at the lock, of records the restore will lose (the one
    // kept before it is of the restored log itself).
    let mut newer_rows = snapshot_rows(backend, &db.url).await;
    let newer_seq = newer_rows.last().unwrap().0 as u64;
    assert!(newer_seq > older_head);
    newer_rows.retain(|r| r.0 as u64 == newer_seq);
    app.stop().await;

    let url = crate::rollback::restore_database(&db, &older_url).await;
    let key = passphrase_file(db.dir.path());
    let (code, out) = crate::process::hearth_at(
        &db,
        &url,
        &[
            "restore",
            "--accept-rollback",
            "--passphrase-file",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(!older_rows.is_empty());
    assert!(
        snapshot_rows(backend, &url).await.is_empty(),
        "restore discards them"
    );

    // A snapshot of the lost records, put back: its records are not in the
    // restored log (or are other records), so it is passed over.
    let mut args = db.serve_args();
    args.storage.database_url = Some(url.clone());
    let mut app = TestApp::start_with(args.clone()).await;
    assert_eq!(app.unlock().await.status(), 200);
    for minute in 0..6 {
        assert_eq!(
            app.write(vec![steps(800 + minute, 1.0)]).await.status(),
            201
        );
    }
    assert!(
        head_seq(&app).await >= newer_seq,
        "the log grew past it again"
    );
    app.stop().await;
    put_snapshot_rows(backend, &url, &newer_rows).await;
    let mut app = TestApp::start_with(args).await;
    assert_eq!(app.unlock().await.status(), 200);
    let (_, snapshot) = both_paths(&app).await;
    assert!(snapshot.is_none(), "the lost records' snapshot is not used");
    // Unlock built what the full replay builds: the restored records and
    // those written since, none of the lost ones.
    let listed = app.list_all("step_count", 50).await;
    assert_eq!(listed.len(), 99 + 6);
    assert_eq!(step_stats(&app).await["count"], 105);
    lock(&app).await;
    assert_eq!(app.unlock().await.status(), 200);
    let (full, snapshot) = both_paths(&app).await;
    assert_eq!(snapshot.map(|(_, d)| d), Some(full));
    app.stop().await;
}

/// Writes accepted while locked are merged through the writer after unlock
/// replayed from its snapshot: they are records like any other, in the
/// snapshot taken at the next lock, and unlock from it has them.
async fn writes_merged_at_unlock_are_in_the_next_snapshot(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    some_history(&app).await;
    let reg = app
        .register_app("Locked writer", "https://locked.example/cb", false)
        .await;
    let token = app
        .mint(
            reg["id"].as_str().unwrap(),
            &["step_count"],
            &["step_count"],
        )
        .await;
    lock(&app).await;
    let at_lock = app.store.storage().snapshots().await.unwrap()[0].at.seq;
    let samples = (0..3).map(|m| steps(5000 + m, 4.0)).collect();
    assert_eq!(app.as_token(&token).write(samples).await.status(), 202);
    assert_eq!(app.unlock().await.status(), 200);
    let head = head_seq(&app).await;
    assert!(head > at_lock, "the merge appended records");
    assert_eq!(step_stats(&app).await["count"], 102);
    lock(&app).await;
    // Locking first logs the audit of the merged writes: the snapshot at
    // lock stands at the head after that record, the merge before it.
    let head = head_seq(&app).await;
    let stored = app.store.storage().snapshots().await.unwrap();
    assert_eq!(stored[0].at.seq, head, "the snapshot at lock has the merge");
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(step_stats(&app).await["count"], 102);
    let (full, snapshot) = both_paths(&app).await;
    assert_eq!(snapshot, Some((head, full)));
    app.stop().await;
}

/// A chunk reads back byte for byte whatever its size, from empty to a
/// whole 8 MiB chunk with its nonce and tag; one that is not there is an
/// error; a snapshot whose chunks do not all come is not stored.
async fn stored_chunks_of_any_size_read_back_whole(backend: Backend) {
    use futures::StreamExt;
    use hearth::log::LogHead;
    use hearth::storage::{SnapshotHeader, StorageError};
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let storage = app.store.storage().clone();
    let slice = 256 << 10;
    let sizes = [
        0,
        1,
        slice - 1,
        slice,
        slice + 1,
        3 * slice + 17,
        (8 << 20) + 28,
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let chunks: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect();
    let header = SnapshotHeader {
        at: LogHead {
            seq: 1_000_000,
            hash: [7; 32],
        },
        key_id: 1,
        chunks: chunks.len() as u32,
    };
    let stream = |chunks: Vec<Vec<u8>>| futures::stream::iter(chunks.into_iter().map(Ok)).boxed();
    storage
        .put_snapshot(&header, stream(chunks.clone()), 2)
        .await
        .unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        let read = storage.snapshot_chunk(1_000_000, i as u32).await.unwrap();
        assert!(read == *chunk, "chunk {i} of {} bytes", chunk.len());
    }
    assert!(storage
        .snapshot_chunk(1_000_000, chunks.len() as u32)
        .await
        .is_err());
    // A snapshot whose chunks come short, come too many, or fail part
    // way stores none of them: the one before stays whole.
    let next = SnapshotHeader {
        at: LogHead {
            seq: 2_000_000,
            hash: [8; 32],
        },
        ..header
    };
    let short = chunks[..chunks.len() - 1].to_vec();
    let mut more = chunks.clone();
    more.push(Vec::new());
    let failing = futures::stream::iter(chunks.clone().into_iter().take(3).map(Ok))
        .chain(futures::stream::once(async {
            Err(StorageError::TempFile(std::io::Error::other("gone")))
        }))
        .boxed();
    for refused in [stream(short), stream(more), failing] {
        assert!(storage.put_snapshot(&next, refused, 2).await.is_err());
        let stored = storage.snapshots().await.unwrap();
        assert!(stored.contains(&header), "{stored:?}");
        assert!(stored.iter().all(|s| s.at != next.at), "{stored:?}");
        assert!(storage.snapshot_chunk(next.at.seq, 0).await.is_err());
    }
    app.stop().await;
}

/// A log read in many pages (more records than one page holds, and records
/// large enough that pages are cut by bytes), whose rows came in out of
/// time order and fill several blocks: a full replay holds every sample
/// once, equals the snapshot path, and the statistics survive unlock.
async fn a_log_read_in_many_pages_replays_whole(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut app = TestApp::unlocked(&db).await;
    let large = |first: i64| (first..first + 5_000).map(|m| steps(m, 1.0)).collect();
    // Later minutes first, then earlier ones: rows arrive out of order.
    for batch in (0..20).rev() {
        let r = app.write(large(batch * 5_000)).await;
        assert_eq!(r.status(), 201);
    }
    for minute in 0..530 {
        let r = app.write(vec![steps(200_000 + minute, 2.0)]).await;
        assert_eq!(r.status(), 201);
    }
    let expected = 20 * 5_000 + 530;
    let before = app.get_json("/v1/statistics?type=step_count").await;
    assert_eq!(before["count"], json!(expected), "{before}");
    let ((_, walked), _) = both_walks(&app).await;
    assert_eq!(walked.records, head_seq(&app).await);
    lock(&app).await;
    let (full, snapshot) = both_paths(&app).await;
    assert_eq!(Some(full), snapshot.map(|(_, d)| d));
    // By full replay, with no snapshot to start from.
    snapshot::discard_all(&**app.store.storage()).await.unwrap();
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(
        app.store.open_store().unwrap().sample_count(),
        expected as usize
    );
    assert_eq!(app.get_json("/v1/statistics?type=step_count").await, before);
    app.stop().await;
}
