//! `hearth app …`: the owner's app commands, as a client of the running
//! server's owner API. Going through the server keeps one writer for the
//! log and one live registry; the CLI never opens the database itself.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::config::{AppCommand, ServerArgs};
use crate::startup::read_secret;

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

/// An owner session on the running server: its client, base URL and token.
pub async fn sign_in(server: &ServerArgs) -> anyhow::Result<(reqwest::Client, String, String)> {
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
    Ok((client, base, token))
}

pub async fn run(server: ServerArgs, command: AppCommand) -> anyhow::Result<()> {
    let (client, base, token) = sign_in(&server).await?;
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
