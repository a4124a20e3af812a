#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use hearth::config::{Cli, Command};
use hearth::keys::data_keys::DataKeys;
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
            key_file,
        }) => init(storage, kdf, &passphrase_file, key_file.as_deref()).await,
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
            hearth::import::client::run(server, command).await
        }
        Some(Command::Verify {
            storage,
            passphrase_file,
        }) => return verify(storage, passphrase_file.as_deref()).await,
        Some(Command::Passphrase {
            server,
            passphrase_file,
            recovery_key_file,
            new_passphrase_file,
        }) => {
            hearth::cli::change_passphrase(
                &server,
                passphrase_file.as_deref(),
                recovery_key_file.as_deref(),
                &new_passphrase_file,
            )
            .await
        }
        Some(Command::Keyslot { server, command }) => hearth::cli::keyslot(server, command).await,
        Some(Command::Recovery { server }) => hearth::cli::recovery(server).await,
        Some(Command::Keys { server, command }) => hearth::cli::keys(server, command).await,
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
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let passphrase = read_secret(passphrase_file)?;
    let storage = storage::connect(&storage_args.database_url()?).await?;
    let recovery = lock::initialise(&*storage, &passphrase, kdf.params()).await?;
    // Standard output may be the key file (`--key-file -`): people read stderr.
    eprintln!("store initialised");
    eprintln!("recovery key (shown this once; keep it apart from the passphrase, it opens the store if the passphrase is lost):");
    eprintln!("  {}", recovery.as_str());
    if let Some(path) = key_file {
        let (id, contents) =
            hearth::keys::add_key_file_slot_offline(&*storage, &passphrase).await?;
        hearth::cli::write_key_file(path, &contents)?;
        eprintln!("key slot {id} added for unattended unlock");
    }
    Ok(())
}

/// Exit 0: intact. 1: a fault in the log (its sequence number is printed). 2: could not check.
async fn verify(
    storage_args: hearth::config::StorageArgs,
    passphrase_file: Option<&std::path::Path>,
) -> ExitCode {
    let run = async {
        let storage = storage::connect(&storage_args.database_url()?).await?;
        let keys = match passphrase_file {
            None => None,
            Some(path) => {
                let passphrase = read_secret(path)?;
                let root = lock::open_data_key(&*storage, &passphrase)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("wrong passphrase"))?;
                Some(DataKeys::load(&*storage, root).await?)
            }
        };
        let opened = keys.is_some();
        Ok::<_, anyhow::Error>((walk(&*storage, keys.as_ref(), |_, _| Ok(())).await, opened))
    };
    match run.await {
        Ok((Ok(walked), opened)) => {
            let what = if opened {
                "chain and contents"
            } else {
                "chain"
            };
            println!("records checked: {}", walked.records);
            if opened {
                // Sealed under keys an erasure destroyed: unreadable by design.
                println!("records erased: {}", walked.erased);
            }
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
