//! The owner's commands besides serving.
//!
//! `hearth app …` is a client of the running server's owner API: going
//! through the server keeps one writer for the log and one live registry.
//! `hearth backup` and `hearth restore` work on the database directly:
//! a backup only reads (a consistent snapshot beside the running server);
//! accepting a restore appends one record, so it runs with the server
//! stopped.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::config::{AppCommand, ServerArgs, StorageArgs};
use crate::log::head::{self, HeadAuthenticator, HeadCheckError};
use crate::log::replay::walk;
use crate::startup::read_secret;
use crate::storage::{self, StorageError};

async fn call(rb: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let r = rb
        .send()
        .await
        .with_context(|| format!("{what}: connecting"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{what}: {status}: {detail}");
    }
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

pub async fn run(server: ServerArgs, command: AppCommand) -> anyhow::Result<()> {
    let base = server.server.trim_end_matches('/').to_string();
    let passphrase = read_secret(&server.passphrase_file)?;
    let client = reqwest::Client::new();
    let session = call(
        client
            .post(format!("{base}/v1/unlock"))
            .json(&json!({ "passphrase": passphrase.as_str() })),
        "signing in",
    )
    .await?;
    let token = session["token"]
        .as_str()
        .context("no session token in the answer")?
        .to_string();
    let out = match command {
        AppCommand::Add {
            name,
            description,
            purpose,
            privacy_policy_url,
            redirect_uris,
            confidential,
            research,
        } => {
            let body = json!({
                "name": name, "description": description, "purpose": purpose,
                "privacy_policy_url": privacy_policy_url, "redirect_uris": redirect_uris,
                "client_type": if confidential { "confidential" } else { "public" },
                "kind": if research { "research" } else { "app" },
            });
            call(
                client
                    .post(format!("{base}/v1/apps"))
                    .bearer_auth(&token)
                    .json(&body),
                "registering the app",
            )
            .await?
        }
        AppCommand::List => {
            call(
                client.get(format!("{base}/v1/apps")).bearer_auth(&token),
                "listing apps",
            )
            .await?
        }
        AppCommand::Token {
            app_id,
            name,
            read,
            write,
        } => {
            call(
                client
                    .post(format!("{base}/v1/apps/{app_id}/credentials"))
                    .bearer_auth(&token)
                    .json(&json!({ "name": name, "read": read, "write": write })),
                "minting the credential",
            )
            .await?
        }
        AppCommand::Remove { app_id } => {
            call(
                client
                    .delete(format!("{base}/v1/apps/{app_id}"))
                    .bearer_auth(&token),
                "removing the app",
            )
            .await?;
            json!({ "removed": app_id })
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `hearth backup FILE`.
pub async fn backup(storage_args: StorageArgs, file: &Path) -> anyhow::Result<()> {
    let storage = storage::connect(&storage_args.database_url()?).await?;
    match storage.backup_to(file).await {
        Ok(()) => {
            let (head, _) = storage.authenticated_head().await?;
            println!(
                "backup written to {} (log up to record {}); check it with \
                 `hearth verify --backup {}`",
                file.display(),
                head.seq,
                file.display()
            );
            Ok(())
        }
        Err(StorageError::Backup(how)) if storage.backend_name() == "postgres" => {
            println!("{how}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `hearth restore --accept-rollback`: the whole log must check out with
/// the passphrase (chain and every record); only its being behind the mark
/// (or its head not matching) is accepted, and the acceptance is logged.
pub async fn restore(
    storage_args: StorageArgs,
    accept_rollback: bool,
    passphrase_file: &Path,
) -> anyhow::Result<()> {
    if !accept_rollback {
        bail!(
            "restore accepts a log that is behind its high-water mark, losing the records \
             after it: pass --accept-rollback to confirm"
        );
    }
    let storage = storage::connect(&storage_args.database_url()?).await?;
    let passphrase = read_secret(passphrase_file)?;
    let key = crate::lock::open_data_key(&*storage, &passphrase)
        .await?
        .context("wrong passphrase")?;
    let records = walk(&*storage, Some(&key), |_, _| Ok(()))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the log itself is damaged ({e}); a restore accepts an older log, not a \
                 damaged one"
            )
        })?;
    let state = storage_args.state_file();
    let mark = state.read()?;
    let auth = HeadAuthenticator::new(&key);
    match head::check(&*storage, Some(&auth), mark.as_ref(), state.path()).await {
        Ok(_) => {
            println!(
                "nothing to accept: the log ({records} records) is not behind its high-water mark"
            );
            return Ok(());
        }
        Err(HeadCheckError::Fault(fault)) if fault.is_acceptable_restore() => {
            println!("accepting: {fault}");
        }
        Err(e) => return Err(e.into()),
    }
    let now_us = crate::clock::Clock::default().now_us();
    let accepted = head::accept_restore(&*storage, &key, &state, now_us).await?;
    println!(
        "restore accepted: the log ended at record {}, its high-water mark was record {}; \
         logged as record {}",
        accepted.restored_seq, accepted.mark_seq, accepted.event_seq
    );
    Ok(())
}

/// A private copy of a backup file, so that checking it (which brings its
/// schema up to date) never changes the backup itself. Removed on drop.
pub struct BackupCopy {
    dir: std::path::PathBuf,
}

impl BackupCopy {
    pub fn of(file: &Path) -> anyhow::Result<BackupCopy> {
        anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
        let dir = std::env::temp_dir().join(format!(
            "hearth-verify-{}",
            hex::encode(crate::crypto::random_bytes::<8>())
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
        let copy = BackupCopy { dir };
        std::fs::copy(file, copy.dir.join("backup.db"))
            .with_context(|| format!("reading {}", file.display()))?;
        Ok(copy)
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.dir.join("backup.db").display())
    }
}

impl Drop for BackupCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
