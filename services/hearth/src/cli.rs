//! `hearth app …`, `hearth passphrase`, `hearth keyslot …`, `hearth
//! recovery`: the owner's commands, as a client of the running server's
//! owner API. Going through the server keeps one writer for the log and one
//! live registry; the CLI never opens the database itself.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::{AppCommand, KeysCommand, KeyslotCommand, ServerArgs};
use crate::startup::read_secret;

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
    let base = base_url(&server.server);
    let passphrase = read_secret(&server.passphrase_file)?;
    let client = reqwest::Client::new();
    let token = sign_in(
        &client,
        &base,
        &json!({ "passphrase": passphrase.as_str() }),
    )
    .await?;
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
