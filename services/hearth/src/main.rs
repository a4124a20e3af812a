#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use hearth::config::{Cli, Command};
use hearth::keys::data_keys::DataKeys;
use hearth::lock;
use hearth::log::head::{self, HeadAuthenticator};
use hearth::log::replay::walk;
use hearth::startup::{read_secret, Application};
use hearth::storage;

// Imports and queries allocate many small, short-lived values: mimalloc
// handles that load with far less time in the allocator than the system's.
// Every block is zeroed as it is freed (see the `zero-on-free` crate).
#[global_allocator]
static ALLOCATOR: zero_on_free::ZeroOnFree<mimalloc::MiMalloc> =
    zero_on_free::ZeroOnFree(mimalloc::MiMalloc);

fn main() -> ExitCode {
    // Before the runtime's threads exist: see the function.
    zero_on_free::return_freed_memory_promptly();
    // A kernel that refuses only costs memory, not correctness.
    let _ = zero_on_free::use_small_pages();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("hearth: could not start: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    // Before any secret is read: a core dump would hold keys in the clear.
    if let Err(e) = hearth::hardening::disable_core_dumps() {
        eprintln!("hearth: could not disable core dumps: {e}");
        return ExitCode::FAILURE;
    }
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
            backup,
        }) => return verify(storage, passphrase_file.as_deref(), backup.as_deref()).await,
        Some(Command::Backup { storage, file }) => hearth::cli::backup(storage, &file).await,
        Some(Command::Restore {
            storage,
            accept_rollback,
            passphrase_file,
        }) => hearth::cli::restore(storage, accept_rollback, &passphrase_file).await,
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
        Some(Command::Study { server, command }) => hearth::cli::study(server, command).await,
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

/// Exit 0: intact. 1: a fault in the log, or a rollback (its sequence
/// number is printed). 2: could not check.
async fn verify(
    storage_args: hearth::config::StorageArgs,
    passphrase_file: Option<&std::path::Path>,
    backup: Option<&std::path::Path>,
) -> ExitCode {
    let run = async {
        let (storage, _copy) = match backup {
            Some(file) => {
                let copy = hearth::cli::BackupCopy::of(file)?;
                (storage::connect(&copy.url()).await?, Some(copy))
            }
            None => (storage::connect(&storage_args.database_url()?).await?, None),
        };
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
        let walked = match walk(&storage, keys.as_ref(), |_, _| Ok(())).await {
            Ok(walked) => walked,
            Err(e) => return Ok(Err(Failure::Log(e))),
        };
        // A backup is behind the store's mark by design: only its own head counts.
        let state = storage_args.state_file();
        let mark = match backup {
            Some(_) => None,
            None => state.read()?,
        };
        let auth = keys.as_ref().map(|k| HeadAuthenticator::new(k.root()));
        match head::check(&*storage, auth.as_ref(), mark.as_ref(), state.path()).await {
            Ok(_) => Ok(Ok(Checked {
                records: walked.records,
                erased: walked.erased,
                opened: keys.is_some(),
                mark: mark.map(|m| m.head.seq),
                state_path: state.path().display().to_string(),
                backup: backup.is_some(),
            })),
            Err(head::HeadCheckError::Fault(f)) => Ok(Err(Failure::Head(f))),
            Err(e) => Err(anyhow::Error::from(e)),
        }
    };
    match run.await {
        Ok(Ok(checked)) => {
            println!("records checked: {}", checked.records);
            if checked.opened {
                // Sealed under keys an erasure destroyed: unreadable by design.
                println!("records erased: {}", checked.erased);
                println!("head: authenticated");
            } else {
                println!("head: not authenticated (no passphrase given)");
            }
            match (checked.backup, checked.mark) {
                (true, _) => {}
                (false, Some(seq)) => println!(
                    "high-water mark: record {seq} ({}); the log is not behind it",
                    checked.state_path
                ),
                (false, None) => println!(
                    "high-water mark: none ({} does not exist); a rollback cannot be detected",
                    checked.state_path
                ),
            }
            let what = if checked.opened {
                "chain, contents and head"
            } else {
                "chain"
            };
            println!("result: ok ({what} verified)");
            ExitCode::SUCCESS
        }
        Ok(Err(Failure::Log(e))) => match e.bad_seq() {
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
        Ok(Err(Failure::Head(fault))) => {
            if let Some(seq) = fault.seq() {
                println!("first bad sequence number: {seq}");
            }
            println!("result: FAILED: {fault}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hearth: {e:#}");
            ExitCode::from(2)
        }
    }
}

struct Checked {
    records: u64,
    erased: u64,
    opened: bool,
    mark: Option<u64>,
    state_path: String,
    backup: bool,
}

enum Failure {
    Log(hearth::log::replay::ReplayError),
    Head(head::HeadFault),
}
