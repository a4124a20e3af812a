//! The owner's commands besides serving.
//!
//! `hearth app …`, `hearth passphrase`, `hearth keyslot …`, `hearth
//! recovery`, `hearth keys …` and `hearth import …` are clients of the
//! running server's owner API: going through the server keeps one writer for
//! the log and one live registry. `hearth backup` and `hearth restore` work
//! on the database directly: a backup only reads (a consistent snapshot
//! beside the running server); accepting a restore appends one record, so it
//! runs with the server stopped.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::{
    AppCommand, KeysCommand, KeyslotCommand, ServerArgs, StorageArgs, StudyCommand,
};
use crate::keys::data_keys::DataKeys;
use crate::log::head::{self, HeadAuthenticator, HeadCheckError};
use crate::log::replay::walk;
use crate::startup::read_secret;
use crate::storage::{self, StorageError};

pub(crate) async fn call(rb: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
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

/// Opens an owner session with `secret` (a JSON object naming
/// `passphrase` or `recovery_key`); unlocks the store if it is locked.
async fn sign_in(client: &reqwest::Client, base: &str, secret: &Value) -> anyhow::Result<String> {
    let session = call(
        client.post(format!("{base}/v1/unlock")).json(secret),
        "signing in",
    )
    .await?;
    Ok(session["token"]
        .as_str()
        .context("no session token in the answer")?
        .to_string())
}

fn base_url(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

pub async fn run(server: ServerArgs, command: AppCommand) -> anyhow::Result<()> {
    let (client, base, token) = owner_session(&server).await?;
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

/// `hearth passphrase`: proves the current passphrase (or the recovery key)
/// and sets the new one.
pub async fn change_passphrase(
    server: &str,
    passphrase_file: Option<&Path>,
    recovery_key_file: Option<&Path>,
    new_passphrase_file: &Path,
) -> anyhow::Result<()> {
    let current_file = passphrase_file
        .or(recovery_key_file)
        .context("give --passphrase-file or --recovery-key-file")?;
    if current_file == Path::new("-") && new_passphrase_file == Path::new("-") {
        bail!("only one of the secrets can come from standard input");
    }
    let current = read_secret(current_file)?;
    let new = read_secret(new_passphrase_file)?;
    let field = if passphrase_file.is_some() {
        "passphrase"
    } else {
        "recovery_key"
    };
    let base = base_url(server);
    let client = reqwest::Client::new();
    let secret = json!({ field: current.as_str() });
    let token = sign_in(&client, &base, &secret).await?;
    let body = Zeroizing::new(
        json!({ field: current.as_str(), "new_passphrase": new.as_str() }).to_string(),
    );
    call(
        client
            .post(format!("{base}/v1/owner/passphrase"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.as_str().to_string()),
        "changing the passphrase",
    )
    .await?;
    eprintln!("passphrase changed");
    Ok(())
}

/// `hearth keyslot …`.
pub async fn keyslot(server: ServerArgs, command: KeyslotCommand) -> anyhow::Result<()> {
    let base = base_url(&server.server);
    let passphrase = read_secret(&server.passphrase_file)?;
    let secret = json!({ "passphrase": passphrase.as_str() });
    let client = reqwest::Client::new();
    let token = sign_in(&client, &base, &secret).await?;
    match command {
        KeyslotCommand::Add { file } => {
            if file.exists() {
                bail!("{} exists; choose a new file", file.display());
            }
            let answer = call(
                client
                    .post(format!("{base}/v1/owner/keyslots"))
                    .bearer_auth(&token)
                    .json(&secret),
                "adding the key slot",
            )
            .await?;
            let contents = Zeroizing::new(
                answer["key_file"]
                    .as_str()
                    .context("no key file in the answer")?
                    .to_string(),
            );
            write_key_file(&file, &contents)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "id": answer["id"], "kind": "key_file", "file": file.display().to_string(),
                }))?
            );
        }
        KeyslotCommand::List => {
            let out = call(
                client
                    .get(format!("{base}/v1/owner/keyslots"))
                    .bearer_auth(&token),
                "listing key slots",
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        KeyslotCommand::Revoke { id } => {
            call(
                client
                    .delete(format!("{base}/v1/owner/keyslots/{id}"))
                    .bearer_auth(&token),
                "revoking the key slot",
            )
            .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "revoked": id }))?
            );
        }
    }
    Ok(())
}

/// `hearth recovery`: a new recovery key, printed once.
pub async fn recovery(server: ServerArgs) -> anyhow::Result<()> {
    let base = base_url(&server.server);
    let passphrase = read_secret(&server.passphrase_file)?;
    let secret = json!({ "passphrase": passphrase.as_str() });
    let client = reqwest::Client::new();
    let token = sign_in(&client, &base, &secret).await?;
    let answer = call(
        client
            .post(format!("{base}/v1/owner/recovery"))
            .bearer_auth(&token)
            .json(&secret),
        "re-creating the recovery key",
    )
    .await?;
    eprintln!("new recovery key (shown this once; the old one no longer works):");
    println!(
        "{}",
        answer["recovery_key"]
            .as_str()
            .context("no recovery key in the answer")?
    );
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
    let root = crate::lock::open_data_key(&*storage, &passphrase)
        .await?
        .context("wrong passphrase")?;
    let keys = DataKeys::load(&*storage, root).await?;
    let walked = walk(&storage, Some(&keys), |_, _| Ok(()))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the log itself is damaged ({e}); a restore accepts an older log, not a \
                 damaged one"
            )
        })?;
    let state = storage_args.state_file();
    let mark = state.read()?;
    let auth = HeadAuthenticator::new(keys.root());
    match head::check(&*storage, Some(&auth), mark.as_ref(), state.path()).await {
        Ok(_) => {
            println!(
                "nothing to accept: the log ({} records) is not behind its high-water mark",
                walked.records
            );
            return Ok(());
        }
        Err(HeadCheckError::Fault(fault)) if fault.is_acceptable_restore() => {
            println!("accepting: {fault}");
        }
        Err(e) => return Err(e.into()),
    }
    let now_us = crate::clock::Clock::default().now_us();
    let accepted = head::accept_restore(&*storage, keys.root(), &state, now_us).await?;
    // Snapshots may describe records the restored log no longer holds
    // (unlock would pass them over anyway): the next unlock replays it all.
    crate::projection::snapshot::discard_all(&*storage).await?;
    println!(
        "restore accepted: the log ended at record {}, its high-water mark was record {}; \
         logged as record {}",
        accepted.restored_seq, accepted.mark_seq, accepted.event_seq
    );
    Ok(())
}

/// Writes a key file readable by its owner only; `-` is standard output.
/// An existing file is never overwritten.
pub fn write_key_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if path == Path::new("-") {
        std::io::stdout().write_all(contents.as_bytes())?;
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// An owner session on the running server, signed in with the passphrase:
/// the client, the base URL and the session token.
pub(crate) async fn owner_session(
    server: &ServerArgs,
) -> anyhow::Result<(reqwest::Client, String, String)> {
    let base = base_url(&server.server);
    let passphrase = read_secret(&server.passphrase_file)?;
    let client = reqwest::Client::new();
    let token = sign_in(
        &client,
        &base,
        &json!({ "passphrase": passphrase.as_str() }),
    )
    .await?;
    Ok((client, base, token))
}

/// `hearth keys …`: the data keys, through the owner API.
pub async fn keys(server: ServerArgs, command: KeysCommand) -> anyhow::Result<()> {
    let (client, base, token) = owner_session(&server).await?;
    let out = match command {
        KeysCommand::Rotate => {
            call(
                client
                    .post(format!("{base}/v1/owner/keys/rotate"))
                    .bearer_auth(&token),
                "rotating the data keys",
            )
            .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
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

/// `hearth study …`: studies, through the owner API.
pub async fn study(server: ServerArgs, command: StudyCommand) -> anyhow::Result<()> {
    // Read the description before signing in: a bad file costs no unlock.
    let description = match &command {
        StudyCommand::Add { file } => {
            let text = if file == Path::new("-") {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            Some(
                serde_json::from_str::<Value>(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?,
            )
        }
        _ => None,
    };
    let (client, base, token) = owner_session(&server).await?;
    let out = match command {
        StudyCommand::Add { .. } => {
            call(
                client
                    .post(format!("{base}/v1/studies"))
                    .bearer_auth(&token)
                    .json(&description),
                "adding the study",
            )
            .await?
        }
        StudyCommand::List => {
            call(
                client.get(format!("{base}/v1/studies")).bearer_auth(&token),
                "listing studies",
            )
            .await?
        }
        StudyCommand::Remove { study_id } => {
            call(
                client
                    .delete(format!("{base}/v1/studies/{study_id}"))
                    .bearer_auth(&token),
                "removing the study",
            )
            .await?;
            json!({ "removed": study_id })
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
