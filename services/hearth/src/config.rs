//! Configuration: every setting is a flag and a `HEARTH_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::crypto::KdfParams;
use crate::pending::PendingLimits;

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
        /// Also add a key slot for unattended unlock and write its key file
        /// here (mode 600; `-`: standard output), for `HEARTH_UNLOCK_KEY_FILE`.
        #[arg(long)]
        key_file: Option<PathBuf>,
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
    /// Import data through the running server's owner API.
    Import {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Check the log's hash chain and its high-water mark; with a
    /// passphrase, also open every record and authenticate the head.
    Verify {
        #[command(flatten)]
        storage: StorageArgs,
        /// File holding the passphrase; `-` reads standard input.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Check a backup file made by `hearth backup` instead of the store
        /// (the file is copied first and never changed).
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
    },
    /// Copy the store to FILE while it runs (SQLite: a consistent snapshot,
    /// ciphertext only); for Postgres, print how to back it up.
    Backup {
        #[command(flatten)]
        storage: StorageArgs,
        /// Where to write the copy; must not exist yet.
        file: PathBuf,
    },
    /// Accept a log that is behind its high-water mark (an older copy
    /// restored on purpose): logs the acceptance and moves the mark. Run it
    /// with the server stopped.
    Restore {
        #[command(flatten)]
        storage: StorageArgs,
        /// Required: says that losing the records after the restored copy is intended.
        #[arg(long)]
        accept_rollback: bool,
        /// File holding the passphrase; `-` reads standard input.
        #[arg(long)]
        passphrase_file: PathBuf,
    },
    /// Change the store passphrase through the running server. Proven by the
    /// current passphrase, or by the recovery key when it is lost.
    Passphrase {
        /// The server's URL.
        #[arg(long, env = "HEARTH_SERVER", default_value = "http://127.0.0.1:7380")]
        server: String,
        /// File holding the current passphrase (`-`: standard input).
        #[arg(long, required_unless_present = "recovery_key_file")]
        passphrase_file: Option<PathBuf>,
        /// File holding the recovery key instead (`-`: standard input).
        #[arg(long, conflicts_with = "passphrase_file")]
        recovery_key_file: Option<PathBuf>,
        /// File holding the new passphrase (`-`: standard input).
        #[arg(long)]
        new_passphrase_file: PathBuf,
    },
    /// Key slots for unattended unlock, through the running server.
    Keyslot {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: KeyslotCommand,
    },
    /// Make a new recovery key (printed once); the old one stops working.
    Recovery {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Manage the data keys through the running server's owner API.
    Keys {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Export everything the store holds, through the running server.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// `ndjson` (Hearth's own; `hearth import ndjson` reads it) or `fhir`
        /// (FHIR R4 Patient and Observations).
        #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "fhir"])]
        format: String,
        /// The file to write; standard output when absent.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Manage research studies through the running server's owner API.
    Study {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: StudyCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyslotCommand {
    /// Add a key slot and write its key to FILE (mode 600), for
    /// `HEARTH_UNLOCK_KEY_FILE`.
    Add {
        #[arg(long)]
        file: PathBuf,
    },
    /// List the key slots: ids and kinds.
    List,
    /// Revoke a key slot: its file no longer opens the store.
    Revoke { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Seal new records under new data keys. Records already written stay
    /// under their old keys, which keep opening them; nothing is re-encrypted.
    Rotate,
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

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// An Apple Health export: the `export.zip` from the Health app, the
    /// folder it unzips to, or the export XML itself.
    AppleHealth {
        path: PathBuf,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A Hearth `ndjson` export (`hearth export`), each sample under the
    /// source it came from; running it again adds nothing.
    Ndjson {
        /// The export file; `-` reads standard input.
        path: PathBuf,
        /// Print the finished job as JSON instead of the summary.
        #[arg(long)]
        json: bool,
    },
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
    /// The state file holding the log's high-water mark, which catches a
    /// rollback of the database to an older copy. Default: `hearth.state`
    /// in the data directory. Kept apart from the database (another disk or
    /// host mount), it also catches a rollback of the whole data directory.
    #[arg(long, env = "HEARTH_STATE_FILE")]
    pub state_file: Option<PathBuf>,
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
    /// Unlock at start with this key file (from `hearth keyslot add` or
    /// `hearth init --key-file`), for unattended servers. The file must not
    /// be readable by group or others. A file holding the passphrase is
    /// accepted only while the store has no key-file slot.
    #[arg(long, env = "HEARTH_UNLOCK_KEY_FILE")]
    pub unlock_key_file: Option<PathBuf>,
    /// Lock after this many seconds without requests (0: never). Not applied
    /// when unlocked by the key file.
    #[arg(long, env = "HEARTH_IDLE_LOCK_SECS", default_value_t = 900)]
    pub idle_lock_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HEARTH_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest export `POST /v1/imports` accepts, in bytes (it is stored in
    /// a temporary file, never held in memory).
    #[arg(long, env = "HEARTH_MAX_IMPORT_BYTES", default_value_t = 6 << 30)]
    pub max_import_bytes: u64,
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
    #[command(flatten)]
    pub pending: PendingArgs,
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

/// Writes accepted while locked, waiting for the next unlock.
#[derive(Args, Debug, Clone)]
pub struct PendingArgs {
    /// Most sealed bytes of writes waiting while locked; beyond it writes
    /// are answered `507` (`pending_full`).
    #[arg(long, env = "HEARTH_MAX_PENDING_BYTES", default_value_t = PendingLimits::default().max_bytes)]
    pub max_pending_bytes: u64,
    /// Most writes (requests) waiting while locked; beyond it writes are
    /// answered `429` (`pending_batches_full`).
    #[arg(long, env = "HEARTH_MAX_PENDING_BATCHES", default_value_t = PendingLimits::default().max_batches)]
    pub max_pending_batches: u64,
}

impl Default for PendingArgs {
    fn default() -> PendingArgs {
        let limits = PendingLimits::default();
        PendingArgs {
            max_pending_bytes: limits.max_bytes,
            max_pending_batches: limits.max_batches,
        }
    }
}

impl PendingArgs {
    pub fn limits(&self) -> PendingLimits {
        PendingLimits {
            max_bytes: self.max_pending_bytes,
            max_batches: self.max_pending_batches,
        }
    }
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
    /// Where the high-water mark is kept.
    pub fn state_file(&self) -> crate::log::head::StateFile {
        crate::log::head::StateFile::new(
            self.state_file
                .clone()
                .unwrap_or_else(|| self.data_dir.join(crate::log::head::STATE_FILE_NAME)),
        )
    }

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

#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// Add a study from its description (a JSON file; `-`: standard input).
    /// Nothing leaves until you consent.
    Add { file: PathBuf },
    /// List the studies with where each stands.
    List,
    /// Remove a study with your decision on it; its tokens stop at once.
    Remove { study_id: String },
}
