#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use hearth::config::{Cli, Command};
use hearth::lock;
use hearth::log::replay::walk;
use hearth::startup::{read_secret, Application};
use hearth::storage;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Init {
            storage,
            kdf,
            passphrase_file,
        }) => init(storage, kdf, &passphrase_file).await,
        Some(Command::Openapi) => {
            print!("{}", hearth::api::openapi::spec_yaml());
            Ok(())
        }
        Some(Command::App { server, command }) => hearth::cli::run(server, command).await,
        Some(Command::Export {
            server,
            format,
            output,
        }) => hearth::export::client::run_export(server, &format, output).await,
        Some(Command::Import { server, command }) => {
            hearth::export::client::run_import(server, command).await
        }
        Some(Command::Verify {
            storage,
            passphrase_file,
        }) => return verify(storage, passphrase_file.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: hearth::config::ServeArgs) -> anyhow::Result<()> {
    let _telemetry = hearth::telemetry::init(&args.log_format);
    Application::build(&args).await?.run().await
}

async fn init(
    storage_args: hearth::config::StorageArgs,
    kdf: hearth::config::KdfArgs,
    passphrase_file: &std::path::Path,
) -> anyhow::Result<()> {
    let passphrase = read_secret(passphrase_file)?;
    let storage = storage::connect(&storage_args.database_url()?).await?;
    lock::initialise(&*storage, &passphrase, kdf.params()).await?;
    println!("store initialised");
    Ok(())
}

/// Exit 0: intact. 1: a fault in the log (its sequence number is printed). 2: could not check.
async fn verify(
    storage_args: hearth::config::StorageArgs,
    passphrase_file: Option<&std::path::Path>,
) -> ExitCode {
    let run = async {
        let storage = storage::connect(&storage_args.database_url()?).await?;
        let key = match passphrase_file {
            None => None,
            Some(path) => {
                let passphrase = read_secret(path)?;
                Some(
                    lock::open_data_key(&*storage, &passphrase)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("wrong passphrase"))?,
                )
            }
        };
        let opened = key.is_some();
        Ok::<_, anyhow::Error>((walk(&*storage, key.as_ref(), |_, _| Ok(())).await, opened))
    };
    match run.await {
        Ok((Ok(records), opened)) => {
            let what = if opened {
                "chain and contents"
            } else {
                "chain"
            };
            println!("records checked: {records}");
            println!("result: ok ({what} verified)");
            ExitCode::SUCCESS
        }
        Ok((Err(e), _)) => match e.bad_seq() {
            Some(seq) => {
                println!("first bad sequence number: {seq}");
                println!("result: FAILED: {e}");
                ExitCode::from(1)
            }
            None => {
                eprintln!("hearth: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("hearth: {e:#}");
            ExitCode::from(2)
        }
    }
}
