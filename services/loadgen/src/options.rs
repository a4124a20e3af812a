//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "hearth-loadgen",
    version,
    about = "Load generator for Hearth: drives a live server over HTTP and reports \
             throughput and latency per operation",
    long_about = "Drives a live Hearth server over HTTP with the scenarios of the k6 scripts in \
                  loadtest/ and reports requests/s, samples/s, errors by status and latency \
                  percentiles per operation. Exits non-zero if any request failed. Targets must \
                  be on loopback unless --allow-remote is given. Every run stops by itself after \
                  --duration or --max-requests."
)]
pub struct Options {
    /// What the simulated apps do.
    #[arg(long, value_enum, default_value_t = ScenarioName::Mixed)]
    pub scenario: ScenarioName,
    /// Base URL of a running Hearth server (ignored with --spawn).
    #[arg(long, env = "HEARTH_URL", default_value = "http://127.0.0.1:7380")]
    pub url: String,
    /// Owner bearer token (prefer the environment variable).
    #[arg(long, env = "HEARTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Store passphrase, used to unlock and obtain an owner token. Prefer
    /// the environment variable: command lines are visible to other users.
    #[arg(long, env = "HEARTH_PASSPHRASE", hide_env_values = true)]
    pub passphrase: Option<String>,
    /// How long to apply load: `30s`, `2m`, `1m30s`, `500ms` (plain number: seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Number of simulated apps running at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Stop after this many requests even if time is left.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_requests: u64,
    /// Give up on a single request after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Samples written before the clock starts so reads find data
    /// (default: 20000 for dashboard, 0 for phone-sync, 5000 otherwise).
    #[arg(long)]
    pub seed_samples: Option<u64>,
    /// Random seed, for repeatable request sequences.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start a throwaway server: fresh data directory, cheap KDF, `hearth
    /// init`, then `hearth serve` on a free loopback port with a key file.
    #[arg(long)]
    pub spawn: bool,
    /// The `hearth` binary for --spawn (default: beside this executable).
    #[arg(long, env = "HEARTH_BIN")]
    pub hearth_bin: Option<PathBuf>,
    /// With --spawn: a Postgres server URL. A fresh database with a random
    /// name is created on it for the run and dropped afterwards.
    #[arg(long)]
    pub database_url: Option<String>,
    /// With --spawn and --database-url: keep the database after the run.
    #[arg(long)]
    pub keep_database: bool,
    /// Allow targets (and databases) that are not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioName {
    /// Phones syncing: batched writes of 100–1000 samples, with retries.
    PhoneSync,
    /// Dashboards: statistics over day, week, month and year ranges.
    Dashboard,
    /// Several apps at once: writes, paginated lists, statistics, by-id reads.
    Mixed,
    /// Mixed load that jumps from a tenth of the apps to all of them and back.
    Spike,
}

impl ScenarioName {
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::PhoneSync => "phone-sync",
            ScenarioName::Dashboard => "dashboard",
            ScenarioName::Mixed => "mixed",
            ScenarioName::Spike => "spike",
        }
    }
}

/// Longest run accepted: load tests stop by themselves.
pub const MAX_DURATION: Duration = Duration::from_secs(6 * 3600);
const MAX_CONCURRENCY: usize = 1024;

impl Options {
    /// Options as given on a command line, for tests and embedding.
    pub fn from_args<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = args.into_iter().map(Into::into);
        Options::try_parse_from(
            std::iter::once(std::ffi::OsString::from("hearth-loadgen")).chain(args),
        )
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.duration.is_zero() && self.duration <= MAX_DURATION,
            "--duration must be above zero and at most {}h",
            MAX_DURATION.as_secs() / 3600
        );
        anyhow::ensure!(
            (1..=MAX_CONCURRENCY).contains(&self.concurrency),
            "--concurrency must be from 1 to {MAX_CONCURRENCY}"
        );
        anyhow::ensure!(self.max_requests > 0, "--max-requests must be above zero");
        anyhow::ensure!(
            !self.request_timeout.is_zero(),
            "--request-timeout must be above zero"
        );
        anyhow::ensure!(
            self.database_url.is_none() || self.spawn,
            "--database-url is for --spawn; a running server has its own database"
        );
        Ok(())
    }

    pub fn seed_samples(&self) -> u64 {
        self.seed_samples.unwrap_or(match self.scenario {
            ScenarioName::Dashboard => 20_000,
            ScenarioName::PhoneSync => 0,
            ScenarioName::Mixed | ScenarioName::Spike => 5_000,
        })
    }
}

/// `30s`, `2m`, `1h`, `1m30s`, `250ms`; a plain number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{s}': a unit (ms, s, m, h) must follow {rest}"))?;
        if digits == 0 {
            return Err(format!("'{s}' is not a duration like 30s, 2m or 1m30s"));
        }
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{s}' is not a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("'{s}': unknown unit '{u}' (use ms, s, m or h)")),
        };
        total += Duration::try_from_secs_f64(n * factor).map_err(|e| e.to_string())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 s").is_err());
    }

    #[test]
    fn defaults_and_bounds() {
        let o = Options::from_args(["--scenario", "phone-sync"]).unwrap();
        assert_eq!(o.scenario, ScenarioName::PhoneSync);
        assert_eq!(o.seed_samples(), 0);
        assert!(o.validate().is_ok());
        let o = Options::from_args(["--concurrency", "0"]).unwrap();
        assert!(o.validate().is_err());
        let o = Options::from_args(["--duration", "7h"]).unwrap();
        assert!(o.validate().is_err());
        let o = Options::from_args(["--database-url", "postgres://127.0.0.1/x"]).unwrap();
        assert!(o.validate().is_err(), "a database needs --spawn");
    }
}
