//! The `hearth` binary as a process of its own, for what only a process
//! shows: a crash, a restart, the commands. Every command here runs with the
//! test's own data directory, so the state file it reads or writes (the
//! log's high-water mark) is the test's own, never one in the working
//! directory that other tests share.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::support::{Backend, TestDatabase, PASSPHRASE};

pub fn hearth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hearth")
}

/// Writes `text` to `dir/name` (mode 600), a secret file for the commands.
pub fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The test passphrase in a file.
pub fn passphrase_file(dir: &Path) -> PathBuf {
    secret_file(dir, "passphrase", PASSPHRASE)
}

/// Runs `hearth ARGS… --database-url URL --data-dir DIR` on the database at
/// `url` (the test's own, or a copy of it); returns the exit code and
/// standard output with standard error appended.
pub fn hearth_at(db: &TestDatabase, url: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(hearth_bin())
        .args(args)
        .arg("--database-url")
        .arg(url)
        .arg("--data-dir")
        .arg(db.dir.path())
        .env_remove("HEARTH_STATE_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `hearth verify` of the database at `url`, opening every record with the
/// secret in `secret_file` when one is given.
pub fn verify_at(db: &TestDatabase, url: &str, secret_file: Option<&Path>) -> (i32, String) {
    match secret_file {
        Some(file) => hearth_at(
            db,
            url,
            &["verify", "--passphrase-file", file.to_str().unwrap()],
        ),
        None => hearth_at(db, url, &["verify"]),
    }
}

/// `hearth verify` of the test's database.
pub fn verify(db: &TestDatabase, secret_file: Option<&Path>) -> (i32, String) {
    verify_at(db, &db.url, secret_file)
}

/// `hearth init` with the passphrase in `passphrase_file`.
pub fn init_store(db: &TestDatabase, passphrase_file: &Path) {
    let (code, out) = hearth_at(
        db,
        &db.url,
        &[
            "init",
            "--kdf-memory-kib",
            "256",
            "--kdf-iterations",
            "1",
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "hearth init: {out}");
}

/// A `hearth serve` process.
pub struct Server {
    pub child: Child,
    pub base: String,
}

/// Runs `hearth serve`, unlocked by `key_file`, and waits until it listens.
pub fn spawn_server(db: &TestDatabase, key_file: &Path) -> Server {
    let mut child = Command::new(hearth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--database-url")
        .arg(&db.url)
        .arg("--data-dir")
        .arg(db.dir.path())
        .arg("--unlock-key-file")
        .arg(key_file)
        .args(["--kdf-memory-kib", "256", "--kdf-iterations", "1"])
        .env("HEARTH_IDLE_LOCK_SECS", "0")
        .env_remove("HEARTH_STATE_FILE")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn hearth");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if let Some(addr) = v["fields"]["addr"].as_str() {
                break addr.to_string();
            }
        }
    };
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

/// An owner session on a spawned server.
pub async fn owner_token(base: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/unlock"))
        .json(&json!({ "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw database: SQLite's files (with the write-ahead log), or a
/// Postgres dump that must hold `table`'s rows.
pub fn raw_bytes(db: &TestDatabase, table: &str) -> Vec<u8> {
    match db.backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{}{suffix}", db.sqlite_path().display());
                if let Ok(bytes) = std::fs::read(&path) {
                    all.extend(bytes);
                }
            }
            assert!(all.len() > 4096, "the database files were read");
            all
        }
        Backend::Postgres => {
            let bindir = std::env::var("HEARTH_PG_BINDIR")
                .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
            let out = Command::new(format!("{bindir}/pg_dump"))
                .arg(&db.url)
                .output()
                .expect("run pg_dump");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                find(&out.stdout, format!("COPY public.{table}").as_bytes()),
                "the dump holds the {table} table"
            );
            out.stdout
        }
    }
}
