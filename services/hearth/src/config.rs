//! Configuration: every setting is a flag and a `HEARTH_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::crypto::KdfParams;

#[derive(Parser, Debug)]
#[command(
    name = "hearth",
    version,
    about = "Hearth: a self-hosted, encrypted personal health data store",
    long_about = "Hearth keeps one person's health data (steps, heart rate, sleep, glucose, ...) \
                  in an encrypted, append-only log on their own machine. Every option can also \
                  be set through the environment variable shown beside it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Initialise a new store from a script instead of the setup page.
    Init {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        kdf: KdfArgs,
        /// File holding the passphrase; `-` reads standard input.
        #[arg(long)]
        passphrase_file: PathBuf,
    },
    /// Print the OpenAPI description of the HTTP API (as committed in openapi/hearth.yaml).
    Openapi,
    /// Manage apps through the running server's owner API.
    App {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Check the log's hash chain; with a passphrase, also open every record.
    Verify {
        #[command(flatten)]
        storage: StorageArgs,
        /// File holding the passphrase; `-` reads standard input.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

/// How the CLI reaches the running server as its owner.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(long, env = "HEARTH_SERVER", default_value = "http://127.0.0.1:7380")]
    pub server: String,
    /// File holding the store passphrase (`-`: standard input); it opens an
    /// owner session (and unlocks the store if it is locked).
    #[arg(long)]
    pub passphrase_file: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register an app; prints its client id (and secret, once, if confidential).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Shown to the owner on the consent page.
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        privacy_policy_url: String,
        /// Exact redirect URI; repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A client that can keep a secret (a server), not a phone or desktop app.
        #[arg(long)]
        confidential: bool,
        /// A research app (may ask for `research:export`).
        #[arg(long)]
        research: bool,
    },
    /// List apps with their grants.
    List,
    /// Mint a named, long-lived credential for a script or device.
    Token {
        app_id: String,
        #[arg(long)]
        name: String,
        /// A type the credential may read; repeat for several.
        #[arg(long)]
        read: Vec<String>,
        /// A type the credential may write; repeat for several.
        #[arg(long)]
        write: Vec<String>,
    },
    /// Revoke an app entirely: every grant and token of it dies at once.
    Remove { app_id: String },
}

#[derive(Args, Debug, Clone)]
pub struct StorageArgs {
    /// Directory for the SQLite database (created with owner-only permissions).
    #[arg(long, env = "HEARTH_DATA_DIR", default_value = "./hearth-data")]
    pub data_dir: PathBuf,
    /// Database URL: `postgres://…` for Postgres, `sqlite://…` for a SQLite
    /// file elsewhere. Default: `hearth.db` inside the data directory.
    #[arg(long, env = "HEARTH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory cost in KiB for a new store. Lower values are for tests only.
    #[arg(long, env = "HEARTH_KDF_MEMORY_KIB", default_value_t = KdfParams::RECOMMENDED.memory_kib)]
    pub kdf_memory_kib: u32,
    /// Argon2id iterations for a new store. Lower values are for tests only.
    #[arg(long, env = "HEARTH_KDF_ITERATIONS", default_value_t = KdfParams::RECOMMENDED.iterations)]
    pub kdf_iterations: u32,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default; expose it deliberately.
    #[arg(long, env = "HEARTH_LISTEN", default_value = "127.0.0.1:7380")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Unlock at start with the passphrase in this file, for unattended
    /// servers. The file must not be readable by group or others.
    #[arg(long, env = "HEARTH_UNLOCK_KEY_FILE")]
    pub unlock_key_file: Option<PathBuf>,
    /// Lock after this many seconds without requests (0: never). Not applied
    /// when unlocked by the key file.
    #[arg(long, env = "HEARTH_IDLE_LOCK_SECS", default_value_t = 900)]
    pub idle_lock_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HEARTH_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests in progress at once; beyond it requests are answered `503`
    /// (`overloaded`, with `Retry-After`) rather than queued. Unlocking,
    /// locking, health checks and the pages have a small pool of their own.
    #[arg(long, env = "HEARTH_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Requests taking longer than this many seconds are cut off.
    #[arg(long, env = "HEARTH_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// The URL apps reach this store by (e.g. `https://hearth.home.example`):
    /// the OAuth issuer. Default: `http://` plus the request's Host header.
    #[arg(long, env = "HEARTH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Host names (and addresses) requests may name in their `Host` header,
    /// comma-separated, besides the loopback names, the public URL's host and
    /// the listening address. Requests naming any other host are refused,
    /// so a web page on another name cannot reach the store through DNS
    /// rebinding.
    #[arg(long, env = "HEARTH_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Log format: `text` or `json`.
    #[arg(long, env = "HEARTH_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// While unlocked, take a sealed snapshot of the projection every this
    /// many log records (also at lock and shutdown), so unlock replays only
    /// the records after it.
    #[arg(long, env = "HEARTH_SNAPSHOT_EVERY", default_value_t = crate::projection::snapshot::DEFAULT_EVERY)]
    pub snapshot_every: u64,
}

/// HTTPS: a certificate of the operator's, or one Hearth makes itself.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// `self-signed`: make a certificate at first start (kept in the data
    /// directory) and print its SHA-256 fingerprint, for phones to pin.
    #[arg(long = "tls", env = "HEARTH_TLS", value_parser = ["self-signed"])]
    pub mode: Option<String>,
    /// PEM certificate chain to serve HTTPS with (with `--tls-key`).
    #[arg(
        long,
        env = "HEARTH_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "mode"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`; must be readable by its owner only.
    #[arg(long, env = "HEARTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl KdfArgs {
    pub fn params(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf_memory_kib,
            iterations: self.kdf_iterations,
            parallelism: 1,
        }
    }
}

impl StorageArgs {
    /// The database URL, creating the data directory for the SQLite default.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.data_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(format!(
            "sqlite://{}",
            self.data_dir.join("hearth.db").display()
        ))
    }
}
