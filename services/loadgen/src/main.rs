use std::process::ExitCode;

use clap::Parser;
use hearth_loadgen::Options;

/// Exit 0: every request succeeded. 1: some request failed. 2: the run
/// could not be made (bad options, no server, unlock refused, ...).
fn main() -> ExitCode {
    let opts = Options::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearth-loadgen: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(hearth_loadgen::run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearth-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    if opts.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("hearth-loadgen: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        if report.requests == 0 {
            eprintln!("hearth-loadgen: no request was made");
        } else {
            eprintln!(
                "hearth-loadgen: {} requests failed",
                report.errors + report.setup_errors
            );
        }
        ExitCode::from(1)
    }
}
