//! Erasure that erases: deleting a source's or a type's data destroys the
//! data keys its records were sealed under, so nothing in the database
//! opens them again, even with the passphrase; statistics drop them at once,
//! `hearth verify` and replay skip and count them. Data-key rotation: new
//! records under new keys, old ones still readable.

use std::process::Command;

use hearth::crypto::{self, DataKey};
use hearth::keys::data_keys::{open_wrapped, KeyScope};
use hearth::log::event::{Envelope, Event, StoredSample, TypeBatch};
use hearth::log::head::HeadAuthenticator;
use hearth::log::{LogHead, LogRecord};
use serde_json::{json, Value};

use crate::process::{hearth_bin, passphrase_file, verify};
use crate::support::{sample, steps, Backend, TestApp, TestDatabase, PASSPHRASE};

both_backends!(
    erasing_a_source_destroys_its_keys,
    erasing_a_type_destroys_its_keys,
    rotation_keeps_old_records_readable,
    records_under_the_root_key_still_open_and_erase,
);

/// A stored record as the database holds it.
pub(crate) struct RawRecord {
    seq: u64,
    key_id: u32,
    body: Vec<u8>,
}

/// What an attacker with the database file and the passphrase has: the
/// root key, every data key still stored (opened), and the raw log.
pub(crate) struct Recovered {
    root: DataKey,
    /// (key id, key, scope, wrapped form)
    keys: Vec<(u32, DataKey, KeyScope, Vec<u8>)>,
    records: Vec<RawRecord>,
}

pub(crate) async fn recover(db: &TestDatabase) -> Recovered {
    let storage = hearth::storage::connect(&db.url).await.unwrap();
    let root = hearth::lock::open_data_key(&*storage, PASSPHRASE)
        .await
        .unwrap()
        .expect("the passphrase opens the root key");
    let keys = storage
        .data_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| {
            let (key, scope) =
                open_wrapped(&root, k.key_id, &k.wrapped).expect("a stored key opens");
            (k.key_id, key, scope, k.wrapped)
        })
        .collect();
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = storage.records_after(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        records.extend(page.into_iter().map(|r| RawRecord {
            seq: r.seq,
            key_id: r.key_id,
            body: r.body,
        }));
    }
    Recovered {
        root,
        keys,
        records,
    }
}

impl Recovered {
    /// Key ids serving a scope `pick` accepts.
    pub(crate) fn key_ids(&self, pick: impl Fn(&KeyScope) -> bool) -> Vec<u32> {
        self.keys
            .iter()
            .filter(|(_, _, s, _)| pick(s))
            .map(|(id, ..)| *id)
            .collect()
    }

    /// The records sealed under any of `ids`.
    pub(crate) fn records_under(&self, ids: &[u32]) -> Vec<&RawRecord> {
        self.records
            .iter()
            .filter(|r| ids.contains(&r.key_id))
            .collect()
    }

    /// Every record's event, each opened with the key it names.
    pub(crate) fn events(&self) -> Vec<Envelope> {
        self.records
            .iter()
            .map(|r| {
                let key = std::iter::once(&self.root)
                    .chain(self.keys.iter().map(|(_, k, ..)| k))
                    .find(|k| k.key_id == r.key_id)
                    .expect("the key a record names is held");
                let plain = crypto::open(&key.key, &key.record_aad(r.seq), &r.body).unwrap();
                Envelope::decode(&plain).unwrap()
            })
            .collect()
    }

    /// Whether any key this database still holds (the root key included)
    /// opens `record`, under its own key id or the key's.
    pub(crate) fn opens(&self, record: &RawRecord) -> bool {
        let candidates = std::iter::once(&self.root).chain(self.keys.iter().map(|(_, k, ..)| k));
        candidates.into_iter().any(|k| {
            [record.key_id, k.key_id].iter().any(|&key_id| {
                let as_named = DataKey {
                    key_id,
                    key: k.key.clone(),
                    store_id: k.store_id,
                };
                crypto::open(&k.key, &as_named.record_aad(record.seq), &record.body).is_ok()
            })
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The SQLite database and its write-ahead log, as bytes on disk.
fn sqlite_bytes(db: &TestDatabase) -> Vec<u8> {
    let mut out = std::fs::read(db.sqlite_path()).unwrap();
    let wal = db.sqlite_path().with_extension("db-wal");
    if let Ok(bytes) = std::fs::read(wal) {
        out.extend(bytes);
    }
    out
}

async fn stats(app: &TestApp, ty: &str) -> Value {
    app.get_json(&format!(
        "/v1/statistics?type={ty}&start=2025-12-31T00:00:00Z&end=2026-01-03T00:00:00Z"
    ))
    .await
}

fn heart(minute: i64, bpm: f64) -> Value {
    sample("heart_rate", minute, bpm, "count/min")
}

async fn erasing_a_source_destroys_its_keys(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let scale = app
        .register_app("Scale", "https://app.example/cb", false)
        .await;
    let app_id = scale["id"].as_str().unwrap().to_string();
    let token = app
        .mint(&app_id, &["step_count"], &["step_count", "heart_rate"])
        .await;
    let as_app = app.as_token(&token);
    let app_steps: Vec<Value> = (0..10).map(|m| steps(m, 100.0)).collect();
    assert_eq!(as_app.write(app_steps).await.status(), 201);
    assert_eq!(
        as_app
            .write(vec![heart(1, 60.0), heart(2, 70.0)])
            .await
            .status(),
        201
    );
    assert_eq!(
        app.write((100..105).map(|m| steps(m, 1.0)).collect())
            .await
            .status(),
        201
    );
    assert_eq!(stats(&app, "step_count").await["sum"], 1005.0);

    let before = recover(&db).await;
    let erased_ids =
        before.key_ids(|s| matches!(s, KeyScope::Samples { source, .. } if *source == app_id));
    assert_eq!(erased_ids.len(), 2, "one key per (source, type)");
    let erased_records: Vec<&RawRecord> = before.records_under(&erased_ids);
    assert!(erased_records.len() >= 2);
    assert!(erased_records.iter().all(|r| before.opens(r)));
    let wrapped: Vec<Vec<u8>> = before
        .keys
        .iter()
        .filter(|(id, ..)| erased_ids.contains(id))
        .map(|(.., w)| w.clone())
        .collect();

    // Only the owner erases.
    let r = as_app.delete(&format!("/v1/sources/{app_id}")).await;
    assert_eq!(r.status(), 403);

    let r = app.delete(&format!("/v1/sources/{app_id}")).await;
    assert_eq!(r.status(), 200);
    let erasure: Value = r.json().await.unwrap();
    assert_eq!(erasure["keys_destroyed"], 2);
    assert_eq!(erasure["samples_erased"], 12);

    // Statistics drop the source at once; the owner's samples stay.
    let s = stats(&app, "step_count").await;
    assert_eq!(s["sum"], 5.0);
    assert_eq!(s["count"], 5);
    assert_eq!(stats(&app, "heart_rate").await["count"], 0);

    // With the passphrase and the raw database, nothing opens them.
    let after = recover(&db).await;
    assert!(after
        .key_ids(|_| true)
        .iter()
        .all(|id| !erased_ids.contains(id)));
    for record in &erased_records {
        assert!(!after.opens(record), "record {} still opens", record.seq);
    }
    if backend == Backend::Sqlite {
        let bytes = sqlite_bytes(&db);
        for w in &wrapped {
            assert!(!contains(&bytes, w), "a destroyed key lingers in the file");
        }
    }

    // The app writes again, under a new key, and reads what it wrote.
    assert_eq!(as_app.write(vec![steps(30, 7.0)]).await.status(), 201);
    assert_eq!(stats(&app, "step_count").await["sum"], 12.0);

    // Restart and unlock: replay skips the erased records and counts them.
    app.stop().await;
    let (code, out) = verify(&db, Some(&passphrase_file(db.dir.path())));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("result: ok"), "{out}");
    assert!(
        out.contains(&format!("records erased: {}", erased_records.len())),
        "{out}"
    );
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    let s = stats(&app, "step_count").await;
    assert_eq!(s["sum"], 12.0);
    assert_eq!(s["count"], 6);
    assert_eq!(stats(&app, "heart_rate").await["count"], 0);
    app.stop().await;
}

async fn erasing_a_type_destroys_its_keys(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    let other = app
        .register_app("Band", "https://app.example/cb", false)
        .await;
    let app_id = other["id"].as_str().unwrap().to_string();
    let token = app.mint(&app_id, &[], &["step_count", "heart_rate"]).await;
    let as_app = app.as_token(&token);
    // One request spanning two types: one record per (source, type).
    assert_eq!(
        as_app
            .write(vec![steps(0, 50.0), heart(0, 61.0), steps(1, 50.0)])
            .await
            .status(),
        201
    );
    assert_eq!(
        app.write(vec![steps(2, 3.0), heart(2, 80.0)])
            .await
            .status(),
        201
    );

    let before = recover(&db).await;
    let erased_ids = before
        .key_ids(|s| matches!(s, KeyScope::Samples { type_id, .. } if type_id == "step_count"));
    assert_eq!(erased_ids.len(), 2, "the app's and the owner's");
    let erased_records = before.records_under(&erased_ids);

    let r = as_app.delete("/v1/types/step_count/samples").await;
    assert_eq!(r.status(), 403);
    let r = app.delete("/v1/types/no_such_type/samples").await;
    assert_eq!(r.status(), 400);
    let r = app.delete("/v1/types/step_count/samples").await;
    assert_eq!(r.status(), 200);
    let erasure: Value = r.json().await.unwrap();
    assert_eq!(erasure["keys_destroyed"], 2);
    assert_eq!(erasure["samples_erased"], 3);

    assert_eq!(stats(&app, "step_count").await["count"], 0);
    assert_eq!(stats(&app, "heart_rate").await["count"], 2);

    let after = recover(&db).await;
    for record in &erased_records {
        assert!(!after.opens(record), "record {} still opens", record.seq);
    }

    app.stop().await;
    let (code, out) = verify(&db, Some(&passphrase_file(db.dir.path())));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("records erased: {}", erased_records.len())),
        "{out}"
    );
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(stats(&app, "step_count").await["count"], 0);
    assert_eq!(stats(&app, "heart_rate").await["count"], 2);
    // Writing the type again starts a new key.
    assert_eq!(app.write(vec![steps(5, 9.0)]).await.status(), 201);
    assert_eq!(stats(&app, "step_count").await["sum"], 9.0);
    app.stop().await;
}

async fn rotation_keeps_old_records_readable(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    assert_eq!(app.write(vec![steps(0, 1.0)]).await.status(), 201);
    let before = recover(&db).await;
    let old_steps = before.key_ids(|s| matches!(s, KeyScope::Samples { .. }));
    assert_eq!(old_steps.len(), 1);
    let last_before = before.records.last().unwrap().seq;

    let r = app.post_json("/v1/owner/keys/rotate", &json!({})).await;
    assert_eq!(r.status(), 200);
    let rotation: Value = r.json().await.unwrap();
    assert!(
        rotation["keys_retired"].as_u64().unwrap() >= 1,
        "{rotation}"
    );
    assert_eq!(app.write(vec![steps(1, 2.0)]).await.status(), 201);

    // And once more through the CLI, against the running server.
    let out = Command::new(hearth_bin())
        .args(["keys", "--server", &app.base])
        .arg("--passphrase-file")
        .arg(passphrase_file(db.dir.path()))
        .arg("rotate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("keys_retired"));
    assert_eq!(app.write(vec![steps(2, 4.0)]).await.status(), 201);

    let after = recover(&db).await;
    let step_keys = after.key_ids(|s| matches!(s, KeyScope::Samples { .. }));
    assert_eq!(step_keys.len(), 3, "old keys stay: {step_keys:?}");
    let new_records: Vec<&RawRecord> = after
        .records
        .iter()
        .filter(|r| r.seq > last_before)
        .collect();
    assert!(new_records.iter().all(|r| !old_steps.contains(&r.key_id)));
    assert!(after.records.iter().all(|r| after.opens(r)));
    assert_eq!(stats(&app, "step_count").await["sum"], 7.0);

    app.stop().await;
    let (code, out) = verify(&db, Some(&passphrase_file(db.dir.path())));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records erased: 0"), "{out}");
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(stats(&app, "step_count").await["sum"], 7.0);
    // New records after a restart keep using the newest keys.
    assert_eq!(app.write(vec![steps(3, 8.0)]).await.status(), 201);
    let last = recover(&db).await;
    let newest = *step_keys.iter().max().unwrap();
    assert_eq!(last.records.last().unwrap().key_id, newest);
    app.stop().await;
}

/// Stores written before data keys sealed everything under the root key
/// (key id 1): such records still open, and erasing their source hides
/// them, across restarts too (they cannot be shredded: the root key stays).
async fn records_under_the_root_key_still_open_and_erase(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let app = TestApp::unlocked(&db).await;
    app.stop().await;

    let storage = hearth::storage::connect(&db.url).await.unwrap();
    let root = hearth::lock::open_data_key(&*storage, PASSPHRASE)
        .await
        .unwrap()
        .unwrap();
    let head = storage.head().await.unwrap();
    let seq = head.seq + 1;
    let envelope = Envelope {
        at_us: 1_767_225_700_000_000,
        event: Event::SamplesAdded {
            source: "owner".into(),
            batches: vec![TypeBatch {
                type_id: "step_count".into(),
                samples: vec![StoredSample {
                    id: [7; 16],
                    start_us: 1_767_225_600_000_000,
                    start_offset_min: 60,
                    end_us: 1_767_225_660_000_000,
                    end_offset_min: 60,
                    value: 42.0,
                    metadata: None,
                }],
            }],
        },
    };
    let body = crypto::seal(&root.key, &root.record_aad(seq), &envelope.encode());
    let record = LogRecord::new(seq, root.key_id, head.hash, body);
    // Written as that version would have, with the head authenticated as
    // this one does.
    let mac = HeadAuthenticator::new(&root).head_mac(LogHead {
        seq,
        hash: record.hash,
    });
    storage.append(head, &[record], &mac, &[]).await.unwrap();
    drop(storage);

    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(stats(&app, "step_count").await["sum"], 42.0);
    assert_eq!(app.write(vec![steps(3, 1.0)]).await.status(), 201);
    let r = app.delete("/v1/sources/owner").await;
    assert_eq!(r.status(), 200);
    let erasure: Value = r.json().await.unwrap();
    assert_eq!(erasure["samples_erased"], 2);
    assert_eq!(stats(&app, "step_count").await["count"], 0);
    app.stop().await;

    let (code, out) = verify(&db, Some(&passphrase_file(db.dir.path())));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("records erased: 1"), "{out}");
    let mut app = TestApp::start(&db).await;
    assert_eq!(app.unlock().await.status(), 200);
    assert_eq!(stats(&app, "step_count").await["count"], 0);
    app.stop().await;
}
