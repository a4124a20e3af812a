//! Building and running the server: storage, lock model, router, listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, Limits};
use crate::config::ServeArgs;
use crate::lock;
use crate::storage;
use crate::store::Store;
use crate::telemetry;

pub struct Application {
    listener: TcpListener,
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

fn check_key_file_permissions(path: &Path) -> anyhow::Result<()> {
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
        let store = Arc::new(Store::open(storage, kdf).await?);
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
            let secret = read_secret(path)?;
            store
                .unlock(&secret)
                .await
                .context("unlocking with the key file")?;
            unattended = true;
        }
        if args.idle_lock_secs > 0 && !unattended {
            lock::spawn_idle_lock(store.clone(), Duration::from_secs(args.idle_lock_secs));
        }
        let router = api::router(
            store.clone(),
            Limits {
                max_body_bytes: args.max_body_bytes,
                request_timeout: Duration::from_secs(args.request_timeout_secs),
                public_url: args.public_url.clone(),
            },
        );
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        Ok(Application {
            listener,
            router,
            store,
        })
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
        // Peer addresses feed the per-client rate limits.
        let service = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let closing = self.store.clone();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                // Observer streams only end when the store locks: lock
                // first, or the graceful shutdown would wait for them.
                closing.lock().await;
            })
            .await?;
        store.lock().await;
        Ok(())
    }
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
