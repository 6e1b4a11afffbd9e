//! HTTP basic authentication against bcrypt hashes.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so a check runs on
//! tokio's blocking pool, at most [`CONCURRENT_CHECKS`] at once, and a correct
//! user and password is remembered (as a SHA-256 digest, at most
//! [`CACHED_LOGINS`] of them) so that a scraper pays it once, not every scrape.
//! An unknown user is checked against a hash of the same cost, so the answer
//! takes as long as for a known one and does not tell which users exist.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// bcrypt checks running at once; more wait their turn.
pub const CONCURRENT_CHECKS: usize = 2;
/// Correct logins remembered.
pub const CACHED_LOGINS: usize = 64;
/// Longest `Authorization` header looked at.
pub const MAX_HEADER_BYTES: usize = 4096;

/// What an `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// No header.
    Missing,
    /// Not `Basic` with base64 of `user:password` (or too long).
    Malformed,
    /// A user name and a password.
    Given {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl Credentials {
    /// Reads the value of an `Authorization` header.
    pub fn from_header(value: Option<&[u8]>) -> Credentials {
        let Some(value) = value else {
            return Credentials::Missing;
        };
        if value.len() > MAX_HEADER_BYTES {
            return Credentials::Malformed;
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return Credentials::Malformed;
        };
        let Some((scheme, encoded)) = value.trim().split_once(' ') else {
            return Credentials::Malformed;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Credentials::Malformed;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return Credentials::Malformed;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Credentials::Malformed;
        };
        match decoded.split_once(':') {
            Some((user, password)) => Credentials::Given {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            None => Credentials::Malformed,
        }
    }
}

/// The users of a web config and what it takes to check them. Cheap to clone.
#[derive(Clone)]
pub struct BasicAuth {
    inner: Arc<Inner>,
}

struct Inner {
    users: BTreeMap<String, String>,
    /// Checked for unknown users; as costly as the most costly real hash.
    decoy: String,
    /// SHA-256 of user, NUL, password of logins that succeeded, oldest first.
    cache: Mutex<VecDeque<[u8; 32]>>,
    checks: Semaphore,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.inner.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl BasicAuth {
    /// For `users` (name to bcrypt hash, validated by the web config).
    pub fn new(users: &BTreeMap<String, String>) -> BasicAuth {
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        // Its password does not matter: an unknown user is refused whatever
        // the check says; the check is there for its duration.
        let decoy = bcrypt::hash("tlsmon: no such user", cost)
            .map(|h| h.to_string())
            .unwrap_or_default();
        BasicAuth {
            inner: Arc::new(Inner {
                users: users.clone(),
                decoy,
                cache: Mutex::new(VecDeque::with_capacity(CACHED_LOGINS)),
                checks: Semaphore::new(CONCURRENT_CHECKS),
            }),
        }
    }

    /// Whether the `Authorization` header `value` names a user with the right
    /// password.
    pub async fn allows(&self, value: Option<&[u8]>) -> bool {
        let Credentials::Given { user, password } = Credentials::from_header(value) else {
            return false;
        };
        let digest: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            h.finalize().into()
        };
        if self.cache().contains(&digest) {
            return true;
        }
        let Ok(_permit) = self.inner.checks.acquire().await else {
            return false;
        };
        let (hash, known) = match self.inner.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.inner.decoy.clone(), false),
        };
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        let allowed = matches && known;
        if allowed {
            let mut cache = self.cache();
            if cache.len() == CACHED_LOGINS {
                cache.pop_front();
            }
            cache.push_back(digest);
        }
        allowed
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, VecDeque<[u8; 32]>> {
        // The guarded data is a list of digests: a panic mid-update leaves at
        // worst a login to check again.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
