//! Building and running the server: storage, lock model, router, listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::serve::IncomingStream;
use axum::Extension;
use tokio::net::TcpListener;
use tower::Layer;

use crate::api::host::AllowedHosts;
use crate::api::{self, Limits};
use crate::config::ServeArgs;
use crate::keys::{self, Secret};
use crate::lock;
use crate::storage;
use crate::store::Store;
use crate::telemetry;
use crate::tls::{Tls, TlsListener, TlsSource};

pub struct Application {
    listener: TcpListener,
    tls: Option<Tls>,
    router: axum::Router,
    pub store: Arc<Store>,
}

/// Reads a secret from a file (`-`: standard input), without its trailing newline.
pub fn read_secret(path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    Ok(zeroize::Zeroizing::new(text))
}

/// Creates the directory that will hold `file`, owner-only, if missing.
fn ensure_private_dir(file: &Path) -> anyhow::Result<()> {
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

pub(crate) fn check_key_file_permissions(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

impl Application {
    pub async fn build(args: &ServeArgs) -> anyhow::Result<Application> {
        let url = args.storage.database_url()?;
        let storage = storage::connect(&url).await?;
        let kdf = args.kdf.params();
        if kdf.is_weaker_than_recommended() {
            tracing::warn!(
                memory_kib = kdf.memory_kib,
                iterations = kdf.iterations,
                "key derivation is weaker than recommended; use this only for tests"
            );
        }
        let state_file = args.storage.state_file();
        ensure_private_dir(state_file.path())?;
        let store = Arc::new(Store::open(storage, kdf).await?.with_state_file(state_file));
        store.pending().set_limits(args.pending.limits());
        store.set_snapshot_every(args.snapshot_every);
        telemetry::observe_store(store.clone());
        if let Some(code) = store.setup_code() {
            // The console is the one channel only the operator sees.
            eprintln!("hearth: this store is new. Setup code: {code}");
            eprintln!(
                "hearth: open the server's page or POST /v1/setup with this code and a passphrase."
            );
        }
        let mut unattended = false;
        if let Some(path) = &args.unlock_key_file {
            check_key_file_permissions(path)?;
            let text = read_secret(path)?;
            let secret = if keys::is_key_file(&text) {
                Secret::KeyFile(&text)
            } else if keys::has_key_file_slot(&**store.storage()).await? {
                anyhow::bail!(
                    "{} holds a passphrase, but this store unlocks unattended with key slots: \
                     use a file from `hearth keyslot add --file` (see docs/keys.md)",
                    path.display()
                );
            } else {
                tracing::warn!(
                    "the unlock key file holds the passphrase; add a key slot \
                     (`hearth keyslot add --file F`) and use its file instead"
                );
                Secret::Passphrase(&text)
            };
            store
                .unlock_with(secret, None)
                .await
                .context("unlocking with the key file")?;
            unattended = true;
        }
        if args.idle_lock_secs > 0 && !unattended {
            lock::spawn_idle_lock(store.clone(), Duration::from_secs(args.idle_lock_secs));
        }
        let allowed_hosts =
            AllowedHosts::new(&args.allowed_hosts, args.public_url.as_deref(), args.listen);
        let tls = match tls_source(args, &allowed_hosts) {
            Some(source) => {
                let tls = Tls::load(&source)?;
                // The console is where the owner reads what to pin.
                eprintln!(
                    "hearth: serving HTTPS; certificate SHA-256 fingerprint: {}",
                    tls.fingerprint
                );
                Some(tls)
            }
            None => None,
        };
        let router = api::router(
            store.clone(),
            Limits {
                max_body_bytes: args.max_body_bytes,
                max_concurrent_requests: args.max_concurrent_requests,
                request_timeout: Duration::from_secs(args.request_timeout_secs),
                public_url: args.public_url.clone(),
                allowed_hosts,
                tls_fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
                max_import_bytes: args.max_import_bytes,
                export_dir: Some(args.storage.data_dir.join("exports")),
            },
        );
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        Ok(Application {
            listener,
            tls,
            router,
            store,
        })
    }

    /// The certificate's SHA-256 fingerprint, when serving HTTPS.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.fingerprint.as_str())
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then locks the store.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "listening");
        let store = self.store.clone();
        let closing = self.store.clone();
        let shutdown = async move {
            shutdown.await;
            // Observer streams only end when the store locks: lock first,
            // or the graceful shutdown would wait for them.
            closing.lock().await;
        };
        // Peer addresses feed the per-client rate limits.
        match self.tls {
            Some(tls) => {
                let router = self.router;
                let service =
                    tower::service_fn(move |incoming: IncomingStream<'_, TlsListener>| {
                        let peer = ConnectInfo(*incoming.remote_addr());
                        let router = router.clone();
                        async move { Ok::<_, Infallible>(Extension(peer).layer(router)) }
                    });
                axum::serve(tls.listen(self.listener)?, service)
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
            None => {
                let service = self
                    .router
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(self.listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
        }
        store.lock().await;
        Ok(())
    }
}

/// Where the certificate comes from, if HTTPS is configured. A certificate
/// Hearth makes itself names every host it answers to.
fn tls_source(args: &ServeArgs, hosts: &AllowedHosts) -> Option<TlsSource> {
    if let (Some(cert), Some(key)) = (&args.tls.tls_cert, &args.tls.tls_key) {
        return Some(TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    args.tls.mode.as_ref()?;
    let names = hosts
        .names()
        .iter()
        .map(|n| n.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    Some(TlsSource::SelfSigned {
        dir: args.storage.data_dir.clone(),
        names,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
