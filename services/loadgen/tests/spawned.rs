//! The load generator against real, spawned Hearth servers: SQLite always,
//! Postgres when `HEARTH_TEST_DATABASE_URL` is set (required under CI).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use hearth_loadgen::spawn::Server;
use hearth_loadgen::{Options, Report};

/// The `hearth` binary of this build: `HEARTH_BIN` (set by `scripts/test.sh`
/// to the binary its workspace build made), else built here. A cargo run
/// from inside a test process may rebuild the workspace from scratch, so
/// the suite avoids this path.
fn hearth_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HEARTH_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/this-test
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--workspace", "--all-targets", "--locked"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "building the hearth binary failed");
        let bin = profile_dir.join("hearth");
        assert!(bin.is_file(), "no hearth binary at {}", bin.display());
        bin
    })
    .clone()
}

fn options(extra: &[&str]) -> Options {
    let bin = hearth_bin();
    let mut args = vec![
        "--spawn".to_string(),
        "--hearth-bin".to_string(),
        bin.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Options::from_args(args).unwrap()
}

fn assert_clean_mixed_run(report: &Report) {
    print!("{}", report.table());
    assert_eq!(report.errors, 0, "errors: {:?}", report.first_errors);
    assert_eq!(report.setup_errors, 0, "errors: {:?}", report.first_errors);
    assert!(report.ok());
    assert!(report.requests > 50, "only {} requests", report.requests);
    assert!(report.samples_acknowledged > 1000);
    assert!(report.samples_added > 0);
    let ops: Vec<&str> = report
        .operations
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    for op in [
        "write-batch",
        "write-small",
        "write-one",
        "statistics",
        "list-page",
        "get-by-id",
    ] {
        assert!(ops.contains(&op), "no {op} in {ops:?}");
    }
    for op in &report.operations {
        assert!(op.p50_ms > 0.0 && op.p50_ms <= op.p99_ms && op.p99_ms <= op.max_ms);
    }
}

const MIXED_5S: &[&str] = &[
    "--scenario",
    "mixed",
    "--duration",
    "5s",
    "--concurrency",
    "6",
    "--seed-samples",
    "3000",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_scenario_on_sqlite_runs_without_errors() {
    let report = hearth_loadgen::run(&options(MIXED_5S)).await.unwrap();
    assert!(report.backend.contains("sqlite"), "{}", report.backend);
    assert_clean_mixed_run(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_scenario_on_postgres_runs_without_errors() {
    let Ok(url) = std::env::var("HEARTH_TEST_DATABASE_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but HEARTH_TEST_DATABASE_URL is not: run under scripts/with-postgres.sh"
        );
        eprintln!("skipped: HEARTH_TEST_DATABASE_URL is not set");
        return;
    };
    let mut args = MIXED_5S.to_vec();
    args.extend(["--database-url", &url]);
    // The run creates a database with a random name and drops it afterwards.
    let report = hearth_loadgen::run(&options(&args)).await.unwrap();
    assert!(report.backend.contains("postgres"), "{}", report.backend);
    assert_clean_mixed_run(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_fails_when_requests_fail() {
    let opts = options(&[]);
    let server = Server::start(&opts).await.unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth-loadgen"))
        .args(["--url", server.url.as_str(), "--token", "not-a-token"])
        .args(["--scenario", "dashboard", "--duration", "1s"])
        .args(["--concurrency", "2", "--seed-samples", "0", "--json"])
        .env_remove("HEARTH_PASSPHRASE")
        .output()
        .await
        .unwrap();
    server.stop().await.unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["errors"].as_u64().unwrap() > 0);
    assert_eq!(report["errors"], report["status_counts"]["401"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spike_and_phone_sync_scenarios_run() {
    let report = hearth_loadgen::run(&options(&[
        "--scenario",
        "spike",
        "--duration",
        "3s",
        "--concurrency",
        "10",
        "--seed-samples",
        "1000",
    ]))
    .await
    .unwrap();
    print!("{}", report.table());
    assert!(report.ok(), "{:?}", report.first_errors);
    let ops: Vec<&str> = report
        .operations
        .iter()
        .map(|o| o.operation.as_str())
        .collect();
    assert!(ops.iter().any(|o| o.starts_with("base/")), "{ops:?}");
    assert!(ops.iter().any(|o| o.starts_with("spike/")), "{ops:?}");
    assert!(ops.iter().any(|o| o.starts_with("after/")), "{ops:?}");

    let report = hearth_loadgen::run(&options(&[
        "--scenario",
        "phone-sync",
        "--duration",
        "2s",
        "--concurrency",
        "2",
    ]))
    .await
    .unwrap();
    print!("{}", report.table());
    assert!(report.ok(), "{:?}", report.first_errors);
    assert!(report
        .operations
        .iter()
        .all(|o| o.operation.starts_with("write-")));
    assert!(report.samples_per_second > 0.0);
}

#[test]
fn remote_targets_are_refused_before_any_request() {
    let output = Command::new(env!("CARGO_BIN_EXE_hearth-loadgen"))
        .args(["--url", "http://[2001:db8::1]:7380", "--token", "t"])
        .args(["--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
