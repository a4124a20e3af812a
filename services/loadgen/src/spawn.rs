//! `--spawn`: a throwaway Hearth server of our own on a free loopback port,
//! with a fresh data directory (or a fresh Postgres database), a cheap KDF
//! and a key file, so it is unlocked as soon as it is ready.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;
use reqwest::Url;
use sqlx::Connection;
use tokio::process::{Child, Command};

use crate::options::Options;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Server {
    pub url: Url,
    pub passphrase: String,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    child: Child,
    dir: tempfile::TempDir,
    database: Option<FreshDatabase>,
}

/// The `hearth` binary: `--hearth-bin`, else beside this executable.
pub fn hearth_binary(opts: &Options) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &opts.hearth_bin {
        return Ok(bin.clone());
    }
    let me = std::env::current_exe().context("locating this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    let mut candidates = vec![dir.join("hearth")];
    // Integration tests run from target/<profile>/deps.
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(profile_dir) = dir.parent() {
            candidates.push(profile_dir.join("hearth"));
        }
    }
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .with_context(|| {
            format!(
                "no `hearth` binary beside {}; build it (`cargo build -p hearth`) or pass --hearth-bin",
                me.display()
            )
        })
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it next).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{text}")?;
    Ok(())
}

/// The child's environment: none of ours `HEARTH_*` settings, then the given ones.
fn command(bin: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEARTH_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Server {
    pub async fn start(opts: &Options) -> anyhow::Result<Server> {
        let bin = hearth_binary(opts)?;
        let database = match &opts.database_url {
            Some(url) => {
                Some(FreshDatabase::create(url, opts.allow_remote, opts.keep_database).await?)
            }
            None => None,
        };
        let db_url = database.as_ref().map(|d| d.url.to_string());
        match Server::start_with(&bin, db_url).await {
            Ok(mut server) => {
                server.database = database;
                if let Err(e) = server.wait_ready().await {
                    let log = tail(&server.dir.path().join("hearth.log"));
                    let _ = server.stop().await;
                    return Err(e.context(format!(
                        "the spawned server did not become ready; its log:\n{log}"
                    )));
                }
                Ok(server)
            }
            Err(e) => {
                if let Some(db) = database {
                    let _ = db.drop_database().await;
                }
                Err(e)
            }
        }
    }

    /// Initialises the store and starts `hearth serve`, not waiting for it.
    async fn start_with(bin: &Path, database_url: Option<String>) -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("hearth-loadgen-")
            .tempdir()
            .context("creating a temporary directory")?;
        let passphrase: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let key_file = dir.path().join("unlock-key");
        write_private(&key_file, &passphrase)?;

        let port = free_port()?;
        let mut env = vec![
            (
                "HEARTH_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            ("HEARTH_LISTEN", format!("127.0.0.1:{port}")),
            ("HEARTH_KDF_MEMORY_KIB", "1024".to_string()),
            ("HEARTH_KDF_ITERATIONS", "1".to_string()),
            ("HEARTH_LOG", "warn".to_string()),
        ];
        let backend = match database_url {
            Some(url) => {
                env.push(("HEARTH_DATABASE_URL", url));
                "postgres"
            }
            None => "sqlite",
        };

        let log_path = dir.path().join("hearth.log");
        let log = std::fs::File::create(&log_path)?;
        let status = command(bin, &env)
            .arg("init")
            .arg("--passphrase-file")
            .arg(&key_file)
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .status()
            .await
            .with_context(|| format!("running {} init", bin.display()))?;
        if !status.success() {
            anyhow::bail!("`hearth init` failed ({status}):\n{}", tail(&log_path));
        }

        env.push(("HEARTH_UNLOCK_KEY_FILE", key_file.display().to_string()));
        let child = command(bin, &env)
            .arg("serve")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        Ok(Server {
            url: Url::parse(&format!("http://127.0.0.1:{port}"))?,
            passphrase,
            backend,
            child,
            dir,
            database: None,
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = crate::client(Duration::from_secs(2))?;
        let readyz = self.url.join("/readyz")?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("hearth exited with {status}");
            }
            if let Ok(r) = client.get(readyz.clone()).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                anyhow::bail!("not ready after {}s", READY_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL), and drops its database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            #[cfg(unix)]
            // SAFETY: signals our own child process, whose id we just read.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
            if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_err()
            {
                self.child.kill().await?;
            }
        }
        if let Some(db) = self.database.take() {
            db.drop_database().await?;
        }
        Ok(())
    }
}

/// A database with a random name on a Postgres server, for one run.
pub struct FreshDatabase {
    pub url: Url,
    pub name: String,
    server: Url,
    keep: bool,
}

impl FreshDatabase {
    pub async fn create(
        server: &str,
        allow_remote: bool,
        keep: bool,
    ) -> anyhow::Result<FreshDatabase> {
        let server_url = Url::parse(server).map_err(|e| anyhow::anyhow!("--database-url: {e}"))?;
        anyhow::ensure!(
            matches!(server_url.scheme(), "postgres" | "postgresql"),
            "--database-url must be a postgres:// URL"
        );
        anyhow::ensure!(
            allow_remote || crate::target::is_loopback(&server_url),
            "--database-url is not on loopback; pass --allow-remote to use it"
        );
        let name = format!("hearth_loadgen_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(server_url.as_str())
            .await
            .context("connecting to --database-url")?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        let mut url = server_url.clone();
        url.set_path(&format!("/{name}"));
        Ok(FreshDatabase {
            url,
            name,
            server: server_url,
            keep,
        })
    }

    pub async fn drop_database(self) -> anyhow::Result<()> {
        if self.keep {
            eprintln!("hearth-loadgen: kept database {}", self.name);
            return Ok(());
        }
        let mut conn = sqlx::PgConnection::connect(self.server.as_str()).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        conn.close().await?;
        Ok(())
    }
}
