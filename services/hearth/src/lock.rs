//! The lock model: uninitialised → sealed → unlocked ⇄ locked.
//!
//! The states, what may fail between them, the back-off after wrong secrets,
//! the idle lock, and how a passphrase opens the keyring. Keys and the
//! projection exist only in `Unlocked`. The handle that holds the state and
//! performs the transitions is [`crate::store::Store`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::{DataKey, KdfParams};
use crate::log::head::{HeadCheckError, HeadFault};
use crate::log::replay::ReplayError;
use crate::storage::{Storage, StorageError};
use crate::store::{OpenStore, Store};

/// The longest back-off after wrong passphrases.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Shortest accepted passphrase.
pub const MIN_PASSPHRASE_CHARS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockStateName {
    Uninitialised,
    Sealed,
    Locked,
    Unlocked,
}

/// Where a store is in its lifecycle; what it holds in each state.
pub(crate) enum LockState {
    Uninitialised { setup_code: Zeroizing<String> },
    Sealed,
    Locked,
    Unlocked(Arc<OpenStore>),
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("wrong setup code")]
    WrongSetupCode,
    #[error("too many failed attempts; retry later")]
    BackOff { retry_after: Duration },
    #[error("the store is already initialised")]
    AlreadyInitialised,
    #[error("the store is not initialised")]
    NotInitialised,
    #[error("passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")]
    WeakPassphrase,
    #[error("the log failed verification at record {seq}: {detail}")]
    Tampered { seq: u64, detail: String },
    /// Behind its high-water mark, or a head that fails authentication.
    #[error("{0}")]
    RolledBack(HeadFault),
    #[error("storage: {0}")]
    Storage(String),
    #[error("wrong recovery key")]
    WrongRecoveryKey,
    #[error("this is not a recovery key: a character is mistyped, missing or extra")]
    MalformedRecoveryKey,
    #[error("the key file does not open this store (revoked, or for another store)")]
    WrongKeyFile,
    /// A key slot whose stored numbers are out of bounds or unknown.
    #[error("{0}")]
    KeySlot(String),
    #[error("there is no key-file slot {0}")]
    NoSuchKeySlot(i64),
}

impl From<StorageError> for LockError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::AlreadyInitialised => LockError::AlreadyInitialised,
            StorageError::NotInitialised => LockError::NotInitialised,
            e => LockError::Storage(e.to_string()),
        }
    }
}

/// Why a request cannot be served in the current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    Uninitialised,
    Sealed,
    Locked,
}

/// Where a passphrase or setup-code attempt came from: a network address, or
/// `None` for the local console (the key file, the CLI).
pub type Client = Option<IpAddr>;

/// Growing delays after failed attempts, per client: a stranger's wrong
/// guesses slow that stranger down and never lock the owner out. IPv6
/// clients count per /64, the block one host can pick addresses from.
#[derive(Default)]
pub(crate) struct Backoffs {
    by_client: HashMap<Client, Backoff>,
}

/// Most clients whose failures are remembered; beyond it, clients whose
/// delay has passed are forgotten first.
const MAX_BACKOFF_CLIENTS: usize = 4096;

impl Backoffs {
    pub(crate) fn check(&self, client: Client) -> Result<(), LockError> {
        self.by_client
            .get(&block(client))
            .map_or(Ok(()), Backoff::check)
    }

    pub(crate) fn fail(&mut self, client: Client) {
        if self.by_client.len() >= MAX_BACKOFF_CLIENTS {
            let now = Instant::now();
            self.by_client
                .retain(|_, b| b.not_before.is_some_and(|t| t > now));
        }
        if self.by_client.len() < MAX_BACKOFF_CLIENTS {
            self.by_client.entry(block(client)).or_default().fail();
        }
    }

    pub(crate) fn succeed(&mut self, client: Client) {
        self.by_client.remove(&block(client));
    }
}

/// The unit back-off counts by: an IPv4 address, or an IPv6 /64.
fn block(client: Client) -> Client {
    client.map(|ip| match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked above")),
        v4 => v4,
    })
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    fn check(&self) -> Result<(), LockError> {
        match self.not_before {
            Some(t) if t > Instant::now() => Err(LockError::BackOff {
                retry_after: t - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    fn fail(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(500)
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.not_before = Some(Instant::now() + delay);
    }
}

/// Creates the keyring: a root key wrapped in a passphrase slot and a
/// recovery slot ([`crate::keys`]). Returns the recovery key, to show once.
pub async fn initialise(
    storage: &dyn Storage,
    passphrase: &str,
    kdf: KdfParams,
) -> Result<crate::keys::RecoveryKey, LockError> {
    crate::keys::initialise(storage, passphrase, kdf).await
}

/// Opens the root key with `secret`, a passphrase or the contents of a key
/// file (the commands that read a "passphrase file" accept either); `None`
/// if it opens no slot.
pub async fn open_data_key(
    storage: &dyn Storage,
    secret: &str,
) -> Result<Option<DataKey>, LockError> {
    let secret = if crate::keys::is_key_file(secret) {
        crate::keys::Secret::KeyFile(secret)
    } else {
        crate::keys::Secret::Passphrase(secret)
    };
    crate::keys::open_root(storage, secret).await
}

/// Locks the store after `timeout` without activity.
pub fn spawn_idle_lock(store: Arc<Store>, timeout: Duration) {
    store.set_idle_lock(timeout);
    tokio::spawn(async move {
        let tick = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            tokio::time::sleep(tick).await;
            if store.state() == LockStateName::Unlocked && store.idle_for() >= timeout {
                tracing::info!("idle timeout reached");
                store.lock().await;
            }
        }
    });
}

impl From<HeadCheckError> for LockError {
    fn from(e: HeadCheckError) -> Self {
        match e {
            HeadCheckError::Fault(fault) => LockError::RolledBack(fault),
            e => LockError::Storage(e.to_string()),
        }
    }
}

impl ReplayError {
    pub fn into_lock_error(self) -> LockError {
        match self.bad_seq() {
            Some(seq) => LockError::Tampered {
                seq,
                detail: self.to_string(),
            },
            None => LockError::Storage(self.to_string()),
        }
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn one_clients_failures_do_not_hold_up_another() {
        let mut b = Backoffs::default();
        let stranger: Client = Some("192.168.1.66".parse().unwrap());
        let owner: Client = Some("192.168.1.20".parse().unwrap());
        b.fail(stranger);
        assert!(matches!(b.check(stranger), Err(LockError::BackOff { .. })));
        assert!(b.check(owner).is_ok());
        assert!(b.check(None).is_ok(), "the console is its own client");
        b.succeed(stranger);
        assert!(b.check(stranger).is_ok());
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let mut b = Backoffs::default();
        b.fail(Some("2001:db8:1:2::1".parse().unwrap()));
        assert!(b
            .check(Some("2001:db8:1:2:ffff::9".parse().unwrap()))
            .is_err());
        assert!(b.check(Some("2001:db8:1:3::1".parse().unwrap())).is_ok());
        b.fail(Some("10.0.0.7".parse().unwrap()));
        assert!(b.check(Some("::ffff:10.0.0.7".parse().unwrap())).is_err());
    }
}
